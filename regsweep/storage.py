"""Where studies live: storage URLs, SQLite defaults, heartbeats, redaction, open/create.

The study is the single source of truth: its user attribute ``regsweep`` records the
search space, the data description and the target total, so later commands need only
``--storage`` and ``--study``.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regsweep.errors import MissingDependencyError, StorageError, StudyMismatchError, StudyNotFoundError

if TYPE_CHECKING:
    import optuna

_logger = logging.getLogger(__name__)

DEFAULT_ROOT = Path("studies")
STUDY_ATTR = "regsweep"
HEARTBEAT_INTERVAL = 10
SQLITE_BUSY_TIMEOUT = 60.0
# A live worker waiting on a lock (up to the busy timeout) must never be taken for a dead one.
GRACE_PERIOD = int(SQLITE_BUSY_TIMEOUT) + 3 * HEARTBEAT_INTERVAL
_STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql")


# -- names and URLs ---------------------------------------------------------------------------
def check_study_name(name: Any) -> str:
    """A study name is 1-128 characters of letters, digits, ``_``, ``.``, ``-``."""
    if not isinstance(name, str) or not _STUDY_NAME.match(name):
        raise StorageError(
            f"study: got {name!r}; allowed: 1-128 characters of letters, digits, '_', '.', '-', starting with a letter or digit"
        )
    return name


def default_storage_url(study_name: str, root: str | Path = DEFAULT_ROOT) -> str:
    """``sqlite:///studies/<study>.db`` (relative to the working directory)."""
    return f"sqlite:///{Path(root) / f'{check_study_name(study_name)}.db'}"


def redact(text: str) -> str:
    """Replace any password in a URL (or in a message containing one) by ``***``.

    Covers ``scheme://user:PASSWORD@host`` and ``password=PASSWORD`` (URL query or libpq DSN).
    """
    text = re.sub(r"(\w[\w+.-]*://[^:/@\s]*:)[^\s'\"]*@", r"\1***@", text)
    return re.sub(r"(?i)(\bpassword=)[^&\s'\"]*", r"\1***", text)


class RedactSecrets(logging.Filter):
    """A logging filter that passes every record with passwords in URLs replaced by ``***``."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def redact_logs(*loggers: str) -> None:
    """Add :class:`RedactSecrets` to the handlers of the root logger (and of ``loggers``, e.g.
    ``distributed``, which has its own); call after configuring logging."""
    handlers = [h for name in ("", *loggers) for h in logging.getLogger(name or None).handlers]
    for handler in handlers:
        if not any(isinstance(f, RedactSecrets) for f in handler.filters):
            handler.addFilter(RedactSecrets())


def check_storage_url(url: Any) -> str:
    """Validate an Optuna RDB storage URL without connecting or writing anything."""
    if not isinstance(url, str) or "://" not in url:
        raise StorageError(
            f"storage: got {redact(str(url))!r}; allowed: a database URL such as sqlite:///studies/NAME.db "
            "or postgresql://user:password@host/db"
        )
    scheme = url.split("://", 1)[0].split("+", 1)[0].lower()
    if scheme not in _SCHEMES:
        raise StorageError(f"storage: scheme {scheme!r} in {redact(url)!r} is not a SQL database; allowed: {', '.join(_SCHEMES)}")
    if scheme == "sqlite":
        path = sqlite_path(url)
        if path is None:
            raise StorageError(f"storage: {url!r} has no file path; allowed: sqlite:///relative/path.db or sqlite:////absolute/path.db")
    return url


_DRIVER_HINTS = {
    "psycopg2": "pip install 'regsweep[postgres]'",
    "psycopg": "pip install 'psycopg[binary]' (or use a postgresql+psycopg2:// URL with regsweep[postgres])",
}
PG_CONNECT_TIMEOUT = 10


def _is_postgres(url: str) -> bool:
    return url.split("://", 1)[0].split("+", 1)[0].lower() in ("postgresql", "postgres")


def postgres_driver_url(url: str) -> str:
    """The URL SQLAlchemy gets: ``postgres://`` means ``postgresql://``, and a URL without a driver
    uses whichever of psycopg (3) or psycopg2 is installed (SQLAlchemy 2.1 assumes psycopg)."""
    import importlib.util

    if not _is_postgres(url):
        return url
    scheme, rest = url.split("://", 1)
    driver = scheme.partition("+")[2]
    if not driver:
        installed = [d for d in ("psycopg", "psycopg2") if importlib.util.find_spec(d) is not None]
        driver = installed[0] if installed else "psycopg2"
    return f"postgresql+{driver}://{rest}"


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL, or ``None`` for in-memory or other databases."""
    if not url.lower().startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///"):].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def check_sqlite_location(url: str) -> None:
    """For a ``sqlite:///`` URL: the file is not a folder and its folder is writable (creates nothing)."""
    path = sqlite_path(url)
    if path is None:
        return
    if path.is_dir():
        raise StorageError(f"storage: {str(path)!r} in {redact(url)!r} is a folder; allowed: a .db file path")
    check_writable_dir(path.parent, "storage")


