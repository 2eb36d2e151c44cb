"""Time every stage of incr on a large synthetic stream, against DuckDB loading it alone.

Run from the project root::

    python benchmarks/scale.py                 # 10,000,000 rows, minutes on two cores
    python benchmarks/scale.py --rows 1000000  # under a minute

The rows come from incr's own generator (:func:`incr_cli.synthetic.generate_ratings`,
seeded, so every run reads the same data) and are written once, by DuckDB, as a CSV file,
the same as gzip-compressed CSV and as Parquet, plus a delta of 1% more rows. Every stage
then runs in a fresh process of its own, so that its peak resident memory is its own:

- ``incr ingest`` of each format into a new catalog, beside DuckDB alone loading the same
  file into a table with ``read_csv`` (``read_parquet``), best of ``--repeats``;
- ``clean``, ``featurize`` and ``update`` over all the rows at once, then ``ingest``,
  ``clean``, ``featurize`` and ``update`` of the 1% delta on top of them;
- ``rollback`` on that catalog and on one of ``--small-rows`` rows (best of five moves);
- the start-up of ``incr status`` and ``incr log``, as whole processes (best of three).

A stage's seconds are those of the command itself (``incr_cli.cli.main``) once the
process has imported incr, except for ``status`` and ``log``, whose start-up is the point.
The delta's share of clean and featurize is judged on the seconds each stage records in
the catalog (its work, without opening the catalog and committing, which every command
pays), and both shares are shown. A second DuckDB reference stores the ids as text, as
the catalog must, to show what part of the ingest gap that alone explains.
All stages share one config: ``runtime.memory_limit`` (``--memory-limit``) and a spill
folder in the work folder. The table goes to stdout and to ``benchmarks/scale.md``; the
data and catalogs go to a temporary folder (``--work``), removed at the end unless
``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from machine import machine_lines

PROJECT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = PROJECT / "benchmarks" / "scale.md"

# Targets of the scale issue.
MAX_INGEST_RATIO = 1.5  # incr ingest at most 1.5 times DuckDB alone loading the file
MAX_DELTA_SHARE = 0.05  # clean / featurize of a 1% delta within 5% of all rows at once
MAX_ROLLBACK_RATIO = 1.2  # rollback as fast on the large catalog as on the small one
MAX_ROLLBACK_SECONDS = 0.5
MAX_STARTUP_SECONDS = 0.5
MAX_RSS_MB = 2048

ROLLBACK_REPEATS = 5
STARTUP_REPEATS = 3


# -- the worker: one stage in this process ----------------------------------------------


def worker(kind: str, args: list[str]) -> None:
    """Run one stage and print its seconds as JSON; the parent reads the peak memory."""
    if kind == "generate":
        work, rows, small, seed = args
        files = generate(Path(work), int(rows), int(small), int(seed))
        print(json.dumps({name: str(path) for name, path in files.items()}))
        return
    if kind == "storage":
        print(json.dumps(storage(Path(args[0]))))
        return
    if kind in ("duckdb", "duckdb-text-ids"):
        import duckdb

        source, database, memory_limit, temp_directory = args
        reader = "read_parquet" if source.endswith(".parquet") else "read_csv"
        # The second reference stores the ids as text, as the catalog must ("007" is not 7).
        columns = "*"
        if kind == "duckdb-text-ids":
            columns = (
                "* REPLACE (CAST(user_id AS VARCHAR) AS user_id, "
                "CAST(item_id AS VARCHAR) AS item_id)"
            )
        started = time.perf_counter()
        con = duckdb.connect(database)
        con.execute("SET memory_limit = ?", [memory_limit])
        con.execute("SET temp_directory = ?", [temp_directory])
        con.execute(f"CREATE TABLE ratings AS SELECT {columns} FROM {reader}(?)", [source])
        con.close()
        seconds = time.perf_counter() - started
        rc = 0
    else:
        # Everything a command may import is imported first: the stage's time is its work.
        import incr_cli.update  # noqa: F401
        from incr_cli.cli import main

        started = time.perf_counter()
        rc = main(args)
        seconds = time.perf_counter() - started
        own = _recorded_seconds(args)
        print(json.dumps({"seconds": seconds, "rc": rc, "own": own}))
        return
    print(json.dumps({"seconds": seconds, "rc": rc, "own": None}))


def _recorded_seconds(args: list[str]) -> float | None:
    """The seconds the stage recorded for its newest version: its work, without the
    opening of the catalog, the lock and the commit that every command pays."""
    import duckdb

    if args[0] not in ("ingest", "clean", "featurize", "update"):
        return None
    catalog = args[args.index("--catalog") + 1]
    with duckdb.connect(catalog, read_only=True) as con:
        row = con.execute(
            "SELECT seconds FROM stages WHERE stage = ? ORDER BY created_at DESC LIMIT 1",
            [args[0]],
        ).fetchone()
    return None if row is None else float(row[0])


# -- the parent: data, stages, table ----------------------------------------------------


@dataclass
class Run:
    seconds: float
    rss_mb: float
    own: float | None = None  # the stage's recorded seconds


@dataclass
class Row:
    stage: str
    rows: int
    seconds: float | None
    rss_mb: float | None = None
    ratio: str = ""
    catalog_mb: float | None = None
    target: str = ""
    passed: bool | None = None


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def spawn(command: list[str]) -> tuple[str, str, float, float]:
    """Run a process to its end: its stdout, stderr, wall seconds and peak memory in MB."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True)
        assert process.stdout is not None
        out = process.stdout.read()
        # wait4, not wait: it gives this child's own peak memory (ru_maxrss, in KiB).
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        process.stdout.close()
        wall = time.perf_counter() - started
        err.seek(0)
        problem = err.read()
    if process.returncode not in (0, 5):
        raise RuntimeError(f"{' '.join(command)} exited {process.returncode}: {problem}")
    return out, problem, wall, usage.ru_maxrss / 1024


