"""Update: train the model on each new clean delta, one model per version.

Starting from the model that serves as of the base version, each pending version's clean
delta is learned by ``partial_fit``, mixed with a replay sample of older ratings so that
the model does not drift towards the newest data only. ``full`` refits from scratch on all
clean data as of the head, as the reference an incremental model is judged against.

With ``ingest.feedback`` set to ``event`` or ``quantity`` the model is ``ImplicitMF``
instead, learning each row's value (negative for a cancellation) at its time in days; it
needs no replay sample (see :func:`_learn_delta`).

The newest model of a run is a candidate: the quality gate (:mod:`incr_cli.gate`) promotes
it only if a twin of it, trained without a random share of the last delta, scores no
worse than the reference model on those held-out rows (for an implicit model: on the
held-out users' purchases, by ranking). A refused candidate is kept and recorded as
rejected, with every model of its run, and never serves.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .artifacts import ModelRecord, check_kind, load_model, save_model, serving_model
from .catalog import Catalog, now
from .clean import check_feedback, clean_rows
from .config import Config, GateMetric, is_implicit
from .errors import GateRefused, NothingToDo, TrainingDiverged, UsageError
from .gate import (
    FORCED,
    PROMOTED,
    RANKING_METRICS,
    RATING_METRICS,
    REJECTED,
    judge,
    rank_score,
    score,
)
from .pairs import Pairs

if TYPE_CHECKING:
    # NOTE: imported lazily at run time: numba's import is slow for commands that never train.
    from .model import EpochHook

log = logging.getLogger(__name__)

# The distinct ids of some versions' clean rows, in order. Registered with the connection
# as batch_users and batch_items beside their positions, they let the queries below return
# every id as its position, a number that DuckDB writes straight into a numpy array, where
# an id would come back as one Python string per row (see incr_cli.pairs). The positions
# keep the ids' order, so ordering by them is ordering by the ids.
USERS_SQL = """
SELECT DISTINCT user_id AS id FROM ratings_clean WHERE list_contains($versions, version)
ORDER BY id
"""
ITEMS_SQL = """
SELECT DISTINCT item_id AS id FROM ratings_clean WHERE list_contains($versions, version)
ORDER BY id
"""

# The clean ratings as of a lineage: a re-rating in a later delta replaces the earlier one.
AS_OF_SQL = """
SELECT u.code AS user_code, i.code AS item_code, r.rating FROM ratings_clean r
JOIN batch_users u ON r.user_id = u.id JOIN batch_items i ON r.item_id = i.id
WHERE list_contains($lineage, r.version)
QUALIFY row_number() OVER (PARTITION BY u.code, i.code ORDER BY r.version DESC, r.ts DESC) = 1
ORDER BY r.version, r.ts, u.code, i.code
"""

# A deterministic sample of older ratings: rows ordered by a seeded hash, the first n kept.
# The hash leaves out the version number, so a rating ingested again after a rollback, as
# a new version, is drawn exactly as it was the first time. Rows whose hash is above $cut
# cannot be among the first n when at least n rows are below it; filtering them out first
# spares sorting the whole table (see _replay).
# The sample's ids come back as strings: it is a few times the delta's size, and the ids
# of every older version, to encode it, would cost a scan of all the rows for each delta.
# NOTE: every ORDER BY here is total: DuckDB reads and joins in parallel, so rows that tie
# come back in any order, and the order of the rows is the order SGD learns them in.
REPLAY_SQL = """
SELECT user_id, item_id, rating FROM ratings_clean
WHERE list_contains($lineage, version) AND hash(user_id, item_id, ts, rating, $seed) <= $cut
ORDER BY hash(user_id, item_id, ts, rating, $seed), ts, user_id, item_id, rating, version
LIMIT $n
"""
HASH_MAX = 2**64 - 1  # DuckDB's hash() is a UBIGINT

# One delta's clean rows, oldest first.
DELTA_SQL = """
SELECT u.code AS user_code, i.code AS item_code, r.rating FROM ratings_clean r
JOIN batch_users u ON r.user_id = u.id JOIN batch_items i ON r.item_id = i.id
WHERE r.version = $v
ORDER BY r.ts, u.code, i.code, r.rating
"""

# Implicit feedback: every row counts (repeat purchases add up, cancellations offset them),
# so nothing is deduplicated; times are days since the epoch.
IMPLICIT_AS_OF_SQL = """
SELECT u.code AS user_code, i.code AS item_code, r.rating, epoch(r.ts) / 86400.0 AS days
FROM ratings_clean r
JOIN batch_users u ON r.user_id = u.id JOIN batch_items i ON r.item_id = i.id
WHERE list_contains($lineage, r.version)
ORDER BY r.version, r.ts, u.code, i.code, r.rating
"""
IMPLICIT_DELTA_SQL = """
SELECT u.code AS user_code, i.code AS item_code, r.rating, epoch(r.ts) / 86400.0 AS days
FROM ratings_clean r
JOIN batch_users u ON r.user_id = u.id JOIN batch_items i ON r.item_id = i.id
WHERE r.version = $v
ORDER BY r.ts, u.code, i.code, r.rating
"""

# What the gate's held-out users had bought before the delta, left out of their lists
# only with evaluate.exclude_seen.
BOUGHT_BEFORE_SQL = """
SELECT user_id, list(item_id) AS items FROM (
    SELECT user_id, item_id FROM ratings_clean
    WHERE list_contains($lineage, version) AND list_contains($users, user_id)
    GROUP BY user_id, item_id HAVING sum(rating) > 0
) GROUP BY user_id
"""

#: Replayed (user, item) pairs and their ratings.
Replay = tuple[Pairs, np.ndarray]

#: The ids of some versions' users and items, in order: what the codes of Pairs refer to.
Ids = tuple[np.ndarray, np.ndarray]

DECISION_SQL = "INSERT INTO gate_decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"


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
    decision: str = PROMOTED
    reasons: list[str] = field(default_factory=list)


def new_model(config: Config) -> Any:
    """An unfitted model of the kind the config's feedback calls for."""
    if is_implicit(config):
        from .implicit_model import ImplicitMF

        return ImplicitMF(**_implicit_params(config), random_state=config.model.seed)

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


