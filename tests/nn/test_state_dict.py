"""Parameter names and shapes follow PyTorch's state_dict; loading round-trips or fails loudly."""

from __future__ import annotations

import numpy as np
import pytest

from nobound.autodiff import Tensor
from nobound.nn import build_model, conv_net, initialise


def bn_model():
    return conv_net((3, 8, 8), 5, [(4, 3, 2, 1)], [6], batchnorm=True,
                    normalize=([0.5] * 3, [0.2] * 3))


def test_names_and_shapes_follow_pytorch():
    state = bn_model().state_dict()
    shapes = {name: tuple(np.shape(value)) for name, value in state.items()}
    assert shapes == {
        "0.mean": (3,), "0.std": (3,),
        "1.weight": (4, 3, 3, 3), "1.bias": (4,),
        "2.weight": (4,), "2.bias": (4,), "2.running_mean": (4,), "2.running_var": (4,),
        "2.num_batches_tracked": (),
        "5.weight": (6, 64), "5.bias": (6,),
        "6.weight": (6,), "6.bias": (6,), "6.running_mean": (6,), "6.running_var": (6,),
        "6.num_batches_tracked": (),
        "8.weight": (5, 6), "8.bias": (5,),
    }
    assert [name for name, _ in bn_model().named_parameters()] == [
        "1.weight", "1.bias", "2.weight", "2.bias", "5.weight", "5.bias", "6.weight", "6.bias",
        "8.weight", "8.bias"]


def test_round_trip_restores_outputs_and_copies():
    source = initialise(bn_model(), "kaiming", seed=1).to("cpu")
    x = np.random.default_rng(0).random((4, 3, 8, 8)).astype(np.float32)
    source.train()
    source(x)  # moves the running statistics away from their initial values
    source.eval()
    state = {name: np.array(value, copy=True) for name, value in source.state_dict().items()}
    target = initialise(bn_model(), "kaiming", seed=2).eval()
    target.load_state_dict(state)
    assert np.array_equal(target(x).numpy(), source(x).numpy())
    state["1.weight"][...] = 0.0  # loading copied; the model does not alias the dict
    assert np.array_equal(target(x).numpy(), source(x).numpy())
    assert target.state_dict()["2.num_batches_tracked"].dtype.kind == "i"


def test_loading_reports_missing_and_unexpected_names():
    model = bn_model()
    state = model.state_dict()
    missing = {k: v for k, v in state.items() if k != "5.bias"}
    with pytest.raises(KeyError, match="5.bias"):
        model.load_state_dict(missing)
    with pytest.raises(KeyError, match="9.weight"):
        model.load_state_dict({**state, "9.weight": np.zeros(3)})


def test_loading_reports_a_shape_mismatch_by_name():
    model = bn_model()
    state = dict(model.state_dict())
    state["1.weight"] = np.zeros((4, 3, 2, 2), np.float32)
    before = model.state_dict()["5.weight"].copy()
    with pytest.raises(ValueError, match="1.weight"):
        model.load_state_dict(state)
    assert np.array_equal(model.state_dict()["5.weight"], before)  # nothing half-loaded


def test_astype_keeps_integer_counters():
    model = bn_model().astype(np.float64)
    state = model.state_dict()
    assert state["1.weight"].dtype == np.float64 and state["2.running_var"].dtype == np.float64
    assert state["2.num_batches_tracked"].dtype.kind == "i"


def test_population_parameters_are_taken_by_name():
    """A params mapping overrides exactly the named parameters; the rest stay the layer's own."""
    model = initialise(build_model("cnn3_tiny", (1, 8, 8), 3), "kaiming", seed=0)
    x = Tensor(np.random.default_rng(0).random((2, 1, 8, 8)).astype(np.float32))
    zero_last = {"5.weight": Tensor(np.zeros((3, 8), np.float32))}
    out = model(x, zero_last).numpy()
    assert np.array_equal(out, np.broadcast_to(model.state_dict()["5.bias"], (2, 3)))
    assert not np.array_equal(model(x).numpy(), out)


@pytest.mark.parametrize("name", ["4.weight", "9.bias", "5.wieght", "0.running_mean"])
def test_unknown_parameter_names_are_errors_not_ignored(name):
    model = build_model("cnn3_tiny", (1, 8, 8), 3)
    with pytest.raises(KeyError, match=name):
        model(np.zeros((1, 1, 8, 8), np.float32), {name: Tensor(np.zeros(3, np.float32))})
    with pytest.raises(KeyError, match="wieght"):
        model.layers[5](np.zeros((1, 8), np.float32), {"wieght": Tensor(np.zeros((3, 8)))})
