"""Tabular data as users have it: scaling, categories, missing cells, text labels, float targets,
stratified splits, a test split, and one definition of best. Fast: no Keras training here.

The tables are scikit-learn's shipped datasets (no download), written as real CSV files.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from regsweep.data import from_arrays, from_csv, load_dataset
from regsweep.errors import DataError
from regsweep.preprocessing import feature_names, fit_spec, transform

ROOT = Path(__file__).resolve().parents[1]


def write_cancer_csv(tmp_path: Path) -> Path:
    """breast_cancer (569 rows, binary) as text labels, with a text column and missing cells."""
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame.iloc[:, [0, 1, 2, 3, -1]].copy()
    rng = np.random.default_rng(0)
    frame["shape"] = rng.choice(["round", "oval", "flat"], len(frame))
    frame.loc[rng.choice(len(frame), 40, replace=False), "mean texture"] = np.nan
    frame["target"] = np.where(frame["target"] == 1, "benign", "malignant")
    path = tmp_path / "cancer.csv"
    frame.to_csv(path, index=False)
    return path


def write_wine_csv(tmp_path: Path) -> Path:
    from sklearn.datasets import load_wine

    bunch = load_wine(as_frame=True)
    frame = bunch.frame.copy()
    frame["target"] = np.asarray(["barolo", "grignolino", "barbera"])[bunch.target]
    path = tmp_path / "wine.csv"
    frame.to_csv(path, index=False)
    return path


def test_numeric_columns_are_scaled_with_training_statistics_only(tmp_path):
    data = from_csv(write_wine_csv(tmp_path), target="target", test_fraction=0.2)
    assert np.allclose(data.x_train.mean(axis=0), 0, atol=1e-5)
    assert np.allclose(data.x_train.std(axis=0), 1, atol=1e-4)
    assert abs(data.x_test.mean()) > 1e-4  # test rows did not take part in the fit
    raw = pd.read_csv(tmp_path / "wine.csv")
    alcohol = data.preprocessing["columns"][0]
    assert alcohol["name"] == "alcohol" and alcohol["mean"] != pytest.approx(raw["alcohol"].mean(), rel=1e-9)
    unscaled = from_csv(tmp_path / "wine.csv", target="target", test_fraction=0.2, scale=False)
    assert unscaled.x_train[:, 0].mean() == pytest.approx(alcohol["mean"], rel=1e-5)
    assert unscaled.source["scale"] is False and load_dataset(unscaled.source).fingerprint() == unscaled.fingerprint()


def test_text_column_is_one_hot_with_an_unseen_slot():
    train = pd.DataFrame({"size": [1.0, 2.0, 3.0, 4.0], "color": ["red", "blue", "red", "green"]})
    spec = fit_spec(train)
    assert spec["columns"][1] == {"name": "color", "kind": "categorical", "vocabulary": ["blue", "green", "red"]}
    assert feature_names(spec) == ["size", "color=[unseen]", "color=blue", "color=green", "color=red"]
    x = transform(spec, pd.DataFrame({"size": [2.5], "color": ["purple"]}))
    assert x.tolist()[0][1:] == [1.0, 0.0, 0.0, 0.0]


def test_missing_cells_get_the_training_mean_and_an_indicator(tmp_path):
    data = from_csv(write_cancer_csv(tmp_path), target="target", scale=False, seed=3)
    column = next(c for c in data.preprocessing["columns"] if c["name"] == "mean texture")
    names = feature_names(data.preprocessing)
    value, flag = names.index("mean texture"), names.index("mean texture_missing")
    assert column["missing"] is True
    missing = data.x_train[:, flag] == 1
    assert 0 < missing.sum() < 40 and np.all(data.x_train[missing, value] == np.float32(column["mean"]))
    assert column["mean"] == pytest.approx(float(data.x_train[~missing, value].mean()), rel=1e-5)
    assert np.isfinite(data.x_train).all() and np.isfinite(data.x_val).all()


def test_text_labels_become_class_ids_and_are_recorded(tmp_path):
    data = from_csv(write_wine_csv(tmp_path), target="target")
    assert data.task == "multiclass" and data.n_classes == 3
    assert data.classes == ["barbera", "barolo", "grignolino"]
    assert data.describe()["classes"] == data.classes and data.describe()["preprocessing"]["n_features"] == 13
    binary = from_csv(write_cancer_csv(tmp_path), target="target")
    assert binary.task == "binary" and binary.classes == ["benign", "malignant"] and binary.y_train.shape[1] == 1


def test_float_targets_are_regression_and_whole_number_floats_ask_for_a_task():
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    assert from_arrays(x, y).task == "regression"  # diabetes' target: whole numbers, 214 distinct
    levels = np.array([0.0, 1.0, 2.0] * 20)
    with pytest.raises(DataError, match=r"y: float target with 3 whole-number values \(0, 1, 2\) is ambiguous"):
        from_arrays(np.zeros((60, 2)), levels)
    assert from_arrays(np.zeros((60, 2)), levels, task="multiclass").n_classes == 3
    assert from_arrays(np.zeros((60, 2)), levels, task="regression").task == "regression"
    assert from_arrays(np.zeros((60, 2)), np.array([0.0, 1.0] * 30)).task == "binary"


def test_classification_splits_are_stratified_and_seeded():
    y = np.array([0] * 90 + [1] * 10)  # 10% positives
    x = np.arange(100.0).reshape(-1, 1)
    data = from_arrays(x, y, val_fraction=0.2, test_fraction=0.2, seed=5)
    assert int(data.y_test.sum()) == 2 and len(data.y_test) == 20
    assert int(data.y_val.sum()) == 2 and len(data.y_val) == 16
    rows = [set(a.ravel().tolist()) for a in (data.x_train, data.x_val, data.x_test)]
    assert not (rows[0] & rows[1] or rows[0] & rows[2] or rows[1] & rows[2]) and sum(map(len, rows)) == 100
    again = from_arrays(x, y, val_fraction=0.2, test_fraction=0.2, seed=5)
    assert again.fingerprint() == data.fingerprint()
    assert from_arrays(x, y, val_fraction=0.2, seed=6).fingerprint() != from_arrays(x, y, val_fraction=0.2, seed=5).fingerprint()


def test_test_split_from_a_fraction_or_a_file_is_rebuilt_by_workers(tmp_path):
    path = write_cancer_csv(tmp_path)
    data = from_csv(path, target="target", test_fraction=0.25, val_fraction=0.2)
    assert len(data.x_test) == pytest.approx(0.25 * 569, abs=2) and data.has_test
    rebuilt = load_dataset(data.source)
    assert rebuilt.fingerprint() == data.fingerprint() and rebuilt.preprocessing == data.preprocessing
    frame = pd.read_csv(path)
    frame.iloc[:100].to_csv(tmp_path / "test.csv", index=False)
    frame.iloc[100:].to_csv(tmp_path / "train.csv", index=False)
    files = from_csv(tmp_path / "train.csv", target="target", test_path=str(tmp_path / "test.csv"))
    assert len(files.x_test) == 100 and len(files.x_train) + len(files.x_val) == 469


def test_in_memory_tabular_data_keeps_its_preprocessing_for_workers(tmp_path):
    from regsweep.data import from_frame

    frame = pd.read_csv(write_cancer_csv(tmp_path))
    data = from_frame(frame, target="target", test_fraction=0.2)
    source = data.save_npz(tmp_path / "data.npz")
    again = load_dataset(source)
    assert again.fingerprint() == data.fingerprint() and again.classes == data.classes
    assert again.preprocessing == data.preprocessing and again.has_test


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        (["--target", "nope"], "target: column 'nope'"),
        (["--target", "target", "--test-fraction", "1.5"], "--test-fraction"),
        (["--target", "mean radius", "--task", "binary"], "non-integer labels"),
        (["--target", "target", "--task", "regression"], "task: 'regression' for text labels"),
    ],
)
def test_cli_csv_bad_input_is_one_line_exit_2_nothing_written(tmp_path, flags, match):
    path = write_cancer_csv(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "regsweep.cli", "run", "--csv", str(path), *flags,
                           "--storage", f"sqlite:///{tmp_path / 's.db'}", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and match in proc.stderr
    assert not (tmp_path / "s.db").exists() and not (tmp_path / "out").exists()


def test_one_definition_of_best_skips_a_better_pruned_trial(tmp_path, capsys):
    import optuna

    from regsweep.cli import main
    from regsweep.pareto import best_trial
    from regsweep.report import leaderboard

    url = f"sqlite:///{tmp_path / 'b.db'}"
    study = optuna.create_study(study_name="b", storage=url)
    for value, state in ((0.5, "COMPLETE"), (0.1, "PRUNED"), (0.3, "COMPLETE"), (0.3, "COMPLETE")):
        trial = study.ask()
        trial.set_user_attr("val_loss", value)
        if state == "PRUNED":
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, value)
    assert best_trial(study).number == 2  # lowest complete value, ties to the lower number
    board = leaderboard(study)
    assert board.iloc[0]["trial"] == 2 and board.iloc[0]["state"] == "complete"
    assert board["state"].tolist()[-1] == "pruned"
    assert main(["best", "--study", "b", "--storage", url]) == 0
    assert '"trial": 2' in capsys.readouterr().out


def test_folds_partition_the_non_test_rows_each_with_its_own_preprocessing(tmp_path):
    path = write_wine_csv(tmp_path)
    data = from_csv(path, target="target", folds=4, test_fraction=0.2)
    assert len(data.folds) == 4 and data.fingerprint() == data.folds[0].fingerprint()
    val_sizes = [len(fold.y_val) for fold in data.folds]
    assert sum(val_sizes) == len(data.y_train) + len(data.y_val) and max(val_sizes) - min(val_sizes) <= 3
    for fold in data.folds:  # stratified: each class about a quarter in every fold
        assert np.bincount(fold.y_val, minlength=3).min() >= 9
        assert np.allclose(fold.x_train.mean(axis=0), 0, atol=1e-5)  # fitted on the fold's own training rows
    assert data.folds[0].preprocessing != data.folds[1].preprocessing
    assert load_dataset(data.source).folds[3].fingerprint() == data.folds[3].fingerprint()
    assert data.describe()["folds"] == 4
    with pytest.raises(DataError, match="folds: got 0"):
        from_csv(path, target="target", folds=0)


def test_integer_labels_that_are_not_ids_become_classes(tmp_path):
    path = tmp_path / "grades.csv"
    rows = ["x,grade"] + [f"{i},{[3, 5, 10][i % 3]}" for i in range(60)]
    path.write_text("\n".join(rows) + "\n")
    data = from_csv(path, target="grade")
    assert data.task == "multiclass" and data.n_classes == 3 and data.classes == [3, 5, 10]
    assert from_csv(path, target="grade", task="regression").task == "regression"
