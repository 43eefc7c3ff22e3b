"""The activation layers the rigorous checker knows, each with a sound relaxation.

A hidden layer of the checked network is a chain of operations between two affine stages
(:mod:`nobound.certify.stored_network`): ReLU, Sigmoid, Tanh, MaxPool, in the model's
order (a ReLU followed by a MaxPool is one chain). Each operation, given rigorous bounds
[l, u] of its input, gives

* a rigorous **interval** of its output, and
* a **relaxation** that moves coefficient rows Λ on its output to rows on its input:
  Λ·op(x) ≥ Λ'*·x + c for every real x in [l, u], where Λ' is computed in floats and
  Λ'* is the real row it stands for; :meth:`back` returns Λ', c (rounded downward) and
  F ≥ Σ_j |Λ'* − Λ'|_j m_j for the magnitude m ≥ |x| it is given, so that
  Λ·op(x) ≥ Λ'·x + c − F (the error is folded into the constant, never formed).

Elementwise relaxations take bounds of any leading shape (a stack of leaves: (..., n)), and
coefficient rows (..., R, n) whose leading axes broadcast with theirs.

Elementwise operations are relaxed by two lines per neuron,
ls·x + li ≤ op(x) ≤ us·x + ui on [l, u], and the lines hold in real arithmetic:

* ReLU: DeepPoly's triangle (:func:`relu_lines`).
* Sigmoid, Tanh: the slopes are chosen in floats as DeepPoly/CROWN choose them (chord and
  tangent at the midpoint on a convex or concave box, CROWN's tangent through the far end
  on a box that contains 0); **any** slope is sound here, because the intercept is then
  computed rigorously as the extremum of f(x) − s·x over [l, u]: on the convex part
  (x ≤ 0) the maximum sits at an end, on the concave part (x ≥ 0) f lies below each of
  its tangents, f(x) ≤ f(d) + f′(d)(x − d), so for any d in the piece

      max f(x) − s x ≤ f(d) − s d + max over x of (f′(d) − s)(x − d)    on [a, b] ⊂ [0, ∞)

  (the last term is at most (f′(d) − s)⁺ (b − d) or (s − f′(d))⁺ (d − a)), with d the
  float point where f′ ≈ s clipped to [a, b] (tight when d is good or at the end that
  wins, sound for any d); the minimum mirrors it. The values f(·) are the correctly
  rounded enclosures of :mod:`nobound.certify.rounding` (NumPy's exp is not correctly
  rounded), f′ follows from them (σ′ = σ(1 − σ), tanh′ = 1 − tanh²) as an interval.
* MaxPool: DeepPoly's max relaxation. With j* the window input of largest lower bound,
  x_{j*} ≤ y ≤ max_i u_i, and y = x_{j*} exactly when l_{j*} ≥ u_i for every other i.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from nobound.certify.rounding import (
    SMALLEST_SUBNORMAL,
    down,
    gamma_factor,
    lower_rows,
    product_error_rows,
    sigmoid_enclosure,
    tanh_enclosure,
    up,
    upper_rows,
)

Interval = tuple[np.ndarray, np.ndarray]


def magnitude(bounds: Interval) -> np.ndarray:
    """max |x| over [l, u], elementwise."""
    return np.maximum(np.abs(bounds[0]), np.abs(bounds[1]))


# ------------------------------------------------------------------ elementwise lines
@dataclass
class Lines:
    """ls·x + li ≤ op(x) ≤ us·x + ui for real x in ``inputs`` (``outputs``: op's interval)."""

    lower_slope: np.ndarray
    lower_intercept: np.ndarray
    upper_slope: np.ndarray
    upper_intercept: np.ndarray
    outputs: Interval
    relu: bool = False   # a ReLU's triangle: recorded α may replace its lower slopes
    # an S-shape's lines with other (recorded) slopes, each with its rigorous intercept
    reslope: Callable[[np.ndarray, np.ndarray], Lines] | None = None
    # a ReLU's min of α x over [l, u] (α ∈ {0, 1}): the lower bounds of its outputs as a
    # back-substitution through the lower line sees them — a max pool after the ReLU picks
    # its winners with them, as the certifier does (looser than 0, still true bounds)
    lower_line_minimum: np.ndarray | None = None

    def back(self, rows: np.ndarray, inputs: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(Λ', F, c): Λ·op(x) ≥ Λ'·x + c − F for real x in the inputs' bounds, where
        ``inputs`` ≥ |x| (Λ exact floats, rows (..., R, n))."""
        positive, negative = np.maximum(rows, 0), np.minimum(rows, 0)
        constant = lower_rows(negative, self.upper_intercept)
        if not self.relu:   # a ReLU's lower lines pass through 0
            constant = down(constant + lower_rows(positive, self.lower_intercept))
        # one of the two products is zero: each entry is one rounded product, off by at
        # most product_error (2u|Λ'| + η), folded with |x| ≤ inputs
        moved = positive * self.lower_slope[..., None, :] + \
            negative * self.upper_slope[..., None, :]
        return moved, product_error_rows(moved, inputs), constant

    def with_lower_slopes(self, slopes: np.ndarray) -> Lines:
        """The ReLU's lines with other lower slopes on its unstable neurons (any α in
        [0, 1] gives α x ≤ ReLU(x); stable neurons keep their exact slopes). A nan slope
        keeps DeepPoly's (a leaf of a stack that records no α there)."""
        unstable = (self.upper_intercept > 0) & ~np.isnan(slopes)  # relaxed by a triangle
        return Lines(np.where(unstable, slopes, self.lower_slope), self.lower_intercept,
                     self.upper_slope, self.upper_intercept, self.outputs, self.relu)


def relu_lines(bounds: Interval) -> Lines:
    """DeepPoly's ReLU triangle: α x ≤ ReLU(x) ≤ s x + t, t rounded up so that the upper
    line is above ReLU at l and at u in real arithmetic (ReLU is convex), α = 1[u > −l]."""
    lower, upper = bounds
    unstable = (lower < 0) & (upper > 0)
    width = np.where(unstable, upper - lower, 1.0)
    slope = np.where(unstable, np.clip(upper / width, 0.0, 1.0), (lower >= 0).astype(float))
    at_lower = up(-slope * np.where(unstable, lower, 0.0))
    at_upper = up(np.where(unstable, upper, 0.0) * up(1.0 - slope))
    intercept = np.where(unstable, np.maximum(at_lower, at_upper), 0.0)
    alpha = np.where(unstable, (upper > -lower).astype(float), slope)
    return Lines(alpha, np.zeros_like(intercept), slope, intercept,
                 relu_interval(bounds), relu=True,
                 lower_line_minimum=np.where(alpha > 0, lower, 0.0))


def relu_interval(bounds: Interval) -> Interval:
    return np.maximum(bounds[0], 0.0), np.maximum(bounds[1], 0.0)


@dataclass(frozen=True)
class Elementwise:
    """ReLU, Sigmoid or Tanh (``kind``)."""

    kind: str

    def interval(self, bounds: Interval) -> Interval:
        if self.kind == "relu":
            return relu_interval(bounds)
        return SHAPES[self.kind].interval(bounds)

    def relax(self, bounds: Interval) -> Lines:
        if self.kind == "relu":
            return relu_lines(bounds)
        return SHAPES[self.kind].lines(bounds)


RELU = Elementwise("relu")


# ------------------------------------------------------------------ S-shaped functions
class SShape:
    """An increasing f, convex on (−∞, 0], concave on [0, ∞), with f′ even and largest at
    0: the rigorous lines of the module doc."""

    low: float      # f(−∞)
    high: float     # f(+∞)

    def __init__(self) -> None:
        self._known: dict[float, tuple[float, float]] = {}  # point → enclosure of f there

    def enclosure(self, x: np.ndarray) -> Interval:
        """Float bounds of the real f(x)."""
        raise NotImplementedError

    def slope_enclosure(self, values: Interval) -> Interval:
        """Bounds of f′(x) from bounds of f(x)."""
        raise NotImplementedError

    def approx(self, x: np.ndarray) -> np.ndarray:
        """f in plain floats (to choose slopes only)."""
        raise NotImplementedError

    def approx_slope(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def tangent_point(self, slope: np.ndarray) -> np.ndarray:
        """The x ≥ 0 with f′(x) ≈ slope (0 above f′(0), +∞ for slopes ≤ 0), in floats."""
        raise NotImplementedError

    def values(self, x: np.ndarray) -> Interval:
        # each distinct point once, and once per process: the enclosures are exact decimal
        # arithmetic, one point at a time, and a check meets the same points again and
        # again (the bounds' ends on every row of a stack and in every leaf of a box, the
        # few tangent points a row's slopes take per neuron); an enclosure is a function
        # of the float alone, so a remembered one is the one it would compute
        unique, inverse = np.unique(x, return_inverse=True)
        points, known = unique.tolist(), self._known
        missing = [v for v in points if v == v and v not in known]  # (nan: not a point)
        if missing:
            if len(known) + len(missing) > KNOWN_POINTS:
                known.clear()
            for v, low_value, high_value in zip(missing, *self.enclosure(np.array(missing)),
                                                strict=True):
                known[v] = (float(low_value), float(high_value))
        low, high = np.array([known[v] if v == v else (np.nan, np.nan)
                              for v in points]).reshape(-1, 2).T
        inverse = inverse.reshape(np.shape(x))
        return np.maximum(low[inverse], self.low), np.minimum(high[inverse], self.high)

    def interval(self, bounds: Interval) -> Interval:
        return self.values(bounds[0])[0], self.values(bounds[1])[1]

    def slopes(self, lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(lower-line slope, upper-line slope) per neuron, chosen in floats as DeepPoly and
        CROWN choose them (see the module doc); soundness does not depend on them."""
        width = upper - lower
        f_l, f_u = self.approx(lower), self.approx(upper)
        chord = np.where(width > 0, (f_u - f_l) / np.where(width > 0, width, 1.0), 0.0)
        middle = self.approx_slope((lower + upper) * 0.5)
        convex, concave = upper <= 0, lower >= 0
        upper_slope = np.where(concave, middle, np.where(convex, chord, self._through(
            lower, upper, toward_upper=True, chord=chord)))
        lower_slope = np.where(convex, middle, np.where(concave, chord, self._through(
            lower, upper, toward_upper=False, chord=chord)))
        return np.where(width > 0, lower_slope, 0.0), np.where(width > 0, upper_slope, 0.0)

    def _through(self, lower: np.ndarray, upper: np.ndarray, toward_upper: bool,
                 chord: np.ndarray) -> np.ndarray:
        """CROWN's slope for a box around 0: the tangent at max(d, m), d ∈ [0, u] the point
        whose tangent passes through (l, f(l)) and m the midpoint (upper line; the lower line
        mirrors it), or the chord when no such d exists."""
        end = lower if toward_upper else upper
        far = np.maximum(upper, 0.0) if toward_upper else np.minimum(lower, 0.0)
        target = self.approx(end)

        def miss(d: np.ndarray) -> np.ndarray:  # tangent at d, at the far end, minus f there
            return self.approx(d) + self.approx_slope(d) * (end - d) - target

        # miss grows with |d| on the upper side, falls on the lower side (f″ signs)
        found = miss(far) > 0 if toward_upper else miss(far) < 0
        near, distant = np.zeros_like(far), far.copy()
        for _ in range(60):
            middle = (near + distant) * 0.5
            crossed = miss(middle) > 0 if toward_upper else miss(middle) < 0
            distant = np.where(crossed, middle, distant)
            near = np.where(crossed, near, middle)
        # the midpoint's tangent where the midpoint lies beyond the tangent point (CROWN's
        # choice as auto_LiRPA makes it; nobound.bounds.activations, module doc)
        middle = (lower + upper) * 0.5
        point = np.maximum(distant, middle) if toward_upper else np.minimum(distant, middle)
        return np.where(found, self.approx_slope(point), chord)

    def lines(self, bounds: Interval, slopes: tuple[np.ndarray, np.ndarray] | None = None
              ) -> Lines:
        """The lines with DeepPoly's slopes, or with recorded ``slopes`` (lower, upper;
        alpha-CROWN's tangents; nan keeps DeepPoly's) — any finite slope is sound, since
        the intercept is the rigorous extremum of f(x) − s·x over [l, u]. Slopes (..., n)
        with leading axes give lines per entry of a stack (one row each) on the same
        bounds (n,)."""
        lower, upper = bounds
        lower_slope, upper_slope = self.slopes(lower, upper)
        if slopes is not None:
            lower_slope = np.where(np.isnan(slopes[0]), lower_slope, slopes[0])
            upper_slope = np.where(np.isnan(slopes[1]), upper_slope, slopes[1])
        return Lines(lower_slope, self._extremum(lower, upper, lower_slope, lowest=True),
                     upper_slope, self._extremum(lower, upper, upper_slope, lowest=False),
                     self.interval(bounds),
                     reslope=lambda low, high: self.lines(bounds, (low, high)))

    def _extremum(self, lower: np.ndarray, upper: np.ndarray, slope: np.ndarray,
                  lowest: bool) -> np.ndarray:
        """A rigorous bound of min (``lowest``) or max of f(x) − s·x over [l, u]: the
        convex piece [l, min(u, 0)] and the concave piece [max(l, 0), u] (module doc)."""
        shape = np.broadcast_shapes(lower.shape, slope.shape)  # a stack of slopes (..., n)
        lower, upper = np.broadcast_to(lower, shape), np.broadcast_to(upper, shape)
        convex = (lower, np.minimum(upper, 0.0))
        concave = (np.maximum(lower, 0.0), upper)
        # the ends decide on the convex piece for the max, on the concave one for the min
        ends, tangent = (concave, convex) if lowest else (convex, concave)
        sign = -1.0 if lowest else 1.0
        # tangent piece: d ≥ 0 where f′(d) ≈ s (mirrored to d ≤ 0 on the convex piece)
        point = self.tangent_point(slope) * (-1.0 if lowest else 1.0)
        d = np.clip(point, tangent[0], tangent[1])
        d = np.where(np.isfinite(d), d, tangent[1] if not lowest else tangent[0])
        value_lo, value_hi = self.values(np.stack([ends[0], ends[1], d]))
        at_ends = [self._minus_line(value_lo[i], value_hi[i], slope, ends[i], lowest)
                   for i in range(2)]
        end_value = np.minimum(*at_ends) if lowest else np.maximum(*at_ends)
        # (f′(d) − s)(x − d) over x in [a, b]: its sign says which side it is largest on
        slope_lo, slope_hi = self.slope_enclosure((value_lo[2], value_hi[2]))
        steeper = np.maximum(up(slope_hi - slope), 0.0)     # ≥ f′(d) − s
        flatter = np.maximum(up(slope - slope_lo), 0.0)     # ≥ s − f′(d)
        left, right = up(d - tangent[0]), up(tangent[1] - d)
        if lowest:  # −(f′(d) − s)(x − d) ≤ max(steeper · (d − a), flatter · (b − d))
            slack = np.maximum(up(steeper * left), up(flatter * right))
        else:       # (f′(d) − s)(x − d) ≤ max(steeper · (b − d), flatter · (d − a))
            slack = np.maximum(up(steeper * right), up(flatter * left))
        at_d = self._minus_line(value_lo[2], value_hi[2], slope, d, lowest)
        tangent_value = down(at_d - slack) if lowest else up(at_d + slack)
        # a piece that is empty (l > 0 has no convex piece, u < 0 no concave one) is left out
        ends_exist = ends[0] <= ends[1]
        tangent_exists = tangent[0] <= tangent[1]
        end_value = np.where(ends_exist, end_value, sign * -np.inf)
        tangent_value = np.where(tangent_exists, tangent_value, sign * -np.inf)
        return np.minimum(end_value, tangent_value) if lowest else \
            np.maximum(end_value, tangent_value)

    @staticmethod
    def _minus_line(value_lo: np.ndarray, value_hi: np.ndarray, slope: np.ndarray,
                    x: np.ndarray, lowest: bool) -> np.ndarray:
        """A rigorous lower (``lowest``) or upper bound of f(x) − s·x."""
        if lowest:
            return down(value_lo - up(slope * x))
        return up(value_hi - down(slope * x))


class SigmoidShape(SShape):
    """σ(x) = 1 / (1 + e^{−x}), σ′ = σ (1 − σ)."""

    low, high = 0.0, 1.0

    def enclosure(self, x: np.ndarray) -> Interval:
        return sigmoid_enclosure(x)

    def slope_enclosure(self, values: Interval) -> Interval:
        # p (1 − p) rises on [0, ½] and falls on [½, 1]: the ends give the minimum, the
        # maximum is ¼ when ½ lies between them
        low, high = values
        ends_low = np.minimum(down(low * down(1.0 - low)), down(high * down(1.0 - high)))
        ends_high = np.maximum(up(low * up(1.0 - low)), up(high * up(1.0 - high)))
        peak = (low <= 0.5) & (high >= 0.5)
        return np.maximum(ends_low, 0.0), np.where(peak, 0.25, ends_high)

    def approx(self, x: np.ndarray) -> np.ndarray:
        return 0.5 * (1.0 + np.tanh(0.5 * x))   # no overflow for any x

    def approx_slope(self, x: np.ndarray) -> np.ndarray:
        value = self.approx(x)
        return value * (1.0 - value)

    def tangent_point(self, slope: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            value = 0.5 * (1.0 + np.sqrt(np.clip(1.0 - 4.0 * slope, 0.0, 1.0)))
            point = np.log(value) - np.log1p(-value)
        return np.where(slope <= 0, np.inf, np.where(slope >= 0.25, 0.0, point))


class TanhShape(SShape):
    """tanh x, tanh′ = 1 − tanh²."""

    low, high = -1.0, 1.0

    def enclosure(self, x: np.ndarray) -> Interval:
        return tanh_enclosure(x)

    def slope_enclosure(self, values: Interval) -> Interval:
        low, high = values
        largest = np.maximum(np.abs(low), np.abs(high))
        smallest = np.where((low <= 0) & (high >= 0), 0.0, np.minimum(np.abs(low),
                                                                       np.abs(high)))
        return (np.maximum(down(1.0 - up(largest * largest)), 0.0),
                up(1.0 - down(smallest * smallest)))

    def approx(self, x: np.ndarray) -> np.ndarray:
        return np.tanh(x)

    def approx_slope(self, x: np.ndarray) -> np.ndarray:
        return 1.0 - np.tanh(x) ** 2

    def tangent_point(self, slope: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            point = np.arctanh(np.sqrt(np.clip(1.0 - slope, 0.0, 1.0)))
        return np.where(slope <= 0, np.inf, np.where(slope >= 1.0, 0.0, point))


SHAPES: dict[str, SShape] = {"sigmoid": SigmoidShape(), "tanh": TanhShape()}
# The most enclosures an S-shape remembers (then it forgets them all and starts again).
KNOWN_POINTS = 1 << 20


# ------------------------------------------------------------------ max pooling
@dataclass
class PoolRelaxation:
    """DeepPoly's max relaxation of every window (module doc)."""

    winner_input: np.ndarray    # (m,) input index of j*
    decided: np.ndarray         # (m,) y = x_{j*} exactly
    largest_upper: np.ndarray   # (m,) max_i u_i
    inputs: int
    sharing: int                # most windows any input wins (sums of that many terms)
    outputs: Interval

    def back(self, rows: np.ndarray, inputs: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(Λ', F, c) as :meth:`Lines.back` (one leaf: rows (R, m)): Λ ≥ 0 (or a decided
        window) takes x_{j*}, Λ < 0 takes the constant max u."""
        variable = (rows >= 0) | self.decided[None]
        constant = lower_rows(np.where(variable, 0.0, rows), self.largest_upper)
        moved = np.zeros((rows.shape[0], self.inputs))
        chosen = np.where(variable, rows, 0.0)
        np.add.at(moved, (slice(None), self.winner_input), chosen)
        if self.sharing <= 1:   # every input receives one coefficient at most: copied exactly
            return moved, np.zeros(rows.shape[0]), constant
        # a sum of at most `sharing` floats, in any order: Higham's bound (rounding.py)
        size = np.zeros_like(moved)
        np.add.at(size, (slice(None), self.winner_input), np.abs(chosen))
        error = up(up(gamma_factor(self.sharing) * size)
                   + up(2.0 * self.sharing * SMALLEST_SUBNORMAL))
        return moved, upper_rows(error, inputs), constant


@dataclass(frozen=True)
class MaxPoolWindows:
    """y_j = max of x over ``windows[j]`` (input indices; −1 marks padding, never chosen)."""

    windows: np.ndarray   # (m, k²)
    inputs: int

    def _gather(self, values: np.ndarray) -> np.ndarray:
        return np.where(self.windows >= 0, values[np.maximum(self.windows, 0)], -np.inf)

    def interval(self, bounds: Interval) -> Interval:
        return self._gather(bounds[0]).max(axis=1), self._gather(bounds[1]).max(axis=1)

    def relax(self, bounds: Interval, choice: np.ndarray | None = None) -> PoolRelaxation:
        """``choice``: lower bounds of the inputs, looser than ``bounds``, to pick j* and
        decide windows with (the certifier's, when a ReLU's lower lines come first)."""
        lows, highs = self._gather(bounds[0]), self._gather(bounds[1])
        chosen = lows if choice is None else self._gather(choice)
        position = np.argmax(chosen, axis=1)
        rows = np.arange(len(position))
        winner_input = self.windows[rows, position]
        others = highs.copy()
        others[rows, position] = -np.inf
        decided = chosen[rows, position] >= others.max(axis=1)
        sharing = int(np.bincount(winner_input, minlength=1).max())
        return PoolRelaxation(winner_input, decided, highs.max(axis=1), self.inputs, sharing,
                              (lows.max(axis=1), highs.max(axis=1)))


def max_pool_windows(kernel_size: int, stride: int, padding: int,
                     shape: tuple[int, int, int]) -> MaxPoolWindows:
    """The windows of a (C, H, W) input, in the output's (C, Ho, Wo) order."""
    channels, height, width = shape
    index = np.arange(channels * height * width).reshape(shape)
    index = np.pad(index, [(0, 0), (padding, padding), (padding, padding)],
                   constant_values=-1)
    out_h = (height + 2 * padding - kernel_size) // stride + 1
    out_w = (width + 2 * padding - kernel_size) // stride + 1
    parts = [index[:, a:a + stride * (out_h - 1) + 1:stride, b:b + stride * (out_w - 1) + 1:stride]
             for a in range(kernel_size) for b in range(kernel_size)]
    return MaxPoolWindows(np.stack(parts, axis=-1).reshape(-1, kernel_size ** 2),
                          channels * height * width)


def is_relu(chain: tuple[Any, ...]) -> bool:
    """A hidden layer that is one ReLU (the only kind split, or relaxed with recorded α)."""
    return len(chain) == 1 and chain[0] == RELU
