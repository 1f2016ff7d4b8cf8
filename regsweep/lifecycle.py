"""A trial's life, in one place: claim, owner tag and heartbeat, failing dead workers' trials, retry, tell.

A worker claims trials with :func:`claim_trials` (which never overshoots the study's total),
tags each with its owner (:func:`owner_tag`) and keeps them alive with :func:`heartbeat`
while it trains. It ends each one with :func:`tell_result` or :func:`tell_failure`; a trial
abandoned on a stop-now request is failed and retried with ``tell_failure(..., retry=True)``.
A trial whose worker died is failed and retried by whoever notices first: at once by
:func:`fail_orphaned_trials` when the owner lived on this machine, after the heartbeat grace
period by Optuna's stale-trial check with :class:`RetryStaleTrial` otherwise.

Any of these may find the trial already ended by another process (it took this worker for
dead): the tell functions then drop the result with a warning and return ``False``, and
:func:`running` does the same for the attribute writes made during training, so a worker never
dies of that race.

Example:
    >>> trials = claim_trials(study, total=30)  # doctest: +SKIP
    >>> with running(study, trials):  # doctest: +SKIP
    ...     tell_result(study, trials[0], 0.25)
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

    from regsweep.stopping import StopRequest

_logger = logging.getLogger(__name__)

IDLE_POLL_SECONDS = 5.0  # how often a worker with nothing to claim looks again while trials run elsewhere

HEARTBEAT_INTERVAL = 10
LOCK_WAIT_SECONDS = 60.0  # the longest a live worker may wait on a database lock (SQLite's busy timeout)
# A live worker waiting on a lock must never be taken for a dead one.
GRACE_PERIOD = int(LOCK_WAIT_SECONDS) + 3 * HEARTBEAT_INTERVAL
OWNER_ATTR = "regsweep_owner"
FAIL_REASON = "fail_reason"
NOT_COUNTED = "not_counted"
SURPLUS_REASON = "surplus: the study reached its total"  # a trial asked beyond the total: FAIL, not counted
# User attributes that describe how a trial ended; a retry must not inherit them.
ENDING_ATTRS = (FAIL_REASON, NOT_COUNTED)


# -- trial states: the one definition of "finished" ----------------------------------------------------
def finished_states() -> tuple[Any, ...]:
    """COMPLETE and PRUNED trials are finished and count towards a sweep's total."""
    from optuna.trial import TrialState

    return (TrialState.COMPLETE, TrialState.PRUNED)


def count_states(study: optuna.Study) -> Counter[str]:
    """Number of trials per state name, plus ``finished`` (COMPLETE + PRUNED)."""
    return count_trial_states(study.get_trials(deepcopy=False))


def count_trial_states(trials: list[optuna.trial.FrozenTrial]) -> Counter[str]:
    """:func:`count_states` of an already loaded list of trials."""
    counts = Counter(t.state.name for t in trials)
    counts["finished"] = counts["COMPLETE"] + counts["PRUNED"]
    return counts


def failures_in_a_row(study: optuna.Study) -> int:
    """How many trials failed since the last finished one (interrupted and surplus ones excluded)."""
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False)
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
            and not t.user_attrs.get(NOT_COUNTED)]
    done.sort(key=lambda t: t.datetime_complete or t.datetime_start)
    count = 0
    for trial in reversed(done):
        if trial.state != TrialState.FAIL:
            break
        count += 1
    return count


# -- owners ------------------------------------------------------------------------------------------------
def owner_tag() -> str:
    """Who runs a trial, unique across machines, containers and pid reuse.

    ``host/boot-id/pid-namespace/start-time:pid``: containers that share a hostname differ in
    boot id or pid namespace, and a recycled pid differs in its start time. The pid comes last.
    """
    pid = os.getpid()
    return f"{'/'.join(_machine_identity())}/{_start_time(pid)}:{pid}"


def _read(path: str) -> str:
    try:
        with open(path) as file:
            return file.read().strip()
    except OSError:
        return ""


def _machine_identity() -> tuple[str, str, str]:
    """(hostname, boot id, pid namespace) of this process: where its pids mean something."""
    boot = _read("/proc/sys/kernel/random/boot_id").replace("-", "")[:12]
    try:
        namespace = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        namespace = ""
    return socket.gethostname().replace("/", "_"), boot, namespace


