"""Tests of the biased matrix factorisation estimator."""

from __future__ import annotations

import doctest

import joblib
import numpy as np
import pytest
from sklearn.base import clone, is_regressor
from sklearn.exceptions import NotFittedError

from incr_cli import model as model_module
from incr_cli.model import BiasedMF

N_USERS = 300
N_ITEMS = 200

PARAM_NAMES = (
    "global_mean_",
    "user_bias_",
    "item_bias_",
    "user_factors_",
    "item_factors_",
)


def make_ratings(seed: int = 0, density: float = 0.3, rank: int = 5):
    """Rank-5 ratings with biases and noise, clipped to 1..5, as string ids."""
    rng = np.random.default_rng(seed)
    user_factors = rng.normal(0.0, 0.6, size=(N_USERS, rank))
    item_factors = rng.normal(0.0, 0.6, size=(N_ITEMS, rank))
    user_bias = rng.normal(0.0, 0.5, size=N_USERS)
    item_bias = rng.normal(0.0, 0.5, size=N_ITEMS)
    users, items = np.nonzero(rng.random((N_USERS, N_ITEMS)) < density)

    # r = 3.5 + b_u + b_i + p_u . q_i + noise
    ratings = (
        3.5
        + user_bias[users]
        + item_bias[items]
        + np.einsum("ij,ij->i", user_factors[users], item_factors[items])
        + rng.normal(0.0, 0.3, size=users.size)
    )
    X = np.column_stack(
        [
            np.array([f"u{u}" for u in users], dtype=object),
            np.array([f"i{i}" for i in items], dtype=object),
        ]
    )
    return X, np.clip(ratings, 1.0, 5.0)


def rmse(pred, truth) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred) - truth) ** 2)))


@pytest.fixture(scope="module")
def ratings():
    return make_ratings()


@pytest.fixture(scope="module")
def split(ratings):
    """80/20 split of the synthetic ratings."""
    X, y = ratings
    order = np.random.default_rng(1).permutation(y.size)
    cut = int(0.8 * y.size)
    train, test = order[:cut], order[cut:]
    return X[train], y[train], X[test], y[test]


@pytest.fixture(scope="module")
def fitted(split):
    X_train, y_train, _, _ = split
    return BiasedMF().fit(X_train, y_train)


def assert_same_params(a: BiasedMF, b: BiasedMF) -> None:
    for name in PARAM_NAMES:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.user_index_ == b.user_index_
    assert a.item_index_ == b.item_index_


# -- quality ---------------------------------------------------------------


def test_fit_beats_global_mean_on_held_out(fitted, split):
    _, y_train, X_test, y_test = split

    model_rmse = rmse(fitted.predict(X_test), y_test)
    baseline_rmse = rmse(np.full(y_test.size, y_train.mean()), y_test)

    assert model_rmse < 0.9 * baseline_rmse


def test_partial_fit_on_second_half_with_replay_is_close_to_fit_on_all(split):
    X_train, y_train, X_test, y_test = split
    half = y_train.size // 2
    # Every rating gets as many SGD passes incrementally as in the full fit.
    params = {"lr": 0.02, "n_epochs": 20, "partial_epochs": 20}

    full = BiasedMF(**params).fit(X_train, y_train)
    incremental = BiasedMF(**params).fit(X_train[:half], y_train[:half])
    half_rmse = rmse(incremental.predict(X_test), y_test)

    # As `incr update` does: the new half mixed with as many older ratings, drawn at
    # random, so that the older half is not forgotten under a constant learning rate.
    replay = np.random.default_rng(2).choice(half, size=y_train.size - half, replace=False)
    incremental.partial_fit(
        np.concatenate([X_train[half:], X_train[replay]]),
        np.concatenate([y_train[half:], y_train[replay]]),
    )

    full_rmse = rmse(full.predict(X_test), y_test)
    incremental_rmse = rmse(incremental.predict(X_test), y_test)
    assert incremental_rmse <= 1.03 * full_rmse
    assert incremental_rmse < half_rmse


