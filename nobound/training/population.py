"""Evaluating a loss at many parameter vectors at once (the population axis).

RGS and PGPE need L(θ_i) for a population θ_1 … θ_P of perturbed parameter vectors on the
*same* minibatch. Every layer and relaxation accepts parameters with a leading axis P, so
one call ``loss_of(params)`` with params of shape (c, *shape) gives c losses at the cost of
one batched pass — no Python loop over members. When P members do not fit in memory at once
the population is cut into chunks of c members, evaluated one chunk after another; the
chunk size comes from a memory budget and the per-member footprint measured here
(:func:`bytes_per_member`).

The member vectors are produced on demand by ``member_vectors(start, stop)`` (rows
θ_start … θ_{stop−1}, shape (stop − start, d)), so only one chunk of perturbed parameters
exists at any time; PGPE regenerates its noise from seeds to build them.

On a multi-core host the chunks can be evaluated concurrently by ``workers`` threads. The
heavy work of a chunk — BLAS products, the compiled im2col/col2im loops, NumPy passes over
large arrays — runs without the GIL, so two workers keep two cores busy. Each chunk is
evaluated exactly as in the serial loop (same members, same calls), so the losses equal
the serial chunked evaluation's bit for bit; only the order in which chunks finish
changes. How many workers and members per chunk is decided by the step's
:class:`~nobound.training.execution_plan.ExecutionPlan`; this module only evaluates.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any

import numpy as np

from nobound.autodiff import no_grad
from nobound.autodiff.tensor import Tensor
from nobound.backend import to_numpy, unwrap
from nobound.training.execution_plan import population_chunks
from nobound.training.perturbation import ParameterLayout

PopulationLoss = Callable[[dict[str, Tensor]], Tensor]  # params (c, *shape) → losses (c,)
MemberVectors = Callable[[int, int], Any]               # (start, stop) → (stop − start, d)


def map_in_order(function: Callable[[Any], Any], items: Sequence[Any], workers: int = 1
                 ) -> list[Any]:
    """``[function(item) for item in items]``, on up to ``workers`` threads at once.

    The results keep the items' order and each is computed exactly as in the serial loop,
    so anything summed from them in that order is the serial result bit for bit.
    """
    workers = min(max(1, workers), len(items))
    if workers == 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(workers, thread_name_prefix="nobound-worker") as pool:
        return list(pool.map(function, items))


def evaluate_population(loss_of: PopulationLoss, layout: ParameterLayout,
                        member_vectors: MemberVectors, population_size: int,
                        chunk_size: int | None = None, workers: int = 1) -> np.ndarray:
    """Losses L(θ_i) of all members, shape (P,), one batched call per chunk.

    The chunks are those of :func:`population_chunks`; ``workers`` > 1 evaluates them in
    that many threads at once (``loss_of`` and ``member_vectors`` must then be safe to call
    concurrently, as pure functions of their arguments are). Given the same chunks the
    losses are identical to the serial evaluation's, whatever the number of workers.

    Runs under ``no_grad``: PGPE needs no gradient. (A relaxation with an inner
    optimisation of its own — alpha-CROWN's slopes — re-enables the graph for it alone;
    the grad mode is per thread, so one worker's graph never leaks into another's.)
    """
    chunks = population_chunks(population_size, chunk_size, workers)

    def evaluate(chunk: tuple[int, int]) -> np.ndarray:
        start, stop = chunk
        params = layout.to_tensors(member_vectors(start, stop))
        with no_grad():
            chunk_losses = loss_of(params)
        return to_numpy(unwrap(chunk_losses)).reshape(stop - start).astype(np.float64)

    return np.concatenate(map_in_order(evaluate, chunks, workers))


def evaluate_members_one_by_one(loss_of: PopulationLoss, layout: ParameterLayout,
                                vectors: Any) -> np.ndarray:
    """The reference the batched evaluation must match: a Python loop over members, each
    evaluated with ordinary (unbatched) parameters. Used by tests and benchmarks."""
    losses = []
    with no_grad():
        for row in range(vectors.shape[0]):
            loss = loss_of(layout.to_tensors(vectors[row]))
            losses.append(float(to_numpy(unwrap(loss)).reshape(-1)[0]))
    return np.asarray(losses)


def measure_peak_bytes(run: Callable[[], Any], xp: ModuleType = np) -> int:
    """Peak bytes allocated while ``run()`` executes (host via tracemalloc, GPU via the
    CuPy memory pool, which keeps freed blocks and so ends at least at the peak)."""
    if xp is np:
        already = tracemalloc.is_tracing()
        if not already:
            tracemalloc.start()
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        run()
        _, peak = tracemalloc.get_traced_memory()
        if not already:
            tracemalloc.stop()
        return max(0, peak - base)
    pool = xp.get_default_memory_pool()
    xp.cuda.Device().synchronize()
    pool.free_all_blocks()
    base = pool.used_bytes()
    run()
    xp.cuda.Device().synchronize()
    return max(0, pool.total_bytes() - base)


def bytes_per_member(loss_of: PopulationLoss, layout: ParameterLayout,
                     member_vectors: MemberVectors, xp: ModuleType = np) -> float:
    """Marginal memory of one more member: peak(2 members) − peak(1 member).

    The difference removes what every chunk pays regardless of its size (the input, the
    region, the specification), leaving the per-member share that the budget must divide.
    """
    def run(count: int) -> Callable[[], Any]:
        return lambda: evaluate_population(loss_of, layout, member_vectors, count)

    one = measure_peak_bytes(run(1), xp)
    two = measure_peak_bytes(run(2), xp)
    return float(max(two - one, 1))
