"""The bounds API: names, errors, shapes, population and chunking, LinearBounds, splits.

Soundness over random networks, MILP/LP ground truth and orderings are tested in the
other files of this directory; here every test checks one promise of the contract on
small float64 networks (FC, and conv with Normalize and BatchNorm).
"""

from __future__ import annotations

import numpy as np
import pytest

from nobound.autodiff.tensor import Tensor, no_grad
from nobound.backend import device_of, get_array_module, to_numpy
from nobound.bounds import (
    METHODS,
    BoundsPlan,
    Box,
    LinearBounds,
    compute_bounds,
    fold_spec,
    layer_linear_bounds,
    linf_ball,
    margin_spec,
)
from nobound.nn import BatchNorm, Conv2d, Flatten, Linear, Normalize, ReLU, Sequential
from nobound.nn.init import kaiming_uniform

F64 = np.float64
ROUNDOFF = 1e-10
ALPHA = {"alpha_steps": 3, "alpha_step_size": 0.2}


def fc_model(seed: int = 0) -> Sequential:
    model = Sequential(Flatten(), Linear(12, 7, dtype=F64), ReLU(), Linear(7, 6, dtype=F64),
                       ReLU(), Linear(6, 4, dtype=F64))
    return kaiming_uniform(model, seed)


def conv_model(seed: int = 0) -> Sequential:
    """Normalize, conv, BN (eval, random statistics), ReLU ×2, FC with a 1-d BN."""
    model = Sequential(Normalize([0.4], [0.3], dtype=F64), Conv2d(1, 3, 3, 1, 1, dtype=F64),
                       BatchNorm(3, dtype=F64), ReLU(), Conv2d(3, 2, 3, 2, 1, dtype=F64),
                       ReLU(), Flatten(), Linear(18, 5, dtype=F64),
                       BatchNorm(5, spatial=False, dtype=F64), ReLU(), Linear(5, 4, dtype=F64))
    kaiming_uniform(model, seed)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, BatchNorm):
            n = layer.num_features
            layer.weight.data[...] = rng.uniform(0.5, 1.5, n)
            layer.bias.data[...] = rng.uniform(-0.2, 0.2, n)
            layer.running_mean = rng.uniform(-0.2, 0.2, n)
            layer.running_var = rng.uniform(0.5, 2.0, n)
    return model.eval()


def inputs(shape: tuple[int, ...], batch: int = 3, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (batch, *shape))


PROBLEMS = {"fc": (fc_model, (1, 3, 4)), "conv": (conv_model, (1, 6, 6))}


def problem(name: str, eps: float = 0.1, batch: int = 3, seed: int = 0):
    build, shape = PROBLEMS[name]
    model = build(seed)
    x = inputs(shape, batch, seed + 1)
    targets = np.arange(batch) % 4
    return model, x, linf_ball(x, eps), margin_spec(targets, 4, dtype=F64)


def spec_outputs(model, spec: np.ndarray, x: np.ndarray, params=None) -> np.ndarray:
    """C · f(x) for points x of shape (N, B, *input)."""
    with no_grad():
        return np.stack([np.einsum("bkc,bc->bk", spec, model(Tensor(p), params).data)
                         for p in x])


