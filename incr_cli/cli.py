"""The ``incr`` command line: one entry point that maps every error to its exit code."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
from collections.abc import Sequence

import typer
from rich.console import Console
from rich.logging import RichHandler

from . import __version__
from .commands import data, history, integrity, model, recommend
from .errors import ExitCode, IncrError

app = typer.Typer(
    name="incr",
    help="Keep a recommender fresh from files of new interactions: incremental, versioned, "
    "reversible.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

app.command()(data.init)
app.command()(data.ingest)
app.command()(data.clean)
app.command()(data.featurize)
app.command()(model.update)
app.command()(model.evaluate)
app.command()(history.rollback)
app.command()(history.log)
app.command()(history.status)
app.command()(integrity.verify)
app.command()(integrity.gc)
app.command()(recommend.recommend)


def _version(value: bool) -> None:
    if value:
        print(f"incr {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """Keep a recommender fresh from files of new interactions.

    Example: incr ingest new.csv && incr clean && incr featurize && incr update && incr evaluate
    """


def _configure_logging(debug: bool) -> None:
    logger = logging.getLogger("incr_cli")
    logger.setLevel(logging.DEBUG if debug else logging.WARNING)
    # main() can run many times in one process (tests, embedding): one handler, not one a call.
    for old in [h for h in logger.handlers if isinstance(h, RichHandler)]:
        logger.removeHandler(old)
    handler = RichHandler(console=Console(stderr=True), show_path=False, markup=False)
    logger.addHandler(handler)
    logging.captureWarnings(True)


class Interrupted(IncrError):
    exit_code = ExitCode.INTERRUPTED

    def __init__(self) -> None:
        super().__init__("interrupted; the catalog is as it was before this command")


def _interrupt(signum: int, frame: object) -> None:
    # NOTE: raised instead of KeyboardInterrupt, which the parser would turn into exit 1.
    raise Interrupted()


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit code; errors become one line on stderr."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    _configure_logging(debug)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    previous = signal.signal(signal.SIGINT, _interrupt)
    try:
        # The parser reports its own usage errors (exit 2) and always ends in SystemExit.
        typer.main.get_command(app).main(args, prog_name="incr", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except IncrError as exc:
        if debug:
            err.print_exception()
        err.print(f"incr: error: {exc}", markup=False)
        return int(exc.exit_code)
    except BrokenPipeError:
        # The reader went away (e.g. `incr log | head`): nothing more to say.
        with contextlib.suppress(OSError):
            sys.stderr.close()
        return int(ExitCode.BROKEN_PIPE)
    except Exception as exc:
        if debug:
            err.print_exception()
        err.print(
            f"incr: internal error: {type(exc).__name__}: {exc}; the catalog is unchanged. "
            "Rerun with --debug and report it as a bug",
            markup=False,
        )
        return int(ExitCode.INTERNAL)
    finally:
        signal.signal(signal.SIGINT, previous)
    return 0
