"""PGPE and RGS with their populations evaluated on Ray workers.

A step of PGPE or RGS evaluates the loss at P perturbed copies θ + σ z_i of the network,
chunk by chunk (:func:`nobound.training.execution_plan.population_chunks`). Here the chunks
are evaluated by Ray tasks (runs of consecutive chunks, two tasks per CPU of the cluster).
What a task receives is what every task of the step shares, put in Ray's object store
once per step (:class:`StepPayload`): the weights and buffers θ, σ, the minibatch, the
loss's settings and the step's counters (seed, epoch, step); the architecture is put once
per run. The task regenerates its members' noise z_i from the counter-based streams
``random_stream(seed, epoch, step, i)`` — the shared-seed idea of Salimans et al. (2017) —
so no noise crosses the network, and it returns only:

- PGPE: the members' losses (8 bytes each) and the chunk's metrics;
- RGS: the sum of the members' gradients (d numbers per chunk), losses and metrics.

The driver then updates the centre once, with the single-process code. Each chunk is
evaluated exactly as the single-process run evaluates it (same members, same calls, same
BLAS threads, see :mod:`nobound.distributed.cluster`), so

- PGPE's losses, hence its whole step, equal the single-process run bit for bit when the
  chunks are the same (``chunk_size`` / ``--population-chunk``);
- RGS's gradient is (Σ_chunks Σ_members g_i) / P instead of Σ_members g_i / P: the same
  numbers added in another order, equal to round-off (and bit for bit with one member per
  chunk, e.g. the paper's P = 2 on two workers).

A task whose worker dies is retried by Ray (``max_retries``); a task has no state beyond
its arguments, so the retry computes the same numbers. Nothing of the run lives on the
cluster between steps: checkpoints and resume are those of the single-process run, and a
run may resume on Ray, or without it, from the same checkpoint.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from nobound.autodiff import no_grad, ops
from nobound.backend import to_numpy
from nobound.bounds.plan import BoundsPlan
from nobound.nn.module import Module
from nobound.training.execution_plan import population_chunks, threads_may_share
from nobound.training.grad import certified_metrics
from nobound.training.method import PopulationBatch
from nobound.training.perturbation import ParameterLayout, standard_normal_directions
from nobound.training.pgpe import PGPETraining, symmetric_members
from nobound.training.rgs import RGSTraining

Metrics = dict[str, float]
#: a worker process that dies (killed, out of memory) has its task run again this often
MAX_RETRIES = 3


@dataclass(frozen=True)
class StepPayload:
    """Everything the tasks of one step share (host arrays; put once per step). The
    architecture travels apart, once per run (:meth:`RayPopulation.run`)."""

    state: dict[str, np.ndarray]  # this step's weights and buffers (θ)
    objective: Any                # the CertifiedObjective (relaxation, weights, options)
    images: np.ndarray
    labels: np.ndarray
    eps: float
    seed: int
    epoch: int
    step: int
    sigma: Any                    # PGPE: σ per parameter (d,); RGS: one number
    bounds_plan: BoundsPlan = BoundsPlan()  # the run's plan for compute_bounds

    def nbytes(self) -> int:
        """Bytes of the arrays that change every step (what the object store ships)."""
        arrays = [*self.state.values(), self.images, self.labels, np.asarray(self.sigma)]
        return int(sum(a.nbytes for a in arrays))


def _network(model: Module, payload: StepPayload) -> tuple[Module, ParameterLayout, Any]:
    """The worker's copy of the network at θ, its parameter layout and θ as one vector."""
    model.load_state_dict(payload.state)
    model.eval()  # no train-mode BatchNorm here (refused on the driver)
    params = dict(model.named_parameters())
    layout = ParameterLayout.of(params)
    return model, layout, layout.flatten(params)


def _loss(payload: StepPayload, model: Module, params: dict) -> Any:
    objective = payload.objective
    return objective(model, payload.images, payload.labels, payload.eps, params=params,
                     natural_metrics=objective.robust_weight < 1, plan=payload.bounds_plan)


