"""The leaderboard: one row per trial as a pandas DataFrame, and its exports.

Example:
    >>> board = leaderboard(study)  # doctest: +SKIP
    >>> board[["rank", "val_loss", "regularizer"]].head()  # doctest: +SKIP
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regsweep.errors import SettingsError
from regsweep.pareto import is_multi, study_objectives, study_ranks
from regsweep.space import CORE_PARAMS

if TYPE_CHECKING:
    import optuna
    import pandas as pd

COLUMNS = ("rank", "trial", "state", "val_loss", "val_metric", "train_loss", "gap", *CORE_PARAMS,
           "n_params", "epochs", "duration")
TEST_ATTR = "test_results"  # study user attribute: {trial number: {"test_loss": ..., ...}} (see regsweep.evaluation)
TEST_NOTE = ("test_* columns: measured once after the sweep on held-out rows no trial saw, for the top-K "
             "models only; never used to choose or rank a trial")
STATES = ("finished", "complete", "pruned", "failed", "all")
FORMATS = ("csv", "md", "html", "json")


def _state_filter(state: str) -> tuple[str, ...]:
    return {
        "finished": ("COMPLETE", "PRUNED"), "complete": ("COMPLETE",), "pruned": ("PRUNED",),
        "failed": ("FAIL",), "all": ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING"),
    }[state]


def _duration(trial: optuna.trial.FrozenTrial) -> float:
    if trial.datetime_start and trial.datetime_complete:
        return (trial.datetime_complete - trial.datetime_start).total_seconds()
    return math.nan


def held_out_results(study: optuna.Study) -> dict[int, dict[str, float]]:
    """The held-out test figures recorded after the sweep, by trial number (empty without a test split)."""
    return {int(k): v for k, v in (study.user_attrs.get(TEST_ATTR) or {}).items()}


def trial_row(trial: optuna.trial.FrozenTrial, extra_params: list[str]) -> dict[str, Any]:
    """The leaderboard row of one trial."""
    attrs = trial.user_attrs
    row: dict[str, Any] = {
        "trial": trial.number, "state": trial.state.name.lower(),
        "val_loss": attrs.get("val_loss", trial.values[0] if trial.values else math.nan),
        "val_metric": attrs.get("val_metric", math.nan), "train_loss": attrs.get("train_loss", math.nan),
        "gap": attrs.get("gap", math.nan),
    }
    for name in CORE_PARAMS:
        row[name] = trial.params.get(name, 0.0 if name == "lam" else None)
    for name in extra_params:
        row[name] = trial.params.get(name)
    row.update({"n_params": attrs.get("n_params"), "epochs": attrs.get("epochs"), "duration": _duration(trial)})
    for name in ("train_loss_dropout", "val_balanced_accuracy", "val_roc_auc", "val_loss_std", "repeats", "folds",
                 "fail_reason"):
        if name in attrs:
            row[name] = attrs[name]
    return row


def leaderboard(study: optuna.Study, *, state: str = "finished", sort_by: str | None = None,
                ascending: bool = True, top: int | None = None) -> pd.DataFrame:
    """One row per trial, best first.

    Args:
        study: an Optuna study made by regsweep.
        state: ``finished`` (complete + pruned, the default), ``complete``, ``pruned``, ``failed`` or ``all``.
        sort_by: any column; ``rank`` follows this order. Default: ``val_loss``; in a
            multi-objective study ``front`` then ``val_loss`` (trials without a front rank last).
        top: keep only the first ``top`` rows.

    Returns:
        Columns ``rank, trial, state, val_loss, val_metric, [test_loss, test_metric, ...],
        train_loss, gap, regularizer, lam, dropout, depth, width, patience, [searched options],
        n_params, epochs, duration``. Sorted by ``val_loss`` (the default for one objective),
        complete trials come before pruned ones, so rank 1 is :func:`regsweep.pareto.best_trial`. The ``test_*``
        columns (NaN except for the top-K trials evaluated after the sweep) are never used for
        ranking. In a multi-objective study also ``front`` (front rank of a complete trial: 1 = on
        the Pareto front; empty for pruned trials, see :mod:`regsweep.pareto`), ``pareto`` (on the
        front) and the other objectives (``weight_l2``, ``train_seconds``) after ``state``.
    """
    import pandas as pd

    if state not in STATES:
        raise SettingsError(f"state: got {state!r}; allowed: one of {STATES}")
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
        raise SettingsError(f"top: got {top!r}; allowed: an int >= 1")
    wanted = _state_filter(state)
    trials = [t for t in study.get_trials(deepcopy=False) if t.state.name in wanted]
    extra = sorted({p for t in trials for p in t.params} - set(CORE_PARAMS))
    rows = [trial_row(t, extra) for t in trials]
    tested = held_out_results(study)
    test_columns = sorted({k for v in tested.values() for k in v}, key=lambda k: (k not in ("test_loss", "test_metric"), k))
    for row in rows:
        row.update({k: tested.get(row["trial"], {}).get(k, math.nan) for k in test_columns})
    columns = ["trial", "state", "val_loss", "val_metric", *test_columns, "train_loss", "gap", *CORE_PARAMS, *extra,
               "n_params", "epochs", "duration"]
    columns += sorted({k for r in rows for k in r} - set(columns))
    if any("val_loss_std" in r for r in rows):  # repeats: mean ± std side by side
        columns.remove("val_loss_std")
        columns.insert(columns.index("val_loss") + 1, "val_loss_std")
    objectives = study_objectives(study)
    if is_multi(objectives):
        columns = _add_front(study, trials, rows, columns, objectives)
    frame = pd.DataFrame(rows, columns=columns)
    if "front" in frame.columns:
        frame["front"] = frame["front"].astype("Int64")  # empty (not NaN) for trials without a rank
    keys = [sort_by or "val_loss"] if sort_by or not is_multi(objectives) else ["front", "val_loss"]
    if keys[0] not in frame.columns and keys[0] != "rank":
        raise SettingsError(f"sort_by: got {sort_by!r}; allowed: one of {list(frame.columns)}")
    if keys == ["val_loss"] and ascending and len(frame):  # best first = pareto.best_trial(study) first
        frame = frame.assign(_pruned=frame["state"] != "complete")
        frame = frame.sort_values(["_pruned", "val_loss", "trial"], na_position="last", kind="stable").drop(columns="_pruned")
    elif keys[0] != "rank" and len(frame):
        frame = frame.sort_values([*keys, "trial"], ascending=[ascending] * len(keys) + [True], na_position="last",
                                  kind="stable")
    frame.insert(0, "rank", range(1, len(frame) + 1))
    frame = frame.reset_index(drop=True)
    return frame.head(top) if top else frame


def _add_front(study: optuna.Study, trials: list[optuna.trial.FrozenTrial], rows: list[dict[str, Any]],
               columns: list[str], objectives: tuple[str, ...]) -> list[str]:
    """Add ``front``, ``pareto`` and the objectives' values to the rows; the new column order."""
    ranks = study_ranks(study, objectives)
    for trial, row in zip(trials, rows):
        rank = ranks.get(trial.number)
        row["front"], row["pareto"] = rank, rank == 1
        for name in objectives:
            row.setdefault(name, trial.user_attrs.get(name, math.nan))
    shown = ["front", "pareto", *[o for o in objectives if o not in columns]]
    at = columns.index("state") + 1
    return columns[:at] + shown + columns[at:]


