"""BinaryDuo: coupled ternary activation, and decouple() computing exactly the same function."""

from __future__ import annotations

import pytest
import torch
from nn_helpers import assert_exports_equal

from xnorinfer.nn import BinaryConv2d, BinaryLinear, CoupledTernary, DecoupledBinaryConv2d, SteSign, decouple


def test_ternary_values_and_gradient():
    x = torch.tensor([-1.0, 0.0, 0.2, 0.25, 0.5, 0.75, 0.9, 1.0, 2.0], dtype=torch.float64, requires_grad=True)
    q = CoupledTernary().train()
    y = q(x)
    assert y.tolist() == [0, 0, 0, 0.5, 0.5, 1, 1, 1, 1]
    y.sum().backward()
    assert x.grad.tolist() == [0, 1, 1, 1, 1, 1, 1, 1, 0]
    assert torch.equal(q.eval()(x.detach()), y.detach())


def _coupled_model(scale):
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.BatchNorm2d(8),
        BinaryConv2d(8, 12, 3, padding=1, bias=True, input_quantizer=CoupledTernary(), weight_scale=scale),
        torch.nn.BatchNorm2d(12),
        BinaryConv2d(12, 6, 3, stride=2, padding=2, dilation=1, input_quantizer=CoupledTernary(), weight_scale=scale),
        torch.nn.Flatten(),
        BinaryLinear(6 * 6 * 6, 10, bias=True, input_quantizer=CoupledTernary(), weight_scale=scale),
    )


@pytest.mark.parametrize("scale", ["none", "mean", "learned"])
def test_decouple_is_exact(scale):
    torch.manual_seed(0)
    model = _coupled_model(scale)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(0, 1)  # put activations around [0, 1] so all three levels occur
    model.eval()
    dec = decouple(model)
    assert not any(isinstance(m, CoupledTernary) for m in dec.modules())
    assert isinstance(dec[2], DecoupledBinaryConv2d)
    assert dec[2].weight.shape == (12, 16, 3, 3)  # doubled input channels
    assert set(dec[2].weight.unique().tolist()) == {-1.0, 1.0}
    assert any(isinstance(m, CoupledTernary) for m in model.modules())  # original untouched
    levels = set()
    for seed in range(5):
        x = torch.randn(4, 3, 9, 9, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            levels |= set(model[2].input_quantizer(model[1](model[0](x))).unique().tolist())
            assert torch.equal(model(x), dec(x))
    assert levels == {0.0, 0.5, 1.0}
    assert_exports_equal(dec, torch.randn(2, 3, 9, 9))


def test_decouple_single_layer_and_errors():
    torch.manual_seed(0)
    lin = BinaryLinear(5, 3, input_quantizer=CoupledTernary(0.3, 0.6))
    dec = decouple(lin)
    x = torch.rand(100, 5) * 1.4 - 0.2
    x[0, 0] = 0.3  # exactly on a threshold
    with torch.no_grad():
        assert torch.equal(lin.eval()(x), dec(x))
    bad = torch.nn.Sequential(CoupledTernary(), BinaryLinear(4, 2, input_quantizer=SteSign()))
    with pytest.raises(ValueError, match="CoupledTernary"):
        decouple(bad)
    with pytest.raises(ValueError):
        CoupledTernary(0.8, 0.2)
