"""Tests of ingest: layout detection, typed checks, line numbers of rejects, idempotence."""

from __future__ import annotations

import doctest
import hashlib
import itertools
import tempfile
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from incr_cli import ingest as ingest_module
from incr_cli.catalog import Catalog, Invocation, open_catalog
from incr_cli.config import Columns, Config, IngestConfig
from incr_cli.errors import BadInput, NothingToDo, PathNotFound
from incr_cli.ingest import detect_layout, ingest_files, scan_file

TABLES = ("meta", "versions", "stages", "head_moves", "ratings_raw", "rejects")


def _config(**ingest: object) -> Config:
    return Config(ingest=IngestConfig(**ingest))


def _raw(catalog: Catalog, version: int = 1) -> list[tuple]:
    return catalog.rows(
        "SELECT line, user_id, item_id, rating, ts FROM ratings_raw WHERE version = ? "
        "ORDER BY line",
        [version],
    )


def _rejects(catalog: Catalog, version: int = 1) -> list[tuple]:
    return catalog.rows(
        "SELECT line, reason, raw FROM rejects WHERE version = ? ORDER BY line", [version]
    )


def _counts(catalog: Catalog, version: int = 1) -> tuple:
    return catalog.rows(
        "SELECT rows_read, rows_accepted, rows_rejected FROM versions WHERE version = ?",
        [version],
    )[0]


def _snapshot(catalog: Catalog) -> dict[str, list[tuple]]:
    return {table: sorted(catalog.rows(f"SELECT * FROM {table}"), key=repr) for table in TABLES}


# --- layout --------------------------------------------------------------------------

MOVIELENS = "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n"


def test_movielens_tsv_without_header_is_read_as_user_item_rating_unix(catalog, write_file):
    path = write_file("u.data", MOVIELENS)
    cat = catalog()

    layout = detect_layout(path, cat.config.ingest)
    ingest_files(cat, [path])

    assert (layout.delimiter, layout.header, layout.n_columns) == ("\t", False, 4)
    assert layout.positions == {"user": 0, "item": 1, "rating": 2, "timestamp": 3}
    assert _raw(cat) == [
        (1, "196", "242", 3.0, datetime(1997, 12, 4, 15, 55, 49)),
        (2, "186", "302", 3.0, datetime(1998, 4, 4, 19, 22, 22)),
        (3, "22", "377", 1.0, datetime(1997, 11, 7, 7, 18, 36)),
    ]
    assert _counts(cat) == (3, 3, 0)


def test_header_in_another_order_is_mapped_by_name(catalog, write_file):
    path = write_file(
        "r.csv", "timestamp,rating,item,user\n1000000000,4.5,i1,u1\n1700000000,2,i2,u2\n"
    )
    cat = catalog()

    layout = detect_layout(path, cat.config.ingest)
    ingest_files(cat, [path])

    assert (layout.delimiter, layout.header) == (",", True)
    assert layout.positions == {"user": 3, "item": 2, "rating": 1, "timestamp": 0}
    assert _raw(cat) == [
        (2, "u1", "i1", 4.5, datetime(2001, 9, 9, 1, 46, 40)),
        (3, "u2", "i2", 2.0, datetime(2023, 11, 14, 22, 13, 20)),
    ]


def test_header_aliases_such_as_movielens_names_are_recognised(catalog, write_file):
    path = write_file("ratings.csv", "userId,movieId,rating,timestamp\n1,31,2.5,1000000000\n")
    cat = catalog()

    layout = detect_layout(path, cat.config.ingest)

    assert layout.positions == {"user": 0, "item": 1, "rating": 2, "timestamp": 3}


def test_configured_names_and_delimiter_override_detection(catalog, write_file):
    path = write_file("shop.txt", "when;who;stars;what\n1000000000;c1;5;p1\n")
    config = _config(
        delimiter=";",
        columns=Columns(user="Who", item="what", rating="STARS", timestamp="when"),
    )
    cat = catalog(config)

    ingest_files(cat, [path])

    assert _raw(cat) == [(2, "c1", "p1", 5.0, datetime(2001, 9, 9, 1, 46, 40))]


def test_configured_positions_map_a_headerless_file(catalog, write_file):
    path = write_file("p.csv", "x,1000000000,4,u1,i1\n")
    config = _config(header=False, columns=Columns(user=4, item=5, rating=3, timestamp=2))
    cat = catalog(config)

    ingest_files(cat, [path])

    assert _raw(cat) == [(1, "u1", "i1", 4.0, datetime(2001, 9, 9, 1, 46, 40))]


