"""Every primitive in ``nobound.autodiff.ops`` passes the dot-product gradient check.

``GRADIENT_CASES`` maps each primitive's name to a hypothesis-driven builder returning
``(function, inputs)`` for :func:`nobound.autodiff.gradcheck.check_grads`. The registry test
makes a new primitive without an entry fail. Piecewise-linear primitives (relu, abs, max,
min, clamp, …) get inputs on offset grids so no input lies within 0.1 of a kink, far more
than the finite-difference step reaches.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nobound.autodiff import ops
from nobound.autodiff.gradcheck import check_grads

Case = Callable[[st.DataObject, Any, str], tuple[Callable[..., Any], list[Any]]]
GRADIENT_CASES: dict[str, Case] = {}
NOT_DIFFERENTIABLE = {"output_size": "integer shape arithmetic; takes and returns ints"}

SMALL_SHAPES = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)


def case(*names: str) -> Callable[[Case], Case]:
    def register(builder: Case) -> Case:
        for name in names:
            GRADIENT_CASES[name] = builder
        return builder
    return register


def smooth(data: st.DataObject, xp: Any, shape: tuple[int, ...], low: float = -2.0,
           high: float = 2.0) -> Any:
    """A float64 array with entries in [low, high]."""
    elements = st.floats(low, high, allow_nan=False, allow_subnormal=False)
    return xp.asarray(data.draw(hnp.arrays(np.float64, shape, elements=elements)))


def on_grid(data: st.DataObject, xp: Any, shape: tuple[int, ...], offset: float,
            spacing: float = 0.3) -> Any:
    """Entries in spacing·ℤ + offset: arrays on different offsets never come within 0.1."""
    steps = data.draw(hnp.arrays(np.int64, shape, elements=st.integers(-6, 6)))
    return xp.asarray(steps * spacing + offset)


def away_from_zero(data: st.DataObject, xp: Any, shape: tuple[int, ...]) -> Any:
    return on_grid(data, xp, shape, offset=0.15)  # |x| ≥ 0.15


def distinct(data: st.DataObject, xp: Any, shape: tuple[int, ...]) -> Any:
    """Pairwise distinct entries (gaps ≥ 0.4), so every max is attained once."""
    size = int(np.prod(shape))
    order = data.draw(st.permutations(range(size)))
    jitter = data.draw(hnp.arrays(np.float64, size, elements=st.floats(0.0, 0.1)))
    return xp.asarray((np.asarray(order) * 0.5 + jitter - size / 4).reshape(shape))


def reduction_axes(data: st.DataObject, ndim: int) -> Any:
    subset = data.draw(st.lists(st.integers(-ndim, ndim - 1), max_size=ndim, unique_by=lambda a:
                                a % ndim))
    return data.draw(st.sampled_from([None, subset[0] if subset else 0, tuple(subset)]))


# ------------------------------------------------------------------ elementwise
@case("add", "sub", "mul")
def binary_smooth_case(data, xp, name):
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=3))
    x, y = (smooth(data, xp, s) for s in shapes.input_shapes)
    return getattr(ops, name), [x, y]


@case("div")
def division_case(data, xp, name):
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=3))
    x = smooth(data, xp, shapes.input_shapes[0])
    magnitude = smooth(data, xp, shapes.input_shapes[1], 0.5, 2.0)
    sign = xp.asarray(data.draw(hnp.arrays(bool, shapes.input_shapes[1])))
    return ops.div, [x, xp.where(sign, magnitude, -magnitude)]


@case("neg", "exp", "square")
def unary_smooth_case(data, xp, name):
    return getattr(ops, name), [smooth(data, xp, data.draw(SMALL_SHAPES))]


@case("log", "sqrt")
def unary_positive_case(data, xp, name):
    return getattr(ops, name), [smooth(data, xp, data.draw(SMALL_SHAPES), 0.2, 3.0)]


@case("relu", "abs", "negative_part", "positive_part")
def unary_kinked_case(data, xp, name):
    return getattr(ops, name), [away_from_zero(data, xp, data.draw(SMALL_SHAPES))]


@case("minimum", "maximum")
def binary_kinked_case(data, xp, name):
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=3))
    x = on_grid(data, xp, shapes.input_shapes[0], offset=0.0)
    y = on_grid(data, xp, shapes.input_shapes[1], offset=0.1)
    return getattr(ops, name), [x, y]


@case("clamp")
def clamp_case(data, xp, name):
    """x, low and high on three grids; bounds are arrays (differentiated) or Python floats."""
    shape = data.draw(SMALL_SHAPES)
    x = on_grid(data, xp, shape, offset=0.0)
    kind = data.draw(st.sampled_from(["both arrays", "low only", "high only", "floats"]))
    if kind == "floats":
        low, high = -0.5 + 0.1, 0.5 + 0.2  # on the low and high grids
        return (lambda x: ops.clamp(x, low, high)), [x]
    low = on_grid(data, xp, shape[-1:], offset=0.1)
    high = on_grid(data, xp, shape[-1:], offset=0.2)
    if kind == "low only":
        return (lambda x, low: ops.clamp(x, low=low)), [x, low]
    if kind == "high only":
        return (lambda x, high: ops.clamp(x, high=high)), [x, high]
    return ops.clamp, [x, low, high]


@case("where")
def where_case(data, xp, name):
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=3, max_dims=3, max_side=3))
    condition = xp.asarray(data.draw(hnp.arrays(bool, shapes.input_shapes[0])))
    x, y = (smooth(data, xp, s) for s in shapes.input_shapes[1:])
    return (lambda x, y: ops.where(condition, x, y)), [x, y]


# ------------------------------------------------------------------ contractions
@case("matmul")
def matmul_case(data, xp, name):
    batch = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=2, max_side=3))
    n, k, m = (data.draw(st.integers(1, 4)) for _ in range(3))
    x = smooth(data, xp, (*batch.input_shapes[0], n, k))
    y = smooth(data, xp, (*batch.input_shapes[1], k, m))
    return ops.matmul, [x, y]


EINSUM_SUBSCRIPTS = ["ij,jk->ik", "bij,bjk->bik", "ij->ji", "ij->i", "ij->", "i,j->ij",
                     "pbi,oi->pbo", "ijk,jk->i", "ij,ij->", "abc,cd,de->abe", "ab,c->abc"]


@case("einsum")
def einsum_case(data, xp, name):
    subscripts = data.draw(st.sampled_from(EINSUM_SUBSCRIPTS))
    letters = sorted(set(subscripts) - set(",->"))
    size = {c: data.draw(st.integers(1, 3)) for c in letters}
    specs = subscripts.split("->")[0].split(",")
    operands = [smooth(data, xp, tuple(size[c] for c in spec)) for spec in specs]
    return (lambda *tensors: ops.einsum(subscripts, *tensors)), operands


def conv_geometry(data: st.DataObject) -> dict[str, int]:
    kernel = data.draw(st.integers(1, 3))
    padding = data.draw(st.integers(0, 2))
    stride = data.draw(st.integers(1, 2))
    height = data.draw(st.integers(max(1, kernel - 2 * padding), 6))
    width = data.draw(st.integers(max(1, kernel - 2 * padding), 6))
    return dict(kernel=kernel, padding=padding, stride=stride, height=height, width=width)


def conv_operands(data: st.DataObject, xp: Any) -> tuple[Any, Any, dict[str, int]]:
    """(input, weight, geometry) in one of the three layouts: plain, shared input with a
    population weight, per-member input with a population weight."""
    g = conv_geometry(data)
    batch, channels, out_channels = (data.draw(st.integers(1, 2)) for _ in range(3))
    layout = data.draw(st.sampled_from(["plain", "shared", "per-member"]))
    population = 2
    lead = (population, batch) if layout == "per-member" else (batch,)
    weight_lead = () if layout == "plain" else (population,)
    x = smooth(data, xp, (*lead, channels, g["height"], g["width"]))
    w = smooth(data, xp, (*weight_lead, out_channels, channels, g["kernel"], g["kernel"]))
    return x, w, g


@case("conv2d")
def conv2d_case(data, xp, name):
    x, w, g = conv_operands(data, xp)
    out_channels = w.shape[-4]
    bias_shapes = [None, (out_channels,)] + ([(w.shape[0], out_channels)] if w.ndim == 5 else [])
    bias_shape = data.draw(st.sampled_from(bias_shapes))
    if bias_shape is None:
        return (lambda x, w: ops.conv2d(x, w, g["stride"], g["padding"])), [x, w]
    bias = smooth(data, xp, bias_shape)
    return (lambda x, w, b: ops.conv2d(x, w, g["stride"], g["padding"], b)), [x, w, bias]


@case("conv_transpose2d")
def conv_transpose2d_case(data, xp, name):
    x, w, g = conv_operands(data, xp)
    if w.ndim == 5 and x.ndim == 4:  # the transpose needs a per-member input
        x = xp.stack([x, x])
    out_shape = ops.conv2d(x, w, g["stride"], g["padding"]).shape
    y = smooth(data, xp, out_shape)
    hw = (g["height"], g["width"])
    return (lambda y, w: ops.conv_transpose2d(y, w, hw, g["stride"], g["padding"])), [y, w]


# ------------------------------------------------------------------ shapes
@case("reshape")
def reshape_case(data, xp, name):
    shape = data.draw(SMALL_SHAPES)
    size = int(np.prod(shape))
    first = data.draw(st.sampled_from([d for d in range(1, size + 1) if size % d == 0]))
    target = data.draw(st.sampled_from([(first, -1), (-1,), (size // first, 1, first)]))
    return (lambda x: ops.reshape(x, target)), [smooth(data, xp, shape)]


@case("flatten")
def flatten_case(data, xp, name):
    shape = data.draw(SMALL_SHAPES)
    start = data.draw(st.integers(-len(shape), len(shape) - 1))
    return (lambda x: ops.flatten(x, start)), [smooth(data, xp, shape)]


@case("transpose")
def transpose_case(data, xp, name):
    shape = data.draw(SMALL_SHAPES)
    axes = data.draw(st.none() | st.permutations(range(len(shape))))
    return (lambda x: ops.transpose(x, axes)), [smooth(data, xp, shape)]


@case("swapaxes")
def swapaxes_case(data, xp, name):
    shape = data.draw(SMALL_SHAPES)
    a, b = (data.draw(st.integers(-len(shape), len(shape) - 1)) for _ in range(2))
    return (lambda x: ops.swapaxes(x, a, b)), [smooth(data, xp, shape)]


@case("broadcast_to")
def broadcast_to_case(data, xp, name):
    target = data.draw(SMALL_SHAPES)
    kept = data.draw(st.integers(0, len(target)))
    ones = data.draw(hnp.arrays(bool, len(target)))
    source = tuple(1 if one else n for one, n in zip(ones, target, strict=True))[kept:]
    return (lambda x: ops.broadcast_to(x, target)), [smooth(data, xp, source)]


@case("getitem")
def getitem_case(data, xp, name):
    """Basic indices, integer arrays (with repeats), boolean masks, and mixtures."""
    shape = data.draw(SMALL_SHAPES)
    kind = data.draw(st.sampled_from(["basic", "integer", "mask", "mixed"]))
    if kind == "basic":
        index = data.draw(hnp.basic_indices(shape, allow_newaxis=True))
    elif kind == "integer":
        arrays = data.draw(hnp.integer_array_indices(
            shape, result_shape=hnp.array_shapes(min_dims=1, max_dims=2, max_side=5)))
        index = tuple(xp.asarray(a) for a in arrays)
    elif kind == "mask":
        index = xp.asarray(data.draw(hnp.arrays(bool, shape)))
    else:
        rows = data.draw(hnp.arrays(np.int64, 5, elements=st.integers(0, shape[0] - 1)))
        index = (xp.asarray(rows), slice(None, None, -1))[:len(shape)]
    return (lambda x: ops.getitem(x, index)), [smooth(data, xp, shape)]


@case("gather")
def gather_case(data, xp, name):
    shape = data.draw(SMALL_SHAPES)
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    picks = data.draw(st.integers(1, 5))
    # other axes: equal to x's, or broadcast (1 against n, or k against 1)
    index_shape = tuple(picks if a == axis % len(shape) else
                        data.draw(st.sampled_from([n, 1] if n > 1 else [1, 2]))
                        for a, n in enumerate(shape))
    top = shape[axis] - 1
    indices = data.draw(hnp.arrays(np.int64, index_shape, elements=st.integers(0, top)))
    return (lambda x: ops.gather(x, xp.asarray(indices), axis)), [smooth(data, xp, shape)]


@case("concatenate", "stack")
def join_case(data, xp, name):
    shape = data.draw(SMALL_SHAPES)
    count = data.draw(st.integers(1, 3))
    if name == "concatenate":
        axis = data.draw(st.integers(-len(shape), len(shape) - 1))
        pieces = [smooth(data, xp, shape[:axis % len(shape)] + (data.draw(st.integers(1, 3)),)
                         + shape[axis % len(shape) + 1:]) for _ in range(count)]
        return (lambda *tensors: ops.concatenate(tensors, axis)), pieces
    axis = data.draw(st.integers(-len(shape) - 1, len(shape)))
    pieces = [smooth(data, xp, shape) for _ in range(count)]
    return (lambda *tensors: ops.stack(tensors, axis)), pieces


@case("pad")
def pad_case(data, xp, name):
    shape = data.draw(SMALL_SHAPES)
    widths = [(data.draw(st.integers(0, 2)), data.draw(st.integers(0, 2))) for _ in shape]
    return (lambda x: ops.pad(x, widths)), [smooth(data, xp, shape)]


# ------------------------------------------------------------------ reductions
@case("sum", "mean")
def linear_reduction_case(data, xp, name):
    shape = data.draw(SMALL_SHAPES)
    axes, keepdims = reduction_axes(data, len(shape)), data.draw(st.booleans())
    return (lambda x: getattr(ops, name)(x, axes, keepdims)), [smooth(data, xp, shape)]


@case("max")
def maximum_reduction_case(data, xp, name):
    shape = data.draw(SMALL_SHAPES)
    axes, keepdims = reduction_axes(data, len(shape)), data.draw(st.booleans())
    return (lambda x: ops.max(x, axes, keepdims)), [distinct(data, xp, shape)]


@case("logsumexp")
def logsumexp_case(data, xp, name):
    shape = data.draw(SMALL_SHAPES)
    axes, keepdims = reduction_axes(data, len(shape)), data.draw(st.booleans())
    return (lambda x: ops.logsumexp(x, axes, keepdims)), [smooth(data, xp, shape, -5, 5)]


@case("batch_statistics")
def batch_statistics_case(data, xp, name):
    """Mean and variance together, so one random cotangent weighs both outputs."""
    shape = data.draw(hnp.array_shapes(min_dims=2, max_dims=4, min_side=2, max_side=3))
    axes = data.draw(st.sampled_from([(0,), (0, 2, 3)[:len(shape) - 1] or (0,)]))

    def statistics(x):
        mean, var = ops.batch_statistics(x, axes)
        return ops.concatenate([ops.reshape(mean, (-1,)), ops.reshape(var, (-1,))])

    return statistics, [smooth(data, xp, shape)]


# ------------------------------------------------------------------ tests
def public_functions_of_ops() -> set[str]:
    """Every public function defined in a public module of the ops package."""
    names = set()
    for info in pkgutil.iter_modules(ops.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{ops.__name__}.{info.name}")
        names |= {name for name, value in vars(module).items() if inspect.isfunction(value)
                  and value.__module__ == module.__name__ and not name.startswith("_")}
    return names


def test_every_primitive_has_a_gradient_check():
    exported = set(ops.__all__)
    assert public_functions_of_ops() == exported, "a primitive is missing from ops.__all__"
    assert set(NOT_DIFFERENTIABLE) <= exported
    assert set(GRADIENT_CASES) == exported - set(NOT_DIFFERENTIABLE)


@pytest.mark.parametrize("name", sorted(GRADIENT_CASES))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_primitive_passes_dot_product_check(xp, name, data):
    function, inputs = GRADIENT_CASES[name](data, xp, name)
    check_grads(function, inputs, seed=data.draw(st.integers(0, 2**16)))
