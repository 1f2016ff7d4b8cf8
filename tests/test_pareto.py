"""Multi-objective sweeps without training: objectives, fronts and ranks, hypervolume, the best rule,
the peer pruning rule, the leaderboard and ``regsweep best`` on a real SQLite study made by ask/tell,
and bad objective flags (one line, exit 2, nothing written)."""

from __future__ import annotations

import json

import pytest
from test_bad_input import check_rejected, run_cli, snapshot, template, world  # noqa: F401 (fixtures)

from regsweep import SearchSpace
from regsweep.cli import main
from regsweep.data import make_rings
from regsweep.errors import RegsweepError, SettingsError
from regsweep.pareto import (
    PeerPruner, best_trial, check_objectives, front_ranks, front_trials, hypervolume_2d, pareto_indices, pick_best,
    study_objectives, study_ranks,
)
from regsweep.report import leaderboard, regularizer_summary
from regsweep.runner import SweepSettings, run_sweep, study_metadata
from regsweep.storage import load_study, open_study

MO = ("val_loss", "n_params")


# -- objectives -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("good", [("val_loss",), "val_loss", ["val_loss", "n_params"], MO + ("train_seconds",),
                                  ("val_loss", "weight_l2"), ("val_loss", "n_params", "weight_l2")])
def test_objectives_accept_val_loss_first_then_measures(good):
    assert check_objectives(good)[0] == "val_loss"


@pytest.mark.parametrize("bad", [(), ("n_params",), ("n_params", "val_loss"), ("val_loss", "size"),
                                 ("val_loss", "n_params", "n_params"), 3, ("val_loss", 3)])
def test_objectives_reject_other_values_naming_the_field(bad):
    with pytest.raises(SettingsError, match=r"^objectives: got .*allowed: 'val_loss' first"):
        check_objectives(bad)


def test_settings_refuse_hyperband_with_several_objectives():
    with pytest.raises(SettingsError, match="pruner: got 'hyperband'"):
        SweepSettings(objectives=MO, pruner="hyperband")
    assert SweepSettings(objectives=["val_loss", "n_params"], sampler="nsga2").objectives == MO


# -- fronts, ranks, hypervolume --------------------------------------------------------------------------
def test_front_ranks_sort_by_domination():
    points = [(0.3, 100), (0.2, 400), (0.4, 500), (0.2, 400), (0.5, 50), (0.6, 600)]
    assert front_ranks(points) == [1, 1, 2, 1, 1, 3]
    assert pareto_indices(points) == [0, 1, 3, 4]
    assert front_ranks([]) == []


def test_hypervolume_of_a_staircase_and_points_outside_the_box():
    # sorted by the first objective: (0.2, 400) then (0.3, 100): 0.1 * 600 + 0.7 * 900
    assert hypervolume_2d([(0.3, 100), (0.2, 400)], reference=(1.0, 1000)) == pytest.approx(690.0)
    assert hypervolume_2d([(0.3, 100), (0.2, 400), (0.5, 500)], reference=(1.0, 1000)) == pytest.approx(690.0)
    assert hypervolume_2d([(2.0, 100)], reference=(1.0, 1000)) == 0.0
    assert hypervolume_2d([], reference=(1.0, 1.0)) == 0.0


def test_best_rule_picks_the_smallest_model_within_tolerance_of_the_lowest_front_loss():
    candidates = [(0, (0.300, 100)), (1, (0.2995, 400)), (2, (0.200, 900)), (3, (0.201, 800)), (4, (0.2019, 50_000))]
    assert pick_best(candidates, MO) == 3  # 0.201 <= 0.200 * 1.01; fewer parameters than trial 2
    assert pick_best(candidates, MO, tolerance=0.0) == 2
    assert pick_best(candidates, MO, tolerance=0.6) == 0
    # complexity is the first of n_params / weight_l2, wherever it is listed
    assert pick_best([(0, (0.2, 9.0, 5)), (1, (0.201, 1.0, 900))], ("val_loss", "train_seconds", "n_params")) == 0


def test_peer_rule_prunes_only_against_enough_smaller_peers_after_warmup():
    peers = PeerPruner(((10, (0.5, 0.4, 0.3)), (20, (0.5, 0.4, 0.2)), (30, (0.6, 0.5, 0.4)), (5000, (0.1, 0.1, 0.1))))
    assert not peers.should_prune(30, [0.9, 0.9])  # warmup: 3 epochs
    assert peers.should_prune(30, [0.9, 0.9, 0.9])  # median of 0.3, 0.2, 0.4 is 0.3
    assert not peers.should_prune(30, [0.9, 0.9, 0.25])  # best so far beats the median
    assert not peers.should_prune(20, [0.9, 0.9, 0.9])  # only 2 peers no bigger than 20 parameters
    assert not PeerPruner(()).should_prune(10, [1.0] * 5)


