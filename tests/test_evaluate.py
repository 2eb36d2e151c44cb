"""Tests of test-then-train evaluation; the report is tested in test_report.py."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from incr_cli import clean, ingest, update
from incr_cli.artifacts import load_model, model_at, serving_model
from incr_cli.catalog import Catalog, Invocation, open_catalog
from incr_cli.config import Config, EvaluateConfig
from incr_cli.errors import NothingToDo, UsageError, VersionNotFound
from incr_cli.evaluate import ITEM_DAMPING, SYSTEMS, USER_DAMPING, evaluate
from incr_cli.synthetic import write_deltas

N_DELTAS = 4


@pytest.fixture(scope="module")
def delta_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_deltas(tmp_path_factory.mktemp("data"), 300, 200, 6000, N_DELTAS, seed=11)


def _open(path: Path, config: Config | None = None):
    return open_catalog(path, config or Config(), Invocation("test"), write=True)


def _load(catalog: Catalog, files: list[Path], *, train: bool = True) -> None:
    """Ingest and clean each file in turn, learning it when ``train``, as cron would."""
    for path in files:
        ingest.ingest_files(catalog, [path])
        clean.clean_pending(catalog)
        if train:
            update.update(catalog)


def _csv(path: Path) -> np.ndarray:
    # Columns user_id, item_id, rating, timestamp, all whole numbers.
    return np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.int64, ndmin=2)


def _stored(catalog: Catalog, version: int) -> dict[tuple[int, str, str], float | None]:
    rows = catalog.rows(
        "SELECT model_id, system, metric, value FROM metrics WHERE version = ?", [version]
    )
    return {(model_id, system, metric): value for model_id, system, metric, value in rows}


# --- choosing the delta and the model -------------------------------------------------


def test_default_scores_the_newest_cleaned_delta_with_the_model_before_it(tmp_path, delta_files):
    with _open(tmp_path / "c.duckdb") as catalog:
        _load(catalog, delta_files[:3])
        # A fourth file ingested but not cleaned is not a candidate yet.
        ingest.ingest_files(catalog, delta_files[3:])

        result = evaluate(catalog)

        assert (result.version, result.parent, result.model_version) == (3, 2, 2)
        assert result.model_id == serving_model(catalog, 2).model_id


def test_first_delta_has_nothing_to_be_scored_by(tmp_path, delta_files):
    with _open(tmp_path / "c.duckdb") as catalog:
        _load(catalog, delta_files[:1])

        with pytest.raises(NothingToDo, match="v1 is the first delta"):
            evaluate(catalog)
        assert catalog.one("SELECT count(*) FROM metrics") == 0


def test_no_model_before_the_delta_asks_for_an_update(tmp_path, delta_files):
    with _open(tmp_path / "c.duckdb") as catalog:
        _load(catalog, delta_files[:2], train=False)

        with pytest.raises(NothingToDo, match="run 'incr update' first"):
            evaluate(catalog)


def test_model_version_scores_the_delta_that_follows_it(tmp_path, delta_files):
    with _open(tmp_path / "c.duckdb") as catalog:
        _load(catalog, delta_files)

        result = evaluate(catalog, model_version=2)

        assert (result.version, result.parent, result.model_version) == (3, 2, 2)
        with pytest.raises(NothingToDo, match="v4 is the head"):
            evaluate(catalog, model_version=4)
        with pytest.raises(VersionNotFound):
            evaluate(catalog, model_version=9)


def test_model_version_must_be_on_the_lineage_and_have_a_model(tmp_path, delta_files):
    with _open(tmp_path / "c.duckdb") as catalog:
        _load(catalog, delta_files[:3])
        # Branch off v1: v4 and v5 follow it, cleaned but not trained on.
        with catalog.transaction():
            catalog.move_head(1)
        _load(catalog, delta_files[3:], train=False)
        assert catalog.lineage() == [1, 4]
        write_deltas(tmp_path / "more", 300, 200, 600, 1, seed=99)
        _load(catalog, [tmp_path / "more" / "delta-01.csv"], train=False)

        with pytest.raises(UsageError, match="v3 is not on the head's lineage"):
            evaluate(catalog, model_version=3)
        with pytest.raises(UsageError, match="no model was trained through v4"):
            evaluate(catalog, model_version=4)
        assert evaluate(catalog, model_version=1).version == 4


# --- the figures ----------------------------------------------------------------------


def test_global_mean_baseline_matches_a_hand_computation(tmp_path, delta_files):
    tables = [_csv(path) for path in delta_files]
    for table in tables:
        # Clean drops repeated (user, item) pairs inside a file; these files have none, so
        # the clean deltas are the files as written.
        assert np.unique(table[:, :2], axis=0).shape[0] == table.shape[0]
    before = np.concatenate([t[:, 2] for t in tables[:-1]]).astype(np.float64)
    delta = tables[-1][:, 2].astype(np.float64)
    mu = before.mean()

    with _open(tmp_path / "c.duckdb") as catalog:
        _load(catalog, delta_files)
        result = evaluate(catalog)

    baseline = result.metrics["global_mean"]
    assert result.version == N_DELTAS
    assert result.rows == delta.size
    assert baseline["mean"] == pytest.approx(mu, rel=1e-12)
    assert baseline["rmse"] == pytest.approx(np.sqrt(np.mean((delta - mu) ** 2)), rel=1e-12)
    assert baseline["mae"] == pytest.approx(np.mean(np.abs(delta - mu)), rel=1e-12)


def test_model_figures_are_those_of_its_predictions(tmp_path, delta_files):
    table = _csv(delta_files[1])
    with _open(tmp_path / "c.duckdb") as catalog:
        _load(catalog, delta_files[:2])
        result = evaluate(catalog)
        model = load_model(catalog, serving_model(catalog, 1))

    # The catalog holds ids as text, so the model knows them as text.
    pairs = table[:, :2].astype(str).astype(object)
    error = model.predict(pairs) - table[:, 2]
    known = np.isin(pairs[:, 0], model.user_ids_)
    figures = result.metrics["model"]
    assert figures["rmse"] == pytest.approx(np.sqrt(np.mean(error**2)), rel=1e-12)
    assert figures["mae"] == pytest.approx(np.mean(np.abs(error)), rel=1e-12)
    assert figures["rows_known_users"] == known.sum()
    assert figures["rows_new_users"] == (~known).sum() > 0
    assert figures["rmse_new_users"] == pytest.approx(
        np.sqrt(np.mean(error[~known] ** 2)), rel=1e-12
    )


def test_model_beats_the_global_mean_on_synthetic_data(tmp_path, delta_files):
    with _open(tmp_path / "c.duckdb") as catalog:
        _load(catalog, delta_files)
        for model_version in range(1, N_DELTAS):
            result = evaluate(catalog, model_version=model_version)
            figures = result.metrics

            assert figures["model"]["rmse"] < figures["global_mean"]["rmse"]
            assert figures["model"]["mae"] < figures["global_mean"]["mae"]


def _write(path: Path, rows: list[tuple[str, str, int]], start: int) -> Path:
    lines = ["user_id,item_id,rating,timestamp"]
    lines += [f"{u},{i},{r},{start + n}" for n, (u, i, r) in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def tiny_files(tmp_path: Path) -> list[Path]:
    # Before the delta, items by number of ratings: x 3, y 2, then w and z 1 each (w first
    # by id). In the delta, b finds z relevant, d (new) finds x relevant, a finds nothing.
    base = _write(
        tmp_path / "base.csv",
        [("a", "x", 4), ("b", "x", 5), ("c", "x", 3), ("a", "y", 2), ("b", "y", 4)]
        + [("c", "z", 1), ("a", "w", 3)],
        start=1_700_000_000,
    )
    delta = _write(
        tmp_path / "delta.csv",
        [("b", "z", 5), ("b", "w", 2), ("d", "x", 4), ("a", "z", 3)],
        start=1_700_100_000,
    )
    return [base, delta]


def test_most_popular_ranks_the_unseen_hits_by_hand(tmp_path, tiny_files):
    config = Config(evaluate=EvaluateConfig(k=2, relevance_threshold=4.0))
    with _open(tmp_path / "c.duckdb", config) as catalog:
        _load(catalog, tiny_files)
        result = evaluate(catalog)

    # b has seen x and y, so gets [w, z]: a hit at rank 2 of 2 of one relevant item.
    # d has seen nothing, so gets [x, y]: a hit at rank 1.
    popular = result.metrics["most_popular"]
    assert result.users_ranked == popular["users_ranked"] == 2
    assert popular["users_skipped"] == 1
    assert popular["precision"] == 0.5
    assert popular["recall"] == 1.0
    assert popular["hit_rate"] == 1.0
    assert popular["ndcg"] == pytest.approx((1 / math.log2(3) + 1.0) / 2, rel=1e-12)
    assert popular["coverage"] == 1.0
    # Four delta rows: three from users the model knows (a, b), one from d.
    model = result.metrics["model"]
    assert (model["rows_known_users"], model["rows_new_users"]) == (3, 1)
    assert result.metrics["global_mean"]["mean"] == pytest.approx(22 / 7, rel=1e-12)


def test_most_popular_without_exclusion_repeats_what_was_seen(tmp_path, tiny_files):
    config = Config(evaluate=EvaluateConfig(k=2, exclude_seen=False))
    with _open(tmp_path / "c.duckdb", config) as catalog:
        _load(catalog, tiny_files)
        result = evaluate(catalog)

    # Both b and d now get [x, y]: b has no hit, d a hit at rank 1.
    popular = result.metrics["most_popular"]
    assert popular["precision"] == 0.25
    assert popular["recall"] == 0.5
    assert popular["ndcg"] == 0.5


# --- what is stored -------------------------------------------------------------------


def test_stored_rows_match_the_returned_figures(tmp_path, delta_files):
    with _open(tmp_path / "c.duckdb") as catalog:
        _load(catalog, delta_files[:3])
        result = evaluate(catalog)
        stored = _stored(catalog, result.version)

    expected = {
        (result.model_id, system, metric): value
        for system, figures in result.metrics.items()
        for metric, value in figures.items()
    }
    assert stored == pytest.approx(expected, rel=1e-15)
    assert {system for _, system, _ in stored} == set(SYSTEMS)
    assert result.metrics["model"]["k"] == result.k == 10
    # The result goes to JSON as it is: no NaN, no numpy scalars.
    assert json.loads(json.dumps(asdict(result), allow_nan=False))["version"] == 3


def test_reevaluating_replaces_the_rows_rather_than_adding_to_them(tmp_path, delta_files):
    with _open(tmp_path / "c.duckdb") as catalog:
        _load(catalog, delta_files[:3])
        first = evaluate(catalog)
        count = catalog.one("SELECT count(*) FROM metrics")
        second = evaluate(catalog)

        assert catalog.one("SELECT count(*) FROM metrics") == count
        assert second.metrics == first.metrics
        # A different delta adds its own rows beside them.
        evaluate(catalog, model_version=1)
        assert catalog.one("SELECT count(DISTINCT version) FROM metrics") == 2
        assert catalog.one("SELECT count(*) FROM stages WHERE stage = 'evaluate'") == 0


# --- the biases baseline, stability and the full retrain beside the model -------------


def test_biases_baseline_matches_a_hand_computation(tmp_path, tiny_files):
    # Before the delta mu = 22/7. Item biases b_i = sum(r - mu) / (25 + n_i):
    #   x: (4 + 5 + 3 - 3 mu) / 28, y: (2 + 4 - 2 mu) / 27, z: (1 - mu) / 26, w: (3 - mu) / 26
    # User biases b_u = sum(r - mu - b_i) / (10 + n_u), e.g. b over a's x, y and w.
    mu = 22 / 7
    bi = {
        "x": (12 - 3 * mu) / (ITEM_DAMPING + 3),
        "y": (6 - 2 * mu) / (ITEM_DAMPING + 2),
        "z": (1 - mu) / (ITEM_DAMPING + 1),
        "w": (3 - mu) / (ITEM_DAMPING + 1),
    }
    rated = {"a": {"x": 4, "y": 2, "w": 3}, "b": {"x": 5, "y": 4}, "c": {"x": 3, "z": 1}}
    bu = {
        user: sum(r - mu - bi[item] for item, r in items.items()) / (USER_DAMPING + len(items))
        for user, items in rated.items()
    }
    delta = [("b", "z", 5), ("b", "w", 2), ("d", "x", 4), ("a", "z", 3)]
    predicted = np.array([mu + bu.get(u, 0.0) + bi[i] for u, i, _ in delta])
    truth = np.array([r for _, _, r in delta], dtype=np.float64)

    config = Config(evaluate=EvaluateConfig(k=2, relevance_threshold=4.0))
    with _open(tmp_path / "c.duckdb", config) as catalog:
        _load(catalog, tiny_files)
        biases = evaluate(catalog).metrics["biases"]

    assert biases["rmse"] == pytest.approx(np.sqrt(np.mean((predicted - truth) ** 2)), rel=1e-12)
    assert biases["mae"] == pytest.approx(np.mean(np.abs(predicted - truth)), rel=1e-12)
    # Ranked by b_i: x (0.092), w (-0.005), y (-0.011), z (-0.082). b has seen x and y, so
    # gets [w, z]: a hit at rank 2 (AP 1/2); d has seen nothing, so gets [x, w]: a hit at
    # rank 1 (AP 1). Three of the four items are shown.
    assert sorted(bi, key=bi.get, reverse=True) == ["x", "w", "y", "z"]
    assert biases["precision"] == 0.5
    assert biases["hit_rate"] == 1.0
    assert biases["ndcg"] == pytest.approx((1 / math.log2(3) + 1.0) / 2, rel=1e-12)
    assert biases["map"] == 0.75
    assert biases["f1"] == pytest.approx(2 * 0.5 * 1.0 / 1.5, rel=1e-12)
    assert biases["coverage"] == 0.75


def test_first_model_has_no_stability_and_later_ones_compare_with_the_one_before(
    tmp_path, delta_files
):
    with _open(tmp_path / "c.duckdb") as catalog:
        _load(catalog, delta_files[:3])
        first = evaluate(catalog, model_version=1)
        second = evaluate(catalog, model_version=2)
        older = load_model(catalog, serving_model(catalog, 1))
        newer = load_model(catalog, serving_model(catalog, 2))
        users = [
            row[0]
            for row in catalog.rows(
                "SELECT DISTINCT user_id FROM ratings_clean WHERE version = 3 AND rating >= 4"
            )
        ]
        seen = {
            user: set(items)
            for user, items in catalog.rows(
                "SELECT user_id, list(item_id) FROM ratings_clean WHERE version < 3 "
                "GROUP BY user_id"
            )
        }

    assert first.metrics["model"]["stability"] is None
    # Independently: per user, the share of the new top 10 the older model did not list.
    changed = []
    for user in users:
        banned = {user: seen.get(user, set())}
        before = {i for i in older.top_k([user], 10, exclude=banned)[0][0] if i is not None}
        now = [i for i in newer.top_k([user], 10, exclude=banned)[0][0] if i is not None]
        changed.append(sum(item not in before for item in now) / len(now))
    assert second.metrics["model"]["stability"] == pytest.approx(np.mean(changed), rel=1e-12)
    assert 0.0 < second.metrics["model"]["stability"] < 1.0


def test_a_full_retrain_is_scored_beside_the_incremental_model(tmp_path, delta_files):
    with _open(tmp_path / "c.duckdb") as catalog:
        _load(catalog, delta_files[:3])
        incremental = serving_model(catalog, 3)
        without = evaluate(catalog, model_version=3 - 1)
        # A full retrain at v3 serves from now on; the incremental model stays beside it.
        update.update(catalog, full=True)
        _load(catalog, delta_files[3:], train=False)
        result = evaluate(catalog, model_version=3)
        full = model_at(catalog, 3, kind="full")
        table = _csv(delta_files[3])
        pairs = table[:, :2].astype(str).astype(object)
        error_full = load_model(catalog, full).predict(pairs) - table[:, 2]
        error_incremental = load_model(catalog, incremental).predict(pairs) - table[:, 2]

    assert incremental.kind == "incremental"
    assert "full_retrain" not in without.metrics and "incremental" not in without.metrics
    assert result.model_id == full.model_id
    assert result.metrics["model"]["rmse"] == pytest.approx(
        np.sqrt(np.mean(error_full**2)), rel=1e-12
    )
    beside = result.metrics["incremental"]
    assert beside["rmse"] == pytest.approx(np.sqrt(np.mean(error_incremental**2)), rel=1e-12)
    assert beside["users_ranked"] == result.metrics["model"]["users_ranked"]


def test_an_incremental_model_made_after_a_full_retrain_shows_the_retrain_beside_it(
    tmp_path, delta_files
):
    with _open(tmp_path / "c.duckdb") as catalog:
        _load(catalog, delta_files[:3])
        update.update(catalog, full=True)
        # Relearning v3 from the model of v2 makes a newer incremental model for v3.
        update.update(catalog, since=2)
        _load(catalog, delta_files[3:], train=False)
        result = evaluate(catalog, model_version=3)
        record = serving_model(catalog, 3)

    assert record.kind == "incremental" and result.model_id == record.model_id
    assert set(result.metrics) == {*SYSTEMS, "full_retrain"}
    assert result.metrics["full_retrain"]["rmse"] != result.metrics["model"]["rmse"]
