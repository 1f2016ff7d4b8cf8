"""Running a sweep: exact totals, resume, worker processes, signals and progress.

The parent process creates (or reloads) the study, then runs W workers that share it
through its storage. Each worker loops: claim a trial if the study is short of its total,
train it, tell the study. Totals are kept in the storage, so running the same command
again after an interruption finishes only the missing trials.

Example:
    >>> from regsweep import SearchSpace, run_sweep
    >>> from regsweep.data import make_rings
    >>> study = run_sweep(SearchSpace(max_epochs=5), make_rings(200), study="demo", trials=4)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regsweep import __version__
from regsweep.errors import AllTrialsFailedError, SettingsError
from regsweep.runtime import main_script_hidden, usable_cores
from regsweep.space import SearchSpace
from regsweep.stopping import SignalState, StopRequest, TrialInterrupted, install_worker_handlers, interrupted
from regsweep.storage import (
    FAIL_REASON, OWNER_ATTR, check_sqlite_location, check_storage_url, check_study_name, check_writable_dir, count_states, count_trial_states,
    default_storage_url,
    fail_orphaned_trials, heartbeat, load_study, open_study, owner_tag, is_storage_failure, redact_logs, retry_later, study_dir, study_meta,
)

if TYPE_CHECKING:
    import optuna

    from regsweep.data import Dataset

_logger = logging.getLogger(__name__)

PRUNERS = ("none", "median", "hyperband")
PROGRESS_SECONDS = 2.0
SAMPLERS = ("tpe", "random", "nsga2")
BACKENDS = ("local", "dask")


@dataclass(frozen=True)
class SweepSettings:
    """How to run a sweep (what to search is the :class:`~regsweep.space.SearchSpace`).

    Args:
        study: study name. storage: Optuna storage URL (default ``sqlite:///studies/<study>.db``).
        trials: finished trials (complete + pruned) the study must end with, in total.
        workers: worker processes; each caps TensorFlow at ``cores // workers`` threads.
        seed: base seed of the samplers (each sampler start derives its own, see
            :func:`sampler_seed`) and of Keras (``seed + trial``).
        out: folder for plots and exports (default: ``studies/<study>/``).
        pruner: ``median`` (default), ``hyperband`` or ``none``.
        sampler: ``tpe`` (default, also for several objectives), ``random`` or ``nsga2`` (NSGA-II).
        objectives: what the study minimizes: ``("val_loss",)`` (default, one objective) or
            ``val_loss`` and any of ``n_params``, ``weight_l2``, ``train_seconds`` (a multi-objective
            study; see :mod:`regsweep.pareto`).
        recycle_after: a worker process is replaced after this many trials, which bounds the
            memory Keras leaks per ``fit`` (about 7 MB a trial); with ``workers=1`` the trials run
            in this process and are not recycled.
        max_failures_in_a_row: stop when this many trials fail one after another.
        progress: ``True`` a rich progress bar, ``False`` log lines, ``None`` (default) a bar on a
            terminal and log lines otherwise.
        repeats: train each configuration this many times (seeds differ); the value is the mean.
        keep_top: keep the trained models of this many best trials in the artifact store.
        backend: ``local`` (worker processes on this machine) or ``dask`` (worker loops as Dask tasks).
        scheduler: with ``dask``, the address ``tcp://HOST:PORT`` of a running scheduler
            (``None``: start a ``LocalCluster`` of ``workers`` processes).
        pack: trials trained together as one packed Keras graph per worker (an int >= 1, or
            ``"auto"``: by model size, see :func:`regsweep.packing.auto_pack_size`).
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
    pack: int | str = 1
    objectives: tuple[str, ...] = ("val_loss",)

    def __post_init__(self) -> None:
        check_study_name(self.study)
        if self.storage is not None:
            check_storage_url(self.storage)
        for name, low in (("trials", 1), ("workers", 1), ("recycle_after", 1), ("max_failures_in_a_row", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise SettingsError(f"{name}: got {value!r}; allowed: an int >= {low}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise SettingsError(f"seed: got {self.seed!r}; allowed: an int >= 0")
        if self.threads_per_worker is not None and (not isinstance(self.threads_per_worker, int) or self.threads_per_worker < 1):
            raise SettingsError(f"threads_per_worker: got {self.threads_per_worker!r}; allowed: an int >= 1")
        if self.pruner not in PRUNERS:
            raise SettingsError(f"pruner: got {self.pruner!r}; allowed: one of {PRUNERS}")
        if self.backend not in BACKENDS:
            raise SettingsError(f"backend: got {self.backend!r}; allowed: one of {BACKENDS}")
        if self.scheduler is not None:
            from regsweep.backends import check_scheduler_address

            check_scheduler_address(self.scheduler, self.backend)
        if self.sampler not in SAMPLERS:
            raise SettingsError(f"sampler: got {self.sampler!r}; allowed: one of {SAMPLERS}")
        for name, low in (("repeats", 1), ("keep_top", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise SettingsError(f"{name}: got {value!r}; allowed: an int >= {low}")
        from regsweep.packing import check_pack
        from regsweep.pareto import check_objectives

        object.__setattr__(self, "pack", check_pack(self.pack))
        object.__setattr__(self, "objectives", check_objectives(self.objectives))
        if len(self.objectives) > 1 and self.pruner == "hyperband":
            raise SettingsError("pruner: got 'hyperband' with several objectives; allowed: median (regsweep's "
                                "peer rule, see regsweep.pareto) or none")
        if self.out is not None:
            check_writable_dir(self.out, "out")

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


def default_workers() -> int:
    """One worker per usable core (CPU affinity and cgroup quotas respected)."""
    return usable_cores()


# -- samplers and pruners ---------------------------------------------------------------------------
def make_sampler(name: str, seed: int, *, parallel: bool = False) -> optuna.samplers.BaseSampler:
    """TPE (with the constant liar when workers run in parallel), random search or NSGA-II.

    TPE is also Optuna's default sampler for multi-objective studies.
    """
    import optuna

    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=8, constant_liar=parallel)


def sampler_seed(seed: int, worker: int, trials_so_far: int) -> int:
    """The seed of one sampler incarnation: distinct per (sweep seed, worker index, trials in the study).

    A worker that re-enters its loop (recycling, ``--workers 1`` every ``recycle_after``
    trials) or a resumed sweep sees more trials than before, so its sampler never replays an
    earlier incarnation's draws; an uninterrupted ``--workers 1 --seed S`` run stays reproducible.
    """
    import numpy as np

    return int(np.random.SeedSequence([seed, worker, trials_so_far]).generate_state(1)[0])


def make_pruner(name: str, max_epochs: int) -> optuna.pruners.BasePruner:
    """``median`` prunes a trial below the median after 5 complete trials and 3 epochs."""
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=3)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=2, max_resource=max_epochs)
    return optuna.pruners.NopPruner()


# -- the worker ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WorkerJob:
    """Everything a worker process needs, small and picklable (no arrays)."""

    storage_url: str
    study_name: str
    space: dict[str, Any]
    data_source: dict[str, Any]
    total: int
    seed: int
    sampler: str
    pruner: str
    threads: int | None
    index: int = 0
    parallel: bool = False
    recycle_after: int = 25
    max_failures_in_a_row: int = 10
    tf_threads_attr: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
    repeats: int = 1
    keep_top: int = 3
    pack: int = 1
    workers: int = 1


def failures_in_a_row(study: optuna.Study) -> int:
    """How many trials failed since the last finished one (interrupted and surplus ones excluded)."""
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False)
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
            and not t.user_attrs.get("not_counted")]
    done.sort(key=lambda t: t.datetime_complete or t.datetime_start)
    count = 0
    for trial in reversed(done):
        if trial.state != TrialState.FAIL:
            break
        count += 1
    return count


def claim_trials(study: optuna.Study, total: int, k: int = 1, *, share: int = 1) -> list[optuna.Trial]:
    """Ask for up to ``k`` trials if the study is short of ``total``; never overshoot.

    Dead workers' trials are failed first (and queued for retry). A trial asked by two
    workers racing for the last slot is told FAIL with ``not_counted`` and dropped. With
    ``share`` workers, a worker takes at most its share of the unfinished trials (so packs
    of ``k`` trials do not leave the other workers idle).
    """
    from optuna.trial import TrialState

    fail_orphaned_trials(study)
    counts = count_states(study)
    free = total - counts["finished"] - counts["RUNNING"]
    if share > 1:
        k = min(k, -(-(total - counts["finished"]) // share))
    claimed = []
    for _ in range(max(0, min(k, free))):
        trial = study.ask()
        study._storage.set_trial_system_attr(trial._trial_id, OWNER_ATTR, owner_tag())
        claimed.append(trial)
    if not claimed:
        return []
    trials = study.get_trials(deepcopy=False)
    finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    running = sorted(t.number for t in trials if t.state == TrialState.RUNNING)
    kept = []
    for trial in claimed:
        if finished + running.index(trial.number) < total:
            kept.append(trial)
        else:
            study._storage.set_trial_user_attr(trial._trial_id, "not_counted", True)
            study._storage.set_trial_user_attr(trial._trial_id, FAIL_REASON, "surplus: the study reached its total")
            study.tell(trial, state=TrialState.FAIL)
    return kept


def run_one_trial(study: optuna.Study, trial: optuna.Trial, job: WorkerJob, space: SearchSpace, dataset: Dataset,
                  stop: StopRequest) -> None:
    """Train one claimed trial and tell the study how it ended (COMPLETE, PRUNED or FAIL).

    A stop-now request abandons the training between two batches (never inside a storage
    call): the trial is failed, a retry with the same parameters is queued and
    :class:`~regsweep.stopping.TrialInterrupted` propagates.
    """
    import optuna

    with heartbeat(study, [trial._trial_id]):
        try:
            _train_and_tell(study, trial, job, space, dataset, stop)
        except optuna.exceptions.UpdateFinishedTrialError:
            _logger.warning("trial %d was ended by another process (it took this worker for dead); "
                            "its result is dropped and its retry runs elsewhere", trial.number)


def _train_and_tell(study: optuna.Study, trial: optuna.Trial, job: WorkerJob, space: SearchSpace, dataset: Dataset,
                    stop: StopRequest) -> None:
    import optuna
    from optuna.trial import TrialState

    from regsweep.objective import objective, record_worker_rss

    try:
        try:
            value = objective(trial, space, dataset, seed=job.seed, repeats=job.repeats, keep_top=job.keep_top,
                              stop=stop)
        finally:
            record_worker_rss(trial)
    except optuna.TrialPruned:
        study.tell(trial, state=TrialState.PRUNED)
    except (TrialInterrupted, KeyboardInterrupt):
        retry_later(study, trial, "interrupted")
        raise
    except optuna.exceptions.UpdateFinishedTrialError:
        raise
    except Exception as exc:  # a bad trial must not kill its worker or the sweep
        if FAIL_REASON not in trial.user_attrs:
            trial.set_user_attr(FAIL_REASON, f"{type(exc).__name__}: {exc}"[:500])
        _logger.warning("trial %d failed: %s", trial.number, exc)
        study.tell(trial, state=TrialState.FAIL)
    else:
        study.tell(trial, value)


def worker_loop(job: WorkerJob, stop: StopRequest | None = None, on_trial: Any = None) -> int:
    """Claim and run trials until the study has its total, ``stop`` asks to stop or it is time to recycle.

    Returns the number of trials this worker ran. Raises
    :class:`~regsweep.stopping.TrialInterrupted` after a stop-now request.
    """
    import optuna

    from regsweep.data import load_dataset
    from regsweep.objective import setup_tensorflow, tensorflow_threads

    stop = stop if stop is not None else StopRequest()
    setup_tensorflow(job.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = SearchSpace.from_dict(job.space)
    dataset = load_dataset(job.data_source)
    study = load_study(job.storage_url, job.study_name)
    seed = sampler_seed(job.seed, job.index, len(study.get_trials(deepcopy=False)))
    study.sampler = make_sampler(job.sampler, seed, parallel=job.parallel)
    study.pruner = make_pruner(job.pruner, space.max_epochs)
    threads = tensorflow_threads()
    ran = 0
    while ran < job.recycle_after and not stop.stopping:
        if failures_in_a_row(study) >= job.max_failures_in_a_row:
            break
        trials = claim_trials(study, job.total, job.pack, share=job.workers)
        if not trials:
            if _wait_for_trials_running_elsewhere(study, job.total, stop):
                continue
            break
        for trial in trials:
            if job.tf_threads_attr:
                trial.set_user_attr("tf_intra_op_threads", threads["intra_op"])
            trial.set_user_attr("worker", job.index)
        if job.pack > 1:
            from regsweep.packing import run_pack

            run_pack(study, trials, job, space, dataset, stop=stop)
        else:
            run_one_trial(study, trials[0], job, space, dataset, stop)
        ran += len(trials)
        if on_trial is not None:
            on_trial()
    stop.check_now()
    return ran


IDLE_POLL_SECONDS = 5.0


def _wait_for_trials_running_elsewhere(study: optuna.Study, total: int, stop: StopRequest) -> bool:
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


def _worker_process_main(job: WorkerJob, soft_stop: Any) -> None:
    """Entry point of a spawned worker: Ctrl-C is the parent's business, SIGTERM stops now (exit 143)."""
    stop = StopRequest(soft=soft_stop)
    install_worker_handlers(stop)
    _stop_when_orphaned(stop)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    redact_logs()
    try:
        worker_loop(job, stop)
    except TrialInterrupted:
        sys.exit(143)


def _stop_when_orphaned(stop: StopRequest) -> None:
    """Stop now if the parent process dies (even by SIGKILL): a worker must not outlive its sweep."""
    import threading

    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        stop.request(now=True)

    threading.Thread(target=watch, name="regsweep-parent-watch", daemon=True).start()


# -- progress --------------------------------------------------------------------------------------------
class SweepProgress:
    """Finished/total, best value, elapsed and ETA on stderr.

    ``enabled``: ``True`` a rich bar, ``False`` plain log lines (silenced by ``-q``), ``None``
    a rich bar on a terminal and log lines otherwise (as in CI).
    """

    def __init__(self, study: optuna.Study, total: int, enabled: bool | None) -> None:
        self.study, self.total = study, total
        self.started = time.monotonic()
        self.start_count = count_states(study)["finished"]
        self.last_line = -1
        self.bar = None
        if sys.stderr.isatty() if enabled is None else enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("best {task.fields[best]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                transient=False, console=Console(stderr=True))
            self.task = self.bar.add_task(study.study_name, total=total, completed=self.start_count, best="-")
            self.bar.start()

    def update(self) -> int:
        """Refresh the display; returns the finished count (the last one read if the storage is busy)."""
        try:
            trials = self.study.get_trials(deepcopy=False)
        except Exception as exc:  # a display refresh must not end the sweep; the next one tries again
            if not is_storage_failure(exc):
                raise
            _logger.debug("progress: could not read the study: %s", exc)
            return max(self.last_line, self.start_count)
        counts = count_trial_states(trials)
        done = counts["finished"]
        best = _best_value(trials)
        best_text = "-" if best is None else f"{best:.4f}"
        if self.bar is not None:
            self.bar.update(self.task, completed=done, best=best_text)
        elif done != self.last_line:
            elapsed = time.monotonic() - self.started
            new = done - self.start_count
            eta = elapsed / new * (self.total - done) if new > 0 else float("nan")
            _logger.info("%s: %d/%d finished (%d pruned, %d failed), best val_loss %s, elapsed %.0fs, eta %.0fs",
                         self.study.study_name, done, self.total, counts["PRUNED"], counts["FAIL"], best_text, elapsed, eta)
        self.last_line = done
        return done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _best_value(trials: list[optuna.trial.FrozenTrial]) -> float | None:
    """The lowest val_loss (the first objective) of the complete trials."""
    values = [t.values[0] for t in trials if t.state.name == "COMPLETE" and t.values]
    return min(values) if values else None


# -- the public verb ------------------------------------------------------------------------------------
def prepare_data_source(dataset: Dataset, out_dir: Path) -> dict[str, Any]:
    """The source a worker loads the data from; in-memory arrays are saved to ``out_dir/data.npz``."""
    if dataset.source is not None:
        return dataset.source
    out_dir.mkdir(parents=True, exist_ok=True)
    return dataset.save_npz(out_dir / "data.npz")  # with test rows, class names and preprocessing


def study_metadata(space: SearchSpace, dataset: Dataset, settings: SweepSettings, sweep: str | None) -> dict[str, Any]:
    """What the study records about itself (see :func:`regsweep.storage.study_meta`)."""
    return {
        "version": __version__, "sweep": sweep, "space": space.to_dict(), "data": dataset.describe(),
        "total": settings.trials, "seed": settings.seed, "pruner": settings.pruner, "sampler": settings.sampler,
        "repeats": settings.repeats, "keep_top": settings.keep_top, "objectives": list(settings.objectives),
    }


def run_sweep(space: SearchSpace, dataset: Dataset, *, sweep: str | None = None, **settings: Any) -> optuna.Study:
    """Run (or resume) a sweep until its study has ``trials`` finished trials in total.

    Args:
        space: what to search. dataset: the data to train on.
        sweep: the sweep's name, recorded in the study (e.g. ``rings``).
        **settings: the fields of :class:`SweepSettings` (study, storage, trials, workers, seed, ...).

    Returns:
        The Optuna study.

    Raises:
        RegsweepError: bad input (nothing is written), a study made with another space or data.
        SweepInterrupted: stopped by Ctrl-C/SIGTERM; run the same call again to resume.
        AllTrialsFailedError: trials kept failing and none finished.
    """
    if not isinstance(space, SearchSpace):
        raise SettingsError(f"space: got {type(space).__name__}; allowed: a regsweep.SearchSpace")
    from regsweep.data import Dataset

    if not isinstance(dataset, Dataset):
        raise SettingsError(f"dataset: got {type(dataset).__name__}; allowed: a regsweep Dataset")
    config = settings.pop("settings", None) or SweepSettings(**settings)
    if dataset.folds and config.repeats > 1:
        raise SettingsError(f"repeats: got {config.repeats} with {len(dataset.folds)} folds; allowed: 1 with folds "
                            "(each fold already trains the configuration once)")
    check_sqlite_location(config.storage_url)
    check_writable_dir(config.out_dir, "out")
    meta = study_metadata(space, dataset, config, sweep)
    study = open_study(config.storage_url, config.study, meta=meta, directions=["minimize"] * len(config.objectives))
    source = prepare_data_source(dataset, config.out_dir)
    if source != dataset.source:
        study.set_user_attr("regsweep", {**study_meta(study), "data_source": source})
    fail_orphaned_trials(study)
    pack = _pack_size(config, space, dataset)
    job = WorkerJob(
        storage_url=config.storage_url, study_name=config.study, space=space.to_dict(), data_source=source,
        total=config.trials, seed=config.seed, sampler=config.sampler, pruner=config.pruner,
        threads=config.threads, parallel=config.workers > 1 or pack > 1, recycle_after=config.recycle_after,
        max_failures_in_a_row=config.max_failures_in_a_row, repeats=config.repeats, keep_top=config.keep_top,
        pack=pack, workers=config.workers,
    )
    if count_states(study)["finished"] >= config.trials:
        _logger.info("study %s already has %d finished trials: nothing to do", config.study, config.trials)
        return _evaluate_top(study, dataset, config.keep_top)
    _run_backend(study, job, config)
    return _evaluate_top(_check_outcome(study, config.trials), dataset, config.keep_top)


def _evaluate_top(study: optuna.Study, dataset: Dataset, keep_top: int) -> optuna.Study:
    """The top-K saved models measured on the held-out test rows (see :mod:`regsweep.evaluation`)."""
    from regsweep.evaluation import evaluate_top
    from regsweep.objective import setup_tensorflow

    if dataset.has_test:
        setup_tensorflow()
        evaluate_top(study, dataset, k=keep_top)
    return study


def _pack_size(config: SweepSettings, space: SearchSpace, dataset: Dataset) -> int:
    """Trials per pack: ``config.pack`` resolved (``auto``, coupled options); 1 with ``repeats`` > 1."""
    from regsweep.packing import resolve_pack

    pack = resolve_pack(config.pack, space, dataset, trials=config.trials, workers=config.workers)
    if pack > 1 and config.repeats > 1:
        _logger.warning("packing disabled (--pack %s): repeats=%d trains each trial several times on its own",
                        config.pack, config.repeats)
        return 1
    if pack > 1 and dataset.folds:
        _logger.warning("packing disabled (--pack %s): cross-validation trains each trial on %d folds on its own",
                        config.pack, len(dataset.folds))
        return 1
    return pack


def _run_backend(study: optuna.Study, job: WorkerJob, config: SweepSettings) -> None:
    """Run the worker loops of ``job`` with the configured backend, showing progress."""
    progress = SweepProgress(study, job.total, config.progress)
    try:
        if config.backend == "dask":
            from regsweep.backends import run_dask

            run_dask(job, workers=config.workers, scheduler=config.scheduler, progress=progress)
        elif config.workers == 1:
            _run_in_process(job, progress)
        else:
            _run_processes(job, config.workers, progress)
    finally:
        progress.update()
        progress.close()


def _check_outcome(study: optuna.Study, total: int) -> optuna.Study:
    counts = count_states(study)
    if counts["finished"] == 0 and counts["FAIL"] > 0:
        reasons = sorted({str(t.user_attrs.get(FAIL_REASON, "unknown")) for t in study.get_trials(deepcopy=False)
                          if t.state.name == "FAIL"})
        raise AllTrialsFailedError(
            f"every trial failed ({counts['FAIL']} failed, none finished); reasons: {'; '.join(reasons)[:400]}"
        )
    if counts["finished"] < total:
        _logger.warning("study %s stopped at %d of %d finished trials (%d failed in a row); "
                        "run the same command again to resume", study.study_name, counts["finished"], total,
                        failures_in_a_row(study))
    return study


def _run_in_process(job: WorkerJob, progress: SweepProgress) -> None:
    """``workers=1``: run the worker loop in this process; a second signal abandons the running trial."""
    stop = StopRequest()
    with SignalState(stop.request, lambda: stop.request(now=True)):
        try:
            while not stop.stopping:
                ran = worker_loop(job, stop, on_trial=progress.update)
                if ran < job.recycle_after:
                    break
        except TrialInterrupted:
            raise interrupted(job.study_name) from None
    if stop.stopping:
        raise interrupted(job.study_name)


HARD_STOP_SECONDS = 30.0  # after a second signal, workers that have not stopped by then are killed


def _run_processes(job: WorkerJob, workers: int, progress: SweepProgress) -> None:
    """Keep ``workers`` spawned processes busy until the study is done or a signal stops it.

    First signal: the shared stop flag is set and workers take no new trial. Second signal:
    workers get SIGTERM and abandon their trial at the next safe point; any still alive
    ``HARD_STOP_SECONDS`` later is killed (its trial is failed and retried on resume).
    """
    context = multiprocessing.get_context("spawn")
    soft_stop = context.Event()
    processes: dict[int, Any] = {}
    restarts = 0
    hard_stop_at: list[float] = []

    def terminate_all() -> None:
        hard_stop_at.append(time.monotonic())
        for process in processes.values():
            if process.is_alive():
                process.terminate()

    def start(index: int) -> None:
        worker_job = WorkerJob(**{**asdict(job), "index": job.index + index + 1000 * restarts})
        process = context.Process(target=_worker_process_main, args=(worker_job, soft_stop),
                                  name=f"regsweep-worker-{index}", daemon=False)
        with main_script_hidden():
            process.start()
        processes[index] = process

    with SignalState(soft_stop.set, terminate_all) as signals:
        for index in range(workers):
            start(index)
        while processes:
            # Wake when a worker exits, else every PROGRESS_SECONDS to refresh the display: the
            # parent reads the whole study each time, so it must not poll faster than that.
            multiprocessing.connection.wait([p.sentinel for p in processes.values()], timeout=PROGRESS_SECONDS)
            if hard_stop_at and time.monotonic() - hard_stop_at[0] > HARD_STOP_SECONDS:
                for process in processes.values():
                    process.kill()
            for index, process in list(processes.items()):
                if process.is_alive():
                    continue
                process.join()
                del processes[index]
                if soft_stop.is_set():
                    continue
                if progress.update() >= job.total:
                    continue
                if process.exitcode == 0:
                    if should_restart_worker(job):
                        start(index)
                elif restarts < 3 * workers:
                    restarts += 1
                    _logger.warning("worker %d exited with code %s; starting a new one", index, process.exitcode)
                    start(index)
                else:
                    _logger.error("worker %d exited with code %s; too many worker crashes, not restarting",
                                  index, process.exitcode)
            progress.update()
        if signals.count:
            raise interrupted(job.study_name)


def should_restart_worker(job: WorkerJob) -> bool:
    """A worker that exited cleanly while the study is short may have been recycled: restart it
    unless trials are failing in a row (then the sweep stops)."""
    study = load_study(job.storage_url, job.study_name, heartbeat=False)
    counts = count_states(study)
    return counts["finished"] + counts["RUNNING"] < job.total and failures_in_a_row(study) < job.max_failures_in_a_row


def resume_sweep(*, study: str, storage: str | None = None, **settings: Any) -> optuna.Study:
    """Resume a stopped sweep from what its study recorded (space, data, total, seed)."""
    from regsweep.data import load_dataset

    url = storage or default_storage_url(study)
    existing = load_study(url, study, heartbeat=False)
    meta = study_meta(existing)
    if "space" not in meta:
        raise SettingsError(f"study: {study!r} was not made by regsweep (no recorded space); allowed: a regsweep study")
    source = meta.get("data_source") or meta["data"]["source"]
    space = SearchSpace.from_dict(meta["space"])
    dataset = load_dataset(source)
    defaults = {"trials": meta["total"], "seed": meta.get("seed", 0), "pruner": meta.get("pruner", "median"),
                "sampler": meta.get("sampler", "tpe"), "repeats": meta.get("repeats", 1),
                "keep_top": meta.get("keep_top", 3), "objectives": tuple(meta.get("objectives", ("val_loss",)))}
    return run_sweep(space, dataset, sweep=meta.get("sweep"), study=study, storage=storage, **{**defaults, **settings})


def join_sweep(*, study: str, storage: str | None = None, workers: int = 1, backend: str = "local",
               scheduler: str | None = None, progress: bool | None = None,
               threads_per_worker: int | None = None, wait: float = 0) -> optuna.Study:
    """Join an existing study as extra workers (e.g. from another host) until it reaches its total.

    Everything else (space, data, total, seed, sampler, pruner) comes from what the study
    recorded; nothing about the study is changed. Sampler seeds are offset per joining
    process, so hosts do not repeat each other's random trials. With ``wait`` > 0, wait up to
    that many seconds for the study to be created (workers may start before the sweep).

    Example:
        >>> join_sweep(study="rings", storage="postgresql://user:pw@db/sweeps", workers=4)  # doctest: +SKIP
    """
    config = SweepSettings(study=study, storage=storage, workers=workers, backend=backend, scheduler=scheduler,
                           progress=progress, threads_per_worker=threads_per_worker)
    existing = _wait_for_study(config.storage_url, study, wait)
    meta = study_meta(existing)
    if "space" not in meta or "total" not in meta:
        raise SettingsError(f"study: {study!r} was not made by regsweep (no recorded space); allowed: a regsweep study")
    job = WorkerJob(
        storage_url=config.storage_url, study_name=study, space=meta["space"],
        data_source=meta.get("data_source") or meta["data"]["source"], total=int(meta["total"]),
        seed=int(meta.get("seed", 0)), sampler=meta.get("sampler", "tpe"), pruner=meta.get("pruner", "median"),
        threads=config.threads, index=_join_index(), parallel=True, recycle_after=config.recycle_after,
        max_failures_in_a_row=config.max_failures_in_a_row, repeats=int(meta.get("repeats", 1)),
        keep_top=int(meta.get("keep_top", 3)),
    )
    if count_states(existing)["finished"] >= job.total:
        _logger.info("study %s already has its %d finished trials: nothing to do", study, job.total)
        return existing
    _run_backend(existing, job, config)
    return existing


def _wait_for_study(storage_url: str, study: str, wait: float) -> optuna.Study:
    """Load the study once it exists with regsweep's record, polling every second for ``wait`` seconds."""
    from regsweep.errors import StudyNotFoundError

    deadline = time.monotonic() + wait
    while True:
        try:
            existing = load_study(storage_url, study)
            if "total" in study_meta(existing) or time.monotonic() >= deadline:
                return existing
        except StudyNotFoundError:
            if time.monotonic() >= deadline:
                raise
        time.sleep(1.0)


def _join_index() -> int:
    """A worker index for a joining process, far from the creating host's 0, 1, 2, ..."""
    import zlib

    return 10_000 * (1 + zlib.crc32(owner_tag().encode()) % 100_000)

