"""Clean: for each ingested version not yet cleaned, apply the rules and drop duplicates.

Each rule removes rows for one stated reason and the count per reason is recorded; the
rows that survive form the version's clean delta.

With events or quantities (``ingest.feedback``), a row with a negative value is a
cancellation. With ``clean.cancellations: offset`` it first reduces the same user's
purchases of the same item in its own delta, the latest first and none below zero; what
is left of it offsets that pair's net purchases on the versions before (it is kept as a
negative row, which the model nets); what is left after that had nothing to undo and is
dropped. With ``drop`` every cancellation is dropped.

A row identical to a row of an earlier version on the lineage (the same user, item, value
and time) is the same data sent again, as a compressed copy of a file already ingested or
a corrected file re-sent whole, and is removed (``clean.repeated_rows: keep`` keeps it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import duckdb

from .catalog import Catalog
from .config import CleanConfig, is_implicit
from .errors import ConfigError, NothingToDo, UsageError

log = logging.getLogger(__name__)


REPEATED = "repeats a row of an earlier version"

# The delta's rows that repeat a row of an earlier version on the lineage. Only the older
# rows within the delta's time span can match, and raw_rows' zone maps on the stored
# seconds skip the rest, so a delta newer than the data held costs next to nothing.
REPEATED_SQL = """
UPDATE cleaning SET why = $why
FROM (
    SELECT DISTINCT h.user_id, h.item_id, h.rating, h.ts FROM ratings_raw h
    SEMI JOIN (
        SELECT version, line FROM raw_rows
        WHERE list_contains($older, version) AND ts_s BETWEEN $first AND $last
    ) k ON h.version = k.version AND h.line = k.line
) held
WHERE cleaning.why IS NULL AND held.user_id = cleaning.user_id
    AND held.item_id = cleaning.item_id AND held.rating = cleaning.rating
    AND held.ts = cleaning.ts
"""

# What became of each cancellation and of the purchases it offset, in the order reported.
OFFSET_IN_DELTA = "cancellation offset in the delta"
CARRIED = "cancellation kept to offset earlier purchases"
NOTHING_TO_OFFSET = "cancellation with nothing to offset"
PURCHASE_CANCELLED = "purchase cancelled in the delta"
PURCHASE_REDUCED = "purchase reduced by a cancellation in the delta"
DROPPED = "cancellation dropped (clean.cancellations: drop)"
OUTCOMES = (
    OFFSET_IN_DELTA,
    CARRIED,
    NOTHING_TO_OFFSET,
    PURCHASE_CANCELLED,
    PURCHASE_REDUCED,
    DROPPED,
)


@dataclass
class CleanResult:
    """What cleaning one version did: rows in, rows kept, and rows removed per reason.

    ``cancellations`` counts, with events or quantities, what became of each cancellation
    row and of the purchases it reduced or removed, kept rows included (a cancellation
    kept to offset earlier purchases, a purchase reduced); the rows removed are also
    among ``removed``.
    """

    version: int
    rows_in: int
    rows_out: int
    removed: dict[str, int]
    cancellations: dict[str, int] = field(default_factory=dict)


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
    max_timestamp; then, with ``dedupe: latest`` (the default for ratings), of the
    ratings of one user and item in one delta that no rule removed only the latest (by
    time, then by line) is kept; with ``dedupe: exact`` (the default for events and
    quantities) only rows of the same user, item, value and time are duplicates, and the
    first line is kept. Rows of the same pair in different deltas are all kept, but for
    a row identical to one of an earlier version (``clean.repeated_rows``). Last,
    with events or quantities, cancellations are offset or dropped (see the module's
    docstring).

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
    check_feedback(catalog, pending)
    rules = _rules(catalog, catalog.config.clean)
    results = []
    with catalog.transaction():
        for version in pending:
            if progress:
                progress(f"v{version}")
            results.append(_clean_one(catalog, version, rules))
    return results


# Clean rows of some versions from the counts clean recorded, and how many of them have
# none (a catalog from before rows_out was recorded).
RECORDED_ROWS_SQL = """
SELECT coalesce(sum(CAST(json_extract(details, '$.rows_out') AS BIGINT)), 0),
       count(*) FILTER (json_extract(details, '$.rows_out') IS NULL)
