"""Shared helpers for the tests/test_nn_*.py files (training-side layers)."""

from __future__ import annotations

import torch


def assert_exports_equal(model: torch.nn.Module, x: torch.Tensor) -> torch.export.ExportedProgram:
    """Export model.eval() with torch.export (non-strict) and check the program equals eager exactly."""
    model = model.eval()
    with torch.no_grad():
        ref = model(x)
    ep = torch.export.export(model, (x,), strict=False)
    with torch.no_grad():
        got = ep.module()(x)
    assert torch.equal(got, ref), (got - ref).abs().max()
    return ep


def sample_inputs(n: int = 200, dtype=torch.float64) -> torch.Tensor:
    """Random values incl. exact zeros, |x| > 1, and the points ±1, ±0.5."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, generator=g, dtype=dtype) * 1.5
    special = torch.tensor([0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -3.0, 1e-9, -1e-9], dtype=dtype)
    return torch.cat([special, x])
