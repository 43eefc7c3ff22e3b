"""ONNX as exporters write it: every graph here is built the way PyTorch, tf2onnx or the
VNN-COMP benchmarks write it, imported, and compared with ``onnx.reference`` on inputs
the importer never saw (file order, float32 graphs as exporters write them)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

from nobound.io.onnx_check import check_import  # noqa: E402
from nobound.io.onnx_import import (  # noqa: E402
    OnnxImportError,
    import_onnx,
    symmetric_convolution,
)
from nobound.nn import Conv2d, Linear, ReLU  # noqa: E402

VNNCOMP = Path(__file__).resolve().parents[3] / "shared" / "vnncomp"


def make_model(nodes, constants, input_shape, output_shape, opset=13,
               elem=TensorProto.FLOAT) -> object:
    dtype = np.float32 if elem == TensorProto.FLOAT else np.float64
    initialisers = [numpy_helper.from_array(
        v if np.asarray(v).dtype.kind in "iu" else np.asarray(v, dtype), k)
        for k, v in constants.items()]
    graph = helper.make_graph(
        nodes, "exported",
        [helper.make_tensor_value_info("x", elem, input_shape)],
        [helper.make_tensor_value_info(nodes[-1].output[0], elem, output_shape)],
        initialisers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def matches_reference(proto, count: int = 4, seed: int = 1, outputs=None):
    """Import, then compare with the reference on fresh file-ordered inputs."""
    imported = import_onnx(proto, dtype=np.float64)
    source = proto.graph.input[0]
    shape = [d.dim_value if d.dim_value > 0 else 1 for d in source.type.tensor_type.shape.dim]
    rng = np.random.default_rng(seed)
    evaluator = ReferenceEvaluator(proto)
    for _ in range(count):
        x = rng.normal(size=shape).astype(np.float32)
        expected = evaluator.run(None, {"x": x})[0].reshape(-1)
        ours = imported.model(imported.to_model_input(x.reshape(-1))[None]).data.reshape(-1)
        if outputs is not None:
            ours = outputs(ours)
        np.testing.assert_allclose(ours, expected, rtol=2e-5, atol=2e-5)
    return imported


def test_pytorch_dynamic_flatten_is_folded() -> None:
    """``x.view(x.size(0), -1)``: Shape → Gather → Unsqueeze → Concat → Reshape."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "K", "kb"], ["c"], kernel_shape=[3, 3]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Shape", ["r"], ["s"]),
             helper.make_node("Constant", [], ["zero"],
                              value=numpy_helper.from_array(np.array(0, np.int64))),
             helper.make_node("Gather", ["s", "zero"], ["batch"], axis=0),
             helper.make_node("Unsqueeze", ["batch", "axes"], ["b1"]),
             helper.make_node("Identity", ["minus_one"], ["m1"]),
             helper.make_node("Cast", ["m1"], ["m1c"], to=TensorProto.INT64),
             helper.make_node("Concat", ["b1", "m1c"], ["target"], axis=0),
             helper.make_node("Reshape", ["r", "target"], ["flat"]),
             helper.make_node("Identity", ["flat"], ["flat2"]),
             helper.make_node("Gemm", ["flat2", "W", "b"], ["out"], transB=1)]
    constants = {"K": rng.normal(size=(2, 1, 3, 3)), "kb": rng.normal(size=2),
                 "axes": np.array([0], np.int64), "minus_one": np.array([-1], np.int64),
                 "W": rng.normal(size=(3, 32)), "b": rng.normal(size=3)}
    proto = make_model(nodes, constants, ["batch", 1, 6, 6], ["batch", 3])
    imported = matches_reference(proto)
    assert [type(layer).__name__ for layer in imported.model.layers] == \
        ["Conv2d", "ReLU", "Flatten", "Linear"]


