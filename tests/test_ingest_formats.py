"""Ingest of every format: CSV, TSV, gzip, Parquet, and a folder or glob as one delta.

The same rows written in each format must give the same clean data version; bad rows of
every format are quarantined with their line (a Parquet row's number) and reason; the
files of a folder or glob must agree on format and columns, or nothing is ingested.
"""

from __future__ import annotations

import doctest
import gzip
import hashlib
import json
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from in_process import Cli

from incr_cli import sources
from incr_cli.errors import ExitCode
from incr_cli.sources import FileFormat, scan_file

HEADER = ("user", "item", "rating", "timestamp")
ROWS = [
    ("u1", "i1", "4", "1000000000"),
    ("u2", "i2", "3.5", "1000000100"),
    ("u3", "i1", "5", "1000000200"),
    ("u1", "i3", "2", "1000000300"),
]
# What the clean version holds, whatever the format: (user, item, rating, time in UTC).
CLEAN = [
    ("u1", "i1", 4.0, datetime(2001, 9, 9, 1, 46, 40)),
    ("u1", "i3", 2.0, datetime(2001, 9, 9, 1, 51, 40)),
    ("u2", "i2", 3.5, datetime(2001, 9, 9, 1, 48, 20)),
    ("u3", "i1", 5.0, datetime(2001, 9, 9, 1, 50, 0)),
]


def text(rows: list[tuple[str, ...]], delimiter: str = ",", header: bool = True) -> bytes:
    lines = ([HEADER] if header else []) + rows
    return "".join(delimiter.join(row) + "\n" for row in lines).encode()


def write_parquet(path: Path, rows: list[tuple[object, ...]], schema: str) -> Path:
    """A Parquet file written by DuckDB, of ``rows`` typed by ``schema``."""
    with duckdb.connect() as con:
        con.execute(f"CREATE TABLE t ({schema})")
        if rows:
            marks = ", ".join("?" * len(rows[0]))
            con.executemany(f"INSERT INTO t VALUES ({marks})", rows)
        con.execute(f"COPY t TO '{path}' (FORMAT parquet)")
    return path


EPOCH = datetime(1970, 1, 1)
TYPED = "user_id VARCHAR, item_id VARCHAR, rating DOUBLE, ts TIMESTAMP"


def typed(rows: list[tuple[str, ...]]) -> list[tuple[object, ...]]:
    """The rows with a number for the rating and a time (UTC, no zone) for the timestamp."""
    return [
        (user, item, float(rating), EPOCH + timedelta(seconds=int(ts)))
        for user, item, rating, ts in rows
    ]


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(tmp_path / "cat" / "catalog.duckdb", capsys)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    return folder


def config(tmp_path: Path, yaml: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml)
    return str(path)


def query(cli: Cli, sql: str) -> list[tuple]:
    with duckdb.connect(str(cli.catalog), read_only=True) as con:
        return con.execute(sql).fetchall()


def one_line(err: str) -> str:
    assert err.startswith("incr: error: ") and err.count("\n") == 1, err
    return err


# --- the same rows in every format -----------------------------------------------------


def _csv(data: Path) -> str:
    (data / "r.csv").write_bytes(text(ROWS))
    return str(data / "r.csv")


def _tsv(data: Path) -> str:
    (data / "r.tsv").write_bytes(text(ROWS, "\t"))
    return str(data / "r.tsv")


def _gzip_csv(data: Path) -> str:
    (data / "r.csv.gz").write_bytes(gzip.compress(text(ROWS)))
    return str(data / "r.csv.gz")


def _gzip_tsv_without_header(data: Path) -> str:
    (data / "r.tsv.gz").write_bytes(gzip.compress(text(ROWS, "\t", header=False)))
    return str(data / "r.tsv.gz")


def _parquet(data: Path) -> str:
    return str(write_parquet(data / "r.parquet", typed(ROWS), TYPED))


def _parquet_of_text(data: Path) -> str:
    schema = "userId VARCHAR, movieId VARCHAR, rating VARCHAR, timestamp VARCHAR"
    return str(write_parquet(data / "r.parquet", list(ROWS), schema))


def _folder(data: Path) -> str:
    (data / "part-1.csv").write_bytes(text(ROWS[:1]))
    (data / "part-2.csv.gz").write_bytes(gzip.compress(text(ROWS[1:3])))
    (data / "part-3.csv").write_bytes(text(ROWS[3:]))
    (data / "_SUCCESS").write_bytes(b"")  # markers are left out
    return str(data)


