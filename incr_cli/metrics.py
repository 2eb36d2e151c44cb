"""Accuracy and ranking metrics for evaluating recommendations.

Pure numpy: every function takes plain sequences or arrays and returns floats, so
the same code scores a model in the CLI, in tests and in benchmarks.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["coverage", "mae", "ranking_metrics", "rmse", "stability"]


def _paired_errors(y_true: ArrayLike, y_pred: ArrayLike) -> np.ndarray:
    """Return ``y_pred - y_true`` after checking the two arrays pair up."""
    true = np.asarray(y_true, dtype=np.float64)
    pred = np.asarray(y_pred, dtype=np.float64)
    if true.ndim != 1 or pred.ndim != 1:
        raise ValueError(
            f"y_true and y_pred must be one-dimensional, got shapes {true.shape} and {pred.shape}"
        )
    if true.shape != pred.shape:
        raise ValueError(
            f"y_true and y_pred must have the same length, got {true.size} and {pred.size}"
        )
    if true.size == 0:
        raise ValueError("y_true and y_pred must hold at least one value, got none")
    if not (np.isfinite(true).all() and np.isfinite(pred).all()):
        raise ValueError("y_true and y_pred must be finite (no NaN or infinity)")
    return pred - true


def rmse(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Root mean squared error between true and predicted ratings.

    ``rmse = sqrt(mean((y_pred - y_true) ** 2))``

    Parameters
    ----------
    y_true, y_pred
        One-dimensional arrays of the same, non-zero length.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If the arrays are empty, differ in length, are not one-dimensional or
        hold a non-finite value.

    Examples
    --------
    >>> rmse([3.0, 4.0, 5.0], [3.0, 5.0, 3.0])
    1.2909944487358056
    """
    err = _paired_errors(y_true, y_pred)
    return float(np.sqrt(np.mean(err * err)))


def mae(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean absolute error between true and predicted ratings.

    ``mae = mean(|y_pred - y_true|)``

    Parameters
    ----------
    y_true, y_pred
        One-dimensional arrays of the same, non-zero length.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If the arrays are empty, differ in length, are not one-dimensional or
        hold a non-finite value.

    Examples
    --------
    >>> mae([3.0, 4.0, 5.0], [3.0, 5.0, 3.0])
    1.0
    """
    err = _paired_errors(y_true, y_pred)
    return float(np.mean(np.abs(err)))


def _top_k(items: Iterable[Hashable | None], k: int) -> list[Hashable]:
    """First ``k`` distinct items of a ranked list, padding skipped.

    NOTE: a repeated item keeps only its first (best) position; counting it twice
    would let recall exceed 1.
    """
    seen: set[Hashable] = set()
    top: list[Hashable] = []
    for item in items:
        if item is None or item in seen:
            continue
        seen.add(item)
        top.append(item)
        if len(top) == k:
            break
    return top


def ranking_metrics(
    recommended: Sequence[Iterable[Hashable | None]],
    relevant: Sequence[Iterable[Hashable]],
    k: int,
) -> dict[str, float]:
    """Top-k ranking quality averaged over users.

    Each user's list is cut to its first ``k`` items after dropping ``None``
    padding (and repeats of an item already listed). A *hit* is a listed item that
    is in the user's relevant set; positions ``i`` count from 1. With ``H`` the
    hits in the top ``k`` and ``R`` the relevant set, per user:

    - precision@k = ``H / k`` (a list shorter than ``k`` still divides by ``k``);
    - recall@k = ``H / |R|``;
    - f1@k = ``2 * precision * recall / (precision + recall)``, 0 when both are 0;
    - ndcg@k = ``DCG / IDCG`` with binary gains, where
      ``DCG = sum over hit positions i of 1 / log2(i + 1)`` and ``IDCG`` is the
      same sum over positions ``1 .. min(|R|, k)``, the best any list could do;
    - ap@k = ``(1 / min(|R|, k)) * sum over hit positions i of precision@i``;
    - hit = 1 if ``H >= 1`` else 0.

    Each metric is the mean of the per-user values (``map`` is the mean of ap@k,
    ``hit_rate`` the mean of hit) over the users that have at least one relevant
    item. Users with an empty relevant set are skipped: every metric above is
    undefined or trivially 0 for them.

    Parameters
    ----------
    recommended
        One ranked list of item ids per user, best first. ``None`` entries are
        padding and are ignored.
    relevant
        One collection of relevant item ids per user, parallel to
        ``recommended``.
    k
        Cut-off rank, at least 1.

    Returns
    -------
    dict of str to float
        ``precision``, ``recall``, ``f1``, ``ndcg``, ``map`` and ``hit_rate`` at
        ``k``; ``users``, the number of users evaluated, and ``users_skipped``,
        the number with no relevant item. When no user is evaluated the six
        metrics are NaN.

    Raises
    ------
    ValueError
        If ``k`` is not a positive integer or the two sequences differ in length.

    Examples
    --------
    One user with hits at ranks 1 and 3 out of two relevant items:

    >>> m = ranking_metrics([[10, 11, 12]], [{10, 12}], k=3)
    >>> round(m["precision"], 4), m["recall"], m["hit_rate"]
    (0.6667, 1.0, 1.0)
    >>> round(m["ndcg"], 4), round(m["map"], 4)
    (0.9197, 0.8333)
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be an integer of at least 1, got {k!r}")
    k = int(k)
    if len(recommended) != len(relevant):
        raise ValueError(
            "recommended and relevant must hold one entry per user each, "
            f"got {len(recommended)} and {len(relevant)}"
        )

    # discount[i - 1] = 1 / log2(i + 1) for ranks i = 1..k
    discount = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))
    # ideal_dcg[n] = DCG of n hits at the top, for n = 0..k
    ideal_dcg = np.concatenate(([0.0], np.cumsum(discount)))

    sums = dict.fromkeys(("precision", "recall", "f1", "ndcg", "map", "hit_rate"), 0.0)
    users = 0
    skipped = 0
    for ranked, rel in zip(recommended, relevant, strict=True):
        rel_set = set(rel)
        if not rel_set:
            skipped += 1
            continue
        users += 1

        top = _top_k(ranked, k)
        hit_ranks = [i for i, item in enumerate(top, start=1) if item in rel_set]
        hits = len(hit_ranks)
        if hits == 0:
            # Every per-user metric is 0 without a hit.
            continue

        precision = hits / k
        recall = hits / len(rel_set)
        n_ideal = min(len(rel_set), k)

        sums["precision"] += precision
        sums["recall"] += recall
        sums["f1"] += 2.0 * precision * recall / (precision + recall)

        # DCG = sum 1/log2(i+1) over hit ranks i; IDCG = same over ranks 1..n_ideal
        dcg = float(discount[np.asarray(hit_ranks) - 1].sum())
        sums["ndcg"] += dcg / float(ideal_dcg[n_ideal])

        # precision@i at the j-th hit (rank i) is j / i
        sums["map"] += sum(j / i for j, i in enumerate(hit_ranks, start=1)) / n_ideal
        sums["hit_rate"] += 1.0

    result = {name: (total / users if users else math.nan) for name, total in sums.items()}
    result["users"] = users
    result["users_skipped"] = skipped
    return result


