"""A small ReLU network as explicit dense matrices, for exact solvers and ground truth.

Every network nobound describes (a ``Sequential`` of Normalize, Conv2d, Linear,
BatchNorm in eval mode, Flatten and ReLU) is, on a flattened input x ∈ ℝ^{n₀},

    z₁ = W₁ x + b₁,   z_k = W_k ReLU(z_{k−1}) + b_k,   f(x) = z_{L},

because every layer between two ReLUs is affine and affine maps compose. This module
finds W_k and b_k by *probing*: for an affine map g, b = g(0) and column i of W is
g(e_i) − g(0), where e_i is the i-th unit vector. Probing uses the layers' own forward
passes, so the dense form is exactly the function the network computes; it costs one
forward of n₀ + 1 inputs per stage and is meant for small networks only (conv layers
become dense matrices of size outputs × inputs).

``relu_layers[k]`` is the index in ``model.layers`` of the ReLU that consumes z_{k+1}, the
key under which the relaxations report intermediate bounds and accept splits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from nobound.autodiff.tensor import Tensor, no_grad
from nobound.backend import to_numpy
from nobound.nn.activation import Flatten, ReLU
from nobound.nn.layers import Conv2d, Linear
from nobound.nn.module import Module
from nobound.nn.normalization import BatchNorm, Normalize
from nobound.nn.sequential import split_parameters

AFFINE_LAYERS = (Normalize, Conv2d, Linear, BatchNorm, Flatten)

# Probing more inputs than this means the dense matrix is too large to be useful here.
MAX_PROBED_FEATURES = 20_000


@dataclass
class DenseNetwork:
    """f(x) = W_L ReLU(… ReLU(W₁ x + b₁) …) + b_L in float64, on flattened inputs.

    ``weights[k]`` has shape (n_{k+1}, n_k); ``input_shape`` is the (C, H, W) or (n,)
    shape of one input; ``relu_shapes[k]`` is the shape of z_{k+1} as the model lays it out
    (so a flat pre-activation vector reshapes to the relaxations' neuron shape).
    """

    weights: list[np.ndarray]
    biases: list[np.ndarray]
    input_shape: tuple[int, ...]
    relu_layers: list[int]
    relu_shapes: list[tuple[int, ...]]

    @property
    def num_hidden_layers(self) -> int:
        return len(self.weights) - 1

    @property
    def input_size(self) -> int:
        return int(self.weights[0].shape[1])

    @property
    def output_size(self) -> int:
        return int(self.weights[-1].shape[0])

    def pre_activations(self, x: np.ndarray) -> list[np.ndarray]:
        """[z₁, …, z_L] for a batch of flattened inputs x of shape (N, n₀); z_L = f(x)."""
        values = []
        hidden = np.asarray(x, dtype=np.float64)
        for index, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            if index:
                hidden = np.maximum(values[-1], 0.0)
            values.append(hidden @ weight.T + bias)
        return values

    def forward(self, x: np.ndarray) -> np.ndarray:
        """f(x) for x of shape (N, n₀) (or (N, *input_shape)), in float64."""
        x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        return self.pre_activations(x)[-1]


def _probe(layers: Sequence[tuple[int, Module]], inputs: np.ndarray,
           params: Mapping[str, Tensor] | None) -> np.ndarray:
    with no_grad():
        out = Tensor(inputs)
        for index, layer in layers:
            out = layer.forward(out, split_parameters(params, index))
    return to_numpy(out.data).astype(np.float64)


def affine_stage(layers: Sequence[tuple[int, Module]], input_shape: tuple[int, ...],
                 params: Mapping[str, Tensor] | None = None,
                 ) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """(W, b, output shape) of a run of affine layers, y = W vec(x) + b, by probing.

    ``layers`` are (index in the Sequential, layer) pairs, used for parameter names.
    """
    size = int(np.prod(input_shape))
    if size > MAX_PROBED_FEATURES:
        raise ValueError(f"a dense matrix with {size} input features is too large; "
                         "nobound.exact is meant for small networks")
    for _, layer in layers:
        if not isinstance(layer, AFFINE_LAYERS):
            raise TypeError(f"{type(layer).__name__} is not an affine layer nobound.exact knows")
        if isinstance(layer, BatchNorm) and layer.training:
            raise ValueError("BatchNorm must be in eval mode: in train mode it is not a fixed "
                             "affine map of one input")
    # Row 0 probes g(0); rows 1…n probe g(e_i). Probing in float64 gives the exact map of
    # float32 parameters too, as NumPy promotes the products to float64.
    basis = np.concatenate([np.zeros((1, size)), np.eye(size)])
    outputs = _probe(layers, basis.reshape((size + 1, *input_shape)), params)
    output_shape = tuple(outputs.shape[1:])
    outputs = outputs.reshape(size + 1, -1)
    bias = outputs[0]
    weight = (outputs[1:] - bias).T
    return weight, bias, output_shape


def dense_network(model: Module, input_shape: Sequence[int],
                  params: Mapping[str, Tensor] | None = None) -> DenseNetwork:
    """The dense form of ``model`` (a Sequential, or one affine layer) for one input shape.

    ``input_shape`` excludes the batch axis, e.g. (1, 6, 6). ``params`` optionally replaces
    the model's parameters (PyTorch-style names, no population axis).
    """
    layers = list(enumerate(getattr(model, "layers", [model])))
    shape = tuple(int(n) for n in input_shape)
    weights, biases, relu_layers, relu_shapes = [], [], [], []
    stage: list[tuple[int, Module]] = []
    for index, layer in layers + [(len(layers), None)]:
        if layer is not None and not isinstance(layer, ReLU):
            stage.append((index, layer))
            continue
        weight, bias, shape = affine_stage(stage, shape, params)
        weights.append(weight)
        biases.append(bias)
        if layer is not None:
            relu_layers.append(index)
            relu_shapes.append(shape)
        stage = []
    return DenseNetwork(weights, biases, tuple(int(n) for n in input_shape), relu_layers,
                        relu_shapes)
