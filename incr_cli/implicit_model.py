"""Matrix factorisation for implicit feedback, trained by alternating least squares.

Purchases, clicks and plays say what a user chose, not how much they liked it. The model
follows Hu, Koren and Volinsky (2008): every (user, item) pair is a preference of 1 if the
user has interacted with the item and 0 otherwise, weighted by a confidence
``c = 1 + alpha * w`` where ``w`` is the strength of the interactions (e.g. a log of the
quantity bought). Its ranking score adds to the factors' score the user's own history,
decayed with time, because in shops a customer's best predictor is what they bought before.
It can be trained from scratch (``fit``) or brought up to date with a batch of new
interactions (``partial_fit``) that solves again only the users and items in the batch.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Hashable, Iterable, Mapping
from numbers import Integral
from typing import Any

import numpy as np
import scipy.sparse as sp
from numba import njit
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from incr_cli.model import _as_id_vector, _call_rng, _ids_array, _Interval, _lookup
from incr_cli.pairs import Pairs, to_rows

__all__ = ["ImplicitMF"]

logger = logging.getLogger(__name__)

# Allowed values of every numeric constructor parameter, checked before any work.
_PARAM_RULES: dict[str, _Interval] = {
    "n_factors": _Interval("integer", 1, None),
    "n_iterations": _Interval("integer", 1, None),
    "partial_iterations": _Interval("integer", 0, None),
    "alpha": _Interval("real", 0, None),
    "reg": _Interval("real", 0, None, closed="neither"),
    "cg_steps": _Interval("integer", 1, None),
    "init_std": _Interval("real", 0, None),
    "history_weight": _Interval("real", 0, None),
    "history_half_life": _Interval("real", 0, None, closed="neither", allow_none=True),
    "popularity_weight": _Interval("real", 0, None),
    "popularity_half_life": _Interval("real", 0, None, closed="neither", allow_none=True),
    "random_state": _Interval("integer", 0, None, allow_none=True),
}
_SOLVERS = ("cg", "cholesky")
# How a pair's net weight becomes the strength ``w`` in ``c = 1 + alpha * w``.
_TRANSFORMS = ("identity", "log1p")

# Decayed sums are kept as sum of 2 ** ((t - origin) / half_life); once the newest time is
# this many half-lives past the origin they are rescaled to a new origin, long before
# 2 ** x overflows a float64 (x > 1023).
_REBASE_HALF_LIVES = 64.0


# NOTE: fastmath lets LLVM reorder the dot products' sums, so the last bits of a result
# can differ between machines; on one machine a seeded run is still exactly repeatable.
@njit(cache=True, fastmath=True)
def _solve_cg(
    indptr: np.ndarray,
    indices: np.ndarray,
    weights: np.ndarray,
    rows: np.ndarray,
    X: np.ndarray,
    Y: np.ndarray,
    YtY: np.ndarray,
    alpha: float,
    reg: float,
    steps: int,
) -> None:
    """Improve ``X[u]`` for each ``u`` in ``rows`` by ``steps`` conjugate-gradient steps, in place.

    Row ``u`` of the CSR matrix ``(indptr, indices, weights)`` holds the items of ``u`` and
    their strengths ``w``; ``c = 1 + alpha * w``. Each step works towards the solution of

        (Y^T Y + reg I + sum_i (c_ui - 1) y_i y_i^T) x_u = sum_i c_ui y_i

    without forming the matrix: ``Y^T Y`` is shared by all rows, and the rest costs one pass
    over the row's items. The current ``X[u]`` is the starting point, so a few steps per
    sweep suffice once the factors are near their solution (Takacs, Pilaszy, Tikk 2011).
    """
    n_factors = X.shape[1]
    r = np.empty(n_factors)
    p = np.empty(n_factors)
    Ap = np.empty(n_factors)
    for n in range(rows.size):
        u = rows[n]
        x = X[u]

        # r = b - A x = sum_i (c - (c - 1) y_i . x) y_i - (Y^T Y + reg I) x
        for f in range(n_factors):
            acc = reg * x[f]
            for g in range(n_factors):
                acc += YtY[f, g] * x[g]
            r[f] = -acc
        for idx in range(indptr[u], indptr[u + 1]):
            y = Y[indices[idx]]
            c1 = alpha * weights[idx]
            dot = 0.0
            for f in range(n_factors):
                dot += y[f] * x[f]
            scale = 1.0 + c1 - c1 * dot
            for f in range(n_factors):
                r[f] += scale * y[f]

        rs_old = 0.0
        for f in range(n_factors):
            p[f] = r[f]
            rs_old += r[f] * r[f]
        for _ in range(steps):
            if rs_old < 1e-20:
                break

            # Ap = (Y^T Y + reg I) p + sum_i (c - 1) (y_i . p) y_i
            for f in range(n_factors):
                acc = reg * p[f]
                for g in range(n_factors):
                    acc += YtY[f, g] * p[g]
                Ap[f] = acc
            for idx in range(indptr[u], indptr[u + 1]):
                y = Y[indices[idx]]
                c1 = alpha * weights[idx]
                dot = 0.0
                for f in range(n_factors):
                    dot += y[f] * p[f]
                scale = c1 * dot
                for f in range(n_factors):
                    Ap[f] += scale * y[f]

            pAp = 0.0
            for f in range(n_factors):
                pAp += p[f] * Ap[f]
            if pAp <= 0.0:
                break
            step = rs_old / pAp
            rs_new = 0.0
            for f in range(n_factors):
                x[f] += step * p[f]
                r[f] -= step * Ap[f]
                rs_new += r[f] * r[f]
            ratio = rs_new / rs_old
            for f in range(n_factors):
                p[f] = r[f] + ratio * p[f]
            rs_old = rs_new


@njit(cache=True)
def _gram(Y: np.ndarray) -> np.ndarray:
    """``Y.T @ Y`` summed in one fixed order, so that the same factors always give the
    same bits (a BLAS product may take another path for another memory alignment)."""
    k = Y.shape[1]
    G = np.zeros((k, k))
    for r in range(Y.shape[0]):
        for a in range(k):
            ya = Y[r, a]
            for b in range(a, k):
                G[a, b] += ya * Y[r, b]
    for a in range(k):
        for b in range(a):
            G[a, b] = G[b, a]
    return G


@njit(cache=True, fastmath=True)
def _solve_exact(
    indptr: np.ndarray,
    indices: np.ndarray,
    weights: np.ndarray,
    rows: np.ndarray,
    X: np.ndarray,
    Y: np.ndarray,
    YtY: np.ndarray,
    alpha: float,
    reg: float,
) -> None:
    """Set ``X[u]`` for each ``u`` in ``rows`` to the exact least-squares solution, in place.

    Forms ``A = Y^T Y + reg I + sum_i (c_ui - 1) y_i y_i^T`` and ``b = sum_i c_ui y_i``
    and solves ``A x = b`` by a Cholesky factorisation written out here (``A`` is
    symmetric positive definite because ``reg > 0``), which costs ``n_factors ** 2`` per
    item of the row plus ``n_factors ** 3 / 3`` per row.
    """
    n_factors = X.shape[1]
    A = np.empty((n_factors, n_factors))
    b = np.empty(n_factors)
    for n in range(rows.size):
        u = rows[n]
        for f in range(n_factors):
            b[f] = 0.0
            for g in range(n_factors):
                A[f, g] = YtY[f, g]
            A[f, f] += reg
        for idx in range(indptr[u], indptr[u + 1]):
            y = Y[indices[idx]]
            c1 = alpha * weights[idx]
            for f in range(n_factors):
                b[f] += (1.0 + c1) * y[f]
                cy = c1 * y[f]
                for g in range(f + 1):
                    A[f, g] += cy * y[g]

        # In place: the lower triangle of A becomes L with A = L L^T.
        for j in range(n_factors):
            d = A[j, j]
            for m in range(j):
                d -= A[j, m] * A[j, m]
            d = math.sqrt(d)
            A[j, j] = d
            for i in range(j + 1, n_factors):
                s = A[i, j]
                for m in range(j):
                    s -= A[i, m] * A[j, m]
                A[i, j] = s / d

        # L z = b, then L^T x = z
        x = X[u]
        for i in range(n_factors):
            s = b[i]
            for m in range(i):
                s -= A[i, m] * x[m]
            x[i] = s / A[i, i]
        for i in range(n_factors - 1, -1, -1):
            s = x[i]
            for m in range(i + 1, n_factors):
                s -= A[m, i] * x[m]
            x[i] = s / A[i, i]


def _as_weights(weights: Any, n: int) -> np.ndarray:
    if weights is None:
        return np.ones(n, dtype=np.float64)
    arr = np.ascontiguousarray(weights, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"weights must have shape ({n},); got shape {arr.shape!r}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError("weights must hold only finite numbers.")
    return arr


def _as_times(times: Any, n: int, default: float) -> np.ndarray:
    if times is None:
        return np.full(n, default, dtype=np.float64)
    arr = np.ascontiguousarray(times, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"times must have shape ({n},); got shape {arr.shape!r}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError("times must hold only finite numbers.")
    return arr


def _nonzero(pairs: Pairs, w: np.ndarray, t: np.ndarray) -> tuple[Pairs, np.ndarray, np.ndarray]:
    """The rows of non-zero weight: a row of weight 0 changes nothing."""
    if bool(np.all(w != 0)):
        return pairs, w, t
    keep = w != 0
    return pairs[keep], w[keep], t[keep]


def _grow(matrix: sp.csr_matrix, n_rows: int, n_cols: int) -> sp.csr_matrix:
    """The same CSR matrix with empty rows and columns appended up to the new shape."""
    extra = n_rows - matrix.shape[0]
    indptr = np.concatenate([matrix.indptr, np.full(extra, matrix.indptr[-1])])
    return sp.csr_matrix((matrix.data, matrix.indices, indptr), shape=(n_rows, n_cols))


def _csr(
    rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int]
) -> sp.csr_matrix:
    """CSR matrix of the triplets, repeated pairs summed, indices sorted, 64-bit indices."""
    matrix = sp.csr_matrix((values, (rows, cols)), shape=shape)
    matrix.sum_duplicates()
    return _int64(matrix)


def _int64(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """The matrix with 64-bit index arrays, the one type the numba kernels are built for.

    NOTE: scipy picks 32-bit indices for small matrices, including the results of sums and
    transposes; each new index type would compile the kernels once more.
    """
    matrix.indptr = matrix.indptr.astype(np.int64, copy=False)
    matrix.indices = matrix.indices.astype(np.int64, copy=False)
    return matrix


def _decay(times: np.ndarray, origin: float, half_life: float | None) -> np.ndarray:
    """``2 ** ((t - origin) / half_life)``: an event's weight relative to one at ``origin``."""
    if half_life is None:
        return np.ones_like(times)
    return np.exp2((times - origin) / half_life)


