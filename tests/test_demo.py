"""The demo script runs the README's cycle in a folder of its own and touches nothing else."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "scripts" / "demo.sh"


def test_the_demo_ignores_the_callers_catalog_and_config(tmp_path: Path) -> None:
    # A stand-in for incr that records the catalog and config each call would use.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.txt"
    fake = bin_dir / "incr"
    fake.write_text(f'#!/bin/sh\necho "$INCR_CATALOG|${{INCR_CONFIG-unset}}|$1" >> "{calls}"\n')
    fake.chmod(0o755)
    mine = tmp_path / "shop"
    mine.mkdir()
    (mine / "catalog.duckdb").write_bytes(b"precious")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "INCR_CATALOG": str(mine / "catalog.duckdb"),
        "INCR_CONFIG": str(tmp_path / "shop.yaml"),
    }

    subprocess.run(["bash", str(DEMO)], env=env, check=True, capture_output=True, timeout=60)

    assert (mine / "catalog.duckdb").read_bytes() == b"precious"
    lines = calls.read_text().splitlines()
    assert {line.rsplit("|", 1)[0] for line in lines} == {"demo/catalog.duckdb|unset"}
    commands = [line.rsplit("|", 1)[1] for line in lines]
    assert commands[:4] == ["ingest", "clean", "featurize", "update"]
    assert commands[-1] == "evaluate" and "rollback" in commands
