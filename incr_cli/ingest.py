"""Ingest: turn one file of interactions into one new data version.

The file is read by DuckDB (never row by row in Python): every field as text first, so
that a bad value becomes a quarantined row with its line number and reason instead of a
failed load. Rows DuckDB cannot split into the expected columns are quarantined too.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb

from . import __version__
from .catalog import Catalog, now
from .config import Columns, IngestConfig
from .errors import BadInput, NothingToDo

log = logging.getLogger(__name__)

FIELDS = ("user", "item", "rating", "timestamp")
REQUIRED = ("user", "item", "rating")

# Header names recognised without a configured mapping, compared in lower case with
# '_', '-' and spaces removed.
ALIASES = {
    "user": {"user", "userid", "customer", "customerid", "uid", "visitorid", "member"},
    "item": {
        "item",
        "itemid",
        "movie",
        "movieid",
        "product",
        "productid",
        "sku",
        "stockcode",
        "iid",
        "article",
        "articleid",
    },
    "rating": {"rating", "score", "stars", "value", "weight"},
    "timestamp": {
        "timestamp",
        "time",
        "ts",
        "date",
        "datetime",
        "eventtime",
        "invoicedate",
        "createdat",
    },
}

SNIFF_BYTES = 64 * 1024


@dataclass(frozen=True)
class Layout:
    """How one file is laid out: its delimiter, header and the position of each field."""

    delimiter: str
    header: bool
    n_columns: int
    positions: dict[str, int | None]  # 0-based column of each field, None if absent


@dataclass
class FileResult:
    path: str
    version: int | None
    rows_read: int
    rows_accepted: int
    rows_rejected: int
    reasons: dict[str, int]
    skipped: str | None = None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _normalise(name: str) -> str:
    return "".join(ch for ch in name.strip().lower() if ch not in "_- ")


def _first_lines(path: Path, encoding: str) -> list[str]:
    with path.open("rb") as handle:
        sample = handle.read(SNIFF_BYTES)
    text = sample.decode(encoding, errors="replace").removeprefix("\ufeff")
    lines = text.splitlines()
    if len(sample) == SNIFF_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut short
    return [line for line in lines if line.strip()]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def detect_layout(path: Path, config: IngestConfig) -> Layout:
    """Find the delimiter, the header and where each field sits.

    Configured values win; otherwise the delimiter is sniffed from the first lines, a
    header is assumed when its first row names a known field or holds no number, and a
    file without a header is read as user, item, rating[, timestamp].
    """
    lines = _first_lines(path, config.encoding)
    if not lines:
        raise BadInput(path, "the file is empty; nothing to ingest")

    if config.delimiter != "auto":
        delimiter = config.delimiter
    else:
        try:
            sample = "\n".join(lines[:50])
            delimiter = csv.Sniffer().sniff(sample, delimiters=",\t;|").delimiter
        except csv.Error:
            delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    first = next(csv.reader([lines[0]], delimiter=delimiter))
    n_columns = len(first)

    if config.header != "auto":
        header = bool(config.header)
    else:
        known = set().union(*ALIASES.values())
        header = any(_normalise(name) in known for name in first) or not any(
            _is_number(name) for name in first
        )

    positions = _map_columns(path, config.columns, first if header else None, n_columns)
    return Layout(delimiter, header, n_columns, positions)


def _map_columns(
    path: Path, columns: Columns, names: list[str] | None, n_columns: int
) -> dict[str, int | None]:
    positions: dict[str, int | None] = {}
    normalised = [_normalise(name) for name in names] if names else []
    for field in FIELDS:
        ref = getattr(columns, field)
        if isinstance(ref, int):
            if ref > n_columns:
                raise BadInput(
                    path,
                    f"ingest.columns.{field} is column {ref} but the file has only "
                    f"{n_columns}; fix the config or the delimiter",
                )
            positions[field] = ref - 1
        elif isinstance(ref, str):
            if names is None:
                raise BadInput(
                    path,
                    f"ingest.columns.{field} names column {ref!r} but the file has no "
                    "header; give a 1-based position instead",
                )
            if _normalise(ref) not in normalised:
                raise BadInput(
                    path,
                    f"has no column {ref!r} for {field} (columns: {', '.join(names)}); "
                    "fix ingest.columns in the config",
                )
            positions[field] = normalised.index(_normalise(ref))
        elif names is not None:
            hits = [i for i, name in enumerate(normalised) if name in ALIASES[field]]
            positions[field] = hits[0] if hits else None
        else:
            default = FIELDS.index(field)
            positions[field] = default if default < n_columns else None

    missing = [field for field in REQUIRED if positions[field] is None]
    if missing:
        found = ", ".join(names) if names else f"{n_columns} unnamed columns"
        raise BadInput(
            path,
            f"cannot find the {' and '.join(missing)} column ({found}); "
            "set ingest.columns in the config",
        )
    taken = [p for p in positions.values() if p is not None]
    if len(set(taken)) != len(taken):
        raise BadInput(path, "two fields map to the same column; fix ingest.columns")
    return positions


def _timestamp_sql(config: IngestConfig) -> str:
    """SQL turning the text column ``ts_raw`` into a TIMESTAMP, NULL when unreadable."""
    seconds = "TRY_CAST(ts_raw AS DOUBLE)"
    # Epoch numbers are kept within years 1677-2262 so that microseconds fit in BIGINT.
    epoch = "CASE WHEN abs({s}) < 9.2e9 THEN make_timestamp(CAST({s} * 1e6 AS BIGINT)) END"
    fmt = config.timestamp_format
    if fmt == "unix":
        return epoch.format(s=seconds)
    if fmt == "unix_ms":
        return epoch.format(s=f"({seconds} / 1000)")
    if fmt == "auto":
        return (
            f"CASE WHEN {seconds} IS NOT NULL THEN {epoch.format(s=seconds)} "
            "ELSE TRY_CAST(ts_raw AS TIMESTAMP) END"
        )
    return "try_strptime(ts_raw, $fmt)"


VALIDATE_SQL = """
CREATE TEMP TABLE checked AS
WITH bad AS (
    SELECT line, row_number() OVER (ORDER BY line) AS k,
           line - $header_lines - row_number() OVER (ORDER BY line) AS valid_before
    FROM (SELECT DISTINCT line FROM incr_load_rejects)
),
numbered AS (
    SELECT s.*, s.rn + 1 + $header_lines + coalesce(bad.k, 0) AS line
    FROM (SELECT rowid - (SELECT min(rowid) FROM staging) AS rn, * FROM staging) s
    ASOF LEFT JOIN bad ON s.rn >= bad.valid_before
),
typed AS (
    SELECT line, raw,
           nullif(trim(user_raw), '') AS user_id,
           nullif(trim(item_raw), '') AS item_id,
           nullif(trim(rating_raw), '') AS rating_raw,
           TRY_CAST(nullif(trim(rating_raw), '') AS DOUBLE) AS rating,
           nullif(trim(ts_raw), '') AS ts_raw,
           {ts_sql} AS ts
    FROM (SELECT line, {raw_sql} AS raw, {user} AS user_raw, {item} AS item_raw,
                 {rating} AS rating_raw, {ts} AS ts_raw FROM numbered)
)
SELECT line, raw, user_id, item_id, rating, ts,
    CASE
        WHEN user_id IS NULL THEN 'user id is missing'
        WHEN item_id IS NULL THEN 'item id is missing'
        WHEN rating_raw IS NULL THEN 'rating is missing'
        WHEN rating IS NULL OR isnan(rating) OR isinf(rating)
            THEN 'rating is not a number: ' || rating_raw
        WHEN rating < $rmin OR rating > $rmax
            THEN 'rating ' || rating_raw || ' is outside [' || $rmin || ', ' || $rmax || ']'
        WHEN ts IS NULL AND ts_raw IS NULL THEN 'timestamp is missing'
        WHEN ts IS NULL THEN 'timestamp cannot be read: ' || ts_raw
    END AS reason
