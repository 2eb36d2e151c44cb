"""What ingest reads: the files behind each path given, their format, and their bytes.

A path names one file, a folder (every visible file directly inside it) or a glob pattern;
a folder or a glob becomes one delta made of all its files, in sorted order. Each file's
format is told from its first bytes and its name: Parquet starts with ``PAR1``, gzip with
``1f 8b``, anything else is read as delimited text. Gzip is a property of a text file, not a
format of its own: a folder may mix ``.csv`` and ``.csv.gz`` files, but not CSV and Parquet.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from .errors import BadInput, PathNotFound, UsageError

FormatSetting = Literal["auto", "csv", "parquet"]

SNIFF_BYTES = 64 * 1024
SCAN_BYTES = 1 << 20
GZIP_CHUNK = 64 * 1024
UTF8_BOM = b"\xef\xbb\xbf"
GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
PARQUET_SUFFIXES = (".parquet", ".pq")
GLOB_CHARS = re.compile(r"[*?\[]")

# Compressions DuckDB's CSV reader cannot open by itself, by their leading bytes.
UNSUPPORTED_COMPRESSION = {
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"PK\x03\x04": "zip",
}

# A newline followed by another one (LF or CRLF) ends the line before an empty line.
_BEFORE_EMPTY_LINE = re.compile(rb"\n(?=\r?\n)")


@dataclass(frozen=True)
class FileFormat:
    """How one file is stored: ``csv`` (delimited text, perhaps gzip-compressed) or ``parquet``."""

    kind: Literal["csv", "parquet"]
    gzip: bool = False

    @property
    def name(self) -> str:
        """The short name recorded in the catalog: ``csv``, ``csv.gz`` or ``parquet``."""
        return "csv.gz" if self.gzip else self.kind

    def __str__(self) -> str:
        if self.kind == "parquet":
            return "Parquet"
        return "gzip-compressed delimited text" if self.gzip else "delimited text"


CSV = FileFormat("csv")
PARQUET = FileFormat("parquet")


@dataclass(frozen=True)
class Source:
    """One path as given and the files it stands for, in the order they are read.

    ``grouped`` is true for a folder or a glob, whose files make one delta together.
    """

    given: Path
    files: tuple[Path, ...]
    formats: tuple[FileFormat, ...]
    grouped: bool = False

    @property
    def format(self) -> FileFormat:
        """The format of the first file; csv and csv.gz files may be mixed."""
        return self.formats[0]


@dataclass(frozen=True)
class FileScan:
    """What one pass over a file's bytes finds.

    Attributes
    ----------
    sha256
        Hex digest of the whole file, as stored (compressed, for a gzip file).
    size
        Length in bytes, as stored.
    lines
        Number of lines of its text, the last one counted whether or not a newline ends
        it; 0 when the lines were not counted (Parquet).
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


def expand(path: Path, setting: FormatSetting = "auto") -> Source:
    """The files a path stands for, each checked readable, with its format.

    Raises
    ------
    PathNotFound
        If the path does not exist and is not a glob pattern.
    UsageError
        If a folder holds no file, or a glob matches none.
    BadInput
        If a file cannot be read, is of an unsupported kind, or a folder or glob mixes
        Parquet with delimited text.
    """
    text = str(path)
    if text == "-":
        # NOTE: the file is read more than once (hash, layout, rows), which a stream
        # cannot be.
        raise BadInput(
            path, "standard input is not supported; write the data to a file first and ingest it"
        )
    if path.is_dir():
        # Hidden files and those starting with '_' (such as Spark's _SUCCESS) are markers,
        # not data.
        files = sorted(
            p for p in path.iterdir() if p.is_file() and not p.name.startswith((".", "_"))
        )
        if not files:
            raise UsageError(
                f"{path}: the folder holds no files to ingest; check the path, or wait "
                "until the files have arrived"
            )
        grouped = True
    elif not path.exists() and not path.is_symlink() and GLOB_CHARS.search(text):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        if not files:
            raise UsageError(
                f"{path}: no file matches this pattern; check it (quoted, so that the "
                "shell leaves it to incr)"
            )
        grouped = True
    else:
        files, grouped = [path], False

    formats = [check_readable(file, setting) for file in files]
    for file, fmt in zip(files, formats, strict=True):
        if fmt.kind != formats[0].kind:
            raise BadInput(
                file,
                f"is {fmt} but {files[0].name} is {formats[0]}; the files of a folder or "
                "glob must all be Parquet or all delimited text",
            )
    return Source(path, tuple(files), tuple(formats), grouped)


