"""regsweep's own Keras layers (serializable), for the preprocessing in front of a saved model.

Importing this module imports Keras; :func:`regsweep.artifacts.load_best_model` imports it
before loading, and so must code that loads a saved tabular ``.keras`` file directly
(``import regsweep.keras_layers`` then ``keras.models.load_model(path)``).
"""

from __future__ import annotations

from typing import Any

import keras


@keras.saving.register_keras_serializable(package="regsweep")
class MeanImputation(keras.layers.Layer):
    """Replace NaN cells by the training mean of the column."""

    def __init__(self, mean: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mean = float(mean)

    def call(self, inputs: Any) -> Any:
        ops = keras.ops
        return ops.where(ops.isnan(inputs), ops.full_like(inputs, self.mean), inputs)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mean": self.mean}


@keras.saving.register_keras_serializable(package="regsweep")
class MissingIndicator(keras.layers.Layer):
    """1.0 where a cell is NaN, else 0.0."""

    def call(self, inputs: Any) -> Any:
        return keras.ops.cast(keras.ops.isnan(inputs), inputs.dtype)
