"""Evaluate: score the model on the delta that came after it, then report the history.

The evaluation is test-then-train (prequential): the model trained through version ``p``
predicts the clean delta of the version that follows ``p`` on the head's lineage, a delta it
has never learned from. Three baselines see the same data the model saw, the clean ratings as
of ``p``: the global mean rating (RMSE and MAE), user and item biases only (both), and the
most popular items (ranking). When a full retrain and an incremental model were both made
for the model's version, the other one is scored on the same rows beside it. Every figure
is stored in the ``metrics`` table, from which :func:`incr_cli.report.report` gathers the
latest evaluation of each delta into a report.

With implicit feedback (``ingest.feedback`` ``event`` or ``quantity``) there is no rating to
predict: the model trained through ``p`` ranks items for every user who buys in the delta,
the items bought there (net of cancellations) are the relevant ones, and the baselines are
the most popular items (bought on the most user-days), the recently popular ones (the same
over the 7 days before the delta) and buy-again (the user's own items, most days bought
first, filled up with the recently popular ones).

Known gaps, on purpose:

- users and items are not filtered to those the model knows; a new user gets the model's
  item-bias ranking and its rows are reported apart (``*_new_users``), since scoring only
  known users would hide the cold-start error that a fresh model must live with;
- an item the user rates again in the delta, having rated it before, counts as relevant but
  is never recommended when ``evaluate.exclude_seen`` is on, which lowers recall a little for
  every system alike.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .artifacts import (
    ModelRecord,
    check_kind,
    load_model,
    model_at,
    model_trained_through,
    serving_model,
)
from .catalog import Catalog, now
from .config import is_implicit
from .errors import NothingToDo, UsageError
from .metrics import coverage, mae, ranking_metrics, rmse, stability

log = logging.getLogger(__name__)

#: The systems every evaluation stores figures for.
SYSTEMS = ("model", "global_mean", "biases", "most_popular")

#: The system name under which a model of the other kind, made for the same version as the
#: model evaluated, is scored beside it; keyed by that other model's kind.
COUNTERPARTS = {"full": "full_retrain", "incremental": "incremental"}

# Shrinkage of the biases baseline towards zero, in ratings: an item with n ratings keeps
# n / (n + 25) of its mean offset. These are the values of Koren's baseline predictor; they
# matter little once an item has a few dozen ratings.
ITEM_DAMPING = 25.0
USER_DAMPING = 10.0

# Figures of ranking_metrics stored under its own names; its user counts are stored apart,
# because the users without a relevant item are dropped before it is called.
_RANKING_NAMES = ("precision", "recall", "f1", "ndcg", "map", "hit_rate")

# The rows scored: the target delta's clean ratings.
DELTA_SQL = "SELECT user_id, item_id, rating FROM ratings_clean WHERE version = $version"

# The global-mean baseline: every clean rating on the lineage up to the parent.
# NOTE: the sums of the baselines are taken in DECIMAL, which adds exactly: DuckDB adds
# doubles in whatever order its threads meet the rows, so a double sum can differ in its
# last bits from run to run, and the same data must give the same figures.
GLOBAL_MEAN_SQL = """
SELECT CAST(avg(CAST(rating AS DECIMAL(38, 12))) AS DOUBLE)
FROM ratings_clean WHERE list_contains($history, version)
"""

# Items the parent's data knows, most rated first; ties go by id so the list is stable.
POPULAR_SQL = """
SELECT item_id FROM ratings_clean WHERE list_contains($history, version)
GROUP BY item_id ORDER BY count(*) DESC, item_id
"""

# The biases baseline, fitted in closed form on the parent's data rather than by SGD:
# b_i = sum(r - mu) / (item_damping + n_i), then b_u = sum(r - mu - b_i) / (user_damping + n_u).
# Items come best first (ties by id), which is also the baseline's ranking for every user.
ITEM_BIAS_SQL = """
SELECT item_id, CAST(sum(CAST(rating - $mu AS DECIMAL(38, 12))) AS DOUBLE)
       / ($item_damping + count(*)) AS bias
