"""Every error a user can cause ends in one line on stderr and its documented exit code.

These run the real entry point, ``incr_cli.cli.main``, in this process (or the installed
``incr`` where only a real process shows the behaviour, such as a closed pipe).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import filelock
import pytest

from incr_cli.catalog import Catalog
from incr_cli.cli import main
from incr_cli.commands import data
from incr_cli.errors import ExitCode

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = sorted((ROOT / "sample_data").glob("delta-*.csv"))
INCR = shutil.which("incr", path=str(ROOT / ".venv" / "bin")) or shutil.which("incr")


class Run:
    """``incr`` in this process against one catalog; returns the code and stderr."""

    def __init__(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.tmp = tmp_path
        self.capsys = capsys
        self.catalog = tmp_path / "cat" / "catalog.duckdb"

    def __call__(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main([*args, "--catalog", str(self.catalog)])
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err

    def config(self, text: str | bytes) -> str:
        path = self.tmp / "config.yaml"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return str(path)

    def tables(self) -> dict[str, list[tuple]]:
        """Every row of every table: equal dumps mean an unchanged catalog."""
        with duckdb.connect(str(self.catalog), read_only=True) as con:
            names = [row[0] for row in con.execute("SHOW TABLES").fetchall()]
            return {
                n: sorted(con.execute(f'SELECT * FROM "{n}"').fetchall(), key=repr) for n in names
            }


@pytest.fixture
def run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Run:
    return Run(tmp_path, capsys)


def one_line(err: str) -> str:
    assert err.startswith("incr: error: ") and err.count("\n") == 1, err
    return err


# -- the catalog's folder and file ------------------------------------------------------


@pytest.mark.parametrize("command", [["status"], ["ingest", str(SAMPLE[0])]])
def test_a_catalog_folder_that_cannot_hold_the_lock_is_named_as_not_writable(
    run: Run, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    assert run("init")[0] == 0
    before = run.tables()

    # NOTE: the tests run as root, whom file modes do not stop; simulate the refusal.
    def refuse(self: filelock.BaseFileLock, *args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", self.lock_file)

    monkeypatch.setattr(filelock.FileLock, "acquire", refuse)
    code, _, err = run(*command)

    assert code == ExitCode.USAGE
    assert f"in {str(run.catalog.parent)!r} (Permission denied); that folder must be writable" in (
        one_line(err)
    )
    monkeypatch.undo()
    assert run.tables() == before


def test_a_catalog_path_that_is_a_directory_is_a_usage_error(run: Run) -> None:
    run.catalog.mkdir(parents=True)

    code, _, err = run("status")

    assert code == ExitCode.USAGE
    assert f"catalog {str(run.catalog)!r} is a directory" in one_line(err)


def test_a_catalog_file_that_is_not_duckdb_is_not_an_incr_catalog(run: Run) -> None:
    run.catalog.parent.mkdir(parents=True)
    run.catalog.write_text("user,item,rating\n")

    code, _, err = run("status")

    assert code == ExitCode.USAGE
    assert f"{str(run.catalog)!r} is not an incr catalog" in one_line(err)
    assert "incr verify" not in err
    assert run.catalog.read_text() == "user,item,rating\n"
    # Nothing left beside it: a lock file there would be ingested with a folder of data.
    assert [p.name for p in run.catalog.parent.iterdir()] == [run.catalog.name]


def test_another_duckdb_database_is_not_taken_for_a_catalog(run: Run) -> None:
    run.catalog.parent.mkdir(parents=True)
    with duckdb.connect(str(run.catalog)) as con:
        con.execute("CREATE TABLE sales (id INTEGER)")

    code, _, err = run("ingest", str(SAMPLE[0]))

    assert code == ExitCode.USAGE
    assert "is a DuckDB database but not an incr catalog" in one_line(err)
    with duckdb.connect(str(run.catalog), read_only=True) as con:
        assert con.execute("SHOW TABLES").fetchall() == [("sales",)]
    assert [p.name for p in run.catalog.parent.iterdir()] == [run.catalog.name]


# -- Ctrl-C -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raised", [duckdb.InterruptException("INTERRUPT Error"), RuntimeError("Query interrupted")]
)
def test_duckdb_noticing_ctrl_c_exits_130_with_the_interrupt_message(
    run: Run, monkeypatch: pytest.MonkeyPatch, raised: Exception
) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise raised

    monkeypatch.setattr(data, "ingest_files", interrupted)
    code, _, err = run("ingest", str(SAMPLE[0]))

    assert code == ExitCode.INTERRUPTED
    assert one_line(err).startswith("incr: error: interrupted; the catalog ")


def test_ctrl_c_during_a_query_of_clean_exits_130_and_changes_nothing(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run("ingest", str(SAMPLE[0]))[0] == 0
    before = run.tables()

    def endless_clean(catalog: Catalog, *args: object, **kwargs: object) -> None:
        with catalog.transaction():
            catalog.con.execute("DELETE FROM raw_rows")
            # A query that would run for minutes, interrupted the way DuckDB's client does
            # on Ctrl-C. NOTE: a real SIGINT is left to Python's handler, which runs only
            # between bytecodes, so during a long query it may not be seen at all.
            timer = threading.Timer(0.3, catalog.con.interrupt)
            timer.start()
            try:
                catalog.con.execute(
                    "SELECT count(*) FROM range(1e10::BIGINT) WHERE hash(range) % 7 = 3"
                )
            finally:
                timer.cancel()

    monkeypatch.setattr(data, "clean_pending", endless_clean)
    code, _, err = run("clean")

    assert code == ExitCode.INTERRUPTED, err
    assert one_line(err).startswith("incr: error: interrupted; the catalog ")
    assert run.tables() == before


# -- config -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'ingest:\n  timestamp_format: "%Q"\n',
            "ingest.timestamp_format is not a strptime format DuckDB reads "
            "(Unrecognized format for strftime/strptime: %Q) (got '%Q')",
        ),
        (
            "ingest:\n  timestamp_format: unixms\n",
            "ingest.timestamp_format must be one of auto, unix, unix_ms or a strptime format",
        ),
        (
            'runtime:\n  memory_limit: "lots"\n',
            "runtime.memory_limit must be a size such as '2GB', '512MB' or '1GiB' (got 'lots')",
        ),
        (b"\xff\xfe\x00", "is not UTF-8 text (byte 0 cannot be read); save it as UTF-8"),
        (
            "model: [factors\n",
            "is not valid YAML: expected ',' or ']', but got '<stream end>' at line 2, column 1",
        ),
        ("model:\n  factors: true\n", "model.factors Input should be a valid integer (got True)"),
        ("model:\n  lr: true\n", "model.lr must be a number, not true or false (got True)"),
        ("model:\n  factors: 8.5\n", "model.factors Input should be a valid integer (got 8.5)"),
        (
            "evaluate:\n  relevance_threshold: .nan\n",
            "evaluate.relevance_threshold Input should be a finite number (got nan)",
        ),
    ],
)
def test_a_bad_config_value_exits_4_naming_the_key_before_any_work(
    run: Run, text: str | bytes, message: str
) -> None:
    config = run.config(text)

    code, _, err = run("ingest", str(SAMPLE[0]), "--config", config)

    assert code == ExitCode.CONFIG
    assert message in one_line(err)
    assert not run.catalog.exists()


def test_numbers_that_yaml_reads_as_text_are_still_numbers(run: Run) -> None:
    # YAML 1.1 reads 1e-3 (no dot) as a string; a float key takes it all the same.
    config = run.config("model:\n  lr: 1e-3\nruntime:\n  memory_limit: 1GiB\n  threads: 1\n")

    code, _, err = run("init", "--config", config)

    assert code == 0, err


def test_a_strptime_format_is_used_when_valid(run: Run) -> None:
    data_file = run.tmp / "dated.csv"
    data_file.write_text("user,item,rating,timestamp\nu1,i1,4,03/02/2024 10:30\n")
    config = run.config('ingest:\n  timestamp_format: "%d/%m/%Y %H:%M"\n')

    code, _, err = run("ingest", str(data_file), "--config", config)

    assert code == 0, err
    with duckdb.connect(str(run.catalog), read_only=True) as con:
        assert con.execute("SELECT strftime(ts, '%Y-%m-%d %H:%M') FROM ratings_raw").fetchone() == (
            "2024-02-03 10:30",
        )


# -- options ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["status", "--bogus"], "No such option: --bogus; see 'incr status --help'"),
        (
            ["status", "--wait", "-1"],
            "Invalid value for '--wait': Input should be greater than or equal to 0",
        ),
        (
            ["gc", "--keep", "-1"],
            "Invalid value for '--keep': Input should be greater than or equal to 0",
        ),
        (["rollback"], "Missing option '--to'; see 'incr rollback --help'"),
        (["ingest"], "Missing argument 'files'; see 'incr ingest --help'"),
        (["frobnicate"], "No such command 'frobnicate'; see 'incr --help'"),
    ],
)
def test_a_bad_option_is_one_line_with_exit_2(run: Run, args: list[str], message: str) -> None:
    code, out, err = run(*args)

    assert code == ExitCode.USAGE
    assert message in one_line(err)
    assert out == ""
    assert not run.catalog.exists()


@pytest.mark.parametrize("args", [["--help"], ["status", "--help"], ["gc", "-h"]])
def test_help_still_prints_the_usage_and_exits_0(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 0
    assert "Usage: incr" in capsys.readouterr().out


def test_help_keeps_what_an_option_defaults_to(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Text in square brackets would be taken for markup and dropped from the help.
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["recommend", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "Catalog file (env: INCR_CATALOG; default: .incr/catalog.duckdb)." in text
    assert "(default: runtime.wait_seconds)" in text
    assert "(default: evaluate.k in the config)" in text


# -- output files -----------------------------------------------------------------------


def test_a_report_output_that_is_a_directory_is_refused_before_any_work(run: Run) -> None:
    folder = run.tmp / "reports"
    folder.mkdir()

    code, _, err = run("evaluate", "--report", "--output", str(folder))

    assert code == ExitCode.USAGE
    assert f"--output {str(folder)!r} is a directory; give a file name" in one_line(err)
    assert not run.catalog.exists()


def test_recommendations_written_to_a_directory_are_refused_before_any_work(run: Run) -> None:
    code, _, err = run("recommend", "--all", "--out", str(run.tmp))

    assert code == ExitCode.USAGE
    assert f"--out {str(run.tmp)!r} is a directory" in one_line(err)
    assert not run.catalog.exists()


@pytest.mark.parametrize(
    "option", [["evaluate", "--report", "--output"], ["recommend", "--all", "--out"]]
)
def test_an_output_under_a_file_or_where_nothing_can_be_written_is_refused(
    run: Run, option: list[str]
) -> None:
    plain = run.tmp / "plain.txt"
    plain.write_text("not a folder\n")
    targets = [plain / "sub" / "out.md"]
    if Path("/proc/self").is_dir():  # a filesystem that refuses new files, even to root
        targets.append(Path("/proc/out.md"))
    for target in targets:
        code, _, err = run(*option, str(target))

        assert code == ExitCode.USAGE, err
        assert f"{option[-1]} {str(target)!r} cannot be written" in one_line(err)
        assert not run.catalog.exists()


# -- a closed pipe ----------------------------------------------------------------------


@pytest.mark.skipif(INCR is None, reason="the incr command is not installed")
@pytest.mark.parametrize("command", ["log", "status", "log --json", "status --json"])
def test_a_closed_output_pipe_exits_141_quietly(tmp_path: Path, command: str) -> None:
    catalog = str(tmp_path / "catalog.duckdb")
    subprocess.run([INCR, "ingest", str(SAMPLE[0]), "--catalog", catalog], check=True)
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte is written

    try:
        done = subprocess.run(
            [INCR, *command.split(), "--catalog", catalog],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
    finally:
        os.close(write_end)

    assert done.returncode == ExitCode.BROKEN_PIPE, done.stderr
    assert done.stderr == ""


def test_a_clean_window_that_ends_before_it_starts_is_refused(run: Run) -> None:
    assert run("ingest", str(SAMPLE[0]))[0] == 0
    before = run.tables()
    config = run.config('clean:\n  min_timestamp: "2030-01-01"\n  max_timestamp: "2020-01-01"\n')

    code, _, err = run("clean", "--config", config)

    assert code == ExitCode.CONFIG
    assert "clean.min_timestamp '2030-01-01' is after clean.max_timestamp" in one_line(err)
    assert run.tables() == before


def test_a_report_file_without_report_is_refused(run: Run) -> None:
    code, _, err = run("evaluate", "--output", str(run.tmp / "r.md"))

    assert code == ExitCode.USAGE
    assert "--output names the report file and needs --report" in one_line(err)


def test_ctrl_c_while_the_program_loads_is_one_line_and_exit_130(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.duckdb"
    assert main(["init", "--catalog", str(catalog), "--quiet"]) == 0
    incr = Path(sys.executable).parent / "incr"
    # The lock held here makes `status` wait, so the Ctrl-C finds it loading or waiting,
    # never finished, however fast the machine.
    with filelock.FileLock(f"{catalog}.lock"):
        proc = subprocess.Popen(
            [str(incr), "status", "--catalog", str(catalog)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # Well after the interpreter starts, before typer, rich and DuckDB are loaded here.
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)

    assert proc.returncode == ExitCode.INTERRUPTED, err
    assert "Traceback" not in err
    assert one_line(err).startswith("incr: error: interrupted")


def test_a_warning_in_a_log_file_is_one_line_with_an_unambiguous_time(run: Run) -> None:
    # A quoted value spanning lines: the rows are read, with a warning about line numbers.
    spans = run.tmp / "spans.csv"
    spans.write_text('user,item,rating,timestamp\nu1,i1,4,1\nu2,"i\n2",4,1\n' + "u3,i3,4,1\n" * 40)

    code, _, err = run("ingest", str(spans))

    assert code == 0
    warnings = err.splitlines()
    assert len(warnings) == 1
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} incr WARNING .*spans\.csv: .*line numbers "
        r"after it may be off",
        warnings[0],
    )


def test_a_result_line_in_a_log_file_is_never_broken(run: Run) -> None:
    # Longer than the width tables get in a log: the line must stay whole for grep.
    folder = run.tmp / ("d" * 120) / ("e" * 120)
    folder.mkdir(parents=True)
    data = folder / "ratings.csv"
    shutil.copy(SAMPLE[0], data)

    code, out, _ = run("ingest", str(data))

    assert code == 0
    assert out.count("\n") == 1 and out.startswith(f"v1 {data}: ")
