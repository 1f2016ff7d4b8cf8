"""The ``regsweep`` command line: parse, call one API function, print, return an exit code.

Exit codes: 0 success, 1 a sweep whose trials all failed, 2 bad input (nothing written),
3 the storage failed while the command ran (one line naming it, password hidden),
130 interrupted (run the same command again to resume).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regsweep import __version__
from regsweep.errors import AllTrialsFailedError, RegsweepError, SettingsError, SweepInterrupted

if TYPE_CHECKING:
    import optuna

    from regsweep.data import Dataset
    from regsweep.settings import SweepSettings
    from regsweep.space import SearchSpace

_logger = logging.getLogger("regsweep")


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so every bad flag is one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise SettingsError(f"{self.prog}: {message}")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"got {text!r}; allowed: a whole number >= 1") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"got {value}; allowed: a whole number >= 1")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"got {text!r}; allowed: a whole number >= 0") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"got {value}; allowed: a whole number >= 0")
    return value


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
    logging.getLogger("regsweep").setLevel(level)
    from regsweep.storage import redact_logs

    redact_logs()


def _add_study_args(parser: argparse.ArgumentParser, *, study_default: str | None = None) -> None:
    parser.add_argument("--study", default=study_default, required=study_default is None,
                        help="study name" + (f" (default: {study_default})" if study_default else ""))
    parser.add_argument("--storage", default=None,
                        help="Optuna storage URL (default: sqlite:///studies/<study>.db)")


def _add_verbosity(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")


def add_sweep_args(parser: argparse.ArgumentParser, *, study: str, trials: int) -> None:
    """The flags every runnable sweep accepts."""
    _add_study_args(parser, study_default=study)
    parser.add_argument("--trials", type=_positive_int, default=trials,
                        help=f"finished trials the study ends with, in total (default: {trials})")
    parser.add_argument("--workers", type=_positive_int, default=None,
                        help="worker processes (default: one per usable core; CPU affinity and cgroup limits count)")
    parser.add_argument("--seed", type=_non_negative_int, default=0, help="base random seed (default: 0)")
    parser.add_argument("--out", default=None, help="folder for plots and exports (default: studies/<study>/)")
    parser.add_argument("--pruner", default="median", choices=("none", "median", "hyperband"),
                        help="per-epoch pruning (default: median; with several objectives: regsweep's peer rule)")
    parser.add_argument("--sampler", default="tpe", choices=("tpe", "random", "nsga2"),
                        help="Optuna sampler (default: tpe, also for several objectives; nsga2: NSGA-II)")
    parser.add_argument("--objectives", nargs="+", default=["val_loss"], metavar="NAME",
                        help="what to minimize: val_loss (default), then any of n_params, weight_l2, train_seconds "
                             "for a multi-objective (Pareto) sweep, e.g. --objectives val_loss n_params")
    parser.add_argument("--data", default=None, help="train on this .npz or .csv file instead of the sweep's data")
    parser.add_argument("--no-plots", action="store_true", help="skip writing plots at the end")
    _add_backend_args(parser)
    parser.add_argument("--worker-only", action="store_true",
                        help="join the existing study --study in --storage as extra workers (e.g. on another host) "
                             "and stop at its recorded total; ignores the space/data flags")
    parser.add_argument("--repeats", type=_positive_int, default=1,
                        help="train each configuration R times with different seeds; value = mean (default: 1)")
    parser.add_argument("--keep-top", type=_non_negative_int, default=3,
                        help="keep the trained models of the K best trials as artifacts (default: 3)")
    _add_pack_arg(parser)
    progress = parser.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None,
                          help="always show a progress bar (default: a bar on a terminal, log lines otherwise)")
    progress.add_argument("--no-progress", dest="progress", action="store_false",
                          help="log lines instead of a progress bar (-q silences them)")
    _add_verbosity(parser)


def sweep_settings(args: argparse.Namespace) -> SweepSettings:
    """The sweep's settings given by the common sweep flags (flags named like the settings)."""
    from regsweep.settings import SweepSettings, default_workers, given_settings

    given = given_settings(args)
    if "workers" not in given:
        given["workers"] = default_workers()
    return SweepSettings.from_dict(given)


def _pack_value(text: str) -> int | str:
    from regsweep.settings import check_pack

    try:
        return check_pack(text)
    except SettingsError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("pack: ")) from None


def _add_pack_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pack", type=_pack_value, default=1, metavar="K|auto",
                        help="train K trials together as one Keras graph per worker (faster for small models); "
                             "auto picks K from the model size (default: 1, no packing)")


