"""Training one trial: fit with early stopping, report per epoch, record what a reviewer needs.

The numbers recorded are *data* losses: Keras adds the weight penalty to ``loss`` and
``val_loss``, which would make a strongly regularized model look worse than it predicts.
regsweep tracks the plain cross-entropy / MSE as ``data_loss`` and records

* ``val_loss``: the lowest validation data loss over the epochs (the trial's value),
* ``train_loss``: the training data loss of the best epoch's weights measured in inference mode
  (no dropout, after training, as the validation loss is), ``gap`` = val_loss - train_loss
  (large and positive = overfitting); ``train_loss_dropout``: the epoch's training loss as Keras
  reports it (averaged over the epoch with dropout active, the ``train_curve``),
* ``val_metric``: validation accuracy (MAE for regression) of that epoch,
* ``epochs`` trained, ``best_epoch``, ``n_params``, ``weight_l1``, ``weight_l2``,
* the curves ``val_curve``, ``train_curve`` and ``val_metric_curve`` (one value per epoch).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from regsweep.space import SearchSpace, TrialConfig, suggest
from regsweep.stopping import StopRequest, keras_stop_callback

if TYPE_CHECKING:
    import keras
    import optuna

    from regsweep.arrays import Dataset

_logger = logging.getLogger(__name__)

# Attributes every finished trial carries (the leaderboard's columns come from these).
TRIAL_ATTRS = ("val_loss", "train_loss", "train_loss_dropout", "gap", "val_metric", "epochs", "best_epoch", "n_params",
               "weight_l1", "weight_l2")


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss (e.g. a huge λ or learning rate)."""


@dataclass
class TrainResult:
    """What training one configuration produced."""

    val_loss: float
    train_loss: float
    val_metric: float
    best_epoch: int
    epochs: int
    n_params: int
    weight_l1: float
    weight_l2: float
    val_curve: list[float]
    train_curve: list[float]
    val_metric_curve: list[float]
    duration: float
    model: Any = field(default=None, repr=False)  # the Keras engine's model, with keep_model
    network: Any = field(default=None, repr=False)  # the slots engine's weights (engine.SlotNetwork)
    train_loss_dropout: float = math.nan  # the epoch's dropout-mode training loss (train_curve[best_epoch - 1])
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. val_loss_std and repeats (see train_repeats)

    @property
    def gap(self) -> float:
        return self.val_loss - self.train_loss

    def attrs(self) -> dict[str, Any]:
        """The JSON-ready user attributes of a trial."""
        return {
            "val_loss": self.val_loss, "train_loss": self.train_loss, "train_loss_dropout": self.train_loss_dropout,
            "gap": self.gap,
            "val_metric": self.val_metric, "epochs": self.epochs, "best_epoch": self.best_epoch,
            "n_params": self.n_params, "weight_l1": self.weight_l1, "weight_l2": self.weight_l2,
            "val_curve": self.val_curve, "train_curve": self.train_curve,
            "val_metric_curve": self.val_metric_curve, "train_seconds": self.duration, **self.extra,
        }


# One entry: (dataset, train tensors, validation batches). Holding the dataset itself keeps its
# id from being reused by another dataset while the entry lives.
_INPUT_CACHE: dict[int, tuple[Any, Any, Any]] = {}


def input_pipelines(dataset: Dataset, batch_size: int, seed: int) -> tuple[Any, Any, int]:
    """In-memory ``tf.data`` pipelines for training (reshuffled each epoch) and validation.

    The tensors are made once per dataset in a process and reused by later trials; the
    shuffle is rebuilt per call, so the batch order depends only on ``seed``.
    Returns ``(train, validation, steps_per_epoch)``.
    """
    import tensorflow as tf

    key = id(dataset)
    if key not in _INPUT_CACHE or _INPUT_CACHE[key][0] is not dataset:
        _INPUT_CACHE.clear()
        _INPUT_CACHE[key] = (
            dataset,
            tf.data.Dataset.from_tensor_slices((dataset.x_train, dataset.y_train)).cache(),
            tf.data.Dataset.from_tensor_slices((dataset.x_val, dataset.y_val)).batch(PREDICT_ROWS).cache(),
        )
    _, base, val = _INPUT_CACHE[key]
    n = len(dataset.x_train)
    train = base.shuffle(n, seed=seed, reshuffle_each_iteration=True).batch(batch_size).prefetch(2)
    return train, val, math.ceil(n / batch_size)


