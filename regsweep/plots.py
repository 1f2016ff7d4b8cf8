"""Matplotlib figures of a sweep (Agg backend, imported on first use).

Four figures, each titled with the study name, with labelled axes and a legend, and a
clear message instead of a traceback for an empty, one-trial or all-failed study:

* ``complexity``: validation loss vs trainable parameters (log) and final kernel L2 norm;
* ``learning_curves``: train/validation loss per epoch of the top trials and of the best
  trial of each regularizer, overlaid as in the original notes;
* ``history``: each trial's validation loss and the best so far;
* ``importances``: hyperparameter importances (Optuna's PED-ANOVA evaluator, its default).

Example:
    >>> paths = write_plots(study, "studies/rings", formats=("png", "svg"))  # doctest: +SKIP
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regsweep.pareto import best_trial, is_multi, study_objectives
from regsweep.report import leaderboard
from regsweep.trial_curve import plot_trial_curve, trial_curve_figure  # noqa: F401  (re-exported)

if TYPE_CHECKING:
    import optuna
    import pandas as pd

REGULARIZER_COLORS = {"none": "#4d4d4d", "l1": "#1b9e77", "l2": "#d95f02", "l1_l2": "#7570b3"}
FORMATS = ("png", "svg")


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, out_dir: str | Path, stem: str, formats: tuple[str, ...]) -> list[Path]:
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = folder / f"{stem}.{fmt}"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        paths.append(path)
    pyplot().close(fig)
    return paths


def _empty_figure(title: str, message: str) -> Any:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=12, transform=ax.transAxes)
    ax.set_axis_off()
    return fig


def pareto_front(x: Any, y: Any) -> tuple[list[float], list[float]]:
    """Points with the lowest ``y`` at or below each ``x`` (the complexity/loss trade-off)."""
    points = sorted(zip(x, y))
    front_x, front_y, best = [], [], float("inf")
    for px, py in points:
        if py < best:
            best = py
            front_x.append(px)
            front_y.append(py)
    return front_x, front_y


def _complexity_panel(ax: Any, board: pd.DataFrame, column: str, label: str, log: bool,
                      best_number: int | None = None) -> None:
    for kind, color in REGULARIZER_COLORS.items():
        rows = board[board["regularizer"] == kind]
        if rows.empty:
            continue
        pruned = rows["state"] == "pruned"
        ax.scatter(rows.loc[~pruned, column], rows.loc[~pruned, "val_loss"], s=28, color=color, alpha=0.8,
                   label=f"{kind} ({len(rows)})")
        if pruned.any():
            ax.scatter(rows.loc[pruned, column], rows.loc[pruned, "val_loss"], s=28, facecolors="none",
                       edgecolors=color, alpha=0.8)
    if "pareto" in board.columns:  # a multi-objective study: its own front (complete trials, rank 1)
        front = board[board["pareto"].astype(bool)]
        ax.scatter(front[column], front["val_loss"], s=90, facecolors="none", edgecolors="black", linewidths=1.2,
                   zorder=4, label=f"on the study's Pareto front ({len(front)})")
        front_x, front_y = pareto_front(front[column], front["val_loss"])
    else:
        front_x, front_y = pareto_front(board[column], board["val_loss"])
    ax.step(front_x, front_y, where="post", color="black", linewidth=1, alpha=0.6, label="Pareto front")
    best = board.iloc[0] if best_number is None else board[board["trial"] == best_number].iloc[0]
    ax.scatter([best[column]], [best["val_loss"]], marker="*", s=260, color="gold", edgecolors="black", zorder=5,
               label=f"best: trial {int(best['trial'])}")
    if log:
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        ax.set_xscale("log")
        values = board[column].dropna()
        decades = math.log10(max(values.max(), 1) / max(values.min(), 1)) if len(values) else 0.0
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if decades < 2 else (1.0, 3.0) if decades < 3 else (1.0,)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(label)
    ax.set_ylabel("validation loss (data loss, lower is better)")
    ax.grid(True, alpha=0.3)


def plot_complexity(study: optuna.Study, out_dir: str | Path, *, formats: tuple[str, ...] = ("png",)) -> list[Path]:
    """Validation loss against model complexity: trainable parameters (log) and final kernel L2 norm.

    Points are coloured by regularizer (hollow: pruned), the best trial is a star, and the
    Pareto front (lowest loss for each complexity) is a line.
    """
    board = leaderboard(study)
    title = f"{study.study_name}: validation loss vs model complexity"
    if board.empty:
        return _save(_empty_figure(title, _no_trials_message(study)), out_dir, "complexity", formats)
    board = board.assign(weight_l2=[t.user_attrs.get("weight_l2") for t in _trials_by_number(study, board["trial"])])
    best_number = _best_number(study, board)
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
    _complexity_panel(axes[0], board, "n_params", "trainable parameters (log scale)", log=True, best_number=best_number)
    _complexity_panel(axes[1], board, "weight_l2", "‖W‖₂: L2 norm of all final Dense kernels", log=False,
                      best_number=best_number)
    axes[0].legend(title="regularizer (trials; hollow: pruned)", fontsize=9)
    objectives = study_objectives(study)
    kind = f", Pareto study: {' × '.join(objectives)}" if is_multi(objectives) else ""
    fig.suptitle(f"{title} ({len(board)} finished trials{kind})")
    return _save(fig, out_dir, "complexity", formats)


def _best_number(study: optuna.Study, board: pd.DataFrame) -> int | None:
    """The star: the best rule's pick in a multi-objective study (``None``: the first row)."""
    if "pareto" not in board.columns or not board["pareto"].any():
        return None
    return best_trial(study).number


