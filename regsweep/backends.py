"""The Dask backend: the same worker loops, run as tasks on Dask workers.

``--backend dask`` alone starts a ``LocalCluster`` of ``--workers`` worker processes on
this machine; ``--backend dask --scheduler tcp://HOST:PORT`` uses a running cluster
(``dask scheduler`` plus ``dask worker`` processes on any hosts). Each Dask task runs
:func:`regsweep.workers.worker_loop` against the study's storage, so the storage must be
reachable from every worker: PostgreSQL for many hosts, SQLite only when all workers share
this machine's file system. Totals stay exact because workers claim trials through the
storage (see :func:`regsweep.lifecycle.claim_trials`), not through Dask.

Example:
    >>> from regsweep import SearchSpace, run_sweep
    >>> from regsweep.data import make_rings
    >>> run_sweep(SearchSpace(max_epochs=5), make_rings(200), study="demo", trials=8,
    ...           workers=2, backend="dask")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regsweep.errors import MissingDependencyError, RegsweepError
from regsweep.runtime import main_script_hidden, usable_cores
from regsweep.settings import WorkerJob
from regsweep.stopping import SignalState, StopRequest, TrialInterrupted, interrupted
from regsweep.storage import redact_logs, sqlite_path
from regsweep.workers import should_restart_worker, worker_loop

if TYPE_CHECKING:
    from regsweep.progress import SweepProgress

_logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10
WORKERS_TIMEOUT = 60
POLL_SECONDS = 1.0


class DaskBackendError(RegsweepError, RuntimeError):
    """The Dask cluster cannot run the sweep (unreachable scheduler, no workers, crashing tasks)."""


def import_distributed() -> Any:
    """``dask.distributed``, or :class:`MissingDependencyError` naming the extra to install."""
    try:
        import distributed
    except ImportError as exc:
        raise MissingDependencyError(
            "backend: 'dask' needs dask.distributed, which is not installed; install it with: pip install 'regsweep[dask]'"
        ) from exc
    return distributed


def shared_storage_url(url: str) -> str:
    """The storage URL as workers elsewhere must see it: a relative SQLite path made absolute."""
    path = sqlite_path(url)
    if path is None or path.is_absolute():
        return url
    query = url.split("?", 1)[1] if "?" in url else ""
    return f"sqlite:///{Path(path).resolve()}" + (f"?{query}" if query else "")


# -- TensorFlow threads on Dask workers -------------------------------------------------------------------
def processes_per_host(workers: dict[str, Any]) -> dict[str, int]:
    """For each Dask worker (address -> its ``scheduler_info()["workers"]`` entry), how many
    worker processes share its host (``dask worker --nworkers N`` starts N on one host)."""
    hosts = Counter(info.get("host") for info in workers.values())
    return {address: hosts[info.get("host")] for address, info in workers.items()}


def dask_tf_threads(cores: int, processes_on_host: int) -> int:
    """TensorFlow intra-op threads of one Dask worker process: its host's cores shared out among
    the worker processes on that host. TensorFlow's thread pool belongs to the process, so the
    Dask threads of one process share it: ``--nworkers 4 --nthreads 1`` on 8 cores gives 2 each."""
    return max(1, cores // max(1, processes_on_host))


def worker_tf_threads(processes_on_hosts: dict[str, int]) -> int:
    """On a Dask worker: its TensorFlow threads, from :func:`processes_per_host` as the parent saw it
    (a worker the parent did not see counts as alone on its host)."""
    from distributed import get_worker

    return dask_tf_threads(usable_cores(), processes_on_hosts.get(get_worker().address, 1))


# -- on the Dask worker ------------------------------------------------------------------------------
def dask_worker_loop(job: WorkerJob, stop_name: str, processes_on_hosts: dict[str, int] | None = None) -> int:
    """The Dask task: run :func:`~regsweep.workers.worker_loop` until the study has its total.

    ``stop_name`` names two ``distributed.Event``s the parent sets: ``stop_name`` to stop
    handing out trials, ``stop_name + "-now"`` to abandon the running trial (a watcher thread
    turns it into this task's stop-now flag, checked between batches). With
    ``processes_on_hosts`` (see :func:`processes_per_host`), TensorFlow gets this machine's cores
    divided by the Dask worker processes on this host (:func:`dask_tf_threads`). Returns the
    number of trials this task ran (0 if it was stopped now).
    """
    from distributed import Event

    redact_logs("distributed")  # the Dask worker's log handlers never show a storage password

    if processes_on_hosts is not None:
        job = replace(job, threads=worker_tf_threads(processes_on_hosts))
    stop = StopRequest(soft=Event(stop_name))
    done = threading.Event()

    def watch_stop_now() -> None:
        now = Event(stop_name + "-now")
        while not done.is_set():
            if now.wait(timeout=POLL_SECONDS):
                stop.request(now=True)
                return

    watcher = threading.Thread(target=watch_stop_now, name="regsweep-dask-stop-watch", daemon=True)
    watcher.start()
    try:
        return worker_loop(job, stop)
    except TrialInterrupted:
        return 0
    finally:
        done.set()


# -- in the parent --------------------------------------------------------------------------------------
@contextlib.contextmanager
def dask_client(scheduler: str | None, workers: int) -> Iterator[Any]:
    """A client of the cluster at ``scheduler``, or of a new ``LocalCluster`` of ``workers`` processes."""
    distributed = import_distributed()
    logging.getLogger("distributed").setLevel(logging.WARNING)  # its INFO lines would drown the sweep's
    if scheduler is None:
        with main_script_hidden():  # its worker processes must not re-import the user's script either
            cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                               host="127.0.0.1", dashboard_address=None, memory_limit=0,
                                               silence_logs=logging.WARNING)
        client = distributed.Client(cluster)
        _logger.info("dask: started a LocalCluster of %d worker processes at %s", workers, cluster.scheduler_address)
        try:
            yield client
        finally:
            client.close()
            cluster.close()
        return
    try:
        client = distributed.Client(scheduler, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        raise DaskBackendError(f"scheduler: cannot connect to {scheduler!r} within {CONNECT_TIMEOUT}s ({exc}); "
                               "allowed: the address of a running dask scheduler") from exc
    try:
        try:
            client.wait_for_workers(1, timeout=WORKERS_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise DaskBackendError(f"scheduler: {scheduler!r} has no workers after {WORKERS_TIMEOUT}s; "
                                   "start some with: dask worker " + scheduler) from exc
        yield client
    finally:
        client.close()


def run_dask(job: WorkerJob, *, workers: int, scheduler: str | None, progress: SweepProgress) -> None:
    """Run the sweep's worker loops as Dask tasks until the study has ``job.total`` finished trials.

    With a LocalCluster, ``workers`` loops run (one per worker process); with a scheduler, one
    loop per Dask worker thread (start workers with ``--nthreads 1`` for one trial per process).
    """
    if scheduler is not None and sqlite_path(job.storage_url) is not None:
        _logger.warning("dask: the study is in SQLite; this works only if every Dask worker shares this "
                        "machine's file system (use PostgreSQL for workers on other hosts)")
    settings = replace(job.settings, storage=shared_storage_url(job.storage_url))
    job = replace(job, settings=settings, parallel=True)
    with dask_client(scheduler, workers) as client:
        loops = workers if scheduler is None else max(1, sum(client.nthreads().values()))
        _logger.info("dask: running %d worker loops for study %s", loops, job.study_name)
        _TaskPool(client, job, threads_from_worker=scheduler is not None).run(loops, progress)


class _TaskPool:
    """Keeps ``loops`` worker-loop tasks going on the cluster; restarts recycled and crashed ones."""

    def __init__(self, client: Any, job: WorkerJob, *, threads_from_worker: bool) -> None:
        self.distributed = import_distributed()
        self.client, self.job, self.threads_from_worker = client, job, threads_from_worker
        self.stop = self.distributed.Event(f"regsweep-stop-{uuid.uuid4().hex}", client=client)
        self.stop_now = self.distributed.Event(self.stop.name + "-now", client=client)
        self.submitted = 0
        self.crashes = 0

    def submit(self) -> Any:
        worker_job = replace(self.job, index=self.job.index + self.submitted)
        self.submitted += 1
        hosts = processes_per_host(self.client.scheduler_info()["workers"]) if self.threads_from_worker else None
        return self.client.submit(dask_worker_loop, worker_job, self.stop.name, hosts,
                                  key=f"regsweep-{self.job.study_name}-{uuid.uuid4().hex[:12]}", pure=False)

    def run(self, loops: int, progress: SweepProgress) -> None:
        """First signal: tasks take no new trial. Second: tasks abandon their trial between batches
        (failed and queued for retry); the parent waits for them, then cancels what is left."""
        asked, now = threading.Event(), threading.Event()
        futures = [self.submit() for _ in range(loops)]
        with SignalState(asked.set, now.set) as signals:
            try:
                while futures:
                    self._wait(futures)
                    if asked.is_set() and not self.stop.is_set():
                        self.stop.set()
                    if now.is_set() and not self.stop_now.is_set():
                        self.stop_now.set()
                    futures = self._collect(futures, loops, progress, stopping=asked.is_set())
            except BaseException:  # a hopeless task error, KeyboardInterrupt
                self.stop.set()
                self.stop_now.set()
                self.client.cancel(futures, force=True)
                raise
        if signals.count:
            raise interrupted(self.job.study_name)

    def _wait(self, futures: list[Any]) -> None:
        try:
            self.distributed.wait(futures, timeout=POLL_SECONDS, return_when="FIRST_COMPLETED")
        except TimeoutError:
            pass

    def _collect(self, futures: list[Any], loops: int, progress: SweepProgress, *, stopping: bool) -> list[Any]:
        """Drop finished tasks; start new ones while the study is short of its total."""
        running = [f for f in futures if not f.done()]
        for future in (f for f in futures if f.done()):
            if future.status != "finished":
                self._crashed(future, loops)
            if stopping or progress.update() >= self.job.total:
                continue
            if future.status != "finished" or should_restart_worker(self.job):
                running.append(self.submit())
        progress.update()
        return running

    def _crashed(self, future: Any, loops: int) -> None:
        try:
            exc = future.exception()
        except BaseException as cancelled:  # a cancelled future (its worker was lost) has no exception
            exc = cancelled
        if isinstance(exc, RegsweepError):  # e.g. the data cannot be loaded on the worker: retrying will not help
            raise exc
        self.crashes += 1
        _logger.warning("dask: a worker task failed (%s: %s)", type(exc).__name__, exc)
        if self.crashes > 3 * loops:
            raise DaskBackendError(f"dask: {self.crashes} worker tasks failed, the last with {type(exc).__name__}: "
                                   f"{exc}; not restarting them")
