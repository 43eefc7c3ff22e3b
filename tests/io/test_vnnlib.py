"""VNNLIB parsing: boxes, disjunctions of linear output constraints, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from nobound.io.vnnlib import VNNLibError, format_counterexample, parse_vnnlib, read_vnnlib

HEADER = """; two inputs, three outputs
(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(declare-const Y_2 Real)
"""
BOX = """(assert (<= X_0 0.5))
(assert (>= X_0 -0.5))
(assert (<= X_1 1.0))
(assert (>= X_1 0.25))
"""


def test_robustness_property_in_vnn_comp_form() -> None:
    source = HEADER + BOX + """(assert (or
    (and (>= Y_1 Y_0))
    (and (>= Y_2 Y_0))
))"""
    prop = parse_vnnlib(source)
    assert (prop.num_inputs, prop.num_outputs, len(prop.disjuncts)) == (2, 3, 2)
    first, second = prop.disjuncts
    np.testing.assert_array_equal(first.input_lower, [-0.5, 0.25])
    np.testing.assert_array_equal(first.input_upper, [0.5, 1.0])
    # unsafe iff spec·y + offset ≤ 0: Y_1 ≥ Y_0 ⇔ Y_0 − Y_1 ≤ 0
    np.testing.assert_array_equal(first.spec, [[1.0, -1.0, 0.0]])
    np.testing.assert_array_equal(second.spec, [[1.0, 0.0, -1.0]])
    np.testing.assert_array_equal(first.offset, [0.0])


def test_conjunction_constants_and_linear_terms() -> None:
    source = HEADER + BOX + "(assert (and (<= Y_0 3.5) (>= (+ Y_1 (* 2 Y_2) 1) (- Y_0))))"
    (disjunct,) = parse_vnnlib(source).disjuncts
    # Y_0 − 3.5 ≤ 0 ; −Y_0 − (Y_1 + 2 Y_2 + 1) ≤ 0
    np.testing.assert_array_equal(disjunct.spec, [[1, 0, 0], [-1, -1, -2]])
    np.testing.assert_array_equal(disjunct.offset, [-3.5, -1.0])


def test_unsafe_set_semantics_on_points() -> None:
    """A point is in the unsafe set iff every row of some disjunct is ≤ 0."""
    source = HEADER + BOX + "(assert (or (and (<= Y_0 Y_1) (<= Y_2 0.5)) (>= Y_2 2)))"
    prop = parse_vnnlib(source)

    def unsafe(y: np.ndarray) -> bool:
        return any(np.all(d.spec @ y + d.offset <= 0) for d in prop.disjuncts)

    assert unsafe(np.array([0.0, 1.0, 0.0]))
    assert not unsafe(np.array([2.0, 1.0, 0.0]))
    assert unsafe(np.array([2.0, 1.0, 3.0]))
    assert not unsafe(np.array([0.0, 1.0, 1.0]))


def test_input_constraints_inside_disjunctions_give_one_box_each() -> None:
    source = """(declare-const X_0 Real)
(declare-const Y_0 Real)
(assert (or (and (>= X_0 0) (<= X_0 1) (<= Y_0 0))
            (and (>= X_0 2) (<= X_0 3) (>= Y_0 5))))"""
    first, second = parse_vnnlib(source).disjuncts
    assert (first.input_lower[0], first.input_upper[0]) == (0.0, 1.0)
    assert (second.input_lower[0], second.input_upper[0]) == (2.0, 3.0)
    np.testing.assert_array_equal(second.spec, [[-1.0]])
    np.testing.assert_array_equal(second.offset, [5.0])


@pytest.mark.parametrize("body, line, fragment", [
    ("(assert (<= X_0 0.5)", 7, "unclosed"),
    ("(assert (<= X_0 0.5)))", 7, "unbalanced"),
    ("(assert (== Y_0 0.5))", 7, "unsupported operator '=='"),
    ("(assert (<= Y_7 0.5))", 7, "Y_7 used before declare-const"),
    ("(assert (<= X_0 abc))", 7, "expected a number"),
    ("(assert (<= (* Y_0 Y_1) 0.5))", 7, "not linear"),
    ("(assert (<= X_0 Y_0))", 7, "mixing X and Y"),
    ("(assert (<= (+ X_0 X_1) 1))", 7, "single X_i"),
    ("(assert (<= Y_0))", 7, "exactly two arguments"),
    ("(check-sat)", 7, "unsupported command"),
])
def test_malformed_inputs_name_the_line(body: str, line: int, fragment: str) -> None:
    source = HEADER + body
    with pytest.raises(VNNLibError) as error:
        parse_vnnlib(source + ("\n" + BOX if "X_0 0.5" not in body else ""))
    assert error.value.line == line
    assert str(error.value).startswith(f"line {line}:")
    assert fragment in str(error.value)


def test_unbounded_input_and_missing_declarations_are_errors() -> None:
    with pytest.raises(VNNLibError, match="X_1 has no finite"):
        parse_vnnlib(HEADER + "(assert (<= X_0 1))\n(assert (>= X_0 0))\n(assert (<= Y_0 0))")
    with pytest.raises(VNNLibError, match="without gaps"):
        parse_vnnlib("(declare-const X_1 Real)\n(declare-const Y_0 Real)\n(assert (<= Y_0 0))")
    with pytest.raises(VNNLibError, match="declared twice"):
        parse_vnnlib("(declare-const X_0 Real)\n(declare-const X_0 Real)")


def test_read_file_and_counterexample_format(tmp_path) -> None:
    path = tmp_path / "prop.vnnlib"
    path.write_text(HEADER + BOX + "(assert (<= Y_0 Y_1))")
    assert len(read_vnnlib(path).disjuncts) == 1
    text = format_counterexample(np.array([0.1, 0.2]), np.array([1.0, -2.5, 3.0]))
    assert text.startswith("((X_0 0.1)") and text.rstrip().endswith("(Y_2 3.0))")
    assert text.count("(X_") == 2 and text.count("(Y_") == 3
