"""One self-contained HTML report of a study: metadata, search space, summary, leaderboard, plots.

The plots are embedded as base64 PNG, so the file opens anywhere without a server.

Example:
    >>> write_report(study, "studies/rings/report.html")  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import html
import json
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regsweep.pareto import best_trial
from regsweep.report import (
    TEST_NOTE,
    held_out_results,
    leaderboard,
    regularizer_summary,
    to_text,
)

if TYPE_CHECKING:
    import optuna

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1300px; color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { padding: 3px 8px; text-align: right; border-bottom: 1px solid #eee; white-space: nowrap; }
th { background: #f4f4f4; position: sticky; top: 0; }
tr:first-child td { font-weight: 600; }
.meta td, .meta th { text-align: left; white-space: normal; }
.scroll { max-height: 32em; overflow: auto; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.muted { color: #666; font-size: 0.9em; }
"""


def _table(rows: dict[str, Any]) -> str:
    body = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in rows.items())
    return f'<table class="meta">{body}</table>'


def _fmt(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, default=str)
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def study_overview(study: optuna.Study) -> dict[str, Any]:
    """Name, sweep, data, counts, settings and the best trial of a study, for the report header."""
    from regsweep.storage import count_states, study_meta

    meta = study_meta(study)
    counts = count_states(study)
    data = meta.get("data") or {}
    overview: dict[str, Any] = {
        "study": study.study_name, "sweep": meta.get("sweep"), "regsweep version": meta.get("version"),
        "data": ", ".join(f"{k}={v}" for k, v in data.items() if k not in ("source", "fingerprint")) or None,
        "finished / target": f"{counts['finished']} / {meta.get('total', '?')}",
        "complete, pruned, failed, running": f"{counts['COMPLETE']}, {counts['PRUNED']}, {counts['FAIL']}, {counts['RUNNING']}",
    }
    for key in ("seed", "sampler", "pruner", "repeats", "keep_top", "objectives"):
        if key in meta:
            overview[key] = meta[key]
    if counts["COMPLETE"]:
        best = best_trial(study)
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in best.params.items())
        overview["best trial"] = f"#{best.number}: val_loss {best.values[0]:.4f}; {params}"
        tested = held_out_results(study).get(best.number)
        if tested:
            overview["best trial on the test rows (never used for selection)"] = ", ".join(
                f"{k} {v:.4g}" for k, v in tested.items())
    return overview


def _plot_images(study: optuna.Study) -> list[tuple[str, str]]:
    """``(name, base64 PNG)`` of every plot of the study."""
    from regsweep.plots import write_plots

    with tempfile.TemporaryDirectory(prefix="regsweep-report-") as tmp:
        paths = write_plots(study, tmp, formats=("png",))
        return [(p.stem, base64.b64encode(p.read_bytes()).decode("ascii")) for p in paths]


def render_report(study: optuna.Study, *, top: int | None = None, plots: bool = True) -> str:
    """The report as one HTML string (see :func:`write_report`)."""
    from regsweep.storage import study_meta

    board = leaderboard(study)
    shown = board.head(top) if top else board
    space = study_meta(study).get("space") or {}
    parts = [
        f"<h1>regsweep report: {html.escape(study.study_name)}</h1>",
        f'<p class="muted">written {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; val_loss is the validation '
        "data loss (without the weight penalty), lower is better.</p>",
        "<h2>Study</h2>", _table(study_overview(study)),
        "<h2>Which regularizer helps: best, median and count of val_loss per kind</h2>",
        to_text(regularizer_summary(board), "html"),
        f"<h2>Leaderboard ({len(shown)} of {len(board)} finished trials, best first)</h2>",
        *([f'<p class="muted">{html.escape(TEST_NOTE)}</p>'] if "test_loss" in board.columns else []),
        f'<div class="scroll">{to_text(shown, "html")}</div>' if len(shown) else "<p>no finished trials yet</p>",
    ]
    if plots:
        parts.append("<h2>Plots</h2>")
        parts += [f'<img alt="{name}" src="data:image/png;base64,{data}">' for name, data in _plot_images(study)]
    parts += ["<h2>Search space</h2>", _table(space) if space else "<p>not recorded</p>"]
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>regsweep: '
            f"{html.escape(study.study_name)}</title><style>{_CSS}</style></head><body>\n{body}\n</body></html>\n")


def write_report(study: optuna.Study, path: str | Path, *, top: int | None = None, plots: bool = True) -> Path:
    """Write the self-contained HTML report of ``study`` to ``path`` and return it.

    Args:
        study: a regsweep study.
        path: the ``.html`` file to write (folders are created).
        top: show only the best ``top`` leaderboard rows (default: all finished trials).
        plots: embed the four plots (complexity, learning curves, history, importances).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_report(study, top=top, plots=plots), encoding="utf-8")
    return target
