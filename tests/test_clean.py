"""Tests of clean: duplicates within a delta, the exclusion rules and what is recorded."""

from __future__ import annotations

import gzip
import json
from datetime import datetime

import pytest

from incr_cli.catalog import Catalog
from incr_cli.clean import clean_pending
from incr_cli.config import CleanConfig, Config
from incr_cli.errors import ConfigError, NothingToDo
from incr_cli.history import rollback
from incr_cli.ingest import ingest_files

HEADER = "user,item,rating,timestamp\n"


def _config(**clean: object) -> Config:
    return Config(clean=CleanConfig(**clean))


def _clean_rows(catalog: Catalog, version: int = 1) -> list[tuple]:
    return catalog.rows(
        "SELECT user_id, item_id, rating, ts FROM ratings_clean WHERE version = ? "
        "ORDER BY ts, user_id, item_id",
        [version],
    )


def _ingest(catalog: Catalog, write_file, name: str, body: str) -> None:
    ingest_files(catalog, [write_file(name, HEADER + body)])


def test_dedupe_keeps_the_latest_rating_of_a_pair_and_counts_the_rest(catalog, write_file):
    cat = catalog()
    _ingest(
        cat,
        write_file,
        "d.csv",
        "u1,i1,1,2020-01-03\n"
        "u1,i1,2,2020-01-05\n"  # the latest of u1-i1, though not the last line
        "u1,i1,3,2020-01-04\n"
        "u1,i2,4,2020-01-01\n"
        "u2,i1,5,2020-01-02\n",
    )

    result = clean_pending(cat)[0]

    assert _clean_rows(cat) == [
        ("u1", "i2", 4.0, datetime(2020, 1, 1)),
        ("u2", "i1", 5.0, datetime(2020, 1, 2)),
        ("u1", "i1", 2.0, datetime(2020, 1, 5)),
    ]
    assert (result.version, result.rows_in, result.rows_out) == (1, 5, 3)
    assert result.removed == {"duplicate of a later rating": 2}


def test_dedupe_breaks_a_tie_in_time_by_the_later_line(catalog, write_file):
    cat = catalog()
    _ingest(
        cat, write_file, "d.csv", "u1,i1,1,2020-01-01\nu1,i1,5,2020-01-01\nu1,i1,3,2020-01-01\n"
    )

    clean_pending(cat)

    assert _clean_rows(cat) == [("u1", "i1", 3.0, datetime(2020, 1, 1))]


def test_dedupe_none_keeps_every_rating(catalog, write_file):
    cat = catalog(_config(dedupe="none"))
    _ingest(cat, write_file, "d.csv", "u1,i1,1,2020-01-01\nu1,i1,5,2020-01-02\n")

    result = clean_pending(cat)[0]

    assert [row[2] for row in _clean_rows(cat)] == [1.0, 5.0]
    assert result.removed == {}


def test_dedupe_looks_only_within_one_delta(catalog, write_file):
    cat = catalog()
    _ingest(cat, write_file, "a.csv", "u1,i1,1,2020-01-01\n")
    _ingest(cat, write_file, "b.csv", "u1,i1,5,2020-01-02\n")

    results = clean_pending(cat)

    assert [(r.version, r.rows_out, r.removed) for r in results] == [(1, 1, {}), (2, 1, {})]
    assert _clean_rows(cat, 1) == [("u1", "i1", 1.0, datetime(2020, 1, 1))]
    assert _clean_rows(cat, 2) == [("u1", "i1", 5.0, datetime(2020, 1, 2))]


DAY_ONE = "u1,i1,4,2020-01-01 10:00:00\nu2,i1,3,2020-01-01 11:00:00\nu2,i2,5,2020-01-01 12:00:00\n"


