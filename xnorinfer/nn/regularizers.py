r"""Binary-quantizer regularizers (BNN+, Darabi et al. 2018): train float weights towards ±alpha.

Instead of binarizing in the forward pass, train an ordinary float model (nn.Conv2d / nn.Linear,
or binary layers) and add a penalty that pulls each weight of the selected layers towards
±alpha_o (alpha per output channel, learnable):

- ``"tanh"``:  R(w) = f(w - alpha sign(w)),  f(u) = gamma * u * tanh(beta u / 2)
  (a smooth |u|: ~ gamma beta u^2 / 2 near 0, ~ gamma |u| far away; sign(0) = +1, and sign has
  zero derivative, so dR/dw = f'(u) and dR/dalpha = -sign(w) f'(u) with
  f'(u) = gamma (tanh(beta u/2) + (beta u / 2) sech^2(beta u / 2))).
- ``"power"``: R(w) = | |w| - alpha |^p  for p in {1, 1.5, 2} (p=1: Manhattan, p=2: Euclidean).

The total penalty is lambda(epoch) * sum over layers and weights of R. lambda grows with the
logarithm of the epoch: :func:`log_lambda` gives lambda0 * (1 + ln(1 + epoch)) -- lambda0 at
epoch 0, slowly growing so late training is dominated by the pull to ±alpha.

After training, the converter binarizes the selected layers (``xnorinfer convert model.pt2
--binarize PATTERN``): W -> alpha_o sign(W). The learned alphas are in the regularizer's
``alphas`` (keyed by layer name) for inspection; a conversion that wants the learned alpha rather
than mean|W| can take it from there (``apply_binarization`` does this in PyTorch).
"""

from __future__ import annotations

import fnmatch
import math

import torch
from torch import nn

from xnorinfer.nn.layers import _BinaryLayer
from xnorinfer.nn.quantizers import sign

__all__ = ["tanh_reg", "power_reg", "log_lambda", "BinaryRegularizer", "apply_binarization"]


def _per_out(alpha: torch.Tensor | float, w: torch.Tensor) -> torch.Tensor | float:
    if isinstance(alpha, torch.Tensor) and alpha.dim() == 1:
        return alpha.reshape((-1,) + (1,) * (w.dim() - 1))
    return alpha


def tanh_reg(w: torch.Tensor, alpha, gamma: float = 1.0, beta: float = 10.0) -> torch.Tensor:
    """Elementwise R(w) = gamma * u * tanh(beta u / 2), u = w - alpha * sign(w) (alpha scalar or per out-channel)."""
    u = w - _per_out(alpha, w) * sign(w)
    return gamma * u * torch.tanh(beta * u / 2.0)


def power_reg(w: torch.Tensor, alpha, p: float = 2.0) -> torch.Tensor:
    """Elementwise R(w) = | |w| - alpha |^p (alpha scalar or per out-channel)."""
    d = (w.abs() - _per_out(alpha, w)).abs()
    return d if p == 1 else d.pow(p)


def log_lambda(epoch: int | float, lambda0: float) -> float:
    """lambda(epoch) = lambda0 * (1 + ln(1 + epoch)): grows with log(epoch), lambda0 at epoch 0."""
    if epoch < 0:
        raise ValueError("epoch must be >= 0")
    return lambda0 * (1.0 + math.log1p(epoch))


def _select(model: nn.Module, pattern: str | None) -> list[tuple[str, nn.Module]]:
    if pattern is None:
        return [(n, m) for n, m in model.named_modules() if isinstance(m, _BinaryLayer)]
    kinds = (nn.Conv2d, nn.Linear, _BinaryLayer)
    return [(n, m) for n, m in model.named_modules() if isinstance(m, kinds) and fnmatch.fnmatchcase(n, pattern)]


