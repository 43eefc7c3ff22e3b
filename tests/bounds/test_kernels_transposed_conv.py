"""The compiled transposed convolution of back-substitution rows equals the engine's
(nobound.bounds.kernels.fused_transposed_conv against ops.conv_transpose2d).

Strides 1–3, paddings 0–2, non-square kernels, input sizes the forward convolution does
not cover exactly (rows or columns it never reads), several leading axes and a map count
that is not a multiple of the block size, in float64: the same sums in another order.
"""

from __future__ import annotations

import numpy as np
import pytest

import nobound.bounds.kernels as kernels
from nobound.autodiff import ops
from nobound.autodiff.tensor import Tensor, no_grad
from nobound.bounds.kernels import fused_transposed_conv
from nobound.testing.bound_results import assert_same_bounds

pytest.importorskip("numba")

CASES = [  # (O, C, kh, kw, stride, padding, H, W)
    (16, 16, 4, 4, 2, 1, 14, 14),   # cnn5's second layer
    (32, 16, 4, 4, 2, 1, 7, 7),     # cnn5's third: 7 = 2·3 + 1, the last row unread
    (5, 8, 3, 3, 1, 1, 9, 11),      # stride 1, odd, non-square map
    (6, 4, 5, 4, 3, 2, 13, 10),     # stride 3, non-square kernel
    (7, 16, 3, 3, 2, 0, 12, 9),     # no padding, an unread last column
    # patch rows shorter than MIN_PATCH_ROW: folded by kernel entry, by column phase
    (16, 1, 5, 5, 2, 2, 28, 28),    # cnn5's first layer
    (16, 3, 3, 3, 1, 1, 9, 11),     # three channels, stride 1
    (17, 2, 4, 3, 3, 0, 13, 10),    # stride 3, non-square kernel, unread rows and columns
    (20, 1, 3, 5, 2, 3, 11, 12),    # padding beyond half the kernel
]


def _engine(y, weight, in_shape, stride, padding):
    return ops.conv_transpose2d(y, weight, in_shape[1:], stride, padding)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("block_bytes", [1 << 20, 1 << 12])
def test_equals_the_engine(case, block_bytes, monkeypatch):
    out_channels, channels, kernel_h, kernel_w, stride, padding, height, width = case
    out_h = ops.output_size(height, kernel_h, stride, padding)
    out_w = ops.output_size(width, kernel_w, stride, padding)
    rng = np.random.default_rng(sum(case))
    # (P', S, B, R, O, Ho, Wo): 2 · 3 · 41 = 246 maps, 41 prime (blocks never divide it)
    y = Tensor(rng.standard_normal((1, 2, 3, 41, out_channels, out_h, out_w)))
    weight = Tensor(rng.standard_normal((out_channels, channels, kernel_h, kernel_w)))
    monkeypatch.setattr(kernels, "PRODUCT_BLOCK_BYTES", block_bytes)
    with no_grad():
        fused = fused_transposed_conv(y, weight, (channels, height, width), stride, padding)
        plain = _engine(y, weight, (channels, height, width), stride, padding)
    assert fused is not None
    assert fused.shape == plain.shape == (1, 2, 3, 41, channels, height, width)
    np.testing.assert_allclose(fused.data, plain.data, rtol=1e-12, atol=1e-12)


def test_float32_to_round_off():
    rng = np.random.default_rng(5)
    y = Tensor(rng.standard_normal((300, 16, 7, 7)).astype(np.float32))
    weight = Tensor(rng.standard_normal((16, 16, 4, 4)).astype(np.float32))
    with no_grad():
        fused = fused_transposed_conv(y, weight, (16, 14, 14), 2, 1)
        plain = _engine(y, weight, (16, 14, 14), 2, 1)
    assert fused.data.dtype == np.float32
    np.testing.assert_allclose(fused.data, plain.data, rtol=1e-4, atol=1e-4)


def test_where_it_does_not_apply(monkeypatch):
    """A population weight, short patch rows with few output channels, recorded gradients,
    small arrays and a run without Numba keep the engine's path."""
    rng = np.random.default_rng(0)
    y = Tensor(rng.standard_normal((200, 16, 7, 7)))
    weight = Tensor(rng.standard_normal((16, 16, 4, 4)))
    shape = (16, 14, 14)
    with no_grad():
        assert fused_transposed_conv(y, weight, shape, 2, 1) is not None
        assert fused_transposed_conv(Tensor(y.data[None]), Tensor(weight.data[None]), shape,
                                     2, 1) is None
        assert fused_transposed_conv(Tensor(y.data[:2]), weight, shape, 2, 1) is None
        first_layer = Tensor(rng.standard_normal((8, 1, 5, 5)))  # O = 8 < 16
        assert fused_transposed_conv(Tensor(rng.standard_normal((200, 8, 14, 14))),
                                     first_layer, (1, 28, 28), 2, 2) is None
    assert fused_transposed_conv(Tensor(y.data, requires_grad=True), weight, shape, 2,
                                 1) is None
    monkeypatch.setattr(kernels, "numba_kernels", lambda module: None)
    with no_grad():
        assert fused_transposed_conv(y, weight, shape, 2, 1) is None


@pytest.mark.parametrize("convs, size, patches", [
    ([(16, 4, 2, 1), (16, 4, 2, 1)], 14, "never"),  # dense rows through whole maps
    # windows: a third-layer row's 4 × 4 window through the second conv (10 × 10), where
    # the compiled path replaces the dense operator
    ([(16, 4, 2, 1), (16, 4, 2, 1), (16, 4, 2, 1)], 16, "always"),
])
def test_whole_network_bounds_equal_the_plain_path(convs, size, patches, monkeypatch):
    """DeepPoly on networks whose rows cross 16-channel convolutions: the bounds and every
    intermediate bound with the compiled transposed convolution equal those without it."""
    from nobound.bounds import BoundsPlan, compute_bounds, linf_ball, margin_spec
    from nobound.nn.zoo import conv_net
    from nobound.testing.strategies import randomise

    model = conv_net((1, size, size), 5, convs, [12], dtype=np.float64)
    randomise(model, 7, 1.0, 0.5)
    rng = np.random.default_rng(2)
    region = linf_ball(Tensor(rng.uniform(0, 1, (4, 1, size, size))), 0.2)
    spec = margin_spec(rng.integers(0, 5, 4), 5)
    calls = []
    fused = kernels.fused_transposed_conv

    def counted(coefficients, *args, **kwargs):
        result = fused(coefficients, *args, **kwargs)
        calls.append((result is not None, coefficients.ndim))
        return result

    results = {}
    for name in ("compiled", "plain"):
        with monkeypatch.context() as patch:
            patch.setattr(kernels, "fused_transposed_conv",
                          counted if name == "compiled" else lambda *args, **kwargs: None)
            with no_grad():
                results[name] = compute_bounds(model, region, method="deeppoly", spec=spec,
                                               plan=BoundsPlan(patches=patches))
    assert (True, 7) in calls  # the compiled path did run, on rows (P', S, B, R, C, H, W)
    assert_same_bounds(results["compiled"], results["plain"], rtol=1e-10, atol=1e-10)
