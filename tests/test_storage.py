"""Storage URLs, study creation, mismatch protection and the definition of finished."""

from __future__ import annotations

import optuna
import pytest

from regsweep import SearchSpace
from regsweep.data import make_rings
from regsweep.errors import StorageError, StudyMismatchError, StudyNotFoundError
from regsweep.storage import (
    check_storage_url, check_study_name, count_states, default_storage_url, load_study, open_study, redact,
    sqlite_path,
)


def _meta(space=None, n=100):
    return {"space": (space or SearchSpace()).to_dict(), "data": make_rings(n=n).describe(), "total": 5}


def test_default_url_is_under_studies():
    assert default_storage_url("rings") == "sqlite:///studies/rings.db"


@pytest.mark.parametrize("url", ["studies/x.db", "redis://localhost/0", "sqlite://", "ftp://host/x", 42])
def test_non_sql_urls_are_rejected(url):
    with pytest.raises(StorageError, match="storage"):
        check_storage_url(url)


@pytest.mark.parametrize("name", ["", "a b", "../up", "-dash", "x" * 200, None])
def test_bad_study_names(name):
    with pytest.raises(StorageError, match="study: got"):
        check_study_name(name)


def test_redact_hides_passwords():
    assert redact("postgresql://bob:s3cret@db:5432/x") == "postgresql://bob:***@db:5432/x"
    assert "s3cret" not in redact("could not connect to postgresql+psycopg2://u:s3cret@h/db, sorry")
    assert redact("sqlite:///studies/a.db") == "sqlite:///studies/a.db"


def test_open_study_records_meta_and_reopens(sqlite_url):
    study = open_study(sqlite_url, "s", meta=_meta())
    assert study.user_attrs["regsweep"]["total"] == 5
    again = open_study(sqlite_url, "s", meta={**_meta(), "total": 9})
    assert again.user_attrs["regsweep"]["total"] == 9
    assert optuna.study.get_all_study_names(sqlite_url) == ["s"]


def test_existing_study_with_other_space_or_data_is_refused(sqlite_url):
    open_study(sqlite_url, "s", meta=_meta())
    with pytest.raises(StudyMismatchError, match="different search space"):
        open_study(sqlite_url, "s", meta=_meta(SearchSpace(depth=(1, 2))))
    with pytest.raises(StudyMismatchError, match="different dataset"):
        open_study(sqlite_url, "s", meta=_meta(n=200))
    assert load_study(sqlite_url, "s").user_attrs["regsweep"]["total"] == 5


def test_loading_never_creates_a_database(tmp_path):
    url = f"sqlite:///{tmp_path / 'none.db'}"
    with pytest.raises(StudyNotFoundError, match="no database"):
        load_study(url, "s")
    assert not sqlite_path(url).exists()


def test_missing_study_lists_existing_ones(sqlite_url):
    open_study(sqlite_url, "present", meta=_meta())
    with pytest.raises(StudyNotFoundError, match="existing: \\['present'\\]"):
        load_study(sqlite_url, "absent")


def test_finished_counts_complete_and_pruned_only(sqlite_url):
    study = open_study(sqlite_url, "s", meta=_meta())
    study.add_trial(optuna.create_trial(value=1.0))
    study.add_trial(optuna.create_trial(state=optuna.trial.TrialState.PRUNED))
    study.add_trial(optuna.create_trial(state=optuna.trial.TrialState.FAIL))
    study.ask()  # RUNNING
    counts = count_states(study)
    assert (counts["finished"], counts["FAIL"], counts["RUNNING"]) == (2, 1, 1)


def test_owner_tags_tell_live_workers_from_dead_ones_across_namespaces_and_pid_reuse(sqlite_url):
    """Only owners in this machine's pid namespace whose process (same pid, same start time) is gone
    are failed at once; an owner elsewhere is left to heartbeats."""
    import os
    import subprocess
    import sys

    import optuna

    from regsweep.lifecycle import OWNER_ATTR, fail_orphaned_trials, owner_tag
    from regsweep.storage import make_storage

    study = optuna.create_study(study_name="owners", storage=make_storage(sqlite_url))
    me = owner_tag()
    where, _, pid = me.rpartition(":")
    host, boot, namespace, started = where.split("/")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    tags = {
        "alive": me,
        "pid reused": f"{host}/{boot}/{namespace}/{int(started) + 1}:{pid}",  # same pid, a newer process
        "dead": f"{host}/{boot}/{namespace}/{started}:{dead.stdout.strip()}",
        "other namespace": f"{host}/{boot}/1/{started}:{dead.stdout.strip()}",
        "other boot": f"{host}/000000000000/{namespace}/{started}:{dead.stdout.strip()}",
        "legacy dead": f"{host}:{dead.stdout.strip()}",
    }
    numbers = {}
    for name, tag in tags.items():
        trial = study.ask()
        study._storage.set_trial_system_attr(trial._trial_id, OWNER_ATTR, tag)
        numbers[trial.number] = name
    failed = fail_orphaned_trials(study)
    assert sorted(numbers[n] for n in failed) == ["dead", "legacy dead", "pid reused"]
    assert str(os.getpid()) == pid


