"""Evaluating a loss at many parameter vectors at once (the population axis).

RGS and PGPE need L(θ_i) for a population θ_1 … θ_P of perturbed parameter vectors on the
*same* minibatch. Every layer and relaxation accepts parameters with a leading axis P, so
one call ``loss_of(params)`` with params of shape (c, *shape) gives c losses at the cost of
one batched pass — no Python loop over members. When P members do not fit in memory at once
the population is cut into chunks of c members, evaluated one chunk after another, and the
chunk size is derived from a memory budget and a measured per-member footprint.

The member vectors are produced on demand by ``member_vectors(start, stop)`` (rows
θ_start … θ_{stop−1}, shape (stop − start, d)), so only one chunk of perturbed parameters
exists at any time; PGPE regenerates its noise from seeds to build them.

On a multi-core host the chunks can be evaluated concurrently by ``workers`` threads. The
heavy work of a chunk — BLAS products, the compiled im2col/col2im loops, NumPy passes over
large arrays — runs without the GIL, so two workers keep two cores busy. Each chunk is
evaluated exactly as in the serial loop (same members, same calls), so the losses equal
the serial chunked evaluation's bit for bit; only the order in which chunks finish
changes. Each worker holds one chunk, so a memory budget is divided among them
(:func:`chunk_size_for_budget`).
"""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any

import numpy as np

from nobound.autodiff import no_grad
from nobound.autodiff.tensor import Tensor
from nobound.backend import to_numpy, unwrap
from nobound.nn.normalization import uses_batch_statistics
from nobound.training.perturbation import ParameterLayout

PopulationLoss = Callable[[dict[str, Tensor]], Tensor]  # params (c, *shape) → losses (c,)
MemberVectors = Callable[[int, int], Any]               # (start, stop) → (stop − start, d)


#: Environment variables that fix the BLAS thread count, the first one set wins.
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")


def default_workers(xp: ModuleType = np) -> int:
    """Worker threads for a population evaluation: usable cores / BLAS threads on the host
    (1 on a GPU, whose kernels already run in parallel on one stream).

    Usable cores come from ``os.sched_getaffinity``, BLAS threads from the first of
    BLAS_THREAD_VARIABLES that is set (BLAS libraries use every core by default). Workers
    and BLAS threads must not oversubscribe the cores: with OpenBLAS's two threads each,
    two workers on two cores ran 4× slower than one (spinning threads wait for each other).
    So the default is 1 unless BLAS was limited, e.g. ``OPENBLAS_NUM_THREADS=1``.
    """
    if xp is not np:
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not available on macOS and Windows
        cores = os.cpu_count() or 1
    setting = next((os.environ[name] for name in BLAS_THREAD_VARIABLES
                    if os.environ.get(name, "").strip().isdigit()), None)
    blas_threads = int(setting) if setting else cores
    return max(1, cores // max(1, blas_threads))


def workers_for_model(model: Any, requested: int | None, xp: ModuleType = np) -> int:
    """Threads for evaluating a model's population: ``requested`` (None: ``default_workers``),
    or 1 when the model has a train-mode BatchNorm, whose batch statistics live on the layer
    between the clean pass and the bound and so cannot be shared by threads."""
    if uses_batch_statistics(model):
        return 1
    return max(1, requested if requested is not None else default_workers(xp))


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


def population_chunks(population_size: int, chunk_size: int | None = None,
                      workers: int = 1) -> list[tuple[int, int]]:
    """The members [start, stop) of each chunk: runs of ``chunk_size`` members.

    Without a chunk size the population is one chunk, or with several workers one chunk
    per worker (⌈P / workers⌉ members each), so that every worker has one to evaluate.
    """
    if not chunk_size:
        chunk_size = -(-population_size // max(1, workers))
    chunk_size = max(1, min(chunk_size, population_size))
    return [(start, min(start + chunk_size, population_size))
            for start in range(0, population_size, chunk_size)]


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


def chunk_size_for_budget(bytes_per_member: float, budget_bytes: float, population_size: int,
                          multiple: int = 1, workers: int = 1) -> int:
    """The largest chunk (a multiple of ``multiple``, ≤ P) whose members fit the budget.

    ``workers`` threads each hold one chunk at a time, so each gets budget / workers, and
    the chunk is at most ⌈P / workers⌉ (rounded up to the multiple) so that every worker
    gets one. Never less than ``multiple`` (one pair for PGPE's symmetric sampling): a
    budget too small for one member still makes progress, just without batching.
    """
    workers = max(1, workers)
    share = -(-population_size // workers)
    share += -share % multiple
    if bytes_per_member <= 0:
        return min(share, population_size)
    fitting = int(budget_bytes / workers // bytes_per_member)
    chunk = max(multiple, fitting - fitting % multiple)
    return min(chunk, share, population_size)


def workers_for_budget(bytes_per_member: float, budget_bytes: float, workers: int,
                       multiple: int = 1) -> int:
    """``workers``, or 1 when the smallest chunk (``multiple`` members) alone exceeds the
    budget.

    Such members are far larger than any cache, and several workers would stream them
    through one memory bus at once: two DeepPoly members of ~1 GB each (cnn3, batch 512,
    before patches mode) evaluated by two workers ran at 0.57× the member loop, one worker
    at 0.83×. Members of a fraction of the budget gain from the second core (1.5× for cnn3
    DeepPoly at batch 32, 70 MB per member).
    """
    workers = max(1, workers)
    return 1 if multiple * bytes_per_member > budget_bytes else workers


def chunking_for_budget(bytes_per_member: float, budget_bytes: float, population_size: int,
                        workers: int, multiple: int = 1) -> tuple[int, int]:
    """(chunk size, workers) for a population under a memory budget: the workers of
    :func:`workers_for_budget`, each with a chunk of :func:`chunk_size_for_budget` from
    its share of the budget. This is how PGPE sizes its evaluation."""
    used = workers_for_budget(bytes_per_member, budget_bytes, workers, multiple)
    return chunk_size_for_budget(bytes_per_member, budget_bytes, population_size, multiple,
                                 used), used


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
