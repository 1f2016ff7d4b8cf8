"""Packed trials (regsweep.packing): equivalence with training alone, per-branch early stopping
and pruning, exact totals and crash recovery with real SQLite studies and real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from regsweep.errors import SettingsError
from regsweep.space import SearchSpace, TrialConfig

CURVES = ("val_curve", "train_curve", "val_metric_curve")


def _close(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and np.allclose(a, b, rtol=1e-5, atol=1e-6)


def _assert_same_run(alone, packed) -> None:
    """A branch of a pack and the same configuration trained alone: same curves and measures."""
    for name in CURVES:
        assert _close(getattr(alone, name), getattr(packed, name)), (name, getattr(alone, name), getattr(packed, name))
    assert (packed.epochs, packed.best_epoch, packed.n_params) == (alone.epochs, alone.best_epoch, alone.n_params)
    assert packed.weight_l1 == pytest.approx(alone.weight_l1, rel=1e-5)
    assert packed.weight_l2 == pytest.approx(alone.weight_l2, rel=1e-5)


# Different depth/width, regularizer, dropout, optimizer, learning rate, clipnorm and batch norm; high
# learning rates make the validation loss bounce so early stopping ends branches at different epochs.
BRANCHES = (
    TrialConfig("l2", 1e-3, 0.2, 2, 16, 0, max_epochs=10, batch_size=32, learning_rate=0.05, clipnorm=1.0),
    TrialConfig("l1", 1e-2, 0.0, 3, 8, 1, max_epochs=10, batch_size=32, optimizer="sgd", learning_rate=0.5),
    TrialConfig("none", 0.0, 0.3, 1, 32, 3, max_epochs=10, batch_size=32, optimizer="rmsprop", batch_norm=True),
    TrialConfig("l1_l2", 1e-4, 0.0, 2, 4, 2, max_epochs=10, batch_size=32, learning_rate=0.05),
)


def test_each_branch_equals_its_configuration_trained_alone(tiny_rings):
    """Same seed and batch order: a pack's branches reproduce train_config, early stopping included."""
    from regsweep.objective import free_keras_memory, train_config
    from regsweep.packing import train_pack

    alone = []
    for config in BRANCHES:
        alone.append(train_config(config, tiny_rings, seed=11))
        free_keras_memory()
    epochs_run = []
    outcomes = train_pack(BRANCHES, tiny_rings, seeds=[11] * len(BRANCHES), on_epoch=epochs_run.append)
    free_keras_memory()

    assert [o.state for o in outcomes] == ["complete"] * len(BRANCHES)
    for single, outcome in zip(alone, outcomes):
        _assert_same_run(single, outcome.result)
    stopped = sorted({r.epochs for r in alone})
    assert len(stopped) > 1 and stopped[0] < BRANCHES[0].max_epochs, "the configs should stop at different epochs"
    assert len(epochs_run) == max(r.epochs for r in alone)  # the pack stops when its last branch stops


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_branch_equals_alone_for_other_tasks(task):
    """The data loss and metric of multiclass and regression branches match Keras' compiled ones."""
    from regsweep.data import from_arrays
    from regsweep.objective import free_keras_memory, train_config
    from regsweep.packing import train_pack

    rng = np.random.default_rng(0)
    x = rng.normal(size=(150, 3))
    y = (x @ [1.0, -2.0, 0.5] + rng.normal(size=150)) if task == "regression" else (x[:, 0] > 0) + (x[:, 1] > 0)
    data = from_arrays(x, y, task=task)
    config = TrialConfig("l2", 1e-3, 0.1, 2, 8, 2, max_epochs=4, batch_size=32)
    other = TrialConfig("l1", 1e-2, 0.0, 1, 16, 2, max_epochs=4, batch_size=32)
    alone = train_config(config, data, seed=5)
    free_keras_memory()
    packed = train_pack([config, other], data, seeds=[5, 6])
    free_keras_memory()
    _assert_same_run(alone, packed[0].result)


