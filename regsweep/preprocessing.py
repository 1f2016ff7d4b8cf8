"""Tabular preprocessing learned from the training split only, and the same steps as Keras layers.

A *spec* is a small JSON-ready dict that records what was fitted on the training rows:

* numeric columns: the training mean and variance (Keras ``Normalization``; ``scale=False``
  keeps mean and variance but skips the scaling), and whether the column had missing cells
  (then a 0/1 missing-indicator feature follows it); a missing cell is replaced by the mean;
* categorical (non-numeric) columns: the training vocabulary, one-hot encoded as Keras
  ``StringLookup(output_mode="one_hot")`` does, with one out-of-vocabulary slot (first) for
  categories never seen in training; a missing cell is the category ``""``.

Training applies :func:`transform` to the arrays once (the layers have no trainable weights,
so this equals running them inside every step, and the slots engine needs no change);
:func:`raw_input_model` puts the same steps as Keras layers in front of the trained network,
so a saved model predicts on raw rows (``model.predict(raw_inputs(spec, frame))``).

Example:
    >>> spec = fit_spec(frame.iloc[train_rows])  # doctest: +SKIP
    >>> x_train = transform(spec, frame.iloc[train_rows])  # doctest: +SKIP
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import keras
    import pandas as pd

EPSILON = 1e-7  # keras.backend.epsilon(): Normalization divides by max(sqrt(variance), epsilon)
MISSING_CATEGORY = ""


def is_numeric_column(column: pd.Series) -> bool:
    """Numbers and booleans are numeric; anything else (text, mixed) is categorical."""
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column))


def _numbers(column: pd.Series) -> np.ndarray:
    return np.asarray(column, dtype=np.float64)


def _categories(column: pd.Series) -> np.ndarray:
    import pandas as pd

    return np.asarray([MISSING_CATEGORY if pd.isna(v) else str(v) for v in column], dtype=object)


def fit_spec(features: pd.DataFrame, *, scale: bool = True) -> dict[str, Any]:
    """Fit the preprocessing of ``features`` (the training rows only).

    Returns:
        ``{"scale": bool, "columns": [...], "n_features": int}``; each column is
        ``{"name", "kind": "numeric", "mean", "variance", "missing"}`` or
        ``{"name", "kind": "categorical", "vocabulary": [...]}``.
    """
    columns: list[dict[str, Any]] = []
    for name in features.columns:
        column = features[name]
        if is_numeric_column(column):
            values = _numbers(column)
            seen = values[np.isfinite(values)]
            mean = float(seen.mean()) if len(seen) else 0.0
            variance = float(seen.var()) if len(seen) else 1.0
            columns.append({"name": str(name), "kind": "numeric", "mean": mean, "variance": variance,
                            "missing": bool(len(seen) < len(values))})
        else:
            vocabulary = sorted(set(_categories(column).tolist()))
            columns.append({"name": str(name), "kind": "categorical", "vocabulary": vocabulary})
    spec = {"scale": bool(scale), "columns": columns}
    spec["n_features"] = len(feature_names(spec))
    return spec


def feature_names(spec: dict[str, Any]) -> list[str]:
    """The names of the model's input features, in order (``age``, ``age_missing``, ``color=red``, ...)."""
    names: list[str] = []
    for column in spec["columns"]:
        if column["kind"] == "numeric":
            names.append(column["name"])
            if column["missing"]:
                names.append(f"{column['name']}_missing")
        else:
            names += [f"{column['name']}=[unseen]"] + [f"{column['name']}={v}" for v in column["vocabulary"]]
    return names


