"""Reference BNN architectures trained by tools/train.py, built from xnorinfer.nn layers.

Each layer order is one the converter folds exactly: a binary conv/linear, then BatchNorm,
then (optionally) max-pooling, then the next layer's sign. `width` scales channel counts so
that the larger models train on a 2-core CPU in reasonable time.

A trained model in models/ is rebuilt with `load_reference(folder)`, or from the command line
with `xnorinfer convert --module 'xnorinfer.zoo:vgg_small(width=0.5)' --weights
models/vgg-cifar10/state_dict.pth ...` (models/README.md lists the command for each one).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xnorinfer.nn import ApproxSign, BinaryConv2d, BinaryLinear, IdentitySign, RPReLU, RSign, SteSign
from xnorinfer.nn.abcnet import ABCConv2d, ABCLinear
from xnorinfer.nn.dorefa import DoReFaAct
from xnorinfer.nn.ternary import TernaryConv2d, TernaryLinear
from xnorinfer.nn.xnornet import XnorConv2d


def lfc(width: float = 1.0, in_shape=(1, 28, 28), classes: int = 10) -> nn.Module:
    """FINN's LFC: 784-1024-1024-1024-10, binary weights and activations, BN before each sign."""
    hidden = max(64, int(1024 * width))
    features = in_shape[0] * in_shape[1] * in_shape[2]
    return nn.Sequential(
        nn.Flatten(),
        BinaryLinear(features, hidden, input_quantizer=SteSign()),
        nn.BatchNorm1d(hidden),
        BinaryLinear(hidden, hidden, input_quantizer=SteSign()),
        nn.BatchNorm1d(hidden),
        BinaryLinear(hidden, hidden, input_quantizer=SteSign()),
        nn.BatchNorm1d(hidden),
        BinaryLinear(hidden, classes, input_quantizer=SteSign()),
        nn.BatchNorm1d(classes),
    )


def bnn_cnn(width: float = 1.0, in_shape=(1, 28, 28), classes: int = 10) -> nn.Module:
    """A BinaryNet-style CNN for 28x28 inputs: float first conv, binary 3x3 convs, binary dense."""
    c1, c2, fc = int(64 * width), int(128 * width), int(512 * width)
    side = in_shape[1] // 4
    return nn.Sequential(
        nn.Conv2d(in_shape[0], c1, 3, padding=1, bias=False),
        nn.BatchNorm2d(c1),
        BinaryConv2d(c1, c1, 3, padding=1, input_quantizer=SteSign()),
        nn.BatchNorm2d(c1),
        nn.MaxPool2d(2),
        BinaryConv2d(c1, c2, 3, padding=1, input_quantizer=SteSign()),
        nn.BatchNorm2d(c2),
        BinaryConv2d(c2, c2, 3, padding=1, input_quantizer=SteSign()),
        nn.BatchNorm2d(c2),
        nn.MaxPool2d(2),
        nn.Flatten(),
        BinaryLinear(c2 * side * side, fc, input_quantizer=SteSign()),
        nn.BatchNorm1d(fc),
        BinaryLinear(fc, classes, input_quantizer=SteSign()),
        nn.BatchNorm1d(classes),
    )


