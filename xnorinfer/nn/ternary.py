"""Ternary-weight layers as trained ternary quantization (TTQ, Zhu et al. 2017) writes them.

The effective weight is Wp where the latent weight W > delta, -Wn where W < -delta and 0 elsewhere,
delta = threshold * max|W| per layer; Wp and Wn are learned per layer. The latent weights get the
straight-through gradient of the ternary weight; Wp and Wn get theirs from autograd (the sum of the
gradient over their positions). In eval mode the forward is the plain ternary conv, which the
converter recognises as a ternary layer (bwconv2d / tbconv2d; docs/ops.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TernaryConv2d", "TernaryLinear"]


class _Ternary(nn.Module):
    weight: nn.Parameter
    bias: nn.Parameter | None

    def _init_ternary(self, threshold: float) -> None:
        self.threshold = threshold
        with torch.no_grad():
            mag = self.weight.abs()
            init = mag[mag > threshold * mag.max()].mean()
        self.wp = nn.Parameter(init.clone())
        self.wn = nn.Parameter(init.clone())

    def ternary_weight(self) -> torch.Tensor:
        w = self.weight
        delta = self.threshold * w.abs().max().detach()
        t = torch.where(w > delta, self.wp, torch.where(w < -delta, -self.wn, torch.zeros_like(w)))
        if self.training:  # straight-through for the latent weights
            t = t + w - w.detach()
        return t


class TernaryConv2d(_Ternary):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = False,
        threshold: float = 0.05,
    ) -> None:
        super().__init__()
        ref = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=bias)
        self.stride, self.padding = ref.stride, ref.padding
        self.weight, self.bias = ref.weight, ref.bias
        self._init_ternary(threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.ternary_weight(), self.bias, self.stride, self.padding)


class TernaryLinear(_Ternary):
    def __init__(self, in_features: int, out_features: int, bias: bool = False, threshold: float = 0.05) -> None:
        super().__init__()
        ref = nn.Linear(in_features, out_features, bias=bias)
        self.weight, self.bias = ref.weight, ref.bias
        self._init_ternary(threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.ternary_weight(), self.bias)
