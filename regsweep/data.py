"""Datasets: train/validation arrays plus the task they imply.

A :class:`Dataset` carries a ``source`` description (a small JSON-ready dict) so a
worker process can rebuild it with :func:`load_dataset` instead of receiving pickled
arrays, and so a study can record which data it was made on.

Example:
    >>> data = make_rings(n=200, seed=0)
    >>> data.task, data.x_train.shape
    ('binary', (160, 2))
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from regsweep.errors import DataError

TASKS = ("binary", "multiclass", "regression")


@dataclass(frozen=True, eq=False)
class Dataset:
    """Training and validation arrays and the task they pose.

    Attributes:
        x_train, y_train, x_val, y_val: float32 features; labels are int32 class ids
            (shape ``(n,)`` for multiclass, ``(n, 1)`` for binary) or float32 targets ``(n, 1)``.
        task: ``binary``, ``multiclass`` or ``regression``.
        n_classes: number of classes (1 for binary and regression).
        name: a short human-readable name.
        source: how to rebuild this dataset with :func:`load_dataset` (``None`` for
            in-memory arrays; the runner then saves them to an ``.npz`` file).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    task: str
    n_classes: int = 1
    name: str = "arrays"
    source: dict[str, Any] | None = field(default=None)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def output_units(self) -> int:
        return self.n_classes if self.task == "multiclass" else 1

    @property
    def loss(self) -> str:
        """The Keras loss that matches the task and label format."""
        return {"binary": "binary_crossentropy", "multiclass": "sparse_categorical_crossentropy",
                "regression": "mse"}[self.task]

    @property
    def output_activation(self) -> str:
        return {"binary": "sigmoid", "multiclass": "softmax", "regression": "linear"}[self.task]

    @property
    def metric(self) -> str | None:
        """Name of the validation metric recorded as ``val_metric`` (accuracy or MAE)."""
        return "mae" if self.task == "regression" else "accuracy"

    def fingerprint(self) -> str:
        """A short hash of the arrays: equal data gives an equal fingerprint."""
        digest = hashlib.sha256()
        for array in (self.x_train, self.y_train, self.x_val, self.y_val):
            digest.update(str(array.shape).encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        """What a study records about its data."""
        return {
            "name": self.name, "task": self.task, "n_classes": self.n_classes,
            "input_shape": list(self.input_shape), "n_train": int(len(self.x_train)),
            "n_val": int(len(self.x_val)), "fingerprint": self.fingerprint(), "source": self.source,
        }


# -- validation ---------------------------------------------------------------------------
def _check_features(name: str, x: Any) -> np.ndarray:
    try:
        array = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise DataError(f"{name}: cannot be read as a numeric array ({exc}); allowed: a 2-D numeric array (samples, features)") from exc
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise DataError(f"{name}: dtype {array.dtype} is not numeric; allowed: int, float or bool arrays")
    if array.ndim < 2 or array.shape[0] == 0 or 0 in array.shape[1:]:
        raise DataError(f"{name}: shape {array.shape}; allowed: (samples, features, ...) with at least one sample and one feature")
    array = array.astype(np.float32)
    if not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise DataError(f"{name}: contains {bad} NaN or infinite value(s); allowed: finite numbers only")
    return array


def _check_labels(name: str, y: Any, n_samples: int) -> np.ndarray:
    try:
        array = np.asarray(y)
    except Exception as exc:
        raise DataError(f"{name}: cannot be read as an array ({exc})") from exc
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise DataError(f"{name}: dtype {array.dtype} is not numeric; allowed: class ids or numeric targets")
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim == 2 and array.shape[1] > 1:
        if not (np.isin(array, (0, 1)).all() and np.all(array.sum(axis=1) == 1)):
            raise DataError(f"{name}: 2-D labels of shape {array.shape} are not one-hot; allowed: class ids (n,) or one-hot rows")
        array = array.argmax(axis=1)
    if array.ndim != 1:
        raise DataError(f"{name}: shape {array.shape}; allowed: (samples,) or one-hot (samples, classes)")
    if len(array) != n_samples:
        raise DataError(f"{name}: {len(array)} labels for {n_samples} samples; allowed: one label per sample")
    if not np.all(np.isfinite(array.astype(np.float64))):
        raise DataError(f"{name}: contains NaN or infinite values; allowed: finite numbers only")
    return array


def _infer_task(y: np.ndarray) -> str:
    if np.issubdtype(y.dtype, np.floating) and not np.all(np.equal(np.mod(y, 1), 0)):
        return "regression"
    values = np.unique(y)
    if set(values.tolist()) <= {0, 1}:
        return "binary"
    return "multiclass"


def _encode_labels(name: str, y: np.ndarray, task: str, n_classes: int) -> np.ndarray:
    if task == "regression":
        return y.astype(np.float32)
    if not np.all(np.equal(np.mod(y, 1), 0)):
        raise DataError(f"{name}: non-integer labels for a {task} task; allowed: class ids 0..{n_classes - 1}")
    labels = y.astype(np.int64)
    if labels.min() < 0 or labels.max() >= n_classes:
        raise DataError(
            f"{name}: labels range over [{labels.min()}, {labels.max()}]; allowed for {task} with "
            f"{n_classes} classes: 0..{n_classes - 1}"
        )
    return labels.astype(np.int32)


def _split(x: np.ndarray, y: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    if not 0 < val_fraction < 1:
        raise DataError(f"val_fraction: got {val_fraction!r}; allowed: a float in (0, 1)")
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = int(round(len(x) * val_fraction))
    if n_val < 1 or n_val >= len(x):
        raise DataError(f"val_fraction: {val_fraction} of {len(x)} samples leaves an empty split; allowed: more samples or another fraction")
    val, train = order[:n_val], order[n_val:]
    return x[train], y[train], x[val], y[val]


def from_arrays(
    x: Any, y: Any, *, x_val: Any = None, y_val: Any = None, val_fraction: float = 0.2,
    seed: int = 0, task: str | None = None, n_classes: int | None = None, name: str = "arrays",
    source: dict[str, Any] | None = None,
) -> Dataset:
    """Build a validated :class:`Dataset` from numpy arrays.

    Without ``x_val``/``y_val`` a shuffled ``val_fraction`` of ``x`` is held out. The task
    is inferred from ``y`` unless given: integer labels {0, 1} → binary, other integer
    labels → multiclass (sparse ids 0..K-1, or one-hot rows), non-integer → regression.

    Raises:
        DataError: naming the array and what is wrong (shape, dtype, NaN, labels).
    """
    if task is not None and task not in TASKS:
        raise DataError(f"task: got {task!r}; allowed: one of {TASKS}")
    x_arr = _check_features("x", x)
    y_arr = _check_labels("y", y, len(x_arr))
    if (x_val is None) != (y_val is None):
        raise DataError("x_val/y_val: give both or neither")
    if x_val is None:
        x_tr, y_tr, x_va, y_va = _split(x_arr, y_arr, val_fraction, seed)
    else:
        x_va = _check_features("x_val", x_val)
        y_va = _check_labels("y_val", y_val, len(x_va))
        if x_va.shape[1:] != x_arr.shape[1:]:
            raise DataError(f"x_val: feature shape {x_va.shape[1:]} differs from x's {x_arr.shape[1:]}; allowed: the same features")
        x_tr, y_tr = x_arr, y_arr
    task = task or _infer_task(np.concatenate([y_tr, y_va]))
    if task == "binary":
        n_classes = 1 if n_classes in (None, 1, 2) else n_classes
        if n_classes != 1:
            raise DataError(f"n_classes: got {n_classes} for a binary task; allowed: 1 or 2")
        y_tr, y_va = (_encode_labels(n, a, task, 2) for n, a in (("y", y_tr), ("y_val", y_va)))
    elif task == "multiclass":
        seen = int(max(y_tr.max(), y_va.max())) + 1
        n_classes = n_classes or seen
        if n_classes < 2:
            raise DataError(f"n_classes: got {n_classes}; allowed: >= 2 for a multiclass task")
        y_tr, y_va = (_encode_labels(n, a, task, n_classes) for n, a in (("y", y_tr), ("y_val", y_va)))
    else:
        n_classes = 1
        y_tr, y_va = y_tr.astype(np.float32), y_va.astype(np.float32)
    if task != "multiclass":  # one output unit: labels as a column to match the model's output
        y_tr, y_va = y_tr.reshape(-1, 1), y_va.reshape(-1, 1)
    return Dataset(x_tr, y_tr, x_va, y_va, task=task, n_classes=n_classes, name=name, source=source)


# -- files ----------------------------------------------------------------------------------
def _existing_file(path: str | Path, what: str) -> Path:
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{what}: file {str(file)!r} does not exist; allowed: a path to an existing file")
    return file


def from_npz(path: str | Path, *, val_fraction: float = 0.2, seed: int = 0, task: str | None = None) -> Dataset:
    """Load ``x``/``y`` (split here) or ``x_train``/``y_train``/``x_val``/``y_val`` from an ``.npz``."""
    file = _existing_file(path, "npz")
    try:
        with np.load(file, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as exc:
        raise DataError(f"npz: cannot read {str(file)!r} ({exc}); allowed: an .npz file from numpy.savez") from exc
    source = {"kind": "npz", "path": str(file.resolve()), "val_fraction": val_fraction, "seed": seed, "task": task}
    if {"x_train", "y_train", "x_val", "y_val"} <= set(arrays):
        return from_arrays(arrays["x_train"], arrays["y_train"], x_val=arrays["x_val"], y_val=arrays["y_val"],
                           task=task, name=file.stem, source=source)
    if {"x", "y"} <= set(arrays):
        return from_arrays(arrays["x"], arrays["y"], val_fraction=val_fraction, seed=seed, task=task,
                           name=file.stem, source=source)
    raise DataError(f"npz: {str(file)!r} has arrays {sorted(arrays)}; allowed: x and y, or x_train, y_train, x_val and y_val")


def from_csv(path: str | Path, *, target: str | None = None, val_fraction: float = 0.2, seed: int = 0,
             task: str | None = None) -> Dataset:
    """Load a CSV with a header row; ``target`` (default: the last column) is the label."""
    import pandas as pd

    file = _existing_file(path, "csv")
    try:
        frame = pd.read_csv(file)
    except Exception as exc:
        raise DataError(f"csv: cannot read {str(file)!r} ({exc})") from exc
    if frame.shape[1] < 2:
        raise DataError(f"csv: {str(file)!r} has {frame.shape[1]} column(s); allowed: feature columns and a target column")
    target = target or str(frame.columns[-1])
    if target not in frame.columns:
        raise DataError(f"target: column {target!r} not in {list(frame.columns)}")
    features = frame.drop(columns=[target])
    non_numeric = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    if non_numeric:
        raise DataError(f"csv: column(s) {non_numeric} are not numeric; allowed: numeric feature columns")
    source = {"kind": "csv", "path": str(file.resolve()), "target": target, "val_fraction": val_fraction,
              "seed": seed, "task": task}
    return from_arrays(features.to_numpy(), frame[target].to_numpy(), val_fraction=val_fraction, seed=seed,
                       task=task, name=file.stem, source=source)


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
_LOADERS: dict[str, Callable[..., Dataset]] = {
    "linear": make_linear,
    "rings": make_rings,
    "npz": lambda path, **kw: from_npz(path, **kw),
    "csv": lambda path, **kw: from_csv(path, **kw),
}


def register_loader(kind: str, loader: Callable[..., Dataset]) -> None:
    """Make ``load_dataset({"kind": kind, ...})`` call ``loader(**rest)``."""
    _LOADERS[kind] = loader


def load_dataset(source: dict[str, Any]) -> Dataset:
    """Rebuild a dataset from its ``source`` description (see :attr:`Dataset.source`)."""
    _register_domain_loaders()
    spec = dict(source)
    kind = spec.pop("kind", None)
    if kind not in _LOADERS:
        raise DataError(f"data source kind: got {kind!r}; allowed: one of {sorted(_LOADERS)}")
    return _LOADERS[kind](**spec)


def _register_domain_loaders() -> None:
    """Domain datasets (Reuters, digits) live in their own module; register them lazily."""
    try:
        from regsweep import datasets  # noqa: F401  (registers on import)
    except ImportError:
        pass


def source_json(source: dict[str, Any] | None) -> str:
    """Stable JSON for a source description (for comparing studies)."""
    return json.dumps(source, sort_keys=True)
