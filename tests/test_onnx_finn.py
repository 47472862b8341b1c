"""FINN-ONNX after FINN's streamlining, built with onnx.helper as FINN emits it: a TFC-w1a1 MLP on MNIST and
a CNV-w1a1 CNN on CIFAR-10 with ±1 weights, `Mul`/`Add` by scalar and per-channel constants before each
`MultiThreshold`, a `Reshape` flatten and an NCHW -> NHWC `Transpose` pair around an NHWC `MultiThreshold`.
Each converts with every ±1 x ±1 layer binary and matches qonnx's executor bit for bit on real test images.

All constants are dyadic and every threshold falls half-way between two integer dot products, so float32
(qonnx) and the engine compute the same values exactly: any difference is a conversion error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.transformation.infer_shapes import InferShapes
from realcode_support import run_everywhere

from xnorinfer.convert import convert
from xnorinfer.datasets import load_cifar10_jpeg, load_idx_set

DATA = Path(__file__).resolve().parent / "data"
FINN = "finn.custom_op.general"


class Builder:
    """Nodes, initializers and FINN datatype annotations of one streamlined graph."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.types: list[tuple[str, str]] = []

    def init(self, name: str, a: np.ndarray, dtype: np.dtype = np.float32) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(a, dtype), name))
        return name

    def node(self, op: str, ins: list[str], out: str, **attrs: object) -> str:
        self.nodes.append(helper.make_node(op, ins, [out], **attrs))
        return out

    def signs(self, name: str, *shape: int) -> str:
        self.types.append((name, "BIPOLAR"))
        return self.init(name, np.where(self.rng.standard_normal(shape) >= 0, 1.0, -1.0))

    def act(self, x: str, out: str, channels: int, spread: float, bcast: tuple[int, ...], layout: str = "") -> str:
        """Mul(m) and Add(b) per channel (dyadic, m > 0), then a bipolar MultiThreshold at m * (k + 1/2) + b:
        on the integer dot product s this is s > k, never a tie."""
        m = 2.0 ** self.rng.integers(-3, 3, channels)
        b = self.rng.integers(-8, 9, channels) / 4.0
        k = np.round(self.rng.standard_normal(channels) * spread)
        x = self.node("Mul", [x, self.init(out + "_m", m.reshape(bcast))], out + "_mul")
        x = self.node("Add", [x, self.init(out + "_b", b.reshape(bcast))], out + "_add")
        thr = self.init(out + "_thr", (m * (k + 0.5) + b).reshape(-1, 1))
        attrs = {"data_layout": layout} if layout else {}
        self.types.append((out, "BIPOLAR"))
        return self.node(
            "MultiThreshold", [x, thr], out, domain=FINN, out_dtype="BIPOLAR", out_scale=2.0, out_bias=-1.0, **attrs
        )

    def model(self, in_shape: list[int], out: str) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes,
            "finn_streamlined",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
            [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
            self.inits,
        )
        for name, dt in self.types:
            qa = onnx.TensorAnnotation(tensor_name=name)
            qa.quant_parameter_tensor_names.add(key="finn_datatype", value=dt)
            graph.quantization_annotation.append(qa)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(FINN, 1)])


def tfc_w1a1() -> onnx.ModelProto:
    """TFC: Reshape to (1, 784), x -> 2x - 1 (scalar Mul/Add) thresholded at 0, three 64-wide ±1 MatMuls with
    thresholds, a ±1 MatMul to 10 classes, then the scalar Mul / per-class Add FINN leaves at the end."""
    g = Builder(1)
    x = g.node("Reshape", ["x", g.init("shape", np.array([1, -1]), np.int64)], "flat")
    x = g.node("Mul", [x, g.init("two", np.array(2.0))], "x2")
    x = g.node("Add", [x, g.init("minus_one", np.array(-1.0))], "xc")
    x = g.node(
        "MultiThreshold", [x, g.init("thr_in", np.zeros((784, 1)))], "a0", domain=FINN, out_scale=2.0, out_bias=-1.0
    )
    width = 784
    for i in range(3):
        s = g.node("MatMul", [x, g.signs(f"w{i}", width, 64)], f"s{i}")
        x = g.act(s, f"a{i + 1}", 64, np.sqrt(width) / 2, (64,))
        width = 64
    s = g.node("MatMul", [x, g.signs("w_out", 64, 10)], "s_out")
    s = g.node("Mul", [s, g.init("out_scale", np.array(0.125))], "scaled")
    g.node("Add", [s, g.init("out_bias", g.rng.integers(-16, 17, 10) / 8.0)], "y")
    return g.model([1, 1, 28, 28], "y")


