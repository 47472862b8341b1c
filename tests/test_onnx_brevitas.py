"""QONNX exports of Brevitas BNNs (LFC- and CNV-like), trained a few steps on real images, converted
and compared with qonnx's own executor; the same models after qonnx's cleanup, and a FINN-style
streamlined MLP (MultiThreshold, then qonnx's XnorPopcountMatMul conversion) built from the trained LFC."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from brevitas.export import export_qonnx
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear
from brevitas.quant import SignedBinaryActPerTensorConst as BinAct
from brevitas.quant import SignedBinaryWeightPerTensorConst as BinWeight
from onnx import TensorProto, helper, numpy_helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.transformation.bipolar_to_xnor import ConvertBipolarMatMulToXnorPopcount
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.util.cleanup import cleanup
from realcode_support import cifar_test_images, run_everywhere
from torch import nn

from xnorinfer.convert import convert
from xnorinfer.datasets import load_idx_set

DATA = Path(__file__).resolve().parent / "data"


def mnist(n: int, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    images, labels = load_idx_set(DATA / "mnist", "test")
    return images[start : start + n].astype(np.float32) / 255.0, labels[start : start + n]


class LFC(nn.Module):
    """bnn_pynq's LFC shape, narrower: bipolar input, 1-bit QuantLinear + BatchNorm + bipolar QuantIdentity."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.inp = QuantIdentity(act_quant=BinAct)
        layers: list[nn.Module] = []
        f = 784
        for _ in range(2):
            layers += [QuantLinear(f, width, bias=False, weight_quant=BinWeight), nn.BatchNorm1d(width)]
            layers.append(QuantIdentity(act_quant=BinAct))
            f = width
        self.features = nn.Sequential(*layers)
        self.out = QuantLinear(f, 10, bias=False, weight_quant=BinWeight)
        self.norm = nn.BatchNorm1d(10)  # bnn_pynq's TensorNorm: the logits are not integers (no argmax ties)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.out(self.features(self.inp(2.0 * x.flatten(1) - 1.0))))


class CNV(nn.Module):
    """bnn_pynq's CNV shape, smaller: a float first conv, binary convs, max-pools, binary linears."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, bias=False),
            nn.BatchNorm2d(16),
            QuantIdentity(act_quant=BinAct),
            QuantConv2d(16, 16, 3, bias=False, weight_quant=BinWeight),
            nn.BatchNorm2d(16),
            QuantIdentity(act_quant=BinAct),
            nn.MaxPool2d(2),
            QuantConv2d(16, 32, 3, padding=1, bias=False, weight_quant=BinWeight),
            nn.BatchNorm2d(32),
            QuantIdentity(act_quant=BinAct),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            QuantLinear(32 * 7 * 7, 64, bias=False, weight_quant=BinWeight),
            nn.BatchNorm1d(64),
            QuantIdentity(act_quant=BinAct),
            QuantLinear(64, 10, bias=False, weight_quant=BinWeight),
            nn.BatchNorm1d(10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, steps: int = 6) -> nn.Module:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for i in range(steps):
        idx = slice((i * 64) % len(x), (i * 64) % len(x) + 64)
        loss = nn.functional.cross_entropy(model(torch.from_numpy(x[idx])), torch.from_numpy(y[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def qonnx_outputs(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """qonnx's executor, one image at a time (the export has batch 1)."""
    wrapped = ModelWrapper(model).transform(InferShapes())
    name, out = wrapped.graph.input[0].name, wrapped.graph.output[0].name
    return np.concatenate([execute_onnx(wrapped, {name: x[i : i + 1]})[out] for i in range(len(x))])


def check(path: Path, x: np.ndarray, tmp_path: Path, n_binary: int) -> tuple[np.ndarray, np.ndarray]:
    """Convert with verification on x; the engine (every ISA, 1 and 2 threads) vs qonnx's executor."""
    xbin = tmp_path / (path.stem + ".xbin")
    graph = convert(path, calib=x, output=xbin)
    v = graph.metadata["verification"]
    assert v["problems"] == [] and v["reference"] == "qonnx execute_onnx"
    assert len(v["layers"]) >= n_binary - 1  # every binary activation compared with qonnx's ...
    assert all(c["mismatches"] == 0 and c["rounding_ties"] == 0 for c in v["layers"].values())  # ... bit-exact
    assert sum(op.kind in ("bconv2d", "blinear") for op in graph.ops) == n_binary
    ours = run_everywhere(xbin, x)
    ref = qonnx_outputs(onnx.load(path), x)
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    np.testing.assert_array_equal(ours.argmax(1), ref.argmax(1))
    return ours, ref