def test_new_users_in_partial_fit_beat_global_mean(ratings):
    X, y = ratings
    user_numbers = np.array([int(u[1:]) for u in X[:, 0]])
    is_new = user_numbers >= N_USERS - 50
    new_rows = np.flatnonzero(is_new)
    rng = np.random.default_rng(2)
    in_batch = rng.random(new_rows.size) < 0.7
    batch_rows, held_rows = new_rows[in_batch], new_rows[~in_batch]

    model = BiasedMF().fit(X[~is_new], y[~is_new])
    old_items = model.item_factors_.copy()
    model.partial_fit(X[batch_rows], y[batch_rows])

    assert model.n_users_ == N_USERS
    model_rmse = rmse(model.predict(X[held_rows]), y[held_rows])
    baseline_rmse = rmse(np.full(held_rows.size, model.global_mean_), y[held_rows])
    assert model_rmse < 0.9 * baseline_rmse
    # The new users' rows also move the item side in the joint passes.
    assert not np.array_equal(model.item_factors_[: len(old_items)], old_items)


# -- determinism -----------------------------------------------------------


def test_same_seed_gives_identical_parameters(split, fitted):
    X_train, y_train, _, _ = split

    again = BiasedMF().fit(X_train, y_train)

    assert_same_params(fitted, again)


def test_different_seeds_give_different_parameters(split, fitted):
    X_train, y_train, _, _ = split

    other = BiasedMF(random_state=1).fit(X_train, y_train)

    assert not np.array_equal(fitted.user_factors_, other.user_factors_)


def test_repeated_partial_fits_are_deterministic(ratings):
    X, y = ratings
    batches = np.array_split(np.arange(y.size), 3)

    def run() -> BiasedMF:
        model = BiasedMF(n_factors=8)
        for rows in batches:
            model.partial_fit(X[rows], y[rows])
        return model

    assert_same_params(run(), run())


def test_first_partial_fit_equals_fit(ratings):
    X, y = ratings

    assert_same_params(BiasedMF(n_factors=8).partial_fit(X, y), BiasedMF(n_factors=8).fit(X, y))


# -- partial_fit bookkeeping -----------------------------------------------


def test_partial_fit_keeps_a_running_global_mean(ratings):
    X, y = ratings
    half = y.size // 2

    model = BiasedMF(n_factors=4, n_epochs=1, partial_epochs=1)
    model.fit(X[:half], y[:half]).partial_fit(X[half:], y[half:])

    assert model.global_mean_ == pytest.approx(y.mean(), rel=1e-12)
    assert model.n_ratings_seen_ == y.size


def test_partial_fit_appends_new_ids_and_keeps_old_rows():
    X1 = np.array([["a", "x"], ["b", "y"]], dtype=object)
    X2 = np.array([["c", "x"], ["a", "z"]], dtype=object)

    model = BiasedMF(n_factors=3).fit(X1, [4.0, 2.0])
    model.partial_fit(X2, [5.0, 1.0])

    assert model.user_ids_.tolist() == ["a", "b", "c"]
    assert model.item_ids_.tolist() == ["x", "y", "z"]
    assert model.user_index_ == {"a": 0, "b": 1, "c": 2}
    assert model.user_factors_.shape == (3, 3)
    assert model.item_bias_.shape == (3,)
    assert (model.n_users_, model.n_items_) == (3, 3)


def test_zero_weight_rows_change_nothing(fitted, split):
    X_train, y_train, _, _ = split
    model = clone(fitted).fit(X_train, y_train)
    before = {name: np.copy(getattr(model, name)) for name in PARAM_NAMES}

    model.partial_fit(X_train[:100], y_train[:100], sample_weight=np.zeros(100))

    for name, value in before.items():
        np.testing.assert_array_equal(getattr(model, name), value)


