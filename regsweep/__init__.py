"""regsweep: hyperparameter sweeps for regularized Keras models, on Optuna.

Search regularizer kind, λ, dropout, depth, width and early-stopping patience; run
trials in parallel worker processes; keep every trial in a resumable Optuna study;
review it as a leaderboard, plots and in optuna-dashboard.

Example:
    >>> import regsweep
    >>> from regsweep.data import make_rings
    >>> study = regsweep.run_sweep(regsweep.SearchSpace(), make_rings(), study="rings", trials=20)  # doctest: +SKIP
    >>> regsweep.leaderboard(study).head()  # doctest: +SKIP

Importing regsweep does not import TensorFlow, pandas or matplotlib.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from regsweep.errors import RegsweepError  # noqa: E402
from regsweep.space import SearchSpace, TrialConfig  # noqa: E402

__all__ = [
    "Dataset", "RegsweepError", "SearchSpace", "TrialConfig", "leaderboard", "load_best_model", "load_study",
    "best_trial", "predict", "resume_sweep", "run_sweep",
]

_LAZY = {
    "Dataset": ("regsweep.data", "Dataset"),
    "leaderboard": ("regsweep.report", "leaderboard"),
    "run_sweep": ("regsweep.runner", "run_sweep"),
    "resume_sweep": ("regsweep.runner", "resume_sweep"),
    "load_study": ("regsweep.storage", "load_study"),
    "load_best_model": ("regsweep.artifacts", "load_best_model"),
    "predict": ("regsweep.artifacts", "predict"),
    "best_trial": ("regsweep.pareto", "best_trial"),
}


def __getattr__(name: str) -> Any:
    """Load the public verbs on first use, so ``import regsweep`` stays light."""
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'regsweep' has no attribute {name!r}")
