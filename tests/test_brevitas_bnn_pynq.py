"""Brevitas's own BNN-PYNQ models (brevitas_examples.bnn_pynq: TFC, SFC, LFC, CNV), exported with
torch.export and converted as a user would, on real MNIST / CIFAR-10 test images.

These are the public models themselves (QuantIdentity / QuantLinear / QuantConv2d with Brevitas's
binary quantizers, TensorNorm, BatchNorm), not re-writings: Brevitas clamps with `where` before its
binary sign and scales with constants, and every 1-bit layer must still run as bits. The 2-bit
activation variants have no k-bit kernel yet: their activations stay float and their 1-bit / ternary
weights run on the binary-weight kernel (bwlinear). BatchNorm is calibrated with random affine parameters
(some gamma < 0, realcode_support.calibrate): no weights are downloaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from brevitas.nn import QuantConv2d, QuantLinear
from brevitas_examples.bnn_pynq.models import model_with_cfg
from realcode_support import binary_layers, calibrate, convert_and_compare, run_everywhere

from xnorinfer.convert import convert
from xnorinfer.datasets import load_cifar10_jpeg, load_idx_set

DATA = Path(__file__).resolve().parent / "data"


def _images(name: str, n: int = 32) -> np.ndarray:
    """The first n real test images in [0, 1], as BNN-PYNQ trains on them (ToTensor, no normalisation)."""
    if name.startswith("cnv"):
        images, _ = load_cifar10_jpeg(DATA / "cifar10-jpeg", "test")
    else:
        images, _ = load_idx_set(DATA / "mnist", "test")
    return (images[:n].astype(np.float32) / 255.0).copy()


def _quant_layers(model: torch.nn.Module) -> set[str]:
    return {name for name, m in model.named_modules() if isinstance(m, (QuantConv2d, QuantLinear))}


def _build(name: str, x: np.ndarray) -> torch.nn.Module:
    torch.manual_seed(0)
    model, _ = model_with_cfg(name, pretrained=False)
    return calibrate(model, x.shape, data="rand")


@pytest.mark.parametrize("name", ["tfc_1w1a", "sfc_1w1a", "lfc_1w1a"])
def test_bnn_pynq_mlps_run_every_layer_binary(name: str, tmp_path: Path) -> None:
    x = _images(name)
    model = _build(name, x)
    graph = convert_and_compare(model, torch.from_numpy(x[:1]), x, tmp_path)
    assert binary_layers(graph) == _quant_layers(model) and len(_quant_layers(model)) == 4
    kinds = [op.kind for op in graph.ops]
    # Brevitas's clamp-by-where before each sign is gone: the hidden signs are threshold outputs of the
    # binary layers, only the input sign remains
    assert kinds.count("sign") == 1 and "where" not in kinds and "hardtanh" not in kinds
    assert not graph.metadata["binary_warnings"]


def test_bnn_pynq_cnv_runs_binary_after_its_8_bit_input_layer(tmp_path: Path) -> None:
    x = _images("cnv_1w1a")
    model = _build("cnv_1w1a", x)
    graph = convert_and_compare(model, torch.from_numpy(x[:1]), x, tmp_path)
    quant = _quant_layers(model)
    assert len(quant) == 9
    # the first conv reads the 8-bit quantised image, not a sign: its ±1 weights run on the float input
    assert quant - binary_layers(graph) == {"conv_features.1"}
    assert "binary weights" in graph.metadata["weight_plane_layers"]["conv_features.1"]
    assert not graph.metadata["binary_warnings"] and not graph.metadata["float_layers"]
    kinds = [op.kind for op in graph.ops]
    assert kinds.count("bwconv2d") == 1 and kinds.count("bmaxpool2d") == 2 and "maxpool2d" not in kinds


@pytest.mark.parametrize(("name", "weights"), [("tfc_1w2a", "binary weights"), ("tfc_2w2a", "ternary weights")])
def test_bnn_pynq_two_bit_activations_run_on_weight_only_kernels(name: str, weights: str, tmp_path: Path) -> None:
    """2-bit activations stay float (no k-bit kernel yet); 1-bit weights are ±alpha and Brevitas's narrow-range
    2-bit weights are {-1, 0, 1} * scale: each layer runs bwlinear on the float activations."""
    x = _images(name)
    model = _build(name, x)
    graph = convert(model, (torch.from_numpy(x[:1]),), output=tmp_path / "m.xbin", calib=x)
    assert not graph.metadata["verification"]["problems"]
    got = run_everywhere(tmp_path / "m.xbin", x)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(want).max())))
    np.testing.assert_array_equal(got.argmax(1), want.argmax(1))
    assert not binary_layers(graph) and not graph.metadata["float_layers"]
    planes = graph.metadata["weight_plane_layers"]
    assert set(planes) == _quant_layers(model) and all(weights in how for how in planes.values())
    assert [op.kind for op in graph.ops].count("bwlinear") == 4
