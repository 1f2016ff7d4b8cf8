"""Hand-picked models beside a sweep: the notes' five Reuters models, their curves and a gain table.

The notes train a basic model, L2 (λ=2e-5), L1 (λ=2e-6), dropout 0.2 and L1_L2 (l1=1e-6,
l2=1e-5), each Dense 64-64 then a 46-way softmax, rmsprop, 20 epochs, batch 512, and
overlay their validation curves. Here they are :class:`~regsweep.space.TrialConfig` s
trained by :func:`regsweep.objective.train_config` on the same split and with the same
loss (categorical cross-entropy without the penalty) as the sweep's trials, so their
``val_loss`` (the lowest over the epochs) compares directly with a trial's.

Example:
    >>> results = train_models(notes_models(), load_reuters())  # doctest: +SKIP
    >>> comparison_table(results)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regsweep.space import TrialConfig

if TYPE_CHECKING:
    import optuna
    import pandas as pd

    from regsweep.data import Dataset
    from regsweep.objective import TrainResult

_logger = logging.getLogger(__name__)

# name -> (regularizer, lam, dropout, extras): the notes' five models.
NOTES_MODELS: dict[str, tuple[str, float, float, dict[str, float]]] = {
    "basic": ("none", 0.0, 0.0, {}),
    "L2 (2e-5)": ("l2", 2e-5, 0.0, {}),
    "L1 (2e-6)": ("l1", 2e-6, 0.0, {}),
    "dropout 0.2": ("none", 0.0, 0.2, {}),
    "L1_L2 (1e-6, 1e-5)": ("l1_l2", 0.0, 0.0, {"l1": 1e-6, "l2": 1e-5}),
}
RESULTS_FILE = "hand_picked.json"
CURVE_KEYS = ("val_curve", "train_curve", "val_metric_curve")


def notes_models(*, depth: int = 2, width: int = 64, epochs: int = 20, batch_size: int = 512,
                 optimizer: str = "rmsprop") -> dict[str, TrialConfig]:
    """The notes' five models as configs; patience = epochs, so all of them train every epoch."""
    return {
        name: TrialConfig(regularizer=kind, lam=lam, dropout=dropout, depth=depth, width=width, patience=epochs,
                          max_epochs=epochs, batch_size=batch_size, optimizer=optimizer, extras=dict(extras))
        for name, (kind, lam, dropout, extras) in NOTES_MODELS.items()
    }


def _summary(result: TrainResult) -> dict[str, Any]:
    attrs = result.attrs()
    return {key: attrs[key] for key in ("val_loss", "val_metric", "train_loss", "best_epoch", "epochs", "n_params",
                                        "train_seconds", *CURVE_KEYS)}