FROM ratings_clean WHERE list_contains($history, version)
GROUP BY item_id ORDER BY bias DESC, item_id
"""

USER_BIAS_SQL = """
WITH history AS (
    SELECT user_id, item_id, rating FROM ratings_clean WHERE list_contains($history, version)
),
item_bias AS (
    SELECT item_id, CAST(sum(CAST(rating - $mu AS DECIMAL(38, 12))) AS DOUBLE)
           / ($item_damping + count(*)) AS bias
    FROM history GROUP BY item_id
)
SELECT h.user_id, CAST(sum(CAST(h.rating - $mu - b.bias AS DECIMAL(38, 12))) AS DOUBLE)
       / ($user_damping + count(*)) AS bias
FROM history h JOIN item_bias b USING (item_id)
GROUP BY h.user_id
"""

# Per user of the delta, the items rated at or above the threshold; users without one are
# left out here, as ranking_metrics would skip them anyway.
RELEVANT_SQL = """
SELECT user_id, list_sort(list(DISTINCT item_id)) AS items FROM ratings_clean
WHERE version = $version AND rating >= $threshold
GROUP BY user_id ORDER BY user_id
"""

# Items those users rated before the delta, which are not recommended back to them.
SEEN_SQL = """
SELECT user_id, list(DISTINCT item_id) AS items FROM ratings_clean
WHERE list_contains($history, version) AND user_id IN (
    SELECT user_id FROM ratings_clean WHERE version = $version AND rating >= $threshold
)
GROUP BY user_id
"""

# Implicit feedback. The relevant items: per buyer of the delta, what the delta holds of
# theirs with a positive net value.
BOUGHT_SQL = """
SELECT user_id, list_sort(list(item_id)) AS items FROM (
    SELECT user_id, item_id FROM ratings_clean WHERE version = $version
    GROUP BY user_id, item_id HAVING sum(rating) > 0
) GROUP BY user_id ORDER BY user_id
"""

# Items by the number of user-days they were bought on, since $since (ties by id).
POPULAR_DAYS_SQL = """
SELECT item_id FROM (
    SELECT DISTINCT user_id, item_id, CAST(ts AS DATE) AS day FROM ratings_clean
    WHERE list_contains($history, version) AND rating > 0 AND ts >= $since
) GROUP BY item_id ORDER BY count(*) DESC, item_id
"""

# Buy-again: each buyer's own items still held on net, most days bought first, then the
# latest bought, then by id; the first $k of them.
BUY_AGAIN_SQL = """
WITH own AS (
    SELECT user_id, item_id,
        count(DISTINCT CASE WHEN rating > 0 THEN CAST(ts AS DATE) END) AS days,
        max(ts) AS latest
    FROM ratings_clean
    WHERE list_contains($history, version) AND list_contains($users, user_id)
    GROUP BY user_id, item_id HAVING sum(rating) > 0
)
SELECT user_id, list(item_id ORDER BY days DESC, latest DESC, item_id) AS items
FROM own GROUP BY user_id
"""

# The start of the delta's first day: the recently popular window ends there.
DELTA_START_SQL = "SELECT CAST(min(ts) AS DATE) FROM ratings_clean WHERE version = $version"

#: Days of purchases the recently-popular baseline counts, before the delta's first day.
RECENT_DAYS = 7

DELETE_SQL = "DELETE FROM metrics WHERE version = ? AND model_id = ?"
INSERT_SQL = "INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?)"

Figures = dict[str, float | int | None]


@dataclass
class EvaluateResult:
    """One evaluation: a delta scored by the model trained before it, and the baselines.

    Attributes
    ----------
    version
        The delta scored (``metrics.version``).
    parent
        The version before it on the lineage: the baselines see the clean data up to here.
    model_version, model_id
        The model used, trained through ``model_version`` (at most ``parent``).
    rows
        Clean rows of the delta scored.
    users_ranked
        Users of the delta with at least one relevant item, whose top-k lists are scored.
    k
        The cut-off of the ranking metrics.
    metrics
        Per system (``model``, ``global_mean``, ``biases``, ``most_popular``, and
        ``full_retrain`` or ``incremental`` when a model of the other kind exists for the
        model's version), metric name to value; ``None`` where a figure is undefined (e.g.
        RMSE of new users when there are none, or stability of the first model).
    """

    version: int
    parent: int
    model_version: int
    model_id: int
    rows: int
    users_ranked: int
    k: int
    metrics: dict[str, Figures]


def evaluate(
    catalog: Catalog,
    *,
    model_version: int | None = None,
    save: bool = True,
    progress: Callable[[str], None] | None = None,
) -> EvaluateResult:
    """Score a delta with the model trained before it, beside three baselines, and store it.

    By default the delta is the newest cleaned version on the head's lineage and the model
    is the one serving as of its parent. With ``model_version=N`` the model is the one
    trained through ``vN`` and the delta is the version after ``vN`` on the lineage.

    The model is scored by RMSE and MAE of its predictions (overall, and apart for users it
    knows and users new to it) and by top-k ranking metrics, where a user's relevant items
    are those rated at least ``evaluate.relevance_threshold`` in the delta, and by the
    stability of its lists: the share of each user's top-k that the model before it did not
    recommend. The baselines are the mean clean rating as of the parent (RMSE, MAE), user
    and item biases fitted on the same ratings (both), and the ``k`` items with the most
    clean ratings as of the parent (ranking). With ``evaluate.exclude_seen``, no system
    recommends an item the user rated before the delta. A model of the other kind (full
    retrain or incremental) made for the same version is scored beside the model.

    With ``save``, every figure is written to the ``metrics`` table in one transaction,
    replacing any earlier evaluation of the same delta by the same model. No stage is
    recorded: a delta may be evaluated any number of times.

    Parameters
    ----------
    catalog
        An open catalog, opened for writing.
    model_version
        Evaluate the model trained through this version, on the delta after it.
    save
        Store the figures; without it the catalog is only read.
    progress
        Called with a short note before each step.

    Returns
    -------
    EvaluateResult

    Raises
    ------
    NothingToDo
        If no delta is cleaned, the delta is the first version (nothing was trained before
        it), no model exists before it, it has no clean rows, or ``model_version`` is the
        head.
    UsageError
        If ``model_version`` is not on the head's lineage, no model was trained through it,
        or the delta after it is not cleaned.
    """
    started = time.perf_counter()
    config = catalog.config.evaluate
    lineage = catalog.lineage(catalog.require_head())
    target, record = _choose(catalog, lineage, model_version)
    history = lineage[: lineage.index(target)]
    parent = history[-1]
    if progress:
        progress(f"v{target}: scoring with the model of v{record.version}")
    if is_implicit(catalog.config):
        result = _evaluate_implicit(catalog, lineage, target, record, progress)
        if save:
            _store(catalog, result)
        return result

    data = catalog.con.execute(DELTA_SQL, {"version": target}).fetchnumpy()
    users = data["user_id"].astype(object)
    items = data["item_id"].astype(object)
    ratings = np.asarray(data["rating"], dtype=np.float64)
    if ratings.size == 0:
        raise NothingToDo(
            f"v{target} holds no clean rows to score; check 'incr log' for what clean removed"
        )
    pairs = np.column_stack([users, items])

    # The global-mean baseline predicts one constant, mu = mean of the ratings before.
    mu = float(catalog.one(GLOBAL_MEAN_SQL, {"history": history}))
    constant = np.full(ratings.size, mu)
    figures_mean: Figures = {
        "mean": mu,
        "rows": int(ratings.size),
        "rmse": rmse(ratings, constant),
        "mae": mae(ratings, constant),
    }

    # The biases baseline predicts mu + b_u + b_i, clipped to the rating scale as the model is.
    item_bias, user_bias = _biases(catalog, history, mu)
    predicted_bias = np.clip(
        mu + _lookup(users, user_bias) + _lookup(items, item_bias),
        catalog.config.ingest.rating_min,
        catalog.config.ingest.rating_max,
    )
    figures_biases: Figures = {
        "rows": int(ratings.size),
        "rmse": rmse(ratings, predicted_bias),
        "mae": mae(ratings, predicted_bias),
    }

    # Ranking: one top-k list per user with a relevant item, from each system.
    if progress:
        progress(f"v{target}: ranking the top {config.k} items")
    params = {"version": target, "threshold": config.relevance_threshold}
    relevant = catalog.con.execute(RELEVANT_SQL, params).fetchnumpy()
    ranked_users = relevant["user_id"].astype(object)
    seen: dict[Hashable, set[Hashable]] = {}
    if config.exclude_seen:
        before = catalog.con.execute(SEEN_SQL, {**params, "history": history}).fetchnumpy()
        seen = {
            user: set(rated) for user, rated in zip(before["user_id"], before["items"], strict=True)
        }
    popular = catalog.con.execute(POPULAR_SQL, {"history": history}).fetchnumpy()["item_id"]
    ranking = _Ranking(
        users=ranked_users,
        relevant=list(relevant["items"]),
        seen=seen,
        k=config.k,
        skipped=int(np.unique(users).size) - int(ranked_users.size),
        # Coverage is a share of the items rated before the delta: all any system could show.
        n_items=max(1, int(popular.size)),
    )
    figures_popular = ranking.figures(ranking.fixed_lists(popular.tolist()))
    figures_biases |= ranking.figures(ranking.fixed_lists(list(item_bias)))

    # Stability compares each model's lists with those of the model before it, on the same
    # users and candidates; the first model has nothing to compare with.
    previous = _previous_model(catalog, lineage, record)
    previous_lists = ranking.model_lists(load_model(catalog, previous)) if previous else None

    model = load_model(catalog, record)
    check_kind(model, catalog.config, "evaluate")
    metrics = {
        "model": _score_model(model, pairs, ratings, ranking, previous_lists),
        "global_mean": figures_mean,
        "biases": figures_biases,
        "most_popular": figures_popular,
    }

    # A full retrain made for the same version as an incremental model (or the other way
    # round) saw the same data, so it is scored on the same rows, beside it.
    other_kind = "incremental" if record.kind == "full" else "full"
    other = model_at(catalog, record.version, kind=other_kind)
    if other is not None:
        if progress:
            progress(f"v{target}: scoring the {other_kind} model of v{record.version} beside it")
        metrics[COUNTERPARTS[other_kind]] = _score_model(
            load_model(catalog, other), pairs, ratings, ranking, previous_lists
        )

    result = EvaluateResult(
        version=target,
        parent=parent,
        model_version=record.version,
        model_id=record.model_id,
        rows=int(ratings.size),
        users_ranked=int(ranked_users.size),
        k=config.k,
        metrics=metrics,
    )
    if save:
        _store(catalog, result)
    log.debug(
        "evaluated v%d with model m%d in %.3f s",
        target,
        record.model_id,
        time.perf_counter() - started,
    )
    return result


def _evaluate_implicit(
    catalog: Catalog,
    lineage: list[int],
    target: int,
    record: ModelRecord,
    progress: Callable[[str], None] | None = None,
) -> EvaluateResult:
    """Rank items for the delta's buyers with the model and three baselines; see above."""
    config = catalog.config.evaluate
    history = lineage[: lineage.index(target)]
    rows = int(catalog.one("SELECT count(*) FROM ratings_clean WHERE version = ?", [target]))
    if not rows:
        raise NothingToDo(
            f"v{target} holds no clean rows to score; check 'incr log' for what clean removed"
        )
    bought = catalog.con.execute(BOUGHT_SQL, {"version": target}).fetchnumpy()
    users = bought["user_id"].astype(object)
    user_list = users.tolist()
    all_users = int(
        catalog.one("SELECT count(DISTINCT user_id) FROM ratings_clean WHERE version = ?", [target])
    )
    seen: dict[Hashable, set[Hashable]] = {}
    if config.exclude_seen:
        owned = catalog.rows(BUY_AGAIN_SQL, {"history": history, "users": user_list})
        seen = {user: set(items) for user, items in owned}

    # The baselines, from the clean data as of the version before the delta.
    start = catalog.one(DELTA_START_SQL, {"version": target})
    since = start - dt.timedelta(days=RECENT_DAYS)
    everything = dt.datetime(1, 1, 1)
    popular = catalog.con.execute(
        POPULAR_DAYS_SQL, {"history": history, "since": everything}
    ).fetchnumpy()["item_id"]
    recent = (
        catalog.con.execute(POPULAR_DAYS_SQL, {"history": history, "since": since})
        .fetchnumpy()["item_id"]
        .tolist()
    )
    ranking = _Ranking(
        users=users,
        relevant=list(bought["items"]),
        seen=seen,
        k=config.k,
        skipped=all_users - len(user_list),
        n_items=max(1, int(popular.size)),
    )
    if progress:
        progress(f"v{target}: ranking the top {config.k} items for {len(user_list)} buyers")
    own = dict(catalog.rows(BUY_AGAIN_SQL, {"history": history, "users": user_list}))
    buy_again = [
        _filled(
            [i for i in own.get(user, []) if i not in seen.get(user, ())],
            recent,
            config.k,
            seen.get(user, set()),
        )
        for user in user_list
    ]

    # Stability against the model that served before this one, as for ratings.
    previous = _previous_model(catalog, lineage, record)
    previous_lists = ranking.model_lists(load_model(catalog, previous)) if previous else None
    model = load_model(catalog, record)
    check_kind(model, catalog.config, "evaluate")
    metrics: dict[str, Figures] = {
        "model": _rank_model(model, rows, ranking, previous_lists),
        "most_popular": ranking.figures(ranking.fixed_lists(popular.tolist())),
        "recently_popular": ranking.figures(ranking.fixed_lists(recent)),
        "buy_again": ranking.figures(buy_again),
    }
    other_kind = "incremental" if record.kind == "full" else "full"
    other = model_at(catalog, record.version, kind=other_kind)
    if other is not None:
        metrics[COUNTERPARTS[other_kind]] = _rank_model(
            load_model(catalog, other), rows, ranking, previous_lists
        )
    return EvaluateResult(
        version=target,
        parent=history[-1],
        model_version=record.version,
        model_id=record.model_id,
        rows=rows,
        users_ranked=len(user_list),
        k=config.k,
        metrics=metrics,
    )


