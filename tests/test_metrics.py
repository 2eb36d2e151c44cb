"""Tests of the accuracy, ranking and coverage metrics."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import (
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    ndcg_score,
    precision_score,
    recall_score,
)

from incr_cli import metrics as metrics_module
from incr_cli.metrics import coverage, mae, ranking_metrics, rmse, stability

METRIC_NAMES = ("precision", "recall", "f1", "ndcg", "map", "hit_rate")


# --- rmse and mae -------------------------------------------------------------


def test_rmse_and_mae_on_a_hand_worked_case():
    # errors = [0, 1, -2, 1]
    # squared: 0 + 1 + 4 + 1 = 6, mean 1.5, rmse = sqrt(1.5)
    # absolute: 0 + 1 + 2 + 1 = 4, mean 1.0
    y_true = [4.0, 3.0, 5.0, 1.0]
    y_pred = [4.0, 4.0, 3.0, 2.0]

    assert rmse(y_true, y_pred) == pytest.approx(math.sqrt(1.5), abs=1e-15)
    assert mae(y_true, y_pred) == 1.0


def test_rmse_and_mae_of_a_perfect_prediction_are_zero():
    assert rmse([1, 2, 3], [1, 2, 3]) == 0.0
    assert mae([1, 2, 3], [1, 2, 3]) == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rmse_and_mae_agree_with_sklearn(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(1, 6, size=500).astype(float)
    y_pred = y_true + rng.normal(0.0, 0.8, size=500)

    assert rmse(y_true, y_pred) == pytest.approx(
        math.sqrt(mean_squared_error(y_true, y_pred)), rel=1e-12
    )
    assert mae(y_true, y_pred) == pytest.approx(mean_absolute_error(y_true, y_pred), rel=1e-12)


@pytest.mark.parametrize("func", [rmse, mae])
@pytest.mark.parametrize(
    ("y_true", "y_pred", "message"),
    [
        ([], [], "at least one value"),
        ([1.0, 2.0], [1.0], "same length"),
        ([[1.0, 2.0]], [[1.0, 2.0]], "one-dimensional"),
        ([1.0, float("nan")], [1.0, 2.0], "finite"),
        ([1.0, 2.0], [1.0, float("inf")], "finite"),
    ],
)
def test_rmse_and_mae_refuse_inputs_that_do_not_pair_up(func, y_true, y_pred, message):
    with pytest.raises(ValueError, match=message):
        func(y_true, y_pred)


# --- ranking_metrics ----------------------------------------------------------


def test_ranking_metrics_on_a_hand_worked_case():
    recommended = [
        [1, 2, 3, 4],  # user A: hits at ranks 2 and 4
        [5, None, 6],  # user B: no hit
        [7, 8],  # user C: nothing relevant, skipped
    ]
    relevant = [{2, 4, 9}, {7}, set()]

    m = ranking_metrics(recommended, relevant, k=4)

    # User A: H = 2, |R| = 3, k = 4
    #   precision = 2/4, recall = 2/3
    #   f1 = 2 * (1/2) * (2/3) / (1/2 + 2/3) = (2/3) / (7/6) = 4/7
    #   DCG  = 1/log2(3) + 1/log2(5)
    #   IDCG = 1/log2(2) + 1/log2(3) + 1/log2(4)   (min(3, 4) = 3 ideal hits)
    #   AP   = (1/3) * (precision@2 + precision@4) = (1/3) * (1/2 + 2/4) = 1/3
    # User B: every metric 0. Means are over A and B.
    dcg_a = 1 / math.log2(3) + 1 / math.log2(5)
    idcg_a = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert m["precision"] == pytest.approx(0.5 / 2)
    assert m["recall"] == pytest.approx((2 / 3) / 2)
    assert m["f1"] == pytest.approx((4 / 7) / 2)
    assert m["ndcg"] == pytest.approx((dcg_a / idcg_a) / 2)
    assert m["map"] == pytest.approx((1 / 3) / 2)
    assert m["hit_rate"] == 0.5
    assert m["users"] == 2
    assert m["users_skipped"] == 1


def test_ranking_metrics_ap_and_ndcg_reward_early_hits():
    # Two relevant items, k = 3.
    # early: hits at 1, 2 -> AP = (1/2)(1/1 + 2/2) = 1, NDCG = 1
    # late:  hits at 2, 3 -> AP = (1/2)(1/2 + 2/3) = 7/12,
    #        NDCG = (1/log2(3) + 1/log2(4)) / (1 + 1/log2(3))
    early = ranking_metrics([[1, 2, 3]], [{1, 2}], k=3)
    late = ranking_metrics([[3, 1, 2]], [{1, 2}], k=3)

    assert early["map"] == pytest.approx(1.0)
    assert early["ndcg"] == pytest.approx(1.0)
    assert late["map"] == pytest.approx(7 / 12)
    assert late["ndcg"] == pytest.approx((1 / math.log2(3) + 0.5) / (1 + 1 / math.log2(3)))
    # Precision and recall ignore order.
    assert early["precision"] == late["precision"] == pytest.approx(2 / 3)
    assert early["recall"] == late["recall"] == 1.0


def test_ranking_metrics_cut_lists_at_k():
    # The only hit is at rank 3, beyond k = 2: no hit at all.
    m = ranking_metrics([[1, 2, 3]], [{3}], k=2)

    assert all(m[name] == 0.0 for name in METRIC_NAMES)
    assert m["users"] == 1


def test_ranking_metrics_ignore_none_padding():
    # Padding is dropped before the cut: the top-1 is item 3, a hit.
    m = ranking_metrics([[None, 3, None]], [{3}], k=1)

    assert m["precision"] == 1.0
    assert m["ndcg"] == 1.0


def test_ranking_metrics_divide_precision_by_k_for_short_lists():
    # One hit in a list of one, k = 5: precision = 1/5, recall = 1/1.
    m = ranking_metrics([[4]], [{4}], k=5)

    assert m["precision"] == pytest.approx(0.2)
    assert m["recall"] == 1.0
    assert m["ndcg"] == 1.0  # IDCG uses min(|R|, k) = 1 ideal hit
    assert m["map"] == 1.0


def test_ranking_metrics_count_a_repeated_item_once():
    # top-2 of [3, 3, 4] is [3, 4]; without dedup recall would be 2/1.
    m = ranking_metrics([[3, 3, 4]], [{3}], k=2)

    assert m["recall"] == 1.0
    assert m["precision"] == pytest.approx(0.5)


def test_ranking_metrics_with_no_evaluable_user_are_nan():
    m = ranking_metrics([[1, 2]], [set()], k=2)

    assert all(math.isnan(m[name]) for name in METRIC_NAMES)
    assert m["users"] == 0
    assert m["users_skipped"] == 1


def test_ranking_metrics_accept_numpy_ids_and_lists_as_relevant():
    m = ranking_metrics([np.array([5, 6], dtype=np.int64)], [[6]], k=np.int64(2))

    assert m["recall"] == 1.0


@pytest.mark.parametrize("k", [0, -1, 2.5, True, "3"])
def test_ranking_metrics_refuse_a_bad_k(k):
    with pytest.raises(ValueError, match="k must be an integer of at least 1"):
        ranking_metrics([[1]], [{1}], k=k)


def test_ranking_metrics_refuse_sequences_of_different_length():
    with pytest.raises(ValueError, match="one entry per user"):
        ranking_metrics([[1], [2]], [{1}], k=1)


@pytest.mark.parametrize("k", [1, 3, 10])
@pytest.mark.parametrize("seed", [0, 1])
def test_ndcg_agrees_with_sklearn(seed, k):
    # The two definitions coincide when every user's list ranks the whole
    # catalogue (so no item outside the list can enter the top k) and the scores
    # have no ties: sklearn's IDCG then also puts min(|R|, k) ones on top.
    rng = np.random.default_rng(seed)
    n_users, n_items = 40, 25
    recommended = [list(rng.permutation(n_items)) for _ in range(n_users)]
    relevant = [
        set(rng.choice(n_items, size=rng.integers(1, 8), replace=False).tolist())
        for _ in range(n_users)
    ]

    y_true = np.zeros((n_users, n_items))
    y_score = np.zeros((n_users, n_items))
    for u, (ranked, rel) in enumerate(zip(recommended, relevant, strict=True)):
        y_true[u, list(rel)] = 1.0
        # score = n_items - rank, so the best-ranked item scores highest
        y_score[u, ranked] = n_items - np.arange(n_items)

    ours = ranking_metrics(recommended, relevant, k=k)["ndcg"]

    assert ours == pytest.approx(ndcg_score(y_true, y_score, k=k), rel=1e-12)


# Small id ranges make hits, repeats and padding all common.
ranked_lists = st.lists(st.one_of(st.none(), st.integers(min_value=0, max_value=15)), max_size=12)
relevant_sets = st.sets(st.integers(min_value=0, max_value=15), max_size=8)


@settings(max_examples=200, deadline=None)
@given(
    data=st.lists(st.tuples(ranked_lists, relevant_sets), min_size=1, max_size=6),
    k=st.integers(min_value=1, max_value=12),
)
def test_ranking_metrics_are_shares(data, k):
    recommended = [ranked for ranked, _ in data]
    relevant = [rel for _, rel in data]

    m = ranking_metrics(recommended, relevant, k=k)

    assert m["users"] + m["users_skipped"] == len(data)
    for name in METRIC_NAMES:
        if m["users"] == 0:
            assert math.isnan(m[name])
        else:
            assert 0.0 <= m[name] <= 1.0 + 1e-12, name
    if m["users"]:
        # A hit in the top k needs at least one hit in the top k.
        assert m["precision"] <= m["hit_rate"] + 1e-12


@settings(max_examples=200, deadline=None)
@given(
    rel=st.sets(st.integers(min_value=0, max_value=50), min_size=1, max_size=10),
    others=st.lists(st.integers(min_value=51, max_value=99), max_size=10),
    k=st.integers(min_value=1, max_value=15),
)
def test_a_perfect_ranking_scores_the_best_possible(rel, others, k):
    # All relevant items first, then irrelevant ones.
    m = ranking_metrics([sorted(rel) + others], [rel], k=k)

    best_hits = min(len(rel), k)
    assert m["ndcg"] == pytest.approx(1.0)
    assert m["map"] == pytest.approx(1.0)
    assert m["hit_rate"] == 1.0
    assert m["precision"] == pytest.approx(best_hits / k)
    assert m["recall"] == pytest.approx(best_hits / len(rel))


# --- coverage -----------------------------------------------------------------


def test_coverage_on_a_hand_worked_case():
    # Distinct items {1, 2, 3, 5} out of a catalogue of 10: 4/10.
    assert coverage([[1, 2, None], [2, 3], [5], []], n_catalog_items=10) == 0.4


def test_coverage_of_no_lists_is_zero():
    assert coverage([], n_catalog_items=3) == 0.0


@pytest.mark.parametrize("n", [0, -2, 1.5, True])
def test_coverage_refuses_a_bad_catalogue_size(n):
    with pytest.raises(ValueError, match="n_catalog_items must be an integer"):
        coverage([[1]], n_catalog_items=n)


def test_coverage_refuses_more_items_than_the_catalogue():
    with pytest.raises(ValueError, match="more than n_catalog_items=2"):
        coverage([[1, 2, 3]], n_catalog_items=2)


def test_metrics_docstring_examples_run():
    result = doctest.testmod(metrics_module, raise_on_error=False)

    assert result.attempted > 0
    assert result.failed == 0


# --- against independent computations -------------------------------------------


def _random_lists(seed: int, n_users: int = 30, n_items: int = 20, k: int = 5):
    """Full-length top-k lists and non-empty relevant sets over a small catalogue."""
    rng = np.random.default_rng(seed)
    recommended = [rng.choice(n_items, size=k, replace=False).tolist() for _ in range(n_users)]
    relevant = [
        set(rng.choice(n_items, size=rng.integers(1, 7), replace=False).tolist())
        for _ in range(n_users)
    ]
    return recommended, relevant


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_precision_recall_and_f1_agree_with_sklearn_per_user(seed):
    # With a list of exactly k items, precision@k, recall@k and F1@k of one user are
    # sklearn's precision, recall and F1 of "recommended" against "relevant" as binary
    # labels over the catalogue.
    n_items, k = 20, 5
    recommended, relevant = _random_lists(seed, n_items=n_items, k=k)
    expected = {"precision": [], "recall": [], "f1": []}
    for ranked, rel in zip(recommended, relevant, strict=True):
        y_true = np.isin(np.arange(n_items), list(rel))
        y_pred = np.isin(np.arange(n_items), ranked)
        expected["precision"].append(precision_score(y_true, y_pred, zero_division=0.0))
        expected["recall"].append(recall_score(y_true, y_pred, zero_division=0.0))
        expected["f1"].append(f1_score(y_true, y_pred, zero_division=0.0))

    m = ranking_metrics(recommended, relevant, k=k)

    for name, values in expected.items():
        assert m[name] == pytest.approx(np.mean(values), rel=1e-12), name


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_map_and_hit_rate_agree_with_a_direct_computation(seed):
    # AP@k straight from its definition: the mean of precision@i over the ranks i that
    # hold a relevant item, divided by min(|R|, k) rather than by the hits found.
    k = 5
    recommended, relevant = _random_lists(seed, k=k)
    aps, hits = [], []
    for ranked, rel in zip(recommended, relevant, strict=True):
        precisions = [
            len(set(ranked[:i]) & rel) / i for i in range(1, k + 1) if ranked[i - 1] in rel
        ]
        aps.append(sum(precisions) / min(len(rel), k))
        hits.append(float(bool(set(ranked) & rel)))

    m = ranking_metrics(recommended, relevant, k=k)

    assert m["map"] == pytest.approx(np.mean(aps), rel=1e-12)
    assert m["hit_rate"] == pytest.approx(np.mean(hits), rel=1e-12)


def test_users_with_nothing_relevant_are_skipped_and_counted():
    # The same user twice, once without relevant items: the means are those of one user.
    alone = ranking_metrics([[1, 2]], [{2}], k=2)
    padded = ranking_metrics([[1, 2], [1, 2], [3]], [{2}, set(), []], k=2)

    assert (padded["users"], padded["users_skipped"]) == (1, 2)
    for name in METRIC_NAMES:
        assert padded[name] == alone[name]


# --- stability ------------------------------------------------------------------


def test_stability_on_a_hand_worked_case():
    previous = [[1, 2, 3], [4, 5, 6], [7, 8], [9]]
    current = [
        [3, 2, 1],  # the same items reordered: 0 changed
        [4, 10, 11],  # two of three new: 2/3
        [12, 13],  # all new: 1
        [],  # nothing listed now: skipped
    ]

    assert stability(previous, current, k=3) == pytest.approx((0 + 2 / 3 + 1) / 3)


def test_stability_looks_only_at_the_top_k_and_ignores_padding():
    # At k = 2 the current top is [1, 5] and the previous top [1, 2]: one of two is new.
    assert stability([[1, 2, 5]], [[1, None, 5, 2]], k=2) == 0.5
    # Item 5 was third before, beyond k, so it counts as new at k = 2.
    assert stability([[1, 2, 5]], [[5, 1]], k=2) == 0.5


def test_stability_without_any_current_list_is_nan():
    assert math.isnan(stability([[1]], [[None]], k=1))


def test_stability_refuses_lists_that_do_not_pair_up():
    with pytest.raises(ValueError, match="one list per user"):
        stability([[1]], [[1], [2]], k=1)
    with pytest.raises(ValueError, match="k must be an integer"):
        stability([[1]], [[1]], k=0)
