"""Orderings between relaxations that are theorems (and only those).

* HBox ⊆ IBP, at the output and at every ReLU input: HBox's affine steps are exact on the
  error terms and IBP's on the box part, so by induction HBox's interval hull lies inside
  IBP's box at every layer (§2.2: "only HBox is strictly tighter than IBP").
* alpha-CROWN started at DeepPoly's slopes keeps, per row, the best bound it has seen,
  the first being DeepPoly's; with the same intermediate bounds it is never looser.
* The LinearBounds a method returns, concretised over the region by eq. (2), are its
  numeric bounds; and asking for them does not change the numbers.

CROWN-IBP against IBP or DeepPoly is *not* ordered (§2.2) and is not asserted.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from nobound.autodiff.tensor import Tensor, no_grad
from nobound.bounds import METHODS, Box, compute_bounds
from nobound.testing.soundness import assert_above, assert_below, slack
from nobound.testing.strategies import bound_problems


def region_of(problem) -> Box:
    return Box(Tensor(problem.lower), Tensor(problem.upper))


@settings(max_examples=300)
@given(problem=bound_problems())
def test_hbox_is_contained_in_ibp_at_every_layer(problem):
    model, region = problem.network.model, region_of(problem)
    ibp = compute_bounds(model, region, method="ibp", spec=problem.spec)
    hbox = compute_bounds(model, region, method="hbox", spec=problem.spec)
    assert_below(ibp.lower.numpy(), hbox.lower.numpy(), "HBox lower vs IBP lower")
    assert_above(ibp.upper.numpy(), hbox.upper.numpy(), "HBox upper vs IBP upper")
    assert set(hbox.intermediate) == set(ibp.intermediate)
    for index, (ibp_lower, ibp_upper) in ibp.intermediate.items():
        hbox_lower, hbox_upper = hbox.intermediate[index]
        assert_below(ibp_lower.numpy(), hbox_lower.numpy(), f"ReLU {index} lower")
        assert_above(ibp_upper.numpy(), hbox_upper.numpy(), f"ReLU {index} upper")


@settings(max_examples=200)
@given(problem=bound_problems(), steps=st.integers(1, 5),
       step_size=st.sampled_from([0.05, 0.1, 0.5, 1.0]), record_graph=st.booleans())
def test_alpha_crown_from_deeppoly_slopes_is_never_looser_than_deeppoly(problem, steps,
                                                                       step_size,
                                                                       record_graph):
    model, region = problem.network.model, region_of(problem)
    deeppoly = compute_bounds(model, region, method="deeppoly", spec=problem.spec)
    intermediate = {index: (lower.numpy(), upper.numpy())
                    for index, (lower, upper) in deeppoly.intermediate.items()}

    def alpha():
        return compute_bounds(model, region, method="alpha-crown", spec=problem.spec,
                              intermediate=intermediate, alpha_init="deeppoly",
                              alpha_steps=steps, alpha_step_size=step_size)
    if record_graph:
        optimised = alpha()
    else:
        with no_grad():
            optimised = alpha()
    assert_below(deeppoly.lower.numpy(), optimised.lower.numpy(), "alpha-CROWN lower")
    assert_above(deeppoly.upper.numpy(), optimised.upper.numpy(), "alpha-CROWN upper")


@settings(max_examples=200)
@given(problem=bound_problems(), method=st.sampled_from(METHODS))
def test_concretised_linear_bounds_are_the_numeric_bounds(problem, method):
    model, region = problem.network.model, region_of(problem)
    plain = compute_bounds(model, region, method=method, spec=problem.spec)
    with_linear = compute_bounds(model, region, method=method, spec=problem.spec,
                                 return_linear=True)
    lower, upper = with_linear.linear.concretize(region)
    for name, value, reference in (("lower", lower, with_linear.lower),
                                   ("upper", upper, with_linear.upper),
                                   ("lower without LinearBounds", plain.lower,
                                    with_linear.lower),
                                   ("upper without LinearBounds", plain.upper,
                                    with_linear.upper)):
        value, reference = value.numpy(), reference.numpy()
        error = np.abs(value - reference)
        assert np.all(error <= slack(value, reference)), \
            f"{method}: {name} {value} ≠ {reference} (error {error.max():.3e})"
