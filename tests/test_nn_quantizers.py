"""Activation quantizers: forward = sign with sign(0)=+1, backward = the documented derivative."""

from __future__ import annotations

import pytest
import torch
from nn_helpers import assert_exports_equal
from nn_helpers import sample_inputs as make_inputs

from xnorinfer.nn import (
    ApproxSign,
    IdentitySign,
    RPReLU,
    RSign,
    SteSign,
    SwishSign,
    approx_sign,
    identity_sign,
    ste_sign,
    swish_sign,
)


def _expected_sign(x):
    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


def _grad(fn, x):
    x = x.clone().requires_grad_(True)
    y = fn(x)
    g_out = torch.linspace(0.5, 1.5, x.numel(), dtype=x.dtype)  # non-uniform upstream gradient
    (y * g_out).sum().backward()
    return y.detach(), x.grad / g_out


def _swish_deriv(x, beta):
    # d/dx of SS(x) = 2 sigmoid(bx) (1 + bx (1 - sigmoid(bx))) - 1, by autograd on the smooth function
    x = x.clone().requires_grad_(True)
    s = torch.sigmoid(beta * x)
    (2 * s * (1 + beta * x * (1 - s)) - 1).sum().backward()
    return x.grad


DERIVS = {
    "ste": (ste_sign, lambda x: (x.abs() <= 1).to(x.dtype)),
    "identity": (identity_sign, lambda x: torch.ones_like(x)),
    "approx": (
        approx_sign,
        lambda x: torch.where(
            (x >= -1) & (x < 0), 2 + 2 * x, torch.where((x >= 0) & (x < 1), 2 - 2 * x, torch.zeros_like(x))
        ),
    ),
    "swish": (lambda x: swish_sign(x, 5.0), lambda x: _swish_deriv(x, 5.0)),
}


@pytest.mark.parametrize("name", sorted(DERIVS))
def test_forward_and_gradient(name):
    fn, deriv = DERIVS[name]
    x = make_inputs()
    y, g = _grad(fn, x)
    assert torch.equal(y, _expected_sign(x))
    assert y[0] == 1 and y[1] == 1  # sign(+0) = sign(-0) = +1
    torch.testing.assert_close(g, deriv(x), rtol=1e-10, atol=1e-12)


def test_documented_points():
    x = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0], dtype=torch.float64)
    _, g = _grad(ste_sign, x)
    assert g.tolist() == [0, 1, 1, 1, 1, 1, 0]
    _, g = _grad(approx_sign, x)
    assert g.tolist() == [0, 0, 1, 2, 1, 0, 0]
    _, g = _grad(swish_sign, torch.tensor([0.0], dtype=torch.float64))
    assert g.item() == pytest.approx(5.0)  # SS'(0) = beta


def test_swish_learnable_beta_gradient():
    q = SwishSign(beta=3.0, learn_beta=True).double().train()
    x = make_inputs(50)
    q(x).sum().backward()
    b = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    s = torch.sigmoid(b * x)
    (2 * s * (1 + b * x * (1 - s)) - 1).sum().backward()
    torch.testing.assert_close(q.beta.grad, b.grad)


@pytest.mark.parametrize("cls", [SteSign, IdentitySign, ApproxSign, SwishSign])
def test_modules_train_and_eval_forward(cls):
    q = cls()
    x = make_inputs(100, torch.float32)
    assert torch.equal(q.train()(x), _expected_sign(x))
    assert torch.equal(q.eval()(x), _expected_sign(x))


def test_rsign_forward_and_gradients():
    torch.manual_seed(0)
    q = RSign(4).double().train()
    with torch.no_grad():
        q.shift.copy_(torch.tensor([0.0, 0.5, -0.5, 1.0]))
    x = torch.randn(3, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        x[0, 1, 0, 0] = 0.5  # exactly on the shifted threshold -> +1
    y = q(x)
    shifted = x.detach() - q.shift.detach().view(1, -1, 1, 1)
    assert torch.equal(y, _expected_sign(shifted))
    assert y[0, 1, 0, 0] == 1
    y.sum().backward()
    d = torch.clamp(2 - 2 * shifted.abs(), min=0)  # ApproxSign backward
    torch.testing.assert_close(x.grad, d)
    torch.testing.assert_close(q.shift.grad, -d.sum(dim=(0, 2, 3)))


def test_rprelu_values_and_gradients():
    m = RPReLU(3).double()
    with torch.no_grad():
        m.shift_in.copy_(torch.tensor([0.0, 1.0, -1.0]))
        m.slope.copy_(torch.tensor([0.25, 0.1, 2.0]))
        m.shift_out.copy_(torch.tensor([0.5, -0.5, 0.0]))
    x = torch.randn(2, 3, 4, dtype=torch.float64).unsqueeze(-1)
    y = m(x)
    g, b, z = (p.view(1, -1, 1, 1) for p in (m.shift_in, m.slope, m.shift_out))
    u = x - g
    ref = torch.where(u > 0, u, b * u) + z
    torch.testing.assert_close(y, ref)
    y.sum().backward()
    torch.testing.assert_close(m.slope.grad, torch.where(u > 0, 0.0, u).sum(dim=(0, 2, 3)))
    torch.testing.assert_close(m.shift_out.grad, torch.full((3,), 8.0, dtype=torch.float64))
    # 2D input (N, C)
    assert m(torch.zeros(5, 3, dtype=torch.float64)).shape == (5, 3)


@pytest.mark.parametrize("make", [SteSign, IdentitySign, ApproxSign, SwishSign, lambda: RSign(4), lambda: RPReLU(4)])
def test_quantizers_export(make):
    torch.manual_seed(1)
    m = make()
    for p in m.parameters():
        with torch.no_grad():
            p.uniform_(-0.5, 0.5)
    x = torch.randn(2, 4, 3, 3)
    x[0, 0, 0, 0] = 0.0
    ep = assert_exports_equal(m, x)
    targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert not any("autograd" in t or "higher_order" in t for t in targets), targets


def test_autograd_function_traces_in_export():
    """The functional (autograd.Function) form also exports to plain ops (checked, not relied upon)."""

    class M(torch.nn.Module):
        def forward(self, x):
            return ste_sign(x)

    x = torch.randn(8)
    ep = assert_exports_equal(M(), x)
    assert {str(n.target) for n in ep.graph.nodes if n.op == "call_function"} <= {
        "aten.ge.Scalar",
        "aten.where.Scalar",
        "aten.where.ScalarOther",
        "aten.where.self",
        "aten._to_copy.default",
    }


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_training_path_matches_float64(dtype):
    # Autocast training takes a separate, vectorised path for these dtypes: same values, same
    # gradient mask, including the points where the mask changes (|x| = 1 and its neighbours).
    nxt = torch.finfo(dtype).eps
    edges = [0.0, -0.0, 1.0, -1.0, 1.0 + nxt, -1.0 - nxt, 1.0 - nxt / 2, 2.0, -3.5, 1e-3, -1e-3]
    x = torch.cat([torch.tensor(edges), torch.randn(500, generator=torch.Generator().manual_seed(0)) * 2]).to(dtype)
    y, g = _grad(ste_sign, x)
    assert y.dtype == dtype
    x64 = x.to(torch.float64)
    assert torch.equal(y.to(torch.float64), _expected_sign(x64))
    assert torch.equal(g.to(torch.float64), (x64.abs() <= 1).to(torch.float64))
