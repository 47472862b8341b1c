"""Binary convolution and linear layers with latent float weights and optional per-channel scales.

A binary layer computes, for input x and latent weights W (float, kept in [-1, 1]):

    y = alpha_o * op(q(x), sign(W))_o + b_o

where ``q`` is the layer's input quantizer (``SteSign()`` by default; ``None`` keeps the input
float, e.g. for a first layer) and ``op`` is conv2d or linear. The scale is applied to the output,
not folded into the weights: mathematically the same (alpha is per output channel), but it keeps
``op(q(x), sign(W))`` an exact integer in float32, which is what the engine computes with
XOR + popcount, so the converter can fold alpha, bias and the next BatchNorm exactly.

``weight_scale``:

- ``"none"``: alpha = 1 (BinaryNet).
- ``"mean"``: alpha_o = mean |W_o| over the output channel's fan-in (XNOR-Net). By default the
  gradient flows through alpha too (``detach_scale=False``), as in XNOR-Net's derivation
  dC/dW = dC/dW~ (1/n + alpha dsign/dW); ``detach_scale=True`` treats alpha as a constant in
  the backward pass (common in later re-implementations, slightly cheaper, usually as accurate).
- ``"learned"``: alpha is a parameter of shape (out,), initialised to mean |W| of the initial
  weights and trained by the optimiser like any other float parameter.

The weight sign uses BinaryNet's clipped STE (gradient 1 where |W| <= 1); latent weights are
clipped to [-1, 1] after each optimiser step by :func:`clip_latent_weights` (call it yourself, or
register it once with :func:`register_clip_hook`). In eval mode the weight sign is the plain
``where(W >= 0, 1, -1)`` so the exported graph is ordinary aten ops.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xnorinfer.nn.quantizers import SteSign, channel_view, sign, ste_sign

__all__ = [
    "BinaryConv2d",
    "BinaryLinear",
    "WeightBinarizer",
    "binary_layers",
    "clip_latent_weights",
    "register_clip_hook",
    "binarize_latent_weights_",
]

_SCALES = ("none", "mean", "learned")
DEFAULT = object()  # input_quantizer default: a fresh SteSign() per layer; pass None for a float input


class WeightBinarizer(nn.Module):
    """Holds the scale mode of a binary layer and computes sign(W) and alpha (shape (out,) or None)."""

    def __init__(
        self,
        out_channels: int,
        weight_scale: str = "none",
        detach_scale: bool = False,
        init_weight: torch.Tensor | None = None,
    ):
        super().__init__()
        if weight_scale not in _SCALES:
            raise ValueError(f"weight_scale must be one of {_SCALES}, got {weight_scale!r}")
        self.weight_scale = weight_scale
        self.detach_scale = detach_scale
        if weight_scale == "learned":
            if init_weight is not None:
                init = init_weight.detach().abs().flatten(1).mean(dim=1)
            else:
                init = torch.ones(out_channels)
            self.alpha = nn.Parameter(init.clone())
        else:
            self.register_parameter("alpha", None)

    def binary(self, w: torch.Tensor) -> torch.Tensor:
        return ste_sign(w) if self.training else sign(w)

    def scale(self, w: torch.Tensor) -> torch.Tensor | None:
        if self.weight_scale == "none":
            return None
        if self.weight_scale == "learned":
            return self.alpha
        a = w.abs().flatten(1).mean(dim=1)
        return a.detach() if self.detach_scale else a

    def extra_repr(self) -> str:
        s = f"weight_scale={self.weight_scale!r}"
        if self.weight_scale == "mean":
            s += f", detach_scale={self.detach_scale}"
        return s


class _BinaryLayer(nn.Module):
    """Shared code for BinaryConv2d / BinaryLinear. Subclasses define ``_op(x, wb)``."""

    weight: nn.Parameter
    bias: nn.Parameter | None

    def _init_binary(self, out_channels, input_quantizer, weight_scale, detach_scale):
        self.input_quantizer = input_quantizer
        self.binarizer = WeightBinarizer(out_channels, weight_scale, detach_scale, self.weight)

    @property
    def weight_scale(self) -> str:
        return self.binarizer.weight_scale

    def scale(self) -> torch.Tensor | None:
        """The per-output-channel alpha (None for weight_scale='none')."""
        return self.binarizer.scale(self.weight)

    def binary_weight(self) -> torch.Tensor:
        """sign(W) as ±1 floats (sign(0) = +1)."""
        return self.binarizer.binary(self.weight)

    def effective_weight(self) -> torch.Tensor:
        """alpha_o * sign(W_o): the float weight the layer is equivalent to (for inspection/tests)."""
        wb = self.binary_weight()
        a = self.scale()
        if a is None:
            return wb
        return wb * a.reshape((-1,) + (1,) * (wb.dim() - 1))

    def _finish(self, y: torch.Tensor, alpha: torch.Tensor | None) -> torch.Tensor:
        if alpha is not None:
            y = y * channel_view(alpha, y.dim())
        if self.bias is not None:
            y = y + channel_view(self.bias, y.dim())
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_quantizer is not None:
            x = self.input_quantizer(x)
        y = self._op(x, self.binary_weight())
        return self._finish(y, self.scale())

    def clip_(self, bound: float = 1.0) -> None:
        with torch.no_grad():
            self.weight.clamp_(-bound, bound)


class BinaryConv2d(_BinaryLayer):
    """Conv2d with sign(W) weights, optional per-channel alpha, optional input quantizer.

    Zero padding (PyTorch's) is kept as is: the engine corrects for it exactly (see DESIGN.md).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = False,
        input_quantizer: nn.Module | None | object = DEFAULT,
        weight_scale: str = "none",
        detach_scale: bool = False,
    ):
        super().__init__()
        ref = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = ref.kernel_size, ref.stride, ref.padding
        self.dilation, self.groups = ref.dilation, groups
        self.weight = ref.weight
        self.bias = ref.bias
        if input_quantizer is DEFAULT:
            input_quantizer = SteSign()
        self._init_binary(out_channels, input_quantizer, weight_scale, detach_scale)

    def _op(self, x, wb):
        return F.conv2d(x, wb, None, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, bias={self.bias is not None}"
        )


