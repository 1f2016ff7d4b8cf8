"""Domain datasets: Reuters newswire topics (multi-hot text) and scikit-learn's 8x8 digits (images).

:func:`regsweep.data.load_dataset` knows both kinds, so a worker rebuilds them from a study's
recorded ``source`` (``{"kind": "reuters", ...}``) without pickled arrays. No function here
touches the network.

Example:
    >>> data = load_reuters("tests/data/reuters_small.npz")  # doctest: +SKIP
    >>> data.x_train.shape[1], data.n_classes  # doctest: +SKIP
    (10000, 46)
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from regsweep.arrays import Dataset, from_arrays
from regsweep.errors import DataError

_logger = logging.getLogger(__name__)

REUTERS_CLASSES = 46
# Where the full file lives: the ``shared/`` folder cloned beside the repository.
_REPO = Path(__file__).resolve().parents[1]
SHARED_REUTERS = _REPO.parent / "shared" / "data" / "reuters.npz"
# A 600-newswire subset in the same format, shipped for tests (see tests/data/README.md).
SMALL_REUTERS = _REPO / "tests" / "data" / "reuters_small.npz"


def default_reuters_path(full: Path = SHARED_REUTERS) -> Path:
    """The full file (``../shared/data/reuters.npz``) when present, else the shipped 600-newswire subset."""
    return full if full.is_file() else SMALL_REUTERS


@contextlib.contextmanager
def _keras_reads_local_file(path: Path) -> Iterator[None]:
    """Point ``keras.datasets.reuters.load_data`` at a local file instead of its download.

    Keras >= 3.10 rejects a path as ``load_data(path=...)`` and checks the official hash
    (a subset would trigger a download), so its ``get_file`` is swapped for the local path
    while loading; the reading (restricted unpickler), shuffling and splitting stay Keras's.
    """
    import keras.src.datasets.reuters as keras_reuters

    original = keras_reuters.get_file
    keras_reuters.get_file = lambda *args, **kwargs: str(path)
    try:
        yield
    finally:
        keras_reuters.get_file = original


def reuters_sequences(path: str | Path | None = None, *, num_words: int = 10000) -> tuple[tuple[Any, Any], tuple[Any, Any]]:
    """Keras's standard split of a ``reuters.npz``: ``(x_train, y_train), (x_test, y_test)`` word-index lists.

    Args:
        path: the file (default: :func:`default_reuters_path`).
        num_words: keep the most frequent words; rarer ones become the out-of-vocabulary index 2.
    """
    file = Path(path) if path is not None else default_reuters_path()
    if not file.is_file():
        raise DataError(f"reuters path: file {str(file)!r} does not exist; allowed: a reuters.npz as "
                        f"keras.datasets.reuters reads it (e.g. {str(SHARED_REUTERS)!r})")
    if isinstance(num_words, bool) or not isinstance(num_words, int) or num_words < 4:
        raise DataError(f"num_words: got {num_words!r}; allowed: an int >= 4")
    from regsweep.runtime import setup_tensorflow

    setup_tensorflow()
    import keras

    try:
        with _keras_reads_local_file(file.resolve()):
            return keras.datasets.reuters.load_data(num_words=num_words, test_split=0.2, seed=113)
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"reuters path: cannot read {str(file)!r} ({exc}); allowed: an .npz with arrays x "
                        f"(word-index lists) and y (topic ids)") from exc


def multi_hot(sequences: Any, num_words: int) -> np.ndarray:
    """Sequences of word indices as ``(n, num_words)`` float32 rows of 0/1."""
    out = np.zeros((len(sequences), num_words), dtype=np.float32)
    for row, sequence in enumerate(sequences):
        out[row, np.asarray(sequence, dtype=np.int64)] = 1.0
    return out


def _val_count(val_size: int | float | None, n_train: int) -> int:
    """Newswires held out for validation: the notes' 1000, or a fraction for small files."""
    if val_size is None:
        return 1000 if n_train >= 5000 else max(1, round(0.2 * n_train))
    if isinstance(val_size, float) and 0 < val_size < 1:
        return max(1, round(val_size * n_train))
    if isinstance(val_size, int) and not isinstance(val_size, bool) and 0 < val_size < n_train:
        return val_size
    raise DataError(f"val_size: got {val_size!r} for {n_train} training newswires; allowed: an int in "
                    f"[1, {n_train - 1}], a fraction in (0, 1) or None (1000, or 20% below 5000)")


def load_reuters(path: str | Path | None = None, *, num_words: int = 10000,
                 val_size: int | float | None = None, test: bool = False) -> Dataset:
    """Reuters newswire topics: multi-hot words, 46 topic ids, validation taken from the training split.

    Keras's standard split (80% train, 20% test, shuffle seed 113) is kept; with ``test`` its
    test part (2,246 newswires in the full file) is the dataset's held-out test split, which no
    trial sees (the top-K models are measured on it after the sweep); without, it is not used. The first ``val_size`` training newswires (already shuffled) are the
    validation set, as in the notes (``x_val = x_train[:1000]``).

    Args:
        path: a ``reuters.npz`` (default: the shared full file, else the shipped subset).
        num_words: vocabulary size = input width.
        val_size: validation newswires (int) or fraction; ``None``: 1000, or 20% for files
            with fewer than 5000 training newswires.
        test: keep Keras's test part as the held-out test split.

    Raises:
        DataError: the file is missing or unreadable, or a bad ``num_words``/``val_size``.
    """
    file = (Path(path) if path is not None else default_reuters_path()).resolve()
    (x_seq, y), (x_test_seq, y_test) = reuters_sequences(file, num_words=num_words)
    n_val = _val_count(val_size, len(x_seq))
    x = multi_hot(x_seq, num_words)
    source: dict[str, Any] = {"kind": "reuters", "path": str(file), "num_words": num_words, "val_size": val_size}
    held_out: dict[str, Any] = {}
    if test:
        source["test"] = True
        held_out = {"x_test": multi_hot(x_test_seq, num_words), "y_test": y_test}
    name = "reuters" if len(x_seq) >= 5000 else file.stem
    return from_arrays(x[n_val:], y[n_val:], x_val=x[:n_val], y_val=y[:n_val], task="multiclass",
                       n_classes=REUTERS_CLASSES, name=name, source=source, **held_out)


def load_digits(*, val_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes) as (8, 8) images in [0, 1].

    Images keep their 2-D shape so the augmentation layers (rotation, shift, zoom, shear)
    apply; the model flattens them after augmentation.
    """
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = (bunch.images / 16.0).astype(np.float32)
    source = {"kind": "digits", "val_fraction": val_fraction, "seed": seed}
    return from_arrays(images, bunch.target, val_fraction=val_fraction, seed=seed, task="multiclass",
                       n_classes=10, name="digits", source=source)

