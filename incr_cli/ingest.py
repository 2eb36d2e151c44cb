"""Ingest: turn one file, or a folder or glob of files, into one new data version.

The files are read by DuckDB (never row by row in Python): every field of delimited text
as text, so that a bad value becomes a quarantined row with its line number and reason
instead of a failed load. Rows DuckDB cannot split into the expected columns are
quarantined too. Delimited text (plain or gzip-compressed) and Parquet take the same
checks; a Parquet column of integers (or doubles) is read as the numbers it holds, any
other as its text, so that a rating or a time is judged the same way whichever format
holds it. See :mod:`incr_cli.sources` for how each format is told.

Timestamps are stored in UTC without a zone: a value that names its zone or offset is
converted, a value without one is read in ``ingest.timezone`` (UTC unless set).

A row's value, stored in the ``rating`` column, depends on ``ingest.feedback``: the star
rating; the weight ``ingest.event_weights`` gives the row's event type; or the quantity,
made negative (a cancellation) when the row's invoice matches
``ingest.cancellation_pattern``.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from dataclasses import field as dataclass_field
from pathlib import Path

import duckdb

from . import __version__
from .catalog import CANONICAL_INT_SQL, Catalog, now
from .config import Columns, IngestConfig
from .errors import BadInput, NothingToDo
from .sources import (
    CSV,
    SNIFF_BYTES,
    FileFormat,
    FileScan,
    Source,
    expand,
    leading_empty_lines,
    open_text,
    scan_file,
)

log = logging.getLogger(__name__)

# The column holding each kind of feedback's value.
VALUE_FIELD = {"rating": "rating", "event": "event", "quantity": "quantity"}


def fields_of(feedback: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The fields a kind of feedback reads, in the order of a file without a header, and
    those it requires."""
    value = VALUE_FIELD[feedback]
    fields = ("user", "item", value, "timestamp")
    # An invoice is never assumed by position: only a header name or the config maps it.
    return (*fields, "invoice") if feedback == "quantity" else fields, ("user", "item", value)


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
    "event": {"event", "eventtype", "type", "action", "interaction"},
    "quantity": {"quantity", "qty", "units"},
    "invoice": {"invoice", "invoiceno", "invoiceid", "order", "orderid", "transactionid"},
}

SNIFF_LINES = 50

# Temporary tables of one load, in the catalog's connection.
LOAD_TABLES = ("staging", "incr_load_rejects", "incr_load_scans", "incr_load_errors")

# What each kind of row DuckDB could not split is reported as; {n} is the expected count.
SPLIT_ERRORS = {
    "TOO MANY COLUMNS": "row has more fields than the {n} expected",
    "MISSING COLUMNS": "row has fewer fields than the {n} expected",
    "UNQUOTED VALUE": "row has a stray or unclosed quote",
    "INVALID ENCODING": "row is not valid {encoding}",
    "LINE SIZE OVER MAXIMUM": "row is longer than the 2,000,000 bytes a line may hold",
}

DELIMITER_NAMES = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe"}


@dataclass(frozen=True)
class Layout:
    """How one file is laid out: its delimiter, header and the position of each field.

    ``columns`` are the header's names (none without a header) and ``types`` the column
    types of a Parquet file; the files of one delta must agree on all of it. A Parquet
    file has no delimiter and always names its columns.
    """

    delimiter: str
    header: bool
    n_columns: int
    positions: dict[str, int | None]  # 0-based column of each field, None if absent
    columns: tuple[str, ...] = ()
    types: tuple[str, ...] = ()

    def describe(self) -> str:
        """The columns in a few words, for a message comparing two files."""
        if self.types:
            shown = [f"{_shown(n)} {t}" for n, t in zip(self.columns, self.types, strict=True)]
        else:
            shown = [_shown(n) for n in self.columns] or [f"{self.n_columns} unnamed columns"]
        if self.delimiter:
            shown.append(f"{DELIMITER_NAMES.get(self.delimiter, repr(self.delimiter))}-separated")
        return ", ".join(shown)


@dataclass
class FileResult:
    """What ingesting one path (a file, a folder or a glob) did.

    Attributes
    ----------
    path
        The path as given.
    version
        The version it became, or None when it was skipped.
    rows_read, rows_accepted, rows_rejected
        Rows found (headers and empty lines aside), kept in ``ratings_raw`` and
        quarantined in ``rejects``.
    reasons
        Rejected rows per reason, the bad value left out, most frequent first.
    skipped
        Why the path was not ingested, or None.
    files
        The files read, in order: the path itself, or what a folder or glob holds.
    format
        ``csv``, ``csv.gz`` or ``parquet``; with files of both, ``csv,csv.gz``.
    """

    path: str
    version: int | None
    rows_read: int
    rows_accepted: int
    rows_rejected: int
    reasons: dict[str, int]
    skipped: str | None = None
    files: list[str] = dataclass_field(default_factory=list)
    format: str | None = None


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    return scan_file(path).sha256


def _shown(name: str) -> str:
    """A header name fit for a one-line message: control bytes escaped, length bounded."""
    text = name if name.isprintable() else ascii(name)
    return text if len(text) <= 40 else text[:37] + "..."


def _normalise(name: str) -> str:
    return "".join(ch for ch in name.strip().lower() if ch not in "_- ")


def _first_lines(path: Path, encoding: str, fmt: FileFormat = CSV) -> list[str]:
    try:
        with open_text(path, fmt) as handle:
            sample = handle.read(SNIFF_BYTES)
    except (OSError, EOFError) as exc:
        raise BadInput(path, f"cannot be read: {exc}") from exc
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


