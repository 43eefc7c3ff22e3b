"""The training-method contract the :class:`~nobound.training.trainer.Trainer` drives.

One optimisation step of any method is: given the model, a batch and a
:class:`StepContext` (counters, eps, lr, random streams), return the gradient the
optimiser should apply, g ≈ ∇_θ E[L(θ; batch)], and the metrics to log:

* ``standard`` — g = ∇_θ L_CE(f_θ(x), t)                      (:mod:`.standard`)
* ``pgd``      — g = ∇_θ L_CE(f_θ(x'), t), x' = PGD(x)        (:mod:`.adversarial`)
* ``grad`` / ``rgs`` / ``pgpe`` — back-propagated, randomly smoothed or PGPE-estimated
  gradients of the robust loss, plugged in through the same interface (add them to
  :data:`METHOD_MODULES`). A method that owns its optimiser and schedules returns
  ``gradients=None`` with ``lr``/``eps`` among its metrics (they override the trainer's).

The trainer clips g, hands it to the optimiser (Adam/SGD), then calls
:meth:`TrainingMethod.after_update`. A method whose update is not "optimiser step on g"
returns ``gradients=None`` after updating the parameters itself.

Methods are registered by name. Built-in methods are listed in :data:`METHOD_MODULES` as
``"module:Class"`` and imported on first use (so adding one does not slow every import);
:func:`register_method` adds one at run time. A method's constructor options must be
JSON-serialisable: checkpoints store ``name`` + :meth:`~TrainingMethod.options` and
rebuild it with :func:`create_method`. All randomness must come from
:meth:`StepContext.random` so that resuming is bit-for-bit.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, ClassVar

import numpy as np

from nobound.autodiff.tensor import Tensor
from nobound.backend import random_stream
from nobound.nn.module import Module
from nobound.training.execution_plan import DEFAULT_PLAN, ExecutionPlan


@dataclass(frozen=True)
class StepContext:
    """What a method may know about the step it is computing."""

    epoch: int
    step: int               # global index of this update, 0-based
    batch_index: int        # index of the batch within the epoch
    steps_per_epoch: int
    seed: int
    eps: float              # the current (possibly annealed) perturbation radius
    lr: float
    xp: ModuleType = np
    #: how the step is executed: the run's one plan, handed down by the trainer (threads,
    #: micro-batches, population chunks, the bound's plan for the certified loss); a factory
    #: so that docs/api.md shows "<factory>", not the whole default plan
    plan: ExecutionPlan = field(default_factory=lambda: DEFAULT_PLAN)

    @property
    def progress(self) -> float:
        """Fractional epoch: epoch + batch_index / steps_per_epoch."""
        return self.epoch + self.batch_index / max(self.steps_per_epoch, 1)

    def random(self, name: str, *counters: int, xp: ModuleType | None = None) -> Any:
        """The generator ``random_stream(seed, epoch, step, *counters, name=name)``."""
        return random_stream(self.seed, self.epoch, self.step, *counters, name=name,
                             xp=self.xp if xp is None else xp)


@dataclass(frozen=True)
class PopulationBatch:
    """What a population method evaluates its members on: the model (its architecture and
    buffers), the batch and the step's counters (which name its noise streams)."""

    model: Module
    images: Any
    labels: Any
    context: StepContext


@dataclass
class StepResult:
    """``gradients`` by parameter name (None: the method updated the model itself);
    ``metrics`` are per-batch means (``loss`` required, ``accuracy`` usual)."""

    gradients: dict[str, Any] | None
    metrics: dict[str, float] = field(default_factory=dict)


