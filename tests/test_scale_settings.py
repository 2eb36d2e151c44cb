"""What large catalogs rely on: the spill folder setting and a rollback that moves no data
row."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from incr_cli.catalog import Catalog, Invocation, open_catalog
from incr_cli.config import Config, RuntimeConfig, load_config
from incr_cli.errors import ConfigError
from incr_cli.history import rollback
from incr_cli.ingest import ingest_files

OpenCatalog = Callable[..., Catalog]
WriteFile = Callable[..., Path]

DATA_TABLES = (
    "raw_rows",
    "rejects",
    "clean_changes",
    "clean_rows",
    "user_features",
    "item_features",
)


def test_temp_directory_reaches_duckdb(tmp_path: Path) -> None:
    spill = tmp_path / "spill"
    config = Config(runtime=RuntimeConfig(temp_directory=str(spill), memory_limit="256MB"))
    with open_catalog(tmp_path / "c.duckdb", config, Invocation("test"), write=True) as catalog:
        assert catalog.one("SELECT current_setting('temp_directory')") == str(spill)
        assert catalog.one("SELECT current_setting('memory_limit')") == "244.1 MiB"


def test_temp_directory_defaults_to_duckdbs_own(tmp_path: Path) -> None:
    assert RuntimeConfig().temp_directory is None
    with open_catalog(tmp_path / "c.duckdb", Config(), Invocation("test"), write=True) as catalog:
        # DuckDB's default: a folder beside the database file.
        assert catalog.one("SELECT current_setting('temp_directory')") == str(
            tmp_path / "c.duckdb.tmp"
        )


def test_temp_directory_that_is_a_file_is_refused(tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.write_text("")
    path = tmp_path / "config.yaml"
    path.write_text(f"runtime:\n  temp_directory: {taken}\n")
    with pytest.raises(ConfigError, match="runtime.temp_directory names a file, not a folder"):
        load_config(path)


def test_empty_temp_directory_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("runtime:\n  temp_directory: ' '\n")
    with pytest.raises(ConfigError, match="runtime.temp_directory must be a folder's path"):
        load_config(path)


def _data(con: duckdb.DuckDBPyConnection) -> dict[str, object]:
    """Every data table's rows, as a checksum and a count, and where they are stored."""
    state: dict[str, object] = {}
    for table in DATA_TABLES:
        state[table] = con.execute(
            f"SELECT count(*), sum(hash(COLUMNS(*))) FROM {table}"
        ).fetchone()
        state[f"{table} blocks"] = con.execute(
            "SELECT list(block_id ORDER BY block_id) FROM pragma_storage_info(?)", [table]
        ).fetchone()
    return state


def test_rollback_moves_no_data_row(catalog: OpenCatalog, write_file: WriteFile) -> None:
    from incr_cli.clean import clean_pending
    from incr_cli.featurize import featurize_pending

    cat = catalog()
    first = write_file("a.csv", "user,item,rating,ts\nu1,i1,4,1\nu2,i1,3,2\n")
    second = write_file("b.csv", "user,item,rating,ts\nu1,i2,5,3\nu3,i1,x,4\n")
    ingest_files(cat, [first, second])
    clean_pending(cat)
    featurize_pending(cat)
    cat.con.execute("CHECKPOINT")
    before = _data(cat.con)

    result = rollback(cat, 1)
    cat.con.execute("CHECKPOINT")

    assert (result.version, result.previous, result.rolled_back) == (1, 2, [2])
    assert _data(cat.con) == before
    assert cat.one("SELECT value FROM meta WHERE key = 'head'") == "1"
    assert cat.rows("SELECT from_version, to_version FROM head_moves ORDER BY moved_at")[-1] == (
        2,
        1,
    )