def _implicit_params(config: Config) -> dict[str, Any]:
    """``ImplicitMF`` parameters from ``model.implicit``, all but the seed."""
    m = config.model.implicit
    return {
        "n_factors": m.factors,
        "n_iterations": m.iterations,
        "partial_iterations": m.partial_iterations,
        "alpha": m.alpha,
        "reg": m.reg,
        "cg_steps": m.cg_steps,
        "transform": m.transform,
        "history_weight": m.history_weight,
        "history_half_life": m.history_half_life,
        "popularity_weight": m.popularity_weight,
        "popularity_half_life": m.popularity_half_life,
    }


def _ids(catalog: Catalog, versions: list[int]) -> Ids:
    """The distinct user and item ids of ``versions``' clean rows, in order."""
    params = {"versions": versions}
    users = catalog.con.execute(USERS_SQL, params).fetchnumpy()["id"]
    items = catalog.con.execute(ITEMS_SQL, params).fetchnumpy()["id"]
    return np.asarray(users, dtype=object), np.asarray(items, dtype=object)


@contextmanager
def _registered(catalog: Catalog, ids: Ids) -> Iterator[None]:
    """``ids`` registered as ``batch_users`` and ``batch_items`` (id, code) for a query."""
    names = ("batch_users", "batch_items")
    for name, values in zip(names, ids, strict=True):
        codes = np.arange(len(values), dtype=np.int32)
        catalog.con.register(name, {"id": values, "code": codes})
    try:
        yield
    finally:
        for name in names:
            catalog.con.unregister(name)