def _trials_by_number(study: optuna.Study, numbers: Any) -> list[optuna.trial.FrozenTrial]:
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    return [trials[int(n)] for n in numbers]


def _describe(trial: optuna.trial.FrozenTrial) -> str:
    """A short legend label: ``#7 l2 λ=1e-03 drop 0.10 2x32``."""
    params = trial.params
    kind = params.get("regularizer", "?")
    lam = f" λ={params['lam']:.0e}" if "lam" in params else ""
    return (f"#{trial.number} {kind}{lam} drop {params.get('dropout', 0):.2f} "
            f"{params.get('depth', '?')}x{params.get('width', '?')}")


def _curve_trials(study: optuna.Study, board: pd.DataFrame, top: int) -> tuple[list[Any], list[Any]]:
    """The top ``top`` trials, and the best trial of each regularizer kind (with curves)."""
    numbers = [int(n) for n in board["trial"]]
    trials = [t for t in _trials_by_number(study, numbers) if t.user_attrs.get("val_curve")]
    best_of_kind: dict[str, Any] = {}
    for trial in trials:
        best_of_kind.setdefault(trial.params.get("regularizer", "?"), trial)
    return trials[:top], [best_of_kind[k] for k in REGULARIZER_COLORS if k in best_of_kind]


def _draw_curves(ax: Any, trials: list[Any], colors: list[str]) -> None:
    for trial, color in zip(trials, colors):
        val, train = trial.user_attrs["val_curve"], trial.user_attrs.get("train_curve", [])
        epochs = range(1, len(val) + 1)
        ax.plot(epochs, val, color=color, linewidth=2, label=_describe(trial))
        if train:
            ax.plot(range(1, len(train) + 1), train, color=color, linewidth=1.2, linestyle="--", alpha=0.8)
        best = trial.user_attrs.get("best_epoch")
        if best and best <= len(val):
            ax.scatter([best], [val[best - 1]], color=color, s=30, zorder=4)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (data loss, no penalty)")
    ax.xaxis.set_major_locator(_integer_ticks())
    ax.grid(True, alpha=0.3)


def _integer_ticks() -> Any:
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def _no_trials_message(study: optuna.Study) -> str:
    failed = sum(t.state.name == "FAIL" for t in study.get_trials(deepcopy=False))
    if failed:
        return f"no finished trials yet ({failed} failed; see: regsweep leaderboard --state failed)"
    return "no finished trials yet"


def _style_legend(ax: Any, title: str) -> None:
    from matplotlib.lines import Line2D

    handles, labels = ax.get_legend_handles_labels()
    handles += [Line2D([], [], color="gray", linewidth=2), Line2D([], [], color="gray", linestyle="--")]
    labels += ["validation (solid; dot = best epoch)", "training (dashed)"]
    ax.legend(handles, labels, title=title, fontsize=8, title_fontsize=9, loc="best")


def plot_learning_curves(study: optuna.Study, out_dir: str | Path, *, top: int = 5,
                         formats: tuple[str, ...] = ("png",)) -> list[Path]:
    """Train (dashed) and validation (solid) loss per epoch: the ``top`` best trials (left) and
    the best trial of each regularizer kind (right), overlaid as in the original notes."""
    title = f"{study.study_name}: learning curves"
    board = leaderboard(study)
    if board.empty:
        return _save(_empty_figure(title, _no_trials_message(study)), out_dir, "learning_curves", formats)
    best_trials, kind_trials = _curve_trials(study, board, top)
    if not best_trials:
        return _save(_empty_figure(title, "no trial recorded learning curves"), out_dir, "learning_curves", formats)
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2), sharey=True)
    palette = plt.get_cmap("tab10").colors
    _draw_curves(axes[0], best_trials, [palette[i % 10] for i in range(len(best_trials))])
    _style_legend(axes[0], f"top {len(best_trials)} trials (by val_loss)")
    axes[0].set_title("best trials overall")
    _draw_curves(axes[1], kind_trials, [REGULARIZER_COLORS.get(t.params.get("regularizer"), "black") for t in kind_trials])
    _style_legend(axes[1], "best trial of each regularizer")
    axes[1].set_title("which regularizer helps: best of each kind")
    axes[1].tick_params(labelleft=True)
    fig.suptitle(title)
    return _save(fig, out_dir, "learning_curves", formats)


