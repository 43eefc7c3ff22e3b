"""One local Ray cluster of 2 CPUs for every test in tests/distributed (started once:
starting Ray costs seconds)."""

from __future__ import annotations

import pytest

#: Ray waits 30 s (fixed) for its raylet; on a machine busy with other jobs that was too
#: short, so the start is tried again (only for that error)
ATTEMPTS = 3


@pytest.fixture(scope="package", autouse=True)
def local_cluster():
    ray = pytest.importorskip("ray")
    for attempt in range(ATTEMPTS):
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"OPENBLAS_NUM_THREADS": "1"}},
                     _system_config={"worker_niceness": 0})  # not starved when shared
            break
        except Exception as error:
            ray.shutdown()
            if attempt == ATTEMPTS - 1 or "timed out during startup" not in str(error):
                raise
    yield ray
    ray.shutdown()
