"""The capture pass alone: tiny torch.export programs -> the converter's graph (convert/capture.py).

Each test exports a small module, runs `capture.to_model` and checks the nodes, their typed payloads
and the folded constants against values taken from the module itself.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from xnorinfer.convert import capture  # noqa: E402
from xnorinfer.convert.attrs import (  # noqa: E402
    AvgPoolAttrs,
    BatchNormAttrs,
    ConvAttrs,
    HardtanhAttrs,
    LinearAttrs,
    NoAttrs,
    PoolAttrs,
)
from xnorinfer.convert.graph import ConversionError, Model  # noqa: E402


def captured(module: nn.Module, *shape: int) -> Model:
    torch.manual_seed(0)
    return capture.to_model(capture.decompose(capture.export(module.eval(), (torch.randn(*shape),))))


def ops(model: Model) -> list[str]:
    return [n.op for n in model.nodes]


class ConvBNReLU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(4, eps=1e-3)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-1, 1)
            self.bn.running_var.uniform_(0.5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def test_conv_batchnorm_relu():
    module = ConvBNReLU()
    model = captured(module, 2, 3, 8, 8)
    assert ops(model) == ["conv2d", "batch_norm", "relu"]
    conv, bn, relu = model.nodes
    assert conv.attrs == ConvAttrs(stride=(2, 2), padding=(1, 1), weight_param="conv.weight")
    assert conv.path == "conv" and "conv" in conv.where
    np.testing.assert_array_equal(model.const(conv.inputs[1]), module.conv.weight.detach().double().numpy())
    np.testing.assert_array_equal(model.const(conv.inputs[2]), module.conv.bias.detach().double().numpy())
    assert bn.inputs[0] == conv.output and bn.attrs == BatchNormAttrs(eps=1e-3)
    np.testing.assert_array_equal(model.const(bn.inputs[3]), module.bn.running_mean.double().numpy())
    np.testing.assert_array_equal(model.const(bn.inputs[4]), module.bn.running_var.double().numpy())
    assert relu.inputs == [bn.output] and isinstance(relu.attrs, NoAttrs)
    assert model.outputs == [relu.output]
    assert model.shapes[conv.output] == (2, 4, 4, 4)
    assert model.metadata["input_shape"] == [2, 3, 8, 8]


class ScaledSignLinear(nn.Module):
    """XNOR-Net style: the effective weight sign(W) * mean|W| is computed from the parameter in forward."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.fc.weight
        return F.linear(x, torch.sign(w) * w.abs().mean(dim=1, keepdim=True), self.fc.bias)


def test_parameter_only_computation_is_folded_into_the_linear_weight():
    module = ScaledSignLinear()
    model = captured(module, 3, 6)
    assert ops(model) == ["linear"]  # no sign / abs / mean node: all of it depends on the parameter only
    (fc,) = model.nodes
    assert isinstance(fc.attrs, LinearAttrs)
    w = module.fc.weight.detach()
    want = (torch.sign(w) * w.abs().mean(dim=1, keepdim=True)).double().numpy()
    np.testing.assert_allclose(model.const(fc.inputs[1]), want, rtol=0, atol=1e-7)  # (out, in), as nn.Linear
    np.testing.assert_array_equal(model.const(fc.inputs[2]), module.fc.bias.detach().double().numpy())


def test_plain_linear_keeps_the_parameter_name():
    model = captured(nn.Sequential(nn.Flatten(), nn.Linear(12, 3, bias=False)), 2, 3, 2, 2)
    assert ops(model) == ["reshape", "linear"]
    assert model.nodes[1].attrs == LinearAttrs(weight_param="1.weight")
    assert model.shapes[model.nodes[0].output] == (2, 12)


class Pools(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.max_pool2d(x, 2)
        b = F.avg_pool2d(a, 3, stride=1, padding=1, count_include_pad=False)
        return F.adaptive_avg_pool2d(b, 1)


def test_pools():
    model = captured(Pools(), 1, 2, 8, 8)
    assert ops(model) == ["maxpool2d", "avgpool2d", "global_avgpool"]
    assert model.nodes[0].attrs == PoolAttrs(kernel=(2, 2), stride=(2, 2), padding=(0, 0))
    assert model.nodes[1].attrs == AvgPoolAttrs(kernel=(3, 3), stride=(1, 1), padding=(1, 1), count_include_pad=False)


class Clamps(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(F.hardtanh(x), min=-0.5, max=2.0)


def test_hardtanh_and_clamp_bounds():
    model = captured(Clamps(), 1, 4)
    assert ops(model) == ["hardtanh", "hardtanh"]
    assert [n.attrs for n in model.nodes] == [HardtanhAttrs(-1.0, 1.0), HardtanhAttrs(-0.5, 2.0)]


class WhereSign(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(F.dropout(x, training=False).clone() >= 0.25, 1.0, -1.0)


def test_identities_vanish_and_a_comparison_stays_a_comparison():
    model = captured(WhereSign(), 2, 3)
    assert ops(model) == ["ge", "where"]  # dropout / clone are the identity
    ge, where = model.nodes
    assert ge.inputs[0] == model.inputs[0] and model.const(ge.inputs[1]) == pytest.approx(0.25)
    assert where.inputs[0] == ge.output
    assert {float(model.const(v).reshape(-1)[0]) for v in where.inputs[1:]} == {1.0, -1.0}


class Cummax(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.logcumsumexp(x, 1)


def test_an_unsupported_op_names_itself_and_the_nearest_pattern():
    with pytest.raises(ConversionError, match=r"aten\.logcumsumexp.*none \(no scans"):
        captured(Cummax(), 1, 4)


class GroupedConv(nn.Module):
    def __init__(self, groups: int = 2, dilation: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, groups=groups, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_grouped_conv_keeps_its_groups():
    (node,) = captured(GroupedConv(), 1, 4, 6, 6).nodes
    assert node.op == "conv2d" and node.attrs_as(ConvAttrs).groups == 2


def test_dilated_conv_keeps_its_dilation():
    (node,) = captured(GroupedConv(groups=1, dilation=2), 1, 4, 8, 8).nodes
    assert node.op == "conv2d" and node.attrs_as(ConvAttrs).dilation == (2, 2)


class TwoInputs(nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x + y


def test_every_input_is_captured():
    ep = capture.decompose(capture.export(TwoInputs(), (torch.randn(1, 2), torch.randn(1, 3, 2))))
    model = capture.to_model(ep)
    assert model.inputs == ["x", "y"]  # forward's arguments, in order
    assert model.metadata["input_shapes"] == [[1, 2], [1, 3, 2]]
