"""Commands that check and tidy the catalog: verify, gc."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import IntegrityError
from ..integrity import gc as collect
from ..integrity import verify as check
from ._common import (
    CatalogOpt,
    Common,
    ConfigOpt,
    DebugOpt,
    JsonOpt,
    Output,
    QuietOpt,
    WaitOpt,
    session,
)


def verify(
    catalog: CatalogOpt = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    wait: WaitOpt = None,
) -> None:
    """Check the catalog's invariants and every model file; exit 7 on any problem.

    Example: incr verify
    """
    common = Common(catalog, config, json, quiet, debug, wait)
    out = Output(common)
    with session(common, "verify", {}, write=False) as cat:
        result = check(cat)
    for p in result.problems:
        out.line(f"{p.check}: {p.message}; repair: {p.repair}")
    if result.unreferenced_files:
        names = ", ".join(result.unreferenced_files)
        out.line(f"note: model files no version references (run 'incr gc'): {names}")
    out.result({"ok": result.ok, **vars(result)})
    if not result.ok:
        raise IntegrityError(
            f"{len(result.problems)} problem(s) found; each line above names its repair"
        )
    out.line(f"ok: {result.versions} versions and {result.models_checked} model files checked")


def gc(
    keep: Annotated[
        int,
        typer.Option(
            min=0, help="Keep the N most recent versions (and their ancestors) on any branch."
        ),
    ] = 10,
    catalog: CatalogOpt = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    wait: WaitOpt = None,
) -> None:
    """Remove rolled-back versions older than the --keep most recent, and stray model files.

    A version is removed with its rows and model files when it is off the head's lineage,
    is not among the N most recent versions and is no ancestor of one of them. The head's
    lineage is never touched. Example: incr gc --keep 3
    """
    common = Common(catalog, config, json, quiet, debug, wait)
    out = Output(common)
    with session(common, "gc", {"keep": keep}) as cat:
        result = collect(cat, keep)
    removed = ", ".join(f"v{v}" for v in result.removed_versions) or "no versions"
    out.line(f"removed {removed} and {len(result.removed_files)} model file(s)")
    out.result(result)