def dead_owner_tag() -> str:
    """An owner tag of this host whose process has exited (a worker killed with SIGKILL)."""
    import subprocess
    import sys

    from regsweep.lifecycle import owner_tag

    where, _, _ = owner_tag().rpartition(":")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return f"{where}:{dead.stdout.strip()}"


def test_a_retry_is_not_failed_twice(sqlite_url):
    """The WAITING retry of a dead worker's trial carries no owner tag (Optuna copies system
    attributes), so while a worker is asking it, before it writes its own tag, nobody fails it again."""
    import optuna
    from optuna.trial import TrialState

    from regsweep.lifecycle import FAIL_REASON, OWNER_ATTR, fail_orphaned_trials
    from regsweep.storage import make_storage

    study = optuna.create_study(study_name="retry", storage=make_storage(sqlite_url))
    first = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    study._storage.set_trial_system_attr(first._trial_id, OWNER_ATTR, dead_owner_tag())

    assert fail_orphaned_trials(study) == [first.number]
    (waiting,) = study.get_trials(states=(TrialState.WAITING,))
    assert OWNER_ATTR not in waiting.system_attrs
    assert waiting.user_attrs["retry_of"] == first.number and FAIL_REASON not in waiting.user_attrs
    retried = study.ask()  # a worker takes the retry: RUNNING, its own tag not written yet
    assert retried.number == waiting.number and retried.params == first.params
    assert fail_orphaned_trials(study) == []
    assert study._storage.get_trial(retried._trial_id).state == TrialState.RUNNING
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.RUNNING]


def test_a_trial_killed_while_sampling_is_retried_with_the_parameters_it_had_and_samples_the_rest(sqlite_url):
    """A worker killed between its claim and the end of ``space.suggest`` leaves a RUNNING trial
    with some parameters (or none): its retry keeps those and samples the others."""
    from optuna.trial import TrialState

    from regsweep.lifecycle import OWNER_ATTR, fail_orphaned_trials
    from regsweep.space import SearchSpace, suggest
    from regsweep.storage import make_storage

    space = SearchSpace(regularizers=("l1", "l2"))
    study = optuna.create_study(study_name="half", storage=make_storage(sqlite_url),
                                sampler=optuna.samplers.RandomSampler(seed=3))
    for sampled_some in (True, False):  # killed after regularizer and lam, or right after its claim
        half = study.ask()
        if sampled_some:
            half.suggest_categorical("regularizer", list(space.regularizers))
            half.suggest_float("lam", *space.lam, log=True)
        study._storage.set_trial_system_attr(half._trial_id, OWNER_ATTR, dead_owner_tag())
        had = dict(half.params)
        assert fail_orphaned_trials(study) == [half.number]
        retry = study.ask()
        assert retry.user_attrs["retry_of"] == half.number
        config = suggest(retry, space)
        assert {name: retry.params[name] for name in had} == had
        assert {"regularizer", "lam", "dropout", "depth", "width", "patience"} <= set(retry.params)
        assert config.regularizer == retry.params["regularizer"]
        study.tell(retry, 0.5)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE] * 2


@pytest.fixture(params=["sqlite", "postgres"])
def any_rdb_url(request, sqlite_url):
    return sqlite_url if request.param == "sqlite" else request.getfixturevalue("postgres_url")


def _commits(storage) -> list[int]:
    """A list that grows by one at every commit of ``storage``'s engine (a SQLAlchemy event)."""
    from sqlalchemy import event

    commits: list[int] = []
    event.listen(storage._backend.engine, "commit", lambda connection: commits.append(1))
    return commits


