"""BiasedMF.top_k_rows: batched top-k lists equal to one user at a time and to brute force."""

from __future__ import annotations

import numpy as np
import pytest

from incr_cli import topk
from incr_cli.model import BiasedMF


@pytest.fixture(scope="module")
def fitted() -> BiasedMF:
    rng = np.random.default_rng(3)
    users = [f"u{n}" for n in rng.integers(0, 60, 3000)]
    items = [f"i{n}" for n in rng.integers(0, 400, 3000)]
    X = np.array([users, items], dtype=object).T
    return BiasedMF(n_factors=8, n_epochs=5).fit(X, rng.integers(1, 6, 3000).astype(float))


def _csr(lists: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    indptr = np.concatenate([[0], np.cumsum([len(items) for items in lists])])
    flat = np.concatenate([np.asarray(items, dtype=np.int64) for items in lists] or [[]])
    return indptr.astype(np.int64), flat.astype(np.int64)


def _one_at_a_time(model: BiasedMF, rows: np.ndarray, k: int, lists: list[list[int]]):
    parts = [model.top_k_rows(rows[n : n + 1], k, *_csr([lists[n]])) for n in range(rows.size)]
    return np.vstack([p[0] for p in parts]), np.vstack([p[1] for p in parts])


def _brute_force(model: BiasedMF, users: list, k: int, lists: list[list[int]]):
    """Every item scored in float64, the unseen ones sorted by score, then by row."""
    full = model.score_items(users)
    full[np.repeat(np.arange(len(lists)), [len(x) for x in lists]), sum(lists, [])] = -np.inf
    best = np.argsort(-full, axis=1, kind="stable")[:, :k]
    return best, np.take_along_axis(full, best, axis=1)


def test_batched_lists_equal_one_user_at_a_time_and_brute_force(fitted):
    rng = np.random.default_rng(0)
    rows = np.arange(fitted.n_users_)
    lists = [sorted(rng.choice(fitted.n_items_, 30, replace=False).tolist()) for _ in rows]

    items, scores = fitted.top_k_rows(rows, 10, *_csr(lists))
    single_items, single_scores = _one_at_a_time(fitted, rows, 10, lists)
    ref_items, ref_scores = _brute_force(fitted, list(fitted.user_ids_), 10, lists)

    np.testing.assert_array_equal(items, single_items)
    np.testing.assert_array_equal(scores, single_scores)
    np.testing.assert_array_equal(items, ref_items)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-12)
    assert not any(set(items[r]) & set(lists[r]) for r in rows)


def test_equal_scores_are_ordered_by_item_row_in_every_batching(fitted):
    model = BiasedMF(n_factors=8).set_params()
    model.__dict__.update(fitted.__dict__)
    # Items 0-39 tie for first place, far above the others: ties beyond k are cut by row.
    model.item_factors_ = fitted.item_factors_.copy()
    model.item_bias_ = fitted.item_bias_.copy()
    model.item_factors_[:40] = fitted.item_factors_[0]
    model.item_bias_[:40] = 10.0
    rows = np.arange(model.n_users_)
    lists = [[3, 17] if r % 2 else [] for r in rows]

    items, scores = model.top_k_rows(rows, 5, *_csr(lists))
    single_items, _ = _one_at_a_time(model, rows, 5, lists)

    np.testing.assert_array_equal(items, single_items)
    assert items[0].tolist() == [0, 1, 2, 3, 4]
    assert items[1].tolist() == [0, 1, 2, 4, 5]
    assert np.all(scores[:, 0] == scores[:, 4])


def test_a_user_who_has_seen_every_item_gets_an_empty_list(fitted):
    every = list(range(fitted.n_items_))
    rows = np.array([0, 1])
    items, scores = fitted.top_k_rows(rows, 3, *_csr([every, every[5:]]))

    assert items[0].tolist() == [-1, -1, -1] and np.all(np.isneginf(scores[0]))
    # Five items left: all of them in order, and no padding needed with k = 3.
    assert set(items[1].tolist()) <= set(range(5)) and np.all(np.isfinite(scores[1]))
    short, short_scores = fitted.top_k_rows(rows[1:], 8, *_csr([every[5:]]))
    assert sorted(short[0, :5].tolist()) == list(range(5))
    assert short[0, 5:].tolist() == [-1, -1, -1] and np.all(np.isneginf(short_scores[0, 5:]))


def test_an_unknown_user_row_is_scored_by_the_item_terms_alone(fitted):
    items, scores = fitted.top_k_rows(np.array([-1]), 5, *_csr([[]]))
    ref_items, ref_scores = _brute_force(fitted, ["nobody"], 5, [[]])

    assert items[0].tolist() == ref_items[0].tolist()
    np.testing.assert_array_equal(scores, ref_scores)


def test_batches_smaller_than_the_users_change_nothing(fitted, monkeypatch):
    rows = np.arange(fitted.n_users_)
    lists = [[r % fitted.n_items_] for r in rows]
    whole = fitted.top_k_rows(rows, 7, *_csr(lists))
    monkeypatch.setattr(topk, "BATCH_USERS", 7)
    batched = fitted.top_k_rows(rows, 7, *_csr(lists))

    np.testing.assert_array_equal(whole[0], batched[0])
    np.testing.assert_array_equal(whole[1], batched[1])
