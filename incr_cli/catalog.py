"""The catalog: one DuckDB file holding every version, its rows and its records.

A :class:`Catalog` is opened by every command. Commands that write take an exclusive
lock beside the file first (waiting up to ``wait_seconds``), and do all their writes in one
transaction, so a command that fails leaves the catalog as it was.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb
import filelock

from . import __version__
from .config import Config
from .errors import CatalogBusy, IncrError, IntegrityError, UsageError, VersionNotFound

log = logging.getLogger(__name__)

DEFAULT_CATALOG = Path(".incr") / "catalog.duckdb"
SCHEMA_VERSION = "2"
# The table the schema gained last: a catalog without it is created, completed or moved to
# the current layout.
NEWEST_TABLE = "raw_rows"

# The integer of a text column {text} when the text is exactly how that integer prints,
# else NULL: '007', '+7' and ' 7' stay text.
CANONICAL_INT_SQL = (
    "CASE WHEN CAST(TRY_CAST({text} AS BIGINT) AS VARCHAR) = {text} "
    "THEN TRY_CAST({text} AS BIGINT) END"
)

# The columns {keep} of {rows}, then those of raw_rows from its user_id, item_id, rating
# and ts. An id's integer is kept only when it gives back the very same text. {rows} may
# give an id's integer already (user_int, item_int), which then wins over its text.
RAW_ROWS_SQL = (
    """
SELECT {keep},
       user_n, CASE WHEN user_n IS NULL THEN user_id END AS user_s,
       item_n, CASE WHEN item_n IS NULL THEN item_id END AS item_s,
       rating, (us - ts_us) // 1000000 AS ts_s, ts_us
FROM (
    SELECT *,
        coalesce(user_int, """
    + CANONICAL_INT_SQL.format(text="user_id")
    + """) AS user_n,
        coalesce(item_int, """
    + CANONICAL_INT_SQL.format(text="item_id")
    + """) AS item_n,
        CAST(((us % 1000000) + 1000000) % 1000000 AS INTEGER) AS ts_us
    FROM (SELECT *, epoch_us(ts) AS us FROM ({rows}))
)
"""
)


Params = Sequence[Any] | Mapping[str, Any]


def _bind(params: Params) -> list[Any] | dict[str, Any]:
    # NOTE: a mapping must reach DuckDB as a dict; list() of it would keep only its keys.
    return dict(params) if isinstance(params, Mapping) else list(params)


def now() -> datetime:
    """The current time in UTC, without a zone, as the catalog stores it."""
    return datetime.now(UTC).replace(tzinfo=None)


def parse_version(name: str) -> int:
    """Turn ``'v12'`` (or ``'12'``) into 12.

    Examples
    --------
    >>> parse_version("v12")
    12
    """
    text = name.strip().lower().removeprefix("v")
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"{name!r} is not a version name; write it as v1, v2, ...")
    return int(text)


@dataclass(frozen=True)
class Invocation:
    """The command and arguments that a version's records name as their origin."""

    command: str
    args: dict[str, Any] = field(default_factory=dict)

    @property
    def args_json(self) -> str:
        return json.dumps(self.args, default=str, sort_keys=True)


