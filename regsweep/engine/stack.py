"""The stacked weights of K slots as one Keras layer, and a per-slot optimizer over them.

Every weight of a bucket holds all K slots on its first axis: hidden kernels ``[K, in, width]``,
biases ``[K, width]``, the output kernel ``[K, width, units]``. One forward pass is a batched
matmul per layer (``keras.ops.matmul`` broadcasts the shared input batch over the K slots), so
a step costs the same handful of ops whatever K is. The trainer's compiled epoch gathers the rows of
the running slots and trains only those (:meth:`StackedMLP.forward` and :meth:`SlotOptimizer.update`
take those rows as tensors), so an idle slot costs nothing. A slot's trial is a set of per-slot
*values*: its depth and width masks, L1 and L2 strengths, dropout rate, learning rate and
clipnorm live in non-trainable variables, so putting a new trial in a slot changes numbers and
never retraces the compiled graph.

Masked units are exactly zero and stay zero: their kernel columns, biases and the next layer's
rows are written as zeros, the activation is multiplied by the width mask (so they output zero
whatever ``activation(0)`` is, and the next layer's zero rows give them no gradient), and a hidden
layer past the trial's depth passes its input through (``where``), so its weights get no gradient
either. The penalties of those zero weights are zero, so each slot's loss is its real-shape
model's loss. A training step's gradients come from :meth:`StackedMLP.gradients`: a tape over the
output layer and the loss, and the hidden layers back-propagated by hand.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from regsweep.engine.buckets import Bucket

# Per-sample functions behind models.task_metrics' data_loss and metric (the Keras functions
# themselves, so a sigmoid/softmax output is turned into a loss exactly as model.fit does).
LOSS_FUNCTIONS = {"binary": keras.losses.binary_crossentropy,
                  "multiclass": keras.losses.sparse_categorical_crossentropy,
                  "regression": keras.losses.mean_squared_error}
METRIC_FUNCTIONS = {"binary": keras.metrics.binary_accuracy,
                    "multiclass": keras.metrics.sparse_categorical_accuracy,
                    "regression": keras.metrics.mean_absolute_error}
OUTPUT_ACTIVATIONS = {"binary": "sigmoid", "multiclass": "softmax", "regression": "linear"}


def _per_slot(values: Any, rank: int) -> Any:
    """A ``[K]`` vector shaped to broadcast against a ``[K, ...]`` tensor of ``rank`` dims."""
    return ops.reshape(values, (-1,) + (1,) * (rank - 1))


def _dropped(values: Any, keep: Any, rate: Any) -> Any:
    """Inverted dropout with the mask ``keep``: kept units scaled by ``1 / (1 - rate)``, the others 0
    (also the gradient of the same: it is linear)."""
    return ops.where(keep, ops.divide(values, 1.0 - rate), ops.zeros_like(values))


@dataclass(frozen=True)
class _HiddenLayer:
    """What back-propagation needs of one hidden layer of a training batch (see :meth:`StackedMLP.gradients`)."""

    inputs: Any  # its input, [B, in] for the first layer, else [S, B, W]
    z: Any  # its pre-activation
    tape: Any  # the tape that recorded its activation
    activated: Any  # activation(z)
    keep: Any  # the dropout mask, or None
    through: Any  # per slot: the layer is within the trial's depth (None for the first layer)
    rate: Any  # the per-slot dropout rate, or None


class StackedMLP(keras.layers.Layer):
    """K MLPs of one :class:`~regsweep.engine.buckets.Bucket` shape, stacked on the first axis.

    ``call(x, training)`` maps a shared batch ``[B, input_dim]`` to logits ``[K, B, units]``
    (the output activation is applied by the loss, see :meth:`per_sample`).
    """

    def __init__(self, bucket: Bucket, slots: int, *, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bucket, self.slots = bucket, slots
        k, w = slots, bucket.width
        dims = [bucket.input_dim] + [w] * bucket.depth
        zeros = "zeros"
        self.kernels = [self.add_weight(shape=(k, dims[i], w), initializer=zeros, name=f"kernel_{i}")
                        for i in range(bucket.depth)]
        self.biases = [self.add_weight(shape=(k, w), initializer=zeros, name=f"bias_{i}") for i in range(bucket.depth)]
        self.out_kernel = self.add_weight(shape=(k, w, bucket.units), initializer=zeros, name="out_kernel")
        self.out_bias = self.add_weight(shape=(k, bucket.units), initializer=zeros, name="out_bias")

        def value(name: str, shape: tuple[int, ...]) -> Any:
            return self.add_weight(shape=shape, initializer=zeros, trainable=False, name=name)

        self.depth_mask = value("depth_mask", (k, bucket.depth))  # 1.0 for the trial's hidden layers
        self.width_mask = value("width_mask", (k, w))  # 1.0 for the trial's units
        self.l1, self.l2, self.rate = value("l1", (k,)), value("l2", (k,)), value("dropout", (k,))
        self.activation = keras.activations.get(bucket.activation)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.built = True

    # -- the forward pass ---------------------------------------------------------------------------
    def slot_hyper(self) -> dict[str, Any]:
        """The per-slot values the forward pass and penalty read (masks, L1/L2, dropout rate)."""
        return {"depth_mask": self.depth_mask, "width_mask": self.width_mask, "l1": self.l1, "l2": self.l2,
                "rate": self.rate}

    def call(self, x: Any, training: bool = False) -> Any:
        seed = self.seed_generator.next() if training else None
        return self.forward(self.weight_list(), self.slot_hyper(), x, training=training, seed=seed)

    def forward(self, params: list[Any], hyper: dict[str, Any], x: Any, *, training: bool = False,
                seed: Any = None) -> Any:
        """Logits ``[S, B, units]`` of the S slots whose weights are ``params`` (:meth:`weight_list`
        order, first axis S) and per-slot values ``hyper`` (:meth:`slot_hyper`, first axis S): all K
        slots, or the rows of the running ones gathered by the trainer. Reads no variable, so one
        compiled function serves every bucket of a depth. ``seed``: the ``[2]`` seed of this
        batch's dropout masks (``training`` only; each layer folds in its index)."""
        h, _ = self._hidden(params, hyper, x, training=training, seed=seed)
        return self._output(params, h)

    def _output(self, params: list[Any], h: Any) -> Any:
        return ops.add(ops.matmul(h, params[-2]), ops.expand_dims(params[-1], 1))  # as Dense: x @ kernel + bias

    def _hidden(self, params: list[Any], hyper: dict[str, Any], x: Any, *, training: bool, seed: Any,
                record: bool = False) -> tuple[Any, list[_HiddenLayer]]:
        """The last hidden layer's output ``[S, B, W]`` and, with ``record``, what
        :meth:`gradients` needs of each layer to back-propagate through it."""
        width_mask = ops.expand_dims(hyper["width_mask"], 1)  # [S, 1, W]
        dropout = training and self.bucket.dropout
        rate = _per_slot(hyper["rate"], 3) if dropout else None
        layers, h = [], x
        for i in range(self.bucket.depth):
            kernel, bias = params[2 * i], params[2 * i + 1]
            z = ops.add(ops.matmul(h, kernel), ops.expand_dims(bias, 1))  # as Dense: x @ kernel + bias
            activation_tape = tf.GradientTape(watch_accessed_variables=False) if record else None
            with activation_tape or contextlib.nullcontext():
                if activation_tape is not None:
                    activation_tape.watch(z)
                activated = self.activation(z)
            a = ops.multiply(activated, width_mask)
            keep = through = None
            if dropout:
                layer_seed = tf.random.experimental.stateless_fold_in(seed, i)
                keep = tf.random.stateless_uniform(ops.shape(a), seed=layer_seed) >= rate
                a = _dropped(a, keep, rate)
            if i > 0:  # past the trial's depth the layer passes its input through
                through = _per_slot(hyper["depth_mask"][:, i], 3) > 0
                a = ops.where(through, a, h)
            if record:
                layers.append(_HiddenLayer(h, z, activation_tape, activated, keep, through, rate))
            h = a
        return h, layers

    def gradients(self, params: list[Any], hyper: dict[str, Any], x: Any, y: Any, seed: Any) -> tuple[Any, Any, Any]:
        """One training batch of the S slots ``params`` (dropout on): the gradients of
        ``sum_k(mean data loss_k + penalty_k)`` with respect to ``params``, the per-slot data loss
        sums ``[S]`` and the batch's rows.

        The output layer and the loss are differentiated by a ``GradientTape`` (Keras' own loss
        functions); the hidden layers are back-propagated by hand, as TensorFlow derives them:
        a dense layer's gradients are two matmuls and a sum, its activation's come from the
        activation's own tape, the dropout and depth pass-through ``where`` route them, and the
        penalties add ``l1 * sign(W)`` and ``l2 * 2W`` (the gradients of Keras' L1 and L2 terms).
        A tape over the whole network builds about 1.5x the ops with the slot axis and width
        dynamic (the broadcast bookkeeping of every per-slot op), so this step traces and runs
        faster; ``tests/test_engine.py`` checks it against ``model.fit``.
        """
        h, layers = self._hidden(params, hyper, x, training=True, seed=seed, record=True)
        with tf.GradientTape() as tape:
            tape.watch([h, params[-2], params[-1]])
            values = self.per_sample(self._output(params, h), y)
            rows = ops.cast(ops.shape(values)[1], "float32")
            data_total = ops.sum(values, axis=1)
            objective = ops.sum(ops.divide(data_total, rows))  # slot k's weights appear only in its term
        g_h, g_out_kernel, g_out_bias = tape.gradient(objective, [h, params[-2], params[-1]])
        gradients: list[Any] = [None] * len(params)
        gradients[-2], gradients[-1] = g_out_kernel, g_out_bias
        for i in reversed(range(self.bucket.depth)):
            layer, kernel = layers[i], params[2 * i]
            g_a, g_through = g_h, None
            if layer.through is not None:
                zeros = ops.zeros_like(g_h)
                g_a, g_through = ops.where(layer.through, g_h, zeros), ops.where(layer.through, zeros, g_h)
            if layer.keep is not None:
                g_a = _dropped(g_a, layer.keep, layer.rate)
            # A unit past the trial's width gets no gradient: the next layer's rows for it are zeros
            # (the forward's width mask keeps them so, whatever activation(0) is).
            g_z = layer.tape.gradient(layer.activated, layer.z, output_gradients=g_a)
            penalty = ops.add(ops.multiply(_per_slot(hyper["l1"], 3), ops.sign(kernel)),
                              ops.multiply(_per_slot(hyper["l2"], 3), ops.multiply(2.0, kernel)))
            gradients[2 * i] = ops.add(tf.linalg.matmul(layer.inputs, g_z, transpose_a=True), penalty)
            gradients[2 * i + 1] = ops.sum(g_z, axis=1)
            if i > 0:
                g_h = tf.linalg.matmul(g_z, kernel, transpose_b=True)
                if g_through is not None:
                    g_h = ops.add(g_h, g_through)
        return gradients, data_total, rows

    def per_sample(self, logits: Any, y: Any, *, metric: bool = False) -> Any:
        """Per-slot, per-sample data loss (or metric) ``[S, B]`` of ``logits`` ``[S, B, units]``:
        the output activation and loss are Keras' own, applied to the S slots as one batch."""
        k, b = ops.shape(logits)[0], ops.shape(logits)[1]
        flat = ops.reshape(logits, (k * b, self.bucket.units))
        pred = keras.activations.get(OUTPUT_ACTIVATIONS[self.bucket.task])(flat)
        targets = ops.tile(y, (k,) + (1,) * (len(y.shape) - 1))
        fn = (METRIC_FUNCTIONS if metric else LOSS_FUNCTIONS)[self.bucket.task]
        return ops.reshape(ops.cast(fn(targets, pred), "float32"), (k, b))

    def penalty(self, params: list[Any], hyper: dict[str, Any]) -> Any:
        """Per-slot kernel penalty ``[S]`` of the slot rows ``params`` with their values ``hyper``:
        ``l1 * sum|W| + l2 * sum W²`` over the hidden kernels (Keras' L1, L2 and L1L2
        regularizers; the output layer has none, as in models.py)."""
        total = None
        for kernel in params[0:2 * self.bucket.depth:2]:
            term = ops.add(ops.multiply(hyper["l1"], ops.sum(ops.abs(kernel), axis=(1, 2))),
                           ops.multiply(hyper["l2"], ops.sum(ops.square(kernel), axis=(1, 2))))
            total = term if total is None else ops.add(total, term)
        return total

    # -- slots as numpy ------------------------------------------------------------------------------
    def weight_list(self) -> list[Any]:
        """The trainable weights in Keras' ``get_weights`` order of a Sequential MLP."""
        return [v for pair in zip(self.kernels, self.biases) for v in pair] + [self.out_kernel, self.out_bias]

    def width_axes(self) -> list[tuple[int, ...]]:
        """The axes of each of :meth:`weight_list` that are ``bucket.width`` long (the units of a
        hidden layer; axis 0 is the slot axis): the trainer cuts them to its running slots' width."""
        axes: list[tuple[int, ...]] = []
        for i in range(self.bucket.depth):
            axes += [(2,) if i == 0 else (1, 2), (1,)]
        return [*axes, (1,), ()]

    def hyper_width_axes(self) -> dict[str, tuple[int, ...]]:
        """As :meth:`width_axes`, for each of :meth:`slot_hyper`."""
        return {name: (1,) if name == "width_mask" else () for name in self.slot_hyper()}

    def slot_variables(self) -> list[Any]:
        """The variables a trial's values go into (see :meth:`slot_values`)."""
        return [*self.weight_list(), self.depth_mask, self.width_mask, self.l1, self.l2, self.rate]

    def slot_values(self, weights: list[np.ndarray], *, depth: int, width: int, l1: float, l2: float,
                    dropout: float) -> list[np.ndarray]:
        """One slot's row of each of :meth:`slot_variables` for a trial: its real-shape weights
        (``get_weights`` order of its Sequential, zero-padded to the bucket) and its per-slot values."""
        masks = [(np.arange(self.bucket.depth) < depth).astype("float32"),
                 (np.arange(self.bucket.width) < width).astype("float32")]
        return [*pad_weights(self.bucket, weights, depth), *masks, *(np.float32(v) for v in (l1, l2, dropout))]

    def read_slot(self, slot: int, variables: list[Any], *, depth: int, width: int) -> list[np.ndarray]:
        """The real-shape weights of ``slot`` from ``variables`` (this layer's weights or a copy of them)."""
        out: list[np.ndarray] = []
        for i in range(depth):
            rows = self.bucket.input_dim if i == 0 else width
            out += [np.asarray(variables[2 * i][slot])[:rows, :width], np.asarray(variables[2 * i + 1][slot])[:width]]
        out += [np.asarray(variables[-2][slot])[:width], np.asarray(variables[-1][slot])]
        return out


