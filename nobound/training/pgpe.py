"""PGPE: policy gradients with parameter-based exploration (paper §3.3, App. F.2).

PGPE (Sehnke et al., 2010) minimises the Gaussian-smoothed loss
L_σ(θ) = E_{ε~N(0, diag σ²)} L(θ + ε) without ever differentiating L. Per step it samples
n = n_ps/2 directions ε_i = σ ⊙ z_i (z_i ~ N(0, I_d)), evaluates the losses of the
symmetric pairs r_i^± = L(θ ± ε_i), turns them into fitness weights w_i^± (the raw losses,
or centred ranks) and forms, as evotorch's ``SymmetricSeparableGaussian`` does,

    g_θ = (1/n) Σ_i (w_i^+ − w_i^−)/2 · ε_i                                   (centre)
    g_σ = (1/n) Σ_i ((w_i^+ + w_i^−)/2 − b) · (ε_i² − σ²)/σ,  b = mean of all 2n w   (sigma)

which are the paper's ∇_θ L̂_σ ∝ Σ ε_i (r_i^+ − r_i^−) and
∇_σ L̂_σ ∝ Σ ((r_i^+ + r_i^−)/2 − b)(ε_i² − σ²)/σ. With raw weights, g_θ / σ² is an unbiased
estimate of ∇L_σ (Stein's lemma: ∇L_σ = E[ε L(θ+ε)]/σ², symmetrised), see docs/gls.md.
θ moves against g_θ with ClipUp or Adam; σ moves against g_σ with a plain step of size
η_σ, and each σ_j may change by at most a fraction c of itself per step (evotorch's
``stdev_max_change``, default 0.2, after Ha 2017).

The 2n members are evaluated on the same minibatch in batched calls over the population
axis (chunks sized to a memory budget), on the host by several worker threads at once
(see :func:`nobound.training.population.evaluate_population`); chunks, their budget and
the workers are the run's :class:`~nobound.training.execution_plan.ExecutionPlan`, handed
down in the step's context (``chunk_size``, ``memory_budget_mb`` and ``workers`` given to
the method override it, for a method built alone in code). The noise
comes from counter-based streams (:mod:`nobound.training.perturbation`) and is
regenerated for the gradient instead of being stored unless it is small. No gradient of
L is needed, so any relaxation works, including alpha-CROWN with its slope optimisation
inside the loss (§4.3).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from nobound.backend import get_array_module, to_numpy
from nobound.nn.module import Module
from nobound.training.clipup import ClipUp
from nobound.training.execution_plan import ExecutionPlan
from nobound.training.grad import (
    add_certified_arguments,
    certified_metrics,
    certified_options_from_args,
    make_objective,
    natural_metrics,
    objective_options,
    weighted_metrics,
)
from nobound.training.method import PopulationBatch, StepContext, StepResult, TrainingMethod
from nobound.training.optim import Adam, Optimizer
from nobound.training.perturbation import ParameterLayout, standard_normal_directions
from nobound.training.population import bytes_per_member, evaluate_population

RANKINGS = ("raw", "centered")
CENTER_OPTIMIZERS = ("clipup", "adam")


@dataclass(frozen=True)
class PGPEConfig:
    """PGPE hyperparameters; defaults are the paper's where it states them, else evotorch's.

    Paper (§4.1, App. F.2): population_size 256, stdev_init 10⁻³, centre lr 3·10⁻⁴ (decayed
    ×0.4 after epochs 110, 130 — the schedule lives outside, in the lr StepDecay).
    evotorch's ``PGPE`` defaults: optimizer "clipup" (momentum 0.9, max speed 2 × lr),
    ranking_method "centered", stdev_max_change 0.2, symmetric sampling. evotorch has no
    default stdev_learning_rate; the paper does not state one; 0.1 is evotorch's examples'.
    """

    population_size: int = 256
    stdev_init: float = 1e-3
    stdev_learning_rate: float = 0.1
    stdev_max_change: float | None = 0.2
    stdev_min: float | None = None
    stdev_max: float | None = None
    ranking: str = "centered"
    optimizer: str = "clipup"
    clipup_momentum: float = 0.9
    clipup_max_speed: float | None = None
    keep_noise_mb: float = 256.0
    # Execution: None takes the run's plan (ExecutionPlan.member_chunk, member_budget_bytes,
    # member_workers); given, they override it for this method (a method built in code)
    chunk_size: int | None = None
    memory_budget_mb: float | None = None
    workers: int | None = None

    def execution_plan(self, plan: ExecutionPlan) -> ExecutionPlan:
        """The run's ``plan`` with the chunk, budget and workers given here, if any."""
        budget = None if self.memory_budget_mb is None else self.memory_budget_mb * 1e6
        return plan.with_member_options(workers=self.workers, chunk=self.chunk_size,
                                        budget_bytes=budget)

    def __post_init__(self) -> None:
        if self.population_size < 2 or self.population_size % 2:
            raise ValueError(f"PGPE samples symmetric pairs: population size must be even "
                             f"and ≥ 2, got {self.population_size}")
        if self.ranking not in RANKINGS:
            raise ValueError(f"unknown ranking {self.ranking!r}; choose from {RANKINGS}")
        if self.stdev_init <= 0:
            raise ValueError(f"stdev_init must be positive, got {self.stdev_init}")
        if self.stdev_max_change is not None and not 0 < self.stdev_max_change < 1:
            raise ValueError("stdev_max_change must lie in (0, 1)")
        if self.chunk_size is not None and (self.chunk_size < 2 or self.chunk_size % 2):
            raise ValueError(f"chunk size must be even and ≥ 2, got {self.chunk_size}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be ≥ 1, got {self.workers}")
        if self.optimizer not in CENTER_OPTIMIZERS:
            raise ValueError(f"unknown PGPE optimiser {self.optimizer!r}; choose from "
                             f"{CENTER_OPTIMIZERS}")
        if self.stdev_learning_rate < 0:
            raise ValueError("stdev_learning_rate must be non-negative")