def test_constant_of_shape_and_constant_chains_fold() -> None:
    rng = np.random.default_rng(3)
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("ConstantOfShape", ["s"], ["ones"],
                              value=numpy_helper.from_array(np.array([0.5], np.float32))),
             helper.make_node("Mul", ["x", "ones"], ["half"]),
             helper.make_node("MatMul", ["half", "W"], ["out"])]
    proto = make_model(nodes, {"W": rng.normal(size=(4, 2))}, [1, 4], [1, 2])
    matches_reference(proto)


@pytest.mark.parametrize("kernel, pads", [(2, [0, 0, 1, 1]), (4, [1, 1, 2, 2]),
                                          (3, [1, 0, 1, 2]), (2, [1, 1, 0, 0])])
def test_asymmetric_pads_become_symmetric_with_zero_taps(kernel, pads) -> None:
    """Keras "same" with an even kernel pads more at the bottom/right."""
    rng = np.random.default_rng(kernel)
    nodes = [helper.make_node("Conv", ["x", "K", "kb"], ["out"], kernel_shape=[kernel] * 2,
                              pads=pads)]
    out_h = 7 + pads[0] + pads[2] - kernel + 1
    out_w = 7 + pads[1] + pads[3] - kernel + 1
    if out_h != out_w and (kernel + abs(pads[0] - pads[2]) - 2 * max(pads[0], pads[2]) !=
                           kernel + abs(pads[1] - pads[3]) - 2 * max(pads[1], pads[3])):
        pytest.skip("not representable")
    proto = make_model(nodes, {"K": rng.normal(size=(3, 2, kernel, kernel)),
                               "kb": rng.normal(size=3)},
                       [1, 2, 7, 7], [1, 3, out_h, out_w])
    matches_reference(proto)


def test_symmetric_convolution_matches_direct_padding_exactly() -> None:
    """The zero-tap rewrite against ONNX's own Conv with the asymmetric pads (float64)."""
    from onnx.reference.ops.op_conv import Conv  # noqa: F401  (reference is the oracle)

    rng = np.random.default_rng(5)
    weight = rng.normal(size=(2, 1, 2, 3))
    pads = [0, 1, 1, 1]
    square, stride, padding = symmetric_convolution(weight, pads, [1, 1])
    assert square.shape[2] == square.shape[3]
    x = rng.normal(size=(1, 1, 5, 5))
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=pads)
    expected = ReferenceEvaluator(node).run(None, {"x": x, "w": weight})[0]
    layer = Conv2d(1, 2, square.shape[2], stride, padding, bias=False, dtype=np.float64)
    layer.weight.data = square
    np.testing.assert_allclose(layer(x).data, expected, rtol=1e-12, atol=1e-12)


def test_unrepresentable_pads_are_a_clear_error() -> None:
    with pytest.raises(OnnxImportError, match="square kernel"):
        symmetric_convolution(np.ones((1, 1, 3, 1)), [0, 0, 0, 0], [1, 1])
    with pytest.raises(OnnxImportError, match="unequal strides"):
        symmetric_convolution(np.ones((1, 1, 3, 3)), [0, 0, 0, 0], [1, 2])


def test_pad_node_is_merged_into_the_next_conv_and_average_pool() -> None:
    rng = np.random.default_rng(6)
    nodes = [helper.make_node("Pad", ["x", "p1"], ["padded"], mode="constant"),
             helper.make_node("Conv", ["padded", "K"], ["c"], kernel_shape=[3, 3],
                              pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Pad", ["r", "p2"], ["rp"]),
             helper.make_node("AveragePool", ["rp"], ["pool"], kernel_shape=[2, 2],
                              strides=[2, 2]),
             helper.make_node("Flatten", ["pool"], ["out"], axis=1)]
    constants = {"p1": np.array([0, 0, 0, 1, 0, 0, 1, 0], np.int64),
                 "p2": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64),
                 "K": rng.normal(size=(2, 1, 3, 3))}
    proto = make_model(nodes, constants, [1, 1, 6, 6], [1, 2 * 4 * 4])
    imported = matches_reference(proto)
    assert sum(isinstance(layer, Conv2d) for layer in imported.model.layers) == 2