def _fetch(
    catalog: Catalog, sql: str, params: dict[str, Any], ids: Ids
) -> tuple[Pairs, dict[str, np.ndarray]]:
    """The query's (user, item) pairs, as codes into ``ids``, and its other columns.

    NOTE: fetched whole, not in batches: training visits every row once per pass, so the
    rows are held in memory anyway, and DuckDB's batched fetches need pyarrow.
    """
    with _registered(catalog, ids):
        data = catalog.con.execute(sql, params).fetchnumpy()
    users = np.asarray(data.pop("user_code"), dtype=np.int32)
    items = np.asarray(data.pop("item_code"), dtype=np.int32)
    return Pairs(users, items, *ids), data


def _arrays(
    catalog: Catalog, sql: str, params: dict[str, Any], ids: Ids
) -> tuple[Pairs, np.ndarray]:
    """The query's (user, item) pairs, as codes into ``ids``, and ratings."""
    X, data = _fetch(catalog, sql, params, ids)
    return X, np.asarray(data["rating"], dtype=np.float64)


def _implicit_arrays(
    catalog: Catalog, sql: str, params: dict[str, Any], ids: Ids
) -> tuple[Pairs, np.ndarray, np.ndarray]:
    """The query's (user, item) pairs, as codes into ``ids``, values and times in days."""
    X, data = _fetch(catalog, sql, params, ids)
    values = np.asarray(data["rating"], dtype=np.float64)
    return X, values, np.asarray(data["days"], dtype=np.float64)


def _no_replay() -> Replay:
    nothing = np.empty(0, dtype=object)
    codes = np.empty(0, dtype=np.int32)
    return Pairs(codes, codes, nothing, nothing), np.empty(0, dtype=np.float64)


def _pair_keys(X: Pairs) -> np.ndarray:
    """One int64 per row naming its (user, item) pair among the codes of ``X``'s ids."""
    return X.users.astype(np.int64) * len(X.item_ids) + X.items