def detect_layout(path: Path, config: IngestConfig, fmt: FileFormat = CSV) -> Layout:
    """Find the delimiter, the header and where each field sits.

    Configured values win; otherwise the delimiter is sniffed from the first lines, a
    header is assumed when its first row names a known field or holds no number, and a
    file without a header is read as user, item, rating[, timestamp]. A header sets the
    number of columns; without one it is the most common count among the first lines, so
    that one malformed first row does not decide how the whole file is split. A Parquet
    file's columns are named in it, so only ``ingest.columns`` applies.
    """
    if fmt.kind == "parquet":
        return _parquet_layout(path, config)
    lines = _first_lines(path, config.encoding, fmt)
    if not lines:
        raise BadInput(path, "the file is empty; nothing to ingest")
    if not any(line.strip() for line in lines):
        # NOTE: judged on the first SNIFF_BYTES only, as the rest of the layout is.
        raise BadInput(path, "the file holds only blank lines; nothing to ingest")

    delimiter: str
    if config.delimiter != "auto":
        delimiter = config.delimiter
    else:
        try:
            sample = "\n".join(lines[:SNIFF_LINES])
            delimiter = csv.Sniffer().sniff(sample, delimiters=",\t;|").delimiter
        except csv.Error:
            tsv = ".tsv" in (suffix.lower() for suffix in path.suffixes)
            delimiter = "\t" if tsv else ","
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
    positions = _map_columns(
        path, config.columns, first if header else None, n_columns, config.feedback
    )
    return Layout(delimiter, header, n_columns, positions, tuple(first) if header else ())


def _parquet_layout(path: Path, config: IngestConfig) -> Layout:
    """The columns of a Parquet file, read from its footer, and where each field sits."""
    with duckdb.connect() as con:
        try:
            described = con.execute(
                "SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet(?))",
                [str(path)],
            ).fetchall()
        except duckdb.Error as exc:
            raise BadInput(path, f"cannot be read as Parquet: {_first_line(exc)}") from exc
    names = [name for name, _ in described]
    positions = _map_columns(path, config.columns, names, len(names), config.feedback)
    return Layout("", True, len(names), positions, tuple(names), tuple(t for _, t in described))


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _map_columns(
    path: Path,
    columns: Columns,
    names: list[str] | None,
    n_columns: int,
    feedback: str = "rating",
) -> dict[str, int | None]:
    fields, required = fields_of(feedback)
    positions: dict[str, int | None] = {}
    normalised = [_normalise(name) for name in names] if names else []
    for field in fields:
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
            default = fields.index(field) if field != "invoice" else n_columns
            positions[field] = default if default < n_columns else None

    for field, position in positions.items():
        # A header naming a field's column twice leaves the right one to chance.
        if names is None or position is None or isinstance(getattr(columns, field), int):
            continue
        if normalised.count(normalised[position]) > 1:
            raise BadInput(
                path,
                f"the header names column {_shown(names[position])!r} twice, so the "
                f"{field} column is ambiguous; rename one, or give "
                f"ingest.columns.{field} as a 1-based position",
            )
    missing = [field for field in required if positions[field] is None]
    if missing:
        found = ", ".join(map(_shown, names)) if names else f"{n_columns} unnamed columns"
        wanted = ", ".join(missing[:-1]) + " and " + missing[-1] if len(missing) > 1 else missing[0]
        plural = "s" if len(missing) > 1 else ""
        raise BadInput(
            path,
            f"cannot find the {wanted} column{plural} ({found}); set ingest.columns in the config",
        )
    taken = [p for p in positions.values() if p is not None]
    if len(set(taken)) != len(taken):
        raise BadInput(path, "two fields map to the same column; fix ingest.columns")
    return positions


def _us_sql(config: IngestConfig, seconds: str, text: str) -> str:
    """SQL of a row's time in microseconds since the epoch (UTC), NULL when unreadable.

    ``seconds`` reads the field as a number of seconds (NULL when it is not a number),
    ``text`` is the field's trimmed text; text is parsed only where a number is not the
    answer. The SQL must run with the session's ``TimeZone`` set to ``ingest.timezone``
    (see :func:`_utc_session`): text with a zone is read as TIMESTAMPTZ and turned into
    UTC, text without one is read in the session's zone, then turned into UTC.
    """
    # Epoch numbers are kept within years 1677-2262 so that microseconds fit in BIGINT.
    epoch = "CASE WHEN abs({s}) < 9.2e9 THEN CAST({s} * 1e6 AS BIGINT) END"
    # NOTE: a plain cast to TIMESTAMP would drop an offset such as +02:00 instead of
    # applying it.
    parsed = f"epoch_us(timezone('UTC', TRY_CAST({text} AS TIMESTAMPTZ)))"
    fmt = config.timestamp_format
    if fmt == "unix":
        return epoch.format(s=seconds)
    if fmt == "unix_ms":
        return epoch.format(s=f"({seconds} / 1000)")
    if fmt == "auto":
        return f"CASE WHEN {seconds} IS NOT NULL THEN {epoch.format(s=seconds)} ELSE {parsed} END"
    # strptime gives a TIMESTAMPTZ when the format has %z or %Z, else a TIMESTAMP, which
    # the cast reads in the session's zone.
    return f"epoch_us(timezone('UTC', CAST(try_strptime({text}, $fmt) AS TIMESTAMPTZ)))"


@contextmanager
def _utc_session(con: duckdb.DuckDBPyConnection, zone: str = "UTC") -> Iterator[None]:
    """Run with the session's ``TimeZone`` at ``zone`` (the zone of times written without
    one), then put the previous zone back."""
    try:
        previous = con.execute("SELECT current_setting('TimeZone')").fetchone()
    except duckdb.Error:  # pragma: no cover - without ICU every zone is UTC already
        yield
        return
    con.execute("SET TimeZone = ?", [zone])
    try:
        yield
    finally:
        # After a failed statement the transaction takes no more; the failure, raised on
        # from here, ends the command, and the zone with it.
        with suppress(duckdb.TransactionException):
            con.execute("SET TimeZone = ?", [previous[0] if previous else "UTC"])


