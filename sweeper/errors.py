"""Error types that the CLI turns into one-line messages (exit code 2), never tracebacks."""

from __future__ import annotations


class SweeperError(Exception):
    """A user-facing error: its str() is the whole one-line message."""


class SpecError(SweeperError):
    """A sweep definition is invalid; names the file and the key path."""

    def __init__(self, source: str, path: str, message: str) -> None:
        self.source, self.path, self.message = source, path, message
        where = f"{source}: " if source else ""
        key = f"{path}: " if path else ""
        super().__init__(f"{where}{key}{message}")


class DataError(SweeperError):
    """A dataset cannot be loaded (missing file, no network, bad column)."""


class StudyError(SweeperError):
    """A study cannot be found, created or resumed."""


class MaxFailuresReached(SweeperError):
    """``--max-failures N``: the sweep stopped because N trials failed."""


class TrialError(Exception):
    """A trial failed in a way worth a short reason (NaN loss, bad shape); stored on the trial."""
