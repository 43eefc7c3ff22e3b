"""The layers of a network as the relaxations see them: affine maps, reshapes and ReLUs.

* dense affine maps y = W v + b (``Linear``, ``Conv2d``);
* diagonal affine maps y = s ⊙ v + t per channel (``BatchNorm``, ``Normalize``);
* ``Flatten``, a reshape;
* ``ReLU``, an *activation*: an elementwise non-linearity, relaxed differently by each
  method. An activation step has ``activation = True`` and gives its interval image,
  ``interval(l, u)`` (IBP); DeepPoly's two lines for a ReLU are eq. (5) in
  :mod:`nobound.bounds.deeppoly`; any other activation brings them as ``relax(l, u)``.

Each affine step offers the four operations the relaxations are built from, on tensors of
shape (P', *middle, *features) — a leading population axis P' ∈ {1, P}, then any number of
"middle" axes (batch, bound side, back-substitution rows, error terms):

    forward(v)        = W v + b          (centres, points)
    linear(g)         = W g              (zonotope error terms)
    forward_abs(r)    = |W| r            (radii; eq. 3)
    backward(A)       = A W              (back-substitution of row coefficients; eq. 4)
    bias_term(A)      = A b              (the constant collected on the way)
    back_substitute(A) = (A W, A b)      (both, computed together where that is faster)

``backward`` of a convolution is the transposed convolution, never an unrolled matrix.
Parameters carry their population axis: (P', out, in) for Linear, (P', C) per channel.
"""

from __future__ import annotations

from math import prod

from nobound.autodiff import ops
from nobound.autodiff.tensor import Tensor


def _expand(tensor: Tensor, middle_ndim: int, trailing_ndim: int = 0) -> Tensor:
    """(P', *core) → (P', 1 × middle_ndim, *core, 1 × trailing_ndim) for broadcasting."""
    shape = (tensor.shape[0],) + (1,) * middle_ndim + tensor.shape[1:] + (1,) * trailing_ndim
    return tensor.reshape(shape)


def _detach(tensor: Tensor | None) -> Tensor | None:
    return None if tensor is None else Tensor(tensor.data)


def _members(tensor: Tensor | None, start: int, stop: int) -> Tensor | None:
    if tensor is None or tensor.shape[0] == 1:
        return tensor
    return tensor[start:stop]


class Step:
    """One layer of the chain; ``index`` is its position in ``model.layers``."""

    dense = False  # whether the map mixes coordinates (Linear, Conv2d)
    activation = False  # an elementwise non-linearity (relaxed, not back-substituted exactly)

    def __init__(self, index: int, input_shape: tuple[int, ...],
                 output_shape: tuple[int, ...]) -> None:
        self.index = index
        self.input_shape = tuple(input_shape)
        self.output_shape = tuple(output_shape)

    def _middle(self, tensor: Tensor, shape: tuple[int, ...]) -> int:
        return tensor.ndim - 1 - len(shape)

    def detached(self) -> Step:
        return self

    def members(self, start: int, stop: int) -> Step:
        return self

    def samples(self, start: int, stop: int) -> Step:
        """The step for batch elements start…stop−1 (only per-sample steps change)."""
        return self

    def back_substitute(self, coefficients: Tensor) -> tuple[Tensor, Tensor | None]:
        """(A W, A b) for an affine step: :meth:`backward` and :meth:`bias_term`, which a
        step may compute together."""
        return self.backward(coefficients), self.bias_term(coefficients)


class ReluStep(Step):
    """y = max(v, 0); relaxed by the method (eq. 3 for IBP, eq. 5 for DeepPoly)."""

    activation = True

    def __init__(self, index: int, shape: tuple[int, ...]) -> None:
        super().__init__(index, shape, shape)

    def interval(self, lower: Tensor, upper: Tensor) -> tuple[Tensor, Tensor]:
        """[ReLU(l), ReLU(u)]: a monotone function maps a box to the box of its ends."""
        return ops.relu(lower), ops.relu(upper)


class FlattenStep(Step):
    """(C, H, W) → (C·H·W,): a reshape, its own back-substitution is the inverse reshape."""

    def forward(self, v: Tensor) -> Tensor:
        return v.reshape(v.shape[:v.ndim - len(self.input_shape)] + self.output_shape)

    linear = forward
    forward_abs = forward

    def backward(self, coefficients: Tensor) -> Tensor:
        lead = coefficients.shape[:coefficients.ndim - len(self.output_shape)]
        return coefficients.reshape(lead + self.input_shape)

    def bias_term(self, coefficients: Tensor) -> Tensor | None:
        return None


