"""One model format across the CLI: .h5 and .onnx load alike, ``export`` converts both
ways, and a network imported from ONNX (not a zoo network) can be trained and evaluated."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from nobound.cli import main  # noqa: E402
from nobound.io.checkpoint import load_checkpoint  # noqa: E402
from nobound.io.models import load_network, model_kind, save_network  # noqa: E402
from nobound.nn import Linear  # noqa: E402

TINY = ["--dataset", "fashion-mnist-embedded", "--limit", "80", "--epochs", "1",
        "--batch-size", "40", "--eval-limit", "40", "--quiet", "--lr", "5e-3"]


def pytorch_style_mnist_net(seed: int = 0) -> object:
    """Conv with Keras-"same" asymmetric pads, Relu, AveragePool, dynamic flatten, Gemm."""
    rng = np.random.default_rng(seed)
    constants = {"K": rng.normal(size=(4, 1, 4, 4)) * 0.3, "kb": np.zeros(4),
                 "W": rng.normal(size=(10, 4 * 7 * 7)) * 0.05, "b": np.zeros(10),
                 "shape": np.array([1, -1], np.int64)}
    nodes = [helper.make_node("Conv", ["x", "K", "kb"], ["c"], kernel_shape=[4, 4],
                              strides=[2, 2], pads=[1, 1, 2, 2]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("AveragePool", ["r"], ["p"], kernel_shape=[2, 2],
                              strides=[2, 2]),
             helper.make_node("Reshape", ["p", "shape"], ["f"]),
             helper.make_node("Gemm", ["f", "W", "b"], ["out"], transB=1)]
    graph = helper.make_graph(
        nodes, "net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 28, 28])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 10])],
        [numpy_helper.from_array(v if v.dtype == np.int64 else v.astype(np.float32), k)
         for k, v in constants.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


@pytest.fixture()
def onnx_file(tmp_path):
    path = tmp_path / "net.onnx"
    path.write_bytes(pytorch_style_mnist_net().SerializeToString())
    return path


def test_model_kind_and_bad_suffix(tmp_path) -> None:
    assert model_kind("a.onnx.gz") == "onnx" and model_kind("b.h5") == "checkpoint"
    with pytest.raises(ValueError, match="unknown model format"):
        model_kind("c.pt")
    assert main(["export", "x.pt", "--to", str(tmp_path / "y.h5")]) == 2


def test_export_both_ways_keeps_the_function(onnx_file, tmp_path, capsys) -> None:
    h5 = tmp_path / "net.h5"
    assert main(["export", str(onnx_file), "--to", str(h5)]) == 0
    assert main(["export", str(onnx_file), "--to", str(h5)]) == 2      # exists
    back = tmp_path / "back.onnx.gz"
    assert main(["export", str(h5), "--to", str(back)]) == 0
    capsys.readouterr()
    first, second, third = (load_network(p) for p in (onnx_file, h5, back))
    x = np.random.default_rng(1).random((3, 1, 28, 28))
    outputs = [n.model(x.astype(n.model.layers[0].weight.dtype)).data for n in
               (first, second, third)]
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(outputs[2], outputs[0], rtol=1e-5, atol=1e-5)
    assert second.input_shape == (1, 28, 28) and second.num_outputs == 10


def test_nhwc_network_keeps_its_input_order_in_a_checkpoint(tmp_path) -> None:
    rng = np.random.default_rng(2)
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
             helper.make_node("Flatten", ["t"], ["f"]),
             helper.make_node("MatMul", ["f", "W"], ["out"])]
    graph = helper.make_graph(
        nodes, "nhwc", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 2, 3])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(rng.normal(size=(12, 4)).astype(np.float32), "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    source = tmp_path / "nhwc.onnx"
    source.write_bytes(model.SerializeToString())
    network = load_network(source)
    assert network.input_order is not None
    save_network(network, tmp_path / "nhwc.h5")
    again = load_network(tmp_path / "nhwc.h5")
    np.testing.assert_array_equal(again.input_order, network.input_order)
    with pytest.raises(ValueError, match="permuted order"):
        save_network(network, tmp_path / "nhwc2.onnx")


def test_an_imported_network_trains_and_evaluates(onnx_file, tmp_path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["train", "--arch", "cnn3", "--method", "standard", "--init-from",
                 str(onnx_file), "--out", str(run), *TINY]) == 0
    trained = load_checkpoint(run / "model.h5").model
    imported = load_network(onnx_file).model
    assert [type(a) for a in trained.layers] == [type(b) for b in imported.layers]
    assert isinstance(trained.layers[-1], Linear)
    moved = np.abs(trained.layers[-1].weight.data - imported.layers[-1].weight.data).max()
    assert moved > 0, "training did not change the imported network"
    capsys.readouterr()
    assert main(["evaluate", "--model", str(onnx_file), "--dataset",
                 "fashion-mnist-embedded", "--n", "20", "--steps", "2", "--restarts", "1",
                 "--out", str(tmp_path / "eval"), "--quiet"]) == 0


def test_certify_and_bounds_take_onnx(onnx_file, tmp_path, capsys) -> None:
    assert main(["certify", "--model", str(onnx_file), "--dataset", "fashion-mnist-embedded",
                 "--eps", "0.001", "--n", "2", "--timeout", "5", "--attack-steps", "2",
                 "--attack-restarts", "1", "--out", str(tmp_path / "cert"), "--quiet"]) == 0
    assert main(["bounds", "--model", str(onnx_file), "--dataset", "fashion-mnist-embedded",
                 "--eps", "0.001", "--method", "ibp", "--json"]) == 0
    capsys.readouterr()