def test_partial_fit_refuses_a_changed_n_factors(ratings):
    X, y = ratings
    model = BiasedMF(n_factors=4, n_epochs=1).fit(X, y)
    factors = model.user_factors_.copy()

    model.set_params(n_factors=8)
    with pytest.raises(ValueError, match="n_factors"):
        model.partial_fit(X[:10], y[:10])

    np.testing.assert_array_equal(model.user_factors_, factors)


def test_any_hashable_ids_work():
    X = [[1, ("t", 1)], [2, ("t", 2)], [1, ("t", 2)]]

    model = BiasedMF(n_factors=2).fit(X, [1.0, 2.0, 3.0])

    assert model.item_ids_.tolist() == [("t", 1), ("t", 2)]
    assert np.isfinite(model.predict([[2, ("t", 1)]])).all()


# -- prediction ------------------------------------------------------------


def test_predict_leaves_out_terms_of_unknown_ids(fitted):
    known_user, known_item = fitted.user_ids_[0], fitted.item_ids_[0]
    X = np.array(
        [["nobody", known_item], [known_user, "nothing"], ["nobody", "nothing"]],
        dtype=object,
    )

    pred = fitted.predict(X)

    mu = fitted.global_mean_
    assert np.isfinite(pred).all()
    assert pred[0] == pytest.approx(mu + fitted.item_bias_[0])
    assert pred[1] == pytest.approx(mu + fitted.user_bias_[0])
    assert pred[2] == mu


def test_predict_matches_the_formula(fitted, split):
    X_train = split[0][:50]
    users = np.array([fitted.user_index_[u] for u in X_train[:, 0]])
    items = np.array([fitted.item_index_[i] for i in X_train[:, 1]])

    expected = (
        fitted.global_mean_
        + fitted.user_bias_[users]
        + fitted.item_bias_[items]
        + np.sum(fitted.user_factors_[users] * fitted.item_factors_[items], axis=1)
    )

    np.testing.assert_allclose(fitted.predict(X_train), expected, rtol=1e-12)


def test_predict_clips_to_the_rating_range(split):
    X_train, y_train, X_test, _ = split

    model = BiasedMF(n_epochs=2, min_rating=3.0, max_rating=3.5)
    pred = model.fit(X_train, y_train).predict(X_test)

    assert pred.min() >= 3.0
    assert pred.max() <= 3.5


def test_unfitted_model_refuses_to_predict():
    with pytest.raises(NotFittedError):
        BiasedMF().predict([["a", "b"]])


def test_score_items_matches_predict(fitted):
    users = [fitted.user_ids_[3], "nobody"]
    item_rows = np.array([5, 0, 7])

    scores = fitted.score_items(users, item_rows)

    items = fitted.item_ids_[item_rows]
    expected = [fitted.predict([[u, i] for i in items]) for u in users]
    np.testing.assert_allclose(scores, expected, rtol=1e-12)
    np.testing.assert_allclose(scores[1], fitted.global_mean_ + fitted.item_bias_[item_rows])


# -- top_k -----------------------------------------------------------------


def test_top_k_equals_brute_force_and_honours_exclude(fitted):
    users = list(fitted.user_ids_[:7]) + ["nobody"]
    exclude = {
        users[0]: list(fitted.item_ids_[:50]),
        users[1]: ["not an item", fitted.item_ids_[3]],
    }

    items, scores = fitted.top_k(users, k=10, exclude=exclude)

    full = fitted.score_items(users)
    for row, user in enumerate(users):
        banned = set(exclude.get(user, ()))
        ranked = [
            fitted.item_ids_[c]
            for c in np.argsort(-full[row], kind="stable")
            if fitted.item_ids_[c] not in banned
        ][:10]
        assert items[row].tolist() == ranked
        assert np.all(np.diff(scores[row]) <= 0)
        assert not banned & set(items[row])


