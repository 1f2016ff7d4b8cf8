"""What every regsweep command line shares: the parser class, flag types and helpers, and the
guard that turns errors into one line on stderr and an exit code.

Used by :mod:`regsweep.cli` (the ``regsweep`` command and the runnable sweeps) and by other
entry points such as :func:`regsweep.compare.compare_main`. Imports nothing heavy, so
``--help`` stays fast.

Exit codes: 0 success, 1 a sweep whose trials all failed, 2 bad input (nothing written),
3 the storage failed while the command ran (one line naming it, password hidden),
130 interrupted (run the same command again to resume).

Example:
    >>> parser = Parser(prog="mine")
    >>> add_verbosity(parser)
    >>> guarded(parser, ["-q"], lambda args: 0)  # doctest: +SKIP
    0
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from regsweep.errors import AllTrialsFailedError, RegsweepError, SettingsError, SweepInterrupted


class Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so every bad flag is one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise SettingsError(f"{self.prog}: {message}")


def _whole_number_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"got {text!r}; allowed: a whole number >= {low}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"got {value}; allowed: a whole number >= {low}")
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    return _whole_number_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type: a whole number >= 0."""
    return _whole_number_at_least(text, 0)


def tolerance_arg(text: str) -> float:
    """argparse type of ``--tolerance``: a fraction in [0, 1]."""
    from regsweep.pareto import check_tolerance

    try:
        return check_tolerance(float(text))
    except (ValueError, SettingsError):
        raise argparse.ArgumentTypeError(f"got {text!r}; allowed: a number in [0, 1] (0.01 = 1 %)") from None


def setup_logging(verbosity: int) -> None:
    """Log regsweep's messages to stderr (``verbosity`` < 0: warnings only, > 0: debug), passwords redacted."""
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
    logging.getLogger("regsweep").setLevel(level)
    from regsweep.storage import redact_logs

    redact_logs()


def add_study_args(parser: argparse.ArgumentParser, *, study_default: str | None = None) -> None:
    """Add ``--study`` (required unless ``study_default``) and ``--storage``."""
    parser.add_argument("--study", default=study_default, required=study_default is None,
                        help="study name" + (f" (default: {study_default})" if study_default else ""))
    parser.add_argument("--storage", default=None,
                        help="Optuna storage URL (default: sqlite:///studies/<study>.db)")


def add_verbosity(parser: argparse.ArgumentParser) -> None:
    """Add ``-v/--verbose`` (repeatable) and ``-q/--quiet``."""
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")


def guarded(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
            action: Callable[[argparse.Namespace], int]) -> int:
    """Parse and run, turning regsweep errors into one line on stderr and an exit code."""
    from regsweep.storage import describe_storage_failure, is_storage_failure, redact

    args: argparse.Namespace | None = None
    try:
        args = parser.parse_args(argv)
        setup_logging(-1 if getattr(args, "quiet", False) else getattr(args, "verbose", 0))
        return action(args)
    except SweepInterrupted as exc:
        print(f"regsweep: {redact(str(exc))}", file=sys.stderr)
        return 130
    except AllTrialsFailedError as exc:
        print(f"regsweep: {redact(str(exc))}", file=sys.stderr)
        return 1
    except RegsweepError as exc:
        print(f"regsweep: error: {redact(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("regsweep: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as exc:
        if not is_storage_failure(exc):
            raise
        print(f"regsweep: error: {describe_storage_failure(exc, _storage_of(args))}", file=sys.stderr)
        return 3


def _storage_of(args: argparse.Namespace | None) -> str:
    """The storage URL a command used, for error messages."""
    from regsweep.storage import default_storage_url

    storage = getattr(args, "storage", None)
    study = getattr(args, "study", None)
    if storage:
        return str(storage)
    return default_storage_url(study) if isinstance(study, str) and study else "(unknown storage)"
