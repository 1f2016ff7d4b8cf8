"""The one error hierarchy of regsweep.

Every error a user can cause derives from :class:`RegsweepError`; the CLI turns
it into a one-line message on stderr and exit code 2. The builtin mix-ins keep
``except ValueError`` and friends working.
"""

from __future__ import annotations


class RegsweepError(Exception):
    """Root of every error regsweep raises on purpose."""


class SearchSpaceError(RegsweepError, ValueError):
    """A search-space field is outside what is allowed."""


class DataError(RegsweepError, ValueError):
    """A dataset has a wrong shape, dtype, NaN values or bad labels."""


class SettingsError(RegsweepError, ValueError):
    """A sweep setting (trials, workers, out dir, pruner, ...) is invalid."""


class StorageError(RegsweepError, ValueError):
    """A storage URL is malformed, unreachable or needs a missing driver."""


class StudyNotFoundError(RegsweepError, KeyError):
    """No study of that name exists in the storage."""

    def __str__(self) -> str:  # KeyError would add quotes around the message
        return str(self.args[0]) if self.args else ""


class StudyMismatchError(RegsweepError, ValueError):
    """An existing study was made with a different space or dataset."""


class MissingDependencyError(RegsweepError, ImportError):
    """An optional dependency is not installed."""


class AllTrialsFailedError(RegsweepError, RuntimeError):
    """Every trial of a sweep failed; nothing finished."""


class SweepInterrupted(RegsweepError, KeyboardInterrupt):
    """The sweep was stopped by a signal; running the same command again resumes it."""