def centered_ranks(losses: np.ndarray) -> np.ndarray:
    """Linearly spaced ranks in [−½, ½], the lowest loss getting −½ (Salimans et al., 2017;
    evotorch's "centered"). Ties are broken by position (stable sort)."""
    count = len(losses)
    ranks = np.empty(count)
    ranks[np.argsort(losses, kind="stable")] = np.arange(count) / max(count - 1, 1) - 0.5
    return ranks


def fitness_weights(losses: np.ndarray, ranking: str) -> np.ndarray:
    """The weights w that replace the losses in the estimator (lower is better)."""
    if ranking == "raw":
        return np.asarray(losses, dtype=np.float64)
    if ranking == "centered":
        return centered_ranks(np.asarray(losses))
    raise ValueError(f"unknown ranking {ranking!r}; choose from {RANKINGS}")


def pgpe_gradients(weights: np.ndarray, sigma: Any,
                   directions: Callable[[int, int], Any],
                   chunk: int | None = None) -> tuple[Any, Any]:
    """(g_θ, g_σ) of the module docstring from member weights ordered +,−,+,−,… (2n,).

    ``directions(first, last)`` returns z_first … z_{last−1}, shape (last − first, d), the
    standard normal rows with ε_i = σ ⊙ z_i; it is called chunk by chunk so the noise can be
    regenerated rather than stored. Since ε_i² − σ² = σ²(z_i² − 1):
    g_θ = σ ⊙ Σ_i a_i z_i and g_σ = σ ⊙ Σ_i c_i (z_i² − 1) with per-direction scalars a, c.
    """
    xp = get_array_module(sigma)
    weights = np.asarray(weights, dtype=np.float64)
    plus, minus = weights[0::2], weights[1::2]
    count = len(plus)
    baseline = weights.mean()
    center_coefficients = (plus - minus) / 2 / count
    sigma_coefficients = ((plus + minus) / 2 - baseline) / count
    chunk = count if not chunk else chunk
    center_sum = xp.zeros_like(sigma)
    sigma_sum = xp.zeros_like(sigma)
    for first in range(0, count, chunk):
        last = min(first + chunk, count)
        z = directions(first, last)
        a = xp.asarray(center_coefficients[first:last], dtype=z.dtype)
        c = xp.asarray(sigma_coefficients[first:last], dtype=z.dtype)
        center_sum += a @ z
        sigma_sum += c @ (z * z - 1)
    return sigma * center_sum, sigma * sigma_sum


def symmetric_members(center: Any, sigma: Any, directions: Callable[[int, int], Any],
                      start: int, stop: int) -> Any:
    """Members start … stop−1 of the population θ+ε₀, θ−ε₀, θ+ε₁, … (ε_i = σ ⊙ z_i), shape
    (stop − start, d): a chunk may start or end inside a pair."""
    xp = get_array_module(center)
    first, last = start // 2, (stop + 1) // 2
    offsets = sigma * directions(first, last)
    rows = xp.empty((2 * (last - first), center.shape[-1]), dtype=offsets.dtype)
    rows[0::2] = center + offsets
    rows[1::2] = center - offsets
    return rows[start - 2 * first:stop - 2 * first]


