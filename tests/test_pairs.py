"""Pairs: rows as codes into id vocabularies train the very model the raw ids train."""

from __future__ import annotations

import numpy as np
import pytest

from incr_cli.implicit_model import ImplicitMF
from incr_cli.model import BiasedMF
from incr_cli.pairs import Pairs, first_seen, lookup_rows, to_rows


def _ratings(seed: int, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 40, n)
    items = rng.integers(0, 25, n)
    X = np.array([[f"u{u}", f"i{i}"] for u, i in zip(users, items, strict=True)], dtype=object)
    return X, rng.integers(1, 6, n).astype(np.float64)


def _shuffled(X: np.ndarray, seed: int) -> Pairs:
    """The rows of X as codes into vocabularies in a random order, with unused ids."""
    rng = np.random.default_rng(seed)
    columns = []
    for column in (X[:, 0], X[:, 1]):
        ids = np.array(sorted(set(column.tolist())) + ["never used"], dtype=object)
        ids = ids[rng.permutation(ids.size)]
        index = {key: code for code, key in enumerate(ids.tolist())}
        codes = np.array([index[key] for key in column.tolist()], dtype=np.int32)
        columns.append((codes, ids))
    (users, user_ids), (items, item_ids) = columns
    return Pairs(users, items, user_ids, item_ids)


def _same(a: object, b: object) -> None:
    for name, value in vars(a).items():
        other = vars(b)[name]
        if isinstance(value, np.ndarray):
            assert value.tolist() == other.tolist(), name
        elif hasattr(value, "toarray"):
            assert (value != other).nnz == 0, name
        else:
            assert value == other, name


def test_first_seen_lists_each_code_once_in_order_of_first_use() -> None:
    assert first_seen(np.array([3, 1, 3, 0, 1]), 5).tolist() == [3, 1, 0]
    assert first_seen(np.array([], dtype=np.int32), 2).tolist() == []


def test_to_rows_adds_new_ids_in_order_of_first_use_and_reads_duplicates_as_one() -> None:
    ids = np.array(["b", "a", "c", "a"], dtype=object)  # "a" twice, as after concat
    index = {"c": 0}
    rows, added = to_rows(np.array([3, 0, 2, 1, 0]), ids, index)
    assert rows.tolist() == [1, 2, 0, 1, 2]
    assert added == ["a", "b"]
    assert lookup_rows(np.array([0, 1, 2]), ids, {"a": 5}).tolist() == [-1, 5, -1]


def test_pairs_refuse_codes_outside_their_vocabulary() -> None:
    ids = np.array(["a"], dtype=object)
    with pytest.raises(ValueError, match=r"users must lie in \[0, 1\)"):
        Pairs(np.array([1]), np.array([0]), ids, ids)


def test_biased_mf_trains_the_same_model_on_pairs_as_on_raw_ids() -> None:
    X, y = _ratings(0)
    X2, y2 = _ratings(1, 150)
    raw = BiasedMF(n_factors=4, n_epochs=3, random_state=7).fit(X, y).partial_fit(X2, y2)
    # The second batch's rows in two parts with vocabularies of their own, end to end.
    second = Pairs.concat(_shuffled(X2[:60], 3), _shuffled(X2[60:], 4))
    coded = BiasedMF(n_factors=4, n_epochs=3, random_state=7).fit(_shuffled(X, 2), y)
    coded.partial_fit(second, y2)
    _same(raw, coded)
    assert raw.predict(X2).tolist() == coded.predict(second).tolist()


def test_implicit_mf_trains_the_same_model_on_pairs_as_on_raw_ids() -> None:
    X, w = _ratings(5)
    w[::7] = -1.0  # some cancellations
    X2, w2 = _ratings(6, 100)
    days = np.arange(w.size, dtype=np.float64) / 50
    raw = ImplicitMF(n_factors=3, n_iterations=2).fit(X, w, times=days)
    raw.partial_fit(X2, w2, times=days[: w2.size] + 10)
    coded = ImplicitMF(n_factors=3, n_iterations=2).fit(_shuffled(X, 8), w, times=days)
    coded.partial_fit(_shuffled(X2, 9), w2, times=days[: w2.size] + 10)
    _same(raw, coded)
