"""The command line end to end on sample_data/: exit codes, output and catalog state."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import joblib
import numpy as np
import pytest
from in_process import Cli

from incr_cli.cli import main

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = sorted((ROOT / "sample_data").glob("delta-*.csv"))


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(tmp_path / "cat" / "catalog.duckdb", capsys)


@pytest.fixture
def cycled(cli: Cli) -> Cli:
    """A catalog through three sample files, each cleaned, featurized and learned."""
    for path in SAMPLE[:3]:
        cli.cycle(path)
    return cli


def test_sample_data_is_what_the_script_writes(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_sample_data.py"), str(tmp_path)],
        check=True,
        capture_output=True,
    )
    written = sorted(tmp_path.glob("delta-*.csv"))
    assert [p.name for p in written] == [p.name for p in SAMPLE]
    for ours, fresh in zip(SAMPLE, written, strict=True):
        assert (
            hashlib.sha256(ours.read_bytes()).digest()
            == hashlib.sha256(fresh.read_bytes()).digest()
        )


def test_ingest_records_the_source_and_counts(cli: Cli) -> None:
    result, _ = cli("ingest", str(SAMPLE[0]), str(SAMPLE[1]))
    assert [r["version"] for r in result] == [1, 2]
    assert result[0]["rows_read"] == 25_000
    assert result[0]["rows_accepted"] + result[0]["rows_rejected"] == 25_000
    with duckdb.connect(str(cli.catalog), read_only=True) as con:
        row = con.execute(
            "SELECT parent, source_size, source_sha256, command FROM versions WHERE version = 2"
        ).fetchone()
    assert row == (
        1,
        SAMPLE[1].stat().st_size,
        hashlib.sha256(SAMPLE[1].read_bytes()).hexdigest(),
        "ingest",
    )


def test_catalog_comes_from_the_environment_when_not_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "env" / "catalog.duckdb"
    monkeypatch.setenv("INCR_CATALOG", str(target))
    assert main(["init", "--quiet"]) == 0
    assert target.is_file()


def test_a_config_with_an_unknown_key_is_refused_naming_it(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  factorz: 8\n")
    monkeypatch.setenv("INCR_CONFIG", str(bad))
    _, err = cli("ingest", str(SAMPLE[0]), expect=4)
    assert "model.factorz is not a known key" in err
    assert not cli.catalog.exists()


def test_a_config_value_of_the_wrong_type_is_refused_naming_it(cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  factors: many\n")
    _, err = cli("status", "--config", str(bad), expect=4)
    assert "model.factors" in err and "'many'" in err


def test_a_missing_file_is_a_usage_error_and_ingests_nothing(cli: Cli) -> None:
    cli("ingest", str(SAMPLE[0]))
    before = cli.tables()
    _, err = cli("ingest", str(SAMPLE[1]), "no-such-file.csv", expect=2)
    assert "no-such-file.csv: no such file" in err
    assert err.count("\n") == 1
    assert cli.tables() == before


def test_a_file_already_held_is_refused_with_its_version(cli: Cli) -> None:
    cli("ingest", str(SAMPLE[0]))
    _, err = cli("ingest", str(SAMPLE[0]), expect=5)
    assert "is already held by v1" in err


def test_stages_with_nothing_to_do_say_so(cli: Cli) -> None:
    cli.cycle(SAMPLE[0])
    for command in ("clean", "featurize", "update"):
        _, err = cli(command, expect=5)
        assert err.startswith("incr: error: ")


def test_status_without_a_catalog_says_how_to_make_one(cli: Cli) -> None:
    _, err = cli("status", expect=2)
    assert "run 'incr init'" in err
    assert not cli.catalog.exists()


@pytest.mark.parametrize(
    "args",
    [["clean"], ["featurize"], ["update"], ["evaluate"], ["rollback", "--to", "v1"], ["gc"]],
)
def test_only_init_and_ingest_make_a_catalog(cli: Cli, args: list[str]) -> None:
    # A cron job run from the wrong folder must fail, not 'clean' a new empty catalog.
    _, err = cli(*args, expect=2)
    assert err.startswith(f"incr: error: no catalog at {str(cli.catalog)!r}; run 'incr init'")
    assert not cli.catalog.parent.exists() or not any(cli.catalog.parent.iterdir())


def test_first_delta_cannot_be_evaluated(cli: Cli) -> None:
    cli.cycle(SAMPLE[0])
    _, err = cli("evaluate", expect=5)
    assert "v1" in err


def test_evaluate_scores_each_delta_with_the_model_before_it(cycled: Cli) -> None:
    result, _ = cycled("evaluate")
    evaluation = result["evaluation"]
    assert evaluation["version"] == 3
    assert evaluation["model_version"] == 2
    model, baseline = evaluation["metrics"]["model"], evaluation["metrics"]["global_mean"]
    assert model["rmse"] < baseline["rmse"]
    assert 0 <= model["ndcg"] <= 1


def test_report_lists_every_evaluated_delta(cycled: Cli, tmp_path: Path) -> None:
    cycled("evaluate", "--model", "v1")
    out = tmp_path / "report.md"
    result, _ = cycled("evaluate", "--report", "--output", str(out))
    assert result["report"]["path"] == str(out)
    # Every version on the lineage has a row; the first has no model before it to score.
    assert [row["version"] for row in result["report"]["rows"]] == [1, 2, 3]
    assert [row["model_version"] for row in result["report"]["rows"]] == [None, 1, 2]
    assert result["report"]["html_path"] == str(out.with_suffix(".html"))
    assert out.with_suffix(".html").is_file()


def test_update_since_relearns_from_an_earlier_model(cycled: Cli) -> None:
    result, _ = cycled("update", "--since", "v1")
    assert [r["version"] for r in result] == [2, 3]
    assert all(r["kind"] == "incremental" for r in result)


def test_full_update_refits_on_all_clean_data(cycled: Cli) -> None:
    status, _ = cycled("status")
    result, _ = cycled("update", "--full")
    assert result[0]["kind"] == "full"
    assert result[0]["rows_trained"] <= status["clean_rows"]
    after, _ = cycled("status")
    assert after["model"]["model_id"] == result[0]["model_id"]


def test_rollback_moves_the_head_and_keeps_later_versions(cycled: Cli) -> None:
    before, _ = cycled("status")
    result, _ = cycled("rollback", "--to", "v1")
    assert result["rolled_back"] == [2, 3]
    status, _ = cycled("status")
    assert status["head"] == 1
    assert status["model"]["version"] == 1
    assert status["clean_rows"] < before["clean_rows"]

    # The file of v2 is held only by a rolled-back version, so it may come in again.
    ingested, _ = cycled("ingest", str(SAMPLE[1]))
    assert ingested[0]["version"] == 4
    log, _ = cycled("log")
    assert {v["version"]: v["state"] for v in log} == {
        1: "active",
        2: "rolled back",
        3: "rolled back",
        4: "head",
    }

    # Rolling forward to the old branch restores it whole.
    cycled("rollback", "--to", "v3")
    again, _ = cycled("status")
    assert again["clean_rows"] == before["clean_rows"]
    assert again["model"] == before["model"]


def counted(cli: Cli) -> tuple[int, int, int]:
    """Clean rows, users and items on the head's lineage, counted from the rows."""
    with duckdb.connect(str(cli.catalog), read_only=True) as con:
        lineage = con.execute(
            "WITH RECURSIVE chain(v) AS (SELECT CAST(value AS INTEGER) FROM meta "
            "WHERE key = 'head' UNION ALL SELECT parent FROM versions JOIN chain "
            "ON version = v WHERE parent IS NOT NULL) SELECT list(v) FROM chain"
        ).fetchone()[0]
        return con.execute(
            "SELECT count(*), count(DISTINCT user_id), count(DISTINCT item_id) "
            "FROM ratings_clean WHERE list_contains(?, version)",
            [lineage],
        ).fetchone()


