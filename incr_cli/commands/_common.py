"""What every command shares: its common options, the catalog session and the output."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..catalog import Catalog, Invocation, catalog_path, open_catalog
from ..config import load_config
from ..errors import UsageError

CatalogOpt = Annotated[
    Path | None,
    typer.Option(
        "--catalog",
        help="Catalog file (env: INCR_CATALOG; default: .incr/catalog.duckdb).",
        show_default=False,
    ),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", help="YAML config file (env: INCR_CONFIG; default: none).", show_default=False
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
QuietOpt = Annotated[
    bool,
    typer.Option(
        "--quiet", "-q", help="Print nothing on success, nor when there is nothing to do (exit 5)."
    ),
]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")]
WaitOpt = Annotated[
    float | None,
    typer.Option(
        "--wait",
        min=0,
        help="Seconds to wait for another incr process (default: runtime.wait_seconds).",
        show_default=False,
    ),
]


# Width of tables when stdout is not a terminal.
PIPED_WIDTH = 200


class _StdoutConsole(Console):
    """Rich's console, except that a closed pipe reaches main() as BrokenPipeError."""

    def on_broken_pipe(self) -> None:
        # NOTE: rich's default exits 1; the documented code for a closed pipe is 141,
        # which main() returns.
        self.quiet = True
        raise BrokenPipeError(errno.EPIPE, "the reader closed the output pipe")


@dataclass(frozen=True)
class Common:
    """The options every command takes."""

    catalog: Path | None = None
    config: Path | None = None
    json: bool = False
    quiet: bool = False
    debug: bool = False
    wait: float | None = None


def config_path(given: Path | None) -> Path | None:
    """The config's path: the option, else ``INCR_CONFIG``, else none (defaults)."""
    if given is not None:
        return given
    env = os.environ.get("INCR_CONFIG")
    return Path(env) if env else None


def check_output_file(path: Path | None, option: str, example: str) -> None:
    """Refuse, before any work, an output path that names an existing directory or lies in
    a folder where no file can be made (the folders it needs are made when it is written)."""
    if path is None:
        return
    if path.is_dir():
        raise UsageError(
            f"{option} {str(path)!r} is a directory; give a file name, e.g. {str(path / example)!r}"
        )
    folder = path.absolute().parent
    while not folder.exists():
        folder = folder.parent
    try:
        if not folder.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        # A trial file, gone when closed: os.access says yes to root even where the
        # filesystem refuses (read-only mounts, /proc).
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UsageError(
            f"{option} {str(path)!r} cannot be written ({str(folder)!r}: {reason.lower()}); "
            "give a path in a folder you can write to"
        ) from None


@contextmanager
def session(
    common: Common,
    command: str,
    args: dict[str, Any],
    *,
    write: bool = True,
    create: bool = False,
) -> Iterator[Catalog]:
    """Load the config and open the catalog for one command.

    Only the commands that put data in (``init``, ``ingest``) make a catalog that is not
    there: any other, run from the wrong folder or without ``INCR_CATALOG``, would
    otherwise report on (or 'clean') a new empty catalog and leave its file behind.
    """
    config = load_config(config_path(common.config))
    invocation = Invocation(command, args)
    with open_catalog(
        catalog_path(common.catalog),
        config,
        invocation,
        write=write,
        create=create,
        wait=common.wait,
    ) as catalog:
        yield catalog


class Output:
    """Results to stdout (text or JSON), progress and notes to stderr."""

    def __init__(self, common: Common) -> None:
        self.common = common
        self.out: Console = _StdoutConsole()
        # NOTE: piped output (cron, a log file) gets wide lines rather than rich's 80.
        if not self.out.is_terminal:
            self.out = _StdoutConsole(width=PIPED_WIDTH)
        # A note on stderr is one line however long, as an error is: a log keeps it whole.
        self.err = Console(stderr=True, soft_wrap=True)

    @property
    def text(self) -> bool:
        """Whether human-readable text goes to stdout."""
        return not (self.common.json or self.common.quiet)

    def line(self, message: str) -> None:
        # A line is never broken: the terminal wraps it, a log or a grep gets it whole.
        if self.text:
            self.out.print(message, highlight=False, soft_wrap=True)

    def table(self, table: Table) -> None:
        if self.text:
            self.out.print(table)

    def result(self, value: Any) -> None:
        """Print the machine-readable result when ``--json`` was given."""
        if self.common.json:
            print(json.dumps(to_plain(value), indent=2, default=str))

    @contextmanager
    def progress(self, description: str, total: int | None) -> Iterator[Callable[[str], None]]:
        """A progress bar on stderr; the callback marks the start of the next unit."""
        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[unit]}"),
            TimeElapsedColumn(),
            console=self.err,
            transient=True,
            # A bar only makes sense on a terminal; in a log it is noise.
            disable=self.common.quiet or self.common.json or not self.err.is_terminal,
        )
        with progress:
            task = progress.add_task(description, total=total, unit="")
            started = False

            def advance(unit: str) -> None:
                nonlocal started
                if started:
                    progress.advance(task)
                started = True
                progress.update(task, unit=unit)

            yield advance
            progress.update(task, completed=total)


def to_plain(value: Any) -> Any:
    """Dataclasses and lists of them as plain JSON-ready values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, list | tuple):
        return [to_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: to_plain(item) for key, item in value.items()}
    return value


def fmt(value: float | None, digits: int = 4) -> str:
    """A metric for a table cell; a dash when missing."""
    if value is None or value != value:
        return "-"
    return f"{value:.{digits}f}"
