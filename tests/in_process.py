"""``incr`` run in this process against one catalog, for tests of the command line."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from incr_cli.cli import main


class Cli:
    """Runs ``incr`` in this process against one catalog."""

    def __init__(self, catalog: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.catalog = catalog
        self.capsys = capsys

    def __call__(self, *args: str, expect: int = 0) -> tuple[object, str]:
        self.capsys.readouterr()
        code = main([*args, "--catalog", str(self.catalog), "--json"])
        captured = self.capsys.readouterr()
        assert code == expect, (args, code, captured.err)
        result = json.loads(captured.out) if code == 0 and captured.out.strip() else None
        return result, captured.err

    def cycle(self, path: Path) -> None:
        self("ingest", str(path))
        self("clean")
        self("featurize")
        self("update")

    def tables(self) -> dict[str, int]:
        """Row counts of every table: equal counts mean an unchanged catalog."""
        with duckdb.connect(str(self.catalog), read_only=True) as con:
            names = [r[0] for r in con.execute("SHOW TABLES").fetchall()]
            counts = {n: con.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names}
            counts["meta"] = con.execute("SELECT list(value ORDER BY key) FROM meta").fetchone()
        return counts
