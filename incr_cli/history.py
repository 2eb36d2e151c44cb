"""The version graph: rollback, log and status.

Every table is keyed by the version that wrote its rows and nothing is rewritten, so the
state as of a version is whatever its lineage holds. A rollback therefore only moves the
head: one row in ``meta`` and one in ``head_moves``, whatever the size of the data.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from .artifacts import serving_model
from .catalog import Catalog
from .clean import clean_rows
from .errors import NothingToDo
from .featurize import ENTITIES

log = logging.getLogger(__name__)

STAGES = ("ingest", "clean", "featurize", "update")

# The headline figures of the newest evaluation of each delta.
LAST_METRICS_SQL = """
SELECT version, model_id, system, metric, value, created_at FROM metrics
WHERE list_contains($lineage, version)
QUALIFY dense_rank() OVER (ORDER BY created_at DESC) = 1
ORDER BY system, metric
"""

# Per model, the quality gate's decision when it was not a plain promotion.
GATE_SQL = """
SELECT version, model_id, decision, reason FROM gate_decisions
WHERE decision <> 'promoted' ORDER BY model_id
"""

# The newest run's decision on the head's lineage: its candidate's row.
LAST_GATE_SQL = """
SELECT model_id, version, current_model_id, decision, reason, holdout_rows, figures
FROM gate_decisions WHERE list_contains(?, version) AND model_id = candidate_id
ORDER BY model_id DESC LIMIT 1
"""


@dataclass
class RollbackResult:
    version: int
    previous: int | None
    rolled_back: list[int]
    model_id: int | None
    model_version: int | None


@dataclass
class VersionInfo:
    version: int
    parent: int | None
    state: str
    created_at: str
    source: str | None
    rows_read: int | None
    rows_accepted: int | None
    rows_rejected: int | None
    stages: list[str]
    models: list[int]
    rmse: float | None
    gate: list[dict[str, Any]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


@dataclass
class Status:
    catalog: str
    head: int | None
    lineage: list[int]
    versions: int
    rolled_back: int
    clean_rows: int
    users: int
    items: int
    pending: dict[str, list[int]]
    model: dict[str, Any] | None
    last_metrics: dict[str, Any] = field(default_factory=dict)
    last_gate: dict[str, Any] | None = None
    source: dict[str, Any] | None = None


def rollback(catalog: Catalog, to: int) -> RollbackResult:
    """Make ``to`` the head for data, features and model, in one transaction.

    Later versions stay in the catalog, shown as rolled back; the next ingest starts a
    new branch from ``to``. Rolling forward to a rolled-back version works the same way.
    """
    catalog.require(to)
    previous = catalog.head()
    if previous == to:
        raise NothingToDo(f"v{to} is already the head; nothing to roll back")
    with catalog.transaction():
        catalog.move_head(to)
    lineage = set(catalog.lineage(to))
    rolled_back = [v for v in _all_versions(catalog) if v not in lineage]
    model = serving_model(catalog, to)
    log.debug("head moved from v%s to v%d", previous, to)
    return RollbackResult(
        to,
        previous,
        rolled_back,
        model.model_id if model else None,
        model.version if model else None,
    )


def _all_versions(catalog: Catalog) -> list[int]:
    return [row[0] for row in catalog.rows("SELECT version FROM versions ORDER BY version")]


def version_log(catalog: Catalog) -> list[VersionInfo]:
    """Every version, oldest first, with its stages, models and state.

    The state is ``head``, ``active`` (on the head's lineage) or ``rolled back``.
    """
    head = catalog.head()
    lineage = set(catalog.lineage())
    stages: dict[int, list[str]] = {}
    for version, stage in catalog.rows("SELECT version, stage FROM stages"):
        stages.setdefault(version, []).append(stage)
    models: dict[int, list[int]] = {}
    for version, model_id in catalog.rows("SELECT version, model_id FROM models ORDER BY model_id"):
        models.setdefault(version, []).append(model_id)
    gate: dict[int, list[dict[str, Any]]] = {}
    for version, model_id, decision, reason in catalog.rows(GATE_SQL):
        gate.setdefault(version, []).append(
            {"model_id": model_id, "decision": decision, "reason": reason}
        )
    rmse = dict(
        catalog.rows(
            "SELECT version, arg_max(value, created_at) FROM metrics "
            "WHERE system = 'model' AND metric = 'rmse' GROUP BY version"
        )
    )
    files = _source_files(catalog)
    infos = []
    for row in catalog.rows(
        "SELECT version, parent, created_at, source_path, rows_read, rows_accepted, "
        "rows_rejected FROM versions ORDER BY version"
    ):
        version, parent, created_at, source, read, accepted, rejected = row
        if version == head:
            state = "head"
        elif version in lineage:
            state = "active"
        else:
            state = "rolled back"
        infos.append(
            VersionInfo(
                version,
                parent,
                state,
                created_at.strftime("%Y-%m-%d %H:%M"),
                source,
                read,
                accepted,
                rejected,
                [s for s in STAGES if s in stages.get(version, [])],
                models.get(version, []),
                rmse.get(version),
                gate.get(version, []),
                files.get(version, []),
            )
        )
    return infos


def _source_files(catalog: Catalog, version: int | None = None) -> dict[int, list[str]]:
    """The files each version was ingested from (all versions, or one), in order.

    Versions ingested before the files were recorded have none.
    """
    rows = catalog.rows(
        "SELECT version, json_extract_string(details, '$.files[*].path') FROM stages "
        "WHERE stage = 'ingest' AND (? IS NULL OR version = ?)",
        [version, version],
    )
    return {v: list(paths or []) for v, paths in rows}


def status(catalog: Catalog) -> Status:
    """The head, what waits for which stage, the serving model and the last metrics."""
    head = catalog.head()
    lineage = catalog.lineage()
    versions = len(_all_versions(catalog))
    pending = {
        "clean": catalog.pending("clean", after="ingest"),
        "featurize": catalog.pending("featurize", after="clean"),
        "update": _pending_update(catalog, lineage),
    }
    clean_rows, users, items = _data_counts(catalog, lineage)
    model = None
    if head is not None:
        record = serving_model(catalog, head)
        if record is not None:
            model = {
                "model_id": record.model_id,
                "version": record.version,
                "kind": record.kind,
                "file": record.path,
                "rows_trained": record.rows_trained,
            }
    return Status(
        str(catalog.path),
        head,
        lineage,
        versions,
        versions - len(lineage),
        int(clean_rows),
        int(users),
        int(items),
        pending,
        model,
        _last_metrics(catalog, lineage),
        _last_gate(catalog, lineage),
        _head_source(catalog, head),
    )


# Each stage records its counts, so status adds them up instead of reading every row:
# clean rows are the sum of clean's rows_out on the lineage; users and items are the
# totals featurize recorded for its newest version there, plus the ids first seen in
# cleaned versions after it, found against the feature rows (one row per id and version).
FEATURIZED_SQL = """
SELECT version, CAST(json_extract(details, '$.users_total') AS BIGINT),
       CAST(json_extract(details, '$.items_total') AS BIGINT)
FROM stages WHERE stage = 'featurize' AND list_contains($lineage, version)
ORDER BY version DESC LIMIT 1
"""
NEW_IDS_SQL = """
SELECT count(DISTINCT r.{key}) FROM ratings_clean r
WHERE list_contains($after, r.version) AND NOT EXISTS (
    SELECT 1 FROM {table} f WHERE f.{key} = r.{key} AND list_contains($before, f.version))
"""


def _data_counts(catalog: Catalog, lineage: list[int]) -> tuple[int, int, int]:
    """Clean rows, users and items on the lineage, from the counts the stages recorded."""
    rows = clean_rows(catalog, lineage)
    featurized = catalog.rows(FEATURIZED_SQL, {"lineage": lineage})
    version, users, items = featurized[0] if featurized else (None, 0, 0)
    if users is None or items is None:  # a catalog from before the totals were recorded
        version, users, items = None, 0, 0
    before = lineage[: lineage.index(version) + 1] if version is not None else []
    after = lineage[len(before) :]
    if after:
        users, items = (
            total
            + catalog.one(
                NEW_IDS_SQL.format(table=table, key=key), {"after": after, "before": before}
            )
            for total, (table, key) in zip((users, items), ENTITIES.values(), strict=True)
        )
    return int(rows), int(users), int(items)


def _head_source(catalog: Catalog, head: int | None) -> dict[str, Any] | None:
    """The path the head version was ingested from, and its files."""
    if head is None:
        return None
    path = catalog.one("SELECT source_path FROM versions WHERE version = ?", [head])
    return {"version": head, "path": path, "files": _source_files(catalog, head).get(head, [])}


def _last_gate(catalog: Catalog, lineage: list[int]) -> dict[str, Any] | None:
    """The quality gate's newest decision on the lineage, with its figures."""
    rows = catalog.rows(LAST_GATE_SQL, [lineage])
    if not rows:
        return None
    model_id, version, current, decision, reason, held_out, figures = rows[0]
    return {
        "model_id": model_id,
        "version": version,
        "current_model_id": current,
        "decision": decision,
        "reason": reason,
        "holdout_rows": held_out,
        "figures": json.loads(figures),
    }


def _pending_update(catalog: Catalog, lineage: list[int]) -> list[int]:
    """Cleaned versions after the serving model's version, which 'incr update' learns."""
    if not lineage:
        return []
    record = serving_model(catalog, lineage[-1])
    start = lineage.index(record.version) + 1 if record else 0
    return [v for v in lineage[start:] if catalog.stage_done(v, "clean")]


def _last_metrics(catalog: Catalog, lineage: list[int]) -> dict[str, Any]:
    rows = catalog.rows(LAST_METRICS_SQL, {"lineage": lineage})
    if not rows:
        return {}
    version, model_id = rows[0][0], rows[0][1]
    figures: dict[str, dict[str, float | None]] = {}
    for _, _, system, metric, value, _ in rows:
        figures.setdefault(system, {})[metric] = value
    return {
        "delta": version,
        "model_id": model_id,
        "evaluated_at": rows[0][5].isoformat(sep=" ", timespec="seconds"),
        "figures": json.loads(json.dumps(figures)),
    }
