"""Top-k items of many users of a biased MF model: fast, in bounded memory, exact.

Scoring every user against every item is one matrix product per batch of users, and the
product is what costs: a million users by a hundred thousand items by 32 factors is
6.4 * 10**12 multiply-adds. It runs here in float32, about twice as fast as float64, and
only to find candidates; each user's list is then chosen and scored in float64 with
the model's own formula, so the result is the float64 ranking, not an approximation:

1. ``A = [P_u, 1] [Q, b_i]^T`` in float32 (BLAS): ``p_u . q_i + b_i`` for every item.
   The user's own terms (``mu + b_u``) are the same for every item and leave the order
   alone.
2. Per user (numba, one user per thread at a time), the k-th best ``A`` among the items
   not seen, ``T``, then every unseen item with ``A >= T - 2 * bound``. ``bound`` is a
   proven limit on the float32 error (below), so no item outside that set can beat the
   k items that set ``T``: the set holds the float64 top k.
3. Each candidate is scored ``(mu + b_i) + (b_u + p_u . q_i)`` in float64, as
   ``BiasedMF.score_items`` does, and the k best are kept, best first; equal scores are
   ordered by item row (the order the model first met the items), so a tie never
   depends on how users were batched.

The error bound: rounding the inputs to float32 and summing ``n = n_factors + 1``
products in float32 errs by at most ``(n + 3) * 2**-24 * S`` (Higham, Accuracy and
Stability of Numerical Algorithms, section 3.1), where ``S = sum_f |p_f q_f| + |b_i|
<= ||p_u|| * max_i ||q_i|| + max_i |b_i|``. The float64 score errs by far less; a term
for it is added all the same.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# Users scored at once; their float32 scores take BATCH_CELLS * 4 bytes at most (256 MB).
# Larger batches pay the threads' start and the per-batch work less often: on 100,000
# items, 671 users a batch listed 36% more users a second than 167 did, on two cores.
BATCH_USERS = 1024
BATCH_CELLS = 1 << 26

_EPS32 = 2.0**-24
_EPS64 = 2.0**-53


def top_k_rows(
    mu: float,
    user_bias: np.ndarray,
    user_factors: np.ndarray,
    item_bias: np.ndarray,
    item_factors: np.ndarray,
    user_rows: np.ndarray,
    k: int,
    seen_indptr: np.ndarray,
    seen_items: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best item rows and their float64 scores for each user row.

    Parameters
    ----------
    mu, user_bias, user_factors, item_bias, item_factors
        The model: ``mu + b_u + b_i + p_u . q_i``.
    user_rows : ndarray of int, shape (n,)
        Rows of ``user_factors``; -1 for a user the model does not know, scored
        ``mu + b_i`` as ``BiasedMF.score_items`` does.
    k : int
        Items per user, at least 1.
    seen_indptr, seen_items : ndarray of int
        Items never to list, as compressed rows: user ``j``'s item rows are
        ``seen_items[seen_indptr[j]:seen_indptr[j + 1]]``, in any order; ``seen_indptr``
        has ``n + 1`` entries.

    Returns
    -------
    items : ndarray of int64, shape (n, k)
        Item rows, best first; -1 where fewer than ``k`` items are left.
    scores : ndarray of float64, shape (n, k)
        Their scores; ``-inf`` beside each -1.
    """
    n_users = user_rows.size
    n_items, n_factors = item_factors.shape
    items = np.full((n_users, k), -1, dtype=np.int64)
    scores = np.full((n_users, k), -np.inf, dtype=np.float64)
    if n_users == 0 or n_items == 0:
        return items, scores

    # Each user's seen items sorted, so that the kernel can look one up by bisection.
    indptr = np.asarray(seen_indptr, dtype=np.int64)
    seen = np.array(seen_items[indptr[0] : indptr[-1]], dtype=np.int64)
    indptr = indptr - indptr[0]
    if seen.size:
        owner = np.repeat(np.arange(n_users), np.diff(indptr))
        seen = seen[np.lexsort((seen, owner))]

    # The model as float32 with the item bias as one more factor: A = [P, 1] [Q, b]^T.
    items32 = np.empty((n_items, n_factors + 1), dtype=np.float32)
    items32[:, :n_factors] = item_factors
    items32[:, n_factors] = item_bias
    max_item = float(np.sqrt(np.einsum("ij,ij->i", item_factors, item_factors).max()))
    max_bias = float(np.abs(item_bias).max())

    known = user_rows >= 0
    P = np.zeros((n_users, n_factors), dtype=np.float64)
    P[known] = user_factors[user_rows[known]]
    bu = np.zeros(n_users, dtype=np.float64)
    bu[known] = user_bias[user_rows[known]]
    # The float32 error bound, plus the float64 score's own (see the module docstring).
    reach = np.sqrt(np.einsum("ij,ij->i", P, P)) * max_item + max_bias
    bound = (n_factors + 4) * _EPS32 * 1.01 * reach
    bound += (n_factors + 4) * 2 * _EPS64 * (reach + abs(mu) + np.abs(bu))

    base = mu + item_bias  # fl(mu + b_i), the first sum of score_items
    batch = max(1, min(BATCH_USERS, BATCH_CELLS // n_items))
    users32 = np.ones((batch, n_factors + 1), dtype=np.float32)
    # One buffer for every batch's product: a fresh 64 MB each time costs page faults.
    product = np.empty((batch, n_items), dtype=np.float32)
    for start in range(0, n_users, batch):
        stop = min(start + batch, n_users)
        users32[: stop - start, :n_factors] = P[start:stop]
        approx = product[: stop - start]
        np.matmul(users32[: stop - start], items32.T, out=approx)
        _select(
            approx,
            P[start:stop],
            bu[start:stop],
            item_factors,
            base,
            indptr[start : stop + 1],
            seen,
            bound[start:stop],
            items[start:stop],
            scores[start:stop],
        )
    return items, scores


@njit(cache=True, parallel=True)
def _select(  # type: ignore[no-untyped-def]
    approx, P, bu, Q, base, indptr, seen, bound, out_items, out_scores
):
    # NOTE: no fastmath: the float64 scores must be summed in the written order.
    n_users, n_items = approx.shape
    k = out_items.shape[1]
    m = 2 * k  # approximate places kept, so that one pass over the items mostly suffices
    for u in prange(n_users):
        lo = indptr[u]
        hi = indptr[u + 1]

        # Pass 1: the m best approximate scores among unseen items, best first.
        # A block of items whose maximum is not above the m-th best is skipped whole:
        # after the first blocks that is nearly every block, and the maximum is SIMD work.
        best = np.full(m, -np.inf, dtype=np.float32)
        where = np.full(m, -1, dtype=np.int64)
        row = approx[u]
        for block in range(0, n_items, _BLOCK):
            end = min(block + _BLOCK, n_items)
            if _block_max(row, block, end) <= best[m - 1]:
                continue
            for j in range(block, end):
                a = row[j]
                if a > best[m - 1] and not _contains(seen, lo, hi, j):
                    at = m - 1
                    while at > 0 and best[at - 1] < a:
                        best[at] = best[at - 1]
                        where[at] = where[at - 1]
                        at -= 1
                    best[at] = a
                    where[at] = j
        floor = np.float64(best[k - 1]) - 2.0 * bound[u]

        if np.float64(best[m - 1]) < floor:
            # Every item left out of `best` scores below the floor: the candidates are in it.
            for c in range(m):
                if np.float64(best[c]) >= floor:
                    _offer(where[c], u, P, bu, Q, base, out_items, out_scores)
        else:
            # Near-ties beyond m places (or fewer than m unseen items): look at every item.
            for j in range(n_items):
                if np.float64(approx[u, j]) >= floor and not _contains(seen, lo, hi, j):
                    _offer(j, u, P, bu, Q, base, out_items, out_scores)


# Items per block of the first pass; its maximum is taken with SIMD instructions.
_BLOCK = 64


# NOTE: only the reordering a maximum is indifferent to; no 'ninf', as -inf is a value here.
@njit(cache=True, fastmath={"nnan", "nsz", "reassoc"})
def _block_max(row, start, end):  # type: ignore[no-untyped-def]
    top = row[start]
    for j in range(start + 1, end):
        top = max(top, row[j])
    return top


@njit(cache=True)
def _offer(j, u, P, bu, Q, base, out_items, out_scores):  # type: ignore[no-untyped-def]
    """Score item ``j`` for user ``u`` in float64; keep it if among the best so far."""
    dot = 0.0
    for f in range(Q.shape[1]):
        dot += P[u, f] * Q[j, f]
    score = base[j] + (bu[u] + dot)  # (mu + b_i) + (b_u + p_u . q_i), as score_items

    # Best first; an equal score goes after the lower item rows, whatever the order offered.
    k = out_items.shape[1]
    last = out_scores[u, k - 1]
    if not (score > last or (score == last and j < out_items[u, k - 1])):
        return
    at = k - 1
    while at > 0 and (
        out_scores[u, at - 1] < score
        or (out_scores[u, at - 1] == score and out_items[u, at - 1] > j)
    ):
        out_scores[u, at] = out_scores[u, at - 1]
        out_items[u, at] = out_items[u, at - 1]
        at -= 1
    out_scores[u, at] = score
    out_items[u, at] = j


@njit(cache=True)
def _contains(sorted_values, lo, hi, value):  # type: ignore[no-untyped-def]
    """Whether ``value`` is in ``sorted_values[lo:hi]``, by bisection."""
    end = hi
    while lo < hi:
        mid = (lo + hi) // 2
        if sorted_values[mid] < value:
            lo = mid + 1
        else:
            hi = mid
    return lo < end and sorted_values[lo] == value
