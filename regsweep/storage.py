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
GRACE_PERIOD = 30
SQLITE_BUSY_TIMEOUT = 60.0
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
    """Replace any password in a URL (or in a message containing one) by ``***``."""
    return re.sub(r"(\w[\w+.-]*://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)


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


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL, or ``None`` for in-memory or other databases."""
    if not url.lower().startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///"):].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


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
    import optuna

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
    else:
        engine_kwargs["pool_pre_ping"] = True
    kwargs: dict[str, Any] = {}
    if heartbeat:
        kwargs = {"heartbeat_interval": heartbeat_interval, "grace_period": grace_period,
                  "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
    except ModuleNotFoundError as exc:
        raise MissingDependencyError(
            f"storage: the driver for {redact(url)!r} is not installed ({exc.name}); "
            "install it with: pip install 'regsweep[postgres]'"
        ) from exc
    except Exception as exc:  # sqlalchemy.exc.OperationalError and friends
        message = redact(str(exc).splitlines()[0]) if str(exc) else type(exc).__name__
        raise StorageError(f"storage: cannot open {redact(url)!r}: {message}") from exc


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


def open_study(storage_url: str, study_name: str, *, meta: dict[str, Any], sampler: Any = None,
               pruner: Any = None, direction: str = "minimize") -> optuna.Study:
    """Create the study, or load it after checking it was made with the same space and data.

    ``meta`` (space, data description, target total, version) is stored in the study's
    user attribute ``regsweep``; an existing study's total is updated to ``meta['total']``.
    """
    import optuna

    storage = make_storage(storage_url)
    try:
        study = optuna.load_study(study_name=study_name, storage=storage, sampler=sampler, pruner=pruner)
    except KeyError:
        study = optuna.create_study(study_name=study_name, storage=storage, sampler=sampler, pruner=pruner,
                                    direction=direction)
        study.set_user_attr(STUDY_ATTR, meta)
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
    counts = Counter(t.state.name for t in study.get_trials(deepcopy=False))
    counts["finished"] = counts["COMPLETE"] + counts["PRUNED"]
    return counts


# -- liveness: heartbeats for trials made with ask/tell --------------------------------------------------
OWNER_ATTR = "regsweep_owner"


def owner_tag() -> str:
    """``host:pid`` of this process, stored on each trial it runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_orphaned_trials(study: optuna.Study) -> list[int]:
    """Fail RUNNING trials whose owner process on this host is gone, and queue their retry.

    Heartbeats catch dead workers on any host after the grace period; this catches dead
    workers on this host at once (a resumed sweep does not wait out the grace period).
    Returns the numbers of the failed trials.
    """
    import optuna
    from optuna.trial import TrialState

    host = socket.gethostname()
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.system_attrs.get(OWNER_ATTR, "")
        owner_host, _, pid = owner.rpartition(":")
        if owner_host != host or not pid.isdigit() or _pid_alive(int(pid)):
            continue
        try:
            if study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                failed.append(trial.number)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        study._storage.set_trial_user_attr(trial._trial_id, "fail_reason", f"worker {owner} died")
        retry = study._storage.get_heartbeat_stale_trial_callback() if hasattr(study._storage, "get_heartbeat_stale_trial_callback") else None
        if retry is not None:
            retry(study, study._storage.get_trial(trial._trial_id))
    optuna.storages.fail_stale_trials(study)
    return failed


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
