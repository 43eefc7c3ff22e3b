"""nobound's bounds beside auto_LiRPA's: same weights, same inputs, same specification.

Run with the benchmark-only environment that has auto_LiRPA and PyTorch (see
../shared/peers/README.md; never a dependency of nobound):

    ../peer-venv/bin/python benchmarks/bounds_autolirpa.py --archs cnn3 cnn5 --repeats 5

For each architecture (MNIST shapes, Kaiming-uniform weights of seed 0, no Normalize layer
so both see the same function) and each relaxation — IBP, CROWN-IBP and DeepPoly (auto_LiRPA's
"IBP", "CROWN-IBP", "CROWN") — both implementations bound the margins C · f(x) (C the 9
margin rows of each sample) over the l∞ ball of radius eps around a batch of inputs, lower
and upper, on one thread in float32. The calls are interleaved in one process (nobound, then
auto_LiRPA, repeated), so background load hits both alike; each call's CPU time (of this
single-threaded process: what a busy machine perturbs least) and wall time are recorded, and
the minimum over repeats of the CPU time is the reported time, with the load average before
and after. auto_LiRPA's repeats can scatter widely even on a quiet machine (the ninth
round in docs/benchmarks.md), which makes its minimum a lucky draw; the ratio of the median
CPU times is recorded beside (``median_ratio``). The bounds
are compared (relative to the largest bound) so the times are of the same computation.

Trained networks (``--model PATH --images mnist``, e.g. a network ``nobound train --normalize
none`` wrote, on the first MNIST test images): there the two DeepPoly bounds can differ
beyond round-off, nobound's never looser (counted per margin: ``tighter/looser``). Both take
a neuron that an interval pre-check proves stable as exact; auto_LiRPA decides per neuron
over the whole batch (a neuron unstable in any sample gets back-substituted bounds in every
sample, which may be looser than the pre-check's), nobound per sample. With auto_LiRPA's
rule emulated (``--batch-stability``), nobound's bounds match its to float32 round-off and
both back-substitute the same rows.

The process runs with the glibc allocator settings the ``nobound`` command applies at start
(:func:`nobound.host_memory.tune_host_allocator`: freed blocks below 256 MiB are reused
instead of mapped afresh); they are process-wide, so auto_LiRPA's PyTorch allocations get
them too. ``--no-tune-malloc`` measures with glibc's defaults.

Each row also carries the multiply-adds the algorithm needs (:func:`multiply_adds`) and the
time they would take at this core's measured single-thread float32 matrix-product rate — a
floor no implementation of the algorithm can beat.
"""

from __future__ import annotations

import os

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager, nullcontext  # noqa: E402
from math import prod  # noqa: E402
from pathlib import Path  # noqa: E402
from statistics import median  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

PEER = {"ibp": "IBP", "crown-ibp": "CROWN-IBP", "deeppoly": "CROWN"}
RESULTS = Path(__file__).parent / "results"


def build(arch: str, batch: int, eps: float, seed: int = 0, model_path: Path | None = None,
          images: str = "uniform") -> dict[str, Any]:
    """The nobound model, its PyTorch twin with the same weights, inputs, labels, C.

    The model: Kaiming-uniform weights of ``seed``, or the network stored at ``model_path``
    (e.g. one ``nobound train --normalize none`` wrote). The inputs: uniform noise in
    [0, 1] with random labels, or (``images="mnist"``) the first ``batch`` MNIST test images
    with their labels (``$NOBOUND_DATA``)."""
    import torch

    from nobound.nn import build_model, kaiming_uniform

    if model_path is None:
        model = kaiming_uniform(build_model(arch, (1, 28, 28), 10), seed=seed)
    else:
        from nobound.io.models import load_model_checkpoint

        model = load_model_checkpoint(model_path).model
    model.eval()
    layers = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Conv2d":
            torch_layer = torch.nn.Conv2d(layer.in_channels, layer.out_channels,
                                          layer.kernel_size, layer.stride, layer.padding)
        elif kind == "Linear":
            torch_layer = torch.nn.Linear(layer.in_features, layer.out_features)
        elif kind == "ReLU":
            torch_layer = torch.nn.ReLU()
        elif kind == "Flatten":
            torch_layer = torch.nn.Flatten()
        else:
            raise ValueError(f"{kind} is not part of this comparison")
        layers.append(torch_layer)
    twin = torch.nn.Sequential(*layers)
    state = {name: torch.from_numpy(np.asarray(p.data, dtype=np.float32).copy())
             for name, p in model.named_parameters()}
    twin.load_state_dict(state)
    twin.eval()
    if images == "mnist":
        from nobound.data import load_dataset

        test = load_dataset("mnist", "test")
        inputs = np.asarray(test.images[:batch], dtype=np.float32)
        labels = np.asarray(test.labels[:batch])
    else:
        rng = np.random.default_rng(seed)
        inputs = rng.uniform(0.0, 1.0, (batch, 1, 28, 28)).astype(np.float32)
        labels = rng.integers(0, 10, batch)
    return {"model": model, "twin": twin, "images": inputs, "labels": labels, "eps": eps}