def _quiet_keras() -> None:
    import warnings

    # regsweep shuffles in the tf.data pipeline itself; Keras warns that fit's shuffle is ignored.
    warnings.filterwarnings("ignore", message=".*`shuffle=True` was passed, but will be ignored.*")


def _epoch_callback(on_epoch: Any) -> Any:
    import keras

    class _EpochHook(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            on_epoch(epoch, logs or {})

    return _EpochHook()


PREDICT_ROWS = 4096  # rows per inference-mode call (as model.evaluate's batches of regsweep's validation)


def inference_chunks(model: keras.Model, x: Any, *, batch_size: int = PREDICT_ROWS) -> Iterator[tuple[slice, Any]]:
    """``model``'s inference-mode outputs on ``x``, ``batch_size`` rows at a time: ``(rows, outputs)``."""
    for start in range(0, len(x), batch_size):
        rows = slice(start, start + batch_size)
        yield rows, model(x[rows], training=False)


def validation_logs(model: keras.Model, dataset: Dataset, *, batch_size: int = PREDICT_ROWS) -> dict[str, float]:
    """``val_data_loss`` and ``val_metric`` of ``model`` on the validation rows, computed eagerly.

    The same metrics on the same 4096-row batches as ``model.evaluate``, without tracing a Keras
    test function for every new model: for regsweep's small MLPs that tracing cost more than
    all of a trial's validation passes together.
    """
    from regsweep.models import task_metrics

    metrics = task_metrics(dataset.task)
    for rows, pred in inference_chunks(model, dataset.x_val, batch_size=batch_size):
        for metric in metrics:
            metric.update_state(dataset.y_val[rows], pred)
    return {f"val_{metric.name}": float(metric.result()) for metric in metrics}


def _validation_callback(model: keras.Model, dataset: Dataset) -> Any:
    """Adds :func:`validation_logs` to each epoch's logs, for the callbacks after it."""
    import keras

    class _Validate(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            if logs is not None:
                logs.update(validation_logs(model, dataset))

    return _Validate()


def train_config(config: TrialConfig, dataset: Dataset, *, seed: int = 0,
                 trial: optuna.trial.Trial | None = None, keep_model: bool = False,
                 stop: StopRequest | None = None) -> TrainResult:
    """Train one configuration with early stopping and return its :class:`TrainResult`.

    With ``trial``, each epoch's validation data loss is reported to it and Optuna's pruner
    may stop training (``optuna.TrialPruned`` is raised after the curves are recorded on
    the trial); in a multi-objective study regsweep's :class:`~regsweep.pareto.PeerPruner`
    decides instead. A NaN or infinite loss raises :class:`NonFiniteLossError`. With ``stop``, a
    stop-now request raises :class:`~regsweep.stopping.TrialInterrupted` between two batches.
    """
    import keras
    import optuna

    from regsweep.models import build_model, count_params, dense_kernels, kernel_norms
    from regsweep.pareto import study_peer_pruner

    started = time.perf_counter()
    _quiet_keras()
    keras.utils.set_random_seed(seed)
    train, _, steps = input_pipelines(dataset, config.batch_size, seed)
    model = build_model(config, dataset, steps_per_execution=steps)
    history: dict[str, list[float]] = {"data_loss": [], "val_data_loss": [], "val_metric": []}
    peers = study_peer_pruner(trial.study) if trial is not None else None
    size = count_params(model) if peers is not None else 0

    def on_epoch(epoch: int, logs: dict[str, float]) -> None:
        for key in history:
            history[key].append(float(logs.get(key, math.nan)))
        if not (math.isfinite(logs.get("loss", math.nan)) and math.isfinite(logs.get("val_data_loss", math.nan))):
            raise NonFiniteLossError(f"non-finite loss at epoch {epoch + 1}: loss={logs.get('loss')}, "
                                     f"val_data_loss={logs.get('val_data_loss')}")
        if peers is not None:
            if peers.should_prune(size, history["val_data_loss"]):
                model.stop_training = True
                raise optuna.TrialPruned(f"pruned at epoch {epoch + 1} (loses to the median of smaller trials)")
        elif trial is not None:
            trial.report(logs["val_data_loss"], step=epoch)
            if trial.should_prune():
                model.stop_training = True
                raise optuna.TrialPruned(f"pruned at epoch {epoch + 1}")

    callbacks = [
        *([] if stop is None else [keras_stop_callback(stop)]),  # first: before any storage write
        _validation_callback(model, dataset),  # before the callbacks that read val_* logs
        _epoch_callback(on_epoch),
        keras.callbacks.EarlyStopping(monitor="val_data_loss", patience=config.patience, restore_best_weights=True),
    ]
    pruned: optuna.TrialPruned | None = None
    try:
        model.fit(train, epochs=config.max_epochs, callbacks=callbacks, verbose=0)
    except optuna.TrialPruned as exc:
        pruned = exc
    result = _result(config, model, history, started, count_params(model), kernel_norms(dense_kernels(model)))
    finish_result(result, model, dataset, keep_model=keep_model)
    if pruned is not None:
        if trial is not None:
            record_result(trial, result)
        raise pruned
    return result


def _result(config: TrialConfig, model: keras.Model, history: dict[str, list[float]], started: float,
            n_params: int, norms: tuple[float, float]) -> TrainResult:
    val_curve = history["val_data_loss"]
    best = min(range(len(val_curve)), key=val_curve.__getitem__)
    return TrainResult(
        val_loss=val_curve[best], train_loss=history["data_loss"][best], val_metric=history["val_metric"][best],
        best_epoch=best + 1, epochs=len(val_curve), n_params=n_params, weight_l1=norms[0], weight_l2=norms[1],
        val_curve=val_curve, train_curve=history["data_loss"], val_metric_curve=history["val_metric"],
        duration=time.perf_counter() - started,
    )


def worker_rss() -> dict[str, float]:
    """This worker's resident memory (MB) as the user attribute ``worker_rss_mb``, to watch growth across trials."""
    import psutil

    return {"worker_rss_mb": round(psutil.Process().memory_info().rss / 2**20, 1)}


def record_worker_rss(trial: optuna.trial.BaseTrial) -> None:
    """Store :func:`worker_rss` on the trial."""
    for key, value in worker_rss().items():
        trial.set_user_attr(key, value)


def inference_loss(model: keras.Model, x: Any, y: Any, loss: str, *, batch_size: int = PREDICT_ROWS) -> float:
    """Mean per-sample data loss of ``model`` on ``x``/``y`` in inference mode (no dropout)."""
    import keras
    import numpy as np

    loss_fn = keras.losses.get(loss)
    total = 0.0
    for rows, pred in inference_chunks(model, x, batch_size=batch_size):
        total += float(np.sum(keras.ops.convert_to_numpy(loss_fn(y[rows], pred))))
    return total / max(1, len(x))


def validation_scores(model: keras.Model, dataset: Dataset) -> dict[str, float]:
    """``val_balanced_accuracy`` and ``val_roc_auc`` of ``model`` (inference mode) on the validation rows."""
    import numpy as np

    from regsweep.evaluation import imbalanced_metrics

    pred = np.concatenate([np.asarray(out) for _, out in inference_chunks(model, dataset.x_val)])
    return imbalanced_metrics(dataset.task, dataset.y_val, pred, prefix="val")


def finish_result(result: TrainResult, model: keras.Model, dataset: Dataset, *, keep_model: bool = True) -> TrainResult:
    """Complete a result measured from the curves (by :func:`train_config` and the slots engine).

    ``model`` is the trained Keras model, or anything called like one in inference mode
    (``model(x, training=False)``): the slots engine passes its weights as an
    :class:`~regsweep.engine.SlotNetwork` and builds no Keras model (``keep_model=False``).

    ``train_loss`` becomes the training data loss of the final (best-epoch) weights in inference
    mode, so ``gap`` compares like with like; the curve's dropout-mode value is kept as
    ``train_loss_dropout``. For classification, ``extra`` gets ``val_balanced_accuracy`` and
    ``val_roc_auc`` of those weights (:func:`validation_scores`). With ``keep_model``, ``result.model`` is the model to save: for
    preprocessed tabular data, the network behind its preprocessing layers (raw rows in).
    """
    from regsweep.models import export_model

    result.train_loss_dropout = result.train_curve[result.best_epoch - 1]
    result.train_loss = inference_loss(model, dataset.x_train, dataset.y_train, dataset.loss)
    if dataset.task != "regression":  # recorded for imbalanced classes: balanced accuracy, ROC AUC
        result.extra.update(validation_scores(model, dataset))
    result.model = export_model(model, dataset) if keep_model else None
    return result


def record_result(trial: optuna.trial.BaseTrial, result: TrainResult, extra: dict[str, Any] | None = None) -> None:
    """Store a result's attributes and ``extra`` as the trial's user attributes (one storage
    transaction: :func:`regsweep.lifecycle.set_user_attrs`)."""
    from regsweep.lifecycle import set_user_attrs

    set_user_attrs(trial, {**(extra or {}), **result.attrs()})


def free_keras_memory() -> None:
    """Drop the Keras graph state between trials.

    This does not make a worker's memory flat: each ``model.fit`` of a new model leaves about
    7 MB behind in TensorFlow 2.21 / Keras 3.15 even after ``clear_session`` (upstream
    keras-team/keras#17458); the runner bounds it by recycling worker processes
    (``recycle_after``). No ``gc.collect()`` per trial (``free_memory=False``): it cost 0.25 s
    per trial and freed about 1 MB per trial, which recycling frees anyway (measured over 25
    trials: 1.71 s vs 1.96 s per trial, 210 MB vs 185 MB of growth).
    """
    import keras

    keras.backend.clear_session(free_memory=False)


REPEAT_SEED_STRIDE = 1_000_003  # repeat r of a trial trains with seed + trial.number + r * stride


def train_repeats(config: TrialConfig, dataset: Dataset, *, seed: int = 0, repeats: int = 1,
                  trial: optuna.trial.Trial | None = None, keep_model: bool = False,
                  stop: StopRequest | None = None) -> TrainResult:
    """Train ``config`` ``repeats`` times with different seeds; the result's ``val_loss`` is the mean.

    Repeat 0 uses ``seed`` and reports to ``trial`` (pruning); repeat r uses ``seed + r * 1000003``.
    With ``repeats > 1`` the result is the repeat whose ``val_loss`` is closest to the mean (its
    curves, epochs and model), with ``val_loss``, ``train_loss`` and ``val_metric`` replaced by the
    means and ``extra`` holding ``val_loss_std`` (sample std), ``val_losses``, ``repeats`` and
    ``model_val_loss`` (the chosen repeat's own value, which its saved model reproduces).
    """
    runs = [train_config(config, dataset, seed=seed + r * REPEAT_SEED_STRIDE, trial=trial if r == 0 else None,
                         keep_model=keep_model, stop=stop) for r in range(repeats)]
    return mean_of_repeats(runs)


def mean_of_repeats(runs: list[TrainResult]) -> TrainResult:
    """The result of a trial trained once per repeat (``runs``, repeat 0 first), as
    :func:`train_repeats` describes it; one run is returned as it is."""
    import statistics

    if len(runs) == 1:
        return runs[0]
    losses = [run.val_loss for run in runs]
    mean = statistics.fmean(losses)
    chosen = min(runs, key=lambda run: abs(run.val_loss - mean))
    chosen.extra.update({"val_loss_std": statistics.stdev(losses), "val_losses": losses, "repeats": len(runs),
                         "model_val_loss": chosen.val_loss})
    return _with_means(chosen, runs, mean)


def _with_means(chosen: TrainResult, runs: list[TrainResult], mean_val_loss: float) -> TrainResult:
    """``chosen`` with ``val_loss`` (given), ``train_loss``, ``train_loss_dropout`` and
    ``val_metric`` replaced by their means over ``runs``."""
    import statistics

    chosen.val_loss = mean_val_loss
    chosen.train_loss = statistics.fmean(run.train_loss for run in runs)
    chosen.train_loss_dropout = statistics.fmean(run.train_loss_dropout for run in runs)
    chosen.val_metric = statistics.fmean(run.val_metric for run in runs)
    return chosen


def train_folds(config: TrialConfig, folds: tuple[Dataset, ...], *, seed: int = 0,
                trial: optuna.trial.Trial | None = None, keep_model: bool = False,
                stop: StopRequest | None = None) -> TrainResult:
    """Cross-validation: train ``config`` on each fold (same seed); the result's ``val_loss`` is the mean.

    Fold 0 reports to ``trial`` each epoch, so the pruner watches fold 0 (a pruned trial trains
    no other fold); every fold early-stops on its own validation loss with the trial's patience.
    The result is the fold whose ``val_loss`` is closest to the mean (its curves, epochs and model,
    with that fold's preprocessing inside), with ``val_loss``, ``train_loss``,
    ``train_loss_dropout``, ``val_metric`` replaced by the means and ``extra`` holding ``folds``,
    ``val_loss_std`` (sample std), ``fold_val_losses``, ``fold_val_curves`` (one validation curve
    per fold), ``model_fold`` and ``model_val_loss`` (the saved fold's own value).
    """
    runs = [train_config(config, fold, seed=seed, trial=trial if i == 0 else None, keep_model=keep_model, stop=stop)
            for i, fold in enumerate(folds)]
    return mean_of_folds(runs)


def mean_of_folds(runs: list[TrainResult]) -> TrainResult:
    """The result of a trial trained once per fold (``runs``, fold 0 first), as
    :func:`train_folds` describes it."""
    import statistics

    losses = [run.val_loss for run in runs]
    mean = statistics.fmean(losses)
    index = min(range(len(runs)), key=lambda i: abs(runs[i].val_loss - mean))
    chosen = runs[index]
    chosen.extra.update({"folds": len(runs), "val_loss_std": statistics.stdev(losses) if len(runs) > 1 else 0.0,
                         "fold_val_losses": losses, "fold_val_curves": [run.val_curve for run in runs],
                         "model_fold": index, "model_val_loss": chosen.val_loss})
    return _with_means(chosen, runs, mean)


def _save_artifacts(trial: optuna.trial.Trial, result: TrainResult | None, keep_top: int) -> None:
    """Upload the learning curve (and the model, if it enters the top ``keep_top``); never fails the trial."""
    from regsweep.artifacts import save_learning_curve, save_trial_artifacts

    try:
        if result is not None:
            model = result.model
            save_trial_artifacts(trial.study, trial, result, keep_top=keep_top,
                                 build_model=(lambda: model) if model is not None else None)
        elif "val_curve" in trial.user_attrs:  # pruned: curves were recorded on the trial
            save_learning_curve(trial.study, trial, trial.user_attrs["train_curve"], trial.user_attrs["val_curve"])
    except Exception:  # an artifact problem (disk, plotting) must not lose the trial's result
        _logger.warning("trial %d: could not save its artifacts", trial.number, exc_info=True)


def objective(trial: optuna.trial.Trial, space: SearchSpace, dataset: Dataset, *, seed: int = 0,
              repeats: int = 1, keep_top: int = 3, artifacts: bool = True,
              stop: StopRequest | None = None) -> float | list[float]:
    """Optuna objective: sample a config, train it, record attributes, return ``val_loss``
    (or, in a multi-objective study, the values of its objectives, ``val_loss`` first).

    The Keras seed of a trial is ``seed + trial.number``, so a trial is reproducible on its own.
    With ``repeats`` > 1 the value is the mean over repeats (see :func:`train_repeats`); for a
    dataset with ``folds``, the mean over folds (see :func:`train_folds`). With
    ``artifacts``, the learning curve and (for the top ``keep_top``) the model are saved in the
    study's artifact store (see :mod:`regsweep.artifacts`). ``stop``: see :func:`train_config`.
    """
    import optuna

    config = suggest(trial, space)
    try:
        if dataset.folds:  # cross-validation (the runner refuses repeats > 1 with folds)
            result = train_folds(config, dataset.folds, seed=seed + trial.number, trial=trial, keep_model=artifacts,
                                 stop=stop)
        else:
            result = train_repeats(config, dataset, seed=seed + trial.number, repeats=repeats, trial=trial,
                                   keep_model=artifacts, stop=stop)
        record_result(trial, result)
        if artifacts:
            _save_artifacts(trial, result, keep_top)
    except optuna.TrialPruned:
        if artifacts:
            _save_artifacts(trial, None, keep_top)
        raise
    except NonFiniteLossError as exc:
        trial.set_user_attr("fail_reason", str(exc))
        raise
    finally:
        free_keras_memory()
    _logger.info("trial %d: val_loss=%.4f after %d epochs", trial.number, result.val_loss, result.epochs)
    return trial_value(trial.study, result)


def trial_value(study: optuna.Study, result: TrainResult) -> float | list[float]:
    """What ``study.tell`` gets for a complete trial: ``val_loss``, or the study's objectives' values."""
    from regsweep.pareto import is_multi, objective_values, study_objectives

    objectives = study_objectives(study)
    return objective_values(result.attrs(), objectives) if is_multi(objectives) else result.val_loss
