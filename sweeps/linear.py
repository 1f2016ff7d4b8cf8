"""The notes' linear data: two Gaussian clusters at (-2, -2) and (+2, +2).

Run it with ``python -m sweeps.linear``. A separable task: the search should find that a
small model with little regularization is enough.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from regsweep import SearchSpace
from regsweep.cli import sweep_main
from regsweep.data import Dataset, make_linear

SPACE = SearchSpace(depth=(1, 3), width=(2, 64), max_epochs=30, batch_size=20)


def data(args: argparse.Namespace) -> Dataset:
    return make_linear(n=args.n, noise=args.noise, seed=args.data_seed)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=400, help="samples (default: 400)")
    parser.add_argument("--noise", type=float, default=1.0, help="cluster standard deviation (default: 1.0)")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the generated data (default: 0)")


def main(argv: Sequence[str] | None = None) -> int:
    return sweep_main("linear", SPACE, data, argv=argv, trials=20, add_arguments=add_arguments,
                      description=__doc__)


if __name__ == "__main__":
    raise SystemExit(main())