# -- a real study made by ask/tell ---------------------------------------------------------------------------
ROWS = [  # (state, val_loss, n_params, regularizer)
    ("COMPLETE", 0.30, 100, "l2"), ("COMPLETE", 0.20, 400, "none"), ("COMPLETE", 0.40, 500, "l1"),
    ("COMPLETE", 0.202, 350, "l1"), ("PRUNED", 0.10, 10, "l2"), ("COMPLETE", 0.50, 50, "l1_l2"),
]


def make_study(url: str, name: str = "pareto", objectives: tuple[str, ...] = MO):
    """A study with the rows above: values and recorded attributes as the runner leaves them."""
    import optuna
    from optuna.trial import TrialState

    settings = SweepSettings(study=name, storage=url, trials=len(ROWS), objectives=objectives)
    space = SearchSpace(depth=(1, 2), width=(2, 8), max_epochs=3)
    meta = study_metadata(space, make_rings(n=120, seed=0), settings, "test")
    study = open_study(url, name, meta=meta, directions=["minimize"] * len(objectives))
    kinds = optuna.distributions.CategoricalDistribution(["none", "l1", "l2", "l1_l2"])
    for state, loss, size, kind in ROWS:
        attrs = {"val_loss": loss, "n_params": size, "weight_l2": 1.0, "train_seconds": 1.0, "val_curve": [loss] * 3}
        values = ([loss, size] if len(objectives) > 1 else [loss]) if state == "COMPLETE" else None
        study.add_trial(optuna.trial.create_trial(state=TrialState[state], values=values, params={"regularizer": kind},
                                                  distributions={"regularizer": kinds}, user_attrs=attrs))
    return study


def test_study_records_objectives_and_metric_names(sqlite_url):
    make_study(sqlite_url)
    again = load_study(sqlite_url, "pareto", heartbeat=False)
    assert study_objectives(again) == MO
    assert again.metric_names == list(MO)
    assert len(again.directions) == 2
    assert study_ranks(again) == {0: 1, 1: 1, 2: 2, 3: 1, 5: 1}  # the pruned trial 4 has no rank


def test_leaderboard_has_front_ranks_sorted_by_front_then_loss(sqlite_url):
    board = leaderboard(make_study(sqlite_url))
    assert list(board.columns[:5]) == ["rank", "trial", "state", "front", "pareto"]
    assert list(board["trial"]) == [1, 3, 0, 5, 2, 4]
    assert list(board["front"].astype("float").fillna(0)) == [1, 1, 1, 1, 2, 0]
    assert list(board["pareto"]) == [True, True, True, True, False, False]
    pruned = board[board["trial"] == 4].iloc[0]
    assert (pruned["state"], pruned["val_loss"], pruned["n_params"]) == ("pruned", 0.10, 10)
    summary = regularizer_summary(board).set_index("regularizer")
    assert summary["on_front"].to_dict() == {"none": 1, "l1": 1, "l2": 1, "l1_l2": 1}
    assert list(leaderboard(make_study(sqlite_url.replace("study.db", "b.db"), "b"), sort_by="trial")["trial"]) == \
        [0, 1, 2, 3, 4, 5]


def test_single_objective_leaderboard_is_unchanged(sqlite_url):
    board = leaderboard(make_study(sqlite_url, "single", objectives=("val_loss",)))
    assert "front" not in board.columns and "pareto" not in board.columns
    # complete trials by val_loss, then the pruned one (rank 1 is the best trial, never a pruned one)
    assert list(board["trial"]) == [1, 3, 0, 2, 5, 4]
    assert "on_front" not in regularizer_summary(board).columns


