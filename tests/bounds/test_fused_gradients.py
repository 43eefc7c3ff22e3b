"""The fused ReLU step with gradients recorded (nobound.bounds.kernels) equals the plain one.

``fused_relu_back_step`` is one differentiable op with a hand-written VJP. For every layout
the back-substitution meets — dense rows with λ shared by the rows or one per row
(alpha-CROWN), the same λ on both sides, coefficients shared by the sides (S = 1) or not,
by the batch (B' = 1) or not, members P' ∈ {1, P} — and for window rows (λ, s, t read from
their maps at each row's window, windows crossing the image border, rows chosen per
sample), its value must be the plain step's and its gradient w.r.t. every input (A, the
incoming bias a, λ, s, t, or their maps) the plain path's autodiff gradient, in float64 with
exact zeros in A (where the one-sided choices at 0 matter). A dot-product gradcheck against
finite differences checks the VJP independently of the plain path, and whole DeepPoly and
alpha-CROWN runs give the plain path's bounds and weight gradients.
"""

from __future__ import annotations

import numpy as np
import pytest

import nobound.bounds.deeppoly as deeppoly
import nobound.bounds.kernels as kernels
from nobound.autodiff.gradcheck import check_grads
from nobound.autodiff.tensor import Tensor
from nobound.bounds.deeppoly import ReluRelaxation
from nobound.bounds.patches import NeuronRows, Window, WindowReluLines, WindowRows
from nobound.bounds.regions import Box
from nobound.bounds.rows import ReluLines

pytest.importorskip("numba")

TOLERANCE = 1e-12


def step(A, a, lines, ndim, fused):  # noqa: N803
    """The ReLU step through deeppoly's seam, compiled (checked to be taken) or plain."""
    if fused:
        result = kernels.fused_relu_back_step(A, a, lines, ndim)
        assert result is not None, "the fused step did not apply"
        return result
    original = deeppoly.fused_relu_back_step
    deeppoly.fused_relu_back_step = lambda *args: None
    try:
        return deeppoly.relu_back_step(A, a, lines, ndim)
    finally:
        deeppoly.fused_relu_back_step = original


def value_and_gradients(arrays, build, fused, seed=7):
    """Leaves of ``arrays`` (name → array), the step ``build(leaves, fused)`` gives, and
    each leaf's gradient of ⟨G, A'⟩ + ⟨g, a'⟩ for random cotangents G, g."""
    leaves = {name: Tensor(value.copy(), requires_grad=True) for name, value in arrays.items()}
    out, bias = build(leaves, fused)
    rng = np.random.default_rng(seed)
    loss = (out * Tensor(rng.standard_normal(out.shape))).sum() + \
        (bias * Tensor(rng.standard_normal(bias.shape))).sum()
    loss.backward()
    return out.data, bias.data, {name: leaf.grad for name, leaf in leaves.items()}


def assert_same(arrays, build, products=True):
    """Fused = plain: the first output exactly where it is the same ``products``, the
    rest (sums in another order) to round-off."""
    fused = value_and_gradients(arrays, build, True)
    plain = value_and_gradients(arrays, build, False)
    if products:
        np.testing.assert_array_equal(fused[0], plain[0])
    np.testing.assert_allclose(fused[0], plain[0], rtol=TOLERANCE, atol=TOLERANCE)
    np.testing.assert_allclose(fused[1], plain[1], rtol=TOLERANCE, atol=TOLERANCE)
    for name, gradient in plain[2].items():
        assert gradient is not None, name
        assert fused[2][name] is not None and fused[2][name].shape == gradient.shape, name
        assert np.abs(gradient).max() > 0, f"{name}: a zero gradient tests nothing"
        np.testing.assert_allclose(fused[2][name], gradient, rtol=TOLERANCE, atol=TOLERANCE,
                                   err_msg=name)


def coefficients(rng, shape):
    A = rng.standard_normal(shape)  # noqa: N806
    A[rng.uniform(size=shape) < 0.1] = 0.0  # the sign choice at exactly 0
    return A


# ----------------------------------------------------------------------------- dense rows

