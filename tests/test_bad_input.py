"""Bad input is rejected before anything is written.

Every case runs against a folder holding one existing study. It must fail with one line naming
the field (exit code 2 on the CLI, a ``RegsweepError`` in Python), create no file or folder (no
``.db``, no out dir) and leave the existing study file byte-for-byte unchanged.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from regsweep import SearchSpace
from regsweep.data import from_arrays, from_csv, make_rings
from regsweep.errors import RegsweepError
from regsweep.runner import SweepSettings, resume_sweep, run_sweep, study_metadata
from regsweep.storage import open_study

ROOT = Path(__file__).resolve().parents[1]
STUDY = "rings"
SPACE_FILE = '''
from regsweep import SearchSpace
from regsweep.cli import sweep_main
from regsweep.data import make_rings

SPACE = SearchSpace({space})


def main(argv=None):
    return sweep_main("rings", SPACE, lambda args: make_rings(n=120, seed=0), argv=argv, trials=2)
'''


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A study file with the rings sweep's space and 120 rings samples, and one finished trial."""
    from sweeps.rings import SPACE

    folder = tmp_path_factory.mktemp("template")
    url = f"sqlite:///{folder / 'existing.db'}"
    settings = SweepSettings(study=STUDY, storage=url, trials=2)
    study = open_study(url, STUDY, meta=study_metadata(SPACE, make_rings(n=120, seed=0), settings, "rings"))
    trial = study.ask()
    study.tell(trial, 0.5)
    return folder / "existing.db"


@pytest.fixture
def world(tmp_path, template) -> Path:
    """tmp_path with a copy of the existing study and a few input files."""
    (tmp_path / "existing.db").write_bytes(template.read_bytes())
    (tmp_path / "a_file.txt").write_text("not a folder\n")
    np.savez(tmp_path / "x_1d.npz", x=np.arange(50.0), y=np.zeros(50))
    np.savez(tmp_path / "wrong_keys.npz", features=np.zeros((50, 2)), labels=np.zeros(50))
    np.savez(tmp_path / "mismatch.npz", x=np.zeros((50, 2)), y=np.zeros(49))
    np.savez(tmp_path / "val_shape.npz", x_train=np.zeros((50, 2)), y_train=np.zeros(50), x_val=np.zeros((10, 3)),
             y_val=np.zeros(10))
    (tmp_path / "garbage.npz").write_bytes(b"this is not a zip file")
    # integer labels that are not ids (e.g. -1/0/1) are class names now; a single class is not a task
    (tmp_path / "negative_labels.csv").write_text("a,b,y\n" + "".join(f"{i},{i % 3},7\n" for i in range(30)))
    # missing and text feature cells are fine now (imputed, one-hot); a missing label or an ambiguous target is not
    (tmp_path / "nan.csv").write_text("a,b,y\n1,2,0\n3,4,\n" + "".join(f"{i},{i},{i % 2}\n" for i in range(30)))
    (tmp_path / "text.csv").write_text("a,b,y\n" + "".join(f"{i},word{i},{float(i % 3)}\n" for i in range(30)))
    (tmp_path / "two_classes.csv").write_text("a,b,y\n" + "".join(f"{i},{i % 5},{i % 2}\n" for i in range(60)))
    (tmp_path / "one_column.csv").write_text("y\n" + "".join(f"{i % 2}\n" for i in range(30)))
    (tmp_path / "bad_reg.py").write_text(SPACE_FILE.format(space='regularizers=("none", "dropconnect")'))
    (tmp_path / "lam_reversed.py").write_text(SPACE_FILE.format(space="lam=(1e-1, 1e-6)"))
    (tmp_path / "other_space.py").write_text(SPACE_FILE.format(space="depth=(1, 2), max_epochs=2"))
    return tmp_path


