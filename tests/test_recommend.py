"""`incr recommend` end to end on sample_data/: lists, fallback, files, --model, exit codes."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import duckdb
import joblib
import numpy as np
import pytest

from incr_cli.catalog import Invocation, open_catalog
from incr_cli.cli import main
from incr_cli.config import Config
from incr_cli.recommend import recommend_all, recommend_user

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = sorted((ROOT / "sample_data").glob("delta-*.csv"))


def _run(
    capsys: pytest.CaptureFixture[str], catalog: Path, *args: str, expect: int = 0
) -> tuple[dict | None, str, str]:
    """Run ``incr`` in this process; return its JSON result, stdout and stderr."""
    capsys.readouterr()
    code = main([*args, "--catalog", str(catalog)])
    captured = capsys.readouterr()
    assert code == expect, (args, code, captured.err)
    result = None
    if code == 0 and "--json" in args:
        result = json.loads(captured.out)
    return result, captured.out, captured.err


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A catalog through two sample files, each cleaned and learned: models of v1 and v2.

    The tests only read it: recommend never writes to the catalog.
    """
    catalog = tmp_path_factory.mktemp("rec") / "catalog.duckdb"
    for path in SAMPLE[:2]:
        for args in (["ingest", str(path)], ["clean"], ["update"]):
            assert main([*args, "--catalog", str(catalog), "--quiet"]) == 0
    return catalog


@pytest.fixture
def catalog(trained: Path, tmp_path: Path) -> Path:
    """A private copy of the trained catalog and its model files."""
    folder = tmp_path / "copy"
    shutil.copytree(trained.parent, folder)
    return folder / trained.name


