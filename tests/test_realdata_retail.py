"""Online Retail as implicit feedback, day by day, through the installed ``incr`` executable.

The first 60 daily files are ingested in order as cron would run them (ingest, clean,
featurize, update, evaluate per day). The counts ``clean`` reports are checked against
counts computed here from the raw files, and the model's mean NDCG@10 over days 31 to 60
against the most-popular baseline's.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from incr_cli.config import IngestConfig

ROOT = Path(__file__).resolve().parent.parent
DAYS = ROOT.parent / "shared" / "data" / "online-retail" / "by-day"
INCR = Path(sys.executable).parent / "incr"
N_DAYS = 60

# A product is a five-digit stock code with an optional letter suffix (85123A); POST, M,
# BANK CHARGES, DCGS0076 and the like are fees and adjustments, not products.
PRODUCT = re.compile(r"[0-9]{5}[A-Za-z]*")
NOT_PRODUCT = r"[^0-9].*|[0-9]{1,4}|[0-9]{1,4}[^0-9].*|[0-9]{5}.*[^A-Za-z].*|[0-9]{6,}.*"

CONFIG = f"""
ingest:
  feedback: quantity
  columns: {{user: CustomerID, item: StockCode, rating: Quantity, timestamp: InvoiceDate}}
  rating_min: -100000
  rating_max: 100000
clean:
  dedupe: none
  exclude_items: '{NOT_PRODUCT}'
evaluate:
  k: 10
  exclude_seen: false
"""

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(
        not DAYS.is_dir() or len(list(DAYS.glob("*.csv"))) < N_DAYS,
        reason=f"Online Retail daily files not found at {DAYS} (public data set, not shipped)",
    ),
    pytest.mark.skipif(
        "feedback" not in IngestConfig.model_fields,
        reason="ingest.feedback (quantities as implicit feedback) is not available yet",
    ),
]


def expected_counts(path: Path) -> tuple[int, int, int]:
    """Rows read, rows accepted (a customer id) and rows clean keeps (a product), by hand."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    accepted = [r for r in rows if r["CustomerID"].strip()]
    kept = [r for r in accepted if PRODUCT.fullmatch(r["StockCode"].strip())]
    return len(rows), len(accepted), len(kept)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("retail")
    config = work / "retail.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    env = {**os.environ, "INCR_CATALOG": str(work / "catalog.duckdb"), "INCR_CONFIG": str(config)}
    files = sorted(DAYS.glob("*.csv"))[:N_DAYS]
    # One shell per day chains the five steps as a cron job would; exit 5 (nothing to do:
    # the first day has no model to score) and 8 (a gate refusal) let the chain go on.
    script = (
        'ok() { "$@"; rc=$?; [ "$rc" -eq 0 ] || [ "$rc" -eq 5 ] || [ "$rc" -eq 8 ]; }; '
        'incr() { "$INCR" "$@" --json; rc=$?; echo "@@"; return $rc; }; '
        'ok incr ingest "$1" && ok incr clean && ok incr featurize && ok incr update '
        "&& ok incr evaluate"
    )
    days = []
    for path in files:
        done = subprocess.run(
            ["bash", "-c", script, "day", str(path)],
            env=env | {"INCR": str(INCR)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, (path.name, done.stderr)
        # One JSON document per step (none for exit 5 or 8), each followed by @@.
        parts = done.stdout.split("@@")[:-1]
        outputs = [json.loads(part) if part.strip() else None for part in parts]
        assert len(outputs) == 5, (path.name, done.stdout[-500:])
        days.append({"path": path, "outputs": outputs})
    return {"days": days}


def test_clean_reports_the_counts_computed_from_the_raw_files(run: dict) -> None:
    for day in run["days"]:
        ingested, cleaned = day["outputs"][0], day["outputs"][1]
        read, accepted, kept = expected_counts(day["path"])
        assert ingested[0]["rows_read"] == read, day["path"].name
        assert ingested[0]["rows_accepted"] == accepted, day["path"].name
        (result,) = cleaned
        assert (result["rows_in"], result["rows_out"]) == (accepted, kept), day["path"].name
        assert sum(result["removed"].values()) == accepted - kept


def test_the_model_beats_most_popular_on_ndcg_over_days_31_to_60(run: dict) -> None:
    evaluations = [day["outputs"][4]["evaluation"] for day in run["days"][30:N_DAYS]]
    model = [e["metrics"]["model"]["ndcg"] for e in evaluations]
    popular = [e["metrics"]["most_popular"]["ndcg"] for e in evaluations]
    assert sum(model) / len(model) > sum(popular) / len(popular), (model, popular)
    assert all(e["metrics"]["model"]["users_ranked"] > 0 for e in evaluations)