def test_rows_sent_again_are_removed_as_repeats_of_the_earlier_version(catalog, write_file):
    cat = catalog()
    _ingest(cat, write_file, "day1.csv", DAY_ONE)
    # The same day re-sent with one row corrected, then a later day that repeats nothing.
    _ingest(cat, write_file, "day1-again.csv", DAY_ONE.replace("u2,i2,5", "u2,i2,4"))
    _ingest(cat, write_file, "day2.csv", "u1,i1,4,2020-01-02 10:00:00\n")

    results = clean_pending(cat)

    assert [(r.version, r.rows_in, r.rows_out, r.removed) for r in results] == [
        (1, 3, 3, {}),
        (2, 3, 1, {"repeats a row of an earlier version": 2}),
        (3, 1, 1, {}),
    ]
    assert _clean_rows(cat, 2) == [("u2", "i2", 4.0, datetime(2020, 1, 1, 12))]


def test_repeated_rows_keep_keeps_rows_sent_again(catalog, write_file):
    cat = catalog(_config(repeated_rows="keep"))
    _ingest(cat, write_file, "day1.csv", DAY_ONE)
    # A compressed copy is another file, so ingest takes it.
    ingest_files(cat, [write_file("day1.csv.gz", gzip.compress((HEADER + DAY_ONE).encode()))])

    assert [r.rows_out for r in clean_pending(cat)] == [3, 3]


def test_a_row_repeating_a_rolled_back_version_is_kept(catalog, write_file):
    cat = catalog()
    _ingest(cat, write_file, "day1.csv", "u9,i9,1,2019-12-31\n")
    _ingest(cat, write_file, "day2.csv", DAY_ONE)
    clean_pending(cat)
    rollback(cat, 1)
    ingest_files(cat, [write_file("day2.csv.gz", gzip.compress((HEADER + DAY_ONE).encode()))])

    (result,) = clean_pending(cat)

    assert (result.version, result.rows_out, result.removed) == (3, 3, {})


def test_exclude_rules_remove_rows_and_say_why(catalog, write_file):
    config = _config(
        exclude_users="test-.*",
        exclude_items="POST|D",
        min_timestamp="2020-01-02",
        max_timestamp="2020-01-31T00:00:00",
    )
    cat = catalog(config)
    _ingest(
        cat,
        write_file,
        "d.csv",
        "test-1,i1,4,2020-01-10\n"
        "u1,POST,4,2020-01-10\n"
        "u1,POSTAGE,4,2020-01-10\n"  # the pattern must match the whole id
        "u1,D,4,2020-01-10\n"
        "u2,i2,4,2020-01-01\n"
        "u2,i3,4,2020-01-02\n"  # on the bound: kept
        "u2,i4,4,2020-01-31\n"  # on the bound: kept
        "u2,i5,4,2020-01-31T00:00:01\n",
    )

    result = clean_pending(cat)[0]

    assert [(user, item) for user, item, _, _ in _clean_rows(cat)] == [
        ("u2", "i3"),
        ("u1", "POSTAGE"),
        ("u2", "i4"),
    ]
    assert result.removed == {
        "item excluded by rule": 2,
        "newer than max_timestamp": 1,
        "older than min_timestamp": 1,
        "user excluded by rule": 1,
    }
    assert cat.rows("SELECT reason, rows FROM clean_removed ORDER BY reason") == [
        ("item excluded by rule", 2),
        ("newer than max_timestamp", 1),
        ("older than min_timestamp", 1),
        ("user excluded by rule", 1),
    ]


def test_a_row_both_excluded_and_duplicated_is_counted_once_under_the_rule(catalog, write_file):
    cat = catalog(_config(exclude_users="bot"))
    _ingest(
        cat, write_file, "d.csv", "bot,i1,1,2020-01-01\nbot,i1,2,2020-01-02\nu1,i1,3,2020-01-01\n"
    )

    result = clean_pending(cat)[0]

    assert result.removed == {"user excluded by rule": 2}
    assert (result.rows_in, result.rows_out) == (3, 1)


