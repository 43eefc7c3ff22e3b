"""How a training run is executed: every rule that cuts or spreads its work, in one place.

A step computes the same numbers however it is executed; what varies is how the work is cut
to fit memory and spread over threads. The choices are one :class:`ExecutionPlan`, decided
once for a run — :meth:`TrainerConfig.execution_plan
<nobound.training.trainer.TrainerConfig.execution_plan>` builds it from the run's settings
(``nobound train``'s flags) — and handed down: the trainer puts it in every step's
:class:`~nobound.training.method.StepContext`, where the micro-batches, the population
methods and the certified loss read it. No method builds a plan of its own.

* **workers** — threads evaluating independent pieces at once: micro-batches
  (``micro_batch_workers``) or population chunks (``member_workers``); a step spreads one
  kind, never both. Default: usable cores / BLAS threads (:func:`default_workers`), 1 on a
  GPU.
* **the train-mode BatchNorm rule** — a model with a train-mode BatchNorm keeps one worker
  and one process (:func:`threads_may_share`): its batch statistics live on the layer
  between the clean pass and the bound, so threads or Ray tasks cannot share the model.
* **micro-batches** — examples per forward/backward pass of a step (gradient accumulation,
  :mod:`nobound.training.micro_batches`); 0: the whole batch at once.
* **member chunks and their memory budget** — population members per batched call, given
  (``member_chunk``) or fitted to a budget from a measured per-member footprint
  (:func:`member_chunking`); each worker holds one chunk, so the budget is divided among
  them.
* **the bound's plan** — inside one ``compute_bounds`` call, back-substitution rows are
  cut to the bound's memory budget and carried on receptive-field patches or dense, as
  ``bounds`` (a :class:`nobound.bounds.plan.BoundsPlan`) says; the certified loss passes
  it to ``compute_bounds``.

Every rule is a pure function of its arguments; nothing here is a module-level switch.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import Any

import numpy as np

from nobound.bounds.plan import BoundsPlan
from nobound.nn.normalization import uses_batch_statistics

#: Environment variables that fix the BLAS thread count, the first one set wins.
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")
#: Bytes a host population chunk may use by default (see :func:`default_member_budget`).
HOST_MEMBER_BUDGET = 128 * 2**20


def default_workers(xp: ModuleType = np) -> int:
    """Worker threads: usable cores / BLAS threads on the host (1 on a GPU, whose kernels
    already run in parallel on one stream).

    Usable cores come from ``os.sched_getaffinity``, BLAS threads from the first of
    BLAS_THREAD_VARIABLES that is set (BLAS libraries use every core by default). Workers
    and BLAS threads must not oversubscribe the cores: spinning BLAS threads of several
    workers wait for each other (measured in docs/benchmarks.md). So the default is 1
    unless BLAS was limited, e.g. ``OPENBLAS_NUM_THREADS=1``.
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


def threads_may_share(model: Any) -> bool:
    """The train-mode BatchNorm rule: False when the model normalises with batch statistics,
    which live on its layers between the clean pass and the bound — such a model is
    evaluated by one worker in one process."""
    return not uses_batch_statistics(model)


def default_member_budget(xp: ModuleType = np) -> float:
    """Bytes the population chunks in flight may use: 128 MiB on the host, half the free
    GPU memory.

    On the host, chunks larger than this stream through memory instead of the caches, and
    beyond the allocator's mmap threshold (:mod:`nobound.host_memory`) are mapped afresh on
    every call (docs/benchmarks.md, engine section (3), measures chunks against one call).
    """
    if xp is np:
        return float(HOST_MEMBER_BUDGET)
    free, _ = xp.cuda.Device().mem_info
    return 0.5 * (free + xp.get_default_memory_pool().free_bytes())


