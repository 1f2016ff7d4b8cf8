"""What the ``regsweep`` subcommands do: each takes the parsed flags, calls the API, prints,
and returns an exit code. The parsers are in :mod:`regsweep.cli`.

Everything heavy (Optuna, pandas, matplotlib, TensorFlow) is imported inside the commands.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regsweep.errors import SettingsError, SweepInterrupted

if TYPE_CHECKING:
    import argparse

    import optuna

_logger = logging.getLogger("regsweep")


def finish_sweep(study: optuna.Study, out_dir: Path, *, plots: bool = True) -> None:
    """Print the leaderboard and per-regularizer summary; write exports and plots."""
    from regsweep.report import console_table, export, leaderboard, regularizer_summary

    board = leaderboard(study)
    print(f"\nLeaderboard of study {study.study_name!r} (best first, {len(board)} finished trials):")
    print(console_table(board))
    print("\nPer regularizer:")
    print(regularizer_summary(board).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if "pareto" in board.columns and board["pareto"].any():
        from regsweep.pareto import DEFAULT_TOLERANCE, best_trial

        best = best_trial(study)
        print(f"\nPareto front: {int(board['pareto'].sum())} trials; best (the smallest model within "
              f"{DEFAULT_TOLERANCE:.0%} of the front's lowest val_loss): trial {best.number}, "
              f"val_loss {best.values[0]:.4f}, n_params {best.user_attrs.get('n_params')}")
    out_dir.mkdir(parents=True, exist_ok=True)
    export(board, "csv", out_dir / "leaderboard.csv")
    export(board, "md", out_dir / "leaderboard.md")
    written = [out_dir / "leaderboard.csv", out_dir / "leaderboard.md"]
    if plots:
        from regsweep.plots import write_plots

        written += write_plots(study, out_dir)
    print("\nWrote " + ", ".join(str(p) for p in written))


@contextmanager
def flush_on_interrupt(storage_url: str, study_name: str, out_dir: Path) -> Iterator[None]:
    """On Ctrl-C/SIGTERM, print and write the leaderboard of what finished, then let the interrupt through."""
    try:
        yield
    except SweepInterrupted:
        from regsweep.storage import load_study

        try:
            finish_sweep(load_study(storage_url, study_name, heartbeat=False), out_dir, plots=False)
        except Exception as exc:  # flushing is best effort; the interrupt message matters more
            _logger.warning("could not write the leaderboard: %s", exc)
        raise


def load_study_of(args: argparse.Namespace) -> optuna.Study:
    """The study named by ``--study``/``--storage`` (no heartbeat: commands only read it)."""
    from regsweep.storage import default_storage_url, load_study

    return load_study(args.storage or default_storage_url(args.study), args.study, heartbeat=False)


def cmd_run(args: argparse.Namespace) -> int:
    """``regsweep run SWEEP [flags]``: call the sweep module's ``main(argv)``."""
    module = import_sweep(args.sweep)
    main = getattr(module, "main", None)
    if main is None:
        raise SettingsError(f"sweep: {args.sweep!r} has no main(argv) function; allowed: a module from sweeps/ or a file defining main")
    return int(main(args.sweep_args) or 0)


def import_sweep(target: str) -> Any:
    """Import a sweep given as a module name (``sweeps.rings``, ``rings``) or a ``.py`` file."""
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise SettingsError(f"sweep: file {target!r} does not exist; allowed: a sweep module or .py file")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    for name in (target, f"sweeps.{target}"):
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name not in (name, name.rsplit(".", 1)[0]):
                raise
    raise SettingsError(f"sweep: no module {target!r} or 'sweeps.{target}'; allowed: e.g. sweeps.rings, sweeps.linear or a .py file")


def cmd_resume(args: argparse.Namespace) -> int:
    """``regsweep resume``: finish a stopped sweep, then print and write its leaderboard and plots."""
    from regsweep.runner import resume_sweep
    from regsweep.settings import SweepSettings, given_settings
    from regsweep.storage import default_storage_url

    out = SweepSettings(study=args.study, storage=args.storage).out_dir
    with flush_on_interrupt(args.storage or default_storage_url(args.study), args.study, out):
        study = resume_sweep(**given_settings(args))
    finish_sweep(study, out, plots=not args.no_plots)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """``regsweep status``: finished/failed/running counts and the best trial."""
    from regsweep.storage import count_states, redact, study_meta

    study = load_study_of(args)
    counts = count_states(study)
    meta = study_meta(study)
    total = meta.get("total", "?")
    print(f"study:    {study.study_name}")
    print(f"storage:  {redact(args.storage or 'sqlite:///studies/' + args.study + '.db')}")
    print(f"sweep:    {meta.get('sweep') or '-'}  data: {(meta.get('data') or {}).get('name', '-')}")
    print(f"finished: {counts['finished']} of {total}  (complete {counts['COMPLETE']}, pruned {counts['PRUNED']})")
    print(f"failed:   {counts['FAIL']}  running: {counts['RUNNING']}  waiting: {counts['WAITING']}")
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if complete:
        from regsweep.pareto import best_trial

        best = best_trial(study)
        print(f"best:     trial {best.number}, val_loss {best.values[0]:.4f}, params {best.params}")
    return 0


