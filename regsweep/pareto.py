"""Multi-objective sweeps: objectives, Pareto fronts and ranks, hypervolume, the ``best`` rule and
the per-epoch pruning rule. Pure Python (no Optuna, NumPy or pandas at import time).

A sweep minimizes ``val_loss`` and, optionally, model complexity (``n_params``, ``weight_l2``)
and ``train_seconds``. Every measure is a user attribute of each finished trial, so fronts can be
computed for any study, single-objective ones included (the benchmark does this).

* **Front rank** (non-dominated sorting): rank 1 is the Pareto front of the COMPLETE trials;
  rank 2 the front of the rest, and so on. Pruned trials keep their recorded loss and complexity
  but get no rank: they stopped early, so their loss is not a trained model's.
* **The best rule** (:func:`pick_best`): among front trials whose loss is within ``tolerance``
  (default 1 %) of the lowest loss on the front, the one with the lowest complexity (the first
  of ``n_params``/``weight_l2`` among the objectives, else the second objective); ties go to the
  lower loss, then the lower trial number.
* **The pruning rule** (:class:`PeerPruner`): Optuna's ``report``/``should_prune`` do not serve
  multi-objective studies. From epoch ``warmup`` on, a trial is pruned when at least
  ``min_peers`` finished trials (complete or pruned, known when it started) with at most as many
  parameters as it has reached a lower best loss by the same epoch, in the median: a model that
  loses to the median of models no bigger than itself would most likely be dominated.

Example:
    >>> fronts = front_ranks([(0.3, 100), (0.2, 400), (0.4, 500)])
    >>> fronts
    [1, 1, 2]
    >>> hypervolume_2d([(0.3, 100), (0.2, 400)], reference=(1.0, 1000))
    690.0
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from regsweep.errors import SettingsError
from regsweep.storage import STUDY_ATTR

if TYPE_CHECKING:
    import optuna

LOSS = "val_loss"
COMPLEXITY = ("n_params", "weight_l2")
OBJECTIVES = (LOSS, *COMPLEXITY, "train_seconds")
DEFAULT_OBJECTIVES = (LOSS,)
DEFAULT_TOLERANCE = 0.01


# -- objectives ----------------------------------------------------------------------------------------
def check_objectives(value: Any) -> tuple[str, ...]:
    """Validate objectives: ``val_loss`` first, then any of ``n_params``, ``weight_l2``, ``train_seconds`` once each."""
    names = (value,) if isinstance(value, str) else value
    allowed = f"'val_loss' first, then any of {OBJECTIVES[1:]} (each once), e.g. val_loss n_params"
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) for n in names):
        raise SettingsError(f"objectives: got {value!r}; allowed: {allowed}")
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown or names[0] != LOSS or len(set(names)) != len(names):
        raise SettingsError(f"objectives: got {list(names)}; allowed: {allowed}")
    return tuple(names)


def check_tolerance(value: Any) -> float:
    """A relative loss tolerance: a number in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise SettingsError(f"tolerance: got {value!r}; allowed: a number in [0, 1] (0.01 = 1 %)")
    return float(value)


def study_objectives(study: optuna.Study) -> tuple[str, ...]:
    """The objectives a study was made with (``('val_loss',)`` for single-objective studies)."""
    return tuple(study.user_attrs.get(STUDY_ATTR, {}).get("objectives", DEFAULT_OBJECTIVES))


def is_multi(objectives: Sequence[str]) -> bool:
    """Whether ``objectives`` make a multi-objective (Pareto) study."""
    return len(objectives) > 1


def complexity_objective(objectives: Sequence[str]) -> str:
    """The measure the best rule minimizes: the first complexity objective, else the second objective."""
    return next((o for o in objectives if o in COMPLEXITY), objectives[1] if len(objectives) > 1 else "n_params")


def objective_values(attrs: dict[str, Any], objectives: Sequence[str]) -> list[float]:
    """The values of ``objectives`` in a trial's recorded attributes (``train_seconds`` included)."""
    return [float(attrs[name]) for name in objectives]


def trial_point(trial: optuna.trial.FrozenTrial, objectives: Sequence[str]) -> tuple[float, ...] | None:
    """A finished trial's objective values from its user attributes; ``None`` if one is missing."""
    try:
        point = tuple(objective_values(trial.user_attrs, objectives))
    except (KeyError, TypeError, ValueError):
        return None
    return point if all(math.isfinite(v) for v in point) else None


