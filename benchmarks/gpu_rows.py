"""The GPU parts of benchmarks/gpu_check.sh that need Python: smoke, bounds, PGPE.

    python benchmarks/gpu_rows.py smoke  --device cuda --out DIR/smoke.json
    python benchmarks/gpu_rows.py bounds --device cuda --out DIR/bounds_gpu.json
    python benchmarks/gpu_rows.py pgpe   --device cuda --out DIR/pgpe_gpu.json

``smoke``: every training method × relaxation trains a small network for two steps on the
device (embedded Fashion-MNIST images, no download): parameters stay on the device and
the losses are finite. ``bounds``: seconds per DeepPoly bound of cnn3 and cnn5 at
``--batch`` (128) inputs, after a warm-up call (CuPy compiles its kernels on first use).
``pgpe``: seconds per DeepPoly-PGPE step of cnn3_tiny with ``--population`` (256) members
at ``--batch`` (512) after a warm-up step. Inputs of ``bounds`` and ``pgpe`` are uniform
noise (bounding costs barely depend on the pixels); the device is synchronised before
every clock reading. ``--device guard`` runs everything on the CPU stand-in for CuPy (the
tests do, on a tiny scale with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from nobound.backend import array_module_for, get_array_module, to_numpy
from nobound.bounds import compute_bounds, linf_ball, margin_spec
from nobound.data import BatchLoader, load_dataset
from nobound.nn import build_model, conv_net, kaiming_uniform
from nobound.training.certified_loss import RELAXATIONS
from nobound.training.method import StepContext, create_method
from nobound.training.trainer import Trainer, TrainerConfig


def synchronise(xp: Any) -> None:
    if hasattr(xp, "cuda"):
        xp.cuda.Device().synchronize()


def clocked(run: Any, xp: Any) -> float:
    synchronise(xp)
    start = time.perf_counter()
    run()
    synchronise(xp)
    return time.perf_counter() - start


def smoke(args: argparse.Namespace) -> dict[str, Any]:
    data = load_dataset("fashion-mnist-embedded", "train", limit=16)
    runs = [("standard", {}), ("pgd", {"steps": 2})]
    runs += [(method, {"relaxation": relaxation, **({"population_size": 4}
                                                    if method == "pgpe" else {})})
             for method in ("grad", "rgs", "pgpe") for relaxation in RELAXATIONS]
    if args.quick:
        runs = runs[:1] + runs[-1:]
    rows = []
    for method, options in runs:
        model = kaiming_uniform(conv_net((1, 28, 28), 10, [(4, 5, 3, 0)], [16]), 0)
        model.to(args.device)
        loader = BatchLoader(data, 8, seed=0, device=args.device)
        trainer = Trainer(model, create_method(method, **options), loader,
                          TrainerConfig(epochs=1, lr=1e-3, eps=0.01, log_every=1),
                          quiet=True)
        start = time.perf_counter()
        summary = trainer.fit(max_steps=2)
        on_device = all(get_array_module(v) is array_module_for(args.device)
                        for v in model.state_dict().values())
        loss = float(summary.get("train_loss", summary.get("loss", math.nan)))
        rows.append({"method": method, **options, "seconds": time.perf_counter() - start,
                     "loss": loss, "ok": on_device and math.isfinite(loss)})
        print(json.dumps(rows[-1]), flush=True)
    return {"rows": rows, "ok": all(r["ok"] for r in rows)}


def bounds(args: argparse.Namespace) -> dict[str, Any]:
    xp = array_module_for(args.device)
    rng = np.random.default_rng(0)
    rows = []
    for arch in args.archs:
        model = kaiming_uniform(build_model(arch, (1, 28, 28), 10), 0).to(args.device)
        x = xp.asarray(rng.uniform(size=(args.batch, 1, 28, 28)).astype(np.float32))
        spec = margin_spec(xp.asarray(rng.integers(0, 10, args.batch)), 10)

        def run(model=model, x=x, spec=spec) -> Any:
            return compute_bounds(model, linf_ball(x, 0.1), method="deeppoly", spec=spec)

        first = clocked(run, xp)
        seconds = min(clocked(run, xp) for _ in range(args.repeats))
        lower = to_numpy(run().lower.data)
        rows.append({"arch": arch, "batch": args.batch, "first_call_seconds": first,
                     "seconds": seconds, "finite": bool(np.isfinite(lower).all())})
        print(json.dumps(rows[-1]), flush=True)
    return {"rows": rows}


def pgpe(args: argparse.Namespace) -> dict[str, Any]:
    xp = array_module_for(args.device)
    rng = np.random.default_rng(0)
    model = kaiming_uniform(build_model("cnn3_tiny", (1, 28, 28), 10), 0).to(args.device)
    images = xp.asarray(rng.uniform(size=(args.batch, 1, 28, 28)).astype(np.float32))
    labels = xp.asarray(rng.integers(0, 10, args.batch))
    method = create_method("pgpe", relaxation="deeppoly", population_size=args.population)
    times, metrics = [], {}
    for step in range(args.repeats + 1):
        context = StepContext(epoch=0, step=step, batch_index=step, steps_per_epoch=100,
                              seed=0, eps=0.1, lr=3e-4, xp=xp)

        def run(context=context) -> None:
            metrics.update(method.compute_step(model, images, labels, context).metrics)

        times.append(clocked(run, xp))
    row = {"arch": "cnn3_tiny", "relaxation": "deeppoly", "batch": args.batch,
           "population": args.population, "first_step_seconds": times[0],
           "seconds": min(times[1:]), "chunk": metrics.get("population_chunk"),
           "loss": metrics.get("loss")}
    print(json.dumps(row), flush=True)
    return {"rows": [row]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=("smoke", "bounds", "pgpe"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--archs", nargs="+", default=["cnn3", "cnn5"])
    parser.add_argument("--batch", type=int)
    parser.add_argument("--population", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (for the tests)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.batch is None:
        args.batch = {"bounds": 128, "pgpe": 512}.get(args.part, 0)
    if args.quick:
        args.batch, args.population, args.repeats = 2, 4, 1
    array_module_for(args.device)  # fails here, on one line, without CuPy
    result = {"bounds": bounds, "pgpe": pgpe, "smoke": smoke}[args.part](args)
    result.update(device=args.device, part=args.part)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    if not result.get("ok", True):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
