"""What this process may use of the machine."""

from __future__ import annotations


def usable_cores() -> int:
    """Cores this process may run on: CPU affinity and cgroup CPU quotas are respected.

    ``os.cpu_count()`` counts the host's cores: in a 2-CPU container on a 64-core host it says
    64. joblib's ``cpu_count`` (loky's) reads ``sched_getaffinity`` and the cgroup quota.
    Imported lazily: joblib pulls in numpy, and ``regsweep --help`` must stay fast.
    """
    from joblib import cpu_count

    return max(1, int(cpu_count(only_physical_cores=False)))
