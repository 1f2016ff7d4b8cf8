"""The Reuters comparison and a tiny Reuters sweep on the shipped 600-newswire subset.

Real Keras training, a real SQLite study and real spawned worker processes (which rebuild
the data from the study's ``{"kind": "reuters", ...}`` source through the registered loader).
"""

from __future__ import annotations

import json

import optuna
import pytest

from regsweep.compare import NOTES_MODELS, RESULTS_FILE, compare_main
from regsweep.datasets import SMALL_REUTERS
from regsweep.storage import count_states, study_meta

pytestmark = pytest.mark.slow


def test_comparison_then_sweep_with_the_gain_table(tmp_path, sqlite_url, capsys):
    from sweeps.reuters import main as reuters_main

    out = tmp_path / "out"
    assert compare_main(["--data", str(SMALL_REUTERS), "--out", str(out), "--test", "-q"]) == 0
    printed = capsys.readouterr().out
    assert all(name in printed for name in NOTES_MODELS)
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((out / RESULTS_FILE).read_text())["results"]
    assert list(results) == list(NOTES_MODELS)
    for result in results.values():  # 20 epochs each, no early stop; val_loss = the curve's minimum
        assert len(result["val_curve"]) == len(result["val_metric_curve"]) == 20
        assert result["val_loss"] == min(result["val_curve"])
        assert result["n_params"] == 10000 * 64 + 64 + 64 * 64 + 64 + 64 * 46 + 46
        assert 0 < result["test_loss"] and 0 <= result["test_accuracy"] <= 1  # Keras's 120 test newswires
    written = (out / RESULTS_FILE).stat().st_mtime_ns

    argv = ["--data", str(SMALL_REUTERS), "--storage", sqlite_url, "--out", str(out), "--trials", "3",
            "--workers", "2", "--no-plots", "--no-progress", "--pruner", "none", "--test", "-q"]
    assert reuters_main(argv) == 0
    printed = capsys.readouterr().out
    study = optuna.load_study(study_name="reuters", storage=sqlite_url)
    assert count_states(study)["finished"] == 3
    meta = study_meta(study)
    assert meta["data"]["n_classes"] == 46 and meta["data"]["source"]["kind"] == "reuters"
    # same split, same loss: the sweep reused the comparison's results (same data fingerprint)
    assert (out / RESULTS_FILE).stat().st_mtime_ns == written
    gain = (out / "gain.md").read_text()
    assert "sweep best (trial" in gain and all(name in gain for name in NOTES_MODELS)
    assert "loss_gain" in printed and "sweep best (trial" in printed
    best = min(t.value for t in study.trials if t.value is not None)
    assert f"{best:.4g}" in gain
    header = gain.splitlines()[0]  # test figures beside validation ones, for the sweep's best and each model
    assert "test_loss" in header and "test_accuracy" in header
    assert all(line.count("|") == header.count("|") and " nan " not in line for line in gain.splitlines()[2:])
