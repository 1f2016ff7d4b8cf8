"""A worker's sweep on the stacked-slot engine (``engine="slots"``): trials train as refillable slots.

:func:`run_slots` keeps up to ``slots`` claimed trials training at once, each in a slot of a
:class:`regsweep.engine.SlotTrainer` of its shape bucket (one trainer per depth, built on first
use and reused for the whole run; each epoch computes up to its widest running trial's width).
Per free slot it claims one trial through :func:`regsweep.lifecycle.claim_trials` (owner tag,
exact totals, at most its share of the unfinished trials when several workers run), samples its configuration
(:func:`regsweep.space.suggest`) and assigns it. After every epoch each running trial's
validation data loss is reported to Optuna's pruner (or judged by
:class:`regsweep.pareto.PeerPruner` in a multi-objective study), as ``objective.train_config``
does. A trial that stops is recorded (the attributes of :func:`regsweep.objective.record_result`,
measured on its slot's real-shape weights, :class:`regsweep.engine.SlotNetwork`), its artifacts
saved (its Keras model exported only if kept) and told through
:func:`regsweep.lifecycle.tell_result` / :func:`~regsweep.lifecycle.tell_failure` (NaN: FAIL),
then its slot is refilled before the next epoch.

With ``repeats`` R a trial is R members, R slots of its configuration with the seeds of
``objective.train_repeats``; on a dataset with folds, one member per fold, each in a trainer of
its fold's data. Member 0 reports to the pruner, and the trial ends when its last member
stops, with the result of :func:`regsweep.objective.mean_of_repeats` / ``mean_of_folds``
(a prune or a NaN of any member ends it at once and stops the others).

Configurations no bucket serves (:func:`regsweep.engine.unsupported`) train alone through
:func:`regsweep.objective.objective` while the slots wait. With nothing left to claim while the
study is short and its last trials run elsewhere, the worker waits for them (a dead host's trials
come back as retries it claims: :func:`regsweep.lifecycle.wait_for_trials_running_elsewhere`).
A trial another process ended (it took this worker for dead) is dropped. Stop requests are
checked between epochs: a soft stop claims no more trials but finishes the running ones; a
stop-now fails the open trials, queues their retries and raises
:class:`~regsweep.stopping.TrialInterrupted`.

Importing this module does not import TensorFlow (the engine is imported inside :func:`run_slots`).

Example:
    >>> run_slots(study, space, dataset, total=60, slots=16)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from regsweep.artifacts import wait_for_curves
from regsweep.lifecycle import (
    DropIfEnded, ReportBatch, claim_trials, failures_in_a_row, heartbeat, set_user_attrs, tell_failure, tell_result,
    wait_for_trials_running_elsewhere,
)
from regsweep.settings import DEFAULT_OPEN_TRIALS
from regsweep.stopping import StopRequest, TrialInterrupted

if TYPE_CHECKING:
    import optuna

    from regsweep.data import Dataset
    from regsweep.engine import Bucket, SlotNetwork, SlotResult, SlotTrainer
    from regsweep.objective import TrainResult
    from regsweep.space import SearchSpace, TrialConfig

_logger = logging.getLogger(__name__)

ENGINE_ATTR = "engine"  # user attribute: "slots" for a trial trained in a slot, "keras" for the fallback
# Clear TensorFlow's kernel caches after this many trials (engine.clear_kernel_caches). Without
# clears a rings worker grew about 0.2 MB per trial (+88.5 MB from trial 50 to 500); a clear
# costs 2-4 s (every trainer's compiled epoch instantiates again: 5 clears in a 40-trial run
# took 10-21 s more than none): 20 clears would add 40-80 s to a 500-trial run (522 s
# without), 5 clears (every 100) 10-20 s.
CLEAR_CACHES_EVERY = 100


def train_result(result: SlotResult, network: SlotNetwork) -> TrainResult:
    """The :class:`~regsweep.objective.TrainResult` of a finished slot, measured as ``train_config``
    measures (:func:`regsweep.objective.finish_result`: the inference-mode train loss and the
    validation scores on ``network.dataset``) from ``network``, the slot's real-shape weights,
    without a Keras model. Its ``network`` is ``network`` (exported to Keras only if the trial's
    model is kept: :func:`_save_artifacts`), its ``model`` ``None``."""
    from regsweep.models import kernel_norms
    from regsweep.objective import TrainResult, finish_result

    weight_l1, weight_l2 = kernel_norms(network.kernels())
    best = result.best_epoch
    train = TrainResult(
        val_loss=result.val_loss, train_loss=result.train_curve[best - 1], val_metric=result.val_metric,
        best_epoch=best, epochs=result.epochs, n_params=network.count_params(), weight_l1=weight_l1,
        weight_l2=weight_l2, val_curve=list(result.val_curve), train_curve=list(result.train_curve),
        val_metric_curve=list(result.val_metric_curve), duration=result.seconds, network=network,
    )
    return finish_result(train, network, network.dataset, keep_model=False)


class StudySnapshot:
    """``study`` as read once: :meth:`get_trials` answers from one snapshot, everything else is
    the study's own. Handed to the pruner for every slot of one epoch, so judging K slots costs one
    read of the study instead of K (Optuna's median/percentile pruners read the completed trials
    on every call; Hyperband reads its bracket through ``study._storage`` and is unaffected)."""

    def __init__(self, study: optuna.Study) -> None:
        self._study = study
        self._trials: list[optuna.trial.FrozenTrial] | None = None  # read on first use

    def get_trials(self, deepcopy: bool = False, states: Any = None) -> list[optuna.trial.FrozenTrial]:
        if self._trials is None:
            self._trials = self._study.get_trials(deepcopy=False)
        return [t for t in self._trials if states is None or t.state in states]

    @property
    def trials(self) -> list[optuna.trial.FrozenTrial]:
        return self.get_trials()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)


@dataclass
class _Open:
    """A claimed trial while its members (one per repeat or fold) sit in slots."""

    trial: optuna.Trial
    config: TrialConfig
    running: dict[int, tuple[SlotTrainer, int]] = field(default_factory=dict)  # member -> its trainer and slot
    results: dict[int, TrainResult] = field(default_factory=dict)  # members that stopped
    reasons: dict[int, str] = field(default_factory=dict)  # why each stopped member stopped
    curve: list[float] = field(default_factory=list)  # member 0's validation data loss (what the pruner sees)
    n_params: int = 0
    dropped: bool = False  # another process ended the trial (it took this worker for dead)


class _SlotSweep:
    """The state of one :func:`run_slots` call: its trainers (one per bucket, i.e. per depth, and per fold on a
    dataset with folds) and open trials."""

    def __init__(self, study: optuna.Study, space: SearchSpace, dataset: Dataset, *, total: int, slots: int,
                 seed: int, repeats: int, keep_top: int | None, share: int, stop: StopRequest,
                 max_failures_in_a_row: int, trial_attrs: dict[str, Any], recycle_after: int | None,
                 ramp_up: bool) -> None:
        from regsweep.engine import space_buckets

        self.study, self.space, self.dataset = study, space, dataset
        # A trial's members: one per fold (each on its fold's data, same seed) or one per repeat.
        self.member_data: list[Dataset] = list(dataset.folds) if dataset.folds else [dataset] * repeats
        self.repeats = repeats  # 1 with folds (run_slots checks it); passed on to the Keras fallback
        # At most `slots` members are open in all, or one trial's members if there are more.
        self.capacity = max(slots, len(self.member_data))
        self.total, self.slots, self.seed, self.keep_top, self.share = total, slots, seed, keep_top, share
        self.stop, self.max_failures, self.trial_attrs = stop, max_failures_in_a_row, trial_attrs
        self.ramp_up = ramp_up
        self.buckets: list[Bucket] = space_buckets(space, dataset)  # depth-exact, smallest first
        self.trainers: dict[tuple[Bucket, int], SlotTrainer] = {}  # by bucket and fold (0 without folds)
        self.open: dict[int, _Open] = {}  # by trial number
        self.reports = ReportBatch()  # this epoch's reports to the pruner, written once all trainers stepped
        self.beating: list[int] = []  # trial ids the heartbeat thread beats for (updated in place)
        self.ran = 0
        self.ran_at_last_clear = 0  # self.ran when TensorFlow's kernel caches were last cleared
        self.alone = 0  # trials trained alone through model.fit (each leaves Keras memory behind)
        self.recycle_after = recycle_after
        self.exhausted = False

    # -- slots ----------------------------------------------------------------------------------------
    def trainer_for(self, config: TrialConfig, member: int = 0) -> SlotTrainer | None:
        """The trainer of ``config``'s bucket for ``member``'s data (built on first use), or
        ``None`` if no bucket serves it."""
        from regsweep.engine import SlotTrainer, unsupported

        if unsupported(config):
            return None
        fold = member if self.dataset.folds else 0
        for bucket in self.buckets:
            if not bucket.fits(config):
                if (bucket, fold) not in self.trainers:
                    # Every trainer has `capacity` slots and at most `capacity` members are open in
                    # all of them, so the trainer of any bucket always has a free slot.
                    self.trainers[bucket, fold] = SlotTrainer(
                        bucket, self.member_data[member], slots=self.capacity, batch_size=self.space.batch_size,
                        shuffle_seed=self.seed)
                return self.trainers[bucket, fold]
        return None

    def member_seed(self, number: int, member: int) -> int:
        """The Keras seed of trial ``number``'s member: as ``objective.objective`` seeds its repeats
        (``seed + number + r * REPEAT_SEED_STRIDE``) and its folds (``seed + number``)."""
        from regsweep.objective import REPEAT_SEED_STRIDE

        return self.seed + number + (0 if self.dataset.folds else member * REPEAT_SEED_STRIDE)

    def open_members(self) -> int:
        return sum(len(entry.running) for entry in self.open.values())

    def update_beating(self) -> None:
        self.beating[:] = [entry.trial._trial_id for entry in self.open.values()]

    def claimable(self) -> bool:
        """No stop was asked, this worker is not due for recycling and the study has not failed
        ``max_failures_in_a_row`` trials in a row."""
        if self.stop.stopping or (self.recycle_after is not None and self.alone >= self.recycle_after):
            return False
        return failures_in_a_row(self.study) < self.max_failures

    def claim(self) -> optuna.Trial | None:
        if self.exhausted or not self.claimable():
            self.exhausted = True
            return None
        trials = claim_trials(self.study, self.total, 1, share=self.share, held=len(self.open),
                              ramp_up=self.ramp_up)
        if not trials:
            self.exhausted = True
            return None
        return trials[0]

    def fill(self) -> None:
        """Claim a trial while its members fit in the free slots and start them."""
        from regsweep.space import suggest

        members = len(self.member_data)
        while self.open_members() + members <= self.capacity:
            trial = self.claim()
            if trial is None:
                return
            set_user_attrs(trial, {**self.trial_attrs, ENGINE_ATTR: "slots"})
            config = suggest(trial, self.space)
            trainers = [self.trainer_for(config, member) for member in range(members)]
            if any(trainer is None for trainer in trainers):
                self.train_alone(trial)
                continue
            entry = _Open(trial, config)
            for member, trainer in enumerate(trainers):
                assert trainer is not None
                slot = trainer.free_slots()[0]
                trainer.assign(slot, config, seed=self.member_seed(trial.number, member), tag=(trial.number, member))
                entry.running[member] = (trainer, slot)
            self.open[trial.number] = entry
            self.update_beating()

    def train_alone(self, trial: optuna.Trial) -> None:
        """A configuration no bucket serves: the one-model path of ``objective.train_config``."""
        import optuna

        from regsweep.objective import objective, record_worker_rss

        trial.set_user_attr(ENGINE_ATTR, "keras")
        self.alone += 1
        with heartbeat(self.study, [trial._trial_id]), DropIfEnded(trial):
            try:
                try:
                    value = objective(trial, self.space, self.dataset, seed=self.seed, repeats=self.repeats,
                                      keep_top=self.keep_top or 0,
                                      artifacts=self.keep_top is not None, stop=self.stop)
                finally:
                    record_worker_rss(trial)
            except optuna.TrialPruned:
                tell_result(self.study, trial, pruned=True)
            except (TrialInterrupted, KeyboardInterrupt):
                tell_failure(self.study, trial, "interrupted", retry=True)
                raise
            except optuna.exceptions.UpdateFinishedTrialError:
                raise
            except Exception as exc:  # a bad trial must not kill its worker or the sweep
                _logger.warning("trial %d failed: %s", trial.number, exc)
                tell_failure(self.study, trial, f"{type(exc).__name__}: {exc}")
            else:
                tell_result(self.study, trial, value)
        self.ran += 1

    # -- epochs ----------------------------------------------------------------------------------------
    def pruner(self, trainer: SlotTrainer, peers: Any,
               snapshot: StudySnapshot | None) -> Callable[[int, int, dict[str, float]], bool]:
        """``on_epoch`` for ``trainer``: report each slot's epoch to its trial; true prunes it.
        ``peers``: the study's :class:`~regsweep.pareto.PeerPruner` (multi-objective) or ``None``;
        ``snapshot``: the study as read once this epoch, which Optuna's pruner judges against
        (what ``trial.should_prune()`` does, without a read of the study per slot). The reports
        are written to the storage together after the epoch (:meth:`epoch`)."""

        def on_epoch(slot: int, epoch: int, logs: dict[str, float]) -> bool:
            state = trainer.states[slot]
            assert state is not None
            number, member = state.request.tag
            if member != 0:  # the pruner watches member 0, as objective.train_repeats / train_folds
                return False
            entry = self.open[number]
            entry.curve.append(logs["val_data_loss"])
            if peers is not None:
                if not entry.n_params:
                    entry.n_params = trainer.network(slot).count_params()
                return peers.should_prune(entry.n_params, entry.curve)
            self.reports.add(entry.trial, epoch, logs["val_data_loss"])
            assert snapshot is not None
            return self.study.pruner.prune(snapshot, entry.trial._get_latest_trial())

        return on_epoch

    def stop_members(self, entry: _Open) -> None:
        """Stop ``entry``'s members still in slots (its trial ended through one member)."""
        for trainer, slot in entry.running.values():
            state = trainer.states[slot]
            if state is not None and state.request.tag[0] == entry.trial.number:
                trainer.prune(slot)
        entry.running.clear()

    def close(self, entry: _Open) -> None:
        """Stop ``entry``'s members still in slots and forget the trial (it ended, or another
        process ended it)."""
        self.stop_members(entry)
        del self.open[entry.trial.number]
        self.update_beating()
        self.exhausted = False  # this worker's share of the unfinished trials may allow one more

    def finished(self, trainer: SlotTrainer, result: SlotResult) -> None:
        """A member stopped: measure it now (its slot may be refilled before its trial ends); when
        it ends its trial (a NaN, a prune, or the last member), record, save and tell the trial."""
        from regsweep.objective import mean_of_folds, mean_of_repeats, record_result, trial_value, worker_rss

        number, member = result.request.tag
        entry = self.open.get(number)
        if entry is None or member not in entry.running:  # a member stopped with its trial, already told
            return
        del entry.running[member]
        entry.reasons[member] = result.reason
        if entry.dropped:  # its retry is queued for any worker, this one included
            self.close(entry)
            return
        if result.reason != "nan":
            complete = result.state == "complete"
            entry.results[member] = train_result(result, trainer.network(result.slot))
            if complete and entry.running:
                return  # the trial ends with its last member
        self.close(entry)
        trial, self.ran = entry.trial, self.ran + 1
        with DropIfEnded(trial):  # another process ended it: drop this trial, train the others
            attrs = {**worker_rss(), "slot_stop": result.reason if len(self.member_data) == 1 else
                     [entry.reasons.get(m, "stopped") for m in range(len(self.member_data))]}
            if result.reason == "nan":
                reason = (f"NonFiniteLossError: non-finite loss at epoch {result.epochs}: "
                          f"loss={result.loss_curve[-1]}, val_data_loss={result.val_curve[-1]}")
                set_user_attrs(trial, {**attrs, "fail_reason": reason})
                _logger.warning("trial %d failed: %s", trial.number, reason)
                tell_failure(self.study, trial, reason)
                return
            complete = result.state == "complete"
            if complete:
                runs = [entry.results[m] for m in range(len(self.member_data))]
                outcome = mean_of_folds(runs) if self.dataset.folds else mean_of_repeats(runs)
            else:  # pruned through member 0: its result alone, as objective.objective records a pruned trial
                outcome = entry.results[member]
            record_result(trial, outcome, extra=attrs)
            if self.keep_top is not None:
                _save_artifacts(self.study, trial, outcome, outcome.network if complete else None, self.keep_top)
            if complete:
                if tell_result(self.study, trial, trial_value(self.study, outcome)):
                    _logger.info("trial %d (slot): val_loss=%.4f after %d epochs", trial.number, outcome.val_loss,
                                 outcome.epochs)
            else:
                tell_result(self.study, trial, pruned=True)

    def epoch(self) -> None:
        """One epoch of every trainer that holds a running trial; then the epoch's reports are
        written in one transaction and the stopped trials told. A trial another process ended
        (its report could not be written) is dropped and its slots stopped."""
        from regsweep.pareto import study_peer_pruner

        peers = study_peer_pruner(self.study)  # one read of the study per epoch
        snapshot = StudySnapshot(self.study) if peers is None else None
        stopped = []
        for trainer in list(self.trainers.values()):
            if any(state is not None for state in trainer.states):
                stopped += [(trainer, result) for result in trainer.step(self.pruner(trainer, peers, snapshot))]
        for number in self.reports.write():
            self.open[number].dropped = True  # finished() drops it without a word to the study
        for trainer, result in stopped:
            self.finished(trainer, result)
        for entry in [entry for entry in self.open.values() if entry.dropped]:
            self.close(entry)
        if self.ran - self.ran_at_last_clear >= CLEAR_CACHES_EVERY:
            from regsweep.engine import clear_kernel_caches

            clear_kernel_caches()
            self.ran_at_last_clear = self.ran

    def fail_open(self, reason: str, *, retry: bool) -> None:
        for entry in list(self.open.values()):
            tell_failure(self.study, entry.trial, reason, retry=retry)
        self.open.clear()
        self.update_beating()