def updated_sigma(sigma: Any, sigma_gradient: Any, config: PGPEConfig) -> Any:
    """σ − η_σ g_σ, kept within σ(1 ± c) and [stdev_min, stdev_max] (evotorch's order)."""
    xp = get_array_module(sigma)
    new = sigma - config.stdev_learning_rate * sigma_gradient
    if config.stdev_max_change is not None:
        change = config.stdev_max_change
        new = xp.clip(new, sigma * (1 - change), sigma * (1 + change))
    if config.stdev_min is not None or config.stdev_max is not None:
        new = xp.clip(new, config.stdev_min, config.stdev_max)
    return new.astype(sigma.dtype, copy=False)


def make_center_optimizer(name: str, params: Mapping[str, Any], lr: float,
                          momentum: float = 0.9, max_speed: float | None = None) -> Optimizer:
    """ClipUp (evotorch's default for PGPE) or Adam for the centre θ."""
    if name == "clipup":
        return ClipUp(params, lr, momentum=momentum, max_speed=max_speed)
    if name == "adam":
        return Adam(params, lr)
    raise ValueError(f"unknown PGPE optimiser {name!r}; choose from {CENTER_OPTIMIZERS}")



class PGPETraining(TrainingMethod):
    """PGPE on the certified loss: updates the centre θ (the network) and per-parameter σ
    itself, so :meth:`compute_step` returns no gradient. The centre's step size is the
    trainer's lr (its schedule: 3·10⁻⁴, ×0.4 after epochs 110, 130 in App. F.2)."""

    name = "pgpe"
    splits_into_micro_batches = False  # its update ranks whole-batch losses; no graph kept

    def __init__(self, relaxation: str = "deeppoly", robust_weight: float = 1.0,
                 l1: float = 0.0, bound_options: Mapping[str, Any] | None = None,
                 **pgpe_options: Any) -> None:
        self.objective = make_objective(relaxation, robust_weight, l1, bound_options)
        self.config = PGPEConfig(**pgpe_options)
        self.optimizer: Optimizer | None = None
        self.sigma: Any = None
        self.layout: ParameterLayout | None = None
        self._pending_state: dict[str, Any] = {}
        # (plan, batch size, requested workers) → (chunk size, workers used)
        self._chunking_by_batch: dict[tuple[ExecutionPlan, int, int], tuple[int, int]] = {}

    def options(self) -> dict[str, Any]:
        return {**objective_options(self.objective), **asdict(self.config)}

    def check_plan(self, plan: ExecutionPlan) -> None:
        super().check_plan(plan)
        chunk = self.config.execution_plan(plan).member_chunk
        if chunk is not None and (chunk < 2 or chunk % 2):
            raise ValueError(f"PGPE evaluates symmetric pairs: the population chunk must be "
                             f"even and ≥ 2, got {chunk}")

    def _setup(self, model: Module) -> None:
        params = dict(model.named_parameters())
        if self.optimizer is not None and all(
                self.optimizer.params.get(n) is p for n, p in params.items()):
            return
        self.layout = ParameterLayout.of(params)
        config = self.config
        self.optimizer = make_center_optimizer(config.optimizer, params, 1.0,
                                               config.clipup_momentum,
                                               config.clipup_max_speed)
        center = self.layout.flatten(params)
        self.sigma = get_array_module(center).full(self.layout.size, config.stdev_init,
                                                   dtype=center.dtype)
        if self._pending_state:
            self._apply_state(self._pending_state)
            self._pending_state = {}

    def compute_step(self, model: Module, images: Any, labels: Any,
                     context: StepContext) -> StepResult:
        self._setup(model)
        self.optimizer.lr = context.lr
        layout, sigma, config = self.layout, self.sigma, self.config
        xp = get_array_module(sigma)
        center = layout.flatten(self.optimizer.params)
        pairs = config.population_size // 2
        plan = config.execution_plan(context.plan)
        self.check_plan(plan)

        def directions(first: int, last: int) -> Any:
            return standard_normal_directions(context.seed, context.epoch, context.step,
                                              range(first, last), layout.size,
                                              name="pgpe-noise", xp=xp, dtype=sigma.dtype)

        if pairs * layout.size * sigma.itemsize <= config.keep_noise_mb * 1e6:
            stored = directions(0, pairs)
            directions = lambda first, last: stored[first:last]  # noqa: E731

        def member_vectors(start: int, stop: int) -> Any:
            return symmetric_members(center, sigma, directions, start, stop)

        parts: list[tuple[int, dict[str, float]]] = []

        def loss_of(params: dict) -> Any:
            result = self.objective(model, images, labels, context.eps, params=params,
                                    natural_metrics=self.objective.robust_weight < 1,
                                    plan=plan.bounds)
            parts.append((result.loss.shape[0], certified_metrics(result)))
            return result.loss

        centre = natural_metrics(model, images, labels)  # before θ moves
        chunk, workers = self._chunking(plan, loss_of, member_vectors, xp, len(labels),
                                        plan.member_threads(model, xp))
        parts.clear()  # forget the footprint probe's evaluations
        losses = self.member_losses(loss_of, member_vectors, chunk, workers,
                                    PopulationBatch(model, images, labels, context), parts)
        weights = fitness_weights(losses, config.ranking)
        center_gradient, sigma_gradient = pgpe_gradients(weights, sigma, directions,
                                                         max(1, chunk // 2))
        self.optimizer.step(layout.unflatten(center_gradient))
        self.sigma = updated_sigma(sigma, sigma_gradient, config)
        metrics = weighted_metrics(parts)
        metrics.update(centre, sigma=float(self.sigma.mean()), population_chunk=chunk)
        return StepResult(None, metrics)

    def member_losses(self, loss_of: Callable, member_vectors: Callable, chunk: int,
                      workers: int, batch: PopulationBatch,
                      parts: list[tuple[int, dict[str, float]]]) -> np.ndarray:
        """Losses of the members +,−,+,−,… in chunks of ``chunk``; ``loss_of`` records
        each chunk's metrics in ``parts``. (nobound.distributed evaluates the same chunks on
        Ray workers instead, from ``batch`` and the noise streams.)"""
        return evaluate_population(loss_of, self.layout, member_vectors,
                                   self.config.population_size, chunk, workers)

    def _chunking(self, plan: ExecutionPlan, loss_of: Callable, member_vectors: Callable,
                  xp: Any, batch: int, workers: int = 1) -> tuple[int, int]:
        """(chunk size, workers) of the plan: its chunk, or one fitted to its budget from
        the marginal footprint of one member (measured once per batch size)."""
        key = (plan, batch, workers)
        if key not in self._chunking_by_batch:
            self._chunking_by_batch[key] = plan.member_chunking(
                self.config.population_size, workers, xp,
                lambda: bytes_per_member(loss_of, self.layout, member_vectors, xp),
                multiple=2)
        return self._chunking_by_batch[key]

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        if self.optimizer is None:
            return dict(self._pending_state)
        state = {f"optimizer/{k}": v for k, v in self.optimizer.state_dict().items()}
        state["sigma"] = to_numpy(self.sigma)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if self.optimizer is None:
            self._pending_state = dict(state)
        else:
            self._apply_state(state)

    def _apply_state(self, state: Mapping[str, Any]) -> None:
        prefix = "optimizer/"
        self.optimizer.load_state_dict({k[len(prefix):]: v for k, v in state.items()
                                        if k.startswith(prefix)})
        self.sigma = get_array_module(self.sigma).asarray(state["sigma"],
                                                          dtype=self.sigma.dtype)

    # ------------------------------------------------------------------ command line
    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        add_certified_arguments(parser)
        group = parser.add_argument_group(
            "PGPE (--method pgpe, App. F.2; evotorch-compatible defaults)")
        group.add_argument("--pgpe-optimizer", default="clipup", choices=CENTER_OPTIMIZERS,
                           help="centre update (default %(default)s; its step size is --lr)")
        group.add_argument("--pgpe-ranking", default="centered", choices=RANKINGS,
                           help="fitness shaping: centred ranks (evotorch) or the paper's "
                                "raw losses (default %(default)s)")
        group.add_argument("--stdev-learning-rate", type=float, default=0.1,
                           help="sigma step size (default %(default)s)")
        group.add_argument("--stdev-max-change", type=float, default=0.2,
                           help="largest relative sigma change per step (default "
                                "%(default)s)")
        group.add_argument("--stdev-min", type=float, help="lower bound on sigma")
        group.add_argument("--stdev-max", type=float, help="upper bound on sigma")
        group.add_argument("--clipup-momentum", type=float, default=0.9,
                           help="ClipUp momentum (default %(default)s)")
        group.add_argument("--clipup-max-speed", type=float,
                           help="ClipUp maximum speed (default 2 × lr)")

    @classmethod
    def options_from_args(cls, args: argparse.Namespace) -> dict[str, Any]:
        options = {**certified_options_from_args(args),
                   "population_size": 256 if args.population_size is None
                   else args.population_size,
                   "stdev_init": 1e-3 if args.sigma is None else args.sigma,
                   "stdev_learning_rate": args.stdev_learning_rate,
                   "stdev_max_change": args.stdev_max_change or None,
                   "stdev_min": args.stdev_min, "stdev_max": args.stdev_max,
                   "ranking": args.pgpe_ranking, "optimizer": args.pgpe_optimizer,
                   "clipup_momentum": args.clipup_momentum,
                   "clipup_max_speed": args.clipup_max_speed}
        cls(**options)  # validates
        return options