def plot_history(study: optuna.Study, out_dir: str | Path, *, formats: tuple[str, ...] = ("png",)) -> list[Path]:
    """Optimization history: each finished trial's validation loss and the best so far."""
    title = f"{study.study_name}: optimization history"
    board = leaderboard(study, sort_by="trial")
    if board.empty:
        return _save(_empty_figure(title, _no_trials_message(study)), out_dir, "history", formats)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 5))
    for kind, color in REGULARIZER_COLORS.items():
        rows = board[board["regularizer"] == kind]
        done, pruned = rows[rows["state"] == "complete"], rows[rows["state"] == "pruned"]
        if not done.empty:
            ax.scatter(done["trial"], done["val_loss"], color=color, s=30, label=f"{kind} ({len(done)})")
        if not pruned.empty:
            ax.scatter(pruned["trial"], pruned["val_loss"], facecolors="none", edgecolors=color, s=30,
                       label=f"{kind}, pruned ({len(pruned)})")
    complete = board[board["state"] == "complete"]
    if not complete.empty:
        ax.step(complete["trial"], complete["val_loss"].cummin(), where="post", color="black", linewidth=1.5,
                label="best so far")
    ax.set_xlabel("trial number")
    ax.xaxis.set_major_locator(_integer_ticks())
    ax.set_ylabel("validation loss (data loss, lower is better)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=9, title="regularizer (trials)")
    ax.set_title(f"{title} ({len(board)} finished trials)")
    return _save(fig, out_dir, "history", formats)


def param_importances(study: optuna.Study) -> dict[str, float]:
    """Optuna's PED-ANOVA hyperparameter importances over the complete trials (``{}`` when it cannot tell).

    """
    import warnings

    import optuna
    from optuna.trial import TrialState

    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < 2:
        return {}
    try:
        evaluator = optuna.importance.PedAnovaImportanceEvaluator()
        if len(study.directions) == 1:
            return dict(optuna.importance.get_param_importances(study, evaluator=evaluator))
        with warnings.catch_warnings():  # a Pareto study: importances for val_loss (lower is better, as meant)
            warnings.filterwarnings("ignore", message=".*computes the importances of params to achieve low")
            return dict(optuna.importance.get_param_importances(study, evaluator=evaluator,
                                                                target=lambda t: t.values[0]))
    except (RuntimeError, ValueError):  # e.g. no parameter varies across the complete trials
        return {}


def plot_importances(study: optuna.Study, out_dir: str | Path, *, formats: tuple[str, ...] = ("png",)) -> list[Path]:
    """Hyperparameter importances for the validation loss (Optuna's PED-ANOVA evaluator), as bars."""
    title = f"{study.study_name}: hyperparameter importances"
    importances = param_importances(study)
    if not importances:
        message = "needs at least 2 complete trials with varying parameters"
        return _save(_empty_figure(title, message), out_dir, "importances", formats)
    plt = pyplot()
    names = list(importances)[::-1]
    values = [importances[n] for n in names]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) + 1.8))
    bars = ax.barh(names, values, color="#4c72b0", label="importance for validation loss")
    ax.bar_label(bars, fmt="%.2f", padding=3, fontsize=9)
    ax.set_xlim(0, max(values) * 1.15 + 1e-9)
    ax.set_xlabel("importance (Optuna's PED-ANOVA evaluator, normalized to sum to 1)")
    ax.set_ylabel("hyperparameter")
    ax.legend(fontsize=9, loc="lower right")
    complete = sum(t.state.name == "COMPLETE" for t in study.get_trials(deepcopy=False))
    ax.set_title(f"{title} ({complete} complete trials)")
    return _save(fig, out_dir, "importances", formats)


PLOTS = ("complexity", "learning_curves", "history", "importances")


def write_plots(study: optuna.Study, out_dir: str | Path, *, formats: tuple[str, ...] = ("png",),
                which: tuple[str, ...] | None = None) -> list[Path]:
    """Write the plots of a study (``which``: default all of :data:`PLOTS`) into ``out_dir``; return the paths."""
    which = which or PLOTS
    bad = [name for name in which if name not in PLOTS]
    bad_formats = [fmt for fmt in formats if fmt not in FORMATS]
    if bad or bad_formats:
        from regsweep.errors import SettingsError

        raise SettingsError(f"plot: got {bad or bad_formats}; allowed: plots {PLOTS}, formats {FORMATS}")
    makers = {"complexity": plot_complexity, "learning_curves": plot_learning_curves, "history": plot_history,
              "importances": plot_importances}
    paths: list[Path] = []
    for name in which:
        paths += makers[name](study, out_dir, formats=formats)
    return paths
