"""Many incr processes at once, and processes killed at random moments, lose nothing.

These tests run the installed executable as separate processes, as cron would.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import duckdb
import pytest

from incr_cli.catalog import Invocation, open_catalog
from incr_cli.config import Config
from incr_cli.errors import ExitCode
from incr_cli.integrity import verify as check
from incr_cli.synthetic import write_deltas

INCR = Path(sys.executable).parent / "incr"


def start(catalog: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(INCR), *args, "--catalog", str(catalog), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    """Wait for a started process; its exit code and stderr (pipes closed)."""
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err


def run(catalog: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(INCR), *args, "--catalog", str(catalog), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )


def verify(catalog: Path) -> None:
    """``incr verify`` in this process (the same code, without a process start)."""
    with open_catalog(catalog, Config(), Invocation("verify"), write=False) as cat:
        result = check(cat)
    assert result.ok, result.problems


def lock_note(catalog: Path) -> dict | None:
    """The note naming the process that holds the catalog's lock, if there is one."""
    try:
        return json.loads(Path(str(catalog) + ".lock.json").read_text())
    except (OSError, ValueError):
        return None


def wait_for_lock(catalog: Path, proc: subprocess.Popen[str]) -> bool:
    """Wait until ``proc`` holds the catalog's lock; False if it ended first."""
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        note = lock_note(catalog)
        if note is not None and note["pid"] == proc.pid:
            return True
        time.sleep(0.01)
    return False


def ingested_sources(catalog: Path) -> list[str]:
    with duckdb.connect(str(catalog), read_only=True) as con:
        return [row[0] for row in con.execute("SELECT source_path FROM versions").fetchall()]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_deltas(tmp_path_factory.mktemp("data"), 2000, 1000, 40_000, 12, seed=5)


def test_eight_ingests_at_once_are_serialised(tmp_path: Path, files: list[Path]) -> None:
    catalog = tmp_path / "catalog.duckdb"
    assert run(catalog, "init").returncode == 0
    procs = [start(catalog, "ingest", str(path), "--wait", "120") for path in files[:8]]
    done = [finish(p) for p in procs]
    assert [code for code, _ in done] == [0] * 8, done

    sources = ingested_sources(catalog)
    assert sorted(sources) == sorted(str(p.resolve()) for p in files[:8])
    with duckdb.connect(str(catalog), read_only=True) as con:
        parents = con.execute("SELECT version, parent FROM versions ORDER BY 1").fetchall()
    # One chain, v1 to v8, whatever order the processes got the lock in.
    assert parents == [(v, v - 1 if v > 1 else None) for v in range(1, 9)]
    verify(catalog)


def test_a_writer_that_cannot_wait_is_told_who_holds_the_catalog(
    tmp_path: Path, files: list[Path]
) -> None:
    catalog = tmp_path / "catalog.duckdb"
    assert run(catalog, "ingest", str(files[0])).returncode == 0
    assert run(catalog, "clean").returncode == 0
    holder = start(catalog, "update")
    assert wait_for_lock(catalog, holder)
    note = lock_note(catalog)
    refused = run(catalog, "ingest", str(files[1]), "--wait", "0")
    reader = run(catalog, "status")
    assert finish(holder)[0] == 0

    assert refused.returncode == ExitCode.BUSY
    assert note is not None
    assert (
        f"catalog is busy: pid {holder.pid} is running 'update' since {note['since']} UTC; "
        "try again later or raise --wait (waited 0 s)"
    ) in refused.stderr
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", note["since"])
    assert refused.stderr.count("\n") == 1
    # A reader waits for the writer rather than failing.
    assert reader.returncode == 0
    assert ingested_sources(catalog) == [str(files[0].resolve())]


