"""ONNX and QONNX operators one small graph at a time: each converts (verified against onnxruntime or
qonnx's executor inside convert) and the engine's output matches that executor run independently here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import ISAS
from onnx import TensorProto, helper, numpy_helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.transformation.infer_shapes import InferShapes

import xnorinfer
from xnorinfer.convert import convert

RNG = np.random.default_rng(7)
Q = "qonnx.custom_op.general"


def w(*shape: int, scale: float = 0.5) -> np.ndarray:
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def build(nodes: list, inits: dict[str, np.ndarray], in_shape: list[int], opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    imports = [helper.make_opsetid("", opset)]
    if any(n.domain == Q for n in nodes):
        imports.append(helper.make_opsetid(Q, 1))
    return helper.make_model(graph, opset_imports=imports)


N = helper.make_node

CASES = {
    "conv_pool_gemm": (
        [
            N("Conv", ["x", "w1", "b1"], ["c"], pads=[1, 0, 2, 1], strides=[2, 1]),
            N("Relu", ["c"], ["r"]),
            N("MaxPool", ["r"], ["p"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
            N("Conv", ["p", "w2"], ["c2"], auto_pad="SAME_UPPER", group=2),
            N("GlobalAveragePool", ["c2"], ["g"]),
            N("Flatten", ["g"], ["f"]),
            N("Gemm", ["f", "wg", "bg"], ["z"], alpha=0.5, beta=2.0),
            N("Softmax", ["z"], ["y"], axis=1),
        ],
        {"w1": w(8, 3, 3, 3), "b1": w(8), "w2": w(8, 4, 3, 3), "wg": w(8, 5), "bg": w(5)},
        [1, 3, 16, 16],
    ),
    "avgpool_clip_concat_transpose": (
        [
            N("AveragePool", ["x"], ["a"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=0),
            N("Clip", ["a", "lo", "hi"], ["c"]),
            N("LeakyRelu", ["x"], ["l"], alpha=0.2),
            N("Concat", ["c", "l"], ["cat"], axis=1),
            N("Transpose", ["cat"], ["t"], perm=[0, 2, 3, 1]),
            N("Reshape", ["t", "shape"], ["y"]),
        ],
        {"lo": np.array(-0.3, np.float32), "hi": np.array(0.4, np.float32), "shape": np.array([1, -1], np.int64)},
        [1, 2, 6, 6],
    ),
    "pad_elementwise_reduce": (
        [
            N("Pad", ["x", "pads"], ["p"], mode="reflect"),
            N("Mul", ["p", "s"], ["m"]),
            N("Sub", ["m", "t"], ["d"]),
            N("Sigmoid", ["d"], ["sg"]),
            N("Div", ["sg", "s"], ["q"]),
            N("Max", ["q", "d"], ["mx"]),
            N("ReduceMean", ["mx", "axes"], ["y"], keepdims=1),
        ],
        {
            "pads": np.array([0, 0, 1, 2, 0, 0, 1, 2], np.int64),
            "s": w(1, 3, 1, 1) + 1.0,
            "t": w(1, 3, 1, 1),
            "axes": np.array([2, 3], np.int64),
        },
        [1, 3, 5, 5],
        18,
    ),
    # QONNX Trunc v1 after a sum pool (Brevitas's quantized average pooling), FLOOR and CEIL
    "qonnx_trunc": (
        [
            N("Quant", ["x", "sc", "zp", "b4"], ["q"], domain=Q, signed=1, narrow=0, rounding_mode="ROUND"),
            N("AveragePool", ["q"], ["a"], kernel_shape=[2, 2], strides=[2, 2]),
            N("Mul", ["a", "four"], ["s"]),
            N("Trunc", ["s", "sc", "zp", "b6", "b4"], ["t"], domain=Q, rounding_mode="FLOOR"),
            N("Trunc", ["s", "sc", "zp", "b6", "b4"], ["u"], domain=Q, rounding_mode="CEIL"),
            N("Concat", ["t", "u"], ["y"], axis=1),
        ],
        {
            "sc": np.array(0.125, np.float32),
            "zp": np.array(0.0, np.float32),
            "b4": np.array(4.0, np.float32),
            "b6": np.array(6.0, np.float32),
            "four": np.array(4.0, np.float32),
        },
        [1, 2, 6, 6],
        13,
    ),
    "slice_split_gather": (
        [
            N("Slice", ["x", "st", "en", "ax"], ["s"]),
            N("Split", ["s", "sp"], ["a", "b"], axis=1),
            N("Add", ["a", "b"], ["ab"]),
            N("Gather", ["ab", "i"], ["g"], axis=2),
            N("Tanh", ["g"], ["y"]),
        ],
        {
            "st": np.array([1, 0], np.int64),
            "en": np.array([5, 7], np.int64),
            "ax": np.array([1, 3], np.int64),
            "sp": np.array([2, 2], np.int64),
            "i": np.array(1, np.int64),
        },
        [1, 6, 4, 8],
    ),
    "prelu_elu_hardsigmoid_matmul": (
        [
            N("PRelu", ["x", "slope"], ["p"]),
            N("Elu", ["p"], ["e"], alpha=0.7),
            N("HardSigmoid", ["e"], ["h"], alpha=0.3, beta=0.4),
            N("Flatten", ["h"], ["f"]),
            N("MatMul", ["f", "wm"], ["y"]),
        ],
        {"slope": w(4, 1, 1), "wm": w(4 * 3 * 3, 6)},
        [1, 4, 3, 3],
    ),
    "convtranspose_resize_layernorm": (
        [
            N("ConvTranspose", ["x", "wt", "bt"], ["ct"], strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]),
            N(
                "Resize",
                ["ct", "", "sc"],
                ["r"],
                mode="nearest",
                coordinate_transformation_mode="asymmetric",
                nearest_mode="floor",
            ),
            N("Resize", ["r", "", "sc"], ["b"], mode="linear", coordinate_transformation_mode="pytorch_half_pixel"),
            N("LayerNormalization", ["b", "lw", "lb"], ["ln"], axis=-1, epsilon=1e-5),
            N("Expand", ["lb1", "shape"], ["e"]),
            N("Add", ["ln", "e"], ["y"]),
        ],
        {
            "wt": w(3, 4, 3, 3),
            "bt": w(4),
            "sc": np.array([1, 1, 2, 2], np.float32),
            "lw": w(24) + 1.0,
            "lb": w(24),
            "lb1": w(1, 4, 1, 1),
            "shape": np.array([1, 4, 24, 24], np.int64),
        },
        [1, 3, 3, 3],
    ),
    "opset11_upgraded": (
        [N("Conv", ["x", "w1"], ["c"], pads=[1, 1, 1, 1]), N("Clip", ["c"], ["y"], min=-1.0, max=1.0)],
        {"w1": w(4, 2, 3, 3)},
        [1, 2, 6, 6],
        10,
    ),
    # index ops on a 3-D tensor: ArgMax, TopK (values, indices), Gather of an index tensor, GatherElements of
    # computed (TopK) indices, CumSum, Tile; indices cast to float for the one output
    "index_ops_3d": (
        [
            N("ArgMax", ["x"], ["am"], axis=2, keepdims=1),
            N("Cast", ["am"], ["amf"], to=TensorProto.FLOAT),
            N("ArgMin", ["x"], ["an"], axis=-1, keepdims=1),
            N("Cast", ["an"], ["anf"], to=TensorProto.FLOAT),
            N("TopK", ["x", "k"], ["tv", "ti"], axis=-1, largest=1),
            N("Cast", ["ti"], ["tif"], to=TensorProto.FLOAT),
            N("TopK", ["x", "k"], ["sv", "si"], axis=2, largest=0),
            N("GatherElements", ["x", "ti"], ["ge"], axis=2),
            N("Gather", ["x", "idx"], ["g"], axis=2),
            N("CumSum", ["x", "ax"], ["cs"]),
            N("Tile", ["x", "reps"], ["tl"]),
            N("Concat", ["amf", "anf", "tv", "tif", "sv", "ge", "g", "cs", "tl"], ["y"], axis=2),
        ],
        {
            "k": np.array([3], np.int64),
            "idx": np.array([0, 5, 7, -2], np.int64),
            "ax": np.array(2, np.int64),
            "reps": np.array([1, 1, 2], np.int64),
        },
        [1, 3, 8],
    ),
    # NCHW index ops (the engine's 4-D tensors are NHWC), Tile over C and W, Where broadcasting a row
    "index_ops_nchw_tile_where": (
        [
            N("Tile", ["x", "reps"], ["t"]),
            N("Greater", ["t", "row"], ["cond"]),
            N("Where", ["cond", "t", "fill"], ["wh"]),
            N("CumSum", ["t", "ax"], ["cs"]),
            N("CumSum", ["t", "ax_h"], ["csr"], reverse=1),
            N("ArgMax", ["t"], ["am"], axis=1, keepdims=1),
            N("Cast", ["am"], ["amf"], to=TensorProto.FLOAT),
            N("Gather", ["t", "cidx"], ["gch"], axis=1),
            N("Concat", ["wh", "cs", "csr", "amf", "gch"], ["y"], axis=1),
        ],
        {
            "reps": np.array([1, 2, 1, 2], np.int64),
            "row": w(1, 1, 1, 8),
            "fill": np.array(-0.25, np.float32),
            "ax": np.array(-1, np.int64),
            "ax_h": np.array(2, np.int64),
            "cidx": np.array([3, 0], np.int64),
        },
        [1, 2, 4, 4],
    ),
    # Einsum as matrix products: constant right operands (both orientations) and two tensors
    "einsum_matmul": (
        [
            N("Einsum", ["x", "wa"], ["a"], equation="bsj,jk->bsk"),
            N("Einsum", ["x", "wb"], ["b"], equation="bsj,kj->bsk"),
            N("Transpose", ["a"], ["at"], perm=[0, 2, 1]),
            N("Einsum", ["b", "at"], ["y"], equation="bik,bkj->bij"),
        ],
        {"wa": w(6, 4), "wb": w(4, 6)},
        [1, 5, 6],
    ),
    # QONNX: a MultiThreshold in NHWC layout (no transpose pair around it): bipolar and {0, 1} outputs
    "qonnx_multithreshold_nhwc": (
        [
            N("Conv", ["x", "wc"], ["c"], pads=[1, 1, 1, 1]),
            N("Transpose", ["c"], ["t"], perm=[0, 2, 3, 1]),
            N("MultiThreshold", ["t", "thr"], ["b"], domain=Q, out_scale=2.0, out_bias=-1.0, data_layout="NHWC"),
            N("MultiThreshold", ["t", "thr"], ["z"], domain=Q, out_scale=1.0, out_bias=0.0, data_layout="NHWC"),
            N("Mul", ["z", "half"], ["zh"]),
            N("Add", ["b", "zh"], ["y"]),
        ],
        {"wc": w(5, 3, 3, 3), "thr": w(5, 1), "half": np.array(0.5, np.float32)},
        [1, 3, 6, 6],
        13,
    ),
    # QONNX QuantAvgPool2d of 2-bit levels (a 3-threshold MultiThreshold), NCHW and NHWC between transposes
    "qonnx_quant_avgpool": (
        [
            N("MultiThreshold", ["x", "thr"], ["lv"], domain=Q, out_scale=1.0, out_bias=0.0),
            N("QuantAvgPool2d", ["lv"], ["p"], domain=Q, kernel=3, stride=2, ibits=2, obits=2, signed=0),
            N("Transpose", ["lv"], ["t"], perm=[0, 2, 3, 1]),
            N(
                "QuantAvgPool2d",
                ["t"],
                ["pt"],
                domain=Q,
                kernel=3,
                stride=2,
                ibits=2,
                obits=4,
                signed=0,
                data_layout="NHWC",
            ),
            N("Transpose", ["pt"], ["pn"], perm=[0, 3, 1, 2]),
            N("Concat", ["p", "pn"], ["y"], axis=1),
        ],
        {"thr": np.sort(w(3, 3, scale=1.0), axis=1)},
        [1, 3, 9, 9],
        13,
    ),
    # QONNX: 4-bit and 2-bit (ternary, narrow) fake-quant stay float; a 2-bit MultiThreshold counts levels
    "qonnx_quant_multibit": (
        [
            N("Quant", ["x", "sc", "zp", "b4"], ["q"], domain=Q, signed=1, narrow=0, rounding_mode="ROUND"),
            N("Quant", ["wq", "sc", "zp", "b2"], ["wt"], domain=Q, signed=1, narrow=1, rounding_mode="ROUND"),
            N("Conv", ["q", "wt"], ["c"], pads=[1, 1, 1, 1]),
            N("MultiThreshold", ["c", "thr"], ["y"], domain=Q, out_dtype="INT2", out_scale=1.0, out_bias=-2.0),
        ],
        {
            "sc": np.array(0.25, np.float32),
            "zp": np.array(0.0, np.float32),
            "b4": np.array(4.0, np.float32),
            "b2": np.array(2.0, np.float32),
            "wq": w(4, 3, 3, 3),
            "thr": np.sort(w(4, 3, scale=2.0), axis=1),
        },
        [1, 3, 6, 6],
        13,
    ),
}


# shapes a case declares as an exporter would: qonnx's shape inference needs an NHWC QuantAvgPool2d's input shape
VALUE_INFO = {"qonnx_quant_avgpool": {"t": [1, 9, 9, 3]}}


def reference(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    if any(n.domain == Q for n in model.graph.node):
        wrapped = ModelWrapper(model).transform(InferShapes())
        return np.concatenate([execute_onnx(wrapped, {"x": x[i : i + 1]})["y"] for i in range(len(x))])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(None, {"x": x[i : i + 1]})[0] for i in range(len(x))])


@pytest.mark.parametrize("case", sorted(CASES))
def test_onnx_op(case: str, tmp_path: Path) -> None:
    nodes, inits, shape, *opset = CASES[case]
    model = build(nodes, inits, shape, *opset)
    for name, dims in VALUE_INFO.get(case, {}).items():
        model.graph.value_info.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, dims))
    path = tmp_path / f"{case}.onnx"
    onnx.save(model, path)
    x = np.random.default_rng(1).standard_normal([12] + shape[1:]).astype(np.float32)
    graph = convert(path, calib=x, output=tmp_path / "m.xbin")
    assert graph.metadata["verification"]["problems"] == []
    ref = reference(model, x)
    if ref.ndim == 4 and ref.shape[2:] == (1, 1):  # the engine returns it as (N, C)
        ref = ref.reshape(ref.shape[:2])
    if ref.ndim == 4:  # the engine returns a 4-D output in NHWC
        ref = ref.transpose(0, 2, 3, 1)
    for threads in (1, 2):
        for isa in ISAS:
            ours = np.asarray(xnorinfer.load(tmp_path / "m.xbin", threads=threads).run(x, isa=isa))
            np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)


def test_qonnx_one_bit_quant_activation_is_binary(tmp_path: Path) -> None:
    """A 1-bit signed Quant of an activation (ternary-free: x >= 0 -> +1) feeding ±1 conv weights is a bconv2d."""
    wq = np.where(w(8, 4, 3, 3) >= 0, 1.0, -1.0).astype(np.float32)
    nodes = [
        N("Conv", ["x", "w0"], ["c0"], pads=[1, 1, 1, 1]),
        N("Quant", ["c0", "one", "zp", "b1"], ["a"], domain=Q, signed=1, narrow=0, rounding_mode="ROUND"),
        N("Conv", ["a", "w1"], ["c1"]),
        N("BatchNormalization", ["c1", "g", "b", "m", "v"], ["bn"]),
        N("BipolarQuant", ["bn", "one"], ["a2"], domain=Q),
        N("MaxPool", ["a2"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        N("Flatten", ["p"], ["f"]),
        N("Gemm", ["f", "wl"], ["y"], transB=1),
    ]
    inits = {
        "w0": w(4, 3, 3, 3),
        "one": np.array(1.0, np.float32),
        "zp": np.array(0.0, np.float32),
        "b1": np.array(1.0, np.float32),
        "w1": wq,
        "g": w(8) + 1.0,
        "b": w(8),
        "m": w(8, scale=3.0),
        "v": np.abs(w(8)) + 1.0,
        "wl": np.where(w(10, 8 * 3 * 3) >= 0, 0.5, -0.5).astype(np.float32),
    }
    model = build(nodes, inits, [1, 3, 8, 8], 13)
    path = tmp_path / "q1.onnx"
    onnx.save(model, path)
    x = np.random.default_rng(2).standard_normal([16, 3, 8, 8]).astype(np.float32)
    graph = convert(path, calib=x, output=tmp_path / "q1.xbin")
    v = graph.metadata["verification"]
    assert v["problems"] == [] and all(c["mismatches"] == 0 for c in v["layers"].values())
    assert [op.kind for op in graph.ops].count("bconv2d") == 1 and "blinear" in [op.kind for op in graph.ops]
    ours = np.asarray(xnorinfer.load(tmp_path / "q1.xbin").run(x))
    np.testing.assert_allclose(ours, reference(model, x), rtol=1e-4, atol=1e-4)


def test_finn_nodes_with_extra_attributes_and_a_bipolar_output(tmp_path: Path) -> None:
    """FINN's domain and attributes qonnx ignores (backend); a MultiThreshold as the model output."""
    f = "finn.custom_op.general"
    nodes = [
        N(
            "MultiThreshold",
            ["x", "t"],
            ["a"],
            domain=f,
            out_dtype="BIPOLAR",
            out_scale=2.0,
            out_bias=-1.0,
            backend="fpgadataflow",
            data_layout="NC",
        ),
        N("MatMul", ["a", "wm"], ["m"]),
        N("MultiThreshold", ["m", "t2"], ["y"], domain=f, out_dtype="BIPOLAR", out_scale=2.0, out_bias=-1.0),
    ]
    inits = {
        "t": w(16, 1),
        "wm": np.where(w(16, 8) > 0, 1.0, -1.0).astype(np.float32),
        "t2": (np.arange(8, dtype=np.float32) - 4).reshape(8, 1),
    }
    model = build(nodes, inits, [1, 16], 13)
    model.opset_import.append(helper.make_opsetid(f, 1))
    path = tmp_path / "finn.onnx"
    onnx.save(model, path)
    x = np.random.default_rng(3).standard_normal([32, 16]).astype(np.float32)
    graph = convert(path, calib=x, output=tmp_path / "finn.xbin")
    assert graph.metadata["verification"]["reference"] == "qonnx execute_onnx"
    assert "blinear" in [op.kind for op in graph.ops]
    wrapped = ModelWrapper(model).transform(InferShapes())
    ref = np.concatenate([execute_onnx(wrapped, {"x": x[i : i + 1]})["y"] for i in range(len(x))])
    np.testing.assert_array_equal(np.asarray(xnorinfer.load(tmp_path / "finn.xbin").run(x)), ref)