def regularizer_summary(board: pd.DataFrame) -> pd.DataFrame:
    """Best, median and count of ``val_loss`` per regularizer kind: which penalty helps here.

    For a multi-objective leaderboard, ``on_front`` counts each kind's trials on the Pareto front.
    """
    import pandas as pd

    front = "pareto" in board.columns
    if board.empty:
        return pd.DataFrame(columns=["regularizer", "best", "median", "count", "best_trial", *(["on_front"] if front else [])])
    grouped = board.groupby("regularizer")["val_loss"]
    summary = pd.DataFrame({"best": grouped.min(), "median": grouped.median(), "count": grouped.count(),
                            "best_trial": board.loc[grouped.idxmin(), ["regularizer", "trial"]].set_index("regularizer")["trial"]})
    if front:
        summary["on_front"] = board.groupby("regularizer")["pareto"].sum().astype(int)
    return summary.sort_values("best").reset_index()


def with_std(board: pd.DataFrame) -> pd.DataFrame:
    """For reading: ``val_loss`` as ``mean ± std`` text when trials were repeated (CSV/JSON keep numbers)."""
    if "val_loss_std" not in board.columns:
        return board
    shown = board.copy()
    text = [f"{m:.4g} ± {sd:.2g}" if sd == sd and sd is not None else f"{m:.4g}"
            for m, sd in zip(board["val_loss"], board["val_loss_std"])]
    shown["val_loss"] = text
    return shown.drop(columns="val_loss_std").rename(columns={"val_loss": "val_loss (mean ± std)"})


def to_text(board: pd.DataFrame, fmt: str) -> str:
    """Render a leaderboard as ``csv``, ``md`` (Markdown), ``html`` or ``json`` text."""
    if fmt not in FORMATS:
        raise SettingsError(f"format: got {fmt!r}; allowed: one of {FORMATS}")
    if fmt == "csv":
        return board.to_csv(index=False)
    if fmt == "md":
        return with_std(board).to_markdown(index=False, floatfmt=".4g") + "\n"
    if fmt == "html":
        return with_std(board).to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="", border=0)
    return board.to_json(orient="records", indent=1, double_precision=15) + "\n"


def export(board: pd.DataFrame, fmt: str, path: str | Path | None = None) -> str:
    """Write a leaderboard to ``path`` (or return the text when ``path`` is None)."""
    text = to_text(board, fmt)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
    return text


def console_table(board: pd.DataFrame, top: int = 10) -> str:
    """A compact plain-text table for the end of a sweep."""
    if board.empty:
        return "(no finished trials)"
    shown = with_std(board.head(top))
    keep = [c for c in ("rank", "trial", "state", "front", "pareto", "val_loss", "val_loss (mean ± std)", "val_metric",
                        "test_loss", "test_metric", "gap", "regularizer", "lam", "dropout",
                        "depth", "width", "patience", "learning_rate", "batch_norm", "clipnorm", "augmentation",
                        "n_params", "epochs") if c in shown.columns]  # the options appear only when searched
    return shown[keep].to_string(index=False, float_format=lambda v: f"{v:.4g}")