def check_readable(path: Path, setting: FormatSetting = "auto") -> FileFormat:
    """Refuse a path that is not a readable data file, before any work; else its format.

    Raises
    ------
    PathNotFound
        If the path does not exist.
    BadInput
        If the path is not a regular file (a pipe or a device), cannot be opened, is
        compressed other than with gzip, is named ``.gz`` but is not gzip, is not of the
        configured format, or holds NUL bytes where text is expected (binary data, or
        text in UTF-16).
    """
    if not path.exists():
        raise PathNotFound(path)
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

    fmt = detect_format(path, head, setting)
    if fmt.kind == "parquet":
        return fmt
    text = head
    if fmt.gzip:
        text = _inflated_head(path)
    if b"\x00" in text:
        where = f"at offset {text.index(0)}" + (" once decompressed" if fmt.gzip else "")
        raise BadInput(
            path,
            f"holds a NUL byte ({where}), so it is binary data or text in UTF-16, not "
            "delimited text; save it as UTF-8 or Latin-1 text",
        )
    return fmt


def detect_format(path: Path, head: bytes, setting: FormatSetting = "auto") -> FileFormat:
    """The format of a file from its first bytes and its name, or ``setting`` if not auto.

    Examples
    --------
    >>> detect_format(Path("r.csv"), b"PAR1...")
    FileFormat(kind='parquet', gzip=False)
    >>> detect_format(Path("r.bin"), b"\\x1f\\x8b\\x08...")
    FileFormat(kind='csv', gzip=True)
    >>> detect_format(Path("r.tsv"), b"user\\titem")
    FileFormat(kind='csv', gzip=False)
    """
    suffixes = [s.lower() for s in path.suffixes]
    is_parquet = head.startswith(PARQUET_MAGIC)
    if setting == "parquet" and not is_parquet:
        raise BadInput(
            path,
            "is not a Parquet file (it does not start with PAR1) but ingest.format is "
            "parquet; set ingest.format to auto or csv",
        )
    if setting == "csv" and is_parquet:
        raise BadInput(
            path, "is a Parquet file but ingest.format is csv; set ingest.format to auto"
        )
    if is_parquet:
        return PARQUET
    if setting == "auto" and suffixes and suffixes[-1] in PARQUET_SUFFIXES:
        raise BadInput(
            path,
            f"is named {suffixes[-1]} but is not a Parquet file (it does not start with "
            "PAR1); rename it, or set ingest.format: csv to read it as delimited text",
        )
    if head.startswith(GZIP_MAGIC):
        return FileFormat("csv", gzip=True)
    if suffixes and suffixes[-1] == ".gz":
        raise BadInput(
            path,
            "is named .gz but is not gzip-compressed (it does not start with gzip's bytes "
            "1f 8b); rename it without .gz, or compress it with gzip",
        )
    for magic, kind in UNSUPPORTED_COMPRESSION.items():
        if head.startswith(magic):
            raise BadInput(
                path,
                f"is {kind}-compressed, which only gzip may be; decompress it, or compress it "
                "with gzip, and ingest the result",
            )
    return CSV


def _inflated_head(path: Path) -> bytes:
    """The first bytes of a gzip file's text, or BadInput if it cannot be decompressed."""
    try:
        with gzip.open(path, "rb") as handle:
            return handle.read(SNIFF_BYTES)
    except (OSError, EOFError, zlib.error) as exc:
        raise BadInput(path, f"cannot be decompressed: {_gzip_problem(exc)}") from exc


def _gzip_problem(exc: BaseException) -> str:
    if isinstance(exc, EOFError):
        return "the gzip data ends early (the file is truncated); copy it again"
    return f"{exc}; it is not valid gzip data, so copy or compress it again"


def open_text(path: Path, fmt: FileFormat) -> BinaryIO:
    """The file's text as a binary stream, decompressed for a gzip file."""
    if fmt.gzip:
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


# Empty lines (LF or CRLF) at the very start of a text, after any byte order mark.
_LEADING_EMPTY_LINES = re.compile(rb"(?:\r?\n)*")


def leading_empty_lines(path: Path, fmt: FileFormat = CSV) -> int:
    """How many empty lines come before a text's first line that holds anything.

    The same count as :attr:`FileScan.leading_empty_lines`, from the file's first bytes
    only, so that it is known before the whole file has been scanned.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = Path(tmp) / "f.csv"
    ...     _ = path.write_bytes(b"\\xef\\xbb\\xbf\\n\\r\\nu,i,r\\n\\n1,2,3\\n")
    ...     leading_empty_lines(path)
    2
    """
    head = b""
    with open_text(path, fmt) as handle:
        while True:
            chunk = handle.read(SNIFF_BYTES)
            head += chunk
            text = head.removeprefix(UTF8_BOM)
            match = _LEADING_EMPTY_LINES.match(text)
            assert match is not None  # the pattern matches the empty string
            # A run that reaches the end of what was read may go on (or end in a '\r').
            if not chunk or match.end() < len(text) - 1:
                return match.group().count(b"\n")


