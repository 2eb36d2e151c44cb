"""Benchmark: incr's own pipeline on UCI Online Retail, one daily file after another.

Where ``retail.py`` replays the systems in memory, this runs what a cron job runs, in one
process so that start-up is not counted: for each of the 305 days, ``ingest`` of the day's
file into a fresh catalog, ``clean``, ``update`` (``ImplicitMF``: a full fit on the first
day, ``partial_fit`` with the quality gate after) and ``evaluate`` (from the second day:
the model trained through the day before ranks items for the day's buyers, beside most
popular, recently popular and buy-again). It reports the seconds per day, median and worst,
and the metrics averaged over the last 100 days, read back from the catalog.

The daily files are first reduced, with ``retail.py``'s cleaning rules, to one row per
customer, product and day (``user_id,item_id,rating,timestamp``: the quantity at the
day's first purchase) in a temporary folder; the raw files are never copied.

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
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from retail import load  # noqa: E402

from incr_cli import config as config_module  # noqa: E402
from incr_cli import evaluate as evaluate_module  # noqa: E402
from incr_cli import recommend as recommend_module  # noqa: E402
from incr_cli import update as update_module  # noqa: E402
from incr_cli.catalog import Invocation, open_catalog  # noqa: E402
from incr_cli.clean import clean_pending  # noqa: E402
from incr_cli.config import Config  # noqa: E402
from incr_cli.errors import GateRefused  # noqa: E402
from incr_cli.evaluate import evaluate  # noqa: E402
from incr_cli.featurize import featurize_pending  # noqa: E402
from incr_cli.ingest import ingest_files  # noqa: E402
from incr_cli.update import update  # noqa: E402

SYSTEMS = ("model", "buy_again", "recently_popular", "most_popular")
METRICS = ("precision", "recall", "ndcg", "hit_rate")

CONFIG = {
    "ingest": {"rating_min": -100_000, "rating_max": 100_000},
    "clean": {"dedupe": "none"},
    "evaluate": {"k": 10, "exclude_seen": False},
}


def implicit_config() -> Config:
    """The benchmark's config: quantities, every row kept, bought items stay candidates."""
    data = {section: dict(values) for section, values in CONFIG.items()}
    if "feedback" in config_module.IngestConfig.model_fields:
        data["ingest"]["feedback"] = "quantity"
    else:
        # NOTE: before ingest.feedback exists, the modules that read it are told directly.
        for module in (update_module, evaluate_module, recommend_module):
            module.is_implicit = lambda config: True  # type: ignore[attr-defined]
    return Config.model_validate(data)


def write_days(data_dir: Path, out: Path) -> list[Path]:
    """One CSV per day of purchases, cleaned and summed per customer and product."""
    purchases = load(data_dir)
    files = []
    for day, date in enumerate(purchases.date):
        rows = purchases.rows(day, day + 1)
        stamp = int(date.astype("datetime64[s]").astype(np.int64)) + 12 * 3600
        lines = ["user_id,item_id,rating,timestamp"]
        lines += [
            f"{u},{i},{q:g},{stamp}"
            for u, i, q in zip(
                purchases.customer[rows],
                purchases.item[rows],
                purchases.quantity[rows],
                strict=True,
            )
        ]
        path = out / f"{date}.csv"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        files.append(path)
    return files


def run(files: list[Path], catalog_path: Path) -> tuple[list[float], dict, int]:
    """Every day through the pipeline; the seconds per day, figures per day, refusals."""
    config = implicit_config()
    seconds: list[float] = []
    figures: dict[int, dict[str, dict[str, float]]] = {}
    refused = 0
    for n, path in enumerate(files):
        started = time.perf_counter()
        with open_catalog(catalog_path, config, Invocation("bench"), write=True) as cat:
            ingest_files(cat, [path])
            clean_pending(cat)
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
        if n % 25 == 0:
            print(f"day {n + 1}/{len(files)}: {seconds[-1]:.2f} s", file=sys.stderr)
    return seconds, figures, refused


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
    if not folder.is_dir() or not any(folder.glob("*.csv")):
        print(f"no daily files in {folder}; nothing was run", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as work:
        files = write_days(args.data_dir, Path(work))[: args.days]
        seconds, figures, refused = run(files, Path(work) / "catalog" / "catalog.duckdb")

    daily = seconds[1:]
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = (
        f"# Online Retail through incr's pipeline, day by day\n\n"
        f"Measured {when} on {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}. {len(files)} days; each day ingest, clean, featurize, "
        f"update and evaluate (the model trained through the day before), in one process. "
        f"Seconds per day (all five steps, gate included, after the first day): median "
        f"{np.median(daily):.2f}, worst {np.max(daily):.2f}. Gate refusals: {refused}. "
        f"Metrics at 10: the mean over the last {args.last} days of the day's mean over "
        f"its buyers; items already bought stay candidates.\n\n"
        + table(figures, len(files), args.last)
    )
    print(text)
    args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