def stage(
    kind: str, args: Sequence[str], repeats: int = 1, setup: Callable[[], None] | None = None
) -> Run:
    """The best of ``repeats`` runs of a worker; memory is the largest peak seen."""
    best, rss = Run(float("inf"), 0.0), 0.0
    for _ in range(repeats):
        if setup is not None:
            setup()
        out, problem, _, rss_mb = spawn([sys.executable, __file__, "--worker", kind, *args])
        result = json.loads(out.strip().splitlines()[-1])
        if result["rc"] not in (0, 5):
            raise RuntimeError(f"incr {' '.join(args)} exited {result['rc']}: {problem}")
        if result["seconds"] < best.seconds:
            best = Run(result["seconds"], 0.0, result["own"])
        rss = max(rss, rss_mb)
    best.rss_mb = rss
    return best


def generate(work: Path, rows: int, small_rows: int, seed: int) -> dict[str, Path]:
    """Write the stream with incr's generator: rows, and 1% more as a delta, in each format."""
    import duckdb
    import numpy as np

    from incr_cli.synthetic import generate_ratings

    delta_rows = max(1, rows // 100)
    total = rows + delta_rows
    n_users, n_items = max(1_000, total // 50), max(1_000, total // 500)
    files = {
        "csv": work / "ratings.csv",
        "csv.gz": work / "ratings.csv.gz",
        "parquet": work / "ratings.parquet",
        "delta": work / "delta.csv",
        "small": work / "small.csv",
        "small_delta": work / "small-delta.csv",
    }
    con = duckdb.connect(str(work / "generated.duckdb"))
    con.execute("SET enable_progress_bar = false")
    con.execute(
        "CREATE TABLE stream (n BIGINT, user_id BIGINT, item_id BIGINT, rating INTEGER, "
        "timestamp BIGINT)"
    )
    done = 0
    for chunk in generate_ratings(n_users, n_items, total, seed=seed):
        size = len(chunk["rating"])
        part = {"n": np.arange(done, done + size), **chunk}  # noqa: F841 - read by DuckDB
        con.execute(
            "INSERT INTO stream SELECT n, user_id, item_id, CAST(rating AS INTEGER), "
            "timestamp FROM part"
        )
        done += size
    cuts = {
        "csv": (0, rows, ""),
        "csv.gz": (0, rows, ", COMPRESSION gzip"),
        "parquet": (0, rows, ""),
        "delta": (rows, total, ""),
        "small": (0, small_rows, ""),
        "small_delta": (small_rows, small_rows + max(1, small_rows // 100), ""),
    }
    for name, (start, end, extra) in cuts.items():
        form = "FORMAT parquet" if name == "parquet" else f"FORMAT csv, HEADER true{extra}"
        # NOTE: COPY takes no parameters; the bounds are ints and the names our own.
        con.execute(
            f"COPY (SELECT user_id, item_id, rating, timestamp FROM stream "
            f"WHERE n >= {int(start)} AND n < {int(end)} ORDER BY n) "
            f"TO '{files[name]}' ({form})"
        )
    con.close()
    (work / "generated.duckdb").unlink()
    return files


def catalog_mb(catalog: Path) -> float:
    """The catalog file and its write-ahead log, in MB."""
    wal = catalog.with_name(catalog.name + ".wal")
    return sum(p.stat().st_size for p in (catalog, wal) if p.exists()) / 2**20


def storage(catalog: Path) -> list[tuple[str, float]]:
    """MB per table of the catalog, largest first."""
    import duckdb

    with duckdb.connect(str(catalog), read_only=True) as con:
        # Views (ratings_raw, ratings_clean) hold no rows of their own.
        tables = [
            t
            for (t,) in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'"
            ).fetchall()
        ]
        sizes = []
        for table in tables:
            blocks = con.execute(
                "SELECT count(DISTINCT block_id) FROM pragma_storage_info(?) WHERE persistent",
                [table],
            ).fetchone()
            block_size = con.execute("SELECT block_size FROM pragma_database_size()").fetchone()
            sizes.append(
                (table, (blocks[0] if blocks else 0) * (block_size[0] if block_size else 0))
            )
    return sorted(((t, b / 2**20) for t, b in sizes if b), key=lambda x: -x[1])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Time incr's stages on a large synthetic stream against DuckDB alone.",
        epilog="Example: python benchmarks/scale.py --rows 1000000",
    )
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows of the stream")
    parser.add_argument("--small-rows", type=int, default=100_000, help="the small catalog")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generator")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each ingest, best kept")
    parser.add_argument("--memory-limit", default="1GB", help="runtime.memory_limit")
    parser.add_argument("--work", type=Path, help="folder for data and catalogs")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="Markdown to write")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target fails")
    args = parser.parse_args(argv)
    started = time.perf_counter()

    if args.work:
        args.work.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="incr-scale-", dir=args.work))
    try:
        rows, space = run(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"kept {work}")
    lines = report(args, rows, space, time.perf_counter() - started)
    text = "\n".join(lines) + "\n"
    args.output.write_text(text, encoding="utf-8")
    sys.stdout.write(text)
    log(f"wrote {args.output}")
    if args.check and any(r.passed is False for r in rows):
        return 1
    return 0