def test_symbolic_batch_and_shape_arithmetic(tmp_path: Path) -> None:
    """A free batch dimension and a Reshape whose shape is computed from Shape (folded at batch 1)."""
    nodes = [
        N("Shape", ["x"], ["sh"]),
        N("Gather", ["sh", "zero"], ["n"], axis=0),
        N("Unsqueeze", ["n", "zero1"], ["n1"]),
        N("Concat", ["n1", "minus1"], ["newshape"], axis=0),
        N("Conv", ["x", "wc"], ["c"], pads=[1, 1, 1, 1]),
        N("Reshape", ["c", "newshape"], ["f"]),
        N("Gemm", ["f", "wg"], ["y"], transB=1),
    ]
    inits = {
        "zero": np.array(0, np.int64),
        "zero1": np.array([0], np.int64),
        "minus1": np.array([-1], np.int64),
        "wc": w(4, 2, 3, 3),
        "wg": w(5, 4 * 5 * 5),
    }
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    path = tmp_path / "dyn.onnx"
    onnx.save(model, path)
    x = np.random.default_rng(4).standard_normal([300, 2, 5, 5]).astype(np.float32)  # more than one ORT chunk
    graph_ir = convert(path, calib=x, output=tmp_path / "dyn.xbin")
    assert graph_ir.metadata["verification"]["problems"] == []
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {"x": x})[0]
    np.testing.assert_allclose(np.asarray(xnorinfer.load(tmp_path / "dyn.xbin").run(x)), ref, rtol=1e-4, atol=1e-4)


