"""Connecting to Ray: a local cluster or an existing one, and nothing at import time.

``connect()`` starts Ray on this machine, or joins a cluster when an address is given
(``connect("auto")`` joins the one started by ``ray start --head`` on this machine,
``connect("ray://head:10001")`` a remote one); without an argument it reads
``NOBOUND_RAY_ADDRESS``. An already initialised Ray is used as it is, so a caller (or a
test) that called ``ray.init`` itself keeps its settings.

A local cluster's workers run at normal priority (Ray's default lowers them to niceness
15). Workers inherit the driver's BLAS thread settings (``OPENBLAS_NUM_THREADS`` …): the same
kernels with the same threads give the same floating-point results, which is what makes a
population evaluated on Ray equal the single-process one.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

from nobound.training.execution_plan import BLAS_THREAD_VARIABLES

ADDRESS_VARIABLE = "NOBOUND_RAY_ADDRESS"


def ray_module() -> ModuleType:
    """``import ray``, or one line saying how to get it."""
    try:
        import ray
    except ModuleNotFoundError as error:
        if error.name != "ray":
            raise
        raise RuntimeError("Ray is not installed: pip install 'nobound[ray]'") from None
    return ray


def worker_environment() -> dict[str, str]:
    """The environment variables the workers must share with the driver (BLAS threads)."""
    return {name: os.environ[name] for name in BLAS_THREAD_VARIABLES if name in os.environ}


def connect(address: str | None = None, num_cpus: int | None = None) -> Any:
    """Ray, initialised: joined to ``address`` (or ``$NOBOUND_RAY_ADDRESS``), else a
    local cluster of ``num_cpus`` CPUs (default: all). Returns the ``ray`` module."""
    ray = ray_module()
    if ray.is_initialized():
        return ray
    address = address or os.environ.get(ADDRESS_VARIABLE) or None
    options: dict[str, Any] = {"runtime_env": {"env_vars": worker_environment()},
                               "include_dashboard": False, "log_to_driver": False}
    if address is None:  # a local cluster, started here
        options["num_cpus"] = num_cpus
        # Ray starts workers at niceness 15: beside other jobs on a shared machine they
        # would get almost no CPU (0.5 % each here, beside training at niceness -10)
        options["_system_config"] = {"worker_niceness": 0}
    ray.init(address=address, **options)
    return ray
