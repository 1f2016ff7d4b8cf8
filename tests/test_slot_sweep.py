"""Sweeps on the stacked-slot engine (regsweep.slot_sweep.run_slots) with real SQLite studies and
real Keras training on tiny data: exact totals, refills, pruning, stop requests and resume,
the saved model reproducing the leaderboard's val_loss, and the fallback for unsupported options."""

from __future__ import annotations

import math

import pytest

from regsweep.space import SearchSpace


def _study(url: str, space: SearchSpace, data, name: str, *, pruner=None, total: int = 6,
           objectives: tuple[str, ...] = ("val_loss",)):
    import optuna

    from regsweep.runner import study_metadata
    from regsweep.settings import SweepSettings
    from regsweep.storage import open_study

    settings = SweepSettings(study=name, storage=url, trials=total, objectives=objectives)
    study = open_study(url, name, meta=study_metadata(space, data, settings, None),
                       directions=["minimize"] * len(objectives))
    study.sampler = optuna.samplers.RandomSampler(seed=0)
    study.pruner = pruner if pruner is not None else optuna.pruners.NopPruner()
    return study


def test_exact_total_with_refills_and_the_best_model_reproduces_val_loss(tiny_rings, tiny_space, sqlite_url):
    """7 trials through 3 slots: every trial is claimed, recorded and told once, slots are refilled,
    a second call claims nothing, and load_best_model's evaluate gives the best val_loss."""
    from regsweep.artifacts import load_best_model
    from regsweep.objective import TRIAL_ATTRS
    from regsweep.slot_sweep import run_slots
    from regsweep.storage import count_states

    study = _study(sqlite_url, tiny_space, tiny_rings, "slots", total=7)
    assert run_slots(study, tiny_space, tiny_rings, total=7, slots=3, keep_top=2) == 7
    counts = count_states(study)
    assert counts["COMPLETE"] == 7 and counts["finished"] == 7 and len(study.trials) == 7
    for trial in study.trials:
        attrs = trial.user_attrs
        assert attrs["engine"] == "slots" and attrs["slot_stop"] in ("patience", "max_epochs")
        assert set(TRIAL_ATTRS) | {"val_curve", "train_curve", "curve_artifact", "val_roc_auc"} <= set(attrs)
        assert trial.value == attrs["val_loss"] == min(attrs["val_curve"])
        assert attrs["epochs"] == len(attrs["val_curve"]) <= tiny_space.max_epochs
        assert math.isfinite(attrs["train_loss"]) and attrs["gap"] == attrs["val_loss"] - attrs["train_loss"]
    assert run_slots(study, tiny_space, tiny_rings, total=7, slots=3) == 0
    assert len(study.trials) == 7

    model = load_best_model(study)
    scores = model.evaluate(tiny_rings.x_val, tiny_rings.y_val, verbose=0, return_dict=True)
    assert scores["data_loss"] == pytest.approx(study.best_value, rel=1e-5, abs=1e-6)


def test_pruned_trial_is_recorded_with_its_epochs(tiny_rings, sqlite_url):
    """A threshold no trial meets prunes every trial at its second epoch (after the warm-up step):
    PRUNED, with two epochs of curves, two reported values and its curve saved."""
    import optuna

    from regsweep.slot_sweep import run_slots
    from regsweep.storage import count_states

    space = SearchSpace(depth=(1, 2), width=(2, 8), patience=(3, 3), max_epochs=5, batch_size=32)
    pruner = optuna.pruners.ThresholdPruner(upper=1e-6, n_warmup_steps=1)
    study = _study(sqlite_url, space, tiny_rings, "pruned", pruner=pruner, total=4)
    assert run_slots(study, space, tiny_rings, total=4, slots=2) == 4
    assert count_states(study)["PRUNED"] == 4
    for trial in study.trials:
        attrs = trial.user_attrs
        assert attrs["slot_stop"] == "pruned" and attrs["epochs"] == 2 and len(attrs["val_curve"]) == 2
        assert list(trial.intermediate_values) == [0, 1]
        assert trial.intermediate_values[1] == pytest.approx(attrs["val_curve"][1])
        assert "curve_artifact" in attrs


