"""Certifier benchmark: MNIST robustness instances, sub-problem throughput, batching.

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 \
    NOBOUND_DATA=../shared/data python benchmarks/certify_mnist.py \
        --model cnn3=runs/cnn3-ibp/model.h5 --model fc2x256=runs/fc-ibp/model.h5 \
        --eps 0.1 --n 20 --timeout 20 --out benchmarks/results/certify_mnist.json

1. Instances: the first N MNIST test images of each model at l∞ radius eps; per model the
   verdict counts, instances solved (certified + falsified) and their median time against
   the timeout, and which stage decided.
2. Throughput: sub-problems bounded per second by ``bound_subproblems`` (DeepPoly with
   splits), for batches of 1, 8 and 32 sub-problems per relaxation call, on random split
   patterns of an instance that needs branch and bound (from the samples step 1 sent to
   branch and bound: a class DeepPoly does not prove and a short search does not falsify).
3. Batching inside branch and bound: the same instance run with ``batch_size`` 1 and with
   the adaptive batch size (at most 32) and a fixed node budget; sub-problems per second
   and the final lower bound.

``--reuse-instances`` keeps step 1 of an existing results file and redoes steps 2-3.

Wall-clock numbers depend on the machine's load; the JSON records the CPU count. Use one
BLAS/numba thread on a shared machine: with two threads on oversubscribed cores the same
sub-problems were bounded 3-10x slower and the timings varied 3x between runs.
The recorded run used networks trained by nobound with IBP at eps 0.1 (4 epochs on the
first 20,000 MNIST training images, linear eps ramp over 2 epochs, IBP init), e.g.

    nobound train --arch cnn3 --dataset mnist --method grad --relaxation ibp --eps 0.1 \
        --epochs 4 --limit 20000 --lr 1e-3 --init ibp --eps-ramp linear \
        --eps-ramp-epochs 2 --seed 0 --out runs/cnn3-ibp

and the same with ``--arch fc2x256``.
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
            "decided_by": {m: sum(r["method"] == m for r in solved)
                           for m in sorted({r["method"] for r in solved})}}


def hardest_problem(certifier: Certifier, images, labels, candidates: list[tuple[int, float]]):
    """A problem (sample, class) that needs branch and bound and is not quickly falsified,
    among the (sample, eps) pairs the instance runs sent to branch and bound: classes that
    DeepPoly does not prove, lowest bound first, probed with a 16-node search. Returns
    (sample, eps, problem) or (None, None, None)."""
    for index, radius in candidates:
        problems = robustness_problems(certifier.model, images[index], int(labels[index]),
                                       radius)
        best = [float(rows.max()) for rows in certifier._stage_bounds(problems, "deeppoly")]
        for position in np.argsort(best):
            if best[position] > 0:
                break
            probe = branch_and_bound(problems[position], certifier.dense,
                                     BabConfig(max_nodes=16, batch_size=4))
            if probe.status != "falsified":
                return index, radius, problems[position]
    return None, None, None


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
    wall = dict.fromkeys(batch_sizes, np.inf)
    cpu = dict.fromkeys(batch_sizes, np.inf)
    for _ in range(5):  # best of five, sizes interleaved: the machine is shared
        for size in batch_sizes:
            start, start_cpu = time.perf_counter(), time.process_time()
            bound_subproblems(problem, dense, signs, known, chunk=size)
            wall[size] = min(wall[size], time.perf_counter() - start)
            cpu[size] = min(cpu[size], time.process_time() - start_cpu)
    rates = {str(size): {"wall": total / wall[size], "cpu": total / cpu[size]}
             for size in batch_sizes}
    print(f"  sub-problems/s by batch size: {rates}", flush=True)
    return rates


def bab_batching(certifier: Certifier, problem, nodes: int) -> dict:
    """Branch and bound splitting 1 sub-domain per round vs the adaptive batch size (at most
    32), best of two interleaved runs."""
    results: dict[str, dict] = {}
    for _ in range(2):
        for size in (1, 32):
            config = BabConfig(batch_size=size, max_nodes=nodes, attack_every=0)
            start_cpu = time.process_time()
            outcome = branch_and_bound(problem, certifier.dense, config)
            cpu = time.process_time() - start_cpu
            entry = {"status": outcome.status, "bounded": outcome.bounded,
                     "seconds": outcome.seconds, "cpu_seconds": cpu,
                     "per_second": outcome.bounded / outcome.seconds,
                     "per_cpu_second": outcome.bounded / cpu,
                     "lowest_open_bound": outcome.lower_bound
                     if np.isfinite(outcome.lower_bound) else None}
            if str(size) not in results or cpu < results[str(size)]["cpu_seconds"]:
                results[str(size)] = entry
    print(f"  BaB: {results}", flush=True)
    return results


def markdown_section(report: dict) -> str:
    """The "Certifier" section of docs/benchmarks.md."""
    lines = ["## Certifier", "",
             f"`benchmarks/certify_mnist.py`: the first {report['n']} MNIST test images, "
             f"l∞ eps ∈ {report['eps']}, timeout {report['timeout']:g} s per instance, "
             f"{report['cpus']} shared CPU cores (load average {report['load_average']:.1f} "
             f"at the start), one BLAS/numba thread, float64. Results: "
             f"`benchmarks/results/certify_mnist.json`.", "",
             "| model | eps | certified | falsified | unknown | solved | median time solved "
             "(s) | decided by |", "|---|---|---|---|---|---|---|---|"]
    for name, entry in report["models"].items():
        for eps, run in entry["runs"].items():
            s = run["summary"]
            median = "–" if s["median_seconds_solved"] is None else \
                f"{s['median_seconds_solved']:.2f}"
            decided = ", ".join(f"{k} {v}" for k, v in s["decided_by"].items())
            lines.append(f"| {name} | {eps} | {s['certified']} | {s['falsified']} | "
                         f"{s['unknown']} | {s['solved']}/{s['n']} | {median} | {decided} |")
    lines += ["", "Sub-problems bounded per second (DeepPoly with splits, one relaxation call "
              "per batch; wall clock / process CPU time, best of 5) and branch and bound with "
              "1 sub-domain split per round vs the adaptive batch size (up to 32), a budget "
              "of 256 sub-problems "
              "(wall / CPU, best of 2):", "",
              "| model | instance | batch 1 | batch 8 | batch 32 | BaB batch 1 (/s) "
              "| BaB adaptive ≤ 32 (/s) |", "|---|---|---|---|---|---|---|"]
    for name, entry in report["models"].items():
        if "subproblems_per_second" not in entry:
            lines.append(f"| {name} | no instance left for branch and bound | | | | | |")
            continue
        rates = entry["subproblems_per_second"]
        bab = entry["bab_batching"]
        cells = [f"{rates[k]['wall']:.1f} / {rates[k]['cpu']:.1f}" for k in ("1", "8", "32")]
        cells += [f"{bab[k]['per_second']:.1f} / {bab[k]['per_cpu_second']:.1f}"
                  for k in ("1", "32")]
        lines.append(f"| {name} | {entry['throughput_instance']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def replace_section(path: Path, section: str) -> None:
    """Put ``section`` into ``path`` in place of its "## Certifier" section (or append)."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    start = text.find("## Certifier")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + ("" if end < 0 else text[end:])
    path.write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, help="NAME=checkpoint.h5")
    parser.add_argument("--eps", type=float, nargs="+", default=[0.1],
                        help="radii of the instance sets")
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("--bab-nodes", type=int, default=256)
    parser.add_argument("--bab-method", default="deeppoly",
                        choices=("deeppoly", "alpha-crown", "beta-crown"))
    parser.add_argument("--branching", default="babsr", choices=("babsr", "intercept", "fsb"))
    parser.add_argument("--skip-throughput", action="store_true", help="step 1 only")
    parser.add_argument("--cpu-clock", action="store_true",
                        help="timeouts in this process's CPU time (a loaded machine)")
    parser.add_argument("--out", default="benchmarks/results/certify_mnist.json")
    parser.add_argument("--markdown", help="also write the section into this file "
                                           "(docs/benchmarks.md)")
    parser.add_argument("--reuse-instances", action="store_true",
                        help="take step 1 from an existing --out file, redo steps 2-3")
    args = parser.parse_args()
    previous = json.loads(Path(args.out).read_text()) if args.reuse_instances else None
    data = load_dataset("mnist", "test", limit=args.n)
    images, labels = np.asarray(data.images, np.float64), data.labels
    if args.cpu_clock:  # every deadline in nobound reads time.perf_counter
        time.perf_counter = time.process_time
    config = CertifierConfig(timeout=args.timeout, bab_method=args.bab_method,
                             branching=args.branching)
    report = {"eps": args.eps, "n": args.n, "timeout": args.timeout,
              "bab_method": args.bab_method, "branching": args.branching,
              "clock": "process CPU time" if args.cpu_clock else "wall",
              "cpus": os.cpu_count(), "load_average": os.getloadavg()[0], "models": {}}
    if previous is not None:
        report.update(eps=previous["eps"], n=previous["n"], timeout=previous["timeout"],
                      load_average=previous["load_average"])
    for spec in args.model:
        name, path = spec.split("=", 1)
        checkpoint = load_checkpoint(path)
        certifier = Certifier(checkpoint.model, data.input_shape, config)
        entry = {"checkpoint": path, "runs": {}}
        if previous is not None:
            entry["runs"] = previous["models"][name]["runs"]
        for eps in ([] if previous is not None else args.eps):
            print(f"{name}: instances at eps {eps:g}", flush=True)
            records = instances(certifier, images, labels, eps)
            entry["runs"][f"{eps:g}"] = {"summary": summary(records, args.timeout),
                                         "samples": records}
        candidates = [(r["index"], float(eps)) for eps, run in entry["runs"].items()
                      for r in run["samples"] if r["method"] in ("bab", "none")]
        if args.skip_throughput:
            candidates = []
        index, radius, problem = hardest_problem(certifier, images, labels, candidates)
        if problem is not None:
            print(f"{name}: throughput on sample {index} ({problem.name}), eps {radius:g}",
                  flush=True)
            entry["throughput_instance"] = f"sample {index}, {problem.name}, eps {radius:g}"
            entry["subproblems_per_second"] = throughput(certifier, problem)
            entry["bab_batching"] = bab_batching(certifier, problem, args.bab_nodes)
        report["models"][name] = entry
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    if args.markdown:
        replace_section(Path(args.markdown), markdown_section(report))
        print(f"updated {args.markdown}")


if __name__ == "__main__":
    main()
