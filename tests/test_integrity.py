"""verify finds each broken invariant and names its repair; gc keeps the head's lineage."""

from __future__ import annotations

import json
import os
import platform
import stat
import subprocess
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import duckdb
import joblib
import numpy
import pytest
import sklearn
from sklearn.dummy import DummyRegressor

from incr_cli import artifacts
from incr_cli.artifacts import ModelRecord, load_model, save_model
from incr_cli.catalog import Catalog
from incr_cli.cli import main
from incr_cli.errors import IntegrityError

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = sorted((ROOT / "sample_data").glob("delta-*.csv"))


def incr(catalog: Path, *args: str) -> int:
    return main([*args, "--catalog", str(catalog), "--quiet"])


@pytest.fixture
def branched(tmp_path: Path) -> Path:
    """v1-v2-v3, rolled back to v1, then v4 on a new branch: v2 and v3 are off the lineage."""
    catalog = tmp_path / "c" / "catalog.duckdb"
    for path in SAMPLE[:3]:
        for args in (("ingest", str(path)), ("clean",), ("update",)):
            assert incr(catalog, *args) == 0
    assert incr(catalog, "rollback", "--to", "v1") == 0
    for args in (("ingest", str(SAMPLE[3])), ("clean",), ("update",)):
        assert incr(catalog, *args) == 0
    return catalog


