"""A binary nn.Conv1d (a sign, then a conv1d with +-alpha weights per output channel) runs as a
bconv2d (conv1d is a height-1 conv2d: the sign moves after the reshape, conv1d_sign.py), and the
converted model equals eager PyTorch: the binary layer's integer sums exactly, the float head within
float32 rounding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import xnorinfer
from xnorinfer import xbin
from xnorinfer.convert import convert


def _binary_weight(conv: nn.Conv1d, g: torch.Generator) -> None:
    o = conv.weight.shape[0]
    alpha = torch.rand(o, 1, 1, generator=g) + 0.5
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g).sign() * alpha)


def _random_bn(bn: nn.BatchNorm1d, g: torch.Generator) -> None:
    c = bn.num_features
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(c, generator=g))
        bn.running_var.copy_(torch.rand(c, generator=g) + 0.5)
        bn.weight.copy_(torch.randn(c, generator=g))  # some gammas negative
        bn.bias.copy_(torch.randn(c, generator=g))


class BinaryConv1dNet(nn.Module):
    """Float stem conv1d, then two binary conv1d blocks (sign -> conv1d -> BN) and a float linear head."""

    def __init__(self, padding: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.stem = nn.Conv1d(4, 16, 3, padding=1)
        self.bn0 = nn.BatchNorm1d(16)
        self.conv1 = nn.Conv1d(16, 32, 3, padding=padding, bias=False)
        self.bn1 = nn.BatchNorm1d(32)
        self.conv2 = nn.Conv1d(32, 32, 3, stride=2, padding=padding, bias=False)
        self.bn2 = nn.BatchNorm1d(32)
        self.head = nn.Linear(32 * (12 if padding else 10), 5)
        for conv in (self.conv1, self.conv2):
            _binary_weight(conv, g)
        for bn in (self.bn0, self.bn1, self.bn2):
            _random_bn(bn, g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn0(self.stem(x))
        x = self.bn1(self.conv1(torch.sign(x)))
        x = self.bn2(self.conv2(torch.sign(x)))
        return self.head(x.flatten(1))


@pytest.mark.parametrize("padding", [0, 1])
def test_binary_conv1d_runs_as_bconv2d_and_matches_torch(padding: int) -> None:
    model = BinaryConv1dNet(padding).eval()
    x = torch.randn(1, 4, 24 if padding else 23)
    graph = convert(model, (x,), verify=False)
    kinds = [op.kind for op in graph.ops]
    assert kinds.count("bconv2d") == 2, kinds
    assert "bwconv2d" not in kinds
    session = xnorinfer.load(xbin.to_bytes(graph), 1)
    xs = torch.randn(5, *x.shape[1:])
    got = np.asarray(session.run(xs.numpy()))
    with torch.no_grad():
        want = model(xs).numpy()
    scale = max(1.0, float(np.abs(want).max()))
    assert float(np.abs(got - want).max()) <= 1e-4 * scale
