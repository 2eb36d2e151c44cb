"""Benchmark: incr's own pipeline on UCI Online Retail, one raw daily file after another.

Where ``retail.py`` replays the systems in memory on data it cleaned itself, this runs
what a cron job runs, with the shipped ``examples/online-retail.yaml``, in one process so
that start-up is not counted: for each of the 305 days, ``ingest`` of the day's raw file
(anonymous rows quarantined, 17850.0 read as 17850, UK local time), ``clean`` (exact
duplicates, non-product codes, cancellations offset against purchases), ``featurize``,
``update`` (``ImplicitMF``: a full fit on the first day, ``partial_fit`` with the quality
gate after) and ``evaluate`` (from the second day: the model trained through the day
before ranks items for the day's buyers, beside most popular, recently popular and
buy-again). It reports the seconds per day, median and worst, what ingest and clean kept,
and the metrics averaged over the last 100 days, read back from the catalog.

Run (about five minutes on two cores)::

    .venv/bin/python benchmarks/retail_pipeline.py

The table goes to stdout and to ``benchmarks/retail_pipeline.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from incr_cli.catalog import Invocation, open_catalog  # noqa: E402
from incr_cli.clean import clean_pending  # noqa: E402
from incr_cli.config import load_config  # noqa: E402
from incr_cli.errors import GateRefused  # noqa: E402
from incr_cli.evaluate import evaluate  # noqa: E402
from incr_cli.featurize import featurize_pending  # noqa: E402
from incr_cli.ingest import ingest_files  # noqa: E402
from incr_cli.update import update  # noqa: E402

SYSTEMS = ("model", "buy_again", "recently_popular", "most_popular")
METRICS = ("precision", "recall", "ndcg", "hit_rate")
CONFIG = ROOT / "examples" / "online-retail.yaml"


@dataclass
class Tally:
    """Rows read, accepted and kept, and why the others went, summed over the days."""

    rows: Counter[str] = field(default_factory=Counter)
    quarantined: Counter[str] = field(default_factory=Counter)
    removed: Counter[str] = field(default_factory=Counter)

    def text(self) -> str:
        def listed(counts: Counter[str]) -> str:
            return ", ".join(f"{why} {n:,}" for why, n in counts.most_common())

        return (
            f"Rows read {self.rows['read']:,}, accepted {self.rows['accepted']:,} "
            f"(quarantined: {listed(self.quarantined)}), kept by clean "
            f"{self.rows['kept']:,} (removed: {listed(self.removed)})."
        )


def run(files: list[Path], catalog_path: Path) -> tuple[list[float], dict, int, Tally]:
    """Every day through the pipeline: seconds per day, figures per day, refusals, and
    what ingest and clean kept."""
    config = load_config(CONFIG)
    seconds: list[float] = []
    figures: dict[int, dict[str, dict[str, float]]] = {}
    refused = 0
    tally = Tally()
    for n, path in enumerate(files):
        started = time.perf_counter()
        with open_catalog(catalog_path, config, Invocation("bench"), write=True) as cat:
            (ingested,) = ingest_files(cat, [path])
            (cleaned,) = clean_pending(cat)
            featurize_pending(cat)
            try:
                update(cat)
            except GateRefused:
                refused += 1
            if n:
                result = evaluate(cat)
                figures[n] = {
                    s: {m: float(result.metrics[s][m] or 0.0) for m in METRICS} for s in SYSTEMS
                }
        seconds.append(time.perf_counter() - started)
        tally.rows.update(read=ingested.rows_read, accepted=ingested.rows_accepted)
        tally.rows.update(kept=cleaned.rows_out)
        tally.quarantined.update(ingested.reasons)
        tally.removed.update(cleaned.removed)
        if n % 25 == 0:
            print(f"day {n + 1}/{len(files)}: {seconds[-1]:.2f} s", file=sys.stderr)
    return seconds, figures, refused, tally


def table(figures: dict, n_days: int, last: int) -> str:
    days = [d for d in figures if d >= n_days - last]
    lines = [
        "| system | P@10 | R@10 | NDCG@10 | HR@10 | NDCG@10 days 31-60 |",
        "|---|---|---|---|---|---|",
    ]
    names = {
        "model": "incr (ImplicitMF, incremental)",
        "buy_again": "buy-again",
        "recently_popular": "recently popular (7 days)",
        "most_popular": "most popular",
    }
    early = [d for d in figures if 30 <= d < 60]
    for system in SYSTEMS:
        cells = [np.mean([figures[d][system][m] for d in days]) for m in METRICS]
        cells.append(np.mean([figures[d][system]["ndcg"] for d in early]))
        lines.append(f"| {names[system]} | " + " | ".join(f"{c:.4f}" for c in cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", nargs="?", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "retail_pipeline.md")
    parser.add_argument("--days", type=int, default=None, help="only the first N days")
    parser.add_argument("--last", type=int, default=100, help="days averaged in the table")
    args = parser.parse_args(argv)

    folder = args.data_dir / "online-retail" / "by-day"
    files = sorted(folder.glob("*.csv"))[: args.days]
    if not files:
        print(f"no daily files in {folder}; nothing was run", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as work:
        seconds, figures, refused, tally = run(files, Path(work) / "catalog.duckdb")

    daily = seconds[1:]
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = (
        f"# Online Retail through incr's pipeline, day by day\n\n"
        f"Measured {when} on {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}. {len(files)} raw daily files with "
        f"`examples/online-retail.yaml`; each day ingest, clean, featurize, update and "
        f"evaluate (the model trained through the day before), in one process. "
        f"{tally.text()} Seconds per day (all five "
        f"steps, gate included, after the first day): median {np.median(daily):.2f}, worst "
        f"{np.max(daily):.2f}. Gate refusals: {refused}. Metrics at 10: the mean over the "
        f"last {args.last} days of the day's mean over its buyers; items already bought "
        f"stay candidates.\n\n" + table(figures, len(files), args.last)
    )
    print(text)
    args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
