"""PGPE with 256 members: one process vs Ray workers, wall time and traffic per step.

    OPENBLAS_NUM_THREADS=1 python benchmarks/ray_population.py --archs cnn3_tiny cnn3 \
        --relaxations ibp deeppoly --batch 128 --ray-cpus 2 \
        --out benchmarks/results/ray_population.json

For each architecture × relaxation, on one MNIST batch (synthetic if MNIST is absent):
seconds per PGPE step (``compute_step``: the population's losses, the fitness weights, the
centre's and σ's update) in this process — its chunks on ``default_workers()`` threads, 2 on
two cores with one BLAS thread — and with the same chunks as tasks on a local Ray cluster of
``--ray-cpus`` CPUs (:mod:`nobound.distributed`; one worker process per CPU), which take
the chunk size this process chose. Each side runs a warm-up step first (it also measures the
memory footprint that sizes the chunks) and then ``--steps`` timed steps (the minimum is
kept). Also recorded: the bytes put in the object store per step (θ and the
buffers, σ, the batch) and returned (losses and chunk metrics), whether both sides' σ and θ
after the steps are equal bit for bit, and the load average (this machine is shared: the
ratio, not the seconds, is the number to read; the Ray workers run at this process's
priority, not at Ray's default niceness 15, under which they starved beside the other jobs).
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from gls_common import gls_parser, machine, mnist_batch, mnist_model, write_results

from nobound.distributed import on_ray
from nobound.distributed.cluster import connect
from nobound.training.method import StepContext, create_method


def steps(method, model, images, labels, count: int) -> tuple[float, dict]:
    """(minimum wall seconds of ``count`` steps after a warm-up step, last metrics)."""
    times, metrics = [], {}
    for step in range(count + 1):
        context = StepContext(epoch=0, step=step, batch_index=step, steps_per_epoch=100,
                              seed=0, eps=0.1, lr=3e-4)
        start = time.perf_counter()
        metrics = method.compute_step(model, images, labels, context).metrics
        if step:
            times.append(time.perf_counter() - start)
    return min(times), metrics


def main() -> None:
    parser = gls_parser(__doc__)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--population", type=int, default=256)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--ray-cpus", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/ray_population.json")
    args = parser.parse_args()

    import ray

    connect(num_cpus=args.ray_cpus)  # workers at this process's priority and BLAS threads
    images, labels, source = mnist_batch(args.batch)
    rows = []
    for arch in args.archs:
        for relaxation in args.relaxations:
            results, chunk = {}, None
            for side in ("one_process", "ray"):
                model = copy.deepcopy(mnist_model(arch))
                # Ray takes the chunks this process chose (its footprint measurement varies
                # a little from run to run, and other chunks round differently)
                method = create_method("pgpe", relaxation=relaxation,
                                       population_size=args.population, chunk_size=chunk)
                if side == "ray":
                    method = on_ray(method)
                seconds, metrics = steps(method, model, images, labels, args.steps)
                results[side] = {"seconds": seconds, "model": model, "method": method,
                                 "metrics": metrics}
                chunk = int(metrics["population_chunk"])
                print(f"{arch} {relaxation} {side}: {seconds:.2f} s/step", flush=True)
            local, distributed = results["one_process"], results["ray"]
            same = all(np.array_equal(local["model"].state_dict()[k], v)
                       for k, v in distributed["model"].state_dict().items()) and \
                np.array_equal(local["method"].sigma, distributed["method"].sigma)
            rows.append({
                "arch": arch, "relaxation": relaxation, "batch": args.batch,
                "population": args.population,
                "chunk": int(distributed["metrics"]["population_chunk"]),
                "one_process_seconds": local["seconds"], "ray_seconds": distributed["seconds"],
                "ray_over_one_process": distributed["seconds"] / local["seconds"],
                "sent_bytes_per_step": distributed["metrics"]["ray_sent_bytes"],
                "returned_bytes_per_step": distributed["metrics"]["ray_returned_bytes"],
                "identical_update": bool(same), "load_average": machine()["load_average"]})
            print(rows[-1], flush=True)
            write_results(args.out, {"machine": machine(), "data": source,
                                     "ray_cpus": args.ray_cpus, "rows": rows})
    ray.shutdown()


if __name__ == "__main__":
    main()
