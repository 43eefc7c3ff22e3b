"""Certified-training step cost: GRAD vs RGS (n_ps = 2) vs PGPE (n_ps = 256).

    OPENBLAS_NUM_THREADS=1 NOBOUND_DATA=../shared/data python benchmarks/gls_training.py \
        --archs cnn3_tiny cnn3 --relaxations ibp deeppoly --batch 512 \
        --data-parallel 2 --out benchmarks/results/gls_training.json

For each architecture × relaxation, on one MNIST batch: seconds per training step
(``compute_step`` + the optimiser's update, i.e. what the trainer does per step) of GRAD,
RGS with n_ps = 2 and PGPE, and the peak memory of each step. The paper's target for RGS
is ≤ 1.7× a GRAD step (App. F.6: "just n_ps = 2 times larger"; batching the two members
should beat two sequential steps). PGPE with 256 members is linear in the population
(App. F.6) and far too slow at batch 512 on a CPU, so it is measured on
``--pgpe-members`` members in one fused chunk and reported both as measured and scaled to
256 (marked ``"extrapolated": true``), or on all 256 with ``--pgpe-members 256``. PGPE
evaluates its members as in training: chunks fitted to its memory budget, on
``default_workers()`` threads (2 on two cores with one BLAS thread).

RGS is timed twice: ``rgs_one_pass`` evaluates both members in one batched pass
(``workers=1``), ``rgs`` with the trainer's default, ``default_workers()`` threads each
taking a chunk of the members (2 on two cores with one BLAS thread: one member per core).
Since threads give RGS the second core, ``--data-parallel N`` also times GRAD with its
micro-batches (``--micro-batch``, else batch / N) on N threads (``--micro-batch-workers``),
GRAD's own way of using the cores, and ``rgs_over_fastest_grad`` compares RGS with the
faster GRAD. (GRAD with BLAS on two threads is measured by running the script with
``OPENBLAS_NUM_THREADS=2``: in-process switching left OpenBLAS threads spinning into the
next timed call.)

The methods' timed calls are interleaved (GRAD, RGS, PGPE, GRAD, …) so a change of machine
load hits all of them alike; both the wall-clock and the process CPU time are kept (the
minimum over ``--repeats``), and the ratios are given for both. ``--micro-batch M``
computes GRAD's and RGS's steps over micro-batches of M examples (the trainer's
``--micro-batch``: the same gradient, one micro-batch's graph in memory at a time), which
is what lets DeepPoly on cnn3 run at batch 512.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from gls_common import (
    gls_parser,
    interleaved_minimum,
    machine,
    mnist_batch,
    mnist_model,
    warm_up,
    write_results,
)

from nobound.training.method import StepContext, create_method
from nobound.training.micro_batches import accumulate_micro_batches
from nobound.training.optim import Adam, clip_by_global_norm


def step_runner(model, method, images, labels, micro_batch: int = 0, workers: int = 1):
    """One trainer step: the method's gradient (or own update), clipping, Adam; over
    micro-batches of ``micro_batch`` examples, ``workers`` of them at once, when set."""
    optimizer = Adam(dict(model.named_parameters()), lr=1e-5)
    context = StepContext(epoch=0, step=0, batch_index=0, steps_per_epoch=100, seed=0,
                          eps=0.1, lr=1e-5)

    def run():
        if micro_batch and method.splits_into_micro_batches:
            result = accumulate_micro_batches(method, model, images, labels, context,
                                              micro_batch, workers)
        else:
            result = method.compute_step(model, images, labels, context)
        if result.gradients is not None:
            gradients = dict(result.gradients)
            clip_by_global_norm(gradients, 10.0)
            optimizer.step(gradients)
    return run


def measure(arch: str, relaxation: str, batch: int, repeats: int, pgpe_members: int,
            micro_batch: int = 0, data_parallel: int = 0) -> dict:
    images, labels, source = mnist_batch(batch)
    methods = {
        "grad": create_method("grad", relaxation=relaxation),
        # one batched pass over both members, and the members on default_workers() threads
        "rgs_one_pass": create_method("rgs", relaxation=relaxation, population_size=2,
                                      workers=1),
        "rgs": create_method("rgs", relaxation=relaxation, population_size=2),
        # PGPE's own chunking (memory budget) and worker threads, as in training
        "pgpe": create_method("pgpe", relaxation=relaxation, population_size=pgpe_members),
    }
    record = {"arch": arch, "relaxation": relaxation, "batch": batch, "data": source,
              "pgpe_members_measured": pgpe_members, "micro_batch": micro_batch,
              "rgs_workers": methods["rgs"].workers_for(mnist_model(arch), images)}
    runs = {name: step_runner(mnist_model(arch), method, images, labels, micro_batch)
            for name, method in methods.items()}
    if data_parallel > 1:  # GRAD's micro-batches on threads (--micro-batch-workers)
        parallel_micro_batch = micro_batch or -(-batch // data_parallel)
        methods["grad_data_parallel"] = methods["grad"]
        runs["grad_data_parallel"] = step_runner(mnist_model(arch), methods["grad"], images,
                                                 labels, parallel_micro_batch, data_parallel)
        record["grad_data_parallel_setting"] = {"micro_batch": parallel_micro_batch,
                                                "workers": data_parallel}
    peaks = {name: warm_up(run)[0] for name, run in runs.items()}
    timings = interleaved_minimum(runs, repeats)
    for name in methods:
        seconds, cpu_seconds = timings[name].wall, timings[name].cpu
        entry = {"seconds_per_step": seconds, "cpu_seconds_per_step": cpu_seconds,
                 "steps_per_second": 1.0 / seconds, "peak_bytes": peaks[name]}
        if name == "pgpe":
            scale = 256 / pgpe_members
            entry = {"measured_members": pgpe_members, "seconds_measured": seconds,
                     "cpu_seconds_measured": cpu_seconds,
                     "peak_bytes_measured": peaks[name],
                     "seconds_per_step": seconds * scale,
                     "cpu_seconds_per_step": cpu_seconds * scale,
                     "steps_per_second": 1.0 / (seconds * scale),
                     "extrapolated": pgpe_members != 256}
        record[name] = entry
        print(f"{arch:9s} {relaxation:9s} B={batch} {name:5s} "
              f"{entry['seconds_per_step']:9.3f} s/step"
              + (f" ({'extrapolated to' if entry['extrapolated'] else 'measured with'} 256)"
                 if name == "pgpe" else ""), flush=True)
    for name in ("rgs", "rgs_one_pass", "pgpe"):
        for key, suffix in (("seconds_per_step", ""), ("cpu_seconds_per_step", "_cpu")):
            record[f"{name}_over_grad{suffix}"] = record[name][key] / record["grad"][key]
    fastest_grad = min(record[name]["seconds_per_step"]
                       for name in ("grad", "grad_data_parallel")
                       if name in record)
    record["rgs_over_fastest_grad"] = record["rgs"]["seconds_per_step"] / fastest_grad
    print(f"{arch:9s} {relaxation:9s} B={batch} RGS/GRAD wall {record['rgs_over_grad']:.2f} "
          f"CPU {record['rgs_over_grad_cpu']:.2f}; one pass {record['rgs_one_pass_over_grad']:.2f}"
          f"; RGS / fastest GRAD {record['rgs_over_fastest_grad']:.2f}", flush=True)
    return record


def main() -> None:
    parser = gls_parser(__doc__)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--pgpe-members", type=int, default=8)
    parser.add_argument("--micro-batch", type=int, default=0,
                        help="GRAD and RGS steps over micro-batches of this size (0: off)")
    parser.add_argument("--data-parallel", type=int, default=0,
                        help="also time GRAD with its micro-batches (--micro-batch, else "
                             "batch / N) on N threads (0: off)")
    parser.add_argument("--out", default="benchmarks/results/gls_training.json")
    args = parser.parse_args()
    records = []
    for arch in args.archs:
        for relaxation in args.relaxations:
            records.append(measure(arch, relaxation, args.batch, args.repeats,
                                   args.pgpe_members, args.micro_batch,
                                   args.data_parallel))
            # written after every configuration: a later one may run out of memory
            write_results(args.out, {"benchmark": "gls_training", "machine": machine(),
                                     "target_rgs_over_grad": 1.7, "records": records})


if __name__ == "__main__":
    main()
