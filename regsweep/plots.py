"""Matplotlib figures of a sweep (Agg backend, imported on first use).

Example:
    >>> paths = plot_complexity(study, "studies/rings")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from regsweep.report import leaderboard

if TYPE_CHECKING:
    import optuna
    import pandas as pd

REGULARIZER_COLORS = {"none": "#4d4d4d", "l1": "#1b9e77", "l2": "#d95f02", "l1_l2": "#7570b3"}
FORMATS = ("png", "svg")


def _pyplot() -> Any:
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
    _pyplot().close(fig)
    return paths


def _empty_figure(title: str, message: str) -> Any:
    plt = _pyplot()
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


def _complexity_panel(ax: Any, board: pd.DataFrame, column: str, label: str, log: bool) -> None:
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
    front_x, front_y = pareto_front(board[column], board["val_loss"])
    ax.step(front_x, front_y, where="post", color="black", linewidth=1, alpha=0.6, label="Pareto front")
    best = board.iloc[0]
    ax.scatter([best[column]], [best["val_loss"]], marker="*", s=260, color="gold", edgecolors="black", zorder=5,
               label=f"best: trial {int(best['trial'])}")
    if log:
        ax.set_xscale("log")
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
        return _save(_empty_figure(title, "no finished trials yet"), out_dir, "complexity", formats)
    board = board.assign(weight_l2=[t.user_attrs.get("weight_l2") for t in _trials_by_number(study, board["trial"])])
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
    _complexity_panel(axes[0], board, "n_params", "trainable parameters (log scale)", log=True)
    _complexity_panel(axes[1], board, "weight_l2", "L2 norm of the final kernels", log=False)
    axes[0].legend(title="regularizer (trials)", fontsize=9)
    fig.suptitle(f"{title} ({len(board)} trials)")
    return _save(fig, out_dir, "complexity", formats)


def _trials_by_number(study: optuna.Study, numbers: Any) -> list[optuna.trial.FrozenTrial]:
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    return [trials[int(n)] for n in numbers]


def write_plots(study: optuna.Study, out_dir: str | Path, *, formats: tuple[str, ...] = ("png",)) -> list[Path]:
    """Write every plot of a study into ``out_dir`` and return the file paths."""
    return plot_complexity(study, out_dir, formats=formats)
