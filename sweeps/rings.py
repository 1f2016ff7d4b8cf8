"""The default sweep: the notes' non-linear "rings" data (a blob inside a noisy ring).

Run it with ``python -m sweeps.rings`` (``--help`` lists the flags).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from regsweep import SearchSpace
from regsweep.cli import sweep_main
from regsweep.data import Dataset, make_rings

SPACE = SearchSpace(
    regularizers=("none", "l1", "l2", "l1_l2"),
    lam=(1e-6, 1e-1),
    dropout=(0.0, 0.5),
    depth=(1, 4),
    width=(4, 128),
    patience=(2, 10),
    max_epochs=40,
    batch_size=50,
)


def data(args: argparse.Namespace) -> Dataset:
    return make_rings(n=args.n, noise=args.noise, seed=args.data_seed)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=1000, help="samples (default: 1000)")
    parser.add_argument("--noise", type=float, default=1.0, help="ring noise (default: 1.0)")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the generated data (default: 0)")


def main(argv: Sequence[str] | None = None) -> int:
    return sweep_main("rings", SPACE, data, argv=argv, trials=30, add_arguments=add_arguments,
                      description=__doc__)


if __name__ == "__main__":
    raise SystemExit(main())
