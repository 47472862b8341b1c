"""End to end: a tiny binary MLP trains on a separable synthetic task (fixed seed, loose bounds)."""

from __future__ import annotations

import pytest
import torch
from nn_helpers import assert_exports_equal

from xnorinfer.nn import (
    BinaryLinear,
    Bop,
    RSign,
    binarize_latent_weights_,
    binary_layers,
    register_clip_hook,
    split_binary_params,
)


def _data(n, seed):
    g = torch.Generator().manual_seed(seed)
    direction = torch.randn(16, generator=torch.Generator().manual_seed(123))
    x = torch.randn(n, 16, generator=g)
    y = (x @ direction > 0).long()
    return x, y


def _model(scale):
    return torch.nn.Sequential(
        torch.nn.Linear(16, 64),
        torch.nn.BatchNorm1d(64),
        BinaryLinear(64, 64, weight_scale=scale),
        torch.nn.BatchNorm1d(64),
        BinaryLinear(64, 64, weight_scale=scale, input_quantizer=RSign(64)),
        torch.nn.BatchNorm1d(64),
        torch.nn.Linear(64, 2),
    )


def _accuracy(model, x, y):
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


@pytest.mark.parametrize("optimizer", ["adam", "bop"])
def test_binary_mlp_learns(optimizer):
    torch.manual_seed(0)
    xtr, ytr = _data(2048, 0)
    xte, yte = _data(1024, 1)
    model = _model("mean" if optimizer == "adam" else "none")
    if optimizer == "adam":
        opts = [torch.optim.Adam(model.parameters(), lr=1e-2)]
        register_clip_hook(opts[0], model)
    else:
        binarize_latent_weights_(model)
        binary, other = split_binary_params(model)
        opts = [Bop(binary, threshold=1e-6, gamma=1e-2), torch.optim.Adam(other, lr=1e-2)]
    before = _accuracy(model, xte, yte)
    g = torch.Generator().manual_seed(7)
    for _ in range(300):
        model.train()
        idx = torch.randint(0, len(xtr), (128,), generator=g)
        loss = torch.nn.functional.cross_entropy(model(xtr[idx]), ytr[idx])
        for o in opts:
            o.zero_grad()
        loss.backward()
        for o in opts:
            o.step()
    after = _accuracy(model, xte, yte)
    assert after > 0.8, (before, after)
    for _, m in binary_layers(model):
        assert m.weight.abs().max() <= 1.0
        if optimizer == "bop":
            assert set(m.weight.detach().unique().tolist()) <= {-1.0, 1.0}
    assert_exports_equal(model, xte[:8])
