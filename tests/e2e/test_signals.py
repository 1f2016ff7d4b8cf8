"""Ctrl-C and SIGTERM with real processes: clean stop, one-line message, no traceback, resume completes.

First signal: no new trials, running ones finish, leaderboard flushed, exit 130.
Second signal: running trials are failed with ``fail_reason=interrupted`` and queued for retry at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from sweep_process import env, sweep_cmd, trials, wait_for, write_sweep

pytestmark = pytest.mark.slow

def count(rows: list[dict], *states: str) -> int:
    return sum(r["state"] in states for r in rows)


def assert_clean_interrupt(process: subprocess.Popen) -> tuple[str, str]:
    out, err = process.communicate(timeout=600)
    assert process.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("regsweep: interrupted") and "run the same command again to resume" in last
    return out, err


def resume(cmd: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_first_sigint_lets_the_running_trial_finish_flushes_the_leaderboard_and_resume_completes(tmp_path):
    sweep, db, total = write_sweep(tmp_path, epochs=30), tmp_path / "int.db", 4
    cmd = sweep_cmd(sweep, db, trials=total, workers=1)
    process = subprocess.Popen(cmd, cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rows = wait_for(db, lambda rows: count(rows, "RUNNING") == 1, process)
    running = [r["number"] for r in rows if r["state"] == "RUNNING"][0]
    process.send_signal(signal.SIGINT)
    out, err = assert_clean_interrupt(process)
    rows = trials(db)
    assert count(rows, "RUNNING") == 0 and count(rows, "FAIL") == 0
    assert {r["number"]: r["state"] for r in rows}[running] == "COMPLETE"  # finished, not abandoned
    stopped_at = count(rows, "COMPLETE", "PRUNED")
    assert 1 <= stopped_at < total
    assert "Leaderboard" in out
    board = (tmp_path / "out" / "leaderboard.csv").read_text().strip().splitlines()
    assert len(board) == 1 + stopped_at

    resume(cmd, tmp_path)
    rows = trials(db)
    assert count(rows, "COMPLETE", "PRUNED") == total and count(rows, "FAIL") == 0 and len(rows) == total
    print(f"\nSIGINT x1: stopped at {stopped_at} finished, 0 failed; resume: finished={total}, trials={len(rows)}")


def test_second_sigint_stops_at_once_and_the_abandoned_trials_are_retried_on_resume(tmp_path):
    sweep, db, total = write_sweep(tmp_path, epochs=100), tmp_path / "int2.db", 3
    cmd = sweep_cmd(sweep, db, trials=total, workers=2)
    process = subprocess.Popen(cmd, cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rows = wait_for(db, lambda rows: count(rows, "RUNNING") == 2, process)
    abandoned = sorted(r["number"] for r in rows if r["state"] == "RUNNING")
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    for line in process.stderr:  # two signals sent back to back arrive as one: wait until the first is handled
        if line.startswith("stopping:"):
            break
    process.send_signal(signal.SIGINT)
    assert_clean_interrupt(process)
    stop_seconds = time.monotonic() - started
    rows = trials(db)
    by_number = {r["number"]: r for r in rows}
    assert count(rows, "RUNNING") == 0
    # abandoned at once, unless its training had just ended (then it was told, not lost); a slots
    # worker may have claimed more trials after `abandoned` was read: they are abandoned too
    interrupted = sorted(r["number"] for r in rows if r["state"] == "FAIL")
    assert interrupted
    assert all(by_number[n]["state"] in ("COMPLETE", "PRUNED") for n in set(abandoned) - set(interrupted))
    for number in interrupted:
        assert by_number[number]["user"]["fail_reason"] == "interrupted"
    waiting = [r for r in rows if r["state"] == "WAITING"]
    assert sorted(r["system"]["failed_trial"] for r in waiting) == interrupted

    resume(cmd, tmp_path)
    rows = trials(db)
    retried = [r for r in rows if r["system"].get("failed_trial") in interrupted]
    assert count(rows, "COMPLETE", "PRUNED") == total and count(rows, "RUNNING", "WAITING") == 0
    assert all(r["state"] in ("COMPLETE", "PRUNED") for r in retried) and len(retried) == len(interrupted)
    for retry in retried:  # same parameters (a trial stopped before sampling any gets fresh ones)
        original = by_number[retry["system"]["failed_trial"]]["params"]
        assert retry["params"] == original or (not original and retry["params"])
    print(f"\nSIGINT x2: stopped in {stop_seconds:.1f}s, {len(interrupted)} of {len(abandoned)} running failed + retried; "
          f"resume: finished={total}, failed={count(rows, 'FAIL')}, trials={len(rows)}")


def test_sigterm_to_the_sweep_stops_cleanly_like_ctrl_c(tmp_path):
    sweep, db, total = write_sweep(tmp_path, epochs=30), tmp_path / "term.db", 6
    cmd = sweep_cmd(sweep, db, trials=total, workers=2)
    process = subprocess.Popen(cmd, cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(db, lambda rows: count(rows, "RUNNING") >= 1, process)
    process.send_signal(signal.SIGTERM)
    assert_clean_interrupt(process)
    rows = trials(db)
    assert count(rows, "RUNNING") == 0 and count(rows, "FAIL") == 0
    assert count(rows, "COMPLETE", "PRUNED") < total
    resume(cmd, tmp_path)
    assert count(trials(db), "COMPLETE", "PRUNED") == total


def test_ctrl_c_to_the_whole_process_group_gives_no_traceback(tmp_path):
    """A terminal's Ctrl-C reaches the parent and every worker at once."""
    sweep, db, total = write_sweep(tmp_path, epochs=30), tmp_path / "group.db", 6
    cmd = sweep_cmd(sweep, db, trials=total, workers=2)
    process = subprocess.Popen(cmd, cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    wait_for(db, lambda rows: count(rows, "RUNNING") >= 1, process)
    os.killpg(process.pid, signal.SIGINT)
    assert_clean_interrupt(process)
    rows = trials(db)
    assert count(rows, "RUNNING") == 0 and count(rows, "FAIL") == 0
