"""The compiled epoch shared by every slot trainer of one depth: one ``tf.function`` program over
every batch of an epoch for the running slots' rows, and the functions around it (gather and
scatter of a trainer's rows, validation, best weights). :class:`~regsweep.engine.trainer.SlotTrainer`
gets them from :func:`compiled_for`, built once per process and key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf
from keras import ops

from regsweep.engine.stack import SlotOptimizer, StackedMLP

_COMPILED: dict[tuple[Any, ...], _Compiled] = {}


@dataclass(frozen=True)
class _Compiled:
    """The compiled functions shared by every trainer of one depth, input, output, options and
    batch size (see :func:`compiled_for`)."""

    program: Any  # one epoch of the running slots' rows (input signature: any width, any count)
    epoch: Any  # gather the running rows from a trainer's variables, run ``program``, scatter back
    validate: Any  # per-slot validation sums of the running rows on one chunk
    keep_best: Any  # copy the improved slots' weights into the best weights


def compiled_for(layer: StackedMLP, optimizer: SlotOptimizer, batch_size: int, y_train: np.ndarray, *,
                 jit_compile: bool = False) -> _Compiled:
    """The compiled epoch of ``layer``'s bucket: built once per process for every bucket with the
    same depth, input, output, options and batch size. The program is traced once (without
    AutoGraph: its batch loop is a ``tf.while_loop``): the slot axis and the width are dynamic in
    its signature. The functions around it take the trainer's variables as arguments
    (``reduce_retracing``), so a trainer of another width reuses their traces too. ``epoch``
    gathers the running slots' rows cut to ``widths[0]`` units (the widest running trial's, see
    ``SlotTrainer.running_width``; the units past it are masked zeros), runs ``program`` and
    writes the rows back zero-padded to the trainer's width ``widths[1]``.

    ``program`` maps the running slots' rows ``(params, hyper, state, steps)`` (see
    :meth:`StackedMLP.forward` and :meth:`SlotOptimizer.update`), the epoch's rows ``x, y`` and a
    dropout ``seed`` to the updated ``(params, state, steps)`` and per-slot mean ``loss`` and
    ``data_loss`` over the epoch, batch after batch as ``model.fit`` does.
    """
    bucket = layer.bucket
    y_spec = tf.TensorSpec([None, *y_train.shape[1:]], tf.as_dtype(y_train.dtype))
    key = (dataclasses.replace(bucket, width=0), batch_size, y_spec, jit_compile)
    if key in _COMPILED:
        return _COMPILED[key]
    size = batch_size

    def program(params: Any, hyper: Any, state: Any, steps: Any, x: Any, y: Any, seed: Any) -> Any:
        n = tf.shape(x)[0]
        count = (n + size - 1) // size

        def batch(i: Any, params: Any, state: Any, steps: Any, loss_sum: Any, data_sum: Any) -> tuple[Any, ...]:
            x_batch, y_batch = x[i * size:(i + 1) * size], y[i * size:(i + 1) * size]
            batch_seed = tf.random.experimental.stateless_fold_in(seed, i)
            gradients, data_total, rows = layer.gradients(params, hyper, x_batch, y_batch, batch_seed)
            total = ops.add(ops.divide(data_total, rows), layer.penalty(params, hyper))
            params, state, steps = optimizer.update(params, gradients, state, steps)
            return i + 1, params, state, steps, loss_sum + total * rows, data_sum + data_total

        zeros = tf.zeros(tf.shape(steps["steps"]))
        _, params, state, steps, loss_sum, data_sum = tf.while_loop(
            lambda i, *_: i < count, batch, (tf.constant(0), params, state, steps, zeros, zeros))
        total_rows = ops.cast(n, "float32")
        return params, state, steps["steps"], loss_sum / total_rows, data_sum / total_rows

    def spec(variable: Any) -> tf.TensorSpec:  # the slot axis and any width-sized axis are dynamic
        shape = [None] + [None if d == bucket.width else d for d in variable.shape[1:]]
        return tf.TensorSpec(shape, "float32")

    x_spec = tf.TensorSpec([None, bucket.input_dim], "float32")
    signature = [tf.nest.map_structure(spec, layer.weight_list()), tf.nest.map_structure(spec, layer.slot_hyper()),
                 tf.nest.map_structure(spec, optimizer.slots), tf.nest.map_structure(spec, optimizer.hyper()),
                 x_spec, y_spec, tf.TensorSpec([2], "int32")]
    compiled_program = tf.function(program, input_signature=signature, jit_compile=jit_compile, autograph=False)

    # the same for every bucket of this key (they differ in width only)
    weight_axes, hyper_axes = layer.width_axes(), layer.hyper_width_axes()

    def epoch(weights: Any, hyper: Any, state: Any, opt_hyper: Any, active: Any, x: Any, y: Any, seed: Any,
              widths: Any) -> Any:
        # widths: the units to compute and the trainer's width, as a tensor: this trace serves
        # trainers of every width, and a variable's static shape in it is the first trainer's.
        width, full_width = widths[0], widths[1]
        running = tf.reshape(tf.where(active > 0), [-1])
        index = tf.expand_dims(running, 1)

        def cut(variable: Any, axes: tuple[int, ...]) -> Any:  # the running rows, ``width`` units wide
            rows = tf.gather(variable, running)
            return rows[tuple(slice(None, width) if a in axes else slice(None) for a in range(rows.shape.rank))]

        def put(variable: Any, rows: Any, axes: tuple[int, ...]) -> None:  # back in place, zero-padded
            pad = [[0, full_width - width] if a in axes else [0, 0] for a in range(rows.shape.rank)]
            variable.scatter_nd_update(index, tf.pad(rows, pad) if axes else rows)

        params = [cut(v, axes) for v, axes in zip(weights, weight_axes)]
        state_rows = {name: [cut(v, axes) for v, axes in zip(values, weight_axes)] for name, values in state.items()}
        hyper_rows = {name: cut(v, hyper_axes[name]) for name, v in hyper.items()}
        params, new_state, steps, loss, data_loss = compiled_program(
            params, hyper_rows, state_rows, {name: tf.gather(v, running) for name, v in opt_hyper.items()}, x, y, seed)
        for variable, rows, axes in zip(weights, params, weight_axes):
            put(variable, rows, axes)
        for name, values in state.items():
            for variable, rows, axes in zip(values, new_state[name], weight_axes):
                put(variable, rows, axes)
        put(opt_hyper["steps"], steps, ())
        return running, params, hyper_rows, loss, data_loss

    def validate(params: Any, hyper: Any, x: Any, y: Any) -> tuple[Any, Any]:  # same signature as program
        logits = layer.forward(params, hyper, x)
        return (ops.sum(layer.per_sample(logits, y), axis=1),
                ops.sum(layer.per_sample(logits, y, metric=True), axis=1))

    def keep_best(weights: Any, best: Any, improved: Any) -> None:
        for variable, kept in zip(weights, best):
            mask = tf.reshape(improved, [-1] + [1] * (variable.shape.rank - 1))
            kept.assign(tf.where(mask, variable, kept))

    _COMPILED[key] = _Compiled(
        compiled_program, tf.function(epoch, reduce_retracing=True, autograph=False),
        tf.function(validate, input_signature=[*signature[:2], x_spec, y_spec], autograph=False),
        tf.function(keep_best, reduce_retracing=True, autograph=False))
    return _COMPILED[key]