def _query(catalog: Path, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(catalog), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def _model(catalog: Path, version: int):
    (path,) = _query(
        catalog,
        "SELECT path FROM models WHERE version = ? ORDER BY model_id DESC LIMIT 1",
        [version],
    )[0]
    return joblib.load(catalog.parent / "models" / path)


def _seen(catalog: Path, user: str) -> set[str]:
    return {
        row[0]
        for row in _query(catalog, "SELECT item_id FROM ratings_clean WHERE user_id = ?", [user])
    }


# --- one user -------------------------------------------------------------------------


def test_user_gets_the_models_best_unseen_items_with_their_scores(capsys, trained):
    user = "1"
    result, _, _ = _run(capsys, trained, "recommend", "--user", user, "-k", "5", "--json")
    model = _model(trained, 2)
    seen = _seen(trained, user)

    # Independently: predict every item for the user, drop the seen ones, sort by score.
    items = [i for i in model.item_ids_ if i not in seen]
    scores = model.score_items([user])[0][[model.item_index_[i] for i in items]]
    best = np.argsort(-scores, kind="stable")[:5]

    assert result["source"] == "model"
    assert result["model_version"] == 2
    assert result["seen"] == len(seen) > 0
    assert [r["item_id"] for r in result["items"]] == [items[i] for i in best]
    assert [r["score"] for r in result["items"]] == pytest.approx(scores[best].tolist())
    assert [r["rank"] for r in result["items"]] == [1, 2, 3, 4, 5]
    assert not seen & {r["item_id"] for r in result["items"]}


def test_a_user_id_is_read_as_ingest_reads_it(capsys, trained):
    # Pasted from a spreadsheet: padded and written as a float, as ingest is told to read.
    exact, _, _ = _run(capsys, trained, "recommend", "--user", "1", "-k", "5", "--json")
    pasted, _, _ = _run(capsys, trained, "recommend", "--user", " 1.0 ", "-k", "5", "--json")

    assert pasted == exact
    assert pasted["user_id"] == "1" and pasted["source"] == "model"


def test_user_list_prints_a_table_with_scores(capsys, trained):
    _, out, _ = _run(capsys, trained, "recommend", "--user", "1", "-k", "3")

    assert "top 3 for user '1'" in out
    assert "model of v2" in out and "FALLBACK" not in out
    assert out.count("│") >= 3 * 4


def test_unknown_user_gets_the_most_popular_items_marked_as_fallback(capsys, trained):
    result, _, _ = _run(capsys, trained, "recommend", "--user", "nobody", "-k", "4", "--json")
    popular = _query(
        trained,
        "SELECT item_id, count(*) AS n FROM ratings_clean GROUP BY item_id "
        "ORDER BY n DESC, item_id LIMIT 4",
    )

    assert result["source"] == "most_popular"
    assert [(r["item_id"], r["score"]) for r in result["items"]] == [
        (item, float(n)) for item, n in popular
    ]
    _, out, _ = _run(capsys, trained, "recommend", "--user", "nobody", "-k", "4")
    assert "unknown to the model of v2" in out and "FALLBACK" in out


def test_older_model_is_used_when_asked(capsys, trained):
    # A user whose first rating is in v2 is unknown to the model of v1.
    (user,) = _query(
        trained,
        "SELECT user_id FROM ratings_clean GROUP BY user_id HAVING min(version) = 2 "
        "ORDER BY user_id LIMIT 1",
    )[0]

    older, _, _ = _run(capsys, trained, "recommend", "--user", user, "--model", "v1", "--json")
    newer, _, _ = _run(capsys, trained, "recommend", "--user", user, "--json")

    assert (older["model_version"], older["source"]) == (1, "most_popular")
    assert (newer["model_version"], newer["source"]) == (2, "model")
    # Even the fallback leaves out what the user rated since.
    assert not _seen(trained, user) & {r["item_id"] for r in older["items"]}


# --- every user -----------------------------------------------------------------------


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_all_users_to_csv_hold_each_users_list_without_seen_items(capsys, trained, tmp_path):
    target = tmp_path / "out" / "recs.csv"
    result, _, _ = _run(capsys, trained, "recommend", "--all", "--out", str(target), "--json")
    rows = _read_csv(target)
    users = _query(trained, "SELECT count(DISTINCT user_id) FROM ratings_clean")[0][0]

    assert list(rows[0]) == ["user_id", "rank", "item_id", "score", "source"]
    assert result["rows"] == len(rows) == users * 10
    assert result["users"] == users and result["users_fallback"] == 0
    assert {row["source"] for row in rows} == {"model"}
    # No row names an item its user has rated.
    with duckdb.connect(str(trained), read_only=True) as con:
        clash = con.execute(
            "SELECT count(*) FROM read_csv(?, all_varchar = true) r "
            "JOIN ratings_clean c USING (user_id, item_id)",
            [str(target)],
        ).fetchone()[0]
    assert clash == 0
    # One user's rows are what --user prints.
    single, _, _ = _run(capsys, trained, "recommend", "--user", "1", "--json")
    listed = [(row["item_id"], float(row["score"])) for row in rows if row["user_id"] == "1"]
    assert listed == [(r["item_id"], pytest.approx(r["score"])) for r in single["items"]]
    assert not list(target.parent.glob(".*"))


def test_all_users_to_parquet_match_the_csv(capsys, trained, tmp_path):
    _run(capsys, trained, "recommend", "--all", "--out", str(tmp_path / "r.csv"), "-k", "3")
    _run(capsys, trained, "recommend", "--all", "--out", str(tmp_path / "r.parquet"), "-k", "3")

    with duckdb.connect() as con:
        from_csv = con.execute(
            "SELECT user_id, rank, item_id, round(score, 9), source "
            "FROM read_csv(?, types = {'user_id': 'VARCHAR', 'item_id': 'VARCHAR'})",
            [str(tmp_path / "r.csv")],
        ).fetchall()
        from_parquet = con.execute(
            "SELECT user_id, rank, item_id, round(score, 9), source FROM read_parquet(?)",
            [str(tmp_path / "r.parquet")],
        ).fetchall()
    assert from_parquet == from_csv
    assert max(row[1] for row in from_parquet) == 3


def test_all_users_of_an_older_model_mark_the_users_it_never_saw(capsys, trained, tmp_path):
    target = tmp_path / "v1.csv"
    result, _, _ = _run(
        capsys, trained, "recommend", "--all", "--model", "v1", "--out", str(target), "--json"
    )
    new_users = _query(
        trained,
        "SELECT count(*) FROM (SELECT user_id FROM ratings_clean "
        "GROUP BY user_id HAVING min(version) = 2)",
    )[0][0]
    rows = _read_csv(target)

    assert result["model_version"] == 1
    assert result["users_fallback"] == new_users > 0
    assert len({row["user_id"] for row in rows if row["source"] == "most_popular"}) == new_users


def test_chunks_of_users_write_the_same_file_as_one_chunk(trained, tmp_path):
    with open_catalog(trained, Config(), Invocation("test"), write=False) as catalog:
        notes: list[str] = []
        recommend_all(catalog, tmp_path / "small.csv", chunk_users=500, progress=notes.append)
        recommend_all(catalog, tmp_path / "whole.csv", chunk_users=100_000)

    assert notes[0].startswith("chunk 1/") and len(notes) > 1
    assert (tmp_path / "small.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()


# --- exit codes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give either --user USER or --all"),
        (["--user", "1", "--all", "--out", "x.csv"], "give either --user USER or --all"),
        (["--all"], "add --out FILE.csv"),
        (["--user", "1", "--out", "x.csv"], "--out goes with --all"),
        (["--all", "--out", "recs.txt"], "extension '.txt'"),
        (["--user", "1", "--model", "v9"], "v9 does not exist"),
        (["--user", "1", "--model", "nine"], "is not a version name"),
    ],
)
def test_bad_usage_exits_2_and_writes_nothing(
    capsys, trained, tmp_path, monkeypatch, args, message
):
    monkeypatch.chdir(tmp_path)
    _, _, err = _run(capsys, trained, "recommend", *args, expect=2)

    assert message in err
    assert not list(tmp_path.iterdir())


