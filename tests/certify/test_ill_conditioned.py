"""No wrong verdict on ill-conditioned tiny networks, against exact rational answers.

``certified`` must imply that the exact minimum (fractions on the stored floats) is > 0;
``falsified`` must come with a point of the box at which the model's own float64 forward
pass gives y ≤ 0. ``unknown`` is allowed (round-off can make a question undecidable in
float64), a traceback is not.

CI runs a few hundred examples; the hand run of the issue sets the count:

    NOBOUND_ILL_EXAMPLES=10000 nice -n 19 python -m pytest tests/certify/test_ill_conditioned.py
"""

from __future__ import annotations

import os

import numpy as np
from hypothesis import HealthCheck, event, given, settings

from nobound.certify.pipeline import Certifier, CertifierConfig
from nobound.testing.ill_conditioned import IllConditionedCase, ill_conditioned_cases

EXAMPLES = int(os.environ.get("NOBOUND_ILL_EXAMPLES", "200"))

CONFIG = CertifierConfig(timeout=5.0, max_nodes=200, batch_size=4, attack_steps=5,
                         attack_restarts=1)


def own_forward(case: IllConditionedCase, x: float) -> float:
    """y(x) the way a float64 network computes it (x @ Wᵀ + b, ReLU between)."""
    with np.errstate(all="ignore"):
        hidden = np.array([[x]])
        for k, (weight, bias) in enumerate(zip(case.weights, case.biases, strict=True)):
            if k:
                hidden = np.maximum(hidden, 0.0)
            hidden = hidden @ np.array(weight).T + np.array(bias)
        return float(hidden[0, 0])


def wrong_verdict(case: IllConditionedCase) -> str:
    """'' when the certifier's verdict is right, else what is wrong with it."""
    model = case.model()
    with np.errstate(all="ignore"):
        verdict = Certifier(model, (1,), CONFIG).verify([case.problem(model)])
    event(f"verdict: {verdict.status}")
    if verdict.status == "certified":
        minimum = case.exact_minimum()
        if not minimum > 0:
            return f"certified by {verdict.method} but the exact minimum is {float(minimum)!r}"
    if verdict.status == "falsified":
        x = float(verdict.counterexample.input.reshape(-1)[0])
        if not case.lower <= x <= case.upper:
            return f"counterexample {x!r} outside the box"
        if not own_forward(case, x) <= 0:
            return f"counterexample {x!r} does not replay (y = {own_forward(case, x)!r})"
    return ""


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.data_too_large])
@given(case=ill_conditioned_cases())
def test_no_wrong_verdict_on_ill_conditioned_networks(case) -> None:
    assert wrong_verdict(case) == ""


def test_exact_minimum_finds_the_kinks() -> None:
    """y = 1 − relu(2.5 − x) on [1, 4]: minimum −0.5 at x = 1; a kink at 2.5."""
    case = IllConditionedCase((((-1.0,),), ((-1.0,),)), ((2.5,), (1.0,)), 1.0, 4.0)
    assert 2.5 in case.exact_breakpoints()
    assert case.exact_minimum() == -0.5
    deep = IllConditionedCase((((1.0,),), ((1.0,),), ((-1.0,),)), ((-1.0,), (-0.5,), (0.0,)),
                              0.0, 3.0)
    # z2 = relu(x − 1) − 0.5 crosses 0 at x = 1.5, found on the piece [1, 3]
    assert 1.5 in deep.exact_breakpoints()
    assert deep.exact_minimum() == -1.5