FROM typed
"""


def _load(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    layout: Layout,
    config: IngestConfig,
    ingest_time: str,
) -> None:
    """Stage the file's rows as text, then type and check every row in SQL."""
    for table in ("staging", "checked", "incr_load_rejects", "incr_load_scans"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    names = {f"c{i}": "VARCHAR" for i in range(layout.n_columns)}
    try:
        con.execute(
            """
            CREATE TEMP TABLE staging AS SELECT * FROM read_csv(
                $path, delim = $delim, header = $header, columns = $columns,
                quote = '"', escape = '"', auto_detect = false, encoding = $encoding,
                store_rejects = true, rejects_table = 'incr_load_rejects',
                rejects_scan = 'incr_load_scans')
            """,
            {
                "path": str(path),
                "delim": layout.delimiter,
                "header": layout.header,
                "columns": names,
                "encoding": config.encoding,
            },
        )
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0]
        raise BadInput(path, f"cannot be read as delimited text: {first}") from exc

    def col(field: str) -> str:
        position = layout.positions[field]
        return "NULL" if position is None else f"c{position}"

    timestamp = col("timestamp")
    params: dict[str, object] = {
        "header_lines": int(layout.header),
        "rmin": config.rating_min,
        "rmax": config.rating_max,
    }
    ts_sql = _timestamp_sql(config)
    if "$fmt" in ts_sql:
        params["fmt"] = config.timestamp_format
    if timestamp == "NULL":
        # NOTE: a file without a timestamp column gets the time it was ingested.
        timestamp, ts_sql = "$ingest_time", "CAST(ts_raw AS TIMESTAMP)"
        params["ingest_time"] = ingest_time
    raw_cols = ", ".join(f"coalesce(c{i}, '')" for i in range(layout.n_columns))
    sql = VALIDATE_SQL.format(
        ts_sql=ts_sql,
        raw_sql=f"concat_ws($delim, {raw_cols})",
        user=col("user"),
        item=col("item"),
        rating=col("rating"),
        ts=timestamp,
    )
    params["delim"] = layout.delimiter
    con.execute(sql, params)


