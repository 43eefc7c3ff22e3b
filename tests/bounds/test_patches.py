"""Patches mode (receptive-field windows) gives DeepPoly's dense back-substitution bounds.

Every DeepPoly bound — each ReLU input and each output — is computed twice, with the rows
of convolutional neurons back-substituted on windows (``BoundsPlan(patches="always")``) and
as dense maps (``"never"``); both must agree to round-off (1e-10 relative, float64), with a
population axis too, and so must the gradients of the bounds w.r.t. the weights and the
input. The networks cover kernels 1–5, strides 1–3, paddings 0–2, 1–4 channels, optional
Normalize and BatchNorm (eval mode), so windows hang over every border of the image.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from nobound.autodiff.tensor import Tensor, no_grad
from nobound.backend import device_of, get_array_module, to_numpy
from nobound.bounds import BoundsPlan, Box, compute_bounds, linf_ball, margin_spec, patches
from nobound.bounds.deeppoly import ReluRelaxation, bound_rows, deeppoly_relaxations
from nobound.bounds.network import Network
from nobound.bounds.rows import DenseRows, RowSet
from nobound.nn.zoo import conv_net
from nobound.testing.bound_results import assert_same_bounds as same_bounds
from nobound.testing.strategies import randomise

RELATIVE = 1e-10


@st.composite
def patch_networks(draw: st.DrawFn):
    """(Conv2d → [BatchNorm] → ReLU) × 1–3 → Flatten → [Linear → ReLU] → Linear,
    with the input shape (C, H, W) it was drawn for."""
    channels = draw(st.integers(1, 4))
    height, width = draw(st.integers(4, 12)), draw(st.integers(4, 12))
    size, convs = min(height, width), []
    for _ in range(draw(st.sampled_from([1, 2, 2, 3, 3]))):
        padding = draw(st.integers(0, 2))
        kernel = draw(st.integers(1, min(5, size + 2 * padding)))
        stride = draw(st.integers(1, 3))
        convs.append((draw(st.integers(1, 4)), kernel, stride, padding))
        size = (size + 2 * padding - kernel) // stride + 1
    normalize = None
    if draw(st.booleans()):
        normalize = (draw(st.lists(st.floats(0.0, 1.0), min_size=channels,
                                   max_size=channels)),
                     draw(st.lists(st.floats(0.25, 1.0), min_size=channels,
                                   max_size=channels)))
    input_shape = (channels, height, width)
    model = conv_net(input_shape, 3, convs, draw(st.sampled_from([[], [3]])),
                     batchnorm=draw(st.booleans()), normalize=normalize, dtype=np.float64)
    randomise(model, draw(st.integers(0, 2**32 - 1)), draw(st.sampled_from([1.0, 2.0])),
              draw(st.sampled_from([0.0, 0.5])))
    return model, input_shape


def bounds_in_mode(mode: str, model, region, spec=None, params=None):
    """(compute_bounds with patches ``mode``, how many rows were bounded on windows);
    restores the module's window-row constructor afterwards."""
    original = patches.window_rows
    window_rows = []

    def counting(network, end, box, plan, neurons, *args):
        window_rows.append(neurons.count)
        return original(network, end, box, plan, neurons, *args)

    patches.window_rows = counting
    try:
        result = compute_bounds(model, region, method="deeppoly", spec=spec, params=params,
                                plan=BoundsPlan(patches=mode))
    finally:
        patches.window_rows = original
    return result, sum(window_rows)


def assert_close(actual, expected, what: str) -> None:
    expected = np.asarray(expected)
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=RELATIVE, atol=RELATIVE * scale,
                               err_msg=what)


def assert_same_bounds(windowed, dense) -> None:
    same_bounds(windowed, dense, rtol=RELATIVE, atol=RELATIVE, scale_atol=True)


