"""Biased matrix factorisation for explicit ratings, trained by SGD.

The model predicts a rating as ``mu + b_u + b_i + p_u . q_i`` and can be
trained from scratch (``fit``) or brought up to date with a batch of new
ratings (``partial_fit``) without revisiting the ratings it has already seen.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, Literal

import numpy as np
from numba import njit
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from .pairs import Pairs, lookup_rows, to_rows
from .topk import top_k_rows as _top_k_rows

__all__ = ["BiasedMF", "EpochHook"]

#: Called after every SGD pass with the stage ("fit", "fold-in users", "fold-in items",
#: "update"), the pass number from 1, and the number of passes of that stage.
EpochHook = Callable[[str, int, int], None]

logger = logging.getLogger(__name__)

# Rows of ``predict`` gathered at once; bounds the temporary (rows, n_factors)
# copies of the factor matrices to a few tens of megabytes.
_PREDICT_CHUNK = 65_536


@dataclass(frozen=True)
class _Interval:
    """An allowed range for one constructor parameter."""

    kind: Literal["integer", "real"]
    low: float | None
    high: float | None
    closed: str = "both"
    allow_none: bool = False

    def contains(self, value: Any) -> bool:
        if value is None:
            return self.allow_none
        wanted = Integral if self.kind == "integer" else Real
        # NOTE: bool is an Integral subclass, but ``n_factors=True`` is a mistake.
        if isinstance(value, bool) or not isinstance(value, wanted):
            return False
        number = float(value)
        if not math.isfinite(number):
            return False
        if self.low is not None:
            open_low = self.closed in ("right", "neither")
            if number < self.low or (open_low and number == self.low):
                return False
        if self.high is not None:
            open_high = self.closed in ("left", "neither")
            if number > self.high or (open_high and number == self.high):
                return False
        return True

    def describe(self) -> str:
        noun = "an integer" if self.kind == "integer" else "a finite real number"
        if self.low is None and self.high is None:
            text = noun
        else:
            # An unbounded side is always open: (-inf or inf).
            closed_low = self.low is not None and self.closed in ("both", "left")
            closed_high = self.high is not None and self.closed in ("both", "right")
            left = "[" if closed_low else "("
            right = "]" if closed_high else ")"
            low = "-inf" if self.low is None else f"{self.low:g}"
            high = "inf" if self.high is None else f"{self.high:g}"
            text = f"{noun} in {left}{low}, {high}{right}"
        return f"{text} or None" if self.allow_none else text


# Allowed values of every constructor parameter, checked before any work.
_PARAM_RULES: dict[str, _Interval] = {
    "n_factors": _Interval("integer", 1, None),
    "n_epochs": _Interval("integer", 1, None),
    "lr": _Interval("real", 0, None, closed="neither"),
    "reg": _Interval("real", 0, None),
    "reg_bias": _Interval("real", 0, None),
    "init_std": _Interval("real", 0, None),
    "lr_decay": _Interval("real", 0, 1, closed="right"),
    "partial_epochs": _Interval("integer", 0, None),
    "random_state": _Interval("integer", 0, None, allow_none=True),
    "min_rating": _Interval("real", None, None, allow_none=True),
    "max_rating": _Interval("real", None, None, allow_none=True),
}


# NOTE: fastmath lets LLVM reorder the dot product's sums, so the last bits of a result
# can differ between machines; on one machine a seeded run is still exactly repeatable.
@njit(cache=True, fastmath=True)
def _sgd_epoch(
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    weights: np.ndarray,
    mu: float,
    bu: np.ndarray,
    bi: np.ndarray,
    P: np.ndarray,
    Q: np.ndarray,
    lr: float,
    reg: float,
    reg_bias: float,
    update_users: bool,
    update_items: bool,
) -> float:
    """Run one SGD pass over the rows in the order given, in place; return the weighted
    squared error.

    The rows come already shuffled and gathered into contiguous arrays: reading them in
    order lets the processor prefetch them, which doubles the speed of a pass over
    reading them through a permutation. ``update_users`` / ``update_items`` freeze one
    side, so the same kernel serves the full pass (both true) and the fold-in passes
    (one true); the test is made once per row, outside the loop over factors.
    """
    n_factors = P.shape[1]
    sq_err = 0.0
    for row in range(users.shape[0]):
        u = users[row]
        i = items[row]
        w = weights[row]
        pu = P[u]
        qi = Q[i]

        # e = r_ui - (mu + b_u + b_i + p_u . q_i)
        dot = 0.0
        for f in range(n_factors):
            dot += pu[f] * qi[f]
        err = ratings[row] - (mu + bu[u] + bi[i] + dot)
        sq_err += w * err * err

        # The weight scales the whole per-row gradient, regularisation included,
        # so a row of weight 0 changes nothing and weight 1 is plain SGD.
        step = lr * w

        # b_u += lr * w * (e - reg_bias * b_u), and the same for b_i;
        # p_u += lr * w * (e * q_i - reg * p_u), and q_i uses the old p_u
        if update_users and update_items:
            bu[u] += step * (err - reg_bias * bu[u])
            bi[i] += step * (err - reg_bias * bi[i])
            for f in range(n_factors):
                a = pu[f]
                b = qi[f]
                pu[f] = a + step * (err * b - reg * a)
                qi[f] = b + step * (err * a - reg * b)
        elif update_users:
            bu[u] += step * (err - reg_bias * bu[u])
            for f in range(n_factors):
                a = pu[f]
                pu[f] = a + step * (err * qi[f] - reg * a)
        elif update_items:
            bi[i] += step * (err - reg_bias * bi[i])
            for f in range(n_factors):
                b = qi[f]
                qi[f] = b + step * (err * pu[f] - reg * b)
    return sq_err


def _as_id_vector(ids: Any, name: str) -> list[Hashable]:
    arr = np.asarray(ids, dtype=object)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional; got shape {arr.shape!r}.")
    return arr.tolist()


def _as_vector(values: Any, n: int, name: str) -> np.ndarray:
    arr = np.ascontiguousarray(values, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},); got shape {arr.shape!r}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must hold only finite numbers.")
    return arr


def _ids_array(keys: Iterable[Hashable], count: int) -> np.ndarray:
    # fromiter keeps a tuple id as one element, where np.array would unpack it.
    return np.fromiter(keys, dtype=object, count=count)


def _lookup(values: list[Hashable], index: Mapping[Hashable, int]) -> np.ndarray:
    """Rows of ``values`` in ``index``, with -1 for ids never seen."""
    return np.fromiter((index.get(key, -1) for key in values), dtype=np.int64, count=len(values))


class BiasedMF(RegressorMixin, BaseEstimator):
    """Biased matrix factorisation for explicit ratings.

    The predicted rating of user ``u`` for item ``i`` is::

        r_hat = mu + b_u + b_i + p_u . q_i

    where ``mu`` is the global mean rating, ``b_u`` and ``b_i`` are user and
    item biases and ``p_u``, ``q_i`` are ``n_factors``-dimensional factors.
    Training minimises the squared error plus L2 penalties (``reg`` on the
    factors, ``reg_bias`` on the biases) by stochastic gradient descent, one
    rating at a time, in a freshly shuffled order each epoch. The learning
    rate is multiplied by ``lr_decay`` after every epoch.

    ``fit`` trains from scratch: ``mu`` is the (weighted) mean rating, biases
    start at zero and factors are drawn from ``N(0, init_std / sqrt(n_factors))``
    so that the initial dot products have a spread near ``init_std ** 2``
    whatever the number of factors.

    ``partial_fit`` updates a fitted model with a batch of ratings, in steps:

    1. Users and items never seen before get new rows: zero biases and small
       random factors drawn as in ``fit``.
    2. ``mu`` becomes the running weighted mean of every rating seen so far;
       it is not learned by SGD.
    3. Fold-in of new users: ``n_epochs`` SGD passes over the batch rows of new
       users, updating only those users' biases and factors while item
       parameters stay fixed. Then the same for new items, with users fixed.
       Without this step a new user's parameters start near zero and the first
       joint passes move the shared item factors to fit that noise.
    4. ``partial_epochs`` SGD passes over the whole batch, updating everything.

    The learning rate schedule restarts at ``lr`` for each stage. Each row's
    gradient is scaled by its ``sample_weight``, so replayed old ratings can
    be mixed in with a weight below one. Every call draws its random numbers
    from its own stream, derived from ``random_state`` and the number of
    earlier calls, so a given sequence of calls gives bitwise-identical
    parameters. The first ``partial_fit`` on an unfitted model is ``fit``.

    Parameters
    ----------
    n_factors : int, default=32
        Number of latent factors per user and item.
    n_epochs : int, default=20
        SGD passes over the data in ``fit``; also the number of fold-in passes
        for new users and items in ``partial_fit``.
    lr : float, default=0.01
        Initial learning rate.
    reg : float, default=0.05
        L2 penalty on the factors.
    reg_bias : float, default=0.2
        L2 penalty on the biases.
    init_std : float, default=0.1
        Scale of the random factor initialisation (divided by
        ``sqrt(n_factors)``).
    lr_decay : float, default=1.0
        Factor applied to the learning rate after every epoch.
    partial_epochs : int, default=5
        SGD passes over the whole batch in each later ``partial_fit`` call.
    random_state : int or None, default=0
        Seed of all random draws. ``None`` draws a fresh seed at ``fit``; later
        ``partial_fit`` calls keep using the seed drawn then.
    min_rating, max_rating : float or None, default=None
        When set, ``predict`` clips its output to this range.

    Attributes
    ----------
    global_mean_ : float
        The global mean rating ``mu``.
    user_bias_, item_bias_ : ndarray of shape (n_users_,), (n_items_,)
        Biases, float64.
    user_factors_, item_factors_ : ndarray of shape (n_users_, n_factors), \