class LinearStep(Step):
    """y = W v + b with W of shape (P', out, in) and b of shape (P', out)."""

    dense = True

    def __init__(self, index: int, weight: Tensor, bias: Tensor | None) -> None:
        super().__init__(index, (weight.shape[-1],), (weight.shape[-2],))
        self.weight, self.bias = weight, bias

    def forward(self, v: Tensor) -> Tensor:
        out = self.linear(v)
        if self.bias is not None:
            out = out + _expand(self.bias, self._middle(v, self.input_shape))
        return out

    def linear(self, v: Tensor, absolute: bool = False) -> Tensor:
        weight = ops.abs(self.weight) if absolute else self.weight
        # the last middle axis is the row axis of the matrix product
        return ops.matmul(v, _expand(ops.swapaxes(weight, -1, -2),
                                     self._middle(v, self.input_shape) - 1))

    def forward_abs(self, v: Tensor) -> Tensor:
        return self.linear(v, absolute=True)

    def backward(self, coefficients: Tensor) -> Tensor:
        middle = self._middle(coefficients, self.output_shape)
        return ops.matmul(coefficients, _expand(self.weight, middle - 1))

    def bias_term(self, coefficients: Tensor) -> Tensor | None:
        if self.bias is None:
            return None
        middle = self._middle(coefficients, self.output_shape)
        return _contract_last(coefficients, _expand(self.bias, middle - 1, 1))

    def detached(self) -> LinearStep:
        return LinearStep(self.index, _detach(self.weight), _detach(self.bias))

    def members(self, start: int, stop: int) -> LinearStep:
        return LinearStep(self.index, _members(self.weight, start, stop),
                          _members(self.bias, start, stop))


def _contract_last(coefficients: Tensor, column: Tensor) -> Tensor:
    """Σ_j A[..., j] c[..., j] via a matrix-vector product.

    ``column`` ends in (n, 1) and has one axis fewer before it than ``coefficients``
    (whose last middle axis is the row axis of the product).
    """
    product = ops.matmul(coefficients, column)
    return product.reshape(product.shape[:-1])


class ConvStep(Step):
    """y = W ⋆ v + b; W is (O, C, kh, kw), or (P, O, C, kh, kw) for a population."""

    dense = True

    def __init__(self, index: int, weight: Tensor, bias: Tensor | None, stride: int,
                 padding: int, input_shape: tuple[int, int, int]) -> None:
        channels, height, width = input_shape
        out_channels = weight.shape[-4]
        kernel_h, kernel_w = weight.shape[-2:]
        output_shape = (out_channels, ops.output_size(height, kernel_h, stride, padding),
                        ops.output_size(width, kernel_w, stride, padding))
        super().__init__(index, input_shape, output_shape)
        self.weight, self.bias, self.stride, self.padding = weight, bias, stride, padding

    @property
    def population(self) -> int:
        return self.weight.shape[0] if self.weight.ndim == 5 else 1

    def forward(self, v: Tensor) -> Tensor:
        out = self.linear(v)
        if self.bias is not None:
            out = out + _expand(self.bias, self._middle(v, self.input_shape), 2)
        return out

    def forward_abs(self, v: Tensor) -> Tensor:
        return self.linear(v, absolute=True)

    def linear(self, v: Tensor, absolute: bool = False) -> Tensor:
        weight = ops.abs(self.weight) if absolute else self.weight
        if self.population > 1 and v.shape[0] == 1:
            # a shared input meets P weights: unfold it once (see ops.conv2d)
            middle = v.shape[1:v.ndim - 3]
            out = ops.conv2d(v.reshape(-1, *self.input_shape), weight, self.stride,
                             self.padding)
            return out.reshape((self.population, *middle, *self.output_shape))
        return ops.conv2d(v, weight, self.stride, self.padding)

    def backward(self, coefficients: Tensor) -> Tensor:
        return transposed_conv(coefficients, self.weight, self.output_shape, self.input_shape,
                               self.stride, self.padding, as_matrix=False)

    def bias_term(self, coefficients: Tensor) -> Tensor | None:
        """A b = Σ_(c, h, w) A[c, h, w] b_c: one matrix-vector product with b repeated over
        each channel's positions (summing each channel's positions first is slower: NumPy's
        sums over short trailing axes, 9 or 49 positions, are not vectorised well)."""
        if self.bias is None:
            return None
        middle = self._middle(coefficients, self.output_shape)
        # the positions the rows carry: the whole maps, or each row's window (patches.py)
        channels, positions = coefficients.shape[-3], prod(coefficients.shape[-2:])
        repeated = ops.broadcast_to(self.bias.reshape(self.bias.shape + (1,)),
                                    self.bias.shape + (positions,))
        flat = coefficients.reshape(coefficients.shape[:-3] + (channels * positions,))
        return _contract_last(flat, _expand(repeated.reshape((self.bias.shape[0], -1)),
                                            middle - 1, 1))

    def back_substitute(self, coefficients: Tensor) -> tuple[Tensor, Tensor | None]:
        """(A W, A b): rows the compiled path stores rows-innermost get both from one pass
        (:func:`nobound.bounds.kernels.fused_conv_back_step`), others :meth:`backward`'s
        product and :meth:`bias_term`'s sum."""
        from nobound.bounds.kernels import fused_conv_back_step  # see transposed_conv

        if (fused := fused_conv_back_step(coefficients, self.weight, self.bias,
                                          self.input_shape, self.stride,
                                          self.padding)) is not None:
            return fused
        return self.backward(coefficients), self.bias_term(coefficients)

    def detached(self) -> ConvStep:
        return ConvStep(self.index, _detach(self.weight), _detach(self.bias), self.stride,
                        self.padding, self.input_shape)

    def members(self, start: int, stop: int) -> ConvStep:
        weight = self.weight[start:stop] if self.population > 1 else self.weight
        return ConvStep(self.index, weight, _members(self.bias, start, stop), self.stride,
                        self.padding, self.input_shape)


