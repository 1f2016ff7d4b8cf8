"""Running a sweep: create or reload the study, run its workers, resume, join, check the outcome.

The parent process creates (or reloads) the study, then runs W workers that share it
through its storage (:mod:`regsweep.workers` locally, :mod:`regsweep.backends` on Dask).
Each worker loops: claim a trial if the study is short of its total, train it, tell the
study. Totals are kept in the storage, so running the same command again after an
interruption finishes only the missing trials.

Example:
    >>> from regsweep import SearchSpace, run_sweep
    >>> from regsweep.data import make_rings
    >>> study = run_sweep(SearchSpace(max_epochs=5), make_rings(200), study="demo", trials=4)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regsweep import __version__
from regsweep.errors import AllTrialsFailedError, SettingsError
from regsweep.lifecycle import FAIL_REASON, count_states, fail_orphaned_trials, failures_in_a_row, owner_tag
from regsweep.progress import SweepProgress
from regsweep.settings import SweepSettings, WorkerJob
from regsweep.space import SearchSpace
from regsweep.storage import check_sqlite_location, check_writable_dir, load_study, open_study, study_meta
from regsweep.workers import run_in_process, run_processes

if TYPE_CHECKING:
    import optuna

    from regsweep.data import Dataset

_logger = logging.getLogger(__name__)


def prepare_data_source(dataset: Dataset, out_dir: Path) -> dict[str, Any]:
    """The source a worker loads the data from; in-memory arrays are saved to ``out_dir/data.npz``."""
    if dataset.source is not None:
        return dataset.source
    out_dir.mkdir(parents=True, exist_ok=True)
    return dataset.save_npz(out_dir / "data.npz")  # with test rows, class names and preprocessing


def study_metadata(space: SearchSpace, dataset: Dataset, settings: SweepSettings, sweep: str | None) -> dict[str, Any]:
    """What the study records about itself: its space, data and :meth:`SweepSettings.record`
    (see :func:`regsweep.storage.study_meta`)."""
    return {"version": __version__, "sweep": sweep, "space": space.to_dict(), "data": dataset.describe(),
            **settings.record()}


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
    job = WorkerJob(settings=config, space=space.to_dict(), data_source=source, threads=config.threads,
                    parallel=config.workers > 1 or (config.engine == "slots" and config.open_slots > 1))
    if count_states(study)["finished"] >= config.trials:
        _logger.info("study %s already has %d finished trials: nothing to do", config.study, config.trials)
        return _evaluate_top(study, dataset, config.keep_top)
    _run_backend(study, job, config)
    return _evaluate_top(_check_outcome(study, config.trials), dataset, config.keep_top)


def _evaluate_top(study: optuna.Study, dataset: Dataset, keep_top: int) -> optuna.Study:
    """The top-K saved models measured on the held-out test rows (see :mod:`regsweep.evaluation`)."""
    from regsweep.evaluation import evaluate_top
    from regsweep.runtime import setup_tensorflow

    if dataset.has_test:
        setup_tensorflow()
        evaluate_top(study, dataset, k=keep_top)
    return study


def _run_backend(study: optuna.Study, job: WorkerJob, config: SweepSettings) -> None:
    """Run the worker loops of ``job`` with the configured backend, showing progress."""
    progress = SweepProgress(study, job.total, config.progress)
    try:
        if config.backend == "dask":
            from regsweep.backends import run_dask

            run_dask(job, workers=config.workers, scheduler=config.scheduler, progress=progress)
        elif config.workers == 1:
            run_in_process(job, progress)
        else:
            run_processes(job, config.workers, progress)
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


def resume_sweep(*, study: str, storage: str | None = None, **settings: Any) -> optuna.Study:
    """Resume a stopped sweep from what its study recorded (space, data, total, seed)."""
    from regsweep.data import load_dataset

    base = SweepSettings(study=study, storage=storage)
    meta = _regsweep_record(load_study(base.storage_url, study, heartbeat=False))
    config = SweepSettings.from_record(meta, study=study, storage=storage, **settings)
    dataset = load_dataset(meta.get("data_source") or meta["data"]["source"])
    return run_sweep(SearchSpace.from_dict(meta["space"]), dataset, sweep=meta.get("sweep"), settings=config)


def _regsweep_record(study: optuna.Study) -> dict[str, Any]:
    """What regsweep recorded about ``study``; refuses studies made elsewhere."""
    meta = study_meta(study)
    if "space" not in meta or "total" not in meta:
        raise SettingsError(f"study: {study.study_name!r} was not made by regsweep (no recorded space); "
                            "allowed: a regsweep study")
    return meta


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
    given = {"study": study, "storage": storage, "workers": workers, "backend": backend, "scheduler": scheduler,
             "progress": progress, "threads_per_worker": threads_per_worker}
    base = SweepSettings(**given)  # bad input fails before waiting
    existing = _wait_for_study(base.storage_url, study, wait)
    meta = _regsweep_record(existing)
    config = SweepSettings.from_record(meta, **given)
    job = WorkerJob(settings=config, space=meta["space"], data_source=meta.get("data_source") or meta["data"]["source"],
                    threads=config.threads, index=_join_index(), parallel=True)
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


