"""Commands that build data versions: init, ingest, clean, featurize."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..clean import clean_pending
from ..featurize import featurize_pending
from ..ingest import ingest_files
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


def init(
    catalog: CatalogOpt = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    wait: WaitOpt = None,
) -> None:
    """Create an empty catalog (other commands also create it on first use).

    Example: incr init --catalog shop/.incr/catalog.duckdb
    """
    common = Common(catalog, config, json, quiet, debug, wait)
    out = Output(common)
    with session(common, "init", {}, create=True) as cat:
        result = {"catalog": str(cat.path), "head": cat.head()}
    out.line(f"catalog ready at {result['catalog']}")
    out.result(result)


def ingest(
    files: Annotated[
        list[Path],
        typer.Argument(
            help="Files of interactions (CSV, TSV, either gzip-compressed, or Parquet), "
            "oldest first; a folder or a quoted glob is one version made of all its files.",
            show_default=False,
        ),
    ],
    catalog: CatalogOpt = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    wait: WaitOpt = None,
) -> None:
    """Turn each file, folder or glob into a new data version, quarantining bad rows.

    Example: incr ingest new_ratings.csv 'inbox/2026-12-04/*.parquet'
    """
    common = Common(catalog, config, json, quiet, debug, wait)
    out = Output(common)
    with (
        session(common, "ingest", {"files": [str(f) for f in files]}, create=True) as cat,
        out.progress("ingest", len(files)) as progress,
    ):
        results = ingest_files(cat, files, progress)
    for r in results:
        if r.skipped:
            out.line(f"skipped {r.path}: {r.skipped}")
            continue
        reasons = ", ".join(f"{reason}: {n}" for reason, n in r.reasons.items())
        count = f" ({len(r.files)} files)" if len(r.files) > 1 else ""
        out.line(
            f"v{r.version} {r.path}{count}: {r.rows_read} read, {r.rows_accepted} accepted, "
            f"{r.rows_rejected} rejected" + (f" ({reasons})" if reasons else "")
        )
    out.result(results)


def clean(
    catalog: CatalogOpt = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    wait: WaitOpt = None,
) -> None:
    """Drop duplicates and apply the clean rules to every version not yet cleaned.

    Example: incr clean
    """
    common = Common(catalog, config, json, quiet, debug, wait)
    out = Output(common)
    with session(common, "clean", {}) as cat, out.progress("clean", None) as progress:
        results = clean_pending(cat, progress)
    for r in results:
        removed = ", ".join(f"{why}: {n}" for why, n in r.removed.items()) or "nothing removed"
        out.line(f"v{r.version}: {r.rows_out} of {r.rows_in} rows kept ({removed})")
        if r.cancellations:
            outcomes = ", ".join(f"{what}: {n}" for what, n in r.cancellations.items())
            out.line(f"v{r.version} cancellations: {outcomes}")
    out.result(results)


def featurize(
    catalog: CatalogOpt = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    wait: WaitOpt = None,
) -> None:
    """Update per-user and per-item features from each new clean delta.

    Example: incr featurize
    """
    common = Common(catalog, config, json, quiet, debug, wait)
    out = Output(common)
    with session(common, "featurize", {}) as cat, out.progress("featurize", None) as progress:
        results = featurize_pending(cat, progress)
    for r in results:
        out.line(
            f"v{r.version}: {r.users_updated} users and {r.items_updated} items updated "
            f"({r.users_total} users, {r.items_total} items in all)"
        )
    out.result(results)
