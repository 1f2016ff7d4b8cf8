"""Training a pack: K sampled configurations as K independent branches of one Keras graph.

Small regularized MLPs are bound by per-step framework overhead, not arithmetic, so running
K of them in one graph step costs little more than running one. A pack is K models, each
built exactly as :func:`regsweep.models.build_model` builds it alone (after
``keras.utils.set_random_seed(seed + trial.number)``: same initial weights, same dropout
seed generators, its own optimizer with its own learning rate and ``clipnorm``). They share
only the input batches. One training step computes each branch's loss (its data loss plus
*its own* weight penalty), takes one gradient of the sum (a branch's weights do not appear in
the other terms, so it receives exactly the gradient of its own loss) and applies each
branch's gradients with its optimizer settings: branches with the same optimizer and learning
rate share one Keras optimizer over a flat vector of their weights (Adam, RMSprop and SGD update
element by element, so this equals one optimizer per branch, with far fewer graph ops), after
clipping each weight's gradient by that branch's ``clipnorm`` as Keras does.

What is equal: a branch trained in a pack whose batch order comes from seed ``s`` gives the
same curves (to float tolerance) as :func:`regsweep.objective.train_config` with
``seed=s``. In a sweep the pack's batch order is that of its first trial
(``seed + first trial number``), so the first trial of a pack equals its unpacked run and the
others differ from theirs only in the order of the batches.

Per branch, each epoch: the validation data loss is recorded and reported to its trial
(pruning), then early stopping with the trial's own patience runs exactly as Keras'
``EarlyStopping(restore_best_weights=True)``. A branch that stops is finished at once (its
best weights restored for its final measures) and its trial told; the pack stops when every
branch has stopped or at ``max_epochs``.

Example:
    >>> outcomes = train_pack([config_a, config_b], make_rings(300), seeds=[0, 1])  # doctest: +SKIP
    >>> [o.result.epochs for o in outcomes]  # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from regsweep.errors import SettingsError

if TYPE_CHECKING:
    import optuna

    from regsweep.data import Dataset
    from regsweep.objective import TrainResult
    from regsweep.space import TrialConfig


class PackingError(SettingsError):
    """Configurations that cannot share one pack (different batch size or max epochs)."""


def check_packable(configs: Sequence[TrialConfig]) -> None:
    """Raise :class:`PackingError` unless all configurations share batch size and max epochs."""
    if not configs:
        raise PackingError("pack: got no configurations; allowed: one or more")
    for name in ("batch_size", "max_epochs"):
        values = sorted({getattr(c, name) for c in configs})
        if len(values) > 1:
            raise PackingError(f"pack: {name} differs between branches ({values}); allowed: one {name} per pack "
                               "(branches share the batches), run these trials with --pack 1")


# -- one branch --------------------------------------------------------------------------------------
@dataclass
class _EarlyStopping:
    """Keras' ``EarlyStopping(monitor=..., patience=p, restore_best_weights=True)`` for one branch."""

    patience: int
    best: float | None = None
    best_epoch: int = 0
    wait: int = 0
    best_weights: list[Any] | None = None

    def update(self, epoch: int, current: float, weights: Callable[[], list[Any]]) -> bool:
        """Record one epoch's value; ``True`` when the branch must stop."""
        self.wait += 1
        if self.best is None or current < self.best:
            self.best, self.best_epoch, self.wait = current, epoch, 0
            self.best_weights = weights()
            return False
        return self.wait >= self.patience and epoch > 0


@dataclass
class PackOutcome:
    """How one branch ended: ``complete``, ``pruned`` or ``failed`` (with ``error``)."""

    index: int
    state: str
    result: TrainResult | None = None
    error: BaseException | None = None


@dataclass
class _Branch:
    index: int
    config: TrialConfig
    trial: optuna.trial.Trial | None
    model: Any
    stopping: _EarlyStopping
    history: dict[str, list[float]] = field(default_factory=lambda: {"data_loss": [], "val_data_loss": [], "val_metric": []})
    outcome: PackOutcome | None = None
    peers: Any = None  # a regsweep.pareto.PeerPruner in a multi-objective study (Optuna's pruner otherwise)
    size: int = 0  # trainable parameters, for the peer rule


def _make_branch(index: int, config: TrialConfig, dataset: Dataset, seed: int, trial: Any) -> _Branch:
    """Build branch ``index`` exactly as ``train_config`` builds the model of ``config`` alone."""
    import keras

    from regsweep.models import build_model

    keras.utils.set_random_seed(seed)
    return _Branch(index, config, trial, build_model(config, dataset), _EarlyStopping(config.patience))


