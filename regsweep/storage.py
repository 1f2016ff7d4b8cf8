"""Where studies live: storage URLs, SQLite defaults, redaction, open/create, failure descriptions.

The study is the single source of truth: its user attribute ``regsweep`` records the
search space, the data description and the target total, so later commands need only
``--storage`` and ``--study``. A trial's life inside a study (claim, heartbeat, retry, tell)
belongs to :mod:`regsweep.lifecycle`.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regsweep.errors import MissingDependencyError, StorageError, StudyMismatchError, StudyNotFoundError
from regsweep.lifecycle import GRACE_PERIOD, HEARTBEAT_INTERVAL, LOCK_WAIT_SECONDS, RetryStaleTrial
from regsweep.lifecycle import count_states, count_trial_states  # noqa: F401  (re-exported: readers count states)

if TYPE_CHECKING:
    import optuna

_logger = logging.getLogger(__name__)

DEFAULT_ROOT = Path("studies")
STUDY_ATTR = "regsweep"
SQLITE_BUSY_TIMEOUT = LOCK_WAIT_SECONDS  # the heartbeat grace period outlasts it (see regsweep.lifecycle)
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
    """Make every transaction on a SQLite engine ``BEGIN IMMEDIATE``, except those of the
    storage's read-only calls (:func:`_sqlite_storage_class`), which begin ``DEFERRED``.

    pysqlite begins transactions lazily (DEFERRED): when two processes both read and then
    write in one transaction, as Optuna's attribute setters do, SQLite refuses one of them at
    once with "database is locked" instead of waiting out the busy timeout. Taking the write
    lock at BEGIN makes the second one wait (SQLAlchemy's documented recipe for pysqlite).
    A transaction that never writes cannot be caught that way, and taking the write lock for it
    made every read of the study wait for the other workers' writes and their fsyncs: with two
    workers, each spent about 9 s of a 58 s benchmark sweep waiting at BEGIN.
    """
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN" if getattr(_reading, "only", False) else "BEGIN IMMEDIATE")

    engine.dispose()  # connections opened before the listeners existed would still begin lazily


# RDBStorage's calls that only read (Optuna >=4.9,<6); on SQLite their transactions begin DEFERRED.
_READ_ONLY_CALLS = (
    "get_study_id_from_name", "get_study_name_from_id", "get_study_directions", "get_study_user_attrs",
    "get_study_system_attrs", "get_trial_user_attrs", "get_trial_system_attrs", "get_all_studies", "get_trial_param",
    "get_trial_id_from_study_id_trial_number", "get_trial", "_get_trials", "_get_best_trial_id",
)
_reading = threading.local()  # .only: this thread is inside a read-only call


@functools.cache
def _sqlite_storage_class() -> type:
    """``RDBStorage`` whose read-only calls (:data:`_READ_ONLY_CALLS`) mark this thread while they
    run, so that :func:`_begin_immediate` begins their transactions ``DEFERRED`` (built once, on
    first use, so that importing this module does not import Optuna)."""
    import optuna

    def read_only(call: Any) -> Any:
        @functools.wraps(call)
        def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
            outer = getattr(_reading, "only", False)
            _reading.only = True
            try:
                return call(self, *args, **kwargs)
            finally:
                _reading.only = outer
        return wrapped

    base = optuna.storages.RDBStorage
    calls = {name: read_only(getattr(base, name)) for name in _READ_ONLY_CALLS if hasattr(base, name)}
    return type("SQLiteStorage", (base,), {**calls, "__doc__": _sqlite_storage_class.__doc__})


def _rdb_storage(url: str, engine_kwargs: dict[str, Any], kwargs: dict[str, Any]) -> optuna.storages.RDBStorage:
    """``RDBStorage(url)``, retried when another process creates Optuna's tables at the same moment
    (PostgreSQL then reports a duplicate key or an existing relation to the loser of the race)."""
    import optuna

    storage_class = _sqlite_storage_class() if url.startswith("sqlite") else optuna.storages.RDBStorage
    for attempt in range(5):
        try:
            return storage_class(url, engine_kwargs=engine_kwargs, **kwargs)
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
    old_folder, new_folder = existing.get("artifacts"), wanted.get("artifacts")
    if new_folder is not None and old_folder != new_folder and existing:
        raise StudyMismatchError(
            f"artifacts: study {study_name!r} keeps its artifacts in {old_folder or 'the default folder next to it'!r}, "
            f"got {new_folder!r}; allowed: the same folder, or no --artifacts (nothing was changed)"
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