def set_slot(variable: Any, slot: int, value: Any) -> None:
    """Overwrite ``variable[slot]`` (the whole slot row) with ``value``, in place: one scatter op on
    the TensorFlow variable (0.24 ms, against 0.56 ms for a scatter into a copy and its assign)."""
    target = variable.value if isinstance(variable, keras.Variable) else variable
    target.scatter_nd_update([[slot]], np.asarray(value, dtype="float32")[None])


def pad_weights(bucket: Bucket, weights: list[np.ndarray], depth: int) -> list[np.ndarray]:
    """Real-shape ``[k0, b0, ..., k_out, b_out]`` zero-padded to the bucket's slot shapes."""
    w = bucket.width
    padded: list[np.ndarray] = []
    for i in range(bucket.depth):
        kernel = np.zeros((bucket.input_dim if i == 0 else w, w), "float32")
        bias = np.zeros((w,), "float32")
        if i < depth:
            real_kernel, real_bias = weights[2 * i], weights[2 * i + 1]
            kernel[:real_kernel.shape[0], :real_kernel.shape[1]] = real_kernel
            bias[:real_bias.shape[0]] = real_bias
        padded += [kernel, bias]
    out_kernel = np.zeros((w, bucket.units), "float32")
    out_kernel[:weights[-2].shape[0]] = weights[-2]
    return padded + [out_kernel, np.asarray(weights[-1], "float32")]


