"""BNN code written the way public repositories write it converts unchanged and runs binary.

Each model below is this project's own code, written in the style of a public BNN code base
(BinaryNet.pytorch, BNN-PYNQ's LFC/CNV, ReActNet, XNOR-Net-style scaled weights): sign written
as `x.sign().mul(1)`, `torch.where(x > 0, ones_like(x), -ones_like(x))`, LearnableBias
`x + bias.expand_as(x)`, `x.view(x.size(0), -1)` of a sign into a binary linear, LogSoftmax at the end,
an MLP on (N, F) inputs, a model whose output is a sign. BatchNorm statistics are calibrated on
random data and then randomised (negative gamma included). Each is converted with torch.export ->
convert(), written to .xbin, run by the engine on every ISA path and two thread counts, and compared
with eager PyTorch: binary activations bit-exact (verification's per-layer check), outputs within
float tolerance, top-1 agreement, and the binary-meant layers running as binary ops.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from realcode_support import run_everywhere

import xnorinfer
from xnorinfer.convert import ConversionError, convert, format_table
from xnorinfer.convert.graph import channel_vector, uniform_value

RTOL = 1e-3


# --------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def _seeded():
    """Model weights come from torch's global generator: seed it so each test is reproducible on its own."""
    torch.manual_seed(int(os.environ.get("XNORINFER_TEST_SEED", "0")))


def randomise_bn(model: nn.Module, example: torch.Tensor, seed: int = 0) -> nn.Module:
    """Calibrate BatchNorm on random inputs like `example`, then randomise gamma (some < 0) and beta."""
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn((32,) + tuple(example.shape[1:]), generator=g))
    model.eval()
    with torch.no_grad():
        for m in bns:
            c = m.num_features
            gamma = 0.5 + torch.rand(c, generator=g)
            gamma[torch.rand(c, generator=g) < 0.35] *= -1
            m.weight.copy_(gamma)
            m.bias.copy_(0.2 * torch.randn(c, generator=g))
    return model


def binary_kinds(graph) -> list[str]:
    return [op.kind for op in graph.ops if op.kind in ("bconv2d", "blinear")]