@contextmanager
def batch_stability_rule() -> Iterator[None]:
    """Within: nobound's DeepPoly takes auto_LiRPA's rule for which neurons get rows.

    auto_LiRPA back-substitutes a neuron in every sample when an interval bound leaves it
    unstable in any sample of the batch, and keeps the interval bound only for neurons
    stable in all; nobound decides per sample. Emulated here (benchmark only) by widening
    the pre-check's bound to straddle 0 in the samples where such a neuron is stable, so
    both tools compute the same bounds on the same rows."""
    import nobound.bounds.deeppoly as deeppoly
    from nobound.autodiff import Tensor

    per_sample = deeppoly.interval_precheck

    def per_batch(network: Any, end: int, box: Any, recorded: Any) -> tuple[Any, Any]:
        low, high = per_sample(network, end, box, recorded)
        if not recorded:  # the first ReLU: eq. (3) is its bound, not a pre-check
            return low, high
        unstable = (low.data < 0) & (high.data > 0)
        widen = unstable.any(axis=1, keepdims=True) & ~unstable  # (P', B, *n)
        tiny = np.finfo(low.data.dtype).tiny
        return (Tensor(np.where(widen, np.minimum(low.data, -tiny), low.data)),
                Tensor(np.where(widen, np.maximum(high.data, tiny), high.data)))

    deeppoly.interval_precheck = per_batch
    try:
        yield
    finally:
        deeppoly.interval_precheck = per_sample


def nobound_runner(case: dict[str, Any], method: str, batch_rule: bool = False) -> Any:
    from nobound.autodiff import Tensor, no_grad
    from nobound.bounds import BoundsPlan, compute_bounds, linf_ball, margin_spec

    x = Tensor(case["images"])
    region = linf_ball(x, case["eps"])
    spec = margin_spec(case["labels"], 10, dtype=np.float32)

    # auto_LiRPA's rule is per batch: nobound's sample groups would make it per group
    plan = BoundsPlan(sample_groups="never") if batch_rule else BoundsPlan()

    def run() -> tuple[np.ndarray, np.ndarray]:
        with no_grad(), (batch_stability_rule() if batch_rule else nullcontext()):
            result = compute_bounds(case["model"], region, method=method, spec=spec,
                                    plan=plan)
        return np.asarray(result.lower.data), np.asarray(result.upper.data)

    return run


def peer_runner(case: dict[str, Any], method: str) -> Any:
    import torch
    from auto_LiRPA import BoundedModule, BoundedTensor, PerturbationLpNorm

    from nobound.bounds import margin_spec

    images = torch.from_numpy(case["images"])
    bounded = BoundedModule(case["twin"], torch.empty_like(images), device="cpu",
                            verbose=False)
    lower = (images - case["eps"]).clamp(0, 1)
    upper = (images + case["eps"]).clamp(0, 1)
    perturbation = PerturbationLpNorm(norm=float("inf"), eps=case["eps"], x_L=lower, x_U=upper)
    x = BoundedTensor(images, perturbation)
    spec = torch.from_numpy(margin_spec(case["labels"], 10, dtype=np.float32))

    def run() -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            low, high = bounded.compute_bounds(x=(x,), C=spec, method=PEER[method])
        return low.numpy(), high.numpy()

    return run