def run(args: argparse.Namespace, work: Path) -> tuple[list[Row], list[tuple[str, float]]]:
    n, small = args.rows, args.small_rows
    log(f"generating {n:,} rows (+1%) in {work}")
    t0 = time.perf_counter()
    # Generated in a process of its own, so that this one stays small: a child's peak
    # memory counts the parent's pages it shares between fork and exec.
    out, _, _, _ = spawn(
        [
            sys.executable,
            __file__,
            "--worker",
            "generate",
            str(work),
            str(n),
            str(small),
            str(args.seed),
        ]
    )
    files = {name: Path(path) for name, path in json.loads(out.strip().splitlines()[-1]).items()}
    log(f"  {time.perf_counter() - t0:.0f} s")
    spill = work / "spill"
    config = work / "config.yaml"
    config.write_text(
        f"runtime:\n  memory_limit: {args.memory_limit}\n  temp_directory: {spill}\n",
        encoding="utf-8",
    )
    gzip_mb = files["csv.gz"].stat().st_size / 2**20
    rows: list[Row] = []

    def incr(catalog: Path, *command: str, repeats: int = 1, fresh: bool = False) -> Run:
        def remove() -> None:
            for p in catalog.parent.glob(catalog.name + "*"):
                p.unlink()
            shutil.rmtree(catalog.parent / "models", ignore_errors=True)

        log(f"incr {' '.join(command)} ({catalog.parent.name})")
        opts = ["--quiet", "--catalog", str(catalog), "--config", str(config)]
        return stage("incr", [command[0], *opts, *command[1:]], repeats, remove if fresh else None)

    def memory(run: Run) -> tuple[str, bool]:
        return f"peak < {MAX_RSS_MB} MB", run.rss_mb < MAX_RSS_MB

    # Ingest of each format, against DuckDB alone loading the same file.
    main_catalog = work / "csv" / "catalog.duckdb"
    for name in ("csv", "csv.gz", "parquet"):
        database = work / f"duckdb-{name}.duckdb"

        def drop(database: Path = database) -> None:
            database.unlink(missing_ok=True)

        log(f"duckdb alone: {name}")
        alone = stage(
            "duckdb",
            [str(files[name]), str(database), args.memory_limit, str(spill)],
            args.repeats,
            drop,
        )
        text_ids = stage(
            "duckdb-text-ids",
            [str(files[name]), str(database), args.memory_limit, str(spill)],
            args.repeats,
            drop,
        )
        drop()
        catalog = main_catalog if name == "csv" else work / name / "catalog.duckdb"
        catalog.parent.mkdir(exist_ok=True)
        ingested = incr(catalog, "ingest", str(files[name]), repeats=args.repeats, fresh=True)
        ratio = ingested.seconds / alone.seconds
        mem_target, mem_ok = memory(ingested)
        rows.append(Row(f"DuckDB alone, {name}", n, alone.seconds, alone.rss_mb))
        rows.append(
            Row(
                f"DuckDB alone, {name}, ids as text",
                n,
                text_ids.seconds,
                text_ids.rss_mb,
                f"{text_ids.seconds / alone.seconds:.2f}x",
            )
        )
        rows.append(
            Row(
                f"ingest {name}",
                n,
                ingested.seconds,
                ingested.rss_mb,
                f"{ratio:.2f}x ({ingested.seconds / text_ids.seconds:.2f}x with text ids)",
                catalog_mb(catalog),
                f"<= {MAX_INGEST_RATIO}x DuckDB; {mem_target}",
                ratio <= MAX_INGEST_RATIO and mem_ok,
            )
        )
        if name != "csv":
            shutil.rmtree(catalog.parent)

    # Every later stage over all the rows at once, then over a 1% delta on top of them.
    whole: dict[str, Run] = {}
    for command in ("clean", "featurize", "update"):
        whole[command] = result = incr(main_catalog, command)
        target, ok = memory(result)
        rows.append(
            Row(f"{command}, all rows", n, result.seconds, result.rss_mb, target=target, passed=ok)
        )
    delta_rows = n // 100
    result = incr(main_catalog, "ingest", str(files["delta"]))
    target, ok = memory(result)
    rows.append(
        Row("ingest, 1% delta", delta_rows, result.seconds, result.rss_mb, "", None, target, ok)
    )
    for command in ("clean", "featurize", "update"):
        result = incr(main_catalog, command)
        share = result.seconds / whole[command].seconds
        target, ok = memory(result)
        shares = f"{share:.1%} of all rows"
        before, own = whole[command].own, result.own
        if before and own is not None:
            # The stage's own work, without what every command pays to open and commit.
            own_share = own / before
            shares += f" ({own_share:.1%}: {own:.3f} s of {before:.3f} s of the stage's own)"
        else:
            own_share = share
        if command != "update":
            target = f"<= {MAX_DELTA_SHARE:.0%} of all rows (stage's own); {target}"
            ok = ok and own_share <= MAX_DELTA_SHARE
        rows.append(
            Row(
                f"{command}, 1% delta",
                delta_rows,
                result.seconds,
                result.rss_mb,
                shares,
                catalog_mb(main_catalog),
                target,
                ok,
            )
        )

    # Rollback: there and back, best of several, on the small catalog and the large one.
    small_catalog = work / "small" / "catalog.duckdb"
    small_catalog.parent.mkdir()
    incr(small_catalog, "ingest", str(files["small"]), str(files["small_delta"]))
    rollbacks = {}
    for label, catalog in (("small", small_catalog), ("large", main_catalog)):
        best, rss = float("inf"), 0.0
        for _ in range(ROLLBACK_REPEATS):
            for to in ("v1", "v2"):
                result = incr(catalog, "rollback", "--to", to)
                best, rss = min(best, result.seconds), max(rss, result.rss_mb)
        rollbacks[label] = Run(best, rss)
    ratio = rollbacks["large"].seconds / rollbacks["small"].seconds
    rows.append(
        Row(
            f"rollback, {small:,}-row catalog",
            small,
            rollbacks["small"].seconds,
            rollbacks["small"].rss_mb,
        )
    )
    rows.append(
        Row(
            f"rollback, {n:,}-row catalog",
            n,
            rollbacks["large"].seconds,
            rollbacks["large"].rss_mb,
            f"{ratio:.2f}x the small one",
            catalog_mb(main_catalog),
            f"<= {MAX_ROLLBACK_RATIO}x the small one, < {MAX_ROLLBACK_SECONDS} s",
            ratio <= MAX_ROLLBACK_RATIO and rollbacks["large"].seconds < MAX_ROLLBACK_SECONDS,
        )
    )

    # Start-up: the whole process, as a user or cron meets it.
    for command in ("status", "log"):
        best, rss = float("inf"), 0.0
        for _ in range(STARTUP_REPEATS):
            _, _, wall, rss_mb = spawn(
                [sys.executable, "-m", "incr_cli", command, "--catalog", str(main_catalog)]
            )
            best, rss = min(best, wall), max(rss, rss_mb)
        rows.append(
            Row(
                f"{command} (process start to end)",
                n,
                best,
                rss,
                target=f"< {MAX_STARTUP_SECONDS} s",
                passed=best < MAX_STARTUP_SECONDS,
            )
        )

    size = catalog_mb(main_catalog)
    rows.append(
        Row(
            "catalog on disk",
            n + delta_rows,
            None,
            None,
            f"{size / gzip_mb:.2f}x the gzip CSV ({gzip_mb:.0f} MB)",
            size,
            "<= the gzip CSV",
            size <= gzip_mb,
        )
    )
    out, _, _, _ = spawn([sys.executable, __file__, "--worker", "storage", str(main_catalog)])
    return rows, [(table, mb) for table, mb in json.loads(out.strip().splitlines()[-1])]


