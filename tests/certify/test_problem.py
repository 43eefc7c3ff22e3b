"""VerificationProblem's box grouping (nobound/certify/problem.py)."""

from __future__ import annotations

import numpy as np

from nobound.certify.problem import VerificationProblem, float64_model, group_by_box
from nobound.nn import Linear, Sequential


def test_problems_are_grouped_by_their_exact_box_in_order_of_first_appearance():
    model = float64_model(Sequential(Linear(2, 1, dtype=np.float64)))

    def on(lower, upper):
        return VerificationProblem(model, np.array(lower, float), np.array(upper, float),
                                   np.array([[1.0]]), np.zeros(1))

    problems = [on([0, 0], [1, 1]), on([0, 0], [1, 2]), on([0, 0], [1, 1]),
                on([1, 0], [0, 1]),  # empty
                on([0, 0], [1, 1 + 1e-16]), on([0, 0], [1, 2])]
    assert group_by_box(problems) == [[0, 2, 4], [1, 5], [3]]  # 1 + 1e-16 == 1 in float64
    assert group_by_box(problems, skip_empty=True) == [[0, 2, 4], [1, 5]]
    assert problems[0].box_key == problems[2].box_key != problems[1].box_key