def random_region(input_shape, batch: int, eps: float, seed: int):
    rng = np.random.default_rng(seed)
    centre = Tensor(rng.uniform(0.0, 1.0, (batch, *input_shape)))
    return linf_ball(centre, eps, low=0.0, high=1.0), rng


def uses_windows(model, input_shape) -> bool:
    """Whether some ReLU input of the model is a node patches mode can bound."""
    network = Network.from_model(model, input_shape)
    always = BoundsPlan(patches="always")
    return any(patches.applies(network, index - 1, {}, always) for index in network.relu_indices)


@settings(max_examples=80)
@given(network=patch_networks(), eps=st.sampled_from([0.05, 0.2, 0.5, 1.0]),
       seed=st.integers(0, 2**16), with_spec=st.booleans())
def test_window_bounds_equal_dense_bounds(network, eps, seed, with_spec):
    model, input_shape = network
    region, rng = random_region(input_shape, 2, eps, seed)
    spec = margin_spec(rng.integers(0, 3, 2), 3) if with_spec else None
    dense, dense_window_rows = bounds_in_mode("never", model, region, spec)
    windowed, window_rows = bounds_in_mode("always", model, region, spec)
    assert dense_window_rows == 0
    event("rows bounded on windows" if window_rows else "no conv rows to bound")
    assert_same_bounds(windowed, dense)


@settings(max_examples=80)
@given(network=patch_networks(), eps=st.sampled_from([0.05, 0.2, 0.5, 1.0]),
       seed=st.integers(0, 2**16), with_spec=st.booleans())
def test_window_bounds_equal_dense_bounds_without_gradients(network, eps, seed, with_spec):
    """The same without gradients recorded (bounds for a certifier, not for training): rows
    numerous enough are stored rows-innermost, on windows and on whole maps, and take those
    loops (``tests/bounds/test_rows_innermost.py``)."""
    model, input_shape = network
    region, rng = random_region(input_shape, 2, eps, seed)
    spec = margin_spec(rng.integers(0, 3, 2), 3) if with_spec else None
    with no_grad():
        dense, _ = bounds_in_mode("never", model, region, spec)
        windowed, window_rows = bounds_in_mode("always", model, region, spec)
    event("rows bounded on windows" if window_rows else "no conv rows to bound")
    assert_same_bounds(windowed, dense)


def population_params(model, members: int, rng: np.random.Generator) -> dict:
    """P perturbed copies of every parameter, stacked on a leading population axis."""
    return {name: Tensor(np.stack([parameter.data * rng.uniform(0.5, 1.5, parameter.shape)
                                   for _ in range(members)]))
            for name, parameter in model.named_parameters()}


@settings(max_examples=30)
@given(network=patch_networks(), eps=st.sampled_from([0.1, 0.5]), seed=st.integers(0, 2**16),
       members=st.integers(1, 3))
def test_window_bounds_equal_dense_bounds_for_every_population_member(network, eps, seed,
                                                                     members):
    model, input_shape = network
    region, rng = random_region(input_shape, 2, eps, seed)
    params = population_params(model, members, rng)
    dense, _ = bounds_in_mode("never", model, region, params=params)
    windowed, window_rows = bounds_in_mode("always", model, region, params=params)
    event("rows bounded on windows" if window_rows else "no conv rows to bound")
    assert windowed.lower.shape[0] == members
    assert_same_bounds(windowed, dense)


def gradients_in_mode(mode, model, input_shape, centre, eps, weights):
    """(∂/∂(parameters, input) of Σ w · (every bound) in patches ``mode``, rows bounded on
    windows)."""
    params = {name: Tensor(parameter.data, requires_grad=True)
              for name, parameter in model.named_parameters()}
    x = Tensor(centre, requires_grad=True)
    result, window_rows = bounds_in_mode(mode, model, linf_ball(x, eps, low=0.0, high=1.0),
                                         params=params)
    pieces = [result.lower, result.upper]
    for lower, upper in result.intermediate.values():
        pieces += [lower, upper]
    total = None
    for piece, weight in zip(pieces, weights(len(pieces)), strict=True):
        term = (piece * Tensor(weight(piece.shape))).sum()
        total = term if total is None else total + term
    total.backward()
    return {name: p.grad for name, p in params.items()} | {"input": x.grad}, window_rows


