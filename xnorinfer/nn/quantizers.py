"""Activation quantizers: sign in the forward pass, a surrogate derivative in the backward pass.

Every quantizer here has the same forward value, ``sign(x)`` with ``sign(0) = +1``::

    forward(x) = where(x >= 0, +1, -1)

and differs only in the gradient used for training:

=====================  =========================  ==============================================
module / function      paper                      d out / d x used in backward
=====================  =========================  ==============================================
SteSign / ste_sign     BinaryNet (Hubara 2016)    1 if |x| <= 1 else 0
IdentitySign /         plain straight-through     1
identity_sign
ApproxSign /           Bi-Real Net (Liu 2018)     2 + 2x on [-1, 0), 2 - 2x on [0, 1), 0 else
approx_sign                                       (= max(0, 2 - 2|x|))
SwishSign /            BNN+ (Darabi 2018)         beta * (2 - beta x tanh(beta x / 2)) / (1 + cosh(beta x))
swish_sign                                        (derivative of SignSwish; also d/d beta)
RSign                  ReActNet (Liu 2020)        sign(x - shift_c), learnable per-channel shift,
                                                  backward of the chosen quantizer (ApproxSign)
RPReLU                 ReActNet                   PReLU(x - gamma_c; slope beta_c) + zeta_c (float op)
=====================  =========================  ==============================================

Training uses a ``torch.autograd.Function`` per quantizer. In eval mode the modules call plain
``torch.where(x >= 0, 1.0, -1.0)`` instead, so that ``torch.export.export(model.eval(), ...)`` yields a
graph of ordinary aten ops (``ge`` + ``where``) that the converter recognises as a sign. (The
functions also trace cleanly through ``torch.export`` on torch 2.13: the forward of the
``autograd.Function`` is inlined; the eval-mode switch just makes that independent of torch's
handling of custom Functions.) The cost of the switch: a module in eval mode has zero gradient;
call the functional form (``ste_sign(x)``) if you need surrogate gradients in eval mode.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "sign",
    "ste_sign",
    "identity_sign",
    "approx_sign",
    "swish_sign",
    "SteSign",
    "IdentitySign",
    "ApproxSign",
    "SwishSign",
    "RSign",
    "RPReLU",
    "channel_view",
]


_HALF_TYPES = (torch.bfloat16, torch.float16)


def sign(x: torch.Tensor) -> torch.Tensor:
    """``where(x >= 0, 1, -1)`` in x's dtype: sign with sign(0) = +1. No gradient (piecewise constant)."""
    if x.dtype not in _HALF_TYPES:
        out = torch.where(x >= 0, 1.0, -1.0)  # the form the converter's sign pattern matches
        return out if out.dtype == x.dtype else out.to(x.dtype)
    # bf16/fp16 (autocast training): CPU `where` on these is ~20x slower than `sign`.
    # sign(x) is in {-1, 0, 1}; adding 0.5 moves 0 to +0.5 and keeps the others' signs: exact.
    return torch.sign(torch.sign(x) + 0.5)


def channel_view(p: torch.Tensor, ndim: int) -> torch.Tensor:
    """Reshape a per-channel vector (C,) to broadcast over channel dim 1 of an ``ndim``-d tensor."""
    return p.reshape((1, -1) + (1,) * (ndim - 2))