def _start_time(pid: int) -> str:
    """The start time of process ``pid`` in clock ticks since boot ('' if unknown or gone)."""
    stat = _read(f"/proc/{pid}/stat")
    fields = stat.rpartition(")")[2].split()  # the command name may hold spaces: count after it
    return fields[19] if len(fields) > 19 else ""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _orphan_reason(trial: optuna.trial.FrozenTrial) -> str | None:
    """Why a RUNNING trial has no live worker: its owner in this machine's pid namespace is gone
    (or its pid now belongs to a newer process), or it never got an owner (its worker died
    between asking and claiming it) long ago; ``None`` if it may be alive. Owners elsewhere are
    left to heartbeats."""
    import datetime

    owner = trial.system_attrs.get(OWNER_ATTR, "")
    if not owner:
        started = trial.datetime_start
        if started is not None and (datetime.datetime.now() - started).total_seconds() > 2 * GRACE_PERIOD:
            return "claimed by a worker that died before it started the trial"
        return None
    where, _, pid = owner.rpartition(":")
    parts = where.split("/")
    if not pid.isdigit():
        return None
    if len(parts) == 4:
        if tuple(parts[:3]) != _machine_identity():
            return None
        alive = _pid_alive(int(pid)) and _start_time(int(pid)) == parts[3]
    else:  # a "host:pid" tag of regsweep 0.1
        alive = where != socket.gethostname() or _pid_alive(int(pid))
    return None if alive else f"worker {owner} died"