def pgpe_chunk(model: Module, payload: StepPayload, start: int, stop: int
               ) -> tuple[np.ndarray, Metrics]:
    """Losses of PGPE members start … stop−1 and the chunk's metrics (run on a worker)."""
    model, layout, center = _network(model, payload)
    sigma = payload.sigma

    def directions(first: int, last: int) -> Any:
        return standard_normal_directions(payload.seed, payload.epoch, payload.step,
                                          range(first, last), layout.size,
                                          name="pgpe-noise", dtype=sigma.dtype)

    params = layout.to_tensors(symmetric_members(center, sigma, directions, start, stop))
    with no_grad():
        result = _loss(payload, model, params)
    losses = to_numpy(result.loss.data).reshape(stop - start).astype(np.float64)
    return losses, certified_metrics(result)


def rgs_chunk(model: Module, payload: StepPayload, start: int, stop: int
              ) -> tuple[np.ndarray, np.ndarray, Metrics]:
    """Σ_i ∇L(θ + σ z_i) over RGS members start … stop−1, their losses and the chunk's
    metrics (run on a worker)."""
    model, layout, center = _network(model, payload)
    directions = standard_normal_directions(payload.seed, payload.epoch, payload.step,
                                            range(start, stop), layout.size,
                                            name="rgs-noise", dtype=center.dtype)
    members = center[None, :] + payload.sigma * directions
    params = layout.to_tensors(members, requires_grad=True)
    result = _loss(payload, model, params)
    ops.sum(result.loss).backward()
    gradients = {name: p.grad if p.grad is not None else np.zeros_like(p.data)
                 for name, p in params.items()}
    gradient_sum = layout.flatten_population(gradients).sum(axis=0)
    losses = to_numpy(result.loss.data).reshape(stop - start).astype(np.float64)
    return gradient_sum, losses, certified_metrics(result)


