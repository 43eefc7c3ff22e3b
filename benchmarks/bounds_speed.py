"""Bound computation time and peak memory: nobound vs the same relaxations in PyTorch.

    python benchmarks/bounds_speed.py                  # the recorded run (~15 min, 1 thread)
    python benchmarks/bounds_speed.py --quick          # cnn3, MNIST shapes, 3 methods
    python benchmarks/bounds_speed.py --archs cnn5 --datasets cifar10 --methods deeppoly

Networks: cnn3, cnn5 (Table 9) and cnn7 (with BatchNorm, statistics re-estimated on the
first 16 inputs, then eval mode), Kaiming-uniform initialised (seed 0), with the dataset's
normalisation as layer 0. Inputs: the first ``--batch`` test images when the dataset is
found (``$NOBOUND_DATA``, ../shared/data), else uniform noise (recorded in the JSON);
MNIST shapes (1, 28, 28) at ε = 0.1, CIFAR-10 shapes (3, 32, 32) at ε = 2/255; the margin
specification of the labels.

The PyTorch side (``bounds_torch*.py``) implements the same method with the same rules,
shortcuts and row chunking as nobound; its bounds must equal nobound's to 1e-4 relative
(|Δ| ≤ 1e-4 (|ref| + mean |ref|), float32; 1e-3 for alpha-CROWN, whose sign-gradient
steps turn round-off into different slope moves) or the run stops before timing it. A
sample may be excused (at most 5% of them; recorded with its deviation) only if one of
its ReLUs sits within 1e-5 (u − l) of a switch of its relaxation — DeepPoly's
λ = 1[u > −l] at u = −l, HBox's l ≥ 0 — where round-off legitimately picks either side.

Protocol: each (configuration, implementation) runs in a fresh process with the same
thread count for NumPy's BLAS, Numba and PyTorch (``OMP/OPENBLAS/MKL/NUMBA_NUM_THREADS``,
``torch.set_num_threads``). Its first call is the warm-up and the memory measurement:
the peak resident set size during the call (the kernel's VmHWM, reset just before the call
through ``/proc/self/clear_refs``; where that is refused, the process peak) minus the
resident size just before it, for both implementations, plus for nobound the tracemalloc
peak (NumPy registers its buffers with tracemalloc; PyTorch's CPU allocator does not).
Both processes import nobound, whose glibc allocator settings (``host_memory.py``) thus
apply to PyTorch too. Then timed samples, each the mean of enough calls to last 0.2 s, as
many as fit ``--seconds`` (at least one, at most 5); medians of wall and process CPU time
over the samples. The order of the two implementations alternates between configurations.

cnn7 with DeepPoly/alpha-CROWN (one back-substitution row per unstable neuron, ~10¹³
multiply-adds per sample) and HBox (3,072 generators through 64-channel 32×32 layers) is
out of reach on this CPU at any batch that fits the time budget; ``--cnn7-batch N``
measures them at batch N anyway.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np
from engine_common import RESULTS_DIR, THREAD_VARIABLES, machine, print_table, write_results

SHAPES = {"mnist": ((1, 28, 28), 0.1), "cifar10": ((3, 32, 32), 2 / 255)}
METHODS = ("ibp", "hbox", "crown-ibp", "deeppoly", "alpha-crown")
EXPENSIVE_ON_CNN7 = ("hbox", "deeppoly", "alpha-crown")
TOLERANCE = 1e-4
# alpha-CROWN's sign-gradient steps amplify round-off: a gradient entry of ±1e-9 in one
# implementation and 0 (or ∓1e-9) in the other moves a slope by the whole step size
TOLERANCE_ALPHA = 1e-3
TIE = 1e-5  # relative closeness of a ReLU's bounds to its relaxation switch (see below)
MAX_EXCUSED = 0.05  # at most this share of samples may be excused as ambiguous


def build_inputs(arch: str, dataset: str, batch: int) -> tuple[Any, np.ndarray, np.ndarray,
                                                                str]:
    """(nobound model in eval mode, images, labels, data source)."""
    from nobound.autodiff import Tensor
    from nobound.data.specs import get_spec
    from nobound.nn import build_model, kaiming_uniform
    from nobound.nn.normalization import reset_batchnorm_statistics

    shape, _ = SHAPES[dataset]
    spec = get_spec(dataset)
    images, labels, source = None, None, "uniform-noise"
    roots = [os.environ.get("NOBOUND_DATA"), str(Path(__file__).parents[2] / "shared" / "data")]
    for root in filter(None, roots):
        try:
            from nobound.data import load_dataset

            data = load_dataset(dataset, "test", data_dir=root, limit=batch)
            images, labels, source = data.images.astype(np.float32), data.labels, dataset
            break
        except Exception:  # noqa: BLE001 — any failure falls back to synthetic data
            continue
    if images is None:
        rng = np.random.default_rng(0)
        images = rng.uniform(size=(batch, *shape)).astype(np.float32)
        labels = rng.integers(0, 10, batch)
    model = kaiming_uniform(build_model(arch, shape, 10, normalize=(spec.mean, spec.std)),
                            seed=0)
    # BatchNorm statistics from a few inputs, so cnn7's layers are normalised as trained
    reset_batchnorm_statistics(model, [Tensor(images[:16])])
    model.eval()
    return model, images, np.asarray(labels), source


def nobound_call(model: Any, images: np.ndarray, labels: np.ndarray, eps: float,
                 method: str) -> Any:
    from nobound.autodiff import Tensor
    from nobound.bounds import compute_bounds, linf_ball, margin_spec

    x = Tensor(images)
    spec = margin_spec(labels, 10)

    def run() -> tuple[np.ndarray, np.ndarray]:
        result = compute_bounds(model, linf_ball(x, eps), method=method, spec=spec)
        return np.asarray(result.lower.data), np.asarray(result.upper.data)

    return run


def torch_call(model: Any, images: np.ndarray, labels: np.ndarray, eps: float,
               method: str) -> Any:
    import torch
    from bounds_torch import METHODS as TORCH_METHODS
    from bounds_torch_alpha import alpha_crown
    from bounds_torch_network import margin_spec, torch_layers

    bound = alpha_crown if method == "alpha-crown" else TORCH_METHODS[method]

    layers = torch_layers(model, images.shape[1:])
    x = torch.from_numpy(images)
    lower, upper = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    spec = margin_spec(torch.from_numpy(labels).long(), 10)

    def run(recorded: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
        bound_lower, bound_upper = bound(layers, lower, upper, spec, recorded)
        return bound_lower.numpy(), bound_upper.numpy()

    return run


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith(field + ":"))
    return int(line.split()[1]) * 1024  # reported in kB


def reset_peak_resident() -> bool:
    """Restart the kernel's peak-RSS counter (VmHWM) at the current RSS; False if refused."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def relative_deviation(bounds: tuple[np.ndarray, ...], reference: tuple[np.ndarray, ...]
                       ) -> np.ndarray:
    """Per sample, max |Δ| / (|ref| + mean |ref|) over both bounds and all rows."""
    worst = np.zeros(bounds[0].shape[0])
    for value, ref in zip(bounds, reference, strict=True):
        scale = np.abs(ref) + np.abs(ref).mean()
        worst = np.maximum(worst, (np.abs(value - ref) / scale).max(axis=-1))
    return worst


