"""Domain loaders: Reuters through Keras's loader from a local file, and scikit-learn's digits as images."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from regsweep.data import load_dataset
from regsweep.datasets import (
    SHARED_REUTERS, SMALL_REUTERS, default_reuters_path, load_digits, load_reuters, multi_hot, reuters_sequences,
)
from regsweep.errors import DataError

OFFICIAL_SHA256 = "d6586e694ee56d7a4e65172e12b3e987c03096cb01eab99753921ef915959916"


@pytest.fixture(scope="module")
def small():
    return load_reuters(SMALL_REUTERS)


def test_shipped_subset_is_small_and_in_keras_format():
    assert SMALL_REUTERS.stat().st_size < 300_000
    with np.load(SMALL_REUTERS, allow_pickle=True) as npz:
        assert sorted(npz.files) == ["x", "y"]
        assert npz["x"].dtype == object and isinstance(npz["x"][0], list)
        assert len(npz["x"]) == len(npz["y"]) == 600


def test_reuters_subset_is_multi_hot_with_46_topics_and_a_validation_split_from_train(small):
    # Keras's standard split keeps 80% (480) for training; 20% of those (96) are validation.
    assert small.task == "multiclass" and small.n_classes == 46 and small.loss == "sparse_categorical_crossentropy"
    assert small.x_train.shape == (384, 10000) and small.x_val.shape == (96, 10000)
    assert set(np.unique(small.x_train)) == {0.0, 1.0}
    assert small.y_train.dtype == np.int32 and 0 <= small.y_train.min() and small.y_train.max() <= 45
    (x_seq, y_seq), (x_test, _) = reuters_sequences(SMALL_REUTERS)
    assert len(x_seq) == 480 and len(x_test) == 120
    # validation = the first 96 training newswires (Keras already shuffled them), rows = their word sets
    np.testing.assert_array_equal(small.y_val, y_seq[:96])
    for row, sequence in zip(small.x_val[:5], x_seq[:5]):
        assert np.flatnonzero(row).tolist() == sorted(set(sequence))


def test_reuters_test_split_is_keras_test_part_held_out_and_rebuilt(small):
    data = load_reuters(SMALL_REUTERS, num_words=500, test=True)
    (_, _), (x_test, y_test) = reuters_sequences(SMALL_REUTERS, num_words=500)
    assert data.has_test and data.x_test.shape == (120, 500) and not small.has_test
    np.testing.assert_array_equal(data.y_test, y_test)
    assert data.source["test"] is True and load_dataset(data.source).fingerprint() == data.fingerprint()


def test_num_words_caps_the_vocabulary_with_keras_oov_index():
    data = load_reuters(SMALL_REUTERS, num_words=500, val_size=100)
    assert data.input_shape == (500,) and len(data.x_val) == 100
    (x_seq, _), _ = reuters_sequences(SMALL_REUTERS, num_words=500)
    assert max(max(s) for s in x_seq) <= 499 and any(2 in s for s in x_seq)  # 2 = Keras's OOV index


def test_loader_is_registered_and_rebuilds_the_same_data_from_its_source(small):
    assert small.source == {"kind": "reuters", "path": str(SMALL_REUTERS.resolve()), "num_words": 10000,
                            "val_size": None}
    again = load_dataset(json.loads(json.dumps(small.source)))
    assert again.fingerprint() == small.fingerprint()


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"path": "/nonexistent/reuters.npz"}, "reuters path"),
    ({"val_size": 480}, "val_size"),
    ({"val_size": 1.5}, "val_size"),
    ({"num_words": 2}, "num_words"),
])
def test_bad_reuters_arguments_name_the_field(kwargs, match):
    args = {"path": SMALL_REUTERS, **kwargs}
    with pytest.raises(DataError, match=match):
        load_reuters(args.pop("path"), **args)


def test_a_file_that_is_not_reuters_is_a_data_error(tmp_path):
    bad = tmp_path / "other.npz"
    np.savez(bad, a=np.arange(3))
    with pytest.raises(DataError, match="reuters path: cannot read"):
        load_reuters(bad)


def test_default_path_prefers_the_full_file_and_falls_back_to_the_shipped_subset(tmp_path):
    full = tmp_path / "reuters.npz"
    assert default_reuters_path(full) == SMALL_REUTERS  # no full file: the subset, which loads
    assert len(load_reuters(default_reuters_path(full)).x_train) == 384
    full.write_bytes(SMALL_REUTERS.read_bytes())
    assert default_reuters_path(full) == full
    (tmp_path / "folder.npz").mkdir()
    assert default_reuters_path(tmp_path / "folder.npz") == SMALL_REUTERS  # a folder is not the file


def test_multi_hot_marks_each_word_once():
    out = multi_hot([[1, 3, 3], [0]], 5)
    np.testing.assert_array_equal(out, [[0, 1, 0, 1, 0], [1, 0, 0, 0, 0]])


@pytest.mark.skipif(not SHARED_REUTERS.is_file(), reason="needs ../shared/data/reuters.npz")
def test_full_file_matches_keras_public_loader_from_its_cache(tmp_path):
    """Our local-file redirect gives exactly what load_data() returns from Keras's own cache (offline)."""
    if hashlib.sha256(SHARED_REUTERS.read_bytes()).hexdigest() != OFFICIAL_SHA256:
        pytest.skip("shared reuters.npz is not the official file; Keras would try to download")
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "reuters.npz").symlink_to(SHARED_REUTERS)
    code = ("import json, keras; (x, y), (xt, yt) = keras.datasets.reuters.load_data(num_words=10000); "
            "print(json.dumps([len(x), len(xt), y[:50].tolist(), x[7][:30], xt[-1][:30]]))")
    env = {**os.environ, "KERAS_HOME": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, check=True)
    expected = json.loads(out.stdout.strip().splitlines()[-1])
    (x, y), (xt, _) = reuters_sequences(SHARED_REUTERS)
    assert [len(x), len(xt), y[:50].tolist(), x[7][:30], xt[-1][:30]] == expected
    assert (len(x), len(xt)) == (8982, 2246)


def test_digits_are_8x8_images_in_unit_range():
    data = load_digits()
    assert data.input_shape == (8, 8) and data.n_classes == 10
    assert len(data.x_train) + len(data.x_val) == 1797 and len(data.x_val) == 359
    assert 0.0 <= data.x_train.min() and data.x_train.max() == 1.0
    assert load_dataset(data.source).fingerprint() == data.fingerprint()


def test_importing_the_datasets_module_does_not_import_tensorflow():
    code = "import sys, regsweep.datasets; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent)
    assert out.stdout.strip() == "False"