def test_top_k_pads_when_fewer_candidates_than_k():
    X = np.array([["a", "x"], ["a", "y"], ["b", "z"]], dtype=object)
    model = BiasedMF(n_factors=2).fit(X, [5.0, 1.0, 3.0])

    items, scores = model.top_k(["a", "b"], k=4, exclude={"a": ["x", "y"]})

    assert items.shape == scores.shape == (2, 4)
    assert items[0].tolist() == ["z", None, None, None]
    assert np.isneginf(scores[0, 1:]).all()
    assert items[1, 3] is None
    assert set(items[1, :3]) == {"x", "y", "z"}
    assert np.isfinite(scores[1, :3]).all()


@pytest.mark.parametrize("k", [0, -3, True, 2.5])
def test_top_k_refuses_a_k_that_is_not_a_positive_integer(fitted, k):
    with pytest.raises(ValueError, match="^k must be"):
        fitted.top_k(["u1"], k=k)


# -- parameters and persistence --------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("n_factors", 0),
        ("n_factors", 2.5),
        ("n_factors", True),
        ("n_epochs", 0),
        ("lr", 0.0),
        ("lr", float("nan")),
        ("reg", -0.1),
        ("reg_bias", -1),
        ("init_std", -0.1),
        ("lr_decay", 1.5),
        ("lr_decay", 0),
        ("partial_epochs", -1),
        ("random_state", -1),
        ("random_state", "seed"),
        ("min_rating", float("inf")),
        ("max_rating", "5"),
    ],
)
def test_bad_parameter_raises_naming_it(name, value):
    with pytest.raises(ValueError, match=f"^{name} must be"):
        BiasedMF(**{name: value}).fit([["a", "b"]], [3.0])


def test_min_rating_above_max_rating_is_refused():
    with pytest.raises(ValueError, match="min_rating must not exceed max_rating"):
        BiasedMF(min_rating=5, max_rating=1).fit([["a", "b"]], [3.0])


@pytest.mark.parametrize(
    ("X", "y", "weights", "message"),
    [
        ([["a", "b", "c"]], [3.0], None, "shape"),
        ([["a", "b"]], [3.0, 4.0], None, "y must have shape"),
        ([["a", "b"]], [np.nan], None, "finite"),
        ([["a", "b"]], [3.0], [-1.0], "non-negative"),
        ([["a", "b"]], [3.0], [0.0], "positive sum"),
        (np.empty((0, 2), dtype=object), [], None, "at least one rating"),
    ],
)
def test_bad_data_is_refused(X, y, weights, message):
    with pytest.raises(ValueError, match=message):
        BiasedMF().fit(X, y, sample_weight=weights)


def test_estimator_follows_scikit_learn_conventions():
    model = BiasedMF(n_factors=7, min_rating=1.0)

    assert is_regressor(model)
    assert clone(model).get_params() == model.get_params()
    assert model.set_params(lr=0.5).lr == 0.5


def test_model_predicts_identically_after_joblib_round_trip(fitted, split, tmp_path):
    path = tmp_path / "model.joblib"
    X_test = split[2]

    joblib.dump(fitted, path)
    loaded = joblib.load(path)

    np.testing.assert_array_equal(loaded.predict(X_test), fitted.predict(X_test))
    assert loaded.get_params() == fitted.get_params()
    assert loaded.user_index_ == fitted.user_index_
    assert loaded.item_index_ == fitted.item_index_
    assert loaded.user_ids_.dtype == object
    assert loaded.user_ids_.tolist() == fitted.user_ids_.tolist()


def test_ids_of_any_hashable_type_survive_a_joblib_round_trip(tmp_path):
    X = [[("shop", 1), 7], [("shop", 2), "seven"], [("shop", 1), "seven"]]
    model = BiasedMF(n_factors=2).fit(X, [4.0, 2.0, 3.0])
    path = tmp_path / "model.joblib"

    joblib.dump(model, path)
    loaded = joblib.load(path)

    assert loaded.user_index_ == {("shop", 1): 0, ("shop", 2): 1}
    assert loaded.item_index_ == {7: 0, "seven": 1}
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_docstring_examples_run():
    result = doctest.testmod(model_module, raise_on_error=False)

    assert result.attempted > 0
    assert result.failed == 0
