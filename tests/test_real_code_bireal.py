"""Detach-trick binary layers (Bi-Real Net, ReActNet) convert binary and verify (issue 12 items 2 and 3).

- Weights `(alpha * sign(W)).detach() - clip(W).detach() + clip(W)` are ±alpha per output channel only
  up to float32 rounding: a channel counts as ±alpha when its magnitudes agree within
  patterns.WEIGHT_ULPS float32 ULPs of its largest magnitude (alpha = their float64 mean).
- Verification classifies binary-activation flips by their margin: a flip whose reference sign input is
  within verify.TIE_ULPS ULPs (of the image's largest sign input) of the threshold is a rounding tie,
  counted apart; only the others fail verification.
The fixtures (tests/realcode/bireal_resnet.py, reactnet_a.py) are converted with verification on and
compared with eager PyTorch on real CIFAR-10 test images through the engine (every ISA, 1 and 2 threads).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from realcode_support import binary_layers, cifar_test_images, convert_and_compare, load_fixture

from xnorinfer.convert import convert, patterns, verify
from xnorinfer.convert.report import format_table

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def cifar_images() -> np.ndarray:
    return cifar_test_images()


def test_bireal_detach_trick_convs_run_binary(cifar_images, tmp_path):
    m = load_fixture("bireal_resnet")
    model = m.make()
    # the effective weights really are ±alpha only up to rounding (what made them float before)
    conv = model.layer1[0].binary_conv
    with torch.no_grad():
        w = conv.weights.view(conv.shape)
        c = torch.clamp(w, -1, 1)
        eff = (w.abs().mean(dim=(1, 2, 3), keepdim=True) * torch.sign(w)) - c + c
    assert bool((eff.abs().amax((1, 2, 3)) != eff.abs().amin((1, 2, 3))).any())
    graph = convert_and_compare(model, m.example_input(), cifar_images, tmp_path)
    convs = {name for name, mod in model.named_modules() if isinstance(mod, m.HardBinaryConv)}
    assert binary_layers(graph) == convs and len(convs) == 5
    assert not graph.metadata["binary_warnings"]
    assert "looks meant to be binary" not in format_table(graph)


def test_reactnet_a_rsign_rprelu_and_concat_downsample_run_binary(cifar_images, tmp_path):
    m = load_fixture("reactnet_a")
    model = m.make()
    graph = convert_and_compare(model, m.example_input(), cifar_images, tmp_path)
    convs = {name for name, mod in model.named_modules() if isinstance(mod, m.HardBinaryConv)}
    assert binary_layers(graph) == convs and len(convs) == 13
    kinds = [op.kind for op in graph.ops]
    assert kinds.count("prelu") == 10  # RPReLU: shift, PReLU, shift as one op
    assert "concat" in kinds  # the two-branch downsample
    assert not graph.metadata["binary_warnings"]
    signs = [op for op in graph.ops if op.kind == "sign"]
    assert len(signs) == 10 and all(np.any(op.params["threshold"] != 0) for op in signs)  # RSign's shift


# --------------------------------------------------------------------------- the weight tolerance


def _channel(alpha: float, ulps: list[int]) -> np.ndarray:
    """Magnitudes alpha + k ULPs (float32 steps above alpha)."""
    out = []
    for k in ulps:
        v = np.float32(alpha)
        for _ in range(k):
            v = np.nextafter(v, np.float32(np.inf))
        out.append(v)
    return np.asarray(out, np.float32)


@pytest.mark.parametrize("alpha", [0.0123, 1.0, 3.5e-4])
def test_weight_tolerance_is_stated_in_ulps_of_the_largest_magnitude(alpha):
    tol = patterns.WEIGHT_ULPS
    inside = np.stack([_channel(alpha, [0, tol // 2, tol]), _channel(2 * alpha, [0, 1, 1])])
    outside = np.stack([_channel(alpha, [0, 1, tol + 2]), _channel(2 * alpha, [0, 0, 0])])
    assert patterns._one_magnitude_up_to_rounding(inside)
    assert not patterns._one_magnitude_up_to_rounding(outside)
    with_zero = inside.copy()
    with_zero[0, 0] = 0.0
    assert not patterns._one_magnitude_up_to_rounding(with_zero)  # (a zero is not ±alpha: ternary)


class SpreadConv(torch.nn.Module):
    """sign -> conv whose weights are ±alpha per channel with a relative spread `spread`."""

    def __init__(self, spread: float) -> None:
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.conv = torch.nn.Conv2d(8, 8, 3, padding=1, bias=False)
        torch.manual_seed(0)
        with torch.no_grad():
            w = torch.where(self.conv.weight < 0, -1.0, 1.0).double() * 0.05
            w[:, 0, 0, 0] *= 1 + spread
            self.conv.weight.copy_(w.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.sign(self.stem(x))).mean((2, 3))


def test_weights_within_tolerance_are_binary_and_beyond_it_warned():
    x = torch.randn(2, 3, 6, 6)
    ok = convert(SpreadConv(4e-7).eval(), (x,), verify=False)  # ~3 ULPs
    assert binary_layers(ok) == {"conv"}
    far = convert(SpreadConv(8e-6).eval(), (x,), verify=False)  # ~67 ULPs: float, with a warning
    assert binary_layers(far) == set()
    assert "float rounding" in far.metadata["binary_warnings"]["conv"]


# --------------------------------------------------------------------------- rounding ties in verification


def test_rounding_ties_are_flips_within_the_stated_bound():
    """The bound: TIE_ULPS float32 ULPs of the image's largest |sign input| (checked independently here)."""
    rng = np.random.default_rng(0)
    xin = rng.standard_normal((2, 4, 4, 3)) * np.array([1.0, 100.0]).reshape(2, 1, 1, 1)
    thr = np.array([0.0, 0.5, -0.25])
    ulp = [np.spacing(np.float32(np.abs(xin[n]).max())) for n in range(2)]
    xin[0, 0, 0, 0] = thr[0] + 0.5 * verify.TIE_ULPS * ulp[0]  # a tie in image 0
    xin[0, 1, 1, 1] = thr[1] - 2.0 * verify.TIE_ULPS * ulp[0]  # beyond the bound
    xin[1, 2, 2, 2] = thr[2] + 0.9 * verify.TIE_ULPS * ulp[1]  # a tie at image 1's larger scale
    xin[1, 3, 3, 0] = thr[0] + 1.1 * verify.TIE_ULPS * ulp[1]  # beyond
    flips = np.zeros(xin.shape, bool)
    for idx in [(0, 0, 0, 0), (0, 1, 1, 1), (1, 2, 2, 2), (1, 3, 3, 0), (0, 2, 2, 2)]:
        flips[idx] = True
    ties = verify.rounding_ties(xin, thr, flips)
    assert sorted(map(tuple, np.argwhere(ties))) == [(0, 0, 0, 0), (1, 2, 2, 2)]
    assert not ties[~flips].any()


def test_report_prints_rounding_tie_counts():
    graph = convert(SpreadConv(0.0).eval(), (torch.randn(2, 3, 6, 6),), verify=False)
    layers = {
        "a": {"path": "a", "total": 1000, "mismatches": 0, "ties": 0, "rounding_ties": 3},
        "b": {"path": "b", "total": 500, "mismatches": 0, "ties": 2, "rounding_ties": 0},
    }
    graph.metadata["verification"] = {"n_inputs": 4, "max_abs_error": 0.0, "top1_agreement": 1.0, "layers": layers}
    table = format_table(graph)
    assert "only at float32 rounding level (ties): 3 of 1500; beyond rounding: 0" in table
    del layers["a"]
    assert "rounding level" not in format_table(graph)
