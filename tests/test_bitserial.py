"""DoReFa / Brevitas-like k-bit activations feeding ±alpha convs and linears run bit-serially.

q = round(clamp(x, 0, 1) * n) with n = 2^k - 1 (or round(clamp(x * s, 0, n))) has k bit-planes; a
conv with ±alpha weights on q / n becomes k bconv2d (one popcount conv per plane) whose exact
integer sums are shifted, added and scaled once (patterns.BitSerialPlanes). Checked against eager
PyTorch on real CIFAR-10 / MNIST test images, on every ISA path and two thread counts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from realcode_support import calibrate, load_fixture, run_everywhere

from xnorinfer import datasets
from xnorinfer.convert import convert
from xnorinfer.convert.report import format_table

DATA = Path(__file__).resolve().parent / "data"


def cifar_images(n: int) -> torch.Tensor:
    images, _, _ = datasets.load("cifar10", DATA, "test")
    x = images[:: max(1, len(images) // n)][:n].astype(np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2) if x.shape[-1] == 3 else x))


def mnist_images(n: int) -> torch.Tensor:
    images, _, _ = datasets.load("mnist", DATA, "test")
    return torch.from_numpy(images[:n].astype(np.float32) / 255.0).reshape(n, 1, 28, 28)


def kinds(graph) -> list[str]:
    return [op.kind for op in graph.ops]


class DoReFaAct(nn.Module):
    """DoReFa's activation_quantize_fn: round(clamp(x, 0, 1) * n) / n."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.n = float(2**k - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(torch.clamp(x, 0, 1) * self.n) / self.n


class UIntAct(nn.Module):
    """A Brevitas-like unsigned k-bit quantizer: round(clamp(x * s, 0, n)) / s."""

    def __init__(self, k: int, scale: float) -> None:
        super().__init__()
        self.n, self.s = float(2**k - 1), scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(torch.clamp(x * self.s, 0, self.n)) / self.s


class SignConv(nn.Conv2d):
    """DoReFa's W1 conv: sign(W / E) * E with E = mean |W| (one per-tensor scale)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.weight.abs().mean().detach()
        return F.conv2d(x, torch.sign(self.weight / e) * e, self.bias, self.stride, self.padding)


class SignLinear(nn.Linear):
    """±alpha per output channel (XNOR-Net style)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.weight.abs().mean(dim=1, keepdim=True).detach()
        return F.linear(x, torch.sign(self.weight) * alpha, self.bias)