#: With ``as_matrix``, a transposed convolution of many rows runs as one matrix product with
#: its dense operator M (the transposed convolution of every unit map) when M has at most
#: this many times the convolution's multiply-adds and at most OPERATOR_ENTRIES entries.
#: Receptive-field windows are small and many, where one GEMM beats many tiny transposed
#: convolutions; on whole maps the convolution engine is the better choice.
OPERATOR_OVERHEAD = 8
OPERATOR_ENTRIES = 1 << 22
#: Where the compiled path (:func:`nobound.bounds.kernels.fused_transposed_conv`) applies
#: and adds whole patch rows, the dense operator is kept only up to this overhead: beyond it
#: the compiled product and fold is faster (cnn5's second layer on 4 × 4 windows, overhead
#: 6.25). With short patch rows (few channels, a first layer) the operator keeps
#: OPERATOR_OVERHEAD. Rows the compiled path stores rows-innermost
#: (:func:`nobound.bounds.kernels.goes_rows_innermost`) never take the operator: its product
#: would store them row-major again, and the rows-innermost products need no fold.
COMPILED_OPERATOR_OVERHEAD = 3


def transposed_conv(coefficients: Tensor, weight: Tensor, out_shape: tuple[int, int, int],
                    in_shape: tuple[int, int, int], stride: int, padding: int,
                    as_matrix: bool = True) -> Tensor:
    """A ↦ A W for a convolution W of (C, H, W) = ``in_shape`` to ``out_shape``: the
    transposed convolution of the rows (…, *out_shape) → (…, *in_shape), with a leading
    population axis on ``coefficients`` (P' ∈ {1, P}) and optionally on ``weight``."""
    # imported here: the kernels module builds on the layouts, which build on the steps
    from nobound.bounds.kernels import MIN_PATCH_ROW, fused_transposed_conv, goes_rows_innermost

    population = weight.shape[0] if weight.ndim == 5 else 1
    kernel = prod(weight.shape[-3:])
    n_out, n_in = prod(out_shape), prod(in_shape)
    operator = as_matrix and n_in <= OPERATOR_OVERHEAD * kernel and \
        n_out * n_in <= OPERATOR_ENTRIES
    long_rows = weight.shape[-3] * weight.shape[-1] >= MIN_PATCH_ROW
    if operator and (n_in <= COMPILED_OPERATOR_OVERHEAD * kernel or not long_rows) and \
            not goes_rows_innermost(coefficients, weight):
        return _operator_product(coefficients, weight, out_shape, in_shape, stride, padding)
    if (fused := fused_transposed_conv(coefficients, weight, in_shape, stride,
                                       padding)) is not None:
        return fused
    if operator:
        return _operator_product(coefficients, weight, out_shape, in_shape, stride, padding)
    if population > 1 and coefficients.shape[0] == 1:
        coefficients = ops.broadcast_to(coefficients, (population, *coefficients.shape[1:]))
    return ops.conv_transpose2d(coefficients, weight, in_shape[1:], stride, padding)


