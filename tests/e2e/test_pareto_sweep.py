"""Multi-objective sweeps end to end: real Keras training on 120 rings samples, real SQLite files,
real worker processes. Values, the pruning rule, resume with exact totals, both engines, the best model."""

from __future__ import annotations

import json
import math

import optuna
import pytest
from optuna.trial import TrialState
from sweep_process import counted_trials

from regsweep import SearchSpace, load_best_model, resume_sweep, run_sweep
from regsweep.cli import main
from regsweep.data import make_rings
from regsweep.errors import StudyMismatchError
from regsweep.pareto import best_trial, study_objectives, study_ranks
from regsweep.report import leaderboard
from regsweep.runner import SweepSettings, study_metadata
from regsweep.storage import count_states, load_study, open_study

pytestmark = pytest.mark.slow

MO = ("val_loss", "n_params")
SPACE = SearchSpace(depth=(1, 2), width=(2, 8), patience=(1, 2), max_epochs=3, batch_size=32)
# Patience >= 4 with 5 epochs: early stopping cannot end a trial before the peer rule's warmup (3 epochs).
LATE_STOP = SearchSpace(depth=(1, 1), width=(2, 4), patience=(4, 5), max_epochs=5, batch_size=32)


def _sweep(url, trials, space=SPACE, **kw):
    return run_sweep(space, make_rings(n=120, seed=0), sweep="rings", study="mo", storage=url, trials=trials,
                     progress=False, objectives=MO, **kw)


def _assert_values_match_attributes(study):
    for trial in study.get_trials(states=(TrialState.COMPLETE,)):
        assert trial.values == [trial.user_attrs["val_loss"], trial.user_attrs["n_params"]]
    for trial in study.get_trials(states=(TrialState.PRUNED,)):
        assert trial.values is None
        assert {"val_loss", "n_params", "val_curve"} <= set(trial.user_attrs)


def test_multi_objective_sweep_resumes_with_parallel_workers_to_exact_totals(tmp_path):
    url = f"sqlite:///{tmp_path / 'mo.db'}"
    _sweep(url, 2, sampler="nsga2")
    study = resume_sweep(study="mo", storage=url, trials=5, workers=2, threads_per_worker=1)
    study = load_study(url, "mo", heartbeat=False)
    counts = count_states(study)
    finished = counted_trials(study)
    assert counts["finished"] == 5 and len(finished) == 5
    assert study_objectives(study) == MO and study.metric_names == list(MO)
    assert 0 in {t.user_attrs["worker"] for t in finished}  # the first 2 trials ran in this process
    _assert_values_match_attributes(study)
    with pytest.raises(StudyMismatchError, match=r"^objectives: study 'mo' was made with"):
        run_sweep(SPACE, make_rings(n=120, seed=0), study="mo", storage=url, trials=7, progress=False)
    assert len(load_study(url, "mo", heartbeat=False).trials) == len(study.trials)  # nothing written


def test_multi_objective_sweep_in_slots_and_its_best_model(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'slots.db'}"
    dataset = make_rings(n=120, seed=0)
    study = _sweep(url, 4, slots=2, pruner="none")
    assert {t.user_attrs["engine"] for t in counted_trials(study)} == {"slots"}
    assert count_states(study)["COMPLETE"] == 4
    _assert_values_match_attributes(study)
    best = best_trial(study)
    assert study_ranks(study)[best.number] == 1
    model = load_best_model(study)  # models of the whole front are kept, so the best rule's pick has one
    loss = model.evaluate(dataset.x_val, dataset.y_val, return_dict=True, verbose=0)["data_loss"]
    assert loss == pytest.approx(best.user_attrs["val_loss"], rel=1e-4)
    assert main(["best", "--study", "mo", "--storage", url, "--all-pareto"]) == 0
    front = json.loads(capsys.readouterr().out)
    assert sum(t["best"] for t in front) == 1 and {t["trial"] for t in front} == {
        n for n, rank in study_ranks(study).items() if rank == 1}


def _study_with_strong_small_peers(url, trials):
    """A Pareto study holding 3 finished 1-parameter trials whose validation loss is 0.001 from epoch 1."""
    settings = SweepSettings(study="mo", storage=url, trials=trials, objectives=MO)
    study = open_study(url, "mo", meta=study_metadata(LATE_STOP, make_rings(n=120, seed=0), settings, "rings"),
                       directions=["minimize", "minimize"])
    for _ in range(3):
        study.add_trial(optuna.trial.create_trial(
            state=TrialState.COMPLETE, values=[0.001, 1],
            user_attrs={"val_loss": 0.001, "n_params": 1, "val_curve": [0.001] * 5}))


@pytest.mark.parametrize("engine, new", [("slots", 2), ("keras", 1)], ids=["slots", "keras"])
def test_peer_rule_prunes_in_a_multi_objective_sweep_and_records_loss_and_size(tmp_path, engine, new):
    url = f"sqlite:///{tmp_path / 'prune.db'}"
    _study_with_strong_small_peers(url, 3 + new)
    study = _sweep(url, 3 + new, space=LATE_STOP, engine=engine)
    pruned = study.trials[3:]
    assert [t.state for t in pruned] == [TrialState.PRUNED] * new
    for trial in pruned:
        assert trial.user_attrs["epochs"] == 3  # pruned at the end of the warmup epoch
        assert trial.user_attrs["n_params"] > 1 and math.isfinite(trial.user_attrs["val_loss"])
    _assert_values_match_attributes(study)
    board = leaderboard(study)
    assert list(board["state"]) == ["complete"] * 3 + ["pruned"] * new  # front first; pruned trials have no rank
    assert board["front"].isna().sum() == new


def test_no_pruner_means_no_pruning_in_a_multi_objective_sweep(tmp_path):
    url = f"sqlite:///{tmp_path / 'noprune.db'}"
    _study_with_strong_small_peers(url, 4)
    study = _sweep(url, 4, space=LATE_STOP, pruner="none")
    assert study.trials[3].state == TrialState.COMPLETE


@pytest.mark.postgres
def test_multi_objective_sweep_on_postgres_with_a_dask_cluster(postgres_url, tmp_path, monkeypatch):
    pytest.importorskip("distributed", reason="needs dask.distributed (pip install 'regsweep[dask]')")
    monkeypatch.chdir(tmp_path)  # artifacts of a PostgreSQL study go to studies/<study>/ here
    _sweep(postgres_url, 4, workers=2, backend="dask", keep_top=1)
    study = load_study(postgres_url, "mo", heartbeat=False)
    counts = count_states(study)
    assert counts["finished"] == 4 and counts["RUNNING"] == 0
    assert study.metric_names == list(MO) and len(study.directions) == 2
    _assert_values_match_attributes(study)
    assert set(leaderboard(study)["pareto"]) <= {True, False} and leaderboard(study)["pareto"].any()


def test_a_joining_worker_reads_the_objectives_from_the_study(tmp_path):
    from regsweep.runner import join_sweep
    from regsweep.storage import study_meta

    url = f"sqlite:///{tmp_path / 'join.db'}"
    study = _sweep(url, 2, pruner="none")
    study.set_user_attr("regsweep", {**study_meta(study), "total": 3})  # as if the sweep were still running
    join_sweep(study="mo", storage=url, progress=False)
    study = load_study(url, "mo", heartbeat=False)
    assert count_states(study)["COMPLETE"] == 3 and len(study.trials) == 3
    _assert_values_match_attributes(study)
