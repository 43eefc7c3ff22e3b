"""The compiled ReLU back-substitution step equals the plain one (nobound.bounds.kernels).

Every broadcasting case the back-substitution meets — coefficients shared by the sides
(S = 1) or not, by the batch (B' = 1) or not; slopes shared by the rows or one per row
(windows, alpha-CROWN), members P' ∈ {1, P} — in float32 and float64, with exact zeros in
A (the sign choice at 0) — must give the plain step's coefficients exactly (the same
products) and its intercepts to round-off (another summation order).
"""

from __future__ import annotations

import numpy as np
import pytest

import nobound.bounds.deeppoly as deeppoly
from nobound.autodiff.tensor import Tensor, no_grad
from nobound.bounds.kernels import fused_relu_back_step
from nobound.bounds.rows import ReluLines
from nobound.testing.bound_results import assert_same_bounds

pytest.importorskip("numba")


def plain_step(A, a, lines, ndim, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(deeppoly, "fused_relu_back_step", lambda *args: None)
        return deeppoly.relu_back_step(A, a, lines, ndim)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sides, shared_batch, per_row, members",
                         [(1, True, False, 1), (2, False, False, 1), (1, False, True, 2),
                          (2, True, True, 3), (2, False, False, 3)])
def test_fused_step_equals_the_plain_step(dtype, sides, shared_batch, per_row, members,
                                          monkeypatch):
    rng = np.random.default_rng(sides * 10 + members)
    batch, rows, shape = 3, 13, (8, 12, 14)  # above the compiled-pass minimum size
    A = rng.standard_normal((members, sides, 1 if shared_batch else batch, rows, *shape))
    A[rng.uniform(size=A.shape) < 0.1] = 0.0  # the sign choice at exactly 0
    A = Tensor(A.astype(dtype))  # noqa: N806

    def line(rows_axis):
        return Tensor(rng.uniform(0, 1, (members, 1, batch, rows_axis, *shape)).astype(dtype))

    lines = ReluLines({"lower": line(rows if per_row else 1), "upper": line(rows if per_row
                                                                            else 1)},
                      line(1), line(1))
    a = Tensor(rng.standard_normal((members, 2, batch, rows)).astype(dtype))
    with no_grad():
        fused = fused_relu_back_step(A, a, lines, len(shape))
        plain = plain_step(A, a, lines, len(shape), monkeypatch)
    assert fused is not None
    assert fused[0].shape == plain[0].shape and fused[1].shape == plain[1].shape
    np.testing.assert_array_equal(fused[0].data, plain[0].data)
    tolerance = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(fused[1].data, plain[1].data, rtol=tolerance, atol=tolerance)


def test_where_the_fused_step_does_not_apply(monkeypatch):
    """Another activation's lines (a lower intercept) and a run without Numba keep the
    plain path; recorded gradients no longer do (tests/bounds/test_fused_gradients.py)."""
    import nobound.bounds.kernels as kernels

    A = Tensor(np.ones((1, 1, 1, 2, 20000)), requires_grad=True)  # noqa: N806
    one = Tensor(np.ones((1, 1, 1, 1, 20000)))
    lines = ReluLines({"lower": one, "upper": one}, one, one)
    assert fused_relu_back_step(A, None, lines, 1) is not None
    assert fused_relu_back_step(A, None, ReluLines({"lower": one, "upper": one}, one, one,
                                                   one), 1) is None
    monkeypatch.setattr(kernels, "numba_kernels", lambda module: None)
    assert fused_relu_back_step(A, None, lines, 1) is None


@pytest.mark.parametrize("plan", ["always", "never"])
def test_compiled_paths_give_the_plain_bounds(plan, monkeypatch):
    """Whole DeepPoly and alpha-CROWN runs, windows included (their ReLU steps and eq. 2
    read the maps at each window), with a population: compiled = plain to round-off."""
    import nobound.bounds.kernels as kernels
    from nobound.bounds import BoundsPlan, compute_bounds, linf_ball, margin_spec
    from nobound.nn.zoo import conv_net
    from nobound.testing.strategies import randomise

    model = conv_net((2, 12, 12), 4, [(6, 3, 1, 1), (8, 4, 2, 2), (5, 3, 2, 1)], [],
                     dtype=np.float64)
    randomise(model, 11, 1.0, 0.5)
    rng = np.random.default_rng(3)
    params = {name: Tensor(np.stack([p.data * rng.uniform(0.8, 1.2, p.shape) for _ in
                                     range(2)])) for name, p in model.named_parameters()}
    region = linf_ball(Tensor(rng.uniform(0, 1, (3, 2, 12, 12))), 0.1)
    spec = margin_spec(rng.integers(0, 4, 3), 4)
    results = {}
    for name in ("compiled", "plain"):
        with monkeypatch.context() as patch:
            if name == "plain":
                patch.setattr(kernels, "numba_kernels", lambda module: None)
            with no_grad():
                results[name] = [compute_bounds(model, region, method=method, spec=spec,
                                                params=params, alpha_steps=2,
                                                plan=BoundsPlan(patches=plan))
                                 for method in ("deeppoly", "alpha-crown")]
    for compiled, plain in zip(results["compiled"], results["plain"], strict=True):
        assert_same_bounds(compiled, plain, rtol=1e-10, atol=1e-10)