def train_models(configs: dict[str, TrialConfig], dataset: Dataset, *, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Train each config once (Keras seed ``seed``) and return name -> summary with its curves.

    With a test split, each model (its best-epoch weights) is also measured once on the test
    rows: ``test_loss`` and ``test_accuracy``, never used to pick anything.
    """
    from regsweep.objective import free_keras_memory, train_config

    results = {}
    for name, config in configs.items():
        try:
            result = train_config(config, dataset, seed=seed, keep_model=dataset.has_test)
            results[name] = {**_summary(result), **(_test_figures(result.model, dataset) if dataset.has_test else {})}
        finally:
            free_keras_memory()
        _logger.info("%s: val_loss %.4f, val_accuracy %.3f at epoch %d", name, result.val_loss, result.val_metric,
                     result.best_epoch)
    return results


def _test_figures(model: Any, dataset: Dataset) -> dict[str, float]:
    """Test data loss (inference mode, no penalty) and accuracy of a trained model."""
    import numpy as np

    from regsweep.objective import inference_loss

    predicted = np.asarray(model.predict(dataset.x_test, batch_size=4096, verbose=0)).argmax(axis=1)
    return {"test_loss": inference_loss(model, dataset.x_test, dataset.y_test, dataset.loss),
            "test_accuracy": float(np.mean(predicted == np.asarray(dataset.y_test).reshape(-1)))}


def _cache_key(configs: dict[str, TrialConfig], dataset: Dataset, seed: int) -> dict[str, Any]:
    return {"fingerprint": dataset.fingerprint(), "seed": seed,
            "configs": {name: repr(config) for name, config in configs.items()}}


def hand_picked_results(dataset: Dataset, out_dir: str | Path, *, configs: dict[str, TrialConfig] | None = None,
                        seed: int = 0, reuse: bool = True) -> dict[str, dict[str, Any]]:
    """Train the hand-picked models, or reuse ``out_dir/hand_picked.json`` made on the same data and configs."""
    configs = configs if configs is not None else notes_models()
    path = Path(out_dir) / RESULTS_FILE
    key = _cache_key(configs, dataset, seed)
    if reuse and path.is_file():
        stored = json.loads(path.read_text())
        if stored.get("key") == key:
            _logger.info("reusing the hand-picked models' results in %s", path)
            return stored["results"]
    results = train_models(configs, dataset, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"key": key, "data": dataset.describe(), "results": results}, indent=1))
    return results


def comparison_table(results: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per model: best-epoch val loss/accuracy (the sweep's definition) and the 20th epoch's."""
    import pandas as pd

    rows = [{"model": name, "val_loss": r["val_loss"], "val_accuracy": r["val_metric"],
             **{k: r[k] for k in ("test_loss", "test_accuracy") if k in r}, "best_epoch": r["best_epoch"],
             "final_val_loss": r["val_curve"][-1], "final_val_accuracy": r["val_metric_curve"][-1],
             "n_params": r["n_params"]} for name, r in results.items()]
    return pd.DataFrame(rows).sort_values(["val_loss", "model"], kind="stable").reset_index(drop=True)


def _best_trial_row(study: optuna.Study) -> dict[str, Any]:
    """The best trial (:func:`regsweep.pareto.best_trial`) as a row; with its test figures when measured."""
    from regsweep.pareto import best_trial
    from regsweep.report import held_out_results

    trial = best_trial(study)
    row = {"model": f"sweep best (trial {trial.number}): {describe_params(trial.params)}",
           "val_loss": float(trial.values[0]), "val_accuracy": float(trial.user_attrs["val_metric"]),
           "best_epoch": trial.user_attrs.get("best_epoch"), "n_params": trial.user_attrs.get("n_params")}
    tested = held_out_results(study).get(trial.number)
    if tested:  # --test: measured once after the sweep, never used to choose
        row.update(test_loss=tested["test_loss"], test_accuracy=tested["test_metric"])
    return row


def describe_params(params: dict[str, Any]) -> str:
    """A short text of a trial's parameters, e.g. ``l2 λ=3.1e-05, dropout 0.41, 2x256, patience 4``."""
    kind = params.get("regularizer", "none")
    text = kind if kind == "none" else f"{kind} λ={params.get('lam', 0):.2g}"
    text += f", dropout {params.get('dropout', 0):.2f}, {params.get('depth')}x{params.get('width')}"
    text += f", patience {params.get('patience')}"
    extra = {k: v for k, v in params.items() if k not in ("regularizer", "lam", "dropout", "depth", "width", "patience")}
    return text + "".join(f", {k} {v:.3g}" if isinstance(v, float) else f", {k} {v}" for k, v in extra.items())


def gain_table(study: optuna.Study, results: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """The sweep's best trial above the hand-picked models, with what the search gains over each.

    ``loss_gain`` = model's val_loss - best trial's val_loss (> 0: the sweep is better),
    ``loss_gain_pct`` the same relative to the model's loss, ``accuracy_gain`` = best trial's
    val accuracy - model's.
    """
    import pandas as pd

    best = _best_trial_row(study)
    hand = comparison_table(results)
    hand = hand[[c for c in ("model", "val_loss", "val_accuracy", "test_loss", "test_accuracy", "best_epoch",
                             "n_params") if c in hand.columns]]
    table = pd.concat([pd.DataFrame([best]), hand], ignore_index=True)
    table["loss_gain"] = table["val_loss"] - best["val_loss"]
    table["loss_gain_pct"] = 100 * table["loss_gain"] / table["val_loss"]
    table["accuracy_gain"] = best["val_accuracy"] - table["val_accuracy"]
    return table


def plot_curves(results: dict[str, dict[str, Any]], path: str | Path, *, title: str = "") -> Path:
    """Overlaid validation loss and validation accuracy per epoch of each model (the notes' figure)."""
    from regsweep.plots import pyplot

    plt = pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.2))
    markers = "os^v*Dxp"
    for i, (name, r) in enumerate(results.items()):
        epochs = range(1, len(r["val_curve"]) + 1)
        style = {"marker": markers[i % len(markers)], "markersize": 4, "linewidth": 1.3, "label": name}
        ax_loss.plot(epochs, r["val_curve"], **style)
        ax_acc.plot(epochs, r["val_metric_curve"], **style)
    ax_loss.set_ylabel("validation loss (categorical cross-entropy, no penalty)")
    ax_acc.set_ylabel("validation accuracy")
    for ax in (ax_loss, ax_acc):
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
    ax_loss.legend(fontsize=8)
    fig.suptitle(title or "hand-picked models: validation curves")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80, bbox_inches="tight")
    plt.close(fig)
    return out


