"""Clean: for each ingested version not yet cleaned, apply the rules and drop duplicates.

Each rule removes rows for one stated reason and the count per reason is recorded; the
rows that survive form the version's clean delta.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb

from .catalog import Catalog
from .config import CleanConfig
from .errors import ConfigError, NothingToDo

log = logging.getLogger(__name__)


@dataclass
class CleanResult:
    """What cleaning one version did: rows in, rows kept, and rows removed per reason."""

    version: int
    rows_in: int
    rows_out: int
    removed: dict[str, int]


def _utc(key: str, text: str) -> datetime:
    """An ISO time from the config as the catalog stores times: UTC, without a zone."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"clean.{key} {text!r} is not an ISO date or time; write it as 2024-01-31 or "
            "2024-01-31T12:00:00+00:00"
        ) from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def _check_pattern(catalog: Catalog, key: str, pattern: str) -> None:
    # The patterns run in DuckDB (RE2 syntax), so DuckDB is the one to ask.
    try:
        catalog.one("SELECT regexp_full_match('', ?)", [pattern])
    except duckdb.Error as exc:
        problem = str(exc).strip().splitlines()[0]
        raise ConfigError(
            f"clean.{key} {pattern!r} is not a valid regular expression: {problem}"
        ) from None


def _rules(catalog: Catalog, config: CleanConfig) -> tuple[str, dict[str, object]]:
    """A SQL CASE naming why a row is dropped, in the order the rules apply.

    Every rule is checked here, so that a bad one stops the command before any work.
    """
    whens: list[str] = []
    params: dict[str, object] = {}
    if config.exclude_users:
        _check_pattern(catalog, "exclude_users", config.exclude_users)
        whens.append("WHEN regexp_full_match(user_id, $users) THEN 'user excluded by rule'")
        params["users"] = config.exclude_users
    if config.exclude_items:
        _check_pattern(catalog, "exclude_items", config.exclude_items)
        whens.append("WHEN regexp_full_match(item_id, $items) THEN 'item excluded by rule'")
        params["items"] = config.exclude_items
    tmin = _utc("min_timestamp", config.min_timestamp) if config.min_timestamp else None
    tmax = _utc("max_timestamp", config.max_timestamp) if config.max_timestamp else None
    if tmin is not None and tmax is not None and tmin > tmax:
        raise ConfigError(
            f"clean.min_timestamp {config.min_timestamp!r} is after clean.max_timestamp "
            f"{config.max_timestamp!r}, so every row would be removed; swap or fix them"
        )
    if tmin is not None:
        whens.append("WHEN ts < $tmin THEN 'older than min_timestamp'")
        params["tmin"] = tmin
    if tmax is not None:
        whens.append("WHEN ts > $tmax THEN 'newer than max_timestamp'")
        params["tmax"] = tmax
    case = "CASE " + " ".join(whens) + " END" if whens else "CAST(NULL AS VARCHAR)"
    return case, params


def clean_pending(
    catalog: Catalog, progress: Callable[[str], None] | None = None
) -> list[CleanResult]:
    """Clean every version on the head's lineage that was ingested but not cleaned.

    Rules apply first, in the order exclude_users, exclude_items, min_timestamp,
    max_timestamp; then, with ``dedupe: latest``, of the ratings of one user and item
    in one delta that no rule removed only the latest (by time, then by line) is kept.
    Ratings of the same pair in different deltas are all kept.

    Parameters
    ----------
    catalog
        A catalog open for writing.
    progress
        Called with each version's name before it is cleaned.

    Returns
    -------
    list of CleanResult
        One per version cleaned, oldest first.

    Raises
    ------
    NothingToDo
        If no version waits to be cleaned.
    ConfigError
        If a pattern or time bound in ``clean`` cannot be used; nothing is cleaned.
    """
    pending = catalog.pending("clean", after="ingest")
    if not pending:
        raise NothingToDo("every version is already cleaned; run 'incr ingest FILE' first")
    rules = _rules(catalog, catalog.config.clean)
    results = []
    with catalog.transaction():
        for version in pending:
            if progress:
                progress(f"v{version}")
            results.append(_clean_one(catalog, version, rules))
    return results


def _clean_one(catalog: Catalog, version: int, rules: tuple[str, dict[str, object]]) -> CleanResult:
    started = time.perf_counter()
    config = catalog.config.clean
    rule_case, params = rules
    dedupe = (config.dedupe or "latest") == "latest"
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
            "SELECT reason, rows FROM clean_removed WHERE version = ? ORDER BY rows DESC, reason",
            [version],
        )
    )
    rows_in = catalog.one("SELECT count(*) FROM cleaning")
    rows_out = rows_in - sum(removed.values())
    # The temporary table holds the whole delta; it goes as soon as the delta is stored.
    catalog.con.execute("DROP TABLE cleaning")
    seconds = time.perf_counter() - started
    catalog.record_stage(
        version,
        "clean",
        seconds,
        {"rows_in": rows_in, "rows_out": rows_out, "removed": removed},
    )
    log.debug("cleaned v%d in %.3f s", version, seconds)
    return CleanResult(version, rows_in, rows_out, removed)