def test_a_file_without_timestamps_gets_the_ingest_time(catalog, write_file):
    path = write_file("three.csv", "u1,i1,4\nu2,i2,5\n")
    cat = catalog()

    ingest_files(cat, [path])

    created = cat.one("SELECT created_at FROM versions WHERE version = 1")
    assert cat.rows("SELECT DISTINCT ts FROM ratings_raw") == [(created,)]


def test_a_header_without_a_rating_column_is_bad_input_naming_the_columns(catalog, write_file):
    path = write_file("no_rating.csv", "user,item,price\n1,2,3\n")

    with pytest.raises(BadInput, match=r"cannot find the rating column \(user, item, price\)"):
        ingest_files(catalog(), [path])


def test_a_column_name_absent_from_the_header_is_bad_input(catalog, write_file):
    path = write_file("r.csv", "user,item,rating\n1,2,3\n")
    cat = catalog(_config(columns=Columns(rating="stars")))

    with pytest.raises(BadInput, match="has no column 'stars' for rating"):
        ingest_files(cat, [path])


def test_a_malformed_first_row_does_not_set_the_column_count(catalog, write_file):
    path = write_file("h.csv", "1,2\n1,2,3,1000000000\n1,3,4,1000000000\n")
    cat = catalog()

    layout = detect_layout(path, cat.config.ingest)
    ingest_files(cat, [path])

    assert layout.n_columns == 4
    assert [row[0] for row in _raw(cat)] == [2, 3]
    assert _rejects(cat) == [(1, "row has fewer fields than the 4 expected", "1,2")]


# --- line numbers of rejected rows ---------------------------------------------------

GOOD = "u{0},i{0},4,1000000000"
BAD = {
    "few": ("u{0},i{0},4", "row has fewer fields than the 4 expected"),
    "many": ("u{0},i{0},4,1000000000,extra", "row has more fields than the 4 expected"),
    "range": ("u{0},i{0},9,1000000000", "rating is outside [0.5, 5]: 9"),
    "text": ("u{0},i{0},four,1000000000", "rating is not a number: four"),
    "user": (",i{0},4,1000000000", "user id is missing"),
    "time": ("u{0},i{0},4,soon", "timestamp cannot be read: soon"),
}


def _lines(kinds: list[str], tag: str = "") -> list[str]:
    """One line per kind: 'good', 'empty', 'header' or a key of BAD.

    Ids end in the line's index, after ``tag`` (which makes the file's content unique).
    """
    lines = []
    for i, kind in enumerate(kinds):
        if kind == "good":
            lines.append(GOOD.format(f"{tag}{i}"))
        elif kind == "empty":
            lines.append("")
        elif kind == "header":
            lines.append("user,item,rating,timestamp")
        else:
            lines.append(BAD[kind][0].format(f"{tag}{i}"))
    return lines


def _readable(kinds: list[str]) -> bool:
    """Whether a file of these kinds has a valid row and a clear column count.

    Without a header the count is the most common among the first lines, so rows of four
    fields must outnumber those of three and those of five.
    """
    four = sum(kind not in ("few", "many", "empty", "header") for kind in kinds)
    return "good" in kinds and four > max(kinds.count("few"), kinds.count("many"))


def _expected(kinds: list[str], tag: str = "") -> tuple[list[int], list[tuple[int, str, str]]]:
    """The lines of the accepted rows, and the rejects, of the file ``_lines(kinds, tag)``."""
    good = [i + 1 for i, kind in enumerate(kinds) if kind == "good"]
    bad = [
        (i + 1, BAD[kind][1], BAD[kind][0].format(f"{tag}{i}"))
        for i, kind in enumerate(kinds)
        if kind in BAD
    ]
    return good, bad