class Catalog:
    """An open catalog; use :func:`open_catalog` rather than building one directly."""

    def __init__(
        self,
        path: Path,
        config: Config,
        con: duckdb.DuckDBPyConnection,
        invocation: Invocation,
    ) -> None:
        self.path = path
        self.config = config
        self.con = con
        self.invocation = invocation
        self.new_files: list[Path] = []

    @property
    def model_dir(self) -> Path:
        return self.path.parent / "models"

    @property
    def report_dir(self) -> Path:
        return self.path.parent / "reports"

    # -- queries -------------------------------------------------------------------

    def one(self, sql: str, params: Params = ()) -> Any:
        """The first column of the first row of a query, or None."""
        row = self.con.execute(sql, _bind(params)).fetchone()
        return None if row is None else row[0]

    def rows(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        """All rows of a query; ``params`` are positional (``?``) or named (``$name``)."""
        return self.con.execute(sql, _bind(params)).fetchall()

    def head(self) -> int | None:
        value = self.one("SELECT value FROM meta WHERE key = 'head'")
        return None if value in (None, "") else int(value)

    def require_head(self) -> int:
        head = self.head()
        if head is None:
            raise UsageError(
                f"catalog {str(self.path)!r} holds no data yet; run 'incr ingest FILE' first"
            )
        return head

    def exists(self, version: int) -> bool:
        return self.one("SELECT 1 FROM versions WHERE version = ?", [version]) is not None

    def require(self, version: int) -> int:
        if not self.exists(version):
            # Numbers are never reused and only gc deletes versions: a gap is its work.
            if 1 <= version <= self.last_version():
                raise UsageError(
                    f"v{version} was removed by 'incr gc'; run 'incr log' to list the versions kept"
                )
            raise VersionNotFound(version)
        return version

    def lineage(self, version: int | None = None) -> list[int]:
        """The versions from the root to ``version`` (default: the head), oldest first."""
        if version is None:
            version = self.head()
            if version is None:
                return []
        chain = self.rows(
            """
            WITH RECURSIVE chain(version, depth) AS (
                SELECT ?::INTEGER, 0
                UNION ALL
                SELECT v.parent, chain.depth + 1
                FROM versions v JOIN chain ON v.version = chain.version
                -- A parent is always older than its child; the second test keeps a
                -- damaged catalog whose parents form a loop from recursing forever.
                WHERE v.parent IS NOT NULL AND v.parent < v.version
            )
            SELECT version FROM chain ORDER BY depth DESC
            """,
            [version],
        )
        return [row[0] for row in chain]

    def stage_done(self, version: int, stage: str) -> bool:
        return (
            self.one("SELECT 1 FROM stages WHERE version = ? AND stage = ?", [version, stage])
            is not None
        )

    def pending(self, stage: str, after: str) -> list[int]:
        """Versions on the head's lineage that went through ``after`` but not ``stage``."""
        lineage = self.lineage()
        done = {
            row[0]
            for row in self.rows(
                "SELECT version FROM stages WHERE stage = ? AND list_contains(?, version)",
                [stage, lineage],
            )
        }
        ready = {
            row[0]
            for row in self.rows(
                "SELECT version FROM stages WHERE stage = ? AND list_contains(?, version)",
                [after, lineage],
            )
        }
        return [v for v in lineage if v in ready and v not in done]

    # -- writes --------------------------------------------------------------------

    def last_version(self) -> int:
        """The highest version number ever handed out; 0 before the first ingest."""
        return int(self.one("SELECT value FROM meta WHERE key = 'last_version'") or 0)

    def next_version(self) -> int:
        """A new version number: one more than any number ever handed out."""
        last = self.last_version()
        self.set_meta("last_version", str(last + 1))
        return last + 1

    def set_meta(self, key: str, value: str) -> None:
        self.con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", [key, value])

    def move_head(self, version: int) -> None:
        previous = self.head()
        self.set_meta("head", str(version))
        self.con.execute(
            "INSERT INTO head_moves VALUES (?, ?, ?, ?)",
            [now(), previous, version, self.invocation.command],
        )

    def record_stage(
        self, version: int, stage: str, seconds: float, details: dict[str, Any]
    ) -> None:
        self.con.execute(
            "INSERT INTO stages VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                version,
                stage,
                now(),
                seconds,
                self.invocation.command,
                self.invocation.args_json,
                __version__,
                json.dumps(details, default=str, sort_keys=True),
            ],
        )

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All or nothing: on any error, roll back and remove the files written."""
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            for path in self.new_files:
                path.unlink(missing_ok=True)
            raise
        finally:
            self.new_files.clear()


def _apply_runtime(con: duckdb.DuckDBPyConnection, config: Config) -> None:
    runtime = config.runtime
    if runtime.memory_limit:
        con.execute("SET memory_limit = ?", [runtime.memory_limit])
    if runtime.threads:
        con.execute("SET threads = ?", [runtime.threads])
    if runtime.temp_directory:
        con.execute("SET temp_directory = ?", [runtime.temp_directory])


def _create(con: duckdb.DuckDBPyConnection) -> None:
    schema = resources.files("incr_cli").joinpath("sql/schema.sql").read_text()
    con.execute("BEGIN TRANSACTION")
    old = _rename_old_layout(con)
    con.execute(schema)
    if old:
        _move_old_rows(con)
    con.execute(
        "INSERT OR IGNORE INTO meta VALUES ('schema', ?), ('last_version', '0'), ('created_at', ?)",
        [SCHEMA_VERSION, now().isoformat()],
    )
    con.execute("UPDATE meta SET value = ? WHERE key = 'schema'", [SCHEMA_VERSION])
    con.execute("COMMIT")


def _rename_old_layout(con: duckdb.DuckDBPyConnection) -> bool:
    """Rename the tables of the first layout, where ratings_raw and ratings_clean were
    tables rather than views, out of the views' way; True if there were any."""
    kind = con.execute(
        "SELECT table_type FROM information_schema.tables WHERE table_name = 'ratings_raw'"
    ).fetchone()
    if kind is None or kind[0] != "BASE TABLE":
        return False
    con.execute("ALTER TABLE ratings_raw RENAME TO ratings_raw_old")
    # Their clean rows stay as they were, whole, in the table the views read them from.
    con.execute("ALTER TABLE ratings_clean RENAME TO clean_rows")
    return True


