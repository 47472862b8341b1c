"""DoReFa-Net's k-bit activation quantizer (Zhou et al. 2016): ``round(clamp(x, 0, 1) * n) / n``, n = 2^k - 1.

Training uses the straight-through estimator of the paper: the gradient of round is taken as 1, so
d out / d x = 1 on [0, 1] and 0 outside (the gradient of the clamp). In eval mode the module is the plain
expression ``torch.round(torch.clamp(x, 0, 1) * n) / n``, the form the converter turns into k bit-planes
(patterns.BitSerialPlanes) for the binary-weight layers that read it.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["DoReFaAct", "dorefa_quantize"]


class _RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return grad


def dorefa_quantize(x: torch.Tensor, bits: int) -> torch.Tensor:
    """round(clamp(x, 0, 1) * n) / n with the straight-through gradient of round (n = 2^bits - 1)."""
    n = float(2**bits - 1)
    return _RoundSTE.apply(torch.clamp(x, 0, 1) * n) / n


class DoReFaAct(nn.Module):
    """k-bit DoReFa activation: 2^k levels {0, 1/n, ..., 1}; plain aten ops in eval mode."""

    def __init__(self, bits: int = 2) -> None:
        super().__init__()
        if not 1 <= bits <= 8:
            raise ValueError(f"DoReFaAct: bits must be in 1..8, got {bits}")
        self.bits = bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return dorefa_quantize(x, self.bits)
        n = float(2**self.bits - 1)
        return torch.round(torch.clamp(x, 0, 1) * n) / n

    def extra_repr(self) -> str:
        return f"bits={self.bits}"
