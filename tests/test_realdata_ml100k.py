"""The whole delta cycle on MovieLens 100K, through the installed ``incr`` executable.

Each of the six time-ordered deltas is ingested in turn and followed by clean, featurize,
update and evaluate; then the catalog is rolled back to v3 and deltas 4 to 6 are ingested
again on a new branch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DELTAS = ROOT.parent / "shared" / "data" / "ml-100k" / "deltas"
CONFIG = ROOT / "examples" / "ml-100k.yaml"
INCR = Path(sys.executable).parent / "incr"

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(
        not (DELTAS / "ratings-06.tsv").is_file(),
        reason=f"MovieLens 100K deltas not found at {DELTAS} (public data set, not shipped)",
    ),
]


class Incr:
    """Runs the installed executable against one catalog and config."""

    def __init__(self, catalog: Path) -> None:
        self.env = {**os.environ, "INCR_CATALOG": str(catalog), "INCR_CONFIG": str(CONFIG)}

    def __call__(self, *args: str, expect: int = 0) -> dict:
        done = subprocess.run(
            [str(INCR), *args, "--json"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == expect, (args, done.returncode, done.stderr)
        return json.loads(done.stdout) if expect == 0 else {"stderr": done.stderr}

    def cycle(self, delta: int) -> tuple[dict, dict | None]:
        ingested = self("ingest", str(DELTAS / f"ratings-{delta:02d}.tsv"))
        self("clean")
        self("featurize")
        self("update")
        if delta == 1:
            # Nothing was trained before the first delta, so it cannot be scored.
            self("evaluate", expect=5)
            return ingested, None
        return ingested, self("evaluate")["evaluation"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    incr = Incr(tmp_path_factory.mktemp("ml100k") / "catalog.duckdb")
    first = [incr.cycle(delta) for delta in range(1, 7)]
    refused = incr("ingest", str(DELTAS / "ratings-02.tsv"), expect=5)
    rolled = incr("rollback", "--to", "v3")
    second = [incr.cycle(delta) for delta in range(4, 7)]
    report = incr("evaluate", "--report")["report"]
    return {
        "report": report,
        "first": first,
        "refused": refused,
        "rolled": rolled,
        "second": second,
        "log": incr("log"),
        "status": incr("status"),
    }


def test_every_row_of_the_six_deltas_is_accepted(run: dict) -> None:
    accepted = [ingested[0]["rows_accepted"] for ingested, _ in run["first"]]
    assert accepted == [50_000, 10_000, 10_000, 10_000, 10_000, 10_000]
    assert sum(accepted) == 100_000
    assert all(ingested[0]["rows_rejected"] == 0 for ingested, _ in run["first"])


def test_a_file_already_on_the_lineage_is_refused_naming_its_version(run: dict) -> None:
    assert "already held by v2" in run["refused"]["stderr"]


def test_rollback_keeps_later_versions_and_branches_from_the_target(run: dict) -> None:
    assert run["rolled"]["version"] == 3
    assert run["rolled"]["previous"] == 6
    assert run["rolled"]["rolled_back"] == [4, 5, 6]

    graph = {v["version"]: (v["parent"], v["state"]) for v in run["log"]}
    assert graph == {
        1: (None, "active"),
        2: (1, "active"),
        3: (2, "active"),
        4: (3, "rolled back"),
        5: (4, "rolled back"),
        6: (5, "rolled back"),
        7: (3, "active"),
        8: (7, "active"),
        9: (8, "head"),
    }
    assert run["status"]["lineage"] == [1, 2, 3, 7, 8, 9]
    assert run["status"]["clean_rows"] == 100_000
    assert all(v["stages"] == ["ingest", "clean", "featurize", "update"] for v in run["log"])


def test_the_new_branch_learns_from_the_model_of_v3(run: dict) -> None:
    assert [ingested[0]["version"] for ingested, _ in run["second"]] == [7, 8, 9]
    assert run["second"][0][1]["model_version"] == 3


@pytest.mark.parametrize("pass_", ["first", "second"])
def test_test_then_train_rmse_beats_the_global_mean(run: dict, pass_: str) -> None:
    evaluations = [e for _, e in run[pass_] if e is not None]
    model = [e["metrics"]["model"]["rmse"] for e in evaluations]
    baseline = [e["metrics"]["global_mean"]["rmse"] for e in evaluations]
    assert all(m < b for m, b in zip(model, baseline, strict=True)), (model, baseline)
    assert sum(model) / len(model) < 1.10, model
    # Each delta is scored by the model trained on the versions before it.
    assert all(e["model_version"] == e["version"] - 1 or e["version"] == 7 for e in evaluations)


def test_the_replayed_branch_scores_exactly_as_the_first_did(run: dict) -> None:
    # v7-v9 are deltas 4-6 again, learned from the same model of v3 at the same depth: the
    # same files give the same models, so the same figures, to the last bit.
    first = [e["metrics"] for _, e in run["first"][3:]]
    second = [e["metrics"] for _, e in run["second"]]
    for before, after in zip(first, second, strict=True):
        for system in ("model", "global_mean", "biases", "most_popular"):
            assert after[system] == before[system], system


def test_the_html_report_covers_the_lineage_and_opens_offline(run: dict) -> None:
    report = run["report"]
    assert [row["version"] for row in report["rows"]] == [1, 2, 3, 7, 8, 9]
    html = Path(report["html_path"]).read_text(encoding="utf-8")
    markdown = Path(report["path"]).read_text(encoding="utf-8")
    assert html.lstrip().lower().startswith("<!doctype html>")
    assert "http://" not in html.replace("http://www.w3.org/", "")
    assert "https://" not in html and "<script" not in html.lower()
    # Charts are SVG images inline, as data URIs.
    assert html.count('src="data:image/svg+xml;base64,') >= 2
    for version in ("v1", "v2", "v3", "v7", "v8", "v9"):
        assert version in markdown
