"""What ``incr update`` replays with a delta, and which rows its quality gate holds out."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from incr_cli.catalog import Catalog, Invocation, open_catalog
from incr_cli.clean import clean_pending
from incr_cli.config import Config
from incr_cli.ingest import ingest_files
from incr_cli.update import HASH_MAX, REPLAY_SQL, _held_out_rows, _replay

# User a rates six items, b three; then a comes back for i7 and c is new.
BASE = """user,item,rating,timestamp
a,i1,5,1
a,i2,4,2
b,i1,3,3
a,i3,2,4
b,i2,4,5
a,i4,3,6
b,i3,5,7
a,i5,4,8
a,i6,1,9
"""
DELTA = """user,item,rating,timestamp
a,i7,5,10
c,i1,4,11
"""


def _config(**model: float) -> Config:
    return Config.model_validate({"model": model})


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    paths = [tmp_path / "base.csv", tmp_path / "delta.csv"]
    for path, text in zip(paths, (BASE, DELTA), strict=True):
        path.write_text(text)
    return paths


@contextmanager
def _catalog(tmp_path: Path, files: list[Path], config: Config) -> Iterator[Catalog]:
    path = tmp_path / "catalog" / "catalog.duckdb"
    with open_catalog(path, config, Invocation("test"), write=True, create=True) as catalog:
        ingest_files(catalog, files[:1])
        ingest_files(catalog, files[1:])
        clean_pending(catalog)
        yield catalog


def _replayed(tmp_path: Path, files: list[Path], **model: float) -> list[tuple[str, str, float]]:
    with _catalog(tmp_path, files, _config(**model)) as catalog:
        X, y = _replay(catalog, catalog.require_head(), delta_rows=2)
    return [(u, i, r) for (u, i), r in zip(X.ids().tolist(), y.tolist(), strict=True)]


def test_the_random_sample_is_replay_ratio_times_the_delta_and_repeatable(
    tmp_path: Path, files: list[Path]
) -> None:
    first = _replayed(tmp_path / "1", files, replay_ratio=1.5)
    again = _replayed(tmp_path / "2", files, replay_ratio=1.5)
    assert len(first) == 3  # round(1.5 * 2)
    assert first == again
    older = {tuple(line.split(",")[:3]) for line in BASE.splitlines()[1:]}
    assert {(u, i, f"{r:g}") for u, i, r in first} <= older


def test_nothing_is_replayed_with_a_ratio_of_zero(tmp_path: Path, files: list[Path]) -> None:
    assert _replayed(tmp_path, files, replay_ratio=0.0) == []


def test_the_gate_holds_out_a_seeded_random_share(tmp_path: Path, files: list[Path]) -> None:
    masks = {}
    for seed in (0, 1):
        with _catalog(tmp_path / str(seed), files, _config(seed=seed)) as catalog:
            head = catalog.require_head()
            first = _held_out_rows(catalog, head, rows=1000, held_out=200)
            again = _held_out_rows(catalog, head, rows=1000, held_out=200)
            assert first.sum() == 200
            assert np.array_equal(first, again)
            masks[seed] = first
    assert not np.array_equal(masks[0], masks[1])
    # Spread over the delta, not its newest rows: a fair share falls in each half.
    assert 60 <= masks[0][:500].sum() <= 140


def test_the_sample_of_a_large_table_is_the_one_the_unfiltered_query_draws(
    tmp_path: Path,
) -> None:
    base, delta = tmp_path / "base.csv", tmp_path / "delta.csv"
    lines = [f"u{n % 97},i{n % 389},{n % 5 + 1},{n}" for n in range(5000)]
    base.write_text("user,item,rating,timestamp\n" + "\n".join(lines) + "\n")
    delta.write_text("user,item,rating,timestamp\nu1,i1,5,9000\nu2,i2,4,9001\n")
    with _catalog(tmp_path, [base, delta], _config(replay_ratio=20.0)) as catalog:
        head = catalog.require_head()
        X, y = _replay(catalog, head, delta_rows=2)
        older = catalog.lineage(head)[:-1]
        params = {"lineage": older, "seed": len(older), "n": 40, "cut": HASH_MAX}
        expected = catalog.con.execute(REPLAY_SQL, params).fetchall()
    assert len(y) == 40
    assert [(u, i, r) for (u, i), r in zip(X.ids().tolist(), y.tolist(), strict=True)] == expected