def report(
    args: argparse.Namespace, rows: list[Row], space: list[tuple[str, float]], seconds: float
) -> list[str]:
    def num(value: float | None, digits: int = 2) -> str:
        return "" if value is None else f"{value:,.{digits}f}"

    lines = [f"# incr at {args.rows:,} rows", ""]
    lines += machine_lines(("incr", "duckdb", "numpy", "numba"), memory=True)
    lines += [
        f"- Config: runtime.memory_limit {args.memory_limit}, a spill folder "
        "(runtime.temp_directory), threads left to DuckDB; ingest best of "
        f"{args.repeats}, rollback best of {ROLLBACK_REPEATS} moves, start-up best of "
        f"{STARTUP_REPEATS}",
        "",
        "| stage | rows | seconds | rows / s | ratio | peak RSS MB | catalog MB | target "
        "| result |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rate = f"{r.rows / r.seconds:,.0f}" if r.seconds else ""
        verdict = "" if r.passed is None else ("PASS" if r.passed else "FAIL")
        lines.append(
            f"| {r.stage} | {r.rows:,} | {num(r.seconds, 3)} | {rate} | {r.ratio} | "
            f"{num(r.rss_mb, 0)} | {num(r.catalog_mb, 1)} | {r.target} | {verdict} |"
        )
    if space:
        lines += [
            "",
            "Catalog space per table (MB): " + ", ".join(f"{t} {mb:.1f}" for t, mb in space),
        ]
    lines += ["", f"Run time: {seconds:.0f} s."]
    return lines


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3:])
    else:
        sys.exit(main())