def test_nonzero_or_reflect_pad_is_rejected() -> None:
    nodes = [helper.make_node("Pad", ["x", "p"], ["out"], name="reflect", mode="reflect")]
    proto = make_model(nodes, {"p": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)},
                       [1, 1, 4, 4], [1, 1, 6, 6])
    with pytest.raises(OnnxImportError, match=r"'reflect' \(Pad\): only constant-zero"):
        import_onnx(proto)


def test_average_and_global_average_pool() -> None:
    rng = np.random.default_rng(7)
    nodes = [helper.make_node("Conv", ["x", "K", "kb"], ["c"], kernel_shape=[2, 2]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("AveragePool", ["r"], ["a"], kernel_shape=[3, 3],
                              strides=[2, 2]),
             helper.make_node("GlobalAveragePool", ["a"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "W"], ["out"], transB=1)]
    constants = {"K": rng.normal(size=(4, 2, 2, 2)), "kb": rng.normal(size=4),
                 "W": rng.normal(size=(3, 4))}
    matches_reference(make_model(nodes, constants, [1, 2, 8, 8], [1, 3]))


def test_max_pool_sigmoid_and_tanh() -> None:
    rng = np.random.default_rng(15)
    nodes = [helper.make_node("Conv", ["x", "K"], ["c"], kernel_shape=[2, 2]),
             helper.make_node("Tanh", ["c"], ["t"]),
             helper.make_node("MaxPool", ["t"], ["m"], kernel_shape=[3, 3], strides=[2, 2],
                              pads=[1, 1, 1, 1]),
             helper.make_node("Flatten", ["m"], ["f"]),
             helper.make_node("Gemm", ["f", "W"], ["g"], transB=1),
             helper.make_node("Sigmoid", ["g"], ["out"])]
    constants = {"K": rng.normal(size=(2, 1, 2, 2)), "W": rng.normal(size=(3, 2 * 4 * 4))}
    proto = make_model(nodes, constants, [1, 1, 8, 8], [1, 3])
    imported = matches_reference(proto)
    names = [type(layer).__name__ for layer in imported.model.layers]
    assert names == ["Conv2d", "Tanh", "MaxPool2d", "Flatten", "Linear", "Sigmoid"]
    from nobound.io.onnx_export import to_onnx

    again = import_onnx(to_onnx(imported.model, imported.input_shape), dtype=np.float64)
    x = rng.normal(size=(2, 1, 8, 8))
    np.testing.assert_allclose(again.model(x).data, imported.model(x).data, rtol=1e-12)


def test_nhwc_input_and_transpose_before_flatten_keras_style() -> None:
    """tf2onnx: Transpose(0,3,1,2) at the input, Transpose(0,2,3,1) before the Reshape."""
    rng = np.random.default_rng(8)
    nodes = [helper.make_node("Transpose", ["x"], ["nchw"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["nchw", "K", "kb"], ["c"], kernel_shape=[2, 2],
                              strides=[2, 2]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Transpose", ["r"], ["nhwc"], perm=[0, 2, 3, 1]),
             helper.make_node("Reshape", ["nhwc", "shape"], ["flat"]),
             helper.make_node("MatMul", ["flat", "W"], ["m"]),
             helper.make_node("Add", ["m", "b"], ["out"])]
    constants = {"K": rng.normal(size=(4, 3, 2, 2)), "kb": rng.normal(size=4),
                 "shape": np.array([-1, 36], np.int64), "W": rng.normal(size=(36, 5)),
                 "b": rng.normal(size=5)}
    proto = make_model(nodes, constants, ["unk", 6, 6, 3], ["unk", 5])
    imported = matches_reference(proto)
    assert imported.input_shape == (3, 6, 6) and imported.input_order is not None
    x = rng.normal(size=6 * 6 * 3)
    np.testing.assert_array_equal(imported.to_file_input(imported.to_model_input(x)), x)
    np.testing.assert_array_equal(imported.to_model_input(x),
                                  x.reshape(6, 6, 3).transpose(2, 0, 1))


def test_vnncomp_mnist_fc_input_of_shape_1_784_1() -> None:
    rng = np.random.default_rng(9)
    nodes = [helper.make_node("Flatten", ["x"], ["f"]),
             helper.make_node("Gemm", ["f", "W", "b"], ["h"], transB=1),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "W2", "b2"], ["out"], transB=1)]
    constants = {"W": rng.normal(size=(8, 784)), "b": rng.normal(size=8),
                 "W2": rng.normal(size=(10, 8)), "b2": rng.normal(size=10)}
    imported = matches_reference(make_model(nodes, constants, [1, 784, 1], [1, 10]))
    assert imported.input_shape == (784,)
    lower, upper = np.zeros((2, 784)), np.ones((2, 784))   # the bounds run, too
    from nobound.autodiff.tensor import Tensor
    from nobound.bounds import Box, compute_bounds

    result = compute_bounds(imported.model, Box(Tensor(lower), Tensor(upper)),
                            method="ibp")
    assert result.lower.shape == (2, 10)


def test_acasxu_style_normalisation_on_a_1_1_1_5_input() -> None:
    rng = np.random.default_rng(10)
    nodes = [helper.make_node("Sub", ["x", "mean"], ["c"]),
             helper.make_node("Div", ["c", "range"], ["n"]),
             helper.make_node("Flatten", ["n"], ["f"]),
             helper.make_node("MatMul", ["f", "W"], ["m"]),
             helper.make_node("Add", ["m", "b"], ["h"]),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "W2"], ["out"])]
    constants = {"mean": rng.normal(size=(1, 1, 1, 5)),
                 "range": rng.uniform(1, 3, size=(1, 1, 1, 5)),
                 "W": rng.normal(size=(5, 7)), "b": rng.normal(size=7),
                 "W2": rng.normal(size=(7, 5))}
    imported = matches_reference(make_model(nodes, constants, [1, 1, 1, 5], [1, 5]))
    assert imported.input_shape == (5,)


