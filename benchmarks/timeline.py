"""Where the wall time of one benchmark sweep goes: when its first and last trials finish.

One regsweep run of the ``benchmarks.slots`` sweep (rings n=1000, the ``benchmarks.speed`` space,
60 trials, max 40 epochs) in a fresh process, printing the seconds from process start to the
first, 10th and last trial's finish, the wall time, the epochs trained and the best value: the
time before the first finish (process start, imports, traces) and after the last (plots,
leaderboard) is paid once whatever the number of workers.

    python -m benchmarks.timeline --workers 2             # regsweep's default slots: 2 per worker
    python -m benchmarks.timeline --workers 1 --slots 4
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from benchmarks.slots import slots_per_worker
from benchmarks.speed import run_regsweep


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--slots", type=int, default=None,
                        help="slots per worker (default: regsweep's, 4 for one worker and 2 each for two)")
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--max-epochs", type=int, default=40)
    parser.add_argument("--n", type=int, default=1000, help="rings samples")
    args = parser.parse_args(argv)
    args.slots = slots_per_worker(args, args.workers)
    with tempfile.TemporaryDirectory() as tmp:
        run = run_regsweep(args, args.workers, Path(tmp), extra=f", slots={args.slots}", engine="slots")
    times = sorted(t for _, t in run["finish_times"])
    print(f"slots W={args.workers} K={args.slots}: wall {run['wall']:.1f} s, first trial finished at {times[0]:.1f} s, "
          f"10th at {times[min(9, len(times) - 1)]:.1f} s, last at {times[-1]:.1f} s; {run['epochs']} epochs, "
          f"best {run['best']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
