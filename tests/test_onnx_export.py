"""A BNN exported with torch.onnx.export (TorchScript-based and dynamo) converts the same as its .pt2,
verified against onnxruntime; the CLI converts a .onnx file; unsafe or broken files are refused."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import ISAS
from onnx import TensorProto, helper, numpy_helper
from torch import nn

import xnorinfer
from xnorinfer import cli
from xnorinfer.convert import ConversionError, convert
from xnorinfer.datasets import load_idx_set

DATA = Path(__file__).resolve().parent / "data"


class SignConvNet(nn.Module):
    """A float stem, then binary convs with BatchNorm and the two usual sign forms (torch.sign, where)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(16)
        self.conv1 = nn.Conv2d(16, 32, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 32, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.fc = nn.Linear(32 * 6 * 6, 64, bias=False)
        self.bn3 = nn.BatchNorm1d(64)
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.sign(self.bn0(self.stem(x)))
        x = torch.where(self.bn1(nn.functional.conv2d(x, torch.sign(self.conv1.weight), padding=1)) >= 0, 1.0, -1.0)
        x = nn.functional.max_pool2d(x, 2)
        x = torch.sign(self.bn2(nn.functional.conv2d(x, torch.sign(self.conv2.weight))))
        x = nn.functional.max_pool2d(x, 2).flatten(1)
        x = torch.where(self.bn3(nn.functional.linear(x, torch.sign(self.fc.weight))) >= 0, 1.0, -1.0)
        return self.head(x)


@pytest.fixture(scope="module")
def net() -> SignConvNet:
    torch.manual_seed(0)
    model = SignConvNet()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = None
            with torch.no_grad():
                m.weight.uniform_(-0.5, 1.5)
                m.bias.normal_(0, 0.2)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.from_numpy(mnist(64)))
    return model.eval()


def mnist(n: int, start: int = 0) -> np.ndarray:
    images, _ = load_idx_set(DATA / "mnist", "test")
    return (images[start : start + n].astype(np.float32) / 255.0 - 0.5) / 0.5


def export(model: nn.Module, path: Path, dynamo: bool, **kwargs: object) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 1, 28, 28),), str(path), dynamo=dynamo, **kwargs)
    return path


def engine(path: Path, x: np.ndarray) -> np.ndarray:
    """The engine's output on every ISA path and 1 and 2 threads (all identical)."""
    outs = [np.asarray(xnorinfer.load(path, threads=t).run(x, isa=isa)) for t in (1, 2) for isa in ISAS]
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])
    return outs[0]


def onnxruntime_outputs(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i : i + 1]})[0] for i in range(len(x))])


@pytest.mark.parametrize("how", ["legacy", "dynamo", "dynamo-unoptimized"])
def test_torch_onnx_export_converts_as_its_pt2(net: SignConvNet, how: str, tmp_path: Path) -> None:
    x = mnist(40, start=100)
    kwargs = {"optimize": False} if how == "dynamo-unoptimized" else {}
    path = export(net, tmp_path / "net.onnx", dynamo=how != "legacy", **kwargs)
    graph = convert(path, calib=x, output=tmp_path / "onnx.xbin")
    v = graph.metadata["verification"]
    assert v["problems"] == [] and v["reference"] == "onnxruntime"
    assert len(v["layers"]) >= 4 and all(c["mismatches"] == 0 for c in v["layers"].values())
    pt2 = convert(net, (torch.zeros(1, 1, 28, 28),), calib=x, output=tmp_path / "pt2.xbin")
    # The same IR ops, up to the float stem's BatchNorm, which both exporters fold into its conv (the
    # .pt2 keeps it as an affine before the sign)
    assert [op.kind for op in graph.ops if op.kind != "affine"] == [op.kind for op in pt2.ops if op.kind != "affine"]
    ours = engine(tmp_path / "onnx.xbin", x)
    np.testing.assert_allclose(ours, engine(tmp_path / "pt2.xbin", x), rtol=1e-5, atol=1e-4)
    ref = onnxruntime_outputs(path, x)
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    np.testing.assert_array_equal(ours.argmax(1), ref.argmax(1))


def test_cli_converts_onnx(net: SignConvNet, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = export(net, tmp_path / "net.onnx", dynamo=False)
    out = tmp_path / "net.xbin"
    assert cli.main(["convert", str(path), "-o", str(out), "--samples", "16"]) == 0
    assert "wrote" in capsys.readouterr().out
    x = mnist(8)
    np.testing.assert_allclose(engine(out, x), onnxruntime_outputs(path, x), rtol=1e-4, atol=1e-4)


def _tiny(initializer: onnx.TensorProto) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", initializer.name], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [initializer],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_external_data_outside_the_model_folder_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(4, dtype=np.float32).tobytes())
    folder = tmp_path / "model"
    folder.mkdir()
    t = numpy_helper.from_array(np.zeros(4, np.float32), "b")
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "../secret.bin"), ("offset", "0"), ("length", "16")):
        t.external_data.add(key=k, value=v)
    path = folder / "m.onnx"
    path.write_bytes(_tiny(t).SerializeToString())
    with pytest.raises(ConversionError, match="outside the model's folder"):
        convert(path)


def test_external_data_inside_the_folder_is_read(tmp_path: Path) -> None:
    b = np.array([1.0, -2.0, 3.0, 0.5], np.float32)
    model = _tiny(numpy_helper.from_array(b, "b"))
    path = tmp_path / "m.onnx"
    onnx.save(model, path, save_as_external_data=True, location="m.weights", size_threshold=0)
    assert (tmp_path / "m.weights").stat().st_size == 16
    x = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    graph = convert(path, calib=x, output=tmp_path / "m.xbin")
    assert graph.metadata["verification"]["problems"] == []
    np.testing.assert_allclose(np.asarray(xnorinfer.load(tmp_path / "m.xbin").run(x)), x + b, rtol=1e-6)


def test_damaged_onnx_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"\x08\x07" + b"\xff" * 40)
    assert cli.main(["convert", str(path), "-o", str(tmp_path / "bad.xbin")]) != 0
    err = capsys.readouterr().err
    assert "bad.onnx" in err and "Traceback" not in err
    assert not (tmp_path / "bad.xbin").exists()


def test_unsupported_onnx_op_names_the_node(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["r"]),
            helper.make_node("CumSum", ["r", "axis"], ["y"], name="scan1", exclusive=1),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(np.array(1, np.int64), "axis")],
    )
    path = tmp_path / "cumsum.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), path)
    with pytest.raises(ConversionError, match="CumSum .scan1.*exclusive = 0"):
        convert(path)


def test_constant_gather_elements_index_is_refused(tmp_path: Path) -> None:
    """A constant GatherElements index carries the batch axis (size 1): refused, naming the node."""
    graph = helper.make_graph(
        [helper.make_node("GatherElements", ["x", "i"], ["y"], axis=2, name="pick")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.array([[[7, 0], [1, 1], [-1, 3]]], np.int64), "i")],
    )
    path = tmp_path / "gather_elements.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(ConversionError, match="GatherElements 'pick'.*computed index"):
        convert(path)
