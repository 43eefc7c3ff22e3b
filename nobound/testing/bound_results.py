"""Two bound computations that must agree: the same output and intermediate bounds.

The tests of every fast path (compiled loops, receptive-field windows, sample groups,
rows stored rows-innermost) compare it with the path it replaces this way.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nobound.backend import to_numpy

LINEAR_FIELDS = ("A_l", "b_l", "A_u", "b_u")


def assert_same_bounds(actual: Any, expected: Any, rtol: float, atol: float,
                       linear: bool = False, scale_atol: bool = False) -> None:
    """``actual`` and ``expected`` (BoundResults) hold the same lower and upper bounds and
    the same intermediate bounds of the same ReLUs; with ``linear``, the same linear
    bounds (both or neither). With ``scale_atol``, each array's absolute tolerance is
    ``atol`` times its largest magnitude (at least 1): round-off of sums in another order
    grows with the numbers summed."""

    def check(got: Any, want: Any, what: str) -> None:
        got, want = to_numpy(got), to_numpy(want)
        scale = max(1.0, float(np.abs(want).max(initial=0.0))) if scale_atol else 1.0
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * scale, err_msg=what)

    for side in ("lower", "upper"):
        check(getattr(actual, side).data, getattr(expected, side).data, f"output {side} bound")
    assert actual.intermediate.keys() == expected.intermediate.keys()
    for index, (low, high) in expected.intermediate.items():
        check(actual.intermediate[index][0].data, low.data, f"lower bound of ReLU {index}")
        check(actual.intermediate[index][1].data, high.data, f"upper bound of ReLU {index}")
    if linear:
        assert (actual.linear is None) == (expected.linear is None)
        if expected.linear is not None:
            for name in LINEAR_FIELDS:
                check(getattr(actual.linear, name).data, getattr(expected.linear, name).data,
                      f"linear bound {name}")
