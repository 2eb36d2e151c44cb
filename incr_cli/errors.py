"""One family of errors, each with the exit code the command ends with.

Every error a user can cause is a subclass of :class:`IncrError`. The message says what
went wrong, with the bad value, and what to do next; the entry point prints it as one line
and exits with :attr:`IncrError.exit_code`. The codes are documented in the README.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of the ``incr`` command, as documented in the README."""

    OK = 0
    INTERNAL = 1
    USAGE = 2
    BAD_INPUT = 3
    CONFIG = 4
    NOTHING_TO_DO = 5
    BUSY = 6
    INTEGRITY = 7
    GATE = 8
    INTERRUPTED = 130
    BROKEN_PIPE = 141


class IncrError(Exception):
    """Base of every error a user can cause."""

    exit_code = ExitCode.INTERNAL


class UsageError(IncrError):
    """An option or argument names something that does not exist or cannot be used."""

    exit_code = ExitCode.USAGE


class VersionNotFound(UsageError):
    def __init__(self, version: str | int) -> None:
        name = version if isinstance(version, str) else f"v{version}"
        super().__init__(f"version {name!s} does not exist; run 'incr log' to list versions")


class PathNotFound(UsageError):
    """A path given on the command line does not exist."""

    def __init__(self, path: object) -> None:
        self.path = path
        super().__init__(f"{path}: no such file; check the path")


class BadInput(IncrError):
    """A data file cannot be read as interactions."""

    exit_code = ExitCode.BAD_INPUT

    def __init__(self, path: object, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class ConfigError(IncrError):
    """The configuration file is missing, unreadable or invalid."""

    exit_code = ExitCode.CONFIG


class TrainingDiverged(ConfigError):
    """SGD blew up: the model's parameters are no longer finite numbers. Nothing is saved."""

    def __init__(self, version: int, lr: float) -> None:
        self.version = version
        super().__init__(
            f"training on v{version} diverged (parameters became infinite or NaN) and nothing "
            f"was saved; lower model.lr (now {lr:g}) or narrow ingest.rating_min/rating_max"
        )


class NothingToDo(IncrError):
    """The command found no work; the catalog is unchanged."""

    exit_code = ExitCode.NOTHING_TO_DO


class CatalogBusy(IncrError):
    """Another process holds the catalog's write lock."""

    exit_code = ExitCode.BUSY


class IntegrityError(IncrError):
    """The catalog or a model file does not match what was recorded."""

    exit_code = ExitCode.INTEGRITY


class GateRefused(IncrError):
    """The quality gate kept the current model: the candidate was recorded as rejected.

    Unlike the other errors this one leaves a change behind on purpose: the candidate
    model and the gate's decision are committed, so that ``incr log`` can show them.
    """

    exit_code = ExitCode.GATE

    def __init__(
        self, version: int, candidate: int, current: int | None, reasons: list[str]
    ) -> None:
        self.version = version
        self.candidate = candidate
        self.current = current
        self.reasons = reasons
        serving = f"model m{current} still serves" if current is not None else "no model serves"
        super().__init__(
            f"the quality gate refused candidate m{candidate} of v{version}: "
            f"{'; '.join(reasons)}; {serving}. Rerun 'incr update --force' to promote it "
            "anyway, or change the gate section of the config"
        )
