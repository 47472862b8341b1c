"""XNOR-Net's binary convolution with the beta map K (Rastegari et al. 2016, section 3.2).

For a float input I (N, C, H, W) and latent weights W:

    A = mean_c |I|                       (N, 1, H, W)
    K = A conv k,  k = ones(kh, kw) / (kh * kw)   (the conv's stride and zero padding)
    y = (sign(I) conv sign(W)) * K * alpha,   alpha_o = mean |W_o|

K is computed here with ``F.avg_pool2d(A, kernel, stride, padding, count_include_pad=True)``,
which is that box filter (zero padding counted). The products are written in that order: the
integer convolution sum s first, then ``s * K``, then ``* alpha`` (and an optional bias), so the
eval graph is ``conv -> mul(K) -> mul(alpha)``; the engine computes ``fl(fl(s * K) * alpha)`` in
the binary conv's epilogue, the same float32 operations (docs/exactness.md).

The layer is a :class:`xnorinfer.nn.BinaryConv2d` (``weight_scale="mean"`` by default), so latent
weight clipping and :func:`xnorinfer.nn.binary_layers` treat it like any binary conv.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xnorinfer.nn.layers import DEFAULT, BinaryConv2d

__all__ = ["XnorConv2d", "beta_map"]


def beta_map(x: torch.Tensor, kernel_size, stride, padding) -> torch.Tensor:
    """XNOR-Net's K: the box filter of mean_c |x| with the conv's window, stride and zero padding."""
    return F.avg_pool2d(x.abs().mean(dim=1, keepdim=True), kernel_size, stride, padding, count_include_pad=True)


class XnorConv2d(BinaryConv2d):
    """XNOR-Net conv: ``(sign(x) conv sign(W)) * K(x) * alpha (+ bias)``; K from the float input x."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        bias: bool = False,
        input_quantizer: nn.Module | None | object = DEFAULT,
        weight_scale: str = "mean",
        detach_scale: bool = False,
    ):
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            bias=bias,
            input_quantizer=input_quantizer,
            weight_scale=weight_scale,
            detach_scale=detach_scale,
        )

    def beta(self, x: torch.Tensor) -> torch.Tensor:
        """K for the float input x, shape (N, 1, OH, OW)."""
        return beta_map(x, self.kernel_size, self.stride, self.padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.beta(x)
        xq = self.input_quantizer(x) if self.input_quantizer is not None else x
        y = self._op(xq, self.binary_weight()) * k
        return self._finish(y, self.scale())
