"""Trained models and learning-curve images of a study, in Optuna's artifact store.

Artifacts live next to the study, in ``<study_dir>/artifacts`` (``studies/<study>/artifacts``
for the default SQLite storage), or in the folder the study recorded from ``--artifacts DIR``
(shared by workers on many hosts), in an :class:`optuna.artifacts.FileSystemArtifactStore`,
so optuna-dashboard shows them:

* each trial's learning curve (``trial-0007-curve.png``) is a *trial* artifact;
* the trained model (``trial-0007-model.keras``) of every trial that enters the top
  ``keep_top`` trials when it finishes (so every trial that becomes the best so far) is a
  *study* artifact; models that drop out of the top ``keep_top`` are removed again (the file
  and its metadata row, see :func:`forget_artifact`).

Example:
    >>> model = load_best_model(study)  # doctest: +SKIP
    >>> model.evaluate(dataset.x_val, dataset.y_val, return_dict=True)["data_loss"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regsweep.errors import SettingsError, StorageError
from regsweep.pareto import DEFAULT_TOLERANCE, best_trial

if TYPE_CHECKING:
    import keras
    import optuna

_logger = logging.getLogger(__name__)

ARTIFACTS_PREFIX = "artifacts:"  # optuna.artifacts' system-attribute key prefix
MODEL_ATTR = "model_artifact"
CURVE_ATTR = "curve_artifact"
_MODEL_FILE = re.compile(r"^trial-(\d+)-model\.keras$")


# -- where artifacts live ----------------------------------------------------------------------------
def storage_url(study: optuna.Study) -> str:
    """The database URL of a study made on an RDB storage (SQLite, PostgreSQL, ...)."""
    storage: Any = study._storage
    for _ in range(3):
        url = getattr(storage, "url", None)
        if isinstance(url, str):
            return url
        storage = getattr(storage, "_backend", None)
        if storage is None:
            break
    raise StorageError(f"study: {study.study_name!r} is not on a database storage; allowed: a study opened "
                       "from a storage URL such as sqlite:///studies/NAME.db")


def artifact_dir(study: optuna.Study) -> Path:
    """The folder the study recorded (``--artifacts DIR``), else ``<study_dir>/artifacts``: next to
    the SQLite file, or ``studies/<study>/artifacts`` for other storages."""
    from regsweep.storage import study_dir, study_meta

    recorded = study_meta(study).get("artifacts")
    if recorded:
        return Path(recorded)
    return (study_dir(storage_url(study), study.study_name) / "artifacts").resolve()


def artifact_store(study: optuna.Study) -> optuna.artifacts.FileSystemArtifactStore:
    """The study's file-system artifact store (its folder is created if missing)."""
    from optuna.artifacts import FileSystemArtifactStore

    folder = artifact_dir(study)
    folder.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(folder)


# -- saving --------------------------------------------------------------------------------------------
def save_trial_artifacts(study: optuna.Study, trial: optuna.Trial, result: Any, *, keep_top: int = 3,
                         build_model: Callable[[], keras.Model] | None = None) -> dict[str, str]:
    """Upload a finished run's learning curve and, if it enters the top ``keep_top``, its model.

    Call it before ``study.tell`` (the trial must still be running). Both engines (the Keras
    engine's objective and the slots engine's finished trials) call this.

    Args:
        study: the study the trial belongs to.
        trial: the running trial (``optuna.Trial`` from ``study.ask()`` or the objective).
        result: a :class:`~regsweep.objective.TrainResult` (``val_loss``, ``train_curve``, ``val_curve``).
        build_model: returns the trained Keras model with its best weights, called only if the
            model enters the top ``keep_top`` (the slots engine exports a Keras model only
            then); ``None``: the curve only (a pruned trial).
        keep_top: models kept in the store (the best ``keep_top`` complete trials).

    Returns:
        The artifact ids written, by kind (``curve``, ``model``).
    """
    store = artifact_store(study)
    written = {"curve": save_learning_curve(study, trial, result.train_curve, result.val_curve, store=store)}
    if build_model is not None and keep_top > 0:
        running = (trial.number, _ranking_value(study, result))
        if _enters_top(study, running, keep_top):
            written["model"] = save_model(study, trial, build_model(), store=store)
            prune_models(study, keep_top, running=running)
    return written