class BinaryRegularizer(nn.Module):
    """Sum of R(w) over the selected layers' weights, with a learnable alpha per output channel.

    Args:
        model: the model whose layers are regularised (kept by reference, not registered).
        kind: ``"tanh"`` or ``"power"``.
        pattern: fnmatch pattern on module names (``"features.*"``; the same pattern as
            ``--binarize``), matched against Conv2d / Linear / binary layers. ``None``: every
            BinaryConv2d / BinaryLinear.
        p: exponent for ``"power"`` (1, 1.5 or 2). gamma, beta: for ``"tanh"``.
        learn_alpha: alpha is an ``nn.Parameter`` (give the regulariser's parameters to the
            optimiser) or a fixed buffer. Initialised to mean |W| per output channel.

    ``reg()`` returns the unweighted sum; ``reg(epoch=e, lambda0=l)`` multiplies by
    :func:`log_lambda`. Usage: ``loss = task_loss + reg(epoch=epoch, lambda0=1e-4)``.
    """

    def __init__(
        self,
        model: nn.Module,
        kind: str = "tanh",
        pattern: str | None = None,
        p: float = 2.0,
        gamma: float = 1.0,
        beta: float = 10.0,
        learn_alpha: bool = True,
    ):
        super().__init__()
        if kind not in ("tanh", "power"):
            raise ValueError(f"kind must be 'tanh' or 'power', got {kind!r}")
        if kind == "power" and p not in (1, 1.5, 2):
            raise ValueError(f"p must be 1, 1.5 or 2, got {p}")
        self.kind, self.p, self.gamma, self.beta = kind, float(p), float(gamma), float(beta)
        layers = _select(model, pattern)
        if not layers:
            raise ValueError(f"BinaryRegularizer: no layer matches pattern {pattern!r}")
        self._layers = layers  # plain list: the model is not a submodule of the regulariser
        self.names = [n for n, _ in layers]
        self.alphas = nn.ParameterDict() if learn_alpha else None
        for i, (_, m) in enumerate(layers):
            a = m.weight.detach().abs().flatten(1).mean(dim=1).clone()
            if learn_alpha:
                self.alphas[str(i)] = nn.Parameter(a)
            else:
                self.register_buffer(f"alpha_{i}", a)

    def alpha(self, i: int) -> torch.Tensor:
        return self.alphas[str(i)] if self.alphas is not None else getattr(self, f"alpha_{i}")

    def alpha_by_name(self) -> dict[str, torch.Tensor]:
        return {n: self.alpha(i) for i, n in enumerate(self.names)}

    def forward(self, epoch: int | float | None = None, lambda0: float = 1.0) -> torch.Tensor:
        total = None
        for i, (_, m) in enumerate(self._layers):
            w, a = m.weight, self.alpha(i)
            r = tanh_reg(w, a, self.gamma, self.beta) if self.kind == "tanh" else power_reg(w, a, self.p)
            total = r.sum() if total is None else total + r.sum()
        if epoch is not None:
            total = total * log_lambda(epoch, lambda0)
        return total

    def extra_repr(self) -> str:
        extra = f"p={self.p:g}" if self.kind == "power" else f"gamma={self.gamma:g}, beta={self.beta:g}"
        return f"kind={self.kind!r}, {extra}, layers={self.names}"


@torch.no_grad()
def apply_binarization(model: nn.Module, pattern: str, alphas: dict[str, torch.Tensor] | None = None) -> None:
    """In place: W <- alpha_o sign(W) for the layers matching ``pattern`` (alpha = given or mean|W|).

    The PyTorch-side equivalent of ``--binarize PATTERN``: use it to measure the accuracy of the
    binarized model before converting, or to bake learned alphas into the weights.
    """
    for n, m in _select(model, pattern):
        w = m.weight
        a = alphas[n].detach() if alphas is not None and n in alphas else w.abs().flatten(1).mean(dim=1)
        w.copy_(sign(w) * a.reshape((-1,) + (1,) * (w.dim() - 1)))
