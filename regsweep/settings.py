"""How a sweep runs, in one shape: :class:`SweepSettings`, what a study records of it, and :class:`WorkerJob`.

Each setting is declared once, as a field of :class:`SweepSettings`, and checked there. The
same object travels as JSON (:meth:`SweepSettings.to_dict` / :meth:`SweepSettings.from_dict`),
into the study's record (:meth:`SweepSettings.record` / :meth:`SweepSettings.from_record`, read
by ``resume`` and ``join``) and inside the :class:`WorkerJob` each worker gets.

Example:
    >>> settings = SweepSettings(study="rings", trials=40, workers=2)
    >>> SweepSettings.from_dict(settings.to_dict()) == settings
    True
    >>> settings.record()["total"]
    40
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from regsweep.errors import SettingsError
from regsweep.pareto import check_objectives
from regsweep.runtime import usable_cores
from regsweep.storage import check_storage_url, check_study_name, check_writable_dir, default_storage_url, study_dir

PRUNERS = ("none", "median", "hyperband")
SAMPLERS = ("tpe", "random", "nsga2")
BACKENDS = ("local", "dask")
ENGINES = ("keras", "slots")
MAX_SLOTS = 256
LEGACY_ENGINE = "keras"  # the engine of a study recorded before the engine was recorded
# Trials open at once on the slots engine when ``slots`` is not given: one worker keeps 4, W
# workers 4 // W each (at least 1). 4 per worker with two workers (8 open) gave worse bests than
# 2 each at the same speed (README, "The stacked-slot engine").
DEFAULT_OPEN_TRIALS = 4


def default_slots(workers: int) -> int:
    """The slots of each of ``workers`` workers when ``slots`` is not given (see :data:`DEFAULT_OPEN_TRIALS`)."""
    return max(1, DEFAULT_OPEN_TRIALS // max(1, workers))

# The settings a study records (field -> key in the study's ``regsweep`` attribute).
RECORDED = {"trials": "total", "seed": "seed", "pruner": "pruner", "sampler": "sampler", "repeats": "repeats",
            "keep_top": "keep_top", "objectives": "objectives", "artifacts": "artifacts", "engine": "engine",
            "slots": "slots"}
_ADDRESS = re.compile(r"^(tcp|tls|ucx|ws|wss)://[^\s:/]+:\d{1,5}$")


def check_scheduler_address(address: Any, backend: str = "dask") -> str:
    """A scheduler address is ``tcp://HOST:PORT`` (or tls/ucx/ws/wss) and needs ``backend='dask'``."""
    if backend != "dask":
        raise SettingsError(f"scheduler: got {address!r} with backend {backend!r}; allowed: only with backend "
                            "'dask' (--backend dask --scheduler tcp://HOST:PORT)")
    if not isinstance(address, str) or not _ADDRESS.match(address):
        raise SettingsError(f"scheduler: got {address!r}; allowed: an address like tcp://HOST:PORT, e.g. tcp://127.0.0.1:8786")
    return address


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise SettingsError(f"{name}: got {value!r}; allowed: an int >= {low}")