def test_stop_now_fails_and_retries_open_trials_and_resume_reaches_the_total(tiny_rings, tiny_space, sqlite_url):
    """A stop-now after the second epoch: the 3 open trials are FAIL (not counted, interrupted)
    with WAITING retries of the same parameters; a second run finishes exactly the total."""
    from regsweep.lifecycle import NOT_COUNTED
    from regsweep.slot_sweep import run_slots
    from regsweep.stopping import StopRequest, TrialInterrupted
    from regsweep.storage import count_states

    space = SearchSpace(depth=(1, 2), width=(2, 8), patience=(2, 3), max_epochs=4, batch_size=32)
    study = _study(sqlite_url, space, tiny_rings, "resume", total=6)
    stop = StopRequest()
    epochs = []

    def stop_after_two(epoch: int) -> None:
        epochs.append(epoch)
        if epoch == 2:
            stop.request(now=True)

    with pytest.raises(TrialInterrupted):
        run_slots(study, space, tiny_rings, total=6, slots=3, stop=stop, on_epoch=stop_after_two, ramp_up=False)
    assert epochs == [1, 2]
    counts = count_states(study)
    assert counts["RUNNING"] == 0 and counts["FAIL"] == 3 and counts["WAITING"] == 3 and counts["finished"] == 0
    failed = [t for t in study.trials if t.state.name == "FAIL"]
    assert all(t.user_attrs["fail_reason"] == "interrupted" and t.user_attrs[NOT_COUNTED] for t in failed)

    run_slots(study, space, tiny_rings, total=6, slots=3)
    counts = count_states(study)
    assert counts["finished"] == 6 and counts["RUNNING"] == 0 and counts["WAITING"] == 0
    finished_params = [t.params for t in study.trials if t.state.name == "COMPLETE"]
    assert all(t.params in finished_params for t in failed)  # retried with the same parameters


def test_a_trial_another_process_ends_is_dropped_while_the_other_slots_train_on(tiny_rings, sqlite_url, caplog):
    """Three trials open; after their second epoch another process fails one of them and queues its
    retry (as Optuna's stale-trial check does). The epoch's batch of reports cannot be written, so
    each is written alone: the victim's fails, it is dropped without a word to the study and its
    slot stopped, the other two keep their reports and finish, and the retry makes the exact total."""
    import optuna

    from regsweep.lifecycle import NOT_COUNTED
    from regsweep.slot_sweep import run_slots
    from regsweep.storage import count_states, make_storage

    space = SearchSpace(depth=(1, 2), width=(2, 8), patience=(5, 5), max_epochs=5, batch_size=32)
    study = _study(sqlite_url, space, tiny_rings, "race", total=4)
    other = optuna.load_study(study_name="race", storage=make_storage(sqlite_url))
    victims = []

    def end_one_elsewhere(epoch: int) -> None:
        if epoch == 2:
            victim = min(t for t in other.trials if t.state.name == "RUNNING")
            other._storage.set_trial_user_attr(victim._trial_id, NOT_COUNTED, True)
            other._storage.set_trial_state_values(victim._trial_id, state=optuna.trial.TrialState.FAIL)
            other._storage.get_heartbeat_stale_trial_callback()(other, other._storage.get_trial(victim._trial_id))
            victims.append(victim.number)

    with caplog.at_level("WARNING"):
        assert run_slots(study, space, tiny_rings, total=4, slots=3, on_epoch=end_one_elsewhere, ramp_up=False) == 4
    (victim,) = victims
    assert f"trial {victim} was ended by another process" in caplog.text
    counts = count_states(study)
    assert (counts["COMPLETE"], counts["FAIL"], counts["RUNNING"], counts["WAITING"]) == (4, 1, 0, 0)
    trials = {t.number: t for t in study.trials}
    assert list(trials[victim].intermediate_values) == [0, 1] and "val_loss" not in trials[victim].user_attrs
    others = [t for t in study.trials[:3] if t.number != victim]
    assert all(list(t.intermediate_values) == [0, 1, 2, 3, 4] for t in others)
    (retry,) = [t for t in study.trials if t.system_attrs.get("failed_trial") == victim]
    assert retry.state.name == "COMPLETE" and retry.params == trials[victim].params
    assert retry.datetime_start < min(t.datetime_complete for t in others)  # the victim's slot was freed at once


