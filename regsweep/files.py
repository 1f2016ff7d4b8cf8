"""Datasets from files and tables: ``.npz`` arrays, CSV files and pandas frames.

Tables are split first (test, then validation rows, stratified for classes); the
preprocessing (:mod:`regsweep.preprocessing`) is then fitted on the training rows only.
pandas is imported on first use.

Example:
    >>> data = from_csv("houses.csv", target="price", test_fraction=0.2)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from regsweep.arrays import Dataset, check_fraction, encode_targets, fold_indices, from_arrays, split_indices
from regsweep.errors import DataError


def _existing_file(path: str | Path, what: str) -> Path:
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{what}: file {str(file)!r} does not exist; allowed: a path to an existing file")
    return file


def from_npz(path: str | Path, *, val_fraction: float = 0.2, seed: int = 0, task: str | None = None,
             test_fraction: float = 0.0) -> Dataset:
    """Load ``x``/``y`` (split here) or ``x_train``/``y_train``/``x_val``/``y_val`` (and ``x_test``/``y_test``) from an ``.npz``."""
    file = _existing_file(path, "npz")
    try:
        with np.load(file, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as exc:
        raise DataError(f"npz: cannot read {str(file)!r} ({exc}); allowed: an .npz file from numpy.savez") from exc
    source = {"kind": "npz", "path": str(file.resolve()), "val_fraction": val_fraction, "seed": seed, "task": task}
    if test_fraction:
        source["test_fraction"] = test_fraction
    meta = json.loads(str(arrays.pop("meta"))) if "meta" in arrays else {}
    extra = {"classes": meta.get("classes"), "preprocessing": meta.get("preprocessing"),
             "n_classes": meta.get("n_classes")}
    if {"x_train", "y_train", "x_val", "y_val"} <= set(arrays):
        return from_arrays(arrays["x_train"], arrays["y_train"], x_val=arrays["x_val"], y_val=arrays["y_val"],
                           x_test=arrays.get("x_test"), y_test=arrays.get("y_test"), task=task, name=file.stem,
                           source=source, **extra)
    if {"x", "y"} <= set(arrays):
        return from_arrays(arrays["x"], arrays["y"], val_fraction=val_fraction, seed=seed, task=task,
                           name=file.stem, source=source, test_fraction=test_fraction)
    raise DataError(f"npz: {str(file)!r} has arrays {sorted(arrays)}; allowed: x and y, or x_train, y_train, x_val and y_val")


def _read_csv(path: str | Path, what: str) -> Any:
    import pandas as pd

    file = _existing_file(path, what)
    try:
        return pd.read_csv(file)
    except Exception as exc:
        raise DataError(f"{what}: cannot read {str(file)!r} ({exc})") from exc


def from_csv(path: str | Path, *, target: str | None = None, val_fraction: float = 0.2, seed: int = 0,
             task: str | None = None, test_fraction: float = 0.0, val_path: str | None = None,
             test_path: str | None = None, scale: bool = True, folds: int = 1) -> Dataset:
    """Load a CSV with a header row; ``target`` (default: the last column) is the label.

    Feature columns may be numeric (scaled with the training mean and variance unless
    ``scale=False``; missing cells imputed with the training mean plus a missing-indicator
    feature) or text (one-hot categories). See :func:`from_frame` and :mod:`regsweep.preprocessing`.

    Args:
        val_path, test_path: CSV files with the same columns used as the validation / test
            rows instead of a ``val_fraction`` / ``test_fraction`` of ``path``.
    """
    file = _existing_file(path, "csv")
    frame = _read_csv(file, "csv")
    if frame.shape[1] < 2:
        raise DataError(f"csv: {str(file)!r} has {frame.shape[1]} column(s); allowed: feature columns and a target column")
    target = target or str(frame.columns[-1])
    source: dict[str, Any] = {"kind": "csv", "path": str(file.resolve()), "target": target,
                              "val_fraction": val_fraction, "seed": seed, "task": task}
    extras = {"test_fraction": test_fraction or None, "scale": None if scale else False, "folds": folds if folds != 1 else None,
              "val_path": str(Path(val_path).resolve()) if val_path else None,
              "test_path": str(Path(test_path).resolve()) if test_path else None}
    source.update({k: v for k, v in extras.items() if v is not None})  # old sources stay as they were
    val_frame = _read_csv(val_path, "val") if val_path else None
    test_frame = _read_csv(test_path, "test") if test_path else None
    return from_frame(frame, target=target, val_frame=val_frame, test_frame=test_frame, val_fraction=val_fraction,
                      test_fraction=test_fraction, seed=seed, task=task, scale=scale, name=file.stem, source=source,
                      folds=folds)


def _target_column(frame: Any, target: str, what: str) -> np.ndarray:
    if target not in frame.columns:
        raise DataError(f"target: column {target!r} not in {what}'s columns {list(frame.columns)}")
    column = frame[target]
    if column.isna().any():
        raise DataError(f"target: column {target!r} has {int(column.isna().sum())} missing value(s) in {what}; "
                        "allowed: a value in every row (drop those rows)")
    values = column.to_numpy()
    return values.astype(str).astype(object) if values.dtype == object else values


def from_frame(frame: Any, *, target: str, val_frame: Any = None, test_frame: Any = None, val_fraction: float = 0.2,
               test_fraction: float = 0.0, seed: int = 0, task: str | None = None, scale: bool = True,
               name: str = "table", source: dict[str, Any] | None = None, folds: int = 1) -> Dataset:
    """A :class:`Dataset` from a pandas table: splits first, then preprocessing fitted on the training rows.

    The test rows (``test_frame`` or a stratified ``test_fraction``, seed ``seed + 1``) and the
    validation rows (``val_frame`` or a stratified ``val_fraction``, seed ``seed``) are set aside;
    the preprocessing (see :mod:`regsweep.preprocessing`) is fitted on the remaining training
    rows only and applied to every split. Deterministic: the same call gives the same arrays.

    With ``folds`` = K > 1 (cross-validation; no ``val_frame``), the non-test rows are cut into K
    stratified folds; the result is fold 0 (validation = fold 0, training = the others) and
    ``result.folds`` holds all K datasets, each with preprocessing fitted on its own training rows.
    """
    check_fraction("test_fraction", test_fraction, allow_zero=True)
    if isinstance(folds, bool) or not isinstance(folds, int) or not 1 <= folds <= 50:
        raise DataError(f"folds: got {folds!r}; allowed: an int in [1, 50] (1 = one validation split)")
    if folds > 1 and source is None:
        raise DataError("folds: cross-validation needs a file the workers can re-read; allowed: from_csv(path, folds=K)")
    if folds > 1 and val_frame is not None:
        raise DataError("folds: cross-validation makes its own validation folds; allowed: --folds or --val FILE, not both")
    key = f"target {target!r}"  # names the column in label errors
    given = {key: _target_column(frame, target, "csv")}
    if val_frame is not None:
        given["y_val"] = _target_column(val_frame, target, "val")
    if test_frame is not None:
        given["y_test"] = _target_column(test_frame, target, "test")
    if task != "regression":
        given = _integer_classes(given)
    ys, task, n_classes, classes = encode_targets(given, task=task, n_classes=None)
    features = frame.drop(columns=[target])
    for other, label in ((val_frame, "val"), (test_frame, "test")):
        if other is not None and sorted(map(str, other.columns)) != sorted(map(str, frame.columns)):
            raise DataError(f"{label}: columns {list(other.columns)} differ from the training file's {list(frame.columns)}; allowed: the same columns")
    strata = None if task == "regression" else ys[key].reshape(-1)
    rows = np.arange(len(frame))
    if test_frame is None and test_fraction > 0:
        rows, held = split_indices(len(rows), test_fraction, seed + 1, strata=strata, what="test_fraction")
        test_frame, ys["y_test"] = features.iloc[held], ys[key][held]
    common = {"task": task, "n_classes": n_classes, "name": name, "source": source, "classes": classes}
    if folds > 1:
        fold_of = fold_indices(len(rows), folds, seed, strata=None if strata is None else strata[rows])
        sets = [_fitted(features, ys[key], rows[fold_of != i], features.iloc[rows[fold_of == i]],
                        ys[key][rows[fold_of == i]], test_frame, ys.get("y_test"), scale, common) for i in range(folds)]
        return dataclasses.replace(sets[0], folds=tuple(sets))
    if val_frame is None:
        keep, held = split_indices(len(rows), val_fraction, seed, strata=None if strata is None else strata[rows])
        val_frame, ys["y_val"], rows = features.iloc[rows[held]], ys[key][rows[held]], rows[keep]
    return _fitted(features, ys[key], rows, val_frame, ys["y_val"], test_frame, ys.get("y_test"), scale, common)


def _fitted(features: Any, y: np.ndarray, train_rows: np.ndarray, val_frame: Any, y_val: np.ndarray,
            test_frame: Any, y_test: np.ndarray | None, scale: bool, common: dict[str, Any]) -> Dataset:
    """Fit the preprocessing on ``train_rows`` and apply it to the training, validation and test rows."""
    from regsweep.preprocessing import fit_spec, transform

    train = features.iloc[train_rows]
    spec = fit_spec(train, scale=scale)
    x_test = transform(spec, test_frame) if test_frame is not None else None
    return Dataset(transform(spec, train), y[train_rows], transform(spec, val_frame), y_val, x_test=x_test,
                   y_test=y_test, preprocessing=spec, **common)


def _integer_classes(given: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Integer labels that are not the ids 0..K-1 (e.g. 1/2, or 3..8) as class names, so the
    model gets one output per class seen and ``classes`` maps ids back to the original values."""
    first = next(iter(given.values()))
    if first.dtype.kind not in "iu":
        return given
    values = np.unique(np.concatenate(list(given.values())))
    if set(values.tolist()) <= {0, 1} or np.array_equal(values, np.arange(len(values))):
        return given
    return {name: y.astype(object) for name, y in given.items()}
