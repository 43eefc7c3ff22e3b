"""Helpers shared by the certified-training benchmarks (``benchmarks/gls_*.py``).

Timings are the minimum over repeats after one warm-up call (the machine is shared, so the
minimum is the least disturbed measurement), in wall time (and, with
:func:`timed_with_cpu`, CPU time of all threads). The warm-up call runs under tracemalloc
(NumPy registers its buffers there) and gives the peak memory; it is never a timed call.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import tracemalloc
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from nobound.nn.init import ibp_init
from nobound.nn.zoo import build_model


def gls_parser(description: str | None, relaxations: bool = True) -> argparse.ArgumentParser:
    """The command line the GLS benchmarks share: ``--archs`` (and ``--relaxations``)."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="+", default=["cnn3_tiny", "cnn3"])
    if relaxations:
        parser.add_argument("--relaxations", nargs="+", default=["ibp", "deeppoly"])
    return parser


def mnist_batch(batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """A real MNIST training batch when ``$NOBOUND_DATA`` (or ../shared/data) has MNIST,
    else uniform noise with random labels (the bounds' cost barely depends on the pixels)."""
    roots = [os.environ.get("NOBOUND_DATA"), str(Path(__file__).parents[2] / "shared" / "data")]
    for root in filter(None, roots):
        try:
            from nobound.data import load_dataset

            data = load_dataset("mnist", "train", data_dir=root, limit=batch)
            return data.images.astype(np.float32), data.labels, "mnist"
        except Exception:  # noqa: BLE001 — any failure falls back to synthetic data
            continue
    rng = np.random.default_rng(seed)
    return (rng.uniform(size=(batch, 1, 28, 28)).astype(np.float32),
            rng.integers(0, 10, batch), "uniform-noise")


def mnist_model(arch: str, seed: int = 0) -> Any:
    model = build_model(arch, (1, 28, 28), 10)
    return ibp_init(model, seed)


class Seconds(NamedTuple):
    """Minimum wall and CPU seconds (all threads of the process) over the timed calls."""

    wall: float
    cpu: float


def timed(run: Callable[[], Any], repeats: int) -> tuple[float, int, Any]:
    """(minimum wall seconds over ``repeats`` timed calls, peak bytes of the warm-up call,
    the warm-up call's result)."""
    seconds, peak, result = timed_with_cpu(run, repeats)
    return seconds.wall, peak, result


def timed_with_cpu(run: Callable[[], Any], repeats: int) -> tuple[Seconds, int, Any]:
    """As :func:`timed`, with the minimum CPU seconds (all threads) next to the wall's."""
    peak, result = warm_up(run)
    return interleaved_minimum({"run": run}, repeats)["run"], peak, result


def warm_up(run: Callable[[], Any]) -> tuple[int, Any]:
    """(peak traced bytes — NumPy buffers — of one call, its result); the call also warms
    up caches and compiled kernels before timing."""
    tracemalloc.start()
    try:
        result = run()
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


def interleaved_minimum(runs: Mapping[str, Callable[[], Any]], repeats: int
                        ) -> dict[str, Seconds]:
    """name → minimum wall and CPU seconds over ``repeats`` rounds, each round calling every
    run once in turn, so a change of machine load hits all of them alike."""
    walls: dict[str, list[float]] = {name: [] for name in runs}
    cpus: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(max(repeats, 1)):
        for name, run in runs.items():
            start, cpu_start = time.perf_counter(), time.process_time()
            run()
            walls[name].append(time.perf_counter() - start)
            cpus[name].append(time.process_time() - cpu_start)
    return {name: Seconds(min(walls[name]), min(cpus[name])) for name in runs}


def machine() -> dict[str, Any]:
    return {"cpu_count": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "numpy": np.__version__,
            "blas_threads": {name: os.environ.get(name) for name in
                             ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")},
            "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None}


def write_results(path: str | Path, results: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path}")