def test_soft_stop_finishes_running_trials_and_claims_no_more(tiny_rings, tiny_space, sqlite_url):
    from regsweep.slot_sweep import run_slots
    from regsweep.stopping import StopRequest
    from regsweep.storage import count_states

    study = _study(sqlite_url, tiny_space, tiny_rings, "soft", total=8)
    stop = StopRequest()
    ran = run_slots(study, tiny_space, tiny_rings, total=8, slots=3, stop=stop, on_trial=stop.request, ramp_up=False)
    counts = count_states(study)
    assert counts["FAIL"] == 0 and counts["RUNNING"] == 0
    assert counts["finished"] == ran == len(study.trials) == 3  # the 3 first claimed, none after the stop


def test_unsupported_options_train_alone_through_keras(tiny_rings, sqlite_url):
    """batch_norm has no stacked form yet: such trials take objective.objective and still count."""
    from regsweep.slot_sweep import run_slots
    from regsweep.storage import count_states

    space = SearchSpace(depth=(1, 1), width=(2, 4), patience=(1, 1), max_epochs=2, batch_size=32, batch_norm=(True,))
    study = _study(sqlite_url, space, tiny_rings, "fallback", total=2)
    assert run_slots(study, space, tiny_rings, total=2, slots=2) == 2
    assert count_states(study)["COMPLETE"] == 2
    assert [t.user_attrs["engine"] for t in study.trials] == ["keras", "keras"]


def test_nan_trials_fail_counted_and_stop_claims_after_failures_in_a_row(tiny_rings, sqlite_url):
    """A learning rate of 1e30 blows every trial up: FAIL with NonFiniteLossError recorded
    (counted as failures), and no trial is claimed after max_failures_in_a_row."""
    from regsweep.lifecycle import NOT_COUNTED
    from regsweep.slot_sweep import run_slots
    from regsweep.storage import count_states

    space = SearchSpace(lam=(1e-1, 1e-1), depth=(2, 2), width=(8, 8), patience=(2, 2), max_epochs=6, batch_size=32,
                        learning_rate=(1e30, 1e30))
    study = _study(sqlite_url, space, tiny_rings, "nan", total=5)
    assert run_slots(study, space, tiny_rings, total=5, slots=2, max_failures_in_a_row=2) == 2
    counts = count_states(study)
    assert counts["FAIL"] == 2 and counts["finished"] == 0 and counts["RUNNING"] == 0 and len(study.trials) == 2
    for trial in study.trials:
        assert trial.user_attrs["slot_stop"] == "nan" and NOT_COUNTED not in trial.user_attrs
        assert trial.user_attrs["fail_reason"].startswith("NonFiniteLossError: non-finite loss at epoch")


def test_multi_objective_study_uses_the_peer_rule_and_tells_every_objective(tiny_rings, sqlite_url):
    """Two objectives: complete trials are told [val_loss, n_params]; the peer rule (not Optuna's
    pruner) judges the slots, so no intermediate value is reported; exact total."""
    import optuna

    from regsweep.slot_sweep import run_slots
    from regsweep.storage import count_states

    space = SearchSpace(depth=(1, 2), width=(2, 8), patience=(2, 3), max_epochs=5, batch_size=32)
    study = _study(sqlite_url, space, tiny_rings, "multi", pruner=optuna.pruners.MedianPruner(), total=6,
                   objectives=("val_loss", "n_params"))
    assert run_slots(study, space, tiny_rings, total=6, slots=2, keep_top=None) == 6
    assert count_states(study)["finished"] == 6 and len(study.trials) == 6
    for trial in study.trials:
        assert not trial.intermediate_values
        if trial.state.name == "COMPLETE":
            assert trial.values == [trial.user_attrs["val_loss"], trial.user_attrs["n_params"]]


def test_study_snapshot_judges_as_the_study_from_one_read(sqlite_url):
    """Optuna's median pruner gives the same verdicts on a StudySnapshot as on the study, the
    snapshot keeps answering from its one read after the study changes, and everything but
    get_trials is the study's own."""
    import optuna

    from regsweep.slot_sweep import StudySnapshot

    study = optuna.create_study(storage=sqlite_url, study_name="snap",
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0))
    for final in (1.0, 2.0, 3.0):
        trial = study.ask()
        for step in range(3):
            trial.report(final + step, step)
        study.tell(trial, final)
    running = study.ask()
    snapshot = StudySnapshot(study)
    for value, verdict in ((1.5, False), (2.5, True)):
        running.report(value, 0)
        frozen = running._get_latest_trial()
        assert bool(study.pruner.prune(snapshot, frozen)) is bool(study.pruner.prune(study, frozen)) is verdict
        running = study.ask()  # a fresh trial per value: a step is reported once
    study.tell(study.ask(), 0.5)
    complete = optuna.trial.TrialState.COMPLETE
    assert [t.value for t in snapshot.get_trials(states=(complete,))] == [1.0, 2.0, 3.0]
    assert len(study.get_trials(states=(complete,))) == 4
    assert snapshot.study_name == "snap" and snapshot.direction == study.direction


