"""One local Ray cluster of 2 CPUs for every test in tests/distributed (started once:
starting Ray costs seconds)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="package", autouse=True)
def local_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OPENBLAS_NUM_THREADS": "1"}},
             _system_config={"worker_niceness": 0})  # not starved on a shared machine
    yield ray
    ray.shutdown()
