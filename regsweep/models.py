"""Turning one :class:`~regsweep.space.TrialConfig` into a compiled Keras model.

TensorFlow/Keras are imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import keras

    from regsweep.arrays import Dataset
    from regsweep.space import SearchSpace, TrialConfig


def make_regularizer(kind: str, lam: float, *, l1: float | None = None, l2: float | None = None) -> Any:
    """The Keras kernel regularizer for ``kind`` (``l1_l2`` puts λ on both terms unless
    ``l1``/``l2`` give each term its own strength, as the notes' ``l1_l2(l1=1e-6, l2=1e-5)``)."""
    import keras

    if kind == "l1_l2" and (l1 is not None or l2 is not None):
        return keras.regularizers.L1L2(l1=lam if l1 is None else l1, l2=lam if l2 is None else l2)
    if kind == "none" or lam == 0:
        return None
    if kind == "l1":
        return keras.regularizers.L1(lam)
    if kind == "l2":
        return keras.regularizers.L2(lam)
    if kind == "l1_l2":
        return keras.regularizers.L1L2(l1=lam, l2=lam)
    raise ValueError(f"unknown regularizer {kind!r}")


def augmentation_layers(strength: float, input_shape: tuple[int, ...]) -> list[Any]:
    """Random rotation, translation, zoom and shear for image inputs (active in training only).

    Inputs of shape (height, width) get a channel axis first. Non-image inputs get none.
    """
    import keras

    if strength <= 0 or len(input_shape) not in (2, 3):
        return []
    layers: list[Any] = []
    if len(input_shape) == 2:
        layers.append(keras.layers.Reshape((*input_shape, 1), name="add_channel"))
    layers += [
        keras.layers.RandomRotation(strength / 2, fill_mode="constant", name="aug_rotation"),
        keras.layers.RandomTranslation(strength, strength, fill_mode="constant", name="aug_translation"),
        keras.layers.RandomZoom(strength, fill_mode="constant", name="aug_zoom"),
    ]
    if hasattr(keras.layers, "RandomShear"):
        layers.append(keras.layers.RandomShear(x_factor=strength, y_factor=strength, fill_mode="constant", name="aug_shear"))
    return layers


def hidden_layers(config: TrialConfig, *, prefix: str = "") -> list[Any]:
    """The Dense (+ BatchNorm) (+ Dropout) stack of one configuration."""
    import keras

    layers: list[Any] = []
    for i in range(config.depth):
        layers.append(keras.layers.Dense(
            config.width, activation=None if config.batch_norm else config.activation,
            kernel_regularizer=make_regularizer(config.regularizer, config.lam, l1=config.extras.get("l1"),
                                                l2=config.extras.get("l2")),
            name=f"{prefix}dense_{i}",
        ))
        if config.batch_norm:
            layers.append(keras.layers.BatchNormalization(name=f"{prefix}batch_norm_{i}"))
            layers.append(keras.layers.Activation(config.activation, name=f"{prefix}activation_{i}"))
        if config.dropout > 0:
            layers.append(keras.layers.Dropout(config.dropout, name=f"{prefix}dropout_{i}"))
    return layers


def make_optimizer(config: TrialConfig) -> Any:
    """The optimizer of ``config`` with its learning rate and optional ``clipnorm``."""
    import keras

    cls = {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop, "sgd": keras.optimizers.SGD}
    kwargs: dict[str, Any] = {"learning_rate": config.learning_rate}
    if config.clipnorm is not None:
        kwargs["clipnorm"] = config.clipnorm
    return cls[config.optimizer](**kwargs)


def largest_model_params(space: SearchSpace, dataset: Dataset) -> int:
    """Trainable parameters of the biggest MLP ``space`` can sample for ``dataset``."""
    features = math.prod(dataset.input_shape)
    depth, width = space.depth[1], space.width[1]
    hidden = (features + 1) * width + (depth - 1) * (width + 1) * width
    norm = 2 * width * depth if True in space.batch_norm else 0
    return hidden + norm + (width + 1) * dataset.output_units


def build_model(config: TrialConfig, dataset: Dataset, *, steps_per_execution: int = 1) -> keras.Model:
    """Build and compile the ``Sequential`` MLP of one configuration for ``dataset``.

    Example:
        >>> model = build_model(config, make_rings(200))  # doctest: +SKIP
    """
    import keras

    layers: list[Any] = [keras.Input(shape=dataset.input_shape)]
    layers += augmentation_layers(config.augmentation, dataset.input_shape)
    if len(dataset.input_shape) > 1 or (config.augmentation > 0 and len(dataset.input_shape) in (2, 3)):
        layers.append(keras.layers.Flatten(name="flatten"))
    layers += hidden_layers(config)
    layers.append(keras.layers.Dense(dataset.output_units, activation=dataset.output_activation, name="output"))
    model = keras.Sequential(layers, name="regsweep_mlp")
    model.compile(
        optimizer=make_optimizer(config), loss=dataset.loss, metrics=compile_metrics(dataset),
        steps_per_execution=steps_per_execution,
    )
    return model


def export_model(network: keras.Model, dataset: Dataset) -> keras.Model:
    """The model to save for ``dataset``: ``network`` itself, or for preprocessed tabular data
    ``network`` behind the fitted preprocessing layers (raw rows in, see
    :func:`regsweep.preprocessing.raw_input_model`), saved uncompiled."""
    if dataset.preprocessing is None:
        return network
    from regsweep.preprocessing import raw_input_model

    return raw_input_model(dataset.preprocessing, network)  # compiled when loaded (load_best_model)


def compile_metrics(dataset: Dataset) -> list[Any]:
    """``data_loss`` (the loss without the weight penalty, which Keras adds to ``loss``) and
    ``metric`` (accuracy, or MAE for regression)."""
    return task_metrics(dataset.task)


def task_metrics(task: str) -> list[Any]:
    """The ``data_loss`` and ``metric`` Keras metrics of a task (see :func:`compile_metrics`)."""
    import keras

    data_loss = {
        "binary": keras.metrics.BinaryCrossentropy,
        "multiclass": keras.metrics.SparseCategoricalCrossentropy,
        "regression": keras.metrics.MeanSquaredError,
    }[task](name="data_loss")
    metric = {
        "binary": lambda: keras.metrics.BinaryAccuracy(name="metric"),
        "multiclass": lambda: keras.metrics.SparseCategoricalAccuracy(name="metric"),
        "regression": lambda: keras.metrics.MeanAbsoluteError(name="metric"),
    }[task]()
    return [data_loss, metric]


def count_params(model: keras.Model) -> int:
    """Number of trainable parameters."""
    return int(sum(math.prod(w.shape) for w in model.trainable_weights))


def dense_kernels(model: keras.Model) -> list[Any]:
    """The kernel arrays of every Dense layer (hidden and output), as numpy."""
    import keras

    return [layer.kernel.numpy() for layer in _walk_layers(model) if isinstance(layer, keras.layers.Dense)]


def _walk_layers(model: Any) -> list[Any]:
    out = []
    for layer in model.layers:
        out.extend(_walk_layers(layer) if hasattr(layer, "layers") else [layer])
    return out


def kernel_norms(kernels: list[Any]) -> tuple[float, float]:
    """Sum of |w| and the Euclidean norm over all given kernels: ``(weight_l1, weight_l2)``."""
    import numpy as np

    l1 = float(sum(np.abs(k).sum() for k in kernels))
    l2 = float(math.sqrt(sum(float(np.square(k).sum()) for k in kernels)))
    return l1, l2
