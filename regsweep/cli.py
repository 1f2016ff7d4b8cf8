"""The ``regsweep`` command line and the ``main`` of runnable sweeps: parse flags, run a command.

The parsers are here; what each subcommand does is in :mod:`regsweep.commands`, and the parts
every command line shares (parser class, flag types, the error guard) in :mod:`regsweep.cli_support`.

Exit codes: 0 success, 1 a sweep whose trials all failed, 2 bad input (nothing written),
3 the storage failed while the command ran (one line naming it, password hidden),
130 interrupted (run the same command again to resume).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from regsweep import __version__
from regsweep.cli_support import (
    Parser, add_study_args, add_verbosity, guarded, non_negative_int, positive_int, tolerance_arg,
)
from regsweep.commands import (
    cmd_best, cmd_dashboard, cmd_leaderboard, cmd_plot, cmd_report, cmd_resume, cmd_run, cmd_status, cmd_worker,
    finish_sweep, flush_on_interrupt,
)

if TYPE_CHECKING:
    import optuna

    from regsweep.data import Dataset
    from regsweep.settings import SweepSettings
    from regsweep.space import SearchSpace


def add_sweep_args(parser: argparse.ArgumentParser, *, study: str, trials: int) -> None:
    """The flags every runnable sweep accepts."""
    add_study_args(parser, study_default=study)
    parser.add_argument("--trials", type=positive_int, default=trials,
                        help=f"finished trials the study ends with, in total (default: {trials})")
    parser.add_argument("--workers", type=positive_int, default=None,
                        help="worker processes (default: one per usable core; CPU affinity and cgroup limits count)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="base random seed (default: 0)")
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
    parser.add_argument("--repeats", type=positive_int, default=1,
                        help="train each configuration R times with different seeds; value = mean (default: 1)")
    parser.add_argument("--keep-top", type=non_negative_int, default=3,
                        help="keep the trained models of the K best trials as artifacts (default: 3)")
    parser.add_argument("--artifacts", metavar="DIR", default=None,
                        help="folder of the study's artifact store, shared by all workers (e.g. on a network "
                             "file system for workers on many hosts); recorded in the study "
                             "(default: studies/<study>/artifacts, next to the study)")
    _add_engine_args(parser)
    progress = parser.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None,
                          help="always show a progress bar (default: a bar on a terminal, log lines otherwise)")
    progress.add_argument("--no-progress", dest="progress", action="store_false",
                          help="log lines instead of a progress bar (-q silences them)")
    add_verbosity(parser)


def sweep_settings(args: argparse.Namespace) -> SweepSettings:
    """The sweep's settings given by the common sweep flags (flags named like the settings)."""
    from regsweep.settings import SweepSettings, default_workers, given_settings

    given = given_settings(args)
    if "workers" not in given:
        given["workers"] = default_workers()
    return SweepSettings.from_dict(given)


def _add_engine_args(parser: argparse.ArgumentParser, *, recorded: bool = False) -> None:
    from regsweep.settings import DEFAULT_OPEN_TRIALS

    default = "the study's recorded one" if recorded else "slots"
    parser.add_argument("--engine", default=None, choices=("keras", "slots"),
                        help=f"slots: a worker trains --slots trials at once as refillable slots of stacked "
                             f"graphs built once (no per-trial tracing; see the README's engine section); "
                             f"keras: one Keras model and model.fit per trial "
                             f"(default: {default})")
    parser.add_argument("--slots", type=positive_int, default=None, metavar="K",
                        help=f"trials a worker trains at once on the slots engine (not with --engine keras), 1-256 "
                             f"(default: {'the recorded one, else ' if recorded else ''}{DEFAULT_OPEN_TRIALS} "
                             f"divided by --workers, at least 1)")


def _add_backend_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", default="local", choices=("local", "dask"),
                        help="local: worker processes here (default); dask: worker loops as Dask tasks "
                             "(a LocalCluster of --workers processes, or the cluster at --scheduler)")
    parser.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                        help="address of a running Dask scheduler (with --backend dask); the study's --storage "
                             "must be reachable from its workers (PostgreSQL, or SQLite on a shared file system)")


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
    parser = Parser(prog=f"python -m sweeps.{name}", description=description)
    add_sweep_args(parser, study=name, trials=trials)
    if add_arguments is not None:
        add_arguments(parser)

    def run(args: argparse.Namespace) -> int:
        from regsweep.data import from_csv, from_npz
        from regsweep.runner import run_sweep

        if getattr(args, "worker_only", False):
            return cmd_worker(args)
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

    return guarded(parser, argv, run)


