"""Helpers shared by the engine benchmarks (``benchmarks/engine_*.py``): threads, timing, output.

Fair comparison rules, applied by every engine benchmark:

* **Same threads.** NumPy's BLAS, Numba and PyTorch get the same thread count. BLAS
  libraries read it from the environment when they load, so :func:`use_threads` sets
  ``OMP/OPENBLAS/MKL/NUMBA_NUM_THREADS`` and re-executes the script once if they differ
  (``threadpoolctl`` is not needed); PyTorch gets ``torch.set_num_threads``.
* **Interleaved rounds.** :func:`interleaved` times the candidates alternately, round by
  round (the order flips every round), so a burst of load from other processes hits all
  of them alike. Each sample is a mean over enough calls to last ``min_seconds``.
* **Two clocks.** Wall time (``perf_counter``) is what a user waits; CPU time
  (``process_time``, all threads of the process) is what the work costs and is much less
  disturbed when the cores are shared. Both are reported as median and minimum over rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).parent / "results"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "NUMBA_NUM_THREADS")


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """``--threads`` (default: all cores) and ``--results-dir`` (default: results/)."""
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="threads for BLAS, Numba and PyTorch alike")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR,
                        help="where the JSON results go")


def use_threads(threads: int) -> None:
    """Make BLAS (and Numba) use ``threads`` threads, re-executing this process if needed.

    Call it first thing in ``main()``; the re-executed process finds the variables set and
    goes on. PyTorch is configured separately with :func:`torch_threads`.
    """
    wanted = str(threads)
    if all(os.environ.get(name) == wanted for name in THREAD_VARIABLES):
        return
    os.environ.update({name: wanted for name in THREAD_VARIABLES})
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def setup_threads_and_torch(threads: int) -> Any:
    """Fix BLAS/Numba threads (:func:`use_threads`, may re-execute), then import PyTorch
    with ``threads`` intra-op threads; exit with a clear message when it is missing."""
    use_threads(threads)
    try:
        import torch
    except ImportError:
        raise SystemExit("this benchmark compares with PyTorch; install torch (CPU) "
                         "first") from None
    torch.set_num_threads(threads)
    return torch


def interleaved(candidates: Mapping[str, Callable[[], Any]], rounds: int = 5,
                min_seconds: float = 0.2) -> dict[str, dict[str, float]]:
    """Seconds per call of each candidate: median and minimum over ``rounds`` samples.

    Two warm-up calls each (the first may pay one-time costs such as loading compiled
    kernels), then the number of calls per sample is chosen from the second so that a
    sample lasts at least ``min_seconds``. Returns ``{name: {"wall_median", "wall_min",
    "cpu_median", "cpu_min", "calls_per_sample", "rounds"}}``.
    """
    calls = {}
    for name, run in candidates.items():
        run()
        start = time.perf_counter()
        run()
        once = max(time.perf_counter() - start, 1e-6)
        calls[name] = max(1, int(min_seconds / once + 0.999))
    samples: dict[str, dict[str, list[float]]] = {n: {"wall": [], "cpu": []} for n in candidates}
    names = list(candidates)
    for round_index in range(rounds):
        for name in names if round_index % 2 == 0 else reversed(names):
            run, count = candidates[name], calls[name]
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(count):
                run()
            samples[name]["wall"].append((time.perf_counter() - wall) / count)
            samples[name]["cpu"].append((time.process_time() - cpu) / count)
    return {name: {"wall_median": statistics.median(s["wall"]), "wall_min": min(s["wall"]),
                   "cpu_median": statistics.median(s["cpu"]), "cpu_min": min(s["cpu"]),
                   "calls_per_sample": calls[name], "rounds": rounds}
            for name, s in samples.items()}


def ratio(numerator: Mapping[str, float], denominator: Mapping[str, float]) -> dict[str, float]:
    """numerator / denominator for each clock statistic (e.g. nobound time / PyTorch time)."""
    return {key: numerator[key] / denominator[key]
            for key in ("wall_median", "wall_min", "cpu_median", "cpu_min")}


def machine(threads: int) -> dict[str, Any]:
    """What the numbers were measured on (CPU, libraries, threads, load)."""
    import numpy as np

    from nobound.autodiff.ops._im2col import uses_compiled_kernels

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
    torch = sys.modules.get("torch")
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "threads": threads,
            "platform": platform.platform(), "python": platform.python_version(),
            "numpy": np.__version__, "blas": f"{blas.get('name')} {blas.get('version')}",
            "torch": getattr(torch, "__version__", None),
            "numba_kernels": uses_compiled_kernels(np.zeros(1)),
            "malloc_tuned": os.environ.get("NOBOUND_TUNE_MALLOC", "1") != "0",
            "load_average_start": os.getloadavg() if hasattr(os, "getloadavg") else None}


def write_results(name: str, results: dict[str, Any], directory: Path = RESULTS_DIR) -> Path:
    """Write ``results`` (plus the load average at the end) to <directory>/<name>.json."""
    if hasattr(os, "getloadavg"):
        results.setdefault("machine", {})["load_average_end"] = os.getloadavg()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path}")
    return path


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """A plain fixed-width table of the given columns (floats with 3 significant digits)."""
    def show(value: Any) -> str:
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    cells = [[show(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))
