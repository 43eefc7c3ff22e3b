"""Benchmark 1 (issue 2): conv2d forward and forward+backward, nobound vs PyTorch (CPU).

    python benchmarks/engine_conv2d.py [--threads 2] [--rounds 5] [--quick]

The convolution layers of cnn3 and cnn5 (paper Table 9, MNIST 28×28) at batch 128 and
512, and two CIFAR-sized layers (cnn5_l's first layer, a cnn7 64→64 3×3 layer on 32×32)
at batch 128, all float32. "forward" is inference (no graph); "fwd+bwd" records the graph
and back-propagates a fixed output gradient to both the input and the weight. PyTorch runs
``torch.nn.functional.conv2d`` with the same thread count. Every case is first checked to
agree with PyTorch (relative error of y, dx, dW). Results: results/engine_conv2d.json.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
from engine_common import (
    add_common_arguments,
    interleaved,
    machine,
    print_table,
    ratio,
    setup_threads_and_torch,
    write_results,
)

from nobound.autodiff import Tensor, no_grad, ops

# (name, batch, in channels, size, out channels, kernel, stride, padding)
CASES = [
    ("cnn3.conv1", 128, 1, 28, 8, 5, 2, 2), ("cnn3.conv2", 128, 8, 14, 8, 4, 2, 1),
    ("cnn3.conv1", 512, 1, 28, 8, 5, 2, 2), ("cnn3.conv2", 512, 8, 14, 8, 4, 2, 1),
    ("cnn5.conv1", 128, 1, 28, 16, 5, 2, 2), ("cnn5.conv2", 128, 16, 14, 16, 4, 2, 1),
    ("cnn5.conv3", 128, 16, 7, 32, 4, 2, 1),
    ("cnn5.conv1", 512, 1, 28, 16, 5, 2, 2), ("cnn5.conv2", 512, 16, 14, 16, 4, 2, 1),
    ("cnn5.conv3", 512, 16, 7, 32, 4, 2, 1),
    ("cnn5_l.conv1 CIFAR", 128, 3, 32, 64, 5, 2, 2),
    ("cnn7.conv2 CIFAR", 128, 64, 32, 64, 3, 1, 1),
]


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / (np.max(np.abs(b)) + 1e-30))


def measure(case: tuple, torch: Any, rounds: int, min_seconds: float) -> dict:
    """Check agreement with PyTorch, then time both frameworks on one layer."""
    name, batch, channels, size, out_channels, kernel, stride, padding = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, channels, size, size), dtype=np.float32)
    w = rng.standard_normal((out_channels, channels, kernel, kernel), dtype=np.float32)
    w /= np.sqrt(channels * kernel * kernel)
    y_shape = (batch, out_channels, ops.output_size(size, kernel, stride, padding),
               ops.output_size(size, kernel, stride, padding))
    g = rng.standard_normal(y_shape, dtype=np.float32)

    def nobound_forward():
        with no_grad():
            return ops.conv2d(Tensor(x), Tensor(w), stride, padding).data

    def nobound_backward():
        xt, wt = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True)
        ops.conv2d(xt, wt, stride, padding).backward(g)
        return xt.grad, wt.grad

    xt, wt, gt = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(g)

    def torch_forward():
        with torch.no_grad():
            return torch.nn.functional.conv2d(xt, wt, stride=stride, padding=padding)

    def torch_backward():
        xg, wg = xt.clone().requires_grad_(), wt.clone().requires_grad_()
        torch.nn.functional.conv2d(xg, wg, stride=stride, padding=padding).backward(gt)
        return xg.grad, wg.grad

    dx, dw = nobound_backward()
    dx_ref, dw_ref = torch_backward()
    errors = {"y": relative_error(nobound_forward(), torch_forward().numpy()),
              "dx": relative_error(dx, dx_ref.numpy()), "dw": relative_error(dw, dw_ref.numpy())}
    if max(errors.values()) > 1e-4:
        raise AssertionError(f"{name}: nobound and PyTorch disagree: {errors}")
    forward = interleaved({"nobound": nobound_forward, "torch": torch_forward}, rounds,
                          min_seconds)
    backward = interleaved({"nobound": nobound_backward, "torch": torch_backward}, rounds,
                           min_seconds)
    return {"layer": name, "batch": batch, "input": [channels, size, size],
            "conv": f"{out_channels} {kernel}x{kernel}/{stride}/{padding}",
            "relative_error_vs_torch": errors,
            "forward": {**forward, "ratio": ratio(forward["nobound"], forward["torch"])},
            "forward_backward": {**backward,
                                 "ratio": ratio(backward["nobound"], backward["torch"])}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--min-seconds", type=float, default=0.1,
                        help="least duration of one timing sample")
    parser.add_argument("--quick", action="store_true", help="batch 128 MNIST cases only")
    parser.add_argument("--only", default="", help="run the layers whose name contains this")
    args = parser.parse_args()
    torch = setup_threads_and_torch(args.threads)
    machine_info = machine(args.threads)  # load average at the start
    cases = [c for c in CASES if (not args.quick or (c[1] == 128 and "CIFAR" not in c[0]))
             and args.only in c[0]]
    results, rows = [], []
    for case in cases:
        result = measure(case, torch, args.rounds, args.min_seconds)
        results.append(result)
        row = {"layer": result["layer"], "batch": result["batch"]}
        for kind, label in (("forward", "fwd"), ("forward_backward", "fwd+bwd")):
            row[f"{label} nobound ms"] = 1e3 * result[kind]["nobound"]["wall_median"]
            row[f"{label} torch ms"] = 1e3 * result[kind]["torch"]["wall_median"]
            row[f"{label} ratio"] = result[kind]["ratio"]["wall_median"]
            row[f"{label} cpu ratio"] = result[kind]["ratio"]["cpu_median"]
        rows.append(row)
        print(f"{row['layer']} batch {row['batch']}: fwd+bwd ratio {row['fwd+bwd ratio']:.2f}",
              flush=True)
    print(f"\nmedian seconds ratio nobound / PyTorch, {args.threads} thread(s):")
    print_table(rows, list(rows[0]))
    write_results("engine_conv2d", {"benchmark": "conv2d forward and forward+backward",
                                    "machine": machine_info, "cases": results},
                  args.results_dir)


if __name__ == "__main__":
    main()
