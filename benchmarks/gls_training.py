"""Certified-training step cost: GRAD vs RGS (n_ps = 2) vs PGPE (n_ps = 256).

    NOBOUND_DATA=../shared/data python benchmarks/gls_training.py \
        --archs cnn3_tiny cnn3 --relaxations ibp deeppoly --batch 512 \
        --out benchmarks/results/gls_training.json

For each architecture × relaxation, on one MNIST batch: seconds per training step
(``compute_step`` + the optimiser's update, i.e. what the trainer does per step) of GRAD,
RGS with n_ps = 2 and PGPE, and the peak memory of each step. The paper's target for RGS
is ≤ 1.7× a GRAD step (App. F.6: "just n_ps = 2 times larger"; batching the two members
should beat two sequential steps). PGPE with 256 members is linear in the population
(App. F.6) and far too slow at batch 512 on a CPU, so it is measured on
``--pgpe-members`` members in one fused chunk and reported both as measured and scaled to
256 (marked ``"extrapolated": true``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from gls_common import machine, mnist_batch, mnist_model, timed, write_results

from nobound.training.method import StepContext, create_method
from nobound.training.optim import Adam, clip_by_global_norm


def step_runner(model, method, images, labels):
    """One trainer step: the method's gradient (or own update), clipping, Adam."""
    optimizer = Adam(dict(model.named_parameters()), lr=1e-5)
    context = StepContext(epoch=0, step=0, batch_index=0, steps_per_epoch=100, seed=0,
                          eps=0.1, lr=1e-5)

    def run():
        result = method.compute_step(model, images, labels, context)
        if result.gradients is not None:
            gradients = dict(result.gradients)
            clip_by_global_norm(gradients, 10.0)
            optimizer.step(gradients)
    return run


def measure(arch: str, relaxation: str, batch: int, repeats: int, pgpe_members: int) -> dict:
    images, labels, source = mnist_batch(batch)
    methods = {
        "grad": create_method("grad", relaxation=relaxation),
        "rgs": create_method("rgs", relaxation=relaxation, population_size=2),
        "pgpe": create_method("pgpe", relaxation=relaxation, population_size=pgpe_members,
                              chunk_size=pgpe_members),
    }
    record = {"arch": arch, "relaxation": relaxation, "batch": batch, "data": source,
              "pgpe_members_measured": pgpe_members}
    for name, method in methods.items():
        model = mnist_model(arch)
        run = step_runner(model, method, images, labels)
        seconds, peak, _ = timed(run, repeats)
        entry = {"seconds_per_step": seconds, "steps_per_second": 1.0 / seconds,
                 "peak_bytes": peak}
        if name == "pgpe":
            entry = {"measured_members": pgpe_members, "seconds_measured": seconds,
                     "peak_bytes_measured": peak,
                     "seconds_per_step": seconds * 256 / pgpe_members,
                     "steps_per_second": pgpe_members / (256 * seconds),
                     "extrapolated": pgpe_members != 256}
        record[name] = entry
        print(f"{arch:9s} {relaxation:9s} B={batch} {name:5s} "
              f"{entry['seconds_per_step']:9.3f} s/step"
              + (" (extrapolated to 256)" if name == "pgpe" else ""), flush=True)
    record["rgs_over_grad"] = record["rgs"]["seconds_per_step"] / \
        record["grad"]["seconds_per_step"]
    record["pgpe_over_grad"] = record["pgpe"]["seconds_per_step"] / \
        record["grad"]["seconds_per_step"]
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="+", default=["cnn3_tiny", "cnn3"])
    parser.add_argument("--relaxations", nargs="+", default=["ibp", "deeppoly"])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--pgpe-members", type=int, default=8)
    parser.add_argument("--out", default="benchmarks/results/gls_training.json")
    args = parser.parse_args()
    records = []
    for arch in args.archs:
        for relaxation in args.relaxations:
            records.append(measure(arch, relaxation, args.batch, args.repeats,
                                   args.pgpe_members))
            # written after every configuration: a later one may run out of memory
            write_results(args.out, {"benchmark": "gls_training", "machine": machine(),
                                     "target_rgs_over_grad": 1.7, "records": records})


if __name__ == "__main__":
    main()
