"""The certified-training loss on any relaxation (paper §2.1, App. A).

For a batch (x, t) and radius eps, a relaxation bounds the margins of the specification
rows y_t − y_j (j ≠ t) over the ball B^eps(x) from below by m_j. The upper bound on the
logit differences is therefore ȳ^Δ_j = −m_j, and the robust loss is the cross-entropy on it:

    L_rob = L_CE(ȳ^Δ, t) = ln(1 + Σ_{j≠t} exp(−m_j)),

mixed with the natural loss as  L = (1 − w) L_CE(f(x), t) + w L_rob + λ Σ_layers ‖W‖₁
(the L1 term sums the absolute weights of Linear/Conv layers, not biases).

Everything works with population parameters: with params of shape (P, *shape) the
relaxation returns (P, B, K) margins and every quantity below has a leading P axis — one
loss per member, shape (P,), which RGS backpropagates and PGPE ranks.

Batch certified accuracy counts a sample only when every margin lower bound is strictly
positive (m_j > 0 for all j): a margin of exactly 0 is a tie, not a certificate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nobound.autodiff import no_grad, ops
from nobound.autodiff.tensor import Tensor
from nobound.backend import unwrap
from nobound.bounds.api import METHODS
from nobound.bounds.plan import BoundsPlan
from nobound.nn.module import Module
from nobound.nn.normalization import uses_batch_statistics
from nobound.training.losses import cross_entropy, robust_cross_entropy

RELAXATIONS = METHODS  # the bound methods' names (nobound.bounds.relaxation.RELAXATIONS)


@dataclass
class CertifiedLoss:
    """The loss and its parts; Tensors are () for one network, (P,) for a population."""

    loss: Tensor
    robust_loss: Tensor
    natural_loss: Tensor | None  # None when skipped (natural_metrics=False)
    certified_accuracy: Any  # array, () or (P,)
    natural_accuracy: Any  # array, or None when skipped
    margin_lower: Any  # array (…, B, K): lower bounds on y_t − y_j


def certified_loss(model: Module, x: Any, targets: Any, eps: float, relaxation: str,
                   params: Mapping[str, Tensor] | None = None, robust_weight: float = 1.0,
                   l1_weight: float = 0.0, low: float = 0.0, high: float = 1.0,
                   bound_options: Mapping[str, Any] | None = None,
                   natural_metrics: bool = True,
                   plan: BoundsPlan | None = None) -> CertifiedLoss:
    """(1 − w)·CE_nat + w·CE_rob + λ·L1 on the relaxation ``relaxation`` at radius ``eps``.

    ``x`` is (B, C, H, W) in [low, high]; ``params`` optionally replaces the model's own
    parameters (a leading population axis gives per-member results). ``bound_options``
    goes to ``compute_bounds`` (e.g. ``alpha_steps``, ``alpha_step_size``).
    ``natural_metrics=False`` skips the natural forward pass when the loss does not need
    it (w = 1); ``natural_loss`` and ``natural_accuracy`` are then None. RGS and PGPE use
    it for their members and report natural metrics at the centre θ instead — for IBP the
    extra forward pass of every member would cost a third of the step.
    ``plan`` is how ``compute_bounds`` executes (memory budget, patches; a training step
    passes its run's ``context.plan.bounds``); None: ``compute_bounds``' default. It
    changes no bound beyond round-off.
    """
    from nobound.bounds import compute_bounds, linf_ball, margin_spec

    if relaxation not in RELAXATIONS:
        raise ValueError(f"unknown relaxation {relaxation!r}; choose from {RELAXATIONS}")
    if not 0.0 <= robust_weight <= 1.0:
        raise ValueError(f"robust weight must lie in [0, 1], got {robust_weight}")
    bound_options = dict(bound_options or {})
    if plan is not None:
        clash = sorted({"plan", "memory_budget_bytes"} & set(bound_options))
        if clash:  # the plan would silently override them
            raise ValueError(f"bound_options {clash} conflict with the plan; put the "
                             "execution choices in the plan only")
        bound_options["plan"] = plan
    x = x if isinstance(x, Tensor) else Tensor(x)
    targets = unwrap(targets)
    natural_only_for_metrics = robust_weight == 1.0
    logits = natural = None
    if not natural_only_for_metrics:
        logits = model(x, params)
    elif natural_metrics or uses_batch_statistics(model):
        # a train-mode BatchNorm is bounded with the statistics of this clean pass under
        # these parameters (see nobound.bounds.network), so it cannot be skipped
        with no_grad():
            logits = model(x, params)
    if logits is not None:
        natural = cross_entropy(logits, targets)
    num_classes = logits.shape[-1] if logits is not None else output_size(model, x)

    region = linf_ball(x, eps, low=low, high=high)
    spec = margin_spec(targets, num_classes)
    bounds = compute_bounds(model, region, method=relaxation, spec=spec, params=params,
                            **bound_options)
    margin_lower = bounds.lower
    population = population_size(model, params)
    if population is not None and margin_lower.ndim == 2:
        # a population of one must keep its axis (P = 1, B, K) like the natural logits
        margin_lower = margin_lower.reshape((population, *margin_lower.shape))
    robust = robust_cross_entropy(-margin_lower)

    loss = robust if natural_only_for_metrics else \
        (1.0 - robust_weight) * natural + robust_weight * robust
    if l1_weight:
        loss = loss + l1_weight * l1_norm(model, params)
    lower_data = unwrap(margin_lower)
    certified = (lower_data > 0).all(axis=-1).mean(axis=-1)
    natural_accuracy = None if logits is None else \
        (unwrap(logits).argmax(axis=-1) == targets).mean(axis=-1)
    return CertifiedLoss(loss=loss, robust_loss=robust, natural_loss=natural,
                         certified_accuracy=certified, natural_accuracy=natural_accuracy,
                         margin_lower=lower_data)


def output_size(model: Module, x: Tensor) -> int:
    """Number of logits: the last layer's ``out_features``, else one forward of a sample."""
    layers = getattr(model, "layers", [])
    if layers and hasattr(layers[-1], "out_features"):
        return int(layers[-1].out_features)
    with no_grad():
        return int(model(x[:1]).shape[-1])


def population_size(model: Module, params: Mapping[str, Tensor] | None) -> int | None:
    """P when ``params`` carry a leading population axis, else None."""
    if not params:
        return None
    own = dict(model.named_parameters())
    for name, value in params.items():
        if name in own and value.ndim == own[name].ndim + 1:
            return int(value.shape[0])
    return None


def l1_norm(model: Module, params: Mapping[str, Tensor] | None = None) -> Tensor:
    """Σ |W| over Linear/Conv weights (parameters with ≥ 2 axes), per population member."""
    own = dict(model.named_parameters())
    total: Tensor | None = None
    for name, base in own.items():
        if base.ndim < 2:
            continue
        weight = params[name] if params is not None and name in params else base
        population_axes = weight.ndim - base.ndim
        axes = tuple(range(population_axes, weight.ndim))
        term = ops.sum(ops.abs(weight), axis=axes)
        total = term if total is None else total + term
    if total is None:
        raise ValueError("the model has no weight matrices to regularise")
    return total


@dataclass(frozen=True)
class CertifiedObjective:
    """The loss settings a training method evaluates at every step (everything but eps)."""

    relaxation: str = "ibp"
    robust_weight: float = 1.0
    l1_weight: float = 0.0
    low: float = 0.0
    high: float = 1.0
    bound_options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if self.relaxation not in RELAXATIONS:
            raise ValueError(f"unknown relaxation {self.relaxation!r}; choose from "
                             f"{RELAXATIONS}")
        if not 0.0 <= self.robust_weight <= 1.0:
            raise ValueError(f"robust weight must lie in [0, 1], got {self.robust_weight}")
        if self.l1_weight < 0:
            raise ValueError(f"L1 weight must be non-negative, got {self.l1_weight}")
        execution = sorted({"plan", "memory_budget_bytes"} & dict(self.bound_options).keys())
        if execution:  # a training step passes its run's plan (ExecutionPlan.bounds)
            raise ValueError(f"bound options {execution} are execution choices: they belong "
                             "to the run's plan (TrainerConfig.bound_memory / bound_patches)")

    def __call__(self, model: Module, x: Any, targets: Any, eps: float,
                 params: Mapping[str, Tensor] | None = None,
                 natural_metrics: bool = True,
                 plan: BoundsPlan | None = None) -> CertifiedLoss:
        """The loss at radius ``eps``; ``plan`` is the bound's execution plan (a training
        step's ``context.plan.bounds``)."""
        return certified_loss(model, x, targets, eps, self.relaxation, params=params,
                              robust_weight=self.robust_weight, l1_weight=self.l1_weight,
                              low=self.low, high=self.high,
                              bound_options=dict(self.bound_options),
                              natural_metrics=natural_metrics, plan=plan)
