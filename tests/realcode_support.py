"""Shared by the real-code fixtures (tests/realcode/*.py) and their tests: BatchNorm calibration
of a randomly initialised model, and a fresh import of one fixture file."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

REALCODE = Path(__file__).resolve().parent / "realcode"


def calibrate(model: nn.Module, shape: tuple[int, ...], batches: int = 4, seed: int = 0, data: str = "randn"):
    """Random BN affine (some gamma < 0) and running stats from a few random batches in train mode."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
            if m.affine:
                with torch.no_grad():
                    m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 2.0 - 0.5)
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            x = torch.rand(shape, generator=g) if data == "rand" else torch.randn(shape, generator=g)
            model(x)
    return model.eval()


def load_fixture(name: str) -> ModuleType:
    """A fresh import of tests/realcode/NAME.py (fresh: a rewrite patched into one test stays there)."""
    spec = importlib.util.spec_from_file_location(f"realcode_{name}", REALCODE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # what the module defines can find it by name (torch.export, pickling)
    spec.loader.exec_module(module)
    return module
