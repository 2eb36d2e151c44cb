"""A corpus of malformed inputs, each run through ``incr ingest`` with its outcome asserted.

Every case either is refused whole (one line on stderr, the bad-input exit code, and the
catalog exactly as it was) or is ingested with each bad row quarantined under its line
number and reason. The README's table of bad inputs follows this corpus.
"""

from __future__ import annotations

import gzip
import os
import random
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from incr_cli.cli import main
from incr_cli.errors import ExitCode

H = "user,item,rating,timestamp\n"
T1 = datetime(1970, 1, 1, 0, 0, 1)
BASE = H + "base,b1,3,1\n"


@dataclass(frozen=True)
class Case:
    """One malformed input and what ingesting it must do.

    ``rows`` are the accepted rows as (line, user, item, rating, time) and ``rejects`` the
    quarantined ones as (line, reason); ``message`` is part of the one line of a refusal.
    ``cleaned`` (user, item, rating) are the rows ``incr clean`` keeps afterwards.
    """

    content: bytes
    code: int = ExitCode.OK
    message: str = ""
    rows: list[tuple] = field(default_factory=list)
    rejects: list[tuple[int, str]] = field(default_factory=list)
    config: str = ""
    cleaned: list[tuple] | None = None


# The leading bytes of a bzip2 stream; no more is read before it is refused.
BZIP2 = b"BZh91AY&SY" + bytes(40)


def _random_bytes(seed: int, n: int, low: int) -> bytes:
    rng = random.Random(seed)
    return bytes(rng.randrange(low, 256) for _ in range(n))


REFUSED = {
    "empty file": Case(b"", ExitCode.BAD_INPUT, "the file is empty"),
    "blank lines only": Case(b"\n\r\n\n", ExitCode.BAD_INPUT, "the file is empty"),
    "lines of spaces only": Case(
        b"\n\n  \n\t\n", ExitCode.BAD_INPUT, "the file holds only blank lines; nothing to ingest"
    ),
    "a field's column named twice": Case(
        b"user_id,user_id,item_id,rating,timestamp\nu1,u2,i1,4,1\n",
        ExitCode.BAD_INPUT,
        "the header names column 'user_id' twice, so the user column is ambiguous",
    ),
    # A header without rows is no error of the file, but there is nothing to ingest.
    "header only": Case(H.encode(), ExitCode.NOTHING_TO_DO, "holds a header but no rows"),
    "missing required column": Case(
        b"user,item,timestamp\nu1,i1,1\n",
        ExitCode.BAD_INPUT,
        "cannot find the rating column (user, item, timestamp)",
    ),
    "wrong delimiter configured": Case(
        b"user;item;rating;timestamp\nu1;i1;4;1\n",
        ExitCode.BAD_INPUT,
        "cannot find the user, item and rating columns (user;item;rating;timestamp)",
        config="ingest:\n  delimiter: ','\n",
    ),
    "configured column absent": Case(
        H.encode() + b"u1,i1,4,1\n",
        ExitCode.BAD_INPUT,
        "has no column 'stars' for rating",
        config="ingest:\n  columns:\n    rating: stars\n",
    ),
    "bzip2-compressed": Case(
        BZIP2, ExitCode.BAD_INPUT, "is bzip2-compressed, which only gzip may be; decompress it"
    ),
    "gzip cut short": Case(
        gzip.compress((H + "u1,i1,4,1\n" * 50).encode())[:-12],
        ExitCode.BAD_INPUT,
        "cannot be decompressed: the gzip data ends early (the file is truncated)",
    ),
    "binary garbage": Case(_random_bytes(1, 2000, 0), ExitCode.BAD_INPUT, "holds a NUL byte"),
    "binary garbage without NUL": Case(
        _random_bytes(2, 2000, 1), ExitCode.BAD_INPUT, "its first line is not utf-8 text"
    ),
    "Latin-1 bytes in the header": Case(
        b"user,it\xe9m,rating\nu1,i1,4\n",
        ExitCode.BAD_INPUT,
        "its first line is not utf-8 text, so it is binary, compressed or in another encoding",
    ),
    "UTF-16 text": Case((H + "u1,i1,4,1\n").encode("utf-16"), ExitCode.BAD_INPUT, "text in UTF-16"),
    "every rating outside the range": Case(
        H.encode() + b"u1,i1,9,1\nu2,i2,0,1\n",
        ExitCode.BAD_INPUT,
        "no row passed validation (2 read; e.g. rating is outside [0.5, 5]",
    ),
    "every timestamp in milliseconds": Case(
        H.encode() + b"u1,i1,4,1433221332117\n",
        ExitCode.BAD_INPUT,
        "set ingest.timestamp_format in the config (unix, unix_ms",
    ),
    "LF and CRLF mixed": Case(
        b"\nuser,item,rating,timestamp\r\nu1,i1,4,1\nu2,i2,4,1\n",
        ExitCode.BAD_INPUT,
        "check that every line ends the same way (LF or CRLF)",
    ),
    "LF header, a CRLF line among LF lines": Case(
        b"user,item,rating,timestamp\nu1,i1,4,1000000000\r\nu2,i2,4,1000000000\n",
        ExitCode.BAD_INPUT,
        "check that every line ends the same way (LF or CRLF)",
    ),
}

