"""(user, item) pairs held as numbers: each row's position in two vocabularies of ids.

Millions of rows of ids as Python objects cost ten times the memory of the numbers the
models train on, and turning each into a row of the model one dictionary look-up at a
time costs seconds. A :class:`Pairs` keeps the ids once each, in a vocabulary, and every
row as two integer codes into them; DuckDB can write the codes itself by joining its rows
to the vocabularies. A model then maps each id of the vocabulary, not each row, to a row
of its own (:func:`to_rows`), in the order the rows first use them, so that a model fitted
on ``Pairs`` is exactly the one fitted on the same rows given as raw ids.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Pairs", "first_seen", "lookup_rows", "to_rows"]

#: The dtype of codes and of model rows: half the memory of int64, room for 2**31 ids.
CODE_DTYPE = np.int32


@dataclass(frozen=True)
class Pairs:
    """(user, item) pairs as codes into two vocabularies of raw ids.

    Row ``n`` is the pair ``(user_ids[users[n]], item_ids[items[n]])``. A vocabulary may
    hold ids no row uses, in any order; the models read only the ids the rows use, in the
    order the rows first use them.

    Attributes
    ----------
    users, items : ndarray of int32, shape (n_rows,)
        Each row's position in ``user_ids`` and ``item_ids``.
    user_ids, item_ids : ndarray of object
        The vocabularies.

    Examples
    --------
    >>> pairs = Pairs.from_ids([["ann", "tea"], ["bob", "tea"], ["ann", "pot"]])
    >>> pairs.users.tolist(), pairs.items.tolist(), pairs.item_ids.tolist()
    ([0, 1, 0], [0, 0, 1], ['tea', 'pot'])
    >>> pairs[np.array([False, True, True])].ids().tolist()
    [['bob', 'tea'], ['ann', 'pot']]
    """

    users: np.ndarray
    items: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray

    def __post_init__(self) -> None:
        for name in ("users", "items"):
            codes = getattr(self, name)
            if codes.ndim != 1 or not np.issubdtype(codes.dtype, np.integer):
                raise ValueError(f"{name} must be a one-dimensional integer array.")
        if self.users.shape != self.items.shape:
            raise ValueError(
                f"users and items must have the same length; got {self.users.size} "
                f"and {self.items.size}."
            )
        for codes, ids, name in (
            (self.users, self.user_ids, "users"),
            (self.items, self.item_ids, "items"),
        ):
            if codes.size and (codes.min() < 0 or codes.max() >= len(ids)):
                raise ValueError(f"{name} must lie in [0, {len(ids)}), the vocabulary's rows.")

    def __len__(self) -> int:
        return int(self.users.size)

    def __getitem__(self, rows: Any) -> Pairs:
        """The pairs at ``rows`` (a mask or indices), with the same vocabularies."""
        return Pairs(self.users[rows], self.items[rows], self.user_ids, self.item_ids)

    @classmethod
    def from_ids(cls, X: Any) -> Pairs:
        """Pairs of an ``(n, 2)`` array-like of raw ``(user, item)`` ids.

        Each vocabulary holds its ids in the order the rows first use them.
        """
        arr = np.asarray(X, dtype=object)
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise ValueError(
                "X must have shape (n_samples, 2) holding (user, item) ids; "
                f"got shape {arr.shape!r}."
            )
        users, user_ids = _encode(arr[:, 0].tolist())
        items, item_ids = _encode(arr[:, 1].tolist())
        return cls(users, items, user_ids, item_ids)

    @classmethod
    def concat(cls, first: Pairs, second: Pairs) -> Pairs:
        """The rows of ``first`` then those of ``second``.

        Two vocabularies that are not the same arrays are put end to end, so an id may
        then appear twice in one; the models read both copies as the same id.
        """
        users, user_ids = _join(first.users, first.user_ids, second.users, second.user_ids)
        items, item_ids = _join(first.items, first.item_ids, second.items, second.item_ids)
        return cls(users, items, user_ids, item_ids)

    def ids(self) -> np.ndarray:
        """The rows as an ``(n, 2)`` object array of raw ids; for small batches."""
        out = np.empty((len(self), 2), dtype=object)
        out[:, 0] = self.user_ids[self.users]
        out[:, 1] = self.item_ids[self.items]
        return out


def _encode(values: list[Hashable]) -> tuple[np.ndarray, np.ndarray]:
    """Codes of ``values`` in a vocabulary of their distinct values, first seen first."""
    index: dict[Hashable, int] = {}
    codes = np.fromiter(
        (index.setdefault(value, len(index)) for value in values),
        dtype=CODE_DTYPE,
        count=len(values),
    )
    # fromiter keeps a tuple id as one element, where np.array would unpack it.
    return codes, np.fromiter(index, dtype=object, count=len(index))


def _join(
    first: np.ndarray, first_ids: np.ndarray, second: np.ndarray, second_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    if first_ids is second_ids:
        return np.concatenate([first, second]), first_ids
    shifted = second.astype(CODE_DTYPE) + CODE_DTYPE(len(first_ids))
    return np.concatenate([first.astype(CODE_DTYPE), shifted]), np.concatenate(
        [first_ids, second_ids]
    )


def first_seen(codes: np.ndarray, n: int) -> np.ndarray:
    """The values of ``codes`` (each in ``[0, n)``), once each, in order of first use.

    Examples
    --------
    >>> first_seen(np.array([2, 0, 2, 3]), 5).tolist()
    [2, 0, 3]
    """
    # first[c] = the smallest row holding c, or len(codes) for a code no row holds
    first = np.full(n, codes.size, dtype=np.int64)
    np.minimum.at(first, codes, np.arange(codes.size, dtype=np.int64))
    used = np.flatnonzero(first < codes.size)
    return used[np.argsort(first[used], kind="stable")]


def to_rows(
    codes: np.ndarray, ids: np.ndarray, index: MutableMapping[Hashable, int]
) -> tuple[np.ndarray, list[Hashable]]:
    """The row of ``index`` of each code's id, adding the ids it lacks.

    Ids not in ``index`` get the next rows, in the order ``codes`` first uses them, as
    a dictionary filled row by row would give them. Returns the rows (int32) and the ids
    added, in order.

    Examples
    --------
    >>> index = {"bob": 0}
    >>> rows, new = to_rows(np.array([1, 0, 1]), np.array(["ann", "bob"], dtype=object), index)
    >>> rows.tolist(), new, index
    ([0, 1, 0], ['ann'], {'bob': 0, 'ann': 1})
    """
    used = first_seen(codes, len(ids))
    lookup = np.zeros(len(ids), dtype=CODE_DTYPE)
    added: list[Hashable] = []
    for position, key in zip(used.tolist(), ids[used].tolist(), strict=True):
        row = index.get(key)
        if row is None:
            row = index[key] = len(index)
            added.append(key)
        lookup[position] = row
    return lookup[codes], added


def lookup_rows(codes: np.ndarray, ids: np.ndarray, index: Mapping[Hashable, int]) -> np.ndarray:
    """The row of ``index`` of each code's id, -1 for an id it does not hold (int64)."""
    lookup = np.fromiter(
        (index.get(key, -1) for key in ids.tolist()), dtype=np.int64, count=len(ids)
    )
    return lookup[codes]