def test_set_user_attrs_writes_a_trials_attributes_in_one_commit(any_rdb_url):
    from regsweep.lifecycle import set_user_attrs
    from regsweep.storage import make_storage

    study = optuna.create_study(study_name="attrs", storage=make_storage(any_rdb_url, heartbeat=False))
    trial = study.ask()
    commits = _commits(study._storage)
    attrs = {"val_loss": 0.25, "epochs": 7, "val_curve": [0.5, 0.25], "slot_stop": "patience", "note": None}
    set_user_attrs(trial, attrs)
    assert len(commits) == 1
    assert trial.user_attrs == attrs  # as Trial.set_user_attr keeps them
    set_user_attrs(trial, {"epochs": 8, "worker": 3})  # an update and a new key
    assert len(commits) == 2
    for key in attrs:  # what one set_user_attr per key costs
        trial.set_user_attr(key, attrs[key])
    assert len(commits) == 2 + len(attrs)
    reread = load_study(any_rdb_url, "attrs", heartbeat=False).trials[0]
    assert reread.user_attrs == {**attrs, "worker": 3}


def test_set_user_attrs_writes_nothing_when_it_fails(sqlite_url):
    from regsweep.lifecycle import set_user_attrs
    from regsweep.storage import make_storage

    study = optuna.create_study(study_name="attrs", storage=make_storage(sqlite_url, heartbeat=False))
    trial = study.ask()
    with pytest.raises(TypeError, match="JSON serializable"):
        set_user_attrs(trial, {"first": 1, "second": object()})
    study.tell(trial, 1.0)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        set_user_attrs(trial, {"third": 3, "fourth": 4})
    reread = load_study(sqlite_url, "attrs", heartbeat=False).trials[0]
    assert reread.user_attrs == {}  # "first" went with the failed transaction


def test_set_user_attrs_on_an_in_memory_study_sets_them_one_by_one():
    from regsweep.lifecycle import set_user_attrs

    study = optuna.create_study()
    trial = study.ask()
    set_user_attrs(trial, {"a": 1, "b": [2, 3]})
    assert study.trials[0].user_attrs == {"a": 1, "b": [2, 3]}


def test_a_report_batch_writes_every_trials_value_in_one_commit_and_the_pruner_sees_them_first(sqlite_url):
    from regsweep.lifecycle import ReportBatch
    from regsweep.storage import make_storage

    study = optuna.create_study(study_name="reports", storage=make_storage(sqlite_url, heartbeat=False))
    trials = [study.ask() for _ in range(3)]
    commits = _commits(study._storage)
    batch = ReportBatch()
    for step in (0, 1):
        for i, trial in enumerate(trials):
            batch.add(trial, step, 1.0 / (i + step + 1))
        assert trials[2]._get_latest_trial().intermediate_values[step] == 1.0 / (2 + step + 1)  # before the write
        assert len(commits) == step  # nothing written yet
        assert batch.write() == set()
        assert len(commits) == step + 1
    assert batch.write() == set() and len(commits) == 2  # nothing pending, no commit
    reread = load_study(sqlite_url, "reports", heartbeat=False).trials
    assert [t.intermediate_values for t in reread] == [{0: 1.0, 1: 0.5}, {0: 0.5, 1: 1 / 3}, {0: 1 / 3, 1: 0.25}]


def test_a_report_batch_drops_the_trials_another_process_ended_and_writes_the_others(sqlite_url):
    from regsweep.lifecycle import ReportBatch
    from regsweep.storage import make_storage

    study = optuna.create_study(study_name="reports", storage=make_storage(sqlite_url, heartbeat=False))
    trials = [study.ask() for _ in range(3)]
    other = make_storage(sqlite_url, heartbeat=False)  # another process takes trial 1 for dead
    other.set_trial_state_values(trials[1]._trial_id, state=optuna.trial.TrialState.FAIL)
    batch = ReportBatch()
    for trial in trials:
        batch.add(trial, 0, 0.5)
    assert batch.write() == {trials[1].number}
    reread = load_study(sqlite_url, "reports", heartbeat=False).trials
    assert [t.intermediate_values for t in reread] == [{0: 0.5}, {}, {0: 0.5}]


def test_reading_a_sqlite_study_does_not_wait_for_another_processs_write_lock(sqlite_url):
    """Reads begin DEFERRED: while another connection holds the write lock (its transaction open),
    a worker still reads the committed study, where BEGIN IMMEDIATE waited out the busy timeout."""
    import sqlite3

    from regsweep.storage import make_storage, sqlite_path

    study = optuna.create_study(study_name="locked", storage=make_storage(sqlite_url, heartbeat=False))
    study.add_trial(optuna.create_trial(value=1.0))
    other = sqlite3.connect(sqlite_path(sqlite_url), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("UPDATE trial_values SET value = 2.0")  # not committed
    try:
        reader = load_study(sqlite_url, "locked", heartbeat=False)
        assert [t.value for t in reader.get_trials(deepcopy=False)] == [1.0]
        assert reader.user_attrs == {} and reader.best_value == 1.0
    finally:
        other.execute("ROLLBACK")
        other.close()