def _parquet_folder(data: Path) -> str:
    write_parquet(data / "b.parquet", typed(ROWS[2:]), TYPED)
    write_parquet(data / "a.parquet", typed(ROWS[:2]), TYPED)
    return str(data)


def _glob(data: Path) -> str:
    (data / "part-1.tsv").write_bytes(text(ROWS[:2], "\t"))
    (data / "part-2.tsv").write_bytes(text(ROWS[2:], "\t"))
    (data / "other.csv").write_bytes(b"not,part,of,it\n")
    return str(data / "part-*.tsv")


FORMATS = {
    "csv": (_csv, "csv", 1),
    "tsv": (_tsv, "csv", 1),
    "gzip csv": (_gzip_csv, "csv.gz", 1),
    "gzip tsv without header": (_gzip_tsv_without_header, "csv.gz", 1),
    "parquet": (_parquet, "parquet", 1),
    "parquet of text": (_parquet_of_text, "parquet", 1),
    "folder": (_folder, "csv,csv.gz", 3),
    "folder of parquet": (_parquet_folder, "parquet", 2),
    "glob": (_glob, "csv", 2),
}


@pytest.mark.parametrize("kind", list(FORMATS))
def test_the_same_rows_in_any_format_give_the_same_clean_version(
    cli: Cli, data: Path, kind: str
) -> None:
    write, fmt, n_files = FORMATS[kind]
    path = write(data)

    result, _ = cli("ingest", path)
    cli("clean")

    assert [
        (r["version"], r["rows_read"], r["rows_accepted"], r["rows_rejected"]) for r in result
    ] == [(1, 4, 4, 0)]
    assert (result[0]["format"], len(result[0]["files"])) == (fmt, n_files)
    assert query(cli, "SELECT rows_read, rows_accepted, rows_rejected FROM versions") == [(4, 4, 0)]
    assert (
        query(
            cli, "SELECT user_id, item_id, rating, ts FROM ratings_clean ORDER BY user_id, item_id"
        )
        == CLEAN
    )
    assert query(cli, "SELECT count(*) FROM rejects") == [(0,)]


def test_a_folder_is_read_in_sorted_order_with_lines_running_on_across_files(
    cli: Cli, data: Path
) -> None:
    (data / "b.csv").write_bytes(text([ROWS[2], ("u9", "i9", "9", "1000000400")]))
    (data / "a.csv").write_bytes(text(ROWS[:2]))

    result, _ = cli("ingest", str(data))

    # a.csv holds lines 1-3 of the delta (a header and two rows), b.csv lines 4-6.
    assert query(cli, "SELECT line, user_id FROM ratings_raw ORDER BY line") == [
        (2, "u1"),
        (3, "u2"),
        (5, "u3"),
    ]
    assert query(cli, "SELECT line, reason, raw FROM rejects") == [
        (6, "rating is outside [0.5, 5]: 9", "u9,i9,9,1000000400")
    ]
    details = json.loads(query(cli, "SELECT details FROM stages WHERE stage = 'ingest'")[0][0])
    assert [(Path(f["path"]).name, f["lines"], f["format"]) for f in details["files"]] == [
        ("a.csv", [1, 3], "csv"),
        ("b.csv", [4, 6], "csv"),
    ]
    assert result[0]["files"] == [str(data / "a.csv"), str(data / "b.csv")]


def test_the_version_records_its_files_for_log_and_status(cli: Cli, data: Path) -> None:
    (data / "a.csv").write_bytes(text(ROWS[:2]))
    (data / "b.csv").write_bytes(text(ROWS[2:]))
    cli("ingest", str(data))

    log, _ = cli("log")
    status, _ = cli("status")

    files = [str((data / name).resolve()) for name in ("a.csv", "b.csv")]
    assert (log[0]["source"], log[0]["files"]) == (str(data.resolve()), files)
    assert status["source"] == {"version": 1, "path": str(data.resolve()), "files": files}
    sizes = sum(len(text(part)) for part in (ROWS[:2], ROWS[2:]))
    assert query(cli, "SELECT source_size FROM versions") == [(sizes,)]


# --- bad rows ------------------------------------------------------------------------


