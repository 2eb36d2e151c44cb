"""Commands that train and measure the model: update, evaluate."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from ..catalog import parse_version
from ..config import is_implicit
from ..errors import UsageError
from ..report import DATA_COLUMNS
from ..report import report as write_report
from ._common import (
    CatalogOpt,
    Common,
    ConfigOpt,
    DebugOpt,
    JsonOpt,
    Output,
    QuietOpt,
    WaitOpt,
    check_output_file,
    fmt,
    session,
)

if TYPE_CHECKING:
    from ..evaluate import EvaluateResult


def update(
    since: Annotated[
        str | None,
        typer.Option(help="Start from the model trained through this version, e.g. v12."),
    ] = None,
    full: Annotated[
        bool, typer.Option("--full", help="Retrain from scratch on all clean data.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Promote the candidate even if the quality gate refuses it."),
    ] = False,
    catalog: CatalogOpt = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    wait: WaitOpt = None,
) -> None:
    """Train a candidate on the versions after the model's own; promote it if the gate allows.

    A candidate the quality gate refuses is kept as rejected and the command exits with 8.

    Example: incr update --since v12
    """
    # NOTE: the library is imported in the command, not at the top: it brings numpy,
    # scikit-learn and numba, which 'incr status' and 'incr log' need not wait for.
    from ..update import update as update_model

    common = Common(catalog, config, json, quiet, debug, wait)
    out = Output(common)
    base = parse_version(since) if since is not None else None
    args = {"since": since, "full": full, "force": force}
    with session(common, "update", args) as cat, out.progress("update", None) as progress:
        results = update_model(cat, since=base, full=full, force=force, progress=progress)
    for r in results:
        replay = f" + {r.rows_replayed} replayed" if r.rows_replayed else ""
        out.line(
            f"v{r.version}: {r.kind} model m{r.model_id} trained on {r.rows_trained} rows"
            f"{replay} ({r.users} users, {r.items} items) in {r.seconds:.2f} s"
        )
    candidate = results[-1]
    if candidate.decision == "forced":
        out.err.print(
            f"incr: warning: m{candidate.model_id} promoted by --force despite the gate: "
            + "; ".join(candidate.reasons),
            highlight=False,
        )
    else:
        out.line(f"m{candidate.model_id} {candidate.decision} by the quality gate")
    out.result(results)


def evaluate(
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help="Score the model trained through this version on the next delta."
        ),
    ] = None,
    report: Annotated[
        bool, typer.Option("--report", help="Also print all evaluations and write a report.")
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option(help="Report file (default: reports/report-vN.md beside the catalog)."),
    ] = None,
    save: Annotated[
        bool,
        typer.Option(
            "--save/--no-save",
            help="Store the figures in the catalog; --no-save only reads it, so it waits for "
            "a writer instead of exiting busy.",
        ),
    ] = True,
    catalog: CatalogOpt = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    wait: WaitOpt = None,
) -> None:
    """Score the newest clean delta with the model trained before it (test, then train).

    Example: incr evaluate --report
    """
    from ..evaluate import evaluate as evaluate_model  # numpy: imported when needed

    common = Common(catalog, config, json, quiet, debug, wait)
    out = Output(common)
    version = parse_version(model) if model is not None else None
    check_output_file(output, "--output", "report.md")
    if output is not None and not report:
        raise UsageError("--output names the report file and needs --report; add --report")
    args = {"model": model, "report": report, "output": output, "save": save}
    with session(common, "evaluate", args, write=save) as cat:
        result = evaluate_model(cat, model_version=version, save=save)
        implicit = is_implicit(cat.config)
        summary = write_report(cat, output) if report else None

    out.table(_evaluation_table(result, implicit))
    if summary is not None:
        # One row per figure and one column per version, each value with its change.
        report_table = Table(title="the head's lineage: each figure and its change")
        report_table.add_column("figure")
        for row in summary.rows:
            model_of = f" (m. v{row['model_version']})" if row["model_version"] else ""
            report_table.add_column(f"v{row['version']}{model_of}", justify="right")
        names = list(DATA_COLUMNS)[2:] + [
            f"{s}.{m}" for m in summary.metrics for s in summary.systems
        ]
        for name in (n for n in names if n in summary.columns):
            cells = zip(summary.rows, summary.changes[name], strict=True)
            heading = DATA_COLUMNS.get(name, name)
            report_table.add_row(heading, *(_with_change(r[name], c) for r, c in cells))
        out.table(report_table)
        out.line(f"report written to {summary.path} and {summary.html_path}")
    out.result({"evaluation": result, "report": summary})


# Ranking figures at k, then the figures of all the lists together.
RANKING_COLUMNS = ("precision", "recall", "f1", "ndcg", "map", "hit_rate")
LIST_COLUMNS = ("coverage", "stability")


def _evaluation_table(result: EvaluateResult, implicit: bool) -> Table:
    """One row per system; rating errors only where there are ratings to predict."""
    if implicit:
        # NOTE: an implicit model predicts no value, so RMSE and MAE have no meaning.
        title = (
            f"v{result.version}: {result.rows} rows, {result.users_ranked} users ranked, "
            f"model of v{result.model_version}"
        )
        names = [*RANKING_COLUMNS, *LIST_COLUMNS]
    else:
        title = f"v{result.version}: {result.rows} ratings, model of v{result.model_version}"
        names = ["rmse", "mae", *RANKING_COLUMNS, *LIST_COLUMNS]
    table = Table(title=title)
    table.add_column("system")
    for name in names:
        heading = f"{name}@{result.k}" if name in RANKING_COLUMNS else name
        table.add_column(heading, justify="right")
    for system, values in result.metrics.items():
        table.add_row(system, *(fmt(values.get(name)) for name in names))
    return table


def _with_change(value: float | None, change: float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        text = str(value)
        return text if change is None else f"{text} ({int(change):+d})"
    return fmt(value) if change is None else f"{fmt(value)} ({change:+.4f})"