def _add_backend_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", default="local", choices=("local", "dask"),
                        help="local: worker processes here (default); dask: worker loops as Dask tasks "
                             "(a LocalCluster of --workers processes, or the cluster at --scheduler)")
    parser.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                        help="address of a running Dask scheduler (with --backend dask); the study's --storage "
                             "must be reachable from its workers (PostgreSQL, or SQLite on a shared file system)")


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


def sweep_main(name: str, space: SearchSpace, data: Callable[[argparse.Namespace], Dataset], *,
               argv: Sequence[str] | None = None, trials: int = 30,
               add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
               description: str | None = None,
               data_from_path: Callable[[str, argparse.Namespace], Dataset] | None = None,
               after: Callable[[optuna.Study, Dataset, Path, argparse.Namespace], None] | None = None) -> int:
    """The ``main`` of a runnable sweep in ``sweeps/``: parse flags, run or resume, report.

    Args:
        name: the sweep's name (default study name).
        space: its search space.
        data: builds the dataset from the parsed flags (``--data PATH`` overrides it).
        trials: the default ``--trials``.
        add_arguments: adds sweep-specific flags (e.g. ``--n`` for the data size).
        data_from_path: reads ``--data PATH`` (default: ``.csv`` or ``.npz`` with x/y arrays).
        after: called with ``(study, dataset, out_dir, args)`` after the leaderboard is written,
            e.g. to put hand-picked models beside it.
    """
    parser = _Parser(prog=f"python -m sweeps.{name}", description=description)
    add_sweep_args(parser, study=name, trials=trials)
    if add_arguments is not None:
        add_arguments(parser)

    def run(args: argparse.Namespace) -> int:
        from regsweep.data import from_csv, from_npz
        from regsweep.runner import run_sweep

        if getattr(args, "worker_only", False):
            return _join(args)
        settings = sweep_settings(args)
        if args.data and data_from_path is not None:
            dataset = data_from_path(args.data, args)
        elif args.data:
            dataset = from_csv(args.data) if str(args.data).lower().endswith(".csv") else from_npz(args.data)
        else:
            dataset = data(args)
        with flush_on_interrupt(settings.storage_url, settings.study, settings.out_dir):
            study = run_sweep(space, dataset, sweep=name, settings=settings)
        finish_sweep(study, settings.out_dir, plots=not args.no_plots)
        if after is not None:
            after(study, dataset, settings.out_dir, args)
        return 0

    return _guarded(parser, argv, run)


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


