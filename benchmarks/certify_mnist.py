"""Certifier benchmark: MNIST robustness instances, sub-problem throughput, batching.

    NOBOUND_DATA=../shared/data python benchmarks/certify_mnist.py \
        --model cnn3=runs/cnn3-ibp/model.h5 --model fc2x256=runs/fc-ibp/model.h5 \
        --eps 0.1 --n 20 --timeout 20 --out benchmarks/results/certify_mnist.json

1. Instances: the first N MNIST test images of each model at l∞ radius eps; per model the
   verdict counts, instances solved (certified + falsified) and their median time against
   the timeout, and which stage decided.
2. Throughput: sub-problems bounded per second by ``bound_subproblems`` (DeepPoly with
   splits), for batches of 1, 8 and 32 sub-problems per relaxation call, on random split
   patterns of the first non-trivial instance.
3. Batching inside branch and bound: the same instance run with ``batch_size`` 1 and 32
   and a fixed node budget; sub-problems per second and the final lower bound.

Wall-clock numbers depend on the machine's load; the JSON records the CPU count.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from nobound.certify.bab import BabConfig, branch_and_bound
from nobound.certify.pipeline import Certifier, CertifierConfig
from nobound.certify.problem import robustness_problems
from nobound.certify.subproblems import bound_subproblems
from nobound.data import load_dataset
from nobound.io.checkpoint import load_checkpoint


def instances(certifier: Certifier, images, labels, eps: float) -> list[dict]:
    records = []
    for index in range(len(labels)):
        verdict = certifier.certify_sample(images[index], int(labels[index]), eps)
        records.append({"index": index, **verdict.to_json()})
        print(f"  sample {index}: {verdict.status} by {verdict.method} "
              f"in {verdict.seconds:.2f} s ({verdict.bounded} sub-problems)", flush=True)
    return records


def summary(records: list[dict], timeout: float) -> dict:
    solved = [r for r in records if r["status"] != "unknown"]
    counts = {s: sum(r["status"] == s for r in records)
              for s in ("certified", "falsified", "unknown")}
    return {"n": len(records), **counts, "solved": len(solved),
            "median_seconds_solved": float(np.median([r["seconds"] for r in solved]))
            if solved else None,
            "median_seconds_all": float(np.median([r["seconds"] for r in records])),
            "timeout": timeout,
            "decided_by": {m: sum(r["method"] == m for r in records)
                           for m in sorted({r["method"] for r in records})}}


def hardest_problem(certifier: Certifier, images, labels, eps: float):
    """The first problem (sample, class) no whole-box bound proves: a BaB instance."""
    for index in range(len(labels)):
        problems = robustness_problems(certifier.model, images[index], int(labels[index]),
                                       eps)
        lower = certifier._stage_bounds(problems, "deeppoly")
        for problem, rows in zip(problems, lower, strict=True):
            if rows.max() <= 0 and problem.find_counterexample(images[index][None]) is None:
                return index, problem
    return None, None


def throughput(certifier: Certifier, problem, batch_sizes=(1, 8, 32), total: int = 32
               ) -> dict:
    dense = certifier.dense
    rng = np.random.default_rng(0)
    root = bound_subproblems(problem, dense,
                             [np.zeros((1, w.shape[0]), np.int8) for w in dense.weights[:-1]],
                             None)
    signs, known = [], []
    for lo, hi in root.bounds:
        unstable = np.flatnonzero((lo[0] < 0) & (hi[0] > 0))
        layer = np.zeros((total, lo.shape[1]), np.int8)
        for n in range(total):  # split a few random unstable neurons per sub-problem
            chosen = rng.choice(unstable, size=min(3, unstable.size), replace=False)
            layer[n, chosen] = rng.choice([-1, 1], size=chosen.size)
        signs.append(layer)
        known.append((np.repeat(lo, total, axis=0), np.repeat(hi, total, axis=0)))
    rates = {}
    for size in batch_sizes:
        start = time.perf_counter()
        bound_subproblems(problem, dense, signs, known, chunk=size)
        rates[str(size)] = total / (time.perf_counter() - start)
        print(f"  batch {size}: {rates[str(size)]:.2f} sub-problems/s", flush=True)
    return rates


def bab_batching(certifier: Certifier, problem, nodes: int) -> dict:
    results = {}
    for size in (1, 32):
        config = BabConfig(batch_size=size, max_nodes=nodes, attack_every=0)
        outcome = branch_and_bound(problem, certifier.dense, config)
        results[str(size)] = {"status": outcome.status, "bounded": outcome.bounded,
                              "seconds": outcome.seconds,
                              "per_second": outcome.bounded / outcome.seconds,
                              "lowest_open_bound": outcome.lower_bound
                              if np.isfinite(outcome.lower_bound) else None}
        print(f"  BaB batch {size}: {results[str(size)]}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, help="NAME=checkpoint.h5")
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("--bab-nodes", type=int, default=64)
    parser.add_argument("--out", default="benchmarks/results/certify_mnist.json")
    args = parser.parse_args()
    data = load_dataset("mnist", "test", limit=args.n)
    images, labels = np.asarray(data.images, np.float64), data.labels
    config = CertifierConfig(timeout=args.timeout)
    report = {"eps": args.eps, "n": args.n, "timeout": args.timeout,
              "cpus": os.cpu_count(), "load_average": os.getloadavg()[0], "models": {}}
    for spec in args.model:
        name, path = spec.split("=", 1)
        checkpoint = load_checkpoint(path)
        certifier = Certifier(checkpoint.model, data.input_shape, config)
        print(f"{name}: instances", flush=True)
        records = instances(certifier, images, labels, args.eps)
        entry = {"checkpoint": path, "summary": summary(records, args.timeout),
                 "samples": records}
        index, problem = hardest_problem(certifier, images, labels, args.eps)
        if problem is not None:
            print(f"{name}: throughput on sample {index} ({problem.name})", flush=True)
            entry["throughput_instance"] = f"sample {index}, {problem.name}"
            entry["subproblems_per_second"] = throughput(certifier, problem)
            entry["bab_batching"] = bab_batching(certifier, problem, args.bab_nodes)
        report["models"][name] = entry
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
