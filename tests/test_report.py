"""The report: its rows equal the catalog, and its HTML opens with nothing fetched."""

from __future__ import annotations

import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from incr_cli import clean, ingest, update
from incr_cli.catalog import Catalog, Invocation, open_catalog
from incr_cli.config import Config
from incr_cli.errors import NothingToDo
from incr_cli.evaluate import evaluate
from incr_cli.report import DATA_COLUMNS, report
from incr_cli.synthetic import write_deltas

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def delta_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_deltas(tmp_path_factory.mktemp("data"), 300, 200, 6000, 4, seed=11)


def _open(path: Path):
    return open_catalog(path, Config(), Invocation("test"), write=True)


def _load(catalog: Catalog, files: list[Path]) -> None:
    for path in files:
        ingest.ingest_files(catalog, [path])
        clean.clean_pending(catalog)
        update.update(catalog)


def _latest_figures(catalog: Catalog) -> dict[tuple[int, str], float | None]:
    """Per (delta, "system.metric"), the value of that delta's newest evaluation."""
    rows = catalog.rows(
        """
        SELECT version, system || '.' || metric, value FROM metrics
        QUALIFY dense_rank() OVER (PARTITION BY version ORDER BY created_at DESC) = 1
        """
    )
    return {(version, name): value for version, name, value in rows}


