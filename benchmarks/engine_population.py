"""Benchmark 3 (issue 2): P = 256 perturbed cnn3 networks on one batch, fused vs a loop.

    python benchmarks/engine_population.py [--threads 1] [--workers 2] \
        [--batches 32 512] [--budget-mib 128] [--device cpu|cuda]

RGS and PGPE evaluate many perturbed copies θ_i = θ + σ z_i of a network on the same
minibatch. nobound evaluates them *fused*: every parameter gets a leading population axis
and one ``model(x, params)`` call returns all members' logits
(``nobound.training.population.evaluate_population``, here with the cross-entropy of
each member). The reference is the Python loop over members, one ordinary forward each
(``evaluate_members_one_by_one``). Compared, at batch 32 and 512:

* ``loop``: one member at a time;
* ``fused``: all P members in one call;
* ``fused (budget)``: members in chunks sized by ``member_chunking`` from the
  measured per-member memory and ``--budget-mib``. The default, 128 MiB, is glibc's mmap
  threshold as set by :mod:`nobound.host_memory`: every array of a chunk then comes from
  heap memory that the next chunk reuses, instead of fresh pages faulted in on each call.
  Larger chunks are slower on a CPU, not faster.
* ``fused (budget, W workers)``: the same, with ``--workers`` threads evaluating chunks
  at once (the budget shared among them). Default: ``default_workers()``, i.e. cores /
  BLAS threads, so 2 with ``--threads 1`` on 2 cores and 1 (no such row) with
  ``--threads 2``. Its CPU time counts every thread.

All give the same losses (checked against the loop; the threaded run is also checked
bit for bit against the serial run of the same chunks). Peak memory is tracemalloc's peak of traced
allocations during one call (NumPy registers every array buffer with tracemalloc; BLAS
work space is not included), via ``measure_peak_bytes``; on a GPU it is the CuPy memory
pool's high-water mark. Targets of issue 2: fused ≥ 5× faster than the loop at batch 32,
never slower at batch 512. Results: results/engine_population.json (``--threads 1``),
results/engine_population_threads<N>.json otherwise.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import numpy as np
from engine_common import (
    add_common_arguments,
    interleaved,
    machine,
    print_table,
    use_threads,
    write_results,
)

from nobound.autodiff import Tensor
from nobound.nn import build_model, kaiming_uniform
from nobound.training.execution_plan import default_workers, member_chunking
from nobound.training.losses import cross_entropy
from nobound.training.perturbation import ParameterLayout
from nobound.training.population import (
    bytes_per_member,
    evaluate_members_one_by_one,
    evaluate_population,
    measure_peak_bytes,
)


def candidates(batch: int, args: Any, xp: Any) -> tuple[dict[str, Callable[[], Any]], dict]:
    """The three evaluations of one batch size, and facts about them (chunk, memory)."""
    rng = np.random.default_rng(args.seed)
    model = kaiming_uniform(build_model("cnn3", (1, 28, 28), 10), args.seed)
    if xp is not np:
        model.to("cuda")
    params = dict(model.named_parameters())
    layout = ParameterLayout.of(params)
    center = layout.flatten(params)
    noise = xp.asarray(rng.standard_normal((args.population, layout.size), dtype=np.float32))
    vectors = center[None, :] + args.sigma * noise
    images = Tensor(xp.asarray(rng.uniform(size=(batch, 1, 28, 28)).astype(np.float32)))
    labels = xp.asarray(rng.integers(0, 10, batch))

    def loss_of(member_params: dict[str, Tensor]) -> Tensor:
        return cross_entropy(model(images, member_params), labels)

    def members(start: int, stop: int) -> Any:
        return vectors[start:stop]

    population = args.population
    per_member = bytes_per_member(loss_of, layout, members, xp)
    chunk, _ = member_chunking(per_member, args.budget_mib * 2**20, population, 1)
    worker_chunk, workers = member_chunking(per_member, args.budget_mib * 2**20, population,
                                            args.workers or default_workers(xp))  # as PGPE

    def synchronised(run: Callable[[], Any]) -> Callable[[], Any]:
        if xp is np:
            return run
        return lambda: (run(), xp.cuda.Device().synchronize())[0]

    runs = {
        "loop": lambda: evaluate_members_one_by_one(loss_of, layout, vectors),
        "fused": lambda: evaluate_population(loss_of, layout, members, population),
        "fused (budget)": lambda: evaluate_population(loss_of, layout, members, population,
                                                      chunk_size=chunk),
    }
    threaded = f"fused (budget, {workers} workers)"
    if workers > 1:
        runs[threaded] = lambda: evaluate_population(loss_of, layout, members, population,
                                                     worker_chunk, workers)
    if per_member * population > args.max_unchunked_gib * 2**30:
        del runs["fused"]  # would not fit; the budgeted run is the fused result
    facts = {"bytes_per_member": per_member, "budget_chunk": chunk, "workers": workers,
             "worker_chunk": worker_chunk, "losses_agree": check_agreement(runs, xp)}
    if workers > 1:
        serial = evaluate_population(loss_of, layout, members, population, worker_chunk)
        if not np.array_equal(runs[threaded](), serial):
            raise AssertionError("the threaded evaluation differs from the serial one")
        facts["workers_equal_serial_exactly"] = True
    chunks = {"loop": 1, "fused": population, "fused (budget)": chunk, threaded: worker_chunk}
    facts["chunks"] = {name: chunks[name] for name in runs}
    return {name: synchronised(run) for name, run in runs.items()}, facts


def check_agreement(runs: dict[str, Callable[[], Any]], xp: Any) -> bool:
    """Every evaluation gives the loop's losses (float32 rounding apart)."""
    reference = runs["loop"]()
    for name, run in runs.items():
        losses = run()
        if not np.allclose(losses, reference, rtol=1e-4, atol=1e-5):
            raise AssertionError(f"{name} disagrees with the loop: "
                                 f"{np.max(np.abs(losses - reference))}")
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 512])
    parser.add_argument("--population", type=int, default=256)
    parser.add_argument("--sigma", type=float, default=0.01)
    parser.add_argument("--budget-mib", type=float, default=128,
                        help="memory budget for the chunked fused evaluation")
    parser.add_argument("--workers", type=int, default=None,
                        help="threads for the threaded fused evaluation (default: cores / "
                             "--threads; 1 leaves that row out)")
    parser.add_argument("--max-unchunked-gib", type=float, default=6,
                        help="skip the unchunked fused run when it would need more")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--min-seconds", type=float, default=0.3)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    use_threads(args.threads)
    if args.device == "cuda":
        import cupy as xp
    else:
        xp = np

    machine_info = machine(args.threads)  # load average at the start
    results, rows = [], []
    for batch in args.batches:
        runs, facts = candidates(batch, args, xp)
        timings = interleaved(runs, args.rounds, args.min_seconds)
        memory = {name: measure_peak_bytes(run, xp) for name, run in runs.items()}
        loop = timings["loop"]
        for name in runs:
            speedup = {key: loop[key] / timings[name][key]
                       for key in ("wall_median", "wall_min", "cpu_median", "cpu_min")}
            timings[name]["speedup_vs_loop"] = speedup
            timings[name]["peak_bytes"] = memory[name]
            rows.append({"batch": batch, "evaluation": name,
                         "chunk": facts["chunks"][name],
                         "ms (median wall)": 1e3 * timings[name]["wall_median"],
                         "speedup (wall)": speedup["wall_median"],
                         "speedup (cpu)": speedup["cpu_median"],
                         "peak MiB": memory[name] / 2**20})
        results.append({"batch": batch, **facts, "timings": timings})
        print(f"batch {batch} done", flush=True)
    print(f"\nP = {args.population} cnn3 members, {args.threads} BLAS thread(s), "
          f"{args.device}:")
    print_table(rows, list(rows[0]))
    suffix = "_cuda" if args.device == "cuda" else \
        ("" if args.threads == 1 else f"_threads{args.threads}")
    write_results(f"engine_population{suffix}", {
        "benchmark": "population evaluation, fused vs loop",
        "machine": machine_info,
        "settings": {"population": args.population, "sigma": args.sigma,
                     "budget_mib": args.budget_mib, "device": args.device,
                     "workers": args.workers or default_workers(xp),
                     "memory_method": "tracemalloc peak of traced allocations during one "
                                      "call (CuPy pool high-water mark on GPU)"},
        "results": results,
        "targets": {"batch_32_speedup_at_least": 5.0, "batch_512_speedup_at_least": 1.0}},
        args.results_dir)


if __name__ == "__main__":
    main()
