"""Start-up: the commands a cron job chains must not wait for the numeric stack to load."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from incr_cli.cli import main

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data" / "delta-01.csv"
# What only training, scoring, recommending and reports need.
HEAVY = ("joblib", "numpy", "sklearn", "numba", "scipy", "matplotlib")


def _imported_after(statement: str) -> list[str]:
    """The heavy top-level packages in sys.modules after ``statement``, in a fresh process."""
    code = f"import sys; {statement}; print(' '.join({{m.split('.')[0] for m in sys.modules}}))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [name for name in HEAVY if name in done.stdout.split()]


def test_importing_the_cli_loads_no_numeric_package():
    assert _imported_after("import incr_cli.cli") == []


@pytest.mark.parametrize("command", ["status", "log"])
def test_status_and_log_run_without_the_numeric_stack(tmp_path, command):
    catalog = tmp_path / "catalog.duckdb"
    assert main(["ingest", str(SAMPLE), "--catalog", str(catalog), "--quiet"]) == 0
    statement = (
        "from incr_cli.cli import main; "
        f"assert main([{command!r}, '--catalog', {str(catalog)!r}, '--quiet']) == 0"
    )
    assert _imported_after(statement) == []
