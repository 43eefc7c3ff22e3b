"""What the rigorous proof check costs: certify with and without it, and the check alone.

    OPENBLAS_NUM_THREADS=1 NOBOUND_DATA=../shared/data python benchmarks/proof_check_cost.py \
        --model /work/runs/lr-5e-4-ibp-grad-cnn3_tiny/model.h5 --eps 0.1 0.2 --n 20 \
        --out benchmarks/results/proof_check_cost.json

Per MNIST test image and eps, ``Certifier.certify_sample`` runs twice, interleaved: with the
default self-check (every proof re-derived with outward rounding on the stored weights,
:mod:`nobound.certify.checker`) and with ``allow_roundoff_errors=True`` (the unchecked,
unrounded path). Reported per eps: total CPU seconds of each (``time.process_time``, robust
to other processes on a loaded machine) and their ratio; the CPU seconds spent inside the
check; and, on the same boxes, the check of a one-leaf proof against the certifier's own
unrounded DeepPoly bound of the same rows (the cost of sound rounding in the checker's
NumPy code against the fast path it re-derives). Verdicts must agree except where the
check refuses a proof (then the checked run says ``unknown`` or goes on to branch and bound).
``--bab-instances N`` adds N tiny networks that only branch and bound proves, so that the
check re-derives whole split trees.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from nobound.certify.certificate import LeafProof, TreeNode, problem_certificate
from nobound.certify.checker import check_proofs
from nobound.certify.pipeline import Certifier, CertifierConfig
from nobound.certify.problem import robustness_problems
from nobound.data import load_dataset
from nobound.io.checkpoint import load_checkpoint


def timed(function, *args):
    start = time.process_time()
    result = function(*args)
    return result, time.process_time() - start


def branch_and_bound_rows(count: int, timeout: float) -> dict:
    """Tiny random networks (3-10-10-2) on boxes whose exact minimum (MILP) of y₀ − y₁ is
    shifted to +0.005: proved by branch and bound, so the check re-derives whole trees."""
    from nobound.certify.problem import VerificationProblem
    from nobound.exact import minimise_output
    from nobound.nn import Linear, ReLU, Sequential, initialise

    totals = {"checked": 0.0, "unchecked": 0.0}
    check_seconds, verdicts, nodes = [0.0], {"checked": {}, "unchecked": {}}, 0
    for seed in range(count):
        rng = np.random.default_rng(seed)
        model = Sequential(Linear(3, 10, dtype=np.float64), ReLU(),
                           Linear(10, 10, dtype=np.float64), ReLU(),
                           Linear(10, 2, dtype=np.float64))
        initialise(model, "kaiming", seed=seed)
        for layer in model.layers:
            if isinstance(layer, Linear):
                layer.bias.data = rng.normal(scale=0.3, size=layer.bias.shape)
        model.eval()
        centre = rng.uniform(-1, 1, 3)
        lower, upper = centre - 0.6, centre + 0.6
        row = np.array([1.0, -1.0])
        exact = minimise_output(model, lower, upper, row).value
        problem = VerificationProblem(model, lower, upper, row[None], np.array([0.005 - exact]))
        for name, allow in (("unchecked", True), ("checked", False)):
            certifier = Certifier(model, (3,), CertifierConfig(
                timeout=timeout, max_nodes=5000, methods=("deeppoly",),
                allow_roundoff_errors=allow))
            if not allow:
                original = certifier.rejection

                def counted(problem, nodes, original=original, total=check_seconds):
                    reason, seconds = timed(original, problem, nodes)
                    total[0] += seconds
                    return reason

                certifier.rejection = counted
            verdict, seconds = timed(certifier.verify, [problem])
            totals[name] += seconds
            verdicts[name][verdict.status] = verdicts[name].get(verdict.status, 0) + 1
            nodes += verdict.bounded if not allow else 0
    return {"instances": count, "cpu_seconds": totals,
            "ratio_checked_to_unchecked": totals["checked"] / totals["unchecked"],
            "check_cpu_seconds": check_seconds[0], "verdicts": verdicts,
            "sub_problems_checked_run": nodes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bab-instances", type=int, default=0,
                        help="also time N tiny networks proved by branch and bound")
    parser.add_argument("--model", required=True)
    parser.add_argument("--eps", type=float, nargs="+", default=[0.1])
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("--out")
    args = parser.parse_args()
    checkpoint = load_checkpoint(args.model)
    dataset = checkpoint.config.get("run", {}).get("dataset", "mnist")
    data = load_dataset(dataset, "test", limit=args.n)
    rows = []
    for eps in args.eps:
        base = CertifierConfig(timeout=args.timeout, max_nodes=2000)
        checked = Certifier(checkpoint.model, data.input_shape, base)
        unchecked = Certifier(checkpoint.model, data.input_shape,
                              CertifierConfig(timeout=args.timeout, max_nodes=2000,
                                              allow_roundoff_errors=True))
        _, build = timed(lambda certifier=checked: certifier.stored)
        check_seconds = [0.0]
        original = checked.rejection

        def counted(problem, nodes, original=original, total=check_seconds):
            reason, seconds = timed(original, problem, nodes)
            total[0] += seconds
            return reason

        checked.rejection = counted
        totals = {"checked": 0.0, "unchecked": 0.0}
        verdicts = {"checked": {}, "unchecked": {}}
        disagreements = []
        leaf_check, leaf_deeppoly = 0.0, 0.0
        for index in range(len(data)):
            x, label = np.asarray(data.images[index], np.float64), int(data.labels[index])
            results = {}
            for name, certifier in (("unchecked", unchecked), ("checked", checked)):
                verdict, seconds = timed(certifier.certify_sample, x, label, eps)
                totals[name] += seconds
                results[name] = verdict.status
                verdicts[name][verdict.status] = verdicts[name].get(verdict.status, 0) + 1
            if results["checked"] != results["unchecked"]:
                disagreements.append([index, results["unchecked"], results["checked"]])
            # the check of one-leaf proofs vs the unrounded DeepPoly bound of the same rows
            problems = robustness_problems(checked.model, x, label, eps)
            _, seconds = timed(checked._stage_bounds, problems, "deeppoly")
            leaf_deeppoly += seconds
            certificates = [problem_certificate(p, [TreeNode(proof=LeafProof(
                [1.0], [], 0.0, "deeppoly"))]) for p in problems]
            _, seconds = timed(check_proofs, checked.stored, certificates, False)
            leaf_check += seconds
        rows.append({"eps": eps, "n": len(data), "cpu_seconds": totals,
                     "ratio_checked_to_unchecked": totals["checked"] / totals["unchecked"],
                     "check_cpu_seconds": check_seconds[0],
                     "stored_network_cpu_seconds": build, "verdicts": verdicts,
                     "disagreements": disagreements,
                     "one_leaf_check_cpu_seconds": leaf_check,
                     "unrounded_deeppoly_cpu_seconds": leaf_deeppoly,
                     "ratio_check_to_deeppoly": leaf_check / leaf_deeppoly})
        print(json.dumps(rows[-1]))
    result = {"model": args.model, "cpus": os.cpu_count(), "load": os.getloadavg(),
              "rows": rows}
    if args.bab_instances:
        result["branch_and_bound"] = branch_and_bound_rows(args.bab_instances, args.timeout)
        print(json.dumps(result["branch_and_bound"]))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
