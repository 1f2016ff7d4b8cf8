"""Reuters newswire topics (46 classes, 10,000-word multi-hot): the notes' space plus width, depth and patience.

Run it with ``python -m sweeps.reuters``. Data: ``--data PATH`` to a reuters.npz; default the
full ../shared/data/reuters.npz when present, else the 600-newswire subset shipped in tests/data/.
After the leaderboard, the notes' five hand-picked models (see ``python -m sweeps.reuters_compare``)
are put beside the best trial as a gain table (gain.md).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from regsweep import SearchSpace
from regsweep.cli import sweep_main
from regsweep.compare import print_gain
from regsweep.data import Dataset

SPACE = SearchSpace(
    regularizers=("none", "l1", "l2", "l1_l2"),
    lam=(1e-7, 1e-3),
    dropout=(0.0, 0.6),
    depth=(1, 3),
    width=(32, 256),
    patience=(2, 5),
    max_epochs=20,
    batch_size=512,
    optimizer="rmsprop",
)


def data(args: argparse.Namespace) -> Dataset:
    from regsweep.datasets import load_reuters

    return load_reuters(args.data, num_words=args.num_words, test=args.test)


def data_from_path(path: str, args: argparse.Namespace) -> Dataset:
    from regsweep.datasets import load_reuters

    return load_reuters(path, num_words=args.num_words, test=args.test)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--num-words", type=int, default=10000, help="vocabulary size (default: 10000)")
    parser.add_argument("--test", action="store_true",
                        help="hold out Keras's test split (2,246 newswires) and measure the top-K models on it "
                             "after the sweep (test_loss, test_metric beside val_loss in the leaderboard)")


def main(argv: Sequence[str] | None = None) -> int:
    return sweep_main("reuters", SPACE, data, argv=argv, trials=30, add_arguments=add_arguments,
                      description=__doc__, data_from_path=data_from_path, after=print_gain)


if __name__ == "__main__":
    raise SystemExit(main())