def dense_arrays(rng, members, sides, shared_batch, per_row, line_members, batch=3, rows=13,
                 shape=(8, 12, 14)):
    line_rows = rows if per_row else 1
    return {
        "A": coefficients(rng, (members, sides, 1 if shared_batch else batch, rows, *shape)),
        "a": rng.standard_normal((max(members, line_members), 2, batch, rows)),
        "lam_lower": rng.uniform(0, 1, (line_members, 1, batch, line_rows, *shape)),
        "lam_upper": rng.uniform(0, 1, (line_members, 1, batch, line_rows, *shape)),
        "s": rng.uniform(0, 1, (line_members, 1, batch, 1, *shape)),
        "t": rng.standard_normal((1, 1, batch, 1, *shape)),
    }


def dense_build(same_lambda=False, ndim=3):
    def build(leaves, fused):
        lam_upper = leaves["lam_lower"] if same_lambda else leaves["lam_upper"]
        lines = ReluLines({"lower": leaves["lam_lower"], "upper": lam_upper}, leaves["s"],
                          leaves["t"])
        return step(leaves["A"], leaves["a"], lines, ndim, fused)

    return build


@pytest.mark.parametrize("members, sides, shared_batch, per_row, line_members",
                         [(1, 1, True, False, 1), (1, 2, False, False, 1),
                          (2, 1, False, True, 2), (3, 2, True, True, 3),
                          (3, 2, False, False, 1), (1, 2, False, True, 2)])
def test_dense_step_value_and_gradients(members, sides, shared_batch, per_row, line_members):
    """``members``, ``line_members``: P' of A and of the lines (1 broadcasts)."""
    rng = np.random.default_rng(members * 100 + sides * 10 + per_row)
    arrays = dense_arrays(rng, members, sides, shared_batch, per_row, line_members)
    assert_same(arrays, dense_build())


def test_dense_step_with_one_lambda_for_both_sides():
    """DeepPoly's λ is one tensor on both sides: its gradient sums the two."""
    arrays = dense_arrays(np.random.default_rng(4), 2, 2, False, False, 2)
    del arrays["lam_upper"]
    assert_same(arrays, dense_build(same_lambda=True))


def test_dense_step_on_flat_rows():
    """A dense node with one feature axis (after Flatten / Linear)."""
    rng = np.random.default_rng(5)
    arrays = dense_arrays(rng, 2, 2, False, True, 2, batch=4, rows=10, shape=(1000,))
    assert_same(arrays, dense_build(ndim=1))


def test_only_the_wanted_gradients():
    """alpha-CROWN's search differentiates λ only: the other inputs get no gradient, and
    λ's equals the plain path's."""
    rng = np.random.default_rng(6)
    arrays = dense_arrays(rng, 1, 2, False, True, 1)
    results = []
    for fused in (True, False):
        leaves = {name: Tensor(value.copy(), requires_grad=name.startswith("lam"))
                  for name, value in arrays.items()}
        out, bias = dense_build()(leaves, fused)
        ((out * out).sum() + bias.sum()).backward()
        results.append(leaves)
    for name in arrays:
        if name.startswith("lam"):
            np.testing.assert_allclose(results[0][name].grad, results[1][name].grad,
                                       rtol=TOLERANCE, atol=TOLERANCE)
        else:
            assert results[0][name].grad is None


# ----------------------------------------------------------------------------- windows

def window_arrays(rng, members, sides, shared_batch, map_members, batch=3,
                  channels=4, height=9, width=7, kernel=(6, 5)):
    shape = (channels, height, width)
    rows = 48
    return {
        "A": coefficients(rng, (members, sides, 1 if shared_batch else batch, rows, channels,
                                *kernel)),
        "a": rng.standard_normal((max(members, map_members), 2, batch, rows)),
        "lam": rng.uniform(0, 1, (map_members, batch, *shape)),
        "s": rng.uniform(0, 1, (map_members, batch, *shape)),
        "t": rng.standard_normal((map_members, batch, *shape)),
    }


def window_build(rng, grid, window, members, batch, rows, per_sample):
    """Rows at random neurons of a grid (i, j) (per sample or shared): their windows hang
    over every border of the image for the given stride and padding."""
    lead = (members, batch) if per_sample else (1, 1)
    row = rng.integers(0, grid[0], lead + (rows,))
    column = rng.integers(0, grid[1], lead + (rows,))
    row[..., :2], column[..., :2] = 0, 0  # the corners: windows over the top-left border
    row[..., 2:4], column[..., 2:4] = grid[0] - 1, grid[1] - 1  # and over the bottom right
    neurons = NeuronRows(np.zeros_like(row), row, column, np.ones(row.shape))

    def build(leaves, fused):
        relaxation = ReluRelaxation(leaves["lam"], leaves["s"], leaves["t"], None)
        lines = WindowReluLines(relaxation, neurons, window)
        return step(leaves["A"], leaves["a"], lines, 3, fused)

    return build