# -- claiming ----------------------------------------------------------------------------------------------
def claim_trials(study: optuna.Study, total: int, k: int = 1, *, share: int = 1, held: int = 0,
                 ramp_up: bool = False) -> list[optuna.Trial]:
    """Ask for up to ``k`` trials if the study is short of ``total``; never overshoot.

    Dead workers' trials are failed first (and queued for retry). A trial asked by two
    workers racing for the last slot is told FAIL with ``not_counted`` and dropped. With
    ``share`` workers, a worker holds at most its share of the unfinished trials, ``held``
    (its open trials) included, so slots do not leave the other workers idle. With ``ramp_up``
    it also holds at most its share of one more than the finished trials, ``ceil((finished + 1)
    / share)``: in a young study the open trials grow with the finished ones, so that fewer
    trials start before the sampler and the pruner have seen any (the slots engine's rule).
    """
    from optuna.trial import TrialState

    fail_orphaned_trials(study)
    counts = count_states(study)
    free = total - counts["finished"] - counts["RUNNING"]
    if share > 1:
        k = min(k, -(-(total - counts["finished"]) // share) - held)
    if ramp_up:
        k = min(k, -(-(counts["finished"] + 1) // share) - held)
    claimed = []
    for _ in range(max(0, min(k, free))):
        trial = study.ask()
        study._storage.set_trial_system_attr(trial._trial_id, OWNER_ATTR, owner_tag())
        claimed.append(trial)
    if not claimed:
        return []
    trials = study.get_trials(deepcopy=False)
    finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    running_numbers = sorted(t.number for t in trials if t.state == TrialState.RUNNING)
    kept = []
    for trial in claimed:
        if finished + running_numbers.index(trial.number) < total:
            kept.append(trial)
        else:
            tell_failure(study, trial, SURPLUS_REASON, counted=False)
    return kept


@contextmanager
def heartbeat(study: optuna.Study, trial_ids: list[int]) -> Iterator[None]:
    """Record heartbeats for trials made with ``study.ask()`` while the block runs.

    Optuna beats only for trials run inside ``study.optimize``; regsweep asks and tells
    itself (to keep totals exact and to train several trials at once), so it beats for them here.
    """
    from optuna.storages._heartbeat import is_heartbeat_enabled

    storage = study._storage
    if not is_heartbeat_enabled(storage):
        yield
        return
    stop = threading.Event()
    interval = storage.get_heartbeat_interval()

    def beat() -> None:
        while True:
            for trial_id in trial_ids:
                try:
                    storage.record_heartbeat(trial_id)
                except Exception:  # a transient database error must not kill the trial
                    _logger.debug("heartbeat failed for trial %d", trial_id, exc_info=True)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name="regsweep-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


class DropIfEnded:
    """A block that writes to claimed trials; if another process already ended one of them (it took
    this worker for dead), Optuna raises ``UpdateFinishedTrialError``: the rest of the block is
    dropped with a warning and :attr:`ended` is set. The one place that race is handled."""

    def __init__(self, *trials: optuna.Trial) -> None:
        self.numbers = [t.number for t in trials]
        self.ended = False

    def __enter__(self) -> DropIfEnded:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
        import optuna

        if kind is None or not issubclass(kind, optuna.exceptions.UpdateFinishedTrialError):
            return False
        _logger.warning("trial %s was ended by another process (it took this worker for dead); its result is "
                        "dropped and its retry runs elsewhere", ", ".join(map(str, self.numbers)))
        self.ended = True
        return True


@contextmanager
def running(study: optuna.Study, trials: Sequence[optuna.Trial]) -> Iterator[None]:
    """While claimed ``trials`` train: beat their heartbeats, and survive another process ending
    them (see :class:`DropIfEnded`)."""
    with heartbeat(study, [t._trial_id for t in trials]), DropIfEnded(*trials):
        yield


# -- recording -------------------------------------------------------------------------------------------------
def set_user_attrs(trial: optuna.trial.BaseTrial, attrs: dict[str, Any], *,
                   system_attrs: dict[str, Any] | None = None) -> None:
    """Set ``attrs`` as ``trial``'s user attributes (and ``system_attrs`` as its system attributes):
    what ``trial.set_user_attr`` does per key, in one storage transaction when ``trial`` is a
    running ``optuna.Trial`` on an RDB storage.

    Optuna commits every attribute on its own, and on SQLite each commit waits for its fsync
    (about 1.2 ms on the benchmark machine's disk, plus the write lock other workers wait for);
    a finished slots trial records about 20 attributes. The single transaction goes through
    ``RDBStorage``'s own per-attribute writer (Optuna ``>=4.9,<6``); where that is missing (another
    storage, another Optuna), the attributes are set one by one. Raises as ``set_user_attr`` does
    (e.g. ``UpdateFinishedTrialError``), before anything is written.
    """
    import optuna

    system_attrs = system_attrs or {}
    backend = getattr(trial, "storage", None)
    backend = getattr(backend, "_backend", backend)  # _CachedStorage wraps the RDBStorage
    write = getattr(backend, "_set_trial_attr_without_commit", None)
    if not isinstance(trial, optuna.Trial) or not isinstance(backend, optuna.storages.RDBStorage) \
            or write is None or len(attrs) + len(system_attrs) < 2:
        for key, value in system_attrs.items():
            trial.storage.set_trial_system_attr(trial._trial_id, key, value)  # type: ignore[attr-defined]
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        return
    from optuna.storages._rdb.models import TrialSystemAttributeModel, TrialUserAttributeModel
    from optuna.storages._rdb.storage import _create_scoped_session

    with _create_scoped_session(backend.scoped_session) as session:
        for key, value in system_attrs.items():
            write(session, TrialSystemAttributeModel, trial._trial_id, key, value)
        for key, value in attrs.items():
            write(session, TrialUserAttributeModel, trial._trial_id, key, value)
    trial._cached_frozen_trial.user_attrs.update(attrs)  # as Trial.set_user_attr keeps trial.user_attrs


class ReportBatch:
    """Intermediate values of running trials, written to the storage in one transaction.

    :meth:`add` is ``trial.report(value, step)`` without the write: the value is in
    ``trial._get_latest_trial()`` at once, so the pruner can judge it. :meth:`write` stores every
    added value in one transaction (one fsync on SQLite instead of one per trial, through
    ``RDBStorage``'s own writer; one by one elsewhere) and returns the numbers of the trials another
    process had ended (see :class:`DropIfEnded`): nothing is written for those.
    """

    def __init__(self) -> None:
        self.pending: list[tuple[optuna.Trial, int, float]] = []

    def add(self, trial: optuna.Trial, step: int, value: float) -> None:
        value = float(value)
        trial._cached_frozen_trial.intermediate_values[step] = value  # what Trial.report keeps
        self.pending.append((trial, step, value))

    def write(self) -> set[int]:
        import optuna

        pending, self.pending = self.pending, []
        if not pending:
            return set()
        backend = pending[0][0].storage
        backend = getattr(backend, "_backend", backend)  # _CachedStorage wraps the RDBStorage
        write = getattr(backend, "_set_trial_intermediate_value_without_commit", None)
        if isinstance(backend, optuna.storages.RDBStorage) and write is not None and len(pending) > 1:
            from optuna.storages._rdb.storage import _create_scoped_session

            try:
                with _create_scoped_session(backend.scoped_session) as session:
                    for trial, step, value in pending:
                        write(session, trial._trial_id, step, value)
                return set()
            except optuna.exceptions.UpdateFinishedTrialError:
                pass  # one of them was ended elsewhere (nothing was written): find which, one by one
        ended: set[int] = set()
        for trial, step, value in pending:
            with DropIfEnded(trial) as race:
                trial.storage.set_trial_intermediate_value(trial._trial_id, step, value)
            if race.ended:
                ended.add(trial.number)
        return ended


# -- telling the study ---------------------------------------------------------------------------------------
def tell_result(study: optuna.Study, trial: optuna.Trial, values: float | Sequence[float] | None = None, *,
                pruned: bool = False) -> bool:
    """Tell the study a trial finished: COMPLETE with ``values``, or PRUNED.

    Returns ``False`` (the result is dropped with a warning) if another process ended the trial first.
    """
    from optuna.trial import TrialState

    with DropIfEnded(trial) as guard:
        if pruned:
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, values)
    return not guard.ended


def tell_failure(study: optuna.Study, trial: optuna.Trial, reason: str, *, counted: bool = True,
                 retry: bool = False) -> bool:
    """Tell the study a trial failed, recording ``reason`` (unless the trial recorded its own).

    Args:
        counted: ``False`` marks it ``not_counted`` (it did not fail on its own, e.g. a surplus
            trial): it does not count as a failure in a row.
        retry: the trial did not end on its own (interrupted): fail it, not counted, and queue a
            retry with the same parameters (see :func:`fail_and_retry`).

    Returns ``False`` (with a warning) if another process ended the trial first.
    """
    from optuna.trial import TrialState

    with DropIfEnded(trial) as guard:
        if retry:
            if not fail_and_retry(study, trial, reason):
                raise _ended_error()
        else:
            if FAIL_REASON not in trial.user_attrs:
                study._storage.set_trial_user_attr(trial._trial_id, FAIL_REASON, reason[:500])
            if not counted:
                study._storage.set_trial_user_attr(trial._trial_id, NOT_COUNTED, True)
            study.tell(trial, state=TrialState.FAIL)
    return not guard.ended


def _ended_error() -> Exception:
    import optuna

    return optuna.exceptions.UpdateFinishedTrialError("the trial was ended by another process")


def fail_and_retry(study: optuna.Study, trial: optuna.Trial | optuna.trial.FrozenTrial, reason: str) -> bool:
    """Fail a trial that did not end on its own (interrupted, or its worker died), not counted
    towards the total, and queue a retry with the same parameters.

    Attributes come first: a finished trial's attributes can no longer be set. Returns
    ``False`` if another process ended the trial first (then nothing is queued).
    """
    import optuna
    from optuna.trial import TrialState

    storage = study._storage
    try:
        storage.set_trial_user_attr(trial._trial_id, FAIL_REASON, reason)
        storage.set_trial_user_attr(trial._trial_id, NOT_COUNTED, True)
        if not storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
            return False
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    retry = getattr(storage, "get_heartbeat_stale_trial_callback", lambda: None)()
    if retry is not None:
        retry(study, storage.get_trial(trial._trial_id))
    return True


# -- dead workers -------------------------------------------------------------------------------------------
class RetryStaleTrial:
    """Optuna's ``RetryHeartbeatStaleTrialCallback`` (a WAITING copy with the same parameters),
    minus the failed trial's ``fail_reason``/``not_counted`` and owner tag, plus ``retry_of``
    naming the first try."""

    def __init__(self, max_retry: int | None = 3) -> None:
        import optuna

        self._retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        import copy

        clean = copy.deepcopy(trial)
        attrs = {k: v for k, v in trial.user_attrs.items() if k not in ENDING_ATTRS}
        clean.user_attrs = {**attrs, "retry_of": trial.system_attrs.get("failed_trial", trial.number)}
        # The dead owner's tag must not travel with the retry: another worker would fail it again.
        clean.system_attrs = {k: v for k, v in trial.system_attrs.items() if k != OWNER_ATTR}
        self._retry(study, clean)


def fail_orphaned_trials(study: optuna.Study) -> list[int]:
    """Fail RUNNING trials whose owner process on this host is gone, and queue their retry.

    Heartbeats catch dead workers on any host after the grace period; this catches dead
    workers on this host at once (a resumed sweep does not wait out the grace period).
    Returns the numbers of the failed trials.
    """
    import optuna
    from optuna.trial import TrialState

    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = _orphan_reason(trial)
        if reason is not None and fail_and_retry(study, trial, reason):
            failed.append(trial.number)
    optuna.storages.fail_stale_trials(study)
    return failed


def wait_for_trials_running_elsewhere(study: optuna.Study, total: int, stop: StopRequest) -> bool:
    """Nothing to claim, yet the study is short: wait while other processes run its last trials.

    If their host dies, its trials go stale (heartbeats) and come back as retries that this
    worker claims, so the sweep still ends with its exact total. Returns ``False`` when there
    is nothing to wait for (or a stop was asked), ``True`` after one poll interval.
    """
    counts = count_states(study)
    if counts["finished"] >= total or counts["RUNNING"] == 0 or stop.stopping:
        return False
    _logger.info("%s: %d trial(s) still running elsewhere; waiting until they finish or go stale",
                 study.study_name, counts["RUNNING"])
    return not stop.wait(IDLE_POLL_SECONDS)