class BinaryLinear(_BinaryLayer):
    """Linear with sign(W) weights, optional per-output alpha, optional input quantizer."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = False,
        input_quantizer: nn.Module | None | object = DEFAULT,
        weight_scale: str = "none",
        detach_scale: bool = False,
    ):
        super().__init__()
        ref = nn.Linear(in_features, out_features, bias)
        self.in_features, self.out_features = in_features, out_features
        self.weight = ref.weight
        self.bias = ref.bias
        if input_quantizer is DEFAULT:
            input_quantizer = SteSign()
        self._init_binary(out_features, input_quantizer, weight_scale, detach_scale)

    def _op(self, x, wb):
        return F.linear(x, wb)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"


def binary_layers(model: nn.Module) -> list[tuple[str, _BinaryLayer]]:
    """(name, module) of every BinaryConv2d / BinaryLinear in ``model`` (including subclasses)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, _BinaryLayer)]


def clip_latent_weights(model: nn.Module, bound: float = 1.0) -> None:
    """Clamp the latent weights of every binary layer to [-bound, bound] in place (BinaryNet)."""
    for _, m in binary_layers(model):
        m.clip_(bound)


def register_clip_hook(optimizer: torch.optim.Optimizer, model: nn.Module, bound: float = 1.0):
    """Run :func:`clip_latent_weights` after every ``optimizer.step()``. Returns the hook handle."""

    def _hook(opt, args, kwargs):
        clip_latent_weights(model, bound)

    return optimizer.register_step_post_hook(_hook)


def binarize_latent_weights_(model: nn.Module) -> None:
    """Replace every binary layer's latent weights by sign(W) in place (start of Bop training)."""
    with torch.no_grad():
        for _, m in binary_layers(model):
            m.weight.copy_(sign(m.weight))
