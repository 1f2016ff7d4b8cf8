"""Saved models and learning curves in the study's artifact store; the best model reproduces its val_loss."""

from __future__ import annotations

import json

import optuna
import pytest

import regsweep
from regsweep.artifacts import (
    CURVE_ATTR, MODEL_ATTR, artifact_dir, export_best_model, model_artifacts, prune_models,
)
from regsweep.cli import main
from regsweep.errors import SettingsError
from regsweep.report import leaderboard

pytestmark = pytest.mark.slow


def _val_data_loss(model, dataset) -> float:
    return model.evaluate(dataset.x_val, dataset.y_val, batch_size=4096, verbose=0, return_dict=True)["data_loss"]


def test_artifacts_live_next_to_the_study(review_study):
    folder = artifact_dir(review_study.study)
    assert folder == (review_study.folder / "review" / "artifacts").resolve()
    assert folder.is_dir()


def test_every_finished_trial_has_its_learning_curve_png(review_study, tmp_path):
    from optuna.artifacts import download_artifact, get_all_artifact_meta

    from regsweep.artifacts import artifact_store

    for trial in review_study.study.get_trials(states=None):
        if trial.state.name != "COMPLETE":
            continue
        metas = get_all_artifact_meta(trial, storage=review_study.study._storage)
        assert [m.filename for m in metas] == [f"trial-{trial.number:04d}-curve.png"]
        assert metas[0].mimetype == "image/png" and metas[0].artifact_id == trial.user_attrs[CURVE_ATTR]
        target = tmp_path / f"{trial.number}.png"
        download_artifact(artifact_store=artifact_store(review_study.study), file_path=str(target),
                          artifact_id=metas[0].artifact_id)
        assert target.read_bytes()[:4] == b"\x89PNG"


def test_models_of_the_top_three_are_kept_and_each_new_best_was_saved(review_study):
    study = review_study.study
    board = leaderboard(study)
    stored = model_artifacts(study)
    assert sorted(stored) == sorted(board["trial"].head(3))
    for number, artifact_id in stored.items():
        assert (artifact_dir(study) / artifact_id).is_file()
    best_so_far = float("inf")
    for trial in sorted(study.trials, key=lambda t: t.number):
        if trial.state.name == "COMPLETE" and trial.value < best_so_far:
            best_so_far = trial.value
            assert MODEL_ATTR in trial.user_attrs, f"trial {trial.number} became the best but has no saved model"


def test_load_best_model_reproduces_the_leaderboard_val_loss(review_study):
    model = regsweep.load_best_model(review_study.study)
    assert model.optimizer is not None and model.compiled
    best = leaderboard(review_study.study).iloc[0]
    assert _val_data_loss(model, review_study.dataset) == pytest.approx(best["val_loss"], rel=1e-5)


