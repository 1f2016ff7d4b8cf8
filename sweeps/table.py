"""Sweep a CSV file of your own: ``python -m sweeps.table data.csv --target label``.

The same as ``regsweep run --csv data.csv --target label``. Numeric columns are scaled with
the training rows' mean and variance (``--no-scale`` turns it off), text columns are one-hot
categories, missing numeric cells are imputed with the training mean plus a missing-indicator
feature; all of it is inside the saved model, which predicts on raw rows. Classification
splits are stratified. ``--test-fraction F`` (or ``--test FILE``) holds out rows no trial
sees; the top-K models are measured on them after the sweep (``test_loss``, ``test_metric``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from regsweep import SearchSpace
from regsweep.cli import sweep_main
from regsweep.data import TASKS, Dataset

MAX_EPOCHS = 100


def make_space(max_epochs: int = MAX_EPOCHS) -> SearchSpace:
    """The default space for a table: every regularizer, small MLPs, early stopping."""
    return SearchSpace(regularizers=("none", "l1", "l2", "l1_l2"), lam=(1e-6, 1e-1), dropout=(0.0, 0.5),
                       depth=(1, 3), width=(4, 128), patience=(3, 10), max_epochs=max_epochs, batch_size=32)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"got {text!r}; allowed: a number in (0, 1)") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"got {value}; allowed: a number in (0, 1)")
    return value


def _epochs(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"got {text!r}; allowed: a whole number >= 1")
    return int(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The table's flags (beside the common sweep flags)."""
    parser.add_argument("csv_file", nargs="?", default=None, metavar="FILE", help="the CSV file (header row)")
    parser.add_argument("--csv", default=None, metavar="FILE", help="the CSV file (same as the positional FILE)")
    parser.add_argument("--target", default=None, help="the label column (default: the last column)")
    parser.add_argument("--task", default=None, choices=TASKS,
                        help="override the inferred task (text/integer labels: classification; floats: regression)")
    parser.add_argument("--val-fraction", type=_fraction, default=0.2,
                        help="share of the rows held out for validation, stratified (default: 0.2)")
    parser.add_argument("--val", default=None, metavar="FILE", help="a CSV with the validation rows instead")
    parser.add_argument("--test-fraction", type=_fraction, default=None,
                        help="share of the rows held out as a test split no trial sees (default: none)")
    parser.add_argument("--test", default=None, metavar="FILE", help="a CSV with the test rows instead")
    parser.add_argument("--no-scale", action="store_true", help="do not scale numeric columns")
    parser.add_argument("--folds", type=_epochs, default=1, metavar="K",
                        help="cross-validation: each trial trains on K stratified folds of the non-test rows; "
                             "value = mean validation loss (± std recorded); fold 0 is what the pruner watches "
                             "(default: 1, one validation split)")
    parser.add_argument("--max-epochs", type=_epochs, default=MAX_EPOCHS, help=f"epochs per trial at most (default: {MAX_EPOCHS})")


def data(args: argparse.Namespace) -> Dataset:
    """The dataset the flags describe."""
    from regsweep.data import from_csv
    from regsweep.errors import DataError

    path = args.csv or args.csv_file or args.data
    if path is None:
        raise DataError("csv: no file given; allowed: python -m sweeps.table FILE --target COL "
                        "(or regsweep run --csv FILE --target COL)")
    return from_csv(path, target=args.target, task=args.task, val_fraction=args.val_fraction, seed=args.seed,
                    test_fraction=args.test_fraction or 0.0, val_path=args.val, test_path=args.test,
                    scale=not args.no_scale, folds=args.folds)


def _max_epochs(argv: Sequence[str] | None) -> int:
    """``--max-epochs`` read ahead of the full parse (the space is fixed before it)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--max-epochs", type=int, default=MAX_EPOCHS)
    known, _ = pre.parse_known_args(argv)
    return known.max_epochs if known.max_epochs >= 1 else MAX_EPOCHS


def main(argv: Sequence[str] | None = None) -> int:
    return sweep_main("table", make_space(_max_epochs(argv)), data, argv=argv, trials=30,
                      add_arguments=add_arguments, description=__doc__,
                      data_from_path=lambda path, args: data(args))


if __name__ == "__main__":
    raise SystemExit(main())
