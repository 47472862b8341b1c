"""XNOR-Net's beta map K in the binary conv's epilogue.

The bconv2d kernel with a per-pixel scale input equals, byte for byte, the unfused engine ops it
replaces (bconv2d sum -> mul K -> affine) on every ISA path and thread count, and the float64
reference of its rule fma(multiplier, fl(s * K), bias); XnorConv2d models convert with K fused and
match eager PyTorch on real Fashion-MNIST images (tests/data), with padding, stride 2 and a K map
shared by two layers.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import ISAS, POOLS
from torch import nn

import xnorinfer
from xnorinfer import _core, datasets, xbin
from xnorinfer.bits import pack_last
from xnorinfer.convert import capture, convert, patterns
from xnorinfer.convert.beta import fuse_pixel_scale
from xnorinfer.convert.lower import lower
from xnorinfer.convert.pipeline import capture_model
from xnorinfer.nn import SteSign, XnorConv2d, beta_map
from xnorinfer.nn.quantizers import channel_view

DATA = Path(__file__).resolve().parent / "data"
FMNIST_MEAN, FMNIST_STD = [0.5], [0.5]


def _every_path(kind: str, attrs: dict, params: dict, inputs: list, channels: list) -> np.ndarray:
    """The op on every ISA path x {1 thread, 2 threads}; every result has the same bytes. Returns one."""
    outs = [
        _core.run_op(kind, attrs, params, inputs, isa=isa, pool=pool, channels=channels)
        for isa in ISAS
        for pool in POOLS
    ]
    for o in outs[1:]:
        assert o.tobytes() == outs[0].tobytes()
    return outs[0]


def _exact_sum(x_pm1: np.ndarray, w_pm1: np.ndarray, stride, padding) -> np.ndarray:
    """The ±1 conv sum with zero padding, float64 torch (exact integers), NHWC."""
    y = F.conv2d(
        torch.from_numpy(x_pm1.transpose(0, 3, 1, 2).astype(np.float64)),
        torch.from_numpy(w_pm1.transpose(0, 3, 1, 2).astype(np.float64)),
        None,
        stride,
        padding,
    )
    return y.numpy().transpose(0, 2, 3, 1)


@pytest.mark.parametrize(
    "o, i, k, stride, padding, hw",
    [
        (32, 64, 3, (1, 1), (1, 1), (8, 7)),
        (70, 65, 3, (2, 2), (1, 1), (9, 10)),  # stride 2, channels across a word and a block tail
        (5, 3, 3, (2, 1), (0, 1), (7, 6)),  # a block under 8 channels (the scalar kernel on every path)
        (40, 16, 1, (1, 1), (0, 0), (5, 13)),  # pixel tiles with a partial last tile
    ],
)
@pytest.mark.parametrize("with_affine", [True, False])
def test_fused_scale_equals_unfused_ops(rng, o, i, k, stride, padding, hw, with_affine):
    n = 2
    x = np.where(rng.random((n, *hw, i)) < 0.5, -1, 1)
    w = np.where(rng.random((o, k, k, i)) < 0.5, -1, 1)
    attrs = {"stride": list(stride), "padding": list(padding), "pad_mode": "zero", "in_channels": i, "output": "float"}
    ones, zeros = np.ones(o, np.float32), np.zeros(o, np.float32)
    plain = {"weight": pack_last(w < 0), "multiplier": ones, "bias": zeros}
    xb = pack_last(x < 0)
    s = _every_path("bconv2d", attrs, plain, [xb], [i])
    oh, ow = s.shape[1:3]
    kmap = rng.random((n, oh, ow, 1)).astype(np.float32) * 2.0
    kmap[0, 0, 0, 0] = 0.0
    kmap[1, -1, -1, 0] = -0.75  # signed zeros and negative products stay exact too
    unfused = _every_path("binary", {"op": "mul"}, {}, [s, kmap], [o, 1])
    if with_affine:
        scale = rng.standard_normal(o).astype(np.float32)
        shift = rng.standard_normal(o).astype(np.float32)
        unfused = _every_path("affine", {}, {"scale": scale, "shift": shift}, [unfused], [o])
    else:
        scale, shift = ones, np.full(o, -0.0, np.float32)  # what the converter writes (beta.py)
    fused_params = {"weight": pack_last(w < 0), "multiplier": scale, "bias": shift}
    fused = _every_path("bconv2d", attrs, fused_params, [xb, kmap], [i, 1])
    assert fused.tobytes() == unfused.tobytes()
    # The rule itself, from an independent exact sum: fma(m, fl32(s * K), b), fma in float64.
    exact = _exact_sum(x, w, stride, padding)
    sk = (exact.astype(np.float32) * kmap).astype(np.float64)
    want = (scale.astype(np.float64) * sk + shift.astype(np.float64)).astype(np.float32)
    assert fused.tobytes() == want.tobytes()


def test_scale_input_is_checked():
    w = pack_last(np.zeros((4, 3, 3, 8), bool))
    base = {"stride": [1, 1], "padding": [1, 1], "pad_mode": "zero", "in_channels": 8}
    x = pack_last(np.zeros((1, 5, 5, 8), bool))
    fl = {"weight": w, "multiplier": np.ones(4, np.float32), "bias": np.zeros(4, np.float32)}
    bits = {"weight": w, "threshold": np.zeros(4, np.int32), "flip": np.zeros(4, np.uint8)}
    cases = [("float", fl, (1, 5, 4, 1)), ("float", fl, (1, 5, 5, 2)), ("bits", bits, (1, 5, 5, 1))]
    for output, params, k_shape in cases:
        k = np.ones(k_shape, np.float32)
        with pytest.raises(ValueError, match="pixel scale"):
            _core.run_op("bconv2d", {**base, "output": output}, params, [x, k], channels=[8, k_shape[-1]])


# --------------------------------------------------------------------------- models


class XnorBlock(nn.Module):
    """Float stem, BN, one XnorConv2d: the output is the XNOR-Net layer's own float output."""

    def __init__(self, cin: int, c: int, o: int, stride: int, padding: int):
        super().__init__()
        self.stem = nn.Conv2d(cin, c, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c)
        self.xnor = XnorConv2d(c, o, 3, stride=stride, padding=padding)

    def forward(self, x):
        return self.xnor(self.bn(self.stem(x)))


