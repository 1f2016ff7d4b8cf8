"""Whole sweeps with real Keras training, real SQLite files and real worker processes."""

from __future__ import annotations

import os
import subprocess
import sys

import optuna
import pytest
from sweep_process import counted_trials

from regsweep import SearchSpace, leaderboard, run_sweep
from regsweep.data import make_rings
from regsweep.report import COLUMNS
from regsweep.lifecycle import OWNER_ATTR, owner_tag
from regsweep.storage import count_states, load_study
from regsweep.space import CORE_PARAMS

pytestmark = pytest.mark.slow

SPACE = SearchSpace(depth=(1, 2), width=(2, 8), patience=(1, 3), max_epochs=4, batch_size=32)


def _run(url, out, trials, **kw):
    return run_sweep(SPACE, make_rings(n=120), sweep="rings", study="e2e", storage=url, trials=trials,
                     out=str(out), progress=False, **kw)


def test_sweep_records_params_attrs_and_leaderboard(tmp_path, sqlite_url):
    _run(sqlite_url, tmp_path / "out", 4)
    study = optuna.load_study(study_name="e2e", storage=sqlite_url)
    assert study.metric_names == ["val_loss"]  # optuna-dashboard names the objective
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == 4
    for trial in finished:
        assert set(trial.params) <= set(CORE_PARAMS) and {"regularizer", "dropout", "depth", "width", "patience"} <= set(trial.params)
        for attr in ("n_params", "epochs", "val_loss", "train_loss", "val_metric", "weight_l1", "weight_l2", "val_curve"):
            assert attr in trial.user_attrs
        assert len(trial.intermediate_values) == trial.user_attrs["epochs"]
    board = leaderboard(study)
    assert list(board.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert list(board["rank"]) == [1, 2, 3, 4]
    assert list(board["val_loss"]) == sorted(board["val_loss"])
    assert (board["gap"] - (board["val_loss"] - board["train_loss"])).abs().max() < 1e-9


def test_rerun_adds_nothing_and_a_larger_total_adds_only_the_missing(tmp_path, sqlite_url):
    _run(sqlite_url, tmp_path, 3)
    made = len(load_study(sqlite_url, "e2e").trials)
    _run(sqlite_url, tmp_path, 3)
    study = load_study(sqlite_url, "e2e")
    assert len(study.trials) == made and len(counted_trials(study)) == 3  # the rerun asked for nothing
    _run(sqlite_url, tmp_path, 5)
    assert count_states(load_study(sqlite_url, "e2e"))["finished"] == 5
    assert len(counted_trials(load_study(sqlite_url, "e2e"))) == 5


def test_trial_left_running_by_a_dead_worker_is_retried_and_total_stays_exact(tmp_path, sqlite_url):
    _run(sqlite_url, tmp_path, 2)
    study = load_study(sqlite_url, "e2e")
    crashed = study.ask()
    chosen = crashed.suggest_categorical("regularizer", list(SPACE.regularizers))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = owner_tag().rsplit(":", 1)[0]
    study._storage.set_trial_system_attr(crashed._trial_id, OWNER_ATTR, f"{host}:{dead.stdout.strip()}")
    assert count_states(study)["RUNNING"] == 1
    _run(sqlite_url, tmp_path, 4)
    study = load_study(sqlite_url, "e2e")
    counts = count_states(study)
    assert counts["finished"] == 4 and counts["RUNNING"] == 0 and counts["FAIL"] == 1
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == crashed.number]
    assert len(retried) == 1 and retried[0].state.name in ("COMPLETE", "PRUNED")
    assert retried[0].params["regularizer"] == chosen


def test_two_worker_processes_finish_exactly_n_with_capped_threads(tmp_path, sqlite_url):
    _run(sqlite_url, tmp_path, 5, workers=2, threads_per_worker=1)
    study = load_study(sqlite_url, "e2e")
    assert count_states(study)["finished"] == 5
    # Two workers racing for the last slot may ask one trial too many; it is dropped, never counted.
    counted = counted_trials(study)
    assert len(counted) == 5 and count_states(study)["RUNNING"] == 0
    # Trained in the spawned workers (TF capped at 1 thread each), never in this process.
    assert {t.user_attrs["tf_intra_op_threads"] for t in counted} == {1}
    assert {t.user_attrs["worker"] for t in counted} <= {0, 1}
    assert str(os.getpid()) not in {t.system_attrs[OWNER_ATTR].rsplit(":", 1)[1] for t in study.trials}
    _run(sqlite_url, tmp_path, 7, workers=2, threads_per_worker=1)
    assert count_states(load_study(sqlite_url, "e2e"))["finished"] == 7


def test_plot_and_exports_are_written(tmp_path):
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "sweeps.rings", "--trials", "2", "--workers", "1", "--n", "100",
         "--storage", f"sqlite:///{tmp_path / 'r.db'}", "--out", str(out), "--no-progress"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "Leaderboard of study 'rings'" in result.stdout
    assert (out / "complexity.png").stat().st_size > 10_000
    assert (out / "leaderboard.csv").read_text().startswith("rank,trial,state,val_loss")


def test_slots_engine_sweep_with_two_workers_then_cli_resume_reaches_exact_totals(tmp_path, sqlite_url):
    """--engine slots: worker processes train their trials as refillable slots; the totals are
    exact, every trial says it was trained in a slot, and `regsweep resume` extends it on the
    engine and slots the study recorded."""
    _run(sqlite_url, tmp_path, 4, workers=2, threads_per_worker=1, engine="slots", slots=2)
    study = load_study(sqlite_url, "e2e")
    counted = counted_trials(study)
    assert count_states(study)["finished"] == len(counted) == 4 and count_states(study)["RUNNING"] == 0
    assert {t.user_attrs["engine"] for t in counted} == {"slots"}
    assert {t.user_attrs["worker"] for t in counted} <= {0, 1}
    assert str(os.getpid()) not in {t.system_attrs[OWNER_ATTR].rsplit(":", 1)[1] for t in counted}
    for trial in counted:
        assert trial.value == trial.user_attrs["val_loss"] == min(trial.user_attrs["val_curve"])
        assert trial.user_attrs["epochs"] == len(trial.user_attrs["val_curve"]) <= SPACE.max_epochs

    done = subprocess.run([sys.executable, "-m", "regsweep.cli", "resume", "--study", "e2e", "--storage", sqlite_url,
                           "--trials", "6", "--no-plots"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
                               "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    study = load_study(sqlite_url, "e2e")
    counted = counted_trials(study)
    assert count_states(study)["finished"] == len(counted) == 6
    assert {t.user_attrs["engine"] for t in counted} == {"slots"}
    assert "Leaderboard of study 'e2e'" in done.stdout
