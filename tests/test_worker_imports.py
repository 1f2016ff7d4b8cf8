"""A worker trains a trial and draws its learning curve without loading the reporting layer.

Keras 3.15 itself imports pandas and matplotlib.pyplot when they are installed
(``keras/src/trainers/data_adapters/array_slicing.py``, ``keras/src/visualization/plot_image_gallery.py``,
both inside ``try: ... except ImportError``). So the real trial runs with those two imports made to
fail, as if not installed: it must still complete and upload its curve PNG, and regsweep's reporting modules must stay
unloaded. The curve path alone, without Keras, must load neither pandas nor pyplot at all.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

REPORTING = ("pandas", "matplotlib.pyplot", "regsweep.plots", "regsweep.report", "regsweep.html_report")

# One real trial, as a worker runs it: the objective on a SQLite study, with artifacts (curve PNG, model).
TRIAL = """
import json, sys


class Blocked:  # `import pandas` / `import matplotlib.pyplot` raise ImportError, as if not installed
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "pandas" or name == "matplotlib.pyplot":
            raise ImportError(f"{name} blocked by the test")


sys.meta_path.insert(0, Blocked())
import optuna
from regsweep import SearchSpace
from regsweep.artifacts import CURVE_ATTR, MODEL_ATTR
from regsweep.data import make_rings
from regsweep.objective import objective

optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.create_study(storage=sys.argv[1], study_name="light", sampler=optuna.samplers.RandomSampler(seed=0))
space = SearchSpace(depth=(1, 2), width=(2, 8), patience=(2, 3), max_epochs=2, batch_size=32)
data = make_rings(n=120, seed=0)
study.optimize(lambda trial: objective(trial, space, data, keep_top=1), n_trials=1)
trial = study.trials[0]
print(json.dumps({"state": trial.state.name, "epochs": trial.user_attrs.get("epochs"),
                  "artifacts": [key for key in (CURVE_ATTR, MODEL_ATTR) if key in trial.user_attrs],
                  "loaded": sorted(m for m in REPORTING if m in sys.modules)}))
"""

# The worker's curve step alone: a running trial of a SQLite study gets its PNG.
CURVE = """
import json, sys
import optuna
from regsweep.artifacts import CURVE_ATTR, artifact_dir, save_learning_curve, wait_for_curves

optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.create_study(storage=sys.argv[1], study_name="curve")
trial = study.ask()
artifact_id = save_learning_curve(study, trial, [0.9, 0.7, 0.6], [1.0, 0.8, 0.85])
wait_for_curves()
png = (artifact_dir(study) / artifact_id).read_bytes()[:4]
print(json.dumps({"recorded": study.trials[0].user_attrs.get(CURVE_ATTR) == artifact_id, "png": png == b"\\x89PNG",
                  "loaded": sorted(m for m in REPORTING if m in sys.modules)}))
"""


def _run(code: str, url: str, cwd) -> dict:
    result = subprocess.run([sys.executable, "-c", f"REPORTING = {REPORTING!r}\n{code}", url], capture_output=True,
                            text=True, timeout=300, cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_worker_trial_draws_its_curve_png_without_pandas_pyplot_or_plots(tmp_path):
    outcome = _run(TRIAL, f"sqlite:///{tmp_path / 'light.db'}", tmp_path)
    assert outcome["state"] == "COMPLETE" and outcome["epochs"] == 2
    assert outcome["artifacts"] == ["curve_artifact", "model_artifact"]  # the PNG was drawn and uploaded
    assert outcome["loaded"] == []


def test_drawing_a_trial_curve_loads_no_reporting_module(tmp_path):
    outcome = _run(CURVE, f"sqlite:///{tmp_path / 'curve.db'}", tmp_path)
    assert outcome == {"recorded": True, "png": True, "loaded": []}