class _LineCounter:
    """Counts lines and finds the empty ones in text fed to it in pieces of any size.

    Lines end with LF or CRLF. A UTF-8 byte order mark before the first line is ignored,
    as DuckDB ignores it.
    """

    def __init__(self) -> None:
        self.empty: list[int] = []
        # A virtual newline before the first byte lets an empty first line be found like
        # any other; it is newline number 0, so the count of newlines before `tail`
        # starts at -1.
        self.tail = b"\n"
        self.newlines_before_tail = -1
        self.first = True
        self.pending = b""  # the first bytes, until there are enough to hold a whole mark

    def feed(self, chunk: bytes) -> None:
        if self.first:
            self.pending += chunk
            if len(self.pending) < len(UTF8_BOM):
                return
            chunk, self.pending = self.pending.removeprefix(UTF8_BOM), b""
            self.first = False
        buffer = self.tail + chunk

        # The line after the n-th newline is line n + 1. A match lying wholly inside the
        # tail was found in the previous buffer already.
        counted_to, newlines = 0, self.newlines_before_tail
        for match in _BEFORE_EMPTY_LINE.finditer(buffer):
            end = match.start() + (2 if buffer[match.start() + 1] == 0x0A else 3)
            newlines += buffer.count(b"\n", counted_to, match.start() + 1)
            counted_to = match.start() + 1
            if end > len(self.tail):
                self.empty.append(newlines + 1)

        # Keep two bytes: enough for a newline whose following "\r\n" is yet to come.
        self.newlines_before_tail += buffer.count(b"\n") - buffer[-2:].count(b"\n")
        self.tail = buffer[-2:]

    def finish(self) -> tuple[int, tuple[int, ...]]:
        """The number of lines and the empty ones."""
        if self.first and self.pending:
            self.first = False
            pending, self.pending = self.pending.removeprefix(UTF8_BOM), b""
            self.feed(pending)
        newlines = self.newlines_before_tail + self.tail.count(b"\n")
        lines = newlines + (0 if self.tail.endswith(b"\n") else 1)
        return lines, tuple(self.empty)


def _inflate(chunks: Iterator[bytes], path: Path) -> Iterator[bytes]:
    """Decompress gzip data, of one member or several, chunk by chunk.

    Deflate expands a chunk at most about a thousand times, so chunks of
    :data:`GZIP_CHUNK` bytes bound the memory held at once.
    """
    inflater = zlib.decompressobj(wbits=31)
    started = False
    for chunk in chunks:
        data = chunk
        while data:
            started = True
            try:
                out = inflater.decompress(data)
            except zlib.error as exc:
                raise BadInput(path, f"cannot be decompressed: {_gzip_problem(exc)}") from exc
            if out:
                yield out
            data = b""
            if inflater.eof:
                # Another member may follow, as `cat a.gz b.gz` makes.
                data, started = inflater.unused_data, False
                inflater = zlib.decompressobj(wbits=31)
    if started:
        raise BadInput(path, f"cannot be decompressed: {_gzip_problem(EOFError())}")


def scan_file(
    path: Path,
    *,
    chunk_size: int = SCAN_BYTES,
    fmt: FileFormat = CSV,
) -> FileScan:
    """Hash a file and find the empty lines of its text, in one pass of bounded memory.

    The sha256 and size are those of the bytes as stored; the lines are those of the text,
    decompressed for a gzip file and not counted for Parquet. The file is read
    ``chunk_size`` bytes at a time.

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
    counter = _LineCounter()

    def raw() -> Iterator[bytes]:
        nonlocal size
        with path.open("rb") as handle:
            while chunk := handle.read(max(chunk_size, 1)):
                digest.update(chunk)
                size += len(chunk)
                yield chunk

    if fmt.kind == "parquet":
        for _ in raw():
            pass
        return FileScan(digest.hexdigest(), size, 0, ())
    if fmt.gzip:
        chunk_size = min(chunk_size, GZIP_CHUNK)
    text = _inflate(raw(), path) if fmt.gzip else raw()
    for piece in text:
        counter.feed(piece)
    lines, empty = counter.finish()
    return FileScan(digest.hexdigest(), size, lines, empty)
