"""Featurize: per-user and per-item rating statistics, updated from each clean delta.

For every user (item) a version touches, one row holds the running totals as of that
version: count, mean, sum of squared deviations (for the variance), first and last time
seen. The new row merges the previous row on the lineage with the delta's own totals, so
older deltas are never read again; the result equals a computation over all data at once.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from .catalog import Catalog
from .errors import NothingToDo

log = logging.getLogger(__name__)

ENTITIES = {"user": ("user_features", "user_id"), "item": ("item_features", "item_id")}

# Two sets of totals (a: before, b: the delta) merge exactly (Chan et al., 1979):
#   n = na + nb,  d = mean_b - mean_a,  mean = mean_a + d * nb / n,
#   m2 = m2_a + m2_b + d^2 * na * nb / n
# The merged rows go to a temporary table first, which also tells which ids are new.
MERGE_SQL = """
CREATE OR REPLACE TEMP TABLE merged AS
WITH delta AS (
    SELECT {key} AS id, count(*) AS n, avg(rating) AS mean,
           coalesce(var_pop(rating) * count(*), 0) AS m2,
           min(ts) AS first_ts, max(ts) AS last_ts
    FROM ratings_clean WHERE version = $version GROUP BY {key}
),
before AS (
    SELECT f.* FROM {table} f
    WHERE list_contains($ancestors, f.version)
      AND f.{key} IN (SELECT id FROM delta)
    QUALIFY row_number() OVER (PARTITION BY f.{key} ORDER BY f.version DESC) = 1
)
SELECT $version, d.id,
       coalesce(b.n, 0) + d.n,
       CASE WHEN b.n IS NULL THEN d.mean
            ELSE b.mean + (d.mean - b.mean) * d.n / (b.n + d.n) END,
       CASE WHEN b.n IS NULL THEN d.m2
            ELSE b.m2 + d.m2 + (d.mean - b.mean) ^ 2 * b.n * d.n / (b.n + d.n) END,
       least(coalesce(b.first_ts, d.first_ts), d.first_ts),
       greatest(coalesce(b.last_ts, d.last_ts), d.last_ts),
       b.n IS NULL AS new
FROM delta d LEFT JOIN before b ON b.{key} = d.id
"""

# The features as of a version: per id, the newest row on that version's lineage.
AS_OF_SQL = """
SELECT {key} AS id, n, mean, m2 / n AS variance, first_ts, last_ts
FROM {table} WHERE list_contains($lineage, version)
QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY version DESC) = 1
"""


@dataclass
class FeaturizeResult:
    """Users and items one version gave a new feature row, and how many its lineage holds."""

    version: int
    users_updated: int
    items_updated: int
    users_total: int
    items_total: int


def featurize_pending(
    catalog: Catalog, progress: Callable[[str], None] | None = None
) -> list[FeaturizeResult]:
    """Featurize every cleaned version on the head's lineage, oldest first.

    Every clean row counts: a user who rates an item again in a later delta adds a
    second rating to both totals.

    Parameters
    ----------
    catalog
        A catalog open for writing.
    progress
        Called with each version's name before it is featurized.

    Returns
    -------
    list of FeaturizeResult
        One per version featurized, oldest first.

    Raises
    ------
    NothingToDo
        If no cleaned version waits for features.
    """
    pending = catalog.pending("featurize", after="clean")
    if not pending:
        raise NothingToDo("no cleaned version waits for features; run 'incr clean' first")
    results = []
    with catalog.transaction():
        for version in pending:
            if progress:
                progress(f"v{version}")
            results.append(_featurize_one(catalog, version))
    return results


def _featurize_one(catalog: Catalog, version: int) -> FeaturizeResult:
    started = time.perf_counter()
    lineage = catalog.lineage(version)
    parent = _recorded_counts(catalog, lineage[-2]) if len(lineage) > 1 else {}
    counts = {}
    for entity, (table, key) in ENTITIES.items():
        catalog.con.execute(
            MERGE_SQL.format(table=table, key=key),
            {"version": version, "ancestors": lineage[:-1]},
        )
        catalog.con.execute(f"INSERT INTO {table} SELECT * EXCLUDE (new) FROM merged")
        updated, new = catalog.rows("SELECT count(*), count(*) FILTER (new) FROM merged")[0]
        catalog.con.execute("DROP TABLE merged")
        counts[f"{entity}s_updated"] = updated
        # The total as of the parent plus the ids new in this delta; counted afresh only
        # when the parent's count was not recorded.
        total = parent.get(f"{entity}s_total")
        if isinstance(total, int) and len(lineage) > 1:
            counts[f"{entity}s_total"] = total + new
        else:
            counts[f"{entity}s_total"] = catalog.one(
                f"SELECT count(DISTINCT {key}) FROM {table} WHERE list_contains(?, version)",
                [lineage],
            )
    seconds = time.perf_counter() - started
    catalog.record_stage(version, "featurize", seconds, counts)
    log.debug("featurized v%d in %.3f s", version, seconds)
    return FeaturizeResult(version, **counts)


def _recorded_counts(catalog: Catalog, version: int) -> dict[str, object]:
    """The counts a version's featurize stage recorded, or nothing."""
    details = catalog.one(
        "SELECT details FROM stages WHERE version = ? AND stage = 'featurize'", [version]
    )
    return json.loads(details) if details else {}


def features_as_of(catalog: Catalog, entity: str, version: int) -> list[tuple]:
    """The features of every user (or item) on the lineage of ``version``.

    Parameters
    ----------
    catalog
        An open catalog.
    entity
        ``"user"`` or ``"item"``.
    version
        The version whose lineage counts.

    Returns
    -------
    list of tuple
        ``(id, n, mean, variance, first_ts, last_ts)`` sorted by id; the variance is the
        population variance of the ratings.

    Raises
    ------
    ValueError
        If ``entity`` is neither ``"user"`` nor ``"item"``.
    """
    if entity not in ENTITIES:
        raise ValueError(f"entity must be one of {sorted(ENTITIES)}, got {entity!r}")
    table, key = ENTITIES[entity]
    return catalog.rows(
        AS_OF_SQL.format(table=table, key=key) + " ORDER BY id",
        {"lineage": catalog.lineage(version)},  # type: ignore[arg-type]
    )
