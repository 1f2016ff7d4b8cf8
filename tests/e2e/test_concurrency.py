"""Concurrent writers on one SQLite file: 4 sweep processes started at once on a fresh file,
sharing one study of 200 fast trials, finish exactly 200 with no "database is locked" error.

The processes run the slots engine (4 open trials each, no per-trial tracing), so trials end
several times a second and the file sees more concurrent claims, reports and tells per second
than the Keras engine would give it (whose multi-process runs on SQLite are covered in
``test_sweep``, ``test_lifecycle`` and ``test_dask``)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SWEEP = '''
from regsweep import SearchSpace
from regsweep.cli import sweep_main
from regsweep.data import make_rings

SPACE = SearchSpace(regularizers=("none", "l1", "l2", "l1_l2"), depth=(1, 1), width=(2, 4), patience=(1, 1),
                    max_epochs=1, batch_size=100)

if __name__ == "__main__":
    raise SystemExit(sweep_main("fast", SPACE, lambda args: make_rings(n=100, seed=0), trials=200))
'''
PROCESSES, TOTAL = 4, 200


@pytest.mark.timeout(3000)
def test_four_processes_share_one_sqlite_study_of_200_trials_without_lock_errors(tmp_path):
    sweep = tmp_path / "fast_sweep.py"
    sweep.write_text(SWEEP)
    db = tmp_path / "shared.db"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    logs = [(tmp_path / f"out{i}.txt", tmp_path / f"err{i}.txt") for i in range(PROCESSES)]
    started = time.monotonic()
    processes = []
    for i, (out, err) in enumerate(logs):
        cmd = [sys.executable, str(sweep), "--storage", f"sqlite:///{db}", "--study", "fast", "--trials", str(TOTAL),
               "--workers", "1", "--engine", "slots", "--slots", "4", "--seed", str(i), "--no-plots", "--no-progress", "--out", str(tmp_path / f"report{i}")]
        processes.append(subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=out.open("w"), stderr=err.open("w")))
    try:
        codes = [p.wait(timeout=2700) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    seconds = time.monotonic() - started
    errors = [err.read_text() for _, err in logs]

    assert codes == [0] * PROCESSES, "\n".join(e[-2000:] for e in errors)
    for text in errors:
        assert "database is locked" not in text.lower()
        assert "Traceback" not in text
    with sqlite3.connect(db) as conn:
        states = Counter(state for (state,) in conn.execute("SELECT state FROM trials"))
        owners = Counter(json.loads(v) for (v,) in conn.execute(
            "SELECT value_json FROM trial_system_attributes WHERE key='regsweep_owner'"))
        studies = conn.execute("SELECT COUNT(*) FROM studies").fetchone()[0]
    finished = states["COMPLETE"] + states["PRUNED"]
    assert studies == 1
    assert finished == TOTAL
    assert states["RUNNING"] == 0 and states["WAITING"] == 0
    assert len(owners) == PROCESSES  # every process ran trials
    print(f"\n{PROCESSES} processes x {TOTAL} trials: finished={finished} states={dict(states)} "
          f"per process={sorted(owners.values())} in {seconds:.0f}s, 0 lock errors")
