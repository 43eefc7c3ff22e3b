"""The branching rule picks unstable, unsplit neurons, and nothing when none is left."""

from __future__ import annotations

import numpy as np
from certify_instances import tiny_network

from nobound.certify.branching import choose_neurons
from nobound.exact import dense_network


def test_choices_are_unstable_unsplit_neurons_or_none() -> None:
    net = dense_network(tiny_network(0, (2, 4, 4, 2)), (2,))
    lower = [np.array([[-1.0, -2.0, 0.5, -1.0], [1.0, 1.0, 1.0, 1.0]]),
             np.array([[-1.0, -1.0, -1.0, -1.0], [1.0, 1.0, 1.0, 1.0]])]
    upper = [np.array([[1.0, 1.0, 2.0, 3.0], [2.0, 2.0, 2.0, 2.0]]),
             np.array([[-0.5, -0.5, -0.5, -0.5], [2.0, 2.0, 2.0, 2.0]])]
    signs = [np.array([[0, 0, 0, 1], [0, 0, 0, 0]], np.int8), np.zeros((2, 4), np.int8)]
    bounds = list(zip(lower, upper, strict=True))
    objective = np.array([[1.0, -1.0], [1.0, -1.0]])
    for rule in ("babsr", "intercept"):
        first, second = choose_neurons(net, bounds, signs, objective, rule)
        assert second is None  # every neuron of the second sub-problem is stable
        assert first is not None and first[0] == 0 and first[1] in (0, 1)
    # the intercept rule takes the largest −l·u/(u − l): neuron 1 (2/3) over neuron 0 (1/2)
    assert choose_neurons(net, bounds, signs, objective, "intercept")[0] == (0, 1)
