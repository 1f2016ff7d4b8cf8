"""The Dask backend's TensorFlow threads: a host's cores shared out among its Dask worker processes."""

from __future__ import annotations

import pytest

from regsweep.backends import dask_tf_threads, processes_per_host, worker_tf_threads
from regsweep.runtime import usable_cores


def test_threads_are_cores_over_worker_processes_per_host_not_over_threads_per_process():
    # `dask worker --nworkers 4 --nthreads 1` on an 8-core host A, `--nworkers 1 --nthreads 4` on 8-core host B
    workers = {f"tcp://10.0.0.1:{4000 + i}": {"host": "10.0.0.1", "nthreads": 1} for i in range(4)}
    workers["tcp://10.0.0.2:5000"] = {"host": "10.0.0.2", "nthreads": 4}
    per_host = processes_per_host(workers)
    assert per_host["tcp://10.0.0.1:4000"] == 4 and per_host["tcp://10.0.0.2:5000"] == 1
    assert [dask_tf_threads(8, per_host[a]) for a in sorted(workers)] == [2, 2, 2, 2, 8]  # 4 x 2 = 8 on host A
    assert dask_tf_threads(2, 4) == 1  # more processes than cores: one thread each, never zero


def test_local_dask_worker_processes_split_this_machines_cores():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, memory_limit=0) as cluster, distributed.Client(cluster) as client:
        per_host = processes_per_host(client.scheduler_info()["workers"])
        assert sorted(per_host.values()) == [2, 2]
        threads = client.gather([client.submit(worker_tf_threads, per_host, workers=[a], pure=False) for a in per_host])
    assert threads == [max(1, usable_cores() // 2)] * 2