class ImplicitMF(BaseEstimator):
    """Implicit-feedback matrix factorisation with a decayed repeat-purchase signal.

    Each observed ``(user, item)`` pair has preference 1 and confidence
    ``c_ui = 1 + alpha * w_ui``, where ``w_ui = transform(n_ui)`` and ``n_ui`` is the net
    sum of the ``weights`` of its rows; every other pair has preference 0 and confidence 1.
    A negative weight is a cancellation: it offsets the pair's earlier rows, and a pair
    whose net sum is zero or below counts as never bought (preference 0, no history). The
    factors minimise::

        sum over all pairs of c_ui (p_ui - x_u . y_i) ** 2
            + reg * (sum_u |x_u| ** 2 + sum_i |y_i| ** 2)

    by alternating least squares: with the item factors fixed each user's factors have a
    closed form, and the other way round (Hu, Koren, Volinsky 2008). ``solver="cg"``
    improves each row by ``cg_steps`` conjugate-gradient steps from its current value,
    ``solver="cholesky"`` solves it exactly; both cost one pass over the row's items per
    step, plus one ``n_factors ** 2`` Gram matrix of the fixed side per half-sweep.

    The score that ranks item ``i`` for a known user ``u`` is::

        s_ui = x_u . y_i + history_weight * h_ui / max_j h_uj
                         + popularity_weight * n_i / max_j n_j

    where ``h_ui`` counts the rows of ``(u, i)`` seen so far, each decayed by half every
    ``history_half_life`` days, and ``n_i`` counts all rows of item ``i`` decayed by
    ``popularity_half_life``. Both terms lie in ``[0, 1]``, as the factors' score does
    roughly (it fits preferences of 0 and 1). Items a user already has are not excluded:
    in shops they are the likeliest next purchases, and ``h_ui`` ranks them by how often
    and how lately the user bought them. A user never seen is ranked by ``n_i`` alone.

    ``fit`` trains from scratch: factors start from ``N(0, init_std)`` and ``n_iterations``
    sweeps solve users, then items. ``partial_fit`` learns a batch of rows without a full
    retrain:

    1. The batch's strengths and decayed counts are added to the stored history.
    2. Fold-in: users never seen before are solved exactly against the item factors,
       then items never seen before against the user factors. Everything else stays fixed.
    3. ``partial_iterations`` sweeps solve again the users in the batch, then the items in
       the batch, each against its whole history.

    So an update solves only the rows the batch touches; users and items it does not touch
    keep their factors until the next ``fit``. Only ``fit`` draws random numbers (the
    initial factors, seeded by ``random_state``), so a given sequence of calls gives
    bitwise-identical parameters. The first ``partial_fit`` on an unfitted model is ``fit``.

    Parameters
    ----------
    n_factors : int, default=64
        Number of latent factors per user and item.
    n_iterations : int, default=15
        ALS sweeps (users, then items) in ``fit``.
    partial_iterations : int, default=2
        Sweeps over the batch's users and items in each later ``partial_fit`` call.
    alpha : float, default=3.0
        Confidence per unit of strength: ``c = 1 + alpha * w``.
    reg : float, default=0.1
        L2 penalty on the factors; must be positive so that every solve is well posed.
    solver : {"cg", "cholesky"}, default="cg"
        How each sweep solves a row; fold-in always solves exactly.
    cg_steps : int, default=3
        Conjugate-gradient steps per row and sweep with ``solver="cg"``.
    init_std : float, default=0.01
        Standard deviation of the random factor initialisation.
    history_weight : float, default=1.0
        Weight of the user's own decayed history in the score; 0 ranks by factors alone.
    history_half_life : float or None, default=90.0
        Days after which a row counts half in the history; ``None`` never decays.
    popularity_weight : float, default=0.8
        Weight of the items' decayed popularity in a known user's score.
    popularity_half_life : float or None, default=7.0
        Days after which a row counts half in the popularity; ``None`` never decays.
    random_state : int or None, default=0
        Seed of the factor initialisation. ``None`` draws a fresh seed at ``fit``; later
        ``partial_fit`` calls keep using the seed drawn then.
    transform : {"identity", "log1p"}, default="identity"
        How a pair's net weight becomes its strength: ``w = n`` or ``w = log(1 + n)``; the
        latter for quantities, so that a hundred units do not weigh a hundred times one.

    Attributes
    ----------
    user_factors_, item_factors_ : ndarray of shape (n_users_, n_factors), \
(n_items_, n_factors)
        Factors, float64.
    strengths_ : scipy.sparse.csr_matrix of shape (n_users_, n_items_)
        Net sum of the weights of every ``(user, item)`` pair seen; zero or below when
        cancellations offset all its purchases.
    history_ : scipy.sparse.csr_matrix of shape (n_users_, n_items_)
        Rows of every pair, each weighted ``2 ** ((t - time_origin_) / history_half_life)``.
    popularity_ : ndarray of shape (n_items_,)
        Purchase rows (positive weight) of every item, each weighted by
        ``popularity_half_life`` the same way; a cancellation does not take one back.
    time_origin_ : float
        Time at which a row has weight 1 in ``history_`` and ``popularity_``.
    last_time_ : float
        Latest time seen.
    user_index_, item_index_ : dict
        Raw id to row.
    user_ids_, item_ids_ : ndarray of object
        Row to raw id.
    n_users_, n_items_ : int
        Number of known users and items.
    n_rows_seen_ : int
        Number of rows passed to ``fit`` and ``partial_fit`` so far.
    seed_ : int
        Seed in use, equal to ``random_state`` unless that was ``None``.
    n_fit_calls_ : int
        Number of training calls (``fit`` and ``partial_fit``) since the last ``fit``.

    Examples
    --------
    >>> X = [["ann", "tea"], ["ann", "cup"], ["bob", "tea"], ["bob", "pot"]]
    >>> model = ImplicitMF(n_factors=2, history_weight=0.0).fit(X)
    >>> model.n_users_, model.n_items_
    (2, 3)
    >>> items, scores = model.top_k(["ann"], k=1, exclude={"ann": ["tea", "cup"]})
    >>> items.tolist()
    [['pot']]
    >>> model = model.partial_fit([["cat", "pot"]], weights=[2.0])
    >>> model.n_users_
    3
    """

    def __init__(
        self,
        n_factors: int = 64,
        n_iterations: int = 15,
        partial_iterations: int = 2,
        alpha: float = 3.0,
        reg: float = 0.1,
        solver: str = "cg",
        cg_steps: int = 3,
        init_std: float = 0.01,
        history_weight: float = 1.0,
        history_half_life: float | None = 90.0,
        popularity_weight: float = 0.8,
        popularity_half_life: float | None = 7.0,
        random_state: int | None = 0,
        transform: str = "identity",
    ) -> None:
        self.n_factors = n_factors
        self.n_iterations = n_iterations
        self.partial_iterations = partial_iterations
        self.alpha = alpha
        self.reg = reg
        self.solver = solver
        self.cg_steps = cg_steps
        self.init_std = init_std
        self.history_weight = history_weight
        self.history_half_life = history_half_life
        self.popularity_weight = popularity_weight
        self.popularity_half_life = popularity_half_life
        self.random_state = random_state
        self.transform = transform

    def __sklearn_tags__(self):  # type: ignore[no-untyped-def]
        tags = super().__sklearn_tags__()
        # Ids are raw labels, usually strings, not numeric features.
        tags.input_tags.string = True
        return tags

    # -- pickling ---------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        # As BiasedMF: the id-to-row dicts are rebuilt on load, and ids that are all
        # strings travel as one fixed-width text array rather than one object at a time.
        state = dict(super().__getstate__())
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

    def fit(self, X: Any, weights: Any = None, *, times: Any = None) -> ImplicitMF:
        """Train from scratch on ``(user, item)`` rows ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, 2), or Pairs
            Raw ``(user, item)`` ids, any hashable values, or their codes as ``Pairs``
            (the same model, with less memory for millions of rows). A pair may appear in
            several rows (e.g. one per day it was bought); its strengths add up.
        weights : array-like of shape (n_samples,), optional
            Weight of each row (e.g. a quantity), 1 when omitted; a negative weight
            cancels that much of the pair's earlier rows, a weight of 0 changes nothing.
        times : array-like of shape (n_samples,), optional
            Time of each row in days from any fixed origin (unix seconds / 86400, a day
            number); 0 when omitted.

        Returns
        -------
        ImplicitMF
            The fitted model.
        """
        self._validate_params()
        pairs = X if isinstance(X, Pairs) else Pairs.from_ids(X)
        n = len(pairs)
        w = _as_weights(weights, n)
        t = _as_times(times, n, 0.0)
        pairs, w, t = _nonzero(pairs, w, t)
        if not np.any(w > 0):
            raise ValueError("fit needs at least one row of positive weight; got none.")
        started = time.perf_counter()

        user_index: dict[Hashable, int] = {}
        item_index: dict[Hashable, int] = {}
        users, new_users = to_rows(pairs.users, pairs.user_ids, user_index)
        items, new_items = to_rows(pairs.items, pairs.item_ids, item_index)
        del pairs
        shape = (len(new_users), len(new_items))

        # Only purchases count in the history and popularity; a negative row offsets the
        # pair's net weight, and a pair netted to zero or below drops out of both.
        origin = float(t.max())
        bought = w > 0
        strengths = _csr(users, items, w, shape)
        history = _csr(users, items, _decay(t, origin, self.history_half_life) * bought, shape)
        popularity = np.bincount(
            items, _decay(t, origin, self.popularity_half_life) * bought, minlength=shape[1]
        )

        seed = int(self.random_state) if self.random_state is not None else secrets.randbits(128)
        rng = _call_rng(seed, 0)
        X_u = rng.normal(0.0, self.init_std, size=(shape[0], self.n_factors))
        Y_i = rng.normal(0.0, self.init_std, size=(shape[1], self.n_factors))

        by_user = self._confidence(strengths)
        by_item = _int64(by_user.T.tocsr())
        all_users = np.arange(shape[0], dtype=np.int64)
        all_items = np.arange(shape[1], dtype=np.int64)
        for sweep in range(self.n_iterations):
            swept = time.perf_counter()
            self._solve(by_user, all_users, X_u, Y_i, exact=False)
            self._solve(by_item, all_items, Y_i, X_u, exact=False)
            logger.debug(
                "fit sweep %d/%d: %.3fs", sweep + 1, self.n_iterations, time.perf_counter() - swept
            )

        self.user_factors_ = X_u
        self.item_factors_ = Y_i
        self.strengths_ = strengths
        self.history_ = history
        self.popularity_ = popularity
        self.time_origin_ = origin
        self.last_time_ = origin
        self.user_index_ = user_index
        self.item_index_ = item_index
        self.user_ids_ = _ids_array(new_users, len(new_users))
        self.item_ids_ = _ids_array(new_items, len(new_items))
        self.n_users_ = shape[0]
        self.n_items_ = shape[1]
        self.n_rows_seen_ = int(w.size)
        self.seed_ = seed
        self.n_fit_calls_ = 1
        logger.debug(
            "fit: %d rows, %d users, %d items in %.3fs",
            w.size,
            shape[0],
            shape[1],
            time.perf_counter() - started,
        )
        return self

    def partial_fit(self, X: Any, weights: Any = None, *, times: Any = None) -> ImplicitMF:
        """Update the model with a batch of rows; see the class docstring.

        Parameters
        ----------
        X : array-like of shape (n_samples, 2), or Pairs
            Raw ``(user, item)`` ids, or ``Pairs``; may include ids never seen before.
        weights : array-like of shape (n_samples,), optional
            Weight of each row (e.g. a quantity), 1 when omitted; a negative weight
            cancels that much of the pair's earlier rows, a weight of 0 changes nothing.
        times : array-like of shape (n_samples,), optional
            Time of each row in days, from the same origin as in ``fit``; the latest time
            seen so far when omitted.

        Returns
        -------
        ImplicitMF
            The updated model.
        """
        if not hasattr(self, "n_fit_calls_"):
            return self.fit(X, weights, times=times)

        # Refuse before any state changes.
        self._validate_params()
        fitted_factors = self.user_factors_.shape[1]
        if self.n_factors != fitted_factors:
            raise ValueError(
                f"n_factors cannot change between partial_fit calls: the model "
                f"has {fitted_factors}, got {self.n_factors!r}; call fit instead."
            )
        pairs = X if isinstance(X, Pairs) else Pairs.from_ids(X)
        n = len(pairs)
        w = _as_weights(weights, n)
        t = _as_times(times, n, self.last_time_)
        pairs, w, t = _nonzero(pairs, w, t)
        if not w.size:
            return self
        started = time.perf_counter()

        # Work on copies so an interrupted call leaves the model as it was.
        user_index = dict(self.user_index_)
        item_index = dict(self.item_index_)
        users, new_users = to_rows(pairs.users, pairs.user_ids, user_index)
        items, new_items = to_rows(pairs.items, pairs.item_ids, item_index)
        del pairs
        shape = (len(user_index), len(item_index))

        # Rescale the decayed sums to a later origin before they could overflow.
        last_time = max(self.last_time_, float(t.max()))
        origin = self.time_origin_
        history = _grow(self.history_, *shape)
        popularity = np.concatenate([self.popularity_, np.zeros(len(new_items))])
        half_lives = [h for h in (self.history_half_life, self.popularity_half_life) if h]
        if half_lives and (last_time - origin) / min(half_lives) > _REBASE_HALF_LIVES:
            # 2 ** ((t - new) / h) = 2 ** ((t - old) / h) * 2 ** ((old - new) / h)
            shift = np.array([origin])
            history = history * float(_decay(shift, last_time, self.history_half_life)[0])
            popularity *= float(_decay(shift, last_time, self.popularity_half_life)[0])
            origin = last_time

        # NOTE: adding CSR matrices copies the stored history, a memory copy linear in the
        # pairs held; the least-squares solves below touch only the batch's rows.
        bought = w > 0
        strengths = _grow(self.strengths_, *shape) + _csr(users, items, w, shape)
        decayed = _decay(t, origin, self.history_half_life) * bought
        # NOTE: scipy chooses the index type of a sum by more than its inputs' types, and a
        # model file must be the same bytes for the same data: 64-bit, as for strengths.
        history = _int64(history + _csr(users, items, decayed, shape))
        popularity += np.bincount(
            items, _decay(t, origin, self.popularity_half_life) * bought, minlength=shape[1]
        )
        strengths = _int64(strengths)
        by_user = self._confidence(strengths)
        by_item = _int64(by_user.T.tocsr())

        # New rows start at zero; fold-in then solves them exactly against fixed factors.
        X_u = np.vstack([self.user_factors_, np.zeros((len(new_users), self.n_factors))])
        Y_i = np.vstack([self.item_factors_, np.zeros((len(new_items), self.n_factors))])
        fresh_users = np.arange(self.n_users_, shape[0], dtype=np.int64)
        fresh_items = np.arange(self.n_items_, shape[1], dtype=np.int64)
        if fresh_users.size:
            self._solve(by_user, fresh_users, X_u, Y_i, exact=True)
        if fresh_items.size:
            self._solve(by_item, fresh_items, Y_i, X_u, exact=True)

        # A few sweeps over the batch's users and items, each against its whole history.
        touched_users = np.unique(users).astype(np.int64)
        touched_items = np.unique(items).astype(np.int64)
        for _ in range(self.partial_iterations):
            self._solve(by_user, touched_users, X_u, Y_i, exact=False)
            self._solve(by_item, touched_items, Y_i, X_u, exact=False)

        self.user_factors_ = X_u
        self.item_factors_ = Y_i
        self.strengths_ = strengths
        self.history_ = history
        self.popularity_ = popularity
        self.time_origin_ = origin
        self.last_time_ = last_time
        self.user_index_ = user_index
        self.item_index_ = item_index
        self.user_ids_ = np.concatenate([self.user_ids_, _ids_array(new_users, len(new_users))])
        self.item_ids_ = np.concatenate([self.item_ids_, _ids_array(new_items, len(new_items))])
        self.n_users_ = shape[0]
        self.n_items_ = shape[1]
        self.n_rows_seen_ += int(w.size)
        self.n_fit_calls_ += 1
        logger.debug(
            "partial_fit: %d rows, %d new users, %d new items, %d users and %d items "
            "solved in %.3fs",
            w.size,
            len(new_users),
            len(new_items),
            touched_users.size,
            touched_items.size,
            time.perf_counter() - started,
        )
        return self

    def _confidence(self, strengths: sp.csr_matrix) -> sp.csr_matrix:
        """The strengths the solves read: ``transform(max(net, 0))`` per pair, and only the
        pairs whose net weight is positive.

        NOTE: the kernels read every stored pair as a preference of 1, so a pair netted to
        zero or below (bought, then cancelled) must be dropped, not kept with strength 0.
        """
        matrix = strengths.copy()
        matrix.data = np.maximum(matrix.data, 0.0)
        matrix.eliminate_zeros()
        if self.transform == "log1p":
            matrix.data = np.log1p(matrix.data)
        return _int64(matrix)

    def _solve(
        self, matrix: sp.csr_matrix, rows: np.ndarray, X: np.ndarray, Y: np.ndarray, exact: bool
    ) -> None:
        """Solve ``X[rows]`` against fixed ``Y``, in place; ``matrix`` holds the strengths."""
        if rows.size == 0:
            return
        YtY = _gram(Y)
        args = (matrix.indptr, matrix.indices, matrix.data, rows, X, Y, YtY)
        if exact or self.solver == "cholesky":
            _solve_exact(*args, float(self.alpha), float(self.reg))
        else:
            _solve_cg(*args, float(self.alpha), float(self.reg), int(self.cg_steps))

    # -- scoring ----------------------------------------------------------

    def score_items(self, user_ids: Any, item_rows: Any = None) -> np.ndarray:
        """Score every item (or the items at ``item_rows``) for each user.

        Parameters
        ----------
        user_ids : array-like of shape (n_users,)
            Raw user ids. An unknown user's row is the items' normalised popularity.
        item_rows : array-like of int, optional
            Rows of ``item_ids_`` to score; all items when omitted.

        Returns
        -------
        ndarray of shape (n_users, n_items)
            Scores ``s_ui`` of the class docstring; higher ranks first.
        """
        check_is_fitted(self)
        users = _lookup(_as_id_vector(user_ids, "user_ids"), self.user_index_)
        if item_rows is None:
            cols = np.arange(self.n_items_)
        else:
            cols = np.asarray(item_rows)
            if cols.ndim != 1 or not np.issubdtype(cols.dtype, np.integer):
                raise ValueError("item_rows must be a one-dimensional integer array.")
            if cols.size and (cols.min() < 0 or cols.max() >= self.n_items_):
                raise ValueError(
                    f"item_rows must lie in [0, {self.n_items_}); "
                    f"got values from {cols.min()} to {cols.max()}."
                )

        # n_i / max_j n_j, over the whole catalogue so that item_rows do not change it
        top = float(self.popularity_.max()) if self.n_items_ else 0.0
        popularity = self.popularity_[cols] / top if top > 0 else np.zeros(cols.size)

        scores = np.empty((users.size, cols.size), dtype=np.float64)
        scores[:] = popularity
        known = np.flatnonzero(users >= 0)
        if not known.size:
            return scores
        rows = users[known]

        # x_u . y_i + history_weight * h_ui / max_j h_uj + popularity_weight * n_i / max n
        blend = self.user_factors_[rows] @ self.item_factors_[cols].T
        if self.popularity_weight:
            blend += self.popularity_weight * popularity
        if self.history_weight:
            # A pair whose purchases were all cancelled is no longer the user's.
            history = self.history_[rows].multiply(self.strengths_[rows] > 0).tocsr()
            peak = history.max(axis=1).toarray().ravel()
            peak[peak <= 0] = 1.0
            own = sp.diags(self.history_weight / peak) @ history
            blend += own[:, cols].toarray()
        scores[known] = blend
        return scores

    def top_k(
        self,
        user_ids: Any,
        k: int,
        exclude: Mapping[Hashable, Iterable[Hashable]] | None = None,
        chunk_size: int = 2048,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return the ``k`` highest-scoring items for each user.

        Parameters
        ----------
        user_ids : array-like of shape (n_users,)
            Raw user ids; unknown users get the most popular items.
        k : int
            Number of items per user, at least 1.
        exclude : mapping of user id to iterable of item ids, optional
            Items never to recommend to that user. Item ids the model does not know are
            ignored. NOTE: for repeat purchases leave it out; the items a user has are
            the ones the history term ranks first.
        chunk_size : int, default=2048
            Users scored at once; bounds memory to ``chunk_size * n_items_`` floats.

        Returns
        -------
        items : ndarray of object, shape (n_users, k)
            Raw item ids, best first; ``None`` where fewer than ``k`` items are left
            after exclusion.
        scores : ndarray of float64, shape (n_users, k)
            Their scores, descending; ``-inf`` beside each ``None``.
        """
        check_is_fitted(self)
        for name, value in (("k", k), ("chunk_size", chunk_size)):
            if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
                raise ValueError(f"{name} must be an integer in [1, inf); got {value!r}.")
        users = _as_id_vector(user_ids, "user_ids")
        n_users = len(users)
        kept = min(int(k), self.n_items_)
        out_items = np.full((n_users, k), None, dtype=object)
        out_scores = np.full((n_users, k), -np.inf, dtype=np.float64)

        for start in range(0, n_users, chunk_size):
            chunk = users[start : start + chunk_size]
            scores = self.score_items(chunk)
            if exclude:
                self._mask_excluded(scores, chunk, exclude)

            # Partial selection of the best `kept` columns, then a stable sort of those.
            if kept < self.n_items_:
                best = np.argpartition(-scores, kept - 1, axis=1)[:, :kept]
            else:
                best = np.broadcast_to(np.arange(self.n_items_), scores.shape)
            best_scores = np.take_along_axis(scores, best, axis=1)
            order = np.argsort(-best_scores, axis=1, kind="stable")
            best = np.take_along_axis(best, order, axis=1)
            best_scores = np.take_along_axis(best_scores, order, axis=1)

            chunk_items = self.item_ids_[best]
            chunk_items[np.isneginf(best_scores)] = None
            stop = start + len(chunk)
            out_items[start:stop, :kept] = chunk_items
            out_scores[start:stop, :kept] = best_scores
        return out_items, out_scores

    def _mask_excluded(
        self,
        scores: np.ndarray,
        chunk: list[Hashable],
        exclude: Mapping[Hashable, Iterable[Hashable]],
    ) -> None:
        """Set the score of each excluded (user, item) pair to -inf in place."""
        rows: list[int] = []
        cols: list[int] = []
        item_index = self.item_index_
        for row, user in enumerate(chunk):
            banned = exclude.get(user)
            if not banned:
                continue
            found = [item_index[item] for item in banned if item in item_index]
            rows.extend([row] * len(found))
            cols.extend(found)
        if rows:
            scores[rows, cols] = -np.inf

    # -- helpers ----------------------------------------------------------

    def _validate_params(self) -> None:
        for name, rule in _PARAM_RULES.items():
            value = getattr(self, name)
            if not rule.contains(value):
                raise ValueError(f"{name} must be {rule.describe()}; got {value!r}.")
        if self.solver not in _SOLVERS:
            raise ValueError(f"solver must be one of {_SOLVERS!r}; got {self.solver!r}.")
        if self.transform not in _TRANSFORMS:
            raise ValueError(f"transform must be one of {_TRANSFORMS!r}; got {self.transform!r}.")
