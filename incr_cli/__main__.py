"""The ``incr`` executable: quiet on a Ctrl-C that comes while the program is still loading.

``incr_cli.cli`` imports typer, rich, DuckDB and the rest, which takes a noticeable part of
a second; a Ctrl-C then would print Python's KeyboardInterrupt traceback. Until ``main``
installs its own handler, a Ctrl-C ends the program at once with the documented code 130
and its one line: nothing has touched the catalog yet.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys


def _interrupted_while_loading(signum: int, frame: object) -> None:
    sys.stderr.write("incr: error: interrupted before any work; the catalog is unchanged\n")
    os._exit(130)


def run() -> None:
    """Entry point of the console script."""
    signal.signal(signal.SIGINT, _interrupted_while_loading)
    from .cli import main

    code = main()
    # Tearing down the interpreter (every module of DuckDB, pydantic, typer, rich) takes
    # about a tenth of a second, a quarter of a short command's time. By now the catalog
    # is closed and every file written is closed, so only what was printed is left to
    # flush before the process ends.
    try:
        sys.stdout.flush()
    except OSError:
        code = code or 141  # the reader went away: as main() reports a closed pipe
    with contextlib.suppress(OSError):
        sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    run()
