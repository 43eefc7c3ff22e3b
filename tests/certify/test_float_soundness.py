"""Verdicts that survive floating point: the issue's cases, the rounding primitives, replay.

Every expected answer comes from exact rational arithmetic (``fractions``) on the stored
floats, never from the code under test.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from nobound.certify.certificate import LeafProof, TreeNode, problem_certificate
from nobound.certify.checker import check_proofs
from nobound.certify.pipeline import Certifier, CertifierConfig
from nobound.certify.problem import VerificationProblem
from nobound.certify.rounding import lower_dot, matmul_error, upper_product
from nobound.certify.stored_network import stored_network
from nobound.exact.dense import dense_network
from nobound.nn import Linear, ReLU, Sequential
from nobound.testing.ill_conditioned import IllConditionedCase


def exact_matmul(a: np.ndarray, b: np.ndarray) -> list[list[Fraction]]:
    return [[sum((Fraction(x) * Fraction(y) for x, y in zip(row, col, strict=True)),
                 Fraction(0)) for col in b.T] for row in a]


def test_matmul_error_bounds_the_real_product() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(1, 6))
        scales = 2.0 ** rng.integers(-60, 60, size=(2, 3, n))
        a = rng.standard_normal((3, n)) * scales[0]
        b = (rng.standard_normal((3, n)) * scales[1]).T
        a[0, 0] = 2.0 ** -1074  # a subnormal
        product, error = matmul_error(a, b)
        exact = exact_matmul(a, b)
        for i in range(3):
            for j in range(3):
                assert abs(exact[i][j] - Fraction(product[i, j])) <= Fraction(error[i, j])
        low = lower_dot(a[0], b[:, 0])
        assert Fraction(low) <= exact[0][0]
        high = upper_product(np.abs(a), np.abs(b))
        assert all(Fraction(high[i, j]) >= sum(abs(Fraction(x) * Fraction(y)) for x, y in
                                                zip(a[i], b[:, j], strict=True))
                   for i in range(3) for j in range(3))


def test_stored_network_reads_linear_weights_exactly() -> None:
    """Probing computes (w + b) − b: with b = 1e17 a weight of 1 probes as 0 or 16."""
    layer = Linear(1, 1, dtype=np.float64)
    layer.weight.data = np.array([[1.0]])
    layer.bias.data = np.array([1e17])
    model = Sequential(layer, ReLU(), Linear(1, 1, dtype=np.float64)).eval()
    assert dense_network(model, (1,)).weights[0][0, 0] != 1.0
    stored = stored_network(model, (1,))
    assert stored.weights[0][0, 0] == 1.0 and not stored.weight_radii[0].any()


def network(w1: float, b1: float, w2: float, b2: float) -> IllConditionedCase:
    return IllConditionedCase((((w1,),), ((w2,),)), ((b1,), (b2,)), 0.0, 0.0)


W = 2.0 ** 54 + 4
ISSUE_CASES = {
    # y = m − relu(b − x) with weights ±1 on a box up to 9.6e7
    "m - relu(b - x) on [0.70, 9.6e7]": (network(-1.0, 95999999.0, -1.0, 95999998.3),
                                          0.70, 9.6e7),
    # a single weight of 2^54 + 4 on [0, 1]
    "weight 2^54 + 4 on [0, 1]": (network(W, 2.0 ** 54, -1 / W, 1.9999999999999996), 0.0, 1.0),
    # y = 1 − relu(2.5 − x) on [1, 2^53 + 2]
    "1 - relu(2.5 - x) on [1, 2^53 + 2]": (network(-1.0, 2.5, -1.0, 1.0), 1.0, 2.0 ** 53 + 2),
}


@pytest.mark.parametrize("name", sorted(ISSUE_CASES))
def test_issue_false_unsat_cases_are_not_certified(name: str) -> None:
    shape, lower, upper = ISSUE_CASES[name]
    case = IllConditionedCase(shape.weights, shape.biases, lower, upper)
    assert case.exact_minimum() <= 0, "each case has a point with y ≤ 0"
    model = case.model()
    problem = case.problem(model)
    for methods in (("ibp",), ("deeppoly",), ("alpha-crown",),
                    ("ibp", "crown-ibp", "deeppoly", "alpha-crown")):
        verdict = Certifier(model, (1,), CertifierConfig(timeout=10, methods=methods)
                            ).verify([problem])
        assert verdict.status != "certified", (methods, verdict)
        if verdict.status == "falsified":
            x = float(verdict.counterexample.input[0])
            assert lower <= x <= upper
            assert problem.outputs(np.array([[x]]))[0, 0] <= 0
    # a one-leaf "proof" (the form a whole-box bound takes) is rejected by the checker
    leaf = [TreeNode(proof=LeafProof([1.0], [], 1.0, "ibp"))]
    report = check_proofs(stored_network(model, (1,)), [problem_certificate(problem, leaf)],
                          reproduce=False)
    assert not report.valid and "does not prove" in report.errors[0]


def test_a_true_margin_is_still_certified() -> None:
    """Soundness without giving up: y = 1.75 − relu(2.5 − x) on [1, 4] (min 0.25)."""
    case = IllConditionedCase((((-1.0,),), ((-1.0,),)), ((2.5,), (1.75,)), 1.0, 4.0)
    verdict = Certifier(case.model(), (1,)).verify([case.problem()])
    assert verdict.status == "certified" and verdict.details["proof_check"] == "passed"


def test_allow_roundoff_errors_skips_the_check() -> None:
    case = IllConditionedCase((((-1.0,),), ((-1.0,),)), ((2.5,), (1.75,)), 1.0, 4.0)
    config = CertifierConfig(allow_roundoff_errors=True)
    verdict = Certifier(case.model(), (1,), config).verify([case.problem()])
    assert verdict.status == "certified" and verdict.details["proof_check"] == "skipped"


# ------------------------------------------------------------------ float32 replay
def float32_onnx(path, big: float) -> None:
    """y = (relu(x + big) − big) + 0.5 as a float32 ONNX graph on one input."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    def constant(name: str, value: float):
        return numpy_helper.from_array(np.array([value], np.float32), name)

    nodes = [helper.make_node("Add", ["x", "big"], ["a"]),
             helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("Sub", ["r", "big"], ["s"]),
             helper.make_node("Add", ["s", "half"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                          [1, 1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])],
                              [constant("big", big), constant("half", 0.5)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


VNNLIB = """(declare-const X_0 Real)
(declare-const Y_0 Real)
(assert (>= X_0 -1.0))
(assert (<= X_0 -0.6))
(assert (<= Y_0 0.0))
"""


def reference_output(path, x: float) -> float:
    import onnx
    from onnx.reference import ReferenceEvaluator

    evaluator = ReferenceEvaluator(onnx.load(str(path)))
    return float(evaluator.run(None, {"x": np.array([[x]], np.float32)})[0].reshape(-1)[0])


def test_float32_onnx_model_is_not_reported_sat_by_float64(tmp_path, capsys) -> None:
    """In float64 y = x + 0.5 < 0 on the box; the float32 model gives 0.5 everywhere."""
    from nobound.certify.replay import OnnxReplay
    from nobound.cli import main
    from nobound.io.onnx_import import import_onnx

    float32_onnx(tmp_path / "net.onnx", 1e8)
    (tmp_path / "p.vnnlib").write_text(VNNLIB)
    assert reference_output(tmp_path / "net.onnx", -0.8) == 0.5
    # the certifier on the float64 import, with the ONNX replay: never falsified
    network = import_onnx(str(tmp_path / "net.onnx"), dtype=np.float64, check=False)
    certifier = Certifier(network.model, network.input_shape, CertifierConfig(timeout=10),
                          replay=OnnxReplay(str(tmp_path / "net.onnx")))
    problem = VerificationProblem(certifier.model, np.array([-1.0]), np.array([-0.6]),
                                  np.array([[1.0]]), np.array([0.0]))
    assert problem.outputs(np.array([[-0.8]]))[0, 0] < 0  # float64 says unsafe
    verdict = certifier.verify([problem])
    assert verdict.status == "unknown", verdict
    # the command: never sat (the import check may refuse the network: exit 2)
    status = main(["verify", str(tmp_path / "net.onnx"), str(tmp_path / "p.vnnlib"),
                   "--timeout", "20"])
    assert capsys.readouterr().out.split("\n")[0] != "sat" and status in (2, 20, 30)


def test_float32_onnx_counterexample_replays_in_float32(tmp_path, capsys) -> None:
    from nobound.cli import main

    float32_onnx(tmp_path / "net.onnx", 1.0)  # y = x + 0.5 in float32 as well
    (tmp_path / "p.vnnlib").write_text(VNNLIB)
    status = main(["verify", str(tmp_path / "net.onnx"), str(tmp_path / "p.vnnlib"),
                   "--timeout", "20"])
    out = capsys.readouterr().out
    assert out.split("\n")[0] == "sat" and status == 10
    x = float(out.split("(X_0 ")[1].split(")")[0])
    assert -1.0 <= x <= -0.6 and float(np.float32(x)) == x
    assert reference_output(tmp_path / "net.onnx", x) <= 0


def test_float32_checkpoint_counterexample_is_a_float32_point() -> None:
    """A float32 nobound model: the counterexample is stored in float32, in the box, and
    the float32 forward pass violates the property there."""
    first, second = Linear(1, 1, dtype=np.float32), Linear(1, 1, dtype=np.float32)
    first.weight.data = np.array([[1.0]], np.float32)
    first.bias.data = np.array([0.0], np.float32)
    second.weight.data = np.array([[1.0]], np.float32)
    second.bias.data = np.array([-0.3], np.float32)
    model = Sequential(first, ReLU(), second).eval()
    certifier = Certifier(model, (1,))
    problem = VerificationProblem(certifier.model, np.array([0.1]), np.array([0.2]),
                                  np.array([[1.0]]), np.array([0.0]))
    verdict = certifier.verify([problem])
    assert verdict.status == "falsified"
    x = verdict.counterexample.input
    assert x.dtype == np.float64 and np.all(x.astype(np.float32).astype(np.float64) == x)
    assert 0.1 <= x[0] <= 0.2
    from nobound.autodiff.tensor import Tensor

    assert model(Tensor(x.astype(np.float32)[None])).data[0, 0] <= 0
