"""The numbering of ingested lines: a CASE over few gaps or a join over many, alike, and
rows stored in line order whichever order their files were read in."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from incr_cli import ingest
from incr_cli.catalog import Catalog
from incr_cli.ingest import ingest_files
from incr_cli.sources import leading_empty_lines, scan_file

OpenCatalog = Callable[..., Catalog]
WriteFile = Callable[..., Path]


# Rows numbered across empty lines, rows DuckDB cannot split and a second file: the same
# lines whichever way the gaps are counted.
MESSY = (
    "\n\nuser,item,rating,ts\n"
    + "".join(f"u{i},i{i},4,{i}\n" + ("\n" if i % 7 == 0 else "") for i in range(40))
    + "u40,i40\n"
    + "u41,i41,4,41,extra\n"
    + "u42,i42,9,42\n"
    + "u43,i43,4,43\n"
)


@pytest.mark.parametrize("max_case_gaps", [0, 2, ingest.MAX_CASE_GAPS])
def test_lines_are_numbered_alike_with_few_or_many_gaps(
    catalog: OpenCatalog, write_file: WriteFile, monkeypatch: pytest.MonkeyPatch, max_case_gaps: int
) -> None:
    monkeypatch.setattr(ingest, "MAX_CASE_GAPS", max_case_gaps)
    folder = write_file("x", b"").parent / "delta"
    folder.mkdir()
    (folder / "1.csv").write_text(MESSY)
    (folder / "2.csv").write_text("user,item,rating,ts\nv1,j1,3,1\n\nv2,j2,oops,2\nv3,j3,2,3\n")
    cat = catalog()

    ingest_files(cat, [folder])

    lines = [line for (line,) in cat.rows("SELECT line FROM raw_rows ORDER BY rowid")]
    rejects = cat.rows("SELECT line, reason FROM rejects ORDER BY line")
    # File 1: three lines before the first row, an empty line after u0, u7, ..., u35.
    expected = []
    line = 4
    for i in range(40):
        expected.append(line)
        line += 2 if i % 7 == 0 else 1
    n1 = len(MESSY.splitlines())
    assert lines == [*expected, n1, n1 + 2, n1 + 5]
    assert [r[0] for r in rejects] == [n1 - 3, n1 - 2, n1 - 1, n1 + 4]
    assert rejects[0][1] == "row has fewer fields than the 4 expected"
    assert rejects[3][1] == "rating is not a number: oops"


def test_leading_empty_lines_agree_with_the_full_scan(write_file: WriteFile) -> None:
    for i, text in enumerate(
        [b"", b"\n", b"\r\n\n", b"\xef\xbb\xbf\n\nx\n", b"\n" * 70_000 + b"x"]
    ):
        path = write_file(f"{i}.csv", text)
        assert leading_empty_lines(path) == scan_file(path).leading_empty_lines


def test_rows_are_stored_in_line_order_when_files_are_staged_out_of_order(
    catalog: OpenCatalog, write_file: WriteFile
) -> None:
    import gzip

    folder = write_file("x", b"").parent / "mixed"
    folder.mkdir()
    (folder / "a.csv").write_text("user,item,rating,ts\na,1,4,1\na,2,4,2\n")
    (folder / "b.csv.gz").write_bytes(gzip.compress(b"user,item,rating,ts\nb,1,4,3\n"))
    (folder / "c.csv").write_text("user,item,rating,ts\nc,1,4,4\n")
    cat = catalog()

    ingest_files(cat, [folder])

    # a.csv and c.csv are read together, before b.csv.gz; the rows still follow the lines.
    assert cat.rows("SELECT line, user_s FROM raw_rows ORDER BY rowid") == [
        (2, "a"),
        (3, "a"),
        (5, "b"),
        (7, "c"),
    ]