(n_items_, n_factors)
        Factors, float64.
    user_index_, item_index_ : dict
        Raw id to row.
    user_ids_, item_ids_ : ndarray of object
        Row to raw id.
    n_users_, n_items_ : int
        Number of known users and items.
    n_ratings_seen_ : int
        Number of rating rows passed to ``fit`` and ``partial_fit`` so far.
    weight_seen_ : float
        Sum of the sample weights of those rows; the weight of ``mu``.
    seed_ : int
        Seed in use, equal to ``random_state`` unless that was ``None``.
    n_fit_calls_ : int
        Number of training calls so far; picks the next call's random stream.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([["u1", "i1"], ["u1", "i2"], ["u2", "i1"]], dtype=object)
    >>> y = np.array([5.0, 3.0, 4.0])
    >>> model = BiasedMF(n_factors=4).fit(X, y)
    >>> model.n_users_, model.n_items_
    (2, 2)
    >>> model.predict([["u2", "i2"], ["someone new", "i1"]]).shape
    (2,)
    >>> items, scores = model.top_k(["u1"], k=1, exclude={"u1": ["i1"]})
    >>> items.tolist()
    [['i2']]
    """

    def __init__(
        self,
        n_factors: int = 32,
        n_epochs: int = 20,
        lr: float = 0.01,
        reg: float = 0.05,
        reg_bias: float = 0.2,
        init_std: float = 0.1,
        lr_decay: float = 1.0,
        partial_epochs: int = 5,
        random_state: int | None = 0,
        min_rating: float | None = None,
        max_rating: float | None = None,
    ) -> None:
        self.n_factors = n_factors
        self.n_epochs = n_epochs
        self.lr = lr
        self.reg = reg
        self.reg_bias = reg_bias
        self.init_std = init_std
        self.lr_decay = lr_decay
        self.partial_epochs = partial_epochs
        self.random_state = random_state
        self.min_rating = min_rating
        self.max_rating = max_rating

    def __sklearn_tags__(self):  # type: ignore[no-untyped-def]
        tags = super().__sklearn_tags__()
        # Ids are raw labels, usually strings, not numeric features.
        tags.input_tags.string = True
        return tags

    # -- pickling ---------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        # The id-to-row dicts are rebuilt from the id arrays on load, and ids that are all
        # strings travel as one fixed-width text array: pickle writes and reads a dict or
        # an object array one element at a time, which for a model of a million users
        # costs seconds at every update.
        state = dict(super().__getstate__())  # a copy: the default is the live __dict__
        for name in ("user_index_", "item_index_"):
            state.pop(name, None)
        for name in ("user_ids_", "item_ids_"):
            ids = state.get(name)
            if ids is not None and ids.size and all(type(v) is str for v in ids):
                state[name] = ids.astype(str)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for ids_name, index_name in (("user_ids_", "user_index_"), ("item_ids_", "item_index_")):
            ids = getattr(self, ids_name, None)
            if ids is None:
                continue
            if ids.dtype != object:
                ids = ids.astype(object)
                setattr(self, ids_name, ids)
            setattr(self, index_name, {value: row for row, value in enumerate(ids.tolist())})

    # -- training ---------------------------------------------------------

    def fit(
        self, X: Any, y: Any, sample_weight: Any = None, *, on_epoch: EpochHook | None = None
    ) -> BiasedMF:
        """Train from scratch on ``(user, item)`` pairs ``X`` and ratings ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, 2), or Pairs
            Raw ``(user, item)`` ids, any hashable values, or their codes as ``Pairs``
            (the same model, with less memory for millions of rows).
        y : array-like of shape (n_samples,)
            Ratings.
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative per-row weights scaling each row's gradient.
        on_epoch : callable, optional
            Called after every SGD pass, e.g. to drive a progress bar; see ``EpochHook``.

        Returns
        -------
        BiasedMF
            The fitted model.
        """
        self._validate_params()
        pairs, ratings, weights = self._check_data(X, y, sample_weight)
        if ratings.size == 0:
            raise ValueError("fit needs at least one rating; got none.")
        total_weight = float(weights.sum())
        if total_weight <= 0:
            raise ValueError("sample_weight must have a positive sum.")
        started = time.perf_counter()

        user_index: dict[Hashable, int] = {}
        item_index: dict[Hashable, int] = {}
        users, new_users = to_rows(pairs.users, pairs.user_ids, user_index)
        items, new_items = to_rows(pairs.items, pairs.item_ids, item_index)
        del pairs

        seed = int(self.random_state) if self.random_state is not None else secrets.randbits(128)
        rng = _call_rng(seed, 0)
        scale = self.init_std / math.sqrt(self.n_factors)
        P = rng.normal(0.0, scale, size=(len(new_users), self.n_factors))
        Q = rng.normal(0.0, scale, size=(len(new_items), self.n_factors))
        bu = np.zeros(len(new_users))
        bi = np.zeros(len(new_items))
        # mu = sum(w * r) / sum(w)
        mu = float(np.dot(weights, ratings) / total_weight)
        logger.debug(
            "fit: %d ratings, %d users, %d items encoded in %.3fs",
            ratings.size,
            len(new_users),
            len(new_items),
            time.perf_counter() - started,
        )

        rows = np.arange(ratings.size, dtype=np.int64)
        data = (users, items, ratings, weights)
        self._run_epochs(
            data, rows, self.n_epochs, rng, mu, bu, bi, P, Q, True, True, "fit", on_epoch
        )

        self.global_mean_ = mu
        self.user_bias_ = bu
        self.item_bias_ = bi
        self.user_factors_ = P
        self.item_factors_ = Q
        self.user_index_ = user_index
        self.item_index_ = item_index
        self.user_ids_ = _ids_array(new_users, len(new_users))
        self.item_ids_ = _ids_array(new_items, len(new_items))
        self.n_users_ = len(new_users)
        self.n_items_ = len(new_items)
        self.n_ratings_seen_ = int(ratings.size)
        self.weight_seen_ = total_weight
        self.seed_ = seed
        self.n_fit_calls_ = 1
        logger.debug("fit: done in %.3fs", time.perf_counter() - started)
        return self

    def partial_fit(
        self, X: Any, y: Any, sample_weight: Any = None, *, on_epoch: EpochHook | None = None
    ) -> BiasedMF:
        """Update the model with a batch of ratings; see the class docstring.

        Parameters
        ----------
        X : array-like of shape (n_samples, 2), or Pairs
            Raw ``(user, item)`` ids, or ``Pairs``; may include ids never seen before.
        y : array-like of shape (n_samples,)
            Ratings.
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative per-row weights scaling each row's gradient, e.g.
            below one for replayed old ratings.
        on_epoch : callable, optional
            Called after every SGD pass; see ``EpochHook``.

        Returns
        -------
        BiasedMF
            The updated model.
        """
        if not hasattr(self, "n_fit_calls_"):
            return self.fit(X, y, sample_weight, on_epoch=on_epoch)

        # Refuse before any state changes.
        self._validate_params()
        fitted_factors = self.user_factors_.shape[1]
        if self.n_factors != fitted_factors:
            raise ValueError(
                f"n_factors cannot change between partial_fit calls: the model "
                f"has {fitted_factors}, got {self.n_factors!r}; call fit instead."
            )
        pairs, ratings, weights = self._check_data(X, y, sample_weight)
        if ratings.size == 0:
            return self
        started = time.perf_counter()

        # Work on copies so an interrupted call leaves the model as it was.
        user_index = dict(self.user_index_)
        item_index = dict(self.item_index_)
        users, new_users = to_rows(pairs.users, pairs.user_ids, user_index)
        items, new_items = to_rows(pairs.items, pairs.item_ids, item_index)
        del pairs

        rng = _call_rng(self.seed_, self.n_fit_calls_)
        scale = self.init_std / math.sqrt(self.n_factors)
        P = np.vstack(
            [
                self.user_factors_,
                rng.normal(0.0, scale, size=(len(new_users), self.n_factors)),
            ]
        )
        Q = np.vstack(
            [
                self.item_factors_,
                rng.normal(0.0, scale, size=(len(new_items), self.n_factors)),
            ]
        )
        bu = np.concatenate([self.user_bias_, np.zeros(len(new_users))])
        bi = np.concatenate([self.item_bias_, np.zeros(len(new_items))])

        # Running weighted mean: mu' = mu + sum(w * (r - mu)) / (W + sum(w)),
        # which leaves mu exactly as it was when every weight is zero.
        mu_old = self.global_mean_
        total_weight = self.weight_seen_ + float(weights.sum())
        mu = float(mu_old + np.dot(weights, ratings - mu_old) / total_weight)

        data = (users, items, ratings, weights)
        new_user_rows = np.flatnonzero(users >= self.n_users_).astype(np.int64)
        new_item_rows = np.flatnonzero(items >= self.n_items_).astype(np.int64)
        if new_user_rows.size:
            self._run_epochs(
                data,
                new_user_rows,
                self.n_epochs,
                rng,
                mu,
                bu,
                bi,
                P,
                Q,
                True,
                False,
                "fold-in users",
                on_epoch,
            )
        if new_item_rows.size:
            self._run_epochs(
                data,
                new_item_rows,
                self.n_epochs,
                rng,
                mu,
                bu,
                bi,
                P,
                Q,
                False,
                True,
                "fold-in items",
                on_epoch,
            )
        rows = np.arange(ratings.size, dtype=np.int64)
        self._run_epochs(
            data, rows, self.partial_epochs, rng, mu, bu, bi, P, Q, True, True, "update", on_epoch
        )

        self.global_mean_ = mu
        self.user_bias_ = bu
        self.item_bias_ = bi
        self.user_factors_ = P
        self.item_factors_ = Q
        self.user_index_ = user_index
        self.item_index_ = item_index
        self.user_ids_ = np.concatenate([self.user_ids_, _ids_array(new_users, len(new_users))])
        self.item_ids_ = np.concatenate([self.item_ids_, _ids_array(new_items, len(new_items))])
        self.n_users_ = len(user_index)
        self.n_items_ = len(item_index)
        self.n_ratings_seen_ += int(ratings.size)
        self.weight_seen_ = total_weight
        self.n_fit_calls_ += 1
        logger.debug(
            "partial_fit: %d ratings, %d new users, %d new items in %.3fs",
            ratings.size,
            len(new_users),
            len(new_items),
            time.perf_counter() - started,
        )
        return self

    def _run_epochs(
        self,
        data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
        rows: np.ndarray,
        n_epochs: int,
        rng: np.random.Generator,
        mu: float,
        bu: np.ndarray,
        bi: np.ndarray,
        P: np.ndarray,
        Q: np.ndarray,
        update_users: bool,
        update_items: bool,
        stage: str,
        on_epoch: EpochHook | None = None,
    ) -> None:
        users, items, ratings, weights = data
        lr = float(self.lr)
        row_weight = float(weights[rows].sum())
        for epoch in range(n_epochs):
            started = time.perf_counter()
            order = rng.permutation(rows)
            sq_err = _sgd_epoch(
                users[order],
                items[order],
                ratings[order],
                weights[order],
                mu,
                bu,
                bi,
                P,
                Q,
                lr,
                float(self.reg),
                float(self.reg_bias),
                update_users,
                update_items,
            )
            if logger.isEnabledFor(logging.DEBUG):
                rmse = math.sqrt(sq_err / row_weight) if row_weight > 0 else 0.0
                logger.debug(
                    "%s epoch %d/%d: train rmse %.4f, lr %.5f, %.3fs",
                    stage,
                    epoch + 1,
                    n_epochs,
                    rmse,
                    lr,
                    time.perf_counter() - started,
                )
            if on_epoch is not None:
                on_epoch(stage, epoch + 1, n_epochs)
            lr *= self.lr_decay

    # -- prediction -------------------------------------------------------

    def predict(self, X: Any) -> np.ndarray:
        """Predict ratings for ``(user, item)`` pairs.

        Terms of an unknown user (bias and factors) or an unknown item are
        left out, so a pair of two unknown ids gets ``global_mean_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, 2), or Pairs
            Raw ``(user, item)`` ids, or ``Pairs``.

        Returns
        -------
        ndarray of shape (n_samples,)
            Predicted ratings, clipped to ``[min_rating, max_rating]`` when set.
        """
        check_is_fitted(self)
        pairs = X if isinstance(X, Pairs) else Pairs.from_ids(X)
        users = lookup_rows(pairs.users, pairs.user_ids, self.user_index_)
        items = lookup_rows(pairs.items, pairs.item_ids, self.item_index_)
        known_user = users >= 0
        known_item = items >= 0

        # r_hat = mu + b_u + b_i + p_u . q_i, each term only when its id is known
        pred = np.full(users.size, self.global_mean_, dtype=np.float64)
        pred[known_user] += self.user_bias_[users[known_user]]
        pred[known_item] += self.item_bias_[items[known_item]]
        both = np.flatnonzero(known_user & known_item)
        for start in range(0, both.size, _PREDICT_CHUNK):
            rows = both[start : start + _PREDICT_CHUNK]
            pred[rows] += np.einsum(
                "ij,ij->i",
                self.user_factors_[users[rows]],
                self.item_factors_[items[rows]],
            )
        return self._clip(pred)

    def score_items(self, user_ids: Any, item_rows: Any = None) -> np.ndarray:
        """Score every item (or the items at ``item_rows``) for each user.

        Parameters
        ----------
        user_ids : array-like of shape (n_users,)
            Raw user ids. An unknown user's row is ``mu + b_i``.
        item_rows : array-like of int, optional
            Rows of ``item_ids_`` to score; all items when omitted.

        Returns
        -------
        ndarray of shape (n_users, n_items)
            Predicted scores. NOTE: not clipped, so that items predicted
            above ``max_rating`` keep their order for ranking.
        """
        check_is_fitted(self)
        users = _lookup(_as_id_vector(user_ids, "user_ids"), self.user_index_)
        if item_rows is None:
            bi = self.item_bias_
            Q = self.item_factors_
        else:
            cols = np.asarray(item_rows)
            if cols.ndim != 1 or not np.issubdtype(cols.dtype, np.integer):
                raise ValueError("item_rows must be a one-dimensional integer array.")
            if cols.size and (cols.min() < 0 or cols.max() >= self.n_items_):
                raise ValueError(
                    f"item_rows must lie in [0, {self.n_items_}); "
                    f"got values from {cols.min()} to {cols.max()}."
                )
            bi = self.item_bias_[cols]
            Q = self.item_factors_[cols]

        # scores = mu + b_i + (b_u + P_u Q^T) for known users
        scores = np.empty((users.size, bi.size), dtype=np.float64)
        scores[:] = self.global_mean_ + bi
        known = np.flatnonzero(users >= 0)
        if known.size:
            rows = users[known]
            scores[known] += self.user_bias_[rows][:, None] + self.user_factors_[rows] @ Q.T
        return scores

    def top_k(
        self,
        user_ids: Any,
        k: int,
        exclude: Mapping[Hashable, Iterable[Hashable]] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return the ``k`` highest-scoring items for each user.

        The lists are those of :meth:`top_k_rows` (see :mod:`incr_cli.topk`): exact
        float64 rankings, equal scores ordered by item row, in bounded memory.

        Parameters
        ----------
        user_ids : array-like of shape (n_users,)
            Raw user ids; an unknown user is ranked by ``mu + b_i``.
        k : int
            Number of items per user, at least 1.
        exclude : mapping of user id to iterable of item ids, optional
            Items never to recommend to that user (e.g. already rated ones).
            Item ids the model does not know are ignored.

        Returns
        -------
        items : ndarray of object, shape (n_users, k)
            Raw item ids, best first; ``None`` where fewer than ``k`` items
            are left after exclusion.
        scores : ndarray of float64, shape (n_users, k)
            Their scores, descending; ``-inf`` beside each ``None``.
        """
        check_is_fitted(self)
        if isinstance(k, bool) or not isinstance(k, Integral) or k < 1:
            raise ValueError(f"k must be an integer in [1, inf); got {k!r}.")
        users = _as_id_vector(user_ids, "user_ids")
        indptr = np.zeros(len(users) + 1, dtype=np.int64)
        banned: list[int] = []
        if exclude:
            item_index = self.item_index_
            for position, user in enumerate(users):
                found = [item_index[i] for i in exclude.get(user, ()) if i in item_index]
                banned.extend(found)
                indptr[position + 1] = len(found)
            np.cumsum(indptr, out=indptr)
        rows, scores = self.top_k_rows(
            _lookup(users, self.user_index_), int(k), indptr, np.asarray(banned, dtype=np.int64)
        )
        items = self.item_ids_[np.maximum(rows, 0)] if self.n_items_ else rows.astype(object)
        items[rows < 0] = None
        return items, scores

    def top_k_rows(
        self, user_rows: np.ndarray, k: int, seen_indptr: np.ndarray, seen_items: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``top_k`` for many users at once, in rows rather than ids; see ``incr_cli.topk``.

        Equal scores are ordered by item row. ``user_rows`` holds -1 for an unknown user;
        each user's excluded item rows are ``seen_items[seen_indptr[j]:seen_indptr[j + 1]]``.
        Returns item rows (-1 where fewer than ``k`` are left) and their float64 scores.
        """
        check_is_fitted(self)
        return _top_k_rows(
            self.global_mean_,
            self.user_bias_,
            self.user_factors_,
            self.item_bias_,
            self.item_factors_,
            np.asarray(user_rows, dtype=np.int64),
            int(k),
            seen_indptr,
            seen_items,
        )

    # -- helpers ----------------------------------------------------------

    def _validate_params(self) -> None:
        for name, rule in _PARAM_RULES.items():
            value = getattr(self, name)
            if not rule.contains(value):
                raise ValueError(f"{name} must be {rule.describe()}; got {value!r}.")
        low, high = self.min_rating, self.max_rating
        if low is not None and high is not None and low > high:
            raise ValueError(
                f"min_rating must not exceed max_rating; got min_rating={low!r} "
                f"and max_rating={high!r}."
            )

    @staticmethod
    def _check_data(X: Any, y: Any, sample_weight: Any) -> tuple[Pairs, np.ndarray, np.ndarray]:
        pairs = X if isinstance(X, Pairs) else Pairs.from_ids(X)
        n = len(pairs)
        ratings = _as_vector(y, n, "y")
        if sample_weight is None:
            weights = np.ones(n, dtype=np.float64)
        else:
            weights = _as_vector(sample_weight, n, "sample_weight")
            if np.any(weights < 0):
                raise ValueError("sample_weight must be non-negative.")
        return pairs, ratings, weights

    def _clip(self, pred: np.ndarray) -> np.ndarray:
        if self.min_rating is None and self.max_rating is None:
            return pred
        return np.clip(pred, self.min_rating, self.max_rating)


def _call_rng(seed: int, call: int) -> np.random.Generator:
    """Random stream of training call number ``call`` of a model seeded ``seed``."""
    # spawn_key gives each call an independent stream that is a pure function
    # of (seed, call), so replaying the same calls replays the same draws.
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(call,)))
