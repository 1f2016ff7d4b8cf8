"""SweepSettings: one shape for the API, the study's record, worker jobs and the CLI."""

from __future__ import annotations

import argparse
import json

import pytest

from regsweep.errors import SettingsError
from regsweep.settings import RECORDED, SweepSettings, WorkerJob, given_settings


def _unusual(tmp_path) -> SweepSettings:
    """Every field away from its default, so a field lost in a round trip shows."""
    return SweepSettings(study="s1", storage=f"sqlite:///{tmp_path / 's.db'}", trials=7, workers=3, seed=11,
                         out=str(tmp_path / "out"), pruner="hyperband", sampler="random", recycle_after=5,
                         max_failures_in_a_row=4, progress=False, threads_per_worker=2, backend="dask",
                         scheduler="tcp://127.0.0.1:8786", repeats=2, keep_top=1, engine="keras",
                         objectives=("val_loss",), artifacts=str(tmp_path / "shared-artifacts"))


def test_settings_survive_a_json_round_trip(tmp_path):
    settings = _unusual(tmp_path)
    text = json.dumps(settings.to_dict())
    again = SweepSettings.from_dict(json.loads(text))
    assert again == settings
    defaults = SweepSettings().to_dict()
    # engine="keras" refuses slots, so the default slots engine makes its own round trip
    assert {k for k, v in settings.to_dict().items() if v != defaults[k]} == set(defaults) - {"objectives", "slots"}
    slots = SweepSettings(engine="slots", slots=3)
    assert SweepSettings.from_dict(json.loads(json.dumps(slots.to_dict()))) == slots
    multi = SweepSettings(objectives=("val_loss", "n_params"))
    assert SweepSettings.from_dict(json.loads(json.dumps(multi.to_dict()))).objectives == ("val_loss", "n_params")


def test_the_study_record_holds_the_recorded_settings_and_overrides_win(tmp_path):
    settings = _unusual(tmp_path)
    record = settings.record()
    assert record == {"total": 7, "seed": 11, "pruner": "hyperband", "sampler": "random", "repeats": 2,
                      "keep_top": 1, "objectives": ["val_loss"], "engine": "keras", "slots": None,
                      "artifacts": str((tmp_path / "shared-artifacts").resolve())}
    assert set(record) == set(RECORDED.values())
    assert "artifacts" not in SweepSettings().record()  # no folder given: the study keeps what it recorded
    back = SweepSettings.from_record({**record, "space": {}, "version": "x"}, study="s1", workers=2, trials=9)
    assert (back.trials, back.seed, back.sampler, back.pruner, back.repeats, back.keep_top, back.workers) == \
        (9, 11, "random", "hyperband", 2, 1, 2)
    assert back.artifacts == settings.artifacts
    assert SweepSettings.from_record({"total": 4}).seed == 0  # older records: missing settings take defaults


def test_the_engine_is_recorded_and_a_keras_override_drops_the_recorded_slots():
    record = SweepSettings(engine="slots", slots=3, trials=5).record()
    assert (record["engine"], record["slots"]) == ("slots", 3)
    resumed = SweepSettings.from_record(record, trials=8)
    assert (resumed.engine, resumed.open_slots, resumed.trials) == ("slots", 3, 8)
    switched = SweepSettings.from_record(record, engine="keras")
    assert (switched.engine, switched.slots) == ("keras", None)
    assert SweepSettings.from_record(record, slots=5).open_slots == 5
    assert SweepSettings.from_record({"total": 4}).engine == "keras"  # records from before the engine was kept


def test_default_slots_share_four_open_trials_among_the_workers():
    """Without ``slots``, one worker keeps 4 trials open and W workers 4 // W each (at least 1);
    a given ``slots`` is per worker whatever the workers, and a resumed study that recorded none
    follows the workers it resumes with."""
    assert [SweepSettings(workers=w).open_slots for w in (1, 2, 3, 4, 8)] == [4, 2, 1, 1, 1]
    assert SweepSettings(workers=2, slots=4).open_slots == 4
    record = SweepSettings(engine="slots", workers=1, trials=5).record()
    assert record["slots"] is None
    assert SweepSettings.from_record(record, workers=2).open_slots == 2


def test_an_unknown_or_bad_field_is_refused_by_name():
    with pytest.raises(SettingsError, match=r"^trails: not a sweep setting; allowed: study, storage, trials"):
        SweepSettings.from_dict({"trails": 5})
    with pytest.raises(SettingsError, match=r"^workers: got 'two'; allowed: an int >= 1"):
        SweepSettings.from_dict({"workers": "two"})
    with pytest.raises(SettingsError, match=r"^seed: got -1"):
        SweepSettings.from_record({"total": 3, "seed": -1})
    with pytest.raises(SettingsError, match=r"^settings: got list"):
        SweepSettings.from_dict([("trials", 3)])


def test_cli_flags_give_the_settings_named_like_them():
    args = argparse.Namespace(study="cli", storage=None, trials=12, workers=None, objectives=["val_loss"],
                              engine="keras", no_plots=True, data=None, progress=None)
    given = given_settings(args)
    assert given == {"study": "cli", "trials": 12, "objectives": ["val_loss"], "engine": "keras"}
    assert SweepSettings.from_dict(given) == SweepSettings(study="cli", trials=12, engine="keras")


def test_a_worker_job_reads_its_settings():
    settings = SweepSettings(study="job", trials=5)
    job = WorkerJob(settings=settings, space={}, data_source={"kind": "rings"})
    assert (job.study_name, job.total, job.storage_url) == ("job", 5, "sqlite:///studies/job.db")
