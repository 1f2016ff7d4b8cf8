"""Keras end to end on tabular data: the gap in inference mode, preprocessing layers equal to the
arrays trained on, and a CSV sweep whose saved best model predicts on raw rows (a missing cell,
an unseen category) with test figures for the top-K. Real CSV files, SQLite and Keras training."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_preprocessing import write_cancer_csv

from regsweep import SearchSpace
from regsweep.data import from_csv
from regsweep.space import TrialConfig

pytestmark = pytest.mark.slow


def _config(**kw) -> TrialConfig:
    base = {"regularizer": "l2", "lam": 1e-4, "dropout": 0.5, "depth": 1, "width": 16, "patience": 5, "max_epochs": 4,
            "batch_size": 64}
    return TrialConfig(**{**base, **kw})


def test_gap_is_measured_in_inference_mode_at_the_best_epoch(tmp_path):
    from regsweep.objective import train_config

    data = from_csv(write_cancer_csv(tmp_path), target="target")
    result = train_config(_config(), data, seed=0, keep_model=True)
    network = result.model.get_layer("regsweep_mlp")
    evaluated = network.evaluate(data.x_train, data.y_train, verbose=0, return_dict=True)["data_loss"]
    assert result.train_loss == pytest.approx(evaluated, rel=1e-4)  # no dropout, final (best) weights
    assert result.train_loss_dropout == result.train_curve[result.best_epoch - 1]
    assert result.train_loss != pytest.approx(result.train_loss_dropout, rel=1e-3)  # dropout 0.5 changes it
    assert result.gap == pytest.approx(result.val_loss - result.train_loss)


def test_preprocessing_layers_compute_what_training_saw(tmp_path):
    from regsweep.objective import train_config
    from regsweep.preprocessing import raw_inputs, transform

    path = write_cancer_csv(tmp_path)
    data = from_csv(path, target="target")
    model = train_config(_config(max_epochs=1), data, seed=0, keep_model=True).model
    rows = pd.read_csv(path).drop(columns="target").head(6)
    rows.loc[0, "mean texture"] = np.nan
    rows.loc[1, "shape"] = "hexagon"  # never seen in training
    raw = model.predict(raw_inputs(data.preprocessing, rows), verbose=0)
    arrays = model.get_layer("regsweep_mlp").predict(transform(data.preprocessing, rows), verbose=0)
    assert np.isfinite(raw).all() and np.abs(raw - arrays).max() < 1e-5


@pytest.mark.parametrize("engine", [{}, {"engine": "keras"}], ids=["slots", "keras"])
def test_csv_sweep_best_model_predicts_raw_rows_and_reports_test_figures(tmp_path, engine):
    import regsweep
    from regsweep.preprocessing import raw_inputs
    from regsweep.pareto import best_trial
    from regsweep.report import held_out_results, leaderboard

    path = write_cancer_csv(tmp_path)
    data = from_csv(path, target="target", test_fraction=0.2)
    space = SearchSpace(regularizers=("none", "l2"), depth=1, width=(4, 16), patience=2, max_epochs=3, batch_size=64)
    study = regsweep.run_sweep(space, data, study="cancer", storage=f"sqlite:///{tmp_path / 'c.db'}", trials=4,
                               workers=1, seed=0, keep_top=2, pruner="none", out=str(tmp_path / "out"), **engine)
    board = leaderboard(study)
    best = best_trial(study)
    assert board.iloc[0]["trial"] == best.number
    tested = held_out_results(study)
    assert len(tested) == 2 and best.number in tested
    assert {"test_loss", "test_metric", "test_balanced_accuracy", "test_roc_auc"} <= set(tested[best.number])
    assert 0 <= best.user_attrs["val_balanced_accuracy"] <= 1 and 0 <= best.user_attrs["val_roc_auc"] <= 1
    assert board["val_roc_auc"].notna().all()  # recorded by every complete trial, on either engine
    assert board["test_loss"].notna().sum() == 2 and board.iloc[0]["test_loss"] == tested[best.number]["test_loss"]
    rows = pd.read_csv(path).drop(columns="target").head(5)
    rows.loc[0, "mean texture"] = np.nan
    rows.loc[1, "shape"] = "hexagon"
    model = regsweep.load_best_model(study)
    assert model.predict(raw_inputs(data.preprocessing, rows), verbose=0).shape == (5, 1)
    labels = regsweep.predict(study, rows)
    assert set(labels) <= {"benign", "malignant"} and len(labels) == 5
    meta = study.user_attrs["regsweep"]["data"]
    assert meta["preprocessing"] == data.preprocessing and meta["classes"] == ["benign", "malignant"]


@pytest.mark.parametrize("engine", [{"engine": "keras"}, {"slots": 3}], ids=["keras", "slots"])
def test_folds_sweep_records_the_mean_std_and_a_curve_per_fold(tmp_path, engine):
    from test_preprocessing import write_wine_csv

    import regsweep
    from regsweep.report import held_out_results, leaderboard

    data = from_csv(write_wine_csv(tmp_path), target="target", folds=3, test_fraction=0.2)
    space = SearchSpace(regularizers=("l2",), depth=1, width=8, patience=2, max_epochs=3, batch_size=64)
    study = regsweep.run_sweep(space, data, study="wine", storage=f"sqlite:///{tmp_path / 'w.db'}", trials=2,
                               workers=1, seed=0, keep_top=1, pruner="none", out=str(tmp_path / "out"), **engine)
    trial = regsweep.best_trial(study)
    attrs = trial.user_attrs
    assert attrs["folds"] == 3 and len(attrs["fold_val_curves"]) == 3 and len(attrs["fold_val_losses"]) == 3
    assert trial.value == pytest.approx(np.mean(attrs["fold_val_losses"]))
    assert attrs["val_loss_std"] == pytest.approx(np.std(attrs["fold_val_losses"], ddof=1))
    assert attrs["model_val_loss"] == attrs["fold_val_losses"][attrs["model_fold"]]
    board = leaderboard(study)
    assert board["folds"].tolist() == [3, 3] and "val_loss_std" in board.columns
    assert set(held_out_results(study)) == {trial.number}
    rows = pd.read_csv(tmp_path / "wine.csv").drop(columns="target").head(3)
    assert set(regsweep.predict(study, rows)) <= {"barbera", "barolo", "grignolino"}
