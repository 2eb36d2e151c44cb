"""The ``incr`` executable: quiet on a Ctrl-C that comes while the program is still loading.

``incr_cli.cli`` imports typer, rich, DuckDB and the rest, which takes a noticeable part of
a second; a Ctrl-C then would print Python's KeyboardInterrupt traceback. Until ``main``
installs its own handler, a Ctrl-C ends the program at once with the documented code 130
and its one line: nothing has touched the catalog yet.
"""

from __future__ import annotations

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

    sys.exit(main())


if __name__ == "__main__":
    run()