def box_points(box: Box, count: int, seed: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lower, upper = box.lower.data, box.upper.data
    return lower + rng.beta(0.5, 0.5, (count, *lower.shape)) * (upper - lower)


# ---------------------------------------------------------------- regions and specs

def test_linf_ball_clips_to_the_valid_range():
    x = np.array([[0.0, 0.5, 1.0]])
    box = linf_ball(x, 0.2)
    np.testing.assert_allclose(box.lower.data, [[0.0, 0.3, 0.8]])
    np.testing.assert_allclose(box.upper.data, [[0.2, 0.7, 1.0]])
    unclipped = linf_ball(x, 0.2, low=None, high=None)
    np.testing.assert_allclose(unclipped.lower.data, [[-0.2, 0.3, 0.8]])


def test_linf_ball_per_sample_radius_and_errors():
    x = np.full((2, 3), 0.5)
    box = linf_ball(x, np.array([0.1, 0.3]))
    np.testing.assert_allclose(box.radius.data, [[0.1] * 3, [0.3] * 3])
    with pytest.raises(ValueError, match="eps"):
        linf_ball(x, -0.1)
    with pytest.raises(ValueError, match="exceeds"):
        Box(Tensor(np.ones((1, 2))), Tensor(np.zeros((1, 2))))


def test_margin_spec_rows_are_target_minus_each_other_class_in_order():
    spec = margin_spec(np.array([2, 0]), 4, dtype=F64)
    assert spec.shape == (2, 3, 4)
    np.testing.assert_array_equal(spec[0], [[-1, 0, 1, 0], [0, -1, 1, 0], [0, 0, 1, -1]])
    np.testing.assert_array_equal(spec[1], [[1, -1, 0, 0], [1, 0, -1, 0], [1, 0, 0, -1]])
    with pytest.raises(ValueError, match="targets"):
        margin_spec(np.array([4]), 4)
    with pytest.raises(ValueError, match="classes"):
        margin_spec(np.array([0]), 1)


def test_fold_spec_is_c_times_the_last_layer_with_population():
    rng = np.random.default_rng(0)
    weight, bias = rng.normal(size=(3, 4, 5)), rng.normal(size=(3, 4))
    spec = margin_spec(np.array([1, 3]), 4, dtype=F64)
    folded_weight, folded_bias = fold_spec(Tensor(weight), Tensor(bias), Tensor(spec))
    np.testing.assert_allclose(folded_weight.data, np.einsum("bkc,pci->pbki", spec, weight))
    np.testing.assert_allclose(folded_bias.data, np.einsum("bkc,pc->pbk", spec, bias))


# ---------------------------------------------------------------- names, errors, shapes

def test_unknown_method_names_the_choices():
    model, _, box, _ = problem("fc")
    with pytest.raises(ValueError) as error:
        compute_bounds(model, box, method="zonotope")
    for name in METHODS:
        assert name in str(error.value)


def test_crown_is_deeppoly():
    model, _, box, spec = problem("conv")
    crown = compute_bounds(model, box, method="crown", spec=spec)
    deeppoly = compute_bounds(model, box, method="deeppoly", spec=spec)
    np.testing.assert_array_equal(crown.lower.data, deeppoly.lower.data)
    assert crown.method == "deeppoly"


def test_bad_arguments_are_rejected():
    model, x, box, spec = problem("conv")
    with pytest.raises(TypeError, match="Box"):
        compute_bounds(model, (box.lower, box.upper))
    with pytest.raises(ValueError, match="spec"):
        compute_bounds(model, box, spec=np.zeros((3, 2, 5)))
    with pytest.raises(ValueError, match="not ReLU layers"):
        compute_bounds(model, box, splits={1: np.zeros((3, 3, 6, 6), np.int8)})
    with pytest.raises(ValueError, match="memory_budget"):
        compute_bounds(model, box, memory_budget_bytes=0)
    with pytest.raises(ValueError, match="alpha"):
        compute_bounds(model, box, method="alpha-crown", alpha_init=1.5)
    wrong_shape = linf_ball(np.zeros((2, 1, 4, 4)), 0.1)
    with pytest.raises(ValueError):
        compute_bounds(model, wrong_shape)


@pytest.mark.parametrize("method", METHODS)
def test_shapes_with_and_without_spec(method):
    model, _, box, spec = problem("conv")
    with_spec = compute_bounds(model, box, method=method, spec=spec, **ALPHA)
    assert with_spec.lower.shape == with_spec.upper.shape == (3, 3)
    logits = compute_bounds(model, box, method=method, **ALPHA)
    assert logits.lower.shape == (3, 4)
    assert sorted(logits.intermediate) == [3, 5, 9]
    assert logits.intermediate[3][0].shape == (3, 3, 6, 6)
    assert logits.intermediate[5][1].shape == (3, 2, 3, 3)
    assert logits.intermediate[9][0].shape == (3, 5)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", ["fc", "conv"])
def test_a_zero_radius_region_gives_the_network_output(method, name):
    """With l = u every relaxation is exact: lower = upper = C f(x) (BN and Normalize too)."""
    model, x, _, spec = problem(name)
    result = compute_bounds(model, linf_ball(x, 0.0), method=method, spec=spec, **ALPHA)
    exact = spec_outputs(model, spec, x[None])[0]
    np.testing.assert_allclose(result.lower.data, exact, rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.upper.data, exact, rtol=0, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_bounds_hold_at_sampled_points(method):
    model, _, box, spec = problem("conv", eps=0.15)
    result = compute_bounds(model, box, method=method, spec=spec, **ALPHA)
    values = spec_outputs(model, spec, box_points(box, 64))
    assert np.all(values >= result.lower.data - ROUNDOFF)
    assert np.all(values <= result.upper.data + ROUNDOFF)
    assert np.all(result.lower.data <= result.upper.data)


def test_bounds_work_on_the_gpu_backend(xp):
    model, x, _, spec = problem("conv")
    expected = compute_bounds(model, linf_ball(x, 0.1), method="deeppoly", spec=spec)
    if xp is not np:
        model.to(device_of(xp))
    result = compute_bounds(model, linf_ball(xp.asarray(x), 0.1), method="deeppoly",
                            spec=xp.asarray(spec))
    assert get_array_module(result.lower.data) is xp
    np.testing.assert_allclose(to_numpy(result.lower.data), expected.lower.data,
                               rtol=0, atol=1e-12)


# ---------------------------------------------------------------- population and chunking

def population_params(model, members: int, seed: int = 3) -> dict[str, Tensor]:
    rng = np.random.default_rng(seed)
    return {name: Tensor(p.data[None] + 0.05 * rng.normal(size=(members, *p.shape)),
                         requires_grad=True)
            for name, p in model.named_parameters()}


@pytest.mark.parametrize("method", METHODS)
def test_population_equals_separate_calls(method):
    model, _, box, spec = problem("conv")
    params = population_params(model, 3)
    together = compute_bounds(model, box, method=method, spec=spec, params=params, **ALPHA)
    assert together.lower.shape == (3, 3, 3)
    assert together.intermediate[3][0].shape == (3, 3, 3, 6, 6)
    for member in range(3):
        single = {name: Tensor(p.data[member]) for name, p in params.items()}
        alone = compute_bounds(model, box, method=method, spec=spec, params=single, **ALPHA)
        np.testing.assert_allclose(together.lower.data[member], alone.lower.data,
                                   rtol=0, atol=1e-12)
        np.testing.assert_allclose(together.upper.data[member], alone.upper.data,
                                   rtol=0, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_a_population_of_one_keeps_its_axis(method):
    model, _, box, spec = problem("fc")
    params = population_params(model, 1)
    result = compute_bounds(model, box, method=method, spec=spec, params=params, **ALPHA)
    assert result.lower.shape == result.upper.shape == (1, 3, 3)
    assert result.intermediate[2][0].shape == (1, 3, 7)
    single = {name: Tensor(p.data[0]) for name, p in params.items()}
    alone = compute_bounds(model, box, method=method, spec=spec, params=single, **ALPHA)
    np.testing.assert_allclose(result.lower.data[0], alone.lower.data, rtol=0, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_chunking_rows_and_members_changes_no_bound(method):
    model, _, box, spec = problem("conv")
    params = population_params(model, 4)
    whole = compute_bounds(model, box, method=method, spec=spec, params=params, **ALPHA)
    chunked = compute_bounds(model, box, method=method, spec=spec, params=params,
                             memory_budget_bytes=20_000, **ALPHA)
    np.testing.assert_allclose(chunked.lower.data, whole.lower.data, rtol=0, atol=1e-12)
    np.testing.assert_allclose(chunked.upper.data, whole.upper.data, rtol=0, atol=1e-12)
    for index, (lower, upper) in whole.intermediate.items():
        np.testing.assert_allclose(chunked.intermediate[index][0].data, lower.data,
                                   rtol=0, atol=1e-12)
        np.testing.assert_allclose(chunked.intermediate[index][1].data, upper.data,
                                   rtol=0, atol=1e-12)


# ---------------------------------------------------------------- differentiability

@pytest.mark.parametrize("method", ["ibp", "hbox", "crown-ibp", "deeppoly", "alpha-crown"])
def test_bounds_are_differentiable_in_the_parameters(method):
    """Backward through result.upper/lower matches central differences (away from kinks)."""
    model, _, box, spec = problem("fc", eps=0.05)
    weights = np.linspace(-1.0, 1.0, 9).reshape(3, 3)

    def objective() -> Tensor:
        result = compute_bounds(model, box, method=method, spec=spec, **ALPHA)
        return (result.lower * Tensor(weights)).sum() + result.upper.sum()

    objective().backward()
    rng = np.random.default_rng(0)
    for name, parameter in model.named_parameters():
        gradient = parameter.grad.copy()
        parameter.grad = None
        for _ in range(2):
            index = tuple(int(rng.integers(0, n)) for n in parameter.shape)
            original = parameter.data[index]
            parameter.data[index] = original + 1e-6
            plus = objective().item()
            parameter.data[index] = original - 1e-6
            minus = objective().item()
            parameter.data[index] = original
            numeric = (plus - minus) / 2e-6
            assert abs(numeric - gradient[index]) <= 1e-5 * max(1.0, abs(numeric)), name


def test_population_gradients_flow_to_each_member():
    model, _, box, spec = problem("conv")
    params = population_params(model, 2)
    result = compute_bounds(model, box, method="crown-ibp", spec=spec, params=params)
    result.upper[1].sum().backward()
    gradient = params["1.weight"].grad
    assert np.all(gradient[0] == 0) and np.any(gradient[1] != 0)


# ---------------------------------------------------------------- batch-norm modes

def test_batchnorm_in_train_mode_uses_the_clean_batch_statistics():
    model, x, box, spec = problem("conv")
    model.train()
    with pytest.raises(ValueError, match="batch statistics"):
        compute_bounds(model, box, spec=spec)
    with no_grad():
        model(Tensor(x))  # the clean forward pass records the statistics
    exact = compute_bounds(model, linf_ball(x, 0.0), method="deeppoly", spec=spec)
    with no_grad():
        logits = model(Tensor(x)).data
    np.testing.assert_allclose(exact.lower.data, np.einsum("bkc,bc->bk", spec, logits),
                               rtol=0, atol=1e-12)


# ---------------------------------------------------------------- LinearBounds

@pytest.mark.parametrize("method", METHODS)
def test_linear_bounds_concretize_to_the_numeric_bounds(method):
    model, _, box, spec = problem("conv")
    result = compute_bounds(model, box, method=method, spec=spec, return_linear=True, **ALPHA)
    linear = result.linear
    assert linear.A_l.shape == (3, 3, 1, 6, 6) and linear.b_u.shape == (3, 3)
    lower, upper = linear.concretize(box)
    np.testing.assert_allclose(lower.data, result.lower.data, rtol=0, atol=1e-12)
    np.testing.assert_allclose(upper.data, result.upper.data, rtol=0, atol=1e-12)
    points = box_points(box, 32)
    values = spec_outputs(model, spec, points)
    for point, value in zip(points, values, strict=True):
        below, above = linear.evaluate(point)
        assert np.all(below.data <= value + ROUNDOFF) and np.all(value <= above.data + ROUNDOFF)


@pytest.mark.parametrize("suffix", [".npz", ".h5"])
def test_linear_bounds_save_and_load(tmp_path, suffix):
    model, _, box, spec = problem("fc")
    linear = compute_bounds(model, box, spec=spec, return_linear=True).linear
    dense = linear.to_dense()
    assert dense["A_l"].shape == (3, 3, 12)
    loaded = LinearBounds.load(linear.save(tmp_path / f"bounds{suffix}"))
    np.testing.assert_array_equal(loaded.A_u.data, linear.A_u.data)
    np.testing.assert_array_equal(loaded.b_l.data, linear.b_l.data)
    assert loaded.input_shape == (1, 3, 4) and loaded.reference is None
    with pytest.raises(ValueError, match="npz"):
        linear.save(tmp_path / "bounds.txt")


def test_layer_linear_bounds_reproduce_the_intermediate_bounds():
    """On every neuron left unstable (so bounded by back-substitution) they agree."""
    model, _, box, _ = problem("conv")
    result = compute_bounds(model, box, method="deeppoly")
    for relu in (5, 9):
        known_lower, known_upper = (t.data for t in result.intermediate[relu])
        linear = layer_linear_bounds(model, box, relu - 1)
        assert linear.A_l.shape[:2] == (3, known_lower[0].size)
        lower, upper = (t.data.reshape(known_lower.shape) for t in linear.concretize(box))
        unstable = (known_lower < 0) & (known_upper > 0)
        assert unstable.any()
        np.testing.assert_allclose(lower[unstable], known_lower[unstable], rtol=0, atol=1e-12)
        np.testing.assert_allclose(upper[unstable], known_upper[unstable], rtol=0, atol=1e-12)


def test_layer_linear_bounds_relative_to_an_earlier_layer_hold_pointwise():
    model, _, box, _ = problem("conv")
    linear = layer_linear_bounds(model, box, 7, relative_to=3)  # Linear output in ReLU-3 output
    assert linear.reference == 3 and linear.input_shape == (3, 6, 6)
    for point in box_points(box, 16):
        hidden = Tensor(point)
        with no_grad():
            for layer in model.layers[:4]:
                hidden = layer(hidden)
            target = hidden
            for layer in model.layers[4:8]:
                target = layer(target)
        below, above = linear.evaluate(hidden)
        assert np.all(below.data <= target.data + ROUNDOFF)
        assert np.all(target.data <= above.data + ROUNDOFF)


# ---------------------------------------------------------------- splits and intermediate

def split_problem():
    model, _, box, _ = problem("fc", eps=0.3, batch=1)
    result = compute_bounds(model, box, method="deeppoly")
    lower, upper = result.intermediate[2]
    unstable = np.flatnonzero((lower.data[0] < 0) & (upper.data[0] > 0))
    assert unstable.size > 0
    return model, box, unstable[0]


@pytest.mark.parametrize("method", METHODS)
def test_split_sub_problems_are_sound_on_their_half_regions(method):
    model, box, neuron = split_problem()
    points = box_points(Box(box.lower, box.upper), 400)[:, 0]
    with no_grad():
        pre_activation = np.stack([model.layers[1](model.layers[0](Tensor(p[None]))).data[0]
                                   for p in points])
        outputs = np.stack([model(Tensor(p[None])).data[0] for p in points])
    for direction in (+1, -1):
        split = np.zeros((1, 7), np.int8)
        split[0, neuron] = direction
        result = compute_bounds(model, box, method=method, splits={2: split}, **ALPHA)
        clamped_lower, clamped_upper = result.intermediate[2]
        if direction > 0:
            assert clamped_lower.data[0, neuron] >= 0
            inside = pre_activation[:, neuron] >= 0
        else:
            assert clamped_upper.data[0, neuron] <= 0
            inside = pre_activation[:, neuron] <= 0
        assert inside.any()
        assert np.all(outputs[inside] >= result.lower.data[0] - ROUNDOFF)
        assert np.all(outputs[inside] <= result.upper.data[0] + ROUNDOFF)


def test_many_sub_problems_in_one_batch():
    """Branch and bound stacks sub-problems of one input on the batch axis."""
    model, box, neuron = split_problem()
    stacked = Box(Tensor(np.repeat(box.lower.data, 3, axis=0)),
                  Tensor(np.repeat(box.upper.data, 3, axis=0)))
    splits = np.zeros((3, 7), np.int8)
    splits[1, neuron], splits[2, neuron] = 1, -1
    together = compute_bounds(model, stacked, method="deeppoly", splits={2: splits})
    for row in range(3):
        alone = compute_bounds(model, box, method="deeppoly", splits={2: splits[row:row + 1]})
        np.testing.assert_allclose(together.lower.data[row], alone.lower.data[0], atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_given_intermediate_bounds_are_intersected(method):
    model, _, box, spec = problem("conv")
    first = compute_bounds(model, box, method=method, spec=spec, **ALPHA)
    again = compute_bounds(model, box, method=method, spec=spec, intermediate=first.intermediate,
                           **ALPHA)
    np.testing.assert_allclose(again.lower.data, first.lower.data, rtol=0, atol=1e-12)
    lower, upper = first.intermediate[5]
    middle = (lower.data + upper.data) / 2
    tighter = {5: (np.maximum(lower.data, middle - 1e-3), np.minimum(upper.data, middle + 1e-3))}
    narrowed = compute_bounds(model, box, method=method, spec=spec, intermediate=tighter,
                              **ALPHA)
    assert np.all(narrowed.intermediate[5][0].data >= tighter[5][0] - 1e-15)
    assert np.all(narrowed.intermediate[5][1].data <= tighter[5][1] + 1e-15)


# ---------------------------------------------------------------- relaxation relations

def test_folded_ibp_is_never_looser_than_subtracting_logit_intervals():
    model, _, box, spec = problem("conv", eps=0.2)
    folded = compute_bounds(model, box, method="ibp", spec=spec)
    logits = compute_bounds(model, box, method="ibp")
    naive = np.einsum("bkc,bc->bk", np.maximum(spec, 0), logits.lower.data) + \
        np.einsum("bkc,bc->bk", np.minimum(spec, 0), logits.upper.data)
    assert np.all(folded.lower.data >= naive - ROUNDOFF)


def test_hbox_is_inside_ibp_and_tighter_somewhere():
    model, _, box, spec = problem("conv", eps=0.05)
    hbox = compute_bounds(model, box, method="hbox", spec=spec)
    ibp = compute_bounds(model, box, method="ibp", spec=spec)
    assert np.all(hbox.lower.data >= ibp.lower.data - ROUNDOFF)
    assert np.all(hbox.upper.data <= ibp.upper.data + ROUNDOFF)
    assert np.any(hbox.lower.data > ibp.lower.data + 1e-6)


def test_alpha_crown_from_deeppoly_slopes_is_never_looser():
    model, _, box, spec = problem("conv", eps=0.2)
    deeppoly = compute_bounds(model, box, method="deeppoly", spec=spec)
    unchanged = compute_bounds(model, box, method="alpha-crown", spec=spec, alpha_steps=0)
    np.testing.assert_allclose(unchanged.lower.data, deeppoly.lower.data, rtol=0, atol=1e-12)
    optimised = compute_bounds(model, box, method="alpha-crown", spec=spec, alpha_steps=10)
    assert np.all(optimised.lower.data >= deeppoly.lower.data - ROUNDOFF)
    assert np.all(optimised.upper.data <= deeppoly.upper.data + ROUNDOFF)
    assert np.any(optimised.lower.data > deeppoly.lower.data + 1e-6)


def test_alpha_crown_training_variant_is_sound_and_differs_from_its_start():
    model, _, box, spec = problem("conv", eps=0.2)
    variant = compute_bounds(model, box, method="alpha-crown", spec=spec, alpha_init=0.5,
                             alpha_steps=1, alpha_step_size=0.5)
    start = compute_bounds(model, box, method="alpha-crown", spec=spec, alpha_init=0.5,
                           alpha_steps=0)
    assert np.all(variant.lower.data >= start.lower.data - ROUNDOFF)
    values = spec_outputs(model, spec, box_points(box, 64))
    assert np.all(values >= variant.lower.data - ROUNDOFF)


@pytest.mark.parametrize("method", ["deeppoly", "alpha-crown"])
def test_back_substituting_only_unstable_rows_changes_no_bound(method):
    """Rows of neurons the interval pre-check proves stable are skipped (rows.neuron_rows)."""
    model, _, box, spec = problem("conv", eps=0.05)
    params = population_params(model, 2)
    results = []
    for fraction in (0.0, 1.0):  # always all rows / always only the unstable ones
        results.append(compute_bounds(model, box, method=method, spec=spec, params=params,
                                      plan=BoundsPlan(dense_fraction=fraction), **ALPHA))
    every_row, unstable_only = results
    np.testing.assert_allclose(unstable_only.lower.data, every_row.lower.data, rtol=0,
                               atol=1e-12)
    np.testing.assert_allclose(unstable_only.upper.data, every_row.upper.data, rtol=0,
                               atol=1e-12)
    for index, (lower, upper) in every_row.intermediate.items():
        np.testing.assert_allclose(unstable_only.intermediate[index][0].data, lower.data,
                                   rtol=0, atol=1e-12)
        np.testing.assert_allclose(unstable_only.intermediate[index][1].data, upper.data,
                                   rtol=0, atol=1e-12)