def test_rejects_of_a_file_with_a_header_carry_their_file_line(catalog, write_file):
    path = write_file(
        "h.csv",
        "user,item,rating,timestamp\n"
        "u1,i1,4\n"  # line 2: too few fields, right after the header
        "u2,i2,4,1000000000\n"
        "u3,i3,4,1000000000,x\n"  # line 4: too many
        "u4,i4,4,1000000000,x\n"  # line 5: too many, next to the one before
        "u5,i5,9,1000000000\n"  # line 6: out of range, next to a split error
        "u6,i6,4,1000000000\n"
        "u7,i7\n",  # line 8: the last line
    )
    cat = catalog()

    result = ingest_files(cat, [path])[0]

    assert _rejects(cat) == [
        (2, "row has fewer fields than the 4 expected", "u1,i1,4"),
        (4, "row has more fields than the 4 expected", "u3,i3,4,1000000000,x"),
        (5, "row has more fields than the 4 expected", "u4,i4,4,1000000000,x"),
        (6, "rating is outside [0.5, 5]: 9", "u5,i5,9,1000000000"),
        (8, "row has fewer fields than the 4 expected", "u7,i7"),
    ]
    assert [(line, user) for line, user, *_ in _raw(cat)] == [(3, "u2"), (7, "u6")]
    assert _counts(cat) == (7, 2, 5)
    assert (result.rows_read, result.rows_accepted, result.rows_rejected) == (7, 2, 5)
    assert result.reasons == {
        "row has fewer fields than the 4 expected": 2,
        "row has more fields than the 4 expected": 2,
        "rating is outside [0.5, 5]": 1,
    }


def test_rejects_of_a_file_without_a_header_carry_their_file_line(catalog, write_file):
    path = write_file(
        "n.csv",
        "u1,i1,4,1000000000,x\n"  # line 1: too many, the first line
        "u2,i2,4,1000000000\n"
        "u3,i3\n"  # line 3: too few
        "u4,i4,4,1000000000\n"
        "u5,i5,4,1000000000\n"
        "u6,i6,,1000000000\n"  # line 6: rating missing
        "u7,i7,4,1000000000,x,y\n",  # line 7: the last line
    )
    cat = catalog()

    ingest_files(cat, [path])

    assert _rejects(cat) == [
        (1, "row has more fields than the 4 expected", "u1,i1,4,1000000000,x"),
        (3, "row has fewer fields than the 4 expected", "u3,i3"),
        (6, "rating is missing", "u6,i6,,1000000000"),
        (7, "row has more fields than the 4 expected", "u7,i7,4,1000000000,x,y"),
    ]
    assert [(line, user) for line, user, *_ in _raw(cat)] == [(2, "u2"), (4, "u4"), (5, "u5")]


@pytest.mark.parametrize("header", [True, False], ids=["header", "no-header"])
@pytest.mark.parametrize(
    "kinds",
    [
        ["few", "good", "good", "good"],
        ["good", "good", "many", "good", "good"],
        ["good", "few", "many", "range", "few", "good"],
        ["good", "good", "good", "many"],
        ["many", "few", "good", "text", "good", "many", "few", "good"],
        ["good", "empty", "few", "empty", "empty", "good", "user", "empty", "good"],
        ["empty", "empty", "good", "many", "good", "time", "empty"],
    ],
    ids=["start", "middle", "adjacent", "end", "alternating", "empty-lines", "leading-empty"],
)
def test_every_row_keeps_its_file_line_wherever_the_bad_rows_are(
    catalog, write_file, header, kinds
):
    if header:
        # Empty lines before the header stay before it.
        lead = 0
        while kinds[lead] == "empty":
            lead += 1
        kinds = kinds[:lead] + ["header"] + kinds[lead:]
    path = write_file("f.csv", "\n".join(_lines(kinds)) + "\n")
    cat = catalog(_config(header=header))

    ingest_files(cat, [path])

    good, bad = _expected(kinds)
    assert [row[0] for row in _raw(cat)] == good
    assert _rejects(cat) == bad


@settings(max_examples=25, deadline=None)
@given(
    kinds=st.lists(
        st.sampled_from(["good", "good", "good", "empty", *BAD]), min_size=1, max_size=30
    ).filter(_readable),
    header=st.booleans(),
    crlf=st.booleans(),
)
def test_line_numbers_match_the_file_for_any_mix_of_rows(shared_catalogs, kinds, header, crlf):
    cat, folder = shared_catalogs[header], shared_catalogs["folder"]
    tag = f"{next(shared_catalogs['tags'])}x"
    if header:
        kinds = ["header", *kinds]
    newline = "\r\n" if crlf else "\n"
    path = folder / f"{tag}.csv"
    path.write_bytes((newline.join(_lines(kinds, tag)) + newline).encode())

    version = ingest_files(cat, [path])[0].version

    good, bad = _expected(kinds, tag)
    assert [row[0] for row in _raw(cat, version)] == good
    assert _rejects(cat, version) == bad


