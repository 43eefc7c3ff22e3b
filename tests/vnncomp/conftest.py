"""Small VNN-COMP instances built on the spot: a float32 ONNX network written the way
exporters write it, properties whose answers are known, and instance CSVs."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def small_network(seed: int = 0, hidden: int = 8) -> object:
    """x (1, 1, 1, 3) → Sub → Flatten → MatMul/Add/Relu → Gemm → y (1, 2), float32."""
    rng = np.random.default_rng(seed)
    constants = {"mean": rng.normal(size=(1, 1, 1, 3)) * 0.1,
                 "W": rng.normal(size=(3, hidden)), "b": rng.normal(size=hidden) * 0.1,
                 "W2": rng.normal(size=(2, hidden)), "b2": np.zeros(2)}
    nodes = [helper.make_node("Sub", ["x", "mean"], ["c"]),
             helper.make_node("Flatten", ["c"], ["f"]),
             helper.make_node("MatMul", ["f", "W"], ["m"]),
             helper.make_node("Add", ["m", "b"], ["h"]),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "W2", "b2"], ["y"], transB=1)]
    graph = helper.make_graph(
        nodes, "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in constants.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def twin_network(width: int = 40, seed: int = 1) -> object:
    """y0 = y1 exactly (two copies of one hidden layer): "y0 − y1 ≥ 1e-6" is unsat, but no
    relaxation proves it without splitting most of the ReLUs — a reliably slow instance."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(6, width))
    b = rng.normal(size=width) * 0.1
    v = rng.normal(size=(width, 1))
    v2 = rng.normal(size=(width, width)) / np.sqrt(width)
    constants = {"W": np.concatenate([w, w], axis=1), "b": np.concatenate([b, b]),
                 "W2": np.block([[v2, np.zeros((width, width))],
                                 [np.zeros((width, width)), v2]]),
                 "V": np.block([[v, np.zeros((width, 1))], [np.zeros((width, 1)), v]])}
    nodes = [helper.make_node("MatMul", ["x", "W"], ["m"]),
             helper.make_node("Add", ["m", "b"], ["h"]),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "W2"], ["m2"]),
             helper.make_node("Relu", ["m2"], ["r2"]),
             helper.make_node("MatMul", ["r2", "V"], ["y"])]
    graph = helper.make_graph(
        nodes, "twin", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in constants.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def box_property(num_inputs: int, radius: float, rows: str) -> str:
    lines = [f"(declare-const X_{i} Real)" for i in range(num_inputs)]
    lines += ["(declare-const Y_0 Real)", "(declare-const Y_1 Real)"]
    for i in range(num_inputs):
        lines += [f"(assert (>= X_{i} {-radius}))", f"(assert (<= X_{i} {radius}))"]
    return "\n".join(lines) + f"\n{rows}\n"


@pytest.fixture(scope="session")
def instances(tmp_path_factory) -> dict[str, Path]:
    """Files of a small benchmark: net.onnx, net.onnx.gz, twin.onnx and properties."""
    from onnx.reference import ReferenceEvaluator

    folder = tmp_path_factory.mktemp("bench")
    model = small_network()
    (folder / "net.onnx").write_bytes(model.SerializeToString())
    (folder / "net_gz.onnx.gz").write_bytes(gzip.compress(model.SerializeToString()))
    (folder / "twin.onnx").write_bytes(twin_network().SerializeToString())
    # the range of y0 - y1 on the box, sampled: far above its max is unsat; below the
    # largest sampled value is sat (that sample is a counterexample)
    evaluator = ReferenceEvaluator(model)
    rng = np.random.default_rng(0)
    xs = rng.uniform(-1, 1, size=(2000, 3)).astype(np.float32)
    margins = np.array([np.subtract(*evaluator.run(None, {"x": x.reshape(1, 1, 1, 3)})[0][0])
                        for x in xs])
    (folder / "unsat.vnnlib").write_text(box_property(
        3, 1.0, f"(assert (>= (- Y_0 Y_1) {float(margins.max()) + 1000.0!r}))"))
    (folder / "sat.vnnlib").write_text(box_property(
        3, 1.0, f"(assert (>= (- Y_0 Y_1) {float(margins.max()) - 0.5!r}))"))
    (folder / "sat.vnnlib.gz").write_bytes(gzip.compress((folder / "sat.vnnlib").read_bytes()))
    (folder / "twin.vnnlib").write_text(box_property(6, 1.0, "(assert (>= (- Y_0 Y_1) 1e-6))"))
    (folder / "broken.vnnlib").write_text("(declare-const X_0 Real)\n(assert (<= X_0\n")
    return {p.name: p for p in folder.iterdir()} | {"folder": folder}