# -- fronts ---------------------------------------------------------------------------------------------
def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` is no worse than ``b`` in every objective and better in one (all minimized)."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def front_ranks(points: Sequence[Sequence[float]]) -> list[int]:
    """Non-dominated sorting: rank 1 for the Pareto front, 2 for the front of the rest, ..."""
    ranks = [0] * len(points)
    left = set(range(len(points)))
    rank = 0
    while left:
        rank += 1
        front = {i for i in left if not any(dominates(points[j], points[i]) for j in left if j != i)}
        for i in front:
            ranks[i] = rank
        left -= front
    return ranks


def pareto_indices(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the non-dominated points."""
    return [i for i, r in enumerate(front_ranks(points)) if r == 1]


def study_ranks(study: optuna.Study, objectives: Sequence[str] | None = None) -> dict[int, int]:
    """``{trial number: front rank}`` of the COMPLETE trials (see the module docstring)."""
    objectives = objectives or study_objectives(study)
    numbered = [(t.number, p) for t in study.get_trials(deepcopy=False)
                if t.state.name == "COMPLETE" and (p := trial_point(t, objectives)) is not None]
    ranks = front_ranks([p for _, p in numbered])
    return {number: rank for (number, _), rank in zip(numbered, ranks)}


def hypervolume_2d(points: Iterable[Sequence[float]], reference: Sequence[float]) -> float:
    """Area dominated by ``points`` and bounded by ``reference`` (both objectives minimized).

    Points outside the reference box add nothing; the same reference must be used to compare fronts.
    """
    inside = sorted((float(x), float(y)) for x, y in points if x < reference[0] and y < reference[1])
    area, lowest_y = 0.0, float(reference[1])
    for i, (x, y) in enumerate(inside):
        lowest_y = min(lowest_y, y)
        right = inside[i + 1][0] if i + 1 < len(inside) else float(reference[0])
        area += (right - x) * (reference[1] - lowest_y)
    return area


# -- the best rule ----------------------------------------------------------------------------------------
def pick_best(candidates: Sequence[tuple[int, Sequence[float]]], objectives: Sequence[str], *,
              tolerance: float = DEFAULT_TOLERANCE) -> int:
    """The trial number the best rule picks among ``(number, point)`` candidates (see module docstring)."""
    if not candidates:
        raise SettingsError("study: no complete trial with recorded objectives yet; allowed: a study with results")
    points = [p for _, p in candidates]
    front = [candidates[i] for i in pareto_indices(points)]
    lowest = min(p[0] for _, p in front)
    near = [(n, p) for n, p in front if p[0] <= lowest + tolerance * abs(lowest)]
    c = list(objectives).index(complexity_objective(objectives))
    return min(near, key=lambda item: (item[1][c], item[1][0], item[0]))[0]


def best_trial(study: optuna.Study, *, tolerance: float = DEFAULT_TOLERANCE) -> optuna.trial.FrozenTrial:
    """THE best trial of a regsweep study, the one definition every command uses.

    One objective: the COMPLETE trial with the lowest value (the mean validation data loss),
    ties broken by the lower trial number; pruned trials never count (their model stopped early
    and was not saved). The leaderboard's rank 1, ``regsweep best``, ``status``,
    :func:`regsweep.load_best_model` and the HTML report all agree on it. Several objectives:
    :func:`pick_best`, the smallest front model within ``tolerance`` of the front's lowest loss.

    Raises:
        SettingsError: the study has no complete trial yet.

    Example:
        >>> best_trial(study).number  # doctest: +SKIP
    """
    objectives = study_objectives(study)
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if not complete:
        raise SettingsError(f"study: {study.study_name!r} has no complete trial yet; allowed: a study with results")
    if not is_multi(objectives):
        return min((t for t in complete if t.values), key=lambda t: (t.values[0], t.number))
    check_tolerance(tolerance)
    candidates = [(t.number, p) for t in complete if (p := trial_point(t, objectives)) is not None]
    number = pick_best(candidates, objectives, tolerance=tolerance)
    return next(t for t in complete if t.number == number)


def front_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The COMPLETE trials on the Pareto front, lowest loss first."""
    ranks = study_ranks(study)
    trials = [t for t in study.get_trials(deepcopy=False) if ranks.get(t.number) == 1]
    return sorted(trials, key=lambda t: (t.user_attrs.get(LOSS, math.inf), t.number))


# -- the pruning rule -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PeerPruner:
    """Prune a multi-objective trial that loses to the median of finished trials no bigger than itself.

    ``peers`` holds ``(n_params, val_curve)`` of the trials finished when the trial started.
    """

    peers: tuple[tuple[int, tuple[float, ...]], ...]
    warmup: int = 3
    min_peers: int = 3

    def should_prune(self, n_params: int, val_curve: Sequence[float]) -> bool:
        """After epoch ``len(val_curve)``: whether the trial's best loss so far loses to its peers' median."""
        epoch = len(val_curve)
        if epoch < self.warmup or not val_curve:
            return False
        bests = [min(curve[:epoch]) for size, curve in self.peers if size <= n_params and curve]
        if len(bests) < self.min_peers:
            return False
        return min(val_curve) > statistics.median(bests)


def peer_pruner(trials: Iterable[optuna.trial.FrozenTrial]) -> PeerPruner:
    """A :class:`PeerPruner` over the finished (complete or pruned) trials among ``trials``."""
    peers = []
    for trial in trials:
        curve, size = trial.user_attrs.get("val_curve"), trial.user_attrs.get("n_params")
        if trial.state.name in ("COMPLETE", "PRUNED") and curve and size is not None:
            finite = tuple(float(v) for v in curve if isinstance(v, (int, float)) and math.isfinite(v))
            if finite:
                peers.append((int(size), finite))
    return PeerPruner(tuple(peers))


def study_peer_pruner(study: optuna.Study) -> PeerPruner | None:
    """The :class:`PeerPruner` for a trial starting now in a multi-objective study (one without peers,
    which never prunes, when the study's pruner is ``none``); ``None`` for a single-objective study,
    where Optuna's pruner applies."""
    import optuna

    if not is_multi(study_objectives(study)):
        return None
    if isinstance(study.pruner, optuna.pruners.NopPruner):
        return PeerPruner(())
    return peer_pruner(study.get_trials(deepcopy=False))
