"""Commands over the version graph: rollback, log, status."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from ..catalog import parse_version
from ..history import VersionInfo, version_log
from ..history import rollback as rollback_to
from ..history import status as catalog_status
from ._common import (
    CatalogOpt,
    Common,
    ConfigOpt,
    DebugOpt,
    JsonOpt,
    Output,
    QuietOpt,
    WaitOpt,
    fmt,
    session,
)


def rollback(
    to: Annotated[str, typer.Option("--to", help="The version to make the head, e.g. v3.")],
    catalog: CatalogOpt = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    wait: WaitOpt = None,
) -> None:
    """Make a version the head for data, features and model; later versions are kept.

    Example: incr rollback --to v3
    """
    common = Common(catalog, config, json, quiet, debug, wait)
    out = Output(common)
    version = parse_version(to)
    with session(common, "rollback", {"to": to}) as cat:
        result = rollback_to(cat, version)
    model = (
        f"model m{result.model_id} of v{result.model_version}" if result.model_id else "no model"
    )
    rolled = ", ".join(f"v{v}" for v in result.rolled_back) or "none"
    out.line(f"head is v{result.version} (was v{result.previous}); serving {model}")
    out.line(f"rolled back (kept): {rolled}")
    out.result(result)


def log(
    catalog: CatalogOpt = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    wait: WaitOpt = None,
) -> None:
    """Show every version with its parent, stages, models and state.

    Example: incr log --json
    """
    common = Common(catalog, config, json, quiet, debug, wait)
    out = Output(common)
    with session(common, "log", {}, write=False) as cat:
        infos = version_log(cat)
    table = Table()
    for column in (
        "version",
        "parent",
        "state",
        "created",
        "source",
        "accepted",
        "rejected",
        "stages",
        "models",
        "rmse",
        "gate",
    ):
        table.add_column(column)
    for i in infos:
        table.add_row(
            f"v{i.version}",
            f"v{i.parent}" if i.parent else "-",
            i.state,
            i.created_at,
            _source(i.source, i.files),
            str(i.rows_accepted),
            str(i.rows_rejected),
            ",".join(_stage_names(i)),
            ",".join(f"m{m}" for m in i.models) or "-",
            fmt(i.rmse),
            "\n".join(f"m{g['model_id']} {g['decision']}: {g['reason']}" for g in i.gate) or "-",
            style="bold" if i.state == "head" else ("dim" if i.state == "rolled back" else None),
        )
    if infos:
        out.table(table)
    else:
        out.line("no versions yet; run 'incr ingest FILE'")
    out.result(infos)


def status(
    catalog: CatalogOpt = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    wait: WaitOpt = None,
) -> None:
    """Show the head, what waits for which stage, the serving model and the last metrics.

    Example: incr status
    """
    common = Common(catalog, config, json, quiet, debug, wait)
    out = Output(common)
    with session(common, "status", {}, write=False) as cat:
        s = catalog_status(cat)
    out.line(f"catalog  {s.catalog}")
    out.line(
        f"head     {'v' + str(s.head) if s.head else 'none'} "
        f"({len(s.lineage)} on its lineage, {s.rolled_back} rolled back)"
    )
    if s.source:
        out.line(f"source   v{s.source['version']}: {_source(s.source['path'], s.source['files'])}")
    out.line(f"data     {s.clean_rows} clean ratings, {s.users} users, {s.items} items")
    for stage, versions in s.pending.items():
        if versions:
            names = ", ".join(f"v{v}" for v in versions)
            out.line(f"pending  {stage}: {names} (run 'incr {stage}')")
    if s.model:
        m = s.model
        out.line(f"model    m{m['model_id']} ({m['kind']}) trained through v{m['version']}")
    else:
        out.line("model    none yet (run 'incr update')")
    if s.last_gate and s.last_gate["decision"] != "promoted":
        g = s.last_gate
        out.line(f"gate     m{g['model_id']} of v{g['version']} {g['decision']}: {g['reason']}")
    if s.last_metrics:
        model_figures = s.last_metrics["figures"].get("model", {})
        base = s.last_metrics["figures"].get("global_mean", {})
        figures = [f"ndcg {fmt(model_figures.get('ndcg'))}"]
        # A model of purchases or views predicts no rating: it has no RMSE to show.
        if model_figures.get("rmse") is not None:
            rmse = f"rmse {fmt(model_figures['rmse'])} (global mean {fmt(base.get('rmse'))})"
            figures.insert(0, rmse)
        out.line(f"metrics  v{s.last_metrics['delta']}: {', '.join(figures)}")
    out.result(s)


def _stage_names(info: VersionInfo) -> list[str]:
    """A version's stages; an update whose every model the gate refused says so, since
    'incr status' lists the version as still waiting for one."""
    rejected = {g["model_id"] for g in info.gate if g["decision"] == "rejected"}
    refused = bool(info.models) and set(info.models) <= rejected
    return [f"{s} (refused)" if s == "update" and refused else s for s in info.stages]


def _source(path: str | None, files: list[str]) -> str:
    """A version's source in a table cell: the file's name, or a folder's with its count."""
    name = (path or "-").rsplit("/", 1)[-1]
    return f"{name} ({len(files)} files)" if len(files) > 1 else name
