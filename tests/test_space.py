"""SearchSpace validation, serialisation and sampling."""

from __future__ import annotations

import optuna
import pytest

from regsweep import SearchSpace
from regsweep.errors import SearchSpaceError
from regsweep.space import CORE_PARAMS, TrialConfig, suggest


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"regularizers": ("l3",)}, "regularizers"),
        ({"regularizers": ()}, "regularizers"),
        ({"regularizers": ("l1", "l1")}, "regularizers"),
        ({"lam": (0.1, 0.01)}, "lam"),
        ({"lam": (0.0, 0.1)}, "lam"),
        ({"lam": (-1e-3, 0.1)}, "lam"),
        ({"lam": (1e-5, float("nan"))}, "lam"),
        ({"dropout": (0.0, 1.0)}, "dropout"),
        ({"dropout": (-0.1, 0.5)}, "dropout"),
        ({"dropout": (0.5, 0.2)}, "dropout"),
        ({"depth": (0, 3)}, "depth"),
        ({"depth": (1.5, 3)}, "depth"),
        ({"width": (16, 8)}, "width"),
        ({"width": (0, 8)}, "width"),
        ({"patience": (-1, 3)}, "patience"),
        ({"patience": (1, 2, 3)}, "patience"),
        ({"max_epochs": 0}, "max_epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 3.5}, "batch_size"),
        ({"optimizer": "adagrad"}, "optimizer"),
        ({"activation": "swishy"}, "activation"),
        ({"learning_rate": (0.0, 0.1)}, "learning_rate"),
        ({"clipnorm": (2.0, 1.0)}, "clipnorm"),
        ({"augmentation": (0.0, 1.5)}, "augmentation"),
        ({"batch_norm": ("yes",)}, "batch_norm"),
    ],
)
def test_bad_field_names_field_and_value(kwargs, field):
    with pytest.raises(SearchSpaceError, match=rf"SearchSpace\.{field}: got .*allowed"):
        SearchSpace(**kwargs)


def test_scalars_fix_a_dimension():
    space = SearchSpace(regularizers="l2", width=32, depth=2, lam=1e-3, batch_norm=True)
    assert space.regularizers == ("l2",)
    assert space.width == (32, 32)
    assert space.depth == (2, 2)
    assert space.lam == (1e-3, 1e-3)
    assert space.batch_norm == (True,)


def test_dict_round_trip_is_equal():
    space = SearchSpace(regularizers=("none", "l1"), clipnorm=(0.5, 5.0), batch_norm=(False, True))
    assert SearchSpace.from_dict(space.to_dict()) == space


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(SearchSpaceError, match="unknown field"):
        SearchSpace.from_dict({"lamda": [1e-5, 1e-3]})


def _sample(space: SearchSpace, n: int = 30) -> list[optuna.trial.FrozenTrial]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: (suggest(t, space), 0.0)[1], n_trials=n)
    return study.trials


def test_parameter_names_and_conditional_lam():
    trials = _sample(SearchSpace())
    for trial in trials:
        expected = set(CORE_PARAMS) - ({"lam"} if trial.params["regularizer"] == "none" else set())
        assert set(trial.params) == expected
    assert {t.params["regularizer"] for t in trials} == {"none", "l1", "l2", "l1_l2"}


def test_samples_stay_inside_the_narrowed_ranges():
    space = SearchSpace(regularizers=("l1_l2",), lam=(1e-4, 1e-3), dropout=(0.1, 0.2), depth=(2, 3), width=(8, 16),
                        patience=(3, 4))
    for trial in _sample(space):
        p = trial.params
        assert 1e-4 <= p["lam"] <= 1e-3 and 0.1 <= p["dropout"] <= 0.2
        assert 2 <= p["depth"] <= 3 and 8 <= p["width"] <= 16 and 3 <= p["patience"] <= 4


def test_optional_dimensions_are_params_only_when_searched():
    fixed = _sample(SearchSpace(learning_rate=1e-2, clipnorm=1.0), n=3)
    assert all(set(t.params) <= set(CORE_PARAMS) for t in fixed)
    searched = _sample(SearchSpace(learning_rate=(1e-4, 1e-2), batch_norm=(False, True), clipnorm=(0.1, 1.0)), n=3)
    assert all({"learning_rate", "batch_norm", "clipnorm"} <= set(t.params) for t in searched)


def test_trial_config_from_params_uses_space_defaults():
    space = SearchSpace(max_epochs=7, batch_size=16, learning_rate=3e-3, clipnorm=2.0)
    config = TrialConfig.from_params(
        {"regularizer": "none", "dropout": 0.1, "depth": 2, "width": 8, "patience": 3}, space)
    assert config.lam == 0.0 and config.max_epochs == 7 and config.batch_size == 16
    assert config.learning_rate == 3e-3 and config.clipnorm == 2.0