def study_dir(storage_url: str, study_name: str) -> Path:
    """The folder for plots and artifacts of a study: next to a SQLite file, else ``studies/<study>``."""
    path = sqlite_path(storage_url)
    root = path.parent if path is not None else DEFAULT_ROOT
    return root / study_name


def check_writable_dir(path: str | Path, what: str = "out") -> Path:
    """Check that ``path`` is, or can be created as, a writable folder (creates nothing)."""
    folder = Path(path)
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise StorageError(f"{what}: {str(folder)!r} is not a folder ({str(probe)!r} is a file); allowed: a writable folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise StorageError(f"{what}: {str(folder)!r} is not writable; allowed: a folder you can write to")
    return folder


# -- opening storages and studies -------------------------------------------------------------------
def quiet_optuna() -> None:
    """Silence Optuna's info logs and the warnings about features regsweep uses on purpose
    (heartbeats with ask/tell, experimental stale-trial helpers)."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")


def make_storage(url: str, *, heartbeat: bool = True, heartbeat_interval: int = HEARTBEAT_INTERVAL,
                 grace_period: int = GRACE_PERIOD, create_file: bool = True) -> optuna.storages.RDBStorage:
    """An Optuna ``RDBStorage`` with a SQLite busy timeout, heartbeats and stale-trial retries.

    Args:
        url: a checked storage URL (see :func:`check_storage_url`).
        heartbeat: record heartbeats so a killed worker's trial is failed and retried.
        create_file: if ``False`` and the SQLite file does not exist, raise
            :class:`StudyNotFoundError` instead of creating an empty database.
    """

    quiet_optuna()
    check_storage_url(url)
    path = sqlite_path(url)
    engine_kwargs: dict[str, Any] = {}
    if path is not None:
        if not create_file and not path.exists():
            raise StudyNotFoundError(f"storage: no database at {str(path)!r}; run a sweep first or pass --storage")
        if create_file:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT}
    kwargs: dict[str, Any] = {}
    if heartbeat:
        kwargs = {"heartbeat_interval": heartbeat_interval, "grace_period": grace_period,
                  "heartbeat_stale_trial_callback": RetryStaleTrial(max_retry=3)}
    if path is None:
        engine_kwargs["pool_pre_ping"] = True
        if _is_postgres(url):
            engine_kwargs["connect_args"] = {"connect_timeout": PG_CONNECT_TIMEOUT}
    try:
        storage = _rdb_storage(postgres_driver_url(url), engine_kwargs, kwargs)
        if path is not None:
            _begin_immediate(storage.engine)
        return storage
    except ImportError as exc:  # optuna wraps the driver's ModuleNotFoundError
        missing = getattr(exc, "name", None) or getattr(exc.__cause__, "name", None) or "the database driver"
        raise MissingDependencyError(
            f"storage: the driver for {redact(url)!r} is not installed ({missing}); install it with: "
            f"{_DRIVER_HINTS.get(str(missing), f'pip install {missing}')}"
        ) from exc
    except Exception as exc:  # sqlalchemy.exc.OperationalError and friends
        message = redact(str(exc).splitlines()[0]) if str(exc) else type(exc).__name__
        unreachable = path is None and type(exc).__name__ == "OperationalError"
        hint = "; check the host, port, user, password and that the server is running" if unreachable else ""
        raise StorageError(f"storage: cannot open {redact(url)!r}: {message}{hint}") from exc


def _begin_immediate(engine: Any) -> None:
    """Make every transaction on a SQLite engine ``BEGIN IMMEDIATE``.

    pysqlite begins transactions lazily (DEFERRED): when two processes both read and then
    write in one transaction, as Optuna's attribute setters do, SQLite refuses one of them at
    once with "database is locked" instead of waiting out the busy timeout. Taking the write
    lock at BEGIN makes the second one wait (SQLAlchemy's documented recipe for pysqlite).
    """
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened before the listeners existed would still begin lazily


def _rdb_storage(url: str, engine_kwargs: dict[str, Any], kwargs: dict[str, Any]) -> optuna.storages.RDBStorage:
    """``RDBStorage(url)``, retried when another process creates Optuna's tables at the same moment
    (PostgreSQL then reports a duplicate key or an existing relation to the loser of the race)."""
    import optuna

    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
        except Exception as exc:
            if attempt == 4 or not _TABLE_RACE.search(str(exc)):
                raise
            _logger.debug("storage: tables were being created by another process; retrying")
    raise AssertionError("unreachable")


_TABLE_RACE = re.compile(r"duplicate key value|already exists|UNIQUE constraint failed")  # PostgreSQL, both, SQLite


def is_storage_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is the storage failing (Optuna's ``StorageInternalError``, a SQLAlchemy error)."""
    import sys

    optuna_exceptions = sys.modules.get("optuna.exceptions")
    if optuna_exceptions is not None and isinstance(exc, optuna_exceptions.StorageInternalError):
        return True
    sqlalchemy_exc = sys.modules.get("sqlalchemy.exc")
    return sqlalchemy_exc is not None and isinstance(exc, sqlalchemy_exc.SQLAlchemyError)


def describe_storage_failure(exc: BaseException, url: str) -> str:
    """One line naming the storage (password hidden) and the database's own reason."""
    cause: BaseException = exc
    while cause.__cause__ is not None:
        cause = cause.__cause__
    reason = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    return f"storage {redact(url)!r} failed: {redact(reason)[:300]}"


def study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    return [s.study_name for s in storage.get_all_studies()]


def load_study(storage_url: str, study_name: str, *, heartbeat: bool = True) -> optuna.Study:
    """Load an existing study; never creates a database or a study."""
    import optuna

    check_study_name(study_name)
    storage = make_storage(storage_url, heartbeat=heartbeat, create_file=False)
    try:
        return optuna.load_study(study_name=study_name, storage=storage)
    except KeyError as exc:
        names = study_names(storage)
        raise StudyNotFoundError(
            f"study: no study named {study_name!r} in {redact(storage_url)!r}; existing: {names or 'none'}"
        ) from exc


def study_meta(study: optuna.Study) -> dict[str, Any]:
    """What regsweep recorded about a study (empty for studies made elsewhere)."""
    return dict(study.user_attrs.get(STUDY_ATTR, {}))


def check_same_setup(existing: dict[str, Any], wanted: dict[str, Any], study_name: str) -> None:
    """Refuse to mix trials of different spaces or datasets in one study."""
    for key, label in (("space", "search space"), ("data", "dataset")):
        old, new = existing.get(key), wanted.get(key)
        if key == "data" and old and new:
            old, new = old.get("fingerprint"), new.get("fingerprint")
        if old is not None and old != new:
            raise StudyMismatchError(
                f"study: {study_name!r} already exists with a different {label}; allowed: the same {label} "
                f"to resume it, or a new --study name (nothing was changed)"
            )
    old_objectives = existing.get("objectives", ["val_loss"]) if existing else None
    new_objectives = wanted.get("objectives", ["val_loss"])
    if old_objectives is not None and list(old_objectives) != list(new_objectives):
        raise StudyMismatchError(
            f"objectives: study {study_name!r} was made with objectives {list(old_objectives)}, got "
            f"{list(new_objectives)}; allowed: the same objectives to resume it, or a new --study name "
            "(nothing was changed)"
        )


def open_study(storage_url: str, study_name: str, *, meta: dict[str, Any], sampler: Any = None,
               pruner: Any = None, direction: str = "minimize",
               directions: list[str] | None = None) -> optuna.Study:
    """Create the study, or load it after checking it was made with the same space, data and objectives.

    ``directions`` (one per objective) makes a multi-objective study; a study's directions are
    fixed when it is created, so resuming with other objectives is refused.

    ``meta`` (space, data description, target total, version) is stored in the study's
    user attribute ``regsweep``; an existing study's total is updated to ``meta['total']``.
    """
    import optuna

    storage = make_storage(storage_url)
    try:
        study = optuna.load_study(study_name=study_name, storage=storage, sampler=sampler, pruner=pruner)
    except KeyError:
        try:
            kind = {"directions": directions} if directions and len(directions) > 1 else {"direction": direction}
            study = optuna.create_study(study_name=study_name, storage=storage, sampler=sampler, pruner=pruner,
                                        **kind)
        except optuna.exceptions.DuplicatedStudyError:  # another process created it a moment ago
            study = optuna.load_study(study_name=study_name, storage=storage, sampler=sampler, pruner=pruner)
        else:
            study.set_user_attr(STUDY_ATTR, meta)
            # optuna-dashboard shows these names instead of "Objective 0"
            study.set_metric_names(list(meta.get("objectives") or ["val_loss"])[: len(study.directions)])
            return study
    existing = study_meta(study)
    check_same_setup(existing, meta, study_name)
    if existing != meta:
        study.set_user_attr(STUDY_ATTR, {**existing, **meta})
    return study


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


# -- liveness: heartbeats for trials made with ask/tell --------------------------------------------------
OWNER_ATTR = "regsweep_owner"
FAIL_REASON = "fail_reason"
# User attributes that describe how a trial ended; a retry must not inherit them.
_ENDING_ATTRS = (FAIL_REASON, "not_counted")


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
        attrs = {k: v for k, v in trial.user_attrs.items() if k not in _ENDING_ATTRS}
        clean.user_attrs = {**attrs, "retry_of": trial.system_attrs.get("failed_trial", trial.number)}
        # The dead owner's tag must not travel with the retry: another worker would fail it again.
        clean.system_attrs = {k: v for k, v in trial.system_attrs.items() if k != OWNER_ATTR}
        self._retry(study, clean)


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
        if reason is None:
            continue
        try:  # attributes first: a finished trial's attributes can no longer be set
            study._storage.set_trial_user_attr(trial._trial_id, "fail_reason", reason)
            study._storage.set_trial_user_attr(trial._trial_id, "not_counted", True)
            if not study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:  # another process failed it first
            continue
        failed.append(trial.number)
        retry = study._storage.get_heartbeat_stale_trial_callback() if hasattr(study._storage, "get_heartbeat_stale_trial_callback") else None
        if retry is not None:
            retry(study, study._storage.get_trial(trial._trial_id))
    optuna.storages.fail_stale_trials(study)
    return failed


def retry_later(study: optuna.Study, trial: optuna.Trial, reason: str) -> None:
    """Fail an interrupted trial (not counted towards the total) and queue a retry with the same parameters."""
    from optuna.trial import TrialState

    study._storage.set_trial_user_attr(trial._trial_id, FAIL_REASON, reason)
    study._storage.set_trial_user_attr(trial._trial_id, "not_counted", True)
    study.tell(trial, state=TrialState.FAIL)
    callback = getattr(study._storage, "get_heartbeat_stale_trial_callback", lambda: None)()
    if callback is not None:
        callback(study, study._storage.get_trial(trial._trial_id))


@contextmanager
def heartbeat(study: optuna.Study, trial_ids: list[int]) -> Iterator[None]:
    """Record heartbeats for trials made with ``study.ask()`` while the block runs.

    Optuna beats only for trials run inside ``study.optimize``; regsweep asks and tells
    itself (to keep totals exact and to pack trials), so it beats for them here.
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
