"""The rigorous checker on Sigmoid, Tanh and MaxPool layers (nobound/certify/checker_layers).

Every claim is compared with high-precision arithmetic (mpmath at 200 bits: the floats'
products and sums are exact or within 2⁻¹⁹⁰ of it), never with float64 and a tolerance:
the enclosures of σ and tanh contain the real values, every line holds at the box ends, at
0, at the tangent points and inside, every bound of every layer contains the real
pre-activations at box vertices and inside, and a leaf is accepted only when no sampled
point contradicts it. The lines are also as tight as the certifier's own (so that what
DeepPoly proves, the checker confirms), and proofs that are wrong or about another network
are rejected.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

mpmath = pytest.importorskip("mpmath")

from nobound.autodiff.tensor import Tensor, no_grad  # noqa: E402
from nobound.bounds import Box, compute_bounds  # noqa: E402
from nobound.bounds.activations import SigmoidStep, TanhStep  # noqa: E402
from nobound.certify.certificate import LeafProof, ProblemCertificate, TreeNode  # noqa: E402
from nobound.certify.checker import (  # noqa: E402
    CheckedNetwork,
    check_proofs,
    checked_network,
    layer_relaxation,
    leaf_value,
    node_bounds,
)
from nobound.certify.checker_layers import SHAPES, max_pool_windows  # noqa: E402
from nobound.certify.rounding import sigmoid_enclosure, tanh_enclosure  # noqa: E402
from nobound.certify.stored_network import stored_network  # noqa: E402
from nobound.nn import (  # noqa: E402
    Conv2d,
    Flatten,
    Linear,
    MaxPool2d,
    ReLU,
    Sequential,
    Sigmoid,
    Tanh,
)

mpmath.mp.prec = 200
EXACT = {"sigmoid": lambda x: 1 / (1 + mpmath.exp(-x)), "tanh": mpmath.tanh,
         "relu": lambda x: max(x, mpmath.mpf(0))}
ACTIVATIONS = {"sigmoid": Sigmoid, "tanh": Tanh, "relu": ReLU}


def mp(x: float) -> mpmath.mpf:
    return mpmath.mpf(float(x))


finite = st.floats(-1e300, 1e300, allow_nan=False, allow_subnormal=True)
moderate = st.floats(-40.0, 40.0, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(finite, moderate), min_size=1, max_size=8))
def test_enclosures_contain_the_real_values(values: list[float]) -> None:
    x = np.array(values)
    for kind, enclose in (("sigmoid", sigmoid_enclosure), ("tanh", tanh_enclosure)):
        low, high = enclose(x)
        for v, lo, hi in zip(x, low, high, strict=True):
            exact = EXACT[kind](mp(v))
            assert mp(lo) <= exact <= mp(hi), (kind, v, lo, hi)
            # and tight: a few float steps wide, or 10⁻³⁸ (tanh near 0 loses digits to
            # the cancellation in 1 − 2/(1 + e^{2x}) at 40 digits)
            assert hi - lo <= 4 * np.spacing(max(abs(lo), abs(hi))) + 1e-38


def test_enclosures_at_special_points() -> None:
    low, high = sigmoid_enclosure(np.array([0.0, -np.inf, np.inf]))
    assert low[0] < 0.5 < high[0] and low[1] <= 0 <= high[1] and low[2] <= 1 <= high[2]
    low, high = tanh_enclosure(np.array([0.0, 1e-300]))
    assert low[0] <= 0 <= high[0] and low[1] <= 1e-300 <= high[1]
    assert np.isnan(sigmoid_enclosure(np.array([np.nan]))[0][0])


@st.composite
def boxes(draw: st.DrawFn) -> tuple[float, float]:
    """Boxes in the convex part, the concave part, across 0, wide, narrow, or a point."""
    kind = draw(st.sampled_from(["convex", "concave", "mixed", "point", "tiny"]))
    a = draw(st.floats(0.0, 12.0))
    b = draw(st.floats(0.0, 12.0))
    if kind == "convex":
        return -max(a, b), -min(a, b)
    if kind == "concave":
        return min(a, b), max(a, b)
    if kind == "mixed":
        return -a - 1e-3, b + 1e-3
    if kind == "point":
        return a - 6.0, a - 6.0
    return a - 6.0, a - 6.0 + 1e-9


def check_lines(kind: str, lines, lower: float, upper: float, extra: list[float]) -> None:
    f = EXACT[kind]
    points = [lower, upper, 0.0, *extra, *np.linspace(lower, upper, 25)]
    for x in points:
        if not lower <= x <= upper:
            continue
        value = f(mp(x))
        below = mp(lines.lower_slope[0]) * mp(x) + mp(lines.lower_intercept[0])
        above = mp(lines.upper_slope[0]) * mp(x) + mp(lines.upper_intercept[0])
        assert below <= value <= above, (kind, lower, upper, x)


@settings(max_examples=80, deadline=None)
@given(boxes(), st.sampled_from(["sigmoid", "tanh"]))
def test_s_shape_lines_hold_in_real_arithmetic(box: tuple[float, float], kind: str) -> None:
    lower, upper = box
    shape = SHAPES[kind]
    lines = shape.lines((np.array([lower]), np.array([upper])))
    # the tangent points of the two slopes, where the lines come closest to f
    extra = [float(sign * shape.tangent_point(s)[0]) for s in (lines.lower_slope,
                                                                 lines.upper_slope)
             for sign in (1.0, -1.0)]
    check_lines(kind, lines, lower, upper, [x for x in extra if np.isfinite(x)])


@settings(max_examples=40, deadline=None)
@given(boxes(), st.sampled_from(["sigmoid", "tanh"]),
       st.floats(-0.5, 1.5), st.floats(-0.5, 1.5))
def test_any_slope_gets_a_sound_intercept(box: tuple[float, float], kind: str,
                                          low_factor: float, high_factor: float) -> None:
    """Soundness does not rest on the slope choice: arbitrary slopes are sound too."""
    lower, upper = box
    shape = SHAPES[kind]
    l, u = np.array([lower]), np.array([upper])  # noqa: E741
    top = shape.approx_slope(np.zeros(1))
    slopes = (top * low_factor, top * high_factor)
    from nobound.certify.checker_layers import Lines
    lines = Lines(slopes[0], shape._extremum(l, u, slopes[0], lowest=True),
                  slopes[1], shape._extremum(l, u, slopes[1], lowest=False),
                  shape.interval((l, u)))
    check_lines(kind, lines, lower, upper, [])


@pytest.mark.parametrize("kind, step", [("sigmoid", SigmoidStep), ("tanh", TanhStep)])
def test_checker_lines_are_the_certifiers(kind: str, step: type) -> None:
    """The checker's own lines match the certifier's (to rounding), so what the certifier's
    DeepPoly proves the checker can confirm."""
    rng = np.random.default_rng(1)
    lower = rng.uniform(-8, 4, 300)
    upper = lower + rng.exponential(3, 300)
    ours = SHAPES[kind].lines((lower, upper))
    theirs = step(0, (300,)).relax(Tensor(lower), Tensor(upper))

    def gap(slope: np.ndarray, intercept: np.ndarray, other_slope: np.ndarray,
            other_intercept: np.ndarray) -> float:  # largest distance over the two ends
        return float(np.max(np.abs([(slope - other_slope) * x + intercept - other_intercept
                                    for x in (lower, upper)])))

    data = {name: np.asarray(getattr(theirs, name).data).reshape(-1)
            for name in ("lower_slope", "lower_intercept", "upper_slope", "upper_intercept")}
    assert gap(ours.lower_slope, ours.lower_intercept, data["lower_slope"],
               data["lower_intercept"]) < 1e-9
    assert gap(ours.upper_slope, ours.upper_intercept, data["upper_slope"],
               data["upper_intercept"]) < 1e-9


def random_network(rng: np.random.Generator, scale: float, convolutional: bool,
                   acts: list[str]) -> tuple[Sequential, tuple[int, ...]]:
    if convolutional:
        kernel = int(rng.integers(2, 4))
        stride = int(rng.integers(1, kernel + 1))
        padding = int(rng.integers(0, kernel // 2 + 1))
        conv = Conv2d(1, 2, 2, 1, 0, dtype=np.float64)
        pool = MaxPool2d(kernel, stride, padding)
        shape = pool.output_shape(conv.output_shape((1, 5, 5)))
        before = [ACTIVATIONS[acts[0]]()] if acts[0] != "relu" or rng.random() < 0.5 else []
        after = [ACTIVATIONS[acts[1]]()] if rng.random() < 0.5 else []
        layers = [conv, *before, pool, *after, Flatten(),
                  Linear(int(np.prod(shape)), 3, dtype=np.float64)]
        input_shape: tuple[int, ...] = (1, 5, 5)
    else:
        sizes = [3, 5, 4]
        layers = []
        for n_in, n_out, act in zip(sizes, sizes[1:], acts, strict=False):
            layers += [Linear(n_in, n_out, dtype=np.float64), ACTIVATIONS[act]()]
        layers.append(Linear(sizes[-1], 3, dtype=np.float64))
        input_shape = (3,)
    model = Sequential(*layers)
    for layer in model.layers:
        if isinstance(layer, Linear | Conv2d):
            layer.weight.data = rng.normal(size=layer.weight.shape) * scale
            layer.bias.data = rng.normal(size=layer.bias.shape) * scale
    return model.eval(), input_shape


def exact_forward(net: CheckedNetwork, x: np.ndarray) -> list[list[mpmath.mpf]]:
    """Every hidden pre-activation z_k and the output, in 200-bit arithmetic."""
    values = [mp(v) for v in x.reshape(-1)]
    layers = []
    for k, (weight, bias) in enumerate(zip(net.weights, net.biases, strict=True)):
        z = [mpmath.fsum(mp(w) * v for w, v in zip(row, values, strict=True)) + mp(b)
             for row, b in zip(weight, bias, strict=True)]
        layers.append(z)
        if k == len(net.weights) - 1:
            break
        values = z
        for operation in net.activations[k]:
            if hasattr(operation, "windows"):
                values = [max(values[i] for i in window if i >= 0)
                          for window in operation.windows]
            else:
                values = [EXACT[operation.kind](v) for v in values]
    return layers


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([0.5, 1.5]), st.booleans(),
       st.lists(st.sampled_from(sorted(ACTIVATIONS)), min_size=2, max_size=2))
def test_node_bounds_and_leaf_values_hold_at_vertices_and_inside(seed: int, scale: float,
                                                                 convolutional: bool,
                                                                 acts: list[str]) -> None:
    rng = np.random.default_rng(seed)
    model, shape = random_network(rng, scale, convolutional, acts)
    if not any(isinstance(layer, Sigmoid | Tanh | MaxPool2d) for layer in model.layers):
        model = Sequential(*model.layers[:1], Sigmoid(), *model.layers[1:]) \
            if not convolutional else model
    net = checked_network(model, shape)
    center = rng.uniform(-1, 1, size=shape)
    radius = rng.uniform(0.0, 0.4)
    box = ((center - radius).reshape(-1), (center + radius).reshape(-1))
    bounds = node_bounds(net, box, [np.zeros(n, np.int8) for n in net.hidden_sizes], None)
    spec = rng.normal(size=(2, 3))
    weights = np.array([0.3, 0.7])
    value = leaf_value(net, box, bounds, spec, np.zeros(2), weights)
    size = box[0].size
    points = [np.where(rng.random(size) < 0.5, box[0], box[1]) for _ in range(6)]
    points += [rng.uniform(box[0], box[1]) for _ in range(4)]
    for x in points:
        layers = exact_forward(net, x)
        for (lower, upper), z in zip(bounds, layers, strict=False):
            for lo, v, hi in zip(lower, z, upper, strict=True):
                assert mp(lo) <= v <= mp(hi)
        output = layers[-1]
        objective = mpmath.fsum(mp(w) * mpmath.fsum(mp(c) * y for c, y in
                                                    zip(row, output, strict=True))
                                for w, row in zip(weights, spec, strict=True))
        assert mp(value) <= objective
    # and the model the checker reads is the model: its float forward agrees
    with no_grad():
        y = model(Tensor(points[0].reshape(1, *shape))).data[0]
    assert np.allclose([float(v) for v in exact_forward(net, points[0])[-1]], y,
                       rtol=1e-12, atol=1e-12)


def sigmoid_problem(seed: int = 3) -> tuple[Sequential, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    model = Sequential(Linear(3, 6, dtype=np.float64), Sigmoid(),
                       Linear(6, 5, dtype=np.float64), Tanh(), Linear(5, 2, dtype=np.float64))
    for layer in model.layers:
        if isinstance(layer, Linear):
            layer.weight.data = rng.normal(size=layer.weight.shape)
            layer.bias.data = rng.normal(size=layer.bias.shape)
    x = rng.uniform(-1, 1, 3)
    return model.eval(), x - 0.05, x + 0.05, np.array([[1.0, -1.0]])


def leaf_certificate(lower: np.ndarray, upper: np.ndarray, spec: np.ndarray,
                     offset: float, bound: float, nodes: list[TreeNode] | None = None
                     ) -> ProblemCertificate:
    nodes = nodes or [TreeNode(proof=LeafProof([1.0], [], bound, "deeppoly"))]
    return ProblemCertificate(lower.tolist(), upper.tolist(), spec.tolist(), [offset], nodes)


def test_a_deeppoly_proof_on_an_s_shaped_network_is_confirmed_and_a_tampered_one_not() -> None:
    model, lower, upper, spec = sigmoid_problem()
    with no_grad():
        result = compute_bounds(model, Box(Tensor(lower[None]), Tensor(upper[None])),
                                method="deeppoly", spec=spec[None])
        lowest = float(result.lower.data.reshape(-1)[0])
        # the smallest value over a grid of the box: the property's real margin is below it
        grid = np.stack(np.meshgrid(*[np.linspace(a, b, 9) for a, b in
                                      zip(lower, upper, strict=True)]), -1).reshape(-1, 3)
        sampled = float(np.min(model(Tensor(grid)).data @ spec[0]))
    assert lowest < sampled
    net = checked_network(model, (3,))
    # a true property: spec·y − (lowest − 0.01) > 0 on the box, as DeepPoly proves
    offset = -(lowest - 0.01)
    proof = leaf_certificate(lower, upper, spec, offset, 0.01)
    report = check_proofs(net, [proof])
    assert report.valid, report.errors
    # tampered: an offset beyond what any point attains (a sampled point breaks it)
    false_claim = leaf_certificate(lower, upper, spec, -(sampled + 0.01), 0.01)
    assert not check_proofs(net, [false_claim]).valid
    # tampered: the box of the proof widened
    wide = leaf_certificate(lower - 1.0, upper + 1.0, spec, offset, 0.01)
    assert not check_proofs(net, [wide]).valid
    # tampered: another network (weights changed) does not take the proof
    other = sigmoid_problem(seed=4)[0]
    assert not check_proofs(checked_network(other, (3,)), [proof]).valid


def test_splits_and_slopes_on_s_shaped_layers_are_rejected() -> None:
    model, lower, upper, spec = sigmoid_problem()
    net = checked_network(model, (3,))
    split = [TreeNode(split=(0, 1), children=(1, 2)),
             TreeNode(proof=LeafProof([1.0], [], 0.0, "deeppoly")),
             TreeNode(proof=LeafProof([1.0], [], 0.0, "deeppoly"))]
    report = check_proofs(net, [leaf_certificate(lower, upper, spec, 100.0, 0.0, split)])
    assert not report.valid and "not on a ReLU layer" in report.errors[0]
    # an S-shape layer records two slopes per neuron (lower lines', upper lines'): one
    # number per neuron, as for a ReLU, or a slope that is not finite is malformed
    for recorded in ([0.5] * 6, [0.1] * 11 + [np.inf]):
        alphas = [TreeNode(proof=LeafProof([1.0], [], 0.0, "deeppoly", [recorded, []]))]
        report = check_proofs(net, [leaf_certificate(lower, upper, spec, 100.0, 0.0, alphas)])
        assert not report.valid and "two finite slopes" in report.errors[0]


def s_shape_slopes_problem() -> tuple:
    """A Sigmoid net and a property alpha-CROWN proves on the whole box and DeepPoly does
    not: (model, lower, upper, spec, offset, alpha-CROWN's slopes per hidden layer)."""
    rng = np.random.default_rng(11)
    model = Sequential(Linear(3, 8, dtype=np.float64), Sigmoid(), Linear(8, 8, dtype=np.float64),
                       Sigmoid(), Linear(8, 2, dtype=np.float64))
    for layer in model.layers:
        if isinstance(layer, Linear):
            layer.weight.data = rng.normal(size=layer.weight.shape) * 2.0
            layer.bias.data = rng.normal(size=layer.bias.shape)
    x = rng.uniform(-1, 1, 3)
    lower, upper, spec = x - 0.4, x + 0.4, np.array([[1.0, -1.0]])
    box = Box(Tensor(lower[None]), Tensor(upper[None]))
    with no_grad():
        deeppoly = float(compute_bounds(model.eval(), box, method="deeppoly",
                                        spec=spec[None]).lower.data.ravel()[0])
        alpha = compute_bounds(model, box, method="alpha-crown", spec=spec[None])
    value = float(alpha.lower.data.ravel()[0])
    assert value > deeppoly + 0.01
    offset = -(deeppoly + value) / 2   # proved by alpha-CROWN's bound, not by DeepPoly's
    slopes = [np.concatenate([alpha.tangent_slopes[i][0].data.ravel(),
                              alpha.tangent_slopes[i][1].data.ravel()]).tolist()
              for i in (1, 3)]
    return model, lower, upper, spec, offset, slopes


def test_recorded_s_shape_slopes_prove_what_deeppoly_cannot_and_garbage_slopes_nothing(
        ) -> None:
    # the checker derives a rigorous intercept for any finite slope: alpha-CROWN's slopes
    # confirm its proof; without them DeepPoly's lines do not; random slopes never prove
    # a claim that a sampled point breaks
    model, lower, upper, spec, offset, slopes = s_shape_slopes_problem()
    net = checked_network(model, (3,))

    def certificate(recorded: list, claim: float) -> ProblemCertificate:
        leaf = [TreeNode(proof=LeafProof([1.0], [], 0.0, "alpha-crown", recorded))]
        return leaf_certificate(lower, upper, spec, claim, 0.0, leaf)

    assert check_proofs(net, [certificate(slopes, offset)]).valid
    assert not check_proofs(net, [certificate([], offset)]).valid
    rng = np.random.default_rng(0)
    grid = rng.uniform(lower, upper, size=(4000, 3))
    with no_grad():
        sampled = float(np.min(model(Tensor(grid)).data @ spec[0]))
    for _ in range(20):
        garbage = [rng.normal(scale=rng.choice([0.01, 0.3, 5.0]), size=len(s)).tolist()
                   for s in slopes]
        assert not check_proofs(net, [certificate(garbage, -(sampled + 1e-3))]).valid


def test_max_pool_network_exact_on_a_decided_window() -> None:
    """One window whose winner is decided: the checker's bound is exact (to rounding)."""
    model = Sequential(MaxPool2d(2), Flatten(), Linear(1, 1, dtype=np.float64))
    model.layers[2].weight.data = np.array([[-1.0]])
    model.layers[2].bias.data = np.array([0.0])
    lower = np.array([[[2.0, 0.0], [0.5, -1.0]]])
    upper = np.array([[[3.0, 1.5], [1.0, 2.0]]])
    net = checked_network(model, (1, 2, 2))
    box = (lower.reshape(-1), upper.reshape(-1))
    bounds = node_bounds(net, box, [np.zeros(n, np.int8) for n in net.hidden_sizes], None)
    value = leaf_value(net, box, bounds, np.array([[1.0]]), np.zeros(1), np.ones(1))
    assert value <= -3.0 and value > -3.0 - 1e-12     # min of −max(x) = −3, at x₀ = 3


def test_checked_network_keeps_relu_networks_and_chains_activations() -> None:
    relu = Sequential(Linear(2, 3, dtype=np.float64), ReLU(), Linear(3, 1, dtype=np.float64))
    assert type(checked_network(relu, (2,))) is type(stored_network(relu, (2,)))
    model = Sequential(Conv2d(1, 2, 2, dtype=np.float64), ReLU(), MaxPool2d(2), Sigmoid(),
                       Flatten(), Linear(8, 2, dtype=np.float64))
    net = checked_network(model, (1, 5, 5))
    assert [len(chain) for chain in net.activations] == [3]
    assert net.weights[0].shape == (32, 25) and net.weights[1].shape == (2, 8)
    flat = Sequential(Conv2d(1, 1, 2, dtype=np.float64), MaxPool2d(2), Flatten(), Sigmoid(),
                      Linear(4, 1, dtype=np.float64))
    assert [len(chain) for chain in checked_network(flat, (1, 5, 5)).activations] == [2]
    windows = max_pool_windows(3, 2, 1, (1, 4, 4)).windows
    assert windows.shape == (4, 9) and np.sum(windows < 0) == 5 + 3 + 3 + 0  # padding


def pooled_network(seed: int) -> tuple[Sequential, tuple[int, ...]]:
    """Conv/ReLU/MaxPool/S-shape stacks in the orders exporters write them."""
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 4))
    pool = MaxPool2d(k, int(rng.integers(1, k + 1)), int(rng.integers(0, k // 2 + 1)))
    stacks = [([Conv2d(1, 3, 2, dtype=np.float64), ReLU(), pool], (1, 6, 6)),
              ([Conv2d(1, 3, 2, dtype=np.float64), ReLU(), Conv2d(3, 3, 2, dtype=np.float64),
                ReLU(), pool], (1, 7, 7)),
              ([Conv2d(1, 3, 2, dtype=np.float64), pool, ReLU()], (1, 6, 6)),
              ([Conv2d(1, 3, 2, dtype=np.float64), Sigmoid(), pool,
                Conv2d(3, 2, 2, dtype=np.float64), Tanh()], (1, 7, 7))]
    layers, shape = stacks[seed % len(stacks)]
    with no_grad():
        size = int(np.prod(Sequential(*layers)(Tensor(np.zeros((1, *shape)))).shape[1:]))
    model = Sequential(*layers, Flatten(), Linear(size, 3, dtype=np.float64))
    for layer in model.layers:
        if isinstance(layer, Linear | Conv2d):
            layer.weight.data = rng.normal(size=layer.weight.shape)
            layer.bias.data = rng.normal(size=layer.bias.shape) * 0.3
    return model.eval(), shape


@pytest.mark.parametrize("seed", range(8))
def test_the_checker_reproduces_deeppoly_on_pooling_and_s_shapes(seed: int) -> None:
    """A certificate's DeepPoly bound must be re-derived (to 1e-6 relative) or the
    certificate is refused: the checker's choices (max-pool winners after a ReLU, S-shape
    lines) follow the certifier's."""
    model, shape = pooled_network(seed)
    rng = np.random.default_rng(100 + seed)
    x = rng.uniform(size=shape)
    lower, upper = x - 0.05, x + 0.05
    spec = rng.normal(size=(1, 3))
    with no_grad():
        result = compute_bounds(model, Box(Tensor(lower[None]), Tensor(upper[None])),
                                method="deeppoly", spec=spec[None])
    deeppoly = float(np.asarray(result.lower.data).reshape(-1)[0])
    net = checked_network(model, shape)
    box = (lower.reshape(-1), upper.reshape(-1))
    bounds = node_bounds(net, box, [np.zeros(n, np.int8) for n in net.hidden_sizes], None)
    value = leaf_value(net, box, bounds, spec, np.zeros(1), np.ones(1))
    assert value >= deeppoly - 1e-9 * max(1.0, abs(deeppoly))


def test_a_certificate_of_a_max_pool_network_checks() -> None:
    from dataclasses import replace

    from nobound.certify.checker import check_certificate
    from nobound.certify.pipeline import Certifier, CertifierConfig
    from nobound.certify.problem import VerificationProblem

    model, shape = pooled_network(0)
    x = np.random.default_rng(7).uniform(size=shape)
    with no_grad():
        label = int(np.argmax(model(Tensor(x[None])).data))
    rows = np.eye(3)[[label]] - np.eye(3)[[i for i in range(3) if i != label]]
    problems = [VerificationProblem(model, x - 0.002, x + 0.002, row[None], np.zeros(1))
                for row in rows]   # unsafe: y_label − y_j ≤ 0 for some other class j
    config = replace(CertifierConfig(), timeout=60.0, bab=False, certificate=True)
    verdict = Certifier(model, shape, config).verify(problems)
    assert verdict.status == "certified", verdict.reason
    report = check_certificate(model, verdict.certificate)
    assert report.valid, report.errors


def test_max_pool_after_relu_picks_the_winner_the_certifier_picks() -> None:
    """Inputs x₀ ∈ [−1, 2] (ReLU lower line x), x₁ ∈ [−2, 1] (lower line 0), x₂, x₃ dead:
    the ReLU outputs all have lower bound 0, but only x₁'s lower line is 0 everywhere.
    DeepPoly picks x₁ and proves y + 0.5 > 0; a checker picking x₀ would get −0.5."""
    conv = Conv2d(1, 1, 1, dtype=np.float64)
    conv.weight.data = np.ones((1, 1, 1, 1))
    conv.bias.data = np.zeros(1)
    model = Sequential(conv, ReLU(), MaxPool2d(2), Flatten(), Linear(1, 1, dtype=np.float64))
    model.layers[4].weight.data = np.ones((1, 1))
    model.layers[4].bias.data = np.zeros(1)
    lower = np.array([[[-1.0, -2.0], [-3.0, -3.0]]])
    upper = np.array([[[2.0, 1.0], [-2.0, -2.0]]])
    with no_grad():
        result = compute_bounds(model.eval(), Box(Tensor(lower[None]), Tensor(upper[None])),
                                method="deeppoly", spec=np.ones((1, 1, 1)))
    assert float(np.asarray(result.lower.data).reshape(-1)[0]) == 0.0
    net = checked_network(model, (1, 2, 2))
    box = (lower.reshape(-1), upper.reshape(-1))
    bounds = node_bounds(net, box, [np.zeros(n, np.int8) for n in net.hidden_sizes], None)
    value = leaf_value(net, box, bounds, np.ones((1, 1)), np.array([0.5]), np.ones(1))
    assert 0.5 - 1e-12 < value <= 0.5   # (IBP's 0 also gives it here)
    relu, pool = layer_relaxation(net, 0, bounds[0])
    assert list(pool.winner_input) == [1] and not pool.decided[0]
    rows, folded_error, constant = pool.back(np.ones((1, 1)), np.ones(4))
    assert list(rows[0]) == [0.0, 1.0, 0.0, 0.0] and not np.any(folded_error)
    assert -1e-300 < constant[0] <= 0.0   # no negative coefficient: only error terms


def test_the_certifier_records_alpha_crowns_s_shape_slopes_and_the_check_confirms_them(
        ) -> None:
    # the property of s_shape_slopes_problem through Certifier.verify: DeepPoly's bound
    # does not prove it, alpha-CROWN's does, and its whole-box proof (with the slopes it
    # records) passes the rigorous check; without recording it would be refused
    from dataclasses import replace

    from nobound.certify.pipeline import Certifier, CertifierConfig
    from nobound.certify.problem import VerificationProblem

    model, lower, upper, spec, offset, _ = s_shape_slopes_problem()
    problem = VerificationProblem(model, lower, upper, spec, np.array([offset]))
    config = replace(CertifierConfig(), timeout=60.0, bab=False,
                     methods=("ibp", "deeppoly", "alpha-crown"))
    verdict = Certifier(model, (3,), config).verify([problem])
    assert verdict.status == "certified" and verdict.method == "alpha-crown", verdict.reason
    config = replace(config, methods=("ibp", "deeppoly"))
    assert Certifier(model, (3,), config).verify([problem]).status == "unknown"