def snapshot(folder: Path) -> dict[str, str]:
    """Every file and folder under ``folder`` with the hash of its bytes."""
    out = {}
    for path in sorted(folder.rglob("*")):
        if "__pycache__" in path.parts:
            continue
        out[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return out


EXISTING = "sqlite:///{w}/existing.db"
NEW = "sqlite:///{w}/new.db"
FILE_BASE = ["--study", STUDY, "--trials", "2", "--workers", "1", "--no-plots", "--no-progress"]
BASE = [*FILE_BASE, "--n", "120"]

# (case id, argv after the command, words the one-line message must contain)
SWEEP_CASES = [
    ("trials_negative", ["--storage", EXISTING, *BASE, "--trials", "-1"], ["--trials", "-1"]),
    ("trials_zero", ["--storage", EXISTING, *BASE, "--trials", "0"], ["--trials", "0"]),
    ("trials_not_a_number", ["--storage", EXISTING, *BASE, "--trials", "ten"], ["--trials", "ten"]),
    ("workers_zero", ["--storage", EXISTING, *BASE, "--workers", "0"], ["--workers", "0"]),
    ("seed_negative", ["--storage", EXISTING, *BASE, "--seed", "-3"], ["--seed", "-3"]),
    ("unknown_pruner", ["--storage", EXISTING, *BASE, "--pruner", "magic"], ["--pruner", "magic"]),
    ("unknown_sampler", ["--storage", EXISTING, *BASE, "--sampler", "grid"], ["--sampler", "grid"]),
    ("unknown_flag", ["--storage", EXISTING, *BASE, "--epochs", "3"], ["--epochs"]),
    ("storage_not_sql", ["--storage", "redis://localhost:6379/0", *BASE], ["storage", "redis"]),
    ("storage_not_a_url", ["--storage", "studies.db", *BASE], ["storage", "studies.db"]),
    ("storage_sqlite_without_path", ["--storage", "sqlite://", *BASE], ["storage", "path"]),
    ("storage_folder_is_a_file", ["--storage", "sqlite:///{w}/a_file.txt/new.db", *BASE], ["storage", "a_file.txt"]),
    ("storage_is_a_folder", ["--storage", "sqlite:///{w}", *BASE], ["storage"]),
    ("storage_unreachable_postgres", ["--storage", "postgresql://sweeper:hunter2@127.0.0.1:9/db", *BASE],
     ["storage", "127.0.0.1"]),
    ("study_name_with_space", ["--storage", NEW, *BASE, "--study", "my study"], ["study", "my study"]),
    ("study_name_empty", ["--storage", NEW, *BASE, "--study", ""], ["study"]),
    ("out_under_a_file", ["--storage", NEW, *BASE, "--out", "{w}/a_file.txt/plots"], ["out", "a_file.txt"]),
    ("data_missing_file", ["--storage", NEW, *BASE, "--data", "{w}/missing.npz"], ["missing.npz", "does not exist"]),
    ("data_wrong_shape", ["--storage", NEW, *BASE, "--data", "{w}/x_1d.npz"], ["x", "shape"]),
    ("data_wrong_arrays", ["--storage", NEW, *BASE, "--data", "{w}/wrong_keys.npz"], ["npz", "features"]),
    ("data_label_count", ["--storage", NEW, *BASE, "--data", "{w}/mismatch.npz"], ["y", "49 labels for 50"]),
    ("data_val_features", ["--storage", NEW, *BASE, "--data", "{w}/val_shape.npz"], ["x_val", "feature shape"]),
    ("data_not_npz", ["--storage", NEW, *BASE, "--data", "{w}/garbage.npz"], ["npz", "cannot read"]),
    ("single_class_labels", ["--storage", NEW, *BASE, "--data", "{w}/negative_labels.csv"], ["only one class", "7"]),
    ("missing_label", ["--storage", NEW, *BASE, "--data", "{w}/nan.csv"], ["'y'", "missing value"]),
    ("ambiguous_target", ["--storage", NEW, *BASE, "--data", "{w}/text.csv"], ["target 'y': float target", "ambiguous", "--task"]),
    ("single_column_csv", ["--storage", NEW, *BASE, "--data", "{w}/one_column.csv"], ["csv", "column"]),
    ("too_few_samples", ["--storage", NEW, *BASE, "--n", "5"], ["n:", "5"]),
    ("negative_noise", ["--storage", NEW, *BASE, "--noise", "-1"], ["noise", "-1"]),
    ("existing_study_other_data", ["--storage", EXISTING, *BASE, "--n", "200"], ["study", "different dataset"]),
    ("unknown_engine", ["--storage", NEW, *BASE, "--engine", "jax"], ["--engine", "jax"]),
    ("slots_zero", ["--storage", NEW, *BASE, "--engine", "slots", "--slots", "0"], ["--slots", "0"]),
    ("slots_too_many", ["--storage", NEW, *BASE, "--engine", "slots", "--slots", "300"], ["slots", "300", "256"]),
    ("slots_with_keras_engine", ["--storage", NEW, *BASE, "--engine", "keras", "--slots", "4"],
     ["slots", "4", "engine 'slots'"]),
    ("removed_pack_flag", ["--storage", NEW, *BASE, "--pack", "4"], ["unrecognized arguments", "--pack"]),
]
CLI_CASES = [
    ("unknown_regularizer", ["run", "{w}/bad_reg.py", "--storage", NEW, *FILE_BASE], ["regularizers", "dropconnect"]),
    ("lam_range_reversed", ["run", "{w}/lam_reversed.py", "--storage", NEW, *FILE_BASE], ["lam", "(0.1, 1e-06)"]),
    ("existing_study_other_space", ["run", "{w}/other_space.py", "--storage", EXISTING, *FILE_BASE],
     ["study", "different search space"]),
    ("unknown_sweep_module", ["run", "sweeps.nope"], ["sweep", "sweeps.nope"]),
    ("resume_missing_database", ["resume", "--study", STUDY, "--storage", NEW], ["storage", "new.db"]),
    ("resume_missing_study", ["resume", "--study", "other", "--storage", EXISTING], ["study", "other"]),
    ("status_missing_database", ["status", "--study", STUDY, "--storage", NEW], ["storage", "new.db"]),
    ("leaderboard_top_zero", ["leaderboard", "--study", STUDY, "--storage", EXISTING, "--top", "0"], ["--top", "0"]),
    ("leaderboard_unknown_format", ["leaderboard", "--study", STUDY, "--storage", EXISTING, "--format", "xls"],
     ["--format", "xls"]),
    ("unknown_command", ["frobnicate"], ["frobnicate"]),
]


def run_cli(command: list[str], argv: list[str], world: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    args = [a.format(w=world) for a in argv]
    return subprocess.run([sys.executable, *command, *args], cwd=world, env=env, capture_output=True, text=True,
                          timeout=300)


def check_rejected(done: subprocess.CompletedProcess, words: list[str], before: dict[str, str], world: Path) -> None:
    assert done.returncode == 2, done.stderr[-2000:] + done.stdout[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("regsweep: error:"), lines[0]
    for word in words:
        assert word.format(w=world) in lines[0], lines[0]
    assert "hunter2" not in done.stderr + done.stdout
    assert done.stdout == ""
    assert snapshot(world) == before  # no .db, no out dir, the existing study untouched


@pytest.mark.parametrize(("argv", "words"), [c[1:] for c in SWEEP_CASES], ids=[c[0] for c in SWEEP_CASES])
def test_sweep_command_rejects_bad_input_before_writing(world, argv, words):
    before = snapshot(world)
    check_rejected(run_cli(["-m", "sweeps.rings"], argv, world), words, before, world)


@pytest.mark.parametrize(("argv", "words"), [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_regsweep_command_rejects_bad_input_before_writing(world, argv, words):
    before = snapshot(world)
    check_rejected(run_cli(["-m", "regsweep.cli"], argv, world), words, before, world)


# -- the Python API ---------------------------------------------------------------------------------------
def _space() -> SearchSpace:
    from sweeps.rings import SPACE

    return SPACE


API_CASES = [
    ("trials_zero", lambda w: run_sweep(_space(), make_rings(n=120), study=STUDY, storage=NEW.format(w=w), trials=0), "trials"),
    ("trials_bool", lambda w: run_sweep(_space(), make_rings(n=120), study=STUDY, storage=NEW.format(w=w), trials=True), "trials"),
    ("workers_zero", lambda w: run_sweep(_space(), make_rings(n=120), study=STUDY, storage=NEW.format(w=w), workers=0), "workers"),
    ("seed_negative", lambda w: run_sweep(_space(), make_rings(n=120), study=STUDY, storage=NEW.format(w=w), seed=-1), "seed"),
    ("pruner_unknown", lambda w: run_sweep(_space(), make_rings(n=120), study=STUDY, storage=NEW.format(w=w), pruner="x"), "pruner"),
    ("storage_not_sql", lambda w: run_sweep(_space(), make_rings(n=120), study=STUDY, storage="redis://h/0"), "storage"),
    ("storage_dir_is_file", lambda w: run_sweep(_space(), make_rings(n=120), study=STUDY,
                                                storage=f"sqlite:///{w}/a_file.txt/x.db"), "storage"),
    ("study_name", lambda w: run_sweep(_space(), make_rings(n=120), study="a/b", storage=NEW.format(w=w)), "study"),
    ("out_is_a_file", lambda w: run_sweep(_space(), make_rings(n=120), study=STUDY, storage=NEW.format(w=w),
                                          out=str(w / "a_file.txt")), "out"),
    ("engine_unknown", lambda w: run_sweep(_space(), make_rings(n=120), study=STUDY, storage=NEW.format(w=w),
                                           engine="torch"), "engine"),
    ("slots_bool", lambda w: run_sweep(_space(), make_rings(n=120), study=STUDY, storage=NEW.format(w=w),
                                       engine="slots", slots=True), "slots"),
    ("slots_with_keras_engine", lambda w: run_sweep(_space(), make_rings(n=120), study=STUDY, storage=NEW.format(w=w),
                                                    engine="keras", slots=4), "slots"),
    ("slots_repeats_with_folds", lambda w: run_sweep(_space(), from_csv(w / "two_classes.csv", target="y", folds=3),
                                                     study=STUDY, storage=NEW.format(w=w), engine="slots", repeats=2),
     "repeats"),
    ("space_not_a_space", lambda w: run_sweep({"depth": 2}, make_rings(n=120), study=STUDY, storage=NEW.format(w=w)), "space"),
    ("dataset_not_a_dataset", lambda w: run_sweep(_space(), np.zeros((10, 2)), study=STUDY, storage=NEW.format(w=w)), "dataset"),
    ("other_space_on_existing", lambda w: run_sweep(SearchSpace(depth=(1, 2)), make_rings(n=120), study=STUDY,
                                                    storage=EXISTING.format(w=w)), "different search space"),
    ("other_data_on_existing", lambda w: run_sweep(_space(), make_rings(n=150), study=STUDY,
                                                   storage=EXISTING.format(w=w)), "different dataset"),
    ("resume_missing_study", lambda w: resume_sweep(study="nope", storage=EXISTING.format(w=w)), "nope"),
    ("resume_missing_database", lambda w: resume_sweep(study=STUDY, storage=NEW.format(w=w)), "new.db"),
    ("arrays_nan", lambda w: from_arrays(np.array([[1.0, np.nan]] * 20), np.zeros(20)), "NaN"),
    ("arrays_1d", lambda w: from_arrays(np.zeros(20), np.zeros(20)), "shape"),
    ("arrays_labels_out_of_range", lambda w: from_arrays(np.zeros((20, 2)), np.arange(20) % 3, task="binary"), "labels"),
    ("arrays_label_count", lambda w: from_arrays(np.zeros((20, 2)), np.zeros(19)), "19 labels"),
    ("arrays_unknown_task", lambda w: from_arrays(np.zeros((20, 2)), np.zeros(20), task="ranking"), "task"),
    ("space_unknown_regularizer", lambda w: SearchSpace(regularizers=("l3",)), "regularizers"),
    ("space_lam_reversed", lambda w: SearchSpace(lam=(1e-1, 1e-6)), "lam"),
    ("space_dropout_one", lambda w: SearchSpace(dropout=(0.0, 1.0)), "dropout"),
]


@pytest.mark.parametrize(("call", "word"), [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES])
def test_python_api_rejects_bad_input_before_writing(world, call, word):
    before = snapshot(world)
    with pytest.raises(RegsweepError) as caught:
        call(world)
    message = str(caught.value)
    assert word in message and "\n" not in message
    assert snapshot(world) == before


def test_the_matrix_covers_at_least_25_distinct_cases():
    assert len(SWEEP_CASES) + len(CLI_CASES) >= 25
    assert len({c[0] for c in SWEEP_CASES + CLI_CASES}) == len(SWEEP_CASES) + len(CLI_CASES)
