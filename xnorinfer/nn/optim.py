"""Bop, the latent-free optimiser for binary weights (Helwegen et al., NeurIPS 2019).

Bop keeps no latent weights: the parameter itself holds ±1. For each binary weight w it keeps an
exponential moving average of the gradient,

    m <- (1 - gamma) m + gamma g,

and flips the weight when the average is both strong and points the same way as the weight
(a positive gradient on a +1 weight says "decrease me", i.e. flip to -1):

    w <- -w   if |m| > tau and sign(m) == sign(w),   otherwise w is unchanged.

Use it for the binary layers' ``weight`` only, and an ordinary optimiser (Adam) for everything else
(BatchNorm, float layers, learned alphas, RSign/RPReLU shifts)::

    binary, other = split_binary_params(model)
    binarize_latent_weights_(model)        # start from ±1
    opt_bop = Bop(binary, threshold=1e-8, gamma=1e-4)
    opt_adam = torch.optim.Adam(other, lr=1e-2)
    ... loss.backward(); opt_bop.step(); opt_adam.step()

Do not clip or apply weight decay to Bop's parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from xnorinfer.nn.layers import binary_layers

__all__ = ["Bop", "split_binary_params"]


def split_binary_params(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(binary weights of BinaryConv2d/BinaryLinear layers, every other trainable parameter)."""
    binary = [m.weight for _, m in binary_layers(model)]
    ids = {id(p) for p in binary}
    other = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    return binary, other


class Bop(torch.optim.Optimizer):
    """Binary optimizer: flip w where |m| > threshold and sign(m) == sign(w); m is the gradient EMA.

    Args:
        params: the binary weights (values ±1; a value of 0 counts as +1).
        threshold: tau, the flip threshold on |m| (paper default 1e-8 for CIFAR-10; larger values flip less).
        gamma: the adaptivity rate of the EMA (paper default 1e-4).

    After each ``step()``, ``self.last_flips`` holds the number of weights flipped in that step.
    """

    def __init__(self, params, threshold: float = 1e-8, gamma: float = 1e-4):
        if threshold < 0:
            raise ValueError(f"threshold must be >= 0, got {threshold}")
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {gamma}")
        super().__init__(params, dict(threshold=threshold, gamma=gamma))
        self.last_flips = 0

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        flips = 0
        for group in self.param_groups:
            tau, gamma = group["threshold"], group["gamma"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "ema" not in state:
                    state["ema"] = torch.zeros_like(p)
                m = state["ema"]
                m.mul_(1.0 - gamma).add_(p.grad, alpha=gamma)
                flip = (m.abs() > tau) & ((m > 0) == (p >= 0))
                flips += int(flip.sum())
                p.copy_(torch.where(flip, -p, p))
        self.last_flips = flips
        return loss