def check_against_torch(
    model: nn.Module, example: torch.Tensor, tmp_path, n: int = 48, seed: int = 1, **kwargs
) -> tuple:
    """Convert (verification with the engine on), run the .xbin everywhere, compare with eager PyTorch."""
    path = tmp_path / "model.xbin"
    graph = convert(model, (example,), output=path, **kwargs)
    v = graph.metadata["verification"]
    assert not v["problems"]
    assert v["layers"], "no binary activation was checked"
    for name, layer in v["layers"].items():
        assert layer["mismatches"] == 0, (name, layer)
    x = torch.randn((n,) + tuple(example.shape[1:]), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        want32 = model(x).numpy()
        want64 = model.double()(x.double()).numpy()
        model.float()
    got = run_everywhere(path, x.numpy())
    for want in (want32, want64):
        err = np.abs(got.astype(np.float64) - want).max()
        assert err <= RTOL * max(1.0, np.abs(want).max()), err
    if want32.ndim == 2 and want32.shape[1] > 1:
        np.testing.assert_array_equal(got.argmax(1), want32.argmax(1))
    return graph, got, want32


def sign_stats_ok(model: nn.Module, x: torch.Tensor) -> None:
    """The random BN statistics give signs of both polarities (the test is not trivially constant)."""
    with torch.no_grad():
        out = model(x)
    assert torch.isfinite(out).all()


# --------------------------------------------------------------------------- 1. BinaryNet.pytorch style VGG


def binarize(t: torch.Tensor) -> torch.Tensor:
    """BinaryNet.pytorch-style deterministic binarization (as written there, with a trailing mul)."""
    return t.sign().mul(1)


class BinarizeConv2d(nn.Conv2d):
    """Binarizes its input (except for the RGB stem) and its weight, then convolves."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.size(1) != 3:
            x = binarize(x)
        return F.conv2d(x, binarize(self.weight), self.bias, self.stride, self.padding)


class BinarizeLinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.sign() * 1.0
        out = F.linear(x, binarize(self.weight))
        if self.bias is not None:
            out = out + self.bias.view(1, -1).expand_as(out)
        return out


class BinaryNetVGGSmall(nn.Module):
    """conv -> maxpool -> BN -> hardtanh blocks, then view(N, -1) of the sign into binary linears."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            BinarizeConv2d(3, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.Hardtanh(inplace=True),
            BinarizeConv2d(width, width, 3, padding=1, bias=False),
            nn.MaxPool2d(2),
            nn.BatchNorm2d(width),
            nn.Hardtanh(inplace=True),
            BinarizeConv2d(width, 2 * width, 3, padding=1, bias=False),
            nn.MaxPool2d(2),
            nn.BatchNorm2d(2 * width),
            nn.Hardtanh(inplace=True),
        )
        self.flat = 2 * width * 2 * 2
        self.classifier = nn.Sequential(
            BinarizeLinear(self.flat, 96, bias=True),
            nn.BatchNorm1d(96),
            nn.Hardtanh(inplace=True),
            BinarizeLinear(96, 10, bias=True),
            nn.BatchNorm1d(10),
            nn.LogSoftmax(dim=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = x.view(-1, self.flat)
        return self.classifier(x)


def test_binarynet_vgg(tmp_path):
    """view(-1, F) of the hardtanh, the sign inside BinarizeLinear: the per-feature sign after a float flatten."""
    example = torch.randn(2, 3, 8, 8)
    model = randomise_bn(BinaryNetVGGSmall(20), example)
    graph, _, _ = check_against_torch(model, example, tmp_path)
    kinds = [op.kind for op in graph.ops]
    assert "unpack" not in kinds
    assert binary_kinds(graph) == ["bconv2d", "bconv2d", "blinear", "blinear"]
    assert kinds[-1] == "log_softmax"
    # the RGB stem has ±1 weights but reads the image: a binary-weight layer (float input), no warning
    assert kinds[0] == "bwconv2d" and "features.0" in graph.metadata["weight_plane_layers"]
    assert "features.0" not in graph.metadata["float_layers"]
    assert "features.0" not in graph.metadata["binary_warnings"]


class BinaryResBlock(nn.Module):
    """BinaryNet.pytorch's binary ResNet block: BinarizeConv2d -> BN -> hardtanh, a binary 1x1 downsample."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = BinarizeConv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = BinarizeConv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(BinarizeConv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = F.hardtanh(self.bn1(self.conv1(x)))
        return F.hardtanh(self.bn2(self.conv2(out)) + residual)


class BinaryResNetSmall(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layers = nn.Sequential(BinaryResBlock(16, 16, 1), BinaryResBlock(16, 32, 2), BinaryResBlock(32, 64, 2))
        self.fc = nn.Linear(64, 10)
        self.bn3 = nn.BatchNorm1d(10)
        self.logsoftmax = nn.LogSoftmax(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(F.hardtanh(self.bn1(self.conv1(x))))
        x = F.avg_pool2d(x, 2).view(x.size(0), -1)
        return self.logsoftmax(self.bn3(self.fc(x)))


def test_binarynet_resnet_sign_mul_one_runs_binary(tmp_path):
    """`x.sign().mul(1)` inside every BinarizeConv2d: every binary conv (and downsample) runs binary."""
    example = torch.randn(2, 3, 8, 8)
    model = randomise_bn(BinaryResNetSmall(), example)
    graph, _, _ = check_against_torch(model, example, tmp_path)
    assert binary_kinds(graph) == ["bconv2d"] * 8
    assert set(graph.metadata["float_layers"]) == {"conv1", "fc"}


class BipolarAct(nn.Module):
    """A sign activation module (BNN-PYNQ's bipolar QuantIdentity in eval): +1 where x >= 0, else -1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


class CNVStyle(nn.Module):
    """conv -> BN -> sign blocks with max-pools on the signs, then flatten of the sign into binary linears."""

    def __init__(self, width: int, last_pool: bool = True) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            BipolarAct(),
            BinConv(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            BipolarAct(),
            nn.MaxPool2d(2),
            BinConv(width, 2 * width, 3, stride=1 if last_pool else 2, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            BipolarAct(),
            nn.MaxPool2d(2) if last_pool else nn.Identity(),
        )
        self.classifier = nn.Sequential(
            BinarizeLinear(2 * width * 2 * 2, 64, bias=False),
            nn.BatchNorm1d(64),
            BipolarAct(),
            BinarizeLinear(64, 10, bias=False),
            nn.BatchNorm1d(10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.classifier(x.view(x.size(0), -1))


@pytest.mark.parametrize("last_pool", [True, False])  # flatten of a bit max-pool / of a threshold output
@pytest.mark.parametrize("width", [20, 32])  # 2*width = 40 channels (bits repacked) and 64 (a view)
def test_flatten_of_sign_into_binary_linear(width, last_pool, tmp_path):
    example = torch.randn(2, 3, 8, 8)
    model = randomise_bn(CNVStyle(width, last_pool), example)
    graph, _, _ = check_against_torch(model, example, tmp_path)
    kinds = [op.kind for op in graph.ops]
    assert "bflatten" in kinds and "unpack" not in kinds  # the bits flow flat into the binary linear
    assert kinds.count("bmaxpool2d") == 1 + last_pool
    assert binary_kinds(graph) == ["bconv2d", "bconv2d", "blinear", "blinear"]
    flat = next(op for op in graph.ops if op.kind == "bflatten")
    assert graph.tensors[flat.outputs[0]].shape == (1, 2 * width * 4)


# --------------------------------------------------------------------------- 2. sign written with where / ones_like


class WhereSign(nn.Module):
    def __init__(self, form: str) -> None:
        super().__init__()
        self.form = form

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.form == "gt_ones_like":
            return torch.where(x > 0, torch.ones_like(x), -torch.ones_like(x))
        if self.form == "ge_full_like":
            return torch.where(x >= 0, torch.full_like(x, 1.0), torch.full_like(x, -1.0))
        if self.form == "ge_new_ones":
            return torch.where(x >= 0, x.new_ones(x.shape), -x.new_ones(x.shape))
        if self.form == "sign_mul_one":
            return x.sign().mul(1)
        if self.form == "sign_times_one":
            return torch.sign(x) * 1.0
        raise AssertionError(self.form)


class BinConv(nn.Conv2d):
    """XNOR-Net style weight: mean|W| per output channel times sign(W)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.weight.abs().mean(dim=(1, 2, 3), keepdim=True)
        return F.conv2d(x, alpha * self.weight.sign(), None, self.stride, self.padding)


class SignFormsNet(nn.Module):
    def __init__(self, form: str) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.bn0 = nn.BatchNorm2d(16)
        self.act0 = WhereSign(form)
        self.conv1 = BinConv(16, 24, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        self.act1 = WhereSign(form)
        self.conv2 = BinConv(24, 24, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(24)
        self.fc = nn.Linear(24, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act0(self.bn0(self.stem(x)))
        x = self.act1(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.log_softmax(self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1)), dim=1)


@pytest.mark.parametrize("form", ["gt_ones_like", "ge_full_like", "ge_new_ones", "sign_mul_one", "sign_times_one"])
def test_sign_forms_are_recognised(form, tmp_path):
    example = torch.randn(2, 3, 8, 8)
    model = randomise_bn(SignFormsNet(form), example)
    graph, _, _ = check_against_torch(model, example, tmp_path)
    assert binary_kinds(graph) == ["bconv2d", "bconv2d"]
    assert "conv1" not in graph.metadata["float_layers"] and "conv2" not in graph.metadata["float_layers"]


# --------------------------------------------------------------------------- 3. ReActNet LearnableBias


class LearnableBias(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(0.2 * torch.randn(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias.expand_as(x)


class SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # noqa: ANN001, ANN205 - autograd signature
        return torch.sign(x)

    @staticmethod
    def backward(ctx, g):  # noqa: ANN001, ANN205
        return g


class ReActBlock(nn.Module):
    """move0 -> sign -> scaled binary conv -> BN -> + shortcut -> move1 -> PReLU -> move2 (ReActNet-A style)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.move0 = LearnableBias(channels)
        self.conv = BinConv(channels, channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.move1 = LearnableBias(channels)
        self.prelu = nn.PReLU(channels)
        self.move2 = LearnableBias(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn(self.conv(SignSTE.apply(self.move0(x)))) + x
        return self.move2(self.prelu(self.move1(out)))


class ReActNetSmall(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32))
        self.blocks = nn.Sequential(ReActBlock(32), ReActBlock(32))
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def test_reactnet_learnable_bias_expand_as(tmp_path):
    example = torch.randn(2, 3, 8, 8)
    model = randomise_bn(ReActNetSmall(), example)
    graph, _, _ = check_against_torch(model, example, tmp_path)
    assert binary_kinds(graph) == ["bconv2d", "bconv2d"]
    kinds = [op.kind for op in graph.ops]
    assert "add" in kinds and "prelu" in kinds  # residual add; RPReLU with both learnable shifts
    # move0 became the sign's per-channel threshold
    signs = [op for op in graph.ops if op.kind == "sign"]
    assert len(signs) == 2 and all(np.any(op.params["threshold"] != 0) for op in signs)


def test_expanded_constants_are_per_channel():
    bias = np.broadcast_to(np.arange(4.0).reshape(1, 4, 1, 1), (2, 4, 3, 3))
    np.testing.assert_array_equal(channel_vector(bias, (2, 4, 3, 3)), np.arange(4.0))
    full = np.ascontiguousarray(bias)  # a materialised copy is found per-channel too
    np.testing.assert_array_equal(channel_vector(full, (2, 4, 3, 3)), np.arange(4.0))
    varying = full.copy()
    varying[1, 2, 0, 1] = 7.0
    assert channel_vector(varying, (2, 4, 3, 3)) is None
    assert channel_vector(full, (2, 4, 1, 1)) is None  # would broadcast the tensor to (2, 4, 3, 3)
    feat = np.broadcast_to(np.arange(5.0).reshape(1, 5), (3, 5))  # bias.view(1, -1).expand_as(out)
    np.testing.assert_array_equal(channel_vector(feat, (3, 5)), np.arange(5.0))
    assert uniform_value(np.broadcast_to(np.float64(-1.0), (2, 3, 4, 4))) == -1.0
    assert uniform_value(np.array([1.0, 1.0, 2.0])) is None


def test_expanded_constants_stay_views():
    from xnorinfer.convert.capture import to_numpy

    bias = torch.randn(1, 8, 1, 1)
    a = to_numpy(bias.expand(4, 8, 64, 64))
    assert a.shape == (4, 8, 64, 64) and a.strides[0] == a.strides[2] == a.strides[3] == 0  # never materialised
    np.testing.assert_array_equal(a[3, :, 5, 7], bias.double().view(8).numpy())
    w = torch.randn(3, 4)
    np.testing.assert_array_equal(to_numpy(w), w.double().numpy())
    # -ones_like(x) and the LearnableBias expand fold to views too (an ImageNet-size model stays small)
    from xnorinfer.convert.capture import decompose, export, to_model

    class Consts(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bias = nn.Parameter(torch.randn(1, 8, 1, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            s = torch.where(x + self.bias.expand_as(x) > 0, torch.ones_like(x), -torch.ones_like(x))
            return s * (2.0 * torch.ones_like(x))

    model = to_model(decompose(export(Consts(), (torch.randn(2, 8, 32, 32),))))
    big = [c for c in model.consts.values() if c.size > 8]
    assert big and all(sum(st == 0 for st in c.strides) >= 3 for c in big)


def test_mul_by_one_and_sign_of_binary_passes():
    from xnorinfer.convert import patterns
    from xnorinfer.convert.graph import Model, Node

    shape = (2, 4, 6, 6)
    nodes = [
        Node("sign", ["x"], "s"),
        Node("mul", ["s", "one"], "m"),
        Node("maxpool2d", ["m"], "p", {"kernel": [2, 2]}),
        Node("sign", ["p"], "s2"),
    ]
    model = Model(
        inputs=["x"],
        outputs=["s2"],
        nodes=nodes,
        consts={"one": np.broadcast_to(np.float64(1.0), shape)},
        shapes={"x": shape, "s": shape, "m": shape, "one": shape, "p": (2, 4, 3, 3), "s2": (2, 4, 3, 3)},
    )
    model = patterns.run_to_fixed_point(model, patterns.ACTIVATIONS)
    # the multiply by ones is gone, the outer sign of the pooled ±1 tensor is the pooled tensor itself
    assert [n.op for n in model.nodes] == ["act_sign", "maxpool2d"]
    assert model.outputs == ["p"] and model.nodes[1].inputs == ["s"]


# --------------------------------------------------------------------------- 4. LogSoftmax at the end


class BinaryMLPLogSoftmax(nn.Module):
    """MNIST-script style: flatten the image, binary hidden layers, nn.LogSoftmax(dim=1)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 100)
        self.bn1 = nn.BatchNorm1d(100)
        self.fc2 = BinarizeLinear(100, 100, bias=False)
        self.bn2 = nn.BatchNorm1d(100)
        self.fc3 = BinarizeLinear(100, 10, bias=False)
        self.bn3 = nn.BatchNorm1d(10)
        self.out = nn.LogSoftmax(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.hardtanh(self.bn1(self.fc1(x.view(-1, 64))))
        x = F.hardtanh(self.bn2(self.fc2(x)))
        return self.out(self.bn3(self.fc3(x)))


def test_log_softmax_output(tmp_path):
    example = torch.randn(2, 1, 8, 8)
    model = randomise_bn(BinaryMLPLogSoftmax(), example)
    graph, got, _ = check_against_torch(model, example, tmp_path)
    assert binary_kinds(graph) == ["blinear", "blinear"]
    assert graph.ops[-1].kind == "log_softmax"
    np.testing.assert_allclose(np.exp(got).sum(1), 1.0, rtol=1e-5)


# --------------------------------------------------------------------------- 5. a sign as the model output


class SignOutput(nn.Module):
    """A binary feature extractor whose output is the last sign activation (hashing / feature models)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(3, 16, 3, padding=1)
        self.bn0 = nn.BatchNorm2d(16)
        self.conv1 = BinConv(16, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.where(self.bn0(self.conv0(x)) >= 0, 1.0, -1.0)
        return torch.where(self.bn1(self.conv1(x)) >= 0, 1.0, -1.0)


def test_sign_output_is_unpacked(tmp_path):
    example = torch.randn(2, 3, 6, 6)
    model = randomise_bn(SignOutput(), example)
    path = tmp_path / "model.xbin"
    graph = convert(model, (example,), output=path)
    assert graph.ops[-1].kind == "unpack" and binary_kinds(graph) == ["bconv2d"]
    x = torch.randn(16, 3, 6, 6, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = model(x).permute(0, 2, 3, 1).numpy()  # the engine returns NHWC
    got = run_everywhere(path, x.numpy())
    np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------- 6. (N, F) input MLP (BNN-PYNQ LFC style)


class LFCStyle(nn.Module):
    """Bipolar input quantizer, binary fully connected layers with BN1d and sign, on (N, F) inputs."""

    def __init__(self, features: int = 48, hidden: int = 72, sign_out: bool = False, float_first: bool = False) -> None:
        super().__init__()
        self.first = nn.Sequential(nn.Linear(features, features), nn.BatchNorm1d(features)) if float_first else None
        self.fc = nn.ModuleList(
            [
                BinarizeLinear(features, hidden, bias=False),
                BinarizeLinear(hidden, hidden, bias=False),
                BinarizeLinear(hidden, 10, bias=False),
            ]
        )
        self.bn = nn.ModuleList([nn.BatchNorm1d(hidden), nn.BatchNorm1d(hidden), nn.BatchNorm1d(10)])
        self.sign_out = sign_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.first is not None:
            x = F.hardtanh(self.first(x))
        x = torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))
        for i, (fc, bn) in enumerate(zip(self.fc, self.bn, strict=True)):
            x = bn(fc(x))
            if i < 2 or self.sign_out:
                x = torch.where(x > 0, torch.full_like(x, 1.0), torch.full_like(x, -1.0))
        return x


@pytest.mark.parametrize("float_first", [False, True])
def test_mlp_on_features_input_runs_end_to_end(float_first, tmp_path):
    example = torch.randn(2, 48)
    model = randomise_bn(LFCStyle(float_first=float_first), example)
    graph, _, _ = check_against_torch(model, example, tmp_path)
    assert binary_kinds(graph) == ["blinear", "blinear", "blinear"]
    assert graph.metadata["input_layout"] == "NF"
    session = xnorinfer.load(tmp_path / "model.xbin")
    assert session.input_shape == (1, 48)
    with pytest.raises(ValueError, match=r"\(N, 48\)"):
        session.run(np.zeros((2, 48, 1, 1), np.float32))


def test_mlp_with_sign_output(tmp_path):
    example = torch.randn(2, 48)
    model = randomise_bn(LFCStyle(sign_out=True), example)
    path = tmp_path / "model.xbin"
    graph = convert(model, (example,), output=path)
    assert graph.ops[-1].kind == "unpack"
    x = torch.randn(32, 48, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_array_equal(run_everywhere(path, x.numpy()), want)


# --------------------------------------------------------------------------- 7. --binarize and exact zeros


class LatentWeights(nn.Module):
    """A plain conv after a sign, declared binary with binarize=[...]; some latent weights are exactly 0."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.fc = nn.Linear(8, 4)
        with torch.no_grad():
            self.conv.weight.view(-1)[::17] = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv(torch.sign(self.stem(x))))
        return self.fc(x.mean((2, 3)))


@pytest.mark.parametrize("verify", [True, False])
def test_binarize_reports_exact_zero_weights(verify):
    model = LatentWeights().eval()
    zeros = int((model.conv.weight == 0).sum())
    graph = convert(model, (torch.randn(2, 3, 6, 6),), binarize=["conv"], verify=verify)
    assert graph.metadata["binarized"]["conv"]["zero_weights"] == zeros > 0
    assert f"conv: {zeros} latent weight(s) are exactly 0.0" in format_table(graph)
    assert binary_kinds(graph) == ["bconv2d"]


def test_cli_no_verify_reports_exact_zero_weights(tmp_path, capsys):
    from xnorinfer import cli

    model = LatentWeights().eval()
    zeros = int((model.conv.weight == 0).sum())
    pt2 = tmp_path / "latent.pt2"
    torch.export.save(torch.export.export(model, (torch.randn(2, 3, 6, 6),)), str(pt2))
    rc = cli.main(["convert", str(pt2), "-o", str(tmp_path / "latent.xbin"), "--binarize", "conv", "--no-verify"])
    out = capsys.readouterr().out
    assert rc == 0
    assert f"warning: conv: {zeros} latent weight(s) are exactly 0.0" in out
    assert "not verified (--no-verify)" in out


# --------------------------------------------------------------------------- 8. binary-looking layers that stay float


class DetachTrickConv(nn.Conv2d):
    """Bi-Real / ReActNet weight: (alpha * sign W).detach() - clip(W).detach() + clip(W) (float rounding remains)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.weight.abs().mean(dim=(1, 2, 3), keepdim=True)
        real = torch.clamp(self.weight, -1.0, 1.0)
        w = (alpha * torch.sign(self.weight)).detach() - real.detach() + real
        return F.conv2d(x, w, None, self.stride, self.padding)


class LooksBinary(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.detach_conv = DetachTrickConv(16, 16, 3, padding=1, bias=False)
        self.htanh_conv = BinConv(16, 16, 3, padding=1, bias=False)
        self.fc = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.detach_conv(torch.sign(self.stem(x)))
        x = self.htanh_conv(F.hardtanh(x))  # binary weights, but a hardtanh is not a sign: binary-weight layer
        return self.fc(x.mean((2, 3)))


def test_binary_looking_float_layers_are_warned():
    torch.manual_seed(0)
    model = LooksBinary().eval()
    w = model.detach_conv.weight
    # Small latent weights beside one > 100 alpha: (alpha - w) + w rounds away from alpha by ~60 float32
    # ULPs, beyond the tolerance that detach-trick weights get (patterns.WEIGHT_ULPS, 32): float, warned.
    with torch.no_grad():
        w.mul_(0.01)
        w[:, 0, 0, 0] = 0.9
    eff = (w.abs().mean(dim=(1, 2, 3), keepdim=True) * w.sign()).detach() - w.detach() + w
    assert bool((eff.abs().amax((1, 2, 3)) != eff.abs().amin((1, 2, 3))).any())  # not one magnitude, by ~1e-7
    graph = convert(model, (torch.randn(2, 3, 6, 6),))
    warnings = graph.metadata["binary_warnings"]
    assert "float rounding" in warnings["detach_conv"]
    assert "htanh_conv" not in warnings  # ±alpha weights on a float (hardtanh) input: bwconv2d
    assert "stem" not in warnings and "fc" not in warnings  # ordinary float layers: no warning
    table = format_table(graph)
    assert "warning: detach_conv looks meant to be binary but stayed float" in table
    assert "binary-weight: htanh_conv: binary weights (BWN)" in table


class SignFlattenFloatHead(nn.Module):
    """A sign, then flatten into a float classifier (real-valued last layer reading the bits)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 12, 3, padding=1)
        self.bn = nn.BatchNorm2d(12)
        self.fc = nn.Linear(12 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.sign(self.bn(self.conv(x)))
        return self.fc(torch.flatten(x, 1))


def test_flatten_of_sign_into_float_linear(tmp_path):
    example = torch.randn(2, 3, 4, 4)
    model = randomise_bn(SignFlattenFloatHead(), example)
    graph, _, _ = check_against_torch(model, example, tmp_path)
    kinds = [op.kind for op in graph.ops]
    assert kinds[-3:] == ["bflatten", "unpack", "linear"]
    assert "fc" not in graph.metadata["binary_warnings"]  # float weights: an ordinary float layer


def test_refusal_still_names_the_op():
    class Cummax(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.logcumsumexp(x, 1)

    with pytest.raises(ConversionError, match="logcumsumexp"):
        convert(Cummax(), (torch.randn(2, 3, 4, 4),))


class ScaledSignNet(nn.Module):
    """An activation scale on the sign (`sign(x) * s`, s a learnable scalar) before a scaled-sign-weight conv."""

    def __init__(self, scale: float, per_channel: bool = False, groups: int = 1) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 64, 3, padding=1)
        self.bn0 = nn.BatchNorm2d(64)
        shape = (1, 64, 1, 1) if per_channel else ()
        self.scale = nn.Parameter(torch.full(shape, scale) * (1 + torch.rand(shape) if per_channel else 1))
        self.conv = nn.Conv2d(64, 64, 3, padding=1, bias=False, groups=groups)
        self.bn1 = nn.BatchNorm2d(64)
        self.fc = nn.Linear(64 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.sign(self.bn0(self.stem(x))) * self.scale
        w = self.conv.weight
        w = w.sign() * w.abs().mean((1, 2, 3), keepdim=True)
        y = self.bn1(F.conv2d(a, w, None, 1, 1, 1, self.conv.groups))
        return self.fc(torch.sign(F.max_pool2d(y, 4)).flatten(1))


@pytest.mark.parametrize("scale", [0.7, -1.3])
def test_scaled_sign_runs_binary(scale, tmp_path):
    example = torch.randn(2, 3, 8, 8)
    model = randomise_bn(ScaledSignNet(scale), example)
    graph, _, _ = check_against_torch(model, example, tmp_path)
    assert binary_kinds(graph) == ["bconv2d"]  # the scale moved into the weights: s * W is ±(s alpha)
    assert "bwconv2d" not in [op.kind for op in graph.ops]


def test_per_channel_scaled_sign_is_a_binary_weight_layer(tmp_path):
    example = torch.randn(2, 3, 8, 8)
    model = randomise_bn(ScaledSignNet(0.7, per_channel=True), example)
    graph, _, _ = check_against_torch(model, example, tmp_path)
    assert "bwconv2d" in [op.kind for op in graph.ops]  # a per-input-channel scale: weights stay binary


def test_grouped_binary_conv_warns(tmp_path):
    # depthwise (64 groups of 1 channel): stays float, saying why (grouped_binary.py splits groups of >= 8 channels)
    example = torch.randn(2, 3, 8, 8)
    model = randomise_bn(ScaledSignNet(1.0, groups=64), example)
    graph, _, _ = check_against_torch(model, example, tmp_path)
    warnings = graph.metadata["binary_warnings"]  # keyed by the F.conv2d call (no module of its own)
    assert [w for w in warnings.values() if "grouped convolution" in w and "depthwise" in w], warnings
    assert "bconv2d" not in [op.kind for op in graph.ops]


def test_grouped_scaled_sign_conv_runs_binary(tmp_path):
    # groups 4 on 64 channels (16 per group): one bconv2d per group, the scale c of c * sign(x) in each
    example = torch.randn(2, 3, 8, 8)
    model = randomise_bn(ScaledSignNet(-1.3, groups=4), example)
    graph, _, _ = check_against_torch(model, example, tmp_path)
    assert binary_kinds(graph) == ["bconv2d"] * 4
    assert not graph.metadata["binary_warnings"], graph.metadata["binary_warnings"]