def test_best_rule_on_a_study_and_the_best_command(sqlite_url, capsys):
    study = make_study(sqlite_url)
    assert best_trial(study).number == 3  # 0.202 within 1 % of 0.20, 350 < 400 parameters
    assert best_trial(study, tolerance=0.0).number == 1
    assert [t.number for t in front_trials(study)] == [1, 3, 0, 5]
    assert main(["best", "--study", "pareto", "--storage", sqlite_url]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["trial"], shown["val_loss"], shown["n_params"]) == (3, 0.202, 350)
    assert main(["best", "--study", "pareto", "--storage", sqlite_url, "--tolerance", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["trial"] == 1
    assert main(["best", "--study", "pareto", "--storage", sqlite_url, "--all-pareto"]) == 0
    front = json.loads(capsys.readouterr().out)
    assert [(t["trial"], t["best"]) for t in front] == [(1, False), (3, True), (0, False), (5, False)]


def test_objectives_bad_in_the_python_api_write_nothing(tmp_path):
    with pytest.raises(RegsweepError, match="objectives"):
        run_sweep(SearchSpace(max_epochs=2), make_rings(n=120), study="x", storage=f"sqlite:///{tmp_path}/x.db",
                  objectives=("n_params",))
    assert list(tmp_path.iterdir()) == []


# -- bad flags on the command line: one line, exit 2, nothing written ------------------------------------------
BASE = ["--study", "rings", "--trials", "2", "--workers", "1", "--no-plots", "--no-progress", "--n", "120"]
EXISTING = ["--storage", "sqlite:///{w}/existing.db"]
NEW = ["--storage", "sqlite:///{w}/new.db"]
SWEEP_CASES = [
    ("unknown_objective", [*NEW, *BASE, "--objectives", "val_loss", "size"], ["objectives", "size"]),
    ("loss_not_first", [*NEW, *BASE, "--objectives", "n_params", "val_loss"], ["objectives", "'val_loss' first"]),
    ("objective_twice", [*NEW, *BASE, "--objectives", "val_loss", "n_params", "n_params"], ["objectives"]),
    ("objectives_empty", [*NEW, *BASE, "--objectives"], ["--objectives"]),
    ("hyperband_with_two", [*NEW, *BASE, "--objectives", "val_loss", "n_params", "--pruner", "hyperband"],
     ["pruner", "hyperband"]),
    ("unknown_sampler", [*NEW, *BASE, "--sampler", "nsga3"], ["--sampler", "nsga3"]),
    ("existing_study_other_objectives", [*EXISTING, *BASE, "--objectives", "val_loss", "n_params"],
     ["objectives", "'rings'", "['val_loss']"]),
]
CLI_CASES = [
    ("tolerance_above_one", ["best", "--study", "rings", *EXISTING, "--tolerance", "2"], ["--tolerance", "2"]),
    ("tolerance_not_a_number", ["best", "--study", "rings", *EXISTING, "--tolerance", "1%"], ["--tolerance", "1%"]),
    ("all_pareto_single_objective", ["best", "--study", "rings", *EXISTING, "--all-pareto"], ["all-pareto", "one objective"]),
]


@pytest.mark.parametrize(("argv", "words"), [c[1:] for c in SWEEP_CASES], ids=[c[0] for c in SWEEP_CASES])
def test_sweep_rejects_bad_objective_flags_before_writing(world, argv, words):  # noqa: F811
    before = snapshot(world)
    check_rejected(run_cli(["-m", "sweeps.rings"], argv, world), words, before, world)


@pytest.mark.parametrize(("argv", "words"), [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_best_rejects_bad_flags_before_writing(world, argv, words):  # noqa: F811
    before = snapshot(world)
    check_rejected(run_cli(["-m", "regsweep.cli"], argv, world), words, before, world)


def test_optuna_dashboard_sees_a_pareto_study_with_its_metric_names(sqlite_url):
    import threading
    import urllib.request

    from regsweep.dashboard import make_server

    study = make_study(sqlite_url)
    server = make_server(study, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        with urllib.request.urlopen(f"http://{host}:{port}/api/studies/{study._study_id}", timeout=30) as response:
            detail = json.loads(response.read())
    finally:
        server.shutdown()
        server.server_close()
    assert detail["directions"] == ["minimize", "minimize"]
    assert detail["objective_names"] == list(MO)  # the names the dashboard labels its axes with
    assert sorted(t["number"] for t in detail["best_trials"]) == [0, 1, 3, 5]  # Optuna's front is ours


def test_models_of_the_whole_front_are_kept_in_a_pareto_study(sqlite_url):
    from regsweep.artifacts import kept_trials

    study = make_study(sqlite_url)
    assert kept_trials(study, 1) == {0, 1, 3, 5}  # not the top 1 by loss: the best rule may pick any of them
    assert kept_trials(study, 3, running=(9, (0.25, 200))) == {0, 1, 3, 5, 9}
    assert kept_trials(study, 3, running=(9, (0.1, 10))) == {9}  # dominates the whole front


def test_complexity_plot_and_report_of_a_pareto_study(sqlite_url, tmp_path):
    from regsweep.html_report import write_report
    from regsweep.plots import write_plots

    study = make_study(sqlite_url)
    [path] = write_plots(study, tmp_path / "plots", which=("complexity",))
    assert path.name == "complexity.png" and path.stat().st_size > 10_000
    html = write_report(study, tmp_path / "report.html", plots=False).read_text()
    assert "<th>front</th>" in html and "<th>on_front</th>" in html and "#3: val_loss 0.2020" in html
