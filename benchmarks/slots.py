"""Sweeps on the stacked-slot engine (``--engine slots``) against the hand-written loop, side by side.

    python -m benchmarks.slots                      # 60 trials, median of 3 runs of each
    python -m benchmarks.slots --trials 30 --runs 1 # quicker, noisier
    python -m benchmarks.slots --memory 500         # only the memory run: one slots worker, 500 trials

The rings sweep of ``benchmarks.speed`` (same space, data arrays, trials and max epochs), each run
a fresh Python process timed from start to end:

* the baseline: Optuna TPE + Keras ``model.fit`` + ``EarlyStopping`` on the validation data loss,
  ``n_jobs=1``;
* regsweep with the Keras engine, 2 workers;
* regsweep with the slots engine, 1 and 2 workers, K slots per worker (regsweep's default unless
  ``--slots``: 4 for one worker, 2 each for two).

Run i of every kind uses seed i (the baseline's TPE seed, regsweep's sweep seed): a slots run
with one worker is deterministic, so runs with one seed would repeat one sample.

Printed as markdown: per run kind, the median over ``--runs`` of trials per minute, epochs per
second, best validation loss and time to reach the best of the baseline run with the same seed
(the median over the runs that reached it, with their count), and the ratios the one-engine
issue asks for; then each regsweep run's worker RSS growth from its first to its last trial (no
recycling in these runs; over ``--trials``).

``--memory N`` runs only the memory figure: one slots worker (no recycling) over N trials of the
same sweep, printing its RSS after the first trial and every N/10 trials, its growth from the
first to the last trial, and its growth from trial N/10 to the last (after the warm-up: the
one-time matplotlib import and most buckets' trainers, built on a bucket's first trial).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from benchmarks.speed import _rate, run_baseline, run_regsweep, time_to_reach


def rss_growth(run: dict) -> float:
    """The largest growth of a worker's resident memory (MB) from its first to its last trial."""
    by_worker: dict = {}
    for row in sorted(run["rows"], key=lambda r: r[2]):  # by finish time
        if row[3] is not None:
            by_worker.setdefault(row[4], []).append(row[3])
    return max(values[-1] - values[0] for values in by_worker.values())


def rss_by_trial(run: dict) -> list[float]:
    """The worker's resident memory (MB) after each of its trials, in finish order (one worker)."""
    workers = {row[4] for row in run["rows"] if row[3] is not None}
    assert len(workers) == 1, f"expected one worker, got {sorted(workers)}"
    return [row[3] for row in sorted(run["rows"], key=lambda r: r[2]) if row[3] is not None]


def slots_per_worker(args: argparse.Namespace, workers: int) -> int:
    """``--slots``, else regsweep's default for ``workers`` workers (4 for one, 2 each for two)."""
    from regsweep.settings import default_slots

    return args.slots or default_slots(workers)


