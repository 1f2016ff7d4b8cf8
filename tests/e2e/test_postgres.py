"""Studies in a real PostgreSQL server (a throwaway cluster on 127.0.0.1, see tests/pg.py):
exact totals with parallel workers, a second "host" joining, reports, dashboard and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from dashboard_process import start_dashboard
from sweep_process import TINY_SWEEP


def regsweep_cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "regsweep.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def owner_pids(study) -> set[int]:
    """The pids of the processes that ran the study's counted trials."""
    return {int(t.system_attrs["regsweep_owner"].rsplit(":", 1)[1]) for t in study.trials
            if not t.user_attrs.get("not_counted")}


@pytest.fixture(scope="module")
def pg_study(postgres_server, tmp_path_factory):
    """A 6-trial sweep run with 2 worker processes into a fresh PostgreSQL database."""
    from regsweep import SearchSpace, run_sweep
    from regsweep.data import make_rings

    out = tmp_path_factory.mktemp("pg_sweep")
    url = postgres_server.create_database("two_workers")
    space = SearchSpace(depth=(1, 2), width=(2, 8), patience=(1, 2), max_epochs=3, batch_size=32)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(out)  # artifacts of a PostgreSQL study go to studies/<study>/ under the working directory
        study = run_sweep(space, make_rings(n=120, seed=0), sweep="tiny", study="pg2", storage=url, trials=6,
                          workers=2, out=str(out), progress=False, keep_top=0)
    return url, study, out


@pytest.mark.slow
@pytest.mark.postgres
def test_two_workers_reach_exactly_the_total(pg_study):
    from regsweep.storage import count_states, load_study, study_meta

    url, _, _ = pg_study
    study = load_study(url, "pg2", heartbeat=False)  # read back through a new connection
    counts = count_states(study)
    assert counts["finished"] == 6
    assert counts["RUNNING"] == 0 and counts["WAITING"] == 0
    assert study_meta(study)["total"] == 6
    assert all("val_loss" in t.user_attrs for t in study.trials if t.state.name == "COMPLETE")


@pytest.mark.slow
@pytest.mark.postgres
def test_status_leaderboard_and_plot_read_postgres(pg_study, tmp_path):
    url, _, _ = pg_study
    status = regsweep_cli("status", "--storage", url, "--study", "pg2", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert "finished: 6 of 6" in status.stdout
    assert "s3cret-Pw" not in status.stdout and "***" in status.stdout

    board = regsweep_cli("leaderboard", "--storage", url, "--study", "pg2", "--format", "json", cwd=tmp_path)
    assert board.returncode == 0, board.stderr
    rows = json.loads(board.stdout)
    assert len(rows) == 6
    assert [r["val_loss"] for r in rows if r.get("state", "COMPLETE") == "COMPLETE"] == \
        sorted(r["val_loss"] for r in rows if r.get("state", "COMPLETE") == "COMPLETE")

    plots = regsweep_cli("plot", "--storage", url, "--study", "pg2", "--out", str(tmp_path / "plots"), cwd=tmp_path)
    assert plots.returncode == 0, plots.stderr
    written = [Path(line) for line in plots.stdout.split()]
    assert written and all(p.is_file() and p.stat().st_size > 1000 for p in written)


@pytest.mark.slow
@pytest.mark.postgres
def test_regsweep_dashboard_serves_the_postgres_study(pg_study, tmp_path):
    import urllib.request

    url, study, _ = pg_study
    process, base, page = start_dashboard("pg2", url, tmp_path)
    try:
        with urllib.request.urlopen(f"{base}/api/studies", timeout=30) as response:
            studies = json.load(response)["study_summaries"]
        study_id = studies[0]["study_id"]
        with urllib.request.urlopen(f"{base}/api/studies/{study_id}", timeout=30) as response:
            detail = json.load(response)
    finally:
        process.kill()
        out, err = process.communicate(timeout=30)
    assert [s["study_name"] for s in studies] == ["pg2"] and page.endswith(f"/dashboard/studies/{study_id}")
    assert sorted(t["number"] for t in detail["trials"]) == sorted(t.number for t in study.trials)
    assert "s3cret-Pw" not in out + err  # the printed URL and logs never show the database password


@pytest.mark.slow
@pytest.mark.postgres
def test_second_host_joins_a_running_study_and_the_total_stays_exact(postgres_url, tmp_path):
    """Host A creates the study and runs it; host B (another process) joins with `regsweep worker`."""
    from regsweep.storage import count_states, load_study

    sweep = tmp_path / "tiny.py"
    sweep.write_text(TINY_SWEEP)
    common = ["--storage", postgres_url, "--study", "joined"]
    hosts = {}
    for name, args in (("a", ["run", str(sweep), *common, "--trials", "10", "--workers", "1", "--keep-top", "0",
                              "--no-plots", "--no-progress"]),
                       ("b", ["worker", *common, "--wait", "120"])):
        hosts[name] = subprocess.Popen([sys.executable, "-m", "regsweep.cli", *args], cwd=tmp_path, text=True,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    outputs = {name: process.communicate(timeout=600) for name, process in hosts.items()}
    assert hosts["a"].returncode == 0, outputs["a"][1]
    assert hosts["b"].returncode == 0, outputs["b"][1]
    assert " of 10 finished" in outputs["b"][0]  # B stops when no trial is left to claim (A may still run one)
    study = load_study(postgres_url, "joined", heartbeat=False)
    counts = count_states(study)
    assert counts["finished"] == 10
    assert counts["RUNNING"] == 0
    # Both hosts took part (B joined and watched the study to its end); which host trained which
    # trial, and whether B got one at all, depends on timing: assert only that no one else did.
    assert owner_pids(study) and owner_pids(study) <= {hosts["a"].pid, hosts["b"].pid}


@pytest.mark.postgres
def test_wrong_password_is_one_line_without_the_password(postgres_server, tmp_path):
    url = postgres_server.url(password="Wr0ngSecret")
    result = regsweep_cli("status", "--storage", url, "--study", "x", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "password authentication failed" in lines[0]
    assert "Wr0ngSecret" not in result.stderr + result.stdout


@pytest.mark.postgres
def test_worker_for_a_missing_study_names_it(postgres_url, tmp_path):
    result = regsweep_cli("worker", "--storage", postgres_url, "--study", "nope", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "no study named 'nope'" in result.stderr and "s3cret-Pw" not in result.stderr


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("url, expected", [
    ("postgresql://someone:TopSecret9@127.0.0.1:{port}/sweeps", "Connection refused"),
    ("postgres://someone:TopSecret9@127.0.0.1:{port}/sweeps", "Connection refused"),
    ("postgresql://someone:TopSecret9@127.0.0.1:notaport/sweeps", "cannot open"),
])
def test_down_server_or_bad_url_is_one_line_without_the_password(url, expected, tmp_path):
    result = regsweep_cli("status", "--storage", url.format(port=_free_port()), "--study", "s", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("regsweep: error: storage: cannot open")
    assert expected in result.stderr
    assert "TopSecret9" not in result.stderr + result.stdout
    assert not list(tmp_path.iterdir())  # nothing written


def test_missing_driver_names_the_package_to_install(tmp_path):
    import importlib.util

    if importlib.util.find_spec("psycopg") is not None:
        pytest.skip("psycopg (3) is installed, so its driver is not missing")
    result = regsweep_cli("status", "--storage", "postgresql+psycopg://u:TopSecret9@127.0.0.1:1/db", "--study", "s",
                          cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "not installed (psycopg)" in result.stderr and "pip install" in result.stderr
    assert "TopSecret9" not in result.stderr
