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

``--before-after`` (issue 15) runs only step 1, on the same images under two certifier
configurations, interleaved image by image: "before" — the whole-box stages, then
branch and bound over DeepPoly with BaBSR branching (the default) — and "after" — the
same stages, then beta-CROWN with FSB branching. A *wrong* verdict is a certified
instance for which any configuration (or the ``--reference`` results of an earlier
``nobound certify`` run) found a counterexample; it must be 0. E.g.

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 NOBOUND_DATA=../shared/data \
    python benchmarks/certify_mnist.py --before-after --cpu-clock --eps 0.1 --n 150 \
        --timeout 10 --attack-steps 200 --attack-restarts 5 \
        --model pgpe60k=runs/tiny-deeppoly-pgpe-60k/model.h5 \
        --reference pgpe60k=runs/tiny-deeppoly-pgpe-60k/certify-mnist-eps0.1.json \
        --out benchmarks/results/certify_mnist_before_after.json --markdown docs/benchmarks.md

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
import shlex
import subprocess
import sys
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


# the two certifier configurations of --before-after: branch and bound method and branching
CONFIGURATIONS = {"before": {"bab_method": "deeppoly", "branching": "babsr"},
                  "after": {"bab_method": "beta-crown", "branching": "fsb"}}


def before_after(certifiers: dict[str, Certifier], images, labels, eps: float
                 ) -> dict[str, list[dict]]:
    """Every image under every configuration, interleaved image by image (so that a
    change of the machine's load hits both alike)."""
    records: dict[str, list[dict]] = {name: [] for name in certifiers}
    for index in range(len(labels)):
        line = []
        for name, certifier in certifiers.items():
            verdict = certifier.certify_sample(images[index], int(labels[index]), eps)
            records[name].append({"index": index, **verdict.to_json()})
            line.append(f"{name} {verdict.status} by {verdict.method} in "
                        f"{verdict.seconds:.2f} s ({verdict.bounded})")
        print(f"  sample {index}: " + "; ".join(line), flush=True)
    return records


def wrong_verdicts(runs: dict[str, list[dict]], reference: list[dict] | None = None
                   ) -> dict[str, list[int]]:
    """Per configuration, the images it certified where some configuration (or the
    reference run) found a counterexample."""
    falsified = {r["index"] for records in runs.values() for r in records
                 if r["status"] == "falsified"}
    falsified |= {r["index"] for r in reference or [] if r["status"] == "falsified"}
    return {name: sorted(r["index"] for r in records
                         if r["status"] == "certified" and r["index"] in falsified)
            for name, records in runs.items()}


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


BEFORE_AFTER_HEADING = "### Certifier before/after on trained MNIST networks (issue 15)"


