"""Real tables through the CSV path, against a standardised linear model on the same splits.

``python -m benchmarks.tabular`` (a few minutes on 2 cores; ``--trials``, ``--workers``,
``--max-epochs`` to change the size) writes three of scikit-learn's shipped datasets as raw
CSV files, as a user would have them:

* ``cancer``: breast_cancer (569 rows, binary), labels as text (``benign``/``malignant``), an
  added text column (``clinic``, random, uninformative) and 5% of the cells of three
  columns missing;
* ``wine``: wine (178 rows, 3 classes), labels as text (cultivar names);
* ``diabetes``: diabetes (442 rows, regression; the target is a whole-number float).

Each is swept with ``python -m sweeps.table FILE --target COL --test-fraction 0.2`` (default
space), then the best trial's validation and test figures are printed beside a
LogisticRegression / Ridge (scikit-learn defaults, C=1 / alpha=1) fitted on the same training
rows with the same preprocessing (standardised numeric columns, mean imputation + missing
indicators, one-hot categories), scored on the same validation and test rows with the same
loss definitions (cross-entropy, or MSE; metric accuracy, or MAE). The table goes to stdout
and ``benchmarks/results/tabular.md``, each sweep's leaderboard to ``benchmarks/results/tabular/<name>/``.
``--write-csv DIR`` only writes the three CSV files (for the README's walkthrough).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def write_tables(folder: Path) -> dict[str, tuple[Path, str]]:
    """The three CSV files: ``{name: (path, target column)}``."""
    import pandas as pd
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine

    rng = np.random.default_rng(0)
    cancer = load_breast_cancer(as_frame=True).frame
    cancer["target"] = np.where(cancer["target"] == 1, "benign", "malignant")
    cancer.insert(0, "clinic", rng.choice(["north", "south", "east", "west"], len(cancer)))
    for column in ("mean texture", "worst area", "mean smoothness"):
        cancer.loc[rng.choice(len(cancer), int(0.05 * len(cancer)), replace=False), column] = np.nan
    wine_bunch = load_wine(as_frame=True)
    wine = wine_bunch.frame.copy()
    wine["target"] = np.asarray(["barolo", "grignolino", "barbera"])[wine_bunch.target]
    diabetes = load_diabetes(as_frame=True, scaled=False).frame
    tables: dict[str, tuple[Path, str]] = {}
    for name, frame in (("cancer", cancer), ("wine", wine), ("diabetes", diabetes)):
        path = folder / f"{name}.csv"
        pd.DataFrame(frame).to_csv(path, index=False)
        tables[name] = (path, "target")
    return tables


def linear_baseline(data: Any) -> dict[str, float]:
    """LogisticRegression / Ridge on the dataset's (preprocessed) training rows, scored like the sweep."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.metrics import log_loss

    out: dict[str, float] = {}
    if data.task == "regression":
        model = Ridge(alpha=1.0).fit(data.x_train, data.y_train.ravel())
        for split, x, y in (("val", data.x_val, data.y_val), ("test", data.x_test, data.y_test)):
            pred = model.predict(x)
            out[f"{split}_loss"] = float(np.mean((y.ravel() - pred) ** 2))
            out[f"{split}_metric"] = float(np.mean(np.abs(y.ravel() - pred)))
        return out
    model = LogisticRegression(C=1.0, max_iter=5000).fit(data.x_train, data.y_train.ravel())
    for split, x, y in (("val", data.x_val, data.y_val), ("test", data.x_test, data.y_test)):
        probs = model.predict_proba(x)
        out[f"{split}_loss"] = float(log_loss(y.ravel(), probs, labels=model.classes_))
        out[f"{split}_metric"] = float(np.mean(model.predict(x) == y.ravel()))
    return out


def sweep_table(path: Path, target: str, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Run the CSV sweep through ``sweeps.table`` and read the best trial's figures."""
    import optuna

    from regsweep.pareto import best_trial
    from regsweep.report import held_out_results
    from sweeps.table import main

    url = f"sqlite:///{folder / (path.stem + '.db')}"
    started = time.perf_counter()
    code = main([str(path), "--target", target, "--test-fraction", "0.2", "--trials", str(args.trials),
                 "--workers", str(args.workers), "--max-epochs", str(args.max_epochs), "--seed", "0",
                 "--study", path.stem, "--storage", url, "--out", str(RESULTS / "tabular" / path.stem), "--no-plots",
                 "--no-progress", "-q"])
    if code != 0:
        raise SystemExit(f"sweep of {path.name} failed with exit code {code}")
    study = optuna.load_study(study_name=path.stem, storage=url)
    best = best_trial(study)
    tested = held_out_results(study).get(best.number, {})
    return {"val_loss": best.value, "val_metric": best.user_attrs["val_metric"],
            "test_loss": tested.get("test_loss", float("nan")), "test_metric": tested.get("test_metric", float("nan")),
            "seconds": time.perf_counter() - started, "trial": best.number, "params": best.params}


def run(args: argparse.Namespace) -> str:
    """All datasets; the Markdown table."""
    from regsweep.data import from_csv

    lines = ["| dataset | task (metric) | rows train/val/test | model | val_loss | val_metric | test_loss | test_metric |",
             "|---|---|---|---|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory(prefix="regsweep-tabular-") as tmp:
        folder = Path(tmp)
        for name, (path, target) in write_tables(folder).items():
            data = from_csv(path, target=target, test_fraction=0.2, seed=0)  # the sweep's exact splits
            metric = "MAE" if data.task == "regression" else "accuracy"
            sizes = f"{len(data.x_train)}/{len(data.x_val)}/{len(data.x_test)}"
            swept = sweep_table(path, target, folder, args)
            linear = linear_baseline(data)
            label = "Ridge(alpha=1)" if data.task == "regression" else "LogisticRegression(C=1)"
            best_label = f"sweep best (trial {swept['trial']}, {args.trials} trials, {swept['seconds']:.0f} s)"
            for model, figures in ((best_label, swept), (label, linear)):
                lines.append(f"| {name} | {data.task} ({metric}) | {sizes} | {model} | {figures['val_loss']:.4g} | "
                             f"{figures['val_metric']:.4g} | {figures['test_loss']:.4g} | {figures['test_metric']:.4g} |")
            print(lines[-2], lines[-1], sep="\n", flush=True)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tabular", description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-epochs", type=int, default=60)
    parser.add_argument("--out", default=str(RESULTS / "tabular.md"))
    parser.add_argument("--write-csv", metavar="DIR", default=None, help="only write the three CSV files to DIR")
    args = parser.parse_args(argv)
    if args.write_csv:
        Path(args.write_csv).mkdir(parents=True, exist_ok=True)
        for path, _ in write_tables(Path(args.write_csv)).values():
            print(path)
        return 0
    table = run(args)
    header = (f"# Tabular benchmark: `python -m benchmarks.tabular --trials {args.trials} --workers {args.workers} "
              f"--max-epochs {args.max_epochs}`\n\nBest trial = lowest validation loss among complete trials "
              "(the only thing used for selection); test figures measured once afterwards on rows no trial saw. "
              "Linear model: same training rows and preprocessing, scikit-learn defaults.\n\n")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(header + table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