@pytest.mark.parametrize("members, sides, shared_batch, map_members, per_sample",
                         [(1, 1, True, 1, False), (1, 2, False, 1, True),
                          (2, 1, False, 2, True), (3, 2, True, 1, False),
                          (2, 2, False, 2, False)])
def test_window_step_value_and_gradients(members, sides, shared_batch, map_members,
                                         per_sample, monkeypatch):
    monkeypatch.setattr(kernels, "COMPILED_PASS_MIN_SIZE", 1)  # small windows, compiled
    rng = np.random.default_rng(members * 100 + sides * 10 + map_members)
    arrays = window_arrays(rng, members, sides, shared_batch, map_members)
    # windows of 6 × 5 with stride 2, padding 2 on a 9 × 7 map from a 5 × 4 grid: every
    # border is crossed, and neighbouring windows overlap (the scatter must add)
    build = window_build(rng, (5, 4), Window(6, 5, 2, 2), members, 3, 48, per_sample)
    assert_same(arrays, build)


def concretise(A, a, box, fused):  # noqa: N803
    """Eq. (2) through deeppoly's seam, compiled (checked to be taken) or plain."""
    if fused:
        result = kernels.fused_concretise(A, a, box)
        assert result is not None, "the fused concretisation did not apply"
        return result
    original = deeppoly.fused_concretise
    deeppoly.fused_concretise = lambda *args: None
    try:
        return deeppoly.concretise(A, a, box)
    finally:
        deeppoly.fused_concretise = original


def concretise_build(rng, grid, window, members, batch, rows, per_sample):
    """Eq. (2) of window rows at random neurons of ``grid`` (corners included), as
    ``step``'s two outputs: (lower, upper) stacked, and their sum."""
    lead = (members, batch) if per_sample else (1, 1)
    row = rng.integers(0, grid[0], lead + (rows,))
    column = rng.integers(0, grid[1], lead + (rows,))
    row[..., :2], column[..., :2] = 0, 0
    row[..., 2:4], column[..., 2:4] = grid[0] - 1, grid[1] - 1
    neurons = NeuronRows(np.zeros_like(row), row, column, np.ones(row.shape))

    def build(leaves, fused):
        rows_ = WindowRows(leaves["A"], neurons, (window,))
        box = Box(leaves["lower"], leaves["lower"] + leaves["width"])
        bounds = concretise(rows_, leaves["a"], box, fused)
        return bounds["lower"], bounds["upper"]

    return build


@pytest.mark.parametrize("members, sides, shared_batch, box_members, per_sample",
                         [(1, 1, True, 0, False), (1, 2, False, 0, True),
                          (2, 1, False, 2, True), (3, 2, True, 1, False),
                          (2, 2, False, 2, False)])
def test_window_concretisation_value_and_gradients(members, sides, shared_batch, box_members,
                                                   per_sample, monkeypatch):
    """Eq. (2) on windows over the border, with gradients w.r.t. A, a and the box's
    lower and upper ends (through its centre and radius); ``box_members`` 0: a box
    without population axis."""
    monkeypatch.setattr(kernels, "COMPILED_PASS_MIN_SIZE", 1)
    rng = np.random.default_rng(members * 100 + sides * 10 + box_members)
    batch, rows, channels, shape = 3, 48, 4, (9, 7)
    lead = (batch,) if box_members == 0 else (box_members, batch)
    arrays = {
        "A": coefficients(rng, (members, sides, 1 if shared_batch else batch, rows, channels,
                                6, 5)),
        "a": rng.standard_normal((max(members, box_members), sides, batch, rows)),
        "lower": rng.standard_normal(lead + (channels, *shape)),
        "width": rng.uniform(0.1, 1, lead + (channels, *shape)),
    }
    assert_same(arrays, concretise_build(rng, (5, 4), Window(6, 5, 2, 2), members, batch,
                                         rows, per_sample), products=False)


# ----------------------------------------------------------------------------- gradcheck