def _filled(
    own: list[Hashable], fallback: Sequence[Hashable], k: int, banned: set[Hashable]
) -> list[Hashable]:
    """The first ``k`` of ``own``, then items of ``fallback`` neither in it nor banned.

    Examples
    --------
    >>> _filled(["a", "b"], ["b", "c", "d", "e"], 4, {"d"})
    ['a', 'b', 'c', 'e']
    """
    picks = own[:k]
    taken = set(picks) | banned
    for item in fallback:
        if len(picks) == k:
            break
        if item not in taken:
            picks.append(item)
    return picks


def _rank_model(
    model: Any, rows: int, ranking: _Ranking, previous_lists: list[Any] | None
) -> Figures:
    """Ranking and stability figures of an implicit-feedback model."""
    lists = ranking.model_lists(model)
    figures: Figures = {"rows": rows} | ranking.figures(lists)
    figures["stability"] = (
        None if previous_lists is None else _finite(stability(previous_lists, lists, ranking.k))
    )
    return figures


def _choose(
    catalog: Catalog, lineage: list[int], model_version: int | None
) -> tuple[int, ModelRecord]:
    """The delta to score and the model to score it with, or an error saying what to do."""
    head = lineage[-1]
    if model_version is None:
        cleaned = [v for v in lineage if catalog.stage_done(v, "clean")]
        if not cleaned:
            raise NothingToDo("no version is cleaned yet; run 'incr clean' first")
        target = cleaned[-1]
        position = lineage.index(target)
        if position == 0:
            raise NothingToDo(
                f"v{target} is the first delta: no model was trained before it; "
                "ingest and update another file first"
            )
        parent = lineage[position - 1]
        record = serving_model(catalog, parent)
        if record is None:
            raise NothingToDo(
                f"no model was trained before v{target} (as of v{parent}); run 'incr update' first"
            )
        return target, record

    record = model_trained_through(catalog, model_version)
    if model_version == head:
        raise NothingToDo(
            f"v{model_version} is the head: no delta follows it yet; "
            "ingest and clean another file first"
        )
    target = lineage[lineage.index(model_version) + 1]
    if not catalog.stage_done(target, "clean"):
        raise UsageError(f"v{target} is not cleaned yet; run 'incr clean' first")
    return target, record


