"""Points inside boxes, chosen where relaxations tend to be wrong: corners and their vicinity.

For a box l ≤ x ≤ u with n coordinates the sample holds, per batch element,

* every vertex when 2ⁿ is small (the extremes of a linear function over a box are at
  vertices, so a wrong sign or a wrong |W| in eq. (3) shows there first), else random
  vertices;
* points near the corners: l + (u − l)·β with β ~ Beta(½, ½), whose density piles up at
  0 and 1;
* uniform points, and the centre.
"""

from __future__ import annotations

import itertools

import numpy as np

MAX_VERTEX_DIMENSIONS = 6


def unit_samples(size: int, count: int, rng: np.random.Generator,
                 max_vertex_dimensions: int = MAX_VERTEX_DIMENSIONS) -> np.ndarray:
    """(N, size) points of [0, 1]^size: vertices (all or ``count`` random), Beta, uniform.

    N = (2^size or count) + count + count + 1.
    """
    if size <= max_vertex_dimensions:
        vertices = np.array(list(itertools.product((0.0, 1.0), repeat=size)))
    else:
        vertices = rng.integers(0, 2, (count, size)).astype(np.float64)
    near_corners = rng.beta(0.5, 0.5, (count, size))
    uniform = rng.uniform(0.0, 1.0, (count, size))
    centre = np.full((1, size), 0.5)
    return np.concatenate([vertices, near_corners, uniform, centre])


def region_samples(lower: np.ndarray, upper: np.ndarray, count: int,
                   rng: np.random.Generator,
                   max_vertex_dimensions: int = MAX_VERTEX_DIMENSIONS) -> np.ndarray:
    """Points of each box: lower, upper (B, *shape) → (B, N, *shape), all inside the box.

    The same unit pattern is scaled into every batch element's box; the endpoints are
    selected (not computed as l + (u − l)·1) so vertices are exactly the box's corners.
    """
    lower, upper = np.asarray(lower, np.float64), np.asarray(upper, np.float64)
    batch, shape = lower.shape[0], lower.shape[1:]
    unit = unit_samples(int(np.prod(shape)), count, rng, max_vertex_dimensions)
    unit = unit.reshape((1, len(unit), *shape))
    low, high = lower[:, None], upper[:, None]
    points = low + (high - low) * unit
    points = np.where(unit == 1.0, high, np.where(unit == 0.0, low, points))
    return np.clip(points, low, high).reshape((batch, -1, *shape))