def transform(spec: dict[str, Any], features: pd.DataFrame) -> np.ndarray:
    """The float32 feature matrix ``spec`` makes of raw rows (what the Keras layers compute)."""
    parts: list[np.ndarray] = []
    for column in spec["columns"]:
        raw = features[column["name"]]
        if column["kind"] == "numeric":
            values = _numbers(raw)
            missing = ~np.isfinite(values)
            filled = np.where(missing, column["mean"], values)
            if spec["scale"]:
                filled = (filled - column["mean"]) / max(float(np.sqrt(column["variance"])), EPSILON)
            parts.append(filled[:, None])
            if column["missing"]:
                parts.append(missing[:, None].astype(np.float64))
        else:
            index = {v: i + 1 for i, v in enumerate(column["vocabulary"])}  # 0: out of vocabulary
            ids = np.array([index.get(v, 0) for v in _categories(raw)], dtype=np.int64)
            parts.append(np.eye(len(index) + 1)[ids])
    return np.concatenate(parts, axis=1).astype(np.float32)


def input_names(spec: dict[str, Any]) -> list[str]:
    """The Keras input name of each column: the column name made safe (``mean radius`` -> ``mean_radius``)."""
    names: list[str] = []
    for i, column in enumerate(spec["columns"]):
        name = re.sub(r"[^A-Za-z0-9_]", "_", column["name"]) or f"column_{i}"
        names.append(name if name not in names and not name[0].isdigit() else f"c{i}_{name}")
    return names


def raw_inputs(spec: dict[str, Any], features: pd.DataFrame) -> dict[str, Any]:
    """Raw rows as the inputs of a :func:`raw_input_model`: one ``(n, 1)`` tensor per column, keyed
    by :func:`input_names`. Numeric columns become float32 (missing cells NaN), categorical ones
    strings (missing: ``""``; a category not seen in training goes to the out-of-vocabulary slot).

    Example:
        >>> model.predict(raw_inputs(spec, pd.read_csv("new.csv")))  # doctest: +SKIP
    """
    import tensorflow as tf

    missing = [c["name"] for c in spec["columns"] if c["name"] not in features.columns]
    if missing:
        from regsweep.errors import DataError

        raise DataError(f"rows: column(s) {missing} missing; allowed: the training columns {[c['name'] for c in spec['columns']]}")
    out: dict[str, Any] = {}
    for name, column in zip(input_names(spec), spec["columns"]):
        raw = features[column["name"]]
        if column["kind"] == "numeric":
            out[name] = _numbers(raw).astype(np.float32)[:, None]
        else:  # Keras' array adapters take no numpy strings: a tf.string tensor
            out[name] = tf.constant(_categories(raw).astype(str)[:, None])
    return out


def preprocessing_layers(spec: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """Keras inputs (one per raw column) and the feature tensor ``spec`` makes of them."""
    import keras

    from regsweep.keras_layers import MeanImputation, MissingIndicator

    inputs: dict[str, Any] = {}
    parts: list[Any] = []
    for i, (safe, column) in enumerate(zip(input_names(spec), spec["columns"])):
        if column["kind"] == "numeric":
            x = inputs[safe] = keras.Input(shape=(1,), dtype="float32", name=safe)
            filled = MeanImputation(column["mean"], name=f"impute_{i}")(x)
            if spec["scale"]:
                filled = keras.layers.Normalization(mean=[column["mean"]], variance=[column["variance"]],
                                                    name=f"normalize_{i}")(filled)
            parts.append(filled)
            if column["missing"]:
                parts.append(MissingIndicator(name=f"missing_{i}")(x))
        else:
            x = inputs[safe] = keras.Input(shape=(1,), dtype="string", name=safe)
            lookup = keras.layers.StringLookup(vocabulary=column["vocabulary"] or ["[none]"], num_oov_indices=1,
                                               output_mode="one_hot", name=f"lookup_{i}")
            parts.append(keras.layers.Reshape((len(column["vocabulary"] or ["[none]"]) + 1,), name=f"flat_{i}")(lookup(x)))
    features = parts[0] if len(parts) == 1 else keras.layers.Concatenate(name="features")(parts)
    return inputs, features


def raw_input_model(spec: dict[str, Any], network: keras.Model) -> keras.Model:
    """``network`` (trained on :func:`transform`'s features) behind the preprocessing layers of ``spec``."""
    import keras

    inputs, features = preprocessing_layers(spec)
    return keras.Model(inputs=inputs, outputs=network(features), name="regsweep_raw")
