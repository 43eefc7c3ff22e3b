"""The training step the paper's DeepPoly rows need: DeepPoly-GRAD and DeepPoly-RGS on cnn3.

    OPENBLAS_NUM_THREADS=1 NOBOUND_DATA=../shared/data python benchmarks/bounds_training_step.py \
        --batch 256 --repeats 3 --out benchmarks/results/bounds_training_step.json

One MNIST batch (uniform noise without the data set: the bounds' cost barely depends on the
pixels), cnn3 with the IBP initialisation, eps 0.1, the trainer's step (the method's gradient,
clipping, Adam): GRAD, RGS with n_ps = 2 in one batched pass (``workers=1``), RGS on the
trainer's default worker threads, and GRAD with the batch split into ``--threads``
micro-batches computed on as many threads (``nobound train --micro-batch B/2
--micro-batch-workers 2``: the same gradient, both cores). Calls are interleaved; the
minimum wall and CPU seconds over ``--repeats`` are kept, with the load average. The
estimate ``hours_for_70_epochs`` is ``70 · ⌈60000 / batch⌉ · seconds per step`` from the
wall time — the question of issue 12 is whether 70 epochs of DeepPoly-GRAD fit in two hours
(wall times mean something only on an otherwise idle machine).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import gls_common as common  # noqa: E402
from gls_training import step_runner  # noqa: E402

from nobound.training.method import create_method  # noqa: E402

STEPS_PER_EPOCH_FULL = 60000


def main() -> None:
    parser = common.gls_parser(__doc__.split("\n\n")[0], relaxations=False)
    parser.set_defaults(archs=["cnn3"])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2,
                        help="also GRAD with the batch split into this many micro-batches "
                             "on as many threads (1: not measured)")
    parser.add_argument("--out", default="benchmarks/results/bounds_training_step.json")
    args = parser.parse_args()
    load_before = os.getloadavg()
    records = []
    for arch in args.archs:
        images, labels, source = common.mnist_batch(args.batch)
        methods = {"grad": create_method("grad", relaxation="deeppoly"),
                   "rgs_one_pass": create_method("rgs", relaxation="deeppoly",
                                                 population_size=2, workers=1),
                   "rgs": create_method("rgs", relaxation="deeppoly", population_size=2)}
        runs = {name: step_runner(common.mnist_model(arch), method, images, labels)
                for name, method in methods.items()}
        if args.threads > 1:  # GRAD's batch split over threads (--micro-batch-workers)
            runs["grad_threads"] = step_runner(common.mnist_model(arch), methods["grad"],
                                               images, labels, -(-args.batch // args.threads),
                                               args.threads)
        peaks = {name: common.warm_up(run)[0] for name, run in runs.items()}
        timings = common.interleaved_minimum(runs, args.repeats)
        steps = 70 * -(-STEPS_PER_EPOCH_FULL // args.batch)
        record = {"arch": arch, "relaxation": "deeppoly", "batch": args.batch, "data": source}
        for name in runs:
            seconds = timings[name].wall
            record[name] = {"seconds_per_step": seconds,
                            "cpu_seconds_per_step": timings[name].cpu,
                            "peak_bytes": peaks[name],
                            "hours_for_70_epochs": steps * seconds / 3600}
            print(f"{arch} deeppoly B={args.batch} {name:12s} {seconds:7.3f} s/step wall, "
                  f"{timings[name].cpu:7.3f} s CPU; 70 epochs "
                  f"{record[name]['hours_for_70_epochs']:.2f} h", flush=True)
        records.append(record)
    common.write_results(args.out, {"machine": common.machine(),
                                    "load_average_before": load_before,
                                    "load_average_after": os.getloadavg(), "results": records})


if __name__ == "__main__":
    main()