def _set_peer_pruner(branches: list[_Branch], trials: Sequence[optuna.trial.Trial] | None) -> None:
    """In a multi-objective study, every branch is judged by regsweep's peer rule (one snapshot per pack)."""
    from regsweep.models import count_params
    from regsweep.pareto import study_peer_pruner

    peers = study_peer_pruner(trials[0].study) if trials else None
    if peers is not None:
        for branch in branches:
            branch.peers, branch.size = peers, count_params(branch.model)


# -- the graph ------------------------------------------------------------------------------------------
# Per-sample functions behind the ``data_loss`` and ``metric`` of models.compile_metrics.
_LOSS_FNS = {"binary": "binary_crossentropy", "multiclass": "sparse_categorical_crossentropy",
             "regression": "mean_squared_error"}
_METRIC_FNS = {"binary": "binary_accuracy", "multiclass": "sparse_categorical_accuracy",
               "regression": "mean_absolute_error"}


def _clip_by_norm(gradient: Any, clipnorm: float | None) -> Any:
    """Keras' per-weight ``clipnorm`` (``BaseOptimizer._clip_by_norm``), for one branch's gradient."""
    from keras import ops

    if not clipnorm:
        return gradient
    l2sum = ops.sum(ops.square(gradient), None, keepdims=True)
    positive = l2sum > 0
    l2norm = ops.where(positive, ops.sqrt(ops.where(positive, l2sum, ops.ones_like(l2sum))), l2sum)
    return ops.convert_to_tensor(ops.multiply(gradient, clipnorm)) / ops.maximum(l2norm, clipnorm)


class _OptimizerGroup:
    """Branches with the same optimizer and learning rate share one Keras optimizer over one flat
    vector of all their weights. Adam, RMSprop and SGD update each element on its own, so this
    equals one optimizer per branch, with a few graph ops per weight instead of dozens."""

    def __init__(self, branches: list[_Branch]) -> None:
        import dataclasses

        import keras
        from keras import ops

        from regsweep.models import make_optimizer

        self.variables = [v for b in branches for v in b.model.trainable_variables]
        self.clipnorms = [b.config.clipnorm for b in branches for _ in b.model.trainable_variables]
        self.sizes = [math.prod(v.shape) for v in self.variables]
        self.flat = keras.Variable(ops.concatenate([ops.reshape(v, (-1,)) for v in self.variables]), name="pack_flat")
        self.optimizer = make_optimizer(dataclasses.replace(branches[0].config, clipnorm=None))
        self.optimizer.build([self.flat])

    def apply(self, gradients: list[Any]) -> None:
        """One optimizer step for the group's weights (clipped per weight first, as Keras does)."""
        import tensorflow as tf

        flat = tf.concat([tf.reshape(_clip_by_norm(g, c), [-1]) for g, c in zip(gradients, self.clipnorms)], 0)
        self.optimizer.apply([flat], [self.flat])
        for variable, part in zip(self.variables, tf.split(self.flat.value, self.sizes)):
            variable.assign(tf.reshape(part, variable.shape))


