"""Multi-objective vs single-objective sweeps on the rings data: the hypervolume of their fronts.

For each of 3 runs (seeds 0, 1, 2) it runs the rings sweep twice with the same number of trials
and the same seed: once with ``objectives=("val_loss",)`` (today's default) and once with
``objectives=("val_loss", "n_params")`` (a Pareto study, Optuna's default TPE sampler). It takes
the front of each study's COMPLETE trials in (val_loss, n_params), both read from the trials'
recorded attributes, and prints the hypervolume each front dominates up to one fixed reference
point, then the median over the runs.

Axes and reference point (the same for every run and both sweeps):

* ``n_params`` is divided by the parameter count of the largest model the space can build
  (``regsweep.models.largest_model_params``), so it lies in (0, 1]; reference 1.0;
* ``val_loss`` (binary cross-entropy on the validation data); reference ln 2 = 0.693, the loss of
  always predicting 50 %: a model no better than chance adds nothing.

A second hypervolume uses log10(n_params) instead (reference: log10 of the largest model), which
weighs small models more; both are printed. Target (issue 16): the multi-objective median is larger.

    python -m benchmarks.pareto                              # 3 runs x 2 sweeps x 24 trials
    python -m benchmarks.pareto --trials 12 --max-epochs 10  # a quick check
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

REFERENCE_LOSS = math.log(2)


def _space(max_epochs: int) -> Any:
    from sweeps.rings import SPACE

    return dataclasses.replace(SPACE, max_epochs=max_epochs)


def front_points(study: Any) -> list[tuple[float, float]]:
    """(val_loss, n_params) of the study's COMPLETE trials that are on their own front."""
    from regsweep.pareto import pareto_indices, trial_point

    points = [p for t in study.get_trials(deepcopy=False)
              if t.state.name == "COMPLETE" and (p := trial_point(t, ("val_loss", "n_params"))) is not None]
    return [points[i] for i in pareto_indices(points)]


def hypervolumes(front: list[tuple[float, float]], largest: int) -> dict[str, float]:
    """The front's hypervolume with n_params scaled linearly and as log10 (see the module docstring)."""
    from regsweep.pareto import hypervolume_2d

    linear = hypervolume_2d([(n / largest, loss) for loss, n in front], reference=(1.0, REFERENCE_LOSS))
    log = hypervolume_2d([(math.log10(n), loss) for loss, n in front],
                         reference=(math.log10(largest), REFERENCE_LOSS))
    return {"hv": linear, "hv_log": log}


def run_once(args: argparse.Namespace, seed: int, objectives: tuple[str, ...], folder: Path) -> dict[str, Any]:
    """One sweep; its front and hypervolumes."""
    from regsweep.data import make_rings
    from regsweep.models import largest_model_params
    from regsweep.runner import run_sweep
    from regsweep.storage import count_states

    space, data = _space(args.max_epochs), make_rings(n=args.n, seed=0)
    name = f"{'mo' if len(objectives) > 1 else 'so'}-{seed}"
    started = time.perf_counter()
    study = run_sweep(space, data, sweep="rings", study=name, storage=f"sqlite:///{folder / (name + '.db')}",
                      out=str(folder / name), trials=args.trials, workers=args.workers, seed=seed,
                      objectives=objectives, progress=False, keep_top=0)
    front = front_points(study)
    counts = count_states(study)
    return {"sweep": name, "seconds": round(time.perf_counter() - started, 1), "complete": counts["COMPLETE"],
            "pruned": counts["PRUNED"], "front": sorted(front),
            **hypervolumes(front, largest_model_params(space, data))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24, help="trials per sweep (default: 24)")
    parser.add_argument("--n", type=int, default=500, help="rings samples (default: 500)")
    parser.add_argument("--max-epochs", type=int, default=20, help="epochs per trial at most (default: 20)")
    parser.add_argument("--runs", type=int, default=3, help="runs, seeds 0..runs-1 (default: 3)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes per sweep (default: 1)")
    parser.add_argument("--output", default=None, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING)
    results = []
    with tempfile.TemporaryDirectory(prefix="regsweep-pareto-") as tmp:
        for seed in range(args.runs):
            for objectives in (("val_loss",), ("val_loss", "n_params")):
                row = run_once(args, seed, objectives, Path(tmp))
                results.append(row)
                print(f"run {seed} {row['sweep']:>5}: {row['complete']} complete, {row['pruned']} pruned, "
                      f"front of {len(row['front'])}, hypervolume {row['hv']:.4f} (log10 n_params: "
                      f"{row['hv_log']:.4f}), {row['seconds']} s", flush=True)
    summary = {}
    for kind in ("so", "mo"):
        rows = [r for r in results if r["sweep"].startswith(kind)]
        summary[kind] = {key: statistics.median(r[key] for r in rows) for key in ("hv", "hv_log")}
    print(f"\nreference point: val_loss ln 2 = {REFERENCE_LOSS:.4f}, n_params = the largest model (1.0 scaled); "
          f"{args.trials} trials per sweep, {args.runs} runs")
    for kind, label in (("so", "single-objective (val_loss)"), ("mo", "multi-objective (val_loss, n_params)")):
        print(f"median hypervolume, {label}: {summary[kind]['hv']:.4f} (log10 n_params: {summary[kind]['hv_log']:.4f})")
    verdict = "larger" if summary["mo"]["hv"] > summary["so"]["hv"] else "NOT larger"
    print(f"the multi-objective front's median hypervolume is {verdict}")
    if args.output:
        Path(args.output).write_text(json.dumps({"args": vars(args), "runs": results, "median": summary}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