def before_after_section(report: dict) -> str:
    """The before/after sub-section of docs/benchmarks.md's "Certifier" section."""
    settings = " ".join(f"`{name}`: {CONFIGURATIONS[name]['bab_method']} + "
                        f"{CONFIGURATIONS[name]['branching']}" for name in CONFIGURATIONS)
    lines = [BEFORE_AFTER_HEADING, "",
             f"`benchmarks/certify_mnist.py --before-after` at commit {report['commit']}: "
             f"the first {report['n']} MNIST test images, l∞ eps "
             f"{', '.join(f'{eps:g}' for eps in report['eps'])}, timeout "
             f"{report['timeout']:g} s per image ({report['clock']}), attack "
             f"{report['attack'][0]} steps × {report['attack'][1]} restarts, "
             f"{report['cpus']} shared CPU cores (load average {report['load_average']:.1f} "
             f"at the start), one BLAS/numba thread. Both configurations run the same "
             f"whole-box stages; branch and bound differs — {settings}. *wrong*: certified "
             f"where some run found a counterexample. Results: `{report['out']}`.", "",
             "    " + report["command"], "",
             "| model | eps | configuration | certified | falsified | unknown | wrong | "
             "median time solved (s) | decided by branch and bound (cert. / fals.) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, entry in report["models"].items():
        for eps, run in entry["runs"].items():
            for config, result in run.items():
                s = result["summary"]
                median = "–" if s["median_seconds_solved"] is None else \
                    f"{s['median_seconds_solved']:.2f}"
                bab = [r for r in result["samples"] if r["method"] == "bab"]
                lines.append(
                    f"| {name} | {eps} | {config} | {s['certified']} | {s['falsified']} | "
                    f"{s['unknown']} | {len(result['wrong'])} | {median} | "
                    f"{sum(r['status'] == 'certified' for r in bab)} / "
                    f"{sum(r['status'] == 'falsified' for r in bab)} |")
    return "\n".join(lines) + "\n"


def replace_subsection(path: Path, heading: str, section: str) -> None:
    """Put ``section`` in place of the sub-section ``heading`` (up to the next heading of
    level 2 or 3), or at the end of the "## Certifier" section when there is none."""
    text = path.read_text(encoding="utf-8")
    start = text.find(heading)
    if start >= 0:
        ends = [i + 1 for i in (text.find("\n## ", start + 1), text.find("\n### ", start + 1))
                if i >= 0]
        end = min(ends, default=len(text))
    else:
        certifier = text.find("## Certifier")
        following = text.find("\n## ", certifier + 1) if certifier >= 0 else -1
        start = end = following + 1 if following >= 0 else len(text)
    gap = "\n" if end < len(text) else ""
    path.write_text(text[:start] + section + gap + text[end:], encoding="utf-8")


def run_before_after(args: argparse.Namespace, data, images, labels) -> None:
    """--before-after: step 1 under both configurations, the JSON and the doc table."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip() or "unknown"
    report = {"eps": args.eps, "n": args.n, "timeout": args.timeout,
              "configurations": CONFIGURATIONS, "attack": [args.attack_steps,
                                                           args.attack_restarts],
              "clock": "process CPU time" if args.cpu_clock else "wall clock",
              "cpus": os.cpu_count(), "load_average": os.getloadavg()[0],
              "commit": commit, "out": args.out,
              "command": shlex.join(["python", *sys.argv]), "models": {}}
    references = dict(spec.split("=", 1) for spec in args.reference or [])
    for spec in args.model:
        name, path = spec.split("=", 1)
        checkpoint = load_checkpoint(path)
        certifiers = {config: Certifier(checkpoint.model, data.input_shape, CertifierConfig(
            timeout=args.timeout, robustness_attack_steps=args.attack_steps,
            robustness_attack_restarts=args.attack_restarts, **settings))
            for config, settings in CONFIGURATIONS.items()}
        reference = None
        if name in references:
            reference = [r for r in json.loads(Path(references[name]).read_text())["samples"]
                         if r["index"] < args.n]
        entry = {"checkpoint": path, "reference": references.get(name), "runs": {}}
        for eps in args.eps:
            print(f"{name}: before/after at eps {eps:g}", flush=True)
            runs = before_after(certifiers, images, labels, eps)
            wrong = wrong_verdicts(runs, reference)
            entry["runs"][f"{eps:g}"] = {
                config: {"summary": summary(records, args.timeout), "wrong": wrong[config],
                         "samples": records} for config, records in runs.items()}
            for config, result in entry["runs"][f"{eps:g}"].items():
                print(f"  {config}: {result['summary']} wrong {result['wrong']}", flush=True)
        report["models"][name] = entry
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")
    if args.markdown:
        replace_subsection(Path(args.markdown), BEFORE_AFTER_HEADING,
                           before_after_section(report))
        print(f"updated {args.markdown}")


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
    parser.add_argument("--before-after", action="store_true",
                        help="step 1 under the 'before' and 'after' configurations (issue "
                             "15; see the module doc)")
    parser.add_argument("--reference", action="append", metavar="NAME=certify.json",
                        help="--before-after: verdicts of an earlier `nobound certify` run "
                             "of model NAME, for the wrong-verdict count")
    parser.add_argument("--attack-steps", type=int, default=50, help="PGD steps per sample")
    parser.add_argument("--attack-restarts", type=int, default=3, help="PGD restarts")
    args = parser.parse_args()
    previous = json.loads(Path(args.out).read_text()) if args.reuse_instances else None
    data = load_dataset("mnist", "test", limit=args.n)
    images, labels = np.asarray(data.images, np.float64), data.labels
    if args.cpu_clock:  # every deadline in nobound reads time.perf_counter
        time.perf_counter = time.process_time
    if args.before_after:
        run_before_after(args, data, images, labels)
        return
    config = CertifierConfig(timeout=args.timeout, bab_method=args.bab_method,
                             branching=args.branching,
                             robustness_attack_steps=args.attack_steps,
                             robustness_attack_restarts=args.attack_restarts)
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
