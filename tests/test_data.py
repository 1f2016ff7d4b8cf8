"""Dataset construction, generators, files and validation."""

from __future__ import annotations

import numpy as np
import pytest

from regsweep.data import from_arrays, from_csv, from_npz, load_dataset, make_linear, make_rings
from regsweep.errors import DataError


def test_rings_is_a_blob_inside_a_ring():
    data = make_rings(n=400, seed=1, noise=0.5)
    x = np.vstack([data.x_train, data.x_val])
    y = np.concatenate([data.y_train, data.y_val]).ravel()
    radius = np.linalg.norm(x, axis=1)
    assert data.task == "binary" and data.input_shape == (2,)
    assert np.median(radius[y == 0]) < 2 < np.median(radius[y == 1])
    assert 4 < np.median(radius[y == 1]) < 6
    assert len(data.x_val) == 80


def test_linear_clusters_are_centred_at_plus_minus_two():
    data = make_linear(n=2000, seed=0, noise=0.5)
    x = np.vstack([data.x_train, data.x_val])
    y = np.concatenate([data.y_train, data.y_val]).ravel()
    np.testing.assert_allclose(x[y == 0].mean(axis=0), [-2, -2], atol=0.1)
    np.testing.assert_allclose(x[y == 1].mean(axis=0), [2, 2], atol=0.1)


def test_generators_are_seeded():
    assert make_rings(n=100, seed=3).fingerprint() == make_rings(n=100, seed=3).fingerprint()
    assert make_rings(n=100, seed=3).fingerprint() != make_rings(n=100, seed=4).fingerprint()


def test_source_rebuilds_the_same_data():
    data = make_rings(n=150, seed=2, noise=0.7)
    assert load_dataset(data.source).fingerprint() == data.fingerprint()


@pytest.mark.parametrize(
    ("y", "task", "n_classes", "loss"),
    [
        (np.array([0, 1] * 20), "binary", 1, "binary_crossentropy"),
        (np.array([0, 1, 2, 3] * 10), "multiclass", 4, "sparse_categorical_crossentropy"),
        (np.eye(3)[np.array([0, 1, 2, 1] * 10)], "multiclass", 3, "sparse_categorical_crossentropy"),
        (np.linspace(0, 1, 40), "regression", 1, "mse"),
    ],
)
def test_task_loss_and_output_follow_the_labels(y, task, n_classes, loss):
    data = from_arrays(np.random.default_rng(0).normal(size=(40, 3)), y)
    assert (data.task, data.n_classes, data.loss) == (task, n_classes, loss)
    assert data.output_units == (n_classes if task == "multiclass" else 1)


@pytest.mark.parametrize(
    ("x", "y", "kwargs", "match"),
    [
        (np.zeros((10,)), np.zeros(10), {}, "x: shape"),
        (np.zeros((0, 2)), np.zeros(0), {}, "x: shape"),
        (np.array([[np.nan, 1.0]] * 10), np.zeros(10), {}, "NaN"),
        (np.array([[np.inf, 1.0]] * 10), np.zeros(10), {}, "NaN or infinite"),
        (np.array([["a", "b"]] * 10), np.zeros(10), {}, "not numeric"),
        (np.zeros((10, 2)), np.zeros(9), {}, "9 labels for 10 samples"),
        (np.zeros((10, 2)), np.array([0, 1, 2, 3, 4] * 2), {"task": "multiclass", "n_classes": 3}, "labels range"),
        (np.zeros((10, 2)), np.array([-1, 1] * 5), {"task": "multiclass"}, "labels range"),
        (np.zeros((10, 2)), np.array([0.5, 1] * 5), {"task": "binary"}, "non-integer labels"),
        (np.zeros((10, 2)), np.zeros(10), {"task": "ranking"}, "task: got 'ranking'"),
        (np.zeros((10, 2)), np.zeros(10), {"val_fraction": 1.5}, "val_fraction"),
        (np.zeros((10, 2)), np.full((10, 2), 0.5), {}, "not one-hot"),
    ],
)
def test_bad_arrays_are_rejected_with_the_field(x, y, kwargs, match):
    with pytest.raises(DataError, match=match):
        from_arrays(x, y, **kwargs)


def test_npz_with_explicit_split_and_missing_file(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, x_train=rng.normal(size=(30, 4)), y_train=rng.integers(0, 3, 30),
             x_val=rng.normal(size=(10, 4)), y_val=rng.integers(0, 3, 10))
    data = from_npz(path)
    assert data.x_train.shape == (30, 4) and data.x_val.shape == (10, 4) and data.task == "multiclass"
    assert load_dataset(data.source).fingerprint() == data.fingerprint()
    with pytest.raises(DataError, match="does not exist"):
        from_npz(tmp_path / "missing.npz")
    np.savez(tmp_path / "bad.npz", a=np.zeros(3))
    with pytest.raises(DataError, match="has arrays"):
        from_npz(tmp_path / "bad.npz")


def test_csv_uses_last_column_as_target(tmp_path):
    path = tmp_path / "d.csv"
    rows = ["a,b,label"] + [f"{i},{i % 3},{i % 2}" for i in range(20)]
    path.write_text("\n".join(rows))
    data = from_csv(path)
    assert data.task == "binary" and data.input_shape == (2,)
    with pytest.raises(DataError, match="target: column 'nope'"):
        from_csv(path, target="nope")


def test_unknown_source_kind():
    with pytest.raises(DataError, match="data source kind"):
        load_dataset({"kind": "imagenet"})