FROM stages WHERE stage = 'clean' AND list_contains($versions, version)
"""


def clean_rows(catalog: Catalog, versions: list[int]) -> int:
    """How many clean rows ``versions`` hold, from what clean recorded rather than by
    counting every row; counted only for a catalog that did not record it."""
    rows, unrecorded = catalog.rows(RECORDED_ROWS_SQL, {"versions": versions})[0]
    if unrecorded:
        rows = catalog.one(
            "SELECT count(*) FROM ratings_clean WHERE list_contains(?, version)", [versions]
        )
    return int(rows)


# The value column ingest read for each version, from the fields its layout mapped.
READ_AS_SQL = """
SELECT version,
       CASE WHEN json_exists(details, '$.layout.positions.quantity') THEN 'quantity'
            WHEN json_exists(details, '$.layout.positions.event') THEN 'event'
            ELSE 'rating' END
FROM stages WHERE stage = 'ingest' AND list_contains($versions, version) ORDER BY version
"""


def check_feedback(catalog: Catalog, versions: list[int]) -> None:
    """Refuse to go on when a version was ingested as another kind of feedback than the
    config's ``ingest.feedback``: its rows would be cleaned or learned as what they are not
    (a cron job that lost its config, say, cleaning purchases as star ratings).

    Raises
    ------
    UsageError
        Naming the first such version, before any work.
    """
    wanted = catalog.config.ingest.feedback
    for version, read in catalog.rows(READ_AS_SQL, {"versions": versions}):
        if read != wanted:
            raise UsageError(
                f"v{version} was ingested with ingest.feedback: {read}, but the config says "
                f"{wanted}; use the config it was ingested with (--config, INCR_CONFIG)"
            )


def _clean_one(catalog: Catalog, version: int, rules: tuple[str, dict[str, object]]) -> CleanResult:
    started = time.perf_counter()
    config = catalog.config.clean
    implicit = is_implicit(catalog.config)
    rule_case, params = rules
    dedupe = config.dedupe or ("exact" if implicit else "latest")
    con = catalog.con
    con.execute("DROP TABLE IF EXISTS cleaning")
    # A duplicate is, with latest, an earlier rating of the same user and item in this
    # delta (the latest one by time, then by line, is kept); with exact, a later line of
    # the same user, item, value and time.
    key = "user_id, item_id" if dedupe == "latest" else "user_id, item_id, rating, ts"
    order = "ts DESC, line DESC" if dedupe == "latest" else "line"
    why = "duplicate of a later rating" if dedupe == "latest" else "duplicate row"
    con.execute(
        f"""
        CREATE TEMP TABLE cleaning AS
        WITH ruled AS (
            SELECT *, {rule_case} AS reason FROM ratings_raw WHERE version = $version
        )
        SELECT *, rating AS value,
            coalesce(reason, CASE WHEN $dedupe AND row_number() OVER (
                PARTITION BY {key}, reason IS NULL ORDER BY {order}) > 1
                THEN $why END) AS why
        FROM ruled
        """,
        {"version": version, "dedupe": dedupe != "none", "why": why, **params},
    )
    older = catalog.lineage(version)[:-1]
    if config.repeated_rows == "drop" and older:
        first, last = con.execute(
            "SELECT CAST(floor(epoch(min(ts))) AS BIGINT), CAST(ceil(epoch(max(ts))) AS BIGINT) "
            "FROM cleaning WHERE why IS NULL"
        ).fetchall()[0]
        if first is not None:
            con.execute(
                REPEATED_SQL, {"why": REPEATED, "older": older, "first": first, "last": last}
            )
    cancellations: dict[str, int] = {}
    if implicit:
        cancellations = _cancellations(catalog, version, config.cancellations)
    # Only what clean changed is stored: the rows it kept as they were are read from the
    # raw rows (see the view ratings_clean).
    con.execute(
        "INSERT INTO clean_changes SELECT version, line, CASE WHEN why IS NULL THEN value END "
        "FROM cleaning WHERE why IS NOT NULL OR value <> rating ORDER BY line"
    )
    con.execute(
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
    con.execute("DROP TABLE cleaning")
    seconds = time.perf_counter() - started
    details: dict[str, object] = {"rows_in": rows_in, "rows_out": rows_out, "removed": removed}
    if implicit:
        details["cancellations"] = cancellations
    catalog.record_stage(version, "clean", seconds, details)
    log.debug("cleaned v%d in %.3f s", version, seconds)
    return CleanResult(version, rows_in, rows_out, removed, cancellations)


# Per cancellation and purchase left in the delta, how much of it the other side takes.
# Purchases are reduced the latest first, by what the pair's cancellations total less the
# purchases after them; cancellations take the pair's purchases in the delta in time
# order, then what is left takes the pair's net purchases on the earlier versions.
OFFSET_SQL = """
CREATE TEMP TABLE offsets AS
WITH live AS (
    SELECT rowid AS id, user_id, item_id, rating, ts, line FROM cleaning WHERE why IS NULL
),
pairs AS (
    SELECT user_id, item_id,
           sum(rating) FILTER (WHERE rating > 0) AS bought,
           -sum(rating) FILTER (WHERE rating < 0) AS cancelled
    FROM live GROUP BY ALL HAVING cancelled > 0
),
earlier AS (
    SELECT r.user_id, r.item_id, greatest(sum(r.rating), 0) AS net
    FROM ratings_clean r SEMI JOIN pairs p USING (user_id, item_id)
    WHERE list_contains($earlier, r.version)
    GROUP BY ALL
),
sides AS (
    SELECT l.*, coalesce(p.bought, 0) AS bought, p.cancelled, coalesce(e.net, 0) AS net,
           coalesce(sum(abs(l.rating)) OVER (
               PARTITION BY l.user_id, l.item_id, l.rating > 0
               ORDER BY CASE WHEN l.rating > 0 THEN -epoch_us(l.ts) ELSE epoch_us(l.ts) END,
                        CASE WHEN l.rating > 0 THEN -l.line ELSE l.line END
               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS before
    FROM live l JOIN pairs p USING (user_id, item_id)
    LEFT JOIN earlier e USING (user_id, item_id)
),
split AS (
    SELECT *,
        CASE WHEN rating < 0 THEN least(-rating, greatest(bought - before, 0)) END AS in_delta
    FROM sides
)
SELECT id, rating,
    CASE WHEN rating > 0 THEN greatest(rating - greatest(cancelled - before, 0), 0)
         ELSE -least(-rating - in_delta, greatest(net - (
             coalesce(sum(-rating - in_delta) OVER (
                 PARTITION BY user_id, item_id, rating > 0 ORDER BY ts, line
                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)), 0))
    END AS value,
    in_delta
FROM split
"""

OUTCOME_SQL = """
SELECT id, value,
    CASE WHEN rating > 0 AND value = 0 THEN $purchase_cancelled
         WHEN rating > 0 AND value < rating THEN $purchase_reduced
         WHEN rating < 0 AND value < 0 THEN $carried
         WHEN rating < 0 AND in_delta > 0 THEN $offset_in_delta
         WHEN rating < 0 THEN $nothing_to_offset
    END AS outcome
FROM offsets
"""


def _cancellations(catalog: Catalog, version: int, mode: str) -> dict[str, int]:
    """Offset or drop the cancellations (negative rows) of ``cleaning``; count outcomes.

    Rows removed get their reason in ``why``; a purchase reduced and a cancellation kept
    for earlier purchases get their new ``value``.
    """
    con = catalog.con
    if mode == "drop":
        con.execute(
            "UPDATE cleaning SET why = $dropped WHERE why IS NULL AND rating < 0",
            {"dropped": DROPPED},
        )
        n = catalog.one("SELECT count(*) FROM cleaning WHERE why = ?", [DROPPED])
        return {DROPPED: n} if n else {}

    earlier = [v for v in catalog.lineage(version) if v < version]
    con.execute("DROP TABLE IF EXISTS offsets")
    con.execute(OFFSET_SQL, {"earlier": earlier})
    outcomes = {
        "purchase_cancelled": PURCHASE_CANCELLED,
        "purchase_reduced": PURCHASE_REDUCED,
        "carried": CARRIED,
        "offset_in_delta": OFFSET_IN_DELTA,
        "nothing_to_offset": NOTHING_TO_OFFSET,
    }
    con.execute(
        f"""
        UPDATE cleaning SET value = o.value,
            why = CASE WHEN o.outcome IN ($purchase_cancelled, $offset_in_delta,
                                          $nothing_to_offset) THEN o.outcome END
        FROM ({OUTCOME_SQL}) o WHERE cleaning.rowid = o.id
        """,
        outcomes,
    )
    counts = dict(
        catalog.rows(
            f"SELECT outcome, count(*) FROM ({OUTCOME_SQL}) WHERE outcome IS NOT NULL "
            "GROUP BY outcome",
            outcomes,
        )
    )
    con.execute("DROP TABLE offsets")
    return {name: counts[name] for name in OUTCOMES if counts.get(name)}