# How each staged row of delimited text gets its line. Staged rows carry no line number,
# so it is rebuilt per file: the lines that give no staged row (the header, empty lines,
# rows DuckDB could not split) are counted off in order. The k-th such line of a file, at
# line L, has L - k staged rows of that file before it, so the staged row at 0-based
# position rn of its file lies after the largest k whose L - k <= rn, at line rn + 1 + k.
# Several lines in a row share one L - k; the largest k of each group is the one that
# counts. A file's rows follow those of the files before it in the delta.
GAPS_SQL = """
skipped AS (
    SELECT file, line, row_number() OVER (PARTITION BY file ORDER BY line) AS k
    FROM (
        SELECT file, line FROM incr_load_errors
        UNION
        SELECT unnest(CAST($skipped_files AS INTEGER[])), unnest(CAST($skipped AS BIGINT[]))
    )
),
gaps AS (
    SELECT file, line - k AS rows_before, max(k) AS k FROM skipped GROUP BY file, line - k
)"""

# The gaps themselves, few in a file of well-formed rows: its header and empty lines.
GAPS_LIST_SQL = "WITH " + GAPS_SQL + " SELECT file, rows_before, k FROM gaps ORDER BY ALL"

# With few gaps, a CASE over them ({gaps}) numbers the rows without a join, which keeps
# the staged order; with many, an ASOF join does.
CSV_NUMBERED_FEW_GAPS_SQL = """
numbered AS (
    SELECT *, CAST($offsets AS BIGINT[])[file] + rn + 1 + {gaps} AS line
    FROM (SELECT rowid - CAST($firsts AS BIGINT[])[file] AS rn, * FROM staging)
)"""
MAX_CASE_GAPS = 64

CSV_NUMBERED_SQL = (
    GAPS_SQL
    + """,
numbered AS (
    SELECT s.*, CAST($offsets AS BIGINT[])[s.file] + s.rn + 1 + coalesce(gaps.k, 0) AS line
    FROM (SELECT rowid - CAST($firsts AS BIGINT[])[file] AS rn, * FROM staging) s
    ASOF LEFT JOIN gaps ON s.file = gaps.file AND s.rn >= gaps.rows_before
)"""
)

# Parquet rows are staged with their lines.
PARQUET_NUMBERED_SQL = """
numbered AS (SELECT * FROM staging)"""

# A Parquet row's line is its 1-based row number, after the rows of the files before it;
# every column keeps its type (see _Field for how each is read).
PARQUET_READ_SQL = """
SELECT list_position($paths, filename) AS file,
       CAST($offsets AS BIGINT[])[list_position($paths, filename)] + file_row_number + 1
           AS line,
       {columns}
FROM read_parquet($paths, filename = true, file_row_number = true) AS t({columns})
"""

# One group of delimited files read alike, every field as text; `file` is each row's
# place in the delta's list of files (1-based), the order of rows within a file is kept.
CSV_READ_SQL = """
SELECT list_position($paths, filename) AS file, {columns} FROM read_csv(
    $files, delim = $delim, header = $header, columns = $columns, skip = $skip,
    quote = '"', escape = '"', auto_detect = false, encoding = $encoding,
    compression = $compression, filename = true,
    store_rejects = true, rejects_table = 'incr_load_rejects',
    rejects_scan = 'incr_load_scans')
"""

# The rows of a read ({source}), typed, checked and laid out as raw_rows stores them;
# {keep} names the read's columns that the judged rows keep. Most rows pass every check,
# so each field is first read the cheap way, as a number ({user_int}, {item_int}: an id
# whose text is a canonical integer, as most are; {value}; {us}: microseconds since the
# epoch). A field's text is trimmed and looked at again only in the rows where that gives
# nothing, since CASE and coalesce evaluate a branch only for the rows that reach it:
# trimming every field of every row cost about a sixth of ingest's CPU time.
JUDGE_SQL = """
WITH typed AS (
    SELECT *, {user_int} AS user_int, {item_int} AS item_int, {value} AS rating, {us} AS us
    FROM ({source})
),
ids AS (
    SELECT *,
        CASE WHEN user_int IS NULL THEN {user_id} END AS user_id,
        CASE WHEN item_int IS NULL THEN {item_id} END AS item_id
    FROM typed
),
judged AS (
    SELECT *,
        CASE
            WHEN user_int IS NULL AND user_id IS NULL THEN {no_user}
            WHEN item_int IS NULL AND item_id IS NULL THEN 'item id is missing'
            {value_checks}
            WHEN us IS NULL AND {ts_text} IS NULL THEN 'timestamp is missing'
            WHEN us IS NULL THEN 'timestamp cannot be read: ' || {ts_text}
        END AS reason
    FROM ids
),
stored AS (
    SELECT *,
        coalesce(user_int, {user_canonical}) AS user_n,
        coalesce(item_int, {item_canonical}) AS item_n,
        CAST(((us % 1000000) + 1000000) % 1000000 AS INTEGER) AS ts_us
    FROM judged
)
-- The row as text is only needed for the rejects, so only they build it.
SELECT {keep}, reason, CASE WHEN reason IS NOT NULL THEN {raw_sql} END AS raw,
       user_n, CASE WHEN user_n IS NULL THEN user_id END AS user_s,
       item_n, CASE WHEN item_n IS NULL THEN item_id END AS item_s,
       rating, (us - ts_us) // 1000000 AS ts_s, ts_us
FROM stored
"""

