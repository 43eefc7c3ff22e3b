"""conv2d with its bias added in the output's layout pass, and the compiled passes.

* conv2d(x, W, b) equals conv2d(x, W) + b (bias broadcast per channel, or per member and
  channel), in value and in all three gradients, in every population layout;
* the compiled passes (Numba) give the same arrays as the NumPy expressions they replace:
  the transposing copy with the bias and ReLU (NaN and signed zeros included);
* a bias of the wrong shape is refused.
(The dot-product gradient check of conv2d with a bias is in test_primitive_gradients.)
"""

from __future__ import annotations

import numpy as np
import pytest

from nobound.autodiff import Tensor, ops
from nobound.autodiff.ops import _compiled, conv
from nobound.backend import to_numpy

LAYOUTS = {  # name: (input shape, weight shape)
    "plain": ((3, 2, 9, 8), (4, 2, 3, 3)),
    "shared input": ((3, 2, 9, 8), (5, 4, 2, 3, 3)),
    "own inputs": ((5, 3, 2, 9, 8), (5, 4, 2, 3, 3)),
}


def needs_numba() -> None:
    if _compiled.numba_kernels("_passes_numba") is None:
        pytest.skip("Numba is not installed")


def bias_shapes(w_shape):
    return [(w_shape[-4],)] + ([w_shape[:1] + w_shape[-4:-3]] if len(w_shape) == 5 else [])


def broadcast_bias(bias: Tensor, out_ndim: int) -> Tensor:
    """b (O,) → (O, 1, 1); b (P, O) → (P, 1…, O, 1, 1) against an output of out_ndim axes."""
    if bias.ndim == 1:
        return bias.reshape((-1, 1, 1))
    return bias.reshape((bias.shape[0],) + (1,) * (out_ndim - 4) + (bias.shape[1], 1, 1))


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("bias_kind", [0, 1])
def test_fused_bias_equals_conv_plus_bias_with_gradients(layout, bias_kind, xp):
    x_shape, w_shape = LAYOUTS[layout]
    shapes = bias_shapes(w_shape)
    if bias_kind >= len(shapes):
        pytest.skip("a per-member bias needs a population weight")
    rng = np.random.default_rng(bias_kind)
    arrays = [xp.asarray(rng.standard_normal(s)) for s in (x_shape, w_shape, shapes[bias_kind])]
    upstream = None

    def run(fused: bool):
        nonlocal upstream
        x, w, b = (Tensor(a, requires_grad=True) for a in arrays)
        if fused:
            out = ops.conv2d(x, w, 2, 1, b)
        else:
            plain = ops.conv2d(x, w, 2, 1)
            out = plain + broadcast_bias(b, plain.ndim)
        if upstream is None:
            upstream = xp.asarray(rng.standard_normal(out.shape))
        out.backward(upstream)
        return out.data, x.grad, w.grad, b.grad

    for fused, separate in zip(run(True), run(False), strict=True):
        assert fused.shape == separate.shape
        np.testing.assert_allclose(to_numpy(fused), to_numpy(separate), rtol=1e-12,
                                   atol=1e-12)


def test_fused_bias_is_exactly_the_separate_addition_in_float32():
    """One float addition per element either way: the outputs agree bit for bit, also on
    arrays large enough for the compiled pass."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((6, 8, 2, 14, 14)).astype(np.float32)
    w = rng.standard_normal((6, 8, 2, 4, 4)).astype(np.float32)
    b = rng.standard_normal((6, 8)).astype(np.float32)
    fused = ops.conv2d(x, w, 2, 1, b).data
    separate = (ops.conv2d(x, w, 2, 1) + b.reshape(6, 1, 8, 1, 1)).data
    assert fused.size >= _compiled.COMPILED_PASS_MIN_SIZE
    np.testing.assert_array_equal(fused, separate)


@pytest.mark.parametrize("shared", [True, False])
def test_compiled_layout_pass_equals_numpy(shared, monkeypatch):
    needs_numba()
    rng = np.random.default_rng(3)
    products = rng.standard_normal((4, 3, 5, 2000)).astype(np.float32)
    bias = rng.standard_normal((1 if shared else 4, 3)).astype(np.float32)
    compiled = conv._channels_after_images(products, bias)
    monkeypatch.setattr(conv, "suits_compiled_pass", lambda data: False)
    numpy_path = conv._channels_after_images(products, bias)
    assert compiled.flags.c_contiguous and compiled.shape == (4, 5, 3, 2000)
    np.testing.assert_array_equal(compiled, numpy_path)
    np.testing.assert_array_equal(numpy_path,
                                  products.transpose(0, 2, 1, 3) + bias[:, None, :, None])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_relu_equals_numpy_maximum(dtype):
    needs_numba()
    values = np.random.default_rng(4).standard_normal(3 * _compiled.COMPILED_PASS_MIN_SIZE)
    values = values.astype(dtype)
    values[:4] = [np.nan, -0.0, 0.0, -np.inf]
    out = ops.relu(Tensor(values)).data
    expected = np.maximum(values, 0)
    np.testing.assert_array_equal(out, expected)  # NaN == NaN here, −0 == +0
    assert np.isnan(out[0]) and not np.signbit(out[1]) and out[3] == 0
    assert (out >= 0).sum() == values.size - 1  # everything but the NaN


def test_relu_gradient_is_the_same_on_both_paths():
    values = np.random.default_rng(5).standard_normal(2 * _compiled.COMPILED_PASS_MIN_SIZE)
    x = Tensor(values, requires_grad=True)
    ops.relu(x).backward(np.ones_like(values))
    np.testing.assert_array_equal(x.grad, (values > 0).astype(values.dtype))


def test_numba_switch_off_gives_no_kernels(monkeypatch):
    monkeypatch.setenv("NOBOUND_NUMBA", "0")
    monkeypatch.setattr(_compiled, "_loaded", {})
    assert _compiled.numba_kernels("_passes_numba") is None


@pytest.mark.parametrize("bias_shape", [(3,), (2, 4), (5, 4, 1)])
def test_a_bias_of_the_wrong_shape_is_refused(bias_shape):
    x, w = np.zeros((2, 2, 6, 6)), np.zeros((5, 4, 2, 3, 3))
    with pytest.raises(ValueError, match="conv bias"):
        ops.conv2d(x, w, 1, 0, np.zeros(bias_shape))
