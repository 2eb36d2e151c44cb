"""Properties over generated deltas: rollback restores, incremental features are exact."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from incr_cli.catalog import Catalog, Invocation, open_catalog
from incr_cli.clean import clean_pending
from incr_cli.config import Config
from incr_cli.featurize import features_as_of, featurize_pending
from incr_cli.history import rollback
from incr_cli.ingest import ingest_files

START = 1_700_000_000

# One delta: up to 30 ratings over a few users and items, so that they overlap a lot.
rating_rows = st.lists(
    st.tuples(
        st.integers(1, 6),  # user
        st.integers(1, 5),  # item
        st.integers(1, 10).map(lambda half_stars: half_stars / 2),  # 0.5 .. 5.0
        st.integers(0, 10_000),  # seconds after START
    ),
    min_size=1,
    max_size=30,
)
deltas = st.lists(rating_rows, min_size=1, max_size=5)

PROPERTY = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _write(folder: Path, deltas: list[list[tuple]]) -> list[Path]:
    paths = []
    for n, rows in enumerate(deltas, start=1):
        path = folder / f"delta-{n:02d}.csv"
        lines = ["user,item,rating,timestamp"]
        lines += [f"u{u},i{i},{r},{START + t}" for u, i, r, t in rows]
        path.write_text("\n".join(lines) + "\n")
        paths.append(path)
    return paths


def _cycle(catalog: Catalog, path: Path) -> None:
    ingest_files(catalog, [path])
    clean_pending(catalog)
    featurize_pending(catalog)


def _state(catalog: Catalog) -> dict[str, object]:
    """Everything visible as of the head."""
    head = catalog.require_head()
    lineage = catalog.lineage()
    return {
        "head": head,
        "lineage": lineage,
        "clean": catalog.rows(
            "SELECT user_id, item_id, rating, ts FROM ratings_clean "
            "WHERE list_contains(?, version) ORDER BY ALL",
            [lineage],
        ),
        "rejects": catalog.rows(
            "SELECT version, line, reason FROM rejects WHERE list_contains(?, version) "
            "ORDER BY ALL",
            [lineage],
        ),
        "users": features_as_of(catalog, "user", head),
        "items": features_as_of(catalog, "item", head),
    }


def _kept_by_clean(batches: list[list[tuple]]) -> int:
    """How many rows clean keeps of these deltas, ingested in this order, worked out here:
    of a delta's rows for one user and item the latest (by time, then line), unless it is
    identical to a row of an earlier delta."""
    held: set[tuple] = set()
    kept = 0
    for rows in batches:
        latest: dict[tuple, tuple] = {}
        for line, (u, i, r, t) in enumerate(rows):
            if (u, i) not in latest or (t, line) > latest[u, i][:2]:
                latest[u, i] = (t, line, r)
        kept += sum((u, i, r, t) not in held for (u, i), (t, _, r) in latest.items())
        held |= set(rows)
    return kept


def _unique(batches: list[list[tuple]]) -> list[list[tuple]]:
    # Identical files are refused as already held; the properties are about distinct deltas.
    seen: set[tuple] = set()
    kept = []
    for rows in batches:
        key = tuple(rows)
        if key not in seen:
            seen.add(key)
            kept.append(rows)
    return kept


@PROPERTY
@given(before=deltas, after=deltas)
def test_ingest_then_rollback_restores_the_earlier_state(
    before: list[list[tuple]], after: list[list[tuple]]
) -> None:
    batches = _unique(before + after)
    split = min(len(_unique(before)), len(batches))
    with tempfile.TemporaryDirectory() as tmp:
        paths = _write(Path(tmp), batches)
        path = Path(tmp) / "catalog.duckdb"
        with open_catalog(path, Config(), Invocation("test"), write=True) as catalog:
            for file in paths[:split]:
                _cycle(catalog, file)
            snapshot = _state(catalog)
            if split == len(paths):
                return
            for file in paths[split:]:
                _cycle(catalog, file)
            rollback(catalog, snapshot["head"])  # type: ignore[arg-type]
            assert _state(catalog) == snapshot


@PROPERTY
@given(batches=deltas, order=st.randoms(use_true_random=False))
def test_incremental_features_equal_features_over_all_data(
    batches: list[list[tuple]], order
) -> None:
    batches = _unique(batches)
    with tempfile.TemporaryDirectory() as tmp:
        paths = _write(Path(tmp), batches)
        order.shuffle(paths)
        path = Path(tmp) / "catalog.duckdb"
        with open_catalog(path, Config(), Invocation("test"), write=True) as catalog:
            for file in paths:
                _cycle(catalog, file)
            head = catalog.require_head()
            lineage = catalog.lineage()
            for entity, key in (("user", "user_id"), ("item", "item_id")):
                want = catalog.rows(
                    f"SELECT {key}, count(*), avg(rating), var_pop(rating), min(ts), max(ts) "
                    "FROM ratings_clean WHERE list_contains(?, version) GROUP BY 1 ORDER BY 1",
                    [lineage],
                )
                got = features_as_of(catalog, entity, head)
                assert [row[0] for row in got] == [row[0] for row in want]
                for g, w in zip(got, want, strict=True):
                    assert g[1] == w[1]
                    assert g[2] == pytest.approx(w[2], abs=1e-9)
                    assert g[3] == pytest.approx(w[3], abs=1e-9)
                    assert (g[4], g[5]) == (w[4], w[5])
            ingested = [batches[int(p.stem.split("-")[1]) - 1] for p in paths]
            total = _kept_by_clean(ingested)
            assert (
                catalog.one(
                    "SELECT count(*) FROM ratings_clean WHERE list_contains(?, version)", [lineage]
                )
                == total
            )
            assert all(isinstance(row[4], datetime) for row in got)
            assert min(row[4] for row in got) >= datetime.fromtimestamp(START, UTC).replace(
                tzinfo=None
            )
