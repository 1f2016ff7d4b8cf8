"""Packed trials vs unpacked trials vs a hand-written Optuna + Keras loop, side by side in one run.

Runs the rings sweep (its search space, ``--max-epochs`` overriding its 40) three times with the
same number of trials, each in a fresh Python process, and prints trials per minute and the best
validation data loss of each:

* ``regsweep --pack 1``: one Keras model per trial, ``--workers`` worker processes;
* ``regsweep --pack K``: K trials per Keras graph (``auto`` by default), same workers;
* ``baseline``: plain ``optuna.create_study().optimize(objective, n_jobs=1)`` where the objective
  builds the same MLP and calls ``model.fit(..., callbacks=[EarlyStopping(...)])`` on numpy arrays.

Targets (issue 9): packed >= 3x the trials/minute of unpacked, >= 6x the baseline's at the same
best validation loss (within 2%).

    python benchmarks/packing.py                        # 64 trials, 1000 samples, 40 epochs
    python benchmarks/packing.py --trials 16 --n 400 --max-epochs 20   # a quick check
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = ("unpacked", "packed", "baseline")


def _space(max_epochs: int):  # noqa: ANN202
    from sweeps.rings import SPACE

    return dataclasses.replace(SPACE, max_epochs=max_epochs)


def _run_regsweep(args: argparse.Namespace, pack: int | str) -> dict:
    from regsweep.data import make_rings
    from regsweep.runner import run_sweep
    from regsweep.storage import count_states

    folder = Path(args.dir)
    data = make_rings(n=args.n, seed=0)
    started = time.perf_counter()
    study = run_sweep(_space(args.max_epochs), data, sweep="rings", study=f"bench-{args.mode}",
                      storage=f"sqlite:///{folder / (args.mode + '.db')}", out=str(folder / args.mode),
                      trials=args.trials, workers=args.workers, seed=args.seed, pack=pack, progress=False)
    seconds = time.perf_counter() - started
    counts = count_states(study)
    packs = sorted({t.user_attrs.get("pack", 1) for t in study.trials})
    return {"seconds": seconds, "finished": counts["finished"], "pruned": counts["PRUNED"], "failed": counts["FAIL"],
            "best": study.best_value, "packs": packs}


def _run_baseline(args: argparse.Namespace) -> dict:
    """The hand-written loop a user would write without regsweep (one process, n_jobs=1)."""
    import keras
    import optuna

    from regsweep.data import make_rings

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = _space(args.max_epochs)
    data = make_rings(n=args.n, seed=0)
    regularizers = {"none": lambda lam: None, "l1": keras.regularizers.L1, "l2": keras.regularizers.L2,
                    "l1_l2": lambda lam: keras.regularizers.L1L2(l1=lam, l2=lam)}

    def objective(trial: optuna.Trial) -> float:
        kind = trial.suggest_categorical("regularizer", list(space.regularizers))
        lam = trial.suggest_float("lam", *space.lam, log=True) if kind != "none" else 0.0
        dropout = trial.suggest_float("dropout", *space.dropout)
        depth = trial.suggest_int("depth", *space.depth)
        width = trial.suggest_int("width", *space.width, log=True)
        patience = trial.suggest_int("patience", *space.patience)
        keras.utils.set_random_seed(args.seed + trial.number)
        layers = [keras.Input(shape=(2,))]
        for _ in range(depth):
            layers += [keras.layers.Dense(width, activation="relu", kernel_regularizer=regularizers[kind](lam)),
                       keras.layers.Dropout(dropout)]
        model = keras.Sequential([*layers, keras.layers.Dense(1, activation="sigmoid")])
        model.compile(optimizer=keras.optimizers.Adam(space.learning_rate[0]), loss="binary_crossentropy",
                      metrics=[keras.metrics.BinaryCrossentropy(name="bce")])
        history = model.fit(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val),
                            batch_size=space.batch_size, epochs=space.max_epochs, verbose=0,
                            callbacks=[keras.callbacks.EarlyStopping("val_bce", patience=patience,
                                                                     restore_best_weights=True)])
        keras.backend.clear_session()
        return min(history.history["val_bce"])

    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=args.seed))
    started = time.perf_counter()
    study.optimize(objective, n_trials=args.trials, n_jobs=1)
    return {"seconds": time.perf_counter() - started, "finished": len(study.trials), "pruned": 0, "failed": 0,
            "best": study.best_value, "packs": [1]}


def _child(args: argparse.Namespace) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if args.mode == "baseline":
        from regsweep.runtime import setup_tensorflow

        setup_tensorflow(None)
        result = _run_baseline(args)
    else:
        result = _run_regsweep(args, 1 if args.mode == "unpacked" else args.pack)
    print("RESULT " + json.dumps(result))


def _measure(mode: str, args: argparse.Namespace, folder: str) -> dict:
    command = [sys.executable, __file__, "--mode", mode, "--dir", folder, "--trials", str(args.trials),
               "--n", str(args.n), "--max-epochs", str(args.max_epochs), "--workers", str(args.workers),
               "--pack", str(args.pack), "--seed", str(args.seed)]
    print(f"running {mode} ...", file=sys.stderr, flush=True)
    done = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{mode} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def _report(results: dict[str, dict], args: argparse.Namespace) -> None:
    print(f"rings sweep: {args.trials} trials, n={args.n}, max_epochs={args.max_epochs}, workers={args.workers} "
          f"(baseline: 1 process, n_jobs=1), {os.cpu_count()} cores")
    print(f"{'mode':<10} {'packs':<8} {'seconds':>8} {'trials/min':>11} {'finished':>9} {'pruned':>7} {'best val loss':>14}")
    for mode, r in results.items():
        rate = r["finished"] / r["seconds"] * 60
        r["rate"] = rate
        print(f"{mode:<10} {','.join(map(str, r['packs'])):<8} {r['seconds']:>8.1f} {rate:>11.1f} {r['finished']:>9} "
              f"{r['pruned']:>7} {r['best']:>14.4f}")
    packed, unpacked, baseline = results["packed"], results["unpacked"], results["baseline"]
    print(f"packed vs unpacked: {packed['rate'] / unpacked['rate']:.2f}x trials/min (target >= 3x)")
    print(f"packed vs baseline: {packed['rate'] / baseline['rate']:.2f}x trials/min (target >= 6x), "
          f"best val loss {100 * (packed['best'] / baseline['best'] - 1):+.1f}% (target within 2%)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--n", type=int, default=1000, help="rings samples (default: 1000)")
    parser.add_argument("--max-epochs", type=int, default=40)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="regsweep workers (default: cores)")
    parser.add_argument("--pack", default="auto", help="K or auto (default: auto)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mode", choices=MODES, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--dir", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.mode is not None:
        _child(args)
        return 0
    with tempfile.TemporaryDirectory(prefix="regsweep-bench-") as folder:
        results = {mode: _measure(mode, args, folder) for mode in MODES}
    _report(results, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
