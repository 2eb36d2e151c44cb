"""Tests of the implicit-feedback ALS estimator."""

from __future__ import annotations

import doctest

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from incr_cli import implicit_model as implicit_module
from incr_cli.implicit_model import ImplicitMF

PARAM_NAMES = ("user_factors_", "item_factors_", "popularity_")


def two_tastes(n_users: int = 40, n_items: int = 20, seed: int = 0):
    """Users 0..19 buy only items 0..9, users 20..39 only items 10..19, each 5 of them."""
    rng = np.random.default_rng(seed)
    half_users, half_items = n_users // 2, n_items // 2
    rows = []
    for u in range(n_users):
        offset = 0 if u < half_users else half_items
        for i in rng.choice(half_items, size=5, replace=False):
            rows.append((f"u{u}", f"i{offset + i}"))
    X = np.array(rows, dtype=object)
    weights = rng.integers(1, 4, size=len(rows)).astype(np.float64)
    times = rng.integers(0, 10, size=len(rows)).astype(np.float64)
    return X, weights, times


@pytest.fixture(scope="module")
def data():
    return two_tastes()


def fresh(**params) -> ImplicitMF:
    """A model fitted on ``two_tastes()``, ranking by its factors alone unless told otherwise,
    with nothing decayed."""
    X, weights, times = two_tastes()
    model = ImplicitMF(
        n_factors=2,
        history_weight=0.0,
        popularity_weight=0.0,
        history_half_life=None,
        popularity_half_life=None,
    )
    return model.set_params(**params).fit(X, weights, times=times)


@pytest.fixture(scope="module")
def fitted():
    return fresh()


def assert_same_params(a: ImplicitMF, b: ImplicitMF) -> None:
    for name in PARAM_NAMES:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert (a.strengths_ != b.strengths_).nnz == 0
    assert (a.history_ != b.history_).nnz == 0
    assert a.user_ids_.tolist() == b.user_ids_.tolist()
    assert a.item_ids_.tolist() == b.item_ids_.tolist()


def exact_solution(Y: np.ndarray, rows: np.ndarray, strengths: np.ndarray, alpha, reg):
    """(Y^T Y + reg I + Y_u^T (C_u - I) Y_u)^-1 Y_u^T c_u, by numpy."""
    c = 1.0 + alpha * strengths
    Yu = Y[rows]
    A = Y.T @ Y + reg * np.eye(Y.shape[1]) + Yu.T @ ((c - 1.0)[:, None] * Yu)
    return np.linalg.solve(A, Yu.T @ c)


# -- learning -----------------------------------------------------------------------


def test_a_new_user_is_recommended_the_items_of_their_taste():
    model = fresh(partial_iterations=0)
    model.partial_fit([["ann", "i0"], ["ann", "i1"], ["ann", "i2"]])
    items, _ = model.top_k(["ann"], k=7, exclude={"ann": ["i0", "i1", "i2"]})
    assert set(items[0]) == {f"i{i}" for i in range(3, 10)}


def test_fit_separates_the_two_tastes(fitted):
    scores = fitted.score_items([f"u{u}" for u in range(40)])
    items = np.array([int(i[1:]) for i in fitted.item_ids_])
    own = (np.arange(40)[:, None] < 20) == (items[None, :] < 10)
    # Every user scores every item of their half above every item of the other half.
    lowest_own = np.where(own, scores, np.inf).min(axis=1)
    highest_other = np.where(own, -np.inf, scores).max(axis=1)
    assert np.all(lowest_own > highest_other)


def test_partial_fit_folds_in_new_users_and_items_by_least_squares():
    model = fresh(partial_iterations=0)
    before = model.user_factors_.copy(), model.item_factors_.copy()
    batch = [["ann", "i0"], ["ann", "i1"], ["ann", "new"], ["u3", "new"]]
    model.partial_fit(batch, [1.0, 2.0, 1.0, 3.0])

    assert model.n_users_ == 41 and model.n_items_ == 21
    assert model.user_ids_[-1] == "ann" and model.item_ids_[-1] == "new"
    assert model.user_index_["ann"] == 40 and model.item_index_["new"] == 20

    # With no sweeps, known rows keep their factors exactly.
    np.testing.assert_array_equal(model.user_factors_[:40], before[0])
    np.testing.assert_array_equal(model.item_factors_[:20], before[1])

    # The new user is solved against the item factors as they were, "new" counting zero.
    Y = np.vstack([before[1], np.zeros((1, 2))])
    rows = np.array([model.item_index_[i] for i in ("i0", "i1", "new")])
    expected = exact_solution(Y, rows, np.array([1.0, 2.0, 1.0]), model.alpha, model.reg)
    np.testing.assert_allclose(model.user_factors_[40], expected, rtol=1e-9, atol=1e-12)

    # The new item is then solved against the user factors, the new user's included.
    u3 = model.user_index_["u3"]
    expected_item = exact_solution(
        model.user_factors_, np.array([u3, 40]), np.array([3.0, 1.0]), model.alpha, model.reg
    )
    np.testing.assert_allclose(model.item_factors_[20], expected_item, rtol=1e-9, atol=1e-12)


