"""Binary-quantizer regularizers: values and gradients against the direct formulas."""

from __future__ import annotations

import math

import pytest
import torch

from xnorinfer.nn import BinaryLinear, BinaryRegularizer, apply_binarization, log_lambda, power_reg, tanh_reg


def _sgn(t):
    return torch.where(t >= 0, 1.0, -1.0).to(t.dtype)


def test_tanh_reg_value_and_gradients():
    torch.manual_seed(0)
    w = (torch.randn(4, 6, dtype=torch.float64) * 0.7).requires_grad_(True)
    with torch.no_grad():
        w[0, 0] = 0.0
    alpha = torch.rand(4, dtype=torch.float64).add(0.2).requires_grad_(True)
    gamma, beta = 0.7, 4.0
    r = tanh_reg(w, alpha, gamma, beta)
    s = _sgn(w.detach())
    u = w.detach() - alpha.detach().view(-1, 1) * s
    ref = gamma * u * torch.tanh(beta * u / 2)
    torch.testing.assert_close(r, ref)
    a0 = float(alpha.detach()[0])
    assert float(r.detach()[0, 0]) == pytest.approx(gamma * -a0 * math.tanh(-beta * a0 / 2))  # sign(0)=+1
    r.sum().backward()
    fprime = gamma * (torch.tanh(beta * u / 2) + (beta * u / 2) / torch.cosh(beta * u / 2) ** 2)
    torch.testing.assert_close(w.grad, fprime)
    torch.testing.assert_close(alpha.grad, (-s * fprime).sum(dim=1))


@pytest.mark.parametrize("p", [1, 1.5, 2])
def test_power_reg_value_and_gradients(p):
    torch.manual_seed(1)
    w = (torch.randn(3, 5, dtype=torch.float64)).requires_grad_(True)
    alpha = torch.tensor([0.3, 0.6, 0.9], dtype=torch.float64, requires_grad=True)
    r = power_reg(w, alpha, p)
    d = w.detach().abs() - alpha.detach().view(-1, 1)
    torch.testing.assert_close(r, d.abs() ** p)
    r.sum().backward()
    # d/dw |d|^p = p |d|^(p-1) sign(d) sign(w);  d/dalpha = -p |d|^(p-1) sign(d)
    core = p * d.abs() ** (p - 1) * torch.sign(d)
    torch.testing.assert_close(w.grad, core * torch.sign(w.detach()))
    torch.testing.assert_close(alpha.grad, -core.sum(dim=1))


def test_log_lambda():
    assert log_lambda(0, 2.0) == 2.0
    assert log_lambda(9, 2.0) == pytest.approx(2.0 * (1 + math.log(10)))
    assert log_lambda(100, 1.0) > log_lambda(10, 1.0) > log_lambda(1, 1.0)
    with pytest.raises(ValueError):
        log_lambda(-1, 1.0)


@pytest.mark.parametrize("kind,kw", [("tanh", dict(gamma=0.5, beta=3.0)), ("power", dict(p=1.5))])
def test_regularizer_module_sums_over_layers(kind, kw):
    torch.manual_seed(2)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 6), BinaryLinear(6, 5), torch.nn.Linear(5, 3), torch.nn.Sequential(BinaryLinear(3, 2))
    )
    reg = BinaryRegularizer(model, kind=kind, **kw)
    assert reg.names == ["1", "3.0"]
    layers = [model[1], model[3][0]]
    for i, m in enumerate(layers):
        torch.testing.assert_close(reg.alpha(i).detach(), m.weight.detach().abs().mean(dim=1))
    f = (lambda w, a: tanh_reg(w, a, **kw)) if kind == "tanh" else (lambda w, a: power_reg(w, a, **kw))
    expected = sum(f(m.weight, reg.alpha(i)).sum() for i, m in enumerate(layers))
    torch.testing.assert_close(reg(), expected)
    torch.testing.assert_close(reg(epoch=3, lambda0=0.1), expected * 0.1 * (1 + math.log(4)))
    reg().backward()
    assert model[0].weight.grad is None and model[1].weight.grad is not None
    assert all(p.grad is not None for p in reg.parameters())


def test_regularizer_pattern_and_apply_binarization():
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 6), torch.nn.Linear(6, 2))
    reg = BinaryRegularizer(model, kind="power", p=2, pattern="2", learn_alpha=False)
    assert reg.names == ["2"] and list(reg.parameters()) == []
    with pytest.raises(ValueError, match="no layer"):
        BinaryRegularizer(model, pattern="nothing*")
    # training with the regularizer alone pulls weights to ±alpha
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        reg().backward()
        opt.step()
    w = model[2].weight.detach()
    torch.testing.assert_close(w.abs(), reg.alpha(0).view(-1, 1).expand_as(w), atol=1e-3, rtol=0)
    apply_binarization(model, "2", reg.alpha_by_name())
    torch.testing.assert_close(model[2].weight.detach(), _sgn(w) * reg.alpha(0).view(-1, 1))