def _finite(value: float) -> float | None:
    # NOTE: NaN is not valid JSON and the catalog reads NULL as "undefined" more plainly.
    return value if math.isfinite(value) else None


def _accuracy(ratings: np.ndarray, predicted: np.ndarray, known: np.ndarray) -> Figures:
    """RMSE and MAE over all rows, over rows of known users and over rows of new users."""
    figures: Figures = {
        "rows": int(ratings.size),
        "rmse": rmse(ratings, predicted),
        "mae": mae(ratings, predicted),
    }
    for suffix, mask in (("known_users", known), ("new_users", ~known)):
        count = int(mask.sum())
        figures[f"rows_{suffix}"] = count
        figures[f"rmse_{suffix}"] = rmse(ratings[mask], predicted[mask]) if count else None
        figures[f"mae_{suffix}"] = mae(ratings[mask], predicted[mask]) if count else None
    return figures


def fixed_order_lists(
    order: Sequence[Hashable],
    users: Iterable[Hashable],
    seen: Mapping[Hashable, Iterable[Hashable]],
    k: int,
) -> list[list[Hashable]]:
    """Per user, the first ``k`` items of one shared ranking that the user has not seen.

    This is how a baseline that ranks every user's items alike (most popular, biases only)
    recommends: its one ranking minus what each user already has.

    Examples
    --------
    >>> fixed_order_lists(["x", "y", "z"], ["a", "b"], {"a": {"x"}}, k=2)
    [['y', 'z'], ['x', 'y']]
    """
    lists = []
    for user in users:
        banned = set(seen.get(user, ()))
        picks: list[Hashable] = []
        # Walking the shared order stops after k picks, so this costs at most
        # k + |banned| steps per user however large the catalogue is.
        for item in order:
            if item not in banned:
                picks.append(item)
                if len(picks) == k:
                    break
        lists.append(picks)
    return lists