def _save_artifacts(study: optuna.Study, trial: optuna.Trial, result: TrainResult, network: SlotNetwork | None,
                    keep_top: int) -> None:
    """The learning curve and, for a complete trial (its ``network``) whose model enters the top
    ``keep_top``, the model, exported to Keras only then; never fails the trial."""
    from regsweep.artifacts import save_trial_artifacts
    from regsweep.models import export_model

    def build() -> Any:
        assert network is not None
        return export_model(network.to_keras(), network.dataset)

    try:
        save_trial_artifacts(study, trial, result, keep_top=keep_top,
                             build_model=build if network is not None else None)
    except Exception:  # an artifact problem (disk, plotting) must not lose the trial's result
        _logger.warning("trial %d: could not save its artifacts", trial.number, exc_info=True)


def run_slots(study: optuna.Study, space: SearchSpace, dataset: Dataset, *, total: int,
              slots: int = DEFAULT_OPEN_TRIALS, seed: int = 0, repeats: int = 1, keep_top: int | None = 3,
              share: int = 1, stop: StopRequest | None = None, max_failures_in_a_row: int = 10,
              on_trial: Callable[[], None] | None = None, on_epoch: Callable[[int], None] | None = None,
              trial_attrs: dict[str, Any] | None = None, recycle_after: int | None = None,
              ramp_up: bool = True) -> int:
    """Claim and train trials as refillable engine slots until ``study`` has ``total`` finished
    trials (or a stop), with at most ``slots`` trials open at once; returns the trials this call ran.

    Args:
        total: the sweep's total; a trial is claimed only while the study is short of it.
        slots: K, the open slots: trials' members training at once (every bucket's trainer has
            K slots, or R if ``repeats`` or the folds are more).
        seed: the Keras seed of trial n is ``seed + n`` (as ``objective.objective``); also the
            seed of the trainers' batch order.
        repeats: R: a trial trains as R slots side by side (seeds as ``objective.train_repeats``);
            its value is their mean. With folds, a trial trains one slot per fold instead (1 here).
        keep_top: save the learning curve and, for the best ``keep_top``, the model; ``None``: no artifacts.
        share: the number of workers (see :func:`regsweep.lifecycle.claim_trials`).
        stop: soft stop: claim no more, finish the open trials; stop-now: fail the open
            trials, queue their retries and raise :class:`~regsweep.stopping.TrialInterrupted`.
        on_trial: called after each epoch in which a trial ended.
        on_epoch: called after each epoch with the number of epochs run so far (before the
            stop-now check, so it may request one).
        trial_attrs: user attributes set on every claimed trial (e.g. the worker's index).
        recycle_after: after this many trials trained alone through ``model.fit`` (options no
            bucket serves; Keras keeps about 7 MB per such model), claim no more and return when
            the open slots finish, so the worker process can be replaced. ``None``: never.
        ramp_up: in a young study, open at most ``ceil((finished + 1) / share)`` trials (see
            :func:`regsweep.lifecycle.claim_trials`): one trial at first, K once the study has
            finished about ``K * share`` trials. ``False``: K from the first epoch.

    Raises:
        ValueError: ``repeats`` is not 1 on a dataset with folds, or below 1.
    """
    if repeats < 1 or (dataset.folds and repeats != 1):
        raise ValueError(f"repeats: got {repeats}; allowed: an int >= 1, and 1 with folds")
    sweep = _SlotSweep(study, space, dataset, total=total, slots=slots, seed=seed, repeats=repeats, keep_top=keep_top,
                       share=share,
                       stop=stop if stop is not None else StopRequest(), max_failures_in_a_row=max_failures_in_a_row,
                       trial_attrs=dict(trial_attrs or {}), recycle_after=recycle_after, ramp_up=ramp_up)
    with heartbeat(study, sweep.beating):
        try:
            epochs = 0
            while True:
                sweep.fill()
                if not sweep.open:
                    if sweep.claimable() and wait_for_trials_running_elsewhere(study, total, sweep.stop):
                        sweep.exhausted = False
                        continue
                    break
                before = sweep.ran
                sweep.epoch()
                epochs += 1
                if sweep.ran != before and on_trial is not None:
                    on_trial()
                if on_epoch is not None:
                    on_epoch(epochs)
                sweep.stop.check_now()
        except (TrialInterrupted, KeyboardInterrupt):
            sweep.fail_open("interrupted", retry=True)
            raise
        except Exception as exc:  # a broken trainer must not leave RUNNING trials behind
            _logger.warning("slots of trials %s failed: %s", sorted(sweep.open), exc)
            sweep.fail_open(f"{type(exc).__name__}: {exc}", retry=False)
            raise
        finally:
            wait_for_curves()  # the learning curves drawn off the training loop are in the store
    return sweep.ran


__all__ = ["CLEAR_CACHES_EVERY", "ENGINE_ATTR", "StudySnapshot", "run_slots", "train_result"]
