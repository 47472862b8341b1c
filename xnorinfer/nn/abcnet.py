"""ABC-Net layers (Lin, Zhao and Pan 2017, "Towards accurate binary convolutional neural network").

Weights: M binary bases of one latent weight W, all thresholding the same centred tensor::

    B_m = sign(W - mean(W) + u_m std(W)),   W ~= sum_m alpha_m B_m

(u_m spread evenly over [-1, 1]: -1, 0, 1 for M = 3; mean and std over the whole layer; alpha_m
learned, initialised by least squares). Activations: N shifted binarizations of the real input R::

    A_n = H_{v_n}(R) = 2 * 1[clip(R + v_n, 0, 1) >= 0.5] - 1,   R ~= sum_n beta_n A_n

(v_n and beta_n learned). The layers here use the MERGED form of the paper's equation: the weight
bases are summed into one weight and the activation bases into one input before a single convolution,
conv(sum_n beta_n A_n, sum_m alpha_m B_m). The converter splits it back into M x N binary
convolutions (xnorinfer.convert.patterns_multilevel; docs/ops.md).

Training: the latent weight gets the straight-through gradient of the summed weight; the input gets
the gradient of clip(R + v_n, 0, 1) through every base (the paper's STE); alpha, beta and v get theirs
from autograd. In eval mode the forward is written with plain aten ops (clamp, ge, where, mul, add),
which is what torch.export traces and the converter recognises.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ABCActivation", "ABCConv2d", "ABCLinear", "abc_weight_bases"]


def _sign(x: torch.Tensor) -> torch.Tensor:
    """sign with sign(0) = +1."""
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


def _spread(count: int) -> list[float]:
    return [0.0] if count == 1 else [-1.0 + 2.0 * i / (count - 1) for i in range(count)]


def abc_weight_bases(w: torch.Tensor, shifts: list[float]) -> list[torch.Tensor]:
    """The M bases sign(W - mean(W) + u_m std(W)) of a weight tensor (per layer)."""
    centred = w - w.mean()
    std = w.std()
    return [_sign(centred + u * std) for u in shifts]


class ABCActivation(nn.Module):
    """R -> sum_n beta_n H_{v_n}(R): N shifted binarizations with learned shifts v_n and scales beta_n.

    The thresholds start evenly spread over [-1, 1] (v_n = 0.5 - t_n), beta_n at 1 / N.
    """

    def __init__(self, bases: int = 3) -> None:
        super().__init__()
        if bases < 1:
            raise ValueError("ABCActivation needs at least one base")
        self.bases = bases
        self.shift = nn.Parameter(torch.tensor([0.5 - t for t in _spread(bases)]))
        self.beta = nn.Parameter(torch.full((bases,), 1.0 / bases))

    def binarize(self, r: torch.Tensor, n: int) -> torch.Tensor:
        """A_n = 2 * 1[clip(R + v_n, 0, 1) >= 0.5] - 1 (straight-through gradient of the clip in training)."""
        clipped = torch.clamp(r + self.shift[n], 0.0, 1.0)
        hard = (clipped >= 0.5).to(r.dtype) * 2 - 1
        if self.training:
            return hard.detach() + (clipped - clipped.detach())
        return hard

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        out = self.beta[0] * self.binarize(r, 0)
        for n in range(1, self.bases):
            out = out + self.beta[n] * self.binarize(r, n)
        return out

    def extra_repr(self) -> str:
        return f"bases={self.bases}"


class _ABCWeights(nn.Module):
    weight: nn.Parameter
    bias: nn.Parameter | None

    def _init_abc(self, weight_bases: int, activation_bases: int | None) -> None:
        if weight_bases < 1:
            raise ValueError("an ABC-Net layer needs at least one weight base")
        self.weight_bases = weight_bases
        self.shifts = _spread(weight_bases)
        with torch.no_grad():  # alpha: least squares fit of W by its bases
            b = torch.stack([x.reshape(-1) for x in abc_weight_bases(self.weight, self.shifts)], dim=1)
            alpha = torch.linalg.lstsq(b.double(), self.weight.reshape(-1, 1).double()).solution.reshape(-1)
        self.alpha = nn.Parameter(alpha.float())
        self.input_quantizer = ABCActivation(activation_bases) if activation_bases else None

    def abc_weight(self) -> torch.Tensor:
        """sum_m alpha_m B_m (the merged weight), with the straight-through gradient for W in training."""
        bases = abc_weight_bases(self.weight.detach() if self.training else self.weight, self.shifts)
        w = self.alpha[0] * bases[0]
        for m in range(1, self.weight_bases):
            w = w + self.alpha[m] * bases[m]
        if self.training:
            w = w + (self.weight - self.weight.detach())
        return w

    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.input_quantizer is None else self.input_quantizer(x)


class ABCConv2d(_ABCWeights):
    """conv(sum_n beta_n A_n(x), sum_m alpha_m B_m): M weight bases, N activation bases (None: float input)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = False,
        weight_bases: int = 3,
        activation_bases: int | None = 3,
    ) -> None:
        super().__init__()
        ref = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=bias)
        self.stride, self.padding = ref.stride, ref.padding
        self.weight, self.bias = ref.weight, ref.bias
        self._init_abc(weight_bases, activation_bases)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(self.quantize_input(x), self.abc_weight(), self.bias, self.stride, self.padding)


class ABCLinear(_ABCWeights):
    """linear(sum_n beta_n A_n(x), sum_m alpha_m B_m)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = False,
        weight_bases: int = 3,
        activation_bases: int | None = 3,
    ) -> None:
        super().__init__()
        ref = nn.Linear(in_features, out_features, bias=bias)
        self.weight, self.bias = ref.weight, ref.bias
        self._init_abc(weight_bases, activation_bases)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.quantize_input(x), self.abc_weight(), self.bias)
