"""The quality gate of ``incr update``, through the real command line and as a library."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import duckdb
import pytest
from in_process import Cli as InProcess

from incr_cli import gate
from incr_cli.cli import main
from incr_cli.config import GateMetric
from incr_cli.errors import ExitCode

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = sorted((ROOT / "sample_data").glob("delta-*.csv"))


class Cli(InProcess):
    """``incr`` in this process on ``folder/cat/catalog.duckdb``, with configs in ``folder``."""

    def __init__(self, folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
        super().__init__(folder / "cat" / "catalog.duckdb", capsys)
        self.folder = folder

    def config(self, name: str, text: str) -> str:
        path = self.folder / name
        path.write_text(text)
        return str(path)

    def prepare(self, path: Path) -> None:
        self("ingest", str(path))
        self("clean")
        self("featurize")

    def decisions(self) -> list[tuple]:
        with duckdb.connect(str(self.catalog), read_only=True) as con:
            return con.execute(
                "SELECT model_id, version, candidate_id, current_model_id, decision, reason, "
                "holdout_rows, figures FROM gate_decisions ORDER BY model_id"
            ).fetchall()


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(tmp_path, capsys)


@pytest.fixture
def two(cli: Cli) -> Cli:
    """A catalog through two sample files, each learned and promoted by the default gate."""
    for path in SAMPLE[:2]:
        cli.prepare(path)
        cli("update")
    return cli


# A gate no candidate can pass: its bound on RMSE is far below what any model reaches.
IMPOSSIBLE = "gate:\n  metrics:\n    rmse: {tolerance: 1.0, max: 0.01}\n"


def test_the_default_gate_promotes_a_normal_run(two: Cli) -> None:
    status, _ = two("status")
    assert status["model"]["model_id"] == 2
    assert status["last_gate"]["decision"] == "promoted"

    first, second = two.decisions()
    assert first[4] == second[4] == "promoted"
    # The first model has nothing to compare with and the default gate has no bounds, so
    # it is promoted without a held-out check.
    assert first[3] is None and json.loads(first[7]) == {} and first[6] == 0
    assert first[5] == "not judged: no current model to compare with and no bounds configured"
    # The second is compared with the first on the newest fifth of its delta.
    assert second[3] == 1
    assert second[6] == 1000
    figures = json.loads(second[7])
    for metric in ("rmse", "mae"):
        assert figures[metric]["candidate"] <= figures[metric]["limit"]
        assert figures[metric]["limit"] == pytest.approx(1.05 * figures[metric]["reference"])


def test_a_worse_candidate_is_refused_and_the_current_model_keeps_serving(two: Cli) -> None:
    two.prepare(SAMPLE[2])
    # A learning rate this large (yet short of diverging, which update refuses outright)
    # makes the candidate far worse than the current model.
    config = two.config(
        "worse.yaml", "model:\n  lr: 0.2\ngate:\n  metrics:\n    rmse: {tolerance: 0.01}\n"
    )

    _, err = two("update", "--config", config, expect=ExitCode.GATE)

    assert "refused candidate m3 of v3" in err and "model m2 still serves" in err
    assert "worse than the current model m2's" in err
    status, _ = two("status")
    assert status["model"]["model_id"] == 2
    assert status["pending"]["update"] == [3]
    assert status["last_gate"]["decision"] == "rejected"
    assert status["last_gate"]["model_id"] == 3
    assert "worse than the current model m2's" in status["last_gate"]["reason"]
    log, _ = two("log")
    assert log[2]["models"] == [3]
    assert log[2]["gate"] == [
        {"model_id": 3, "decision": "rejected", "reason": status["last_gate"]["reason"]}
    ]
    model_id, version, _, current, decision, *_ = two.decisions()[-1]
    assert (model_id, version, current, decision) == (3, 3, 2, "rejected")


def test_the_first_model_is_judged_by_the_bounds_only(cli: Cli) -> None:
    cli.prepare(SAMPLE[0])
    config = cli.config("impossible.yaml", IMPOSSIBLE)

    _, err = cli("update", "--config", config, expect=ExitCode.GATE)

    assert "rmse" in err and "above the bound max 0.01" in err and "no model serves" in err
    status, _ = cli("status")
    assert status["model"] is None
    # With the default gate the same data is learned and promoted.
    result, _ = cli("update")
    assert result[-1]["decision"] == "promoted"
    assert [d[4] for d in cli.decisions()] == ["rejected", "promoted"]


def test_force_promotes_a_refused_candidate_and_says_so(two: Cli) -> None:
    two.prepare(SAMPLE[2])
    config = two.config("impossible.yaml", IMPOSSIBLE)
    two("update", "--config", config, expect=ExitCode.GATE)

    result, err = two("update", "--config", config, "--force")

    assert result[-1]["decision"] == "forced"
    assert "promoted by --force" in err
    status, _ = two("status")
    assert status["model"]["model_id"] == result[-1]["model_id"] == 4
    log, _ = two("log")
    assert [g["decision"] for g in log[2]["gate"]] == ["rejected", "forced"]
    assert "above the bound max 0.01" in log[2]["gate"][1]["reason"]


def test_log_marks_an_update_whose_every_model_was_refused(
    two: Cli, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # 'incr status' still lists v3 as waiting for an update: the log must not look done.
    monkeypatch.setenv("COLUMNS", "300")
    two.prepare(SAMPLE[2])
    config = two.config("impossible.yaml", IMPOSSIBLE)
    two("update", "--config", config, expect=ExitCode.GATE)

    def stages_of_v3() -> str:
        capsys.readouterr()
        assert main(["log", "--catalog", str(two.catalog)]) == 0
        row = next(line for line in capsys.readouterr().out.splitlines() if "│ v3 " in line)
        return row.split("│")[8].strip()

    assert stages_of_v3() == "ingest,clean,featurize,update (refused)"
    two("update", "--config", config, "--force")
    assert stages_of_v3() == "ingest,clean,featurize,update"


def test_a_refused_candidate_breaks_no_later_command(two: Cli) -> None:
    two.prepare(SAMPLE[2])
    two("update", "--config", two.config("impossible.yaml", IMPOSSIBLE), expect=ExitCode.GATE)

    # evaluate scores v3 with the model before it, which the refusal did not touch.
    result, _ = two("evaluate")
    assert result["evaluation"]["model_id"] == 2
    verified, _ = two("verify")
    assert verified["problems"] == []

    # The next update learns v3 and v4 again from the serving model, and is promoted.
    two.prepare(SAMPLE[3])
    result, _ = two("update")
    assert [r["version"] for r in result] == [3, 4]
    assert result[0]["base_model_id"] == 2
    assert result[-1]["decision"] == "promoted"

    # Rolling back to v3 serves m2 again: v3's own models are the rejected one and m4,
    # which is newer and promoted with its run.
    rolled, _ = two("rollback", "--to", "v3")
    assert rolled["model_id"] == 4
    rolled, _ = two("rollback", "--to", "v2")
    assert rolled["model_id"] == 2
    gc, _ = two("gc", "--keep", "0")
    assert gc["removed_versions"] == [3, 4]
    with duckdb.connect(str(two.catalog), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM gate_decisions WHERE version > 2").fetchone() == (
            0,
        )
    verified, _ = two("verify")
    assert verified["problems"] == []


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("gate:\n  metrics:\n    map: {tolerance: 0.1}\n", "gate.metrics.map"),
        ("gate:\n  metrics:\n    rmse: {min: 2, max: 1}\n", "gate.metrics.rmse"),
        ("gate:\n  holdout: 1.5\n", "gate.holdout"),
    ],
)
def test_a_bad_gate_config_is_refused_naming_the_key(cli: Cli, text: str, key: str) -> None:
    cli.prepare(SAMPLE[0])
    _, err = cli("update", "--config", cli.config("bad.yaml", text), expect=ExitCode.CONFIG)
    assert key in err


# --- the rules, as a library ------------------------------------------------------


def test_an_absolute_tolerance_is_in_the_metrics_units() -> None:
    # Values exact in binary, so that "no worse by more than" is tested at its edge.
    rules = {"mae": GateMetric(tolerance=0.25)}
    assert gate.judge(rules, {"mae": 0.75}, {"mae": 0.5}).passed
    refused = gate.judge(rules, {"mae": 0.875}, {"mae": 0.5})
    assert refused.reasons == [
        "mae 0.8750 is worse than the current model's 0.5000 by more than 0.25 (limit 0.7500)"
    ]
    assert refused.figures["mae"] == {"candidate": 0.875, "reference": 0.5, "limit": 0.75}


def test_a_relative_tolerance_is_a_share_of_the_current_value() -> None:
    rules = {"rmse": GateMetric(tolerance=0.1, relative=True)}
    assert gate.judge(rules, {"rmse": 2.19}, {"rmse": 2.0}).passed
    assert not gate.judge(rules, {"rmse": 2.21}, {"rmse": 2.0}).passed


def test_bounds_apply_with_or_without_a_reference() -> None:
    rules = {"rmse": GateMetric(tolerance=1.0, min=0.5, max=1.2)}
    assert gate.judge(rules, {"rmse": 0.4}, {"rmse": 1.0}).reasons == [
        "rmse 0.4000 is below the bound min 0.5"
    ]
    assert not gate.judge(rules, {"rmse": 1.3}, None).passed
    assert gate.judge(rules, {"rmse": 1.0}, None).passed


def test_the_gate_module_examples_run() -> None:
    failures, tried = doctest.testmod(gate)
    assert tried > 0 and failures == 0
