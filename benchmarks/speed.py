"""Speed benchmark of the parallel-trials issue, measured side by side in one run.

    python -m benchmarks.speed                 # full size (about 15 minutes on 2 cores)
    python -m benchmarks.speed --quick         # a smoke run (about 3 minutes)

Every measurement runs in a fresh Python process and is timed from process start to
end (imports, worker start-up and study storage included) on the rings sweep: the
same search space, the same number of trials and the same max epochs. Printed as ratios
and written to ``benchmarks/results/speed.md`` and ``speed.csv``:

1. trials/minute and epochs/second of regsweep (W = cores) vs the hand-written baseline
   (Optuna ``study.optimize`` + Keras ``model.fit`` on numpy arrays) with ``n_jobs=1`` and
   with ``n_jobs=cores``; best validation loss of each;
2. parallel scaling: regsweep W = cores vs W = 1;
3. framework overhead: regsweep's seconds per epoch (W = 1) vs a bare ``model.fit`` of
   the same models (same configurations, numpy arrays, no Optuna);
4. time until each run first reaches the baseline's best validation loss;
5. worker RSS after 5 and after 100 trials of each worker (2-epoch trials, workers recycled as by default).

The baseline reports the validation *data* loss (a ``BinaryCrossentropy`` metric) like
regsweep, so the best losses compare like with like (Keras's ``val_loss`` adds the penalty).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent

SPACE = "SearchSpace(depth=(1, 4), width=(4, 128), patience=(2, 10), max_epochs={epochs}, batch_size=50)"

BASELINE = textwrap.dedent('''
    import json, os, sys, time
    started = time.time()
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import keras, optuna
    from regsweep.data import make_rings
    data = make_rings(n={n}, seed=0)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial):
        kind = trial.suggest_categorical("regularizer", ["none", "l1", "l2", "l1_l2"])
        lam = trial.suggest_float("lam", 1e-6, 1e-1, log=True) if kind != "none" else 0.0
        dropout = trial.suggest_float("dropout", 0.0, 0.5)
        depth = trial.suggest_int("depth", 1, 4)
        width = trial.suggest_int("width", 4, 128, log=True)
        patience = trial.suggest_int("patience", 2, 10)
        reg = {{"none": None, "l1": keras.regularizers.L1(lam), "l2": keras.regularizers.L2(lam),
               "l1_l2": keras.regularizers.L1L2(l1=lam, l2=lam)}}[kind]
        model = keras.Sequential([keras.Input((2,))])
        for _ in range(depth):
            model.add(keras.layers.Dense(width, activation="relu", kernel_regularizer=reg))
            if dropout > 0:
                model.add(keras.layers.Dropout(dropout))
        model.add(keras.layers.Dense(1, activation="sigmoid"))
        model.compile("adam", "binary_crossentropy", metrics=["accuracy", keras.metrics.BinaryCrossentropy(name="xent")])
        history = model.fit(data.x_train, data.y_train, batch_size=50, epochs={epochs}, verbose=0,
                            validation_data=(data.x_val, data.y_val),
                            callbacks=[keras.callbacks.EarlyStopping(monitor="val_xent", patience=patience,
                                                                     restore_best_weights=True)])
        trial.set_user_attr("epochs", len(history.history["val_xent"]))
        trial.set_user_attr("t", time.time() - started)
        return min(history.history["val_xent"])

    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed={seed}))
    study.optimize(objective, n_trials={trials}, n_jobs={n_jobs})
    print(json.dumps({{"trials": [[t.value, t.user_attrs["epochs"], t.user_attrs["t"]] for t in study.trials]}}))
''')

REGSWEEP = textwrap.dedent('''
    import json, time
    started = time.time()
    from regsweep import SearchSpace, run_sweep
    from regsweep.data import make_rings
    space = {space}
    study = run_sweep(space, make_rings(n={n}, seed=0), study="bench", storage="sqlite:///{db}", trials={trials},
                      workers={workers}, pruner="{pruner}", progress=False, out="{out}", recycle_after={recycle}, engine="{engine}",
                      seed={seed}{extra})
    rows = []
    for t in study.trials:
        if t.state.name in ("COMPLETE", "PRUNED"):
            rows.append([t.user_attrs.get("val_loss"), t.user_attrs.get("epochs"),
                         t.datetime_complete.timestamp() - started, t.user_attrs.get("worker_rss_mb"),
                         t.user_attrs.get("worker"), t.params])
    print(json.dumps({{"trials": rows}}))
''')

BARE_FIT = textwrap.dedent('''
    import json, os, time
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import keras
    from regsweep.data import make_rings
    from regsweep.models import build_model
    from regsweep.space import SearchSpace, TrialConfig
    data = make_rings(n={n}, seed=0)
    space = SearchSpace(max_epochs={epochs}, batch_size=50)
    configs = json.loads({configs!r})
    epochs = 0
    started = time.time()
    for params in configs:
        config = TrialConfig.from_params(params, space)
        model = build_model(config, data)
        history = model.fit(data.x_train, data.y_train, batch_size=50, epochs={epochs}, verbose=0,
                            validation_data=(data.x_val, data.y_val),
                            callbacks=[keras.callbacks.EarlyStopping(monitor="val_data_loss", patience=config.patience,
                                                                     restore_best_weights=True)])
        epochs += len(history.history["val_data_loss"])
        keras.backend.clear_session()
    print(json.dumps({{"seconds": time.time() - started, "epochs": epochs}}))
''')


def _python(code: str) -> tuple[dict, float]:
    """Run ``code`` in a fresh interpreter; return its JSON output and its wall time."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"benchmark step failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1]), wall


