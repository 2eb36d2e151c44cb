"""Clean: for each ingested version not yet cleaned, apply the rules and drop duplicates.

Each rule removes rows for one stated reason and the count per reason is recorded; the
rows that survive form the version's clean delta.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from .catalog import Catalog
from .config import CleanConfig
from .errors import NothingToDo

log = logging.getLogger(__name__)


@dataclass
class CleanResult:
    version: int
    rows_in: int
    rows_out: int
    removed: dict[str, int]


def _rules(config: CleanConfig) -> tuple[str, dict[str, object]]:
    """A SQL CASE naming why a row is dropped, in the order the rules apply."""
    whens: list[str] = []
    params: dict[str, object] = {}
    if config.exclude_users:
        whens.append("WHEN regexp_full_match(user_id, $users) THEN 'user excluded by rule'")
        params["users"] = config.exclude_users
    if config.exclude_items:
        whens.append("WHEN regexp_full_match(item_id, $items) THEN 'item excluded by rule'")
        params["items"] = config.exclude_items
    if config.min_timestamp:
        whens.append("WHEN ts < CAST($tmin AS TIMESTAMP) THEN 'older than min_timestamp'")
        params["tmin"] = config.min_timestamp
    if config.max_timestamp:
        whens.append("WHEN ts > CAST($tmax AS TIMESTAMP) THEN 'newer than max_timestamp'")
        params["tmax"] = config.max_timestamp
    case = "CASE " + " ".join(whens) + " END" if whens else "CAST(NULL AS VARCHAR)"
    return case, params


def clean_pending(
    catalog: Catalog, progress: Callable[[str], None] | None = None
) -> list[CleanResult]:
    """Clean every version on the head's lineage that was ingested but not cleaned."""
    pending = catalog.pending("clean", after="ingest")
    if not pending:
        raise NothingToDo("every version is already cleaned; run 'incr ingest FILE' first")
    results = []
    with catalog.transaction():
        for version in pending:
            if progress:
                progress(f"v{version}")
            results.append(_clean_one(catalog, version))
    return results


def _clean_one(catalog: Catalog, version: int) -> CleanResult:
    started = time.perf_counter()
    config = catalog.config.clean
    rule_case, params = _rules(config)
    dedupe = config.dedupe == "latest"
    catalog.con.execute("DROP TABLE IF EXISTS cleaning")
    # A duplicate is an earlier rating of the same user and item in this delta; the
    # latest one (by time, then by line) is kept.
    catalog.con.execute(
        f"""
        CREATE TEMP TABLE cleaning AS
        WITH ruled AS (
            SELECT *, {rule_case} AS reason FROM ratings_raw WHERE version = $version
        )
        SELECT *,
            coalesce(reason, CASE WHEN $dedupe AND row_number() OVER (
                PARTITION BY user_id, item_id, reason IS NULL
                ORDER BY ts DESC, line DESC) > 1
                THEN 'duplicate of a later rating' END) AS why
        FROM ruled
        """,
        {"version": version, "dedupe": dedupe, **params},
    )
    catalog.con.execute(
        "INSERT INTO ratings_clean SELECT version, user_id, item_id, rating, ts "
        "FROM cleaning WHERE why IS NULL ORDER BY ts, line"
    )
    catalog.con.execute(
        "INSERT INTO clean_removed SELECT $version, why, count(*) FROM cleaning "
        "WHERE why IS NOT NULL GROUP BY why",
        {"version": version},
    )
    removed = dict(
        catalog.rows(
            "SELECT reason, rows FROM clean_removed WHERE version = ? ORDER BY rows DESC",
            [version],
        )
    )
    rows_in = catalog.one("SELECT count(*) FROM cleaning")
    rows_out = rows_in - sum(removed.values())
    seconds = time.perf_counter() - started
    catalog.record_stage(
        version,
        "clean",
        seconds,
        {"rows_in": rows_in, "rows_out": rows_out, "removed": removed},
    )
    log.debug("cleaned v%d in %.3f s", version, seconds)
    return CleanResult(version, rows_in, rows_out, removed)