def test_status_counts_what_the_lineage_holds_at_every_step(cli: Cli) -> None:
    def check() -> None:
        status, _ = cli("status")
        assert (status["clean_rows"], status["users"], status["items"]) == counted(cli)

    for path in SAMPLE[:2]:
        cli.cycle(path)
        check()
    # Cleaned, not yet featurized: the ids new in v3 and v4 are found against v2's features.
    for path in SAMPLE[2:4]:
        cli("ingest", str(path))
        check()
        cli("clean")
        check()
    cli("featurize")
    check()
    cli("rollback", "--to", "v1")
    check()
    cli("ingest", str(SAMPLE[4]))
    cli("clean")
    check()


def test_rollback_to_an_unknown_version_is_a_usage_error(cycled: Cli) -> None:
    before = cycled.tables()
    _, err = cycled("rollback", "--to", "v42", expect=2)
    assert "v42 does not exist" in err
    _, err = cycled("rollback", "--to", "yesterday", expect=2)
    assert "write it as v1, v2" in err
    assert cycled.tables() == before


def test_a_tampered_model_file_is_never_loaded(cycled: Cli) -> None:
    model_dir = cycled.catalog.parent / "models"
    newest = max(model_dir.glob("*.joblib"), key=lambda p: p.stat().st_mtime_ns)
    newest.write_bytes(newest.read_bytes() + b"tampered")
    cycled("ingest", str(SAMPLE[3]))
    cycled("clean")
    before = cycled.tables()
    _, err = cycled("update", expect=7)
    assert newest.name in err and "sha256" in err
    assert cycled.tables() == before


