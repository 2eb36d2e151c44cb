"""Update: train the model on each new clean delta, one model per version.

Starting from the model that serves as of the base version, each pending version's clean
delta is learned by ``partial_fit``, mixed with a replay sample of older ratings so that
the model does not drift towards the newest data only. ``full`` refits from scratch on all
clean data as of the head, as the reference an incremental model is judged against.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .artifacts import ModelRecord, load_model, save_model, serving_model
from .catalog import Catalog
from .config import Config
from .errors import NothingToDo, UsageError

if TYPE_CHECKING:
    # NOTE: imported lazily at run time: numba's import is slow for commands that never train.
    from .model import EpochHook

log = logging.getLogger(__name__)

# The clean ratings as of a lineage: a re-rating in a later delta replaces the earlier one.
AS_OF_SQL = """
SELECT user_id, item_id, rating FROM ratings_clean
WHERE list_contains($lineage, version)
QUALIFY row_number() OVER (PARTITION BY user_id, item_id ORDER BY version DESC, ts DESC) = 1
"""

# A deterministic sample of older ratings: rows ordered by a seeded hash, the first n kept.
REPLAY_SQL = """
SELECT user_id, item_id, rating FROM ratings_clean
WHERE list_contains($lineage, version)
ORDER BY hash(user_id, item_id, version, $seed) LIMIT $n
"""


@dataclass
class UpdateResult:
    version: int
    kind: str
    model_id: int
    base_model_id: int | None
    rows_trained: int
    rows_replayed: int
    users: int
    items: int
    seconds: float


def new_model(config: Config) -> Any:
    from .model import BiasedMF

    m = config.model
    return BiasedMF(
        n_factors=m.factors,
        n_epochs=m.epochs,
        partial_epochs=m.partial_epochs,
        lr=m.lr,
        lr_decay=m.lr_decay,
        reg=m.reg,
        reg_bias=m.reg_bias,
        init_std=m.init_std,
        random_state=m.seed,
        min_rating=config.ingest.rating_min,
        max_rating=config.ingest.rating_max,
    )


def _arrays(catalog: Catalog, sql: str, params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The query's (user, item) pairs and ratings as arrays.

    NOTE: fetched whole, not in batches: SGD visits every row once per epoch, so the
    training set is held in memory anyway, and DuckDB's batched fetches need pyarrow.
    """
    data = catalog.con.execute(sql, params).fetchnumpy()
    X = np.column_stack([data["user_id"].astype(object), data["item_id"].astype(object)])
    return X, np.asarray(data["rating"], dtype=np.float64)


def update(
    catalog: Catalog,
    *,
    since: int | None = None,
    full: bool = False,
    progress: Callable[[str], None] | None = None,
) -> list[UpdateResult]:
    """Train the model on the versions after ``since`` (default: the serving model's)."""
    head = catalog.require_head()
    lineage = catalog.lineage()
    cleaned = {v for v in lineage if catalog.stage_done(v, "clean")}
    if full:
        if since is not None:
            raise UsageError("--full retrains on all data and takes no --since; drop one")
        not_clean = [v for v in lineage if v not in cleaned]
        if not_clean:
            raise UsageError(f"v{not_clean[0]} is not cleaned yet; run 'incr clean' first")
        with catalog.transaction():
            return [_fit_full(catalog, lineage, progress)]

    if since is not None:
        catalog.require(since)
        if since not in lineage:
            raise UsageError(
                f"v{since} is not on the head's lineage (v{head}); "
                f"run 'incr rollback --to v{since}' first or pick one from 'incr log'"
            )
        base = serving_model(catalog, since)
        if base is None or base.version != since:
            raise UsageError(
                f"no model was trained through v{since}; pick a version that 'incr log' "
                "shows with a model, or drop --since"
            )
    else:
        base = serving_model(catalog, head)
    start = lineage.index(base.version) + 1 if base else 0
    todo = lineage[start:]
    if not todo:
        raise NothingToDo(f"the model is up to date with v{head}; ingest a new file first")
    not_clean = [v for v in todo if v not in cleaned]
    if not_clean:
        raise UsageError(f"v{not_clean[0]} is not cleaned yet; run 'incr clean' first")

    if base is None:
        # No model yet: one fit on all clean data stands for every version so far.
        with catalog.transaction():
            return [_fit_full(catalog, lineage, progress)]

    results = []
    with catalog.transaction():
        for version in todo:
            result = _learn_delta(catalog, version, base, progress)
            base = result[1]
            results.append(result[0])
    return results