ACCEPTED = {
    # Told by its first bytes, whatever its name.
    "gzip-compressed": Case(
        gzip.compress(H.encode() + b"u1,i1,4,1\nu2,i2,9,1\n"),
        rows=[(2, "u1", "i1", 4.0, T1)],
        rejects=[(3, "rating is outside [0.5, 5]: 9")],
    ),
    "extra columns": Case(
        b'user,item,rating,timestamp,comment\nu1,i1,4,1,nice\nu2,i2,3,1,"a, b"\n',
        rows=[(2, "u1", "i1", 4.0, T1), (3, "u2", "i2", 3.0, T1)],
    ),
    "columns in another order": Case(
        b"rating,timestamp,item,user\n4,1,i1,u1\n", rows=[(2, "u1", "i1", 4.0, T1)]
    ),
    "semicolons, detected": Case(
        b"user;item;rating;timestamp\nu1;i1;4;1\n", rows=[(2, "u1", "i1", 4.0, T1)]
    ),
    "byte-order mark": Case(
        b"\xef\xbb\xbf" + H.encode() + b"u1,i1,4,1\n", rows=[(2, "u1", "i1", 4.0, T1)]
    ),
    "CRLF line endings": Case(
        b"user,rating,timestamp,item\r\nu1,4,1,i1\r\nu2,5,1,i2\r\n",
        rows=[(2, "u1", "i1", 4.0, T1), (3, "u2", "i2", 5.0, T1)],
    ),
    "quoted field holding the delimiter": Case(
        H.encode() + b'"a,b","say ""hi""",4,1\n', rows=[(2, "a,b", 'say "hi"', 4.0, T1)]
    ),
    "quoted field holding a newline": Case(
        H.encode() + b'"u\n1",i1,4,1\n', rows=[(2, "u\n1", "i1", 4.0, T1)]
    ),
    "Latin-1 bytes in an id": Case(
        H.encode() + b"u1,i1,4,1\nu2,Mis\xe9rables,4,1\n",
        rows=[(2, "u1", "i1", 4.0, T1)],
        rejects=[(3, "row is not valid utf-8")],
    ),
    "Latin-1 bytes in an id, Latin-1 configured": Case(
        H.encode() + b"u2,Mis\xe9rables,4,1\n",
        rows=[(2, "u2", "Misérables", 4.0, T1)],
        config="ingest:\n  encoding: latin-1\n",
    ),
    "ratings not numbers, NaN, infinite or outside the range": Case(
        H.encode() + b"u1,i1,four,1\nu2,i2,NaN,1\nu3,i3,inf,1\nu4,i4,-Infinity,1\n"
        b"u5,i5,7,1\nu6,i6,0,1\nu7,i7,,1\nu8,i8,4.5,1\n",
        rows=[(9, "u8", "i8", 4.5, T1)],
        rejects=[
            (2, "rating is not a number: four"),
            (3, "rating is not a number: NaN"),
            (4, "rating is not a number: inf"),
            (5, "rating is not a number: -Infinity"),
            (6, "rating is outside [0.5, 5]: 7"),
            (7, "rating is outside [0.5, 5]: 0"),
            (8, "rating is missing"),
        ],
    ),
    "rating outside a configured range": Case(
        H.encode() + b"u1,i1,10,1\nu2,i2,11,1\n",
        rows=[(2, "u1", "i1", 10.0, T1)],
        rejects=[(3, "rating is outside [1, 10]: 11")],
        config="ingest:\n  rating_min: 1\n  rating_max: 10\n",
    ),
    "empty ids": Case(
        H.encode() + b",i1,4,1\nu2,,4,1\n  ,i3,4,1\nu4,i4,4,1\n",
        rows=[(5, "u4", "i4", 4.0, T1)],
        rejects=[(2, "user id is missing"), (3, "item id is missing"), (4, "user id is missing")],
    ),
    # Ids are text: 007 is not 7; but 17850.0, an integer id written as a float, is 17850.
    "ids that look numeric but are not": Case(
        H.encode() + b"007,00042,4,1\n17850.0,85123A,4,1\n7,42,4,1\n",
        rows=[
            (2, "007", "00042", 4.0, T1),
            (3, "17850", "85123A", 4.0, T1),
            (4, "7", "42", 4.0, T1),
        ],
    ),
    "ids written as floats, read verbatim when configured": Case(
        H.encode() + b"17850.0,85123.50,4,1\n",
        rows=[(2, "17850.0", "85123.50", 4.0, T1)],
        config="ingest:\n  normalise_float_ids: false\n",
    ),
    "string ids": Case(
        H.encode() + b"alice@example.com,The Matrix (1999),4,1\n",
        rows=[(2, "alice@example.com", "The Matrix (1999)", 4.0, T1)],
    ),
    "timestamps in seconds and ISO 8601 with and without a zone": Case(
        H.encode() + b"u1,i1,4,881250949\nu2,i2,4,2020-01-02T03:04:05\n"
        b"u3,i3,4,2020-01-02T03:04:05Z\nu4,i4,4,2020-01-02 03:04:05+02:00\nu5,i5,4,soon\n",
        rows=[
            (2, "u1", "i1", 4.0, datetime(1997, 12, 4, 15, 55, 49)),
            (3, "u2", "i2", 4.0, datetime(2020, 1, 2, 3, 4, 5)),
            (4, "u3", "i3", 4.0, datetime(2020, 1, 2, 3, 4, 5)),
            (5, "u4", "i4", 4.0, datetime(2020, 1, 2, 1, 4, 5)),
        ],
        rejects=[(6, "timestamp cannot be read: soon")],
    ),
    "timestamps in milliseconds, configured": Case(
        H.encode() + b"u1,i1,4,1000000000500\n",
        rows=[(2, "u1", "i1", 4.0, datetime(2001, 9, 9, 1, 46, 40, 500000))],
        config="ingest:\n  timestamp_format: unix_ms\n",
    ),
    "some timestamps in milliseconds": Case(
        H.encode() + b"u1,i1,4,1\nu2,i2,4,1433221332117\n",
        rows=[(2, "u1", "i1", 4.0, T1)],
        rejects=[(3, "timestamp cannot be read: 1433221332117")],
    ),
    "the same row twice": Case(
        H.encode() + b"u1,i1,4,5\nu1,i1,4,5\n",
        rows=[(line, "u1", "i1", 4.0, datetime(1970, 1, 1, 0, 0, 5)) for line in (2, 3)],
        cleaned=[("u1", "i1", 4.0)],
    ),
    "the same user and item twice with different ratings": Case(
        H.encode() + b"u1,i1,5,9\nu1,i1,2,3\n",
        rows=[
            (2, "u1", "i1", 5.0, datetime(1970, 1, 1, 0, 0, 9)),
            (3, "u1", "i1", 2.0, datetime(1970, 1, 1, 0, 0, 3)),
        ],
        cleaned=[("u1", "i1", 5.0)],
    ),
    "too many and too few fields": Case(
        H.encode() + b"u1,i1,4,1,x\nu2,i2\nu3,i3,4,1\n",
        rows=[(4, "u3", "i3", 4.0, T1)],
        rejects=[
            (2, "row has more fields than the 4 expected"),
            (3, "row has fewer fields than the 4 expected"),
        ],
    ),
    "truncated last line": Case(
        H.encode() + b"u1,i1,4,1\nu2,i2,4",
        rows=[(2, "u1", "i1", 4.0, T1)],
        rejects=[(3, "row has fewer fields than the 4 expected")],
    ),
    "truncated last line inside a quote": Case(
        H.encode() + b'u1,i1,4,1\n"u2,i2,4,1',
        rows=[(2, "u1", "i1", 4.0, T1)],
        rejects=[(3, "row has a stray or unclosed quote")],
    ),
    "a line longer than a line may be": Case(
        H.encode() + b"u1,i1,4,1\n" + b"x" * 2_100_000 + b",i2,4,1\nu3,i3,4,1\n",
        rows=[(2, "u1", "i1", 4.0, T1), (4, "u3", "i3", 4.0, T1)],
        rejects=[(3, "row is longer than the 2,000,000 bytes a line may hold")],
    ),
    "binary garbage after good rows": Case(
        H.encode() + b"u1,i1,4,1\n\xff\xfe\x80\x81,\x9c,4,1\n",
        rows=[(2, "u1", "i1", 4.0, T1)],
        rejects=[(3, "row is not valid utf-8")],
    ),
}