def build_parser() -> argparse.ArgumentParser:
    """The ``regsweep`` parser with its subcommands."""
    parser = Parser(prog="regsweep", description="Hyperparameter sweeps for regularized Keras models (Optuna).")
    parser.add_argument("--version", action="version", version=f"regsweep {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    run = sub.add_parser("run", help="run a sweep module (e.g. sweeps.rings) or file, or a CSV: run --csv FILE --target COL",
                         description="Run a sweep: `regsweep run sweeps.rings --trials 50`. Flags after the sweep name "
                                     "are the sweep's own (see `python -m sweeps.rings --help`). "
                                     "`regsweep run --csv FILE --target COL [flags]` sweeps your own table "
                                     "(= `python -m sweeps.table FILE --target COL`; see its --help).")
    run.add_argument("sweep", help="module (sweeps.rings, rings) or path to a .py file defining main(argv)")
    run.add_argument("sweep_args", nargs=argparse.REMAINDER, help="flags passed to the sweep")
    run.set_defaults(func=cmd_run)

    resume = sub.add_parser("resume", help="finish a stopped sweep from what its study recorded")
    add_study_args(resume)
    resume.add_argument("--trials", type=positive_int, default=None, help="new total (default: the recorded one)")
    resume.add_argument("--workers", type=positive_int, default=1, help="worker processes (default: 1)")
    _add_engine_args(resume, recorded=True)
    _add_backend_args(resume)
    resume.add_argument("--no-plots", action="store_true", help="skip writing plots at the end")
    resume.add_argument("--progress", action="store_true", default=None, help="always show the progress bar")
    add_verbosity(resume)
    resume.set_defaults(func=cmd_resume)

    status = sub.add_parser("status", help="finished/failed/running counts and the best trial")
    add_study_args(status)
    add_verbosity(status)
    status.set_defaults(func=cmd_status)

    best = sub.add_parser("best", help="the best trial as JSON; --export writes its trained model")
    add_study_args(best)
    best.add_argument("--export", metavar="PATH", default=None, help="write the best model as a .keras file")
    best.add_argument("--tolerance", type=tolerance_arg, default=0.01,
                      help="with several objectives: the best trial is the smallest model whose val_loss is within "
                           "this fraction of the front's lowest (default: 0.01 = 1 %%)")
    best.add_argument("--all-pareto", action="store_true",
                      help="list every trial on the Pareto front (lowest loss first) instead of the best one")
    add_verbosity(best)
    best.set_defaults(func=cmd_best)

    board = sub.add_parser("leaderboard", help="one row per trial, best first, as csv/md/html/json")
    add_study_args(board)
    board.add_argument("--format", default="md", choices=("csv", "md", "html", "json"), help="output format (default: md)")
    board.add_argument("-o", "--output", default=None, help="file to write (default: stdout)")
    board.add_argument("--top", type=positive_int, default=None, help="only the best K rows")
    board.add_argument("--state", default="finished", choices=("finished", "complete", "pruned", "failed", "all"),
                       help="which trials (default: finished = complete + pruned)")
    board.add_argument("--sort", default=None,
                       help="column to sort by (default: val_loss; with several objectives: front, then val_loss)")
    board.add_argument("--descending", action="store_true", help="sort largest first")
    board.add_argument("--summary", action="store_true",
                       help="per-regularizer summary (best, median, count of val_loss) instead of one row per trial")
    add_verbosity(board)
    board.set_defaults(func=cmd_leaderboard)

    plot = sub.add_parser("plot", help="write the sweep's plots (PNG/SVG)")
    add_study_args(plot)
    plot.add_argument("--out", default=None, help="folder (default: studies/<study>/)")
    plot.add_argument("--format", nargs="+", default=["png"], choices=("png", "svg"), help="file formats (default: png)")
    plot.add_argument("--which", nargs="+", default=None,
                      choices=("complexity", "learning_curves", "history", "importances"),
                      help="only these plots (default: all four)")
    add_verbosity(plot)
    plot.set_defaults(func=cmd_plot)

    report = sub.add_parser("report", help="one self-contained HTML file: leaderboard, plots, space, metadata")
    add_study_args(report)
    report.add_argument("-o", "--output", default=None, help="file to write (default: studies/<study>/report.html)")
    report.add_argument("--top", type=positive_int, default=None, help="only the best K leaderboard rows")
    report.add_argument("--no-plots", action="store_true", help="leave the plots out")
    add_verbosity(report)
    report.set_defaults(func=cmd_report)

    dashboard = sub.add_parser("dashboard", help="optuna-dashboard on the study, with its learning-curve artifacts")
    add_study_args(dashboard)
    dashboard.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    dashboard.add_argument("--port", type=non_negative_int, default=8080, help="port (default: 8080; 0 = any free port)")
    add_verbosity(dashboard)
    dashboard.set_defaults(func=cmd_dashboard)

    worker = sub.add_parser("worker", help="join an existing study (e.g. from another host) until it has its total",
                            description="Join a study created elsewhere: train its recorded space on its recorded "
                                        "data until it has its recorded total of finished trials. Start as many as "
                                        "you like, on any host that reaches --storage (PostgreSQL for many hosts).")
    add_study_args(worker)
    worker.add_argument("--workers", type=positive_int, default=1, help="worker processes on this host (default: 1)")
    worker.add_argument("--wait", type=non_negative_int, default=0, metavar="SECONDS",
                        help="wait up to SECONDS for the study to be created (default: 0, fail at once)")
    _add_backend_args(worker)
    worker.add_argument("--progress", action="store_true", default=None, help="always show the progress bar")
    add_verbosity(worker)
    worker.set_defaults(func=cmd_worker)
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
    return guarded(parser, _csv_run(sys.argv[1:] if argv is None else argv), lambda args: args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
