"""`regsweep worker` (and a sweep's --worker-only): join an existing study and stop at its recorded total."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from regsweep.cli import main


def _create_study(url: str, space, dataset, total: int) -> None:
    """What the first host does before any worker runs: create the study with its record, train nothing."""
    from regsweep.runner import SweepSettings, study_metadata
    from regsweep.storage import open_study

    settings = SweepSettings(study="joined", storage=url, trials=total, keep_top=0)
    open_study(url, "joined", meta=study_metadata(space, dataset, settings, "tiny"))


@pytest.mark.slow
def test_worker_trains_until_the_recorded_total_then_does_nothing(sqlite_url, tiny_space, tiny_rings, tmp_path,
                                                                   monkeypatch, capsys):
    from regsweep.storage import count_states, load_study

    monkeypatch.chdir(tmp_path)
    _create_study(sqlite_url, tiny_space, tiny_rings, total=3)

    assert main(["worker", "--storage", sqlite_url, "--study", "joined", "-q"]) == 0
    assert "3 of 3 finished" in capsys.readouterr().out
    study = load_study(sqlite_url, "joined", heartbeat=False)
    assert count_states(study)["finished"] == 3
    assert len(study.trials) == 3
    assert {t.system_attrs["regsweep_owner"].rsplit(":", 1)[1] for t in study.trials} == {str(os.getpid())}
    assert all(t.user_attrs["worker"] >= 10_000 for t in study.trials)  # joined workers' sampler seeds are offset

    # the study is done: another worker (here through a sweep's --worker-only) adds nothing
    from sweeps.rings import main as rings_main

    assert rings_main(["--worker-only", "--storage", sqlite_url, "--study", "joined", "-q"]) == 0
    assert "3 of 3 finished" in capsys.readouterr().out
    assert len(load_study(sqlite_url, "joined", heartbeat=False).trials) == 3


def test_worker_without_a_database_is_one_line(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'none.db'}"
    assert main(["worker", "--storage", url, "--study", "joined"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no database at" in err
    assert not (tmp_path / "none.db").exists()


def test_worker_refuses_a_study_not_made_by_regsweep(sqlite_url, capsys):
    import optuna

    optuna.create_study(study_name="plain", storage=sqlite_url)
    assert main(["worker", "--storage", sqlite_url, "--study", "plain"]) == 2
    assert "was not made by regsweep" in capsys.readouterr().err


def test_worker_wait_gives_up_with_the_missing_study(sqlite_url, tiny_space, tiny_rings, capsys):
    _create_study(sqlite_url, tiny_space, tiny_rings, total=1)
    assert main(["worker", "--storage", sqlite_url, "--study", "other", "--wait", "1"]) == 2
    err = capsys.readouterr().err
    assert "no study named 'other'" in err and "joined" in err


@pytest.mark.parametrize("argv, message", [
    (["--backend", "spark"], "invalid choice: 'spark'"),
    (["--workers", "0"], "allowed: a whole number >= 1"),
    (["--wait", "-1"], "allowed: a whole number >= 0"),
    (["--backend", "dask", "--scheduler", "localhost"], "scheduler: got 'localhost'"),
])
def test_worker_flags_are_checked(argv, message, sqlite_url, capsys):
    assert main(["worker", "--storage", sqlite_url, "--study", "joined", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_worker_help_stays_light():
    code = ("import sys\nfrom regsweep.cli import build_parser\ntry:\n    build_parser().parse_args(['worker', '--help'])\n"
            "except SystemExit:\n    pass\nprint(sorted(m for m in ('tensorflow', 'distributed', 'optuna') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "--wait SECONDS" in result.stdout
    assert result.stdout.strip().endswith("[]")
