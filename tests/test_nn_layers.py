"""BinaryConv2d / BinaryLinear: effective weights, scales, clipping, export."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from nn_helpers import assert_exports_equal

from xnorinfer.nn import (
    ApproxSign,
    BinaryConv2d,
    BinaryLinear,
    RPReLU,
    RSign,
    binarize_latent_weights_,
    binary_layers,
    clip_latent_weights,
    register_clip_hook,
)


def _sgn(t):
    return torch.where(t >= 0, 1.0, -1.0).to(t.dtype)


@pytest.mark.parametrize("scale", ["none", "mean", "learned"])
def test_conv_effective_weight_and_forward(scale):
    torch.manual_seed(0)
    layer = BinaryConv2d(3, 5, 3, stride=1, padding=1, bias=True, weight_scale=scale).double()
    with torch.no_grad():
        layer.weight[0, 0, 0, 0] = 0.0  # sign(0) = +1
        layer.bias.uniform_(-1, 1)
        if scale == "learned":
            layer.binarizer.alpha.copy_(torch.tensor([0.125, 0.25, 0.375, 0.5, 0.625]))
    w = layer.weight.detach()
    if scale == "none":
        alpha = torch.ones(5, dtype=torch.float64)
    elif scale == "mean":
        alpha = w.abs().mean(dim=(1, 2, 3))
    else:
        alpha = torch.tensor([0.125, 0.25, 0.375, 0.5, 0.625], dtype=torch.float64)
    eff = layer.effective_weight().detach()
    torch.testing.assert_close(eff, _sgn(w) * alpha.view(-1, 1, 1, 1))
    assert eff[0, 0, 0, 0] == alpha[0]
    assert set(_sgn(w).unique().tolist()) <= {-1.0, 1.0}
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    for mode in (layer.train(), layer.eval()):
        y = mode(x)
        torch.testing.assert_close(y, F.conv2d(_sgn(x), eff, layer.bias, 1, 1))


def test_learned_alpha_init_is_mean_abs():
    torch.manual_seed(0)
    layer = BinaryLinear(7, 4, weight_scale="learned")
    torch.testing.assert_close(layer.binarizer.alpha.detach(), layer.weight.detach().abs().mean(dim=1))


@pytest.mark.parametrize("detach", [False, True])
def test_mean_scale_gradient(detach):
    torch.manual_seed(0)
    layer = BinaryLinear(6, 3, weight_scale="mean", detach_scale=detach, input_quantizer=None).double()
    x = torch.randn(4, 6, dtype=torch.float64)
    layer(x).sum().backward()
    w = layer.weight.detach()
    gy = torch.ones(4, 3, dtype=torch.float64)
    a = w.abs().mean(dim=1)
    # y = a_o * (x @ sign(W)^T)_o ; dsign/dW := 1 (|W| <= 1), da/dW = sign(W)/n
    g_sign = a.view(-1, 1) * (gy.T @ x)
    expected = g_sign.clone()
    if not detach:
        s = gy.T @ (x @ _sgn(w).T)  # (3, 3): only the diagonal, sum_n gy[n,o] * s[n,o]
        expected += torch.diagonal(s).view(-1, 1) * _sgn(w) / w.shape[1]
    torch.testing.assert_close(layer.weight.grad, expected)


def test_float_input_and_custom_quantizer():
    layer = BinaryLinear(4, 2, input_quantizer=None)
    assert layer.input_quantizer is None
    x = torch.randn(3, 4)
    torch.testing.assert_close(layer(x), x @ _sgn(layer.weight).T)
    layer2 = BinaryConv2d(4, 2, 1, input_quantizer=RSign(4))
    assert isinstance(layer2.input_quantizer, RSign)
    assert isinstance(layer2.input_quantizer.quantizer, ApproxSign)
    a, b = BinaryLinear(2, 2), BinaryLinear(2, 2)
    assert a.input_quantizer is not b.input_quantizer  # a fresh default quantizer per layer


def test_clipping_and_hook():
    torch.manual_seed(0)
    model = torch.nn.Sequential(BinaryLinear(4, 4), torch.nn.Linear(4, 4), BinaryConv2d(2, 2, 1))
    float_before = model[1].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.mul_(10)
        model[1].weight.mul_(10)
        model[2].weight.mul_(10)
    clip_latent_weights(model)
    for _, m in binary_layers(model):
        assert m.weight.abs().max() <= 1.0
    torch.testing.assert_close(model[1].weight.detach(), float_before * 10)  # float layer untouched

    opt = torch.optim.SGD(model.parameters(), lr=100.0)
    handle = register_clip_hook(opt, model)
    model[0](torch.randn(3, 4)).pow(2).sum().backward()
    opt.step()
    assert model[0].weight.abs().max() <= 1.0
    assert model[0].weight.abs().max() == 1.0  # the huge step did hit the bound
    handle.remove()


def test_binarize_latent_weights():
    layer = BinaryLinear(8, 3)
    w = layer.weight.detach().clone()
    binarize_latent_weights_(layer)
    assert torch.equal(layer.weight.detach(), _sgn(w))


@pytest.mark.parametrize("scale", ["none", "mean", "learned"])
def test_layers_export(scale):
    torch.manual_seed(0)
    conv = BinaryConv2d(3, 8, 3, 2, 1, bias=True, weight_scale=scale)
    assert_exports_equal(conv, torch.randn(2, 3, 9, 9))
    lin = BinaryLinear(16, 5, bias=True, weight_scale=scale, input_quantizer=RSign(16))
    assert_exports_equal(lin, torch.randn(4, 16))


def test_small_bnn_exports():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1, bias=False),
        torch.nn.BatchNorm2d(16),
        BinaryConv2d(16, 16, 3, padding=1, weight_scale="mean"),
        torch.nn.BatchNorm2d(16),
        RPReLU(16),
        BinaryConv2d(16, 32, 3, stride=2, padding=1, input_quantizer=RSign(16)),
        torch.nn.BatchNorm2d(32),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(32, 10),
    )
    model(torch.randn(4, 3, 8, 8))  # populate BN running stats in train mode
    assert_exports_equal(model, torch.randn(2, 3, 8, 8))
