"""Run a tiny sweep file in a subprocess and read its SQLite study directly (for kill and signal
tests), and the counted trials of a study several workers ran."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

# Trials last a few seconds (``epochs`` epochs, patience as long) so a signal lands mid-trial.
SWEEP = '''
from regsweep import SearchSpace
from regsweep.cli import sweep_main
from regsweep.data import make_rings

SPACE = SearchSpace(regularizers=("none", "l2"), depth=(1, 1), width=(2, 8), patience=({epochs}, {epochs}),
                    max_epochs={epochs}, batch_size=16)

if __name__ == "__main__":
    raise SystemExit(sweep_main("tiny", SPACE, lambda args: make_rings(n=120, seed=0), trials=4))
'''

# A 4-trial sweep of 3-epoch trials, for tests that only need a real sweep to finish.
TINY_SWEEP = '''
from regsweep import SearchSpace
from regsweep.cli import sweep_main
from regsweep.data import make_rings

SPACE = SearchSpace(depth=(1, 2), width=(2, 8), patience=(1, 2), max_epochs=3, batch_size=32)


def main(argv=None):
    return sweep_main("tiny", SPACE, lambda args: make_rings(n=120, seed=0), argv=argv, trials=4)


if __name__ == "__main__":
    raise SystemExit(main())
'''


def counted_trials(study) -> list:
    """The trials a sweep counts (COMPLETE and PRUNED). Two workers racing for the last trial may
    ask one too many: it is failed as surplus before any attribute is set, and never counted;
    asserts that every other trial is such a surplus."""
    from regsweep.lifecycle import FAIL_REASON, SURPLUS_REASON, finished_states

    trials = study.get_trials(deepcopy=False)
    counted = [t for t in trials if t.state in finished_states()]
    assert all(t.user_attrs.get(FAIL_REASON) == SURPLUS_REASON for t in trials if t not in counted)
    return counted


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
            "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


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


