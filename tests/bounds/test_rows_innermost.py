"""Back-substitution rows stored rows-innermost (nobound.bounds._rows_innermost_numba) give
the same numbers as the row-major paths and the engine.

The layout is a memory order only: coefficients keep their logical shape (P', S, B', R, C,
H, W), on whole maps and on receptive-field windows. Checked in float64 against the
engine's transposed convolution, the plain ReLU step, the plain bias term and the plain
eq. (2) (on windows: each row's λ, s, t and box read at its position, rows in runs at one
position or not), then DeepPoly end to end on networks whose rows take the path — against
the same computation with it switched off and with every compiled loop off, and against
sampled points of the input box (vertices, points near the corners, uniform points).
"""

from __future__ import annotations

import numpy as np
import pytest

import nobound.bounds.deeppoly as deeppoly
import nobound.bounds.kernels as kernels
import nobound.bounds.patches as patches_module
from nobound.autodiff import ops
from nobound.autodiff.tensor import Tensor, no_grad
from nobound.bounds.kernels import fused_conv_back_step, fused_transposed_conv, rows_innermost
from nobound.bounds.patches import NeuronRows, Window, WindowReluLines, WindowRows, by_position
from nobound.bounds.rows import ReluLines
from nobound.testing.bound_results import assert_same_bounds
from nobound.testing.sampling import region_samples

pytest.importorskip("numba")

CASES = [  # (O, C, kh, kw, stride, padding, H, W)
    (16, 16, 4, 4, 2, 1, 14, 14),   # cnn5's second layer
    (32, 16, 4, 4, 2, 1, 7, 7),     # cnn5's third: the last input row unread
    (16, 1, 5, 5, 2, 2, 28, 28),    # cnn5's first layer: few channels, one product per pixel
    (5, 8, 3, 3, 1, 1, 9, 11),      # stride 1, odd, non-square map
    (6, 4, 5, 4, 3, 2, 13, 10),     # stride 3, non-square kernel
    (7, 9, 3, 3, 2, 0, 12, 9),      # no padding, an unread last column
    (17, 3, 4, 3, 3, 0, 13, 10),    # three channels, unread rows and columns
    (20, 1, 3, 5, 2, 3, 11, 12),    # padding beyond half the kernel
    (5, 9, 1, 1, 2, 0, 9, 9),       # a kernel smaller than the stride: rows reached once
]


def _stored_rows_innermost(array: np.ndarray) -> np.ndarray:
    """The same logical (P', S, B', R, C, H, W) array, stored (P', S, H, W, C, B', R)."""
    order = (0, 1, 5, 6, 4, 2, 3)  # its own inverse
    return np.ascontiguousarray(array.transpose(order)).transpose(order)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("products", ["per output pixel", "per input pixel"])