def test_trailing_softmax_is_dropped_and_said() -> None:
    rng = np.random.default_rng(11)
    nodes = [helper.make_node("Gemm", ["x", "W"], ["logits"], transB=1),
             helper.make_node("Softmax", ["logits"], ["out"], axis=1)]
    proto = make_model(nodes, {"W": rng.normal(size=(4, 3))}, [1, 3], [1, 4])

    def softmax(z):
        e = np.exp(z - z.max())
        return e / e.sum()

    imported = matches_reference(proto, outputs=softmax)
    assert imported.dropped_softmax and "Softmax" in imported.notes[0]
    nodes = [helper.make_node("Softmax", ["x"], ["s"], name="mid", axis=1),
             helper.make_node("Gemm", ["s", "W"], ["out"], transB=1)]
    with pytest.raises(OnnxImportError, match=r"'mid' \(Softmax\): Softmax is only"):
        import_onnx(make_model(nodes, {"W": rng.normal(size=(4, 3))}, [1, 3], [1, 4]))


def test_gzipped_model(tmp_path) -> None:
    rng = np.random.default_rng(12)
    proto = make_model([helper.make_node("Gemm", ["x", "W"], ["out"], transB=1)],
                       {"W": rng.normal(size=(2, 3))}, [1, 3], [1, 2])
    path = tmp_path / "net.onnx.gz"
    path.write_bytes(gzip.compress(proto.SerializeToString()))
    imported = import_onnx(path, dtype=np.float64)
    assert imported.num_outputs == 2 and isinstance(imported.model.layers[0], Linear)


