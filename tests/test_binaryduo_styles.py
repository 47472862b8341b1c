"""BinaryDuo written as its paper writes it: {0, 0.5, 1} (or {0, 1}) activations computed in the forward
pass with round / compares / where (not through xnorinfer.nn), read by ±alpha-weight convs with zero
padding and a ±alpha dense layer. Each style converts with verification on (every binary activation
bit-exact against PyTorch) and its conv / dense layers become binary layers over the decoupled steps
(two shifted signs per channel, -1 padding), then the engine matches eager PyTorch on every ISA path and
two thread counts. Also: `xnn.decouple` of the same model converts to the same binary layers.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from realcode_support import binary_layers, calibrate, convert_verified, run_everywhere

from xnorinfer.nn import BinaryConv2d, BinaryLinear, CoupledTernary, decouple


def _duo_round(x: torch.Tensor) -> torch.Tensor:
    """round(clip(x, 0, 1) * 2) / 2: thresholds 0.25 (exclusive: round(0.5) = 0) and 0.75 (inclusive)."""
    return torch.round(torch.clamp(x, 0, 1) * 2) / 2


def _duo_ge(x: torch.Tensor) -> torch.Tensor:
    """Two {0, 1} steps: 0.5 * (x >= 0.25) + 0.5 * (x >= 0.75)."""
    return 0.5 * (x >= 0.25).float() + 0.5 * (x >= 0.75).float()


def _duo_where(x: torch.Tensor) -> torch.Tensor:
    """Nested where, as the paper's T(x)."""
    return torch.where(x >= 0.75, 1.0, torch.where(x >= 0.25, 0.5, 0.0))


def _binary01(x: torch.Tensor) -> torch.Tensor:
    """The paper's binary {0, 1} activation baseline: (x > 0.5)."""
    return (x > 0.5).float()


STYLES = {"round": _duo_round, "ge": _duo_ge, "where": _duo_where, "zero_one": _binary01}


class PaperDuo(nn.Module):
    """float stem -> BN -> T -> ±alpha 3x3 conv (zero padding) -> BN -> T -> ±alpha 3x3 conv, stride 2
    (zero padding) -> BN -> average pool -> float dense."""

    def __init__(self, act) -> None:
        super().__init__()
        self.act = act
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn0 = nn.BatchNorm2d(8)
        self.conv = nn.Conv2d(8, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 12, 3, stride=2, padding=1, bias=True)
        self.bn2 = nn.BatchNorm2d(12)
        self.fc = nn.Linear(12, 10)
        torch.manual_seed(3)
        with torch.no_grad():  # ±alpha per output channel
            for layer in (self.conv, self.conv2):
                w = layer.weight
                alpha = w.abs().mean(dim=tuple(range(1, w.dim())), keepdim=True)
                w.copy_(torch.where(w < 0, -1.0, 1.0) * alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(self.act(self.bn0(self.stem(x))))
        y = self.bn2(self.conv2(self.act(self.bn1(y))))
        return self.fc(F.adaptive_avg_pool2d(y, 1).flatten(1))


def _shift_bn(model: nn.Module) -> nn.Module:
    """BN outputs centred on [0, 1] so that every level of the activation occurs."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.bias.add_(0.5)
    return model.eval()


def _images(n: int = 24) -> np.ndarray:
    return torch.randn(n, 3, 12, 12, generator=torch.Generator().manual_seed(5)).numpy()


def _convert_and_compare(model: nn.Module, x: np.ndarray, tmp_path, verified: bool):
    """Convert with verification on `x` (a {0, 1} step that PyTorch computes alone, (x > t).float(), is
    compared bit for bit: `verified`; the steps of a sum are not PyTorch values), then the engine on every
    path against eager PyTorch."""
    graph, path = convert_verified(model, x, tmp_path, verified)
    got = run_everywhere(path, x)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(want).max())))
    np.testing.assert_array_equal(got.argmax(1), want.argmax(1))
    return graph


@pytest.mark.parametrize("style", sorted(STYLES))
def test_paper_style_activation_converts_binary(style, tmp_path):
    model = _shift_bn(calibrate(PaperDuo(STYLES[style]), (16, 3, 12, 12), data="randn"))
    x = _images()
    with torch.no_grad():
        levels = set(STYLES[style](model.bn0(model.stem(torch.from_numpy(x)))).unique().tolist())
    assert levels == ({0.0, 1.0} if style == "zero_one" else {0.0, 0.5, 1.0})
    graph = _convert_and_compare(model, x, tmp_path, verified=style == "zero_one")
    assert binary_layers(graph) == {"conv", "conv2"}
    steps = 1 if style == "zero_one" else 2
    convs = [op for op in graph.ops if op.kind == "bconv2d"]
    assert [op.attrs["in_channels"] for op in convs] == [8 * steps, 16 * steps]  # a sign per step and channel
    assert all(op.attrs["pad_mode"] == "minus_one" for op in convs)  # T = 0 is every step at -1
    assert "conv2d" not in [op.kind for op in graph.ops[1:]]


def test_round_ties_go_to_even():
    """x = 0.25 gives round(0.5) = 0 and x = 0.75 gives round(1.5) = 2: the steps' thresholds honour that."""
    from xnorinfer.convert.zero_one_steps import _round_threshold

    assert _round_threshold(2.0, 1) == float(np.nextafter(np.float32(0.25), np.float32(1)))
    assert _round_threshold(2.0, 2) == 0.75
    for n in (1, 2, 3, 5):
        for j in range(1, n + 1):
            t = np.float32(_round_threshold(float(n), j))
            below = np.nextafter(t, np.float32(-1))
            assert np.round(np.float32(n) * t) >= j > np.round(np.float32(n) * below)


@pytest.mark.parametrize("decoupled", [False, True])
def test_xnn_binaryduo_converts_coupled_and_decoupled(tmp_path, decoupled):
    """The xnn model (CoupledTernary into BinaryConv2d / BinaryLinear) as trained, and after xnn.decouple:
    the same binary layers."""
    torch.manual_seed(0)
    coupled = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        BinaryConv2d(8, 16, 3, padding=1, input_quantizer=CoupledTernary()),
        nn.BatchNorm2d(16),
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        BinaryLinear(16, 10, input_quantizer=CoupledTernary()),
    )
    coupled = _shift_bn(calibrate(coupled, (16, 3, 12, 12), data="randn"))
    model = decouple(coupled) if decoupled else coupled
    x = _images()
    graph = _convert_and_compare(model, x, tmp_path, verified=decoupled)
    assert binary_layers(graph) == {"2", "6"}
    (conv,) = [op for op in graph.ops if op.kind == "bconv2d"]
    assert conv.attrs["in_channels"] == 16 and conv.attrs["pad_mode"] == "minus_one"
