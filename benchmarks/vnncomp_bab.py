"""VNN-COMP categories through the certifier: solved / wrong / unknown against the consensus.

    OPENBLAS_NUM_THREADS=1 nice -n 10 python benchmarks/vnncomp_bab.py \
        ../shared/vnncomp/2022/oval21 --sample 6 --scale 0.1 \
        --bab-method deeppoly --branching babsr --out benchmarks/results/vnncomp_oval21.json

Reads the category's ``results.csv`` (onnx, vnnlib, timeout, consensus, published tool
verdicts; see the README of the benchmark folder) by path, takes ``--sample`` instances
spread evenly over the file (or all), runs :class:`nobound.certify.pipeline.Certifier` on
each at ``--scale`` times the competition's timeout, and counts an answer *solved* when
it is ``unsat``/``sat`` and agrees with the consensus, *wrong* when it contradicts it. A
``sat`` answer counts only when its counterexample replays in the ONNX file's arithmetic
(as ``nobound verify`` does). Instances whose network does not import are counted
``error`` with the reason. Load time is not part of the timeout.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from nobound.certify.pipeline import Certifier, CertifierConfig


def _plain(path: Path, scratch: Path) -> str:
    """The file itself, or a decompressed copy of a ``.gz`` one in ``scratch``."""
    if path.suffix != ".gz":
        return str(path)
    target = scratch / path.name[:-3]
    if not target.exists():
        with gzip.open(path, "rb") as source, open(target, "wb") as sink:
            shutil.copyfileobj(source, sink)
    return str(target)


def _find(folder: Path, name: str) -> Path:
    path = folder / name
    return path if path.exists() else folder / (name + ".gz")


def run_instances(folder: Path, sample: int, scale: float, config: CertifierConfig,
                  only: str | None = None) -> list[dict]:
    from nobound.cli.verify import load_problems, replay_counterexample

    with open(folder / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    if only:
        rows = [r for r in rows if only in r["onnx"] or only in r["vnnlib"]]
    if sample and sample < len(rows):
        step = len(rows) / sample
        rows = [rows[int(i * step)] for i in range(sample)]
    records = []
    with tempfile.TemporaryDirectory() as scratch:
        for row in rows:
            record = {"onnx": row["onnx"], "vnnlib": row["vnnlib"],
                      "consensus": row["consensus"],
                      "timeout": float(row["timeout_s"]) * scale}
            try:
                network, prop, problems = load_problems(_plain(_find(folder, row["onnx"]),
                                                         Path(scratch)),
                                                  _plain(_find(folder, row["vnnlib"]),
                                                         Path(scratch)))
            except Exception as error:  # noqa: BLE001 - recorded, the run goes on
                record.update(answer="error", reason=f"{type(error).__name__}: {error}"[:200])
                records.append(record)
                print(f"{row['vnnlib']}: error {record['reason']}", flush=True)
                continue
            certifier = Certifier(network.model, network.input_shape,
                                  replace(config, timeout=record["timeout"]))
            start = time.perf_counter()
            verdict = certifier.verify(problems)
            answer = {"certified": "unsat", "falsified": "sat"}.get(verdict.status, "unknown")
            if answer == "sat" and replay_counterexample(
                    network, prop, int(verdict.details.get("problem", 0)),
                    verdict.counterexample.input) is None:
                answer = "unknown"  # as `nobound verify`: only a replayed input counts
            record.update(answer=answer, method=verdict.method, bounded=verdict.bounded,
                          lower_bound=float(verdict.lower_bound)
                          if verdict.lower_bound is not None else None,
                          seconds=time.perf_counter() - start, reason=verdict.reason)
            record["outcome"] = ("unknown" if answer == "unknown" else
                                 "solved" if answer == row["consensus"] else
                                 "unconfirmed" if row["consensus"] == "unknown" else "wrong")
            records.append(record)
            print(f"{row['vnnlib']}: {answer} by {verdict.method} in "
                  f"{record['seconds']:.1f} s ({verdict.bounded} sub-problems; consensus "
                  f"{row['consensus']}) -> {record['outcome']}", flush=True)
    return records


def summary(records: list[dict]) -> dict:
    counts: dict[str, int] = {}
    for record in records:
        key = record.get("outcome", record["answer"])
        counts[key] = counts.get(key, 0) + 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="a category folder with results.csv")
    parser.add_argument("--sample", type=int, default=0, help="instances (0: all)")
    parser.add_argument("--only", help="keep instances whose onnx/vnnlib path contains this")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="fraction of the competition's timeout")
    parser.add_argument("--bab-method", default="deeppoly")
    parser.add_argument("--branching", default="babsr")
    parser.add_argument("--bab-domain", default="auto", choices=("auto", "relu", "input"))
    parser.add_argument("--max-nodes", type=int, default=10**9)
    parser.add_argument("--cpu-clock", action="store_true",
                        help="deadlines in this process's CPU time (a loaded machine then "
                             "does not eat the budget; use one BLAS thread)")
    parser.add_argument("--skip-proof-check", action="store_true",
                        help="allow_roundoff_errors: measure the search without the "
                             "rigorous re-check of its proofs (not a sound verdict)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if not (args.folder / "results.csv").is_file():
        parser.exit(2, f"{args.folder}: no results.csv (not a benchmark category)\n")
    if args.cpu_clock:
        # every deadline in nobound reads time.perf_counter: make it this process's CPU time
        time.perf_counter = time.process_time
    config = CertifierConfig(bab_method=args.bab_method, branching=args.branching,
                             bab_domain=args.bab_domain, max_nodes=args.max_nodes,
                             allow_roundoff_errors=args.skip_proof_check)
    records = run_instances(args.folder, args.sample, args.scale, config, args.only)
    result = {"folder": str(args.folder), "scale": args.scale, "sample": args.sample,
              "bab_method": args.bab_method, "branching": args.branching,
              "bab_domain": args.bab_domain, "proof_check": not args.skip_proof_check,
              "clock": "process CPU time" if args.cpu_clock else "wall",
              "cpus": os.cpu_count(), "summary": summary(records), "instances": records}
    print(json.dumps(result["summary"]))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