@pytest.fixture(scope="module")
def shared_catalogs(tmp_path_factory: pytest.TempPathFactory):
    """One catalog per header setting, kept for a whole property test for speed."""
    folder = tmp_path_factory.mktemp("property")
    with (
        open_catalog(folder / "h.duckdb", _config(header=True), Invocation("t"), write=True) as h,
        open_catalog(folder / "n.duckdb", _config(header=False), Invocation("t"), write=True) as n,
    ):
        yield {True: h, False: n, "folder": folder, "tags": itertools.count()}


def test_line_numbers_stay_right_in_a_file_read_in_parallel(catalog, write_file):
    # About 6 MB, so that DuckDB splits the scan; every 997th line is too short.
    n = 300_000
    lines = [f"u{i},i{i % 1000},{1 + i % 5},{1_000_000_000 + i}" for i in range(n)]
    for i in range(0, n, 997):
        lines[i] = f"u{i},short"
    path = write_file("big.csv", "\n".join(lines) + "\n")
    cat = catalog(_config(header=False))

    ingest_files(cat, [path])

    wrong = cat.one("SELECT count(*) FROM ratings_raw WHERE user_id <> 'u' || (line - 1)::VARCHAR")
    assert wrong == 0
    assert cat.one("SELECT count(*) FROM ratings_raw") == n - len(range(0, n, 997))
    assert cat.rows("SELECT line FROM rejects ORDER BY line") == [
        (i + 1,) for i in range(0, n, 997)
    ]


# --- values --------------------------------------------------------------------------


def _one_field_per_row(write_file, field: str, values: list[str]) -> Path:
    """A file with a header and one row per value, the other fields valid."""
    row = {"rating": "u{0},i{0},{1},1", "timestamp": "u{0},i{0},4,{1}"}[field]
    body = "".join(row.format(i, value) + "\n" for i, value in enumerate(values))
    return write_file(f"{field}.csv", "user,item,rating,timestamp\n" + body)


# Each value, the reason it is rejected for (None when accepted) and the rating stored.
RATINGS = [
    ("4", None, 4.0),
    ("0.5", None, 0.5),  # the bounds are inside the range
    ("5", None, 5.0),
    ("5.0", None, 5.0),
    (" 3 ", None, 3.0),
    ("2.25", None, 2.25),
    ("7", "rating is outside [0.5, 5]: 7", None),
    ("0", "rating is outside [0.5, 5]: 0", None),
    ("-1", "rating is outside [0.5, 5]: -1", None),
    ("5.01", "rating is outside [0.5, 5]: 5.01", None),
    ("NaN", "rating is not a number: NaN", None),
    ("nan", "rating is not a number: nan", None),
    ("inf", "rating is not a number: inf", None),
    ("-Infinity", "rating is not a number: -Infinity", None),
    ("1e400", "rating is not a number: 1e400", None),
    ("four", "rating is not a number: four", None),
    ('"4,5"', "rating is not a number: 4,5", None),  # a decimal comma is text
    ("", "rating is missing", None),
    ("   ", "rating is missing", None),
]


def test_each_rating_is_accepted_or_rejected_with_its_reason(catalog, write_file):
    path = _one_field_per_row(write_file, "rating", [value for value, _, _ in RATINGS])
    cat = catalog()

    ingest_files(cat, [path])

    assert _rejects(cat) == [
        (i + 2, reason, f"u{i},i{i},{value.strip(chr(34))},1")
        for i, (value, reason, _) in enumerate(RATINGS)
        if reason
    ]
    assert [(line, rating) for line, _, _, rating, _ in _raw(cat)] == [
        (i + 2, stored) for i, (_, reason, stored) in enumerate(RATINGS) if not reason
    ]
    assert _counts(cat) == (19, 6, 13)


def test_the_rating_range_comes_from_the_config(catalog, write_file):
    path = _one_field_per_row(write_file, "rating", ["0", "1", "10", "11"])
    cat = catalog(_config(rating_min=1, rating_max=10))

    ingest_files(cat, [path])

    assert [row[3] for row in _raw(cat)] == [1.0, 10.0]
    assert [why for _, why, _ in _rejects(cat)] == [
        "rating is outside [1, 10]: 0",
        "rating is outside [1, 10]: 11",
    ]


def test_missing_ids_are_rejected(catalog, write_file):
    path = write_file(
        "r.csv",
        "user,item,rating,timestamp\n,i1,4,1\n  ,i2,4,1\nu3,,4,1\nu4, ,4,1\n,,,\nu6,i6,4,1\n",
    )
    cat = catalog()

    ingest_files(cat, [path])

    assert [(line, why) for line, why, _ in _rejects(cat)] == [
        (2, "user id is missing"),
        (3, "user id is missing"),
        (4, "item id is missing"),
        (5, "item id is missing"),
        (6, "user id is missing"),
    ]


