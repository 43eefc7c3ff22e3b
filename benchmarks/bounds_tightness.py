"""Tightness of the relaxations on a trained network: bound width and certified accuracy.

    NOBOUND_DATA=../shared/data python benchmarks/bounds_tightness.py \
        --model cnn3-standard=/tmp/cnn3-mnist/model.h5 \
        --model cnn3-ibp=runs/gls-table1/cnn3-ibp-grad/model.h5 \
        --figure docs/figures/tightness_cnn3.png

A model can be trained with
``nobound train --arch cnn3 --dataset mnist --method standard --epochs 1 --out /tmp/cnn3-std``.

For each model, the first ``--n`` MNIST test images, each radius of ``--eps`` and each
relaxation: the mean width (upper − lower) of the margin bounds y_t − y_j (j ≠ t), the
mean lower bound, the certified accuracy (correct and every margin lower bound > 0) and
the seconds the bound took. alpha-CROWN runs twice: as certifiers use it (from DeepPoly's
slopes, 20 sign-gradient steps of 0.1) and in the paper's training variant (init 0.5, one
step of 0.5, App. F.2). Then ``nobound.analysis.tightness``: the AUC of certified accuracy
over ``--points`` radii in [0, max eps] (Jovanović et al.), drawn with ``--figure``.
The paper reports the order IBP < CROWN-IBP < DeepPoly ≤ alpha-CROWN in tightness.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np
from engine_common import RESULTS_DIR, machine, print_table, write_results

from nobound.autodiff import Tensor, no_grad
from nobound.bounds import compute_bounds, linf_ball, margin_spec

VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "ibp": ("ibp", {}),
    "hbox": ("hbox", {}),
    "crown-ibp": ("crown-ibp", {}),
    "deeppoly": ("deeppoly", {}),
    "alpha-crown": ("alpha-crown", {"alpha_steps": 20, "alpha_step_size": 0.1}),
    "alpha-crown (F.2)": ("alpha-crown", {"alpha_init": 0.5, "alpha_steps": 1,
                                          "alpha_step_size": 0.5}),
}


def mnist_test(count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``count`` MNIST test images ($NOBOUND_DATA, else ../shared/data)."""
    from nobound.data import load_dataset

    data_dir = os.environ.get("NOBOUND_DATA") or Path(__file__).parents[2] / "shared" / "data"
    data = load_dataset("mnist", "test", data_dir=data_dir, limit=count)
    return data.images.astype(np.float32), np.asarray(data.labels)


def measure(model: Any, images: np.ndarray, labels: np.ndarray, eps: float, variant: str
            ) -> dict[str, float]:
    """Width, lower bound, certified accuracy and time of one relaxation at one radius."""
    method, options = VARIANTS[variant]
    x = Tensor(images)
    with no_grad():
        correct = np.asarray(model(x).data).argmax(axis=-1) == labels
        start = time.perf_counter()
        result = compute_bounds(model, linf_ball(x, eps), method=method,
                                spec=margin_spec(labels, 10), **options)
        seconds = time.perf_counter() - start
    lower, upper = np.asarray(result.lower.data), np.asarray(result.upper.data)
    return {"mean_width": float((upper - lower).mean()), "mean_lower": float(lower.mean()),
            "certified_accuracy": float(np.mean(correct & (lower > 0).all(axis=-1))),
            "natural_accuracy": float(correct.mean()), "seconds": seconds}


def describe(checkpoint: Any) -> dict[str, Any]:
    """What the model is: how it was trained and how well (from the checkpoint)."""
    return {"method": checkpoint.method, "config": checkpoint.config,
            "metrics": checkpoint.metrics}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", metavar="NAME=PATH",
                        help="a checkpoint (repeatable); default cnn3=/tmp/cnn3-mnist/model.h5")
    parser.add_argument("--n", type=int, default=128, help="MNIST test images")
    parser.add_argument("--eps", type=float, nargs="+", default=[0.02, 0.1])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--auc-relaxations", nargs="+",
                        default=["ibp", "hbox", "crown-ibp", "deeppoly", "alpha-crown"])
    parser.add_argument("--points", type=int, default=11, help="radii of the AUC")
    parser.add_argument("--figure", type=Path, help="certified accuracy over ε (PNG), "
                        "for the first model")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "bounds_tightness.json")
    args = parser.parse_args()
    from nobound.analysis.plots import plot_tightness
    from nobound.analysis.tightness import tightness
    from nobound.io.checkpoint import load_checkpoint

    models = [item.split("=", 1) for item in (args.model or ["cnn3=/tmp/cnn3-mnist/model.h5"])]
    images, labels = mnist_test(args.n)
    threads = int(os.environ.get("OPENBLAS_NUM_THREADS", os.cpu_count() or 1))
    results: dict[str, Any] = {"benchmark": "bounds_tightness", "machine": machine(threads),
                               "n": args.n, "eps": args.eps, "models": {}}
    for position, (name, path) in enumerate(models):
        checkpoint = load_checkpoint(path)
        model = checkpoint.model
        model.eval()
        rows = []
        for eps in args.eps:
            for variant in args.variants:
                row = {"eps": eps, "relaxation": variant,
                       **measure(model, images, labels, eps, variant)}
                rows.append(row)
                print(f"{name} eps={eps} {variant}: width {row['mean_width']:.4g}, "
                      f"certified {row['certified_accuracy']:.3f}", flush=True)
        start = time.perf_counter()
        curves = tightness(model, images, labels, args.auc_relaxations, max(args.eps),
                           points=args.points, batch_size=args.n)
        auc = {c.relaxation: {"auc": c.auc, "radii": c.radii,
                              "certified_accuracy": c.certified_accuracy} for c in curves}
        print(f"{name} AUC over [0, {max(args.eps)}] "
              f"({time.perf_counter() - start:.0f} s): "
              + ", ".join(f"{k} {v['auc']:.3f}" for k, v in auc.items()))
        if args.figure is not None and position == 0:
            plot_tightness(curves, args.figure)
            print(f"wrote {args.figure}")
        print_table([{"eps": r["eps"], "relaxation": r["relaxation"],
                      "mean width": r["mean_width"], "mean lower": r["mean_lower"],
                      "certified": r["certified_accuracy"], "s": r["seconds"]} for r in rows],
                    ["eps", "relaxation", "mean width", "mean lower", "certified", "s"])
        results["models"][name] = {"path": path, "checkpoint": describe(checkpoint),
                                   "rows": rows, "auc": auc, "auc_max_eps": max(args.eps)}
    write_results(args.out.stem, results, args.out.parent)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
