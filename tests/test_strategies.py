"""The extra strategies reach the built model, and appear in the study only when searched.

Batch normalization, gradient clipping, learning rate, image augmentation (active in
training only) and the notes' l1_l2 with separate l1/l2 strengths.
"""

from __future__ import annotations

import keras
import numpy as np
import optuna
import pytest

from regsweep.compare import NOTES_MODELS, notes_models
from regsweep.data import make_rings
from regsweep.datasets import load_digits
from regsweep.models import build_model
from regsweep.report import console_table, leaderboard
from regsweep.space import SearchSpace, TrialConfig, suggest

OPTIONS = ("learning_rate", "batch_norm", "clipnorm", "augmentation")
AUG_LAYERS = {"aug_rotation", "aug_translation", "aug_zoom", "aug_shear"}


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def _config(**overrides) -> TrialConfig:
    base = {"regularizer": "none", "lam": 0.0, "dropout": 0.0, "depth": 2, "width": 8, "patience": 2,
            "max_epochs": 2, "batch_size": 32}
    return TrialConfig(**{**base, **overrides})


def test_batch_norm_adds_one_normalization_per_hidden_layer_before_the_activation():
    model = build_model(_config(batch_norm=True, depth=3), make_rings(n=60))
    names = [layer.name for layer in model.layers]
    assert [n for n in names if n.startswith("batch_norm_")] == ["batch_norm_0", "batch_norm_1", "batch_norm_2"]
    assert names.index("dense_0") < names.index("batch_norm_0") < names.index("activation_0")
    assert model.get_layer("dense_0").activation is keras.activations.linear
    plain = build_model(_config(batch_norm=False), make_rings(n=60))
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in plain.layers)
    assert plain.get_layer("dense_0").activation is keras.activations.relu


def test_clipnorm_learning_rate_and_optimizer_reach_the_compiled_optimizer():
    model = build_model(_config(optimizer="rmsprop", learning_rate=0.005, clipnorm=1.5), make_rings(n=60))
    assert isinstance(model.optimizer, keras.optimizers.RMSprop)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.005)
    assert model.optimizer.clipnorm == pytest.approx(1.5)
    assert build_model(_config(), make_rings(n=60)).optimizer.clipnorm is None


def test_notes_l1_l2_model_gets_separate_strengths_and_dropout_model_only_dropout():
    configs = notes_models()
    assert list(configs) == list(NOTES_MODELS)
    data = make_rings(n=60)
    l1_l2 = build_model(configs["L1_L2 (1e-6, 1e-5)"], data)
    penalty = l1_l2.get_layer("dense_0").kernel_regularizer
    assert isinstance(penalty, keras.regularizers.L1L2)
    assert (float(penalty.l1), float(penalty.l2)) == pytest.approx((1e-6, 1e-5))
    dropout = build_model(configs["dropout 0.2"], data)
    assert dropout.losses == []
    assert [layer.rate for layer in dropout.layers if isinstance(layer, keras.layers.Dropout)] == pytest.approx([0.2, 0.2])
    assert all(c.depth == 2 and c.width == 64 and c.optimizer == "rmsprop" and c.batch_size == 512 and c.max_epochs == 20
               for c in configs.values())


def test_augmentation_layers_exist_only_for_images_and_a_positive_strength(digits):
    names = {layer.name for layer in build_model(_config(augmentation=0.2), digits).layers}
    assert AUG_LAYERS <= names
    assert not AUG_LAYERS & {layer.name for layer in build_model(_config(augmentation=0.0), digits).layers}
    assert not AUG_LAYERS & {layer.name for layer in build_model(_config(augmentation=0.2), make_rings(n=60)).layers}


def test_augmentation_is_active_in_training_only(digits):
    keras.utils.set_random_seed(0)
    x = digits.x_val[:16]
    model = build_model(_config(augmentation=0.2), digits)
    inference = [model(x, training=False).numpy() for _ in range(2)]
    training = [model(x, training=True).numpy() for _ in range(2)]
    np.testing.assert_array_equal(inference[0], inference[1])
    assert np.abs(training[0] - inference[0]).max() > 1e-4
    assert np.abs(training[0] - training[1]).max() > 1e-4
    # control: without augmentation (and no dropout) training mode changes nothing
    control = build_model(_config(augmentation=0.0), digits)
    np.testing.assert_allclose(control(x, training=True).numpy(), control(x, training=False).numpy(), atol=1e-6)


def _asked_params(space: SearchSpace, storage: str) -> tuple[optuna.Study, list[dict]]:
    study = optuna.create_study(storage=storage, study_name="options", sampler=optuna.samplers.RandomSampler(seed=0))
    configs = []
    for value in (0.5, 0.4, 0.3):
        trial = study.ask()
        configs.append(suggest(trial, space))
        study.tell(trial, value)
    return study, configs


def test_options_are_study_params_and_leaderboard_columns_only_when_searched(sqlite_url):
    searched = SearchSpace(depth=(1, 2), width=(4, 8), max_epochs=2, learning_rate=(1e-4, 1e-2),
                           batch_norm=(False, True), clipnorm=(0.5, 5.0), augmentation=(0.0, 0.3))
    study, configs = _asked_params(searched, sqlite_url)
    trial = study.trials[0]
    assert set(OPTIONS) <= set(trial.params)
    assert configs[0].learning_rate == trial.params["learning_rate"] and configs[0].clipnorm == trial.params["clipnorm"]
    assert configs[0].batch_norm == trial.params["batch_norm"] and configs[0].augmentation == trial.params["augmentation"]
    board = leaderboard(study)
    assert set(OPTIONS) <= set(board.columns)
    assert all(name in console_table(board) for name in OPTIONS)

    fixed_url = sqlite_url.replace("study.db", "fixed.db")
    fixed, fixed_configs = _asked_params(SearchSpace(depth=(1, 2), width=(4, 8), max_epochs=2, clipnorm=1.0), fixed_url)
    assert not set(OPTIONS) & set(fixed.trials[0].params)
    assert not set(OPTIONS) & set(leaderboard(fixed).columns)
    assert fixed_configs[0].clipnorm == 1.0 and fixed_configs[0].batch_norm is False  # fixed values still apply


@pytest.mark.slow
def test_digits_sweep_searches_every_option_end_to_end(tmp_path, sqlite_url, digits):
    from sweeps.digits import SPACE

    from regsweep.data import from_arrays
    from regsweep.runner import run_sweep

    assert set(SPACE.searched_options) == set(OPTIONS)
    tiny = from_arrays(digits.x_train[:200], digits.y_train[:200], x_val=digits.x_val[:80], y_val=digits.y_val[:80],
                       task="multiclass", n_classes=10)
    space = SearchSpace.from_dict({**SPACE.to_dict(), "max_epochs": 2, "patience": [1, 1]})
    study = run_sweep(space, tiny, sweep="digits", study="digits", storage=sqlite_url, trials=3, workers=1,
                      out=str(tmp_path / "out"), pruner="none", progress=False)
    board = leaderboard(study)
    assert len(board) == 3 and set(OPTIONS) <= set(board.columns)
    assert board["augmentation"].between(0.0, 0.2).all() and board["clipnorm"].between(0.5, 5.0).all()
    assert board["val_metric"].notna().all()