def layer_multiply_adds(model: Any) -> list[tuple[str, int, tuple[int, ...]]]:
    """(kind, multiply-adds of one forward pass of one sample, output shape) per layer."""
    from nobound.bounds.network import Network

    network = Network.from_model(model, (1, 28, 28))
    out = []
    for step in network.steps:
        kind = type(step).__name__
        if kind == "ConvStep":
            kernel = prod(step.weight.shape[-3:])
            out.append((kind, prod(step.output_shape) * kernel, step.output_shape))
        elif kind == "LinearStep":
            out.append((kind, prod(step.weight.shape[-2:]), step.output_shape))
        else:
            out.append((kind, 0, step.output_shape))
    return out


def multiply_adds(model: Any, method: str, batch: int, unstable: dict[int, float],
                  rows: int = 9) -> int:
    """Multiply-adds the textbook algorithm needs for one batch (counting A·W and A·x only).

    * IBP: two passes (centre W c, radius |W| r) through every dense layer.
    * CROWN-IBP: IBP, then the ``rows`` rows of C back through every layer — once while
      the lower and upper coefficients coincide (after the last ReLU), twice before — and
      eq. (2) with two products per side over the input.
    * DeepPoly: for every ReLU, one back-substitution row per neuron left unstable
      (``unstable[index]``: the mean count per sample, measured), through the layers before
      it, both sides; the first ReLU's input is exact by eq. (3); then the output pass.
    """
    layers = layer_multiply_adds(model)
    inputs = 28 * 28
    ibp = 2 * sum(macs for _, macs, _ in layers)

    def back(end: int, count: float) -> float:
        """``count`` rows of node ``end`` back to the input, both sides after a ReLU."""
        total, sides = 0.0, 1
        for index in range(end, -1, -1):
            kind, macs, _ = layers[index]
            if kind == "ReluStep":
                sides = 2
            total += sides * count * macs  # a row through a layer: its forward cost
        return total + 2 * sides * count * inputs  # eq. (2): A c and |A| r per side

    output = back(len(layers) - 1, rows)
    if method == "ibp":
        return int(batch * ibp)
    if method == "crown-ibp":
        return int(batch * (ibp + output))
    relus = [i for i, (kind, _, _) in enumerate(layers) if kind == "ReluStep"]
    total = 2 * layers[0][1]  # the first ReLU's input by eq. (3)
    for index in relus[1:]:
        total += back(index - 1, unstable.get(index, 0.0))
    return int(batch * (total + output))


def matmul_rate(seconds: float = 1.0) -> float:
    """Multiply-adds per second of a float32 matrix product on one thread (the floor)."""
    a = np.random.default_rng(0).standard_normal((512, 512)).astype(np.float32)
    b = a.copy()
    best, start = float("inf"), time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.process_time()
        a @ b
        best = min(best, time.process_time() - t)
    return 512 ** 3 / best