def test_bad_rows_of_a_gzip_file_are_quarantined_on_their_lines(cli: Cli, data: Path) -> None:
    body = "user,item,rating,timestamp\nu1,i1,4,1\n\nu2,i2\nu3,i3,7,1\nu4,i4,4,soon\nu5,i5,5,1\n"
    path = data / "r.csv.gz"
    path.write_bytes(gzip.compress(body.encode()))

    result, _ = cli("ingest", str(path))

    assert query(cli, "SELECT line, reason, raw FROM rejects ORDER BY line") == [
        (4, "row has fewer fields than the 4 expected", "u2,i2"),
        (5, "rating is outside [0.5, 5]: 7", "u3,i3,7,1"),
        (6, "timestamp cannot be read: soon", "u4,i4,4,soon"),
    ]
    assert query(cli, "SELECT line, user_id FROM ratings_raw ORDER BY line") == [
        (2, "u1"),
        (7, "u5"),
    ]
    assert (result[0]["rows_read"], result[0]["rows_rejected"]) == (5, 3)
    assert result[0]["reasons"] == {
        "rating is outside [0.5, 5]": 1,
        "row has fewer fields than the 4 expected": 1,
        "timestamp cannot be read": 1,
    }


def test_bad_rows_of_a_parquet_file_are_quarantined_with_their_row_as_json(
    cli: Cli, data: Path
) -> None:
    t = datetime(2001, 9, 9, 1, 46, 40)
    rows = [
        ("u1", "i1", 4.0, t),
        ("u2", "i2", 9.0, t),
        (None, "i3", 4.0, t),
        ("u4", "i4", float("nan"), t),
        ("u5", "i5", 3.0, None),
        ("u6", "i6", 5.0, t),
    ]
    path = write_parquet(data / "r.parquet", rows, TYPED)

    result, _ = cli("ingest", str(path))

    assert query(cli, "SELECT line, reason, raw FROM rejects ORDER BY line") == [
        (
            2,
            "rating is outside [0.5, 5]: 9.0",
            '{"user_id":"u2","item_id":"i2","rating":"9.0","ts":"2001-09-09 01:46:40"}',
        ),
        (
            3,
            "user id is missing",
            '{"user_id":null,"item_id":"i3","rating":"4.0","ts":"2001-09-09 01:46:40"}',
        ),
        (
            4,
            "rating is not a number: nan",
            '{"user_id":"u4","item_id":"i4","rating":"nan","ts":"2001-09-09 01:46:40"}',
        ),
        (5, "timestamp is missing", '{"user_id":"u5","item_id":"i5","rating":"3.0","ts":null}'),
    ]
    assert query(cli, "SELECT line, user_id, rating, ts FROM ratings_raw ORDER BY line") == [
        (1, "u1", 4.0, t),
        (6, "u6", 5.0, t),
    ]
    assert (result[0]["rows_read"], result[0]["rows_accepted"]) == (6, 2)


def test_a_parquet_time_with_a_zone_is_stored_in_utc(cli: Cli, data: Path) -> None:
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'America/New_York'")
        con.execute(
            "COPY (SELECT 'u1' AS user, 'i1' AS item, 4 AS rating, "
            "TIMESTAMPTZ '2020-06-01 08:00:00-04:00' AS timestamp) "
            f"TO '{data / 'z.parquet'}' (FORMAT parquet)"
        )

    cli("ingest", str(data / "z.parquet"))

    assert query(cli, "SELECT ts FROM ratings_raw") == [(datetime(2020, 6, 1, 12),)]


def test_a_parquet_file_without_rows_has_nothing_to_do(cli: Cli, data: Path) -> None:
    path = write_parquet(data / "empty.parquet", [], TYPED)

    _, err = cli("ingest", str(path), expect=ExitCode.NOTHING_TO_DO)

    assert "empty.parquet holds no rows" in err


# --- a folder or glob must be of one format and layout ------------------------------