class _SteSignFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return sign(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        if x.dtype not in _HALF_TYPES:
            return g * (x.abs() <= 1).to(g.dtype)
        # bf16/fp16 (autocast training): hardtanh_backward passes g where lo < x < hi and is
        # vectorised; 1.0005 lies between 1 and the next bf16/fp16 value, so this is |x| <= 1.
        return torch.ops.aten.hardtanh_backward(g.to(x.dtype), x, -1.0005, 1.0005)


class _IdentitySignFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return sign(x)

    @staticmethod
    def backward(ctx, g):
        return g


class _ApproxSignFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return sign(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.clamp(2.0 - 2.0 * x.abs(), min=0.0)


def swish_sign_derivatives(x: torch.Tensor, beta: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
    """(d SS/dx, d SS/d beta) of SignSwish SS_b(x) = 2 sigmoid(bx) (1 + bx (1 - sigmoid(bx))) - 1.

    With u = beta x: dSS/du = (2 - u tanh(u/2)) / (1 + cosh u); dSS/dx = beta dSS/du, dSS/dbeta = x dSS/du.
    """
    u = beta * x
    dsdu = (2.0 - u * torch.tanh(u / 2.0)) / (1.0 + torch.cosh(u))
    dsdu = torch.nan_to_num(dsdu, nan=0.0)  # cosh overflow for huge |u|: the true value is 0
    return beta * dsdu, x * dsdu


class _SwishSignFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, beta):
        ctx.save_for_backward(x, beta)
        return sign(x)

    @staticmethod
    def backward(ctx, g):
        x, beta = ctx.saved_tensors
        dx, dbeta = swish_sign_derivatives(x, beta)
        gbeta = None
        if ctx.needs_input_grad[1]:
            gbeta = (g * dbeta).sum().reshape(beta.shape)
        return g * dx, gbeta


def ste_sign(x: torch.Tensor) -> torch.Tensor:
    """sign(x) forward; gradient 1 where |x| <= 1, else 0 (BinaryNet's clipped STE)."""
    return _SteSignFn.apply(x)


def identity_sign(x: torch.Tensor) -> torch.Tensor:
    """sign(x) forward; gradient passed through unchanged (plain STE)."""
    return _IdentitySignFn.apply(x)


def approx_sign(x: torch.Tensor) -> torch.Tensor:
    """sign(x) forward; Bi-Real Net's ApproxSign gradient max(0, 2 - 2|x|)."""
    return _ApproxSignFn.apply(x)


def swish_sign(x: torch.Tensor, beta: torch.Tensor | float = 5.0) -> torch.Tensor:
    """sign(x) forward; BNN+ SignSwish gradient (see :func:`swish_sign_derivatives`)."""
    if not isinstance(beta, torch.Tensor):
        beta = torch.tensor(float(beta), dtype=x.dtype)
    return _SwishSignFn.apply(x, beta)


class _SignModule(nn.Module):
    """Base: surrogate gradient in training mode, plain ``where`` in eval mode."""

    _fn = staticmethod(ste_sign)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return type(self)._fn(x)
        return sign(x)


class SteSign(_SignModule):
    """BinaryNet sign: forward sign(x) (sign(0)=+1), gradient 1_{|x| <= 1}."""

    _fn = staticmethod(ste_sign)


class IdentitySign(_SignModule):
    """Plain straight-through sign: forward sign(x), gradient 1 everywhere."""

    _fn = staticmethod(identity_sign)


class ApproxSign(_SignModule):
    """Bi-Real Net ApproxSign: forward sign(x), gradient 2+2x on [-1,0), 2-2x on [0,1), 0 elsewhere."""

    _fn = staticmethod(approx_sign)


class SwishSign(nn.Module):
    """BNN+ SignSwish: forward sign(x), gradient of SS_beta(x) = 2 sigmoid(bx)(1 + bx(1 - sigmoid(bx))) - 1.

    ``beta`` controls the width of the surrogate (larger = closer to sign). With ``learn_beta=True``
    it is a parameter and receives d loss / d beta = sum(g * x * SS'(beta x)).
    """

    def __init__(self, beta: float = 5.0, learn_beta: bool = False):
        super().__init__()
        t = torch.tensor(float(beta))
        if learn_beta:
            self.beta = nn.Parameter(t)
        else:
            self.register_buffer("beta", t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return _SwishSignFn.apply(x, self.beta.to(x.dtype))
        return sign(x)

    def extra_repr(self) -> str:
        return f"beta={float(self.beta):g}, learn_beta={isinstance(self.beta, nn.Parameter)}"


class RSign(nn.Module):
    """ReActNet RSign: ``sign(x - shift_c)`` with a learnable per-channel shift (channel dim 1).

    ``quantizer`` supplies the backward (ReActNet uses ApproxSign, the default); the shift gets the
    negated surrogate gradient. Works on (N, C) and (N, C, H, W) inputs. Exported (eval) graph:
    ``sub`` then ``ge``/``where`` -- the converter folds the shift into the sign threshold.
    """

    def __init__(self, channels: int, quantizer: nn.Module | None = None):
        super().__init__()
        self.channels = channels
        self.shift = nn.Parameter(torch.zeros(channels))
        self.quantizer = quantizer if quantizer is not None else ApproxSign()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.quantizer(x - channel_view(self.shift, x.dim()))

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


class RPReLU(nn.Module):
    """ReActNet RPReLU: ``PReLU(x - gamma_c; slope beta_c) + zeta_c``, all per channel (dim 1).

    f(x) = x - gamma + zeta if x - gamma > 0 else beta (x - gamma) + zeta. A float op: in the
    engine it runs on the float path between binary layers.
    """

    def __init__(self, channels: int, init_slope: float = 0.25):
        super().__init__()
        self.channels = channels
        self.shift_in = nn.Parameter(torch.zeros(channels))  # gamma
        self.slope = nn.Parameter(torch.full((channels,), float(init_slope)))  # beta
        self.shift_out = nn.Parameter(torch.zeros(channels))  # zeta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nd = x.dim()
        y = x - channel_view(self.shift_in, nd)
        y = torch.where(y > 0, y, y * channel_view(self.slope, nd))
        return y + channel_view(self.shift_out, nd)

    def extra_repr(self) -> str:
        return f"channels={self.channels}"
