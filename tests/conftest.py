"""Shared fixtures: fixed seeds, tiny datasets and per-test storages under tmp_path."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


@pytest.fixture(autouse=True)
def _fixed_seeds() -> None:
    random.seed(0)
    np.random.seed(0)


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'study.db'}"


@pytest.fixture
def tiny_rings():
    from regsweep.data import make_rings

    return make_rings(n=120, seed=0)


@pytest.fixture
def tiny_space():
    from regsweep import SearchSpace

    return SearchSpace(depth=(1, 2), width=(2, 8), patience=(1, 2), max_epochs=3, batch_size=32)
