"""First side-by-side measurement of sweeps on the stacked-slot engine (issue 14, work in progress).

    python -m benchmarks.slots --trials 20 --slots 4

Each run is a fresh Python process timed from start to end on the rings sweep of
``benchmarks.speed`` (same space, data, trials and max epochs): the hand-written baseline
(Optuna + Keras ``fit``, ``n_jobs=1``), regsweep's current path with one worker, and
:func:`regsweep.slot_sweep.run_slots` in one process (TPE, median pruner, as the worker uses).
Printed as a markdown table; nothing is written.
"""

from __future__ import annotations

import argparse
import tempfile
import textwrap
from pathlib import Path

from benchmarks.speed import SPACE, _python, _rate, run_baseline, run_regsweep, time_to_reach

SLOTS = textwrap.dedent('''
    import json, time
    started = time.time()
    from regsweep import SearchSpace
    from regsweep.data import make_rings
    from regsweep.runner import study_metadata
    from regsweep.settings import SweepSettings
    from regsweep.slot_sweep import run_slots
    from regsweep.storage import open_study
    from regsweep.workers import make_pruner, make_sampler
    space = {space}
    data = make_rings(n={n}, seed=0)
    settings = SweepSettings(study="bench", storage="sqlite:///{db}", trials={trials})
    study = open_study(settings.storage_url, "bench", meta=study_metadata(space, data, settings, None))
    study.sampler = make_sampler("tpe", 0)
    study.pruner = make_pruner("median", space.max_epochs)
    run_slots(study, space, data, total={trials}, slots={slots}, keep_top=3)
    rows = []
    for t in study.trials:
        if t.state.name in ("COMPLETE", "PRUNED"):
            rows.append([t.user_attrs.get("val_loss"), t.user_attrs.get("epochs"),
                         t.datetime_complete.timestamp() - started])
    print(json.dumps({{"trials": rows}}))
''')


def run_slot_sweep(args: argparse.Namespace, tmp: Path) -> dict:
    out, wall = _python(SLOTS.format(space=SPACE.format(epochs=args.max_epochs), n=args.n, db=tmp / "slots.db",
                                     trials=args.trials, slots=args.slots))
    rows = out["trials"]
    return {"name": f"run_slots K={args.slots} (1 process)", "wall": wall, "trials": len(rows),
            "best": min(r[0] for r in rows), "epochs": sum(r[1] for r in rows),
            "finish_times": [(r[0], r[2]) for r in rows]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--max-epochs", type=int, default=40)
    parser.add_argument("--n", type=int, default=1000, help="rings samples")
    parser.add_argument("--slots", type=int, default=4)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        runs = [run_baseline(args, 1), run_regsweep(args, 1, tmp), run_slot_sweep(args, tmp)]
    base = runs[0]
    print(f"rings n={args.n}, {args.trials} trials, max {args.max_epochs} epochs\n")
    print("| run | wall s | trials/min | epochs/s | best val loss | time to baseline best (s) | trials/min vs baseline |")
    print("|---|---|---|---|---|---|---|")
    for run in runs:
        per_min, per_s = _rate(run)
        reach = time_to_reach(run, base["best"])
        print(f"| {run['name']} | {run['wall']:.1f} | {per_min:.2f} | {per_s:.2f} | {run['best']:.4f} | "
              f"{'not reached' if reach is None else f'{reach:.1f}'} | {per_min / _rate(base)[0]:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
