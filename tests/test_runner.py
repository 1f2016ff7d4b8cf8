"""Claiming trials, exact totals, failure streaks, pruning and settings, without a full sweep."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from regsweep.data import make_rings
from regsweep.errors import SettingsError, StorageError
from regsweep.objective import train_config
from regsweep.lifecycle import claim_trials, failures_in_a_row
from regsweep.settings import SweepSettings
from regsweep.workers import make_pruner
from regsweep.space import TrialConfig
from regsweep.storage import count_states, make_storage


@pytest.fixture
def study(sqlite_url):
    return optuna.create_study(study_name="s", storage=make_storage(sqlite_url))


def test_claims_never_exceed_the_total(study):
    first = claim_trials(study, total=3, k=2)
    assert len(first) == 2
    assert len(claim_trials(study, total=3, k=5)) == 1
    assert claim_trials(study, total=3, k=1) == []
    assert count_states(study)["RUNNING"] == 3
    for trial in study.get_trials(states=(TrialState.RUNNING,)):
        study.tell(trial.number, 1.0)
    assert claim_trials(study, total=3) == []
    assert len(study.trials) == 3


def test_a_failed_trial_frees_its_slot(study):
    (trial,) = claim_trials(study, total=1)
    study.tell(trial, state=TrialState.FAIL)
    assert len(claim_trials(study, total=1)) == 1


def test_failures_in_a_row_counts_since_the_last_finished_trial(study):
    for state in (TrialState.FAIL, TrialState.COMPLETE, TrialState.FAIL, TrialState.FAIL):
        trial = study.ask()
        study.tell(trial, 1.0 if state == TrialState.COMPLETE else None, state=state)
    assert failures_in_a_row(study) == 2
    trial = study.ask()
    study.tell(trial, state=TrialState.PRUNED)
    assert failures_in_a_row(study) == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"trials": 0}, "trials"), ({"trials": -3}, "trials"), ({"workers": 0}, "workers"), ({"seed": -1}, "seed"),
     ({"pruner": "asha"}, "pruner"), ({"sampler": "grid"}, "sampler"), ({"study": "bad name"}, "study"),
     ({"storage": "mongodb://x"}, "storage"), ({"trials": True}, "trials")],
)
def test_bad_settings_name_the_field(kwargs, match):
    with pytest.raises(StorageError if match in ("study", "storage") else SettingsError, match=match):
        SweepSettings(**kwargs)


def test_threads_are_shared_out_between_workers():
    assert SweepSettings(workers=1).threads == len(os.sched_getaffinity(0))
    assert SweepSettings(workers=64).threads == 1
    assert SweepSettings(workers=2, threads_per_worker=3).threads == 3


def test_default_workers_and_threads_follow_the_cpu_affinity():
    """Pinned to one core (as a container's cpuset would), a sweep starts 1 worker with 1 thread."""
    code = ("import os; os.sched_setaffinity(0, {0}); from regsweep.settings import SweepSettings, default_workers; "
            "print(default_workers(), SweepSettings(workers=1).threads, os.cpu_count())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    workers, threads, cpu_count = map(int, out.stdout.split())
    assert (workers, threads) == (1, 1)
    assert cpu_count == os.cpu_count()  # os.cpu_count() alone would have said this many


def test_default_workers_and_threads_follow_a_cgroup_cpu_quota(tmp_path):
    """A real CFS quota of one CPU, seen the way a container sees its own cgroup (a child cgroup
    bind-mounted over the cpu controller in a private mount namespace): 1 worker, 1 thread."""
    import shutil
    import uuid

    controller = Path("/sys/fs/cgroup/cpu")
    if os.geteuid() != 0 or not shutil.which("unshare") or not (controller / "cpu.cfs_quota_us").exists():
        pytest.skip("needs root, unshare and a cgroup v1 cpu controller to make a real CPU quota")
    if (os.cpu_count() or 1) < 2:
        pytest.skip("a one-CPU quota is only visible on a machine with more CPUs")
    group = controller / f"regsweep-test-{uuid.uuid4().hex[:8]}"
    try:
        group.mkdir()
    except OSError as exc:
        pytest.skip(f"cannot create a cgroup here: {exc}")
    try:
        (group / "cpu.cfs_period_us").write_text("100000")
        (group / "cpu.cfs_quota_us").write_text("100000")  # one CPU's worth of time
        code = ("import os; from regsweep.settings import SweepSettings, default_workers; "
                "print(default_workers(), SweepSettings(workers=1).threads, os.cpu_count())")
        script = (f"echo $$ > {group}/cgroup.procs && mount --bind {group} {controller} && "
                  f"exec {sys.executable} -c '{code}'")
        out = subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    finally:
        group.rmdir()
    workers, threads, cpu_count = map(int, out.stdout.split())
    assert (workers, threads) == (1, 1)
    assert cpu_count == os.cpu_count()  # the host's count, which os.cpu_count() alone would have used


@pytest.mark.parametrize(("name", "cls"), [("none", optuna.pruners.NopPruner), ("median", optuna.pruners.MedianPruner),
                                           ("hyperband", optuna.pruners.HyperbandPruner)])
def test_pruner_names(name, cls):
    assert isinstance(make_pruner(name, max_epochs=10), cls)


def test_a_pruned_trial_keeps_its_curve_and_epochs(study):
    study.pruner = optuna.pruners.ThresholdPruner(upper=0.0, n_warmup_steps=1)  # prunes at the 2nd epoch
    trial = study.ask()
    config = TrialConfig(regularizer="l2", lam=1e-3, dropout=0.0, depth=1, width=4, patience=5, max_epochs=6)
    with pytest.raises(optuna.TrialPruned):
        train_config(config, make_rings(n=100), trial=trial)
    study.tell(trial, state=TrialState.PRUNED)
    frozen = study.trials[0]
    assert frozen.state == TrialState.PRUNED
    assert frozen.user_attrs["epochs"] == 2 and len(frozen.user_attrs["val_curve"]) == 2
    assert sorted(frozen.intermediate_values) == [0, 1]