@pytest.mark.parametrize(
    ("files", "odd", "message"),
    [
        (
            {"a.csv": text(ROWS[:2]), "b.csv": b"item,user,rating,timestamp\ni9,u9,4,1\n"},
            "b.csv",
            "has columns (item, user, rating, timestamp, comma-separated) unlike a.csv "
            "(user, item, rating, timestamp, comma-separated)",
        ),
        (
            {"a.csv": text(ROWS[:2]), "b.tsv": text(ROWS[2:], "\t")},
            "b.tsv",
            "tab-separated) unlike a.csv",
        ),
        (
            {"a.csv": text(ROWS[:2]), "b.csv": text(ROWS[2:], header=False)},
            "b.csv",
            "has columns (4 unnamed columns, comma-separated) unlike a.csv",
        ),
        (
            {"a.csv": text(ROWS[:2]), "b.parquet": None},
            "b.parquet",
            "is Parquet but a.csv is delimited text",
        ),
        (
            {"a.parquet": None, "b.parquet": "rating INTEGER"},
            "b.parquet",
            "rating INTEGER",
        ),
    ],
    ids=["column-order", "delimiter", "header", "csv-and-parquet", "parquet-types"],
)
def test_a_folder_of_mixed_layouts_is_refused_and_changes_nothing(
    cli: Cli, data: Path, files: dict[str, bytes | str | None], odd: str, message: str
) -> None:
    (data.parent / "first.csv").write_bytes(text(ROWS))
    cli("ingest", str(data.parent / "first.csv"))
    before = cli.tables()
    for name, content in files.items():
        if isinstance(content, bytes):
            (data / name).write_bytes(content)
        else:
            schema = TYPED.replace("rating DOUBLE", content) if content else TYPED
            write_parquet(data / name, [("u7", "i7", 4, datetime(2001, 1, 1))], schema)

    _, err = cli("ingest", str(data), expect=ExitCode.BAD_INPUT)

    assert f"{data / odd}: " in one_line(err)
    assert message in err
    assert cli.tables() == before


def test_a_folder_whose_files_are_all_held_has_nothing_to_do(cli: Cli, data: Path) -> None:
    (data / "a.csv").write_bytes(text(ROWS[:2]))
    (data / "b.csv").write_bytes(text(ROWS[2:]))
    cli("ingest", str(data / "a.csv"))
    cli("ingest", str(data / "b.csv"))

    _, err = cli("ingest", str(data), expect=ExitCode.NOTHING_TO_DO)
    _, again = cli("ingest", str(data / "*.csv"), expect=ExitCode.NOTHING_TO_DO)

    assert f"{data} is already held by v1, v2" in err
    assert "is already held by v1, v2" in again


def test_a_file_of_an_ingested_folder_is_held_by_its_version(cli: Cli, data: Path) -> None:
    (data / "a.csv").write_bytes(text(ROWS[:2]))
    (data / "b.csv").write_bytes(text(ROWS[2:]))
    cli("ingest", str(data))

    _, err = cli("ingest", str(data / "b.csv"), expect=ExitCode.NOTHING_TO_DO)

    assert "b.csv is already held by v1" in err


def test_a_folder_with_some_files_held_is_refused_naming_one(cli: Cli, data: Path) -> None:
    (data / "a.csv").write_bytes(text(ROWS[:2]))
    cli("ingest", str(data / "a.csv"))
    (data / "b.csv").write_bytes(text(ROWS[2:]))
    before = cli.tables()

    _, err = cli("ingest", str(data), expect=ExitCode.BAD_INPUT)

    assert f"{data / 'a.csv'}: is already held by v1, but other files of {data}" in one_line(err)
    assert cli.tables() == before


def test_two_copies_of_a_file_in_a_folder_are_refused(cli: Cli, data: Path) -> None:
    (data / "a.csv").write_bytes(text(ROWS))
    (data / "copy.csv").write_bytes(text(ROWS))

    _, err = cli("ingest", str(data), expect=ExitCode.BAD_INPUT)

    assert "copy.csv: holds the same bytes as a.csv" in one_line(err)


# --- the format setting ----------------------------------------------------------------


def test_the_format_setting_reads_a_misnamed_file(cli: Cli, data: Path, tmp_path: Path) -> None:
    path = data / "ratings.parquet"
    path.write_bytes(text(ROWS))

    _, err = cli("ingest", str(path), expect=ExitCode.BAD_INPUT)
    result, _ = cli("ingest", str(path), "--config", config(tmp_path, "ingest:\n  format: csv\n"))

    assert "is named .parquet but is not a Parquet file" in one_line(err)
    assert (result[0]["format"], result[0]["rows_accepted"]) == ("csv", 4)