def test_partial_fit_solves_only_the_users_in_the_batch():
    model = fresh()
    before = model.user_factors_.copy()
    model.partial_fit([["u0", "i5"], ["u1", "i6"]])
    changed = np.flatnonzero(np.any(model.user_factors_ != before, axis=1))
    assert changed.tolist() == [model.user_index_["u0"], model.user_index_["u1"]]
    assert model.strengths_[model.user_index_["u0"], model.item_index_["i5"]] >= 1.0


def test_cholesky_and_many_cg_steps_reach_the_same_factors(data):
    X, weights, _ = data
    exact = ImplicitMF(n_factors=4, solver="cholesky", n_iterations=5).fit(X, weights)
    cg = ImplicitMF(n_factors=4, solver="cg", cg_steps=20, n_iterations=5).fit(X, weights)
    np.testing.assert_allclose(cg.user_factors_, exact.user_factors_, atol=1e-8)
    np.testing.assert_allclose(cg.item_factors_, exact.item_factors_, atol=1e-8)


def test_zero_weight_rows_are_left_out(data):
    X, weights, times = data
    model = ImplicitMF(n_factors=4).fit(X, weights, times=times)
    other = ImplicitMF(n_factors=4).fit(
        np.vstack([X, [["ghost", "i0"]]]), np.append(weights, 0.0), times=np.append(times, 0.0)
    )
    assert_same_params(model, other)
    assert "ghost" not in other.user_index_
    assert other.partial_fit([["u0", "i1"]], [0.0]).n_fit_calls_ == 1


# -- scoring ------------------------------------------------------------------------


def test_score_is_factors_plus_normalised_history_and_popularity():
    X = [["ann", "tea"], ["ann", "tea"], ["ann", "cup"], ["bob", "pot"], ["bob", "tea"]]
    times = [0.0, 2.0, 2.0, 1.0, 1.0]
    model = ImplicitMF(
        n_factors=2,
        history_weight=0.5,
        history_half_life=1.0,
        popularity_weight=0.3,
        popularity_half_life=2.0,
    ).fit(X, times=times)
    items = ["tea", "cup", "pot"]
    assert model.item_ids_.tolist() == items

    # ann: tea at 0 and 2 counts 2**-2 + 1, cup at 2 counts 1; time origin is 2.
    np.testing.assert_allclose(model.history_[0].toarray().ravel(), [1.25, 1.0, 0.0])
    # tea: 2**-1 + 2**0 + 2**-0.5; cup: 1; pot: 2**-0.5
    popularity = np.array([0.5 + 1.0 + 2**-0.5, 1.0, 2**-0.5])
    np.testing.assert_allclose(model.popularity_, popularity)

    factors = model.user_factors_[0] @ model.item_factors_.T
    expected = factors + 0.5 * np.array([1.0, 0.8, 0.0]) + 0.3 * popularity / popularity[0]
    np.testing.assert_allclose(model.score_items(["ann"])[0], expected, rtol=1e-12)
    np.testing.assert_allclose(model.score_items(["ann"], item_rows=[2, 0])[0], expected[[2, 0]])


def test_the_own_history_ranks_repeat_purchases_first():
    X = [["ann", "tea"]] * 3 + [["ann", "cup"], ["bob", "pot"], ["bob", "cup"], ["cat", "pot"]]
    model = ImplicitMF(n_factors=2, history_weight=100.0).fit(X)
    items, _ = model.top_k(["ann"], k=2)
    assert items.tolist() == [["tea", "cup"]]


def test_unknown_users_get_the_most_popular_items(fitted):
    items, scores = fitted.top_k(["nobody"], k=3)
    counts = np.asarray(fitted.history_.sum(axis=0)).ravel()
    assert fitted.popularity_.tolist() == counts.tolist()
    # Ranked by count; the three best counts, whichever of tied items is listed.
    listed = [counts[fitted.item_index_[item]] for item in items[0]]
    assert listed == sorted(counts, reverse=True)[:3]
    np.testing.assert_allclose(scores[0], np.array(listed) / counts.max())