@settings(max_examples=30)
@given(network=patch_networks(), eps=st.sampled_from([0.1, 0.5]), seed=st.integers(0, 2**16))
def test_window_gradients_equal_dense_gradients(network, eps, seed):
    model, input_shape = network
    centre = np.random.default_rng(seed).uniform(0.1, 0.9, (2, *input_shape))

    def weights(count):
        rng = np.random.default_rng(seed + 1)
        return [lambda shape, r=rng: r.normal(size=shape) for _ in range(count)]

    dense, _ = gradients_in_mode("never", model, input_shape, centre, eps, weights)
    windowed, window_rows = gradients_in_mode("always", model, input_shape, centre, eps,
                                              weights)
    event("rows bounded on windows" if window_rows else "no conv rows to bound")
    assert set(windowed) == set(dense)
    for name, gradient in dense.items():
        if gradient is None:
            assert windowed[name] is None, name
            continue
        assert_close(windowed[name], gradient, f"gradient of {name}")


def cnn_with_unstable_neurons(seed: int = 3):
    model = conv_net((2, 9, 9), 4, [(3, 3, 1, 1), (4, 4, 2, 2), (2, 3, 2, 1)], [],
                     batchnorm=True, normalize=([0.4, 0.5], [0.5, 0.25]), dtype=np.float64)
    randomise(model, seed, 1.0, 0.5)
    return model, (2, 9, 9)


def test_chosen_rows_per_sample_and_member_with_padding_rows_equal_dense_rows():
    """The unstable-row path: each (member, sample) bounds its own neurons, padded with
    zero-weight rows — windows and dense one-hot rows give the same numbers."""
    model, input_shape = cnn_with_unstable_neurons()
    rng = np.random.default_rng(0)
    params = population_params(model, 2, rng)
    region, _ = random_region(input_shape, 3, 0.1, 1)
    network = Network.from_model(model, input_shape, params)
    relaxations, _ = deeppoly_relaxations(network, region, None, None, BoundsPlan())
    end = network.relu_indices[-1] - 1
    shape = network.steps[end].output_shape
    count = int(np.prod(shape))
    rows = 7
    order = np.stack([np.stack([rng.permutation(count)[:rows] for _ in range(3)])
                      for _ in range(2)])  # (P, B, R): distinct neurons per sample
    keep = rng.uniform(size=order.shape) < 0.7

    def make_rows(start, stop):
        one_hot = np.zeros(order[..., start:stop].shape + (count,))
        np.put_along_axis(one_hot, order[..., start:stop, None],
                          keep[..., start:stop, None].astype(float), axis=-1)
        return DenseRows(Tensor(one_hot.reshape(2, 1, 3, stop - start, *shape)))

    sides = ("lower", "upper")
    dense, _ = bound_rows(network, end, region, RowSet(rows, rows, make_rows), relaxations)
    neurons = patches.chosen_neurons(order, keep, shape, region.lower)
    # a tiny budget forces one row per chunk: chunking must not change a number either
    tiny = BoundsPlan(memory_budget_bytes=1)
    window_set = patches.window_rows(network, end, region, tiny, neurons, lambda bounds: bounds)
    assert window_set.chunk == 1
    windowed, _ = bound_rows(network, end, region, window_set, relaxations)
    for side in sides:
        assert windowed[side].shape == (2, 3, rows)
        assert_close(windowed[side].data, dense[side].data, side)
    assert np.all(windowed["lower"].data[~keep] == 0)