class TrainingMethod:
    """Base class of training methods; see the module docstring."""

    name: ClassVar[str] = ""
    #: Whether a step may be computed as a weighted sum over micro-batches of its batch
    #: (:mod:`nobound.training.micro_batches`): true for methods whose gradient is a mean
    #: of per-example terms, false for a method that updates the model itself.
    splits_into_micro_batches: ClassVar[bool] = True
    #: Whether those micro-batches may be computed on several threads at once: the step
    #: must keep no state outside its own graph. RGS parallelises its members instead.
    parallel_micro_batches: ClassVar[bool] = False

    def options(self) -> dict[str, Any]:
        """Constructor keyword arguments that rebuild this method (JSON-serialisable)."""
        return {}

    def check_plan(self, plan: ExecutionPlan) -> None:
        """Refuse (ValueError) a run's plan this method cannot execute; the trainer asks
        once, when the run is set up."""
        if plan.micro_batch and not self.splits_into_micro_batches:
            raise ValueError(f"method {self.name!r} cannot be split into micro-batches; "
                             "leave micro_batch at 0")

    def compute_step(self, model: Module, images: Any, labels: Any,
                     context: StepContext) -> StepResult:
        raise NotImplementedError

    def after_update(self, model: Module, context: StepContext) -> None:
        """Called after the optimiser applied the gradient (e.g. to adapt a sigma)."""

    def state_dict(self) -> dict[str, Any]:
        """Method state that must survive a checkpoint (arrays or JSON scalars)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state:
            raise KeyError(f"method {self.name!r} has no state, got keys {sorted(state)}")

    # --- command line -----------------------------------------------------------------
    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add this method's flags to ``nobound train`` (names must not clash)."""

    @classmethod
    def options_from_args(cls, args: argparse.Namespace) -> dict[str, Any]:
        """Constructor options from parsed flags; raise ValueError on bad values."""
        return {}


class BackpropMethod(TrainingMethod):
    """A method whose gradient is ∇_θ of a scalar loss computed by :meth:`loss`.

    The loss is evaluated at leaf tensors of its own that share the model's parameter
    arrays (``params``), so a step never touches the model's ``.grad`` and several steps
    — micro-batches on worker threads — can run at once.
    """

    #: micro-batches of a step may run on several threads (:mod:`.micro_batches`)
    parallel_micro_batches: ClassVar[bool] = True

    def loss(self, model: Module, images: Any, labels: Any, context: StepContext,
             params: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        raise NotImplementedError

    def compute_step(self, model: Module, images: Any, labels: Any,
                     context: StepContext) -> StepResult:
        params = {name: Tensor(p.data, requires_grad=True)
                  for name, p in model.named_parameters()}
        loss, metrics = self.loss(model, images, labels, context, params)
        loss.backward()
        gradients = {name: p.grad if p.grad is not None else p.xp.zeros_like(p.data)
                     for name, p in params.items()}
        return StepResult(gradients, {"loss": float(loss.item()), **metrics})


#: name → "module:Class" for methods imported on demand.
METHOD_MODULES: dict[str, str] = {
    "standard": "nobound.training.standard:StandardTraining",
    "pgd": "nobound.training.adversarial:PGDTraining",
    "grad": "nobound.training.grad:GradTraining",
    "rgs": "nobound.training.rgs:RGSTraining",
    "pgpe": "nobound.training.pgpe:PGPETraining",
}
_REGISTERED: dict[str, type[TrainingMethod]] = {}


def register_method(cls: type[TrainingMethod]) -> type[TrainingMethod]:
    """Register a method class under ``cls.name`` (usable as a decorator)."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a non-empty 'name'")
    _REGISTERED[cls.name] = cls
    return cls


def available_methods() -> list[str]:
    """Names of methods that can be loaded (built-in modules that exist, or registered)."""
    names = [n for n in METHOD_MODULES if _importable(METHOD_MODULES[n])]
    return names + [n for n in _REGISTERED if n not in names]


def _importable(target: str) -> bool:
    return importlib.util.find_spec(target.split(":")[0]) is not None


def get_method_class(name: str) -> type[TrainingMethod]:
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name not in METHOD_MODULES or not _importable(METHOD_MODULES[name]):
        raise ValueError(f"unknown training method {name!r}; choose from "
                         f"{available_methods()}")
    module_name, class_name = METHOD_MODULES[name].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    _REGISTERED[name] = cls
    return cls


def create_method(name: str, **options: Any) -> TrainingMethod:
    """Instantiate a method by name, e.g. ``create_method("pgd", steps=10)``."""
    return get_method_class(name)(**options)