def test_a_wrong_import_names_the_first_diverging_node() -> None:
    rng = np.random.default_rng(13)
    nodes = [helper.make_node("Gemm", ["x", "W1", "b1"], ["h"], name="dense1", transB=1),
             helper.make_node("Relu", ["h"], ["r"], name="act1"),
             helper.make_node("Gemm", ["r", "W2", "b2"], ["out"], name="dense2", transB=1)]
    constants = {"W1": rng.normal(size=(6, 4)), "b1": rng.normal(size=6),
                 "W2": rng.normal(size=(3, 6)), "b2": rng.normal(size=3)}
    imported = import_onnx(make_model(nodes, constants, [1, 4], [1, 3]), dtype=np.float64)
    assert check_import(imported) < 1.0
    imported.model.layers[2].bias.data[1] += 1e-2   # a small error, in the last layer
    with pytest.raises(OnnxImportError, match="first at node 'dense2'"):
        check_import(imported)
    imported.model.layers[0].weight.data[0, 0] *= -1.0   # and an earlier one
    with pytest.raises(OnnxImportError, match="first at node 'dense1'"):
        check_import(imported)


def test_check_samples_the_given_box() -> None:
    rng = np.random.default_rng(14)
    nodes = [helper.make_node("Gemm", ["x", "W"], ["h"], transB=1),
             helper.make_node("Relu", ["h"], ["out"])]
    imported = import_onnx(make_model(nodes, {"W": rng.normal(size=(3, 3))}, [1, 3], [1, 3]),
                           dtype=np.float64, check_box=(np.full(3, -1.0), np.full(3, 2.0)))
    assert isinstance(imported.model.layers[1], ReLU)


REAL_NETWORKS = sorted(
    [*VNNCOMP.glob("2022/*/onnx/*.onnx*"), *VNNCOMP.glob("2021/*/nets/*.onnx"),
     *VNNCOMP.glob("2021/verivital/*.onnx")])


@pytest.mark.skipif(not REAL_NETWORKS, reason="../shared/vnncomp is not on this machine")
@pytest.mark.parametrize("path", [p for p in REAL_NETWORKS if "ACASXU" not in p.name or
                                  p.name.startswith("ACASXU_run2a_1_1")],
                         ids=lambda p: p.name)
def test_real_vnncomp_networks_import_and_match(path) -> None:
    imported = import_onnx(path, dtype=np.float64)
    assert imported.num_outputs in (5, 10)


def test_opset_11_unsqueeze_with_axes_attribute_folds() -> None:
    """Before opset 13 Unsqueeze took its axes as an attribute: folded with the file's opset."""
    rng = np.random.default_rng(16)
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["batch"], axis=0),
             helper.make_node("Unsqueeze", ["batch"], ["b1"], axes=[0]),
             helper.make_node("Concat", ["b1", "minus_one"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["flat"]),
             helper.make_node("Gemm", ["flat", "W"], ["out"], transB=1)]
    constants = {"zero": np.array(0, np.int64), "minus_one": np.array([-1], np.int64),
                 "W": rng.normal(size=(2, 12))}
    matches_reference(make_model(nodes, constants, ["N", 3, 2, 2], ["N", 2], opset=11))


def test_constant_minus_data_and_negative_per_channel_scales() -> None:
    rng = np.random.default_rng(17)
    nodes = [helper.make_node("Sub", ["c", "x"], ["flipped"]),       # c − x
             helper.make_node("Mul", ["flipped", "scale"], ["scaled"]),
             helper.make_node("Relu", ["scaled"], ["r"]),
             helper.make_node("Flatten", ["r"], ["f"]),
             helper.make_node("Div", ["f", "d"], ["g"]),             # per-feature on a vector
             helper.make_node("Gemm", ["g", "W"], ["out"], transB=1)]
    constants = {"c": rng.normal(size=(2, 1, 1)), "scale": np.array([-1.5, 2.0]).reshape(2, 1, 1),
                 "d": rng.uniform(1, 2, size=(18,)), "W": rng.normal(size=(3, 18))}
    imported = matches_reference(make_model(nodes, constants, [1, 2, 3, 3], [1, 3]))
    names = [type(layer).__name__ for layer in imported.model.layers]
    assert names.count("BatchNorm") == 3       # c − x; the mixed-sign scale; the 1/d
