"""The model zoo: Table 9 layouts, parameter counts, and output shapes for many inputs."""

from __future__ import annotations

import numpy as np
import pytest

from nobound.autodiff import Tensor
from nobound.backend import device_of
from nobound.nn import (
    ARCHITECTURES,
    BatchNorm,
    Conv2d,
    Flatten,
    Linear,
    Normalize,
    ReLU,
    build_model,
)


@pytest.mark.parametrize("name, input_shape, count", [
    ("cnn3", (1, 28, 28), 5_170),
    ("cnn5", (1, 28, 28), 165_850),
    ("cnn5_l", (3, 32, 32), 1_255_882),
])
def test_parameter_counts_of_the_paper(name, input_shape, count):
    assert build_model(name, input_shape, 10).num_parameters() == count


def test_cnn3_follows_table_9():
    layers = build_model("cnn3", (1, 28, 28), 10).layers
    kinds = [type(layer) for layer in layers]
    assert kinds == [Conv2d, ReLU, Conv2d, ReLU, Flatten, Linear]
    first, second, last = layers[0], layers[2], layers[5]
    assert (first.out_channels, first.kernel_size, first.stride, first.padding) == (8, 5, 2, 2)
    assert (second.out_channels, second.kernel_size, second.stride, second.padding) == \
        (8, 4, 2, 1)
    assert (last.in_features, last.out_features) == (8 * 7 * 7, 10)


def test_cnn7_has_batchnorm_after_every_hidden_layer_and_cnn7_nobn_has_none():
    with_bn = build_model("cnn7", (3, 32, 32), 10).layers
    norms = [i for i, layer in enumerate(with_bn) if isinstance(layer, BatchNorm)]
    hidden = [i for i, layer in enumerate(with_bn[:-1]) if isinstance(layer, Conv2d | Linear)]
    assert norms == [i + 1 for i in hidden] and len(hidden) == 6
    assert not any(isinstance(m, BatchNorm) for m in build_model("cnn7_nobn").layers)


def feature_shapes(model, input_shape):
    """The (C, H, W) or (features,) entering each layer, from the layers' own geometry."""
    shape, shapes = tuple(input_shape), []
    for layer in model.layers:
        shapes.append(shape)
        if isinstance(layer, Conv2d):
            shape = layer.output_shape(shape)
        elif isinstance(layer, Flatten):
            shape = (int(np.prod(shape)),)
        elif isinstance(layer, Linear):
            assert shape == (layer.in_features,)
            shape = (layer.out_features,)
    return shapes + [shape]


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
@pytest.mark.parametrize("input_shape", [(1, 28, 28), (3, 32, 32), (3, 64, 64), (1, 15, 17)])
def test_every_architecture_builds_and_gives_batch_by_classes(xp, name, input_shape):
    classes = 7
    model = build_model(name, input_shape, classes).eval()
    assert feature_shapes(model, input_shape)[-1] == (classes,)
    if model.num_parameters() > 20_000_000:
        return  # cnn7 on 64×64 (67M weights in one layer): the geometry check above suffices
    if xp is not np:
        model.to(device_of(xp))
    x = xp.asarray(np.random.default_rng(0).random((2, *input_shape)), dtype=xp.float32)
    out = model(Tensor(x))
    assert out.shape == (2, classes) and out.dtype == xp.float32


def test_normalize_option_prepends_the_input_normalisation():
    model = build_model("cnn3", (3, 32, 32), 10, normalize=([0.5] * 3, [0.25] * 3))
    assert isinstance(model.layers[0], Normalize)
    assert model.num_parameters() == build_model("cnn3", (3, 32, 32), 10).num_parameters()


def test_build_model_rejects_unknown_names_and_shapes():
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("resnet", (1, 28, 28), 10)
    with pytest.raises(ValueError, match="input shape"):
        build_model("cnn3", (28, 28), 10)
    with pytest.raises(ValueError, match="input shape"):
        build_model("cnn3", (1, 0, 28), 10)