def _move_old_rows(con: duckdb.DuckDBPyConnection) -> None:
    """Store the first layout's raw rows compactly; its clean rows stay whole."""
    con.execute(
        "INSERT INTO raw_rows "
        + RAW_ROWS_SQL.format(
            keep="version, line",
            rows="SELECT *, CAST(NULL AS BIGINT) AS user_int, CAST(NULL AS BIGINT) AS item_int "
            "FROM ratings_raw_old ORDER BY rowid",
        )
    )
    con.execute("DROP TABLE ratings_raw_old")
    # Every raw row of a version cleaned then is marked removed, so that only its whole
    # clean rows are read.
    con.execute(
        "INSERT INTO clean_changes SELECT version, line, NULL FROM raw_rows "
        "WHERE version IN (SELECT version FROM stages WHERE stage = 'clean')"
    )


class _Lock:
    """An exclusive lock beside the catalog, with a note naming its holder."""

    def __init__(self, catalog: Path, command: str) -> None:
        self.lock = filelock.FileLock(str(catalog) + ".lock")
        self.info = Path(str(catalog) + ".lock.json")
        self.command = command

    def acquire(self, wait: float) -> None:
        try:
            self.lock.acquire(timeout=wait)
        except filelock.Timeout:
            raise CatalogBusy(
                f"catalog is busy: {self._holder()}; try again later or raise --wait "
                f"(waited {wait:g} s)"
            ) from None
        note = {
            "pid": os.getpid(),
            "command": self.command,
            "since": now().isoformat(sep=" ", timespec="seconds"),
        }
        # Written under another name and renamed, so that a process refused as busy never
        # reads half a note.
        partial = self.info.with_name(f"{self.info.name}.{os.getpid()}")
        partial.write_text(json.dumps(note))
        os.replace(partial, self.info)

    def _holder(self) -> str:
        try:
            info = json.loads(self.info.read_text())
            return f"pid {info['pid']} is running {info['command']!r} since {info['since']} UTC"
        except (OSError, ValueError, KeyError):
            return "another incr process holds its lock"

    def release(self) -> None:
        self.info.unlink(missing_ok=True)
        self.lock.release()


def catalog_path(given: Path | None) -> Path:
    """The catalog's path: the option, else ``INCR_CATALOG``, else ``.incr/``."""
    if given is not None:
        return Path(given)
    env = os.environ.get("INCR_CATALOG")
    return Path(env) if env else DEFAULT_CATALOG


