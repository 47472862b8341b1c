r"""BinaryDuo (Kim et al., ICLR 2020): train with a coupled ternary activation, deploy as binary.

Coupled (training) model
------------------------
The activation feeding a binary layer is ternary:

    T(x) = 0    if x < t1
           0.5  if t1 <= x < t2          (t1, t2) = (0.25, 0.75) by default
           1    if x >= t2

i.e. clip(x, 0, 1) rounded to {0, 0.5, 1}. Ties go up, matching sign(0) = +1. Its backward is the
straight-through estimate of the clip: gradient 1 on [0, 1], 0 elsewhere. Use it as the input
quantizer of a binary layer: ``BinaryConv2d(c, k, 3, padding=1, input_quantizer=CoupledTernary())``.

Decoupling (deployment)
-----------------------
With the {0, 1} steps B_i = 1[x >= t_i] = (1 + s_i) / 2 where s_i = sign(x - t_i) in {-1, +1}
(sign(0) = +1, so x >= t_i <=> x - t_i >= 0; in IEEE arithmetic x - t_i rounds to 0 only when
x == t_i and keeps its sign otherwise, so this holds exactly in float too):

    T = (B_1 + B_2) / 2 = 1/2 + (s_1 + s_2) / 4.

The binary layer that consumed T computes (alpha, b per output channel o; W = sign(latent)):

    y_o = alpha_o * sum_k W_ok T_k + b_o
        = alpha_o * ( 1/4 * sum_k [W_ok s_1k + W_ok s_2k]  +  1/2 * sum_k W_ok ) + b_o.

So the decoupled layer sees 2C binary channels [s_1, s_2] (two sign activations with their
thresholds shifted by t_1 and t_2 -- the "shifted bias"), uses the doubled weights [W, W] along the
input-channel axis, and an affine correction h = n/4 + c_o with c_o = 1/2 sum_k W_ok, where n is
the ±1 dot product the engine computes with XOR + popcount.

Zero padding: the coupled conv pads T with 0. T = 0 corresponds to s_1 = s_2 = -1, so the
decoupled conv pads s with -1 (explicit ``F.pad(..., value=-1)`` then an unpadded conv); then
T_pad = 1/2 + (s_1,pad + s_2,pad)/4 holds at every position including the border, and c_o is the
same constant everywhere.

Exactness: every partial sum of sum W T is a multiple of 1/2 and n is an integer, both far below
2^24, so in float32 the coupled conv output and n/4 + c are the same number exactly; the decoupled
layer then applies the very same alpha multiply and bias add. The two models' outputs are
bit-identical in eval mode (the tests check ``torch.equal``).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from xnorinfer.nn.layers import BinaryConv2d, BinaryLinear, _BinaryLayer
from xnorinfer.nn.quantizers import channel_view, sign

__all__ = ["CoupledTernary", "DecoupledBinaryConv2d", "DecoupledBinaryLinear", "decouple"]


def ternary(x: torch.Tensor, t1: float = 0.25, t2: float = 0.75) -> torch.Tensor:
    """T(x) in {0, 0.5, 1} with thresholds t1 < t2 (ties go up). No gradient."""
    out = torch.where(x >= t2, 1.0, torch.where(x >= t1, 0.5, 0.0))
    return out if out.dtype == x.dtype else out.to(x.dtype)


class _TernaryFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, t1, t2):
        ctx.save_for_backward(x)
        return ternary(x, t1, t2)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * ((x >= 0) & (x <= 1)).to(g.dtype), None, None


class CoupledTernary(nn.Module):
    """BinaryDuo's coupled ternary activation: {0, 0.5, 1}, thresholds t1 = 0.25, t2 = 0.75; STE of clip."""

    def __init__(self, t1: float = 0.25, t2: float = 0.75):
        super().__init__()
        if not 0.0 < t1 < t2 < 1.0:
            raise ValueError(f"need 0 < t1 < t2 < 1, got {t1}, {t2}")
        self.t1, self.t2 = float(t1), float(t2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return _TernaryFn.apply(x, self.t1, self.t2)
        return ternary(x, self.t1, self.t2)

    def extra_repr(self) -> str:
        return f"t1={self.t1}, t2={self.t2}"


class _Decoupled(nn.Module):
    """Two shifted signs -> concat -> binary op with doubled weights -> n/4 + c -> alpha, bias."""

    def _setup(self, layer: _BinaryLayer, q: CoupledTernary) -> None:
        with torch.no_grad():
            wb = sign(layer.weight.detach())
            alpha = layer.binarizer.scale(layer.weight.detach())
        self.t1, self.t2 = q.t1, q.t2
        self.weight = nn.Parameter(torch.cat([wb, wb], dim=1), requires_grad=False)  # ±1, doubled
        self.register_buffer("offset", 0.5 * wb.flatten(1).sum(dim=1))  # c_o = 1/2 sum_k W_ok
        self.register_buffer("alpha", None if alpha is None else alpha.detach().clone())
        self.bias = None if layer.bias is None else nn.Parameter(layer.bias.detach().clone(), requires_grad=False)

    def _signs(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([sign(x - self.t1), sign(x - self.t2)], dim=1)

    def _finish(self, n: torch.Tensor) -> torch.Tensor:
        y = n * 0.25 + channel_view(self.offset, n.dim())
        if self.alpha is not None:
            y = y * channel_view(self.alpha, y.dim())
        if self.bias is not None:
            y = y + channel_view(self.bias, y.dim())
        return y


class DecoupledBinaryConv2d(_Decoupled):
    """The decoupled form of ``BinaryConv2d(..., input_quantizer=CoupledTernary())`` (groups=1)."""

    def __init__(self, layer: BinaryConv2d):
        super().__init__()
        if layer.groups != 1:
            raise ValueError("decouple: grouped BinaryConv2d is not supported")
        if not isinstance(layer.padding, tuple):
            raise ValueError(f"decouple: padding={layer.padding!r} must be numeric")
        self._setup(layer, layer.input_quantizer)
        self.stride, self.dilation = layer.stride, layer.dilation
        ph, pw = layer.padding
        self.pad = (pw, pw, ph, ph)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self._signs(x)
        if any(self.pad):
            s = F.pad(s, self.pad, value=-1.0)  # T = 0 <=> s1 = s2 = -1
        n = F.conv2d(s, sign(self.weight), None, self.stride, 0, self.dilation)
        return self._finish(n)


class DecoupledBinaryLinear(_Decoupled):
    """The decoupled form of ``BinaryLinear(..., input_quantizer=CoupledTernary())``."""

    def __init__(self, layer: BinaryLinear):
        super().__init__()
        self._setup(layer, layer.input_quantizer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._finish(F.linear(self._signs(x), sign(self.weight)))


def decouple(model: nn.Module, inplace: bool = False) -> nn.Module:
    """Turn a trained coupled BinaryDuo model into the equivalent binary model (eval mode).

    Every BinaryConv2d / BinaryLinear whose ``input_quantizer`` is a :class:`CoupledTernary` is
    replaced by a Decoupled* layer computing the same function (see the module docstring). A
    CoupledTernary used anywhere else is an error: its output would not be binary.
    """
    m = model if inplace else copy.deepcopy(model)
    m.eval()
    targets = [
        (n, mod)
        for n, mod in m.named_modules()
        if isinstance(mod, _BinaryLayer) and isinstance(mod.input_quantizer, CoupledTernary)
    ]
    for name, layer in targets:
        new = DecoupledBinaryConv2d(layer) if isinstance(layer, BinaryConv2d) else DecoupledBinaryLinear(layer)
        new.eval()
        parent_name, _, attr = name.rpartition(".")
        if not name:
            return new
        parent = m.get_submodule(parent_name) if parent_name else m
        setattr(parent, attr, new)
    left = [n for n, mod in m.named_modules() if isinstance(mod, CoupledTernary)]
    if left:
        raise ValueError(f"decouple: CoupledTernary not feeding a binary layer at {left}; cannot make it binary")
    return m