@pytest.fixture(scope="module")
def lfc() -> LFC:
    x, y = mnist(384)
    return train(LFC(), x.reshape(-1, 1, 28, 28), y)


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_brevitas_lfc_qonnx_export_on_mnist(lfc: LFC, exporter: str, tmp_path: Path) -> None:
    path = tmp_path / "lfc.onnx"
    export_qonnx(lfc, torch.zeros(1, 1, 28, 28), str(path), dynamo=exporter == "dynamo")
    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert "BipolarQuant" in ops and "BatchNormalization" in ops and ops & {"Gemm", "MatMul"}
    x, _ = mnist(24, start=500)
    ours, _ = check(path, x, tmp_path, n_binary=3)
    with torch.no_grad():  # and Brevitas's own eager output
        np.testing.assert_allclose(ours, lfc(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-4)


def test_brevitas_lfc_after_qonnx_cleanup(lfc: LFC, tmp_path: Path) -> None:
    raw, clean = tmp_path / "lfc.onnx", tmp_path / "lfc_clean.onnx"
    export_qonnx(lfc, torch.zeros(1, 1, 28, 28), str(raw))
    cleanup(str(raw), out_file=str(clean), preserve_qnt_ops=False)  # weight quantizers folded to ±1 constants
    assert "BipolarQuant" not in {n.op_type for n in onnx.load(clean).graph.node if n.input[0].startswith("features")}
    x, _ = mnist(24, start=600)
    ours_clean, ref = check(clean, x, tmp_path, n_binary=3)
    np.testing.assert_allclose(ref, qonnx_outputs(onnx.load(raw), x), rtol=1e-5, atol=1e-5)  # cleanup kept the function


def test_brevitas_cnv_qonnx_export_on_cifar10(tmp_path: Path) -> None:
    images = cifar_test_images()
    labels = np.repeat(np.arange(10), 2)
    model = train(CNV(), np.concatenate([images] * 4), np.concatenate([labels] * 4), steps=3)
    path = tmp_path / "cnv.onnx"
    export_qonnx(model, torch.zeros(1, 3, 32, 32), str(path))
    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert {"BipolarQuant", "Conv", "MaxPool"} <= ops
    check(path, images[::2], tmp_path, n_binary=4)  # one image of each class


# --------------------------------------------------------------------------- FINN-style streamlined form


def finn_mlp(lfc: LFC, domain: str = "qonnx.custom_op.general") -> onnx.ModelProto:
    """What FINN's streamlining makes of the LFC: bipolar MatMuls between MultiThresholds.

    Each BatchNorm + sign becomes a MultiThreshold on the integer dot product s of the ±1 weights
    (threshold ceil((mean - beta * sqrt(var + eps) / gamma) / alpha) for weights ±alpha, gamma > 0 here),
    out_scale 2, out_bias -1 (BIPOLAR).
    """
    nodes, inits, annotations = [], [], []

    def init(name: str, a: np.ndarray, dtype: str | None = None) -> str:
        inits.append(numpy_helper.from_array(np.asarray(a, np.float32), name))
        if dtype:
            annotations.append((name, dtype))
        return name

    def threshold(x: str, t: np.ndarray, out: str) -> None:
        nodes.append(
            helper.make_node(
                "MultiThreshold",
                [x, init(out + "_thr", t.reshape(-1, 1))],
                [out],
                domain=domain,
                out_dtype="BIPOLAR",
                out_scale=2.0,
                out_bias=-1.0,
            )
        )
        annotations.append((out, "BIPOLAR"))

    nodes.append(helper.make_node("Flatten", ["x"], ["flat"]))
    threshold("flat", np.full(784, 0.5), "a0")  # 2x - 1 >= 0 <=> x >= 0.5
    x = "a0"
    linears = [m for m in lfc.features if isinstance(m, QuantLinear)]
    norms = [m for m in lfc.features if isinstance(m, nn.BatchNorm1d)]
    for i, (lin, bn) in enumerate(zip(linears, norms, strict=True)):
        w = np.where(lin.weight.detach().numpy() >= 0, 1.0, -1.0)
        nodes.append(helper.make_node("MatMul", [x, init(f"w{i}", w.T, "BIPOLAR")], [f"s{i}"]))
        gamma, beta = bn.weight.detach().double().numpy(), bn.bias.detach().double().numpy()
        mean, var = bn.running_mean.double().numpy(), bn.running_var.double().numpy()
        assert np.all(gamma > 0)
        alpha = float(lin.quant_weight().scale)  # the weights are ±alpha: the dot product is alpha * s
        threshold(f"s{i}", np.ceil((mean - beta * np.sqrt(var + bn.eps) / gamma) / alpha), f"a{i + 1}")
        x = f"a{i + 1}"
    w = np.where(lfc.out.weight.detach().numpy() >= 0, 1.0, -1.0)
    nodes.append(helper.make_node("MatMul", [x, init("w_out", w.T, "BIPOLAR")], ["s_out"]))
    bn = lfc.norm
    gain = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().numpy()
    scale = gain * float(lfc.out.quant_weight().scale)
    shift = bn.bias.detach().numpy() - bn.running_mean.numpy() * gain
    nodes.append(helper.make_node("Mul", ["s_out", init("scale", scale)], ["scaled"]))
    nodes.append(helper.make_node("Add", ["scaled", init("shift", shift)], ["y"]))
    graph = helper.make_graph(
        nodes,
        "finn_lfc",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 28, 28])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        inits,
    )
    for name, dt in annotations:
        qa = onnx.TensorAnnotation(tensor_name=name)
        qa.quant_parameter_tensor_names.add(key="finn_datatype", value=dt)
        graph.quantization_annotation.append(qa)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    return model