def vgg_small(width: float = 1.0, in_shape=(3, 32, 32), classes: int = 10) -> nn.Module:
    """BinaryNet's CIFAR-10 VGG: 128C3-128C3-MP-256C3-256C3-MP-512C3-512C3-MP-1024FC-1024FC-10FC.

    The first conv sees the float image (binary weights by value are allowed there but it stays a
    float conv in the engine); the other five convs and the dense layers are binary.
    """
    a, b, c, fc = int(128 * width), int(256 * width), int(512 * width), int(1024 * width)

    def block(cin: int, cout: int, pool: bool) -> list[nn.Module]:
        layers: list[nn.Module] = [
            BinaryConv2d(cin, cout, 3, padding=1, input_quantizer=SteSign()),
            nn.BatchNorm2d(cout),
        ]
        return layers + ([nn.MaxPool2d(2)] if pool else [])

    side = in_shape[1] // 8
    return nn.Sequential(
        nn.Conv2d(in_shape[0], a, 3, padding=1, bias=False),
        nn.BatchNorm2d(a),
        *block(a, a, True),
        *block(a, b, False),
        *block(b, b, True),
        *block(b, c, False),
        *block(c, c, True),
        nn.Flatten(),
        BinaryLinear(c * side * side, fc, input_quantizer=SteSign()),
        nn.BatchNorm1d(fc),
        BinaryLinear(fc, fc, input_quantizer=SteSign()),
        nn.BatchNorm1d(fc),
        BinaryLinear(fc, classes, input_quantizer=SteSign()),
        nn.BatchNorm1d(classes),
    )


class ReActBlock(nn.Module):
    """Bi-Real/ReActNet basic block: RSign -> binary 3x3 conv -> BN -> + shortcut -> RPReLU."""

    def __init__(self, channels: int):
        super().__init__()
        self.sign = RSign(channels, ApproxSign())
        self.conv = BinaryConv2d(channels, channels, 3, padding=1, input_quantizer=None, weight_scale="mean")
        self.bn = nn.BatchNorm2d(channels)
        self.act = RPReLU(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(self.sign(x))) + x)


def reactnet_small(width: float = 1.0, in_shape=(1, 28, 28), classes: int = 10) -> nn.Module:
    """A small ReActNet-style residual BNN: real-valued shortcuts, RSign, RPReLU, XNOR-Net alpha."""
    c = int(64 * width)
    return nn.Sequential(
        nn.Conv2d(in_shape[0], c, 3, padding=1, bias=False),
        nn.BatchNorm2d(c),
        ReActBlock(c),
        ReActBlock(c),
        nn.MaxPool2d(2),
        ReActBlock(c),
        ReActBlock(c),
        nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(c, classes),
    )


def lfc_identity_ste(width: float = 1.0, in_shape=(1, 28, 28), classes: int = 10) -> nn.Module:
    """LFC with the plain identity STE (used for the Bop-trained reference)."""
    model = lfc(width, in_shape, classes)
    for m in model.modules():
        if isinstance(m, BinaryLinear):
            m.input_quantizer = IdentitySign()
    return model


def mlp_regularized(width: float = 1.0, in_shape=(1, 28, 28), classes: int = 10) -> nn.Module:
    """LFC-shaped MLP with sign activations but plain float nn.Linear weights.

    Trained with a binary regularizer that pulls each weight towards +-alpha, then converted with
    `--binarize 'linear*'` (the converter binarizes those layers and reports the quantization error).
    """
    hidden = max(64, int(1024 * width))
    features = in_shape[0] * in_shape[1] * in_shape[2]
    model = nn.Sequential()
    model.add_module("flatten", nn.Flatten())
    dims = [features, hidden, hidden, hidden, classes]
    for i in range(4):
        model.add_module(f"sign{i}", SteSign())
        model.add_module(f"linear{i}", nn.Linear(dims[i], dims[i + 1], bias=False))
        model.add_module(f"bn{i}", nn.BatchNorm1d(dims[i + 1]))
    return model