@dataclass
class _Ranking:
    """What every system's top-k lists are scored against: the same users and candidates."""

    users: np.ndarray
    relevant: list[Any]
    seen: dict[Hashable, set[Hashable]]
    k: int
    skipped: int
    n_items: int

    def model_lists(self, model: Any) -> list[Any]:
        """Each user's top ``k`` from a model, leaving out what the user has seen."""
        if not self.users.size:
            return []
        return list(model.top_k(self.users, self.k, exclude=self.seen or None)[0])

    def fixed_lists(self, order: Sequence[Hashable]) -> list[list[Hashable]]:
        """Each user's top ``k`` from one ranking shared by all users."""
        return fixed_order_lists(order, self.users.tolist(), self.seen, self.k)

    def figures(self, lists: Sequence[Iterable[Hashable | None]]) -> Figures:
        """Ranking figures of one system under the stored names."""
        scores = ranking_metrics(lists, self.relevant, self.k)
        figures: Figures = {name: _finite(scores[name]) for name in _RANKING_NAMES}
        figures["coverage"] = coverage(lists, self.n_items) if len(lists) else None
        figures["users_ranked"] = int(scores["users"])
        figures["users_skipped"] = self.skipped
        figures["k"] = self.k
        return figures


def _score_model(
    model: Any,
    pairs: np.ndarray,
    ratings: np.ndarray,
    ranking: _Ranking,
    previous_lists: list[Any] | None,
) -> Figures:
    """Accuracy, ranking and stability figures of one model on the delta's rows."""
    predicted = model.predict(pairs)
    # A dict lookup per row: np.isin on object arrays compares every row with every id.
    index = model.user_index_
    known = np.fromiter((user in index for user in pairs[:, 0].tolist()), bool, len(pairs))
    lists = ranking.model_lists(model)
    figures = _accuracy(ratings, predicted, known) | ranking.figures(lists)
    figures["stability"] = (
        None if previous_lists is None else _finite(stability(previous_lists, lists, ranking.k))
    )
    return figures


