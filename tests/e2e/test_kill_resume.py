"""SIGKILL mid-trial, then resume: exactly N finished, the killed trial retried with its parameters.

Real processes, real signals, real SQLite files: a tiny sweep file in ``tmp_path`` is run with
``python``; the test polls the study file (bounded, with a deadline) until a trial is RUNNING,
then kills. No sleeps as synchronisation.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from sweep_process import env, sweep_cmd, trials, wait_for, write_sweep

from regsweep.lifecycle import FAIL_REASON, SURPLUS_REASON

pytestmark = pytest.mark.slow


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
    """The killed trial is FAIL with a reason, and exactly one retry with its parameters finished.

    A trial killed between its claim and the end of its sampling (a slots worker claims a new trial
    the moment one finishes) had only some parameters, or none: its retry keeps those and samples
    the rest afresh (README, "Notes")."""
    by_number = {r["number"]: r for r in rows}
    assert by_number[killed["number"]]["state"] == "FAIL"
    assert "died" in by_number[killed["number"]]["user"].get("fail_reason", "")
    retries = [r for r in rows if r["system"].get("failed_trial") == killed["number"]]
    assert len(retries) == 1, retries
    retry = retries[0]
    had = by_number[killed["number"]]["params"]
    assert {name: retry["params"][name] for name in had} == had
    assert "patience" in retry["params"]  # sampled last: the retry has all its parameters (see training)
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
    killed_pid = owner_pid(victim)
    os.kill(killed_pid, signal.SIGKILL)
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]
    assert "Traceback" not in err, err[-4000:]
    rows = trials(db)
    assert len(finished(rows)) == total
    assert not running(rows)
    # a trial two live workers raced for is told FAIL as surplus (never counted): not the kill's doing
    failed = [r for r in rows if r["state"] == "FAIL" and r["user"].get(FAIL_REASON) != SURPLUS_REASON]
    assert victim["number"] in [r["number"] for r in failed]
    # only the killed worker's open trials (a slots worker holds several) failed, each retried once
    assert all(owner_pid(r) == killed_pid for r in failed)
    for killed in failed:
        assert_retried(rows, killed)
    print(f"\nworker SIGKILL: finished={len(finished(rows))} failed={len(failed)} retried={len(failed)} "
          f"trials={len(rows)}")


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
    killed = running(before)  # the worker's open trials (several on the slots engine)
    assert killed
    complete_before = {r["number"]: r["value"] for r in before if r["state"] == "COMPLETE"}
    assert complete_before

    resumed = subprocess.run([sys.executable, "-m", "regsweep.cli", "resume", "--study", "tiny", "--storage",
                              f"sqlite:///{db}", "--no-plots"], cwd=tmp_path, env=env(), capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    rows = trials(db)
    assert len(finished(rows)) == total
    assert not running(rows)
    for trial in killed:
        assert_retried(rows, trial)
    after = {r["number"]: r for r in rows}
    for number, value in complete_before.items():  # nothing complete was lost or rerun
        assert after[number]["state"] == "COMPLETE" and after[number]["value"] == value
    assert not any(r["system"].get("failed_trial") in complete_before for r in rows)
    failed = [r for r in rows if r["state"] == "FAIL"]
    assert len(failed) == len(killed)
    print(f"\nsweep SIGKILL + resume: finished={len(finished(rows))} failed={len(failed)} retried={len(killed)} "
          f"trials={len(rows)}")

    again = subprocess.run(cmd, cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(trials(db)) == len(rows)  # a finished study runs nothing more