@pytest.mark.parametrize(
    ("setting", "name", "message"),
    [
        ("parquet", "r.csv", "is not a Parquet file (it does not start with PAR1)"),
        ("csv", "r.parquet", "is a Parquet file but ingest.format is csv"),
    ],
)
def test_a_file_not_of_the_set_format_is_refused(
    cli: Cli, data: Path, tmp_path: Path, setting: str, name: str, message: str
) -> None:
    path = data / name
    if name.endswith(".parquet"):
        write_parquet(path, typed(ROWS), TYPED)
    else:
        path.write_bytes(text(ROWS))

    _, err = cli(
        "ingest",
        str(path),
        "--config",
        config(tmp_path, f"ingest:\n  format: {setting}\n"),
        expect=ExitCode.BAD_INPUT,
    )

    assert message in one_line(err)


def test_an_unknown_format_setting_is_a_config_error(cli: Cli, data: Path, tmp_path: Path) -> None:
    _, err = cli(
        "ingest",
        _csv(data),
        "--config",
        config(tmp_path, "ingest:\n  format: xlsx\n"),
        expect=ExitCode.CONFIG,
    )

    assert "ingest.format" in one_line(err)
    assert "'xlsx'" in err


# --- gzip ------------------------------------------------------------------------------


def test_a_gz_file_that_is_not_gzip_is_refused_in_one_line(cli: Cli, data: Path) -> None:
    path = data / "r.csv.gz"
    path.write_bytes(text(ROWS))

    _, err = cli("ingest", str(path), expect=ExitCode.BAD_INPUT)

    assert "r.csv.gz: is named .gz but is not gzip-compressed" in one_line(err)
    assert not cli.catalog.exists() or query(cli, "SELECT count(*) FROM versions") == [(0,)]


def test_a_corrupt_gzip_file_is_refused_in_one_line(cli: Cli, data: Path) -> None:
    packed = bytearray(gzip.compress(text(ROWS * 20)))
    packed[20:30] = b"\xff" * 10
    path = data / "r.csv.gz"
    path.write_bytes(bytes(packed))

    _, err = cli("ingest", str(path), expect=ExitCode.BAD_INPUT)

    assert "r.csv.gz: cannot be decompressed" in one_line(err)


def test_gzip_members_one_after_another_are_one_file(cli: Cli, data: Path) -> None:
    path = data / "r.csv.gz"
    path.write_bytes(gzip.compress(text(ROWS[:2])) + gzip.compress(text(ROWS[2:], header=False)))

    result, _ = cli("ingest", str(path))

    assert result[0]["rows_accepted"] == 4


@pytest.mark.parametrize("chunk", [3, 5, 64])
def test_scan_hashes_the_stored_bytes_and_counts_lines_of_the_text(
    tmp_path: Path, chunk: int
) -> None:
    body = b"\xef\xbb\xbf\nu,i,r\r\n1,2,3\n\n\n4,5,6"
    path = tmp_path / "f.csv.gz"
    path.write_bytes(gzip.compress(body))

    scan = scan_file(path, chunk_size=chunk, fmt=FileFormat("csv", gzip=True))

    assert (scan.lines, scan.empty_lines) == (6, (1, 4, 5))
    assert scan.size == path.stat().st_size
    assert scan.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_docstring_examples_run() -> None:
    assert doctest.testmod(sources).failed == 0


def test_line_numbers_stay_right_across_big_files_read_in_parallel(cli: Cli, data: Path) -> None:
    # Three files of about 3 MB each, so that DuckDB splits each scan; every 997th line of
    # each is too short, and the middle one is compressed.
    n = 150_000
    for part in range(3):
        lines = [f"u{part}-{i},i{i % 1000},{1 + i % 5},{1_000_000_000 + i}" for i in range(n)]
        for i in range(1, n, 997):
            lines[i] = f"u{part}-{i},short"
        body = ("\n".join(lines) + "\n").encode()
        name = f"part-{part}.csv"
        if part == 1:
            (data / f"{name}.gz").write_bytes(gzip.compress(body, compresslevel=1))
        else:
            (data / name).write_bytes(body)

    cli("ingest", str(data))

    # Line L of the delta is line L - part * n of file `part`.
    wrong = query(
        cli,
        "SELECT count(*) FROM ratings_raw "
        "WHERE user_id <> 'u' || ((line - 1) // $n) || '-' || ((line - 1) % $n)".replace(
            "$n", str(n)
        ),
    )
    bad = [part * n + i + 1 for part in range(3) for i in range(1, n, 997)]
    assert wrong == [(0,)]
    assert query(cli, "SELECT count(*) FROM ratings_raw") == [(3 * n - len(bad),)]
    assert query(cli, "SELECT line FROM rejects ORDER BY line") == [(line,) for line in bad]
