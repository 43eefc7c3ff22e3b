"""The network the verdicts are about: real arithmetic on the stored weights, as intervals.

``unsat``/``certified`` means: no point of the box is unsafe for the function

    f(x) = W_L ReLU(… ReLU(W₁ x + b₁) …) + b_L

computed *in real numbers* from the parameters exactly as stored (a float32 weight is the
real number it encodes). Each W_k, b_k composes one run of affine layers between two
ReLUs. :func:`nobound.exact.dense.dense_network` finds them by probing in float64, which
rounds (probing a Linear layer computes (w + b) − b, not w); here every stage is kept as a
float64 matrix with an elementwise radius that contains the real one:

    |W_k* − W_k| ≤ R_k,   |b_k* − b_k| ≤ r_k.

Linear and Conv2d layers are exact (R = 0): a Linear weight is read as stored, a Conv2d
matrix is probed with the bias set to zero, so every probed entry is one product w · 1.
Flatten is the identity on flattened vectors. Normalize ((x − μ)/σ) and eval-mode
BatchNorm (γ (x − μ)/√(var + ε) + β) are per-feature scalings whose few rounded operations
get radii, and stages of several layers compose with the error terms of
:mod:`nobound.certify.rounding`. The checker (:mod:`nobound.certify.checker`) bounds this
interval network soundly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nobound.autodiff.tensor import Tensor, no_grad
from nobound.backend import to_numpy
from nobound.certify.rounding import (
    SMALLEST_SUBNORMAL,
    UNIT_ROUNDOFF,
    matmul_error,
    product_error,
    up,
    upper_product,
)
from nobound.nn.activation import Flatten, ReLU
from nobound.nn.layers import Conv2d, Linear
from nobound.nn.module import Module
from nobound.nn.normalization import BatchNorm, Normalize


@dataclass
class StoredNetwork:
    """Per stage k: ``weights[k]`` (n_{k+1}, n_k), ``biases[k]`` and their radii."""

    weights: list[np.ndarray]
    biases: list[np.ndarray]
    weight_radii: list[np.ndarray]
    bias_radii: list[np.ndarray]
    input_shape: tuple[int, ...]

    @property
    def num_hidden_layers(self) -> int:
        return len(self.weights) - 1

    @property
    def hidden_sizes(self) -> list[int]:
        return [w.shape[0] for w in self.weights[:-1]]


@dataclass
class _Affine:
    """y = W x + b with |W* − W| ≤ R, |b* − b| ≤ r; ``diagonal``: W, R are vectors."""

    weight: np.ndarray
    bias: np.ndarray
    weight_radius: np.ndarray
    bias_radius: np.ndarray
    diagonal: bool

    def dense(self) -> _Affine:
        if not self.diagonal:
            return self
        return _Affine(np.diag(self.weight), self.bias, np.diag(self.weight_radius),
                       self.bias_radius, False)


def _array(value: object) -> np.ndarray:
    # a copy: the checker derives |W|, CSR copies and "has a radius" once per stored array
    # (rounding.stage_matrix), so a stored array must never change — not even when the
    # model it was read from trains on
    return np.array(to_numpy(value.data if isinstance(value, Tensor) else value), np.float64)


def _elementwise_radius(x: np.ndarray, rx: np.ndarray, y: np.ndarray, ry: np.ndarray,
                        product: np.ndarray) -> np.ndarray:
    """Radius of x*·y* around fl(x y) for |x* − x| ≤ rx, |y* − y| ≤ ry (elementwise)."""
    spread = up(up(np.abs(x) * ry) + up(rx * np.abs(y)))
    return up(up(spread + up(rx * ry)) + product_error(product))


def _add(x: np.ndarray, rx: np.ndarray, y: np.ndarray, ry: np.ndarray
         ) -> tuple[np.ndarray, np.ndarray]:
    total = x + y
    return total, up(up(rx + ry) + product_error(total))


def _interval_product(a: np.ndarray, a_radius: np.ndarray, b: np.ndarray,
                      b_radius: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """fl(a·b) and a radius r with |(a + δa)(b + δb) − fl(a·b)| ≤ r for all |δa| ≤ a_radius,
    |δb| ≤ b_radius: |a||δb| + |δa||b| + |δa||δb| plus the product's own rounding error,
    every sum rounded up."""
    product, error = matmul_error(a, b)
    spread = up(upper_product(np.abs(a), b_radius) + upper_product(a_radius, np.abs(b)))
    return product, up(up(spread + upper_product(a_radius, b_radius)) + error)


def compose(outer: _Affine, inner: _Affine) -> _Affine:
    """outer ∘ inner with rigorous radii (diagonal maps stay cheap)."""
    if outer.diagonal and inner.diagonal:
        weight = outer.weight * inner.weight
        radius = _elementwise_radius(outer.weight, outer.weight_radius, inner.weight,
                                     inner.weight_radius, weight)
        diagonal = True
    elif outer.diagonal:
        d, rd = outer.weight[:, None], outer.weight_radius[:, None]
        weight = d * inner.weight
        radius = _elementwise_radius(d, rd, inner.weight, inner.weight_radius, weight)
        diagonal = False
    elif inner.diagonal:
        d, rd = inner.weight[None, :], inner.weight_radius[None, :]
        weight = outer.weight * d
        radius = _elementwise_radius(outer.weight, outer.weight_radius, d, rd, weight)
        diagonal = False
    else:
        weight, radius = _interval_product(outer.weight, outer.weight_radius, inner.weight,
                                           inner.weight_radius)
        diagonal = False
    # bias: outer.W* inner.b* + outer.b*
    if outer.diagonal:
        moved = outer.weight * inner.bias
        moved_radius = _elementwise_radius(outer.weight, outer.weight_radius, inner.bias,
                                           inner.bias_radius, moved)
    else:
        moved, moved_radius = _interval_product(outer.weight, outer.weight_radius,
                                                inner.bias, inner.bias_radius)
    bias, bias_radius = _add(moved, moved_radius, outer.bias, outer.bias_radius)
    return _Affine(weight, bias, radius, bias_radius, diagonal)


# Unit inputs pushed through a convolution at once when its dense matrix is built.
_BASIS_CHUNK = 512


def _per_feature(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Broadcast per-channel values over a (C, H, W) or (n,) feature shape, flattened."""
    values = np.asarray(values, np.float64).reshape(-1)
    trailing = (1,) * (len(shape) - 1)
    return np.broadcast_to(values.reshape(-1, *trailing), shape).reshape(-1).copy()


