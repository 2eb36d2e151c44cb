"""The ``incr`` command line: one entry point that maps every error to its exit code."""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
import warnings
from collections.abc import Sequence
from typing import TextIO

import duckdb
import typer
from rich.console import Console
from rich.logging import RichHandler

from . import __version__
from .commands import data, history, integrity, model, recommend
from .errors import ExitCode, IncrError, NothingToDo

try:
    # NOTE: typer vendors click as typer._click from 0.2x on; older typer uses click itself.
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - only with an older typer
    from click import exceptions as click_errors  # type: ignore[no-redef]

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
    for old in [h for h in logger.handlers if h.get_name() == "incr_cli"]:
        logger.removeHandler(old)
    console = Console(stderr=True)
    handler: logging.Handler
    if console.is_terminal:
        handler = RichHandler(
            console=console, show_path=False, markup=False, log_time_format="[%Y-%m-%d %X]"
        )
    else:
        # A log file or cron mail gets one line a message, whole, with an unambiguous time.
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter("%(asctime)s incr %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S%z")
        )
    handler.set_name("incr_cli")
    logger.addHandler(handler)
    # Python's warnings (a model saved under other library versions) are printed as the
    # logger's are: one line, its message alone, without the line of code that warned.
    warnings.showwarning = _show_warning


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    logging.getLogger("incr_cli").warning("%s", message)


class Interrupted(IncrError):
    exit_code = ExitCode.INTERRUPTED

    def __init__(self) -> None:
        # NOTE: a Ctrl-C that lands just after the command's transaction committed cannot
        # undo it, so the message says what is certain: each transaction is whole.
        super().__init__(
            "interrupted; the catalog holds all of this command's work or none of it, "
            "never a part; 'incr status' shows which"
        )


def _interrupt(signum: int, frame: object) -> None:
    # NOTE: raised instead of KeyboardInterrupt, which the parser would turn into exit 1.
    raise Interrupted()


def _interrupted_in_duckdb(exc: BaseException) -> bool:
    # NOTE: DuckDB notices the SIGINT handler's exception while a query runs and raises its
    # own in its place: InterruptException, or a bare RuntimeError in the Python client.
    return isinstance(exc, duckdb.InterruptException) or (
        type(exc) is RuntimeError and str(exc) == "Query interrupted"
    )


def _broken_pipe(exc: BaseException) -> bool:
    # Rich may raise a plain OSError with EPIPE rather than BrokenPipeError.
    return isinstance(exc, BrokenPipeError) or (
        isinstance(exc, OSError) and exc.errno == errno.EPIPE
    )


def _silence_stdout() -> None:
    """Point stdout at devnull, so that flushing it at exit cannot fail again.

    This is what the Python documentation advises for SIGPIPE (see the signal module).
    """
    try:
        fileno = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real file (e.g. captured by a test): nothing to flush at exit
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fileno)
    os.close(devnull)


def _run(args: list[str]) -> int:
    """Parse and run one command; the parser's own errors propagate to main()."""
    command = typer.main.get_command(app)
    # NOTE: make_context and invoke rather than command.main(): main() prints the parser's
    # errors as a multi-line box and turns a closed pipe into exit 1.
    try:
        with command.make_context("incr", args) as ctx:
            command.invoke(ctx)
    except typer.Exit as exc:
        return int(exc.exit_code)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit code; errors become one line on stderr."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    _configure_logging(debug)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    no_args_help = getattr(click_errors, "NoArgsIsHelpError", ())
    previous = signal.signal(signal.SIGINT, _interrupt)
    try:
        return _run(args)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except no_args_help as exc:
        # Typer has printed the help already; click leaves it in the message.
        if exc.format_message():
            exc.show()
        return int(exc.exit_code)
    except click_errors.UsageError as exc:
        # A bad option, value or argument: one line, like every other error.
        where = exc.ctx.command_path if exc.ctx is not None else "incr"
        message = " ".join(exc.format_message().split()).rstrip(".")
        err.print(f"incr: error: {message}; see '{where} --help'", markup=False)
        return int(ExitCode.USAGE)
    except IncrError as exc:
        if debug:
            err.print_exception()
        # Nothing to do is a normal outcome for a cron job: --quiet keeps it silent too.
        quiet = isinstance(exc, NothingToDo) and not debug and {"-q", "--quiet"} & set(args)
        if not quiet:
            err.print(f"incr: error: {exc}", markup=False)
        return int(exc.exit_code)
    except Exception as exc:
        if _broken_pipe(exc):
            # The reader went away (e.g. `incr log | head`): nothing more to say.
            _silence_stdout()
            return int(ExitCode.BROKEN_PIPE)
        if _interrupted_in_duckdb(exc):
            if debug:
                err.print_exception()
            err.print(f"incr: error: {Interrupted()}", markup=False)
            return int(ExitCode.INTERRUPTED)
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
