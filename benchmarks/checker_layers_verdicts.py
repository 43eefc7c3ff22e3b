"""Verdicts on Sigmoid and MaxPool networks now that their proofs are checked rigorously.

    python benchmarks/checker_layers_verdicts.py [--timeout S] [--eran N] [--maxpool N]
        [--append]

Runs the first N eran ``ffnnSIGMOID__Point_6x200`` instances and the first N verivital
``Convnet_maxpool`` instances (``--append``: only those not in the results file yet, added
to it) of ../shared/vnncomp through the certifier as ``nobound
verify`` builds it (its loader, the default methods, branch and bound off: it splits ReLUs
only), in this process so that an exception is recorded with its message. Every proof goes
through the rigorous checker (``checked_network``: Sigmoid, Tanh, MaxPool). Records
verdict, deciding method, reason, CPU seconds and the published consensus per instance.
Results: benchmarks/results/checker_layers_verdicts.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

from vnncomp_rows import category_rows

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "vnncomp" / "2021"
RESULTS = ROOT / "benchmarks" / "results"


def instances(folder: str, marker: str, count: int) -> list[dict[str, str]]:
    rows = [r for r in category_rows(SHARED / folder) if marker in r["onnx"]]
    return [dict(r, folder=folder) for r in rows[:count]]


def decide(row: dict[str, str], timeout: float) -> dict:
    from nobound.certify.pipeline import Certifier, CertifierConfig
    from nobound.certify.replay import network_replay
    from nobound.cli.verify import load_problems

    start = time.process_time()
    folder = SHARED / row["folder"]
    try:
        network, _, problems = load_problems(str(folder / row["onnx"]),
                                             str(folder / row["vnnlib"]))
        config = replace(CertifierConfig(), timeout=timeout, bab=False)
        verdict = Certifier(network.model, network.input_shape, config,
                            replay=network_replay(network)).verify(problems)
        outcome = {"status": verdict.status, "method": verdict.method,
                   "reason": verdict.reason,
                   "proof_check": verdict.details.get("proof_check", "")}
    except Exception as error:  # recorded, not hidden: a traceback is a finding
        outcome = {"status": "error", "reason": f"{type(error).__name__}: {error}"}
    outcome["cpu_s"] = round(time.process_time() - start, 2)
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--eran", type=int, default=6)
    parser.add_argument("--maxpool", type=int, default=10)
    parser.add_argument("--append", action="store_true")
    args = parser.parse_args()
    rows = instances("eran", "SIGMOID", args.eran) + \
        instances("verivital", "maxpool", args.maxpool)
    path = RESULTS / "checker_layers_verdicts.json"
    records = json.loads(path.read_text())["records"] if args.append else []
    done = {(r["onnx"], r["vnnlib"]) for r in records}
    for row in rows:
        if (row["onnx"], row["vnnlib"]) in done:
            continue
        record = {"onnx": row["onnx"], "vnnlib": row["vnnlib"], "consensus": row["consensus"]}
        record.update(decide(row, args.timeout))
        records.append(record)
        print(json.dumps(record), flush=True)
    result = {"timeout_s": args.timeout, "load_average": os.getloadavg(), "records": records}
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
