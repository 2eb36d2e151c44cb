"""The command that gets recommendations out: recommend."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..catalog import parse_version
from ..errors import UsageError
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


def recommend(
    user: Annotated[str | None, typer.Option("--user", help="List this user's top items.")] = None,
    all_users: Annotated[
        bool, typer.Option("--all", help="Write every user's top items to --out.")
    ] = False,
    k: Annotated[
        int | None,
        typer.Option(
            "-k",
            min=1,
            help="Items per user (default: evaluate.k in the config).",
            show_default=False,
        ),
    ] = None,
    out_file: Annotated[
        Path | None,
        typer.Option("--out", help="With --all: the .csv or .parquet file to write."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", help="Use the model trained through this version, e.g. v3."),
    ] = None,
    catalog: CatalogOpt = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    wait: WaitOpt = None,
) -> None:
    """List a user's top items, or write every user's.

    An item the user already has is left out, unless evaluate.exclude_seen is false (as
    for a shop, whose customers buy again). A user the model does not know gets the most
    popular items, marked as that fallback.

    Example: incr recommend --user 196 -k 5
    """
    # NOTE: imported here, not at the top, so that other commands start without numpy.
    from ..recommend import recommend_all, recommend_user

    common = Common(catalog, config, json, quiet, debug, wait)
    out = Output(common)
    if (user is None) == (not all_users):
        raise UsageError("give either --user USER or --all --out FILE")
    if all_users and out_file is None:
        raise UsageError("--all writes a file: add --out FILE.csv or --out FILE.parquet")
    if user is not None and out_file is not None:
        raise UsageError("--out goes with --all; --user prints its list")
    check_output_file(out_file, "--out", "recs.csv")
    version = parse_version(model) if model is not None else None
    args = {"user": user, "all": all_users, "k": k, "out": out_file, "model": model}

    if user is not None:
        with session(common, "recommend", args, write=False) as cat:
            result = recommend_user(cat, user, k=k, model_version=version)
        fallback = result.source != "model"
        table = Table(
            title=f"top {result.k} for user {result.user_id!r}",
            caption="FALLBACK: most popular" if fallback else f"model of v{result.model_version}",
        )
        table.add_column("rank", justify="right")
        table.add_column("item")
        table.add_column("ratings" if fallback else "score", justify="right")
        for item in result.items:
            score = str(int(item.score)) if fallback else fmt(item.score, 3)
            table.add_row(str(item.rank), item.item_id, score)
        if fallback:
            out.line(
                f"user {result.user_id!r} is unknown to the model of v{result.model_version}: "
                "listing the most popular items instead, scored by their number of ratings"
            )
        out.table(table)
        out.result(result)
        return

    assert out_file is not None
    # recommend_all marks the start of each chunk of users on the bar.
    with (
        session(common, "recommend", args, write=False) as cat,
        out.progress("recommend", None) as progress,
    ):
        exported = recommend_all(cat, out_file, k=k, model_version=version, progress=progress)
    out.line(
        f"wrote {exported.rows} recommendations for {exported.users} users "
        f"({exported.users_fallback} from the most-popular fallback) to {exported.path}, "
        f"model of v{exported.model_version}"
    )
    out.result(exported)
