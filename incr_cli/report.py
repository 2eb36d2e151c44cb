"""Report: the latest evaluation of each delta on the head's lineage, in one file.

:func:`report` reads the figures that ``incr evaluate`` stored in the ``metrics`` table and
writes them as a Markdown table, to a temporary name first and then renamed into place.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .catalog import Catalog, now
from .errors import NothingToDo

log = logging.getLogger(__name__)

# The latest evaluation of each delta on the lineage, one row each, metrics side by side.
# An evaluation is one (version, model_id) pair: evaluate replaces its rows as a whole.
REPORT_SQL = """
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
SELECT
    l.version,
    any_value(mo.version) AS model_version,
    max(m.value) FILTER (WHERE m.system = 'model' AND m.metric = 'rows') AS rows,
    max(m.value) FILTER (WHERE m.system = 'model' AND m.metric = 'k') AS k,
    max(m.value) FILTER (WHERE m.system = 'model' AND m.metric = 'rmse') AS rmse,
    max(m.value) FILTER (WHERE m.system = 'model' AND m.metric = 'mae') AS mae,
    max(m.value) FILTER (WHERE m.system = 'global_mean' AND m.metric = 'rmse')
        AS global_mean_rmse,
    max(m.value) FILTER (WHERE m.system = 'model' AND m.metric = 'precision')
        AS precision_at_k,
    max(m.value) FILTER (WHERE m.system = 'model' AND m.metric = 'recall')
        AS recall_at_k,
    max(m.value) FILTER (WHERE m.system = 'model' AND m.metric = 'ndcg') AS ndcg_at_k,
    max(m.value) FILTER (WHERE m.system = 'most_popular' AND m.metric = 'ndcg')
        AS most_popular_ndcg_at_k
FROM latest l
JOIN metrics m ON m.version = l.version AND m.model_id IS NOT DISTINCT FROM l.model_id
LEFT JOIN models mo ON mo.model_id = l.model_id
GROUP BY l.version
ORDER BY l.version
"""

#: The report's columns, in order, each with its Markdown heading.
REPORT_COLUMNS: dict[str, str] = {
    "version": "Delta",
    "model_version": "Model",
    "rows": "Rows",
    "k": "k",
    "rmse": "RMSE",
    "mae": "MAE",
    "global_mean_rmse": "Global-mean RMSE",
    "precision_at_k": "Precision@k",
    "recall_at_k": "Recall@k",
    "ndcg_at_k": "NDCG@k",
    "most_popular_ndcg_at_k": "Most-popular NDCG@k",
}

# Columns that hold counts or version numbers rather than measured figures.
_WHOLE_COLUMNS = {"version", "model_version", "rows", "k"}


@dataclass
class ReportResult:
    """The report: one row per evaluated delta on the head's lineage.

    Attributes
    ----------
    rows
        One dict per delta, keyed by ``columns``, oldest delta first.
    columns
        The keys of each row, in table order.
    path
        The Markdown file written.
    """

    rows: list[dict[str, Any]]
    columns: list[str]
    path: Path


def report(catalog: Catalog, output: Path | None = None) -> ReportResult:
    """Write a Markdown table of the latest evaluation of each delta on the head's lineage.

    Parameters
    ----------
    catalog
        An open catalog.
    output
        The file to write; by default ``reports/report-v{head}.md`` beside the catalog.
        It is written to a temporary name first and renamed into place.

    Returns
    -------
    ReportResult

    Raises
    ------
    NothingToDo
        If no delta on the head's lineage has been evaluated.
    """
    head = catalog.require_head()
    found = catalog.con.execute(REPORT_SQL, {"lineage": catalog.lineage(head)}).fetchall()
    if not found:
        raise NothingToDo("no evaluation yet; run 'incr evaluate' first")
    columns = list(REPORT_COLUMNS)
    rows = [
        {
            name: (None if value is None else int(value) if name in _WHOLE_COLUMNS else value)
            for name, value in zip(columns, row, strict=True)
        }
        for row in found
    ]
    path = Path(output) if output is not None else catalog.report_dir / f"report-v{head}.md"
    _write_atomically(path, _markdown(catalog, head, rows))
    log.debug("wrote report of %d deltas to %s", len(rows), path)
    return ReportResult(rows=rows, columns=columns, path=path)


def _cell(name: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if name in ("version", "model_version"):
        return f"v{value}"
    if name in _WHOLE_COLUMNS:
        return str(value)
    return f"{value:.4f}"


def _markdown(catalog: Catalog, head: int, rows: list[dict[str, Any]]) -> str:
    lines = [
        f"# Evaluation report, v{head}",
        "",
        f"- Date: {now():%Y-%m-%d %H:%M} UTC",
        f"- Catalog: `{catalog.path}`",
        f"- Head: v{head}",
        "",
        "| " + " | ".join(REPORT_COLUMNS.values()) + " |",
        "|" + "|".join("---:" for _ in REPORT_COLUMNS) + "|",
    ]
    lines += ["| " + " | ".join(_cell(n, row[n]) for n in REPORT_COLUMNS) + " |" for row in rows]
    lines += [
        "",
        "How to read this: the figures are test-then-train. Each delta is scored by the model "
        "trained before it, on ratings it had not learned from; the global mean and the "
        "most popular items use the same earlier data. Lower RMSE and MAE are better, higher "
        "precision, recall and NDCG are better.",
        "",
    ]
    return "\n".join(lines)


def _write_atomically(path: Path, text: str) -> None:
    """Write to a temporary file beside ``path``, flush it, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