def verify_json(catalog: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    capsys.readouterr()
    code = main(["verify", "--catalog", str(catalog), "--json"])
    return code, json.loads(capsys.readouterr().out)


def sql(catalog: Path, statement: str) -> None:
    with duckdb.connect(str(catalog)) as con:
        con.execute(statement)


def test_a_sound_catalog_verifies(branched: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, result = verify_json(branched, capsys)
    assert code == 0
    assert result["ok"] is True
    assert result["versions"] == 4 and result["models_checked"] == 4


def test_a_lost_row_is_reported_with_its_version(
    branched: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sql(branched, "DELETE FROM raw_rows WHERE rowid IN (SELECT min(rowid) FROM raw_rows)")
    code, result = verify_json(branched, capsys)
    assert code == 7
    # Clean rows that clean left as they were are read from the raw rows, so both go.
    assert [(p["check"], p["version"]) for p in result["problems"]] == [
        ("rows", 1),
        ("clean rows", 1),
    ]
    assert "records 25000 accepted rows but holds 24999" in result["problems"][0]["message"]


def test_a_changed_model_file_is_reported(
    branched: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = next((branched.parent / "models").glob("v2-*.joblib"))
    model.write_bytes(model.read_bytes()[:-1])
    code, result = verify_json(branched, capsys)
    assert code == 7
    [problem] = result["problems"]
    assert problem["check"] == "model file" and problem["version"] == 2
    assert "does not match its recorded sha256" in problem["message"]


def test_a_missing_parent_and_a_dangling_head_are_reported(
    branched: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sql(branched, "UPDATE versions SET parent = 40 WHERE version = 3")
    sql(branched, "UPDATE meta SET value = '99' WHERE key = 'head'")
    code, result = verify_json(branched, capsys)
    assert code == 7
    assert {(p["check"], p["version"]) for p in result["problems"]} == {
        ("parent", 3),
        ("head", 99),
    }
    assert all(p["repair"] for p in result["problems"])


def test_parents_that_form_a_loop_are_reported_not_followed_forever(
    branched: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # v4's lineage is v1-v4; make v1 name v4 as its parent.
    sql(branched, "UPDATE versions SET parent = 4 WHERE version = 1")
    code, result = verify_json(branched, capsys)
    assert code == 7
    assert {(p["check"], p["version"]) for p in result["problems"]} >= {
        ("parent", 1),
        ("lineage", 4),
    }


def test_an_unreferenced_file_is_listed_but_not_a_failure(
    branched: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (branched.parent / "models" / "left-by-a-crash.tmp").write_bytes(b"partial")
    code, result = verify_json(branched, capsys)
    assert code == 0
    assert result["unreferenced_files"] == ["left-by-a-crash.tmp"]


def test_gc_removes_rolled_back_versions_and_stray_files(
    branched: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = branched.parent / "models"
    (models / "left-by-a-crash.tmp").write_bytes(b"partial")
    capsys.readouterr()
    assert main(["gc", "--keep", "0", "--catalog", str(branched), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["removed_versions"] == [2, 3]
    assert sorted(p.name for p in models.iterdir()) == sorted(
        ["v1-full-m1.joblib", "v4-incremental-m4.joblib"]
    )
    with duckdb.connect(str(branched), read_only=True) as con:
        for table in ("versions", "ratings_raw", "ratings_clean", "models", "stages"):
            left = con.execute(f"SELECT DISTINCT version FROM {table} ORDER BY 1").fetchall()
            assert left == [(1,), (4,)], table
    code, result = verify_json(branched, capsys)
    assert code == 0 and result["unreferenced_files"] == []
    # A removed version is named as such, not as one that never was.
    assert main(["rollback", "--to", "v3", "--catalog", str(branched)]) == 2
    assert "incr: error: v3 was removed by 'incr gc'" in capsys.readouterr().err
    assert main(["rollback", "--to", "v9", "--catalog", str(branched)]) == 2
    assert "version v9 does not exist" in capsys.readouterr().err


def gc_json(catalog: Path, keep: int, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    capsys.readouterr()
    code = main(["gc", "--keep", str(keep), "--catalog", str(catalog), "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if code == 0 else {}


def test_gc_keep_counts_the_most_recent_versions_on_any_branch(
    branched: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # v4, the head, is the most recent version: with --keep 1 the older v2 and v3 go.
    code, result = gc_json(branched, 1, capsys)
    assert code == 0
    assert (result["removed_versions"], result["kept_off_lineage"]) == ([2, 3], [])
    assert incr(branched, "verify") == 0


def test_gc_keeps_the_ancestors_of_a_kept_version(
    branched: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Back at v1, every later version is off the lineage. The 2 most recent are v4 and v3;
    # v2 stays as v3's parent, so nothing goes.
    assert incr(branched, "rollback", "--to", "v1") == 0
    assert incr(branched, "gc", "--keep", "2") == 5

    code, result = gc_json(branched, 1, capsys)
    assert code == 0
    assert (result["removed_versions"], result["kept_off_lineage"]) == ([2, 3], [4])
    with duckdb.connect(str(branched), read_only=True) as con:
        assert con.execute("SELECT version FROM versions ORDER BY 1").fetchall() == [(1,), (4,)]
    assert incr(branched, "verify") == 0


def test_gc_never_touches_the_heads_lineage(
    branched: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with duckdb.connect(str(branched), read_only=True) as con:
        before = con.execute(
            "SELECT version, count(*) FROM ratings_raw WHERE version IN (1, 4) GROUP BY 1 "
            "ORDER BY 1"
        ).fetchall()
    code, result = gc_json(branched, 0, capsys)
    assert code == 0 and result["removed_versions"] == [2, 3]
    assert incr(branched, "gc", "--keep", "0") == 5
    with duckdb.connect(str(branched), read_only=True) as con:
        after = con.execute(
            "SELECT version, count(*) FROM ratings_raw GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert after == before
    # The numbers of removed versions are never reused.
    assert incr(branched, "ingest", str(SAMPLE[4])) == 0
    capsys.readouterr()
    assert main(["log", "--catalog", str(branched), "--json"]) == 0
    assert [v["version"] for v in json.loads(capsys.readouterr().out)] == [1, 4, 5]


# --- model files -----------------------------------------------------------------------


@pytest.fixture
def saved(catalog) -> tuple[Catalog, ModelRecord]:
    """A catalog holding one small model file, recorded at v1."""
    cat = catalog()
    model = DummyRegressor().fit([[0.0], [1.0]], [1.0, 3.0])
    with cat.transaction():
        record = save_model(
            cat,
            model,
            version=1,
            kind="full",
            base_model_id=None,
            seconds=0.0,
            rows_trained=2,
            rows_replayed=0,
        )
    return cat, record


def test_a_model_record_stores_the_versions_it_was_saved_with(saved) -> None:
    cat, _ = saved
    stored = json.loads(cat.one("SELECT environment FROM models WHERE model_id = 1"))

    assert {name: stored[name] for name in ("python", "numpy", "scikit-learn", "joblib")} == {
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "scikit-learn": sklearn.__version__,
        "joblib": joblib.__version__,
    }


def test_loading_under_other_versions_warns_once_naming_both(
    saved, monkeypatch: pytest.MonkeyPatch
) -> None:
    cat, record = saved
    monkeypatch.setattr(artifacts, "_warned", set())
    old = replace(record, environment={**record.environment, "numpy": "1.0.0", "joblib": "0.9"})

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            load_model(cat, old)
        load_model(cat, record)

    assert [str(w.message) for w in caught] == [
        f"model of v1 was saved with numpy 1.0.0, joblib 0.9 and is loaded with numpy "
        f"{numpy.__version__}, joblib {joblib.__version__}; retrain with 'incr update --full' "
        "if its predictions look wrong"
    ]
    assert caught[0].category is RuntimeWarning


class _Touch:
    """Unpickling this creates a file: proof that a pickle was run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.path,))


def test_a_model_file_that_does_not_match_its_sha256_is_never_unpickled(
    saved, tmp_path: Path
) -> None:
    cat, record = saved
    marker = tmp_path / "unpickled"
    path = cat.model_dir / record.path
    joblib.dump(_Touch(marker), path)

    with pytest.raises(IntegrityError) as raised:
        load_model(cat, record)

    assert raised.value.exit_code == 7
    assert f"model file {str(path)!r} of v1 does not match its recorded sha256" in str(raised.value)
    assert not marker.exists()
    # The same file loaded without the check does run code, so the check is what stopped it.
    joblib.load(path)
    assert marker.exists()


def test_a_missing_model_file_is_reported_with_its_repair(
    branched: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    next((branched.parent / "models").glob("v4-*.joblib")).unlink()
    code, result = verify_json(branched, capsys)
    assert code == 7
    assert [(p["check"], p["version"], p["repair"]) for p in result["problems"]] == [
        ("model file", 4, "incr update --full")
    ]
    assert "is missing" in result["problems"][0]["message"]


@pytest.mark.skipif(platform.system() == "Windows", reason="POSIX file modes")
def test_files_written_whole_get_the_mode_of_any_new_file(tmp_path: Path) -> None:
    # A serving process running as another user must be able to read a model.
    previous = os.umask(0o027)
    try:
        artifacts.write_atomically(tmp_path / "m.joblib", lambda out: out.write(b"x"))
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "m.joblib").stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["m.joblib"]


def test_the_command_line_prints_the_warning_of_a_model_from_other_versions(
    branched: Path,
) -> None:
    # Run as cron runs it: a process of its own, stderr to a pipe.
    with duckdb.connect(str(branched)) as con:
        con.execute("UPDATE models SET environment = json_object('numpy', '0.0.1')")
    incr = Path(sys.executable).parent / "incr"
    done = subprocess.run(
        [str(incr), "recommend", "--user", "1", "-k", "2", "--catalog", str(branched)],
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1
    assert "incr WARNING" in lines[0]
    assert f"was saved with numpy 0.0.1 and is loaded with numpy {numpy.__version__}" in lines[0]
