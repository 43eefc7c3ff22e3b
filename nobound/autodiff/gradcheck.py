"""Gradient checks: the dot-product test for VJPs and the adjoint identity for linear maps.

Dot-product test (as HIPS autograd's ``check_grads``). For f: ℝⁿ → ℝᵐ, a random cotangent
u ∈ ℝᵐ and a random direction v ∈ ℝⁿ, reverse mode must satisfy

    ⟨vjp_f(x)(u), v⟩ = ⟨u, J_f(x) v⟩,

and the right-hand side is estimated by central differences with Richardson extrapolation,

    D(h) = ⟨u, (f(x + h v) − f(x − h v)) / (2h)⟩ = ⟨u, J_f(x) v⟩ + c h² + O(h⁴),
    (4 D(h/2) − D(h)) / 3 = ⟨u, J_f(x) v⟩ + O(h⁴),

so the truncation error (c = ⟨u, f'''(x)[v, v, v]⟩ / 6, e.g. h² f(v) for a trilinear
einsum at x = 0) need not hide in the tolerance.

One random pair (u, v) tests the whole Jacobian at once: a wrong VJP agrees with the
difference quotient only on a set of directions of measure zero.

A kink of a piecewise function within h·v of x breaks the expansion above: the gaps
D(h) − D(h/2) and D(h/2) − D(h/4) then do not shrink by 4, and the check raises
:class:`KinkNearby` (inconclusive) instead of comparing a quotient that is no derivative.

Adjoint identity. A linear map A and its claimed transpose Aᵀ must satisfy

    ⟨g, A x⟩ = ⟨Aᵀ g, x⟩   for all x, g,

exactly up to floating-point rounding; no step size is involved. With ``adjoint=None``
the transpose is taken from autodiff (the VJP of a linear map is its transpose).

Both checks need float64: in float32 the rounding error of a difference quotient is of the
order of the effects being tested.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nobound.autodiff.tensor import Tensor, no_grad
from nobound.backend import get_array_module, random_stream, to_numpy, unwrap


@dataclass(frozen=True)
class DotProductCheck:
    """The two sides of the dot-product test and the tolerance they were compared with."""

    reverse: float            # ⟨vjp(u), v⟩ from backward()
    finite_difference: float  # ⟨u, (f(x + h v) − f(x − h v)) / 2h⟩
    tolerance: float

    @property
    def error(self) -> float:
        return abs(self.reverse - self.finite_difference)


class KinkNearby(AssertionError):
    """The dot-product test is inconclusive: the difference quotients D(h), D(h/2), D(h/4)
    do not converge as a smooth function's do (their gaps shrinking by 4 with each halving),
    so along the direction v the function is not smooth within h·v of the point (a kink of
    a piecewise function: |a| as a coefficient a crosses 0, a relaxation switching), and
    the quotients are not its derivative. The VJP takes no part in this comparison, so a
    wrong VJP cannot raise it; an ``AssertionError``, so a caller that does not expect
    kinks still fails."""


@dataclass(frozen=True)
class AdjointCheck:
    """The two sides of ⟨g, A x⟩ = ⟨Aᵀ g, x⟩ and the rounding tolerance used."""

    forward_side: float  # ⟨g, A x⟩
    adjoint_side: float  # ⟨Aᵀ g, x⟩
    tolerance: float

    @property
    def error(self) -> float:
        return abs(self.forward_side - self.adjoint_side)


def _require_float64(arrays: Sequence[Any], what: str) -> None:
    for array in arrays:
        if array.dtype != np.float64:
            raise ValueError(f"{what} must be float64 for a meaningful check, got {array.dtype}")


def _dot(a: Any, b: Any) -> float:
    return float(to_numpy((a * b).sum()))


def _norm(a: Any) -> float:
    return float(np.sqrt(_dot(a, a)))


def _standard_normal(rng: np.random.Generator, shape: tuple[int, ...], xp: Any) -> Any:
    """Draw on the host so NumPy and CuPy runs test the very same directions."""
    return xp.asarray(rng.standard_normal(shape))


def check_grads(function: Callable[..., Tensor], inputs: Sequence[Any], *, step: float = 1e-6,
                rtol: float = 1e-6, atol: float = 1e-12, seed: int = 0) -> DotProductCheck:
    """Dot-product test of ``function``'s VJP w.r.t. every array in ``inputs``.

    ``function(*tensors)`` must return a Tensor; arguments that are not differentiated
    (indices, shapes) are closed over. Passes when
    ``|⟨vjp(u), v⟩ − ⟨u, Jv⟩_fd| ≤ atol + rtol · (Σᵢ ‖gᵢ‖ ‖vᵢ‖ + ‖u‖ ‖Jv‖_fd) + rounding``:
    the rtol scale is what Cauchy–Schwarz allows each side to be, and
    ``rounding = 64 ε ‖u‖ max ‖f(x ± h v)‖ / h`` bounds the cancellation error of the
    difference quotients (ε the float64 machine epsilon). Raises ``AssertionError``
    otherwise, :class:`KinkNearby` (one) where the quotients with steps h, h/2 and h/4 do
    not converge as h² beyond that tolerance; returns both sides for reporting. Keep kinks
    of piecewise-linear functions farther than ``step · max |vᵢ|`` (about 5·step) from the
    inputs.
    """
    arrays = [unwrap(a) for a in inputs]
    _require_float64(arrays, "check_grads inputs")
    xp = get_array_module(*arrays)
    rng = random_stream(seed, name="gradcheck")
    leaves = [Tensor(xp.array(a, copy=True), requires_grad=True) for a in arrays]
    output = function(*leaves)
    if not isinstance(output, Tensor):
        raise TypeError(f"check_grads: function must return a Tensor, got {type(output)}")
    _require_float64([output.data], "check_grads output")
    cotangent = _standard_normal(rng, output.shape, xp)
    directions = [_standard_normal(rng, a.shape, xp) for a in arrays]
    if output.requires_grad:
        output.backward(cotangent)
    grads = [leaf.grad if leaf.grad is not None else xp.zeros_like(leaf.data) for leaf in leaves]
    for leaf, grad in zip(leaves, grads, strict=True):
        if grad.shape != leaf.shape:
            raise AssertionError(f"gradient shape {grad.shape} ≠ input shape {leaf.shape}")
    reverse = sum(_dot(g, v) for g, v in zip(grads, directions, strict=True))

    def central_difference(h: float) -> tuple[Any, float]:
        """(J v estimated with step h, the larger ‖f(x ± h v)‖)."""
        with no_grad():
            plus = function(*(Tensor(a + h * v)
                              for a, v in zip(arrays, directions, strict=True))).data
            minus = function(*(Tensor(a - h * v)
                               for a, v in zip(arrays, directions, strict=True))).data
        return (plus - minus) / (2 * h), max(_norm(plus), _norm(minus))

    coarse, size = central_difference(step)
    fine, _ = central_difference(step / 2)
    jvp = (4 * fine - coarse) / 3
    finite_difference = _dot(cotangent, jvp)

    scale = sum(_norm(g) * _norm(v) for g, v in zip(grads, directions, strict=True)) + \
        _norm(cotangent) * _norm(jvp)
    rounding = 64 * float(np.finfo(np.float64).eps) * _norm(cotangent) * size / step
    result = DotProductCheck(reverse, finite_difference, atol + rtol * scale + rounding)
    # smooth: D(h) − D(h/2) = ¾ c h² (module docstring), so D(h) − D(h/2) = 4 (D(h/2) −
    # D(h/4)) up to O(h⁴); a kink within the step breaks that proportion
    coarse_gap = _dot(cotangent, coarse) - _dot(cotangent, fine)
    if abs(coarse_gap) > result.tolerance:
        finer, _ = central_difference(step / 4)
        fine_gap = _dot(cotangent, fine) - _dot(cotangent, finer)
        if abs(coarse_gap - 4 * fine_gap) > result.tolerance:
            raise KinkNearby(f"the difference quotients with steps {step:g}, {step / 2:g} "
                             f"and {step / 4:g} do not shrink as h² (gaps {coarse_gap:.3e}, "
                             f"{fine_gap:.3e}; tolerance {result.tolerance:.3e}): a kink "
                             "within the step")
    if not result.error <= result.tolerance:
        raise AssertionError(f"dot-product test failed: <vjp(u), v> = {reverse!r} but "
                             f"<u, J v> ≈ {finite_difference!r} (|difference| {result.error:.3e}"
                             f" > tolerance {result.tolerance:.3e})")
    return result


def check_adjoint(linear_map: Callable[[Tensor], Tensor], input_shape: Sequence[int],
                  adjoint: Callable[[Tensor], Any] | None = None, *, xp: Any = np,
                  seed: int = 0, rtol: float = 1e-10) -> AdjointCheck:
    """Check ⟨g, A x⟩ = ⟨Aᵀ g, x⟩ for random float64 x of ``input_shape`` and g.

    ``adjoint`` maps a Tensor g of A's output shape to Aᵀ g (a Tensor or array); ``None``
    uses autodiff's VJP. An affine (not linear) map fails, since ⟨g, b⟩ ≠ 0. Tolerance:
    ``rtol · (‖g‖ ‖A x‖ + ‖Aᵀ g‖ ‖x‖)``, far above float64 rounding, far below any error in
    a real transpose. Raises ``AssertionError`` on failure.
    """
    rng = random_stream(seed, name="adjoint-check")
    x = Tensor(_standard_normal(rng, tuple(input_shape), xp), requires_grad=adjoint is None)
    image = linear_map(x)
    _require_float64([image.data], "check_adjoint output")
    g = _standard_normal(rng, image.shape, xp)
    if adjoint is None:
        if not image.requires_grad:
            raise AssertionError("linear_map output does not depend on its input")
        image.backward(g)
        transposed = x.grad
    else:
        with no_grad():
            transposed = unwrap(adjoint(Tensor(g)))
    if tuple(transposed.shape) != tuple(input_shape):
        raise AssertionError(f"adjoint gives shape {tuple(transposed.shape)}, "
                             f"expected {tuple(input_shape)}")
    forward_side = _dot(g, image.data)
    adjoint_side = _dot(transposed, x.data)
    tolerance = rtol * (_norm(g) * _norm(image.data) + _norm(transposed) * _norm(x.data))
    result = AdjointCheck(forward_side, adjoint_side, tolerance)
    if not result.error <= result.tolerance:
        raise AssertionError(f"adjoint identity failed: <g, A x> = {forward_side!r} but "
                             f"<A^T g, x> = {adjoint_side!r} (|difference| {result.error:.3e} "
                             f"> tolerance {result.tolerance:.3e})")
    return result