def ambiguous_samples(method: str, recorded: dict, batch: int) -> np.ndarray:
    """Samples with a ReLU whose relaxation round-off can flip (within TIE · (u − l)).

    DeepPoly's λ = 1[u > −l] jumps at u = −l, and HBox keeps a neuron's generators only
    if l ≥ 0; a neuron that close to the switch may be relaxed differently by two correct
    implementations, so its sample's bounds differ beyond round-off. IBP has no switch.
    """
    mask = np.zeros(batch, dtype=bool)
    for lower, upper in recorded.values():
        lower, upper = lower.reshape(batch, -1).numpy(), upper.reshape(batch, -1).numpy()
        width = np.maximum(upper - lower, np.finfo(np.float32).tiny)
        if method == "hbox":
            near = (upper > 0) & (np.abs(lower) <= TIE * width)
        elif method == "ibp":
            near = np.zeros_like(lower, dtype=bool)
        else:
            near = (lower < 0) & (upper > 0) & (np.abs(upper + lower) <= TIE * width)
        mask |= near.any(axis=1)
    return mask


def check(args: argparse.Namespace, deviation: np.ndarray, ambiguous: np.ndarray,
          result: dict[str, Any]) -> bool:
    """Whether the bounds equal the reference's, ambiguous samples excused (recorded)."""
    tolerance = TOLERANCE_ALPHA if args.method == "alpha-crown" else TOLERANCE
    excused = ambiguous & (deviation > tolerance)
    result["max_relative_deviation"] = float(deviation[~excused].max(initial=0.0))
    result["ambiguous_samples"] = int(ambiguous.sum())
    result["excused_samples"] = {int(i): float(deviation[i]) for i in np.flatnonzero(excused)}
    if result["max_relative_deviation"] <= tolerance and \
            excused.sum() <= MAX_EXCUSED * len(deviation):
        return True
    print(f"MISMATCH {args.worker} vs reference on {args.arch}/{args.dataset}/{args.method}: "
          f"relative deviation {result['max_relative_deviation']:.3g} > {tolerance} "
          f"({int(excused.sum())} ambiguous samples excused)", file=sys.stderr)
    return False


