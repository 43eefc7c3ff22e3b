"""Two bound computations that must agree: the same output and intermediate bounds.

The tests of every fast path (compiled loops, receptive-field windows, sample groups,
rows stored rows-innermost) compare it with the path it replaces this way.
"""

from __future__ import annotations

from typing import Any

import numpy as np

LINEAR_FIELDS = ("A_l", "b_l", "A_u", "b_u")


def assert_same_bounds(actual: Any, expected: Any, rtol: float, atol: float,
                       linear: bool = False) -> None:
    """``actual`` and ``expected`` (BoundResults) hold the same lower and upper bounds and
    the same intermediate bounds of the same ReLUs; with ``linear``, the same linear
    bounds (both or neither)."""
    for side in ("lower", "upper"):
        np.testing.assert_allclose(getattr(actual, side).data, getattr(expected, side).data,
                                   rtol=rtol, atol=atol, err_msg=f"output {side} bound")
    assert actual.intermediate.keys() == expected.intermediate.keys()
    for index, (low, high) in expected.intermediate.items():
        np.testing.assert_allclose(actual.intermediate[index][0].data, low.data, rtol=rtol,
                                   atol=atol, err_msg=f"lower bound of ReLU {index}")
        np.testing.assert_allclose(actual.intermediate[index][1].data, high.data, rtol=rtol,
                                   atol=atol, err_msg=f"upper bound of ReLU {index}")
    if linear:
        assert (actual.linear is None) == (expected.linear is None)
        if expected.linear is not None:
            for name in LINEAR_FIELDS:
                np.testing.assert_allclose(getattr(actual.linear, name).data,
                                           getattr(expected.linear, name).data, rtol=rtol,
                                           atol=atol, err_msg=f"linear bound {name}")
