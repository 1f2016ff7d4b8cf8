"""Tiny real studies for the review tests (report, plots, artifacts, dashboard).

Each is a real sweep: real Keras training on 120 rings samples, a real SQLite file, and
the artifacts (learning curves, models) the objective saves.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

SPACE_ARGS = dict(depth=(1, 2), width=(2, 8), patience=(1, 2), max_epochs=3, batch_size=32)


@dataclass
class ReviewStudy:
    study: Any
    url: str
    name: str
    dataset: Any
    folder: Path


def make_study(folder: Path, name: str, *, trials: int, repeats: int = 1, keep_top: int = 3,
               failed: int = 0) -> ReviewStudy:
    """Run a tiny sweep into ``folder/<name>.db``; then add ``failed`` FAIL trials by ask/tell."""
    from optuna.trial import TrialState

    from regsweep import SearchSpace, run_sweep
    from regsweep.data import make_rings

    dataset = make_rings(n=120, seed=0)
    url = f"sqlite:///{folder / (name + '.db')}"
    study = run_sweep(SearchSpace(**SPACE_ARGS), dataset, study=name, storage=url, trials=trials, workers=1,
                      pruner="none", sampler="random", progress=False, repeats=repeats, keep_top=keep_top)
    for _ in range(failed):
        trial = study.ask()
        trial.set_user_attr("fail_reason", "test: made to fail")
        study.tell(trial, state=TrialState.FAIL)
    return ReviewStudy(study, url, name, dataset, folder)


def make_failed_study(folder: Path, name: str = "all_failed") -> ReviewStudy:
    """A study whose every trial failed (made by ask/tell on a real SQLite storage)."""
    from optuna.trial import TrialState

    from regsweep.storage import open_study

    url = f"sqlite:///{folder / (name + '.db')}"
    study = open_study(url, name, meta={"total": 2, "sweep": "test"})
    for _ in range(2):
        trial = study.ask()
        trial.suggest_categorical("regularizer", ["l2"])
        trial.set_user_attr("fail_reason", "NonFiniteLossError: non-finite loss at epoch 1")
        study.tell(trial, state=TrialState.FAIL)
    return ReviewStudy(study, url, name, None, folder)
