"""What this process may use of the machine, and how it starts others."""

from __future__ import annotations

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
