"""Model construction per configuration, and training one configuration."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from regsweep.data import from_arrays, make_rings
from regsweep.models import build_model, count_params, dense_kernels, kernel_norms
from regsweep.objective import NonFiniteLossError, train_config, validation_logs
from regsweep.space import TrialConfig


def _config(**overrides) -> TrialConfig:
    base = {"regularizer": "l2", "lam": 1e-2, "dropout": 0.2, "depth": 2, "width": 8, "patience": 2,
            "max_epochs": 3, "batch_size": 32}
    return TrialConfig(**{**base, **overrides})


@pytest.mark.parametrize(("kind", "expected"), [("l1", keras.regularizers.L1), ("l2", keras.regularizers.L2),
                                                 ("l1_l2", keras.regularizers.L1L2)])
def test_penalty_of_each_kind_is_in_model_losses(kind, expected):
    data = make_rings(n=60)
    model = build_model(_config(regularizer=kind, lam=0.5), data)
    hidden = [layer for layer in model.layers if layer.name.startswith("dense_")]
    assert len(hidden) == 2
    assert all(isinstance(layer.kernel_regularizer, expected) for layer in hidden)
    assert len(model.losses) == 2
    assert all(float(loss) > 0 for loss in model.losses)
    if kind == "l1_l2":
        assert hidden[0].kernel_regularizer.l1 == pytest.approx(0.5) and hidden[0].kernel_regularizer.l2 == pytest.approx(0.5)


def test_no_regularizer_means_no_penalty_and_dropout_follows_config():
    model = build_model(_config(regularizer="none", lam=0.0, dropout=0.0), make_rings(n=60))
    assert model.losses == []
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in model.layers)
    with_dropout = build_model(_config(dropout=0.3, depth=3), make_rings(n=60))
    rates = [layer.rate for layer in with_dropout.layers if isinstance(layer, keras.layers.Dropout)]
    assert rates == pytest.approx([0.3, 0.3, 0.3])


@pytest.mark.parametrize(
    ("y", "units", "activation", "loss"),
    [
        (np.array([0, 1] * 20), 1, "sigmoid", "binary_crossentropy"),
        (np.array([0, 1, 2, 3] * 10), 4, "softmax", "sparse_categorical_crossentropy"),
        (np.linspace(0, 1, 40), 1, "linear", "mse"),
    ],
)
def test_output_layer_and_loss_follow_the_task(y, units, activation, loss):
    data = from_arrays(np.random.default_rng(0).normal(size=(40, 3)), y)
    model = build_model(_config(), data)
    output = model.layers[-1]
    assert output.units == units and output.activation.__name__ == activation
    assert model.loss == loss


def test_param_count_and_norms():
    model = build_model(_config(depth=2, width=8), make_rings(n=60))
    assert count_params(model) == (2 * 8 + 8) + (8 * 8 + 8) + (8 * 1 + 1)
    kernels = dense_kernels(model)
    assert [k.shape for k in kernels] == [(2, 8), (8, 8), (8, 1)]
    l1, l2 = kernel_norms(kernels)
    assert l1 == pytest.approx(sum(np.abs(k).sum() for k in kernels), rel=1e-5)
    assert l2 == pytest.approx(np.sqrt(sum((k ** 2).sum() for k in kernels)), rel=1e-5)


def test_train_records_curves_and_best_epoch():
    result = train_config(_config(max_epochs=4, patience=10), make_rings(n=100), seed=0)
    assert result.epochs == 4 and len(result.val_curve) == 4 and len(result.train_curve) == 4
    assert result.val_loss == min(result.val_curve)
    assert result.val_curve[result.best_epoch - 1] == result.val_loss
    assert result.train_loss_dropout == result.train_curve[result.best_epoch - 1]
    assert result.gap == pytest.approx(result.val_loss - result.train_loss)
    assert 0 <= result.val_metric <= 1 and result.n_params > 0 and result.weight_l2 > 0


def test_early_stopping_stops_after_patience_without_improvement():
    # learning rate 0: the loss never improves after the first epoch, so training stops at 1 + patience
    result = train_config(_config(max_epochs=20, patience=2, learning_rate=0.0, dropout=0.0), make_rings(n=100), seed=0)
    assert result.epochs == 3 and result.best_epoch == 1


def test_same_seed_same_curve():
    data = make_rings(n=100)
    first = train_config(_config(), data, seed=5)
    second = train_config(_config(), data, seed=5)
    np.testing.assert_allclose(first.val_curve, second.val_curve, rtol=1e-5)


def test_non_finite_loss_raises():
    data = from_arrays(np.random.default_rng(0).normal(size=(64, 2)) * 1e4, np.linspace(0, 1e4, 64))
    with pytest.raises(NonFiniteLossError, match="non-finite loss"):
        train_config(_config(regularizer="none", lam=0.0, learning_rate=1e6, optimizer="sgd", max_epochs=5), data)


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_validation_computed_outside_fit_equals_keras_evaluate(task):
    # train_config validates each epoch eagerly (no traced test function per model): the curve it
    # records, early stopping's restored weights and Keras' own evaluate must agree.
    rng = np.random.default_rng(1)
    x = rng.normal(size=(150, 3))
    y = {"binary": (x[:, 0] > 0).astype(int), "multiclass": np.argmax(x, axis=1),
         "regression": x @ np.array([1.0, -2.0, 0.5])}[task]
    data = from_arrays(x, y, task=task, seed=0)
    result = train_config(_config(max_epochs=6, patience=2), data, seed=3, keep_model=True)
    scores = result.model.evaluate(data.x_val, data.y_val, batch_size=4096, return_dict=True, verbose=0)
    assert result.val_loss == pytest.approx(scores["data_loss"], rel=1e-6)
    assert result.val_metric == pytest.approx(scores["metric"], rel=1e-6)
    in_small_batches = validation_logs(result.model, data, batch_size=7)
    assert in_small_batches["val_data_loss"] == pytest.approx(scores["data_loss"], rel=1e-5)
    assert in_small_batches["val_metric"] == pytest.approx(scores["metric"], rel=1e-5)
