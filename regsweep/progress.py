"""The sweep's progress on stderr: a rich bar on a terminal, log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from typing import TYPE_CHECKING

from regsweep.lifecycle import count_states, count_trial_states
from regsweep.storage import is_storage_failure

if TYPE_CHECKING:
    import optuna

_logger = logging.getLogger(__name__)


class SweepProgress:
    """Finished/total, best value, elapsed and ETA on stderr.

    ``enabled``: ``True`` a rich bar, ``False`` plain log lines (silenced by ``-q``), ``None``
    a rich bar on a terminal and log lines otherwise (as in CI).
    """

    def __init__(self, study: optuna.Study, total: int, enabled: bool | None) -> None:
        self.study, self.total = study, total
        self.started = time.monotonic()
        self.start_count = count_states(study)["finished"]
        self.last_line = -1
        self.bar = None
        if sys.stderr.isatty() if enabled is None else enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("best {task.fields[best]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                transient=False, console=Console(stderr=True))
            self.task = self.bar.add_task(study.study_name, total=total, completed=self.start_count, best="-")
            self.bar.start()

    def update(self) -> int:
        """Refresh the display; returns the finished count (the last one read if the storage is busy)."""
        try:
            trials = self.study.get_trials(deepcopy=False)
        except Exception as exc:  # a display refresh must not end the sweep; the next one tries again
            if not is_storage_failure(exc):
                raise
            _logger.debug("progress: could not read the study: %s", exc)
            return max(self.last_line, self.start_count)
        counts = count_trial_states(trials)
        done = counts["finished"]
        best = _best_value(trials)
        best_text = "-" if best is None else f"{best:.4f}"
        if self.bar is not None:
            self.bar.update(self.task, completed=done, best=best_text)
        elif done != self.last_line:
            elapsed = time.monotonic() - self.started
            new = done - self.start_count
            eta = f"{elapsed / new * (self.total - done):.0f}s" if new > 0 else "-"  # none before a trial finishes
            _logger.info("%s: %d/%d finished (%d pruned, %d failed), best val_loss %s, elapsed %.0fs, eta %s",
                         self.study.study_name, done, self.total, counts["PRUNED"], counts["FAIL"], best_text, elapsed, eta)
        self.last_line = done
        return done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _best_value(trials: list[optuna.trial.FrozenTrial]) -> float | None:
    """The lowest val_loss (the first objective) of the complete trials."""
    values = [t.values[0] for t in trials if t.state.name == "COMPLETE" and t.values]
    return min(values) if values else None