def _learn_delta(
    catalog: Catalog,
    version: int,
    base: ModelRecord,
    progress: Callable[[str], None] | None = None,
) -> tuple[UpdateResult, ModelRecord]:
    """Learn one clean delta, mixed with a replay sample of older ratings, from ``base``."""
    started = time.perf_counter()
    config = catalog.config
    X, y = _arrays(
        catalog,
        "SELECT user_id, item_id, rating FROM ratings_clean WHERE version = $v ORDER BY ts",
        {"v": version},
    )
    replayed = 0
    model = load_model(catalog, base)
    model.set_params(**_refreshed_params(config))
    n_replay = int(round(config.model.replay_ratio * len(y)))
    if n_replay:
        older = catalog.lineage(version)[:-1]
        Xr, yr = _arrays(
            catalog,
            REPLAY_SQL,
            {"lineage": older, "seed": config.model.seed + version, "n": n_replay},
        )
        replayed = len(yr)
        X, y = np.concatenate([X, Xr]), np.concatenate([y, yr])
    model.partial_fit(X, y, on_epoch=_epochs(progress, version))
    seconds = time.perf_counter() - started
    record = save_model(
        catalog,
        model,
        version=version,
        kind="incremental",
        base_model_id=base.model_id,
        seconds=seconds,
        rows_trained=len(y) - replayed,
        rows_replayed=replayed,
    )
    _record_update(catalog, version, seconds, record, len(y) - replayed, replayed)
    log.debug("learned v%d in %.3f s", version, seconds)
    return (
        UpdateResult(
            version,
            "incremental",
            record.model_id,
            record.base_model_id,
            len(y) - replayed,
            replayed,
            len(model.user_ids_),
            len(model.item_ids_),
            seconds,
        ),
        record,
    )


def _epochs(progress: Callable[[str], None] | None, version: int) -> EpochHook | None:
    """An epoch hook that reports each SGD pass to ``progress``."""
    if progress is None:
        return None
    report = progress

    def hook(stage: str, epoch: int, n_epochs: int) -> None:
        report(f"v{version} {stage} {epoch}/{n_epochs}")

    return hook


def _refreshed_params(config: Config) -> dict[str, Any]:
    """Parameters a saved model takes from the current config on its next update."""
    m = config.model
    return {"partial_epochs": m.partial_epochs, "lr": m.lr, "reg": m.reg, "reg_bias": m.reg_bias}


def _fit_full(
    catalog: Catalog, lineage: list[int], progress: Callable[[str], None] | None
) -> UpdateResult:
    """Fit a new model on all clean data as of the end of ``lineage``."""
    started = time.perf_counter()
    head = lineage[-1]
    X, y = _arrays(catalog, AS_OF_SQL, {"lineage": lineage})
    model = new_model(catalog.config)
    model.fit(X, y, on_epoch=_epochs(progress, head))
    seconds = time.perf_counter() - started
    record = save_model(
        catalog,
        model,
        version=head,
        kind="full",
        base_model_id=None,
        seconds=seconds,
        rows_trained=len(y),
        rows_replayed=0,
    )
    # Every version the fit covered is learned; those already learned keep their record.
    for version in lineage:
        if not catalog.stage_done(version, "update") or version == head:
            _record_update(catalog, version, seconds, record, len(y), 0)
    return UpdateResult(
        head,
        "full",
        record.model_id,
        None,
        len(y),
        0,
        len(model.user_ids_),
        len(model.item_ids_),
        seconds,
    )


def _record_update(
    catalog: Catalog,
    version: int,
    seconds: float,
    record: ModelRecord,
    rows: int,
    replayed: int,
) -> None:
    """Record (or replace) the update stage of ``version``."""
    catalog.con.execute("DELETE FROM stages WHERE version = ? AND stage = 'update'", [version])
    details = {"model_id": record.model_id, "kind": record.kind, "rows": rows, "replayed": replayed}
    catalog.record_stage(version, "update", seconds, details)
