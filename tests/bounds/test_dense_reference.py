"""The fast DeepPoly (windows, unstable rows only, chunks, members) equals the dense reference.

:func:`nobound.bounds.reference.dense_deeppoly` back-substitutes every neuron with explicit
matrices and takes no shortcut. Every execution plan of ``compute_bounds`` must give its
output bounds (1e-9 relative, float64), its intermediate bounds on every neuron the fast
path left unstable; on the others the fast path keeps the interval pre-check's bound (exact
relaxation whatever the bound), and the reference must find them stable too — true of
these networks, not of every one: the last test shows the pre-check proving stable a neuron
that eq. (4) alone leaves unstable.
"""

from __future__ import annotations

import numpy as np
import pytest

from nobound.autodiff.tensor import Tensor
from nobound.bounds import BoundsPlan, Box, compute_bounds, linf_ball, margin_spec
from nobound.bounds.reference import dense_deeppoly
from nobound.exact.dense import dense_network
from nobound.nn.zoo import conv_net, fc_net
from nobound.testing.strategies import randomise

RELATIVE = 1e-9
PLANS = {
    "default": BoundsPlan(),
    "windows": BoundsPlan(patches="always"),
    "dense maps": BoundsPlan(patches="never"),
    "every row": BoundsPlan(dense_fraction=0.0),
    "one row per chunk": BoundsPlan(memory_budget_bytes=1),
}


def networks():
    conv = conv_net((2, 9, 9), 4, [(3, 3, 1, 1), (4, 4, 2, 2), (2, 3, 2, 1)], [5],
                    batchnorm=True, normalize=([0.4, 0.5], [0.5, 0.25]), dtype=np.float64)
    randomise(conv, 3, 1.0, 0.5)
    conv.eval()
    fc = fc_net((1, 2, 3), 3, [7, 5, 4], dtype=np.float64)
    randomise(fc, 5, 1.0, 0.5)
    return {"conv": (conv, (2, 9, 9), 4), "fc": (fc, (1, 2, 3), 3)}


def close(actual, expected, what):
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=RELATIVE, atol=RELATIVE * scale,
                               err_msg=what)


@pytest.mark.parametrize("plan", list(PLANS))
@pytest.mark.parametrize("name", ["conv", "fc"])
def test_every_plan_gives_the_dense_reference_bounds(name, plan):
    model, shape, classes = networks()[name]
    rng = np.random.default_rng(7)
    region = linf_ball(Tensor(rng.uniform(0.0, 1.0, (3, *shape))), 0.15)
    spec = margin_spec(rng.integers(0, classes, 3), classes)
    result = compute_bounds(model, region, method="deeppoly", spec=spec, plan=PLANS[plan])
    net = dense_network(model, shape)
    lower, upper, hidden = dense_deeppoly(net, region.lower.data, region.upper.data, spec)
    close(result.lower.data, lower, "output lower bound")
    close(result.upper.data, upper, "output upper bound")
    unstable_somewhere = False
    for index, (low, high) in zip(net.relu_layers, hidden, strict=True):
        fast_low, fast_high = (b.data.reshape(len(low), -1) for b in result.intermediate[index])
        unstable = (fast_low < 0) & (fast_high > 0)
        unstable_somewhere |= bool(unstable.any())
        close(fast_low[unstable], low[unstable], f"lower bound of ReLU {index}")
        close(fast_high[unstable], high[unstable], f"upper bound of ReLU {index}")
        # on the others the fast path keeps the pre-check's bound; the reference must find
        # them stable too (else its relaxation, and the output bounds, would differ)
        assert not np.any(((low < 0) & (high > 0))[~unstable])
    assert unstable_somewhere  # the comparison covers relaxed neurons


def test_the_reference_catches_a_wrong_slope(monkeypatch):
    """The comparison has teeth: the reference with λ = 1 everywhere disagrees."""
    import nobound.bounds.reference as reference

    model, shape, classes = networks()["conv"]
    rng = np.random.default_rng(7)
    region = linf_ball(Tensor(rng.uniform(0.0, 1.0, (3, *shape))), 0.15)
    result = compute_bounds(model, region, method="deeppoly")
    honest = reference._relu_lines

    def always_one(low, high):
        lam, s, t = honest(low, high)
        return np.where((low < 0) & (high > 0), 1.0, lam), s, t

    monkeypatch.setattr(reference, "_relu_lines", always_one)
    lower, _, _ = dense_deeppoly(dense_network(model, shape), region.lower.data,
                                 region.upper.data)
    assert not np.allclose(result.lower.data, lower, rtol=RELATIVE, atol=RELATIVE)


def test_a_neuron_the_precheck_proves_stable_is_relaxed_exactly():
    """The one shortcut that can change a relaxation (nobound/bounds/deeppoly.py).

    f(x) = ReLU(z₂) − ReLU(z₂') + 10 with z₂ = ReLU(x), z₂' = ReLU(x) + 10 on x ∈ [−1, 2]:
    f ≡ 0. The interval pre-check gives z₂ ∈ [0, 2], stable; eq. (4) alone gives z₂ ≥ x
    ≥ −1 (the first ReLU's lower line is λ = 1), so the reference relaxes it (λ = 1,
    s = t = 2/3) and its upper bound is 1, by hand. nobound relaxes z₂ exactly: [0, 0]."""
    from nobound.nn import Flatten, Linear, ReLU, Sequential

    first, second, third = (Linear(1, 1, dtype=np.float64), Linear(1, 2, dtype=np.float64),
                            Linear(2, 1, dtype=np.float64))
    first.weight.data[...], first.bias.data[...] = [[1.0]], 0.0
    second.weight.data[...], second.bias.data[...] = [[1.0], [1.0]], [0.0, 10.0]
    third.weight.data[...], third.bias.data[...] = [[1.0, -1.0]], 10.0
    model = Sequential(Flatten(), first, ReLU(), second, ReLU(), third)
    lower, upper = np.array([[[[-1.0]]]]), np.array([[[[2.0]]]])
    result = compute_bounds(model, Box(Tensor(lower), Tensor(upper)), method="deeppoly")
    _, _, hidden = dense_deeppoly(dense_network(model, (1, 1, 1)), lower, upper)

    z2_low, z2_high = (b.data.reshape(-1) for b in result.intermediate[4])
    np.testing.assert_allclose([z2_low[0], z2_high[0]], [0.0, 2.0], atol=1e-15)
    np.testing.assert_allclose([hidden[1][0][0, 0], hidden[1][1][0, 0]], [-1.0, 2.0],
                               atol=1e-15)
    np.testing.assert_allclose([result.lower.data[0, 0], result.upper.data[0, 0]], [0.0, 0.0],
                               atol=1e-14)
    reference_low, reference_high, _ = dense_deeppoly(dense_network(model, (1, 1, 1)),
                                                      lower, upper)
    np.testing.assert_allclose([reference_low[0, 0], reference_high[0, 0]], [0.0, 1.0],
                               atol=1e-14)
    points = np.linspace(-1.0, 2.0, 61).reshape(-1, 1, 1, 1)
    values = model(Tensor(points)).data.reshape(-1)
    assert np.all(values >= result.lower.data[0, 0] - 1e-12)
    assert np.all(values <= result.upper.data[0, 0] + 1e-12)
