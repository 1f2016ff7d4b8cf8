"""Worker loops: claim a trial, train it, tell the study; the local worker processes that run them.

On the default engine (``engine="slots"``) a worker's loop is :func:`regsweep.slot_sweep.run_slots`
(trials as refillable slots of stacked graphs; the trainers live as long as the worker, which is
recycled only after ``recycle_after`` trials it had to train alone through ``model.fit``). On ``engine="keras"`` it loops: claim a trial if the study is short of its total (see
:mod:`regsweep.lifecycle`), train it with ``model.fit``, tell the study, until the study has its
total, a stop is asked or it is time to recycle the process.
``workers=1`` runs the loop in the calling process; more run in spawned processes that watch
their parent and stop when it dies. The Dask backend (:mod:`regsweep.backends`) runs the same
loop as Dask tasks.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import sys
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NoReturn

from regsweep.artifacts import wait_for_curves
from regsweep.lifecycle import (
    count_states, claim_trials, failures_in_a_row, running, set_user_attrs, tell_failure, tell_result,
    wait_for_trials_running_elsewhere,
)
from regsweep.runtime import main_script_hidden
from regsweep.settings import WorkerJob
from regsweep.space import SearchSpace
from regsweep.stopping import SignalState, StopRequest, TrialInterrupted, install_worker_handlers, interrupted
from regsweep.storage import load_study, redact_logs

if TYPE_CHECKING:
    import optuna

    from regsweep.data import Dataset
    from regsweep.progress import SweepProgress

_logger = logging.getLogger(__name__)

PROGRESS_SECONDS = 2.0  # how often the parent reads the study to refresh the progress display
HARD_STOP_SECONDS = 30.0  # after a second signal, workers that have not stopped by then are killed


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
def run_one_trial(study: optuna.Study, trial: optuna.Trial, job: WorkerJob, space: SearchSpace, dataset: Dataset,
                  stop: StopRequest) -> None:
    """Train one claimed trial and tell the study how it ended (COMPLETE, PRUNED or FAIL).

    A stop-now request abandons the training between two batches (never inside a storage
    call): the trial is failed, a retry with the same parameters is queued and
    :class:`~regsweep.stopping.TrialInterrupted` propagates.
    """
    import optuna

    from regsweep.objective import objective, record_worker_rss

    settings = job.settings
    with running(study, [trial]):
        try:
            try:
                value = objective(trial, space, dataset, seed=settings.seed, repeats=settings.repeats,
                                  keep_top=settings.keep_top, stop=stop)
            finally:
                record_worker_rss(trial)
        except optuna.TrialPruned:
            tell_result(study, trial, pruned=True)
        except (TrialInterrupted, KeyboardInterrupt):
            tell_failure(study, trial, "interrupted", retry=True)
            raise
        except optuna.exceptions.UpdateFinishedTrialError:
            raise  # another process ended the trial: `running` drops it
        except Exception as exc:  # a bad trial must not kill its worker or the sweep
            _logger.warning("trial %d failed: %s", trial.number, exc)
            tell_failure(study, trial, f"{type(exc).__name__}: {exc}")
        else:
            tell_result(study, trial, value)


def worker_loop(job: WorkerJob, stop: StopRequest | None = None, on_trial: Any = None) -> int:
    """Claim and run trials until the study has its total, ``stop`` asks to stop or it is time to recycle.

    Returns the number of trials this worker ran. Raises
    :class:`~regsweep.stopping.TrialInterrupted` after a stop-now request.
    """
    import optuna

    from regsweep.data import load_dataset
    from regsweep.runtime import setup_tensorflow, tensorflow_threads

    stop = stop if stop is not None else StopRequest()
    setup_tensorflow(job.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = SearchSpace.from_dict(job.space)
    dataset = load_dataset(job.data_source)
    study = load_study(job.storage_url, job.study_name)
    settings = job.settings
    seed = sampler_seed(settings.seed, job.index, len(study.get_trials(deepcopy=False)))
    study.sampler = make_sampler(settings.sampler, seed, parallel=job.parallel)
    study.pruner = make_pruner(settings.pruner, space.max_epochs)
    threads = tensorflow_threads()
    if settings.engine == "slots":
        from regsweep.slot_sweep import run_slots

        ran = run_slots(study, space, dataset, total=job.total, slots=settings.open_slots, seed=settings.seed,
                        repeats=settings.repeats,
                        keep_top=settings.keep_top, share=settings.workers, stop=stop,
                        max_failures_in_a_row=settings.max_failures_in_a_row, on_trial=on_trial,
                        trial_attrs={"tf_intra_op_threads": threads["intra_op"], "worker": job.index},
                        recycle_after=settings.recycle_after)
        stop.check_now()
        return ran
    ran = 0
    try:
        while ran < settings.recycle_after and not stop.stopping:
            if failures_in_a_row(study) >= settings.max_failures_in_a_row:
                break
            trials = claim_trials(study, job.total, share=settings.workers)
            if not trials:
                if wait_for_trials_running_elsewhere(study, job.total, stop):
                    continue
                break
            trial = trials[0]
            set_user_attrs(trial, {"tf_intra_op_threads": threads["intra_op"], "worker": job.index})
            run_one_trial(study, trial, job, space, dataset, stop)
            ran += 1
            if on_trial is not None:
                on_trial()
    finally:
        wait_for_curves()  # the learning curves drawn off the training loop are in the store
    stop.check_now()
    return ran


def worker_process_main(job: WorkerJob, soft_stop: Any) -> None:
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
    _exit_without_teardown()


def _exit_without_teardown() -> NoReturn:
    """End a worker that finished its loop (exit code 0) without the interpreter's teardown of
    TensorFlow's modules, which took 1.3-1.9 s that the parent waits out at the end of every
    sweep. Every storage call has committed by then; the logs and standard streams are flushed."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


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