def _layer_map(layer: Module, shape: tuple[int, ...]) -> tuple[_Affine | None, tuple[int, ...]]:
    """(the layer's map on flat vectors, or None for the identity; its output shape)."""
    size = int(np.prod(shape))
    if isinstance(layer, Flatten):
        return None, (size,)
    if isinstance(layer, Linear):
        weight = _array(layer.weight)
        bias = _array(layer.bias) if layer.bias is not None else np.zeros(weight.shape[0])
        zero = np.zeros_like(weight)
        return _Affine(weight, bias, zero, np.zeros_like(bias), False), (weight.shape[0],)
    if isinstance(layer, Conv2d):
        weight = Tensor(_array(layer.weight))
        params = {"weight": weight}
        if layer.bias is not None:
            params["bias"] = Tensor(np.zeros(layer.out_channels))
        # the image of each unit input e_j, in chunks (an n × n identity of a 23,328-feature
        # layer is 4 GB); one product w · 1 per entry, so every column is exact
        parts = []
        for first in range(0, size, _BASIS_CHUNK):
            count = min(_BASIS_CHUNK, size - first)
            basis = np.zeros((count, size))
            basis[np.arange(count), first + np.arange(count)] = 1.0
            with no_grad():
                parts.append(to_numpy(layer.forward(Tensor(basis.reshape(count, *shape)),
                                                    params).data).astype(np.float64))
        columns = np.concatenate(parts)
        out_shape = tuple(columns.shape[1:])
        matrix = columns.reshape(size, -1).T.copy()
        bias = _per_feature(_array(layer.bias), out_shape) if layer.bias is not None else \
            np.zeros(matrix.shape[0])
        return _Affine(matrix, bias, np.zeros_like(matrix), np.zeros_like(bias), False), \
            out_shape
    if isinstance(layer, Normalize):
        std, mean = _array(layer.std), _array(layer.mean)
        scale = 1.0 / std
        shift = -mean / std
        return _Affine(_per_feature(scale, shape), _per_feature(shift, shape),
                       _per_feature(product_error(scale), shape),
                       _per_feature(product_error(shift), shape), True), shape
    if isinstance(layer, BatchNorm):
        if layer.training:
            raise ValueError("BatchNorm must be in eval mode to be a fixed affine map")
        gamma, beta = _array(layer.weight), _array(layer.bias)
        mean, var = _array(layer.running_mean), _array(layer.running_var)
        scale = gamma / np.sqrt(var + layer.eps)
        product = mean * scale
        shift = beta - product
        # three rounded operations in the scale (add, sqrt, divide): relative error < 4u;
        # the shift adds |μ| times that and two more roundings (see the module docstring)
        scale_radius = up(up(8 * UNIT_ROUNDOFF * np.abs(scale)) + SMALLEST_SUBNORMAL)
        # below the normal range the relative-error argument fails: no claim
        scale_radius = np.where(var + layer.eps < np.finfo(np.float64).tiny, np.inf,
                                scale_radius)
        shift_radius = up(up(np.abs(mean) * scale_radius) + up(
            product_error(product) + product_error(shift)))
        return _Affine(_per_feature(scale, shape), _per_feature(shift, shape),
                       _per_feature(scale_radius, shape), _per_feature(shift_radius, shape),
                       True), shape
    raise TypeError(f"{type(layer).__name__} is not a layer the sound checker knows")


def stored_network(model: Module, input_shape: tuple[int, ...]) -> StoredNetwork:
    """The interval dense form of ``model`` (a Sequential of affine layers and ReLUs)."""
    layers = list(getattr(model, "layers", [model]))
    shape = tuple(int(n) for n in input_shape)
    weights, biases, weight_radii, bias_radii = [], [], [], []
    current: _Affine | None = None
    for layer in layers + [None]:
        if layer is not None and not isinstance(layer, ReLU):
            mapped, shape = _layer_map(layer, shape)
            if mapped is not None:
                current = mapped if current is None else compose(mapped, current)
            continue
        size = int(np.prod(shape))
        if current is None:  # no affine layer in this stage: the identity
            current = _Affine(np.ones(size), np.zeros(size), np.zeros(size), np.zeros(size),
                              True)
        current = current.dense()
        weights.append(current.weight)
        biases.append(current.bias)
        weight_radii.append(current.weight_radius)
        bias_radii.append(current.bias_radius)
        current = None
    return StoredNetwork(weights, biases, weight_radii, bias_radii,
                         tuple(int(n) for n in input_shape))