def worker(args: argparse.Namespace) -> int:
    """One implementation on one configuration: warm-up + memory, check, timed calls."""
    shape, eps = SHAPES[args.dataset]
    model, images, labels, source = build_inputs(args.arch, args.dataset, args.batch)
    if args.worker == "torch":
        import torch

        torch.set_num_threads(args.threads)
        run = torch_call(model, images, labels, eps, args.method)
        context = torch.no_grad()
    else:
        from nobound.autodiff import no_grad

        run = nobound_call(model, images, labels, eps, args.method)
        context = no_grad()
    result: dict[str, Any] = {"data": source}
    with context:
        resident = _status_bytes("VmRSS")
        result["rss_peak_is_per_call"] = reset_peak_resident()
        if args.worker == "nobound":
            tracemalloc.start()
        recorded: dict | None = {} if args.worker == "torch" else None
        start = time.perf_counter()
        bounds = run(recorded) if recorded is not None else run()
        result["first_call_s"] = time.perf_counter() - start
        if args.worker == "nobound":
            result["traced_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
        result["rss_peak_delta_mb"] = (_status_bytes("VmHWM") - resident) / 2**20
        ambiguous = ambiguous_samples(args.method, recorded, len(labels)) \
            if recorded is not None else None
        if args.reference:
            with np.load(args.reference) as saved:
                deviation = relative_deviation(bounds, (saved["lower"], saved["upper"]))
                if ambiguous is None:
                    ambiguous = saved["ambiguous"]
            if not check(args, deviation, ambiguous, result):
                return 3
        np.savez(args.save, lower=bounds[0], upper=bounds[1],
                 ambiguous=ambiguous if ambiguous is not None else np.zeros(0, dtype=bool))
        # a sample is the mean of enough calls to last 0.2 s; as many samples as fit
        first = max(result["first_call_s"], 1e-4)
        calls = max(1, int(0.2 / first + 0.999))
        repeats = int(min(5, max(1, args.seconds // (first * calls))))
        walls, cpus = [], []
        for _ in range(repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(calls):
                run()
            walls.append((time.perf_counter() - wall) / calls)
            cpus.append((time.process_time() - cpu) / calls)
    result.update(wall_median=statistics.median(walls), cpu_median=statistics.median(cpus),
                  wall_samples=walls, cpu_samples=cpus, calls_per_sample=calls)
    Path(args.result).write_text(json.dumps(result))
    return 0


def run_worker(name: str, config: dict[str, Any], threads: int, seconds: float,
               directory: Path, reference: Path | None) -> dict[str, Any]:
    out = directory / f"{name}.json"
    save = directory / f"{name}.npz"
    command = [sys.executable, __file__, "--worker", name, "--arch", config["arch"],
               "--dataset", config["dataset"], "--method", config["method"],
               "--batch", str(config["batch"]), "--threads", str(threads),
               "--seconds", str(seconds), "--result", str(out), "--save", str(save)]
    if reference is not None:
        command += ["--reference", str(reference)]
    env = dict(os.environ, **{variable: str(threads) for variable in THREAD_VARIABLES})
    completed = subprocess.run(command, env=env, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"{name} worker failed on {config} (exit {completed.returncode})")
    return json.loads(out.read_text())


def configurations(args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[str]]:
    configs, skipped = [], []
    for arch in args.archs:
        for dataset in args.datasets:
            for method in args.methods:
                batch = args.batch
                if arch == "cnn7" and method in EXPENSIVE_ON_CNN7:
                    if args.cnn7_batch == 0:
                        skipped.append(f"{arch}/{dataset}/{method}")
                        continue
                    batch = args.cnn7_batch
                if method == "alpha-crown" and arch not in args.alpha_archs:
                    skipped.append(f"{arch}/{dataset}/{method}")
                    continue
                configs.append({"arch": arch, "dataset": dataset, "method": method,
                                "batch": batch, "eps": SHAPES[dataset][1]})
    return configs, skipped


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", nargs="+", default=["cnn3", "cnn5", "cnn7"])
    parser.add_argument("--datasets", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--alpha-archs", nargs="+", default=["cnn3"],
                        help="architectures alpha-CROWN runs on (it costs DeepPoly + 20 "
                             "output passes)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--cnn7-batch", type=int, default=0,
                        help="batch for cnn7 with hbox/deeppoly/alpha-crown (0: skip)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="time budget for the timed calls of one implementation")
    parser.add_argument("--quick", action="store_true",
                        help="cnn3, MNIST shapes, ibp/crown-ibp/deeppoly, batch 32")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "bounds_speed.json")
    # internal: one implementation on one configuration, in its own process
    parser.add_argument("--worker", choices=("nobound", "torch"), help=argparse.SUPPRESS)
    parser.add_argument("--arch", help=argparse.SUPPRESS)
    parser.add_argument("--dataset", help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    parser.add_argument("--reference", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    if args.quick:
        args.archs, args.datasets = ["cnn3"], ["mnist"]
        args.methods, args.batch, args.seconds = ["ibp", "crown-ibp", "deeppoly"], 32, 3.0
        if args.out == RESULTS_DIR / "bounds_speed.json":
            args.out = RESULTS_DIR / "quick" / "bounds_speed.json"
    configs, skipped = configurations(args)
    import torch  # noqa: F401 — imported so that machine() records its version

    measured_on = machine(args.threads)  # the load average at the start
    rows = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        for position, config in enumerate(configs):
            order = ("nobound", "torch") if position % 2 == 0 else ("torch", "nobound")
            directory = Path(scratch) / str(position)
            directory.mkdir()
            first = run_worker(order[0], config, args.threads, args.seconds, directory, None)
            second = run_worker(order[1], config, args.threads, args.seconds, directory,
                                directory / f"{order[0]}.npz")
            measured = dict(zip(order, (first, second), strict=True))
            row = {**config, "nobound": measured["nobound"], "torch": measured["torch"],
                   "max_relative_deviation": second["max_relative_deviation"],
                   "excused_samples": second["excused_samples"],
                   "ratio_wall": measured["nobound"]["wall_median"]
                   / measured["torch"]["wall_median"],
                   "ratio_cpu": measured["nobound"]["cpu_median"]
                   / measured["torch"]["cpu_median"]}
            rows.append(row)
            print(f"{config['arch']}/{config['dataset']}/{config['method']} b={config['batch']}:"
                  f" nobound {row['nobound']['wall_median']:.3g} s, torch "
                  f"{row['torch']['wall_median']:.3g} s, ratio {row['ratio_wall']:.2f}",
                  flush=True)
    table = [{"arch": r["arch"], "data": r["dataset"], "method": r["method"],
              "batch": r["batch"], "nobound s": r["nobound"]["wall_median"],
              "torch s": r["torch"]["wall_median"], "ratio wall": r["ratio_wall"],
              "ratio cpu": r["ratio_cpu"],
              "nobound MB (traced)": r["nobound"]["traced_peak_mb"],
              "nobound MB (rss)": r["nobound"]["rss_peak_delta_mb"],
              "torch MB (rss)": r["torch"]["rss_peak_delta_mb"],
              "max rel dev": r["max_relative_deviation"]} for r in rows]
    print_table(table, list(table[0]) if table else [])
    if skipped:
        print("skipped:", ", ".join(skipped))
    results = {"benchmark": "bounds_speed", "machine": measured_on,
               "settings": {"batch": args.batch, "cnn7_batch": args.cnn7_batch,
                            "threads": args.threads, "seconds": args.seconds,
                            "tolerance": TOLERANCE, "tolerance_alpha_crown": TOLERANCE_ALPHA,
                            "alpha_crown": "20 steps, step 0.1, "
                            "init deeppoly"},
               "rows": rows, "skipped": skipped,
               "total_seconds": time.perf_counter() - started}
    write_results(args.out.stem, results, args.out.parent)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