def markdown(table: pd.DataFrame) -> str:
    """A table as Markdown with 4 significant digits."""
    return table.to_markdown(index=False, floatfmt=".4g") + "\n"


def write_comparison(results: dict[str, dict[str, Any]], out_dir: str | Path, *, title: str = "") -> list[Path]:
    """Write ``comparison.png`` and ``comparison.md`` (the table) into ``out_dir``."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    table_path = folder / "comparison.md"
    table_path.write_text(markdown(comparison_table(results)))
    return [plot_curves(results, folder / "comparison.png", title=title), table_path]


def report_gain(study: optuna.Study, dataset: Dataset, out_dir: str | Path, *, seed: int = 0) -> pd.DataFrame:
    """Train (or reuse) the hand-picked models on ``dataset`` and write ``gain.md`` beside the leaderboard."""
    results = hand_picked_results(dataset, out_dir, seed=seed)
    table = gain_table(study, results)
    Path(out_dir, "gain.md").write_text(markdown(table))
    return table



def compare_main(argv: Any = None, *, prog: str = "python -m sweeps.reuters_compare", description: str | None = None,
                 study: str = "reuters") -> int:
    """CLI of the Reuters comparison: train the notes' five models, write the figure and the table."""
    from regsweep.cli_support import Parser, add_verbosity, guarded

    parser = Parser(prog=prog, description=description)
    parser.add_argument("--data", default=None,
                        help="a reuters.npz (default: ../shared/data/reuters.npz when present, else the shipped subset)")
    parser.add_argument("--out", default=None, help=f"folder for the figure and tables (default: studies/{study}/)")
    parser.add_argument("--seed", type=int, default=0, help="Keras seed of every model (default: 0)")
    parser.add_argument("--retrain", action="store_true", help="train again even if hand_picked.json matches")
    parser.add_argument("--test", action="store_true",
                        help="hold out Keras's test split (2,246 newswires) and measure each model on it once "
                             "(test_loss, test_accuracy beside the validation figures)")
    add_verbosity(parser)

    def run(args: Any) -> int:
        from regsweep.datasets import load_reuters
        from regsweep.runtime import setup_tensorflow

        setup_tensorflow()
        out = Path(args.out) if args.out else Path("studies") / study
        dataset = load_reuters(args.data, test=args.test)
        results = hand_picked_results(dataset, out, seed=args.seed, reuse=not args.retrain)
        data = dataset.describe()
        title = (f"Reuters ({data['n_train']} train / {data['n_val']} validation newswires): "
                 "the notes' models with categorical cross-entropy")
        paths = write_comparison(results, out, title=title)
        print(markdown(comparison_table(results)), end="")
        print("\nWrote " + ", ".join(str(p) for p in [*paths, out / RESULTS_FILE]))
        return 0

    return guarded(parser, argv, run)


def print_gain(study: optuna.Study, dataset: Dataset, out_dir: Path, args: Any = None) -> None:
    """The ``after`` hook of the Reuters sweep: print and write the gain table over the hand-picked models."""
    table = report_gain(study, dataset, out_dir)
    print("\nSweep vs the notes' hand-picked models (same split, same loss; gain > 0: the sweep is better):")
    print(markdown(table), end="")
    print(f"Wrote {Path(out_dir) / 'gain.md'}")
