"""Property-test your own relaxation with nobound's hypothesis strategies.

    python examples/property_test_relaxation.py

We write a relaxation from scratch — plain interval arithmetic over a ``Sequential`` — and
let hypothesis search for a network, a box and a specification on which it is unsound,
using the same strategies as nobound's own soundness suite
(:mod:`nobound.testing.strategies`). The correct version passes; a version with a classic
bug (using W instead of |W| for the radius, eq. 3) is caught and shrunk to a small
counterexample. Runtime: about 10 s. Output of a run:

    correct interval arithmetic: 300 random problems, sound
    buggy interval arithmetic: unsound, as expected — hypothesis found:
        Falsifying example: sound(problem=BoundProblem(network=RandomNetwork(...
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings

from nobound.nn import BatchNorm, Conv2d, Flatten, Linear, Normalize, ReLU
from nobound.testing.sampling import region_samples
from nobound.testing.strategies import bound_problems


def interval_bounds(model, lower, upper, spec, absolute=np.abs):
    """IBP (eq. 3) on arrays: centre/radius through affine layers, ReLU on the ends."""
    for layer in model.layers:
        centre, radius = (upper + lower) / 2, (upper - lower) / 2
        if isinstance(layer, Linear):
            w, b = layer.weight.data, layer.bias.data
            centre, radius = centre @ w.T + b, radius @ absolute(w).T
        elif isinstance(layer, Conv2d):
            from nobound.autodiff.ops import conv2d

            w, b = layer.weight.data, layer.bias.data.reshape(-1, 1, 1)
            centre = conv2d(centre, w, layer.stride, layer.padding).data + b
            radius = conv2d(radius, absolute(w), layer.stride, layer.padding).data
        elif isinstance(layer, BatchNorm | Normalize):
            from nobound.autodiff import Tensor

            like = Tensor(centre)
            if isinstance(layer, Normalize):
                scale, shift = layer.affine_coefficients(like)
            else:
                mean, var = layer.running_statistics(like)
                scale, shift = layer.affine_coefficients(layer.own_parameters(), mean, var, like)
            centre, radius = centre * scale.data + shift.data, radius * np.abs(scale.data)
        elif isinstance(layer, Flatten):
            centre, radius = centre.reshape(len(centre), -1), radius.reshape(len(radius), -1)
        elif isinstance(layer, ReLU):
            lower, upper = np.maximum(lower, 0), np.maximum(upper, 0)
            continue
        lower, upper = centre - radius, centre + radius
    # the specification C is one more affine map
    centre, radius = (upper + lower) / 2, (upper - lower) / 2
    centre = np.einsum("bkc,bc->bk", spec, centre)
    radius = np.einsum("bkc,bc->bk", np.abs(spec), radius)
    return centre - radius, centre + radius


def check(relaxation) -> None:
    @settings(max_examples=300, deadline=None, database=None)
    @given(bound_problems())
    def sound(problem):
        lower, upper = relaxation(problem.network.model, problem.lower, problem.upper,
                                  problem.spec_matrix)
        points = region_samples(problem.lower, problem.upper, 64,
                                np.random.default_rng(0))
        values = problem.spec_values(points)                       # (B, N, K)
        assert np.all(values >= lower[:, None, :] - 1e-9)
        assert np.all(values <= upper[:, None, :] + 1e-9)

    sound()


def main() -> None:
    check(interval_bounds)
    print("correct interval arithmetic: 300 random problems, sound")
    try:
        check(lambda *args: interval_bounds(*args, absolute=lambda w: w))
    except AssertionError as error:
        found = getattr(error, "__notes__", None) or [type(error).__name__]
        print("buggy interval arithmetic: unsound, as expected — hypothesis found:",
              found[0][:100])
    else:
        raise SystemExit("the buggy relaxation was not caught")


if __name__ == "__main__":
    main()
