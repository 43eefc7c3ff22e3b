"""Ill-conditioned tiny networks and boxes whose exact answer is known: the verdict test.

A case is a network of one input, one or two hidden ReLU layers of 1–3 neurons and one
output, on an interval [lo, hi], with the question "is y(x) > 0 for every x in the box?"
(unsafe set y ≤ 0). Weights, biases and interval ends are drawn as m · 2^e with the
exponent e spread over many orders of magnitude (and a few near the limits of float32 and
float64), boxes can be a single point or span 2⁵³, and with probability ½ the output bias is
shifted so that the exact minimum is 0 — the hardest case for a prover.

The exact answer comes from rational arithmetic (:class:`fractions.Fraction` on the stored
floats): on one input the network is piecewise affine, so its minimum over [lo, hi] is
attained at an end or a breakpoint. :func:`exact_breakpoints` finds every breakpoint
layer by layer — on each piece between known breakpoints a neuron's pre-activation is
affine, so its zero there is found exactly by interpolation — and :func:`exact_minimum`
evaluates y at all of them.

    @given(case=ill_conditioned_cases())
    def test_no_wrong_verdict(case):
        verdict = Certifier(case.model(), (1,)).verify([case.problem()])
        ...  # certified ⇒ case.exact_minimum() > 0
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from hypothesis import strategies as st

from nobound.certify.problem import VerificationProblem
from nobound.nn.activation import ReLU
from nobound.nn.layers import Linear
from nobound.nn.sequential import Sequential

Exact = Fraction


@dataclass(frozen=True)
class IllConditionedCase:
    """weights[k] (n_{k+1}, n_k) and biases[k] as floats; the box [lower, upper]."""

    weights: tuple[tuple[tuple[float, ...], ...], ...]
    biases: tuple[tuple[float, ...], ...]
    lower: float
    upper: float

    def model(self, dtype: type = np.float64) -> Sequential:
        layers = []
        for k, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            if k:
                layers.append(ReLU())
            linear = Linear(len(weight[0]), len(weight), dtype=dtype)
            linear.weight.data = np.array(weight, dtype)
            linear.bias.data = np.array(bias, dtype)
            layers.append(linear)
        return Sequential(*layers).eval()

    def problem(self, model: Sequential | None = None) -> VerificationProblem:
        """Unsafe iff y ≤ 0, on the float64 model (``model`` replaces it)."""
        return VerificationProblem(model if model is not None else self.model(),
                                   np.array([self.lower]), np.array([self.upper]),
                                   np.array([[1.0]]), np.array([0.0]), name="y > 0")

    def exact_output(self, x: Exact) -> Exact:
        """y(x) in rational arithmetic on the stored floats."""
        values = [Exact(x)]
        for k, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            if k:
                values = [max(v, Exact(0)) for v in values]
            values = [sum((Exact(w) * v for w, v in zip(row, values, strict=True)), Exact(b))
                      for row, b in zip(weight, bias, strict=True)]
        return values[0]

    def exact_pre_activations(self, x: Exact) -> list[list[Exact]]:
        values, layers = [Exact(x)], []
        for k, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            if k:
                values = [max(v, Exact(0)) for v in values]
            values = [sum((Exact(w) * v for w, v in zip(row, values, strict=True)), Exact(b))
                      for row, b in zip(weight, bias, strict=True)]
            layers.append(values)
        return layers

    def exact_breakpoints(self) -> list[Exact]:
        """The box ends and every x in between where some ReLU input changes sign."""
        lower, upper = Exact(self.lower), Exact(self.upper)
        points = sorted({lower, upper})
        for k in range(len(self.weights) - 1):
            found = set(points)
            values = [self.exact_pre_activations(p)[k] for p in points]
            for i in range(len(points) - 1):
                (a, va), (b, vb) = (points[i], values[i]), (points[i + 1], values[i + 1])
                for neuron in range(len(va)):
                    if (va[neuron] < 0 < vb[neuron]) or (vb[neuron] < 0 < va[neuron]):
                        # affine between consecutive breakpoints of earlier layers
                        found.add(a + (b - a) * va[neuron] / (va[neuron] - vb[neuron]))
            points = sorted(found)
        return points

    def exact_minimum(self) -> Exact:
        return min(self.exact_output(p) for p in self.exact_breakpoints())


def _float_near_limits(draw: st.DrawFn) -> float:
    return draw(st.sampled_from([1e300, -1e300, 3.0e38, -3.0e38, 1e-300, -1e-300,
                                 1.2e-38, 2.0 ** -1074, 2.0 ** 53, 2.0 ** 53 + 2,
                                 -(2.0 ** 54 + 4), 2.0 ** 54 + 4]))


@st.composite
def wide_floats(draw: st.DrawFn, max_exponent: int = 60) -> float:
    """± m · 2^e: a mantissa with few or many bits, e over many orders of magnitude."""
    kind = draw(st.integers(0, 19))
    if kind == 0:
        return 0.0
    if kind == 1:
        return _float_near_limits(draw)
    bits = draw(st.sampled_from([1, 3, 12, 53]))
    mantissa = draw(st.integers(1, 2 ** bits - 1))
    exponent = draw(st.integers(-max_exponent, max_exponent)) - bits
    sign = draw(st.sampled_from([1.0, -1.0]))
    return sign * float(Exact(mantissa) * Exact(2) ** exponent)


@st.composite
def ill_conditioned_cases(draw: st.DrawFn) -> IllConditionedCase:
    """Tiny networks and boxes spanning many orders of magnitude (see the module doc)."""
    widths = [1] + draw(st.lists(st.integers(1, 3), min_size=1, max_size=2)) + [1]
    weights, biases = [], []
    for fan_in, fan_out in zip(widths, widths[1:], strict=False):
        weights.append(tuple(tuple(draw(wide_floats()) for _ in range(fan_in))
                             for _ in range(fan_out)))
        biases.append(tuple(draw(wide_floats()) for _ in range(fan_out)))
    ends = sorted([draw(wide_floats(max_exponent=56)), draw(wide_floats(max_exponent=56))])
    if draw(st.booleans()):
        ends = [ends[0], ends[0]]  # a single point
    case = IllConditionedCase(tuple(weights), tuple(biases), ends[0], ends[1])
    if draw(st.booleans()):
        # move the output bias so that the exact minimum is 0 (when the float allows it)
        try:
            shifted = float(Exact(biases[-1][0]) - case.exact_minimum())
        except OverflowError:  # beyond float64: keep the bias as drawn
            return case
        if np.isfinite(shifted):
            nudge = draw(st.sampled_from([0, 1, -1]))
            for _ in range(abs(nudge)):
                shifted = float(np.nextafter(shifted, np.inf * nudge))
            biases[-1] = (shifted,)
            case = IllConditionedCase(tuple(weights), tuple(biases), ends[0], ends[1])
    return case
