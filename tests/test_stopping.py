"""Stop requests act between training batches, never inside a storage call; progress flags do what they say."""

from __future__ import annotations

import logging
import re
import signal
import sqlite3

import optuna
import pytest
from optuna.trial import TrialState

from regsweep.objective import train_config
from regsweep.space import TrialConfig
from regsweep.stopping import SignalState, StopRequest, TrialInterrupted
from regsweep.storage import describe_storage_failure, is_storage_failure, make_storage


def test_a_stop_now_asked_during_training_ends_it_between_batches_and_the_storage_stays_usable(sqlite_url, tiny_rings):
    """The stop-now flag is set from inside a storage-writing epoch hook, as a signal could be;
    training ends at the next batch with TrialInterrupted and the same process writes at once after."""
    study = optuna.create_study(study_name="s", storage=make_storage(sqlite_url))
    trial = study.ask()
    stop = StopRequest()
    epochs_seen = []

    class Recorder:  # stands where the signal lands: right after this epoch's report to the storage
        def __init__(self, inner):
            self.inner, self.study = inner, inner.study

        def report(self, value, step):
            self.inner.report(value, step)
            epochs_seen.append(step)
            if step == 1:
                stop.request(now=True)

        def should_prune(self):
            return self.inner.should_prune()

    config = TrialConfig(regularizer="l2", lam=1e-3, dropout=0.0, depth=1, width=4, patience=50, max_epochs=50,
                         batch_size=16)
    with pytest.raises(TrialInterrupted):
        train_config(config, tiny_rings, trial=Recorder(trial), stop=stop)
    assert epochs_seen == [0, 1]  # stopped in epoch 3's first batch, not after 50 epochs
    study.tell(trial, state=TrialState.FAIL)  # no lock left behind: this write does not wait
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL]
    assert sorted(study.trials[0].intermediate_values) == [0, 1]


def test_a_soft_stop_lets_work_go_on_and_only_now_raises():
    stop = StopRequest()
    stop.check_now()
    stop.request()
    assert stop.stopping
    stop.check_now()  # soft: the running trial finishes
    stop.request(now=True)
    with pytest.raises(TrialInterrupted):
        stop.check_now()


def test_signal_state_calls_first_then_second_and_never_raises():
    calls = []
    with SignalState(lambda: calls.append("first"), lambda: calls.append("second")) as state:
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGINT)
    assert calls == ["first", "second", "second"] and state.count == 3
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored


def test_a_locked_database_is_described_in_one_line_naming_the_storage(tmp_path):
    """A real lock: another connection holds the write lock while the storage, with a short wait, writes."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    path = tmp_path / "locked.db"
    url = f"sqlite:///{path}"
    optuna.create_study(study_name="s", storage=make_storage(url))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        engine = create_engine(url, connect_args={"timeout": 0.1})
        with pytest.raises(OperationalError) as raised, engine.connect() as conn:
            conn.execute(text("SELECT COUNT(*) FROM trials")).all()
    finally:
        holder.rollback()
        holder.close()
    assert is_storage_failure(raised.value) and not is_storage_failure(ValueError("x"))
    message = describe_storage_failure(raised.value, "postgresql://me:Secret123@db/sweeps")
    assert message == "storage 'postgresql://me:***@db/sweeps' failed: database is locked"
    assert "\n" not in describe_storage_failure(raised.value, url)


def test_progress_lines_show_no_eta_until_a_trial_finishes(sqlite_url, caplog):
    from regsweep.progress import SweepProgress

    caplog.set_level(logging.INFO, logger="regsweep.progress")
    study = optuna.create_study(study_name="eta", storage=make_storage(sqlite_url, heartbeat=False))
    progress = SweepProgress(study, 4, enabled=False)
    assert progress.update() == 0
    study.add_trial(optuna.create_trial(value=0.5))
    assert progress.update() == 1
    lines = [r.getMessage() for r in caplog.records if "finished (" in r.getMessage()]
    assert lines[0].startswith("eta: 0/4 finished") and lines[0].endswith("eta -")
    assert lines[1].startswith("eta: 1/4 finished") and re.search(r"best val_loss 0\.5000, elapsed \d+s, eta \d+s$", lines[1])


@pytest.mark.slow
@pytest.mark.parametrize("progress", [True, False])
def test_progress_flag_chooses_a_bar_or_log_lines_off_a_terminal(progress, tiny_space, tiny_rings, sqlite_url,
                                                                 tmp_path, capfd, caplog):
    from regsweep import run_sweep

    caplog.set_level(logging.INFO, logger="regsweep.progress")
    run_sweep(tiny_space, tiny_rings, study="p", storage=sqlite_url, trials=2, out=str(tmp_path / "out"),
              progress=progress, keep_top=0)
    err = capfd.readouterr().err
    lines = [r.getMessage() for r in caplog.records if "finished (" in r.getMessage()]
    if progress:  # --progress: the rich bar, even though stderr is not a terminal
        assert "2/2" in err and "━" in err and not lines
    else:  # --no-progress: a log line per finished trial
        assert lines[-1].startswith("p: 2/2 finished") and "━" not in err
