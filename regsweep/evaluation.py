"""After the sweep: the top-K saved models measured once on the held-out test rows.

Only the models of the best ``keep_top`` complete trials are stored (see
:mod:`regsweep.artifacts`), so only they (and hence the best trial) are evaluated. The figures
are recorded in the study's user attribute ``test_results`` (``{trial: {test_loss, ...}}``) and
shown by the leaderboard, ``regsweep best`` and the report. Nothing here feeds back into the
search: the test rows never reach a worker's training or validation, and no ranking uses them.

Recorded per evaluated trial: ``test_loss`` (data loss: cross-entropy or MSE), ``test_metric``
(accuracy, MAE for regression), and for classification ``test_balanced_accuracy`` and
``test_roc_auc`` (one-vs-rest, macro), useful for imbalanced classes (every classification trial
records the same two on its validation rows, see :func:`regsweep.objective.validation_scores`).

Example:
    >>> evaluate_top(study, dataset, k=3)  # doctest: +SKIP
    {4: {'test_loss': 0.081, 'test_metric': 0.97, ...}, ...}
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import optuna

    from regsweep.arrays import Dataset

_logger = logging.getLogger(__name__)

NETWORK_LAYER = "regsweep_mlp"  # the trained network inside a saved tabular model (raw rows in)


def network_of(model: Any) -> Any:
    """The trained network of a saved model: itself, or the one behind the preprocessing layers."""
    try:
        return model.get_layer(NETWORK_LAYER) if model.name != NETWORK_LAYER else model
    except ValueError:
        return model


def score(task: str, y_true: np.ndarray, y_pred: np.ndarray, *, prefix: str, extra: bool = True) -> dict[str, float]:
    """Data loss and metric (as :func:`regsweep.models.compile_metrics` defines them) of predictions.

    With ``extra`` and a classification task, also balanced accuracy and ROC AUC.
    """
    import keras

    loss_name = {"binary": "binary_crossentropy", "multiclass": "sparse_categorical_crossentropy",
                 "regression": "mean_squared_error"}[task]
    loss = float(np.mean(keras.ops.convert_to_numpy(keras.losses.get(loss_name)(y_true, y_pred))))
    if task == "regression":
        return {f"{prefix}_loss": loss, f"{prefix}_metric": float(np.mean(np.abs(y_true.reshape(-1) - y_pred.reshape(-1))))}
    labels = y_true.reshape(-1).astype(int)
    ids = (y_pred.reshape(-1) >= 0.5).astype(int) if task == "binary" else y_pred.argmax(axis=1)
    out = {f"{prefix}_loss": loss, f"{prefix}_metric": float(np.mean(ids == labels))}
    if extra:
        out.update(imbalanced_metrics(task, labels, y_pred, prefix=prefix))
    return out


def imbalanced_metrics(task: str, labels: np.ndarray, y_pred: np.ndarray, *, prefix: str) -> dict[str, float]:
    """Balanced accuracy and ROC AUC (one-vs-rest, macro, for multiclass) of class probabilities
    ``y_pred`` against class ids ``labels``; AUC is NaN when a class is missing from the rows."""
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    labels = np.asarray(labels).reshape(-1).astype(int)
    ids = (y_pred.reshape(-1) >= 0.5).astype(int) if task == "binary" else y_pred.argmax(axis=1)
    out = {f"{prefix}_balanced_accuracy": float(balanced_accuracy_score(labels, ids))}
    try:
        if task == "binary":
            out[f"{prefix}_roc_auc"] = float(roc_auc_score(labels, y_pred.reshape(-1)))
        else:
            probs = y_pred / y_pred.sum(axis=1, keepdims=True)
            out[f"{prefix}_roc_auc"] = float(roc_auc_score(labels, probs, multi_class="ovr", average="macro",
                                                           labels=list(range(y_pred.shape[1]))))
    except ValueError:  # a class missing from these rows: AUC undefined
        out[f"{prefix}_roc_auc"] = float("nan")
    return out


def top_complete_trials(study: optuna.Study, k: int) -> list[int]:
    """Numbers of the ``k`` complete trials with the lowest ``val_loss``, plus the best trial
    (:func:`regsweep.pareto.best_trial`, which in a multi-objective study may be a smaller model)."""
    from regsweep.pareto import best_trial

    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE" and t.values]
    if not complete:
        return []
    top = [t.number for t in sorted(complete, key=lambda t: (t.values[0], t.number))[:k]]
    best = best_trial(study).number
    return top if best in top else [best, *top]


def evaluate_top(study: optuna.Study, dataset: Dataset, *, k: int) -> dict[int, dict[str, float]]:
    """Measure the stored models of the ``k`` best complete trials on the test (and validation) rows.

    Records ``{trial: figures}`` in the study's ``test_results`` user attribute and returns it.
    Does nothing (returns ``{}``) without a test split or a stored model.
    """
    from regsweep.artifacts import load_best_model, model_artifacts
    from regsweep.report import TEST_ATTR

    if k < 1 or not dataset.has_test:
        return {}
    stored = model_artifacts(study)
    attrs = {t.number: t.user_attrs for t in study.get_trials(deepcopy=False)}
    results: dict[int, dict[str, float]] = {}
    for number in top_complete_trials(study, k):
        if number not in stored:
            _logger.warning("trial %d: no stored model, not evaluated on the test rows", number)
            continue
        network = network_of(load_best_model(study, trial_number=number))
        # with folds, the saved model is one fold's: its rows went through that fold's preprocessing
        rows = dataset.folds[int(attrs[number].get("model_fold", 0))] if dataset.folds else dataset
        results[number] = score(dataset.task, rows.y_test, _predict(network, rows.x_test), prefix="test")
    if results:
        study.set_user_attr(TEST_ATTR, {str(n): v for n, v in results.items()})
    return results


def _predict(network: Any, x: np.ndarray) -> np.ndarray:
    return np.asarray(network.predict(x, batch_size=4096, verbose=0))