def best_record(trial: optuna.trial.FrozenTrial, objectives: tuple[str, ...]) -> dict[str, Any]:
    """What ``regsweep best`` prints about one trial."""
    keys = ("val_metric", "train_loss", "gap", "n_params", "epochs", *objectives[1:])
    return {"trial": trial.number, "val_loss": trial.values[0] if trial.values else None, "params": trial.params,
            **{k: trial.user_attrs.get(k) for k in dict.fromkeys(keys)}}


def cmd_best(args: argparse.Namespace) -> int:
    """``regsweep best``: the best trial (or the Pareto front) as JSON; ``--export`` writes its model."""
    import json

    from regsweep.pareto import best_trial, front_trials, is_multi, study_objectives
    from regsweep.report import TEST_NOTE, held_out_results

    study = load_study_of(args)
    objectives = study_objectives(study)
    if args.all_pareto and not is_multi(objectives):
        raise SettingsError(f"all-pareto: study {args.study!r} has one objective (val_loss); allowed: a study made "
                            "with several objectives, e.g. --objectives val_loss n_params")
    best = best_trial(study, tolerance=args.tolerance)
    tested = held_out_results(study)

    def record(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
        out = best_record(trial, objectives)
        if trial.number in tested:  # measured after the sweep on rows no trial saw
            out.update(tested[trial.number])
            out["test_note"] = TEST_NOTE
        return out

    if args.all_pareto:
        print(json.dumps([{**record(t), "best": t.number == best.number} for t in front_trials(study)], indent=1))
    else:
        print(json.dumps(record(best), indent=1))
    if getattr(args, "export", None):
        from regsweep.artifacts import export_best_model

        path = export_best_model(study, args.export, tolerance=args.tolerance)
        print(f"wrote {path}")
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    """``regsweep leaderboard``: one row per trial (or ``--summary``), to stdout or ``--output``."""
    from regsweep.report import export, leaderboard, regularizer_summary

    board = leaderboard(load_study_of(args), state=args.state, sort_by=args.sort, ascending=not args.descending, top=args.top)
    if getattr(args, "summary", False):
        board = regularizer_summary(board)
    text = export(board, args.format, args.output)
    if args.output is None:
        sys.stdout.write(text)
    else:
        print(f"wrote {args.output} ({len(board)} rows)")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    """``regsweep plot``: write the study's plots and print their paths."""
    from regsweep.plots import write_plots
    from regsweep.storage import study_dir

    study = load_study_of(args)
    out = Path(args.out) if args.out else study_dir(args.storage or f"sqlite:///studies/{args.study}.db", args.study)
    paths = write_plots(study, out, formats=tuple(args.format), which=tuple(getattr(args, "which", None) or ()) or None)
    for path in paths:
        print(path)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """``regsweep report``: write the self-contained HTML report."""
    from regsweep.html_report import write_report
    from regsweep.storage import default_storage_url, study_dir

    study = load_study_of(args)
    out = Path(args.output) if args.output else study_dir(args.storage or default_storage_url(args.study), args.study) / "report.html"
    path = write_report(study, out, top=args.top, plots=not args.no_plots)
    print(f"wrote {path}")
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    """``regsweep dashboard``: serve optuna-dashboard on the study until Ctrl-C."""
    from regsweep.dashboard import serve

    def ready(url: str) -> None:
        print(f"optuna-dashboard for study {args.study!r}: {url}  (Ctrl-C to stop)", flush=True)

    try:
        serve(load_study_of(args), host=args.host, port=args.port, on_ready=ready)
    except KeyboardInterrupt:
        print("dashboard stopped", file=sys.stderr)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """``regsweep worker`` and ``--worker-only``: join a study and train until it reaches its total."""
    from regsweep.runner import join_sweep
    from regsweep.settings import default_workers
    from regsweep.storage import count_states, study_meta

    workers = args.workers if args.workers is not None else default_workers()
    study = join_sweep(study=args.study, storage=args.storage, workers=workers, backend=args.backend,
                       scheduler=args.scheduler, progress=args.progress, wait=getattr(args, "wait", 0))
    counts = count_states(study)
    print(f"study {study.study_name!r}: {counts['finished']} of {study_meta(study).get('total', '?')} finished "
          f"(complete {counts['COMPLETE']}, pruned {counts['PRUNED']}, failed {counts['FAIL']})")
    return 0