def _operator_product(coefficients: Tensor, weight: Tensor, out_shape: tuple[int, int, int],
                      in_shape: tuple[int, int, int], stride: int, padding: int) -> Tensor:
    """The rows times the dense operator M of the transposed convolution, one GEMM."""
    population = weight.shape[0] if weight.ndim == 5 else 1
    n_out, n_in = prod(out_shape), prod(in_shape)
    xp = coefficients.xp
    basis = xp.eye(n_out, dtype=coefficients.dtype).reshape(n_out, *out_shape)
    basis = Tensor(basis if weight.ndim == 4 else
                   xp.broadcast_to(basis, (population, *basis.shape)))
    operator = ops.conv_transpose2d(basis, weight, in_shape[1:], stride, padding)
    lead = coefficients.shape[:-3]
    rows = coefficients.reshape((lead[0], -1, n_out))
    return ops.matmul(rows, operator.reshape(population, n_out, n_in)).reshape(
        (-1, *lead[1:], *in_shape))


class ChannelAffineStep(Step):
    """y = s ⊙ v + t per channel (BatchNorm, Normalize); s, t of shape (P', C)."""

    def __init__(self, index: int, scale: Tensor, shift: Tensor,
                 shape: tuple[int, ...]) -> None:
        super().__init__(index, shape, shape)
        self.scale, self.shift = scale, shift
        self.spatial_ndim = len(shape) - 1

    def _coefficient(self, tensor: Tensor, reference: Tensor) -> Tensor:
        return _expand(tensor, self._middle(reference, self.input_shape), self.spatial_ndim)

    def forward(self, v: Tensor) -> Tensor:
        return v * self._coefficient(self.scale, v) + self._coefficient(self.shift, v)

    def linear(self, v: Tensor) -> Tensor:
        return v * self._coefficient(self.scale, v)

    def forward_abs(self, v: Tensor) -> Tensor:
        return v * self._coefficient(ops.abs(self.scale), v)

    def backward(self, coefficients: Tensor) -> Tensor:
        return coefficients * self._coefficient(self.scale, coefficients)

    def bias_term(self, coefficients: Tensor) -> Tensor | None:
        middle = self._middle(coefficients, self.output_shape)
        spatial_axes = tuple(range(-self.spatial_ndim, 0))
        per_channel = coefficients.sum(axis=spatial_axes) if spatial_axes else coefficients
        return _contract_last(per_channel, _expand(self.shift, middle - 1, 1))

    def detached(self) -> ChannelAffineStep:
        return ChannelAffineStep(self.index, _detach(self.scale), _detach(self.shift),
                                 self.input_shape)

    def members(self, start: int, stop: int) -> ChannelAffineStep:
        return ChannelAffineStep(self.index, _members(self.scale, start, stop),
                                 _members(self.shift, start, stop), self.input_shape)


class SpecifiedLinearStep(Step):
    """The last Linear layer with the specification folded in: y = (C W) v + C b.

    W' is (P', B, K, in) and b' is (P', B, K): one affine map per sample (see
    :func:`nobound.bounds.specification.fold_spec`). Inputs are (P', B, *rest, in).
    """

    dense = True

    def __init__(self, index: int, weight: Tensor, bias: Tensor | None) -> None:
        super().__init__(index, (weight.shape[-1],), (weight.shape[-2],))
        self.weight, self.bias = weight, bias

    def _per_sample(self, tensor: Tensor, rest_ndim: int) -> Tensor:
        """(P', B, *core) → (P', B, 1 × rest_ndim, *core)."""
        shape = tensor.shape[:2] + (1,) * rest_ndim + tensor.shape[2:]
        return tensor.reshape(shape)

    def forward(self, v: Tensor) -> Tensor:
        out = self.linear(v)
        if self.bias is not None:
            out = out + self._per_sample(self.bias, self._middle(v, self.input_shape) - 1)
        return out

    def samples(self, start: int, stop: int) -> SpecifiedLinearStep:
        bias = None if self.bias is None else self.bias[:, start:stop]
        return SpecifiedLinearStep(self.index, self.weight[:, start:stop], bias)

    def forward_abs(self, v: Tensor) -> Tensor:
        return self.linear(v, absolute=True)

    def linear(self, v: Tensor, absolute: bool = False) -> Tensor:
        weight = ops.abs(self.weight) if absolute else self.weight
        rest = self._middle(v, self.input_shape) - 1
        # every vector gets its own length-1 row axis, so the weight is applied per sample
        rows = ops.matmul(v.reshape(v.shape[:-1] + (1, v.shape[-1])),
                          self._per_sample(ops.swapaxes(weight, -1, -2), rest))
        return rows.reshape(rows.shape[:-2] + rows.shape[-1:])
