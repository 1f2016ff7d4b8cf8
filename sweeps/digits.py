"""scikit-learn's 8x8 digits as images, with data augmentation as a searchable dimension.

Run it with ``python -m sweeps.digits``. Besides the regularizers, the space searches the
augmentation strength (random rotation, shift, zoom and shear, active in training only),
batch normalization on/off, gradient clipping (clipnorm) and the learning rate; each is a
study parameter and a leaderboard column. No download: the digits ship with scikit-learn.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from regsweep import SearchSpace
from regsweep.cli import sweep_main
from regsweep.data import Dataset

SPACE = SearchSpace(
    regularizers=("none", "l2"),
    lam=(1e-6, 1e-2),
    dropout=(0.0, 0.4),
    depth=(1, 2),
    width=(16, 128),
    patience=(3, 8),
    max_epochs=40,
    batch_size=64,
    learning_rate=(3e-4, 3e-3),
    batch_norm=(False, True),
    clipnorm=(0.5, 5.0),
    augmentation=(0.0, 0.2),
)


def data(args: argparse.Namespace) -> Dataset:
    from regsweep.datasets import load_digits

    return load_digits(val_fraction=args.val_fraction, seed=args.data_seed)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--val-fraction", type=float, default=0.2, help="validation fraction (default: 0.2)")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the train/validation split (default: 0)")


def main(argv: Sequence[str] | None = None) -> int:
    return sweep_main("digits", SPACE, data, argv=argv, trials=30, add_arguments=add_arguments, description=__doc__)


if __name__ == "__main__":
    raise SystemExit(main())