def test_pruned_branch_stops_alone_and_records_its_epochs(tiny_rings):
    """A real Optuna pruner prunes one branch at epoch 2; the other trains on unchanged."""
    import optuna

    from regsweep.objective import free_keras_memory
    from regsweep.packing import train_pack

    configs = [TrialConfig("none", 0.0, 0.0, 2, 16, 20, max_epochs=6, batch_size=32, learning_rate=0.01),
               TrialConfig("none", 0.0, 0.0, 1, 4, 20, max_epochs=6, batch_size=32, learning_rate=1e-6)]
    free_run = [o.result for o in train_pack(configs, tiny_rings, seeds=[3, 4])]
    free_keras_memory()
    good, slow = free_run[0].val_curve, free_run[1].val_curve
    assert max(good[1:]) < slow[1], "precondition: the slow branch is worse from epoch 2 on"
    threshold = (max(good[1:]) + slow[1]) / 2

    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=threshold, n_warmup_steps=1))
    trials = [study.ask(), study.ask()]
    told = []
    outcomes = train_pack(configs, tiny_rings, seeds=[3, 4], trials=trials, on_done=lambda o: told.append(o.index))
    free_keras_memory()

    assert [o.state for o in outcomes] == ["complete", "pruned"]
    assert told == [1, 0]  # the pruned branch is finished at once, the other at the end
    pruned = outcomes[1].result
    assert pruned.epochs == 2 and _close(pruned.val_curve, slow[:2])
    _assert_same_run(free_run[0], outcomes[0].result)
    assert list(study.trials[1].intermediate_values) == [0, 1]
    assert list(study.trials[0].intermediate_values) == list(range(6))


def test_sweep_with_packs_has_exact_totals_and_resumes(tiny_rings, tiny_space, sqlite_url, tmp_path):
    """trials=5 with --pack 3 runs packs of 3 and 2; raising the total to 7 adds one pack of 2."""
    from regsweep.objective import TRIAL_ATTRS
    from regsweep.report import leaderboard
    from regsweep.runner import run_sweep
    from regsweep.storage import count_states

    settings = dict(study="packed", storage=sqlite_url, workers=1, engine="keras", pack=3, pruner="none", progress=False,
                    out=str(tmp_path / "out"), keep_top=1)
    study = run_sweep(tiny_space, tiny_rings, trials=5, **settings)
    assert count_states(study)["finished"] == 5 and len(study.trials) == 5
    assert [t.user_attrs["pack"] for t in study.trials] == [3, 3, 3, 2, 2]
    for trial in study.trials:
        assert set(TRIAL_ATTRS) | {"val_curve", "train_curve", "curve_artifact"} <= set(trial.user_attrs)
        assert trial.value == trial.user_attrs["val_loss"] == min(trial.user_attrs["val_curve"])
        assert trial.user_attrs["epochs"] == len(trial.user_attrs["val_curve"]) <= tiny_space.max_epochs

    study = run_sweep(tiny_space, tiny_rings, trials=7, **settings)
    assert count_states(study)["finished"] == 7 and len(study.trials) == 7
    assert [t.user_attrs["pack"] for t in study.trials][5:] == [2, 2]
    assert list(leaderboard(study)["pack"]) and set(leaderboard(study)["pack"]) == {2, 3}


def test_workers_take_their_share_of_packs(sqlite_url):
    """With 2 workers and --pack 16, 6 trials are claimed as two packs of 3, never more than the total."""
    from regsweep.lifecycle import claim_trials
    from regsweep.storage import make_storage

    import optuna

    study = optuna.create_study(study_name="share", storage=make_storage(sqlite_url))
    assert [len(claim_trials(study, 6, 16, share=2)) for _ in range(3)] == [3, 3, 0]
    assert len(claim_trials(optuna.create_study(study_name="one", storage=make_storage(sqlite_url)), 6, 16)) == 6


_KILLED_PACK = textwrap.dedent("""
    import sys
    from regsweep.data import make_rings
    from regsweep.packing import run_pack
    from regsweep.lifecycle import claim_trials
    from regsweep.runner import study_metadata
    from regsweep.settings import SweepSettings, WorkerJob
    from regsweep.space import SearchSpace
    from regsweep.storage import open_study

    url, space = sys.argv[1], SearchSpace.from_dict(eval(sys.argv[2]))
    data = make_rings(n=120, seed=0)
    settings = SweepSettings(study="killed", storage=url, trials=4, engine="keras", pack=2)
    study = open_study(url, "killed", meta=study_metadata(space, data, settings, None))
    trials = claim_trials(study, 4, 2)
    job = WorkerJob(settings=settings, space=space.to_dict(), data_source=data.source, threads=1, pack=2)

    def wait_to_be_killed(epoch):
        print("trained epoch", epoch, flush=True)
        sys.stdin.readline()

    run_pack(study, trials, job, space, data, on_epoch=wait_to_be_killed)
""")