class _PackGraph:
    """The pack's compiled step functions and its per-branch epoch sums (vectors of length K)."""

    def __init__(self, branches: list[_Branch], dataset: Dataset) -> None:
        import keras
        import tensorflow as tf

        self.branches = branches
        self.loss_fn = getattr(keras.losses, _LOSS_FNS[dataset.task])
        self.metric_fn = getattr(keras.metrics, _METRIC_FNS[dataset.task])
        keys: dict[tuple[str, float], list[_Branch]] = {}
        for branch in branches:
            keys.setdefault((branch.config.optimizer, branch.config.learning_rate), []).append(branch)
        self.groups = [_OptimizerGroup(group) for group in keys.values()]
        self.variables = [v for g in self.groups for v in g.variables]
        k = len(branches)
        self.sums = {name: tf.Variable(tf.zeros([k]), trainable=False)
                     for name in ("loss", "data_loss", "val_data_loss", "val_metric")}
        self.counts = {name: tf.Variable(0.0, trainable=False) for name in ("train", "val")}
        self.train_epoch = tf.function(self._train_epoch)
        self.val_step = tf.function(self._val_step, reduce_retracing=True)

    def _train_step(self, x: Any, y: Any) -> None:
        import tensorflow as tf
        from keras import ops

        size = tf.cast(tf.shape(x)[0], tf.float32)
        with tf.GradientTape() as tape:
            totals, data_losses = [], []
            for branch in self.branches:
                y_pred = branch.model(x, training=True)
                values = self.loss_fn(y, y_pred)
                data_loss = ops.sum(values) / ops.cast(ops.size(values), values.dtype)
                penalties = [ops.sum(loss) for loss in branch.model.losses]
                totals.append(ops.sum(ops.stack([data_loss, *penalties])) if penalties else data_loss)
                data_losses.append(data_loss)
            pack_loss = tf.add_n(totals)  # branch i's weights appear only in totals[i]
        gradients = tape.gradient(pack_loss, self.variables)
        start = 0
        for group in self.groups:
            group.apply(gradients[start:start + len(group.variables)])
            start += len(group.variables)
        self.sums["loss"].assign_add(tf.stack(totals) * size)
        self.sums["data_loss"].assign_add(tf.stack(data_losses) * size)
        self.counts["train"].assign_add(size)

    def _train_epoch(self, iterator: Any, steps: Any) -> None:
        import tensorflow as tf

        for _ in tf.range(steps):
            self._train_step(*iterator.get_next())

    def _val_step(self, x: Any, y: Any) -> None:
        import tensorflow as tf
        from keras import ops

        losses, metrics = [], []
        for branch in self.branches:
            y_pred = branch.model(x, training=False)
            losses.append(ops.sum(self.loss_fn(y, y_pred)))
            metrics.append(ops.sum(ops.cast(self.metric_fn(y, y_pred), "float32")))
        self.sums["val_data_loss"].assign_add(tf.stack(losses))
        self.sums["val_metric"].assign_add(tf.stack(metrics))
        self.counts["val"].assign_add(tf.cast(tf.shape(x)[0], tf.float32))

    def run_epoch(self, train: Any, steps: int, val: Any) -> list[dict[str, float]]:
        """Train one epoch and evaluate; the epoch's logs of every branch."""
        for variable in [*self.sums.values(), *self.counts.values()]:
            variable.assign(variable * 0)
        self.train_epoch(iter(train), steps)
        iter(train)  # as Keras' fit: it makes one unused iterator per epoch, which advances the reshuffle
        for x, y in val:
            self.val_step(x, y)
        sums = {name: variable.numpy() for name, variable in self.sums.items()}
        counts = {name: float(variable.numpy()) for name, variable in self.counts.items()}
        return [{name: float(values[i]) / counts["val" if name.startswith("val") else "train"]
                 for name, values in sums.items()} for i in range(len(self.branches))]


# -- the epoch loop -------------------------------------------------------------------------------------
def _finish(branch: _Branch, state: str, started: float, size: int, *, restore: bool,
            error: BaseException | None = None) -> PackOutcome:
    """Measure a stopped branch (best weights restored when ``restore``) into its outcome."""
    if error is None and restore and branch.stopping.best_weights is not None:
        branch.model.set_weights(branch.stopping.best_weights)
    result = None if error is not None else _train_result(branch, started, size)
    branch.outcome = PackOutcome(branch.index, state, result=result, error=error)
    return branch.outcome


def _train_result(branch: _Branch, started: float, size: int) -> TrainResult:
    """The branch's :class:`~regsweep.objective.TrainResult`, measured as ``train_config`` measures."""
    from regsweep.models import count_params, dense_kernels, kernel_norms
    from regsweep.objective import TrainResult

    history = branch.history
    curve = history["val_data_loss"]
    best = min(range(len(curve)), key=curve.__getitem__)
    weight_l1, weight_l2 = kernel_norms(dense_kernels(branch.model))
    return TrainResult(
        val_loss=curve[best], train_loss=history["data_loss"][best], val_metric=history["val_metric"][best],
        best_epoch=best + 1, epochs=len(curve), n_params=count_params(branch.model), weight_l1=weight_l1,
        weight_l2=weight_l2, val_curve=list(curve), train_curve=list(history["data_loss"]),
        val_metric_curve=list(history["val_metric"]),
        duration=(time.perf_counter() - started) / size,  # this trial's share of the pack's time
        model=branch.model,
    )


def _record_epoch(branch: _Branch, epoch: int, logs: dict[str, float], started: float, size: int) -> PackOutcome | None:
    """Append an epoch to a branch's curves and report it to its trial; a failed outcome on NaN."""
    from regsweep.objective import NonFiniteLossError

    for key in branch.history:
        branch.history[key].append(logs[key])
    if not (math.isfinite(logs["loss"]) and math.isfinite(logs["val_data_loss"])):
        error = NonFiniteLossError(f"non-finite loss at epoch {epoch + 1}: loss={logs['loss']}, "
                                   f"val_data_loss={logs['val_data_loss']}")
        return _finish(branch, "failed", started, size, restore=False, error=error)
    if branch.trial is not None and branch.peers is None:
        branch.trial.report(logs["val_data_loss"], step=epoch)
    return None


class _EpochView:
    """The study as a pruner sees it after one epoch: its trials are read once for the whole pack,
    not once per branch (``Trial.should_prune`` reads them for every call)."""

    def __init__(self, study: optuna.Study) -> None:
        self._study = study
        self._trials = study.get_trials(deepcopy=False)

    def get_trials(self, deepcopy: bool = True, states: Any = None) -> list[Any]:
        import copy

        trials = [t for t in self._trials if states is None or t.state in states]
        return copy.deepcopy(trials) if deepcopy else trials

    def frozen(self, number: int) -> Any:
        return next(t for t in self._trials if t.number == number)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)


