"""Whole-box bounds on the eran sigmoid instances: nobound's relaxations and the checker's.

    python benchmarks/sigmoid_bounds.py [--limit N]

For every ``ffnnSIGMOID__Point_6x200`` instance of ../shared/vnncomp/2021/eran (36; each
property is 9 one-row disjuncts, all must be proved) this records the smallest lower bound
over the disjuncts of IBP, CROWN-IBP, DeepPoly and alpha-CROWN (nobound.bounds, plain
float64) and of the rigorous checker (nobound.certify.checker: its own DeepPoly
back-substitution with outward rounding, intersected at every layer with the interval
bounds from the layer before), the CPU seconds of each, and the published consensus. An
instance is "proved" by a method when its smallest bound is > 0. Results:
benchmarks/results/sigmoid_bounds_eran.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from vnncomp_rows import category_rows

ROOT = Path(__file__).resolve().parents[1]
ERAN = ROOT.parent / "shared" / "vnncomp" / "2021" / "eran"
RESULTS = ROOT / "benchmarks" / "results"
METHODS = ("ibp", "crown-ibp", "deeppoly", "alpha-crown")


def main() -> None:
    from nobound.autodiff.tensor import Tensor, no_grad
    from nobound.backend import to_numpy
    from nobound.bounds import Box, compute_bounds
    from nobound.certify.checker import checked_network, leaf_value, node_bounds
    from nobound.certify.problem import float64_model
    from nobound.io.models import load_network
    from nobound.io.vnnlib import read_vnnlib

    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    rows = [r for r in category_rows(ERAN) if "SIGMOID" in r["onnx"]][:args.limit]
    network = load_network(str(ERAN / rows[0]["onnx"]))
    model = float64_model(network.model)
    net = checked_network(model, network.input_shape)
    records = []
    for row in rows:
        prop = read_vnnlib(str(ERAN / row["vnnlib"]))
        lower = np.stack([network.to_model_input(d.input_lower) for d in prop.disjuncts])
        upper = np.stack([network.to_model_input(d.input_upper) for d in prop.disjuncts])
        spec = np.stack([d.spec for d in prop.disjuncts])       # (9, 1, 10)
        offset = np.stack([d.offset for d in prop.disjuncts])   # (9, 1)
        record = {"vnnlib": row["vnnlib"], "consensus": row["consensus"]}
        for method in METHODS:
            start = time.process_time()
            with no_grad():
                result = compute_bounds(model, Box(Tensor(lower), Tensor(upper)),
                                        method=method, spec=spec)
            value = to_numpy(result.lower.data).reshape(offset.shape) + offset
            record[method] = float(value.min())
            record[f"{method}_cpu_s"] = time.process_time() - start
        start = time.process_time()
        values, previous = [], None
        for n, disjunct in enumerate(prop.disjuncts):
            box = (lower[n].reshape(-1), upper[n].reshape(-1))
            if previous is None or not (np.array_equal(box[0], previous[0])
                                        and np.array_equal(box[1], previous[1])):
                bounds = node_bounds(net, box, [np.zeros(k, np.int8) for k in
                                                net.hidden_sizes], None)
                previous = box
            values.append(leaf_value(net, box, bounds, disjunct.spec, disjunct.offset,
                                     np.ones(1)))
        record["checker"] = float(min(values))
        record["checker_cpu_s"] = time.process_time() - start
        records.append(record)
        print(json.dumps(record), flush=True)
    proved = {m: sum(r[m] > 0 for r in records) for m in (*METHODS, "checker")}
    summary = {"instances": len(records), "proved": proved,
               "consensus": {v: sum(r["consensus"] == v for r in records)
                             for v in ("unsat", "sat", "unknown")},
               "load_average": os.getloadavg(), "records": records}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sigmoid_bounds_eran.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "records"}))


if __name__ == "__main__":
    main()
