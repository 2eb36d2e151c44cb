"""update, the gate, evaluate and recommend for implicit feedback, on hand-made deltas.

Every row is a purchase of ``value`` units at a time in days, read with ``ingest.feedback:
quantity``; a negative value is a cancellation. The figures of the baselines are worked
out by hand from the rows below.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from incr_cli.artifacts import load_model, serving_model
from incr_cli.catalog import Catalog, Invocation, open_catalog
from incr_cli.clean import clean_pending
from incr_cli.cli import main
from incr_cli.config import Config, load_config
from incr_cli.errors import ConfigError, GateRefused, UsageError
from incr_cli.evaluate import evaluate
from incr_cli.implicit_model import ImplicitMF
from incr_cli.ingest import ingest_files
from incr_cli.recommend import recommend_user
from incr_cli.update import update

OpenCatalog = Callable[..., Catalog]
WriteFile = Callable[..., Path]

DAY = 86_400
START = 1_600_000_000  # 2020-09-13 12:26:40 UTC: every row's time is START + day * DAY

# Day 1 and day 10, then day 12 (the delta evaluated): user, item, value, day.
V1 = [("u1", "a", 1, 1), ("u1", "b", 1, 1), ("u2", "a", 1, 1), ("u3", "c", 1, 1)]
V1 += [("u1", "a", 1, 10), ("u2", "d", 1, 10)]
V2 = [("u1", "b", 1, 12), ("u1", "c", 1, 12), ("u2", "a", 1, 12), ("u4", "e", 1, 12)]


def implicit_config(**sections: dict) -> Config:
    """A config for quantities, k = 3, bought items kept as candidates."""
    data: dict = {"ingest": {"feedback": "quantity"}, "evaluate": {"k": 3, "exclude_seen": False}}
    for name, values in sections.items():
        data[name] = data.get(name, {}) | values
    return Config.model_validate(data)


def rows_file(write_file: WriteFile, name: str, rows: list[tuple], value: str = "quantity") -> Path:
    lines = [f"user_id,item_id,{value},timestamp"]
    lines += [f"{u},{i},{v},{START + d * DAY}" for u, i, v, d in rows]
    return write_file(name, "\n".join(lines) + "\n")


def learn(cat: Catalog, write_file: WriteFile, *deltas: list[tuple], full: bool = False) -> list:
    results = []
    for n, rows in enumerate(deltas):
        ingest_files(cat, [rows_file(write_file, f"d{n}-{len(rows)}-{id(rows)}.csv", rows)])
        clean_pending(cat)
        results.append(update(cat, full=full))
    return results


def test_update_trains_implicit_mf_incrementally_without_replay(
    catalog: OpenCatalog, write_file: WriteFile
) -> None:
    cat = catalog(implicit_config())
    (first,), (second,) = learn(cat, write_file, V1, V2)

    assert (first.kind, first.rows_trained, first.rows_replayed) == ("full", 6, 0)
    assert (second.kind, second.rows_trained, second.rows_replayed) == ("incremental", 4, 0)
    assert (second.users, second.items) == (4, 5)
    model = load_model(cat, serving_model(cat, 2))
    assert isinstance(model, ImplicitMF)
    assert (model.n_factors, model.transform, model.alpha) == (64, "log1p", 3.0)
    # u1 bought a on two days: the net value per pair is what the model keeps.
    assert model.strengths_[model.user_index_["u1"], model.item_index_["a"]] == 2.0
    assert model.last_time_ == pytest.approx((START + 12 * DAY) / DAY)


def test_a_cancellation_in_a_later_delta_nets_the_pair_to_zero(
    catalog: OpenCatalog, write_file: WriteFile
) -> None:
    cat = catalog(implicit_config())
    learn(cat, write_file, V1, [("u1", "a", -2, 11), ("u3", "c", 4, 11)])

    model = load_model(cat, serving_model(cat, 2))
    u1, a = model.user_index_["u1"], model.item_index_["a"]
    assert model.strengths_[u1, a] == 0.0
    confidence = model._confidence(model.strengths_)
    assert confidence[u1, a] == 0.0
    assert confidence[model.user_index_["u3"], model.item_index_["c"]] == pytest.approx(
        math.log1p(5.0)
    )


def test_the_same_files_give_the_same_model_files(
    catalog: OpenCatalog, write_file: WriteFile
) -> None:
    digests = []
    for name in ("one", "two"):
        cat = catalog(implicit_config(), name=name)
        learn(cat, write_file, V1, V2)
        digests.append(cat.rows("SELECT version, sha256 FROM models ORDER BY model_id"))
    assert digests[0] == digests[1]


def test_full_retrains_with_fit_on_every_row(catalog: OpenCatalog, write_file: WriteFile) -> None:
    cat = catalog(implicit_config())
    learn(cat, write_file, V1)
    (result,) = learn(cat, write_file, V2, full=True)[0]

    assert (result.kind, result.rows_trained) == ("full", 10)
    model = load_model(cat, serving_model(cat, 2))
    assert model.n_fit_calls_ == 1 and model.n_rows_seen_ == 10


def test_the_gate_judges_ranking_on_held_out_buyers(
    catalog: OpenCatalog, write_file: WriteFile
) -> None:
    cat = catalog(implicit_config(gate={"holdout": 0.5}))
    learn(cat, write_file, V1, V2)

    decision, held_out, figures = cat.rows(
        "SELECT decision, holdout_rows, figures FROM gate_decisions ORDER BY model_id DESC LIMIT 1"
    )[0]
    assert decision == "promoted"
    # Half of the delta's three buyers: one user, with one or two rows of the delta.
    assert held_out in (1, 2)
    assert '"ndcg"' in figures and '"rmse"' not in figures


def test_the_gate_refuses_an_implicit_candidate_below_its_ndcg_bound(
    catalog: OpenCatalog, write_file: WriteFile
) -> None:
    gate = {"holdout": 0.5, "metrics": {"ndcg": {"min": 1.5}}}
    cat = catalog(implicit_config(gate=gate))
    with pytest.raises(GateRefused, match="ndcg .* is below the bound min 1.5"):
        learn(cat, write_file, V1)


def test_a_rating_model_is_not_updated_as_an_implicit_one(
    write_file: WriteFile, tmp_path: Path
) -> None:
    path = tmp_path / "switched" / "catalog.duckdb"
    with open_catalog(path, Config(), Invocation("test"), write=True) as cat:
        ingest_files(cat, [rows_file(write_file, "v1.csv", V1, value="rating")])
        clean_pending(cat)
        update(cat)

    with open_catalog(path, implicit_config(), Invocation("test"), write=True) as cat:
        models = cat.one("SELECT count(*) FROM models")
        with pytest.raises(UsageError, match="use the config it was trained with"):
            learn(cat, write_file, V2)
        assert cat.one("SELECT count(*) FROM models") == models


@pytest.fixture
def shop(write_file: WriteFile, tmp_path: Path) -> Path:
    """A catalog of quantities: V1 learned, V2 ingested and cleaned."""
    path = tmp_path / "shop" / "catalog.duckdb"
    with open_catalog(path, implicit_config(), Invocation("test"), write=True) as cat:
        learn(cat, write_file, V1)
        ingest_files(cat, [rows_file(write_file, "v2.csv", V2)])
        clean_pending(cat)

    return path


def test_a_shop_catalog_read_without_its_config_is_refused_not_crashed(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = shop
    # The cron job lost INCR_CONFIG: the default config reads ratings.
    with open_catalog(path, Config(), Invocation("test"), write=False) as read:
        with pytest.raises(UsageError, match="implicit-feedback model but ingest.feedback"):
            evaluate(read, save=False)
        with pytest.raises(UsageError, match="the model to recommend from"):
            recommend_user(read, "u1", k=3)
    for command in (["evaluate"], ["recommend", "--user", "u1"]):
        assert main([*command, "--catalog", str(path)]) == 2
        assert "use the config it was trained with" in capsys.readouterr().err


def test_versions_are_cleaned_and_learned_only_as_the_feedback_they_were_ingested_as(
    shop: Path, write_file: WriteFile
) -> None:
    path = shop
    # The config is lost: purchases must not be learned as ratings, nor cleaned as such.
    with open_catalog(path, Config(), Invocation("test"), write=True) as cat:
        models = cat.one("SELECT count(*) FROM models")
        with pytest.raises(UsageError, match="v1 was ingested with ingest.feedback: quantity"):
            update(cat, full=True)
        with pytest.raises(UsageError, match="v2 was ingested with ingest.feedback: quantity"):
            update(cat)
        assert cat.one("SELECT count(*) FROM models") == models
        ingest_files(cat, [rows_file(write_file, "v3.csv", V2[:1], value="rating")])
    with open_catalog(path, implicit_config(), Invocation("test"), write=True) as cat:
        with pytest.raises(UsageError, match="v3 was ingested with ingest.feedback: rating"):
            clean_pending(cat)
        assert not cat.stage_done(3, "clean")


def _ndcg(hit_ranks: list[int], relevant: int, k: int = 3) -> float:
    dcg = sum(1 / math.log2(rank + 1) for rank in hit_ranks)
    return dcg / sum(1 / math.log2(rank + 1) for rank in range(1, min(relevant, k) + 1))


def test_evaluate_ranks_for_each_buyer_beside_three_baselines(
    catalog: OpenCatalog, write_file: WriteFile
) -> None:
    cat = catalog(implicit_config())
    learn(cat, write_file, V1, V2)
    result = evaluate(cat)

    assert (result.version, result.model_version, result.users_ranked) == (2, 1, 3)
    assert set(result.metrics) == {"model", "most_popular", "recently_popular", "buy_again"}
    assert "rmse" not in result.metrics["model"]
    # Relevant: u1 {b, c}, u2 {a}, u4 {e} (new). Lists, as of v1:
    # most popular by user-days: a (3), b, c, d -> [a, b, c] for everyone;
    most = result.metrics["most_popular"]
    assert most["ndcg"] == pytest.approx((_ndcg([2, 3], 2) + _ndcg([1], 1) + 0) / 3)
    assert most["precision"] == pytest.approx((2 / 3 + 1 / 3 + 0) / 3)
    assert most["hit_rate"] == pytest.approx(2 / 3)
    # recently popular, the 7 days before day 12 (day 10): a, d -> [a, d];
    recent = result.metrics["recently_popular"]
    assert recent["ndcg"] == pytest.approx(1 / 3)
    assert recent["recall"] == pytest.approx(1 / 3)
    # buy-again: u1 [a (2 days), b, then d], u2 [d (latest), a], u4 (new) [a, d].
    again = result.metrics["buy_again"]
    assert again["ndcg"] == pytest.approx((_ndcg([2], 2) + _ndcg([2], 1) + 0) / 3)
    assert again["hit_rate"] == pytest.approx(2 / 3)
    stored = cat.rows(
        "SELECT system, value FROM metrics WHERE version = 2 AND metric = 'ndcg' ORDER BY system"
    )
    assert [system for system, _ in stored] == [
        "buy_again",
        "model",
        "most_popular",
        "recently_popular",
    ]


def test_evaluate_leaves_out_bought_items_when_asked(
    catalog: OpenCatalog, write_file: WriteFile
) -> None:
    cat = catalog(implicit_config(evaluate={"exclude_seen": True}))
    learn(cat, write_file, V1, V2)
    figures = evaluate(cat).metrics

    # u1 had a and b: most popular lists [c, d] for u1 (c is a hit at rank 1), u2 (had a
    # and d) [b, c], u4 [a, b, c].
    assert figures["most_popular"]["ndcg"] == pytest.approx((_ndcg([1], 2) + 0 + 0) / 3)


@pytest.mark.parametrize(("exclude", "listed"), [(False, True), (True, False)])
def test_recommend_keeps_bought_items_unless_excluded(
    catalog: OpenCatalog, write_file: WriteFile, exclude: bool, listed: bool
) -> None:
    cat = catalog(implicit_config(evaluate={"exclude_seen": exclude}))
    learn(cat, write_file, V1, V2)
    items = [r.item_id for r in recommend_user(cat, "u1", k=5).items]

    assert ("a" in items) is listed
    if listed:
        # Bought on two days, the most of any item: the own history ranks it first.
        assert items[0] == "a"


def test_model_implicit_settings_are_validated(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  implicit:\n    transform: sqrt\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="model.implicit.transform"):
        load_config(path)
    path.write_text("model:\n  implicit:\n    reg: 0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="model.implicit.reg"):
        load_config(path)
    assert np.isclose(load_config(None).model.implicit.alpha, 3.0)


def test_evaluate_prints_ranking_figures_and_no_rating_errors(
    tmp_path: Path, write_file: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "shop.yaml"
    config.write_text("ingest:\n  feedback: quantity\nevaluate:\n  k: 3\n  exclude_seen: false\n")
    where = ["--catalog", str(tmp_path / "cli" / "catalog.duckdb"), "--config", str(config)]
    for n, rows in enumerate((V1, V2)):
        for step in (["ingest", str(rows_file(write_file, f"cli{n}.csv", rows))], ["clean"]):
            assert main([*step, *where, "--quiet"]) == 0
        assert main(["update", *where, "--quiet"]) == 0
    capsys.readouterr()
    report = tmp_path / "report.md"

    assert main(["evaluate", "--report", "--output", str(report), *where]) == 0
    printed = capsys.readouterr().out
    assert "v2: 4 rows, 3 users ranked, model of v1" in printed
    for heading in ("precision@3", "ndcg@3", "hit_rate@3", "buy_again"):
        assert heading in printed
    for wrong in ("rmse", "mae", "ratings"):
        assert wrong not in printed
    for written in (report, report.with_suffix(".html")):
        text = written.read_text(encoding="utf-8")
        assert "what the user bought" in text and "ndcg" in text
        assert "RMSE" not in text and "ratings" not in text

    assert main(["status", *where]) == 0
    metrics = [line for line in capsys.readouterr().out.splitlines() if line.startswith("metrics")]
    assert metrics and metrics[0].startswith("metrics  v2: ndcg 0.")
    assert "rmse" not in metrics[0]
