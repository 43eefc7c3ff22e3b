"""BatchNorm (1d/2d) and the fixed input Normalize layer.

Both are per-channel affine maps y = scale · x + shift once their statistics are fixed,
which is how the relaxations treat them (:meth:`BatchNorm.affine_coefficients`):

* eval mode: scale = γ / √(running_var + ε), shift = β − running_mean · scale;
* train mode: the same with the *current batch's* statistics, computed on the clean
  (unperturbed) batch, as CTBench does when it propagates bounds through BatchNorm.

Running ("population") statistics follow PyTorch: exponential averaging with
``momentum`` of the unbiased batch variance, or a cumulative average when ``momentum`` is
None — which is how :func:`reset_batchnorm_statistics` re-estimates them from data, as
CTBench does before certification. They are only updated by non-population forwards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nobound.autodiff import ops
from nobound.autodiff.tensor import Tensor
from nobound.backend import default_dtype, get_array_module
from nobound.nn.layers import population_bias
from nobound.nn.module import Module


class BatchNorm(Module):
    """Batch normalisation over (B, C) [``spatial=False``] or (B, C, H, W) [``spatial=True``]."""

    parameter_names = ("weight", "bias")
    buffer_names = ("running_mean", "running_var", "num_batches_tracked")

    def __init__(self, num_features: int, spatial: bool = True, eps: float = 1e-5,
                 momentum: float | None = 0.1, dtype: Any = None) -> None:
        super().__init__()
        dtype = dtype or default_dtype()
        self.num_features, self.spatial = num_features, spatial
        self.eps, self.momentum = eps, momentum
        self.weight = Tensor(np.ones(num_features, dtype), requires_grad=True)
        self.bias = Tensor(np.zeros(num_features, dtype), requires_grad=True)
        self.running_mean = np.zeros(num_features, dtype)
        self.running_var = np.ones(num_features, dtype)
        self.num_batches_tracked = np.zeros((), np.int64)
        self.last_statistics: tuple[Tensor, Tensor] | None = None

    @property
    def feature_ndim(self) -> int:
        return 3 if self.spatial else 1

    def is_population(self, x: Tensor) -> bool:
        return x.ndim == self.feature_ndim + 2

    def statistics_axes(self, x: Tensor) -> tuple[int, ...]:
        batch_axis = 1 if self.is_population(x) else 0
        return (batch_axis,) + tuple(range(x.ndim - self.feature_ndim + 1, x.ndim))

    def forward(self, x: Tensor, params: Mapping[str, Tensor] | None = None) -> Tensor:
        p = self.resolve(params)
        if x.shape[-self.feature_ndim] != self.num_features:
            raise ValueError(f"BatchNorm expects {self.num_features} channels, got {x.shape}")
        if self.training:
            mean, var = ops.batch_statistics(x, self.statistics_axes(x))
            self.last_statistics = (mean, var)
            if not self.is_population(x):
                self._update_running(mean.data, var.data, x)
        else:
            mean, var = self.running_statistics(x)
        scale, shift = self.affine_coefficients(p, mean, var, x)
        return x * scale + shift

    def running_statistics(self, like: Tensor) -> tuple[Tensor, Tensor]:
        trailing = (1,) * (self.feature_ndim - 1)
        xp = like.xp
        mean = Tensor(xp.asarray(self.running_mean, dtype=like.dtype).reshape(-1, *trailing))
        var = Tensor(xp.asarray(self.running_var, dtype=like.dtype).reshape(-1, *trailing))
        return mean, var

    def affine_coefficients(self, params: Mapping[str, Tensor], mean: Tensor, var: Tensor,
                            like: Tensor) -> tuple[Tensor, Tensor]:
        """(scale, shift) with y = scale · x + shift, broadcastable against ``like``."""
        trailing = self.feature_ndim - 1
        gamma = population_bias(params["weight"], 1, trailing)
        beta = population_bias(params["bias"], 1, trailing)
        scale = gamma / ops.sqrt(var + self.eps)
        shift = beta - mean * scale
        return scale, shift

    def _update_running(self, mean: Any, var: Any, x: Tensor) -> None:
        count = x.size // self.num_features
        unbiased = var.reshape(-1) * (count / max(count - 1, 1))
        self.num_batches_tracked = self.num_batches_tracked + 1
        momentum = self.momentum if self.momentum is not None else \
            1.0 / float(self.num_batches_tracked)
        xp = x.xp
        self.running_mean = ((1 - momentum) * xp.asarray(self.running_mean)
                             + momentum * mean.reshape(-1)).astype(self.running_mean.dtype)
        self.running_var = ((1 - momentum) * xp.asarray(self.running_var)
                            + momentum * unbiased).astype(self.running_var.dtype)

    def extra_repr(self) -> str:
        return f"{self.num_features}, spatial={self.spatial}"


def uses_batch_statistics(model: Module) -> bool:
    """Whether the model has a BatchNorm in train mode, whose bounds need the batch
    statistics of a clean forward pass under the same parameters (CTBench's convention)."""
    return any(isinstance(layer, BatchNorm) and layer.training
               for layer in getattr(model, "layers", [model]))


def reset_batchnorm_statistics(model: Module, batches: Sequence[Any]) -> None:
    """Re-estimate every BatchNorm's running statistics as the plain average over ``batches``.

    Resets the buffers, switches to a cumulative average (momentum None), runs the batches
    in train mode without recording gradients, then restores momentum and mode.
    """
    from nobound.autodiff.tensor import no_grad

    norms = [m for m in getattr(model, "layers", [model]) if isinstance(m, BatchNorm)]
    was_training = model.training
    saved = [(bn.momentum) for bn in norms]
    for bn in norms:
        xp = get_array_module(bn.running_mean)  # the buffers may live on the GPU
        bn.running_mean = xp.zeros_like(bn.running_mean)
        bn.running_var = xp.ones_like(bn.running_var)
        bn.num_batches_tracked = xp.zeros_like(bn.num_batches_tracked)
        bn.momentum = None
    model.train()
    with no_grad():
        for batch in batches:
            model(batch)
    for bn, momentum in zip(norms, saved, strict=True):
        bn.momentum = momentum
    model.train(was_training)


class Normalize(Module):
    """y = (x − mean) / std per channel: the dataset normalisation as the network's layer 0.

    Keeping it inside the network means input regions stay in raw pixel space [0, 1].
    """

    buffer_names = ("mean", "std")

    def __init__(self, mean: Sequence[float], std: Sequence[float], dtype: Any = None) -> None:
        super().__init__()
        dtype = dtype or default_dtype()
        self.mean = np.asarray(mean, dtype).reshape(-1)
        self.std = np.asarray(std, dtype).reshape(-1)
        if np.any(self.std <= 0):
            raise ValueError("Normalize std must be positive")

    def affine_coefficients(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """(scale, shift) = (1/std, −mean/std), shaped (C, 1, 1)."""
        xp = like.xp
        std = xp.asarray(self.std, dtype=like.dtype).reshape(-1, 1, 1)
        mean = xp.asarray(self.mean, dtype=like.dtype).reshape(-1, 1, 1)
        return Tensor(1.0 / std), Tensor(-mean / std)

    def forward(self, x: Tensor, params: Mapping[str, Tensor] | None = None) -> Tensor:
        scale, shift = self.affine_coefficients(x)
        return x * scale + shift

    def extra_repr(self) -> str:
        return f"mean={self.mean.tolist()}, std={self.std.tolist()}"
