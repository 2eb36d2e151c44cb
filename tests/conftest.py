"""Fixtures shared by the library tests: fresh catalogs and small data files."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from incr_cli.catalog import Catalog, Invocation, open_catalog
from incr_cli.config import Config

#: Where the public data sets are found, relative to the project root.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

OpenCatalog = Callable[..., Catalog]
WriteFile = Callable[..., Path]


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[OpenCatalog]:
    """A factory of open catalogs in ``tmp_path``, each closed when the test ends.

    ``catalog()`` opens a fresh catalog with the default configuration;
    ``catalog(config, name="other")`` gives it a configuration and another file. Every
    catalog is opened for writing by the command ``test``. Close a catalog before opening
    the same ``name`` again.
    """
    with ExitStack() as stack:

        def open_one(config: Config | None = None, *, name: str = "catalog") -> Catalog:
            path = tmp_path / name / "catalog.duckdb"
            return stack.enter_context(
                open_catalog(path, config or Config(), Invocation("test"), write=True)
            )

        yield open_one


@pytest.fixture
def write_file(tmp_path: Path) -> WriteFile:
    """A factory writing a data file in ``tmp_path / "data"`` and returning its path.

    ``write_file("a.csv", "user,item\\n1,2\\n")`` writes text with LF line endings;
    ``newline="\\r\\n"`` writes CRLF, ``bom=True`` puts a UTF-8 byte order mark first, and
    bytes are written as they are.
    """
    folder = tmp_path / "data"
    folder.mkdir(exist_ok=True)

    def write(name: str, content: str | bytes, *, newline: str = "\n", bom: bool = False) -> Path:
        path = folder / name
        data = content if isinstance(content, bytes) else content.replace("\n", newline).encode()
        path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
        return path

    return write


@pytest.fixture
def shared_file() -> Callable[..., Path]:
    """A finder of files in ``../shared/data`` that skips the test when one is missing.

    The files are read where they are and never copied: some may not be redistributed.
    """

    def find(*parts: str) -> Path:
        path = SHARED_DATA.joinpath(*parts)
        if not path.is_file():
            pytest.skip(f"public data file {path} is not present; see ../shared/data/README.md")
        return path

    return find