def save_learning_curve(study: optuna.Study, trial: optuna.Trial, train_curve: list[float],
                        val_curve: list[float], *, store: Any = None) -> str:
    """Record the trial's learning curve (train/validation loss per epoch) as a trial artifact and
    hand its drawing to this process's curve thread; returns the artifact id.

    The artifact's metadata (what ``optuna.artifacts.upload_artifact`` records) and the trial's
    ``curve_artifact`` attribute are written now, in one transaction, while the trial runs; the
    PNG is drawn and written to the store off the training loop, about 0.1 s later (a drawing
    took 110-140 ms per trial). :func:`wait_for_curves` blocks until every handed-over PNG is in
    the store; the workers call it before they end, and the curve thread also finishes its queue
    when the interpreter exits normally.
    """
    from dataclasses import asdict

    from optuna.artifacts._upload import ARTIFACTS_ATTR_PREFIX, ArtifactMeta

    from regsweep.lifecycle import set_user_attrs

    store = store or artifact_store(study)
    artifact_id = str(uuid.uuid4())
    meta = ArtifactMeta(artifact_id=artifact_id, filename=f"trial-{trial.number:04d}-curve.png",
                        mimetype="image/png", encoding=None)
    set_user_attrs(trial, {CURVE_ATTR: artifact_id},
                   system_attrs={ARTIFACTS_ATTR_PREFIX + artifact_id: json.dumps(asdict(meta))})
    _curve_thread().submit(_draw_curve, store, artifact_id, study.study_name, trial.number, list(train_curve),
                           list(val_curve))
    return artifact_id


_curves: list[Any] = []  # this process's curve thread (a one-thread executor), started on first use


def _curve_thread() -> Any:
    from concurrent.futures import ThreadPoolExecutor

    if not _curves:
        _curves.append(ThreadPoolExecutor(max_workers=1, thread_name_prefix="regsweep-curves"))
    return _curves[0]


def _draw_curve(store: Any, artifact_id: str, study_name: str, number: int, train_curve: list[float],
                val_curve: list[float]) -> None:
    """Draw one learning curve and write it to the store under ``artifact_id`` (on the curve thread)."""
    from regsweep.trial_curve import plot_trial_curve

    try:
        with tempfile.TemporaryDirectory(prefix="regsweep-") as tmp:
            path = plot_trial_curve(study_name, number, train_curve, val_curve, Path(tmp) / "curve.png")
            with path.open("rb") as file:
                store.write(artifact_id, file)
    except Exception:  # a plotting or disk problem must not end the worker
        _logger.warning("trial %d: could not draw its learning curve", number, exc_info=True)


def wait_for_curves() -> None:
    """Block until every learning curve handed to this process's curve thread is in its store."""
    if _curves:
        _curves[0].submit(lambda: None).result()  # one thread: its queue runs in order


def save_model(study: optuna.Study, trial: optuna.Trial, keras_model: keras.Model, *, store: Any = None) -> str:
    """Save ``keras_model`` as ``trial-NNNN-model.keras``, a study artifact; record its id on the trial."""
    from optuna.artifacts import upload_artifact

    store = store or artifact_store(study)
    with tempfile.TemporaryDirectory(prefix="regsweep-") as tmp:
        path = Path(tmp) / f"trial-{trial.number:04d}-model.keras"
        keras_model.save(path)
        artifact_id = upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=study,
                                      storage=study._storage, mimetype="application/octet-stream")
    study._storage.set_trial_user_attr(trial._trial_id, MODEL_ATTR, artifact_id)
    _logger.info("trial %d: saved its model as artifact %s", trial.number, artifact_id)
    return artifact_id


def _ranking_value(study: optuna.Study, result: Any) -> Any:
    """A running trial's ``val_loss``, or its objectives' values in a multi-objective study."""
    from regsweep.pareto import is_multi, objective_values, study_objectives

    objectives = study_objectives(study)
    return tuple(objective_values(result.attrs(), objectives)) if is_multi(objectives) else result.val_loss