@pytest.fixture
def positive_gamma_lfc(lfc: LFC) -> LFC:
    with torch.no_grad():
        for m in lfc.features:
            if isinstance(m, nn.BatchNorm1d):
                m.weight.copy_(m.weight.abs() + 0.5)  # (a tiny gamma makes float32 BatchNorm round at ties)
    return lfc


@pytest.mark.parametrize("domain", ["qonnx.custom_op.general", "finn.custom_op.general"])
def test_finn_multithreshold_mlp(positive_gamma_lfc: LFC, domain: str, tmp_path: Path) -> None:
    path = tmp_path / "finn_lfc.onnx"
    onnx.save(finn_mlp(positive_gamma_lfc, domain), path)
    x, _ = mnist(48, start=700)
    ours, _ = check(path, x, tmp_path, n_binary=3)
    with torch.no_grad():  # the streamlined graph computes what the Brevitas model does
        np.testing.assert_allclose(ours, positive_gamma_lfc(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-4)


def test_finn_xnor_popcount_mlp(positive_gamma_lfc: LFC, tmp_path: Path) -> None:
    """qonnx's ConvertBipolarMatMulToXnorPopcount: {0, 1} MultiThreshold outputs, XnorPopcountMatMul."""
    streamlined = tmp_path / "finn_lfc.onnx"
    onnx.save(finn_mlp(positive_gamma_lfc), streamlined)
    wrapped = ModelWrapper(str(streamlined)).transform(InferShapes())
    wrapped = wrapped.transform(ConvertBipolarMatMulToXnorPopcount())
    ops = [n.op_type for n in wrapped.graph.node]
    assert ops.count("XnorPopcountMatMul") == 3
    path = tmp_path / "finn_lfc_xnor.onnx"
    wrapped.save(str(path))
    x, _ = mnist(32, start=800)
    ours, _ = check(path, x, tmp_path, n_binary=3)
    xbin = tmp_path / "streamlined.xbin"
    convert(streamlined, calib=x, output=xbin)
    np.testing.assert_allclose(ours, run_everywhere(xbin, x), rtol=1e-5, atol=1e-5)