def ingest_files(
    catalog: Catalog,
    paths: Sequence[Path],
    progress: Callable[[str], None] | None = None,
) -> list[FileResult]:
    """Ingest each file as a new version, in one transaction for all of them.

    Files whose content a version on the head's lineage already holds, and files with a
    header but no rows, are skipped with the reason; if every file is skipped the command
    has nothing to do. A file that cannot be read at all stops the command and nothing is
    ingested.
    """
    config = catalog.config.ingest
    for path in paths:
        if not path.is_file():
            raise BadInput(path, "no such file; check the path")

    results: list[FileResult] = []
    with catalog.transaction():
        for path in paths:
            if progress:
                progress(str(path))
            results.append(_ingest_one(catalog, path, config))
    if all(result.skipped for result in results):
        raise NothingToDo(
            "nothing ingested: " + "; ".join(f"{r.path} {r.skipped}" for r in results)
        )
    return results


def _ingest_one(catalog: Catalog, path: Path, config: IngestConfig) -> FileResult:
    started = time.perf_counter()
    digest = sha256_of(path)
    lineage = catalog.lineage()
    held = catalog.one(
        "SELECT version FROM versions WHERE source_sha256 = ? AND list_contains(?, version)"
        " ORDER BY version LIMIT 1",
        [digest, lineage],
    )
    if held is not None:
        return FileResult(str(path), None, 0, 0, 0, {}, f"is already held by v{held}")

    layout = detect_layout(path, config)
    ingest_time = now()
    con = catalog.con
    _load(con, path, layout, config, ingest_time.isoformat())

    malformed = catalog.one("SELECT count(DISTINCT line) FROM incr_load_rejects")
    valid = catalog.one("SELECT count(*) FROM checked WHERE reason IS NULL")
    invalid = catalog.one("SELECT count(*) FROM checked WHERE reason IS NOT NULL")
    read = valid + invalid + malformed
    if read == 0:
        return FileResult(str(path), None, 0, 0, 0, {}, "holds a header but no rows")
    if valid == 0:
        top = catalog.one(
            "SELECT reason FROM checked WHERE reason IS NOT NULL GROUP BY reason "
            "ORDER BY count(*) DESC LIMIT 1"
        ) or catalog.one("SELECT first(error_message) FROM incr_load_rejects")
        raise BadInput(
            path,
            f"no row passed validation ({read} read; e.g. {top}); "
            "check the delimiter and ingest.columns in the config",
        )

    version = catalog.next_version()
    con.execute(
        "INSERT INTO ratings_raw SELECT ?, line, user_id, item_id, rating, ts "
        "FROM checked WHERE reason IS NULL ORDER BY line",
        [version],
    )
    con.execute(
        "INSERT INTO rejects SELECT ?, line, reason, raw FROM checked WHERE reason IS NOT NULL",
        [version],
    )
    con.execute(
        """
        INSERT INTO rejects
        SELECT ?, line,
               'row has ' || CASE WHEN first(error_type) = 'TOO MANY COLUMNS'
                   THEN 'more' ELSE 'fewer' END || ' fields than the header ('
                   || ? || ')',
               first(csv_line)
        FROM incr_load_rejects GROUP BY line
        """,
        [version, layout.n_columns],
    )
    reasons = dict(
        catalog.rows(
            "SELECT regexp_replace(reason, ':.*$', ''), count(*) FROM rejects "
            "WHERE version = ? GROUP BY 1 ORDER BY 2 DESC",
            [version],
        )
    )
    rejected = invalid + malformed
    con.execute(
        "INSERT INTO versions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            version,
            catalog.head(),
            ingest_time,
            catalog.invocation.command,
            catalog.invocation.args_json,
            str(path.resolve()),
            path.stat().st_size,
            digest,
            read,
            valid,
            rejected,
            __version__,
        ],
    )
    catalog.move_head(version)
    seconds = time.perf_counter() - started
    details = {"layout": asdict(layout), "reasons": reasons}
    catalog.record_stage(version, "ingest", seconds, details)
    log.debug("ingested %s as v%d in %.3f s", path, version, seconds)
    return FileResult(str(path), version, read, valid, rejected, reasons)