def _stop_epoch(branch: _Branch, epoch: int, view: _EpochView | None, started: float, size: int) -> PackOutcome | None:
    """Prune (as ``trial.should_prune()``) or early-stop one branch; its outcome when it stopped."""
    import optuna

    if branch.peers is not None:
        pruned = branch.peers.should_prune(branch.size, branch.history["val_data_loss"])
    else:
        pruned = branch.trial is not None and view is not None and branch.trial.study.pruner.prune(
            view, view.frozen(branch.trial.number))  # type: ignore[arg-type]
    if pruned:
        outcome = _finish(branch, "pruned", started, size, restore=False)
        outcome.error = optuna.TrialPruned(f"pruned at epoch {epoch + 1}")
        return outcome
    if branch.stopping.update(epoch, branch.history["val_data_loss"][-1], branch.model.get_weights):
        return _finish(branch, "complete", started, size, restore=True)
    return None


def _end_epoch(branches: list[_Branch], epoch: int, logs: list[dict[str, float]], started: float,
               size: int) -> list[PackOutcome]:
    """Record, report, prune and early-stop the running branches after an epoch; who stopped."""
    stopped = [o for b in branches if (o := _record_epoch(b, epoch, logs[b.index], started, size)) is not None]
    running = [b for b in branches if b.outcome is None]
    with_trial = [b for b in running if b.trial is not None and b.peers is None]  # Optuna's pruner
    view = _EpochView(with_trial[0].trial.study) if with_trial else None
    stopped += [o for b in running if (o := _stop_epoch(b, epoch, view, started, size)) is not None]
    return stopped


def train_pack(configs: Sequence[TrialConfig], dataset: Dataset, *, seeds: Sequence[int],
               data_seed: int | None = None, trials: Sequence[optuna.trial.Trial] | None = None,
               on_done: Callable[[PackOutcome], None] | None = None,
               on_epoch: Callable[[int], None] | None = None) -> list[PackOutcome]:
    """Train ``configs`` together as one pack; one :class:`PackOutcome` per configuration.

    Args:
        configs: the configurations (same batch size and max epochs).
        dataset: the data every branch trains on.
        seeds: the Keras seed of each branch (initial weights, dropout), as ``train_config``'s ``seed``.
        data_seed: seed of the shared batch order (default: ``seeds[0]``).
        trials: an Optuna trial per branch: each epoch is reported to it and its pruner may stop it.
        on_done: called with each branch's outcome as soon as that branch stops.
        on_epoch: called with the epoch index after every epoch.

    Raises:
        PackingError: the configurations cannot share a pack.
    """
    import keras

    from regsweep.objective import finish_result, input_pipelines

    def done(outcome: PackOutcome) -> None:
        """At once, while the branch holds its best weights: inference-mode train loss, model to save."""
        if outcome.result is not None:
            finish_result(outcome.result, branches[outcome.index].model, dataset, keep_model=outcome.state == "complete")
        if on_done is not None:
            on_done(outcome)

    check_packable(configs)
    if len(seeds) != len(configs) or (trials is not None and len(trials) != len(configs)):
        raise PackingError(f"pack: {len(configs)} configurations need as many seeds and trials, got "
                           f"{len(seeds)} seeds and {'no' if trials is None else len(trials)} trials")
    started = time.perf_counter()
    data_seed = seeds[0] if data_seed is None else data_seed
    keras.utils.set_random_seed(data_seed)
    train, val, steps = input_pipelines(dataset, configs[0].batch_size, data_seed)
    branches = [_make_branch(i, c, dataset, s, None if trials is None else trials[i])
                for i, (c, s) in enumerate(zip(configs, seeds))]
    _set_peer_pruner(branches, trials)
    graph = _PackGraph(branches, dataset)
    for epoch in range(configs[0].max_epochs):
        running = [b for b in branches if b.outcome is None]
        if not running:
            break
        logs = graph.run_epoch(train, steps, val)
        for outcome in _end_epoch(running, epoch, logs, started, len(branches)):
            done(outcome)
        if on_epoch is not None:
            on_epoch(epoch)
    for branch in branches:
        if branch.outcome is None:  # reached max_epochs: Keras restores the best weights at the end
            done(_finish(branch, "complete", started, len(branches), restore=True))
        elif branch.outcome.state == "complete" and branch.stopping.best_weights is not None:
            branch.model.set_weights(branch.stopping.best_weights)  # undo training after it stopped
    return [b.outcome for b in branches if b.outcome is not None]