class SlotOptimizer:
    """Adam, RMSprop or SGD (Keras' defaults and update formulas) applied to stacked weights, with a
    learning rate, clipnorm and step count per slot (Adam's bias correction counts each slot's own
    steps). :meth:`update` steps the slots it is given (the trainer gathers the active ones);
    :meth:`slot_values` is a slot's fresh state for a new trial."""

    BETA_1, BETA_2, RHO, EPSILON = 0.9, 0.999, 0.9, 1e-7

    def __init__(self, layer: StackedMLP) -> None:
        self.layer, self.kind = layer, layer.bucket.optimizer
        self.variables = layer.weight_list()
        k = layer.slots

        def state(name: str, shape: tuple[int, ...]) -> Any:
            return keras.Variable(np.zeros(shape, "float32"), trainable=False, name=name)

        self.learning_rate, self.clipnorm = state("learning_rate", (k,)), state("clipnorm", (k,))
        self.steps, self.active = state("steps", (k,)), state("active", (k,))
        slots = {"adam": ("m", "v"), "rmsprop": ("v",), "sgd": ()}[self.kind]
        self.slots = {name: [state(f"{name}_{i}", tuple(v.shape)) for i, v in enumerate(self.variables)]
                      for name in slots}

    def slot_variables(self) -> list[Any]:
        """The per-slot variables a new trial resets (see :meth:`slot_values`)."""
        return [self.learning_rate, self.clipnorm, self.steps, self.active,
                *(variable for states in self.slots.values() for variable in states)]

    def slot_values(self, *, learning_rate: float, clipnorm: float | None) -> list[np.ndarray]:
        """One slot's row of each of :meth:`slot_variables` for a new trial: zero state, zero steps."""
        state = [np.zeros(v.shape[1:], "float32") for states in self.slots.values() for v in states]
        return [np.float32(learning_rate), np.float32(clipnorm or 0.0), np.float32(0.0), np.float32(1.0), *state]

    def hyper(self) -> dict[str, Any]:
        """The per-slot values an update reads and advances: learning rate, clipnorm, step count."""
        return {"learning_rate": self.learning_rate, "clipnorm": self.clipnorm, "steps": self.steps}

    def _clip(self, gradient: Any, clipnorm: Any) -> Any:
        """Keras' per-weight ``clipnorm`` (``clip_by_norm``), per slot; slots with clipnorm 0 are not clipped."""
        rank = len(gradient.shape)
        axes = tuple(range(1, rank))
        clip = _per_slot(clipnorm, rank)
        l2sum = ops.sum(ops.square(gradient), axes, keepdims=True)
        positive = l2sum > 0
        l2norm = ops.where(positive, ops.sqrt(ops.where(positive, l2sum, ops.ones_like(l2sum))), l2sum)
        clipped = ops.divide(ops.multiply(gradient, clip), ops.maximum(l2norm, clip))
        return ops.where(clip > 0, clipped, gradient)

    def update(self, params: list[Any], gradients: list[Any], state: dict[str, list[Any]],
               hyper: dict[str, Any]) -> tuple[list[Any], dict[str, list[Any]], dict[str, Any]]:
        """One step of the S slots whose weights are ``params`` (first axis S, every slot trains):
        the new weights, optimizer state (:attr:`slots`' layout) and ``hyper`` (steps + 1).
        Pure tensors in and out, for the trainer's compiled epoch over the running slots."""
        lr = hyper["learning_rate"]
        steps = ops.add(hyper["steps"], 1.0)
        if self.kind == "adam":
            beta_1_power = ops.power(ops.cast(self.BETA_1, "float32"), steps)
            beta_2_power = ops.power(ops.cast(self.BETA_2, "float32"), steps)
            alpha = lr * ops.sqrt(1 - beta_2_power) / (1 - beta_1_power)
        new_params, new_state = [], {name: [] for name in state}
        for i, (gradient, variable) in enumerate(zip(gradients, params)):
            rank = len(variable.shape)
            if self.layer.bucket.clipnorm:
                gradient = self._clip(gradient, hyper["clipnorm"])
            if self.kind == "adam":
                m, v = state["m"][i], state["v"][i]
                m = ops.add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.BETA_1))
                v = ops.add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.BETA_2))
                new_state["m"].append(m)
                new_state["v"].append(v)
                step = ops.divide(ops.multiply(m, _per_slot(alpha, rank)), ops.add(ops.sqrt(v), self.EPSILON))
            elif self.kind == "rmsprop":
                v = state["v"][i]
                v = ops.add(ops.multiply(self.RHO, v), ops.multiply(1 - self.RHO, ops.square(gradient)))
                new_state["v"].append(v)
                step = ops.divide(ops.multiply(_per_slot(lr, rank), gradient), ops.sqrt(ops.add(v, self.EPSILON)))
            else:
                step = ops.multiply(gradient, _per_slot(lr, rank))
            new_params.append(ops.subtract(variable, step))
        return new_params, new_state, {**hyper, "steps": steps}
