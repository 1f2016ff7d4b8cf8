"""The Dask backend with real clusters: a LocalCluster started by regsweep, and a `dask scheduler`
plus two `dask worker` processes on 127.0.0.1 that a sweep joins with --scheduler."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest
from sweep_process import TINY_SWEEP

pytest.importorskip("distributed", reason="the Dask tests need dask.distributed (pip install 'regsweep[dask]')")


def owner_pids(study) -> set[int]:
    """The pids of the processes that ran the study's counted trials."""
    return {int(t.system_attrs["regsweep_owner"].rsplit(":", 1)[1]) for t in study.trials
            if not t.user_attrs.get("not_counted")}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(process: subprocess.Popen) -> None:
    """Stop a process started in its own session, with its children (the workers' nanny processes)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """`dask scheduler` and `dask worker --nworkers 2 --nthreads 1` on 127.0.0.1; yields (address, worker pids)."""
    from distributed import Client

    cwd = tmp_path_factory.mktemp("dask")
    address = f"tcp://127.0.0.1:{_free_port()}"
    common = {"cwd": cwd, "stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL,
              "stderr": subprocess.DEVNULL, "start_new_session": True}
    scheduler = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                  "--port", address.rsplit(":", 1)[1], "--no-dashboard"], **common)
    workers = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nworkers", "2",
                                "--nthreads", "1", "--no-dashboard", "--memory-limit", "0"], **common)
    try:
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
            pids = set(client.run(os.getpid).values())
        yield address, pids
    finally:
        _stop(workers)
        _stop(scheduler)


@pytest.mark.slow
def test_local_cluster_of_two_worker_processes_finishes_exactly_n(tiny_space, tiny_rings, tmp_path, monkeypatch):
    from regsweep import run_sweep
    from regsweep.storage import count_states

    monkeypatch.chdir(tmp_path)
    study = run_sweep(tiny_space, tiny_rings, study="local_dask", storage=f"sqlite:///{tmp_path / 'dask.db'}",
                      trials=6, workers=2, backend="dask", progress=False, keep_top=0)
    counts = count_states(study)
    assert counts["finished"] == 6
    assert counts["RUNNING"] == 0
    pids = owner_pids(study)
    # Trained in the cluster's worker processes, never in this one (which of the two is up to timing).
    assert 1 <= len(pids) <= 2 and os.getpid() not in pids


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_sweep_on_a_running_scheduler_finishes_exactly_n(storage, dask_cluster, tmp_path, request):
    from regsweep.storage import count_states, load_study

    address, worker_pids = dask_cluster
    url = request.getfixturevalue("postgres_url") if storage == "postgres" else "sqlite:///dask.db"
    sweep = tmp_path / "tiny.py"
    sweep.write_text(TINY_SWEEP)
    result = subprocess.run([sys.executable, str(sweep), "--backend", "dask", "--scheduler", address,
                             "--storage", url, "--study", "on_cluster", "--trials", "6", "--keep-top", "0",
                             "--no-plots", "--no-progress"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=600, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert "6 finished trials" in result.stdout
    study = load_study(url if storage == "postgres" else f"sqlite:///{tmp_path / 'dask.db'}", "on_cluster",
                       heartbeat=False)
    counts = count_states(study)
    assert counts["finished"] == 6
    assert counts["RUNNING"] == 0
    # Trained by the Dask worker processes (one or both, as timing has it), never by the sweep process.
    assert owner_pids(study) and owner_pids(study) <= worker_pids


def test_scheduler_needs_the_dask_backend(tmp_path):
    result = subprocess.run([sys.executable, "-m", "regsweep.cli", "worker", "--study", "s", "--scheduler",
                             "tcp://127.0.0.1:8786"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "scheduler" in result.stderr and "--backend dask" in result.stderr


@pytest.mark.parametrize("address", ["127.0.0.1:8786", "tcp://127.0.0.1", "http://127.0.0.1:8786"])
def test_bad_scheduler_address_is_refused_before_anything_runs(address, tmp_path):
    from regsweep.errors import SettingsError
    from regsweep.runner import SweepSettings

    with pytest.raises(SettingsError, match="scheduler: got .*tcp://HOST:PORT"):
        SweepSettings(study="s", backend="dask", scheduler=address)


def test_unreachable_scheduler_is_one_line(tmp_path):
    address = f"tcp://127.0.0.1:{_free_port()}"
    sweep = tmp_path / "tiny.py"
    sweep.write_text(TINY_SWEEP)
    result = subprocess.run([sys.executable, str(sweep), "--backend", "dask", "--scheduler", address,
                             "--storage", "sqlite:///s.db", "--trials", "2", "--no-plots", "--no-progress"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"regsweep: error: scheduler: cannot connect to '{address}'")
    assert "Traceback" not in result.stderr