def test_two_graph_inputs(tmp_path: Path) -> None:
    """An image and a feature vector: a binary conv stack on the image, its pooled features concatenated with
    the vector, a Gemm; converted (verified against onnxruntime with both inputs) and run with both."""
    ws = np.where(w(8, 4, 3, 3) >= 0, 1.0, -1.0).astype(np.float32)
    nodes = [
        N("Conv", ["img", "w0"], ["c0"], pads=[1, 1, 1, 1]),
        N("Sign", ["c0"], ["s0"]),
        N("Conv", ["s0", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        N("GlobalAveragePool", ["c1"], ["g"]),
        N("Flatten", ["g"], ["f"]),
        N("Mul", ["vec", "two"], ["v2"]),
        N("Concat", ["f", "v2"], ["cat"], axis=1),
        N("Gemm", ["cat", "wg"], ["y"], transB=1),
    ]
    inits = {"w0": w(4, 3, 3, 3), "w1": ws, "two": np.array(2.0, np.float32), "wg": w(6, 13)}
    graph = helper.make_graph(
        nodes,
        "two_inputs",
        [
            helper.make_tensor_value_info("img", TensorProto.FLOAT, ["n", 3, 8, 8]),
            helper.make_tensor_value_info("vec", TensorProto.FLOAT, ["n", 5]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "two.onnx"
    onnx.save(model, path)
    rng = np.random.default_rng(3)
    img = rng.standard_normal((10, 3, 8, 8)).astype(np.float32)
    vec = rng.standard_normal((10, 5)).astype(np.float32)
    ir_graph = convert(path, calib=(img, vec), output=tmp_path / "two.xbin")
    assert ir_graph.metadata["verification"]["problems"] == []
    assert ir_graph.metadata["input_shapes"] == [[1, 3, 8, 8], [1, 5]]
    assert sum(op.kind == "bconv2d" for op in ir_graph.ops) == 1
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {"img": img, "vec": vec})[0]
    for threads in (1, 2):
        for isa in ISAS:
            ours = np.asarray(xnorinfer.load(tmp_path / "two.xbin", threads=threads).run((img, vec), isa=isa))
            np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)
    default = convert(path, output=tmp_path / "two_default.xbin")  # random verification inputs for both
    assert default.metadata["verification"]["problems"] == []


def test_two_graph_inputs_qonnx(tmp_path: Path) -> None:
    """Two inputs into QONNX ops: verification runs qonnx's executor with both; a binary linear follows."""
    ws = np.where(w(8, 6) >= 0, 1.0, -1.0).astype(np.float32)
    nodes = [
        N("Add", ["a", "b"], ["s"]),
        N("MultiThreshold", ["s", "thr"], ["t"], domain=Q, out_scale=2.0, out_bias=-1.0),
        N("MatMul", ["t", "ws"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "two_inputs_qonnx",
        [helper.make_tensor_value_info(k, TensorProto.FLOAT, [1, 8]) for k in ("a", "b")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6])],
        [numpy_helper.from_array(w(8, 1), "thr"), numpy_helper.from_array(ws, "ws")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(Q, 1)])
    path = tmp_path / "two_q.onnx"
    onnx.save(model, path)
    rng = np.random.default_rng(4)
    a, b = (rng.standard_normal((6, 8)).astype(np.float32) for _ in range(2))
    ir_graph = convert(path, calib=[a, b], output=tmp_path / "two_q.xbin")
    v = ir_graph.metadata["verification"]
    assert v["problems"] == [] and v["reference"] == "qonnx execute_onnx"
    assert sum(op.kind == "blinear" for op in ir_graph.ops) == 1
    wrapped = ModelWrapper(model).transform(InferShapes())
    ref = np.concatenate([execute_onnx(wrapped, {"a": a[i : i + 1], "b": b[i : i + 1]})["y"] for i in range(6)])
    for isa in ISAS:
        ours = np.asarray(xnorinfer.load(tmp_path / "two_q.xbin", threads=2).run((a, b), isa=isa))
        np.testing.assert_array_equal(ours, ref)  # ±1 sums of ±1: integers
