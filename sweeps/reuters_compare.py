"""The notes' Reuters comparison, done right: five hand-picked models with categorical cross-entropy.

Basic, L2 (λ=2e-5), L1 (λ=2e-6), dropout 0.2 and L1_L2 (l1=1e-6, l2=1e-5); Dense 64-64 then a
46-way softmax, rmsprop, 20 epochs, batch 512. Writes overlaid validation-loss and
validation-accuracy curves (comparison.png), a table (comparison.md) and the results
(hand_picked.json, reused by ``python -m sweeps.reuters``) into studies/reuters/.
"""

from __future__ import annotations

from collections.abc import Sequence

from regsweep.compare import compare_main


def main(argv: Sequence[str] | None = None) -> int:
    return compare_main(argv, description=__doc__)


if __name__ == "__main__":
    raise SystemExit(main())