def test_without_a_model_recommend_fails_and_writes_nothing(capsys, tmp_path):
    catalog = tmp_path / "c" / "catalog.duckdb"
    assert main(["ingest", str(SAMPLE[0]), "--catalog", str(catalog), "--quiet"]) == 0

    _, _, err = _run(capsys, catalog, "recommend", "--user", "1", expect=2)
    assert "no model serves yet; run 'incr update' first" in err
    out = tmp_path / "recs.csv"
    _, _, err = _run(capsys, catalog, "recommend", "--all", "--out", str(out), expect=2)
    assert "no model serves yet" in err and not out.exists()


def test_a_tampered_model_file_is_never_loaded(capsys, catalog, tmp_path):
    for model in (catalog.parent / "models").glob("v1-*.joblib"):
        model.write_bytes(model.read_bytes() + b"tampered")

    _, _, err = _run(capsys, catalog, "recommend", "--user", "1", "--model", "v1", expect=7)
    assert "sha256" in err
    target = tmp_path / "out.csv"
    _run(capsys, catalog, "recommend", "--all", "--model", "v1", "--out", str(target), expect=7)
    assert not target.exists()
    # The serving model of v2 is intact and still answers.
    _run(capsys, catalog, "recommend", "--user", "1")


def test_every_users_file_holds_what_each_user_is_told_alone(trained, tmp_path):
    # The model of v1 does not know the users new in v2: they take the fallback path.
    target = tmp_path / "v1.csv"
    with open_catalog(trained, Config(), Invocation("test"), write=False) as catalog:
        recommend_all(catalog, target, k=8, model_version=1, chunk_users=97)
        rows = _read_csv(target)
        users = sorted({row["user_id"] for row in rows})
        sources = {row["user_id"]: row["source"] for row in rows}
        sample = [u for u in users if sources[u] == "model"][:15]
        sample += [u for u in users if sources[u] == "most_popular"][:5]
        alone = {u: recommend_user(catalog, u, k=8, model_version=1) for u in sample}

    assert {alone[u].source for u in sample} == {"model", "most_popular"}
    for user in sample:
        listed = [(r["rank"], r["item_id"], r["source"]) for r in rows if r["user_id"] == user]
        told = alone[user]
        assert listed == [(str(i.rank), i.item_id, told.source) for i in told.items]
        scores = [float(r["score"]) for r in rows if r["user_id"] == user]
        assert scores == [i.score for i in told.items]