def _guarded(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
             action: Callable[[argparse.Namespace], int]) -> int:
    """Parse and run, turning regsweep errors into one line on stderr and an exit code."""
    from regsweep.storage import describe_storage_failure, is_storage_failure, redact

    args: argparse.Namespace | None = None
    try:
        args = parser.parse_args(argv)
        _setup_logging(-1 if getattr(args, "quiet", False) else getattr(args, "verbose", 0))
        return action(args)
    except SweepInterrupted as exc:
        print(f"regsweep: {redact(str(exc))}", file=sys.stderr)
        return 130
    except AllTrialsFailedError as exc:
        print(f"regsweep: {redact(str(exc))}", file=sys.stderr)
        return 1
    except RegsweepError as exc:
        print(f"regsweep: error: {redact(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("regsweep: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as exc:
        if not is_storage_failure(exc):
            raise
        print(f"regsweep: error: {describe_storage_failure(exc, _storage_of(args))}", file=sys.stderr)
        return 3


def _storage_of(args: argparse.Namespace | None) -> str:
    """The storage URL a command used, for error messages."""
    from regsweep.storage import default_storage_url

    storage = getattr(args, "storage", None)
    study = getattr(args, "study", None)
    if storage:
        return str(storage)
    return default_storage_url(study) if isinstance(study, str) and study else "(unknown storage)"


# -- subcommands -----------------------------------------------------------------------------------------
def _load(args: argparse.Namespace) -> optuna.Study:
    from regsweep.storage import default_storage_url, load_study

    return load_study(args.storage or default_storage_url(args.study), args.study, heartbeat=False)


def _cmd_run(args: argparse.Namespace) -> int:
    module = _import_sweep(args.sweep)
    main = getattr(module, "main", None)
    if main is None:
        raise SettingsError(f"sweep: {args.sweep!r} has no main(argv) function; allowed: a module from sweeps/ or a file defining main")
    return int(main(args.sweep_args) or 0)


def _import_sweep(target: str) -> Any:
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


def _cmd_resume(args: argparse.Namespace) -> int:
    from regsweep.runner import resume_sweep
    from regsweep.settings import SweepSettings, given_settings
    from regsweep.storage import default_storage_url

    out = SweepSettings(study=args.study, storage=args.storage).out_dir
    with flush_on_interrupt(args.storage or default_storage_url(args.study), args.study, out):
        study = resume_sweep(**given_settings(args))
    finish_sweep(study, out, plots=not args.no_plots)
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from regsweep.storage import count_states, redact, study_meta

    study = _load(args)
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


def _tolerance(text: str) -> float:
    from regsweep.pareto import check_tolerance

    try:
        return check_tolerance(float(text))
    except (ValueError, SettingsError):
        raise argparse.ArgumentTypeError(f"got {text!r}; allowed: a number in [0, 1] (0.01 = 1 %)") from None


def _best_record(trial: optuna.trial.FrozenTrial, objectives: tuple[str, ...]) -> dict[str, Any]:
    """What ``regsweep best`` prints about one trial."""
    keys = ("val_metric", "train_loss", "gap", "n_params", "epochs", *objectives[1:])
    return {"trial": trial.number, "val_loss": trial.values[0] if trial.values else None, "params": trial.params,
            **{k: trial.user_attrs.get(k) for k in dict.fromkeys(keys)}}


def _cmd_best(args: argparse.Namespace) -> int:
    import json

    from regsweep.pareto import best_trial, front_trials, is_multi, study_objectives
    from regsweep.report import TEST_NOTE, held_out_results

    study = _load(args)
    objectives = study_objectives(study)
    if args.all_pareto and not is_multi(objectives):
        raise SettingsError(f"all-pareto: study {args.study!r} has one objective (val_loss); allowed: a study made "
                            "with several objectives, e.g. --objectives val_loss n_params")
    best = best_trial(study, tolerance=args.tolerance)
    tested = held_out_results(study)

    def record(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
        out = _best_record(trial, objectives)
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


def _cmd_leaderboard(args: argparse.Namespace) -> int:
    from regsweep.report import export, leaderboard, regularizer_summary

    board = leaderboard(_load(args), state=args.state, sort_by=args.sort, ascending=not args.descending, top=args.top)
    if getattr(args, "summary", False):
        board = regularizer_summary(board)
    text = export(board, args.format, args.output)
    if args.output is None:
        sys.stdout.write(text)
    else:
        print(f"wrote {args.output} ({len(board)} rows)")
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from regsweep.plots import write_plots
    from regsweep.storage import study_dir

    study = _load(args)
    out = Path(args.out) if args.out else study_dir(args.storage or f"sqlite:///studies/{args.study}.db", args.study)
    paths = write_plots(study, out, formats=tuple(args.format), which=tuple(getattr(args, "which", None) or ()) or None)
    for path in paths:
        print(path)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from regsweep.html_report import write_report
    from regsweep.storage import default_storage_url, study_dir

    study = _load(args)
    out = Path(args.output) if args.output else study_dir(args.storage or default_storage_url(args.study), args.study) / "report.html"
    path = write_report(study, out, top=args.top, plots=not args.no_plots)
    print(f"wrote {path}")
    return 0


def _cmd_dashboard(args: argparse.Namespace) -> int:
    from regsweep.dashboard import serve

    def ready(url: str) -> None:
        print(f"optuna-dashboard for study {args.study!r}: {url}  (Ctrl-C to stop)", flush=True)

    try:
        serve(_load(args), host=args.host, port=args.port, on_ready=ready)
    except KeyboardInterrupt:
        print("dashboard stopped", file=sys.stderr)
    return 0


def _join(args: argparse.Namespace) -> int:
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


def build_parser() -> argparse.ArgumentParser:
    """The ``regsweep`` parser with its subcommands."""
    parser = _Parser(prog="regsweep", description="Hyperparameter sweeps for regularized Keras models (Optuna).")
    parser.add_argument("--version", action="version", version=f"regsweep {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run a sweep module (e.g. sweeps.rings) or file, or a CSV: run --csv FILE --target COL",
                         description="Run a sweep: `regsweep run sweeps.rings --trials 50`. Flags after the sweep name "
                                     "are the sweep's own (see `python -m sweeps.rings --help`). "
                                     "`regsweep run --csv FILE --target COL [flags]` sweeps your own table "
                                     "(= `python -m sweeps.table FILE --target COL`; see its --help).")
    run.add_argument("sweep", help="module (sweeps.rings, rings) or path to a .py file defining main(argv)")
    run.add_argument("sweep_args", nargs=argparse.REMAINDER, help="flags passed to the sweep")
    run.set_defaults(func=_cmd_run)

    resume = sub.add_parser("resume", help="finish a stopped sweep from what its study recorded")
    _add_study_args(resume)
    resume.add_argument("--trials", type=_positive_int, default=None, help="new total (default: the recorded one)")
    resume.add_argument("--workers", type=_positive_int, default=1, help="worker processes (default: 1)")
    _add_pack_arg(resume)
    _add_backend_args(resume)
    resume.add_argument("--no-plots", action="store_true", help="skip writing plots at the end")
    resume.add_argument("--progress", action="store_true", default=None, help="always show the progress bar")
    _add_verbosity(resume)
    resume.set_defaults(func=_cmd_resume)

    status = sub.add_parser("status", help="finished/failed/running counts and the best trial")
    _add_study_args(status)
    _add_verbosity(status)
    status.set_defaults(func=_cmd_status)

    best = sub.add_parser("best", help="the best trial as JSON; --export writes its trained model")
    _add_study_args(best)
    best.add_argument("--export", metavar="PATH", default=None, help="write the best model as a .keras file")
    best.add_argument("--tolerance", type=_tolerance, default=0.01,
                      help="with several objectives: the best trial is the smallest model whose val_loss is within "
                           "this fraction of the front's lowest (default: 0.01 = 1 %%)")
    best.add_argument("--all-pareto", action="store_true",
                      help="list every trial on the Pareto front (lowest loss first) instead of the best one")
    _add_verbosity(best)
    best.set_defaults(func=_cmd_best)

    board = sub.add_parser("leaderboard", help="one row per trial, best first, as csv/md/html/json")
    _add_study_args(board)
    board.add_argument("--format", default="md", choices=("csv", "md", "html", "json"), help="output format (default: md)")
    board.add_argument("-o", "--output", default=None, help="file to write (default: stdout)")
    board.add_argument("--top", type=_positive_int, default=None, help="only the best K rows")
    board.add_argument("--state", default="finished", choices=("finished", "complete", "pruned", "failed", "all"),
                       help="which trials (default: finished = complete + pruned)")
    board.add_argument("--sort", default=None,
                       help="column to sort by (default: val_loss; with several objectives: front, then val_loss)")
    board.add_argument("--descending", action="store_true", help="sort largest first")
    board.add_argument("--summary", action="store_true",
                       help="per-regularizer summary (best, median, count of val_loss) instead of one row per trial")
    _add_verbosity(board)
    board.set_defaults(func=_cmd_leaderboard)

    plot = sub.add_parser("plot", help="write the sweep's plots (PNG/SVG)")
    _add_study_args(plot)
    plot.add_argument("--out", default=None, help="folder (default: studies/<study>/)")
    plot.add_argument("--format", nargs="+", default=["png"], choices=("png", "svg"), help="file formats (default: png)")
    plot.add_argument("--which", nargs="+", default=None,
                      choices=("complexity", "learning_curves", "history", "importances"),
                      help="only these plots (default: all four)")
    _add_verbosity(plot)
    plot.set_defaults(func=_cmd_plot)

    report = sub.add_parser("report", help="one self-contained HTML file: leaderboard, plots, space, metadata")
    _add_study_args(report)
    report.add_argument("-o", "--output", default=None, help="file to write (default: studies/<study>/report.html)")
    report.add_argument("--top", type=_positive_int, default=None, help="only the best K leaderboard rows")
    report.add_argument("--no-plots", action="store_true", help="leave the plots out")
    _add_verbosity(report)
    report.set_defaults(func=_cmd_report)

    dashboard = sub.add_parser("dashboard", help="optuna-dashboard on the study, with its learning-curve artifacts")
    _add_study_args(dashboard)
    dashboard.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    dashboard.add_argument("--port", type=_non_negative_int, default=8080, help="port (default: 8080; 0 = any free port)")
    _add_verbosity(dashboard)
    dashboard.set_defaults(func=_cmd_dashboard)

    worker = sub.add_parser("worker", help="join an existing study (e.g. from another host) until it has its total",
                            description="Join a study created elsewhere: train its recorded space on its recorded "
                                        "data until it has its recorded total of finished trials. Start as many as "
                                        "you like, on any host that reaches --storage (PostgreSQL for many hosts).")
    _add_study_args(worker)
    worker.add_argument("--workers", type=_positive_int, default=1, help="worker processes on this host (default: 1)")
    worker.add_argument("--wait", type=_non_negative_int, default=0, metavar="SECONDS",
                        help="wait up to SECONDS for the study to be created (default: 0, fail at once)")
    _add_backend_args(worker)
    worker.add_argument("--progress", action="store_true", default=None, help="always show the progress bar")
    _add_verbosity(worker)
    worker.set_defaults(func=_join)
    return parser


def _csv_run(argv: Sequence[str]) -> list[str]:
    """``regsweep run --csv FILE ...`` is ``regsweep run sweeps.table --csv FILE ...``."""
    args = list(argv)
    if len(args) >= 2 and args[0] == "run" and (args[1] == "--csv" or args[1].startswith("--csv=")):
        return ["run", "sweeps.table", *args[1:]]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``regsweep`` command."""
    parser = build_parser()
    return _guarded(parser, _csv_run(sys.argv[1:] if argv is None else argv), lambda args: args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