def test_ids_and_values_are_trimmed_of_spaces(catalog, write_file):
    path = write_file("r.csv", "user,item,rating,timestamp\n u1 , i1 , 4 , 2020-01-02 \n")
    cat = catalog()

    ingest_files(cat, [path])

    assert _raw(cat) == [(2, "u1", "i1", 4.0, datetime(2020, 1, 2))]


def test_an_id_is_stored_as_an_integer_only_when_it_prints_as_read(catalog, write_file):
    rows = [" 12 ,34", "007,+7", "-5,-0", "1e3,1_000", "12.0,00", "9223372036854775808,0"]
    path = write_file("r.csv", "user,item,rating,ts\n" + "".join(f"{r},4,1\n" for r in rows))
    cat = catalog()

    ingest_files(cat, [path])

    stored = cat.rows("SELECT user_n, user_s, item_n, item_s FROM raw_rows ORDER BY line")
    assert stored == [
        (12, None, 34, None),
        (None, "007", None, "+7"),
        (-5, None, None, "-0"),
        (None, "1e3", None, "1_000"),
        (12, None, None, "00"),
        (None, "9223372036854775808", 0, None),
    ]
    ids = [(u, i) for _, u, i, _, _ in _raw(cat)]
    assert ids[:3] == [("12", "34"), ("007", "+7"), ("-5", "-0")]


def test_a_quoted_field_may_hold_the_delimiter_and_quotes(catalog, write_file):
    path = write_file("q.csv", 'user,item,rating,timestamp\n"a,b","say ""hi""",4,1\n')
    cat = catalog()

    ingest_files(cat, [path])

    assert [(row[1], row[2]) for row in _raw(cat)] == [("a,b", 'say "hi"')]


def test_a_stray_quote_is_rejected_on_its_line(catalog, write_file):
    path = write_file("q.csv", 'user,item,rating,timestamp\nu1,i1,4,1\n"u2"x,i2,4,1\nu3,i3,4,1\n')
    cat = catalog()

    ingest_files(cat, [path])

    assert _rejects(cat) == [(3, "row has a stray or unclosed quote", '"u2"x,i2,4,1')]
    assert [row[0] for row in _raw(cat)] == [2, 4]


def test_a_quoted_value_spanning_lines_warns_that_later_lines_may_be_off(
    catalog, write_file, caplog
):
    # NOTE: a known gap: DuckDB counts the quoted value as one line, so u3 (on line 5)
    # is numbered 4. The warning says so rather than leave it unnoticed.
    path = write_file("q.csv", 'user,item,rating,timestamp\nu1,i1,4,1\n"u\n2",i2,4,1\nu3,i3,4,1\n')
    cat = catalog()

    with caplog.at_level("WARNING", logger="incr_cli.ingest"):
        ingest_files(cat, [path])

    assert [(line, user) for line, user, *_ in _raw(cat)] == [(2, "u1"), (3, "u\n2"), (4, "u3")]
    assert "3 rows read from 5 lines that should hold 4" in caplog.text


# Each text, the time stored in UTC (None when rejected) and the reason it is rejected for.
TIMESTAMPS = [
    ("881250949", datetime(1997, 12, 4, 15, 55, 49), None),
    ("881250949.25", datetime(1997, 12, 4, 15, 55, 49, 250000), None),
    ("0", datetime(1970, 1, 1), None),
    ("2020-01-02", datetime(2020, 1, 2), None),
    ("2020-01-02 03:04:05", datetime(2020, 1, 2, 3, 4, 5), None),
    ("2020-01-02T03:04:05", datetime(2020, 1, 2, 3, 4, 5), None),
    ("2020-01-02T03:04:05.5", datetime(2020, 1, 2, 3, 4, 5, 500000), None),
    ("2020-01-02T03:04:05Z", datetime(2020, 1, 2, 3, 4, 5), None),
    ("2020-01-02T03:04:05+02:00", datetime(2020, 1, 2, 1, 4, 5), None),
    ("2020-01-02 03:04:05-05:30", datetime(2020, 1, 2, 8, 34, 5), None),
    ("2020-01-02T00:30:00+01", datetime(2020, 1, 1, 23, 30), None),
    ("soon", None, "timestamp cannot be read: soon"),
    ("2020-13-01", None, "timestamp cannot be read: 2020-13-01"),
    ("01/02/2020", None, "timestamp cannot be read: 01/02/2020"),
    ("1e12", None, "timestamp cannot be read: 1e12"),  # milliseconds need unix_ms
    ("nan", None, "timestamp cannot be read: nan"),
    ("", None, "timestamp is missing"),
]


