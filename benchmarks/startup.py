"""Time how fast ``incr status`` and ``incr log`` answer, as whole processes.

Run from the project root::

    python benchmarks/startup.py

A cron job chains several ``incr`` calls, so each one's start-up counts. The script
makes a small catalog in a temporary folder (``sample_data/delta-01.csv`` ingested,
cleaned and learned), then runs each command as a fresh process ``--repeats`` times and
prints a Markdown table of the best (least disturbed) wall time, beside the bare
interpreter and ``import incr_cli.cli`` alone. It also lists which of the numeric
packages that import loaded: none is the point.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data" / "delta-01.csv"
HEAVY = ("joblib", "numpy", "sklearn", "numba", "scipy", "matplotlib")


def incr_command() -> list[str]:
    """The installed ``incr`` beside this interpreter, or ``python -m incr_cli``."""
    script = Path(sys.executable).with_name("incr")
    return [str(script)] if script.exists() else [sys.executable, "-m", "incr_cli"]


def best_wall(command: list[str], repeats: int) -> float:
    """The shortest wall time of ``repeats`` runs of ``command``, which must succeed."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return min(times)


def heavy_imports() -> list[str]:
    """The numeric packages that ``import incr_cli.cli`` loads, in a fresh process."""
    code = "import sys, incr_cli.cli; print(' '.join({m.split('.')[0] for m in sys.modules}))"
    loaded = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return [name for name in HEAVY if name in loaded.stdout.decode().split()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per command (best kept)")
    args = parser.parse_args()

    incr = incr_command()
    work = Path(tempfile.mkdtemp(prefix="incr-startup-"))
    try:
        catalog = ["--catalog", str(work / "catalog.duckdb"), "--quiet"]
        for step in (["ingest", str(SAMPLE)], ["clean"], ["update"]):
            subprocess.run([*incr, *step, *catalog], check=True)

        rows = [
            ("python -c pass", best_wall([sys.executable, "-c", "pass"], args.repeats)),
            (
                "python -c 'import incr_cli.cli'",
                best_wall([sys.executable, "-c", "import incr_cli.cli"], args.repeats),
            ),
            ("incr status", best_wall([*incr, "status", *catalog], args.repeats)),
            ("incr log", best_wall([*incr, "log", *catalog], args.repeats)),
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"- Machine: {platform.machine()}, Python {platform.python_version()}")
    print(f"- Catalog: {SAMPLE.name} ingested, cleaned and learned; best of {args.repeats}")
    loaded = ", ".join(heavy_imports()) or "none"
    print(f"- Numeric packages loaded by import incr_cli.cli: {loaded}\n")
    print("| command | wall s |")
    print("|---|---|")
    for name, seconds in rows:
        print(f"| `{name}` | {seconds:.3f} |")


if __name__ == "__main__":
    main()