def kept_trials(study: optuna.Study, keep_top: int, *, running: tuple[int, Any] | None = None) -> set[int]:
    """The trials whose models are kept: the ``keep_top`` best complete trials by ``val_loss`` (ties
    count as in) or, in a multi-objective study, every trial on the Pareto front (the best rule picks
    from it). ``running`` adds a running trial's ``(number, value or objective values)``."""
    from regsweep.pareto import is_multi, pareto_indices, study_objectives, trial_point

    complete = study.get_trials(deepcopy=False, states=(_complete_state(),))
    objectives = study_objectives(study)
    if is_multi(objectives):
        ranked = [(t.number, p) for t in complete if (p := trial_point(t, objectives)) is not None]
        ranked += [running] if running is not None else []
        return {ranked[i][0] for i in pareto_indices([p for _, p in ranked])}
    ranking = [(t.value, t.number) for t in complete if t.value is not None]
    if running is not None:
        ranking.append((running[1], running[0]))
    return {number for _, number in sorted(ranking)[:keep_top]}


def _enters_top(study: optuna.Study, running: tuple[int, Any], k: int) -> bool:
    """Whether a running trial's model is kept: among the ``k`` best complete trials (ties count
    as in), or on the Pareto front in a multi-objective study."""
    from regsweep.pareto import is_multi, study_objectives

    if is_multi(study_objectives(study)):
        return running[0] in kept_trials(study, k, running=running)
    number, value = running
    values = [t.value for t in study.get_trials(deepcopy=False, states=(_complete_state(),))
              if t.value is not None and t.number != number]
    return sum(v < value for v in values) < k


def _complete_state() -> Any:
    """``TrialState.COMPLETE`` (Optuna imported on first use)."""
    from optuna.trial import TrialState

    return TrialState.COMPLETE


# -- listing and pruning models ---------------------------------------------------------------------------
def model_artifacts(study: optuna.Study) -> dict[int, str]:
    """The stored models of a study: ``{trial number: artifact id}``."""
    models: dict[int, str] = {}
    for key, raw in study._storage.get_study_system_attrs(study._study_id).items():
        if not key.startswith(ARTIFACTS_PREFIX):
            continue
        meta = json.loads(raw) if isinstance(raw, str) else raw  # null: removed by regsweep < 0.2
        match = _MODEL_FILE.match(meta["filename"]) if isinstance(meta, dict) else None
        if match:
            models[int(match.group(1))] = meta["artifact_id"]
    return models


def prune_models(study: optuna.Study, keep_top: int, *, running: tuple[int, Any] | None = None) -> list[int]:
    """Remove models of finished trials outside :func:`kept_trials` (the ``keep_top`` best, or the front).

    Models of still-running trials are kept. ``running`` adds a running trial's
    ``(number, value)`` to the ranking. Returns the trial numbers whose models were removed.
    """
    from optuna.artifacts.exceptions import ArtifactNotFound

    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    keep = kept_trials(study, keep_top, running=running)
    store = artifact_store(study)
    removed = []
    for number, artifact_id in model_artifacts(study).items():
        trial = trials.get(number)
        if number in keep or trial is None or not trial.state.is_finished():
            continue
        try:
            store.remove(artifact_id)
        except ArtifactNotFound:
            pass  # another worker removed it first
        forget_artifact(study, artifact_id)
        removed.append(number)
    return removed


def forget_artifact(study: optuna.Study, artifact_id: str) -> None:
    """Delete the study's record of a removed artifact.

    Optuna keeps an artifact's metadata as a study system attribute and has no call to delete
    one; a record overwritten with ``null`` (as regsweep once wrote) makes Optuna's own
    ``optuna.artifacts.get_all_artifact_meta(study)`` fail. So the row is deleted from the RDB
    storage's ``study_system_attributes`` table, in one transaction.
    """
    from sqlalchemy import text

    with _rdb_engine(study).begin() as conn:  # the storage's engine: its busy timeout and BEGIN IMMEDIATE
        conn.execute(text("DELETE FROM study_system_attributes WHERE study_id = :study AND key = :key"),
                     {"study": study._study_id, "key": ARTIFACTS_PREFIX + artifact_id})


def _rdb_engine(study: optuna.Study) -> Any:
    """The SQLAlchemy engine of the study's RDB storage (under Optuna's cache wrapper, if any)."""
    storage: Any = study._storage
    while storage is not None and not hasattr(storage, "engine"):
        storage = getattr(storage, "_backend", None)
    if storage is None:
        raise StorageError(f"study: {study.study_name!r} is not on a database storage; allowed: a study opened "
                           "from a storage URL such as sqlite:///studies/NAME.db")
    return storage.engine


