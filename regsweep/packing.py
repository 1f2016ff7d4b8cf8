"""Packed trials in a sweep: how many trials share a pack, and running a claimed pack.

Small regularized MLPs are bound by per-step framework overhead, not arithmetic, so running
K of them in one graph step costs little more than running one. :mod:`regsweep.pack_training`
trains a pack (K models as K independent branches of one Keras graph, each equal to its
unpacked run up to the order of the batches); this module chooses K (``--pack K|auto``) and
runs a worker's claimed trials as one pack, telling each trial as soon as its branch stops.

Example:
    >>> resolve_pack("auto", SearchSpace(), make_rings(300), trials=64, workers=2)  # doctest: +SKIP
    8
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from regsweep.lifecycle import DropIfEnded, heartbeat, tell_failure, tell_result
from regsweep.pack_training import PackingError, PackOutcome, check_packable, train_pack  # noqa: F401  (re-exported)
from regsweep.settings import AUTO, SweepSettings, WorkerJob, check_pack
from regsweep.stopping import StopRequest, TrialInterrupted

if TYPE_CHECKING:
    import optuna

    from regsweep.data import Dataset
    from regsweep.space import SearchSpace

_logger = logging.getLogger(__name__)

MAX_PACK = 16
# --pack auto: K = min(16, AUTO_PARAM_BUDGET // parameters of the largest model the space allows).
AUTO_PARAM_BUDGET = 1_000_000
AUTO_ROUNDS = 4  # --pack auto leaves each worker at least this many packs
PACK_ATTR = "pack"

# -- choosing K ------------------------------------------------------------------------------------
def largest_model_params(space: SearchSpace, dataset: Dataset) -> int:
    """Trainable parameters of the biggest MLP ``space`` can sample for ``dataset``."""
    features = math.prod(dataset.input_shape)
    depth, width = space.depth[1], space.width[1]
    hidden = (features + 1) * width + (depth - 1) * (width + 1) * width
    norm = 2 * width * depth if True in space.batch_norm else 0
    return hidden + norm + (width + 1) * dataset.output_units


def auto_pack_size(space: SearchSpace, dataset: Dataset, *, trials: int | None = None, workers: int = 1) -> int:
    """``--pack auto``: pack small models, not large ones, and leave the sampler rounds to learn.

    K = min(16, 1_000_000 // P, ceil(trials / (4 * workers))), at least 1, where P is the parameter
    count of the largest model the space can sample on this data. The rings sweep (2 inputs,
    depth <= 4, width <= 128, P = 50,049) packs 16 when there are trials enough (>= 128 with 2
    workers); 784 inputs at width 128 and depth 4 (P ~ 150k) pack 6; Reuters' 10,000 inputs
    (P > 1.2M) are not packed. The trials term keeps at least four packs per worker, so the
    sampler sees results between them (a pack's K trials are sampled before any of them ends).
    """
    size = min(MAX_PACK, AUTO_PARAM_BUDGET // max(1, largest_model_params(space, dataset)))
    if trials is not None:
        size = min(size, math.ceil(trials / (AUTO_ROUNDS * max(1, workers))))
    return max(1, size)


def packing_blockers(space: SearchSpace) -> list[str]:
    """Reasons why trials of ``space`` cannot share a pack (empty: packing is possible).

    Branches share the input batches, so a searched batch size or number of epochs would couple
    them. Gradient clipping does not: each branch has its own optimizer, and Keras' ``clipnorm``
    clips each weight's gradient on its own.
    """
    reasons = []
    if not isinstance(space.batch_size, int):
        reasons.append(f"batch_size is searched ({space.batch_size!r}) and branches share batches")
    if not isinstance(space.max_epochs, int):
        reasons.append(f"max_epochs is searched ({space.max_epochs!r}) and a pack trains for one number of epochs")
    return reasons


def resolve_pack(pack: int | str, space: SearchSpace, dataset: Dataset, *, trials: int | None = None,
                 workers: int = 1) -> int:
    """The number of trials per pack for this sweep: ``pack`` itself, the ``auto`` rule (for
    ``trials`` shared by ``workers``), or 1 (with a warning) when the space couples branches."""
    pack = check_pack(pack)
    size = auto_pack_size(space, dataset, trials=trials, workers=workers) if pack == AUTO else int(pack)
    blockers = packing_blockers(space)
    if size > 1 and blockers:
        _logger.warning("packing disabled (--pack %s): %s", pack, "; ".join(blockers))
        return 1
    if pack == AUTO:
        _logger.info("--pack auto: %d trials per pack (largest model %d parameters)",
                     size, largest_model_params(space, dataset))
    return size


def pack_size(settings: SweepSettings, space: SearchSpace, dataset: Dataset) -> int:
    """Trials per pack of a sweep: ``settings.pack`` resolved (``auto``, coupled options); 1 with
    ``repeats`` > 1 or cross-validation folds (each trial then trains several times on its own)."""
    pack = resolve_pack(settings.pack, space, dataset, trials=settings.trials, workers=settings.workers)
    if pack > 1 and settings.repeats > 1:
        _logger.warning("packing disabled (--pack %s): repeats=%d trains each trial several times on its own",
                        settings.pack, settings.repeats)
        return 1
    if pack > 1 and dataset.folds:
        _logger.warning("packing disabled (--pack %s): cross-validation trains each trial on %d folds on its own",
                        settings.pack, len(dataset.folds))
        return 1
    return pack


# -- in a worker: running a claimed pack --------------------------------------------------------------
def _save_artifacts(study: optuna.Study, trial: optuna.trial.Trial, outcome: PackOutcome, keep_top: int) -> None:
    """The learning curve (and the model, if it enters the top ``keep_top``), as for an unpacked
    trial; an artifact problem never loses the trial's result."""
    from regsweep.artifacts import save_learning_curve, save_trial_artifacts

    result = outcome.result
    assert result is not None
    try:
        if outcome.state == "complete":
            save_trial_artifacts(study, trial, result.model, result, keep_top=keep_top)
        else:
            save_learning_curve(study, trial, result.train_curve, result.val_curve)
    except Exception:
        _logger.warning("trial %d: could not save its artifacts", trial.number, exc_info=True)


def _record(study: optuna.Study, trial: optuna.trial.Trial, outcome: PackOutcome, *, pack: int,
            keep_top: int | None) -> None:
    """Record a branch's attributes (and artifacts unless ``keep_top`` is None) on its trial."""
    from regsweep.objective import record_result, record_worker_rss

    if outcome.result is not None:
        record_result(trial, outcome.result)
        if keep_top is not None:
            _save_artifacts(study, trial, outcome, keep_top)
    trial.set_user_attr(PACK_ATTR, pack)
    record_worker_rss(trial)


def _tell(study: optuna.Study, trial: optuna.trial.Trial, outcome: PackOutcome, *, pack: int) -> None:
    """Tell the study how a branch's trial ended (through :mod:`regsweep.lifecycle`)."""
    from regsweep.objective import trial_value

    if outcome.state == "complete":
        assert outcome.result is not None
        if tell_result(study, trial, trial_value(study, outcome.result)):
            _logger.info("trial %d (pack of %d): val_loss=%.4f after %d epochs", trial.number, pack,
                         outcome.result.val_loss, outcome.result.epochs)
    elif outcome.state == "pruned":
        tell_result(study, trial, pruned=True)
    else:
        _logger.warning("trial %d failed: %s", trial.number, outcome.error)
        tell_failure(study, trial, str(outcome.error))


def run_pack(study: optuna.Study, trials: list[optuna.trial.Trial], job: WorkerJob, space: SearchSpace,
             dataset: Dataset, *, artifacts: bool = True, on_epoch: Callable[[int], None] | None = None,
             stop: StopRequest | None = None) -> None:
    """Train claimed ``trials`` as one pack and tell the study how each ended.

    Each trial is told as soon as its branch stops: COMPLETE (value ``val_loss``), PRUNED or
    FAIL (``fail_reason``), with the usual user attributes plus ``pack`` (the pack's size), and
    with ``artifacts`` its learning curve (and model, if among the ``keep_top`` best).
    Keras seeds are ``seed + trial.number``; the batch order is the first trial's.
    A stop-now request (checked between epochs, never inside a storage call) fails the open
    trials, queues their retry and raises :class:`~regsweep.stopping.TrialInterrupted`.
    """
    from regsweep.objective import free_keras_memory
    from regsweep.space import suggest

    open_trials = {t.number: t for t in trials}
    stop = stop if stop is not None else StopRequest()
    keep_top = job.settings.keep_top if artifacts else None

    def tell(outcome: PackOutcome) -> None:
        trial = trials[outcome.index]
        with DropIfEnded(trial):  # another process ended it: drop this branch, train the others
            _record(study, trial, outcome, pack=len(trials), keep_top=keep_top)
            _tell(study, trial, outcome, pack=len(trials))
        open_trials.pop(trial.number, None)

    def fail_open_trials(reason: str, *, retry: bool) -> None:
        for trial in list(open_trials.values()):
            tell_failure(study, trial, reason, retry=retry)

    def end_of_epoch(epoch: int) -> None:
        stop.check_now()
        if on_epoch is not None:
            on_epoch(epoch)

    with heartbeat(study, [t._trial_id for t in trials]):
        try:
            configs = [suggest(t, space) for t in trials]
            train_pack(configs, dataset, seeds=[job.settings.seed + t.number for t in trials], trials=trials,
                       on_done=tell, on_epoch=end_of_epoch)
        except (TrialInterrupted, KeyboardInterrupt):
            fail_open_trials("interrupted", retry=True)
            raise
        except Exception as exc:  # a broken pack must not kill its worker or the sweep
            _logger.warning("pack of trials %s failed: %s", sorted(open_trials), exc)
            fail_open_trials(f"{type(exc).__name__}: {exc}", retry=False)
        finally:
            free_keras_memory()