# The staged rows are already in the layout of raw_rows, so that each row's id text and
# time are turned into it once, while they are read.
CSV_STAGING_SQL = """
CREATE TEMP TABLE staging (
    file INTEGER, reason VARCHAR, raw VARCHAR, user_n BIGINT, user_s VARCHAR, item_n BIGINT,
    item_s VARCHAR, rating DOUBLE, ts_s BIGINT, ts_us INTEGER
)
"""

# The lines DuckDB could not split, each with its file's place in the delta.
LOAD_ERRORS_SQL = """
CREATE TEMP TABLE incr_load_errors AS
SELECT list_position($paths, s.file_path) AS file, r.line, r.column_idx, r.error_type,
       r.csv_line, r.error_message
FROM incr_load_rejects r JOIN incr_load_scans s USING (scan_id, file_id)
"""

NO_LOAD_ERRORS_SQL = """
CREATE TEMP TABLE incr_load_errors (
    file INTEGER, line BIGINT, column_idx BIGINT, error_type VARCHAR, csv_line VARCHAR,
    error_message VARCHAR
)
"""

# One reject per line DuckDB could not split; a line has one record per missing column.
# NOTE: an error of the whole line (too long) has no column, and arg_min skips null keys.
SPLIT_REJECTS_SQL = """
INSERT INTO rejects
SELECT $version, CAST($offsets AS BIGINT[])[file] + line,
       CASE arg_min(error_type, coalesce(column_idx, -1)) {cases}
            ELSE 'row cannot be read: '
                 || coalesce(lower(arg_min(error_type, coalesce(column_idx, -1))), 'unknown')
       END,
       trim(arg_min(csv_line, coalesce(column_idx, -1)), chr(13) || chr(10))
FROM incr_load_errors GROUP BY file, line
"""


@dataclass(frozen=True)
class _Delta:
    """The files of one new version, read: their bytes, layout and where each one starts.

    ``offsets`` holds, per file, the lines (rows, for Parquet) of the files before it, so
    that line L of file k is line ``offsets[k] + L`` of the delta; ``counts`` the lines
    (rows) of each file.
    """

    source: Source
    scans: list[FileScan]
    layout: Layout
    offsets: list[int]
    counts: list[int]

    @property
    def paths(self) -> list[str]:
        """The files as DuckDB is given them, and names them back."""
        return [str(file) for file in self.source.files]

    @property
    def parquet(self) -> bool:
        return self.source.format.kind == "parquet"

    @property
    def expected_rows(self) -> int:
        """The rows the files should hold: lines less empty ones and headers."""
        if self.parquet:
            return sum(self.counts)
        return sum(
            scan.lines - len(scan.empty_lines) - int(self.layout.header) for scan in self.scans
        )


@dataclass(frozen=True)
class _Staged:
    """What staging the rows found, before their lines are known.

    ``firsts`` holds each delimited file's first rowid in ``staging``, ``leading`` the
    empty lines skipped before each one's first line, and ``ordered`` whether the staged
    rows follow the files' order, so that their order is the lines' order. Parquet rows
    are staged with their lines: ``parquet`` is then true and the rest empty.
    """

    firsts: list[int]
    leading: list[int]
    ordered: bool
    parquet: bool = False


