"""Ingest: turn one file of interactions into one new data version.

The file is read by DuckDB (never row by row in Python): every field as text first, so
that a bad value becomes a quarantined row with its line number and reason instead of a
failed load. Rows DuckDB cannot split into the expected columns are quarantined too.

Timestamps are stored in UTC without a zone: a value that names its zone or offset is
converted, a value without one is taken to be UTC already.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb

from . import __version__
from .catalog import Catalog, now
from .config import Columns, IngestConfig
from .errors import BadInput, NothingToDo, PathNotFound

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
SNIFF_LINES = 50
SCAN_BYTES = 1 << 20
UTF8_BOM = b"\xef\xbb\xbf"

# A newline followed by another one (LF or CRLF) ends the line before an empty line.
_BEFORE_EMPTY_LINE = re.compile(rb"\n(?=\r?\n)")

# What each kind of row DuckDB could not split is reported as; {n} is the expected count.
# Temporary tables of one file's load, in the catalog's connection.
LOAD_TABLES = ("staging", "checked", "incr_load_rejects", "incr_load_scans")

SPLIT_ERRORS = {
    "TOO MANY COLUMNS": "row has more fields than the {n} expected",
    "MISSING COLUMNS": "row has fewer fields than the {n} expected",
    "UNQUOTED VALUE": "row has a stray or unclosed quote",
    "INVALID ENCODING": "row is not valid {encoding}",
    "LINE SIZE OVER MAXIMUM": "row is longer than the 2,000,000 bytes a line may hold",
}

# Leading bytes of compressed files; DuckDB would read some of them, but the layout
# detection and the line numbers need the text itself.
COMPRESSED = {
    b"\x1f\x8b": "gzip",
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"PK\x03\x04": "zip",
}


@dataclass(frozen=True)
class Layout:
    """How one file is laid out: its delimiter, header and the position of each field."""

    delimiter: str
    header: bool
    n_columns: int
    positions: dict[str, int | None]  # 0-based column of each field, None if absent


@dataclass(frozen=True)
class FileScan:
    """What one pass over a file's bytes finds.

    Attributes
    ----------
    sha256
        Hex digest of the whole file.
    size
        Length in bytes.
    lines
        Number of lines, the last one counted whether or not a newline ends it.
    empty_lines
        1-based numbers of the lines that hold nothing (not even a space). DuckDB skips
        them without a trace, so they must be known to number the rows it returns.
    """

    sha256: str
    size: int
    lines: int
    empty_lines: tuple[int, ...]

    @property
    def leading_empty_lines(self) -> int:
        """How many empty lines come before the first line that holds anything."""
        count = 0
        while count < len(self.empty_lines) and self.empty_lines[count] == count + 1:
            count += 1
        return count


@dataclass
class FileResult:
    """What ingesting one file did.

    Attributes
    ----------
    path
        The file as given.
    version
        The version it became, or None when it was skipped.
    rows_read, rows_accepted, rows_rejected
        Rows found (the header and empty lines aside), kept in ``ratings_raw`` and
        quarantined in ``rejects``.
    reasons
        Rejected rows per reason, the bad value left out, most frequent first.
    skipped
        Why the file was not ingested, or None.
    """

    path: str
    version: int | None
    rows_read: int
    rows_accepted: int
    rows_rejected: int
    reasons: dict[str, int]
    skipped: str | None = None


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    return scan_file(path).sha256


def scan_file(path: Path, *, chunk_size: int = SCAN_BYTES) -> FileScan:
    """Hash a file and find its empty lines, in one pass of bounded memory.

    Lines end with LF or CRLF. A UTF-8 byte order mark before the first line is ignored
    when looking for empty lines, as DuckDB ignores it. The file is read ``chunk_size``
    bytes at a time (at least 3, so that the first chunk holds the whole mark).

    NOTE: an empty line inside a quoted value is counted too; DuckDB's numbering is off
    there in any case (it counts a quoted value that spans lines as one line).

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = Path(tmp) / "f.csv"
    ...     _ = path.write_bytes(b"\\r\\nu,i,r\\r\\n1,2,3\\r\\n\\r\\n4,5,6\\r\\n")
    ...     scan_file(path).empty_lines
    (1, 4)
    """
    digest = hashlib.sha256()
    size = 0
    empty: list[int] = []
    # A virtual newline before the first byte lets an empty first line be found like any
    # other; it is newline number 0, so the count of newlines before `tail` starts at -1.
    tail = b"\n"
    newlines_before_tail = -1
    first = True
    with path.open("rb") as handle:
        while chunk := handle.read(max(chunk_size, len(UTF8_BOM))):
            digest.update(chunk)
            size += len(chunk)
            if first:
                chunk = chunk.removeprefix(UTF8_BOM)
                first = False
            buffer = tail + chunk

            # The line after the n-th newline is line n + 1. A match lying wholly inside
            # the tail was found in the previous buffer already.
            counted_to, newlines = 0, newlines_before_tail
            for match in _BEFORE_EMPTY_LINE.finditer(buffer):
                end = match.start() + (2 if buffer[match.start() + 1] == 0x0A else 3)
                newlines += buffer.count(b"\n", counted_to, match.start() + 1)
                counted_to = match.start() + 1
                if end > len(tail):
                    empty.append(newlines + 1)

            # Keep two bytes: enough for a newline whose following "\r\n" is yet to come.
            newlines_before_tail += buffer.count(b"\n") - buffer[-2:].count(b"\n")
            tail = buffer[-2:]
    newlines = newlines_before_tail + tail.count(b"\n")
    lines = newlines + (0 if tail.endswith(b"\n") else 1)
    return FileScan(digest.hexdigest(), size, lines, tuple(empty))


def _shown(name: str) -> str:
    """A header name fit for a one-line message: control bytes escaped, length bounded."""
    text = name if name.isprintable() else ascii(name)
    return text if len(text) <= 40 else text[:37] + "..."


def _normalise(name: str) -> str:
    return "".join(ch for ch in name.strip().lower() if ch not in "_- ")


def _first_lines(path: Path, encoding: str) -> list[str]:
    with path.open("rb") as handle:
        sample = handle.read(SNIFF_BYTES)
    text = sample.decode(encoding, errors="replace").removeprefix("\ufeff")
    lines = text.splitlines()
    if len(sample) == SNIFF_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut short
    # Only empty lines are dropped, as DuckDB drops them; a line of spaces is a row.
    return [line for line in lines if line]


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
    file without a header is read as user, item, rating[, timestamp]. A header sets the
    number of columns; without one it is the most common count among the first lines, so
    that one malformed first row does not decide how the whole file is split.
    """
    lines = _first_lines(path, config.encoding)
    if not lines:
        raise BadInput(path, "the file is empty; nothing to ingest")

    delimiter: str
    if config.delimiter != "auto":
        delimiter = config.delimiter
    else:
        try:
            sample = "\n".join(lines[:SNIFF_LINES])
            delimiter = csv.Sniffer().sniff(sample, delimiters=",\t;|").delimiter
        except csv.Error:
            delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    rows = list(csv.reader(lines[:SNIFF_LINES], delimiter=delimiter))
    first = rows[0]

    if config.header != "auto":
        header = bool(config.header)
    else:
        known = set().union(*ALIASES.values())
        header = any(_normalise(name) in known for name in first) or not any(
            _is_number(name) for name in first
        )
    # _first_lines decodes with errors="replace": U+FFFD marks bytes not in the encoding.
    if header and any("\ufffd" in name for name in first):
        raise BadInput(
            path,
            f"its first line is not {config.encoding} text, so it is binary, compressed or in "
            "another encoding; save it as UTF-8 text, or set ingest.encoding: latin-1",
        )

    # Counter keeps first-seen order, so a tie goes to the count seen first.
    counts = Counter(len(row) for row in rows)
    n_columns = len(first) if header else counts.most_common(1)[0][0]
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
                    f"has no column {ref!r} for {field} "
                    f"(columns: {', '.join(map(_shown, names))}); fix ingest.columns in the config",
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
        found = ", ".join(map(_shown, names)) if names else f"{n_columns} unnamed columns"
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
    """SQL turning the text column ``ts_raw`` into a UTC TIMESTAMP, NULL when unreadable.

    The SQL must run with the session's ``TimeZone`` set to UTC (see :func:`_utc_session`):
    text with a zone is read as TIMESTAMPTZ and turned into UTC, text without one is read
    in the session's zone, that is as UTC.
    """
    seconds = "TRY_CAST(ts_raw AS DOUBLE)"
    # Epoch numbers are kept within years 1677-2262 so that microseconds fit in BIGINT.
    epoch = "CASE WHEN abs({s}) < 9.2e9 THEN make_timestamp(CAST({s} * 1e6 AS BIGINT)) END"
    # NOTE: a plain cast to TIMESTAMP would drop an offset such as +02:00 instead of
    # applying it.
    text = "CAST(TRY_CAST(ts_raw AS TIMESTAMPTZ) AS TIMESTAMP)"
    fmt = config.timestamp_format
    if fmt == "unix":
        return epoch.format(s=seconds)
    if fmt == "unix_ms":
        return epoch.format(s=f"({seconds} / 1000)")
    if fmt == "auto":
        return f"CASE WHEN {seconds} IS NOT NULL THEN {epoch.format(s=seconds)} ELSE {text} END"
    # strptime gives a TIMESTAMPTZ when the format has %z or %Z, else a TIMESTAMP.
    return "CAST(try_strptime(ts_raw, $fmt) AS TIMESTAMP)"