def test_a_missing_model_file_is_an_integrity_error(cycled: Cli) -> None:
    shutil.rmtree(cycled.catalog.parent / "models")
    cycled("ingest", str(SAMPLE[3]))
    cycled("clean")
    before = cycled.tables()
    _, err = cycled("update", expect=7)
    assert "is missing" in err and "incr update --full" in err
    assert cycled.tables() == before


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    from incr_cli import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"incr {__version__}"


def test_quiet_prints_nothing_on_success(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = tmp_path / "catalog.duckdb"
    assert main(["ingest", str(SAMPLE[0]), "--catalog", str(catalog), "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    # Nothing to do is silent too, for a cron job, and still exit 5; errors are not.
    assert main(["ingest", str(SAMPLE[0]), "--catalog", str(catalog), "-q"]) == 5
    assert capsys.readouterr() == ("", "")
    assert main(["rollback", "--to", "v9", "--catalog", str(catalog), "-q"]) == 2
    assert "v9 does not exist" in capsys.readouterr().err


def test_first_update_fits_one_model_on_all_clean_versions(cli: Cli) -> None:
    cli("ingest", str(SAMPLE[0]), str(SAMPLE[1]))
    cli("clean")
    result, _ = cli("update")
    assert [(r["version"], r["kind"], r["rows_trained"]) for r in result] == [(2, "full", 30_000)]
    log, _ = cli("log")
    assert [v["stages"] for v in log] == [["ingest", "clean", "update"]] * 2
    _, err = cli("update", expect=5)
    assert "up to date with v2" in err


def test_update_refuses_a_version_not_yet_cleaned(cycled: Cli) -> None:
    cycled("ingest", str(SAMPLE[3]))
    before = cycled.tables()
    _, err = cycled("update", expect=2)
    assert "v4 is not cleaned yet; run 'incr clean' first" in err
    assert cycled.tables() == before


def test_a_diverging_update_is_refused_and_saves_nothing(cycled: Cli, tmp_path: Path) -> None:
    config = tmp_path / "hot.yaml"
    config.write_text("model:\n  lr: 1.0\n")
    cycled("ingest", str(SAMPLE[3]))
    cycled("clean")
    before = cycled.tables()
    models = sorted((cycled.catalog.parent / "models").iterdir())

    _, err = cycled("update", "--config", str(config), expect=4)

    assert "training on v4 diverged" in err and "lower model.lr (now 1)" in err
    assert err.count("\n") == 1
    assert cycled.tables() == before
    assert sorted((cycled.catalog.parent / "models").iterdir()) == models


def _parameters(catalog: Path, model_id: int) -> dict[str, np.ndarray]:
    [path] = (catalog.parent / "models").glob(f"*-m{model_id}.joblib")
    model = joblib.load(path)
    return {
        name: getattr(model, name)
        for name in ("user_bias_", "item_bias_", "user_factors_", "item_factors_")
    }


def test_the_same_files_give_bitwise_the_same_models(tmp_path: Path, capsys) -> None:
    # Two catalogs fed the same files; the second also rolls back and learns them again.
    one = Cli(tmp_path / "one" / "catalog.duckdb", capsys)
    two = Cli(tmp_path / "two" / "catalog.duckdb", capsys)
    for cli in (one, two):
        for path in SAMPLE[:3]:
            cli.cycle(path)
    two("rollback", "--to", "v1")
    # v4 and v5 at the places of v2 and v3 on a new branch, learned as models m4 and m5;
    # m5 replays ratings of v4 where m3 replayed the same ratings as v2.
    two.cycle(SAMPLE[1])
    two.cycle(SAMPLE[2])

    for one_id, two_id in ((1, 1), (2, 2), (3, 3), (2, 4), (3, 5)):
        expected = _parameters(one.catalog, one_id)
        got = _parameters(two.catalog, two_id)
        for name, values in expected.items():
            np.testing.assert_array_equal(got[name], values, err_msg=name)
