"""Gradient accumulation: one optimiser step computed over micro-batches of its batch.

A back-propagated certified loss keeps its whole graph until the backward pass; with
DeepPoly the graph holds the back-substitution matrices of every layer, (B, n_l, n_k) per
pair of layers, so memory grows with the batch B (cnn3 at B = 512 needs several GB per
population member). The batch's loss is a mean over its examples,

    L(θ; batch) = (1/B) Σ_b ℓ(θ; x_b),

so cutting the batch into micro-batches M_1 … M_K and weighting each micro-batch's mean by
|M_k| / B gives the same gradient,

    ∇L = Σ_k (|M_k| / B) ∇L(θ; M_k),

with only one micro-batch's graph alive at a time. The same weighting averages the logged
metrics. It holds for every method whose gradient is linear in the per-example losses:
standard and PGD training, GRAD, and RGS (each micro-batch sees the *same* parameter noise,
drawn from the step's counters, so eq. 6 averages the same perturbed networks). Two things
do change with micro-batches, as with gradient accumulation in any framework: BatchNorm in
training mode normalises with each micro-batch's statistics (and updates its running
statistics once per micro-batch), and per-example randomness
drawn per call (PGD's random start) is drawn per micro-batch. PGPE needs no graph and
bounds its memory by evaluating population chunks (:mod:`nobound.training.population`).

**Data parallelism.** The terms of the sum are independent, so ``workers`` threads may
compute them at once (each micro-batch's forward and backward pass on its own leaf
tensors, :class:`~nobound.training.method.BackpropMethod`); the sum is then formed in the
micro-batches' order, so the gradient is bit for bit the serial one whatever the number of
workers. On a multi-core host with one BLAS thread per worker this keeps every core busy
through the single-threaded parts of a step (NumPy passes, the compiled loops), where BLAS
threads cannot help. Memory: ``workers`` micro-batch graphs are alive at once. Not for a
train-mode BatchNorm (its running statistics are updated per micro-batch, in order), nor
for RGS, which puts its members on threads instead (``parallel_micro_batches``). The
micro-batches and their workers are the trainer's
:class:`~nobound.training.execution_plan.ExecutionPlan`'s.
"""

from __future__ import annotations

from typing import Any

from nobound.nn.module import Module
from nobound.training.execution_plan import micro_batch_slices
from nobound.training.method import StepContext, StepResult, TrainingMethod
from nobound.training.population import map_in_order


def accumulate_micro_batches(method: TrainingMethod, model: Module, images: Any, labels: Any,
                             context: StepContext, micro_batch_size: int,
                             workers: int = 1) -> StepResult:
    """The method's step on the whole batch, computed one micro-batch at a time, or
    ``workers`` at a time on threads (when allowed is decided by
    :meth:`ExecutionPlan.threads <nobound.training.execution_plan.ExecutionPlan.threads>`).

    Gradients and metrics are the |M_k|/B-weighted sums of the micro-batches' (see the
    module docstring), summed in the micro-batches' order; the method must return
    gradients (not update the model itself).
    """
    batch_size = len(labels)
    parts = micro_batch_slices(batch_size, micro_batch_size)

    def step(part: slice) -> StepResult:
        return method.compute_step(model, images[part], labels[part], context)

    results = map_in_order(step, parts, workers)
    gradients: dict[str, Any] | None = None
    metric_sums: dict[str, float] = {}
    for part, result in zip(parts, results, strict=True):
        if result.gradients is None:
            raise ValueError(f"method {method.name!r} updates the model itself; it cannot be "
                             "split into micro-batches")
        weight = (part.stop - part.start) / batch_size
        if gradients is None:
            gradients = {name: weight * gradient for name, gradient in result.gradients.items()}
        else:
            for name, gradient in result.gradients.items():
                gradients[name] = gradients[name] + weight * gradient
        for key, value in result.metrics.items():
            if value is not None:
                metric_sums[key] = metric_sums.get(key, 0.0) + weight * float(value)
    return StepResult(gradients, metric_sums)
