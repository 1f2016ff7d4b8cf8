"""The :class:`Dataset` type and building one from numpy arrays: checks, labels, splits.

This is the bottom of the data layer: the model, training and artifact modules import
:class:`Dataset` and the task constants from here. Files and tables are read by
:mod:`regsweep.files`; :mod:`regsweep.data` gathers every public name (generators and
``load_dataset`` included) for users.

Example:
    >>> data = from_arrays([[0.0], [1.0], [2.0], [3.0], [4.0]], [0, 1, 0, 1, 0], val_fraction=0.4)
    >>> data.task, data.x_train.shape, data.x_val.shape
    ('binary', (3, 1), (2, 1))
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from regsweep.errors import DataError

TASKS = ("binary", "multiclass", "regression")
TASK_LOSSES = {"binary": "binary_crossentropy", "multiclass": "sparse_categorical_crossentropy", "regression": "mse"}


@dataclass(frozen=True, eq=False)
class Dataset:
    """Training, validation (and optionally test) arrays and the task they pose.

    Attributes:
        x_train, y_train, x_val, y_val: float32 features; labels are int32 class ids
            (shape ``(n,)`` for multiclass, ``(n, 1)`` for binary) or float32 targets ``(n, 1)``.
        task: ``binary``, ``multiclass`` or ``regression``.
        n_classes: number of classes (1 for binary and regression).
        name: a short human-readable name.
        source: how to rebuild this dataset with :func:`regsweep.data.load_dataset` (``None`` for
            in-memory arrays; the runner then saves them to an ``.npz`` file).
        x_test, y_test: held-out rows no trial ever sees (``None``: no test split).
        classes: the original labels of class ids 0, 1, ... (``None``: the ids are the labels).
        preprocessing: what was fitted on the training rows (see :mod:`regsweep.preprocessing`);
            ``None`` when the features are used as given.
        folds: for cross-validation, the K fold datasets (this one is fold 0); ``None`` otherwise.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    task: str
    n_classes: int = 1
    name: str = "arrays"
    source: dict[str, Any] | None = field(default=None)
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    classes: list[Any] | None = None
    preprocessing: dict[str, Any] | None = None
    folds: tuple[Dataset, ...] | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def has_test(self) -> bool:
        return self.x_test is not None and len(self.x_test) > 0

    @property
    def output_units(self) -> int:
        return self.n_classes if self.task == "multiclass" else 1

    @property
    def loss(self) -> str:
        """The Keras loss that matches the task and label format."""
        return TASK_LOSSES[self.task]

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
        arrays = [self.x_train, self.y_train, self.x_val, self.y_val]
        if self.has_test:
            arrays += [self.x_test, self.y_test]
        for array in arrays:
            digest.update(str(array.shape).encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        """What a study records about its data (with the fitted preprocessing and class names)."""
        out = {
            "name": self.name, "task": self.task, "n_classes": self.n_classes,
            "input_shape": list(self.input_shape), "n_train": int(len(self.x_train)),
            "n_val": int(len(self.x_val)), "fingerprint": self.fingerprint(), "source": self.source,
        }
        if self.has_test:
            out["n_test"] = len(self.x_test)  # type: ignore[arg-type]
        if self.classes is not None:
            out["classes"] = list(self.classes)
        if self.preprocessing is not None:
            out["preprocessing"] = self.preprocessing
        if self.folds:
            out["folds"] = len(self.folds)
            out["fold_preprocessing"] = [fold.preprocessing for fold in self.folds]
        return out

    def save_npz(self, path: str | Path) -> dict[str, Any]:
        """Write the arrays (and classes/preprocessing) to ``path``; the source that reloads them."""
        arrays = {"x_train": self.x_train, "y_train": self.y_train, "x_val": self.x_val, "y_val": self.y_val}
        if self.has_test:
            arrays.update(x_test=self.x_test, y_test=self.y_test)
        extra = {"classes": self.classes, "preprocessing": self.preprocessing, "n_classes": self.n_classes}
        np.savez(path, meta=np.array(json.dumps(extra)), **arrays)
        return {"kind": "npz", "path": str(Path(path).resolve()), "task": self.task}


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
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.dtype.kind in "OUS":  # text labels: class names
        if array.ndim != 1:
            raise DataError(f"{name}: text labels of shape {array.shape}; allowed: one label per sample (samples,)")
        if len(array) != n_samples:
            raise DataError(f"{name}: {len(array)} labels for {n_samples} samples; allowed: one label per sample")
        if any(v is None or (isinstance(v, float) and np.isnan(v)) for v in array):
            raise DataError(f"{name}: missing labels; allowed: a label in every row")
        return array
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise DataError(f"{name}: dtype {array.dtype} is not numeric; allowed: class ids, class names or numeric targets")
    if array.dtype == bool:
        array = array.astype(np.int64)
    if array.ndim == 2 and array.shape[1] > 1:
        if not (np.isin(array, (0, 1)).all() and np.all(array.sum(axis=1) == 1)):
            raise DataError(f"{name}: 2-D labels of shape {array.shape} are not one-hot; allowed: class ids (n,) or one-hot rows")
        array = array.argmax(axis=1)
    if array.ndim != 1:
        raise DataError(f"{name}: shape {array.shape}; allowed: (samples,) or one-hot (samples, classes)")
    if len(array) != n_samples:
        raise DataError(f"{name}: {len(array)} labels for {n_samples} samples; allowed: one label per sample")
    if not np.all(np.isfinite(array.astype(np.float64))):
        raise DataError(f"{name}: contains NaN or infinite values; allowed: finite numbers only (a label in every row)")
    return array


AMBIGUOUS_DISTINCT = 20  # a float target of whole numbers with at most this many values could be classes


def infer_task(y: np.ndarray, *, name: str = "y") -> str:
    """The task labels ``y`` pose.

    Text → binary (2 names) or multiclass; integers {0, 1} → binary, other integers →
    multiclass; floats → regression, except floats that are all 0/1 (binary). Floats that are
    all whole numbers with at most 20 distinct values are ambiguous (classes or counts?) and
    raise a :class:`DataError` asking for ``task``.
    """
    if y.dtype.kind in "OUS":
        return "binary" if len(set(y.tolist())) == 2 else "multiclass"
    values = np.unique(y)
    if np.issubdtype(y.dtype, np.floating):
        if set(values.tolist()) <= {0.0, 1.0}:
            return "binary"
        if np.all(np.equal(np.mod(values, 1), 0)) and len(values) <= AMBIGUOUS_DISTINCT:
            shown = ", ".join(f"{v:g}" for v in values[:6]) + (", ..." if len(values) > 6 else "")
            raise DataError(f"{name}: float target with {len(values)} whole-number values ({shown}) is ambiguous; "
                            "allowed: task='regression' or task='multiclass' (--task), or integer/text labels")
        return "regression"
    return "binary" if set(values.tolist()) <= {0, 1} else "multiclass"


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


def _class_order(label: Any) -> tuple[int, float, str]:
    """Numbers in numeric order, then text in text order."""
    return (0, float(label), "") if isinstance(label, (int, float)) else (1, 0.0, str(label))


def _class_ids(name: str, y: np.ndarray, classes: list[Any]) -> np.ndarray:
    """Text labels as ids into ``classes``; a label not in ``classes`` is an error."""
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({str(v) for v in y.tolist() if v not in index})
    if unknown:
        raise DataError(f"{name}: label(s) {unknown[:5]} not among the training labels; allowed: one of {classes[:10]}")
    return np.array([index[v] for v in y.tolist()], dtype=np.int64)


def split_indices(n: int, fraction: float, seed: int, *, strata: np.ndarray | None = None,
                  what: str = "val_fraction") -> tuple[np.ndarray, np.ndarray]:
    """``(kept, held_out)`` row indices: a seeded ``fraction`` of ``n`` rows held out.

    With ``strata`` (class ids), each class is held out in the same proportion (stratified);
    without, a seeded permutation is cut.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise DataError(f"{what}: got {fraction!r}; allowed: a float in (0, 1)")
    rng = np.random.default_rng(seed)
    if strata is None:
        order = rng.permutation(n)
        n_held = round(n * fraction)
        held, kept = order[:n_held], order[n_held:]
    else:
        parts = []
        for label in np.unique(strata):
            rows = rng.permutation(np.flatnonzero(strata == label))
            parts.append(rows[:round(len(rows) * fraction)])
        held = np.sort(np.concatenate(parts))
        kept = np.setdiff1d(np.arange(n), held)
    if len(held) < 1 or len(kept) < 1:
        raise DataError(f"{what}: {fraction} of {n} samples leaves an empty split; allowed: more samples or another fraction")
    return kept, held


def _split(x: np.ndarray, y: np.ndarray, val_fraction: float, seed: int,
           strata: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    train, val = split_indices(len(x), val_fraction, seed, strata=strata)
    return x[train], y[train], x[val], y[val]


def check_fraction(name: str, value: Any, *, allow_zero: bool) -> None:
    """Raise a :class:`DataError` naming ``name`` unless ``value`` is a float in (0, 1) (``[0, 1)`` with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 <= value < 1 if allow_zero else 0 < value < 1):
        raise DataError(f"{name}: got {value!r}; allowed: a float in {'[0, 1)' if allow_zero else '(0, 1)'}")


def encode_targets(ys: dict[str, np.ndarray], *, task: str | None, n_classes: int | None,
                   classes: list[Any] | None = None) -> tuple[dict[str, np.ndarray], str, int, list[Any] | None]:
    """Encode every split's labels the same way: ``(encoded, task, n_classes, classes)``.

    The first entry of ``ys`` is the training labels; text labels become ids into the sorted
    class names (``classes``), which the others must use too.
    """
    if task is not None and task not in TASKS:
        raise DataError(f"task: got {task!r}; allowed: one of {TASKS}")
    names = list(ys)
    text = ys[names[0]].dtype.kind in "OUS"
    task = task or infer_task(np.concatenate(list(ys.values())), name=names[0])
    if text:
        if task == "regression":
            raise DataError(f"task: 'regression' for text labels in {names[0]}; allowed: binary or multiclass")
        classes = classes or sorted({v for y in ys.values() for v in y.tolist()}, key=_class_order)
        if len(classes) < 2:
            raise DataError(f"{names[0]}: only one class ({classes[0]!r}); allowed: labels with at least two classes")
        ys = {n: _class_ids(n, y, classes) for n, y in ys.items()}
        n_classes = n_classes or len(classes)
    if task == "binary":
        n_classes = 1 if n_classes in (None, 1, 2) else n_classes
        if n_classes != 1:
            raise DataError(f"n_classes: got {n_classes} for a binary task; allowed: 1 or 2")
        out = {n: _encode_labels(n, y, task, 2).reshape(-1, 1) for n, y in ys.items()}
    elif task == "multiclass":
        n_classes = n_classes or int(max(y.max() for y in ys.values())) + 1
        if n_classes < 2:
            raise DataError(f"n_classes: got {n_classes}; allowed: >= 2 for a multiclass task")
        out = {n: _encode_labels(n, y, task, n_classes) for n, y in ys.items()}
    else:
        n_classes = 1
        out = {n: y.astype(np.float32).reshape(-1, 1) for n, y in ys.items()}
    return out, task, n_classes, classes


def from_arrays(
    x: Any, y: Any, *, x_val: Any = None, y_val: Any = None, val_fraction: float = 0.2,
    seed: int = 0, task: str | None = None, n_classes: int | None = None, name: str = "arrays",
    source: dict[str, Any] | None = None, x_test: Any = None, y_test: Any = None, test_fraction: float = 0.0,
    classes: list[Any] | None = None, preprocessing: dict[str, Any] | None = None,
) -> Dataset:
    """Build a validated :class:`Dataset` from numpy arrays.

    Without ``x_val``/``y_val`` a seeded ``val_fraction`` of ``x`` is held out (stratified by
    class for classification); with ``test_fraction`` > 0 (and no ``x_test``) a test split is
    held out first the same way. The task is inferred from ``y`` unless given (see
    :func:`infer_task`); text labels become class ids, their names kept in ``classes``.

    Raises:
        DataError: naming the array and what is wrong (shape, dtype, NaN, labels).
    """
    x_arr = _check_features("x", x)
    y_arr = _check_labels("y", y, len(x_arr))
    if (x_val is None) != (y_val is None) or (x_test is None) != (y_test is None):
        raise DataError("x_val/y_val, x_test/y_test: give both or neither")
    check_fraction("test_fraction", test_fraction, allow_zero=True)
    given = {"y": y_arr}
    features: dict[str, np.ndarray] = {}
    for split, xs, labels in (("val", x_val, y_val), ("test", x_test, y_test)):
        if xs is not None:
            features[split], given[f"y_{split}"] = _checked_split(split, xs, labels, x_arr.shape[1:])
    x_va, x_te = features.get("val"), features.get("test")
    ys, task, n_classes, classes = encode_targets(given, task=task, n_classes=n_classes, classes=classes)
    y_all = ys["y"]
    strata = None if task == "regression" else y_all.reshape(-1)
    if x_test is None and test_fraction > 0:
        keep, held = split_indices(len(x_arr), test_fraction, seed + 1, strata=strata, what="test_fraction")
        x_te, ys["y_test"] = x_arr[held], y_all[held]
        x_arr, y_all = x_arr[keep], y_all[keep]
        strata = None if strata is None else strata[keep]
    if x_val is None:
        x_tr, y_tr, x_va, y_va = _split(x_arr, y_all, val_fraction, seed, strata)
    else:
        x_tr, y_tr, y_va = x_arr, y_all, ys["y_val"]
    return Dataset(x_tr, y_tr, x_va, y_va, task=task, n_classes=n_classes, name=name, source=source,
                   x_test=x_te, y_test=ys.get("y_test"), classes=classes, preprocessing=preprocessing)


def _checked_split(split: str, x: Any, y: Any, feature_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """A given validation or test split, checked like ``x``/``y`` and against ``x``'s feature shape."""
    array = _check_features(f"x_{split}", x)
    if array.shape[1:] != feature_shape:
        raise DataError(f"x_{split}: feature shape {array.shape[1:]} differs from x's {feature_shape}; allowed: the same features")
    return array, _check_labels(f"y_{split}", y, len(array))

def fold_indices(n: int, folds: int, seed: int, *, strata: np.ndarray | None = None) -> np.ndarray:
    """The fold (0..K-1) of each of ``n`` rows: seeded, and stratified by class with ``strata``."""
    rng = np.random.default_rng(seed)
    fold_of = np.empty(n, dtype=np.int64)
    groups = [np.arange(n)] if strata is None else [np.flatnonzero(strata == v) for v in np.unique(strata)]
    offset = 0
    for group in groups:  # deal each class's shuffled rows round-robin, continuing across classes
        rows = rng.permutation(group)
        fold_of[rows] = (offset + np.arange(len(rows))) % folds
        offset += len(rows)
    if np.bincount(fold_of, minlength=folds).min() < 1:
        raise DataError(f"folds: {folds} folds of {n} rows leaves an empty fold; allowed: fewer folds or more rows")
    return fold_of
