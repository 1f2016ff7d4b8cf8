"""A trial's life at the edges: no repeated configurations across sampler incarnations, a worker
that survives its trial being ended elsewhere, workers that stop with their parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import optuna
import pytest
from readme_example import tiny_readme_api_example
from sweep_process import counted_trials, env, sweep_cmd, trials, wait_for, write_sweep

from regsweep import SearchSpace, run_sweep
from regsweep.storage import count_states, load_study

pytestmark = pytest.mark.slow

SPACE = SearchSpace(depth=(1, 2), width=(2, 8), patience=(1, 2), max_epochs=2, batch_size=32)


def param_sets(study: optuna.Study) -> list[tuple]:
    """The sampled parameters of every counted trial (retries of one trial share them on purpose)."""
    return [tuple(sorted(t.params.items())) for t in study.trials
            if not t.user_attrs.get("not_counted") and "retry_of" not in t.user_attrs]


def test_random_sampler_never_repeats_a_trial_across_resumes_extensions_and_recycling(tiny_rings, sqlite_url, tmp_path):
    common = dict(study="r", storage=sqlite_url, sampler="random", out=str(tmp_path / "out"), progress=False,
                  keep_top=0, pruner="none", engine="keras")  # recycling is the Keras engine's
    run_sweep(SPACE, tiny_rings, trials=3, workers=2, **common)           # stopped early, say
    run_sweep(SPACE, tiny_rings, trials=6, workers=2, **common)           # resumed and extended
    run_sweep(SPACE, tiny_rings, trials=10, workers=1, recycle_after=2, **common)  # re-enters every 2 trials
    study = load_study(sqlite_url, "r", heartbeat=False)
    assert count_states(study)["finished"] == 10
    sets = param_sets(study)
    assert len(sets) == 10 and len(set(sets)) == 10  # the same seed per incarnation would replay 0, 1, 2, ...


def test_an_uninterrupted_single_worker_run_is_reproducible(tiny_rings, tmp_path):
    runs = []
    for name in ("a", "b"):
        study = run_sweep(SPACE, tiny_rings, study=name, storage=f"sqlite:///{tmp_path / name}.db", trials=5,
                          workers=1, engine="keras", recycle_after=2, sampler="random", seed=7, out=str(tmp_path / name),
                          progress=False, keep_top=0)
        runs.append(param_sets(study))
    assert runs[0] == runs[1]


def test_a_worker_survives_its_trial_being_failed_by_another_process_and_the_total_stays_exact(tmp_path):
    """Another process fails the running trial (as a stale-trial check would) and queues its retry;
    the worker drops its result, goes on, and the sweep ends with exactly its total, exit 0."""
    from regsweep.storage import make_storage

    sweep, db, total = write_sweep(tmp_path, epochs=30), tmp_path / "race.db", 3
    process = subprocess.Popen(sweep_cmd(sweep, db, trials=total, workers=1), cwd=tmp_path, env=env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rows = wait_for(db, lambda rows: any(r["state"] == "RUNNING" and "patience" in r["params"] for r in rows), process)
    victim = next(r["number"] for r in rows if r["state"] == "RUNNING")
    study = optuna.load_study(study_name="tiny", storage=make_storage(f"sqlite:///{db}"))
    frozen = next(t for t in study.trials if t.number == victim)
    study._storage.set_trial_user_attr(frozen._trial_id, "not_counted", True)
    study._storage.set_trial_state_values(frozen._trial_id, state=optuna.trial.TrialState.FAIL)
    study._storage.get_heartbeat_stale_trial_callback()(study, study._storage.get_trial(frozen._trial_id))
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]
    assert "Traceback" not in err and f"trial {victim} was ended by another process" in err
    rows = trials(db)
    finished = [r for r in rows if r["state"] in ("COMPLETE", "PRUNED")]
    assert len(finished) == total and not [r for r in rows if r["state"] in ("RUNNING", "WAITING")]
    retry = [r for r in rows if r["system"].get("failed_trial") == victim]
    assert len(retry) == 1 and retry[0]["state"] in ("COMPLETE", "PRUNED")


def test_killing_only_the_parent_stops_its_workers_and_a_rerun_retries_their_trials(tmp_path):
    import psutil

    sweep, db, total = write_sweep(tmp_path, epochs=100), tmp_path / "orphan.db", 3
    cmd = sweep_cmd(sweep, db, trials=total, workers=2)
    process = subprocess.Popen(cmd, cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(db, lambda rows: len({r["system"].get("regsweep_owner") for r in rows if r["state"] == "RUNNING"
                                   and "regsweep_owner" in r["system"]}) == 2, process)  # both workers hold trials
    workers = psutil.Process(process.pid).children()
    worker_pids = {w.pid for w in workers if "spawn_main" in " ".join(w.cmdline())}
    assert len(worker_pids) == 2
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=60)
    gone, alive = psutil.wait_procs(workers, timeout=60)  # bounded wait for the workers to notice
    assert not alive, [p.cmdline() for p in alive]
    rows = trials(db)
    assert not [r for r in rows if r["state"] == "RUNNING"]  # each worker failed its trials and queued retries
    interrupted = [r["number"] for r in rows if r["user"].get("fail_reason") == "interrupted"]
    owners = {int(r["system"]["regsweep_owner"].rsplit(":", 1)[1]) for r in rows if r["number"] in interrupted}
    assert owners == worker_pids
    done = subprocess.run(cmd, cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = trials(db)
    assert sum(r["state"] in ("COMPLETE", "PRUNED") for r in rows) == total
    assert sorted(r["system"]["failed_trial"] for r in rows if "failed_trial" in r["system"]) == sorted(interrupted)


# The README's Python API example as users copy it (read from README.md), on tiny data and trials.
PLAIN_SCRIPT = tiny_readme_api_example(trials=3) + 'print("leaderboard rows:", len(board))\n'


def test_the_readme_api_example_runs_as_a_plain_script_with_two_workers(tmp_path):
    """No ``if __name__ == "__main__":``: spawned workers must not re-import (and re-run) the script."""
    script = tmp_path / "plain.py"
    script.write_text(PLAIN_SCRIPT)
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env(), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("leaderboard rows:") == 1 and "leaderboard rows: 3" in done.stdout
    assert "bootstrapping phase" not in done.stderr and "Traceback" not in done.stderr
    study = load_study(f"sqlite:///{tmp_path / 'studies' / 'mine.db'}", "mine", heartbeat=False)
    assert count_states(study)["finished"] == 3
    from regsweep.runtime import usable_cores

    finished = counted_trials(study)
    # trained in the 2 spawned workers, each capped at its share of the cores
    assert {t.user_attrs["tf_intra_op_threads"] for t in finished} == {max(1, usable_cores() // 2)}


def test_an_idle_worker_waits_out_a_dead_hosts_running_trial_then_retries_it(tmp_path):
    """Another host holds the study's last trial. The sweep's worker has nothing to claim but must
    not leave: it waits. When that host dies (its heartbeat goes stale), the trial is failed and
    retried here, and the study ends with exactly its total."""
    import sqlite3

    from regsweep.lifecycle import OWNER_ATTR
    from regsweep.storage import make_storage

    sweep, db, total = write_sweep(tmp_path, epochs=2), tmp_path / "hosts.db", 2
    cmd = sweep_cmd(sweep, db, trials=total, workers=1)
    first = subprocess.run([*cmd[:cmd.index("--trials") + 1], "1", *cmd[cmd.index("--trials") + 2:]], cwd=tmp_path,
                           env=env(), capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    study = optuna.load_study(study_name="tiny", storage=make_storage(f"sqlite:///{db}"))
    other = study.ask()  # "host B" claims the last trial and beats once
    other.suggest_categorical("regularizer", ["none", "l2"])
    study._storage.set_trial_system_attr(other._trial_id, OWNER_ATTR, "hostB/0123456789ab/1/42:4242")
    study._storage.record_heartbeat(other._trial_id)
    process = subprocess.Popen(cmd, cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:  # the worker found nothing to claim and waits instead of leaving
        if "still running elsewhere; waiting" in line:
            break
    assert process.poll() is None
    with sqlite3.connect(db, timeout=60) as conn:  # host B dies: its last heartbeat is an hour old
        conn.execute("UPDATE trial_heartbeats SET heartbeat = datetime(heartbeat, '-1 hour') WHERE trial_id = ?",
                     (other._trial_id,))
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]
    rows = trials(db)
    assert sum(r["state"] in ("COMPLETE", "PRUNED") for r in rows) == total
    retry = [r for r in rows if r["system"].get("failed_trial") == other.number]
    assert len(retry) == 1 and retry[0]["state"] in ("COMPLETE", "PRUNED")
    original = next(r for r in rows if r["number"] == other.number)
    assert original["state"] == "FAIL" and retry[0]["params"]["regularizer"] == original["params"]["regularizer"]