def memory_run(args: argparse.Namespace) -> int:
    """One slots worker over ``args.memory`` trials: RSS by trial and its growth (see the module doc)."""
    k = slots_per_worker(args, 1)
    with tempfile.TemporaryDirectory() as tmp_name:
        run = run_regsweep(args, 1, Path(tmp_name), trials=args.memory, extra=f", slots={k}", engine="slots")
    rss = rss_by_trial(run)
    step = max(1, len(rss) // 10)
    print(f"\nrings n={args.n}, slots K={k} W=1, {len(rss)} trials, max {args.max_epochs} epochs, "
          f"no recycling, {run['wall']:.0f} s\n")
    print("| after trial | worker RSS (MB) |")
    print("|---|---|")
    for i in sorted({0, *range(step - 1, len(rss), step), len(rss) - 1}):
        print(f"| {i + 1} | {rss[i]:.1f} |")
    warm = min(len(rss) - 1, step - 1)
    print(f"\nworker RSS growth over {len(rss)} trials: {rss[-1] - rss[0]:+.1f} MB from the first trial to the last, "
          f"{rss[-1] - rss[warm]:+.1f} MB from trial {warm + 1} to the last")
    return 0


def _runs(args: argparse.Namespace, tmp: Path, index: int) -> dict[str, dict]:
    k1, k2 = slots_per_worker(args, 1), slots_per_worker(args, 2)
    seed = index  # run i of every kind uses seed i: the medians are over runs that differ
    kinds = {
        "baseline n_jobs=1": lambda: run_baseline(args, 1, seed=seed),
        "regsweep keras W=2": lambda: run_regsweep(args, 2, tmp / f"k{index}", seed=seed),
        f"regsweep slots K={k1} W=1": lambda: run_regsweep(args, 1, tmp / f"s1-{index}", extra=f", slots={k1}",
                                                           engine="slots", seed=seed),
        f"regsweep slots K={k2} W=2": lambda: run_regsweep(args, 2, tmp / f"s2-{index}", extra=f", slots={k2}",
                                                           engine="slots", seed=seed),
    }
    for folder in (f"k{index}", f"s1-{index}", f"s2-{index}"):
        (tmp / folder).mkdir()
    out = {}
    for name, run in kinds.items():
        out[name] = run()
        print(f"  run {index + 1}: {name}: {out[name]['trials']} trials in {out[name]['wall']:.1f} s, "
              f"best {out[name]['best']:.4f}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--max-epochs", type=int, default=40)
    parser.add_argument("--n", type=int, default=1000, help="rings samples")
    parser.add_argument("--slots", type=int, default=None,
                        help="slots per worker (default: regsweep's, 4 for one worker and 2 each for two)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each kind; the table shows medians")
    parser.add_argument("--memory", type=int, default=0, metavar="N",
                        help="only the memory run: one slots worker over N trials (e.g. 500)")
    args = parser.parse_args(argv)
    if args.memory:
        return memory_run(args)
    with tempfile.TemporaryDirectory() as tmp_name:
        runs = [_runs(args, Path(tmp_name), i) for i in range(args.runs)]
    names = list(runs[0])
    base = names[0]

    def median(name: str, figure) -> float | None:
        values = [figure(run[name], run[base]) for run in runs]
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    per_min = {n: median(n, lambda r, b: _rate(r)[0]) for n in names}
    rss = {n: median(n, lambda r, b: rss_growth(r)) for n in names[1:]}
    epochs_per_s = {n: median(n, lambda r, b: _rate(r)[1]) for n in names}
    best = {n: median(n, lambda r, b: r["best"]) for n in names}
    reach = {n: median(n, lambda r, b: time_to_reach(r, b["best"])) for n in names}
    # the median above is over the runs that reached their baseline run's best; say how many did
    reached_in = {n: sum(time_to_reach(run[n], run[base]["best"]) is not None for run in runs) for n in names}
    print(f"\nrings n={args.n}, {args.trials} trials, max {args.max_epochs} epochs, median of {args.runs} run(s)\n")
    print("| run | trials/min | vs baseline | epochs/s | best val loss | vs baseline best | time to baseline best (s) |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        reached = "not reached" if reach[name] is None else f"{reach[name]:.1f} ({reached_in[name]}/{args.runs} runs)"
        print(f"| {name} | {per_min[name]:.2f} | {per_min[name] / per_min[base]:.2f}x | {epochs_per_s[name]:.1f} | "
              f"{best[name]:.4f} | "
              f"{(best[name] / best[base] - 1) * 100:+.1f} % | {reached} |")
    w1, w2 = names[2], names[3]
    print(f"\nslots W=2 vs W=1: {per_min[w2] / per_min[w1]:.2f}x trials/min, "
          f"{epochs_per_s[w2] / epochs_per_s[w1]:.2f}x epochs/s")
    for name in names[1:]:
        shorter = ("not reached" if reach[name] is None else
                   f"{reach[name]:.1f} s vs the baseline's {reach[base]:.1f} s: {reach[base] / reach[name]:.2f}x as fast "
                   f"(median of the {reached_in[name]} of {args.runs} runs that reached it)")
        print(f"time to the baseline's best, {name}: {shorter}")
    for name in names[1:]:
        print(f"worker RSS growth from its first to its last trial, {name}: {rss[name]:+.1f} MB (largest worker)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