def bwn_cnn(width: float = 1.0, in_shape=(1, 28, 28), classes: int = 10) -> nn.Module:
    """XNOR-Net's binary-weight network (BWN): sign(W) * mean|W| weights in every conv and linear, float
    activations (BatchNorm, ReLU, max-pool); converts to bwconv2d / bwlinear."""
    c1, c2 = int(32 * width), int(64 * width)
    side = in_shape[1] // 4
    return nn.Sequential(
        BinaryConv2d(in_shape[0], c1, 3, padding=1, input_quantizer=None, weight_scale="mean"),
        nn.BatchNorm2d(c1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        BinaryConv2d(c1, c2, 3, padding=1, input_quantizer=None, weight_scale="mean"),
        nn.BatchNorm2d(c2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        BinaryLinear(c2 * side * side, classes, input_quantizer=None, weight_scale="mean"),
        nn.BatchNorm1d(classes),
    )


def ttq_cnn(width: float = 1.0, in_shape=(1, 28, 28), classes: int = 10) -> nn.Module:
    """The bwn_cnn layout with trained ternary weights (TTQ: {-Wn, 0, +Wp} per layer, threshold 0.05 max|W|)."""
    c1, c2 = int(32 * width), int(64 * width)
    side = in_shape[1] // 4
    return nn.Sequential(
        TernaryConv2d(in_shape[0], c1, 3, padding=1),
        nn.BatchNorm2d(c1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        TernaryConv2d(c1, c2, 3, padding=1),
        nn.BatchNorm2d(c2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        TernaryLinear(c2 * side * side, classes),
        nn.BatchNorm1d(classes),
    )


def xnornet_cnn(width: float = 1.0, in_shape=(1, 28, 28), classes: int = 10) -> nn.Module:
    """XNOR-Net with the beta map K and mean-alpha (xnorinfer.nn XnorConv2d): float stem conv, then two
    blocks BN -> XnorConv2d 3x3 (sign(x) conv sign(W) * K * alpha) -> ReLU -> max-pool, BN, float dense."""
    c1, c2 = int(64 * width), int(128 * width)
    side = in_shape[1] // 4
    return nn.Sequential(
        nn.Conv2d(in_shape[0], c1, 3, padding=1, bias=False),
        nn.BatchNorm2d(c1),
        XnorConv2d(c1, c1, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.BatchNorm2d(c1),
        XnorConv2d(c1, c2, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.BatchNorm2d(c2),
        nn.Flatten(),
        nn.Linear(c2 * side * side, classes),
    )


def abcnet_cnn(width: float = 1.0, in_shape=(1, 28, 28), classes: int = 10) -> nn.Module:
    """ABC-Net (M = 3 weight bases, N = 3 activation bases, merged form): float stem conv + BN, two 3x3
    ABC convs (BN, max-pool after each) and an ABC dense layer + BN; converts to M x N binary layers each."""
    c1, c2 = int(64 * width), int(128 * width)
    side = in_shape[1] // 4
    return nn.Sequential(
        nn.Conv2d(in_shape[0], c1, 3, padding=1, bias=False),
        nn.BatchNorm2d(c1),
        ABCConv2d(c1, c1, 3, padding=1, weight_bases=3, activation_bases=3),
        nn.BatchNorm2d(c1),
        nn.MaxPool2d(2),
        ABCConv2d(c1, c2, 3, padding=1, weight_bases=3, activation_bases=3),
        nn.BatchNorm2d(c2),
        nn.MaxPool2d(2),
        nn.Flatten(),
        ABCLinear(c2 * side * side, classes, weight_bases=3, activation_bases=3),
        nn.BatchNorm1d(classes),
    )


def binaryduo_cnn(width: float = 1.0, in_shape=(1, 28, 28), classes: int = 10, decoupled: bool = False) -> nn.Module:
    """BinaryDuo (Kim et al., ICLR 2020) on the bnn_cnn layout: every binary layer's input is the coupled
    ternary activation {0, 0.5, 1} (xnorinfer.nn.CoupledTernary), zero-padded 3x3 binary convs.

    Trained coupled (``decoupled=False``). With ``decoupled=True`` the model is the same coupled
    architecture that replaces itself with ``xnorinfer.nn.decouple(model)`` (two shifted signs, doubled
    binary weights, -1 padding) as soon as a state_dict is loaded into it, so the trained coupled
    weights convert with one command: ``xnorinfer convert --module
    'xnorinfer.zoo:binaryduo_cnn(width=0.5, decoupled=True)' --weights models/binaryduo-fmnist/...``.
    """
    from xnorinfer.nn.binaryduo import CoupledTernary, decouple

    c1, c2, fc = int(64 * width), int(128 * width), int(256 * width)
    side = in_shape[1] // 4
    model = nn.Sequential(
        nn.Conv2d(in_shape[0], c1, 3, padding=1, bias=False),
        nn.BatchNorm2d(c1),
        BinaryConv2d(c1, c1, 3, padding=1, input_quantizer=CoupledTernary()),
        nn.BatchNorm2d(c1),
        nn.MaxPool2d(2),
        BinaryConv2d(c1, c2, 3, padding=1, input_quantizer=CoupledTernary()),
        nn.BatchNorm2d(c2),
        nn.MaxPool2d(2),
        BinaryConv2d(c2, fc, side, input_quantizer=CoupledTernary()),  # the dense layer, as a conv
        nn.BatchNorm2d(fc),
        nn.Flatten(),
        BinaryLinear(fc, classes, input_quantizer=CoupledTernary()),
        nn.BatchNorm1d(classes),
    )
    if decoupled:

        def _decouple_after_load(module: nn.Module, _incompatible: Any) -> None:
            decouple(module, inplace=True)

        model.register_load_state_dict_post_hook(_decouple_after_load)
    return model


def dorefa_cnn(width: float = 1.0, in_shape=(1, 28, 28), classes: int = 10) -> nn.Module:
    """DoReFa-Net W1A2: a float first conv, four 3x3 convs with sign(W) * mean|W| weights reading 2-bit
    activations round(clamp(x, 0, 1) * 3) / 3 (two of them strided instead of max-pools), a W1A2 linear
    and a float classifier; converts to bit-serial bconv2d / blinear on the activations' bit-planes."""
    c1, c2, hidden = int(32 * width), int(64 * width), int(128 * width)
    side = (in_shape[1] + 3) // 4

    def w1a2(cin: int, cout: int, stride: int) -> list[nn.Module]:
        conv = BinaryConv2d(cin, cout, 3, stride, 1, input_quantizer=None, weight_scale="mean")
        return [conv, nn.BatchNorm2d(cout), DoReFaAct(2)]

    return nn.Sequential(
        nn.Conv2d(in_shape[0], c1, 3, padding=1, bias=False),
        nn.BatchNorm2d(c1),
        DoReFaAct(2),
        *w1a2(c1, c1, 1),
        *w1a2(c1, c2, 2),
        *w1a2(c2, c2, 1),
        *w1a2(c2, c2, 2),
        nn.Flatten(),
        BinaryLinear(c2 * side * side, hidden, input_quantizer=None, weight_scale="mean"),
        nn.BatchNorm1d(hidden),
        DoReFaAct(2),
        nn.Linear(hidden, classes),
    )


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "lfc": lfc,
    "lfc-identity": lfc_identity_ste,
    "bnn-cnn": bnn_cnn,
    "vgg-small": vgg_small,
    "reactnet-small": reactnet_small,
    "mlp-regularized": mlp_regularized,
    "bwn-cnn": bwn_cnn,
    "ttq-cnn": ttq_cnn,
    "abcnet-cnn": abcnet_cnn,
    "xnornet-cnn": xnornet_cnn,
    "binaryduo-cnn": binaryduo_cnn,
    "dorefa-cnn": dorefa_cnn,
}


def load_reference(folder: Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a trained reference model (tools/train.py's `metrics.json` + `state_dict.pth`) in eval mode."""
    folder = Path(folder)
    metrics = json.loads((folder / "metrics.json").read_text())
    shape = metrics["input_shape"]
    module = ARCHITECTURES[metrics["arch"]](metrics["width"], tuple(shape[1:]), len(metrics["labels"]))
    module.load_state_dict(torch.load(folder / "state_dict.pth", map_location="cpu", weights_only=True))
    return module.eval(), metrics
