"""A grouped conv (groups 2 and 4) on a sign with ±alpha weights per output channel runs as one bconv2d
per group (xnorinfer/convert/grouped_binary.py), and its binary activations equal eager PyTorch's bit
for bit on every ISA path with 1 and 2 threads; a depthwise binary conv stays float with a warning."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from realcode_support import run_everywhere
from torch import nn

from xnorinfer.convert import convert, report


def _binary_weight(conv: nn.Conv2d, g: torch.Generator) -> None:
    alpha = torch.rand(conv.weight.shape[0], 1, 1, 1, generator=g) + 0.5
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g).sign() * alpha)


def _random_bn(bn: nn.BatchNorm2d, g: torch.Generator, spread: float) -> None:
    """Statistics near the conv sums' range (both sign polarities), gamma of both signs (some < 0)."""
    c = bn.num_features
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(c, generator=g) * spread)
        bn.running_var.copy_(torch.rand(c, generator=g) * spread**2 + 0.5)
        bn.weight.copy_(torch.randn(c, generator=g))
        bn.weight[0] = -abs(float(bn.weight[0])) - 0.1  # at least one negative gamma
        bn.bias.copy_(torch.randn(c, generator=g))


class GroupedBinaryNet(nn.Module):
    """sign(x - t) -> grouped binary conv -> BN -> sign [-> a second grouped binary conv -> BN -> sign]."""

    def __init__(self, groups: int, per_group: int, stride: int, padding: int, layers: int, bias: bool) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(groups * 1000 + per_group * 10 + stride + padding)
        c = groups * per_group
        self.shift = nn.Parameter(torch.randn(1, c, 1, 1, generator=g) * 0.2)
        self.convs = nn.ModuleList()
        self.bns = nn.ModuleList()
        for i in range(layers):
            conv = nn.Conv2d(c, c, 3, stride=stride if i == 0 else 1, padding=padding, bias=bias, groups=groups)
            _binary_weight(conv, g)
            bn = nn.BatchNorm2d(c)
            _random_bn(bn, g, spread=float(np.sqrt(9 * per_group)))
            self.convs.append(conv)
            self.bns.append(bn)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.sign(x - self.shift)
        for conv, bn in zip(self.convs, self.bns, strict=True):
            a = torch.sign(bn(conv(a)))
        return a


@pytest.mark.parametrize(
    ("groups", "per_group", "stride", "padding", "layers", "bias"),
    [
        (2, 16, 1, 1, 1, False),
        (4, 16, 2, 1, 1, True),
        (2, 64, 2, 0, 1, False),
        (4, 64, 1, 1, 2, False),
        (2, 96, 1, 1, 2, True),
        (4, 96, 2, 1, 1, False),
    ],
)
def test_grouped_binary_conv_runs_one_bconv2d_per_group(groups, per_group, stride, padding, layers, bias, tmp_path):
    model = GroupedBinaryNet(groups, per_group, stride, padding, layers, bias)
    c = groups * per_group
    example = torch.randn(1, c, 9, 9)
    x = torch.randn(6, c, 9, 9, generator=torch.Generator().manual_seed(7))
    path = tmp_path / "model.xbin"
    graph = convert(model, (example,), output=path, calib=x.numpy())
    kinds = [op.kind for op in graph.ops]
    assert kinds.count("bconv2d") == groups * layers, kinds
    assert "conv2d" not in kinds and "bwconv2d" not in kinds, kinds
    # the first layer's groups read slices of the float input; a second layer reads the first one's groups
    assert kinds.count("slice") == groups and kinds.count("bconcat") == 1, kinds
    assert all(op.attrs.get("output") == "bits" for op in graph.ops if op.kind == "bconv2d"), kinds
    assert not graph.metadata["binary_warnings"], graph.metadata["binary_warnings"]
    grouped = graph.metadata["grouped_binary_layers"]  # the report says which layers were split, and how
    assert len(grouped) == layers and all(f"groups {groups}:" in how for how in grouped.values()), grouped
    assert f"grouped binary: {next(iter(grouped))}: groups {groups}" in report.format_table(graph)
    v = graph.metadata["verification"]
    assert not v["problems"], v["problems"]
    assert v["layers"] and all(layer["mismatches"] == 0 for layer in v["layers"].values()), v["layers"]
    got = run_everywhere(path, x.numpy()).transpose(0, 3, 1, 2)  # (the engine's NHWC as PyTorch's NCHW)
    with torch.no_grad():
        want = model(x).numpy()
    assert np.all(np.abs(want) == 1)  # ±1: no sum sat exactly on a threshold
    assert 0.05 < float(np.mean(want > 0)) < 0.95  # both polarities: the test is not trivially constant
    np.testing.assert_array_equal(got, want)


class PlainThenGroupedNet(nn.Module):
    """sign(x) -> binary conv (groups 1) -> BN -> sign -> grouped binary conv (groups 4) -> BN -> sign."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(5)
        self.conv0 = nn.Conv2d(16, 64, 3, padding=1, bias=False)
        self.conv1 = nn.Conv2d(64, 64, 3, padding=1, bias=False, groups=4)
        self.bn0, self.bn1 = nn.BatchNorm2d(64), nn.BatchNorm2d(64)
        for conv, bn, k in ((self.conv0, self.bn0, 9 * 16), (self.conv1, self.bn1, 9 * 16)):
            _binary_weight(conv, g)
            _random_bn(bn, g, spread=float(np.sqrt(k)))
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.sign(self.bn0(self.conv0(torch.sign(x))))
        return torch.sign(self.bn1(self.conv1(a)))


def test_binary_layer_before_a_grouped_one_keeps_its_threshold_output(tmp_path):
    model = PlainThenGroupedNet()
    x = torch.randn(6, 16, 8, 8, generator=torch.Generator().manual_seed(11))
    path = tmp_path / "model.xbin"
    graph = convert(model, (x[:1],), output=path, calib=x.numpy())
    kinds = [op.kind for op in graph.ops]
    # conv0 split by output channel into the 4 groups conv1 reads: every binary conv outputs bits
    assert kinds.count("bconv2d") == 8 and "slice" not in kinds and "conv2d" not in kinds, kinds
    assert all(op.attrs.get("output") == "bits" for op in graph.ops if op.kind == "bconv2d"), kinds
    v = graph.metadata["verification"]
    assert not v["problems"] and all(layer["mismatches"] == 0 for layer in v["layers"].values()), v
    got = run_everywhere(path, x.numpy()).transpose(0, 3, 1, 2)
    with torch.no_grad():
        want = model(x).numpy()
    assert np.all(np.abs(want) == 1) and 0.05 < float(np.mean(want > 0)) < 0.95
    np.testing.assert_array_equal(got, want)


def test_depthwise_binary_conv_stays_float_with_a_warning(tmp_path):
    model = GroupedBinaryNet(32, 1, 1, 1, 1, False)
    example = torch.randn(1, 32, 8, 8)
    x = torch.randn(4, 32, 8, 8, generator=torch.Generator().manual_seed(3))
    path = tmp_path / "model.xbin"
    graph = convert(model, (example,), output=path, calib=x.numpy())
    kinds = [op.kind for op in graph.ops]
    assert "bconv2d" not in kinds and "conv2d" in kinds, kinds
    (warning,) = graph.metadata["binary_warnings"].values()
    assert "grouped convolution" in warning and "depthwise" in warning and "stays float" in warning, warning
    got = run_everywhere(path, x.numpy()).transpose(0, 3, 1, 2)  # (the engine's NHWC as PyTorch's NCHW)
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_array_equal(got, want)