def run_baseline(args: argparse.Namespace, n_jobs: int, *, seed: int = 0) -> dict:
    """The hand-written loop in a fresh process; ``seed``: its TPE sampler's."""
    out, wall = _python(BASELINE.format(n=args.n, epochs=args.max_epochs, trials=args.trials, n_jobs=n_jobs, seed=seed))
    values = [row[0] for row in out["trials"]]
    return {"name": f"baseline n_jobs={n_jobs}", "wall": wall, "trials": len(values), "best": min(values),
            "epochs": sum(row[1] for row in out["trials"]), "finish_times": [(r[0], r[2]) for r in out["trials"]]}


def run_regsweep(args: argparse.Namespace, workers: int, tmp: Path, *, pruner: str = "median", trials: int | None = None,
                 epochs: int | None = None, extra: str = "", recycle: int = 1000, engine: str = "keras",
                 seed: int = 0) -> dict:
    """A regsweep sweep in a fresh process; ``engine`` is ``keras`` here (what this benchmark measures)
    unless a caller such as ``benchmarks.slots`` asks for ``slots``; ``seed``: the sweep's seed."""
    trials = trials or args.trials
    db = tmp / f"w{workers}-{pruner}-{trials}.db"
    space = SPACE.format(epochs=epochs or args.max_epochs)
    out, wall = _python(REGSWEEP.format(space=space, n=args.n, db=db, trials=trials, workers=workers,
                                        pruner=pruner, out=tmp / "out", extra=extra, recycle=recycle,
                                        engine=engine, seed=seed))
    rows = out["trials"]
    return {"name": f"regsweep W={workers} pruner={pruner}", "wall": wall, "trials": len(rows),
            "best": min(r[0] for r in rows), "epochs": sum(r[1] for r in rows),
            "finish_times": [(r[0], r[2]) for r in rows], "rows": rows}


def run_bare_fit(args: argparse.Namespace, configs: list[dict]) -> dict:
    out, wall = _python(BARE_FIT.format(n=args.n, epochs=args.max_epochs, configs=json.dumps(configs)))
    return {"name": "bare model.fit", "wall": wall, "fit_seconds": out["seconds"], "epochs": out["epochs"]}


def time_to_reach(run: dict, target: float) -> float | None:
    """Seconds from process start until a trial with val_loss <= target finished."""
    times = [t for value, t in run["finish_times"] if value is not None and value <= target]
    return min(times) if times else None