@dataclass(frozen=True)
class SweepSettings:
    """How to run a sweep (what to search is the :class:`~regsweep.space.SearchSpace`).

    Args:
        study: study name. storage: Optuna storage URL (default ``sqlite:///studies/<study>.db``).
        trials: finished trials (complete + pruned) the study must end with, in total.
        workers: worker processes; each caps TensorFlow at ``cores // workers`` threads.
        seed: base seed of the samplers (each sampler start derives its own, see
            :func:`regsweep.workers.sampler_seed`) and of Keras (``seed + trial``).
        out: folder for plots and exports (default: ``studies/<study>/``).
        pruner: ``median`` (default), ``hyperband`` or ``none``.
        sampler: ``tpe`` (default, also for several objectives), ``random`` or ``nsga2`` (NSGA-II).
        objectives: what the study minimizes: ``("val_loss",)`` (default, one objective) or
            ``val_loss`` and any of ``n_params``, ``weight_l2``, ``train_seconds`` (a multi-objective
            study; see :mod:`regsweep.pareto`).
        recycle_after: a worker process is replaced after this many trials on the Keras engine, or
            after this many trials the slots engine trained alone through ``model.fit`` (options no
            bucket serves), which bounds the memory Keras leaks per ``fit`` (about 7 MB a trial);
            with ``workers=1`` the trials run in this process and are not recycled.
        max_failures_in_a_row: stop when this many trials fail one after another.
        progress: ``True`` a rich progress bar, ``False`` log lines, ``None`` (default) a bar on a
            terminal and log lines otherwise.
        threads_per_worker: TensorFlow intra-op threads per worker (default: cores ÷ workers).
        repeats: train each configuration this many times (seeds differ); the value is the mean.
        keep_top: keep the trained models of this many best trials in the artifact store.
        backend: ``local`` (worker processes on this machine) or ``dask`` (worker loops as Dask tasks).
        scheduler: with ``dask``, the address ``tcp://HOST:PORT`` of a running scheduler
            (``None``: start a ``LocalCluster`` of ``workers`` processes).
        engine: ``slots`` (default): trials train as refillable slots of stacked graphs built
            once per worker (:mod:`regsweep.slot_sweep`, the engine of :mod:`regsweep.engine`);
            ``keras``: each trial is its own Keras model trained by ``model.fit``
            (``recycle_after`` applies). A study recorded before the engine was recorded resumes on
            ``keras``, the engine it ran on.
        slots: with ``engine="slots"`` only, the slots a worker trains at once, one per trial (one per
            repeat or fold with ``repeats`` or folds; ``None``: 4 with one worker, else
            4 // ``workers`` (at least 1), :func:`default_slots`; see :attr:`open_slots`).
        artifacts: folder of the study's artifact store (learning curves, kept models), shared by
            every worker, e.g. on a network file system when workers run on many hosts. Default
            ``None``: ``<study_dir>/artifacts`` next to the study. Recorded in the study (as an
            absolute path), so ``resume``, ``worker``, the review commands and the dashboard find it.
    """

    study: str = "sweep"
    storage: str | None = None
    trials: int = 30
    workers: int = 1
    seed: int = 0
    out: str | None = None
    pruner: str = "median"
    sampler: str = "tpe"
    recycle_after: int = 25
    max_failures_in_a_row: int = 10
    progress: bool | None = None
    threads_per_worker: int | None = None
    backend: str = "local"
    scheduler: str | None = None
    repeats: int = 1
    keep_top: int = 3
    objectives: tuple[str, ...] = ("val_loss",)
    artifacts: str | None = None
    engine: str = "slots"
    slots: int | None = None

    def __post_init__(self) -> None:
        check_study_name(self.study)
        if self.storage is not None:
            check_storage_url(self.storage)
        for name, low in (("trials", 1), ("workers", 1), ("recycle_after", 1), ("max_failures_in_a_row", 1),
                          ("seed", 0)):
            _check_int(name, getattr(self, name), low)
        if self.threads_per_worker is not None and (not isinstance(self.threads_per_worker, int) or self.threads_per_worker < 1):
            raise SettingsError(f"threads_per_worker: got {self.threads_per_worker!r}; allowed: an int >= 1")
        if self.pruner not in PRUNERS:
            raise SettingsError(f"pruner: got {self.pruner!r}; allowed: one of {PRUNERS}")
        if self.backend not in BACKENDS:
            raise SettingsError(f"backend: got {self.backend!r}; allowed: one of {BACKENDS}")
        if self.scheduler is not None:
            check_scheduler_address(self.scheduler, self.backend)
        if self.sampler not in SAMPLERS:
            raise SettingsError(f"sampler: got {self.sampler!r}; allowed: one of {SAMPLERS}")
        for name, low in (("repeats", 1), ("keep_top", 0)):
            _check_int(name, getattr(self, name), low)
        self._check_engine()
        object.__setattr__(self, "objectives", check_objectives(self.objectives))
        if len(self.objectives) > 1 and self.pruner == "hyperband":
            raise SettingsError("pruner: got 'hyperband' with several objectives; allowed: median (regsweep's "
                                "peer rule, see regsweep.pareto) or none")
        if self.out is not None:
            check_writable_dir(self.out, "out")
        if self.artifacts is not None:
            if not isinstance(self.artifacts, (str, Path)) or not str(self.artifacts).strip():
                raise SettingsError(f"artifacts: got {self.artifacts!r}; allowed: a folder path")
            object.__setattr__(self, "artifacts", str(check_writable_dir(self.artifacts, "artifacts").resolve()))

    def _check_engine(self) -> None:
        if self.engine not in ENGINES:
            raise SettingsError(f"engine: got {self.engine!r}; allowed: one of {ENGINES}")
        if self.slots is not None:
            if isinstance(self.slots, bool) or not isinstance(self.slots, int) or not 1 <= self.slots <= MAX_SLOTS:
                raise SettingsError(f"slots: got {self.slots!r}; allowed: an int in [1, {MAX_SLOTS}]")
            if self.engine != "slots":
                raise SettingsError(f"slots: got {self.slots!r} with engine {self.engine!r}; allowed: only with "
                                    "engine 'slots' (the Keras engine trains one trial at a time)")

    @property
    def open_slots(self) -> int:
        """The trials a worker keeps open at once on the slots engine (``slots`` or its default,
        :func:`default_slots` of ``workers``)."""
        return self.slots if self.slots is not None else default_slots(self.workers)

    @property
    def storage_url(self) -> str:
        return self.storage or default_storage_url(self.study)

    @property
    def out_dir(self) -> Path:
        return Path(self.out) if self.out else study_dir(self.storage_url, self.study)

    @property
    def threads(self) -> int:
        """TensorFlow intra-op threads per worker: the cores shared out among workers."""
        return self.threads_per_worker or max(1, usable_cores() // self.workers)

    # -- JSON ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Every setting as JSON values (``objectives`` a list); :meth:`from_dict` reads it back."""
        data = asdict(self)
        data["objectives"] = list(self.objectives)
        if data["out"] is not None:
            data["out"] = str(data["out"])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepSettings:
        """Settings from :meth:`to_dict`'s JSON (missing fields take their defaults).

        Raises:
            SettingsError: an unknown field, or a value its field does not allow (the message names the field).
        """
        if not isinstance(data, dict):
            raise SettingsError(f"settings: got {type(data).__name__}; allowed: a dict of setting names to values")
        names = [f.name for f in fields(cls)]
        for name in data:
            if name not in names:
                raise SettingsError(f"{name}: not a sweep setting; allowed: {', '.join(names)}")
        values = dict(data)
        if isinstance(values.get("objectives"), list):
            values["objectives"] = tuple(values["objectives"])
        return cls(**values)

    # -- the study's record -------------------------------------------------------------------------------
    def record(self) -> dict[str, Any]:
        """The settings a study records (``trials`` as ``total``), for ``resume`` and ``join``."""
        data = self.to_dict()
        # A study without --artifacts keeps whatever folder it recorded (or the default).
        return {key: data[name] for name, key in RECORDED.items() if not (name == "artifacts" and data[name] is None)}

    @classmethod
    def from_record(cls, meta: dict[str, Any], **overrides: Any) -> SweepSettings:
        """Settings from a study's record (see :meth:`record`), with ``overrides`` (study, storage,
        workers, ...) on top; settings the record lacks take their defaults. A recorded ``slots``
        is dropped when ``overrides`` switch the study to the Keras engine."""
        recorded = {name: meta[key] for name, key in RECORDED.items() if key in meta}
        recorded.setdefault("engine", LEGACY_ENGINE)
        if overrides.get("engine", recorded.get("engine")) != "slots":
            recorded.pop("slots", None)
        return cls.from_dict({**recorded, **overrides})


def given_settings(namespace: Any) -> dict[str, Any]:
    """The settings ``namespace`` gives (e.g. parsed CLI flags): its attributes named like a field
    of :class:`SweepSettings`, except those left at ``None`` (they take the field's default)."""
    return {f.name: getattr(namespace, f.name) for f in fields(SweepSettings)
            if getattr(namespace, f.name, None) is not None}


def default_workers() -> int:
    """One worker per usable core (CPU affinity and cgroup quotas respected)."""
    return usable_cores()


@dataclass(frozen=True)
class WorkerJob:
    """Everything a worker loop needs, small and picklable (no arrays).

    Args:
        settings: the sweep's settings (study, storage, total, seed, sampler, pruner, ...).
        space: the search space as :meth:`~regsweep.space.SearchSpace.to_dict`.
        data_source: where the worker loads the data from (see :func:`regsweep.data.load_dataset`).
        threads: TensorFlow intra-op threads of this worker's process.
        index: the worker's index (it seeds its samplers); distinct per worker and restart.
        parallel: other workers share the study (TPE then uses the constant liar).
    """

    settings: SweepSettings
    space: dict[str, Any]
    data_source: dict[str, Any]
    threads: int | None = None
    index: int = 0
    parallel: bool = False

    @property
    def storage_url(self) -> str:
        return self.settings.storage_url

    @property
    def study_name(self) -> str:
        return self.settings.study

    @property
    def total(self) -> int:
        return self.settings.trials
