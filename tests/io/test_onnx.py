"""ONNX export and import: round trips, hand-built graphs, unsupported and malformed files."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

from nobound.io.onnx_export import export_onnx, to_onnx  # noqa: E402
from nobound.io.onnx_import import OnnxImportError, import_onnx  # noqa: E402
from nobound.nn import BatchNorm, Normalize, build_model, initialise  # noqa: E402


def random_batchnorm_statistics(model, rng) -> None:
    for layer in model.layers:
        if isinstance(layer, BatchNorm):
            n = layer.num_features
            layer.weight.data = rng.normal(size=n)
            layer.bias.data = rng.normal(size=n)
            layer.running_mean = rng.normal(size=n)
            layer.running_var = rng.uniform(0.5, 2.0, size=n)


@pytest.mark.parametrize("name, shape", [("cnn3", (1, 28, 28)), ("fc3x100", (1, 12, 12)),
                                         ("cnn7", (3, 8, 8))])
def test_round_trip_gives_the_same_outputs(name: str, shape: tuple, tmp_path) -> None:
    rng = np.random.default_rng(0)
    channels = shape[0]
    model = build_model(name, shape, 10, normalize=((0.4,) * channels, (0.25,) * channels),
                        dtype=np.float64)
    initialise(model, "kaiming", seed=1)
    random_batchnorm_statistics(model, rng)
    model.eval()
    x = rng.random((5, *shape))
    expected = model(x).data

    path = export_onnx(model, tmp_path / "net.onnx", shape)
    reference = ReferenceEvaluator(str(path)).run(None, {"input": x})[0]
    np.testing.assert_allclose(reference, expected, rtol=1e-10, atol=1e-10)

    imported = import_onnx(path, dtype=np.float64)
    assert imported.input_shape == shape and imported.num_outputs == 10
    assert [type(a) for a in imported.model.layers] == [type(b) for b in model.layers]
    np.testing.assert_allclose(imported.model(x).data, expected, rtol=1e-12, atol=1e-12)


def make_model(nodes, initialisers, input_shape, output_shape, input_name="x") -> object:
    graph = helper.make_graph(
        nodes, "test",
        [helper.make_tensor_value_info(input_name, TensorProto.DOUBLE, input_shape)],
        [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.DOUBLE,
                                       output_shape)],
        [numpy_helper.from_array(np.asarray(v, np.float64), k) for k, v in initialisers.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])


def assert_matches_reference(model_proto, x: np.ndarray) -> object:
    imported = import_onnx(model_proto, dtype=np.float64)
    reference = ReferenceEvaluator(model_proto).run(None, {"x": x})[0]
    ours = imported.model(x.reshape(x.shape[0], *imported.input_shape)).data
    np.testing.assert_allclose(ours, reference, rtol=1e-12, atol=1e-12)
    return imported


def test_matmul_add_gemm_chain_with_flat_input() -> None:
    rng = np.random.default_rng(1)
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h"]),
             helper.make_node("Add", ["h", "b1"], ["h1"]),
             helper.make_node("Relu", ["h1"], ["r"]),
             helper.make_node("Gemm", ["r", "W2", "b2"], ["y"], alpha=0.5, beta=2.0),
             helper.make_node("Mul", ["y", "scale"], ["y2"]),
             helper.make_node("Sub", ["y2", "shift"], ["out"])]
    constants = {"W1": rng.normal(size=(6, 5)), "b1": rng.normal(size=5),
                 "W2": rng.normal(size=(5, 3)), "b2": rng.normal(size=3),
                 "scale": np.array([1.0, -2.0, 0.5]), "shift": rng.normal(size=3)}
    proto = make_model(nodes, constants, [1, 6], [1, 3])
    imported = assert_matches_reference(proto, rng.normal(size=(4, 6)))
    assert imported.input_shape == (6,) and imported.num_outputs == 3


def test_normalisation_conv_batchnorm_and_input_reshape() -> None:
    rng = np.random.default_rng(2)
    nodes = [helper.make_node("Reshape", ["x", "shape4"], ["img"]),
             helper.make_node("Sub", ["img", "mean"], ["c"]),
             helper.make_node("Div", ["c", "std"], ["n"]),
             helper.make_node("Conv", ["n", "K"], ["conv"], kernel_shape=[3, 3],
                              strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["conv", "kb"], ["convb"]),
             helper.make_node("BatchNormalization", ["convb", "g", "be", "m", "v"], ["bn"],
                              epsilon=1e-3),
             helper.make_node("Relu", ["bn"], ["r"]),
             helper.make_node("Transpose", ["r"], ["t"], perm=[0, 1, 2, 3]),
             helper.make_node("Flatten", ["t"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "W", "b"], ["out"], transB=1)]
    constants = {"shape4": np.array([-1, 2, 6, 6]), "mean": np.array([0.3, 0.5]).reshape(2, 1, 1),
                 "std": np.array([0.2, 0.4]).reshape(1, 2, 1, 1),
                 "K": rng.normal(size=(4, 2, 3, 3)), "kb": rng.normal(size=(1, 4, 1, 1)),
                 "g": rng.normal(size=4), "be": rng.normal(size=4), "m": rng.normal(size=4),
                 "v": rng.uniform(0.5, 2, size=4), "W": rng.normal(size=(3, 36)),
                 "b": rng.normal(size=3)}
    constants["shape4"] = constants["shape4"].astype(np.int64)
    graph_inputs = make_model(nodes, {}, [1, 72], [1, 3])
    graph_inputs.graph.initializer.extend(
        [numpy_helper.from_array(v if k == "shape4" else np.asarray(v, np.float64), k)
         for k, v in constants.items()])
    imported = assert_matches_reference(graph_inputs, rng.random((3, 72)))
    assert imported.input_shape == (2, 6, 6)
    assert isinstance(imported.model.layers[0], Normalize)  # Sub then Div merged into one
    np.testing.assert_allclose(imported.model.layers[0].mean, [0.3, 0.5])
    np.testing.assert_allclose(imported.model.layers[0].std, [0.2, 0.4])


def test_unsupported_operator_names_operator_and_node() -> None:
    nodes = [helper.make_node("Gemm", ["x", "W"], ["h"], name="dense"),
             helper.make_node("Erf", ["h"], ["out"], name="squash")]
    proto = make_model(nodes, {"W": np.ones((2, 2))}, [1, 2], [1, 2])
    with pytest.raises(OnnxImportError, match=r"node 'squash' \(Erf\): unsupported"):
        import_onnx(proto)


def test_residual_and_non_square_conv_are_rejected() -> None:
    nodes = [helper.make_node("Relu", ["x"], ["h"]),
             helper.make_node("Add", ["h", "x"], ["out"], name="skip")]
    with pytest.raises(OnnxImportError, match=r"'skip' \(Add\): not a chain"):
        import_onnx(make_model(nodes, {}, [1, 3], [1, 3]))
    nodes = [helper.make_node("Conv", ["x", "K"], ["out"], name="c", kernel_shape=[3, 2])]
    with pytest.raises(OnnxImportError, match="square kernel"):
        import_onnx(make_model(nodes, {"K": np.ones((1, 1, 3, 2))}, [1, 1, 5, 5],
                               [1, 1, 3, 4]))


def test_per_pixel_constant_on_images_is_rejected() -> None:
    img = np.random.default_rng(0).normal(size=(1, 4, 4))
    nodes = [helper.make_node("Sub", ["x", "img"], ["out"], name="centre")]
    with pytest.raises(OnnxImportError, match="not per-channel"):
        import_onnx(make_model(nodes, {"img": img}, [1, 1, 4, 4], [1, 1, 4, 4]))


def test_malformed_model_is_a_clear_error(tmp_path) -> None:
    nodes = [helper.make_node("Relu", ["nowhere"], ["out"])]
    with pytest.raises(OnnxImportError, match="invalid ONNX model"):
        import_onnx(make_model(nodes, {}, [1, 3], [1, 3]))
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not an onnx file")
    with pytest.raises((OnnxImportError, onnx.onnx_cpp2py_export.checker.ValidationError,
                        Exception)) as error:
        import_onnx(garbage)
    assert not isinstance(error.value, AssertionError)


def test_export_rejects_unknown_layers() -> None:
    from nobound.nn import Module, Sequential

    class Odd(Module):
        def forward(self, x, params=None):
            return x

    with pytest.raises(ValueError, match="no ONNX export"):
        to_onnx(Sequential(Odd()), (3,))