class SmallCNN(nn.Module):
    """float stem; two W1Ak convs (padding 1 and a strided one with a bias); W1Ak linear; float head."""

    def __init__(self, k: int, channels: int = 3, act: str = "dorefa") -> None:
        super().__init__()

        def quant() -> nn.Module:
            return DoReFaAct(k) if act == "dorefa" else UIntAct(k, 2.5)

        self.stem = nn.Conv2d(channels, 32, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(32)
        self.act0 = quant()
        self.conv1 = SignConv(32, 64, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.act1 = quant()
        self.conv2 = SignConv(64, 64, 3, stride=2, padding=0, bias=True)
        self.bn2 = nn.BatchNorm2d(64)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc1 = SignLinear(256, 48)
        self.bn3 = nn.BatchNorm1d(48)
        self.fc2 = nn.Linear(48, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act0(F.relu(self.bn0(self.stem(x))))
        x = self.act1(F.relu(self.bn1(self.conv1(x))))
        x = torch.flatten(self.pool(F.relu(self.bn2(self.conv2(x)))), 1)
        x = DoReFaAct(2)(x)  # the linear reads a k-bit activation too
        return self.fc2(F.relu(self.bn3(self.fc1(x))))


def engine_vs_torch(model: nn.Module, path: Path, x: torch.Tensor, rtol: float = 1e-4) -> np.ndarray:
    with torch.no_grad():
        want = model(x).numpy().astype(np.float64)
    got = run_everywhere(path, x.numpy())  # every ISA path, 1 and 2 threads: identical
    assert np.abs(got - want).max() <= rtol * max(1.0, np.abs(want).max()), np.abs(got - want).max()
    np.testing.assert_array_equal(got.argmax(1), want.argmax(1))
    return got


@pytest.mark.parametrize(("k", "act", "data"), [(2, "dorefa", "cifar"), (3, "dorefa", "mnist"), (3, "uint", "cifar")])
def test_kbit_convs_run_as_k_bconv2d(k: int, act: str, data: str, tmp_path: Path) -> None:
    channels = 3 if data == "cifar" else 1
    size = 32 if data == "cifar" else 28
    torch.manual_seed(0)  # (the converter's float64 reference rounds exact round() ties of q its own way)
    model = calibrate(SmallCNN(k, channels, act), (16, channels, size, size), data="rand")
    images = cifar_images(64) if data == "cifar" else mnist_images(64)
    path = tmp_path / "m.xbin"
    graph = convert(model, (images[:1],), output=path, calib=images)
    assert not graph.metadata["verification"]["problems"]
    got = kinds(graph)
    # conv1 and conv2 on k-bit inputs: k bconv2d each; fc1 on a 2-bit input: 2 blinear; only the stem
    # (on the image) and the float head stay float
    assert got.count("bconv2d") == 2 * k and got.count("blinear") == 2, got
    assert got.count("conv2d") == 1 and got.count("linear") == 1 and "bwconv2d" not in got, got
    # each k-bit activation becomes k `bitplane` ops (one pass over the float q each), nothing else
    assert got.count("bitplane") == 2 * k + 2 and "floor" not in got and "sign" not in got, got
    assert graph.metadata["bit_serial_layers"].keys() == {"conv1", "conv2", "fc1"}
    # conv1's quantizer (after the float stem's BN) folds into float32 thresholds, conv2's (after conv1, a
    # bit-serial layer) into integer thresholds on conv1's exact sum; fc1's reads a float average pool: float32
    assert "float32 thresholds" in graph.metadata["bit_serial_layers"]["conv1"]
    assert "integer thresholds" in graph.metadata["bit_serial_layers"]["conv2"]
    assert "float32 thresholds" in graph.metadata["bit_serial_layers"]["fc1"] and "round" not in got, got
    report = format_table(graph)
    assert f"bit-serial: conv1: {k}-bit activation as {k} binary layers" in report
    assert "bit-serial: fc1: 2-bit activation as 2 binary layers" in report
    engine_vs_torch(model, path, images)


def test_every_level_and_rounding_tie_of_q(tmp_path: Path) -> None:
    """Inputs on each level of q (and outside [0, 1]) give torch's q on every plane, and so do inputs whose
    float32 product x * 7 is exactly a tie m + 0.5 of round (half to even, as torch.round)."""
    k, n = 3, 7
    torch.manual_seed(0)
    conv = SignConv(4, 16, 3, padding=1, bias=False)
    model = nn.Sequential(DoReFaAct(k), conv).eval()
    ties = []
    for m in range(n):
        x0 = np.float32((m + 0.5) / n)
        for x1 in (np.nextafter(x0, np.float32(-1)), x0, np.nextafter(x0, np.float32(2))):
            if np.float32(x1) * np.float32(n) == np.float32(m + 0.5):
                ties.append(float(x1))
    assert len(ties) >= 3
    base = [-0.5, 0.0, 1.2, 2.0, *[m / n for m in range(n + 1)], *[(m + 0.3) / n for m in range(n)]]
    levels = np.array(base + ties)
    g = np.random.default_rng(0)
    x = torch.from_numpy(g.choice(levels, size=(24, 4, 6, 6)).astype(np.float32))
    path = tmp_path / "m.xbin"
    graph = convert(model, (x[:1],), output=path, calib=x)
    assert kinds(graph).count("bconv2d") == k
    assert not graph.metadata["verification"]["problems"]
    with torch.no_grad():
        want = model(x).numpy().astype(np.float64)
    got = run_everywhere(path, x.numpy()).transpose(0, 3, 1, 2)
    # float64 reference of the same integer arithmetic: the torch conv differs from it by float32 rounding only
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())


def test_weights_not_binary_or_levels_not_a_power_of_two_stay_float(tmp_path: Path) -> None:
    x = cifar_images(16)
    torch.manual_seed(0)
    real_weights = nn.Sequential(DoReFaAct(2), nn.Conv2d(3, 8, 3, padding=1)).eval()
    graph = convert(real_weights, (x[:1],), calib=x)
    assert "bconv2d" not in kinds(graph) and "conv2d" in kinds(graph)
    six_levels = UIntAct(2, 5.0)
    six_levels.n = 5.0  # round(clamp(x * 5, 0, 5)): 6 levels, not 2^k
    model = nn.Sequential(six_levels, SignConv(3, 8, 3, padding=1, bias=False)).eval()
    graph = convert(model, (x[:1],), calib=x)
    assert "bconv2d" not in kinds(graph) and not graph.metadata.get("bit_serial_layers")


def test_dorefa_resnet20_w1a2_every_quantized_conv_is_bit_serial(tmp_path: Path) -> None:
    """The real DoReFa code (tests/realcode/dorefa_resnet20.py, W1A2): 8 quantized convs -> 16 bconv2d."""
    m = load_fixture("dorefa_resnet20")
    net = m.make()
    model = nn.Sequential(net.conv0, *net.layers, net.bn, nn.AdaptiveAvgPool2d(1), nn.Flatten(), net.logit).eval()
    images = cifar_images(48)
    path = tmp_path / "dorefa.xbin"
    graph = convert(model, (images[:1],), output=path, calib=images)
    assert not graph.metadata["verification"]["problems"]
    quantized = [name for name, mod in model.named_modules() if hasattr(mod, "quantize_fn")]
    assert len(quantized) == 8 and sorted(graph.metadata["bit_serial_layers"]) == sorted(quantized)
    got = kinds(graph)
    assert got.count("bconv2d") == 2 * len(quantized) and got.count("conv2d") == 1, got
    # 2 activations per block, each split into its 2 planes once (the skip conv and conv0 share them), one
    # `bitplane` op per plane and no float op extracting them
    assert got.count("bitplane") == 2 * 2 * len(net.layers) and "floor" not in got and "sign" not in got, got
    # the exact integer sums differ from PyTorch's float32 conv by rounding; where a deep pre-activation
    # sits within that of a round() boundary one level of q flips and moves the logits a little (not a
    # rounding tie of round() itself: the reference's float32 fix does not remove this)
    engine_vs_torch(model, path, cifar_images(64), rtol=1e-2)


def test_zoo_dorefa_cnn_every_binary_layer_is_bit_serial(tmp_path: Path) -> None:
    """xnorinfer.zoo.dorefa_cnn (the models/dorefa-fmnist architecture): 4 W1A2 convs and a W1A2 linear read
    through a flatten, each as 2 binary layers on `bitplane` ops; only the stem and the classifier stay float."""
    from xnorinfer.zoo import dorefa_cnn

    torch.manual_seed(0)
    model = calibrate(dorefa_cnn(0.5), (16, 1, 28, 28), data="rand")
    images = mnist_images(64)
    path = tmp_path / "m.xbin"
    graph = convert(model, (images[:1],), output=path, calib=images)
    assert not graph.metadata["verification"]["problems"]
    got = kinds(graph)
    assert got.count("bconv2d") == 8 and got.count("blinear") == 2 and got.count("bitplane") == 10, got
    assert got.count("conv2d") == 1 and got.count("linear") == 1 and "bwlinear" not in got, got
    assert sorted(graph.metadata["bit_serial_layers"]) == ["12", "16", "3", "6", "9"]
    engine_vs_torch(model, path, images)


def test_float_thresholds_at_every_level_boundary(tmp_path: Path) -> None:
    """The folded float32 thresholds of round(clamp(x, 0, 1) * n): inputs exactly on each threshold and on its
    float32 neighbours give torch's q (a level off would move the output by alpha / n * 2^j)."""
    for k in (2, 3):
        torch.manual_seed(k)
        model = nn.Sequential(DoReFaAct(k), SignConv(5, 8, 1, bias=False)).eval()
        calib = torch.rand(4, 5, 3, 3)
        graph = convert(model, (calib[:1],), calib=calib)
        planes = [op for op in graph.ops if op.kind == "bitplane"]
        assert len(planes) == k and "round" not in kinds(graph), kinds(graph)
        t = planes[0].params["threshold"][:, 0]  # the same for every channel here
        xs = np.concatenate([t, np.nextafter(t, np.float32(-np.inf)), np.nextafter(t, np.float32(np.inf))])
        xs = xs[np.isfinite(xs)].astype(np.float32)
        x = torch.from_numpy(np.resize(xs, 6 * 5 * 4 * 4).reshape(6, 5, 4, 4))
        path = tmp_path / f"k{k}.xbin"
        convert(model, (x[:1],), output=path, calib=x)
        with torch.no_grad():
            want = model(x).numpy().astype(np.float64)
        got = run_everywhere(path, x.numpy()).transpose(0, 3, 1, 2)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())


class BrevitasTorchAct(nn.Module):
    """Brevitas's torch form of an unsigned k-bit quantizer: clamp(round(x / s), 0, n) * s."""

    def __init__(self, k: int, scale: float) -> None:
        super().__init__()
        self.n, self.s = float(2**k - 1), scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(torch.round(x / self.s), 0, self.n) * self.s


def test_brevitas_torch_form_runs_bit_serial_with_folded_thresholds(tmp_path: Path) -> None:
    """clamp(round(x / s), 0, n) * s (the clamp after the round) is a k-bit activation too: both quantizers
    fold, the first into float32 thresholds on the image, the second into integer ones on conv1's sum."""
    torch.manual_seed(0)
    model = nn.Sequential(
        BrevitasTorchAct(2, 0.3),
        SignConv(3, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16),
        BrevitasTorchAct(2, 0.3),
        SignConv(16, 8, 3, padding=1, bias=False),
    )
    model = calibrate(model, (16, 3, 32, 32), data="rand")
    images = cifar_images(48)
    path = tmp_path / "m.xbin"
    graph = convert(model, (images[:1],), output=path, calib=images)
    assert not graph.metadata["verification"]["problems"]
    got = kinds(graph)
    assert got.count("bconv2d") == 4 and got.count("bitplane") == 4 and "round" not in got, got
    layers = graph.metadata["bit_serial_layers"]
    assert "float32 thresholds" in layers["1"] and "integer thresholds" in layers["4"], layers
    with torch.no_grad():
        want = model(images).numpy().astype(np.float64)
    got = run_everywhere(path, images.numpy()).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * np.abs(want).max())