def test_each_timestamp_is_stored_in_utc_or_rejected_with_its_reason(catalog, write_file):
    path = _one_field_per_row(write_file, "timestamp", [text for text, _, _ in TIMESTAMPS])
    cat = catalog()

    ingest_files(cat, [path])

    assert [(line, ts) for line, _, _, _, ts in _raw(cat)] == [
        (i + 2, stored) for i, (_, stored, _) in enumerate(TIMESTAMPS) if stored
    ]
    assert [(line, why) for line, why, _ in _rejects(cat)] == [
        (i + 2, reason) for i, (_, _, reason) in enumerate(TIMESTAMPS) if reason
    ]


def test_a_timestamp_without_zone_is_utc_whatever_the_session_zone(catalog, write_file):
    texts = ["2020-06-01 12:00:00", "2020-06-01T08:00:00-04:00"]
    path = _one_field_per_row(write_file, "timestamp", texts)
    cat = catalog()
    cat.con.execute("SET TimeZone = 'America/New_York'")

    ingest_files(cat, [path])

    assert [row[4] for row in _raw(cat)] == [datetime(2020, 6, 1, 12), datetime(2020, 6, 1, 12)]
    assert cat.one("SELECT current_setting('TimeZone')") == "America/New_York"


@pytest.mark.parametrize(
    ("fmt", "texts", "stored"),
    [
        ("unix", ["1000000000", "2020-01-02"], [datetime(2001, 9, 9, 1, 46, 40)]),
        ("unix_ms", ["1000000000500"], [datetime(2001, 9, 9, 1, 46, 40, 500000)]),
        ("%d/%m/%Y %H:%M", ["02/01/2020 03:04", "2020-01-02"], [datetime(2020, 1, 2, 3, 4)]),
        ("%d/%m/%Y %H:%M %z", ["02/01/2020 03:04 +0100"], [datetime(2020, 1, 2, 2, 4)]),
    ],
)
def test_a_configured_timestamp_format_is_used_alone(catalog, write_file, fmt, texts, stored):
    path = _one_field_per_row(write_file, "timestamp", texts)
    cat = catalog(_config(timestamp_format=fmt))

    ingest_files(cat, [path])

    assert [row[4] for row in _raw(cat)] == stored
    assert [why for _, why, _ in _rejects(cat)] == [
        f"timestamp cannot be read: {text}" for text in texts[len(stored) :]
    ]


# --- line endings, byte order mark, encoding ------------------------------------------


@pytest.mark.parametrize("bom", [False, True], ids=["no-bom", "bom"])
@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_crlf_and_a_byte_order_mark_leave_ids_clean(catalog, write_file, newline, bom):
    # The item is the last column, where a stray \r would stick.
    path = write_file(
        "e.csv",
        "user,rating,timestamp,item\nu1,4,1,i1\nu2,4,1\nu3,5,1,i3\n",
        newline=newline,
        bom=bom,
    )
    cat = catalog()

    layout = detect_layout(path, cat.config.ingest)
    ingest_files(cat, [path])

    assert layout.positions == {"user": 0, "item": 3, "rating": 1, "timestamp": 2}
    assert [(line, user, item) for line, user, item, *_ in _raw(cat)] == [
        (2, "u1", "i1"),
        (4, "u3", "i3"),
    ]
    assert _rejects(cat) == [(3, "row has fewer fields than the 4 expected", "u2,4,1")]


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_a_headerless_file_with_a_byte_order_mark_keeps_its_first_id(catalog, write_file, newline):
    path = write_file("b.tsv", "7\t8\t4\t1\n9\t10\t5\t1\n", newline=newline, bom=True)
    cat = catalog()

    ingest_files(cat, [path])

    assert [(user, item) for _, user, item, *_ in _raw(cat)] == [("7", "8"), ("9", "10")]


def test_a_file_mixing_lf_and_crlf_is_bad_input_not_silently_empty(catalog, write_file):
    path = write_file("m.csv", b"\nuser,item,rating,timestamp\r\nu1,i1,4,1\nu2,i2,4,1\n")

    with pytest.raises(BadInput, match="LF or CRLF"):
        ingest_files(catalog(), [path])