class _Cells(HTMLParser):
    """The table cells of the HTML report with their data attributes, and every link."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[dict[str, str | None]] = []
        self.sources: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "td":
            self.cells.append(named)
        for key in ("src", "href"):
            if key in named:
                self.sources.append(named[key])


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory, delta_files: list[Path]):
    """Four deltas learned, three evaluated, and the report of them, with the catalog's
    figures read back independently."""
    path = tmp_path_factory.mktemp("catalog") / "c.duckdb"
    with _open(path) as catalog:
        _load(catalog, delta_files)
        evaluate(catalog, model_version=1)
        # An older evaluation of v3 by another model is superseded by the latest one.
        catalog.con.execute(
            "INSERT INTO metrics VALUES (3, 999, 'model', 'rmse', 9.0, TIMESTAMP '2000-01-01')"
        )
        evaluate(catalog, model_version=2)
        evaluate(catalog, model_version=3)
        result = report(catalog)
        stored = _latest_figures(catalog)
        counts = catalog.rows(
            "SELECT version, rows_read, rows_rejected FROM versions ORDER BY version"
        )
        clean_rows = catalog.rows(
            "SELECT version, user_id, item_id FROM ratings_clean ORDER BY version"
        )
        default = catalog.report_dir / "report-v4.md"
    return result, stored, counts, clean_rows, default


def test_every_version_on_the_lineage_has_a_row_with_its_data(written) -> None:
    result, _, counts, clean_rows, default = written

    assert result.path == default and result.html_path == default.with_suffix(".html")
    assert [row["version"] for row in result.rows] == [1, 2, 3, 4]
    assert [row["model_version"] for row in result.rows] == [None, 1, 2, 3]
    assert [(r["version"], r["rows_read"], r["rows_rejected"]) for r in result.rows] == counts

    # New users and items counted independently: first seen at that version.
    seen_users: set[str] = set()
    seen_items: set[str] = set()
    for row in result.rows:
        delta = [(u, i) for v, u, i in clean_rows if v == row["version"]]
        users, items = {u for u, _ in delta}, {i for _, i in delta}
        assert row["rows_clean"] == len(delta)
        assert row["new_users"] == len(users - seen_users)
        assert row["new_items"] == len(items - seen_items)
        seen_users |= users
        seen_items |= items


def test_the_rows_hold_every_stored_figure_of_the_latest_evaluation(written) -> None:
    result, stored, *_ = written

    assert "model" in result.systems and "rmse" in result.metrics and "ndcg" in result.metrics
    expected_columns = {name for _, name in stored}
    assert set(result.columns) == set(DATA_COLUMNS) | expected_columns
    for row in result.rows:
        for name in expected_columns:
            assert row[name] == stored.get((row["version"], name)), (row["version"], name)
    # The stale figure of the superseded evaluation of v3 is not reported.
    assert result.rows[2]["model.rmse"] != 9.0


def test_changes_are_each_figure_minus_the_one_before(written) -> None:
    result, *_ = written
    rmse = [row["model.rmse"] for row in result.rows]
    assert result.changes["model.rmse"] == [None, None, rmse[2] - rmse[1], rmse[3] - rmse[2]]
    assert (
        result.changes["rows_read"][1] == result.rows[1]["rows_read"] - result.rows[0]["rows_read"]
    )


def test_the_html_is_self_contained_and_its_figures_equal_the_stored_ones(written) -> None:
    result, stored, *_ = written
    text = result.html_path.read_text()

    # Nothing to fetch: no address, no script, every image inline.
    assert "http://" not in text and "https://" not in text
    assert "<script" not in text and "<link" not in text
    parser = _Cells()
    parser.feed(text)
    assert parser.sources and all(
        s.startswith("data:image/svg+xml;base64,") for s in parser.sources
    )
    # One chart per table: the data table and one per measured metric.
    assert len(parser.sources) == 1 + len(result.metrics)

    checked = 0
    for cell in parser.cells:
        name, value = cell["data-column"], cell["data-value"]
        if "." in name and value:
            assert float(value) == stored[(int(cell["data-version"]), name)]
            checked += 1
    assert checked >= 3 * len(result.metrics)


def test_the_markdown_holds_the_same_tables(written) -> None:
    result, stored, *_ = written
    text = result.path.read_text()

    assert "test-then-train" in text and "Head: v4" in text
    for metric in result.metrics:
        assert f"\n## {metric}\n" in text
    rmse_rows = text.split("\n## rmse\n", 1)[1].split("\n## ", 1)[0]
    assert f"| v3 | v2 | {stored[(3, 'model.rmse')]:.4f} |" in rmse_rows
    assert text.count("](data:image/svg+xml;base64,") == 1 + len(result.metrics)
    assert not list(result.path.parent.glob("*.tmp"))


def test_a_metric_the_report_has_never_seen_gets_its_own_table(tmp_path, delta_files) -> None:
    with _open(tmp_path / "c.duckdb") as catalog:
        _load(catalog, delta_files[:2])
        evaluate(catalog)
        catalog.con.execute(
            "INSERT INTO metrics SELECT version, model_id, 'model', 'novelty', 0.25, created_at "
            "FROM metrics LIMIT 1"
        )
        result = report(catalog)

    assert "novelty" in result.metrics
    assert result.rows[1]["model.novelty"] == 0.25
    assert "\n## novelty\n" in result.path.read_text()


def test_report_goes_to_the_given_path(tmp_path, delta_files) -> None:
    target = tmp_path / "out" / "nested" / "r.md"
    with _open(tmp_path / "c.duckdb") as catalog:
        _load(catalog, delta_files[:2])
        evaluate(catalog)
        written = report(catalog, target)

    assert written.path == target and target.is_file()
    assert written.html_path == tmp_path / "out" / "nested" / "r.html"
    assert written.html_path.is_file()


def test_report_without_an_evaluation_asks_for_one(tmp_path, delta_files) -> None:
    with _open(tmp_path / "c.duckdb") as catalog:
        _load(catalog, delta_files[:2])

        with pytest.raises(NothingToDo, match="run 'incr evaluate' first"):
            report(catalog)
        assert not catalog.report_dir.exists()


def test_commands_that_write_no_report_never_import_the_plotting_library(tmp_path) -> None:
    code = (
        "import sys; from incr_cli.cli import main; "
        f"main(['init', '--catalog', {str(tmp_path / 'c.duckdb')!r}, '-q']); "
        f"main(['log', '--catalog', {str(tmp_path / 'c.duckdb')!r}, '-q']); "
        "print('matplotlib' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "False"
