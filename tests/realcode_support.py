"""Shared by the real-code fixtures (tests/realcode/*.py) and their tests: BatchNorm calibration
of a randomly initialised model, and a fresh import of one fixture file."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from conftest import ISAS
from torch import nn

import xnorinfer
from xnorinfer.convert import convert
from xnorinfer.datasets import load_cifar10_jpeg, normalize

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


CIFAR_MEAN, CIFAR_STD = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]


def cifar_test_images() -> np.ndarray:
    """20 real CIFAR-10 test images (2 of each class), normalised as CIFAR models are trained."""
    images, labels = load_cifar10_jpeg(Path(__file__).resolve().parent / "data" / "cifar10-jpeg", "test")
    picked = np.concatenate([np.flatnonzero(labels == c)[:2] for c in range(10)])
    return normalize(images[picked], CIFAR_MEAN, CIFAR_STD)


def run_everywhere(path: Path, x: np.ndarray) -> np.ndarray:
    """Engine output on every ISA path with 1 and 2 threads; all must be identical."""
    outs = []
    for threads in (1, 2):
        session = xnorinfer.load(path, threads=threads)
        outs += [np.asarray(session.run(x, isa=isa)) for isa in ISAS]
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])
    return outs[0]


def convert_verified(model: nn.Module, x: np.ndarray, tmp_path: Path, verified: bool) -> tuple[Any, Path]:
    """Convert with verification on `x`: no problem, no binary activation differing from PyTorch's, and
    binary activations checked at all exactly when `verified` (some are not PyTorch values of their own)."""
    path = tmp_path / "model.xbin"
    graph = convert(model, (torch.from_numpy(x[:1]),), output=path, calib=x)
    v = graph.metadata["verification"]
    assert not v["problems"], v["problems"]
    assert all(layer["mismatches"] == 0 for layer in v["layers"].values()), v["layers"]
    assert bool(v["layers"]) == verified
    return graph, path


def convert_and_compare(model: nn.Module, example: torch.Tensor, x: np.ndarray, tmp_path: Path):
    """Convert with verification on `x` (every binary activation bit-exact), then the engine against
    eager PyTorch on `x` within 1e-4 and the same top-1."""
    path = tmp_path / "model.xbin"
    graph = convert(model, (example,), output=path, calib=x)
    v = graph.metadata["verification"]
    assert not v["problems"], v["problems"]
    assert v["layers"] and all(layer["mismatches"] == 0 for layer in v["layers"].values()), v["layers"]
    got = run_everywhere(path, x)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(want).max())))
    np.testing.assert_array_equal(got.argmax(1), want.argmax(1))
    return graph


def binary_layers(graph) -> set[str]:
    return {op.name for op in graph.ops if op.kind in ("bconv2d", "blinear")}
