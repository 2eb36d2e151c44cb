"""Tests of featurize: running per-user and per-item statistics that merge exactly."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from incr_cli.catalog import Catalog
from incr_cli.clean import clean_pending
from incr_cli.errors import NothingToDo
from incr_cli.featurize import features_as_of, featurize_pending
from incr_cli.ingest import ingest_files
from incr_cli.synthetic import write_deltas

N_DELTAS = 5
TOLERANCE = 1e-9


@pytest.fixture(scope="module")
def deltas(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_deltas(tmp_path_factory.mktemp("deltas"), 300, 200, 6000, N_DELTAS, seed=3)


def _read(path: Path) -> np.ndarray:
    # Columns user_id, item_id, rating, timestamp (unix seconds), all whole numbers.
    return np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.int64, ndmin=2)


def _reference(files: list[Path], column: int) -> list[tuple]:
    """Features over every row of ``files`` at once: (id, n, mean, variance, first, last)."""
    rows = np.concatenate([_read(path) for path in files])
    ids, inverse = np.unique(rows[:, column], return_inverse=True)
    rating = rows[:, 2].astype(float)
    n = np.bincount(inverse)
    mean = np.bincount(inverse, weights=rating) / n
    # Two passes, var = mean((r - mean)^2), so the reference does not share the merge's maths.
    variance = np.bincount(inverse, weights=(rating - mean[inverse]) ** 2) / n
    first = np.full(ids.size, np.iinfo(np.int64).max)
    last = np.full(ids.size, np.iinfo(np.int64).min)
    np.minimum.at(first, inverse, rows[:, 3])
    np.maximum.at(last, inverse, rows[:, 3])
    features = [
        (str(i), int(c), float(m), float(v), _utc(f), _utc(la))
        for i, c, m, v, f, la in zip(ids, n, mean, variance, first, last, strict=True)
    ]
    return sorted(features)


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(int(seconds), UTC).replace(tzinfo=None)


def _assert_features_equal(got: list[tuple], want: list[tuple]) -> None:
    assert [row[0] for row in got] == [row[0] for row in want]
    for (gid, gn, gmean, gvar, gfirst, glast), (_, n, mean, var, first, last) in zip(
        got, want, strict=True
    ):
        assert gn == n, gid
        assert gmean == pytest.approx(mean, abs=TOLERANCE), gid
        assert gvar == pytest.approx(var, abs=TOLERANCE), gid
        assert (gfirst, glast) == (first, last), gid


def _load(catalog: Catalog, files: list[Path]) -> None:
    ingest_files(catalog, files)
    clean_pending(catalog)
    featurize_pending(catalog)


def _sql_reference(catalog: Catalog, key: str, version: int) -> list[tuple]:
    """The same features in one SQL query over every clean row on the lineage."""
    return catalog.rows(
        f"SELECT {key}, count(*), avg(rating), var_pop(rating), min(ts), max(ts) "
        "FROM ratings_clean WHERE list_contains(?, version) GROUP BY 1 ORDER BY 1",
        [catalog.lineage(version)],
    )


def test_incremental_features_equal_a_computation_over_all_data(catalog, deltas):
    cat = catalog()
    ingest_files(cat, deltas)
    assert all(r.removed == {} for r in clean_pending(cat))  # every row is clean

    results = featurize_pending(cat)

    assert [r.version for r in results] == list(range(1, N_DELTAS + 1))
    for version in range(1, N_DELTAS + 1):
        files = deltas[:version]
        _assert_features_equal(features_as_of(cat, "user", version), _reference(files, 0))
        _assert_features_equal(features_as_of(cat, "item", version), _reference(files, 1))
        _assert_features_equal(
            features_as_of(cat, "user", version), _sql_reference(cat, "user_id", version)
        )


def test_featurize_reads_the_previous_features_and_the_new_delta_only(catalog, deltas):
    cat = catalog()
    _load(cat, deltas[:3])
    ingest_files(cat, deltas[3:4])
    clean_pending(cat)
    # With the older deltas gone, only the stored features can carry their totals.
    with cat.transaction():
        cat.con.execute("DELETE FROM raw_rows WHERE version < 4")

    featurize_pending(cat)

    _assert_features_equal(features_as_of(cat, "user", 4), _reference(deltas[:4], 0))
    _assert_features_equal(features_as_of(cat, "item", 4), _reference(deltas[:4], 1))


def test_features_on_a_branch_use_only_that_branch(catalog, deltas):
    cat = catalog()
    _load(cat, deltas[:3])
    with cat.transaction():
        cat.set_meta("head", "1")

    ingest_files(cat, deltas[3:4])
    clean_pending(cat)
    results = featurize_pending(cat)

    assert [r.version for r in results] == [4]
    assert cat.lineage(4) == [1, 4]
    branch = [deltas[0], deltas[3]]
    _assert_features_equal(features_as_of(cat, "user", 4), _reference(branch, 0))
    _assert_features_equal(features_as_of(cat, "item", 4), _reference(branch, 1))
    # The rolled-back line keeps its own features.
    _assert_features_equal(features_as_of(cat, "user", 3), _reference(deltas[:3], 0))
    assert results[0].users_total == len(_reference(branch, 0))
    assert results[0].items_total == len(_reference(branch, 1))


def _hand_worked(catalog: Catalog, write_file) -> None:
    header = "user,item,rating,timestamp\n"
    first = write_file(
        "a.csv", header + "u1,i1,4,2020-01-01\nu1,i2,2,2020-01-02\nu2,i1,5,2020-01-03\n"
    )
    # u1 rates i1 again: every clean row counts, so the re-rating adds to both totals.
    second = write_file("b.csv", header + "u1,i1,2,2020-01-04\nu3,i3,3,2020-01-05\n")
    ingest_files(catalog, [first, second])
    clean_pending(catalog)


def test_features_of_a_hand_worked_case(catalog, write_file):
    cat = catalog()
    _hand_worked(cat, write_file)

    results = featurize_pending(cat)

    # u1: ratings 4, 2, 2: mean 8/3, variance ((4/3)^2 + 2 (2/3)^2) / 3 = 8/9.
    # i1: ratings 4, 5, 2: mean 11/3, variance ((1/3)^2 + (4/3)^2 + (5/3)^2) / 3 = 14/9.
    day = [None, *(datetime(2020, 1, d) for d in range(1, 6))]
    _assert_features_equal(
        features_as_of(cat, "user", 2),
        [
            ("u1", 3, 8 / 3, 8 / 9, day[1], day[4]),
            ("u2", 1, 5.0, 0.0, day[3], day[3]),
            ("u3", 1, 3.0, 0.0, day[5], day[5]),
        ],
    )
    _assert_features_equal(
        features_as_of(cat, "item", 2),
        [
            ("i1", 3, 11 / 3, 14 / 9, day[1], day[4]),
            ("i2", 1, 2.0, 0.0, day[2], day[2]),
            ("i3", 1, 3.0, 0.0, day[5], day[5]),
        ],
    )
    _assert_features_equal(
        features_as_of(cat, "user", 1),
        [("u1", 2, 3.0, 1.0, day[1], day[2]), ("u2", 1, 5.0, 0.0, day[3], day[3])],
    )
    assert [
        (r.version, r.users_updated, r.items_updated, r.users_total, r.items_total) for r in results
    ] == [(1, 2, 2, 2, 2), (2, 2, 2, 3, 3)]


def test_only_the_ids_a_delta_touches_get_a_new_row(catalog, write_file):
    cat = catalog()
    _hand_worked(cat, write_file)

    featurize_pending(cat)

    assert cat.rows("SELECT version, user_id FROM user_features ORDER BY 1, 2") == [
        (1, "u1"),
        (1, "u2"),
        (2, "u1"),
        (2, "u3"),
    ]
    details = cat.one("SELECT details FROM stages WHERE version = 2 AND stage = 'featurize'")
    assert json.loads(details) == {
        "users_updated": 2,
        "items_updated": 2,
        "users_total": 3,
        "items_total": 3,
    }


def test_nothing_to_featurize_says_to_clean_first(catalog, write_file):
    cat = catalog()
    ingest_files(cat, [write_file("a.csv", "user,item,rating,timestamp\nu1,i1,4,1\n")])

    with pytest.raises(NothingToDo, match="run 'incr clean' first"):
        featurize_pending(cat)

    clean_pending(cat)
    featurize_pending(cat)
    with pytest.raises(NothingToDo):
        featurize_pending(cat)


def test_features_of_an_unknown_entity_are_refused(catalog):
    with pytest.raises(ValueError, match=r"entity must be one of \['item', 'user'\], got 'movie'"):
        features_as_of(catalog(), "movie", 1)
