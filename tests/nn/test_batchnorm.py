"""BatchNorm train/eval semantics and running statistics as in PyTorch; Normalize."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nobound.autodiff import Tensor
from nobound.autodiff.gradcheck import check_grads
from nobound.backend import device_of
from nobound.nn import BatchNorm, Conv2d, Normalize, Sequential, reset_batchnorm_statistics

FIXTURE_SETTINGS = settings(suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                   HealthCheck.too_slow], max_examples=20)


def on_device(module, xp):
    """The module with its parameters and buffers where ``xp`` keeps its arrays."""
    return module if xp is np else module.to(device_of(xp))


def batch(xp, shape, seed=0, scale=3.0, offset=1.5):
    rng = np.random.default_rng(seed)
    return xp.asarray(offset + scale * rng.standard_normal(shape))


def axes_of(spatial: bool) -> tuple[int, ...]:
    return (0, 2, 3) if spatial else (0,)


@FIXTURE_SETTINGS
@given(spatial=st.booleans(), batch_size=st.integers(2, 5), seed=st.integers(0, 100))
def test_train_mode_normalises_each_channel_to_mean_zero_variance_one(xp, spatial, batch_size,
                                                                      seed):
    layer = on_device(BatchNorm(3, spatial=spatial, eps=0.0, dtype=np.float64), xp)
    x = batch(xp, (batch_size, 3, 2, 3) if spatial else (batch_size, 3), seed)
    y = layer(x).numpy()
    assert np.allclose(y.mean(axis=axes_of(spatial)), 0.0, atol=1e-12)
    assert np.allclose(y.var(axis=axes_of(spatial)), 1.0, rtol=1e-10)


def test_train_mode_applies_the_affine_parameters(xp):
    layer = on_device(BatchNorm(2, spatial=True, dtype=np.float64), xp)
    layer.weight.data[:] = xp.asarray([2.0, 0.5])
    layer.bias.data[:] = xp.asarray([-1.0, 3.0])
    x = batch(xp, (4, 2, 3, 3))
    x_host = np.asarray(x.tolist())
    mean = x_host.mean(axis=(0, 2, 3), keepdims=True)
    var = x_host.var(axis=(0, 2, 3), keepdims=True)
    gamma, beta = np.array([2.0, 0.5])[:, None, None], np.array([-1.0, 3.0])[:, None, None]
    expected = gamma * (x_host - mean) / np.sqrt(var + layer.eps) + beta
    assert np.allclose(layer(x).numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("spatial", [True, False])
def test_running_statistics_follow_pytorch(xp, spatial):
    """r ← (1 − m) r + m · stat with the *unbiased* batch variance; counter +1 per batch."""
    layer = on_device(BatchNorm(3, spatial=spatial, momentum=0.1, dtype=np.float64), xp)
    mean, var = np.zeros(3), np.ones(3)
    for step in range(4):
        x = batch(xp, (5, 3, 2, 2) if spatial else (5, 3), seed=step)
        layer(x)
        x_host = np.asarray(x.tolist())
        mean = 0.9 * mean + 0.1 * x_host.mean(axis=axes_of(spatial))
        var = 0.9 * var + 0.1 * x_host.var(axis=axes_of(spatial), ddof=1)
    assert np.allclose(np.asarray(layer.running_mean.tolist()), mean, rtol=1e-12)
    assert np.allclose(np.asarray(layer.running_var.tolist()), var, rtol=1e-12)
    assert int(layer.num_batches_tracked) == 4


def test_momentum_none_gives_the_cumulative_average(xp):
    layer = on_device(BatchNorm(2, spatial=False, momentum=None, dtype=np.float64), xp)
    batches = [batch(xp, (4, 2), seed=s) for s in range(3)]
    for x in batches:
        layer(x)
    hosts = [np.asarray(x.tolist()) for x in batches]
    assert np.allclose(np.asarray(layer.running_mean.tolist()),
                       np.mean([h.mean(axis=0) for h in hosts], axis=0), rtol=1e-12)
    assert np.allclose(np.asarray(layer.running_var.tolist()),
                       np.mean([h.var(axis=0, ddof=1) for h in hosts], axis=0), rtol=1e-12)


def test_eval_mode_uses_and_keeps_the_running_statistics(xp):
    layer = on_device(BatchNorm(2, spatial=True, dtype=np.float64), xp).eval()
    layer.running_mean = xp.asarray([1.0, -2.0])
    layer.running_var = xp.asarray([4.0, 0.25])
    layer.weight.data[:] = xp.asarray([3.0, 1.0])
    layer.bias.data[:] = xp.asarray([0.5, 0.0])
    x = batch(xp, (3, 2, 2, 2))
    x_host = np.asarray(x.tolist())
    scale = np.array([3.0, 1.0]) / np.sqrt(np.array([4.0, 0.25]) + layer.eps)
    expected = (x_host - np.array([1.0, -2.0])[:, None, None]) * scale[:, None, None] + \
        np.array([0.5, 0.0])[:, None, None]
    assert np.allclose(layer(x).numpy(), expected, rtol=1e-12)
    assert np.array_equal(np.asarray(layer.running_mean.tolist()), [1.0, -2.0])
    assert int(layer.num_batches_tracked) == 0


@pytest.mark.parametrize("training", [True, False])
def test_affine_coefficients_reproduce_the_forward_pass(xp, training):
    layer = on_device(BatchNorm(3, spatial=True, dtype=np.float64), xp).train(training)
    layer.running_mean, layer.running_var = xp.asarray([0.1, 0.2, 0.3]), xp.asarray([1.0, 2.0, 3.0])
    layer.weight.data[:] = xp.asarray([1.5, -0.5, 2.0])
    x = Tensor(batch(xp, (4, 3, 2, 2)))
    y = layer(x)
    mean, var = layer.last_statistics if training else layer.running_statistics(x)
    scale, shift = layer.affine_coefficients(layer.own_parameters(), mean, var, x)
    assert np.allclose((x * scale + shift).numpy(), y.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("spatial", [True, False])
def test_train_mode_gradients_pass_the_dot_product_check(xp, spatial):
    layer = on_device(BatchNorm(3, spatial=spatial, dtype=np.float64), xp)
    x = batch(xp, (4, 3, 2, 2) if spatial else (4, 3))
    gamma, beta = xp.asarray([1.5, 0.7, 2.0]), xp.asarray([0.1, -0.3, 0.0])
    check_grads(lambda x, w, b: layer(x, {"weight": w, "bias": b}), [x, gamma, beta])


def test_reset_gives_the_plain_average_over_batches(xp):
    conv = Conv2d(1, 2, 3, padding=1, dtype=np.float64)
    model = Sequential(conv, BatchNorm(2, spatial=True, momentum=0.3, dtype=np.float64))
    model = on_device(model, xp).eval()
    conv.weight.data[...] = xp.asarray(np.random.default_rng(0).standard_normal((2, 1, 3, 3)))
    model.layers[1].running_mean = xp.asarray([9.0, 9.0])
    batches = [batch(xp, (3, 1, 4, 4), seed=s) for s in range(4)]
    reset_batchnorm_statistics(model, batches)
    features = [np.asarray(conv(x).data.tolist()) for x in batches]
    bn = model.layers[1]
    expected_mean = np.mean([f.mean(axis=(0, 2, 3)) for f in features], axis=0)
    expected_var = np.mean([f.var(axis=(0, 2, 3), ddof=1) for f in features], axis=0)
    assert np.allclose(np.asarray(bn.running_mean.tolist()), expected_mean, rtol=1e-12)
    assert np.allclose(np.asarray(bn.running_var.tolist()), expected_var, rtol=1e-12)
    assert bn.momentum == 0.3 and not model.training and not bn.training
    assert int(bn.num_batches_tracked) == 4


def test_batchnorm_rejects_the_wrong_channel_count(xp):
    with pytest.raises(ValueError, match="channels"):
        BatchNorm(3)(Tensor(xp.ones((2, 4, 2, 2))))


def test_normalize_is_per_channel_standardisation(xp):
    layer = Normalize([0.5, 0.25], [0.5, 2.0], dtype=np.float64)
    x = batch(xp, (2, 2, 3, 3))
    expected = (np.asarray(x.tolist()) - np.array([0.5, 0.25])[:, None, None]) / \
        np.array([0.5, 2.0])[:, None, None]
    assert np.allclose(layer(x).numpy(), expected, rtol=1e-14)
    scale, shift = layer.affine_coefficients(Tensor(x))
    assert np.allclose((Tensor(x) * scale + shift).numpy(), expected, rtol=1e-14)
    assert layer.parameters() == [] and set(layer.state_dict()) == {"mean", "std"}


def test_normalize_rejects_non_positive_std():
    with pytest.raises(ValueError, match="positive"):
        Normalize([0.0], [0.0])