def _alone(config, data, seed: int, shuffle_seed: int):
    """``config`` trained alone in a fresh one-slot trainer from its first epoch."""
    from regsweep.engine import SlotRequest, SlotTrainer, bucket_for

    trainer = SlotTrainer(bucket_for(config, data), data, slots=1, batch_size=config.batch_size,
                          shuffle_seed=shuffle_seed)
    pending, results = [SlotRequest(config, seed)], []
    trainer.run(lambda: pending.pop() if pending else None, lambda slot, result: results.append(result))
    return results[0]


def test_repeats_train_side_by_side_as_slots_with_the_seeds_of_train_repeats(tiny_rings, sqlite_url):
    """--repeats 2 on the slots engine: each trial is two slots of its configuration; its value is
    the mean of the two, and trial 0's repeats equal its configuration trained alone with the
    seeds objective.train_repeats gives them (seed + number + r * REPEAT_SEED_STRIDE). No dropout:
    the engine's masks depend on a slot's row, so dropout agrees only statistically (test_engine)."""
    import optuna

    from regsweep.artifacts import load_best_model
    from regsweep.objective import REPEAT_SEED_STRIDE
    from regsweep.slot_sweep import run_slots
    from regsweep.space import suggest
    from regsweep.storage import count_states

    space = SearchSpace(depth=(1, 2), width=(2, 8), dropout=(0.0, 0.0), patience=(1, 2), max_epochs=3, batch_size=32)
    study = _study(sqlite_url, space, tiny_rings, "repeats", total=4)
    assert run_slots(study, space, tiny_rings, total=4, slots=3, seed=5, repeats=2, keep_top=1) == 4
    assert count_states(study)["COMPLETE"] == 4
    for trial in study.trials:
        attrs = trial.user_attrs
        assert attrs["repeats"] == 2 and len(attrs["val_losses"]) == 2
        assert trial.value == pytest.approx(sum(attrs["val_losses"]) / 2, rel=1e-12)
        assert attrs["val_loss_std"] == pytest.approx(abs(attrs["val_losses"][0] - attrs["val_losses"][1]) / 2 ** 0.5)
        assert attrs["model_val_loss"] in attrs["val_losses"]
        assert len(attrs["slot_stop"]) == 2 and set(attrs["slot_stop"]) <= {"patience", "max_epochs"}
    first = study.trials[0]
    config = suggest(optuna.trial.FixedTrial(first.params), space)
    alone = [_alone(config, tiny_rings, 5 + 0 + r * REPEAT_SEED_STRIDE, shuffle_seed=5).val_loss for r in range(2)]
    assert first.user_attrs["val_losses"] == pytest.approx(alone, rel=1e-5, abs=1e-6)
    assert alone[0] != pytest.approx(alone[1], rel=1e-6)  # the two seeds differ
    # The kept model is the repeat the trial chose (its val_loss nearest the mean), not another.
    best = study.best_trial
    scores = load_best_model(study).evaluate(tiny_rings.x_val, tiny_rings.y_val, verbose=0, return_dict=True)
    assert scores["data_loss"] == pytest.approx(best.user_attrs["model_val_loss"], rel=1e-5, abs=1e-6)
    other = [v for v in best.user_attrs["val_losses"] if v != best.user_attrs["model_val_loss"]]
    assert other and scores["data_loss"] != pytest.approx(other[0], rel=1e-5, abs=1e-6)


