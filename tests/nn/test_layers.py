"""Linear, Conv2d, ReLU and Flatten on plain inputs; module bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest

from nobound.autodiff import Tensor, ops
from nobound.autodiff.gradcheck import check_grads
from nobound.nn import Conv2d, Flatten, Linear, ReLU, Sequential


def random(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def test_linear_is_x_w_transpose_plus_b(xp):
    layer = Linear(4, 3, dtype=np.float64)
    assert layer.weight.shape == (3, 4) and layer.bias.shape == (3,)
    w, b, x = random((3, 4), 1), random(3, 2), random((5, 4), 3)
    out = layer(xp.asarray(x), {"weight": Tensor(xp.asarray(w)), "bias": Tensor(xp.asarray(b))})
    assert np.allclose(out.numpy(), x @ w.T + b, rtol=1e-13)


def test_linear_rejects_the_wrong_feature_count(xp):
    with pytest.raises(ValueError, match="4 input features"):
        Linear(4, 3)(xp.ones((2, 5), dtype=xp.float32))


def test_layers_without_bias_have_only_a_weight(xp):
    for layer in (Linear(4, 3, bias=False), Conv2d(2, 3, 3, bias=False)):
        assert [name for name, _ in layer.named_parameters()] == ["weight"]
    x = xp.asarray(random((2, 4)))
    w = random((3, 4), 1)
    out = Linear(4, 3, bias=False, dtype=np.float64)(x, {"weight": Tensor(xp.asarray(w))})
    assert np.allclose(out.numpy(), np.asarray(x.tolist()) @ w.T, rtol=1e-13)


def test_conv2d_layer_adds_a_per_channel_bias(xp):
    layer = Conv2d(2, 3, 3, stride=2, padding=1, dtype=np.float64)
    assert layer.weight.shape == (3, 2, 3, 3)
    w, b, x = random((3, 2, 3, 3), 1), random(3, 2), xp.asarray(random((2, 2, 7, 6), 3))
    out = layer(x, {"weight": Tensor(xp.asarray(w)), "bias": Tensor(xp.asarray(b))})
    plain = ops.conv2d(Tensor(x), Tensor(xp.asarray(w)), 2, 1).numpy()
    assert np.allclose(out.numpy(), plain + b[:, None, None], rtol=1e-13)
    assert out.shape[1:] == layer.output_shape((2, 7, 6))


def test_layer_gradients_pass_the_dot_product_check(xp):
    model = Sequential(Conv2d(2, 3, 3, padding=1, dtype=np.float64), ReLU(), Flatten(),
                       Linear(3 * 4 * 4, 2, dtype=np.float64))
    names = [name for name, _ in model.named_parameters()]
    values = [xp.asarray(random(p.shape, i)) for i, (_, p) in
              enumerate(model.named_parameters())]
    x = xp.asarray(random((2, 2, 4, 4), 9))
    check_grads(lambda x, *params: model(x, dict(zip(names, params, strict=True))),
                [x, *values])


def test_flatten_keeps_batch_and_population_axes(xp):
    flatten = Flatten()
    assert flatten(xp.ones((2, 3, 4, 5))).shape == (2, 60)
    assert flatten(xp.ones((7, 2, 3, 4, 5))).shape == (7, 2, 60)
    with pytest.raises(ValueError, match="batch axis"):
        flatten(xp.ones((3, 4, 5)))


def test_relu_layer(xp):
    out = ReLU()(xp.asarray([-1.0, 0.0, 2.0]))
    assert out.numpy().tolist() == [0.0, 0.0, 2.0]


def test_sequential_indexing_and_parameter_count():
    model = Sequential(Linear(4, 3), ReLU(), Linear(3, 2))
    assert len(model) == 3 and isinstance(model[1], ReLU) and list(model)[2] is model[2]
    assert model.num_parameters() == 4 * 3 + 3 + 3 * 2 + 2
    assert model.parameters()[0] is model[0].weight


def test_train_and_eval_propagate_to_every_layer():
    model = Sequential(Linear(4, 3), ReLU())
    model.eval()
    assert not any(layer.training for layer in model)
    model.train()
    assert all(layer.training for layer in model)