def test_a_later_rating_dropped_by_a_rule_leaves_the_earlier_one(catalog, write_file):
    cat = catalog(_config(max_timestamp="2020-01-10"))
    _ingest(cat, write_file, "d.csv", "u1,i1,1,2020-01-01\nu1,i1,5,2020-02-01\n")

    result = clean_pending(cat)[0]

    assert _clean_rows(cat) == [("u1", "i1", 1.0, datetime(2020, 1, 1))]
    assert result.removed == {"newer than max_timestamp": 1}


def test_a_time_bound_with_a_zone_is_compared_in_utc(catalog, write_file):
    # 2020-01-02T01:00:00+02:00 is 2020-01-01T23:00:00 UTC.
    cat = catalog(_config(min_timestamp="2020-01-02T01:00:00+02:00"))
    _ingest(cat, write_file, "d.csv", "u1,i1,4,2020-01-01T22:59:59\nu2,i2,4,2020-01-01T23:00:00\n")

    clean_pending(cat)

    assert [row[0] for row in _clean_rows(cat)] == ["u2"]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"exclude_users": "("}, r"clean.exclude_users '\(' is not a valid regular expression"),
        ({"exclude_items": "[a-"}, r"clean.exclude_items '\[a-' is not a valid regular"),
        ({"min_timestamp": "last week"}, "clean.min_timestamp 'last week' is not an ISO date"),
        ({"max_timestamp": "2020-02-30"}, "clean.max_timestamp '2020-02-30' is not an ISO date"),
    ],
)
def test_a_bad_rule_is_a_config_error_before_any_work(catalog, write_file, rule, message):
    cat = catalog(_config(**rule))
    _ingest(cat, write_file, "d.csv", "u1,i1,4,2020-01-01\n")

    with pytest.raises(ConfigError, match=message):
        clean_pending(cat)
    assert cat.one("SELECT count(*) FROM ratings_clean") == 0
    assert cat.pending("clean", after="ingest") == [1]


def test_every_pending_version_is_cleaned_oldest_first_and_then_nothing_is_left(
    catalog, write_file
):
    cat = catalog()
    _ingest(cat, write_file, "a.csv", "u1,i1,4,2020-01-01\n")
    clean_pending(cat)
    _ingest(cat, write_file, "b.csv", "u2,i1,4,2020-01-02\nu2,i1,3,2020-01-03\n")
    _ingest(cat, write_file, "c.csv", "u3,i1,4,2020-01-04\n")
    seen: list[str] = []

    results = clean_pending(cat, progress=seen.append)

    assert seen == ["v2", "v3"]
    assert [(r.version, r.rows_in, r.rows_out) for r in results] == [(2, 2, 1), (3, 1, 1)]
    with pytest.raises(NothingToDo, match="every version is already cleaned"):
        clean_pending(cat)


def test_the_stage_records_what_was_removed(catalog, write_file):
    cat = catalog()
    _ingest(cat, write_file, "d.csv", "u1,i1,4,2020-01-01\nu1,i1,3,2020-01-02\n")

    clean_pending(cat)

    details = cat.one("SELECT details FROM stages WHERE version = 1 AND stage = 'clean'")
    assert json.loads(details) == {
        "rows_in": 2,
        "rows_out": 1,
        "removed": {"duplicate of a later rating": 1},
    }


def test_a_rolled_back_version_is_not_cleaned(catalog, write_file):
    cat = catalog()
    _ingest(cat, write_file, "a.csv", "u1,i1,4,2020-01-01\n")
    _ingest(cat, write_file, "b.csv", "u2,i1,4,2020-01-02\n")
    with cat.transaction():
        cat.set_meta("head", "1")

    results = clean_pending(cat)

    assert [r.version for r in results] == [1]
    assert cat.rows("SELECT DISTINCT version FROM ratings_clean") == [(1,)]


def test_no_temporary_table_outlives_the_clean(catalog, write_file):
    cat = catalog()
    _ingest(cat, write_file, "d.csv", "u1,i1,4,2020-01-01\n")

    clean_pending(cat)

    assert cat.rows("SELECT table_name FROM duckdb_tables() WHERE temporary") == []