class SharedK(nn.Module):
    """Two binary convs with the same window read one K map (computed once), then each its own alpha."""

    def __init__(self, c: int = 16):
        super().__init__()
        self.stem = nn.Conv2d(1, c, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c)
        self.a = XnorConv2d(c, 24, 3, stride=2, padding=1)
        self.b = XnorConv2d(c, 8, 3, stride=2, padding=1)

    def forward(self, x):
        x = self.bn(self.stem(x))
        k = beta_map(x, 3, 2, 1)
        xq = SteSign()(x)
        ya = self.a._op(xq, self.a.binary_weight()) * k * channel_view(self.a.scale(), 4)
        yb = self.b._op(xq, self.b.binary_weight()) * k * channel_view(self.b.scale(), 4)
        return torch.cat([ya, yb], dim=1)


def _randomise(model: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.randn(m.num_features, generator=g))
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.5)
    return model.eval()


def _images(n: int) -> np.ndarray:
    images, _, _ = datasets.load("fashion-mnist", DATA, "test")
    return datasets.normalize(images[:n], FMNIST_MEAN, FMNIST_STD)


def _unfused_and_fused(model: nn.Module, example: torch.Tensor):
    ep, _, _ = capture_model(model, (example,))
    graph = lower(patterns.recognise(capture.to_model(ep)))
    fused, count = fuse_pixel_scale(copy.deepcopy(graph))
    fused.validate()
    return graph, fused, count


@pytest.mark.parametrize("stride, padding", [(1, 1), (2, 1), (2, 0)])
def test_xnorconv_converts_fused_and_matches_eager(stride, padding):
    torch.manual_seed(stride * 10 + padding)
    model = _randomise(XnorBlock(1, 32, 40, stride, padding), 1)
    x = _images(64)
    graph = convert(model, (torch.from_numpy(x[:1]),), calib=x[:16])
    kinds = [op.kind for op in graph.ops]
    convs = [op for op in graph.ops if op.kind == "bconv2d"]
    assert len(convs) == 1 and len(convs[0].inputs) == 2, kinds
    assert "binary" not in kinds and "affine" in kinds  # the stem's BN stays; K's mul and alpha joined the conv
    session = xnorinfer.load(xbin.to_bytes(graph), threads=1)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy().transpose(0, 2, 3, 1)
    for isa in ISAS:
        got = session.run(x, isa=isa)
        # s is exact; K = avgpool(mean|x|) of float ops whose summation order differs from PyTorch's by a
        # few ulps, and the two products add one rounding each: a relative bound of 2^-18.
        assert got.shape == want.shape
        assert np.all(np.abs(got - want) <= 2.0**-18 * np.abs(want) + 1e-30), isa