# -- loading --------------------------------------------------------------------------------------------
def model_artifact_id(study: optuna.Study, trial_number: int | None = None, *,
                      tolerance: float = DEFAULT_TOLERANCE) -> tuple[int, str]:
    """``(trial number, artifact id)`` of the stored model of a trial (default: the best trial,
    by :func:`regsweep.pareto.best_trial` with ``tolerance`` in a multi-objective study)."""
    number = best_trial(study, tolerance=tolerance).number if trial_number is None else trial_number
    stored = model_artifacts(study)
    if number not in stored:
        kept = sorted(stored) or "none"
        raise SettingsError(f"trial: {number} of study {study.study_name!r} has no stored model; allowed: a trial "
                            f"with a saved model (stored: {kept}); models are saved for the top --keep-top trials")
    return number, stored[number]


def export_best_model(study: optuna.Study, path: str | Path, *, trial_number: int | None = None,
                      tolerance: float = DEFAULT_TOLERANCE) -> Path:
    """Copy the best trial's ``.keras`` model (or ``trial_number``'s) to ``path``.

    In a multi-objective study the best trial is the smallest model within ``tolerance`` of the
    front's lowest loss (see :mod:`regsweep.pareto`).

    Example:
        >>> export_best_model(study, "best.keras")  # doctest: +SKIP
    """
    from optuna.artifacts import download_artifact

    target = Path(path)
    if target.suffix != ".keras":
        raise SettingsError(f"export: got {str(target)!r}; allowed: a path ending in .keras")
    _, artifact_id = model_artifact_id(study, trial_number, tolerance=tolerance)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        target.unlink()
    download_artifact(artifact_store=artifact_store(study), file_path=str(target), artifact_id=artifact_id)
    return target


def load_best_model(study: optuna.Study, *, trial_number: int | None = None,
                    tolerance: float = DEFAULT_TOLERANCE) -> keras.Model:
    """The best trial's trained model (or ``trial_number``'s), compiled, ready to ``predict``/``evaluate``.

    In a multi-objective study the best trial is the smallest model whose loss is within
    ``tolerance`` (default 1 %) of the lowest loss on the front (:func:`regsweep.pareto.best_trial`).

    Its ``evaluate`` on the validation data gives the trial's ``data_loss`` = the leaderboard's
    ``val_loss`` (for ``--repeats`` > 1: the saved repeat's own ``model_val_loss``).

    Example:
        >>> model = regsweep.load_best_model(study)  # doctest: +SKIP
    """
    import keras

    import regsweep.keras_layers  # noqa: F401  (registers the preprocessing layers of tabular models)

    from regsweep.arrays import TASK_LOSSES
    from regsweep.models import task_metrics
    from regsweep.storage import study_meta

    data = study_meta(study).get("data") or {}
    raw = data.get("preprocessing") is not None  # tabular: saved uncompiled, raw rows in
    with tempfile.TemporaryDirectory(prefix="regsweep-") as tmp:
        path = export_best_model(study, Path(tmp) / "model.keras", trial_number=trial_number, tolerance=tolerance)
        model = keras.models.load_model(path, compile=not raw)
    if raw:
        model.compile(loss=TASK_LOSSES[data["task"]], metrics=task_metrics(data["task"]))
    return model


def predict(study: optuna.Study, rows: Any, *, trial_number: int | None = None,
            tolerance: float = DEFAULT_TOLERANCE) -> Any:
    """Predictions of the best trial's saved model (or ``trial_number``'s) on raw rows.

    For a tabular study ``rows`` is a pandas DataFrame with the training file's feature columns
    (missing cells and unseen categories allowed); otherwise an array like the training ``x``.
    Classification returns the predicted labels (the original class names when the labels were
    text), regression a 1-D array of values.

    Example:
        >>> regsweep.predict(study, pd.read_csv("new_rows.csv"))  # doctest: +SKIP
    """
    import numpy as np

    from regsweep.storage import study_meta

    data = study_meta(study).get("data") or {}
    model = load_best_model(study, trial_number=trial_number, tolerance=tolerance)
    spec = data.get("preprocessing")
    if spec is not None:
        from regsweep.preprocessing import raw_inputs

        rows = raw_inputs(spec, rows)
    output = np.asarray(model.predict(rows, verbose=0))
    task = data.get("task")
    if task == "regression":
        return output.reshape(-1)
    ids = (output.reshape(-1) >= 0.5).astype(int) if task == "binary" else output.argmax(axis=1)
    classes = data.get("classes")
    return np.asarray(classes, dtype=object)[ids] if classes else ids