def cnv_w1a1() -> onnx.ModelProto:
    """CNV (narrower): a ±1 conv of the 8-bit image (float, exact integers), then ±1 convs on bipolar
    activations with max-pooling, one activation as FINN's NHWC layout (Transpose, MultiThreshold NHWC,
    Transpose back), Reshape flatten, two ±1 MatMuls."""
    g = Builder(2)
    x = g.node("Conv", ["x", g.signs("c0", 16, 3, 3, 3)], "conv0")
    x = g.act(x, "a0", 16, 20.0, (1, 16, 1, 1))
    x = g.node("Conv", [x, g.signs("c1", 16, 16, 3, 3)], "conv1")
    x = g.act(x, "a1", 16, 6.0, (1, 16, 1, 1))
    x = g.node("MaxPool", [x], "p1", kernel_shape=[2, 2], strides=[2, 2])
    x = g.node("Conv", [x, g.signs("c2", 32, 16, 3, 3)], "conv2")
    x = g.node("Transpose", [x], "nhwc", perm=[0, 2, 3, 1])
    x = g.act(x, "a2", 32, 6.0, (1, 1, 1, 32), layout="NHWC")
    x = g.node("Transpose", [x], "nchw", perm=[0, 3, 1, 2])
    x = g.node("MaxPool", [x], "p2", kernel_shape=[2, 2], strides=[2, 2])
    x = g.node("Reshape", [x, g.init("shape", np.array([1, -1]), np.int64)], "flat")
    x = g.node("MatMul", [x, g.signs("w0", 32 * 6 * 6, 64)], "s0")
    x = g.act(x, "a3", 64, 12.0, (64,))
    s = g.node("MatMul", [x, g.signs("w_out", 64, 10)], "s_out")
    g.node("Mul", [s, g.init("out_scale", np.array(0.25))], "y")
    return g.model([1, 3, 32, 32], "y")


def qonnx_outputs(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    wrapped = ModelWrapper(model).transform(InferShapes())
    return np.concatenate([execute_onnx(wrapped, {"x": x[i : i + 1]})["y"] for i in range(len(x))])


def check(model: onnx.ModelProto, x: np.ndarray, tmp_path: Path, n_binary: int) -> None:
    path = tmp_path / "finn.onnx"
    onnx.save(model, path)
    xbin = tmp_path / "finn.xbin"
    graph = convert(path, calib=x, output=xbin)
    v = graph.metadata["verification"]
    assert v["problems"] == [] and v["reference"] == "qonnx execute_onnx"
    assert all(c["mismatches"] == 0 and c["rounding_ties"] == 0 for c in v["layers"].values())
    assert sum(op.kind in ("bconv2d", "blinear") for op in graph.ops) == n_binary
    ref = qonnx_outputs(model, x)
    ours = run_everywhere(xbin, x)
    np.testing.assert_array_equal(ours, ref)  # integers times dyadic constants: exact


def test_finn_streamlined_tfc_w1a1_on_mnist(tmp_path: Path) -> None:
    images, _ = load_idx_set(DATA / "mnist", "test")
    x = images[:32].astype(np.float32).reshape(-1, 1, 28, 28) / 255.0
    check(tfc_w1a1(), x, tmp_path, n_binary=4)


def test_finn_streamlined_cnv_w1a1_on_cifar10(tmp_path: Path) -> None:
    images, labels = load_cifar10_jpeg(DATA / "cifar10-jpeg", "test")
    picked = np.concatenate([np.flatnonzero(labels == c)[:2] for c in range(10)])
    x = np.asarray(images[picked], np.float32)  # the 8-bit pixels, as CNV-w1a1 reads them
    if x.shape[-1] == 3:
        x = x.transpose(0, 3, 1, 2)
    x = np.ascontiguousarray(x)
    check(cnv_w1a1(), x, tmp_path, n_binary=4)