def _rate(run: dict) -> tuple[float, float]:
    return run["trials"] / run["wall"] * 60, run["epochs"] / run["wall"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--max-epochs", type=int, default=40)
    parser.add_argument("--n", type=int, default=1000, help="rings samples")
    parser.add_argument("--rss-trials", type=int, default=100, help="trials per worker of the memory run")
    parser.add_argument("--recycle-after", type=int, default=25, help="worker recycling in the memory run")
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.trials, args.max_epochs, args.rss_trials = 8, 10, 12
    cores = os.cpu_count() or 1
    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    say(f"# regsweep speed benchmark\n\nrings n={args.n}, {args.trials} trials, max {args.max_epochs} epochs, "
        f"{cores} cores, {time.strftime('%Y-%m-%d %H:%M')}\n")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        base1 = run_baseline(args, 1)
        base_n = run_baseline(args, cores)
        ours = run_regsweep(args, cores, tmp)
        ours1 = run_regsweep(args, 1, tmp)
        configs = [row[5] for row in ours1["rows"]]
        bare = run_bare_fit(args, configs)
        rss = run_regsweep(args, cores, tmp, pruner="none", trials=cores * args.rss_trials, epochs=2,
                           extra=", threads_per_worker=1", recycle=args.recycle_after)
    runs = [base1, base_n, ours, ours1]
    say("| run | wall s | trials/min | epochs/s | best val loss | time to baseline best (s) |")
    say("|---|---|---|---|---|---|")
    for run in runs:
        per_min, per_s = _rate(run)
        reach = time_to_reach(run, base1["best"])
        say(f"| {run['name']} | {run['wall']:.1f} | {per_min:.2f} | {per_s:.2f} | {run['best']:.4f} | "
            f"{'not reached' if reach is None else f'{reach:.1f}'} |")
    ours_rate, base1_rate, basen_rate, ours1_rate = (_rate(r) for r in (ours, base1, base_n, ours1))
    ours1_epoch_s = ours1["wall"] / ours1["epochs"]
    bare_epoch_s = bare["wall"] / bare["epochs"]
    reach_ours, reach_base = time_to_reach(ours, base1["best"]), time_to_reach(base1, base1["best"])
    rss_by_worker = {}
    for row in sorted((r for r in rss["rows"] if r[3] is not None), key=lambda r: r[2]):
        rss_by_worker.setdefault(row[4], []).append(row[3])
    ratios = [
        ("trials/min: regsweep W=cores vs baseline n_jobs=1 (target >= 3x)", ours_rate[0] / base1_rate[0]),
        ("trials/min: regsweep W=cores vs baseline n_jobs=cores", ours_rate[0] / basen_rate[0]),
        ("epochs/s: regsweep W=cores vs baseline n_jobs=1", ours_rate[1] / base1_rate[1]),
        ("baseline n_jobs=cores vs n_jobs=1 (trials/min)", basen_rate[0] / base1_rate[0]),
        ("best val loss: regsweep W=cores / baseline n_jobs=1 (target <= 1.02)", ours["best"] / base1["best"]),
        ("scaling: regsweep W=cores vs W=1, trials/min (target >= 1.8x)", ours_rate[0] / ours1_rate[0]),
        ("scaling: regsweep W=cores vs W=1, epochs/s", ours_rate[1] / ours1_rate[1]),
        ("overhead: regsweep s/epoch (W=1, whole run) / bare model.fit s/epoch (target <= 1.0)", ours1_epoch_s / bare_epoch_s),
        ("time to baseline's best: baseline n_jobs=1 / regsweep W=cores with pruning (target >= 5x)",
         (reach_base / reach_ours) if reach_ours else float("nan")),
    ]
    say("\n| ratio | value |\n|---|---|")
    for name, value in ratios:
        say(f"| {name} | {value:.2f} |")
    say(f"\nbare model.fit: {bare['epochs']} epochs in {bare['wall']:.1f} s ({bare['fit_seconds']:.1f} s in fit); "
        f"regsweep W=1: {ours1['epochs']} epochs in {ours1['wall']:.1f} s")
    for worker, values in sorted(rss_by_worker.items()):
        later = values[min(len(values), args.rss_trials) - 1]
        say(f"worker {worker} RSS (recycled every {args.recycle_after} trials): {values[4]:.0f} MB after its trial 5, "
            f"{later:.0f} MB after its trial {min(len(values), args.rss_trials)}, peak {max(values):.0f} MB "
            f"(growth {later - values[4]:+.0f} MB; target <= 50 MB)")
    RESULTS.mkdir(exist_ok=True)
    name = "speed-quick" if args.quick else "speed"
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    with open(RESULTS / f"{name}.csv", "w") as csv:
        csv.write("ratio,value\n" + "".join(f"\"{n}\",{v:.4f}\n" for n, v in ratios))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
