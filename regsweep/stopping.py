"""Stop requests: signals only set flags; the worker acts on them at safe points.

A sweep stops in two steps. The first Ctrl-C (or SIGTERM) asks for a *soft* stop: running
trials finish, no new ones start. The second asks to stop *now*: each worker abandons its
running trials at the next safe point (between training batches on the Keras engine, between
epochs on the slots engine), fails them and queues a retry with the same parameters.

Signal handlers never raise. An exception raised from a handler lands wherever the main
thread happens to be, which may be inside a storage call: SQLAlchemy then leaves a broken
SQLite connection holding the database's write lock, and every other process waits out the
busy timeout and fails with ``StorageInternalError`` ("An exception is raised during the
commit"). That was the cause of the tracebacks after a second Ctrl-C; see
``scripts/stress_signals.py``.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import Any, Protocol

from regsweep.errors import SweepInterrupted

_logger = logging.getLogger(__name__)


class Flag(Protocol):
    """What a stop flag needs: ``threading.Event``, ``multiprocessing.Event`` and ``distributed.Event`` fit."""

    def set(self) -> None: ...

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool | None: ...


class TrialInterrupted(BaseException):
    """Raised at a safe point when a stop-now was requested; the runner fails the trial and queues a retry."""


class StopRequest:
    """The stop state of one worker loop.

    Args:
        soft: set to stop taking new trials (shared by the parent and its workers).
        now: set to abandon the running trial at the next safe point.
    """

    def __init__(self, soft: Flag | None = None, now: Flag | None = None) -> None:
        self.soft: Flag = soft if soft is not None else threading.Event()
        self.now: Flag = now if now is not None else threading.Event()

    def request(self, *, now: bool = False) -> None:
        """Ask for a soft stop, or with ``now`` for an immediate one. Safe in a signal handler."""
        self.soft.set()
        if now:
            self.now.set()

    @property
    def stopping(self) -> bool:
        """No new trial may start."""
        return self.soft.is_set() or self.now.is_set()

    def wait(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for a stop request; ``True`` if one came."""
        return bool(self.soft.wait(seconds)) or self.stopping

    def check_now(self) -> None:
        """Raise :class:`TrialInterrupted` if a stop-now was requested. Call only at safe points."""
        if self.now.is_set():
            raise TrialInterrupted()


def keras_stop_callback(stop: StopRequest) -> Any:
    """A Keras callback that raises :class:`TrialInterrupted` between batches once a stop-now is asked.

    It sits first among a trial's callbacks, so it runs before any callback that writes to storage.
    """
    import keras

    class StopNowCallback(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            stop.check_now()

        def on_test_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            stop.check_now()

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            stop.check_now()

    return StopNowCallback()


class SignalState:
    """Parent side: the first SIGINT/SIGTERM calls ``on_first``, any later one ``on_second``.

    The handlers only set flags or send signals; they never raise (see the module docstring).
    """

    def __init__(self, on_first: Callable[[], None], on_second: Callable[[], None]) -> None:
        self.on_first, self.on_second, self.count = on_first, on_second, 0
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> SignalState:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self.handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def handle(self, signum: int, frame: Any) -> None:
        self.count += 1
        if self.count == 1:
            self.on_first()
            _logger.warning("stopping: running trials finish, no new ones start (signal again to stop at once)")
        else:
            self.on_second()


def install_worker_handlers(stop: StopRequest) -> None:
    """In a worker process: Ctrl-C is the parent's business (ignored), SIGTERM asks to stop now."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.request(now=True))


def interrupted(study_name: str) -> SweepInterrupted:
    """The one-line error a stopped sweep ends with."""
    return SweepInterrupted(f"interrupted: study {study_name!r} stopped early; run the same command again to resume")