def test_vjp_against_finite_differences(monkeypatch):
    """The VJPs of the fused ops alone (small arrays, compiled anyway) — the ReLU step on
    dense rows and windows, eq. (2) on windows — by the dot-product test; A is kept away
    from 0, where both have their kink."""
    monkeypatch.setattr(kernels, "COMPILED_PASS_MIN_SIZE", 1)
    rng = np.random.default_rng(8)
    dense = dense_arrays(rng, 2, 2, False, True, 1, batch=2, rows=3, shape=(2, 3))
    dense["A"] = np.sign(dense["A"] + 0.01) * (0.2 + np.abs(dense["A"]))
    dense_step = dense_build()
    check_grads(lambda *tensors: _packed(dense_step(dict(zip(dense, tensors, strict=True)),
                                                   True)), list(dense.values()))
    windows = window_arrays(rng, 1, 2, False, 1, batch=2, channels=2, height=4, width=3,
                            kernel=(3, 3))
    windows["A"] = np.sign(windows["A"] + 0.01) * (0.2 + np.abs(windows["A"]))
    window_step = window_build(rng, (3, 2), Window(3, 3, 2, 1), 1, 2, 48, True)
    check_grads(lambda *tensors: _packed(window_step(dict(zip(windows, tensors, strict=True)),
                                                     True)), list(windows.values()))
    box = {"A": windows["A"], "a": windows["a"],
           "lower": rng.standard_normal((2, 2, 4, 3)), "width": rng.uniform(0.1, 1, (2, 2, 4, 3))}
    bounds = concretise_build(rng, (3, 2), Window(3, 3, 2, 1), 1, 2, 48, True)
    check_grads(lambda *tensors: _packed(bounds(dict(zip(box, tensors, strict=True)), True)),
                list(box.values()))


def _packed(result):
    """Two outputs as one Tensor, for a check of both outputs' gradients at once."""
    first, second = result
    return first.sum(axis=tuple(range(second.ndim, first.ndim))) * 0.5 + second * second


# ----------------------------------------------------------------------------- networks

@pytest.mark.parametrize("plan", ["always", "never"])
def test_network_gradients_equal_the_plain_path(plan, monkeypatch):
    """DeepPoly's lower bound through windows or dense rows, with a population: the bounds
    and their gradients w.r.t. every weight and the input equal the plain path's."""
    from nobound.bounds import BoundsPlan, compute_bounds, linf_ball, margin_spec
    from nobound.nn.zoo import conv_net
    from nobound.testing.strategies import randomise

    model = conv_net((2, 12, 12), 4, [(6, 3, 1, 1), (8, 4, 2, 2), (5, 3, 2, 1)], [],
                     dtype=np.float64)
    randomise(model, 11, 1.0, 0.5)
    rng = np.random.default_rng(3)
    weights = {name: np.stack([p.data * rng.uniform(0.8, 1.2, p.shape) for _ in range(2)])
               for name, p in model.named_parameters()}
    center = rng.uniform(0, 1, (3, 2, 12, 12))
    spec = margin_spec(rng.integers(0, 4, 3), 4)
    taken = []
    fused_step = kernels.fused_relu_back_step

    def counting(*args):
        result = fused_step(*args)
        taken.append(result is not None)
        return result

    results = {}
    for name in ("compiled", "plain"):
        with monkeypatch.context() as patch:
            patch.setattr(deeppoly, "fused_relu_back_step",
                          counting if name == "compiled" else lambda *args: None)
            params = {key: Tensor(value.copy(), requires_grad=True)
                      for key, value in weights.items()}
            x = Tensor(center.copy(), requires_grad=True)
            bounds = compute_bounds(model, linf_ball(x, 0.1), method="deeppoly", spec=spec,
                                    params=params, plan=BoundsPlan(patches=plan))
            (bounds.lower * bounds.lower).sum().backward()
            results[name] = (bounds.lower.data, x.grad,
                             {key: p.grad for key, p in params.items()})
    assert any(taken), "no ReLU step took the fused path"
    compiled, plain = results["compiled"], results["plain"]
    np.testing.assert_allclose(compiled[0], plain[0], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(compiled[1], plain[1], rtol=1e-9, atol=1e-10)
    for key, gradient in plain[2].items():
        np.testing.assert_allclose(compiled[2][key], gradient, rtol=1e-9, atol=1e-10,
                                   err_msg=key)