def member_chunking(bytes_per_member: float, budget_bytes: float, population_size: int,
                    workers: int, multiple: int = 1) -> tuple[int, int]:
    """(members per chunk, workers) for a population under a memory budget.

    Workers: ``workers``, or 1 when the smallest chunk (``multiple`` members) alone exceeds
    the budget. Such members are far larger than any cache, and several workers would
    stream them through one memory bus at once, while members of a fraction of the budget
    gain from a second core (both measured in docs/benchmarks.md, "Certified training").

    Chunk: the largest multiple of ``multiple`` whose members fit the budget / workers
    (each worker holds one chunk at a time), at most ⌈P / workers⌉ rounded up to the
    multiple so that every worker gets one, at most P. Never less than ``multiple`` (one
    pair for PGPE's symmetric sampling): a budget too small for one member still makes
    progress, just without batching. ``bytes_per_member`` ≤ 0 (nothing measured) leaves
    only the share rule.
    """
    workers = max(1, workers)
    if multiple * bytes_per_member > budget_bytes:
        workers = 1
    share = -(-population_size // workers)
    share += -share % multiple
    if bytes_per_member <= 0:
        return min(share, population_size), workers
    fitting = int(budget_bytes / workers // bytes_per_member)
    chunk = max(multiple, fitting - fitting % multiple)
    return min(chunk, share, population_size), workers


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


def micro_batch_slices(batch_size: int, micro_batch_size: int) -> list[slice]:
    """Consecutive slices of at most ``micro_batch_size`` examples covering the batch."""
    if micro_batch_size < 1:
        raise ValueError(f"micro-batch size must be at least 1, got {micro_batch_size}")
    return [slice(start, min(start + micro_batch_size, batch_size))
            for start in range(0, batch_size, micro_batch_size)]


@dataclass(frozen=True)
class ExecutionPlan:
    """The execution choices of a training run (module docstring).

    ``micro_batch`` 0: whole batches; ``micro_batch_workers`` / ``member_workers`` None:
    :func:`default_workers`; ``member_chunk`` None: fitted to ``member_budget_bytes``
    (None: :func:`default_member_budget`); ``bounds``: the plan of every bound the
    certified loss computes (the default is ``compute_bounds``' own default).
    """

    micro_batch: int = 0
    micro_batch_workers: int | None = None
    member_workers: int | None = None
    member_chunk: int | None = None
    member_budget_bytes: float | None = None
    bounds: BoundsPlan = field(default_factory=BoundsPlan)

    def __post_init__(self) -> None:
        if self.micro_batch < 0:
            raise ValueError(f"micro-batch size must be ≥ 0, got {self.micro_batch}")
        if self.micro_batch_workers is not None and self.micro_batch_workers < 1:
            raise ValueError(f"micro-batch workers must be ≥ 1, got {self.micro_batch_workers}")
        if self.member_workers is not None and self.member_workers < 1:
            raise ValueError(f"member workers must be ≥ 1, got {self.member_workers}")
        if self.member_chunk is not None and self.member_chunk < 1:
            raise ValueError(f"member chunk must be ≥ 1, got {self.member_chunk}")
        if self.member_budget_bytes is not None and self.member_budget_bytes <= 0:
            raise ValueError(f"member budget must be positive, got {self.member_budget_bytes}")
        if not isinstance(self.bounds, BoundsPlan):
            raise TypeError(f"bounds must be a BoundsPlan, got {type(self.bounds).__name__}")

    def with_member_options(self, workers: int | None = None, chunk: int | None = None,
                            budget_bytes: float | None = None) -> ExecutionPlan:
        """This plan with the population settings a method was given explicitly (None
        keeps the plan's). Only for a method built with them in code — benchmarks,
        checkpoints written before the plan held them; ``nobound train`` leaves them unset
        and puts its flags in the plan."""
        given = {name: value for name, value in (("member_workers", workers),
                                                 ("member_chunk", chunk),
                                                 ("member_budget_bytes", budget_bytes))
                 if value is not None}
        return replace(self, **given) if given else self

    def micro_batches(self, batch_size: int) -> list[slice] | None:
        """The micro-batches of a batch, or None when the batch is computed whole."""
        if not self.micro_batch or self.micro_batch >= batch_size:
            return None
        return micro_batch_slices(batch_size, self.micro_batch)

    def micro_batch_threads(self, model: Any, xp: ModuleType = np, *,
                            parallel: bool = True) -> int:
        """Threads computing a step's micro-batches at once: ``micro_batch_workers``; 1 when
        the method's micro-batches may not run at once (``parallel`` False) or the model
        has a train-mode BatchNorm."""
        return _threads(self.micro_batch_workers, model, xp, parallel=parallel)

    def member_threads(self, model: Any, xp: ModuleType = np, *,
                       limit: int | None = None) -> int:
        """Threads evaluating population chunks at once: ``member_workers``, never more
        than ``limit`` pieces; 1 for a model with a train-mode BatchNorm."""
        return _threads(self.member_workers, model, xp, limit=limit)

    def member_chunking(self, population_size: int, workers: int, xp: ModuleType,
                        bytes_per_member: Callable[[], float], multiple: int = 1
                        ) -> tuple[int, int]:
        """(members per chunk, workers): the given chunk with ``workers``, or
        :func:`member_chunking` from ``bytes_per_member()`` (a measurement, made only
        when needed) and the budget."""
        if self.member_chunk:
            return min(self.member_chunk, population_size), workers
        budget = self.member_budget_bytes if self.member_budget_bytes is not None \
            else default_member_budget(xp)
        return member_chunking(bytes_per_member(), budget, population_size, workers,
                               multiple)


def _threads(requested: int | None, model: Any, xp: ModuleType, *, parallel: bool = True,
             limit: int | None = None) -> int:
    """The requested or default workers, at most ``limit``; 1 when the pieces may not run
    at once (``parallel`` False, or the train-mode BatchNorm rule)."""
    if not parallel or not threads_may_share(model):
        return 1
    workers = requested if requested is not None else default_workers(xp)
    return max(1, workers if limit is None else min(workers, limit))


#: The plan of a step computed outside a trainer (a :class:`StepContext
#: <nobound.training.method.StepContext>` built without one): every default.
DEFAULT_PLAN = ExecutionPlan()


__all__ = ["BLAS_THREAD_VARIABLES", "DEFAULT_PLAN", "HOST_MEMBER_BUDGET", "ExecutionPlan",
           "default_member_budget", "default_workers", "member_chunking", "micro_batch_slices",
           "population_chunks", "threads_may_share"]