class RayPopulation:
    """Runs chunk functions as Ray tasks, one payload per step, and counts the traffic."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        from nobound.distributed.cluster import connect

        self.ray = connect(address, num_cpus)
        self._remote: dict[str, Any] = {}
        self._model_for: tuple[int, Any] | None = None  # (id of the model, its ref)
        self.last_traffic: Metrics = {}

    def cpus(self) -> int:
        return max(1, int(self.ray.cluster_resources().get("CPU", 1)))

    def model_ref(self, model: Module) -> Any:
        """A host copy of the architecture in the object store, put once per model."""
        if self._model_for is None or self._model_for[0] != id(model):
            if not threads_may_share(model):
                raise ValueError("a train-mode BatchNorm keeps its batch statistics on the "
                                 "driver's layers: evaluate its population in one process")
            host = copy.deepcopy(model).to("cpu").eval()
            self._model_for = (id(model), self.ray.put(host))
        return self._model_for[1]

    def payload(self, method: Any, batch: PopulationBatch, sigma: Any) -> StepPayload:
        context = batch.context
        state = {name: to_numpy(value) for name, value in batch.model.state_dict().items()}
        return StepPayload(state, method.objective,
                           to_numpy(batch.images), to_numpy(batch.labels), context.eps,
                           context.seed, context.epoch, context.step, sigma,
                           context.plan.bounds)

    def run(self, function: Callable, model: Module, payload: StepPayload,
            chunks: list[tuple[int, int]]) -> list[Any]:
        """``[function(model, payload, start, stop) for (start, stop) in chunks]`` on the
        workers, in order. Consecutive chunks are grouped into two tasks per CPU: a task
        costs a scheduling round trip and a copy of the network, a chunk only its work."""
        if "tasks" not in self._remote:
            self._remote["tasks"] = self.ray.remote(num_cpus=1, max_retries=MAX_RETRIES)(
                _run_chunks)
        architecture, shared = self.model_ref(model), self.ray.put(payload)
        groups = _consecutive_groups(chunks, 2 * self.cpus())
        results = [result for group in self.ray.get(
            [self._remote["tasks"].remote(function, architecture, shared, group)
             for group in groups]) for result in group]
        self.last_traffic = {"ray_sent_bytes": float(payload.nbytes()),
                             "ray_returned_bytes": float(sum(_nbytes(r) for r in results))}
        return results


def _run_chunks(function: Callable, model: Module, payload: StepPayload,
                chunks: list[tuple[int, int]]) -> list[Any]:
    """One task: ``function`` on each chunk in turn (each chunk exactly as alone)."""
    return [function(model, payload, start, stop) for start, stop in chunks]


def _consecutive_groups(items: list[Any], count: int) -> list[list[Any]]:
    """``items`` cut into at most ``count`` runs of consecutive items, sizes within one."""
    count = max(1, min(count, len(items)))
    size, extra = divmod(len(items), count)
    bounds = [0]
    for index in range(count):
        bounds.append(bounds[-1] + size + (index < extra))
    return [items[first:last] for first, last in zip(bounds[:-1], bounds[1:], strict=True)]


def _nbytes(value: Any) -> int:
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, tuple | list):
        return sum(_nbytes(v) for v in value)
    if isinstance(value, Mapping):
        return 8 * len(value)  # numbers (their names are shared by every chunk)
    return 8


class RayPGPETraining(PGPETraining):
    """PGPE whose members are evaluated on Ray (same name and options as ``pgpe``, so its
    checkpoints are PGPE's and resume with or without Ray)."""

    def __init__(self, *args: Any, ray_address: str | None = None,
                 ray_cpus: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.population = RayPopulation(ray_address, ray_cpus)

    def member_losses(self, loss_of: Callable, member_vectors: Callable, chunk: int,
                      workers: int, batch: PopulationBatch,
                      parts: list[tuple[int, Metrics]]) -> np.ndarray:
        sigma = to_numpy(self.sigma)
        chunks = population_chunks(self.config.population_size, chunk, workers)
        results = self.population.run(pgpe_chunk, batch.model,
                                      self.population.payload(self, batch, sigma), chunks)
        parts.extend((len(losses), metrics) for losses, metrics in results)
        return np.concatenate([losses for losses, _ in results])

    def compute_step(self, model: Module, images: Any, labels: Any, context: Any) -> Any:
        result = super().compute_step(model, images, labels, context)
        result.metrics.update(self.population.last_traffic)
        return result


class RayRGSTraining(RGSTraining):
    """RGS whose member gradients are summed on Ray workers, one chunk per CPU of the
    cluster (same name and options as ``rgs``)."""

    def __init__(self, *args: Any, ray_address: str | None = None,
                 ray_cpus: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.population = RayPopulation(ray_address, ray_cpus)

    def smoothed_gradient(self, loss_of: Callable, layout: ParameterLayout, center: Any,
                          sigma: float, directions: Any, batch: PopulationBatch,
                          parts: list[tuple[int, Metrics]]) -> Any:
        chunks = population_chunks(self.population_size,
                                   workers=min(self.population.cpus(), self.population_size))
        results = self.population.run(rgs_chunk, batch.model,
                                      self.population.payload(self, batch, sigma), chunks)
        parts.extend((len(losses), metrics) for _, losses, metrics in results)
        total = results[0][0]
        for gradient_sum, _, _ in results[1:]:
            total = total + gradient_sum
        return _like(center, total / self.population_size)

    def compute_step(self, model: Module, images: Any, labels: Any, context: Any) -> Any:
        result = super().compute_step(model, images, labels, context)
        result.metrics.update(self.population.last_traffic)
        return result


def _like(reference: Any, host: np.ndarray) -> Any:
    """``host`` moved to where ``reference`` lives (the driver may hold θ on a GPU)."""
    from nobound.backend import get_array_module

    return get_array_module(reference).asarray(host, dtype=reference.dtype)


def on_ray(method: Any, address: str | None = None, cpus: int | None = None) -> Any:
    """The Ray-evaluating version of a PGPE or RGS method, with its options and state."""
    classes = {PGPETraining: RayPGPETraining, RGSTraining: RayRGSTraining}
    target = classes.get(type(method))
    if target is None:
        raise ValueError(f"only PGPE and RGS evaluate populations on Ray, not "
                         f"{method.name!r}")
    distributed = target(**method.options(), ray_address=address, ray_cpus=cpus)
    state = method.state_dict()
    if state:
        distributed.load_state_dict(state)
    return distributed