def test_a_pruned_first_repeat_prunes_the_trial_and_frees_every_slot(tiny_rings, sqlite_url):
    """The pruner watches repeat 0: when it prunes, the trial is PRUNED with repeat 0's curves and
    its other repeat leaves its slot at once (the next trials still fit, the total is exact)."""
    import optuna

    from regsweep.slot_sweep import run_slots
    from regsweep.storage import count_states

    space = SearchSpace(depth=(1, 2), width=(2, 8), patience=(3, 3), max_epochs=5, batch_size=32)
    pruner = optuna.pruners.ThresholdPruner(upper=1e-6, n_warmup_steps=1)
    study = _study(sqlite_url, space, tiny_rings, "pruned-repeats", pruner=pruner, total=4)
    assert run_slots(study, space, tiny_rings, total=4, slots=2, repeats=2) == 4
    assert count_states(study)["PRUNED"] == 4
    for trial in study.trials:
        attrs = trial.user_attrs
        assert attrs["slot_stop"] == ["pruned", "stopped"] and attrs["epochs"] == 2
        assert list(trial.intermediate_values) == [0, 1] and "repeats" not in attrs


def test_folds_train_as_one_slot_per_fold_on_the_fold_data(tmp_path, sqlite_url):
    """A dataset with 3 folds on the slots engine: each trial is one slot per fold, each on its
    fold's data with the trial's seed; its value is the mean over folds (objective.train_folds)."""
    import optuna
    from test_preprocessing import write_wine_csv

    from regsweep.data import from_csv
    from regsweep.slot_sweep import run_slots
    from regsweep.space import suggest

    data = from_csv(write_wine_csv(tmp_path), target="target", folds=3, test_fraction=0.2)
    space = SearchSpace(regularizers=("l2",), depth=(1, 2), width=(4, 8), dropout=(0.0, 0.0), patience=2, max_epochs=3,
                        batch_size=64)
    study = _study(sqlite_url, space, data, "folds", total=3)
    assert run_slots(study, space, data, total=3, slots=2, seed=1, keep_top=1) == 3
    for trial in study.trials:
        attrs = trial.user_attrs
        assert attrs["folds"] == 3 and len(attrs["fold_val_losses"]) == 3 and len(attrs["fold_val_curves"]) == 3
        assert trial.value == pytest.approx(sum(attrs["fold_val_losses"]) / 3, rel=1e-12)
        assert attrs["model_val_loss"] == attrs["fold_val_losses"][attrs["model_fold"]]
    first = study.trials[0]
    config = suggest(optuna.trial.FixedTrial(first.params), space)
    alone = [_alone(config, fold, 1 + 0, shuffle_seed=1).val_loss for fold in data.folds]
    assert first.user_attrs["fold_val_losses"] == pytest.approx(alone, rel=1e-5, abs=1e-6)
    assert len(set(alone)) == 3  # three folds, three different data


def test_a_worker_holds_at_most_its_share_of_the_unfinished_trials(tiny_rings, tiny_space, sqlite_url):
    """With 2 workers and 5 trials, a slots worker that claims one trial at a time stops at its
    share, ceil(5 / 2) = 3 open trials, so the other worker is not left idle."""
    from regsweep.lifecycle import claim_trials

    study = _study(sqlite_url, tiny_space, tiny_rings, "share", total=5)
    held = []
    while claimed := claim_trials(study, 5, 1, share=2, held=len(held)):
        held += claimed
    assert len(held) == 3
    assert len(claim_trials(study, 5, 1, share=2)) == 1  # the other worker's claims
    assert len(claim_trials(study, 5, 8, share=2, held=1)) == 1  # never beyond the total
    assert claim_trials(study, 5, 1, share=2) == []


def test_claims_ramp_up_with_the_finished_trials(tiny_rings, tiny_space, sqlite_url):
    """With ramp_up a worker holds at most ceil((finished + 1) / share) trials."""
    from regsweep.lifecycle import claim_trials, tell_result

    study = _study(sqlite_url, tiny_space, tiny_rings, "ramp", total=10)
    first = claim_trials(study, 10, 4, ramp_up=True)
    assert len(first) == 1 and claim_trials(study, 10, 4, held=1, ramp_up=True) == []
    assert len(claim_trials(study, 10, 4, share=2, ramp_up=True)) == 1  # the other worker's first
    tell_result(study, first[0], 1.0)
    assert len(claim_trials(study, 10, 4, held=1, ramp_up=True)) == 1  # 1 finished: 2 open
    assert claim_trials(study, 10, 4, share=2, held=1, ramp_up=True) == []  # ceil(2 / 2) = 1 each
    assert len(claim_trials(study, 10, 4, held=2, ramp_up=False)) == 4  # without the ramp: k


