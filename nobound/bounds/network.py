"""The network as the relaxations see it: a chain of steps read from ``model.layers``.

Every layer of a ``Sequential`` becomes one step (:mod:`nobound.bounds.steps`), with its
parameters — the model's own or those passed in ``params``, possibly with a leading
population axis P — brought to the canonical shapes the steps expect.

Batch statistics: a BatchNorm in train mode is the affine map given by the statistics of
the last *clean* forward pass (``BatchNorm.last_statistics``), as CTBench does: run the
network on the clean batch first, then bound. In eval mode the running statistics are used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from math import prod
from typing import Any

from nobound.autodiff.tensor import Tensor
from nobound.bounds.steps import (
    ChannelAffineStep,
    ConvStep,
    FlattenStep,
    LinearStep,
    ReluStep,
    SpecifiedLinearStep,
    Step,
)
from nobound.nn.activation import Flatten, ReLU, Sigmoid, Tanh
from nobound.nn.layers import Conv2d, Linear
from nobound.nn.normalization import BatchNorm, Normalize
from nobound.nn.pooling import MaxPool2d
from nobound.nn.sequential import split_parameters

__all__ = ["ChannelAffineStep", "ConvStep", "FlattenStep", "LinearStep", "Network",
           "ReluStep", "SpecifiedLinearStep", "Step"]


class Network:
    """The steps of a model for inputs of feature shape ``input_shape``.

    ``population`` is P when the parameters carry a population axis, else None.
    """

    def __init__(self, steps: list[Step], input_shape: tuple[int, ...],
                 population: int | None) -> None:
        self.steps = steps
        self.input_shape = tuple(input_shape)
        self.population = population

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.steps[-1].output_shape if self.steps else self.input_shape

    @property
    def relu_indices(self) -> list[int]:
        return [step.index for step in self.steps if isinstance(step, ReluStep)]

    @property
    def activation_indices(self) -> list[int]:
        """Layers whose input bounds every relaxation computes (ReLUs and other activations)."""
        return [step.index for step in self.steps if step.activation]

    def shape_before(self, index: int) -> tuple[int, ...]:
        """Feature shape of the input of layer ``index``."""
        return self.steps[index].input_shape

    def map_layer_entries(self, mapping: Mapping[int, Any],
                          pick: Callable[[Any, int], Any]) -> dict[int, Any]:
        """``{index: pick(array, neuron_ndim)}`` for a mapping keyed by layer index (ReLU
        splits, intermediate bounds), where ``neuron_ndim = len(shape_before(index))`` lets
        ``pick`` tell a (B, *neurons) array from a (P, B, *neurons) one; tuple or list
        entries, e.g. (lower, upper), become tuples with ``pick`` applied to each array."""
        out = {}
        for index, value in mapping.items():
            neuron_ndim = len(self.shape_before(index))
            out[index] = tuple(pick(v, neuron_ndim) for v in value) \
                if isinstance(value, tuple | list) else pick(value, neuron_ndim)
        return out

    @property
    def requires_grad(self) -> bool:
        """Whether any parameter records gradients (so bounds must stay differentiable)."""
        return any(t.requires_grad for step in self.steps for t in _parameter_tensors(step))

    def detached(self) -> Network:
        """The same network with constant parameters (no gradient recorded)."""
        return Network([s.detached() for s in self.steps], self.input_shape, self.population)

    def members(self, start: int, stop: int) -> Network:
        """Population members start…stop−1 (for chunking over the population)."""
        if self.population is None:
            return self
        return Network([s.members(start, stop) for s in self.steps], self.input_shape,
                       stop - start)

    def samples(self, start: int, stop: int) -> Network:
        """The network for batch elements start…stop−1 (a folded specification is sliced)."""
        return Network([s.samples(start, stop) for s in self.steps], self.input_shape,
                       self.population)

    def with_spec(self, spec: Tensor) -> Network:
        """The network whose output is C · f(x): C (B, K, outputs) folded into the last
        Linear layer (W' = C W, b' = C b), or appended as a bias-free layer otherwise."""
        from nobound.bounds.specification import fold_spec

        last = self.steps[-1] if self.steps else None
        if isinstance(last, LinearStep):
            weight, bias = fold_spec(last.weight, last.bias, spec)
            return Network(self.steps[:-1] + [SpecifiedLinearStep(last.index, weight, bias)],
                           self.input_shape, self.population)
        index = last.index + 1 if last is not None else 0
        step = SpecifiedLinearStep(index, spec.reshape(1, *spec.shape), None)
        return Network(self.steps + [step], self.input_shape, self.population)

    @staticmethod
    def from_model(model: Any, input_shape: tuple[int, ...],
                   params: Mapping[str, Tensor] | None = None,
                   like: Tensor | None = None) -> Network:
        """Read ``model.layers`` with ``params`` (population or not) for inputs of feature
        shape ``input_shape``; ``like`` fixes the device and dtype of fixed buffers."""
        layers = list(getattr(model, "layers", [model]))
        steps: list[Step] = []
        shape = tuple(input_shape)
        populations: set[int] = set()
        for index, layer in enumerate(layers):
            local = split_parameters(params, index) if hasattr(model, "layers") else \
                dict(params or {})
            populations |= _declared_populations(layer, local)
            step = _make_step(index, layer, local, shape, like)
            steps.append(step)
            shape = step.output_shape
        if len(populations - {1}) > 1:
            raise ValueError(f"parameters disagree on the population size: {sorted(populations)}")
        population = max(populations) if populations else None
        return Network(steps, input_shape, population)


def _parameter_tensors(step: Step) -> list[Tensor]:
    names = ("weight", "bias", "scale", "shift")
    return [t for t in (getattr(step, name, None) for name in names) if t is not None]


def _declared_populations(layer: Any, params: Mapping[str, Tensor]) -> set[int]:
    """Sizes of the population axes a layer's parameters (or batch statistics) carry.

    A population axis is an extra leading axis, so a population of one, (1, out, in),
    still counts: its bounds keep their P axis, as ``model(x, params)`` keeps it.
    """
    base_ndim = {"weight": 2 if isinstance(layer, Linear) else 4 if isinstance(layer, Conv2d)
                 else 1, "bias": 1}
    sizes = set()
    if isinstance(layer, Linear | Conv2d | BatchNorm):
        for name, tensor in layer.resolve(params).items():
            if tensor.ndim > base_ndim.get(name, 1):
                sizes.add(int(tensor.shape[0]))
    if isinstance(layer, BatchNorm) and layer.training and layer.last_statistics is not None:
        mean = layer.last_statistics[0]
        if mean.ndim == layer.feature_ndim + 2:
            sizes.add(int(mean.shape[0]))
    return sizes


def _population_canonical(tensor: Tensor, base_ndim: int) -> Tensor:
    """Give a parameter its leading population axis: (…) → (1, …) when it has none."""
    if tensor.ndim == base_ndim:
        return tensor.reshape((1, *tensor.shape))
    return tensor


def _make_step(index: int, layer: Any, params: Mapping[str, Tensor],
               shape: tuple[int, ...], like: Tensor | None) -> Step:
    if isinstance(layer, ReLU):
        return ReluStep(index, shape)
    if isinstance(layer, Sigmoid | Tanh | MaxPool2d):  # steps of their own (helper C)
        from nobound.bounds.activations import s_shape_step
        from nobound.bounds.pooling import MaxPoolStep

        return s_shape_step(index, layer, shape) or MaxPoolStep(index, layer, shape)
    if isinstance(layer, Flatten):
        if len(shape) != layer.feature_dims:
            raise ValueError(f"layer {index}: Flatten expects {layer.feature_dims} feature "
                             f"axes, the input has shape {shape}")
        return FlattenStep(index, shape, (prod(shape),))
    if isinstance(layer, Linear):
        p = layer.resolve(params)
        if shape != (layer.in_features,):
            raise ValueError(f"layer {index}: Linear expects ({layer.in_features},) features, "
                             f"got {shape}")
        bias = _population_canonical(p["bias"], 1) if "bias" in p else None
        return LinearStep(index, _population_canonical(p["weight"], 2), bias)
    if isinstance(layer, Conv2d):
        p = layer.resolve(params)
        if len(shape) != 3 or shape[0] != layer.in_channels:
            raise ValueError(f"layer {index}: Conv2d expects ({layer.in_channels}, H, W), "
                             f"got {shape}")
        bias = _population_canonical(p["bias"], 1) if "bias" in p else None
        return ConvStep(index, p["weight"], bias, layer.stride, layer.padding, shape)
    if isinstance(layer, BatchNorm):
        return _batchnorm_step(index, layer, params, shape)
    if isinstance(layer, Normalize):
        if len(shape) != 3 or shape[0] != layer.mean.size:
            raise ValueError(f"layer {index}: Normalize expects ({layer.mean.size}, H, W), "
                             f"got {shape}")
        scale, shift = layer.affine_coefficients(like if like is not None else
                                                 Tensor(layer.std))
        return ChannelAffineStep(index, scale.reshape(1, -1), shift.reshape(1, -1), shape)
    raise ValueError(f"layer {index}: {type(layer).__name__} is not supported by the "
                     "relaxations (Linear, Conv2d, ReLU, Flatten, BatchNorm, Normalize)")


def _batchnorm_step(index: int, layer: BatchNorm, params: Mapping[str, Tensor],
                    shape: tuple[int, ...]) -> Step:
    if len(shape) != layer.feature_ndim or shape[0] != layer.num_features:
        raise ValueError(f"layer {index}: BatchNorm expects {layer.num_features} channels "
                         f"and {layer.feature_ndim} feature axes, got {shape}")
    p = layer.resolve(params)
    if layer.training:
        if layer.last_statistics is None:
            raise ValueError(f"layer {index}: BatchNorm is in train mode but has no batch "
                             "statistics; run the model on the clean batch first (or eval())")
        mean, var = layer.last_statistics
    else:
        mean, var = layer.running_statistics(p["weight"])
    scale, shift = layer.affine_coefficients(p, mean, var, p["weight"])
    channels = layer.num_features
    return ChannelAffineStep(index, scale.reshape(-1, channels), shift.reshape(-1, channels),
                             shape)