def test_latin1_is_read_when_configured(catalog, write_file):
    path = write_file("l.csv", "user,item,rating,timestamp\nu1,Misérables,4,1\n".encode("latin-1"))
    cat = catalog(_config(encoding="latin-1"))

    ingest_files(cat, [path])

    assert cat.one("SELECT item_id FROM ratings_raw") == "Misérables"


def test_a_row_that_is_not_valid_utf8_is_rejected_on_its_line(catalog, write_file):
    path = write_file("l.csv", b"user,item,rating,timestamp\nu1,i1,4,1\nu2,Mis\xe9rables,4,1\n")
    cat = catalog()

    ingest_files(cat, [path])

    assert [(line, why) for line, why, _ in _rejects(cat)] == [(3, "row is not valid utf-8")]


# --- empty files and files already held ----------------------------------------------


@pytest.mark.parametrize("content", [b"", b"\n\n", b"\r\n"], ids=["empty", "lf", "crlf"])
def test_an_empty_file_is_bad_input(catalog, write_file, content):
    path = write_file("empty.csv", content)

    with pytest.raises(BadInput, match="the file is empty"):
        ingest_files(catalog(), [path])


def test_a_header_only_file_has_nothing_to_do(catalog, write_file):
    path = write_file("h.csv", "user,item,rating,timestamp\n")
    cat = catalog()

    with pytest.raises(NothingToDo, match="holds a header but no rows"):
        ingest_files(cat, [path])
    assert cat.one("SELECT count(*) FROM versions") == 0


def test_a_header_only_file_beside_others_is_skipped(catalog, write_file):
    header_only = write_file("h.csv", "user,item,rating,timestamp\n")
    data = write_file("d.csv", "user,item,rating,timestamp\nu1,i1,4,1\n")
    cat = catalog()

    results = ingest_files(cat, [header_only, data])

    assert [(r.version, r.skipped) for r in results] == [
        (None, "holds a header but no rows"),
        (1, None),
    ]


def test_a_file_where_no_row_passes_is_bad_input(catalog, write_file):
    path = write_file("bad.csv", "user,item,rating,timestamp\nu1,i1,9,1\nu2,i2,8,1\n")

    with pytest.raises(BadInput, match=r"no row passed validation \(2 read; e.g. rating is"):
        ingest_files(catalog(), [path])


def test_a_file_already_on_the_lineage_is_refused_naming_its_version(catalog, write_file):
    first = write_file("a.csv", MOVIELENS)
    other = write_file("b.csv", "1\t2\t3\t4\n")
    copy = write_file("copy.csv", MOVIELENS)
    cat = catalog()
    ingest_files(cat, [first, other])

    with pytest.raises(NothingToDo, match=r"copy.csv is already held by v1"):
        ingest_files(cat, [copy])
    assert cat.one("SELECT count(*) FROM versions") == 2


def test_the_same_content_twice_in_one_call_is_ingested_once(catalog, write_file):
    first = write_file("a.csv", MOVIELENS)
    copy = write_file("copy.csv", MOVIELENS)
    cat = catalog()

    results = ingest_files(cat, [first, copy])

    assert [(r.version, r.skipped) for r in results] == [(1, None), (None, "is already held by v1")]


def test_a_file_held_only_by_rolled_back_versions_is_ingested_again(catalog, write_file):
    base = write_file("base.csv", MOVIELENS)
    later = write_file("later.csv", "1\t2\t3\t4\n")
    cat = catalog()
    ingest_files(cat, [base, later])
    with cat.transaction():
        cat.set_meta("head", "1")

    results = ingest_files(cat, [later])

    assert [(r.version, r.skipped) for r in results] == [(3, None)]
    assert cat.rows("SELECT version, parent FROM versions ORDER BY version") == [
        (1, None),
        (2, 1),
        (3, 1),
    ]
    # The base is still on the lineage of the new head, so it is still refused.
    with pytest.raises(NothingToDo, match="is already held by v1"):
        ingest_files(cat, [base])


def test_the_version_records_the_source(catalog, write_file):
    path = write_file("u.data", MOVIELENS)
    cat = catalog()

    ingest_files(cat, [path])

    assert cat.rows(
        "SELECT version, parent, command, source_path, source_size, source_sha256 FROM versions"
    ) == [
        (
            1,
            None,
            "test",
            str(path.resolve()),
            len(MOVIELENS),
            hashlib.sha256(MOVIELENS.encode()).hexdigest(),
        )
    ]
    assert cat.head() == 1
    assert cat.rows("SELECT version, stage FROM stages") == [(1, "ingest")]