def test_an_off_by_one_window_origin_is_caught(monkeypatch):
    """The comparison has teeth: a window shifted by one position changes the bounds."""
    model, input_shape = cnn_with_unstable_neurons()
    region, _ = random_region(input_shape, 2, 0.1, 2)
    dense, _ = bounds_in_mode("never", model, region)
    honest = patches.Window.through_conv

    def shifted(self, step):
        window = honest(self, step)
        return patches.Window(window.height, window.width, window.stride, window.padding + 1)

    monkeypatch.setattr(patches.Window, "through_conv", shifted)
    windowed, window_rows = bounds_in_mode("always", model, region)
    assert window_rows > 0
    with pytest.raises(AssertionError):
        assert_same_bounds(windowed, dense)


def test_patches_apply_only_to_conv_chains_with_shared_slopes():
    model, input_shape = cnn_with_unstable_neurons()
    network = Network.from_model(model, input_shape)
    conv_node = network.relu_indices[1] - 1
    dense_node = network.relu_indices[-1] + 2  # after Flatten and the last Linear
    always = BoundsPlan(patches="always")
    assert patches.applies(network, conv_node, {}, always)
    assert not patches.applies(network, len(network.steps) - 1, {}, always)
    assert not patches.applies(network, min(dense_node, len(network.steps) - 1), {}, always)
    ones = Tensor(np.ones((1, 1, *network.steps[0].output_shape)))
    per_row = ReluRelaxation(ones, ones, ones, np.ones(ones.shape, bool),
                             {"lower": Tensor(np.ones((1, 1, 2, *ones.shape[2:])))})
    assert not patches.applies(network, conv_node, {network.relu_indices[0]: per_row}, always)
    assert not patches.applies(network, conv_node, {}, BoundsPlan(patches="never"))
    with pytest.raises(ValueError, match="patches"):
        BoundsPlan(patches="sometimes")


def test_windows_grow_as_the_receptive_field():
    """K' = (K − 1) s + k, S' = S s, Pad' = Pad s + p through each convolution."""
    model = conv_net((1, 28, 28), 10, [(8, 5, 2, 2), (8, 4, 2, 1)], [], dtype=np.float64)
    network = Network.from_model(model, (1, 28, 28))
    windows = patches.node_windows(network, 2)  # the second conv's output
    assert windows[-1] == patches.Window(1, 1, 1, 0)
    assert windows[2] == patches.Window(4, 4, 2, 1)  # ReLU 1 output: 8 × 4 × 4
    assert windows[0] == patches.Window(11, 11, 4, 4)  # the input: 11 × 11


def test_auto_mode_picks_windows_only_where_they_are_smaller():
    auto = BoundsPlan(patches="auto")
    small = conv_net((1, 28, 28), 10, [(8, 5, 2, 2), (8, 4, 2, 1)], [], dtype=np.float64)
    assert uses_windows(small, (1, 28, 28))
    assert patches.applies(Network.from_model(small, (1, 28, 28)), 2, {}, auto)
    # stride-1 5×5 convs on a 4×4 image: every window is larger than the image
    wide = conv_net((1, 4, 4), 2, [(1, 5, 1, 2), (1, 5, 1, 2)], [], dtype=np.float64)
    assert not patches.applies(Network.from_model(wide, (1, 4, 4)), 2, {}, auto)


def test_windows_work_on_the_gpu_backend(xp):
    model, input_shape = cnn_with_unstable_neurons()
    region, _ = random_region(input_shape, 2, 0.1, 4)
    dense, _ = bounds_in_mode("never", model, region)
    if xp is not np:
        model.to(device_of(xp))
    device_region = Box(Tensor(xp.asarray(region.lower.data)),
                        Tensor(xp.asarray(region.upper.data)))
    windowed, window_rows = bounds_in_mode("always", model, device_region)
    assert window_rows > 0
    assert get_array_module(windowed.lower.data) is xp
    assert_close(to_numpy(windowed.lower.data), dense.lower.data, "output lower bound")
    assert_close(to_numpy(windowed.upper.data), dense.upper.data, "output upper bound")