def update(
    catalog: Catalog,
    *,
    since: int | None = None,
    full: bool = False,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> list[UpdateResult]:
    """Train a candidate on the versions after ``since`` and promote it if the gate allows.

    Parameters
    ----------
    catalog
        An open catalog, opened for writing.
    since
        Start from the model trained through this version (default: the serving model's).
    full
        Refit from scratch on all clean data as of the head.
    force
        Promote the candidate even if the gate would refuse it; the decision is recorded
        as ``forced`` with the reasons.
    progress
        Called with a short note before each step.

    Returns
    -------
    list of UpdateResult
        One per model trained, the candidate last.

    Raises
    ------
    GateRefused
        After committing the candidate as rejected, when it fails the gate.
    NothingToDo, UsageError
        Before any change, when there is nothing to learn or an option is wrong.
    """
    head = catalog.require_head()
    lineage = catalog.lineage()
    cleaned = {v for v in lineage if catalog.stage_done(v, "clean")}
    # The gate's reference has learned neither the held-out delta (the head) nor anything
    # after it; it is chosen before training, which adds newer models to the catalog.
    reference = serving_model(catalog, lineage[-2]) if len(lineage) > 1 else None
    base: ModelRecord | None = None
    if full:
        if since is not None:
            raise UsageError("--full retrains on all data and takes no --since; drop one")
        todo = lineage
    else:
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
        todo = lineage[lineage.index(base.version) + 1 :] if base else lineage
        if not todo:
            raise NothingToDo(f"the model is up to date with v{head}; ingest a new file first")
    not_clean = [v for v in todo if v not in cleaned]
    if not_clean:
        raise UsageError(f"v{not_clean[0]} is not cleaned yet; run 'incr clean' first")
    check_feedback(catalog, todo)

    with catalog.transaction():
        if base is None:
            # Asked for with --full, or no model yet: one fit on all clean data stands for
            # every version so far.
            results = [_fit_full(catalog, lineage, progress)]
            last_base, replay = None, None
        else:
            results = []
            for version in todo:
                last_base = base
                result, base, replay = _learn_delta(catalog, version, base, progress)
                results.append(result)
        _gate(catalog, results, last_base, reference, force, replay)
    return _refuse_or_return(results, reference)


def _refuse_or_return(
    results: list[UpdateResult], reference: ModelRecord | None
) -> list[UpdateResult]:
    """The results, or, once the rejected candidate is committed, the gate's refusal."""
    candidate = results[-1]
    if candidate.decision == REJECTED:
        raise GateRefused(
            candidate.version,
            candidate.model_id,
            reference.model_id if reference else None,
            candidate.reasons,
        )
    return results


def _gate(
    catalog: Catalog,
    results: list[UpdateResult],
    base: ModelRecord | None,
    reference: ModelRecord | None,
    force: bool,
    replay: Replay | None,
) -> None:
    """Judge the run's candidate and record the decision for every model of the run.

    A twin of the candidate learns what the candidate learned from ``base`` (a fresh fit
    when ``None``) except a random ``gate.holdout`` share of the last delta's rows; the
    twin and ``reference`` are then scored on those held-out rows. ``replay`` is the
    sample the candidate replayed with that delta, which the twin replays too.
    """
    config = catalog.config.gate
    candidate = results[-1]
    reasons: list[str] = []
    figures: dict[str, dict[str, float | None]] = {}
    held_out = 0
    # Each kind of model is judged by the configured metrics that mean something for it.
    implicit = is_implicit(catalog.config)
    applicable = RANKING_METRICS if implicit else RATING_METRICS
    rules: dict[str, GateMetric] = {
        str(k): v for k, v in config.metrics.items() if str(k) in applicable
    }
    # With nothing to compare against, only bounds can refuse; without any, the twin's
    # training (a second full fit for a first model) would decide nothing.
    bounded = any(r.min is not None or r.max is not None for r in rules.values())
    judged = config.enabled and bool(rules) and (reference is not None or bounded)
    if judged and implicit:
        held_out, reasons, figures = _judge_implicit(catalog, rules, base, reference)
    elif judged:
        # A twin fitted afresh leaves the held-out pairs out of all the rows, matched by
        # their codes, so the delta is read with the codes of every id on the lineage.
        versions = catalog.lineage() if base is None or replay is None else [candidate.version]
        X, y = _arrays(catalog, DELTA_SQL, {"v": candidate.version}, _ids(catalog, versions))
        held_out = int(len(y) * config.holdout)
    if held_out and not implicit:
        test = _held_out_rows(catalog, candidate.version, len(y), held_out)
        fit_X, fit_y, test_X, test_y = X[~test], y[~test], X[test], y[test]
        names = list(rules)
        current = load_model(catalog, reference) if reference is not None else None
        # In a normal run the twin starts from the very model it is compared with: load
        # that file once and train a copy of it.
        same = reference is not None and base is not None and base.model_id == reference.model_id
        start = copy.deepcopy(current) if same else None
        twin = _twin(catalog, base, fit_X, fit_y, test_X, start, replay)
        reference_figures = None
        if current is not None:
            reference_figures = score(current, test_X, test_y, names)
        judgement = judge(
            rules,
            score(twin, test_X, test_y, names),
            reference_figures,
            f"the current model m{reference.model_id}" if reference else "the current model",
        )
        reasons, figures = judgement.reasons, judgement.figures
    decision = PROMOTED if not reasons else FORCED if force else REJECTED

    if not config.enabled:
        note = "gate disabled"
    elif not rules:
        note = f"not judged: gate.metrics names none of {', '.join(applicable)}"
    elif not judged:
        note = "not judged: no current model to compare with and no bounds configured"
    elif not held_out:
        # NOTE: too few rows to hold any out; the gate cannot judge, so it does not block.
        what = "users" if implicit else "rows"
        note = f"not judged: v{candidate.version} has too few {what} to hold out a share"
    else:
        note = "; ".join(reasons) or "passed the gate"
    created = now()
    for result in results:
        result.decision, result.reasons = decision, reasons
        reason = note if result is candidate else f"learned on the way to m{candidate.model_id}"
        catalog.con.execute(
            DECISION_SQL,
            [
                result.model_id,
                result.version,
                candidate.model_id,
                reference.model_id if reference else None,
                decision,
                reason,
                held_out,
                json.dumps(_finite(figures), sort_keys=True),
                created,
            ],
        )
    log.debug("gate: m%d %s (%s)", candidate.model_id, decision, note)


def _judge_implicit(
    catalog: Catalog,
    rules: dict[str, GateMetric],
    base: ModelRecord | None,
    reference: ModelRecord | None,
) -> tuple[int, list[str], dict[str, dict[str, float | None]]]:
    """The gate for an implicit-feedback model: ranking on a random share of the users.

    A seeded ``gate.holdout`` share of the last delta's buyers is held out: a twin learns
    what the candidate learned except every row of theirs in that delta, and the twin and
    ``reference`` rank ``evaluate.k`` items for each of them; the items a held-out user
    bought in the delta (net of cancellations) are the relevant ones. Neither model has
    seen them. Returns the rows held out, the reasons to refuse and the figures.
    """
    config = catalog.config
    lineage = catalog.lineage()
    version = lineage[-1]
    # As for ratings: a twin fitted afresh finds the delta's rows by their codes.
    ids = _ids(catalog, lineage if base is None else [version])
    X, y, days = _implicit_arrays(catalog, IMPLICIT_DELTA_SQL, {"v": version}, ids)

    # The buyers of the delta, in a stable order, and a seeded share of them.
    bought = _bought(X, y)
    buyers = sorted(bought, key=str)
    n_held = int(len(buyers) * config.gate.holdout)
    if not n_held:
        return 0, [], {}
    rng = np.random.default_rng([config.model.seed, len(lineage)])
    held = [buyers[n] for n in sorted(rng.choice(len(buyers), size=n_held, replace=False))]
    held_set = set(held)
    held_codes = [code for code, user in enumerate(X.user_ids.tolist()) if user in held_set]
    test = np.isin(X.users, held_codes)

    # The twin: from the same start as the candidate, without the held-out users' rows.
    current = load_model(catalog, reference) if reference is not None else None
    if base is None:
        Xa, ya, da = _implicit_arrays(catalog, IMPLICIT_AS_OF_SQL, {"lineage": lineage}, ids)
        # Rows of the delta come last in the lineage's order, so the mask is appended.
        keep = np.concatenate([np.ones(len(ya) - len(y), dtype=bool), ~test])
        twin = new_model(config).fit(Xa[keep], ya[keep], times=da[keep])
    else:
        same = reference is not None and base.model_id == reference.model_id
        start = copy.deepcopy(current) if same else None
        twin = start if start is not None else load_model(catalog, base)
        twin.set_params(**_refreshed_params(config))
        twin.partial_fit(X[~test], y[~test], times=days[~test])

    exclude: dict[Any, Any] = {}
    if config.evaluate.exclude_seen:
        params = {"lineage": lineage[:-1], "users": held}
        exclude = dict(catalog.rows(BOUGHT_BEFORE_SQL, params))
    relevant = [bought[user] for user in held]
    names = list(rules)
    k = config.evaluate.k
    reference_figures = None
    if current is not None:
        reference_figures = rank_score(current, held, relevant, k, names, exclude)
    judgement = judge(
        rules,
        rank_score(twin, held, relevant, k, names, exclude),
        reference_figures,
        f"the current model m{reference.model_id}" if reference else "the current model",
    )
    return int(test.sum()), judgement.reasons, judgement.figures


def _bought(X: Pairs, values: np.ndarray) -> dict[Any, set[Any]]:
    """Each user's items of a positive net value (purchases less cancellations) in ``X``."""
    n_items = len(X.item_ids)
    pairs, inverse = np.unique(_pair_keys(X), return_inverse=True)
    # Summed in the rows' order, as a running total per pair would be.
    net = np.bincount(inverse.ravel(), weights=values, minlength=pairs.size)
    users, items = np.divmod(pairs[net > 0], n_items)
    bought: dict[Any, set[Any]] = {}
    for user, item in zip(X.user_ids[users].tolist(), X.item_ids[items].tolist(), strict=True):
        bought.setdefault(user, set()).add(item)
    return bought


def _held_out_rows(catalog: Catalog, version: int, rows: int, held_out: int) -> np.ndarray:
    """Which of ``version``'s ``rows`` delta rows the gate holds out: a random share.

    Drawn with the model's seed and the delta's depth on the lineage, like the replay
    sample, so a rerun or a re-ingest after a rollback holds out the same rows.

    NOTE: not the newest rows by time. Within one delta the newest rows are mostly the
    tail of a few heavy raters' sessions, which a model that has learned their first
    ratings predicts worse than one that knows nothing of them, although it serves the
    next delta better: on MovieLens latest-small such a gate refused a good candidate and
    left the served model a delta behind (see the README's "Quality gate").
    """
    depth = len(catalog.lineage(version))
    rng = np.random.default_rng([catalog.config.model.seed, depth])
    mask = np.zeros(rows, dtype=bool)
    mask[rng.choice(rows, size=held_out, replace=False)] = True
    return mask


def _finite(figures: dict[str, dict[str, float | None]]) -> dict[str, dict[str, float | None]]:
    # NOTE: JSON has no infinity; a diverged model's figures are stored as null.
    return {
        name: {key: v if v is None or math.isfinite(v) else None for key, v in values.items()}
        for name, values in figures.items()
    }


def _twin(
    catalog: Catalog,
    base: ModelRecord | None,
    fit_X: Pairs,
    fit_y: np.ndarray,
    test_X: Pairs,
    start: Any = None,
    replay: Replay | None = None,
) -> Any:
    """A model trained as the candidate was, but without the held-out rows ``test_X``.

    ``start`` is the model of ``base``, already loaded, when the caller has it; ``replay``
    the candidate's replay sample (``None`` after a full fit, which replays nothing).
    """
    config = catalog.config
    if base is None or replay is None:
        # test_X holds codes of every id on the lineage (see _gate); the rows read with
        # the same codes name a pair by the same key.
        ids = (test_X.user_ids, test_X.item_ids)
        X, y = _arrays(catalog, AS_OF_SQL, {"lineage": catalog.lineage()}, ids)
        keep = ~np.isin(_pair_keys(X), _pair_keys(test_X))
        X, y = X[keep], y[keep]
        del keep
        twin = new_model(config)
        twin.fit(X, y)
        return twin
    twin = start if start is not None else load_model(catalog, base)
    twin.set_params(**_refreshed_params(config))
    Xr, yr = replay
    twin.partial_fit(Pairs.concat(fit_X, Xr), np.concatenate([fit_y, yr]))
    return twin


def _replay(catalog: Catalog, version: int, delta_rows: int) -> Replay:
    """The sample of older ratings replayed with ``version``'s delta of ``delta_rows`` rows.

    ``model.replay_ratio`` times the delta's size, drawn from the versions before it on its
    lineage. The draw is seeded by the delta's depth on the lineage rather than by its
    number, so that a file ingested again after a rollback, as a new version at the same
    place, replays the same sample and gives the same model.
    """
    n = int(round(catalog.config.model.replay_ratio * delta_rows))
    older = catalog.lineage(version)[:-1]
    if not n or not older:
        return _no_replay()
    params = {"lineage": older, "seed": catalog.config.model.seed + len(older), "n": n}
    # The hashes are uniform, so about share * rows of them lie below share * HASH_MAX; the
    # margin of ten standard deviations makes a second, unfiltered query all but never needed.
    rows = clean_rows(catalog, older)
    share = (n + 10 * math.sqrt(n) + 100) / max(rows, 1)
    if share < 1:
        X, y = _sample(catalog, params | {"cut": int(share * HASH_MAX)})
        if len(y) == n:
            return X, y
    return _sample(catalog, params | {"cut": HASH_MAX})


def _sample(catalog: Catalog, params: dict[str, Any]) -> Replay:
    """The rows of REPLAY_SQL, encoded here."""
    data = catalog.con.execute(REPLAY_SQL, params).fetchnumpy()
    X = np.column_stack([data["user_id"].astype(object), data["item_id"].astype(object)])
    return Pairs.from_ids(X), np.asarray(data["rating"], dtype=np.float64)


def _check_finite(model: Any, version: int, config: Config) -> None:
    """Refuse a model whose SGD diverged, before it is saved or can serve.

    A learning rate too large for the ratings' scale (say quantities of up to thousands
    read as ratings) makes the updates grow without bound until they overflow.
    """
    learned = (model.user_bias_, model.item_bias_, model.user_factors_, model.item_factors_)
    if not all(np.isfinite(values).all() for values in learned):
        raise TrainingDiverged(version, config.model.lr)


def _learn_delta(
    catalog: Catalog,
    version: int,
    base: ModelRecord,
    progress: Callable[[str], None] | None = None,
) -> tuple[UpdateResult, ModelRecord, Replay]:
    """Learn one clean delta, mixed with a replay sample of older ratings, from ``base``.

    Returns the result, the new model's record and the replay sample it learned with.
    """
    started = time.perf_counter()
    config = catalog.config
    model = load_model(catalog, base)
    check_kind(model, config, "update")
    model.set_params(**_refreshed_params(config))
    if is_implicit(config):
        # NOTE: no replay sample: ALS solves each user and item of the delta exactly
        # against its whole stored history (the model keeps every pair's net value), so
        # nothing learned before is pulled away by the delta, as SGD on it alone would.
        ids = _ids(catalog, [version])
        X, y, days = _implicit_arrays(catalog, IMPLICIT_DELTA_SQL, {"v": version}, ids)
        if progress:
            progress(f"v{version} solving {len(y)} rows")
        model.partial_fit(X, y, times=days)
        replay = _no_replay()
        replayed = 0
    else:
        X, y = _arrays(catalog, DELTA_SQL, {"v": version}, _ids(catalog, [version]))
        Xr, yr = replay = _replay(catalog, version, len(y))
        replayed = len(yr)
        X, y = Pairs.concat(X, Xr), np.concatenate([y, yr])
        model.partial_fit(X, y, on_epoch=_epochs(progress, version))
        _check_finite(model, version, config)
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
        replay,
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
    if is_implicit(config):
        # Not the factors (their number is fixed) nor the half-lives (the stored decayed
        # sums are kept in them): a change to those needs 'incr update --full'.
        params = _implicit_params(config)
        for fixed in ("n_factors", "n_iterations", "history_half_life", "popularity_half_life"):
            params.pop(fixed)
        return params
    return {"partial_epochs": m.partial_epochs, "lr": m.lr, "reg": m.reg, "reg_bias": m.reg_bias}


def _fit_full(
    catalog: Catalog, lineage: list[int], progress: Callable[[str], None] | None
) -> UpdateResult:
    """Fit a new model on all clean data as of the end of ``lineage``."""
    started = time.perf_counter()
    head = lineage[-1]
    model = new_model(catalog.config)
    ids = _ids(catalog, lineage)
    if is_implicit(catalog.config):
        X, y, days = _implicit_arrays(catalog, IMPLICIT_AS_OF_SQL, {"lineage": lineage}, ids)
        if not (y > 0).any():
            raise NothingToDo(
                f"the clean data as of v{head} holds no purchase, only cancellations; "
                "ingest a file with purchases first"
            )
        if progress:
            progress(f"v{head} fitting {len(y)} rows")
        model.fit(X, y, times=days)
    else:
        X, y = _arrays(catalog, AS_OF_SQL, {"lineage": lineage}, ids)
        model.fit(X, y, on_epoch=_epochs(progress, head))
        _check_finite(model, head, catalog.config)
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
