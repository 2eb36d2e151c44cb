"""Time ``incr recommend --all`` on a large synthetic catalog: users per second, peak memory.

Run from the project root::

    python benchmarks/recommend_all.py                   # 1,000,000 users, a few minutes
    python benchmarks/recommend_all.py --users 100000    # a quick look

It makes a catalog the way a user would: DuckDB writes seeded synthetic ratings to a
Parquet file (``--seen`` per user on average, drawn from a long-tailed distribution over
items whose popularity falls off like a power law), which ``incr ingest`` and
``incr clean`` take in. A model of ``--users`` by ``--items`` by ``--factors`` is then made
with random parameters (training one is not what is timed) and saved as the serving
model. Last, ``incr recommend --all`` runs as a process of its own, ``--repeats`` times,
and the table gives the best wall time of the whole command (loading the model and
writing the file included), users per second, and its peak resident memory. Everything
goes to a temporary folder, removed at the end.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np

from incr_cli.artifacts import save_model
from incr_cli.catalog import Invocation, open_catalog
from incr_cli.config import Config
from incr_cli.model import BiasedMF

K = 10

# Ratings per user: 1 + an exponential draw (mean `seen`), capped; items by a power law.
RATINGS_SQL = """
COPY (
    WITH counts AS (
        SELECT u, least(2000, 1 + floor(-ln((hash(u, 'n') % 1000000 + 0.5) / 1e6)
                                        * ($seen - 1))::BIGINT) AS n
        FROM range($users) AS t(u)
    ), pairs AS (SELECT u, unnest(range(n)) AS r FROM counts)
    SELECT 'u' || u AS user_id,
           'i' || floor($items * pow((hash(u, r, 'i') % 1000000 + 0.5) / 1e6, 3))::BIGINT
               AS item_id,
           1 + hash(u, r, 'r') % 5 AS rating,
           1600000000 + hash(u, r, 't') % 10000000 AS timestamp
    FROM pairs
) TO $path (FORMAT parquet)
"""


def incr_command() -> list[str]:
    """The installed ``incr`` beside this interpreter, or ``python -m incr_cli``."""
    script = Path(sys.executable).with_name("incr")
    return [str(script)] if script.exists() else [sys.executable, "-m", "incr_cli"]


def make_catalog(work: Path, args: argparse.Namespace) -> tuple[Path, int, int]:
    """A catalog with the synthetic ratings ingested and cleaned; (path, ratings, users)."""
    data = work / "ratings.parquet"
    with duckdb.connect() as con:
        params = {"users": args.users, "items": args.items, "seen": args.seen, "path": str(data)}
        con.execute(RATINGS_SQL, params)
    catalog = work / "catalog.duckdb"
    for step in (["ingest", str(data)], ["clean"]):
        subprocess.run([*incr_command(), *step, "--catalog", str(catalog), "--quiet"], check=True)
    with duckdb.connect(str(catalog), read_only=True) as con:
        ratings, users = con.execute(
            "SELECT count(*), count(DISTINCT user_id) FROM ratings_clean"
        ).fetchone()
    return catalog, ratings, users


def random_model(catalog: Path, args: argparse.Namespace) -> float:
    """Save a model with random parameters as the serving one; its file's size in MB."""
    rng = np.random.default_rng(0)
    with open_catalog(catalog, Config(), Invocation("benchmark"), write=True) as cat:
        users = [row[0] for row in cat.rows("SELECT DISTINCT user_id FROM ratings_clean")]
        model = BiasedMF(n_factors=args.factors)
        model.user_ids_ = np.array(users, dtype=object)
        model.item_ids_ = np.array([f"i{n}" for n in range(args.items)], dtype=object)
        model.user_index_ = {user: row for row, user in enumerate(users)}
        model.item_index_ = {item: row for row, item in enumerate(model.item_ids_)}
        model.n_users_, model.n_items_ = len(users), args.items
        model.global_mean_ = 3.5
        model.user_bias_ = rng.normal(0.0, 0.3, len(users))
        model.item_bias_ = rng.normal(0.0, 0.3, args.items)
        scale = 0.3 / np.sqrt(args.factors)
        model.user_factors_ = rng.normal(0.0, scale, (len(users), args.factors))
        model.item_factors_ = rng.normal(0.0, scale, (args.items, args.factors))
        model.n_ratings_seen_, model.weight_seen_ = 0, 0.0
        model.seed_, model.n_fit_calls_ = 0, 1
        record = save_model(
            cat,
            model,
            version=cat.require_head(),
            kind="full",
            base_model_id=None,
            seconds=0.0,
            rows_trained=0,
            rows_replayed=0,
        )
        return (cat.model_dir / record.path).stat().st_size / 1e6


def run_measured(command: list[str]) -> tuple[float, float]:
    """Run ``command``; its wall seconds and peak resident memory in MB (Linux)."""
    started = time.perf_counter()
    process = subprocess.Popen(command)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {process.returncode}")
    return seconds, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--factors", type=int, default=32)
    parser.add_argument("--seen", type=float, default=20.0, help="mean ratings per user")
    parser.add_argument("--repeats", type=int, default=1, help="runs of recommend (best kept)")
    parser.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="incr-recommend-all-"))
    try:
        started = time.perf_counter()
        catalog, ratings, users = make_catalog(work, args)
        model_mb = random_model(catalog, args)
        setup = time.perf_counter() - started

        out = work / f"recs.{args.format}"
        command = [*incr_command(), "recommend", "--all", "--out", str(out), "-k", str(K)]
        command += ["--catalog", str(catalog), "--quiet"]
        runs = [run_measured(command) for _ in range(args.repeats)]
        seconds = min(s for s, _ in runs)
        peak = max(mb for _, mb in runs)
        with duckdb.connect() as con:
            rows = con.execute(f"SELECT count(*) FROM '{out}'").fetchone()[0]
        if rows != users * K:
            raise SystemExit(f"expected {users * K} rows, found {rows}")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    print(f"- Machine: {machine}, Python {platform.python_version()}")
    per_user = f"{ratings / users:.1f} per user"
    print(f"- Catalog: {ratings:,} clean ratings ({per_user}), made in {setup:.0f} s")
    print(f"- `incr recommend --all -k {K} --out recs.{args.format}`, best of {args.repeats}\n")
    header = ["users", "items", "factors", "model file MB", "s", "users / s", "peak RSS MB"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    cells = [f"{users:,}", f"{args.items:,}", str(args.factors), f"{model_mb:,.0f}"]
    cells += [f"{seconds:.1f}", f"{users / seconds:,.0f}", f"{peak:,.0f}"]
    print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
