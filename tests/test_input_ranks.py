"""Model inputs of any rank (issue 12): (N, C, L) signals through conv1d, (N, T, F) sequences, (N, H, W, C)
images fed channels-last, (N,) scalars; per-channel sign thresholds, PReLU slopes and comparisons on
a value whose channel axis is not the last physical one. Each converted with verification (binary
activations bit for bit) and the engine compared with eager PyTorch on every ISA and thread count."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from realcode_support import run_everywhere
from torch import nn

import xnorinfer
from xnorinfer.convert import convert


def _sign(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x < 0, -1.0, 1.0)


class Signal(nn.Module):
    """(N, C, L): conv1d, BatchNorm1d, a learnable per-channel sign threshold (RSign), a conv1d of the
    ±1 signal, PReLU per channel, then a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(3, 8, 5, padding=2, stride=2)
        self.bn = nn.BatchNorm1d(8)
        self.shift = nn.Parameter(torch.linspace(-0.5, 0.5, 8).view(1, 8, 1))
        self.conv2 = nn.Conv1d(8, 8, 3, padding=1, dilation=1)
        self.act = nn.PReLU(8)
        with torch.no_grad():
            self.act.weight.copy_(torch.linspace(0.05, 0.4, 8))
        self.head = nn.Linear(8 * 16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _sign(self.bn(self.conv(x)) - self.shift)
        return self.head(torch.flatten(self.act(self.conv2(y)), 1))


class Sequence(nn.Module):
    """(N, T, F): a per-feature linear, a per-step threshold comparison on the transposed value (its
    channel dim 1 is then T: not the last physical axis), and a mean over time."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(6, 12)
        self.register_buffer("t", torch.linspace(-0.3, 0.3, 12).view(1, 12, 1))
        self.out = nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.inp(x))  # (N, T, 12)
        hf = h.transpose(1, 2)  # (N, 12, T): per-channel on dim 1
        gate = (hf > self.t).float()
        b = _sign(hf - self.t)  # a sign with per-channel thresholds on a permuted value
        return self.out(((gate + b) * hf).mean(2))


class ChannelsLast(nn.Module):
    """An image fed (N, H, W, C), permuted to NCHW inside forward."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn(self.conv(x.permute(0, 3, 1, 2))))
        return self.fc(y.mean((2, 3)))


class Scalar(nn.Module):
    """(N,): one value per example."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(1, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.tanh(x).unsqueeze(1))


def _calibrated(model: nn.Module, shape: tuple[int, ...]) -> nn.Module:
    model.train()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(4):
            model(torch.randn((32, *shape[1:]), generator=g))
    return model.eval()


def _compare(model: nn.Module, shape: tuple[int, ...], tmp_path, n: int = 40):
    model = _calibrated(model, shape)
    x = np.random.default_rng(5).standard_normal((n, *shape[1:])).astype(np.float32)
    path = tmp_path / "model.xbin"
    graph = convert(model, (torch.randn(shape),), output=path, calib=x)
    v = graph.metadata["verification"]
    assert not v["problems"], v["problems"]
    assert all(layer["mismatches"] == 0 for layer in v["layers"].values()), v["layers"]
    got = run_everywhere(path, x)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(want).max())))
    return graph, x


def test_conv1d_signal_with_per_channel_threshold_and_prelu(tmp_path):
    graph, x = _compare(Signal(), (1, 3, 32), tmp_path)
    kinds = [op.kind for op in graph.ops]
    assert "conv2d" in kinds and "prelu" in kinds and "sign" in kinds  # conv1d as a height-1 conv2d
    assert graph.metadata["verification"]["layers"]  # the sign's bits were compared with PyTorch's
    assert graph.metadata["input_layout"] == "ND"
    s = xnorinfer.load(tmp_path / "model.xbin", threads=1)
    assert s.input_shape == (1, 3, 32) and s.input_names == ["input"]
    # each row alone gives its row of the batch
    np.testing.assert_array_equal(s.run(x[3:4])[0], s.run(x)[3])
    with pytest.raises(ValueError, match=r"input must be float32 \(N, 3, 32\) with N >= 1, got \(2, 3, 31\)"):
        s.run(np.zeros((2, 3, 31), np.float32))


def test_sequence_with_thresholds_on_a_transposed_value(tmp_path):
    graph, _ = _compare(Sequence(), (1, 10, 6), tmp_path)
    assert sum(op.kind == "sign" for op in graph.ops) == 1
    assert any(op.kind == "compare" for op in graph.ops)
    assert graph.metadata["verification"]["layers"]


def test_channels_last_image(tmp_path):
    _compare(ChannelsLast(), (1, 9, 7, 3), tmp_path)
    s = xnorinfer.load(tmp_path / "model.xbin", threads=1)
    assert s.input_shapes == [(1, 9, 7, 3)]  # taken as the user holds it


def test_rank_1_input(tmp_path):
    _compare(Scalar(), (1,), tmp_path)


def test_old_single_input_forms_are_unchanged(tmp_path):
    """An (N, F) model keeps its recorded NCHW (1, F, 1, 1) input and takes (N, F) (files from before
    this change load and run the same)."""
    model = nn.Sequential(nn.Linear(5, 3))
    graph = convert(model.eval(), (torch.randn(1, 5),), output=tmp_path / "m.xbin")
    assert graph.tensors[graph.inputs[0]].shape == (1, 1, 1, 5)
    assert graph.metadata["input_layout"] == "NF" and graph.metadata["input_shape"] == [1, 5, 1, 1]
    s = xnorinfer.load(tmp_path / "m.xbin", threads=1)
    assert s.input_shape == (1, 5) and s.input_shapes == [(1, 5)]
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(s.run(x), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s.run([x]), want, rtol=1e-5, atol=1e-6)


def test_conv1d_refusals_name_the_layer():
    """A transposed conv1d stays refused with a message naming the module (no silent fallback)."""

    class Up(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.up = nn.ConvTranspose1d(2, 2, 2, stride=2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.up(x)

    from xnorinfer.convert.graph import ConversionError

    with pytest.raises(ConversionError, match="module 'up'"):
        convert(Up().eval(), (torch.randn(1, 2, 4),), verify=False)


def test_functional_conv1d_with_groups_and_dilation(tmp_path):
    class G(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.randn(6, 2, 3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.conv1d(x, self.w, stride=1, padding=2, dilation=2, groups=2).flatten(1)

    _compare(G(), (1, 4, 12), tmp_path)


class SignedConv1d(nn.Module):
    """torch.sign of (N, C, L) signals (one threshold for all) around a conv1d with ±1 weights: the signs
    stay exact and the conv1d runs as a binary conv (the sign moves past its (N, C, 1, L) reshape)."""

    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Conv1d(8, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm1d(16)
        with torch.no_grad():
            self.c.weight.copy_(torch.sign(torch.randn(16, 8, 3, generator=torch.Generator().manual_seed(1))))
            self.bn.bias.copy_(torch.linspace(-0.3, 0.3, 16) + 0.05)  # (no conv sum lands on sign's 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sign(self.bn(self.c(torch.sign(x)))).flatten(1)


def test_signs_of_a_signal_around_conv1d(tmp_path):
    graph, _ = _compare(SignedConv1d(), (1, 8, 20), tmp_path)
    assert sum(op.kind == "sign" for op in graph.ops) == 2
    assert not graph.metadata["float_layers"] and not graph.metadata.get("weight_plane_layers")
    assert [op.kind for op in graph.ops].count("bconv2d") == 1  # the sign moves past conv1d's reshape


class Volume(nn.Module):
    """(N, C, D, H, W): a per-channel sign threshold and PReLU on a rank-5 value, a mean, a linear."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("t", torch.tensor([-0.2, 0.0, 0.3]).view(1, 3, 1, 1, 1))
        self.act = nn.PReLU(3)
        with torch.no_grad():
            self.act.weight.copy_(torch.tensor([0.1, 0.2, 0.3]))
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(x) + _sign(x - self.t)
        return self.fc(y.mean((2, 3, 4)))


def test_rank_5_volume(tmp_path):
    graph, _ = _compare(Volume(), (1, 3, 2, 4, 5), tmp_path)
    assert any(op.kind == "sign" for op in graph.ops) and any(op.kind == "prelu" for op in graph.ops)
    assert xnorinfer.load(tmp_path / "model.xbin", threads=1).input_shapes == [(1, 3, 2, 4, 5)]