def test_no_temporary_table_outlives_the_ingest(catalog, write_file):
    cat = catalog()

    ingest_files(cat, [write_file("a.csv", MOVIELENS)])

    assert cat.rows("SELECT table_name FROM duckdb_tables() WHERE temporary") == []


# --- all or nothing ------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [b"", b"user,item,price\n1,2,3\n", b"user,item,rating\nu1,i1,9\n"],
    ids=["empty", "no-rating-column", "no-valid-row"],
)
def test_a_failed_ingest_of_several_files_leaves_the_catalog_as_it_was(catalog, write_file, bad):
    cat = catalog()
    ingest_files(cat, [write_file("old.csv", MOVIELENS)])
    before = _snapshot(cat)
    files = [
        write_file("one.csv", "user,item,rating,timestamp\nu1,i1,4,1\nu1,i1,9,1\n"),
        write_file("two.csv", "user,item,rating,timestamp\nu2,i2,4,1\n"),
        write_file("bad.csv", bad),
    ]

    with pytest.raises(BadInput):
        ingest_files(cat, files)

    assert _snapshot(cat) == before
    assert cat.head() == 1


def test_a_missing_file_stops_before_any_work(catalog, write_file, tmp_path):
    cat = catalog()
    good = write_file("one.csv", MOVIELENS)

    with pytest.raises(PathNotFound, match="no such file"):
        ingest_files(cat, [good, tmp_path / "absent.csv"])
    assert cat.one("SELECT count(*) FROM versions") == 0


# --- one pass over the bytes ---------------------------------------------------------


def _reference_scan(data: bytes) -> tuple[int, tuple[int, ...]]:
    text = data.removeprefix(b"\xef\xbb\xbf")
    lines = text.split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # a final newline ends the last line rather than starting one
    empty = tuple(i + 1 for i, line in enumerate(lines) if line in (b"", b"\r"))
    return len(lines), empty


@settings(max_examples=200, deadline=None)
@given(
    data=st.lists(st.sampled_from([b"a", b",", b"\n", b"\r\n"]), max_size=40).map(b"".join),
    bom=st.booleans(),
    chunk=st.integers(3, 7),
)
def test_scan_finds_empty_lines_across_chunk_boundaries(data, bom, chunk):
    data = (b"\xef\xbb\xbf" if bom else b"") + data
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.csv"
        path.write_bytes(data)

        scan = scan_file(path, chunk_size=chunk)

    assert (scan.lines, scan.empty_lines) == _reference_scan(data)
    assert scan.sha256 == hashlib.sha256(data).hexdigest()
    assert scan.size == len(data)


def test_docstring_examples_run():
    assert doctest.testmod(ingest_module).failed == 0


# --- the public data sets ------------------------------------------------------------


@pytest.mark.realdata
def test_a_movielens_100k_delta_is_detected_and_accepted_whole(catalog, shared_file):
    path = shared_file("ml-100k", "deltas", "ratings-02.tsv")
    cat = catalog()

    layout = detect_layout(path, cat.config.ingest)
    ingest_files(cat, [path])

    assert (layout.delimiter, layout.header, layout.n_columns) == ("\t", False, 4)
    assert _counts(cat) == (10_000, 10_000, 0)
    assert cat.one("SELECT max(line) FROM ratings_raw") == 10_000


@pytest.mark.realdata
def test_movielens_latest_small_with_crlf_and_half_stars_is_accepted_whole(catalog, shared_file):
    path = shared_file("ml-latest-small", "ratings.csv")
    cat = catalog()

    ingest_files(cat, [path])

    assert _counts(cat) == (100_836, 100_836, 0)
    assert cat.rows(
        "SELECT count(DISTINCT user_id), count(DISTINCT item_id), min(rating), max(rating), "
        "min(ts), max(ts) FROM ratings_raw"
    ) == [
        (610, 9_724, 0.5, 5.0, datetime(1996, 3, 29, 18, 36, 55), datetime(2018, 9, 24, 14, 27, 30))
    ]
    polluted = cat.one(
        "SELECT count(*) FROM ratings_raw WHERE regexp_matches(user_id || item_id, '[^0-9]')"
    )
    assert polluted == 0