def _biases(
    catalog: Catalog, history: list[int], mu: float
) -> tuple[dict[Hashable, float], dict[Hashable, float]]:
    """Item and user biases of the baseline, fitted on the ratings of ``history``.

    The item dict is ordered best first, which is the baseline's ranking.
    """
    params = {
        "history": history,
        "mu": mu,
        "item_damping": ITEM_DAMPING,
        "user_damping": USER_DAMPING,
    }
    item_params = {key: params[key] for key in ("history", "mu", "item_damping")}
    item_bias = dict(catalog.rows(ITEM_BIAS_SQL, item_params))
    user_bias = dict(catalog.rows(USER_BIAS_SQL, params))
    return item_bias, user_bias


def _lookup(ids: np.ndarray, bias: Mapping[Hashable, float]) -> np.ndarray:
    """The bias of each id, 0 for an id the baseline never saw."""
    return np.fromiter((bias.get(key, 0.0) for key in ids), dtype=np.float64, count=len(ids))


def _previous_model(
    catalog: Catalog, lineage: list[int], record: ModelRecord
) -> ModelRecord | None:
    """The model that served just before ``record``'s version, if any."""
    position = lineage.index(record.version)
    return serving_model(catalog, lineage[position - 1]) if position else None


def _store(catalog: Catalog, result: EvaluateResult) -> None:
    """Replace the figures of this (delta, model) evaluation in one transaction."""
    created = now()
    rows = [
        (result.version, result.model_id, system, metric, value, created)
        for system, figures in result.metrics.items()
        for metric, value in figures.items()
    ]
    with catalog.transaction():
        catalog.con.execute(DELETE_SQL, [result.version, result.model_id])
        catalog.con.executemany(INSERT_SQL, rows)