def test_evaluate_without_saving_waits_for_a_writer_and_writes_nothing(
    tmp_path: Path, files: list[Path]
) -> None:
    catalog = tmp_path / "catalog.duckdb"
    for args in (("ingest", str(files[0])), ("clean",), ("update",)):
        assert run(catalog, *args).returncode == 0
    for args in (("ingest", str(files[1])), ("clean",)):
        assert run(catalog, *args).returncode == 0
    holder = start(catalog, "update")
    assert wait_for_lock(catalog, holder)
    refused = run(catalog, "evaluate", "--wait", "0")
    reader = run(catalog, "evaluate", "--no-save")
    assert finish(holder)[0] == 0

    # Saving makes evaluate a writer, refused while the lock is held; --no-save reads.
    assert refused.returncode == ExitCode.BUSY
    assert reader.returncode == 0, reader.stderr
    assert json.loads(reader.stdout)["evaluation"]["version"] == 2
    with duckdb.connect(str(catalog), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM metrics").fetchone() == (0,)


def test_a_lock_left_by_a_killed_writer_does_not_block_the_next_run(
    tmp_path: Path, files: list[Path]
) -> None:
    catalog = tmp_path / "catalog.duckdb"
    assert run(catalog, "ingest", str(files[0])).returncode == 0
    assert run(catalog, "clean").returncode == 0
    holder = start(catalog, "update")
    assert wait_for_lock(catalog, holder)
    os.kill(holder.pid, signal.SIGKILL)
    finish(holder)
    # The dead holder's note is still there; its lock is not.
    assert lock_note(catalog)["pid"] == holder.pid

    after = run(catalog, "ingest", str(files[1]), "--wait", "0")

    assert after.returncode == 0, after.stderr
    assert ingested_sources(catalog) == [str(p.resolve()) for p in files[:2]]
    assert lock_note(catalog) is None
    verify(catalog)


def test_mixed_writers_each_file_once_or_refused_busy(tmp_path: Path, files: list[Path]) -> None:
    catalog = tmp_path / "catalog.duckdb"
    for args in (("ingest", str(files[0])), ("clean",), ("update",)):
        assert run(catalog, *args).returncode == 0
    ingests = [start(catalog, "ingest", str(p), "--wait", "1") for p in files[1:9]]
    others = [
        start(catalog, *args, "--wait", "1")
        for args in (("clean",), ("update",), ("rollback", "--to", "v1"), ("status",))
    ]
    ingest_codes = [finish(p)[0] for p in ingests]
    other_codes = [finish(p)[0] for p in others]

    assert set(ingest_codes) <= {0, ExitCode.BUSY}
    assert set(other_codes) <= {0, ExitCode.NOTHING_TO_DO, ExitCode.BUSY, ExitCode.USAGE}
    sources = ingested_sources(catalog)
    for path, code in zip(files[1:9], ingest_codes, strict=True):
        assert sources.count(str(path.resolve())) == (1 if code == 0 else 0)
    verify(catalog)


# The commands killed at random moments.
KILLABLE = ("ingest", "clean", "featurize", "update", "rollback")


def test_random_kills_never_lose_or_double_a_row(tmp_path: Path, files: list[Path]) -> None:
    rng = random.Random(20261204)
    catalog = tmp_path / "catalog.duckdb"
    kills = killed_working = 0
    killed: Counter[str] = Counter()
    pending = list(files)
    while kills < 50:
        command = rng.choice(KILLABLE)
        if command == "ingest":
            if not pending:
                pending = list(files)
            args: tuple[str, ...] = ("ingest", str(pending[0]))
        elif command == "rollback":
            args = ("rollback", "--to", f"v{rng.randint(1, 3)}")
        else:
            args = (command,)

        proc = start(catalog, *args)
        # Half the kills land anywhere, start-up included; the other half once the
        # command holds the lock, that is while it reads and writes the catalog.
        working = False
        if rng.random() < 0.5:
            time.sleep(rng.uniform(0.05, 1.5))
        else:
            working = wait_for_lock(catalog, proc)
            time.sleep(rng.uniform(0, 0.15))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
            killed[command] += 1
            killed_working += working
        finish(proc)

        if catalog.exists():
            verify(catalog)
            # Running the same command again completes the work (or finds it done).
            again = run(catalog, *args)
            assert again.returncode in (0, ExitCode.NOTHING_TO_DO, ExitCode.USAGE), again.stderr
            if args[0] == "ingest" and again.returncode in (0, ExitCode.NOTHING_TO_DO):
                pending.pop(0)
            verify(catalog)

    # Every accepted row of the lineage is held exactly once.
    with duckdb.connect(str(catalog), read_only=True) as con:
        head = int(con.execute("SELECT value FROM meta WHERE key = 'head'").fetchone()[0])
        lineage = con.execute(
            """
            WITH RECURSIVE chain(v) AS (
                SELECT ?::INTEGER UNION ALL
                SELECT parent FROM versions JOIN chain ON version = chain.v
                WHERE parent IS NOT NULL)
            SELECT list(v) FROM chain
            """,
            [head],
        ).fetchone()[0]
        recorded, held = con.execute(
            "SELECT (SELECT sum(rows_accepted) FROM versions WHERE list_contains($l, version)),"
            " (SELECT count(*) FROM ratings_raw WHERE list_contains($l, version))",
            {"l": lineage},
        ).fetchone()
        sources = con.execute(
            "SELECT source_sha256, count(*) FROM versions WHERE list_contains(?, version) "
            "GROUP BY 1 HAVING count(*) > 1",
            [lineage],
        ).fetchall()
    assert recorded == held
    assert sources == []
    assert set(killed) == set(KILLABLE), killed
    # Enough kills hit a command at work for the test to mean something.
    assert killed_working >= 10, killed_working
