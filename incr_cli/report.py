"""Report: every version on the head's lineage, its data and its evaluation, in one file.

:func:`report` gathers, per version, the delta's rows, rejects, new users and new items,
and every figure the latest ``incr evaluate`` of that delta stored in the ``metrics`` table,
whatever metrics and systems those are. It writes them as one self-contained HTML file
(tables and line charts embedded, nothing fetched when it is opened) and as Markdown with
the same tables and charts. The plotting library is imported only here, when a report is
written, so that other commands start fast.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .artifacts import write_atomically
from .catalog import Catalog, now
from .errors import NothingToDo

log = logging.getLogger(__name__)

# Per version on the lineage: the ingest counts and the clean rows.
DATA_SQL = """
SELECT v.version, v.rows_read, v.rows_rejected,
       (SELECT count(*) FROM ratings_clean c WHERE c.version = v.version) AS rows_clean
FROM versions v WHERE list_contains($lineage, v.version)
"""

# Users (items) counted at the version of the lineage where they first appear.
FIRST_SEEN_SQL = """
SELECT first, count(*) FROM (
    SELECT min(list_position($lineage, version)) AS first FROM ratings_clean
    WHERE list_contains($lineage, version) GROUP BY {column}
) GROUP BY first
"""

# Every figure of the latest evaluation of each delta on the lineage. An evaluation is one
# (version, model_id) pair: evaluate replaces its rows as a whole.
FIGURES_SQL = """
WITH runs AS (
    SELECT version, model_id, max(created_at) AS evaluated_at
    FROM metrics WHERE list_contains($lineage, version)
    GROUP BY version, model_id
),
latest AS (
    SELECT * FROM runs
    QUALIFY row_number() OVER (
        PARTITION BY version ORDER BY evaluated_at DESC, model_id DESC NULLS LAST) = 1
)
SELECT l.version, mo.version AS model_version, m.system, m.metric, m.value
FROM latest l
JOIN metrics m ON m.version = l.version AND m.model_id IS NOT DISTINCT FROM l.model_id
LEFT JOIN models mo ON mo.model_id = l.model_id
ORDER BY l.version, m.system, m.metric
"""

#: The per-version data columns, in order, each with its heading.
DATA_COLUMNS: dict[str, str] = {
    "version": "Version",
    "model_version": "Model",
    "rows_read": "Rows read",
    "rows_rejected": "Rejected",
    "rows_clean": "Clean rows",
    "new_users": "New users",
    "new_items": "New items",
}

# Stored figures that are counts or settings of an evaluation rather than a measure of
# quality; they stay in the rows but get no table or chart of their own.
_COUNTS = {"rows", "k", "users_ranked", "users_skipped", "mean"}

# Display order of the names known today; any other stored name follows, sorted.
_METRIC_ORDER = ("rmse", "mae", "precision", "recall", "f1", "ndcg", "map", "hit_rate")
_SYSTEM_ORDER = (
    "model",
    "full_retrain",
    "incremental",
    "biases",
    "global_mean",
    "most_popular",
    "recently_popular",
    "buy_again",
)


@dataclass
class ReportResult:
    """The report: one row per version on the head's lineage, oldest first.

    Attributes
    ----------
    rows
        One dict per version, keyed by ``columns``: the data columns, then one
        ``"system.metric"`` key per figure stored by the latest evaluation of any delta
        (``None`` where that delta has no such figure or was not evaluated).
    columns
        The keys of each row, in table order.
    metrics, systems
        The measured metrics and the systems found, in display order.
    changes
        Per column, each row's change from the row before (``None`` for the first row
        or where either value is missing).
    path, html_path
        The Markdown and the HTML file written.
    """

    rows: list[dict[str, Any]]
    columns: list[str]
    metrics: list[str]
    systems: list[str]
    path: Path
    html_path: Path
    changes: dict[str, list[float | None]] = field(default_factory=dict)


def report(catalog: Catalog, output: Path | None = None) -> ReportResult:
    """Write the HTML and Markdown report of every version on the head's lineage.

    Parameters
    ----------
    catalog
        An open catalog.
    output
        The Markdown file to write; the HTML file goes beside it with the suffix
        ``.html``. By default ``reports/report-v{head}.md`` beside the catalog. Each is
        written to a temporary name first and renamed into place.

    Returns
    -------
    ReportResult

    Raises
    ------
    NothingToDo
        If no delta on the head's lineage has been evaluated.
    """
    head = catalog.require_head()
    lineage = catalog.lineage(head)
    found = catalog.rows(FIGURES_SQL, {"lineage": lineage})
    if not found:
        raise NothingToDo("no evaluation yet; run 'incr evaluate' first")

    # The data of each version, then the figures of its latest evaluation beside it.
    rows: dict[int, dict[str, Any]] = {v: dict.fromkeys(DATA_COLUMNS) for v in lineage}
    for version, read, rejected, clean in catalog.rows(DATA_SQL, {"lineage": lineage}):
        rows[version] |= {"version": version, "rows_read": read, "rows_rejected": rejected}
        rows[version] |= {"rows_clean": clean, "new_users": 0, "new_items": 0}
    for key, column in (("new_users", "user_id"), ("new_items", "item_id")):
        # NOTE: the column name comes from this fixed pair, never from input.
        for position, count in catalog.rows(
            FIRST_SEEN_SQL.format(column=column), {"lineage": lineage}
        ):
            rows[lineage[position - 1]][key] = count
    pairs: set[tuple[str, str]] = set()
    for version, model_version, system, metric, value in found:
        rows[version]["model_version"] = model_version
        rows[version][f"{system}.{metric}"] = value
        pairs.add((system, metric))

    metrics = _ordered({m for _, m in pairs if not _is_count(m)}, _METRIC_ORDER)
    systems = _ordered({s for s, _ in pairs}, _SYSTEM_ORDER)
    columns = list(DATA_COLUMNS) + [f"{s}.{m}" for s, m in sorted(pairs)]
    table = [{name: row.get(name) for name in columns} for row in rows.values()]
    changes = {name: _changes([row[name] for row in table]) for name in columns[2:]}

    path = Path(output) if output is not None else catalog.report_dir / f"report-v{head}.md"
    html_path = path.with_suffix(".html")
    result = ReportResult(table, columns, metrics, systems, path, html_path, changes)
    charts = _charts(result)
    markdown = _markdown(catalog, head, result, charts).encode("utf-8")
    html = _html(catalog, head, result, charts).encode("utf-8")
    write_atomically(path, lambda out: out.write(markdown))
    write_atomically(html_path, lambda out: out.write(html))
    log.debug("wrote report of %d versions to %s and %s", len(table), path, html_path)
    return result


def _is_count(metric: str) -> bool:
    return metric in _COUNTS or metric.startswith("rows_")


def _ordered(names: set[str], preferred: tuple[str, ...]) -> list[str]:
    return [n for n in preferred if n in names] + sorted(names - set(preferred))


def _changes(values: list[Any]) -> list[float | None]:
    """Each value minus the one before it, where both exist."""
    out: list[float | None] = [None]
    for before, after in zip(values, values[1:], strict=False):
        out.append(None if before is None or after is None else after - before)
    return out


def _cell(name: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if name in ("version", "model_version"):
        return f"v{value}"
    if name in DATA_COLUMNS:
        return str(int(value))
    return f"{value:.4f}"


def _tables(result: ReportResult) -> list[tuple[str, list[str], list[str]]]:
    """(title, headings, column keys) of the data table and of one table per metric."""
    tables = [("Data per version", list(DATA_COLUMNS.values()), list(DATA_COLUMNS))]
    for metric in result.metrics:
        keys = [f"{s}.{metric}" for s in result.systems if f"{s}.{metric}" in result.columns]
        tables.append(
            (
                metric,
                ["Version", "Model", *[k.split(".")[0] for k in keys]],
                ["version", "model_version", *keys],
            )
        )
    return tables


def _charts(result: ReportResult) -> dict[str, str]:
    """Per table title, a line chart across versions as base64 SVG."""
    # NOTE: imported here: matplotlib takes long to import and only a report needs it.
    from matplotlib.figure import Figure

    charts = {}
    versions = [row["version"] for row in result.rows]
    for title, headings, keys in _tables(result):
        figure = Figure(figsize=(5.6, 3.0), layout="constrained")
        axes = figure.add_subplot()
        for heading, key in zip(headings[2:], keys[2:], strict=True):
            values = [row[key] for row in result.rows]
            ys = [math.nan if v is None else v for v in values]
            axes.plot(versions, ys, marker="o", label=heading)
        axes.set_xticks(versions, [f"v{v}" for v in versions])
        axes.set_title(title)
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
        buffer = io.BytesIO()
        # No date in the file, so that the same figures give the same bytes.
        figure.savefig(buffer, format="svg", metadata={"Date": None})
        charts[title] = base64.b64encode(buffer.getvalue()).decode("ascii")
    return charts


_HOW_TO_READ = (
    "How to read this: the figures are test-then-train. Each delta is scored by the model "
    "trained before it, on ratings it had not learned from; the baselines use the same "
    "earlier data. Lower RMSE and MAE are better; higher precision, recall, F1, NDCG, MAP, "
    "hit rate and coverage are better; lower stability churn is smoother."
)
# Implicit feedback has no rating to predict: every figure is about the ranked lists.
_HOW_TO_READ_RANKING = (
    "How to read this: the figures are test-then-train. For each delta, the model trained "
    "before it ranks the top k items for every user of the delta, and what the user bought "
    "there (net of cancellations) is relevant; the baselines rank from the same earlier "
    "data. Higher precision, recall, F1, NDCG, MAP, hit rate and coverage are better; "
    "lower stability churn is smoother."
)


def _how_to_read(result: ReportResult) -> str:
    rating_errors = {"rmse", "mae"} & set(result.metrics)
    return _HOW_TO_READ if rating_errors else _HOW_TO_READ_RANKING


def _markdown(catalog: Catalog, head: int, result: ReportResult, charts: dict[str, str]) -> str:
    lines = [
        f"# Evaluation report, v{head}",
        "",
        f"- Date: {now():%Y-%m-%d %H:%M} UTC",
        f"- Catalog: `{catalog.path}`",
        f"- Head: v{head}",
        "",
        _how_to_read(result),
    ]
    for title, headings, keys in _tables(result):
        lines += ["", f"## {title}", "", "| " + " | ".join(headings) + " |"]
        lines.append("|" + "|".join("---:" for _ in headings) + "|")
        for row in result.rows:
            lines.append("| " + " | ".join(_cell(k, row[k]) for k in keys) + " |")
        lines += ["", f"![{title}](data:image/svg+xml;base64,{charts[title]})"]
    return "\n".join(lines) + "\n"


_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; }
th { background: #f0f0f0; }
section { display: inline-block; vertical-align: top; margin-right: 2em; }
"""


def _html(catalog: Catalog, head: int, result: ReportResult, charts: dict[str, str]) -> str:
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Evaluation report, v{head}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Evaluation report, v{head}</h1>",
        f"<p>Date: {now():%Y-%m-%d %H:%M} UTC. Catalog: <code>{esc(str(catalog.path))}</code>. "
        f"Head: v{head}.</p>",
        f"<p>{esc(_how_to_read(result))}</p>",
    ]
    for title, headings, keys in _tables(result):
        parts.append(f"<section><h2>{esc(title)}</h2><table><tr>")
        parts += [f"<th>{esc(h)}</th>" for h in headings]
        parts.append("</tr>")
        for row in result.rows:
            parts.append("<tr>")
            for key in keys:
                # The exact stored value rides along, so that a reader (or a test) can
                # check the rounded figure against the catalog.
                value = "" if row[key] is None else repr(row[key])
                parts.append(
                    f'<td data-version="{row["version"]}" data-column="{esc(key)}" '
                    f'data-value="{esc(value)}">{esc(_cell(key, row[key]))}</td>'
                )
            parts.append("</tr>")
        parts.append(
            f'</table><img alt="{esc(title)} across versions" '
            f'src="data:image/svg+xml;base64,{charts[title]}"></section>'
        )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