def test_top_k_equals_brute_force_and_honours_exclude(fitted):
    users = ["u0", "u25", "nobody"]
    exclude = {"u0": ["i0", "i1", "unknown item"]}
    items, scores = fitted.top_k(users, k=5, exclude=exclude, chunk_size=2)
    full = fitted.score_items(users)
    full[0, [fitted.item_index_["i0"], fitted.item_index_["i1"]]] = -np.inf
    for row in range(len(users)):
        best = np.argsort(-full[row], kind="stable")[:5]
        np.testing.assert_allclose(scores[row], full[row, best])
    assert not {"i0", "i1"} & set(items[0])


def test_top_k_pads_when_fewer_items_than_k():
    model = ImplicitMF(n_factors=2).fit([["a", "x"], ["b", "y"]])
    items, scores = model.top_k(["a"], k=3, exclude={"a": ["y"]})
    assert items.tolist() == [["x", None, None]]
    assert np.isneginf(scores[0, 1:]).all()


# -- determinism and persistence ----------------------------------------------------


def test_same_seed_and_same_calls_give_identical_models(data):
    X, weights, times = data

    def run(seed):
        model = ImplicitMF(n_factors=4, random_state=seed).fit(X[:150], weights[:150])
        model.partial_fit(X[150:], weights[150:], times=times[150:])
        return model.partial_fit([["new", "i3"], ["u1", "other"]])

    first, second = run(7), run(7)
    assert_same_params(first, second)
    assert not np.array_equal(first.user_factors_, run(8).user_factors_)


def test_first_partial_fit_equals_fit(data):
    X, weights, times = data
    a = ImplicitMF(n_factors=4).fit(X, weights, times=times)
    b = ImplicitMF(n_factors=4).partial_fit(X, weights, times=times)
    assert_same_params(a, b)


def test_joblib_round_trip_keeps_scores_and_later_updates(fitted, tmp_path):
    path = tmp_path / "model.joblib"
    joblib.dump(fitted, path)
    loaded = joblib.load(path)
    assert loaded.user_index_ == fitted.user_index_
    assert loaded.item_ids_.dtype == object
    users = ["u0", "u30", "nobody"]
    np.testing.assert_array_equal(loaded.score_items(users), fitted.score_items(users))

    batch = [["u0", "i12"], ["new", "i0"], ["new", "fresh"]]
    assert_same_params(loaded.partial_fit(batch), fresh().partial_fit(batch))


def test_time_origin_moves_before_decayed_sums_overflow():
    model = ImplicitMF(n_factors=2, history_half_life=1.0, popularity_half_life=1.0)
    model.fit([["a", "x"], ["a", "y"]], times=[0.0, 0.0])
    model.partial_fit([["a", "x"]], times=[2000.0])
    assert model.time_origin_ == 2000.0 and model.last_time_ == 2000.0
    np.testing.assert_allclose(model.history_.toarray(), [[1.0, 0.0]])
    np.testing.assert_allclose(model.popularity_, [1.0, 0.0])


# -- refusals -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("n_factors", 0),
        ("n_factors", 2.5),
        ("n_factors", True),
        ("n_iterations", 0),
        ("partial_iterations", -1),
        ("alpha", -1.0),
        ("reg", 0.0),
        ("reg", float("nan")),
        ("cg_steps", 0),
        ("history_weight", -0.1),
        ("history_half_life", 0.0),
        ("popularity_half_life", -2.0),
        ("random_state", -1),
        ("solver", "lu"),
    ],
)
def test_bad_parameter_raises_naming_it(name, value):
    with pytest.raises(ValueError, match=f"^{name} must be"):
        ImplicitMF(**{name: value}).fit([["a", "x"]])


@pytest.mark.parametrize(
    ("X", "weights", "times", "message"),
    [
        ([["a", "x", "extra"]], None, None, "X must have shape"),
        ([["a", "x"]], [np.nan], None, "weights must hold only finite numbers"),
        ([["a", "x"]], [1.0, 2.0], None, r"weights must have shape \(1,\)"),
        ([["a", "x"]], None, [float("nan")], "times must hold only finite"),
        ([["a", "x"]], [0.0], None, "fit needs at least one row of positive weight"),
        (np.empty((0, 2)), None, None, "fit needs at least one row"),
    ],
)
def test_bad_data_is_refused(X, weights, times, message):
    with pytest.raises(ValueError, match=message):
        ImplicitMF().fit(X, weights, times=times)


def test_partial_fit_refuses_a_changed_n_factors_and_leaves_the_model_as_it_was():
    model = fresh()
    factors = model.user_factors_.copy()
    model.set_params(n_factors=8)
    with pytest.raises(ValueError, match="n_factors cannot change"):
        model.partial_fit([["new", "i0"]])
    np.testing.assert_array_equal(model.user_factors_, factors)
    assert model.n_users_ == 40