def test_fused_graph_runs_the_same_bytes_as_unfused():
    torch.manual_seed(3)
    model = _randomise(XnorBlock(1, 64, 70, 2, 1), 4)
    x = _images(32)
    unfused, fused, count = _unfused_and_fused(model, torch.from_numpy(x[:1]))
    assert count == 1
    assert "binary" in [op.kind for op in unfused.ops] and "binary" not in [op.kind for op in fused.ops]
    outs = []
    for g in (unfused, fused):
        for threads in (1, 2):
            session = xnorinfer.load(xbin.to_bytes(g), threads=threads)
            outs += [session.run(x, isa=isa) for isa in ISAS]
    for o in outs[1:]:
        assert o.tobytes() == outs[0].tobytes()


def test_shared_k_map_feeds_two_fused_convs():
    torch.manual_seed(5)
    model = _randomise(SharedK(), 6)
    x = _images(32)
    graph = convert(model, (torch.from_numpy(x[:1]),), calib=x[:16])
    convs = [op for op in graph.ops if op.kind == "bconv2d"]
    assert len(convs) == 2 and all(len(c.inputs) == 2 for c in convs)
    assert convs[0].inputs[1] == convs[1].inputs[1]  # one K tensor, computed once
    assert [op.kind for op in graph.ops].count("avgpool2d") == 1
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy().transpose(0, 2, 3, 1)
    got = xnorinfer.load(xbin.to_bytes(graph), threads=2).run(x)
    assert np.all(np.abs(got - want) <= 2.0**-18 * np.abs(want) + 1e-30)


class ScaleFirst(nn.Module):
    """s * alpha * K: alpha folds into the conv before K, so K stays a float mul (not the epilogue's order)."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(8)
        self.xnor = XnorConv2d(8, 16, 3, padding=1)

    def forward(self, x):
        x = self.bn(x)
        s = self.xnor._op(SteSign()(x), self.xnor.binary_weight())
        return s * channel_view(self.xnor.scale(), 4) * self.xnor.beta(x)


def test_scale_before_k_is_left_unfused_and_correct():
    torch.manual_seed(7)
    model = _randomise(ScaleFirst(), 8)
    x = np.random.default_rng(0).standard_normal((8, 8, 10, 10)).astype(np.float32)
    graph = convert(model, (torch.from_numpy(x[:1]),), calib=x)
    conv = next(op for op in graph.ops if op.kind == "bconv2d")
    assert len(conv.inputs) == 1 and "binary" in [op.kind for op in graph.ops]
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy().transpose(0, 2, 3, 1)
    got = xnorinfer.load(xbin.to_bytes(graph), threads=1).run(x)
    assert np.all(np.abs(got - want) <= 2.0**-18 * np.abs(want) + 1e-30)


def test_trained_xnornet_runs_its_binary_convs_with_k_fused():
    from xnorinfer.zoo import load_reference

    module, metrics = load_reference(Path(__file__).resolve().parents[1] / "models" / "xnornet-fmnist")
    x = _images(200)
    graph = convert(module, (torch.from_numpy(x[:1]),), calib=x[:32])
    convs = [op for op in graph.ops if op.kind == "bconv2d"]
    assert len(convs) == 2 and all(len(c.inputs) == 2 for c in convs)
    assert "binary" not in [op.kind for op in graph.ops] and "conv2d" in [op.kind for op in graph.ops]  # stem only
    with torch.no_grad():
        eager = module(torch.from_numpy(x)).numpy().argmax(1)
    got = xnorinfer.load(xbin.to_bytes(graph), threads=2).run(x).argmax(1)
    assert np.array_equal(got, eager)


def test_onnx_export_of_xnorconv_fuses_k_too():
    import io

    import onnx

    torch.manual_seed(11)
    model = _randomise(XnorBlock(1, 32, 40, 2, 1), 12)
    x = _images(32)
    buf = io.BytesIO()
    torch.onnx.export(model, (torch.from_numpy(x[:1]),), buf, opset_version=17, dynamo=False)
    graph = convert(onnx.load_from_string(buf.getvalue()), calib=x[:16])
    convs = [op for op in graph.ops if op.kind == "bconv2d"]
    assert len(convs) == 1 and len(convs[0].inputs) == 2
    assert "binary" not in [op.kind for op in graph.ops]
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy().transpose(0, 2, 3, 1)
    got = xnorinfer.load(xbin.to_bytes(graph), threads=2).run(x)
    # the ONNX exporter folds the stem's BatchNorm into its conv: a few more ulps in the stem
    assert np.allclose(got, want, rtol=2.0**-14, atol=1e-5)