@contextmanager
def _utc_session(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Run with the session's ``TimeZone`` at UTC, then put the previous zone back."""
    try:
        previous = con.execute("SELECT current_setting('TimeZone')").fetchone()
    except duckdb.Error:  # pragma: no cover - without ICU every zone is UTC already
        yield
        return
    con.execute("SET TimeZone = 'UTC'")
    try:
        yield
    finally:
        con.execute("SET TimeZone = ?", [previous[0] if previous else "UTC"])


# The rows of a file, typed and checked. Staged rows carry no line number, so it is
# rebuilt: the lines that give no staged row (the header, empty lines, rows DuckDB could
# not split) are counted off in order. The k-th such line, at line L, has L - k staged
# rows before it, so the staged row at 0-based position rn lies after the largest k whose
# L - k <= rn, at line rn + 1 + k. Several lines in a row share one L - k; the largest k
# of each group is the one that counts.
VALIDATE_SQL = """
CREATE TEMP TABLE checked AS
WITH skipped AS (
    SELECT line, row_number() OVER (ORDER BY line) AS k
    FROM (
        SELECT line FROM incr_load_rejects
        UNION
        SELECT unnest(CAST($skipped AS BIGINT[]))
    )
),
gaps AS (
    SELECT line - k AS rows_before, max(k) AS k FROM skipped GROUP BY line - k
),
numbered AS (
    SELECT s.*, s.rn + 1 + coalesce(gaps.k, 0) AS line
    FROM (SELECT rowid - (SELECT min(rowid) FROM staging) AS rn, * FROM staging) s
    ASOF LEFT JOIN gaps ON s.rn >= gaps.rows_before
),
fields AS (
    SELECT line, {raw_sql} AS raw,
           nullif(trim({user}), '') AS user_id,
           nullif(trim({item}), '') AS item_id,
           nullif(trim({rating}), '') AS rating_raw,
           nullif(trim({ts}), '') AS ts_raw
    FROM numbered
),
typed AS (
    SELECT *, TRY_CAST(rating_raw AS DOUBLE) AS rating, {ts_sql} AS ts FROM fields
),
judged AS (
    SELECT *,
        CASE
            WHEN user_id IS NULL THEN 'user id is missing'
            WHEN item_id IS NULL THEN 'item id is missing'
            WHEN rating_raw IS NULL THEN 'rating is missing'
            WHEN rating IS NULL OR isnan(rating) OR isinf(rating)
                THEN 'rating is not a number: ' || rating_raw
            WHEN rating < $rmin OR rating > $rmax
                THEN 'rating is outside ' || $range || ': ' || rating_raw
            WHEN ts IS NULL AND ts_raw IS NULL THEN 'timestamp is missing'
            WHEN ts IS NULL THEN 'timestamp cannot be read: ' || ts_raw
        END AS reason
    FROM typed
)
-- The row as text is only needed for the rejects, so only they keep it.
SELECT line, user_id, item_id, rating, ts, reason,
       CASE WHEN reason IS NOT NULL THEN raw END AS raw
FROM judged
"""

# One reject per line DuckDB could not split; a line has one record per missing column.
# NOTE: an error of the whole line (too long) has no column, and arg_min skips null keys.
SPLIT_REJECTS_SQL = """
INSERT INTO rejects
SELECT $version, line,
       CASE arg_min(error_type, coalesce(column_idx, -1)) {cases}
            ELSE 'row cannot be read: '
                 || coalesce(lower(arg_min(error_type, coalesce(column_idx, -1))), 'unknown')
       END,
       trim(arg_min(csv_line, coalesce(column_idx, -1)), chr(13) || chr(10))
FROM incr_load_rejects GROUP BY line
"""


def _load(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    layout: Layout,
    config: IngestConfig,
    scan: FileScan,
    ingest_time: str,
) -> None:
    """Stage the file's rows as text, then type and check every row in SQL."""
    _drop_load_tables(con)
    names = {f"c{i}": "VARCHAR" for i in range(layout.n_columns)}
    # NOTE: DuckDB would take an empty first line for the header, so leading empty lines
    # are skipped; its line numbers still count them.
    leading = scan.leading_empty_lines
    try:
        con.execute(
            """
            CREATE TEMP TABLE staging AS SELECT * FROM read_csv(
                $path, delim = $delim, header = $header, columns = $columns, skip = $skip,
                quote = '"', escape = '"', auto_detect = false, encoding = $encoding,
                store_rejects = true, rejects_table = 'incr_load_rejects',
                rejects_scan = 'incr_load_scans')
            """,
            {
                "path": str(path),
                "delim": layout.delimiter,
                "header": layout.header,
                "columns": names,
                "skip": leading,
                "encoding": config.encoding,
            },
        )
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0]
        raise BadInput(path, f"cannot be read as delimited text: {first}") from exc

    def col(field: str) -> str:
        position = layout.positions[field]
        return "NULL" if position is None else f"c{position}"

    skipped = list(scan.empty_lines)
    if layout.header:
        skipped.append(leading + 1)
    timestamp = col("timestamp")
    params: dict[str, object] = {
        "skipped": skipped,
        "rmin": config.rating_min,
        "rmax": config.rating_max,
        "range": f"[{config.rating_min:g}, {config.rating_max:g}]",
        "delim": layout.delimiter,
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
    with _utc_session(con):
        con.execute(sql, params)


def _hint(reason: str | None) -> str:
    """What to change when no row of a file passed, judged by its most common reason."""
    reason = reason or ""
    if reason.startswith("timestamp"):
        # Milliseconds since the epoch are the usual case: auto reads only seconds.
        return "set ingest.timestamp_format in the config (unix, unix_ms or a strptime format)"
    if reason.startswith("rating is outside"):
        return "set ingest.rating_min and ingest.rating_max in the config"
    return "check the delimiter and ingest.columns in the config"


def _drop_load_tables(con: duckdb.DuckDBPyConnection) -> None:
    # The temporary tables hold a whole file; they go as soon as it is stored.
    for table in LOAD_TABLES:
        con.execute(f"DROP TABLE IF EXISTS {table}")


def _insert_split_rejects(
    con: duckdb.DuckDBPyConnection, version: int, layout: Layout, config: IngestConfig
) -> None:
    """Quarantine the lines DuckDB could not split, one reject per line."""
    params: dict[str, object] = {"version": version}
    cases = []
    # Error kinds and reasons are bound; only their placeholders are written into the SQL.
    for i, (kind, text) in enumerate(SPLIT_ERRORS.items()):
        params[f"kind{i}"] = kind
        params[f"reason{i}"] = text.format(n=layout.n_columns, encoding=config.encoding)
        cases.append(f"WHEN $kind{i} THEN $reason{i}")
    con.execute(SPLIT_REJECTS_SQL.format(cases=" ".join(cases)), params)


def check_readable(path: Path) -> None:
    """Refuse a path that is not a readable file of delimited text, before any work.

    Raises
    ------
    PathNotFound
        If the path does not exist.
    BadInput
        If the path is ``-`` (standard input), a directory or not a regular file (a pipe
        or a device), cannot be opened, is compressed, or holds NUL bytes (binary data, or
        text in UTF-16).
    """
    if str(path) == "-":
        # NOTE: the file is read more than once (hash, layout, rows), which a stream
        # cannot be.
        raise BadInput(
            path, "standard input is not supported; write the data to a file first and ingest it"
        )
    if not path.exists():
        raise PathNotFound(path)
    if path.is_dir():
        raise BadInput(path, "is a directory; give the files inside it")
    if not path.is_file():
        raise BadInput(
            path,
            "is not a regular file (standard input, a pipe or a device are not supported); "
            "write the data to a file first and ingest it",
        )
    try:
        with path.open("rb") as handle:
            head = handle.read(SNIFF_BYTES)
    except OSError as exc:
        raise BadInput(
            path, f"cannot be read: {exc.strerror or exc}; check its permissions"
        ) from exc
    for magic, kind in COMPRESSED.items():
        if head.startswith(magic):
            raise BadInput(path, f"is {kind}-compressed; decompress it and ingest the result")
    if b"\x00" in head:
        raise BadInput(
            path,
            f"holds a NUL byte (at offset {head.index(0)}), so it is binary data or text in "
            "UTF-16, not delimited text; save it as UTF-8 or Latin-1 text",
        )


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

    Parameters
    ----------
    catalog
        A catalog open for writing; each new version becomes the head in turn.
    paths
        CSV or TSV files, oldest first.
    progress
        Called with each path before it is read.

    Returns
    -------
    list of FileResult
        One per path, in order.

    Raises
    ------
    BadInput
        If a file is missing, a directory, unreadable, compressed, binary, empty, cannot
        be split into fields, lacks a required column, or holds no valid row. The catalog
        is left as it was.
    NothingToDo
        If every file was skipped.
    """
    config = catalog.config.ingest
    for path in paths:
        check_readable(path)

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
    scan = scan_file(path)
    lineage = catalog.lineage()
    # Only the head's lineage counts: a file held by rolled-back versions alone comes in
    # again as a version of the new branch.
    held = catalog.one(
        "SELECT version FROM versions WHERE source_sha256 = ? AND list_contains(?, version)"
        " ORDER BY version LIMIT 1",
        [scan.sha256, lineage],
    )
    if held is not None:
        return FileResult(str(path), None, 0, 0, 0, {}, f"is already held by v{held}")

    layout = detect_layout(path, config)
    ingest_time = now()
    con = catalog.con
    _load(con, path, layout, config, scan, ingest_time.isoformat())

    malformed = catalog.one("SELECT count(DISTINCT line) FROM incr_load_rejects")
    valid = catalog.one("SELECT count(*) FROM checked WHERE reason IS NULL")
    invalid = catalog.one("SELECT count(*) FROM checked WHERE reason IS NOT NULL")
    read = valid + invalid + malformed
    expected = scan.lines - len(scan.empty_lines) - int(layout.header)
    if read == 0 and expected > 0:
        # NOTE: DuckDB can return nothing, without an error, for a file whose lines end
        # in both LF and CRLF.
        raise BadInput(
            path,
            f"no row could be read from its {scan.lines} lines; check that every line "
            "ends the same way (LF or CRLF)",
        )
    if read == 0:
        _drop_load_tables(con)
        return FileResult(str(path), None, 0, 0, 0, {}, "holds a header but no rows")
    if read != expected:
        log.warning(
            "%s: %d rows read from %d lines that should hold %d; a quoted value spans "
            "lines or a quote is unclosed, so line numbers after it may be off",
            path,
            read,
            scan.lines,
            expected,
        )
    if valid == 0:
        top = catalog.one(
            "SELECT reason FROM checked WHERE reason IS NOT NULL GROUP BY reason "
            "ORDER BY count(*) DESC LIMIT 1"
        ) or catalog.one("SELECT first(error_message) FROM incr_load_rejects")
        raise BadInput(path, f"no row passed validation ({read} read; e.g. {top}); {_hint(top)}")

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
    _insert_split_rejects(con, version, layout, config)
    # Reasons are counted without the bad value that follows their colon.
    reasons = dict(
        catalog.rows(
            "SELECT regexp_replace(reason, ':.*$', ''), count(*) FROM rejects "
            "WHERE version = ? GROUP BY 1 ORDER BY 2 DESC, 1",
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
            scan.size,
            scan.sha256,
            read,
            valid,
            rejected,
            __version__,
        ],
    )
    catalog.move_head(version)
    _drop_load_tables(con)
    seconds = time.perf_counter() - started
    details = {"layout": asdict(layout), "reasons": reasons}
    catalog.record_stage(version, "ingest", seconds, details)
    log.debug("ingested %s as v%d in %.3f s", path, version, seconds)
    return FileResult(str(path), version, read, valid, rejected, reasons)