def test_killed_pack_is_failed_and_retried_on_resume(tiny_rings, tiny_space, sqlite_url, tmp_path):
    """A worker killed in the middle of a pack leaves RUNNING trials; the next run fails them,
    retries them with the same parameters and still ends with exactly the total."""
    from regsweep.runner import run_sweep
    from regsweep.storage import count_states, load_study

    child = subprocess.Popen([sys.executable, "-c", _KILLED_PACK, sqlite_url, repr(tiny_space.to_dict())],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    try:
        assert child.stdout.readline().startswith("trained epoch 0")
        running = load_study(sqlite_url, "killed", heartbeat=False).trials
        assert [t.state.name for t in running] == ["RUNNING", "RUNNING"]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL

    study = run_sweep(tiny_space, tiny_rings, study="killed", storage=sqlite_url, trials=4, engine="keras", pack=2, workers=1,
                      pruner="none", progress=False, out=str(tmp_path / "out"))
    counts = count_states(study)
    assert counts["finished"] == 4 and counts["FAIL"] == 2 and counts["RUNNING"] == 0
    failed = [t for t in study.trials if t.state.name == "FAIL"]
    assert all("died" in t.user_attrs["fail_reason"] for t in failed)
    finished_params = [t.params for t in study.trials if t.state.name == "COMPLETE"]
    assert all(t.params in finished_params for t in failed)  # retried with the same parameters


def test_auto_pack_size_packs_small_models_only(tiny_rings):
    from regsweep.data import from_arrays
    from regsweep.packing import auto_pack_size, largest_model_params, resolve_pack

    rings_space = SearchSpace(depth=(1, 4), width=(4, 128))
    assert largest_model_params(rings_space, tiny_rings) == 3 * 128 + 3 * 129 * 128 + 129
    assert auto_pack_size(rings_space, tiny_rings) == 16
    wide = from_arrays(np.zeros((20, 10_000)), np.arange(20) % 2)
    assert auto_pack_size(rings_space, wide) == 1
    assert auto_pack_size(SearchSpace(depth=2, width=128), from_arrays(np.zeros((20, 784)), np.arange(20) % 2)) == 8
    assert resolve_pack("auto", rings_space, tiny_rings) == 16
    assert auto_pack_size(rings_space, tiny_rings, trials=128, workers=2) == 16
    assert auto_pack_size(rings_space, tiny_rings, trials=30, workers=2) == 4  # four packs per worker
    assert auto_pack_size(rings_space, tiny_rings, trials=3, workers=2) == 1
    assert resolve_pack(4, rings_space, tiny_rings) == 4


def test_options_that_cannot_share_a_pack_are_refused_or_disable_packing(tiny_rings, tiny_space):
    from regsweep.packing import PackingError, check_packable
    from regsweep.packing import pack_size
    from regsweep.settings import SweepSettings

    with pytest.raises(PackingError, match="batch_size differs"):
        check_packable([TrialConfig("none", 0, 0, 1, 4, 1, batch_size=32), TrialConfig("none", 0, 0, 1, 4, 1, batch_size=64)])
    assert pack_size(SweepSettings(engine="keras", pack=4, repeats=2), tiny_space, tiny_rings) == 1
    assert pack_size(SweepSettings(engine="keras", pack="auto", trials=64), tiny_space, tiny_rings) == 16
    for bad in (0, -1, "2x", 1.5, True):
        with pytest.raises(SettingsError, match="pack: got"):
            SweepSettings(engine="keras", pack=bad)


def test_cli_pack_flag(capsys):
    from regsweep.cli import add_sweep_args, sweep_settings
    from regsweep.cli_support import Parser
    from sweeps.rings import main

    parser = Parser(prog="t")
    add_sweep_args(parser, study="t", trials=3)
    assert sweep_settings(parser.parse_args(["--engine", "keras", "--pack", "auto"])).pack == "auto"
    assert sweep_settings(parser.parse_args(["--engine", "keras", "--pack", "8"])).pack == 8
    assert sweep_settings(parser.parse_args([])).pack == 1
    assert main(["--pack", "0"]) == 2
    assert "--pack: got 0; allowed: an int in [1, 256]" in capsys.readouterr().err
