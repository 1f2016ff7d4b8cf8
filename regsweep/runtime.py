"""What this process may use of the machine (cores, TensorFlow threads), and how it starts others."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager


def usable_cores() -> int:
    """Cores this process may run on: CPU affinity and cgroup CPU quotas are respected.

    ``os.cpu_count()`` counts the host's cores: in a 2-CPU container on a 64-core host it says
    64. joblib's ``cpu_count`` (loky's) reads ``sched_getaffinity`` and the cgroup quota.
    Imported lazily: joblib pulls in numpy, and ``regsweep --help`` must stay fast.
    """
    from joblib import cpu_count

    return max(1, int(cpu_count(only_physical_cores=False)))


@contextmanager
def main_script_hidden() -> Iterator[None]:
    """Start processes (``spawn``) that never import the user's ``__main__`` script.

    ``spawn`` re-imports the parent's main script in every child, so a script that calls
    ``run_sweep(..., workers=2)`` without ``if __name__ == "__main__":`` would start workers
    that start workers. A worker needs nothing from that script (it rebuilds the space and
    the data from the study's record), so while workers start, the main module shows spawn
    neither a file nor a module name to re-import.
    """
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    missing = object()
    saved = {name: getattr(main, name, missing) for name in ("__file__", "__spec__")}
    if saved["__file__"] is not missing:
        del main.__file__
    main.__spec__ = None
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is missing:
                if hasattr(main, name):
                    delattr(main, name)
            else:
                setattr(main, name, value)


def setup_tensorflow(threads: int | None = None) -> None:
    """Quiet TensorFlow's logs and cap its thread pools; call before the first TF import.

    Args:
        threads: intra-op threads per process (inter-op gets 1 when capped); ``None`` keeps TF's default.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if threads is not None:
        for name in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
            os.environ[name] = str(threads)
        os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    import tensorflow as tf

    # Every trial traces a new model; TF's "triggered tf.function retracing" warning is expected.
    tf.get_logger().setLevel(logging.ERROR)
    if threads is not None:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # TF already initialised: the environment variables applied
            pass


def tensorflow_threads() -> dict[str, int]:
    """The thread caps TensorFlow runs with in this process (0 means TF's default)."""
    import tensorflow as tf

    return {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads()}