@contextmanager
def open_catalog(
    path: Path,
    config: Config,
    invocation: Invocation,
    *,
    write: bool,
    create: bool | None = None,
    wait: float | None = None,
) -> Iterator[Catalog]:
    """Open (and with ``create``, make) the catalog, holding its lock while in use.

    Readers take the same lock as writers for as long as they read, so that they always
    see a committed state and never meet DuckDB's own single-writer refusal; without an
    explicit ``wait`` a reader waits for the writer to finish, however long it takes.
    """
    create = write if create is None else create
    if path.is_dir():
        raise UsageError(
            f"catalog {str(path)!r} is a directory; point --catalog (INCR_CATALOG) at the "
            f"catalog file, e.g. {str(path / DEFAULT_CATALOG.name)!r}"
        )
    if not path.exists() and not create:
        raise UsageError(
            f"no catalog at {str(path)!r}; run 'incr init' or 'incr ingest FILE' first, "
            "or point --catalog (INCR_CATALOG) at an existing one"
        )
    if path.is_file() and not _duckdb_file(path):
        # Checked before the lock, so that a data file given by mistake gets no lock file
        # beside it (DuckDB would even open a CSV file, as a view of its rows).
        raise _not_a_catalog(path, "not a DuckDB database")
    if wait is None:
        # A reader waits for as long as the writer takes: it must never fail for that.
        wait = config.runtime.wait_seconds if write else -1
    lock = _Lock(path, invocation.command)
    fresh_lock = not Path(lock.lock.lock_file).exists()
    foreign = False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire(wait)
    except OSError as exc:
        # NOTE: readers lock too, so even 'status' needs to create the lock file.
        if lock.lock.is_locked:
            lock.lock.release()
        raise UsageError(
            f"cannot create the catalog's lock file in {str(path.parent)!r} "
            f"({exc.strerror or exc}); that folder must be writable, or point --catalog "
            "(INCR_CATALOG) at a writable one"
        ) from exc
    try:
        started = time.perf_counter()
        try:
            con = duckdb.connect(str(path))
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise CatalogBusy(
                    f"catalog {str(path)!r} is held by another program; close it and retry"
                ) from exc
            if "not a valid duckdb database" in str(exc).lower():
                raise _not_a_catalog(path, "not a DuckDB database") from exc
            raise IntegrityError(
                f"cannot open catalog {str(path)!r}: {exc}; run 'incr verify'"
            ) from exc
        try:
            tables = {row[0] for row in con.execute("SHOW TABLES").fetchall()}
            if tables and "meta" not in tables:
                foreign = True
                raise UsageError(
                    f"{str(path)!r} is a DuckDB database but not an incr catalog; point "
                    "--catalog (INCR_CATALOG) at a catalog file, or at a new path to create one"
                )
            # NOTE: the schema only adds tables and _create is idempotent, so a catalog made
            # before the newest table (gate_decisions) gets it here rather than failing.
            if con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = ?",
                [NEWEST_TABLE],
            ).fetchone() == (0,):
                _create(con)
            _apply_runtime(con, config)
            log.debug("opened %s in %.3f s", path, time.perf_counter() - started)
            yield Catalog(path, config, con, invocation)
        finally:
            con.close()
    finally:
        lock.release()
        if foreign and fresh_lock:
            # Another program's database: leave its folder as it was found.
            Path(lock.lock.lock_file).unlink(missing_ok=True)


def _not_a_catalog(path: Path, why: str) -> UsageError:
    return UsageError(
        f"{str(path)!r} is not an incr catalog ({why}); point --catalog (INCR_CATALOG) at "
        "a catalog file, or at a new path to create one"
    )


def _duckdb_file(path: Path) -> bool:
    """Whether a file is a DuckDB database (or empty, which DuckDB makes one of)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(12)
    except OSError:
        return True  # unreadable: DuckDB's own error says more
    return not head or head[8:12] == b"DUCK"


def describe_environment() -> dict[str, str]:
    """Versions of what a saved model depends on, stored beside each model record."""
    import joblib
    import numpy
    import sklearn

    return {
        "python": sys.version.split()[0],
        "numpy": numpy.__version__,
        "scikit-learn": sklearn.__version__,
        "joblib": joblib.__version__,
        "incr": __version__,
    }


__all__ = [
    "Catalog",
    "IncrError",
    "Invocation",
    "catalog_path",
    "open_catalog",
    "parse_version",
]
