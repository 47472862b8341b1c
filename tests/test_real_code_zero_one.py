"""torch.sign of a non-negative tensor is a {0, 1} activation (issue 12: torch.sign's 0 honoured).

`torch.sign(F.relu(bn(x)))` (the `bnn` library's ReLU-activated binary ResNet), sign of a clamp(min=0) /
hardtanh(0, a) / abs / sigmoid / max-pool of a ReLU output: two levels {0, 1}. The converter writes them
x = (1 + s) / 2 with s = ±1 (bit -1 where x <= 0) and folds the 1/2 and the per-channel constant
alpha * sum_k W / 2 into the binary layer's epilogue; zero padding of x is padding s with -1 (pad_mode
"minus_one"). Each model is converted with verification on (the {0, 1} activations compared bit for
bit: a 0 of torch is the -1 level, no tie), then run by the engine on every ISA path and two thread
counts against eager PyTorch; the layers reading {0, 1} activations must be binary.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from realcode_support import (
    binary_layers,
    calibrate,
    cifar_test_images,
    convert_and_compare,
    load_fixture,
)

from xnorinfer.convert import convert
from xnorinfer.convert.report import format_table

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def cifar_images() -> np.ndarray:
    return cifar_test_images()


def test_bnn_lib_resnet_converts_as_written(cifar_images, tmp_path):
    """The `bnn` library's `input.sign()` of ReLU / avg-pooled ReLU outputs, unchanged."""
    m = load_fixture("bnn_lib_resnet")
    model = m.make()
    with torch.no_grad():  # the {0, 1} activations really have zeros (about half of them)
        relu_out = F.relu(model.bn1(model.conv1(torch.from_numpy(cifar_images))))
    assert 0.2 < float((relu_out == 0).float().mean()) < 0.8
    graph = convert_and_compare(model, m.example_input(), cifar_images, tmp_path)
    convs = {name for name, mod in model.named_modules() if isinstance(mod, m.Conv2d)}
    assert binary_layers(graph) == convs and len(convs) == 11
    assert graph.metadata["zero_one_signs"]
    assert "{0, 1}" in str(graph.metadata["sign_ops"])
    assert "looks meant to be binary" not in format_table(graph)


class ZeroOneBlock(nn.Module):
    """conv(sign(act(bn(x)))) for a non-negative `act`, then a binary conv / linear head on {0, 1}."""

    def __init__(self, act: str, padding: int = 1, alpha: bool = True) -> None:
        super().__init__()
        self.act, self.out = act, 4 if padding else 3
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn0 = nn.BatchNorm2d(8)
        self.conv = nn.Conv2d(8, 16, 3, padding=padding, bias=True)
        self.bn1 = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16 * self.out * self.out, 10)
        torch.manual_seed(3)
        with torch.no_grad():  # ±alpha per output channel (XNOR-Net style) or ±1
            for layer in (self.conv, self.fc):
                w = layer.weight
                scale = w.abs().mean(dim=tuple(range(1, w.dim())), keepdim=True) if alpha else 1.0
                w.copy_(torch.where(w < 0, -1.0, 1.0) * scale)

    def nonneg(self, y: torch.Tensor) -> torch.Tensor:
        if self.act == "relu":
            return F.relu(y)
        if self.act == "clamp":
            return torch.clamp(y, min=0)
        if self.act == "hardtanh01":
            return F.hardtanh(y, 0.0, 1.0)
        if self.act == "abs":
            return torch.abs(y)
        if self.act == "relu_maxpool":
            return F.max_pool2d(F.relu(y), 2)
        raise AssertionError(self.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.sign(self.nonneg(self.bn0(self.stem(x))))
        y = self.bn1(self.conv(y))
        y = torch.sign(F.relu(y))  # {0, 1} into the head: max-pool, flatten, binary linear
        y = F.max_pool2d(y, y.shape[-1] // self.out)
        return self.fc(torch.flatten(y, 1))


@pytest.mark.parametrize("act", ["relu", "clamp", "hardtanh01", "abs", "relu_maxpool"])
def test_sign_of_non_negative_is_a_binary_layer_input(act, cifar_images, tmp_path):
    model = calibrate(ZeroOneBlock(act), (16, 3, 32, 32), data="randn")
    graph = convert_and_compare(model, torch.randn(1, 3, 32, 32), cifar_images, tmp_path)
    assert binary_layers(graph) == {"conv", "fc"}
    (conv,) = [op for op in graph.ops if op.kind == "bconv2d"]
    assert conv.attrs["pad_mode"] == "minus_one"  # zero padding of {0, 1} is -1 padding of ±1
    assert set(graph.metadata["sign_ops"]) >= {"conv"}


def test_unpadded_zero_one_conv_and_plus_minus_one_weights(cifar_images, tmp_path):
    model = calibrate(ZeroOneBlock("relu", padding=0, alpha=False), (16, 3, 32, 32))
    graph = convert_and_compare(model, torch.randn(1, 3, 32, 32), cifar_images, tmp_path)
    assert binary_layers(graph) == {"conv", "fc"}


class ZeroOneMask(nn.Module):
    """A {0, 1} activation read by float ops (a mask, an average): unpacked as (1 + s) / 2, exact."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.fc = nn.Linear(6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        m = torch.sign(F.relu(y))
        return self.fc((y * m + m).mean((2, 3)))


def test_zero_one_activation_read_by_float_ops(cifar_images, tmp_path):
    torch.manual_seed(0)
    graph = convert_and_compare(ZeroOneMask().eval(), torch.randn(1, 3, 32, 32), cifar_images, tmp_path)
    assert "sign" in [op.kind for op in graph.ops]


def test_sign_of_a_signed_tensor_keeps_torch_sign_zero():
    """Not provably non-negative: torch.sign stays a ±1 sign with sign(0) counted as a tie (as before)."""

    class Plain(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sign(self.conv(x)).mean((2, 3))

    torch.manual_seed(0)
    graph = convert(Plain().eval(), (torch.randn(1, 3, 8, 8),), verify=False)
    assert not graph.metadata["zero_one_signs"]
    assert graph.metadata["sign_zero"] != "sign(0) = -1"


def test_dorefa_w1a1_sign_of_clamped_relu_is_binary(cifar_images, tmp_path):
    """DoReFa's 1-bit activation: torch.sign(clamp(relu(bn(x)), 0, 1)), a {0, 1} activation; W1: sign(W/E)*E."""
    m = load_fixture("dorefa_resnet20")
    net = m.make(wbits=1, abits=1)
    model = nn.Sequential(net.conv0, *net.layers, net.bn, nn.AdaptiveAvgPool2d(1), nn.Flatten(), net.logit).eval()
    graph = convert_and_compare(model, torch.from_numpy(cifar_images[:1]), cifar_images, tmp_path)
    quantized = {name for name, mod in model.named_modules() if type(mod).__name__ == "Conv2d_Q"}
    assert len(quantized) >= 6 and binary_layers(graph) == quantized
    assert graph.metadata["zero_one_signs"]