# Parquet column types read as numbers rather than as text: the same value either way.
# FLOAT and DECIMAL are read as text, as DuckDB prints them: 4.1 as a FLOAT is not the
# DOUBLE 4.1, and the text is what a user wrote.
PARQUET_INTEGERS = frozenset(
    {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER"}
)
PARQUET_NUMBERS = PARQUET_INTEGERS | {"DOUBLE"}


@dataclass(frozen=True)
class _Field:
    """How the judge reads one field: its text, and whether it is stored as a number."""

    column: str | None  # c0, c1, ... or None when the file lacks the field
    type: str = "VARCHAR"

    @property
    def text(self) -> str:
        """The field as text, as the file holds it."""
        if self.column is None:
            return "NULL"
        return self.column if self.type == "VARCHAR" else f"CAST({self.column} AS VARCHAR)"

    @property
    def trimmed(self) -> str:
        """The field's trimmed text, NULL when empty."""
        return f"nullif(trim({self.text}), '')" if self.column else "NULL"

    def integer(self) -> str:
        """The field as an id's integer when its text is a canonical one, else NULL."""
        if self.column is None:
            return "CAST(NULL AS BIGINT)"
        if self.type in PARQUET_INTEGERS:
            return f"CAST({self.column} AS BIGINT)"
        return CANONICAL_INT_SQL.format(text=self.text)

    def number(self) -> str:
        """The field as a DOUBLE, NULL when its text is not a number."""
        if self.column is not None and self.type in PARQUET_NUMBERS:
            return f"CAST({self.column} AS DOUBLE)"
        # DuckDB's cast skips the white space around a number, as trimming would.
        return f"TRY_CAST({self.text} AS DOUBLE)"


def _judge_sql(
    layout: Layout, config: IngestConfig, ingest_time: str, parquet: bool
) -> tuple[str, dict[str, object]]:
    """:data:`JUDGE_SQL` for a layout, its ``{source}`` and ``{keep}`` left to fill in."""

    def field(name: str) -> _Field:
        position = layout.positions.get(name)
        if position is None:
            return _Field(None)
        kind = layout.types[position] if parquet else "VARCHAR"
        return _Field(f"c{position}", kind)

    user, item, ts = field("user"), field("item"), field("timestamp")
    params: dict[str, object] = {}
    value_sql, value_checks = _value_sql(
        field(VALUE_FIELD[config.feedback]), field("invoice"), config, params
    )
    us_sql, ts_text = _us_sql(config, ts.number(), ts.trimmed), ts.trimmed
    if "$fmt" in us_sql:
        params["fmt"] = config.timestamp_format
    if ts.column is None:
        # NOTE: a file without a timestamp column gets the time it was ingested.
        ts_text = "$ingest_time"
        us_sql = "epoch_us(CAST($ingest_time AS TIMESTAMP))"
        params["ingest_time"] = ingest_time
    if parquet:
        # A Parquet row has no text of its own: its columns, named, as JSON.
        pairs = []
        for i, name in enumerate(layout.columns):
            params[f"name{i}"] = name
            pairs.append(f"$name{i}, {_Field(f'c{i}', layout.types[i]).text}")
        raw_sql = f"CAST(json_object({', '.join(pairs)}) AS VARCHAR)"
    else:
        params["delim"] = layout.delimiter
        raw_cols = ", ".join(f"coalesce(c{i}, '')" for i in range(layout.n_columns))
        raw_sql = f"concat_ws($delim, {raw_cols})"
    sql = JUDGE_SQL.format(
        source="{source}",
        keep="{keep}",
        user_int=user.integer(),
        item_int=item.integer(),
        value=value_sql,
        us=us_sql,
        user_id=_id_sql(user.trimmed, config),
        item_id=_id_sql(item.trimmed, config),
        value_checks=value_checks,
        ts_text=ts_text,
        user_canonical=CANONICAL_INT_SQL.format(text="user_id"),
        item_canonical=CANONICAL_INT_SQL.format(text="item_id"),
        raw_sql=raw_sql,
        # A shop's row without a customer is a visit nobody can be recommended to.
        no_user="'user id is missing'"
        if config.feedback == "rating"
        else "'user id is missing (anonymous)'",
    )
    return sql, params


# An integer id written as a float (17850.0), and the integer it stands for.
FLOAT_ID = r"^(-?[0-9]+)\.0+$"


def normalise_id(text: str, config: IngestConfig) -> str:
    """An id typed by hand read as ingest reads it from a file: trimmed, and ``17850.0``
    as ``17850`` when ``ingest.normalise_float_ids`` is set (see :func:`_id_sql`)."""
    text = text.strip()
    if config.normalise_float_ids:
        text = re.sub(FLOAT_ID, r"\1", text)
    return text


def _id_sql(text: str, config: IngestConfig) -> str:
    """SQL of an id from its trimmed text; ``17850.0`` is read as ``17850`` if so set."""
    if not config.normalise_float_ids:
        return text
    # NOTE: a spreadsheet or pandas writes the integer ids of a column with blanks as
    # floats; only a whole number with a zero fraction is changed.
    return (
        f"CASE WHEN contains({text}, '.') "
        f"THEN regexp_replace({text}, '{FLOAT_ID}', '\\1') ELSE {text} END"
    )


def _value_sql(
    value: _Field, invoice: _Field, config: IngestConfig, params: dict[str, object]
) -> tuple[str, str]:
    """SQL of a row's value, and the CASE branches that reject a row for its value (they
    see it as ``rating``); binds what they need into ``params``."""
    text = value.trimmed
    if config.feedback == "event":
        # An event type's weight; a type the config does not weigh is quarantined.
        whens = []
        for i, (event, weight) in enumerate((config.event_weights or {}).items()):
            params[f"event{i}"], params[f"weight{i}"] = event, weight
            whens.append(f"WHEN $event{i} THEN CAST($weight{i} AS DOUBLE)")
        cases = f"CASE {text} {' '.join(whens)} END"
        checks = f"""WHEN {text} IS NULL THEN 'event type is missing'
            WHEN rating IS NULL
                THEN 'event type is not in ingest.event_weights: ' || {text}"""
        return cases, checks
    number = value.number()
    if config.feedback == "quantity":
        if invoice.column is not None:
            # A cancellation's quantity is negative, whichever sign the file gives it.
            params["cancelled"] = config.cancellation_pattern
            number = (
                f"CASE WHEN regexp_matches(coalesce({invoice.trimmed}, ''), $cancelled) "
                f"THEN -abs({number}) ELSE {number} END"
            )
        # Quantities have no range: a negative one is a cancellation, which clean handles.
        checks = f"""WHEN rating IS NULL AND {text} IS NULL THEN 'quantity is missing'
            WHEN rating IS NULL OR isnan(rating) OR isinf(rating)
                THEN 'quantity is not a number: ' || {text}
            WHEN rating = 0 THEN 'quantity is zero: ' || {text}"""
        return number, checks
    params |= {
        "rmin": config.rating_min,
        "rmax": config.rating_max,
        "range": f"[{config.rating_min:g}, {config.rating_max:g}]",
    }
    checks = f"""WHEN rating IS NULL AND {text} IS NULL THEN 'rating is missing'
            WHEN rating IS NULL OR isnan(rating) OR isinf(rating)
                THEN 'rating is not a number: ' || {text}
            WHEN rating < $rmin OR rating > $rmax
                THEN 'rating is outside ' || $range || ': ' || {text}"""
    return number, checks


def _bound(sql: str, params: dict[str, object]) -> dict[str, object]:
    """The parameters a statement names: DuckDB refuses to bind any other."""
    return {key: value for key, value in params.items() if re.search(rf"\${key}\b", sql)}


def _stage_csv(
    con: duckdb.DuckDBPyConnection,
    source: Source,
    layout: Layout,
    config: IngestConfig,
    leading: list[int],
    ingest_time: str,
) -> _Staged:
    """Read the delimited files into ``staging``, each row typed and judged."""
    paths = [str(file) for file in source.files]
    names = {f"c{i}": "VARCHAR" for i in range(layout.n_columns)}
    judge, params = _judge_sql(layout, config, ingest_time, parquet=False)
    read = CSV_READ_SQL.format(columns=", ".join(names))
    sql = "INSERT INTO staging " + judge.format(source=read, keep="file")
    con.execute(CSV_STAGING_SQL)
    # One read_csv over each list of files read alike. NOTE: DuckDB would take an empty
    # first line for the header, so leading empty lines are skipped (its line numbers
    # still count them), and the number skipped is one setting for all files of a read.
    keys = [(fmt.gzip, n) for fmt, n in zip(source.formats, leading, strict=True)]
    groups: dict[tuple[bool, int], list[str]] = {}
    for path, key in zip(paths, keys, strict=True):
        groups.setdefault(key, []).append(path)
    with _utc_session(con, config.timezone):
        for (gzipped, skip), files in groups.items():
            params |= {
                "paths": paths,
                "files": files,
                "header": layout.header,
                "columns": names,
                "skip": skip,
                "encoding": config.encoding,
                "compression": "gzip" if gzipped else "none",
            }
            try:
                con.execute(sql, _bound(sql, params))
            except duckdb.Error as exc:
                where = source.given if len(files) == len(paths) else files[0]
                why = _first_line(exc)
                if "state machine" in why:  # what DuckDB says of LF and CRLF mixed
                    why += "; check that every line ends the same way (LF or CRLF)"
                raise BadInput(where, f"cannot be read as delimited text: {why}") from exc
    con.execute(LOAD_ERRORS_SQL, {"paths": paths})

    # Each file's rows are staged together and in order, from its first rowid on.
    firsts = [0] * len(paths)
    for file, first in con.execute("SELECT file, min(rowid) FROM staging GROUP BY file").fetchall():
        firsts[file - 1] = first
    # The files were staged group by group: in their own order unless a group recurs.
    ordered = all(key == keys[i - 1] or key not in keys[:i] for i, key in enumerate(keys) if i)
    return _Staged(firsts, leading, ordered)


def _stage_parquet(
    con: duckdb.DuckDBPyConnection,
    source: Source,
    layout: Layout,
    config: IngestConfig,
    offsets: list[int],
    ingest_time: str,
) -> _Staged:
    """Read the Parquet files into ``staging``, each row typed, judged and numbered."""
    columns = [f"c{i}" for i in range(layout.n_columns)]
    judge, params = _judge_sql(layout, config, ingest_time, parquet=True)
    read = PARQUET_READ_SQL.format(columns=", ".join(columns))
    sql = "CREATE TEMP TABLE staging AS " + judge.format(source=read, keep="file, line")
    params |= {"paths": [str(file) for file in source.files], "offsets": offsets}
    # NOTE: a Parquet time with a zone turns into text in the session's zone: UTC.
    with _utc_session(con, config.timezone):
        try:
            con.execute(sql, _bound(sql, params))
        except duckdb.Error as exc:
            raise BadInput(source.given, f"cannot be read as Parquet: {_first_line(exc)}") from exc
    con.execute(NO_LOAD_ERRORS_SQL)
    return _Staged([], [], len(source.files) == 1, parquet=True)


def _numbered(
    con: duckdb.DuckDBPyConnection, delta: _Delta, staged: _Staged
) -> tuple[str, dict[str, object], bool]:
    """The CTE ``numbered``: the staged rows with their lines; its parameters; and
    whether it keeps the rows in the order of their lines."""
    if staged.parquet:
        return PARQUET_NUMBERED_SQL, {}, staged.ordered
    skipped_files: list[int] = []
    skipped: list[int] = []
    for index, (scan, leading) in enumerate(zip(delta.scans, staged.leading, strict=True), 1):
        lines = list(scan.empty_lines)
        if delta.layout.header:
            lines.append(leading + 1)
        skipped_files += [index] * len(lines)
        skipped += lines
    params: dict[str, object] = {
        "firsts": staged.firsts,
        "skipped_files": skipped_files,
        "skipped": skipped,
        "offsets": delta.offsets,
    }
    gaps = con.execute(
        GAPS_LIST_SQL, {"skipped_files": skipped_files, "skipped": skipped}
    ).fetchall()
    if len(gaps) > MAX_CASE_GAPS:
        return CSV_NUMBERED_SQL, params, False
    # The largest gap at or before a row's position decides its line: the latest first.
    whens = []
    for i, (file, rows_before, k) in enumerate(sorted(gaps, key=lambda g: (g[0], -g[1]))):
        params |= {f"gf{i}": file, f"gr{i}": rows_before, f"gk{i}": k}
        whens.append(f"WHEN file = $gf{i} AND rn >= $gr{i} THEN $gk{i}")
    case = f"CASE {' '.join(whens)} ELSE 0 END" if whens else "0"
    return CSV_NUMBERED_FEW_GAPS_SQL.format(gaps=case), params, staged.ordered


def _hint(reason: str | None) -> str:
    """What to change when no row of a file passed, judged by its most common reason."""
    reason = reason or ""
    if reason.startswith("timestamp"):
        # Milliseconds since the epoch are the usual case: auto reads only seconds.
        return "set ingest.timestamp_format in the config (unix, unix_ms or a strptime format)"
    if reason.startswith("rating is outside"):
        return "set ingest.rating_min and ingest.rating_max in the config"
    if reason.startswith("event type is not in"):
        return "give every event type a weight in ingest.event_weights"
    return "check the delimiter and ingest.columns in the config"


def _drop_load_tables(con: duckdb.DuckDBPyConnection) -> None:
    # The temporary tables hold a whole delta; they go as soon as it is stored.
    for table in LOAD_TABLES:
        con.execute(f"DROP TABLE IF EXISTS {table}")


def _insert_split_rejects(
    con: duckdb.DuckDBPyConnection, version: int, delta: _Delta, config: IngestConfig
) -> None:
    """Quarantine the lines DuckDB could not split, one reject per line."""
    params: dict[str, object] = {"version": version, "offsets": delta.offsets}
    cases = []
    # Error kinds and reasons are bound; only their placeholders are written into the SQL.
    for i, (kind, text) in enumerate(SPLIT_ERRORS.items()):
        params[f"kind{i}"] = kind
        params[f"reason{i}"] = text.format(n=delta.layout.n_columns, encoding=config.encoding)
        cases.append(f"WHEN $kind{i} THEN $reason{i}")
    con.execute(SPLIT_REJECTS_SQL.format(cases=" ".join(cases)), params)


def ingest_files(
    catalog: Catalog,
    paths: Sequence[Path],
    progress: Callable[[str], None] | None = None,
) -> list[FileResult]:
    """Ingest each path as a new version, in one transaction for all of them.

    A path names a file, or a folder or glob pattern whose files, in sorted order, make
    one version together. Paths whose files a version on the head's lineage already
    holds, and files with a header but no rows, are skipped with the reason; if every
    path is skipped the command has nothing to do. A path that cannot be read at all
    stops the command and nothing is ingested.

    Parameters
    ----------
    catalog
        A catalog open for writing; each new version becomes the head in turn.
    paths
        CSV, TSV (either perhaps gzip-compressed) or Parquet files, folders of them or
        glob patterns, oldest first.
    progress
        Called with each path before it is read.

    Returns
    -------
    list of FileResult
        One per path, in order.

    Raises
    ------
    PathNotFound
        If a path is missing (a usage error).
    UsageError
        If a folder is empty or a glob matches nothing.
    BadInput
        If a file is unreadable, compressed other than with gzip, binary, empty, cannot
        be split into fields, lacks a required column, or holds no valid row, or the
        files of a folder or glob differ in format or columns, or some of them (not
        all) are already held. The catalog is left as it was.
    NothingToDo
        If every path was skipped.
    """
    config = catalog.config.ingest
    sources = [expand(path, config.format) for path in paths]

    results: list[FileResult] = []
    with catalog.transaction():
        for source in sources:
            if progress:
                progress(str(source.given))
            results.append(_ingest_one(catalog, source, config))
    if all(result.skipped for result in results):
        raise NothingToDo(
            "nothing ingested: " + "; ".join(f"{r.path} {r.skipped}" for r in results)
        )
    return results


# The version on the lineage that holds a file: one made of it alone, or of a group of
# files one of which it is.
HELD_SQL = """
SELECT min(version) FROM (
    SELECT version FROM versions WHERE source_sha256 = $sha
    UNION ALL
    SELECT version FROM stages WHERE stage = 'ingest'
        AND list_contains(json_extract_string(details, '$.files[*].sha256'), $sha)
) WHERE list_contains($lineage, version)
"""


def _held_by(catalog: Catalog, scans: list[FileScan]) -> list[int | None]:
    """Per file, the version on the head's lineage that already holds its bytes, if any."""
    # Only the head's lineage counts: a file held by rolled-back versions alone comes in
    # again as a version of the new branch.
    lineage = catalog.lineage()
    return [catalog.one(HELD_SQL, {"sha": scan.sha256, "lineage": lineage}) for scan in scans]


def _check_files(source: Source, scans: list[FileScan], held: list[int | None]) -> None:
    """Refuse a group of files some of which (not all) are held, or held twice."""
    for file, version in zip(source.files, held, strict=True):
        if version is not None:
            raise BadInput(
                file,
                f"is already held by v{version}, but other files of {source.given} are "
                "not; move it out, or ingest the new files by name",
            )
    seen: dict[str, Path] = {}
    for file, scan in zip(source.files, scans, strict=True):
        if scan.sha256 in seen:
            raise BadInput(
                file, f"holds the same bytes as {seen[scan.sha256].name}; remove one of them"
            )
        seen[scan.sha256] = file


def _same_layout(source: Source, layouts: list[Layout]) -> Layout:
    """The one layout of a group of files, or BadInput naming the first file that differs."""
    first = layouts[0]
    for file, layout in zip(source.files[1:], layouts[1:], strict=True):
        if layout != first:
            raise BadInput(
                file,
                f"has columns ({layout.describe()}) unlike {source.files[0].name} "
                f"({first.describe()}); the files of a folder or glob must share one layout",
            )
    return first


def _parquet_rows(con: duckdb.DuckDBPyConnection, source: Source) -> list[int]:
    """The number of rows of each Parquet file, from the files' footers."""
    paths = [str(file) for file in source.files]
    try:
        counts = dict(
            con.execute(
                "SELECT file_name, sum(num_rows) FROM parquet_file_metadata(?) GROUP BY 1",
                [paths],
            ).fetchall()
        )
    except duckdb.Error as exc:
        raise BadInput(source.given, f"cannot be read as Parquet: {_first_line(exc)}") from exc
    return [int(counts.get(path, 0)) for path in paths]


def _aborted(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether an earlier failure left the transaction unable to run anything more."""
    try:
        con.execute("SELECT 1").fetchall()
    except duckdb.TransactionException:
        return True
    return False


def _combined_sha256(scans: list[FileScan]) -> str:
    """One file's sha256, or for several the sha256 of their digests, one a line, in order."""
    if len(scans) == 1:
        return scans[0].sha256
    return hashlib.sha256("".join(f"{s.sha256}\n" for s in scans).encode()).hexdigest()


def _ingest_one(catalog: Catalog, source: Source, config: IngestConfig) -> FileResult:
    started = time.perf_counter()
    path = source.given
    files = [str(file) for file in source.files]
    formats = ",".join(sorted({fmt.name for fmt in source.formats}))
    pairs = list(zip(source.files, source.formats, strict=True))
    con = catalog.con
    _drop_load_tables(con)
    ingest_time = now()
    stamp = ingest_time.isoformat()

    # The pass over every byte (hash, lines) runs in a thread while DuckDB reads the rows:
    # both release the GIL for most of their work. Its findings are checked first, as if
    # it had run first: a file already held is skipped whatever else is wrong with it.
    with ThreadPoolExecutor(max_workers=1) as pool:
        scanning = pool.submit(lambda: [scan_file(file, fmt=fmt) for file, fmt in pairs])
        early: BaseException | None = None
        staged: _Staged | None = None
        try:
            layouts = [detect_layout(file, config, fmt) for file, fmt in pairs]
            layout = _same_layout(source, layouts)
            if source.format.kind == "parquet":
                counts = _parquet_rows(con, source)
                offsets = [sum(counts[:i]) for i in range(len(counts))]
                staged = _stage_parquet(con, source, layout, config, offsets, stamp)
            else:
                leading = [leading_empty_lines(file, fmt) for file, fmt in pairs]
                staged = _stage_csv(con, source, layout, config, leading, stamp)
        except Exception as exc:  # noqa: BLE001 - raised below, after the scan's own errors
            early = exc
        scans = scanning.result()
    if early is not None and _aborted(con):
        # The read failed inside DuckDB, which then refuses every statement until the
        # transaction is rolled back: its error is the one to report.
        raise early
    held = _held_by(catalog, scans)
    if all(version is not None for version in held):
        _drop_load_tables(con)
        names = ", ".join(f"v{v}" for v in sorted({v for v in held if v is not None}))
        return FileResult(
            str(path), None, 0, 0, 0, {}, f"is already held by {names}", files, formats
        )
    if source.grouped:
        _check_files(source, scans, held)
    if early is not None:
        raise early

    assert staged is not None
    if not staged.parquet:
        counts = [scan.lines for scan in scans]
        # NOTE: the head alone told how many empty lines lead each file; the full scan
        # must agree, or the rows are staged again with its counts.
        leading = [scan.leading_empty_lines for scan in scans]
        if leading != staged.leading:
            _drop_load_tables(con)
            staged = _stage_csv(con, source, layout, config, leading, stamp)
    offsets = [sum(counts[:i]) for i in range(len(counts))]
    delta = _Delta(source, scans, layout, offsets, counts)
    numbered, numbering, ordered = _numbered(con, delta, staged)

    malformed = catalog.one("SELECT count(DISTINCT (file, line)) FROM incr_load_errors")
    valid = catalog.one("SELECT count(*) FROM staging WHERE reason IS NULL")
    invalid = catalog.one("SELECT count(*) FROM staging WHERE reason IS NOT NULL")
    read = valid + invalid + malformed
    expected = delta.expected_rows
    if read == 0 and expected > 0:
        # NOTE: DuckDB can return nothing, without an error, for a file whose lines end
        # in both LF and CRLF.
        lines = sum(scan.lines for scan in scans)
        raise BadInput(
            path,
            f"no row could be read from its {lines} lines; check that every line "
            "ends the same way (LF or CRLF)",
        )
    if read == 0:
        _drop_load_tables(con)
        empty = "holds a header but no rows" if layout.header and not delta.parquet else ""
        if source.grouped or not empty:
            empty = "holds no rows"
        return FileResult(str(path), None, 0, 0, 0, {}, empty, files, formats)
    if read != expected:
        log.warning(
            "%s: %d rows read from %d lines that should hold %d; a quoted value spans "
            "lines or a quote is unclosed, so line numbers after it may be off",
            path,
            read,
            sum(scan.lines for scan in scans),
            expected,
        )
    if valid == 0:
        top = catalog.one(
            "SELECT reason FROM staging WHERE reason IS NOT NULL GROUP BY reason "
            "ORDER BY count(*) DESC LIMIT 1"
        ) or catalog.one("SELECT first(error_message) FROM incr_load_errors")
        raise BadInput(path, f"no row passed validation ({read} read; e.g. {top}); {_hint(top)}")

    version = catalog.next_version()
    # Rows are stored in the order of their lines; sorting them is needed only when
    # checking them did not keep that order.
    numbering["version"] = version
    for sql in (
        f"INSERT INTO raw_rows WITH {numbered} SELECT $version, line, user_n, user_s, item_n, "
        "item_s, rating, ts_s, ts_us FROM numbered WHERE reason IS NULL"
        + ("" if ordered else " ORDER BY line"),
        f"INSERT INTO rejects WITH {numbered} "
        "SELECT $version, line, reason, raw FROM numbered WHERE reason IS NOT NULL",
    ):
        con.execute(sql, _bound(sql, numbering))
    _insert_split_rejects(con, version, delta, config)
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
            sum(scan.size for scan in scans),
            _combined_sha256(scans),
            read,
            valid,
            rejected,
            __version__,
        ],
    )
    catalog.move_head(version)
    _drop_load_tables(con)
    seconds = time.perf_counter() - started
    details = {
        "layout": asdict(layout),
        "reasons": reasons,
        "format": formats,
        # Which file each line of the version comes from.
        "files": [
            {
                "path": str(file.resolve()),
                "format": fmt.name,
                "size": scan.size,
                "sha256": scan.sha256,
                "lines": [offset + 1, offset + count],
            }
            for file, fmt, scan, offset, count in zip(
                source.files, source.formats, scans, offsets, counts, strict=True
            )
        ],
    }
    catalog.record_stage(version, "ingest", seconds, details)
    log.debug("ingested %s (%d files) as v%d in %.3f s", path, len(files), version, seconds)
    return FileResult(str(path), version, read, valid, rejected, reasons, None, files, formats)