def should_restart_worker(job: WorkerJob) -> bool:
    """A worker that exited cleanly while the study is short may have been recycled: restart it
    unless trials are failing in a row (then the sweep stops)."""
    study = load_study(job.storage_url, job.study_name, heartbeat=False)
    counts = count_states(study)
    return counts["finished"] + counts["RUNNING"] < job.total and failures_in_a_row(study) < job.settings.max_failures_in_a_row


# -- local worker processes ------------------------------------------------------------------------------
def run_in_process(job: WorkerJob, progress: SweepProgress) -> None:
    """``workers=1``: run the worker loop in this process; a second signal abandons the running trial."""
    stop = StopRequest()
    with SignalState(stop.request, lambda: stop.request(now=True)):
        try:
            while not stop.stopping:
                ran = worker_loop(job, stop, on_trial=progress.update)
                if job.settings.engine == "slots":  # it returns when no trial is left for it, or to be
                    if not should_restart_worker(job):  # recycled after recycle_after model.fit trials
                        break
                elif ran < job.settings.recycle_after:
                    break
        except TrialInterrupted:
            raise interrupted(job.study_name) from None
    if stop.stopping:
        raise interrupted(job.study_name)


def run_processes(job: WorkerJob, workers: int, progress: SweepProgress) -> None:
    """Keep ``workers`` spawned processes busy until the study is done or a signal stops it.

    First signal: the shared stop flag is set and workers take no new trial. Second signal:
    workers get SIGTERM and abandon their trial at the next safe point; any still alive
    ``HARD_STOP_SECONDS`` later is killed (its trial is failed and retried on resume). When a
    worker exits and the study has its total, the stop flag is set too, so that workers waiting
    for the last trials to finish elsewhere exit at once instead of at their next poll.
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
        worker_job = replace(job, index=job.index + index + 1000 * restarts)
        process = context.Process(target=worker_process_main, args=(worker_job, soft_stop),
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
                    # The study is done: wake the workers waiting for trials running elsewhere
                    # (lifecycle.wait_for_trials_running_elsewhere) now, not at their next poll.
                    soft_stop.set()
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