def dump(catalog: Path) -> dict[str, list[tuple]]:
    """Every row of every table: equal dumps mean an unchanged catalog."""
    with duckdb.connect(str(catalog), read_only=True) as con:
        names = [row[0] for row in con.execute("SHOW TABLES").fetchall()]
        return {n: sorted(con.execute(f'SELECT * FROM "{n}"').fetchall(), key=repr) for n in names}


class Ingest:
    """``incr ingest`` in this process, on a catalog already holding one version."""

    def __init__(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.tmp = tmp_path
        self.capsys = capsys
        self.catalog = tmp_path / "cat" / "catalog.duckdb"
        base = tmp_path / "base.csv"
        base.write_text(BASE)
        assert self.run("ingest", str(base))[0] == 0

    def run(self, *args: str, config: str = "") -> tuple[int, str]:
        options = ["--catalog", str(self.catalog)]
        if config:
            path = self.tmp / "config.yaml"
            path.write_text(config)
            options += ["--config", str(path)]
        self.capsys.readouterr()
        code = main([*args, *options])
        return code, self.capsys.readouterr().err

    def refused(self, path: Path, code: int, message: str, config: str = "") -> None:
        """Assert that ingesting ``path`` is refused in one line and changes nothing."""
        before = dump(self.catalog)
        got, err = self.run("ingest", str(path), config=config)
        assert got == code, err
        assert err.startswith("incr: error: ") and err.count("\n") == 1, err
        assert message in err
        assert dump(self.catalog) == before


@pytest.fixture
def ingest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Ingest:
    return Ingest(tmp_path, capsys)


def test_the_corpus_holds_at_least_25_inputs() -> None:
    # Six more inputs are paths rather than contents (a directory, a missing path, two
    # unreadable files, standard input and a named pipe); they have tests of their own below.
    assert len(REFUSED) + len(ACCEPTED) >= 25


@pytest.mark.parametrize("name", list(REFUSED))
def test_a_refused_file_changes_nothing_and_says_why_in_one_line(ingest: Ingest, name: str):
    case = REFUSED[name]
    path = ingest.tmp / "input.csv"
    path.write_bytes(case.content)

    ingest.refused(path, case.code, case.message, case.config)


@pytest.mark.parametrize("name", list(ACCEPTED))
def test_bad_rows_are_quarantined_with_line_and_reason(ingest: Ingest, name: str):
    case = ACCEPTED[name]
    path = ingest.tmp / "input.csv"
    path.write_bytes(case.content)

    code, err = ingest.run("ingest", str(path), config=case.config)

    assert code == 0, err
    with duckdb.connect(str(ingest.catalog), read_only=True) as con:
        rows = con.execute(
            "SELECT line, user_id, item_id, rating, ts FROM ratings_raw WHERE version = 2 "
            "ORDER BY line"
        ).fetchall()
        rejects = con.execute(
            "SELECT line, reason FROM rejects WHERE version = 2 ORDER BY line"
        ).fetchall()
        counts = con.execute(
            "SELECT rows_read, rows_accepted, rows_rejected FROM versions WHERE version = 2"
        ).fetchone()
    assert rows == case.rows
    assert rejects == case.rejects
    assert counts == (len(rows) + len(rejects), len(rows), len(rejects))

    if case.cleaned is not None:
        assert ingest.run("clean", config=case.config)[0] == 0
        with duckdb.connect(str(ingest.catalog), read_only=True) as con:
            kept = con.execute(
                "SELECT user_id, item_id, rating FROM ratings_clean WHERE version = 2"
            ).fetchall()
        assert kept == case.cleaned


def test_an_empty_folder_is_a_usage_error(ingest: Ingest) -> None:
    folder = ingest.tmp / "deltas"
    folder.mkdir()
    (folder / ".hidden.csv").write_text(BASE)

    ingest.refused(folder, ExitCode.USAGE, "deltas: the folder holds no files to ingest")


def test_a_glob_that_matches_nothing_is_a_usage_error(ingest: Ingest) -> None:
    ingest.refused(ingest.tmp / "*.tsv", ExitCode.USAGE, "*.tsv: no file matches this pattern")


def test_a_gz_file_that_is_not_gzip_is_refused(ingest: Ingest) -> None:
    path = ingest.tmp / "plain.csv.gz"
    path.write_text(H + "u1,i1,4,1\n")

    ingest.refused(path, ExitCode.BAD_INPUT, "plain.csv.gz: is named .gz but is not gzip")


def test_a_missing_path_is_a_usage_error(ingest: Ingest) -> None:
    ingest.refused(ingest.tmp / "absent.csv", ExitCode.USAGE, "absent.csv: no such file")


def test_standard_input_is_refused_with_what_to_do(ingest: Ingest) -> None:
    ingest.refused(
        Path("-"),
        ExitCode.BAD_INPUT,
        "-: standard input is not supported; write the data to a file first and ingest it",
    )


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this system")
def test_a_named_pipe_is_refused_without_reading_it(ingest: Ingest) -> None:
    fifo = ingest.tmp / "pipe.csv"
    os.mkfifo(fifo)

    # Opening a pipe with no writer would block: the refusal must come before any read.
    ingest.refused(
        fifo,
        ExitCode.BAD_INPUT,
        "pipe.csv: is not a regular file (standard input, a pipe or a device are not "
        "supported); write the data to a file first and ingest it",
    )


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="file modes bind neither root nor Windows; the next test simulates the failure",
)
def test_a_file_without_read_permission_is_refused(ingest: Ingest) -> None:
    path = ingest.tmp / "locked.csv"
    path.write_text(BASE)
    path.chmod(0)

    ingest.refused(path, ExitCode.BAD_INPUT, "locked.csv: cannot be read: Permission denied")


def test_a_file_that_fails_to_open_is_refused(
    ingest: Ingest, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = ingest.tmp / "locked.csv"
    path.write_text(BASE)
    real_open = Path.open

    def deny(self: Path, *args: object, **kwargs: object):
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", deny)

    ingest.refused(path, ExitCode.BAD_INPUT, "locked.csv: cannot be read: Permission denied")


def test_one_refused_file_among_good_ones_ingests_none_of_them(ingest: Ingest) -> None:
    good = ingest.tmp / "good.csv"
    good.write_text(H + "u1,i1,4,1\n")
    packed = ingest.tmp / "packed.csv.bz2"
    packed.write_bytes(BZIP2)

    before = dump(ingest.catalog)
    code, err = ingest.run("ingest", str(good), str(packed))

    assert code == ExitCode.BAD_INPUT
    assert "packed.csv.bz2: is bzip2-compressed" in err
    assert dump(ingest.catalog) == before
