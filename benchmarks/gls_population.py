"""Fused population evaluation vs a member-by-member loop (the PGPE inner loop).

    OPENBLAS_NUM_THREADS=1 NOBOUND_DATA=../shared/data python benchmarks/gls_population.py \
        [--workers 2] --out benchmarks/results/gls_population.json

PGPE evaluates the certified loss of n_ps perturbed networks on the same minibatch.
nobound evaluates them in one call with a leading population axis on every parameter
(``evaluate_population``); the reference is the loop evotorch runs, one network at a time
(``evaluate_members_one_by_one``). Both compute the same numbers (checked here). The fused
evaluation is chunked as PGPE chunks it: ``member_chunking`` from the measured
per-member memory and ``--budget-mib`` (PGPE's host default, 128 MiB), and timed twice: on
one thread (``fused_serial``), and with ``--workers`` threads sharing the budget
(``fused``; default: cores / BLAS threads, see ``default_workers``). Wall time is the minimum over
repeats; CPU time (all threads) is recorded too. Targets: fused ≥ 5× faster than the loop
at batch 32, never slower at batch 512.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np
from gls_common import gls_parser, machine, mnist_batch, mnist_model, timed_with_cpu, write_results

from nobound.training.certified_loss import certified_loss
from nobound.training.execution_plan import default_workers, member_chunking
from nobound.training.perturbation import ParameterLayout, standard_normal_directions
from nobound.training.population import (
    bytes_per_member,
    evaluate_members_one_by_one,
    evaluate_population,
)


def population(model, members: int, sigma: float = 1e-3):
    params = dict(model.named_parameters())
    layout = ParameterLayout.of(params)
    center = layout.flatten(params)
    z = standard_normal_directions(0, 0, 0, range(members), layout.size, "bench",
                                   dtype=center.dtype)
    return layout, center[None, :] + sigma * z


def measure(arch: str, relaxation: str, batch: int, members: int, repeats: int,
            workers: int, budget_bytes: float) -> dict:
    images, labels, source = mnist_batch(batch)
    model = mnist_model(arch)
    layout, vectors = population(model, members)

    def loss_of(params):
        return certified_loss(model, images, labels, 0.1, relaxation, params=params).loss

    def member_vectors(start: int, stop: int):
        return vectors[start:stop]

    per_member = bytes_per_member(loss_of, layout, member_vectors)
    serial_chunk, _ = member_chunking(per_member, budget_bytes, members, 1)
    chunk, workers = member_chunking(per_member, budget_bytes, members, workers)  # as PGPE
    fused, fused_peak, fused_losses = timed_with_cpu(
        lambda: evaluate_population(loss_of, layout, member_vectors, members, chunk,
                                    workers), repeats)
    serial, _, serial_losses = timed_with_cpu(
        lambda: evaluate_population(loss_of, layout, member_vectors, members, serial_chunk),
        repeats)
    loop, loop_peak, loop_losses = timed_with_cpu(
        lambda: evaluate_members_one_by_one(loss_of, layout, vectors), repeats)
    agreement = float(max(np.max(np.abs(fused_losses - loop_losses)),
                          np.max(np.abs(serial_losses - loop_losses))))
    record = {"arch": arch, "relaxation": relaxation, "batch": batch, "members": members,
              "data": source, "workers": workers, "chunk": chunk,
              "serial_chunk": serial_chunk, "bytes_per_member": per_member,
              "fused_seconds": fused.wall,
              "fused_cpu_seconds": fused.cpu, "fused_serial_seconds": serial.wall,
              "fused_serial_cpu_seconds": serial.cpu, "loop_seconds": loop.wall,
              "loop_cpu_seconds": loop.cpu, "speedup": loop.wall / fused.wall,
              "speedup_serial": loop.wall / serial.wall,
              "speedup_cpu_serial": loop.cpu / serial.cpu,
              "max_abs_loss_difference": agreement,
              "fused_members_per_second": members / fused.wall,
              "fused_peak_bytes": fused_peak, "loop_peak_bytes": loop_peak}
    print(f"{arch:9s} {relaxation:9s} B={batch:4d} P={members:3d} chunks {serial_chunk}/{chunk} "
          f"fused ({workers} workers) "
          f"{fused.wall:7.3f} s, fused serial {serial.wall:7.3f} s, loop {loop.wall:7.3f} s: "
          f"speed-up {loop.wall / fused.wall:5.2f}x ({loop.wall / serial.wall:5.2f}x serial) "
          f"(|Δloss| ≤ {agreement:.1e})", flush=True)
    return record


def main() -> None:
    parser = gls_parser(__doc__)
    parser.add_argument("--settings", nargs="+", default=["32:32", "512:8"],
                        help="batch:members pairs (default 32:32 512:8)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--workers", type=int, default=None,
                        help="threads of the fused evaluation (default: cores / BLAS threads)")
    parser.add_argument("--budget-mib", type=float, default=128,
                        help="memory the chunks in flight may use (PGPE's host default)")
    parser.add_argument("--out", default="benchmarks/results/gls_population.json")
    args = parser.parse_args()
    workers = args.workers or default_workers()
    records = []
    for setting in args.settings:
        batch, members = (int(v) for v in setting.split(":"))
        for arch in args.archs:
            for relaxation in args.relaxations:
                records.append(measure(arch, relaxation, batch, members, args.repeats,
                                       workers, args.budget_mib * 2**20))
    write_results(args.out, {"benchmark": "gls_population", "machine": machine(),
                             "targets": {"speedup_at_batch_32": 5.0,
                                         "speedup_at_batch_512": 1.0},
                             "records": records})


if __name__ == "__main__":
    main()