def unstable_counts(case: dict[str, Any]) -> dict[int, float]:
    """Mean number of unstable neurons per sample at each ReLU (DeepPoly's bounds)."""
    from nobound.autodiff import Tensor
    from nobound.bounds import compute_bounds, linf_ball

    result = compute_bounds(case["model"], linf_ball(Tensor(case["images"]), case["eps"]),
                            method="deeppoly")
    counts = {}
    for index, (lower, upper) in result.intermediate.items():
        unstable = (lower.data < 0) & (upper.data > 0)
        counts[index] = float(unstable.reshape(len(unstable), -1).sum(axis=1).mean())
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", nargs="+", default=["cnn3", "cnn5"])
    parser.add_argument("--methods", nargs="+", default=list(PEER), choices=list(PEER))
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS / "bounds_autolirpa.json")
    parser.add_argument("--no-tune-malloc", action="store_true",
                        help="keep glibc's default allocator thresholds")
    parser.add_argument("--model", type=Path,
                        help="a trained network (nobound checkpoint without a Normalize "
                             "layer) instead of Kaiming-uniform weights; one --archs entry")
    parser.add_argument("--images", choices=["uniform", "mnist"], default="uniform",
                        help="inputs: uniform noise with random labels (default) or the "
                             "first --batch MNIST test images ($NOBOUND_DATA)")
    parser.add_argument("--batch-stability", action="store_true",
                        help="nobound's DeepPoly takes auto_LiRPA's rule for which neurons "
                             "get rows (per batch, not per sample), so that on trained "
                             "networks both compute the same bounds")
    args = parser.parse_args()
    if args.model is not None and len(args.archs) != 1:
        parser.error("--model takes exactly one --archs entry (the model's architecture)")
    from nobound.host_memory import tune_host_allocator

    tuned = False if args.no_tune_malloc else tune_host_allocator()

    import torch

    torch.set_num_threads(1)
    load_before = os.getloadavg()
    rate = matmul_rate()
    rows = []
    for arch in args.archs:
        case = build(arch, args.batch, args.eps, model_path=args.model, images=args.images)
        counts = unstable_counts(case)
        for method in args.methods:
            ours = nobound_runner(case, method, args.batch_stability)
            theirs = peer_runner(case, method)
            ours_bounds, theirs_bounds = ours(), theirs()  # warm-up, and the comparison
            scale = max(1.0, float(np.abs(theirs_bounds[0]).max()))
            deviation = float(np.abs(ours_bounds[0] - theirs_bounds[0]).max()) / scale
            # margins where one tool's bound is tighter beyond float32 round-off: on trained
            # networks nobound's DeepPoly can be (module doc); looser it has not been
            slack = 1e-5 * scale
            tighter = int(np.sum((ours_bounds[0] > theirs_bounds[0] + slack)
                                 | (ours_bounds[1] < theirs_bounds[1] - slack)))
            looser = int(np.sum((ours_bounds[0] < theirs_bounds[0] - slack)
                                | (ours_bounds[1] > theirs_bounds[1] + slack)))
            times: dict[str, list[float]] = {"nobound": [], "auto_LiRPA": []}
            walls: dict[str, list[float]] = {"nobound": [], "auto_LiRPA": []}
            for _ in range(args.repeats):
                for name, run in (("nobound", ours), ("auto_LiRPA", theirs)):
                    start, wall = time.process_time(), time.perf_counter()
                    run()
                    times[name].append(time.process_time() - start)
                    walls[name].append(time.perf_counter() - wall)
            macs = multiply_adds(case["model"], method, args.batch, counts)
            row = {"arch": arch, "method": method, "nobound_s": min(times["nobound"]),
                   "auto_lirpa_s": min(times["auto_LiRPA"]), "cpu_times": times,
                   "wall_times": walls,
                   "ratio": min(times["nobound"]) / min(times["auto_LiRPA"]),
                   "wall_ratio": min(walls["nobound"]) / min(walls["auto_LiRPA"]),
                   # a tool whose repeats scatter widely has a lucky minimum: the medians
                   "median_ratio": median(times["nobound"]) / median(times["auto_LiRPA"]),
                   "multiply_adds": macs, "floor_s": macs / rate,
                   "lower_bound_max_relative_difference": deviation,
                   "margins_nobound_tighter": tighter, "margins_nobound_looser": looser,
                   "unstable_per_sample": counts}
            rows.append(row)
            print(f"{arch:5s} {method:10s} nobound {row['nobound_s'] * 1e3:9.1f} ms  "
                  f"auto_LiRPA {row['auto_lirpa_s'] * 1e3:9.1f} ms  ratio {row['ratio']:.2f}  "
                  f"(wall {row['wall_ratio']:.2f}, medians {row['median_ratio']:.2f})  "
                  f"floor {row['floor_s'] * 1e3:7.1f} ms  "
                  f"|Δlower| {deviation:.1e}  tighter/looser {tighter}/{looser}", flush=True)
    record = {"batch": args.batch, "eps": args.eps, "threads": 1, "dtype": "float32",
              "model": None if args.model is None else str(args.model),
              "images": args.images, "batch_stability_rule": args.batch_stability,
              "repeats": args.repeats, "allocator_tuned": tuned,
              "statistic": "minimum CPU time over interleaved repeats (wall times recorded; "
                           "median_ratio: the ratio of the median CPU times)",
              "load_average_before": load_before, "load_average_after": os.getloadavg(),
              "matmul_multiply_adds_per_s": rate, "torch": torch.__version__,
              "python": platform.python_version(), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1))
    print(f"load average before {load_before}, after {os.getloadavg()}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