def coverage(recommended: Iterable[Iterable[Hashable | None]], n_catalog_items: int) -> float:
    """Share of the catalogue that appears in at least one recommended list.

    ``coverage = |union of all lists| / n_catalog_items``, ``None`` padding
    ignored.

    Parameters
    ----------
    recommended
        Recommended lists, one per user.
    n_catalog_items
        Number of items that could have been recommended, at least 1.

    Returns
    -------
    float
        A share in ``[0, 1]``.

    Raises
    ------
    ValueError
        If ``n_catalog_items`` is below 1, or the lists name more distinct items
        than the catalogue holds (the catalogue size is then wrong).

    Examples
    --------
    >>> coverage([[1, 2, None], [2, 3]], n_catalog_items=6)
    0.5
    """
    if (
        isinstance(n_catalog_items, bool)
        or not isinstance(n_catalog_items, int | np.integer)
        or n_catalog_items < 1
    ):
        raise ValueError(
            f"n_catalog_items must be an integer of at least 1, got {n_catalog_items!r}"
        )
    shown = {item for ranked in recommended for item in ranked if item is not None}
    if len(shown) > n_catalog_items:
        raise ValueError(
            f"the lists name {len(shown)} distinct items, more than "
            f"n_catalog_items={n_catalog_items}; it must count the whole catalogue"
        )
    return len(shown) / int(n_catalog_items)


def stability(
    previous: Sequence[Iterable[Hashable | None]],
    current: Sequence[Iterable[Hashable | None]],
    k: int,
) -> float:
    """Mean share of each user's top-k list that is new since the previous list.

    Per user, with ``C`` the first ``k`` distinct items of the current list and
    ``P`` those of the previous one (``None`` padding dropped)::

        changed = |C - P| / |C|

    Order inside the lists is ignored: an item that only moves within the top
    ``k`` is not a change the user notices as new. The result is the mean over
    users whose current list is not empty; 0 means every list is the same set
    as before, 1 that no user sees any item again.

    Parameters
    ----------
    previous, current
        One ranked list per user, parallel to each other.
    k
        Cut-off rank, at least 1.

    Returns
    -------
    float
        A share in ``[0, 1]``; NaN when no current list holds an item.

    Raises
    ------
    ValueError
        If ``k`` is not a positive integer or the two sequences differ in length.

    Examples
    --------
    One user keeps two of three items, the other gets a whole new list:

    >>> stability([[1, 2, 3], [4, 5]], [[3, 1, 9], [6, 7]], k=3)
    0.6666666666666666
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be an integer of at least 1, got {k!r}")
    if len(previous) != len(current):
        raise ValueError(
            "previous and current must hold one list per user each, "
            f"got {len(previous)} and {len(current)}"
        )
    total = 0.0
    users = 0
    for before, now in zip(previous, current, strict=True):
        top = _top_k(now, int(k))
        if not top:
            continue
        kept = set(_top_k(before, int(k)))
        total += sum(item not in kept for item in top) / len(top)
        users += 1
    return total / users if users else math.nan