def test_unfitted_model_refuses_to_score():
    with pytest.raises(NotFittedError):
        ImplicitMF().top_k(["a"], k=1)


@pytest.mark.parametrize("kwargs", [{"k": 0}, {"k": 1, "chunk_size": 0}, {"k": True}])
def test_top_k_refuses_non_positive_sizes(fitted, kwargs):
    with pytest.raises(ValueError, match="must be an integer in"):
        fitted.top_k(["u0"], **kwargs)


def test_estimator_follows_scikit_learn_conventions(fitted):
    copy = clone(fitted)
    assert copy.get_params() == fitted.get_params()
    assert not hasattr(copy, "user_factors_")
    assert set(ImplicitMF().get_params()) >= {"alpha", "history_weight", "popularity_half_life"}


def test_docstring_examples_run():
    result = doctest.testmod(implicit_module)
    assert result.attempted > 0 and result.failed == 0


# -- cancellations: negative rows offset earlier purchases of the same pair ---------------


def _history_only(**params: object) -> ImplicitMF:
    # Factors held at zero and no popularity: the score is the own-history term alone.
    return ImplicitMF(n_factors=2, reg=1e9, popularity_weight=0.0, **params)  # type: ignore[arg-type]


def test_a_cancellation_nets_the_pair_to_zero_and_drops_it_from_history() -> None:
    model = _history_only().fit([["a", "x"], ["a", "y"]], [5.0, 2.0], times=[0.0, 0.0])
    model.partial_fit([["a", "x"]], [-5.0], times=[1.0])

    assert model.strengths_.toarray().tolist() == [[0.0, 2.0]]
    # Only the purchase of y is left for the solves, and the history ranks y alone.
    assert model._confidence(model.strengths_).toarray().tolist() == [[0.0, 2.0]]
    scores = model.score_items(["a"])
    assert scores[0, 1] == pytest.approx(1.0, abs=1e-6)
    assert scores[0, 0] == pytest.approx(0.0, abs=1e-6)


def test_a_partial_cancellation_keeps_the_net_quantity_through_the_transform() -> None:
    model = ImplicitMF(n_factors=2, transform="log1p")
    model.fit([["a", "x"], ["a", "x"], ["b", "x"]], [5.0, -2.0, 1.0], times=[0, 1, 1])

    assert model.strengths_.toarray().tolist() == [[3.0], [1.0]]
    confidence = model._confidence(model.strengths_).toarray()
    np.testing.assert_allclose(confidence, [[np.log1p(3.0)], [np.log1p(1.0)]])


def test_more_cancelled_than_bought_is_floored_at_zero() -> None:
    model = _history_only().fit([["a", "x"], ["a", "y"]], [1.0, 1.0])
    model.partial_fit([["a", "x"]], [-4.0])

    assert model.strengths_.toarray().tolist() == [[-3.0, 1.0]]
    assert model._confidence(model.strengths_).toarray().tolist() == [[0.0, 1.0]]
    # The floor applies to the net sum, not to each step: 2 more units leave it at -1.
    model.partial_fit([["a", "x"]], [2.0])
    assert model._confidence(model.strengths_).toarray().tolist() == [[0.0, 1.0]]


def test_a_cancelled_pair_trains_the_factors_like_a_pair_never_bought() -> None:
    # Both encode users b, a, c and items x, y in that order, so they start from the same
    # random factors; in one, a buys x and cancels it.
    bought = [["b", "x"], ["a", "y"], ["a", "x"], ["c", "y"], ["a", "x"]]
    # NOTE: popularity counts the cancelled purchase too (a decayed count of purchases,
    # not of net quantities), so it is left out of the scores compared here.
    cancelled = ImplicitMF(n_factors=3, popularity_weight=0.0)
    cancelled.fit(bought, [1.0, 1.0, 2.0, 1.0, -2.0])
    never = ImplicitMF(n_factors=3, popularity_weight=0.0)
    never.fit([["b", "x"], ["a", "y"], ["c", "y"]])

    np.testing.assert_array_equal(cancelled.user_factors_, never.user_factors_)
    np.testing.assert_array_equal(cancelled.item_factors_, never.item_factors_)
    np.testing.assert_array_equal(cancelled.score_items(["a"]), never.score_items(["a"]))


def test_fit_refuses_rows_that_are_all_cancellations() -> None:
    with pytest.raises(ValueError, match="at least one row of positive weight"):
        ImplicitMF().fit([["a", "x"]], [-1.0])


def test_transform_is_checked_before_any_work() -> None:
    with pytest.raises(ValueError, match="transform must be one of"):
        ImplicitMF(transform="sqrt").fit([["a", "x"]])