def test_cli_best_export_writes_the_best_model(review_study, tmp_path, capsys):
    import keras

    path = tmp_path / "out" / "best.keras"
    assert main(["best", "--study", review_study.name, "--storage", review_study.url, "--export", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"wrote {path}" in out
    best = json.loads(out[: out.rindex("}") + 1])
    model = keras.models.load_model(path)
    assert _val_data_loss(model, review_study.dataset) == pytest.approx(best["val_loss"], rel=1e-5)


def test_export_errors_name_the_problem(review_study, failed_study, tmp_path):
    study = review_study.study
    without_model = sorted(set(range(4)) - set(model_artifacts(study)))[0]
    with pytest.raises(SettingsError, match=rf"trial: {without_model} .* no stored model"):
        export_best_model(study, tmp_path / "x.keras", trial_number=without_model)
    with pytest.raises(SettingsError, match=r"export: got .*model\.h5.*\.keras"):
        export_best_model(study, tmp_path / "model.h5")
    with pytest.raises(SettingsError, match="no complete trial"):
        regsweep.load_best_model(failed_study.study)


def test_prune_models_keeps_the_best_k(tmp_path):
    from review_studies import make_study

    made = make_study(tmp_path, "prune", trials=3, keep_top=3)
    study = made.study
    assert len(model_artifacts(study)) == 3
    removed = prune_models(study, 1)
    best = study.best_trial.number
    assert sorted(removed) == sorted(set(range(3)) - {best})
    assert list(model_artifacts(study)) == [best]
    assert sorted(p.name for p in artifact_dir(study).iterdir() if p.name in model_artifacts(study).values()) == \
        [model_artifacts(study)[best]]
    assert _val_data_loss(regsweep.load_best_model(study), made.dataset) == pytest.approx(study.best_value, rel=1e-5)
    # The study stays an ordinary Optuna study: Optuna's own API lists exactly the models left.
    from optuna.artifacts import get_all_artifact_meta

    again = optuna.load_study(study_name="prune", storage=made.url)
    metas = get_all_artifact_meta(again)
    assert [m.filename for m in metas] == [f"trial-{best:04d}-model.keras"]
    assert metas[0].artifact_id == model_artifacts(study)[best]


def test_artifacts_folder_is_recorded_in_the_study_and_used_by_every_reader(tmp_path, capsys):
    """``--artifacts DIR``: one artifact place for all workers, recorded in the study so resume,
    the review commands and Optuna's own API find it; a different folder later is refused."""
    from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta
    from review_studies import SPACE_ARGS

    from regsweep import SearchSpace
    from regsweep.data import make_rings
    from regsweep.cli import sweep_main
    from regsweep.errors import StorageError, StudyMismatchError
    from regsweep.settings import SweepSettings
    from regsweep.storage import load_study, study_meta

    shared = tmp_path / "nfs" / "store"
    url = f"sqlite:///{tmp_path / 'art.db'}"
    space = SearchSpace(**SPACE_ARGS)

    def sweep(*flags: str) -> int:
        return sweep_main("art", space, lambda args: make_rings(n=120, seed=0), argv=[
            "--storage", url, "--study", "art", "--workers", "1", "--sampler", "random", "--pruner", "none",
            "--no-plots", "--no-progress", "--keep-top", "1", "--out", str(tmp_path / "out"), *flags])

    assert sweep("--trials", "2", "--artifacts", str(shared)) == 0
    study = load_study(url, "art")
    assert study_meta(study)["artifacts"] == str(shared.resolve())
    assert artifact_dir(study) == shared.resolve()
    assert not (tmp_path / "art" / "artifacts").exists()  # nothing in the default place
    # A rerun without --artifacts (here: extending the sweep) keeps the recorded folder.
    assert sweep("--trials", "3") == 0
    study = load_study(url, "art")
    assert len(study.trials) == 3 and study_meta(study)["artifacts"] == str(shared.resolve())
    files = {p.name for p in shared.iterdir()}
    curves = {t.user_attrs[CURVE_ATTR] for t in study.trials}
    assert len(curves) == 3 and curves <= files  # the store names files by artifact id
    assert not (tmp_path / "art" / "artifacts").exists()
    # Readers: regsweep's best model, and Optuna's own artifact API on the same folder.
    model = regsweep.load_best_model(study)
    assert _val_data_loss(model, make_rings(n=120, seed=0)) == pytest.approx(study.best_value, rel=1e-5)
    metas = get_all_artifact_meta(optuna.load_study(study_name="art", storage=url))
    assert [m.filename for m in metas] == [f"trial-{study.best_trial.number:04d}-model.keras"]
    with FileSystemArtifactStore(shared).open_reader(metas[0].artifact_id) as reader:
        assert reader.read(2) == b"PK"  # a .keras file is a zip
    # Another folder for the same study is refused, with nothing changed.
    capsys.readouterr()
    assert sweep("--trials", "4", "--artifacts", str(tmp_path / "elsewhere")) == 2
    assert "artifacts:" in capsys.readouterr().err
    assert len(load_study(url, "art").trials) == 3 and not (tmp_path / "elsewhere").exists()
    with pytest.raises(StudyMismatchError, match="artifacts"):
        regsweep.run_sweep(space, make_rings(n=120, seed=0), study="art", storage=url, trials=4,
                           artifacts=str(tmp_path / "elsewhere"), progress=False)
    # A folder that cannot be one: the error names the setting.
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(StorageError, match="^artifacts:"):
        SweepSettings(study="art", artifacts=str(blocker / "store"))


def test_a_curve_is_recorded_while_its_trial_runs_and_drawn_off_the_training_loop(sqlite_url):
    """save_learning_curve writes the artifact's metadata and the trial's curve_artifact in one
    commit and returns; the curve thread puts the PNG in the store (wait_for_curves waits for it)."""
    from optuna.artifacts import get_all_artifact_meta
    from sqlalchemy import event

    from regsweep.artifacts import artifact_store, save_learning_curve, wait_for_curves
    from regsweep.storage import make_storage

    study = optuna.create_study(study_name="curves", storage=make_storage(sqlite_url, heartbeat=False))
    trial, store = study.ask(), artifact_store(study)
    commits = []
    event.listen(study._storage._backend.engine, "commit", lambda connection: commits.append(1))
    artifact_id = save_learning_curve(study, trial, [0.9, 0.7, 0.6], [1.0, 0.8, 0.85], store=store)
    assert len(commits) == 1
    (meta,) = get_all_artifact_meta(study.trials[0], storage=study._storage)
    assert (meta.artifact_id, meta.filename, meta.mimetype) == (artifact_id, "trial-0000-curve.png", "image/png")
    assert study.trials[0].user_attrs[CURVE_ATTR] == artifact_id
    wait_for_curves()
    assert (artifact_dir(study) / artifact_id).read_bytes()[:4] == b"\x89PNG"
    study.tell(trial, 0.8)


def test_a_curve_that_cannot_be_written_is_a_warning_not_a_failure(sqlite_url, caplog):
    import shutil

    from regsweep.artifacts import artifact_store, save_learning_curve, wait_for_curves
    from regsweep.storage import make_storage

    study = optuna.create_study(study_name="curves", storage=make_storage(sqlite_url, heartbeat=False))
    trial = study.ask()
    store = artifact_store(study)
    shutil.rmtree(artifact_dir(study))  # the folder is gone when the curve thread writes
    with caplog.at_level("WARNING"):
        save_learning_curve(study, trial, [0.9, 0.7], [1.0, 0.8], store=store)
        wait_for_curves()
    assert "trial 0: could not draw its learning curve" in caplog.text
    study.tell(trial, 0.8)
    assert study.trials[0].state.name == "COMPLETE"
