"""Datasets: train/validation arrays plus the task they imply.

A :class:`Dataset` carries a ``source`` description (a small JSON-ready dict) so a
worker process can rebuild it with :func:`load_dataset` instead of receiving pickled
arrays, and so a study can record which data it was made on.

This module is the data layer's front: the :class:`Dataset` type and building one from
arrays live in :mod:`regsweep.arrays`, files and tables in :mod:`regsweep.files`, the
Reuters and digits sets in :mod:`regsweep.datasets`; their public names are importable
from here. The notes' generators and the loaders behind :func:`load_dataset` are here.

Example:
    >>> data = make_rings(n=200, seed=0)
    >>> data.task, data.x_train.shape
    ('binary', (160, 2))
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np

from regsweep.arrays import (  # noqa: F401  (the data layer's public names, importable from here)
    AMBIGUOUS_DISTINCT, TASK_LOSSES, TASKS, Dataset, check_fraction, encode_targets, fold_indices, from_arrays,
    infer_task, split_indices,
)
from regsweep.errors import DataError
from regsweep.files import from_csv, from_frame, from_npz  # noqa: F401  (re-exported)


# -- the generators of the original notes -------------------------------------------------------
def _check_generator_args(n: int, noise: float) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 10:
        raise DataError(f"n: got {n!r}; allowed: an int >= 10")
    if not isinstance(noise, (int, float)) or not np.isfinite(noise) or noise < 0:
        raise DataError(f"noise: got {noise!r}; allowed: a finite float >= 0")


def make_linear(n: int = 200, *, noise: float = 1.0, seed: int = 0, val_fraction: float = 0.2) -> Dataset:
    """Two Gaussian clusters centred at (-2, -2) and (+2, +2): a linearly separable task."""
    _check_generator_args(n, noise)
    rng = np.random.default_rng(seed)
    half = n // 2
    x = np.vstack([rng.normal([-2, -2], noise, size=(half, 2)), rng.normal([2, 2], noise, size=(n - half, 2))])
    y = np.array([0] * half + [1] * (n - half))
    source = {"kind": "linear", "n": n, "noise": noise, "seed": seed, "val_fraction": val_fraction}
    return from_arrays(x, y, val_fraction=val_fraction, seed=seed, task="binary", name="linear", source=source)


def make_rings(n: int = 1000, *, radius: float = 5.0, noise: float = 1.0, seed: int = 0,
               val_fraction: float = 0.2) -> Dataset:
    """A Gaussian blob at the origin inside a noisy ring of radius ``radius``."""
    _check_generator_args(n, noise)
    if not isinstance(radius, (int, float)) or not radius > 0:
        raise DataError(f"radius: got {radius!r}; allowed: a float > 0")
    rng = np.random.default_rng(seed)
    half = n // 2
    inner = rng.normal([0, 0], 1.0, size=(half, 2))
    theta = np.linspace(0, 2 * np.pi, n - half)
    outer = np.column_stack([radius * np.cos(theta), radius * np.sin(theta)]) + noise * rng.normal(size=(n - half, 2))
    x = np.vstack([inner, outer])
    y = np.array([0] * half + [1] * (n - half))
    source = {"kind": "rings", "n": n, "radius": radius, "noise": noise, "seed": seed, "val_fraction": val_fraction}
    return from_arrays(x, y, val_fraction=val_fraction, seed=seed, task="binary", name="rings", source=source)


# -- rebuilding a dataset from its description -----------------------------------------------------
def _reuters(**spec: Any) -> Dataset:
    from regsweep.datasets import load_reuters  # the domain datasets, imported when one is rebuilt

    return load_reuters(**spec)


def _digits(**spec: Any) -> Dataset:
    from regsweep.datasets import load_digits

    return load_digits(**spec)


_LOADERS: dict[str, Callable[..., Dataset]] = {
    "linear": make_linear,
    "rings": make_rings,
    "npz": lambda path, **kw: from_npz(path, **kw),
    "csv": lambda path, **kw: from_csv(path, **kw),
    "reuters": _reuters,
    "digits": _digits,
}


def register_loader(kind: str, loader: Callable[..., Dataset]) -> None:
    """Make ``load_dataset({"kind": kind, ...})`` call ``loader(**rest)``."""
    _LOADERS[kind] = loader


def load_dataset(source: dict[str, Any]) -> Dataset:
    """Rebuild a dataset from its ``source`` description (see :attr:`Dataset.source`)."""
    spec = dict(source)
    kind = spec.pop("kind", None)
    if kind not in _LOADERS:
        raise DataError(f"data source kind: got {kind!r}; allowed: one of {sorted(_LOADERS)}")
    return _LOADERS[kind](**spec)


def source_json(source: dict[str, Any] | None) -> str:
    """Stable JSON for a source description (for comparing studies)."""
    return json.dumps(source, sort_keys=True)
