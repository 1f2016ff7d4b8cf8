"""SIGKILL mid-trial, then resume: exactly N finished, the killed trial retried with its parameters.

Real processes, real signals, real SQLite files: a tiny sweep file in ``tmp_path`` is run with
``python``; the test polls the study file (bounded, with a deadline) until a trial is RUNNING,
then kills. No sleeps as synchronisation.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

# Trials last a few seconds (30 epochs, patience 30) so a kill lands mid-trial.
SWEEP = '''
from regsweep import SearchSpace
from regsweep.cli import sweep_main
from regsweep.data import make_rings

SPACE = SearchSpace(regularizers=("none", "l2"), depth=(1, 1), width=(2, 8), patience=(30, 30),
                    max_epochs={epochs}, batch_size=16)

if __name__ == "__main__":
    raise SystemExit(sweep_main("tiny", SPACE, lambda args: make_rings(n=120, seed=0), trials=4))
'''


def write_sweep(tmp_path: Path, epochs: int) -> Path:
    path = tmp_path / "tiny_sweep.py"
    path.write_text(SWEEP.format(epochs=epochs))
    return path


def sweep_cmd(sweep: Path, db: Path, *, trials: int, workers: int, seed: int = 0) -> list[str]:
    return [sys.executable, str(sweep), "--storage", f"sqlite:///{db}", "--study", "tiny", "--trials", str(trials),
            "--workers", str(workers), "--seed", str(seed), "--no-plots", "--no-progress", "--pruner", "none",
            "--out", str(db.parent / "out")]


def env() -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(Path(__file__).resolve().parents[2])}


def trials(db: Path) -> list[dict]:
    """Every trial of the file's study: number, state, params, owner, user and system attrs."""
    if not db.exists():
        return []
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=60) as conn:
        try:
            rows = conn.execute("SELECT trial_id, number, state FROM trials ORDER BY number").fetchall()
        except sqlite3.OperationalError:  # tables not created yet
            return []
        out = []
        for trial_id, number, state in rows:
            params = dict(conn.execute("SELECT param_name, param_value FROM trial_params WHERE trial_id=?", (trial_id,)))
            user = {k: json.loads(v) for k, v in conn.execute(
                "SELECT key, value_json FROM trial_user_attributes WHERE trial_id=?", (trial_id,))}
            system = {k: json.loads(v) for k, v in conn.execute(
                "SELECT key, value_json FROM trial_system_attributes WHERE trial_id=?", (trial_id,))}
            values = [v for (v,) in conn.execute("SELECT value FROM trial_values WHERE trial_id=?", (trial_id,))]
            out.append({"number": number, "state": state, "params": params, "user": user, "system": system,
                        "value": values[0] if values else None})
    return out


def wait_for(db: Path, condition, process: subprocess.Popen, timeout: float = 240.0) -> list[dict]:
    """Poll the study until ``condition(trials)`` holds; fail if the process ends or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = trials(db)
        if condition(rows):
            return rows
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"sweep ended (code {process.returncode}) before the condition held:\n{err[-3000:]}")
        time.sleep(0.05)  # polling interval of a bounded loop, not synchronisation
    process.kill()
    pytest.fail("condition not reached before the deadline")


def running(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["state"] == "RUNNING"]


def training(rows: list[dict]) -> list[dict]:
    """RUNNING trials whose worker has claimed them and sampled all their parameters (patience is the last)."""
    return [r for r in running(rows) if "patience" in r["params"] and "regsweep_owner" in r["system"]]


def finished(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["state"] in ("COMPLETE", "PRUNED")]


def owner_pid(row: dict) -> int:
    return int(row["system"]["regsweep_owner"].rsplit(":", 1)[1])


def assert_retried(rows: list[dict], killed: dict) -> dict:
    """The killed trial is FAIL with a reason, and exactly one retry with its parameters finished."""
    by_number = {r["number"]: r for r in rows}
    assert by_number[killed["number"]]["state"] == "FAIL"
    assert "died" in by_number[killed["number"]]["user"].get("fail_reason", "")
    retries = [r for r in rows if r["system"].get("failed_trial") == killed["number"]]
    assert len(retries) == 1, retries
    retry = retries[0]
    assert retry["params"] == by_number[killed["number"]]["params"]
    assert retry["state"] in ("COMPLETE", "PRUNED")
    assert "fail_reason" not in retry["user"] and "not_counted" not in retry["user"]
    return retry


def test_sigkill_of_a_worker_mid_trial_is_retried_and_the_sweep_ends_with_exactly_n(tmp_path):
    sweep, db = write_sweep(tmp_path, epochs=30), tmp_path / "kill.db"
    total = 4
    process = subprocess.Popen(sweep_cmd(sweep, db, trials=total, workers=2), cwd=tmp_path, env=env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rows = wait_for(db, lambda rows: any(r["number"] >= 1 for r in training(rows)), process)
    victim = [r for r in training(rows) if r["number"] >= 1][0]
    os.kill(owner_pid(victim), signal.SIGKILL)
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]
    assert "Traceback" not in err, err[-4000:]
    rows = trials(db)
    assert len(finished(rows)) == total
    assert not running(rows)
    assert_retried(rows, victim)
    failed = [r for r in rows if r["state"] == "FAIL"]
    assert [r["number"] for r in failed] == [victim["number"]]
    print(f"\nworker SIGKILL: finished={len(finished(rows))} failed={len(failed)} retried=1 trials={len(rows)}")


def test_sigkill_of_the_whole_sweep_then_resume_finishes_exactly_n_and_keeps_complete_trials(tmp_path):
    sweep, db = write_sweep(tmp_path, epochs=30), tmp_path / "crash.db"
    total = 4
    cmd = sweep_cmd(sweep, db, trials=total, workers=1)
    process = subprocess.Popen(cmd, cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    wait_for(db, lambda rows: len(finished(rows)) >= 1 and training(rows), process)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    before = trials(db)
    killed = running(before)
    assert len(killed) == 1
    complete_before = {r["number"]: r["value"] for r in before if r["state"] == "COMPLETE"}
    assert complete_before

    resumed = subprocess.run([sys.executable, "-m", "regsweep.cli", "resume", "--study", "tiny", "--storage",
                              f"sqlite:///{db}", "--no-plots"], cwd=tmp_path, env=env(), capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    rows = trials(db)
    assert len(finished(rows)) == total
    assert not running(rows)
    assert_retried(rows, killed[0])
    after = {r["number"]: r for r in rows}
    for number, value in complete_before.items():  # nothing complete was lost or rerun
        assert after[number]["state"] == "COMPLETE" and after[number]["value"] == value
    assert not any(r["system"].get("failed_trial") in complete_before for r in rows)
    failed = [r for r in rows if r["state"] == "FAIL"]
    assert len(failed) == 1
    print(f"\nsweep SIGKILL + resume: finished={len(finished(rows))} failed={len(failed)} retried=1 trials={len(rows)}")

    again = subprocess.run(cmd, cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(trials(db)) == len(rows)  # a finished study runs nothing more