def test_a_young_study_opens_slots_as_its_trials_finish(tiny_rings, tiny_space, sqlite_url):
    """run_slots on a fresh study: no trial starts while the open ones outnumber the finished ones
    by more than one, and the worker still reaches its K open trials."""
    from regsweep.slot_sweep import run_slots

    study = _study(sqlite_url, tiny_space, tiny_rings, "young", total=12)
    assert run_slots(study, tiny_space, tiny_rings, total=12, slots=3) == 12
    trials = study.trials
    most_open = 0
    for trial in trials:
        start = trial.datetime_start
        finished = sum(t.datetime_complete <= start for t in trials)
        open_then = sum(t.datetime_start <= start < t.datetime_complete for t in trials)  # itself included
        assert open_then <= finished + 1, (trial.number, open_then, finished)
        most_open = max(most_open, open_then)
    assert trials[1].datetime_start >= trials[0].datetime_complete  # the first trial ran alone
    assert most_open == 3


def test_hyperband_prunes_slots_at_its_rungs(tiny_rings, sqlite_url):
    """regsweep's Hyperband pruner judges every slot's epoch through the one-read study snapshot:
    some trials are PRUNED at a rung, the total stays exact and the others run to their stop."""
    from regsweep.slot_sweep import run_slots
    from regsweep.storage import count_states
    from regsweep.workers import make_pruner

    space = SearchSpace(regularizers=("l2",), lam=(1e-6, 0.5), depth=(1, 1), width=(2, 8), patience=(6, 6),
                        max_epochs=6, batch_size=32)
    study = _study(sqlite_url, space, tiny_rings, "hyperband", pruner=make_pruner("hyperband", 6), total=8)
    assert run_slots(study, space, tiny_rings, total=8, slots=4) == 8
    counts = count_states(study)
    assert counts["finished"] == 8 and counts["PRUNED"] >= 1, counts
    for trial in study.trials:
        epochs = trial.user_attrs["epochs"]
        assert list(trial.intermediate_values) == list(range(epochs))
        assert (trial.state.name == "PRUNED") == (trial.user_attrs["slot_stop"] == "pruned")
        if trial.state.name == "PRUNED":
            assert epochs < 6


def test_a_worker_that_trains_alone_through_model_fit_is_recycled(tiny_rings, sqlite_url, tmp_path):
    """Batch norm is not stacked, so every trial trains alone through model.fit (Keras keeps memory
    per model): run_slots stops claiming after recycle_after such trials, and run_sweep's in-process
    worker re-enters its loop until the total is reached."""
    from regsweep.runner import run_sweep
    from regsweep.slot_sweep import run_slots
    from regsweep.storage import count_states

    space = SearchSpace(depth=1, width=(2, 8), patience=1, max_epochs=2, batch_size=32, batch_norm=True)
    study = _study(sqlite_url, space, tiny_rings, "alone", total=5)
    assert run_slots(study, space, tiny_rings, total=5, slots=3, recycle_after=2, keep_top=None) == 2
    assert count_states(study)["finished"] == 2
    study = run_sweep(space, tiny_rings, study="alone", storage=sqlite_url, trials=5, workers=1, recycle_after=2,
                      progress=False, keep_top=0, out=str(tmp_path / "out"))
    assert count_states(study)["finished"] == 5
    assert {t.user_attrs["engine"] for t in study.trials} == {"keras"}


@pytest.mark.parametrize("every, cleared", [(3, True), (50, False)])
def test_kernel_caches_are_cleared_every_n_trials(tiny_rings, tiny_space, sqlite_url, monkeypatch, stateful_draw,
                                                  every, cleared):
    """run_slots clears TensorFlow's kernel caches (which grow trial after trial) once
    CLEAR_CACHES_EVERY trials have ended since the last clear, and not before. Seen through a
    stateful random op's cached kernel, which starts its sequence over after a clear."""
    from regsweep import slot_sweep
    from regsweep.engine import clear_kernel_caches
    from regsweep.slot_sweep import run_slots

    monkeypatch.setattr(slot_sweep, "CLEAR_CACHES_EVERY", every)
    clear_kernel_caches()
    first = stateful_draw()
    study = _study(sqlite_url, tiny_space, tiny_rings, f"clear{every}", total=4)
    assert run_slots(study, tiny_space, tiny_rings, total=4, slots=2, keep_top=None) == 4
    assert (stateful_draw() == first) is cleared