@pytest.mark.parametrize("layout", ["row-major", "rows-innermost"])
def test_transposed_conv_equals_the_engine(case, products, layout, monkeypatch):
    out_channels, channels, kernel_h, kernel_w, stride, padding, height, width = case
    out_h = ops.output_size(height, kernel_h, stride, padding)
    out_w = ops.output_size(width, kernel_w, stride, padding)
    rng = np.random.default_rng(sum(case))
    # (P', S, B', R, O, Ho, Wo) with B'·R = 111 ≥ MIN_ROWS_INNERMOST, not a vector multiple
    y = rng.standard_normal((1, 2, 3, 37, out_channels, out_h, out_w))
    y[..., 0, :, :] = 0.0  # a whole zero row
    if layout == "rows-innermost":
        y = _stored_rows_innermost(y)
    weight = Tensor(rng.standard_normal((out_channels, channels, kernel_h, kernel_w)))
    monkeypatch.setattr(kernels, "MIN_ROWS_INNERMOST_PRODUCT_CHANNELS",
                        0 if products == "per output pixel" else 10**6)
    with no_grad():
        fused = fused_transposed_conv(Tensor(y), weight, (channels, height, width), stride,
                                      padding)
        plain = ops.conv_transpose2d(Tensor(np.ascontiguousarray(y)), weight, (height, width),
                                     stride, padding)
    assert fused is not None and rows_innermost(fused.data)
    assert fused.shape == plain.shape == (1, 2, 3, 37, channels, height, width)
    np.testing.assert_allclose(fused.data, plain.data, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("products", ["per output pixel", "per input pixel"])
def test_bias_term_from_the_same_pass(case, products, monkeypatch):
    """fused_conv_back_step's A b, summed while the products read A, equals Σ A[c, h, w] b_c;
    its A W equals the engine's (rows stored either way, windows' "full" convolutions
    too: padding 0)."""
    out_channels, channels, kernel_h, kernel_w, stride, padding, height, width = case
    out_h = ops.output_size(height, kernel_h, stride, padding)
    out_w = ops.output_size(width, kernel_w, stride, padding)
    rng = np.random.default_rng(sum(case) + 1)
    y = rng.standard_normal((2, 2, 3, 37, out_channels, out_h, out_w))
    y[..., 1, :, :, :] = 0.0  # a whole zero row
    weight = Tensor(rng.standard_normal((out_channels, channels, kernel_h, kernel_w)))
    bias = Tensor(rng.standard_normal((1, out_channels)))
    monkeypatch.setattr(kernels, "MIN_ROWS_INNERMOST_PRODUCT_CHANNELS",
                        0 if products == "per output pixel" else 10**6)
    for stored in (y, _stored_rows_innermost(y)):
        with no_grad():
            fused = fused_conv_back_step(Tensor(stored), weight, bias, (channels, height, width),
                                         stride, padding)
            plain = ops.conv_transpose2d(Tensor(y), weight, (height, width), stride, padding)
        assert fused is not None
        product, term = fused
        assert rows_innermost(product.data) and term.shape == (2, 2, 3, 37)
        np.testing.assert_allclose(product.data, plain.data, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(term.data, np.einsum("psbrchw,c->psbr", y, bias.data[0]),
                                   rtol=1e-12, atol=1e-12)


def test_conv_without_bias_gives_no_term():
    """No bias: the same rows-innermost product, and no bias term."""
    rng = np.random.default_rng(7)
    y = Tensor(rng.standard_normal((1, 2, 2, 40, 16, 7, 7)))
    weight = Tensor(rng.standard_normal((16, 16, 4, 4)))
    with no_grad():
        product, term = fused_conv_back_step(y, weight, None, (16, 14, 14), 2, 1)
        plain = ops.conv_transpose2d(y, weight, (14, 14), 2, 1)
    assert term is None and rows_innermost(product.data)
    np.testing.assert_allclose(product.data, plain.data, rtol=1e-12, atol=1e-12)


def test_bias_term_stays_apart_where_it_cannot_share_the_pass():
    """A population bias or one recording gradients: None (the step sums A b itself)."""
    rng = np.random.default_rng(3)
    y = Tensor(rng.standard_normal((1, 2, 2, 40, 16, 7, 7)))
    weight = Tensor(rng.standard_normal((16, 16, 4, 4)))
    with no_grad():
        assert fused_conv_back_step(y, weight, Tensor(rng.standard_normal((2, 16))),
                                    (16, 14, 14), 2, 1) is None
    assert fused_conv_back_step(y, weight, Tensor(rng.standard_normal((1, 16)),
                                                  requires_grad=True), (16, 14, 14), 2,
                                1) is None


@pytest.mark.parametrize("products", ["per output pixel", "per input pixel"])
def test_more_columns_than_a_block(products, monkeypatch):
    """B'·R = 3 · 370 columns: the kernels take them (FOLD_)COLUMN_BLOCK at a time."""
    compiled = kernels.numba_kernels(kernels.ROWS_INNERMOST_KERNELS)
    assert 3 * 370 > max(compiled.COLUMN_BLOCK, compiled.FOLD_COLUMN_BLOCK)
    rng = np.random.default_rng(9)
    y = Tensor(rng.standard_normal((1, 2, 3, 370, 6, 5, 5)))
    weight = Tensor(rng.standard_normal((6, 3, 3, 3)))
    monkeypatch.setattr(kernels, "MIN_ROWS_INNERMOST_PRODUCT_CHANNELS",
                        0 if products == "per output pixel" else 10**6)
    bias = Tensor(rng.standard_normal((1, 6)))
    with no_grad():
        fused, term = fused_conv_back_step(y, weight, bias, (3, 9, 9), 2, 1)
        plain = ops.conv_transpose2d(y, weight, (9, 9), 2, 1)
    assert rows_innermost(fused.data)
    np.testing.assert_allclose(fused.data, plain.data, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(term.data, np.einsum("psbrchw,c->psbr", y.data, bias.data[0]),
                               rtol=1e-12, atol=1e-12)


def test_float32_to_round_off():
    rng = np.random.default_rng(5)
    y = Tensor(rng.standard_normal((1, 2, 2, 40, 16, 7, 7)).astype(np.float32))
    weight = Tensor(rng.standard_normal((16, 16, 4, 4)).astype(np.float32))
    with no_grad():
        fused = fused_transposed_conv(y, weight, (16, 14, 14), 2, 1)
        plain = ops.conv_transpose2d(y, weight, (14, 14), 2, 1)
    assert fused.data.dtype == np.float32 and rows_innermost(fused.data)
    np.testing.assert_allclose(fused.data, plain.data, rtol=1e-4, atol=1e-4)


def test_where_rows_stay_row_major():
    """Few rows and recorded gradients keep the row-major paths; rows numerous enough go
    rows-innermost, on whole maps and on windows ("full" convolutions, padding 0) alike."""
    rng = np.random.default_rng(1)
    weight = Tensor(rng.standard_normal((16, 16, 4, 4)))
    many = Tensor(rng.standard_normal((1, 2, 2, 40, 16, 7, 7)))
    few = Tensor(rng.standard_normal((1, 2, 1, 31, 16, 7, 7)))  # B'·R = 31
    with no_grad():
        assert rows_innermost(fused_transposed_conv(many, weight, (16, 14, 14), 2, 1).data)
        assert rows_innermost(fused_transposed_conv(many, weight, (16, 16, 16), 2, 0).data)
        assert not rows_innermost(fused_transposed_conv(few, weight, (16, 14, 14), 2, 1).data)
    assert fused_transposed_conv(Tensor(many.data, requires_grad=True), weight, (16, 14, 14),
                                 2, 1) is None


def _lines(rng, batch, shape, zero_slopes=False):
    """λ per side, s, t per neuron, (1, 1, B, 1, C, H, W); some neurons stable."""
    def line(low, high):
        values = rng.uniform(low, high, (1, 1, batch, 1, *shape))
        values[..., 0, 0, :] = 0.0 if zero_slopes else values[..., 0, 0, :]
        return Tensor(values)
    return ReluLines({"lower": line(0, 1), "upper": line(0, 1)}, line(0, 1), line(0, 2))


@pytest.mark.parametrize("sides, batch_a", [(1, 1), (2, 3), (1, 3), (2, 1)])
@pytest.mark.parametrize("stored", ["rows-innermost", "row-major"])
@pytest.mark.parametrize("members_a, members_x", [(1, 1), (1, 2), (2, 2)])
def test_relu_step_equals_the_plain_path(sides, batch_a, stored, members_a, members_x,
                                         monkeypatch):
    """Rows stored either way (3 samples × 33 rows: enough for the layout) come out
    rows-innermost, with the plain path's numbers; population members on the lines only or
    on both."""
    rng = np.random.default_rng(sides * 10 + batch_a + 100 * members_a + 1000 * members_x)
    shape = (8, 8, 9)  # 33 rows · 576 ≥ COMPILED_PASS_MIN_SIZE: the compiled loop applies
    A = rng.standard_normal((members_a, sides, batch_a, 33, *shape))  # noqa: N806
    A[rng.uniform(size=A.shape) < 0.1] = 0.0  # exact zeros: the sign rule's tie
    per_member = [_lines(rng, 3, shape, zero_slopes=True) for _ in range(members_x)]
    lines = ReluLines(
        {side: Tensor(np.concatenate([m.lower_slope[side].data for m in per_member]))
         for side in ("lower", "upper")},
        Tensor(np.concatenate([m.upper_slope.data for m in per_member])),
        Tensor(np.concatenate([m.intercept.data for m in per_member])))
    a = Tensor(rng.standard_normal((members_a, sides, batch_a, 33)))
    given = _stored_rows_innermost(A) if stored == "rows-innermost" else A
    with no_grad():
        fused, fused_a = deeppoly.relu_back_step(Tensor(given), a, lines, 3)
        monkeypatch.setattr(deeppoly, "fused_relu_back_step", lambda *args: None)
        plain, plain_a = deeppoly.relu_back_step(Tensor(A), a, lines, 3)
    assert rows_innermost(fused.data)
    assert fused.shape == plain.shape == (max(members_a, members_x), 2, 3, 33, *shape)
    np.testing.assert_allclose(fused.data, plain.data, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(fused_a.data, plain_a.data, rtol=1e-12, atol=1e-12)


def test_relu_step_on_few_rows_stays_row_major():
    """One sample's 20 rows (< MIN_ROWS_INNERMOST) keep the row-major loop and layout."""
    rng = np.random.default_rng(6)
    shape = (8, 8, 9)
    A = Tensor(rng.standard_normal((1, 2, 1, 20, *shape)))  # noqa: N806
    lines = _lines(rng, 1, shape)
    assert 20 < kernels.MIN_ROWS_INNERMOST
    with no_grad():
        fused, _ = deeppoly.relu_back_step(A, None, lines, 3)
    assert not rows_innermost(fused.data) and fused.data.flags.c_contiguous


def test_relu_step_with_per_row_slopes_keeps_the_plain_path(monkeypatch):
    """alpha-CROWN's λ per row: rows-innermost coefficients still give the plain numbers."""
    rng = np.random.default_rng(3)
    shape = (4, 5, 5)
    A = rng.standard_normal((1, 2, 2, 40, *shape))  # noqa: N806
    lines = _lines(rng, 2, shape)
    per_row = Tensor(rng.uniform(0, 1, (1, 1, 2, 40, *shape)))
    lines = ReluLines({"lower": per_row, "upper": per_row}, lines.upper_slope, lines.intercept)
    with no_grad():
        stored, stored_a = deeppoly.relu_back_step(Tensor(_stored_rows_innermost(A)), None,
                                                   lines, 3)
        monkeypatch.setattr(deeppoly, "fused_relu_back_step", lambda *args: None)
        plain, plain_a = deeppoly.relu_back_step(Tensor(A), None, lines, 3)
    np.testing.assert_allclose(stored.data, plain.data, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(stored_a.data, plain_a.data, rtol=1e-12, atol=1e-12)


def test_conv_step_back_substitute_equals_its_two_operations(monkeypatch):
    """ConvStep.back_substitute: (A W, A b) from one pass for rows stored either way, the
    same as backward's transposed convolution and bias_term's sum on the plain path."""
    from nobound.bounds.steps import ConvStep

    rng = np.random.default_rng(4)
    weight = Tensor(rng.standard_normal((6, 3, 3, 3)))
    bias = Tensor(rng.standard_normal((1, 6)))
    step = ConvStep(0, weight, bias, 1, 1, (3, 8, 8))
    A = rng.standard_normal((1, 2, 3, 50, 6, 8, 8))  # noqa: N806
    calls = _counted(monkeypatch, kernels.numba_kernels(kernels.ROWS_INNERMOST_KERNELS),
                     "transposed_conv_fold_into")  # three channels: one product per pixel
    with no_grad():
        plain_product = ops.conv_transpose2d(Tensor(A), weight, (8, 8), 1, 1)
        plain_term = step.bias_term(Tensor(A))
    for coefficients in (Tensor(A), Tensor(_stored_rows_innermost(A))):
        with no_grad():
            product, term = step.back_substitute(coefficients)
        np.testing.assert_allclose(product.data, plain_product.data, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(term.data, plain_term.data, rtol=1e-12, atol=1e-12)
    assert len(calls) == 2, "the fused pass did not run"


@pytest.mark.parametrize("sides, batch_a", [(1, 1), (2, 3)])
def test_concretisation_equals_the_plain_path(sides, batch_a, monkeypatch):
    """Eq. (2) over the input box for rows-innermost rows, against the plain contraction."""
    from nobound.bounds import linf_ball
    from nobound.bounds.rows import DenseRows

    rng = np.random.default_rng(8 + sides)
    A = rng.standard_normal((1, sides, batch_a, 80, 3, 8, 9))  # noqa: N806 - ≥ 16,384 numbers
    A[rng.uniform(size=A.shape) < 0.1] = 0.0
    region = linf_ball(Tensor(rng.uniform(0, 1, (3, 3, 8, 9))), 0.1)  # clipped: r varies
    a = Tensor(rng.standard_normal((1, sides, batch_a, 80)))
    stored = DenseRows(Tensor(_stored_rows_innermost(A)))
    with no_grad():
        assert kernels.fused_concretise(stored, a, region) is not None
        fused = deeppoly.concretise(stored, a, region)
        monkeypatch.setattr(deeppoly, "fused_concretise", lambda *args: None)
        plain = deeppoly.concretise(DenseRows(Tensor(A)), a, region)
    for side in ("lower", "upper"):
        assert fused[side].shape == plain[side].shape == (1, 3, 80)
        np.testing.assert_allclose(fused[side].data, plain[side].data, rtol=1e-12,
                                   atol=1e-12)


def _window_neurons(rng, batch_r, count, grid, ordered):
    """``count`` rows per sample on neurons of a ``grid`` × ``grid`` node (positions
    repeat, so some rows share a window), as :class:`NeuronRows` (1, batch_r, count)."""
    shape = (1, batch_r, count)
    neurons = NeuronRows(rng.integers(0, 3, shape), rng.integers(0, grid, shape),
                         rng.integers(0, grid, shape), np.ones(shape))
    return by_position(neurons)[0] if ordered else neurons


class _Maps:
    """λ (both sides), s, t maps (P, B, C, H, W) as a ReLU relaxation holds them."""

    def __init__(self, rng, members, batch, shape):
        self.lower_slope = Tensor(rng.uniform(0, 1, (members, batch, *shape)))
        self.upper_slope = Tensor(rng.uniform(0, 1, (members, batch, *shape)))
        self.upper_intercept = Tensor(rng.uniform(0, 2, (members, batch, *shape)))
        self.lower_slope.data[..., 0, :, :] = 0.0  # a dead channel


def _counted(monkeypatch, owner, name: str) -> list:
    """Replace ``owner.name`` by a wrapper that records each call; returns the record."""
    record, original = [], getattr(owner, name)
    monkeypatch.setattr(owner, name, lambda *args: record.append(1) or original(*args))
    return record


def _window_case(seed, sides, batch_a, batch_r, ordered, members_a):
    """A window (5 × 5, stride 2, padding 2: on a 5 × 5 grid of positions it reaches from
    −2 to 12, beyond a 9 × 9 map on every side), 60 rows on it, their coefficients
    (P'_a, S, B'_a, 60, 3, 5, 5) with exact zeros (the sign rule's tie) and a (P'_a, S,
    B'_a, 60)."""
    rng = np.random.default_rng(seed)
    neurons = _window_neurons(rng, batch_r, 60, 5, ordered)
    A = rng.standard_normal((members_a, sides, batch_a, 60, 3, 5, 5))  # noqa: N806
    A[rng.uniform(size=A.shape) < 0.1] = 0.0
    a = Tensor(rng.standard_normal((members_a, sides, batch_a, 60)))
    return rng, Window(5, 5, 2, 2), neurons, A, a


# (sides, B'_a, B'_r, rows sorted by position, P'_a, P_m): runs of one row and of several,
# population members on the coefficients or on both
WINDOW_CASES = [(1, 1, 1, True, 1, 1), (2, 3, 3, False, 1, 1), (2, 1, 3, True, 1, 1),
                (1, 3, 1, False, 1, 1), (2, 3, 1, True, 1, 1), (2, 3, 3, True, 2, 2),
                (1, 1, 3, False, 2, 1)]


@pytest.mark.parametrize("sides, batch_a, batch_r, ordered, members_a, members_m",
                         WINDOW_CASES)
def test_window_relu_step_equals_the_plain_path(sides, batch_a, batch_r, ordered, members_a,
                                                members_m, monkeypatch):
    """Window rows stored rows-innermost: λ, s, t read at each row's window (0 where the
    window leaves the map), against the plain path's zero-padded gather."""
    rng, window, neurons, A, a = _window_case(  # noqa: N806
        20 + sides * 7 + batch_a * 3 + batch_r, sides, batch_a, batch_r, ordered, members_a)
    lines = WindowReluLines(_Maps(rng, members_m, 3, (3, 9, 9)), neurons, window)
    calls = _counted(monkeypatch, kernels.numba_kernels(kernels.ROWS_INNERMOST_KERNELS),
                     "window_relu_step_into")
    with no_grad():
        fused, fused_a = deeppoly.relu_back_step(Tensor(_stored_rows_innermost(A)), a, lines,
                                                 3)
        monkeypatch.setattr(deeppoly, "fused_relu_back_step", lambda *args: None)
        plain, plain_a = deeppoly.relu_back_step(Tensor(A), a, lines, 3)
    assert calls and rows_innermost(fused.data)
    assert fused.shape == plain.shape == (members_a, 2, 3, 60, 3, 5, 5)
    np.testing.assert_allclose(fused.data, plain.data, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(fused_a.data, plain_a.data, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("sides, batch_a, batch_r, ordered, members_a, members_m",
                         WINDOW_CASES)
def test_window_concretisation_equals_the_plain_path(sides, batch_a, batch_r, ordered,
                                                     members_a, members_m, monkeypatch):
    """Eq. (2) for window rows stored rows-innermost, the box's centre and radius read at
    each row's window (0 outside the input), against the plain gather and contraction."""
    from nobound.bounds import linf_ball

    rng, window, neurons, A, a = _window_case(  # noqa: N806
        40 + sides * 7 + batch_a * 3 + batch_r, sides, batch_a, batch_r, ordered, members_a)
    centre = rng.uniform(0, 1, (members_m, 3, 3, 9, 9) if members_m > 1 else (3, 3, 9, 9))
    region = linf_ball(Tensor(centre), 0.1)  # clipped: r varies
    stored = WindowRows(Tensor(_stored_rows_innermost(A)), neurons, (window,))
    calls = _counted(monkeypatch, kernels.numba_kernels(kernels.ROWS_INNERMOST_KERNELS),
                     "window_concretise_into")
    with no_grad():
        fused = deeppoly.concretise(stored, a, region)
        monkeypatch.setattr(deeppoly, "fused_concretise", lambda *args: None)
        plain = deeppoly.concretise(WindowRows(Tensor(A), neurons, (window,)), a, region)
    assert calls
    for side in ("lower", "upper"):
        assert fused[side].shape == plain[side].shape == (max(members_a, members_m), 3, 60)
        np.testing.assert_allclose(fused[side].data, plain[side].data, rtol=1e-12,
                                   atol=1e-12)


def test_rows_sorted_by_position_and_back():
    """by_position groups the rows of each sample by (i, j), channels in their order, and
    its inverse permutation restores the given order."""
    rng = np.random.default_rng(5)
    neurons = _window_neurons(rng, 4, 50, 4, ordered=False)
    ordered, inverse = by_position(neurons)
    key = ordered.row * 4 + ordered.column
    assert np.all(np.diff(key, axis=-1) >= 0)
    for field in ("channel", "row", "column", "weight"):
        np.testing.assert_array_equal(
            np.take_along_axis(getattr(ordered, field), inverse, axis=-1),
            getattr(neurons, field))
    position = neurons.row * 4 + neurons.column  # stable: a position's rows keep their order
    for b in range(4):
        for place in np.unique(position[0, b]):
            np.testing.assert_array_equal(ordered.channel[0, b][key[0, b] == place],
                                          neurons.channel[0, b][position[0, b] == place])


@pytest.mark.parametrize("input_shape, convs, affine", [
    ((1, 14, 14), [(16, 5, 2, 2), (16, 4, 2, 1), (32, 4, 2, 1)], False),  # cnn5's, smaller
    ((3, 9, 9), [(8, 3, 1, 1), (12, 3, 2, 1)], False),  # three channels, stride 1 then 2
    # Normalize and BatchNorm: per-channel maps between the convolutions and ReLUs
    ((3, 9, 9), [(8, 3, 1, 1), (12, 3, 2, 1)], True),
])
@pytest.mark.parametrize("patches, eps", [("never", 0.1), ("always", 0.1), ("always", 0.02)])
def test_deeppoly_bounds_equal_and_hold(input_shape, convs, affine, patches, eps,
                                        monkeypatch):
    """DeepPoly with the rows-innermost path equals it without, and without any compiled
    loop; every bound holds at sampled points of the box (``region_samples``). With
    patches, the convolutional neurons' rows are windows (at eps 0.02 only each sample's
    unstable neurons, a different set per sample) and take the window loops."""
    from nobound.bounds import BoundsPlan, compute_bounds, linf_ball, margin_spec
    from nobound.nn.zoo import conv_net
    from nobound.testing.strategies import randomise

    normalize = ([0.4, 0.5, 0.6], [0.3, 0.2, 0.25]) if affine else None
    model = conv_net(input_shape, 5, convs, [40], batchnorm=affine, normalize=normalize,
                     dtype=np.float64)
    randomise(model, 11, 1.0, 0.5)
    rng = np.random.default_rng(6)
    region = linf_ball(Tensor(rng.uniform(0, 1, (3, *input_shape))), eps)
    spec = margin_spec(rng.integers(0, 5, 3), 5)
    compiled = kernels.numba_kernels(kernels.ROWS_INNERMOST_KERNELS)
    calls = {name: _counted(monkeypatch, compiled, name) for name in
             ("transposed_conv_into", "window_relu_step_into", "window_concretise_into")}

    def bounds(**kernel_settings):
        with monkeypatch.context() as patch, no_grad():
            for name, value in kernel_settings.items():
                patch.setattr(kernels, name, value)
            return compute_bounds(model, region, method="deeppoly", spec=spec,
                                  plan=BoundsPlan(patches=patches, sample_groups="never"))

    chosen = _counted(monkeypatch, patches_module, "chosen_neurons")
    innermost = bounds()
    assert calls["transposed_conv_into"], "the rows-innermost products did not run"
    if patches == "always":
        assert calls["window_relu_step_into"] and calls["window_concretise_into"]
    if eps == 0.02:
        assert chosen, "no node took per-sample unstable rows"
    row_major = bounds(MIN_ROWS_INNERMOST=10**9)
    plain = bounds(numba_kernels=lambda module: None)
    for other in (row_major, plain):
        assert_same_bounds(innermost, other, rtol=1e-10, atol=1e-10)
    points = region_samples(region.lower.data, region.upper.data, 64, rng)  # (B, N, *x)
    with no_grad():
        logits = model(Tensor(points.reshape(-1, *input_shape))).data.reshape(
            *points.shape[:2], 5)
    margins = np.einsum("bko,bno->bnk", spec, logits)
    assert np.all(margins >= innermost.lower.data[:, None] - 1e-9)
    assert np.all(margins <= innermost.upper.data[:, None] + 1e-9)
