"""ABC-Net with merged bases runs as M x N binary layers (issue 15; patterns_multilevel.MultiLevelBases).

conv(sum_n beta_n A_n, sum_m alpha_m B_m) as xnorinfer.nn.ABCConv2d / ABCLinear (and hand-written
variants) is split into one bconv2d / blinear per (activation base, weight step); checked against
eager PyTorch on real Fashion-MNIST / CIFAR-10 test images, on every ISA path and two thread counts,
with the converter's verification (binary activations bit-exact) on the same images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from realcode_support import calibrate, run_everywhere

from xnorinfer import datasets
from xnorinfer.convert import convert
from xnorinfer.convert.patterns_multilevel import weight_staircase
from xnorinfer.convert.report import format_table
from xnorinfer.convert.shift_threshold import folded_threshold
from xnorinfer.nn import ABCActivation, ABCConv2d, ABCLinear, abc_weight_bases

DATA = Path(__file__).resolve().parent / "data"


def fmnist_images(n: int) -> torch.Tensor:
    images, _, _ = datasets.load("fashion-mnist", DATA, "test")
    x = images[:n].astype(np.float32) / 255.0
    return torch.from_numpy((x - 0.5) / 0.5).reshape(n, 1, 28, 28)


def cifar_images(n: int) -> torch.Tensor:
    images, _, _ = datasets.load("cifar10", DATA, "test")
    x = images[:: max(1, len(images) // n)][:n].astype(np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2) if x.shape[-1] == 3 else x))


def kinds(graph) -> list[str]:
    return [op.kind for op in graph.ops]


def randomize_abc(model: nn.Module, seed: int) -> nn.Module:
    """Spread the learned ABC parameters (alpha of both signs, betas, shifts) away from their init."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, ABCActivation):
                m.beta.copy_(torch.rand(m.bases, generator=g) * 0.8 + 0.1)
                m.shift.add_(torch.randn(m.bases, generator=g) * 0.1)
            if isinstance(m, (ABCConv2d, ABCLinear)):
                m.alpha.mul_(torch.rand(m.weight_bases, generator=g) + 0.5)
    return model


class SmallABC(nn.Module):
    """float stem + BN; a padded ABC conv (M, N), BN, max-pool; a strided unpadded ABC conv with a bias,
    BN; an ABC linear, BN; a float head."""

    def __init__(self, m: int, n: int, channels: int = 1) -> None:
        super().__init__()
        self.stem = nn.Conv2d(channels, 16, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(16)
        self.conv1 = ABCConv2d(16, 24, 3, padding=1, weight_bases=m, activation_bases=n)
        self.bn1 = nn.BatchNorm2d(24)
        self.conv2 = ABCConv2d(24, 32, 3, stride=2, bias=True, weight_bases=m, activation_bases=n)
        self.bn2 = nn.BatchNorm2d(32)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc1 = ABCLinear(128, 40, weight_bases=m, activation_bases=n)
        self.bn3 = nn.BatchNorm1d(40)
        self.fc2 = nn.Linear(40, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.bn1(self.conv1(self.bn0(self.stem(x)))), 2)
        x = torch.flatten(self.pool(self.bn2(self.conv2(x))), 1)
        return self.fc2(self.bn3(self.fc1(x)))


def engine_vs_torch(model: nn.Module, path: Path, x: torch.Tensor, rtol: float = 1e-4) -> np.ndarray:
    with torch.no_grad():
        want = model(x).numpy().astype(np.float64)
    got = run_everywhere(path, x.numpy())  # every ISA path, 1 and 2 threads: identical bytes
    assert np.abs(got - want).max() <= rtol * max(1.0, np.abs(want).max()), np.abs(got - want).max()
    np.testing.assert_array_equal(got.argmax(1), want.argmax(1))
    return got


@pytest.mark.parametrize(("m", "n", "data"), [(3, 3, "fmnist"), (2, 1, "fmnist"), (1, 2, "cifar"), (3, 2, "cifar")])
def test_abc_layers_run_as_m_times_n_binary_layers(m: int, n: int, data: str, tmp_path: Path) -> None:
    channels = 3 if data == "cifar" else 1
    size = 32 if data == "cifar" else 28
    torch.manual_seed(m * 10 + n)
    model = randomize_abc(SmallABC(m, n, channels), seed=n)
    model = calibrate(model, (16, channels, size, size))  # random BN (some gamma < 0), running stats
    images = fmnist_images(48) if data == "fmnist" else cifar_images(48)
    path = tmp_path / "m.xbin"
    graph = convert(model, (images[:1],), output=path, calib=images)
    v = graph.metadata["verification"]
    assert not v["problems"], v["problems"]
    assert v["layers"] and all(layer["mismatches"] == 0 for layer in v["layers"].values()), v["layers"]
    got = kinds(graph)
    # every ABC layer: n activation bases x m weight steps (ABC-Net's nested bases give m + 1 levels)
    assert got.count("bconv2d") == 2 * m * n and got.count("blinear") == m * n, got
    # only the stem (on the image) and the float head stay float
    assert got.count("conv2d") == 1 and got.count("linear") == 1 and "bwconv2d" not in got, got
    assert {op.name for op in graph.ops if op.kind == "bconv2d"} == {"conv1", "conv2"}
    # each activation base is one sign reading R (the BN output): its shift v_n is in the threshold
    quantizers = [op for op in graph.ops if "input_quantizer" in op.name]
    assert {op.kind for op in quantizers} == {"sign"} and len(quantizers) == 3 * n, kinds(graph)
    producer = {out: op for op in graph.ops for out in op.outputs}
    for layer, r_kind in (("conv1", "affine"), ("conv2", "maxpool2d"), ("fc1", "flatten")):
        (r,) = {op.inputs[0] for op in quantizers if op.name.startswith(f"{layer}.")}  # (R: bn0, pool, flatten)
        assert producer[r].kind == r_kind and "input_quantizer" not in producer[r].name, (layer, producer[r])
    assert graph.metadata["bit_serial_layers"].keys() == {"conv1", "conv2", "fc1"}
    report = format_table(graph)
    assert f"bit-serial: conv1: {n} activation base(s) x {m} weight base(s) as {m * n} binary layers" in report
    assert "float_layers" not in graph.metadata or not {"conv1", "conv2", "fc1"} & graph.metadata["float_layers"].keys()
    engine_vs_torch(model, path, images)


class HandWrittenABC(nn.Module):
    """The paper's equations written out (no xnorinfer.nn): per-layer mean/std bases, a signs sum with
    torch.sign-free STE forms, an unbalanced weight whose staircase has a non-zero offset."""

    def __init__(self, alpha3: float, offset: float) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(7)
        latent = torch.randn(12, 6, 3, 3, generator=g)
        bases = abc_weight_bases(latent, [-0.5, 0.3, 1.2])
        self.register_buffer("w", 0.4 * bases[0] + 0.25 * bases[1] + alpha3 * bases[2] + offset)
        self.bn = nn.BatchNorm2d(6)
        self.bn_out = nn.BatchNorm2d(12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.bn(x)
        a1 = torch.where(r >= 0.3, 1.0, -1.0)  # a sign at a threshold
        a2 = (torch.clamp(r + 0.5, 0, 1) >= 0.5).float() * 2 - 1  # ABC-Net's H_v
        a3 = torch.where(r < -0.7, -1.0, 1.0)
        merged = 0.7 * a1 + a2 * 0.4 - 0.2 * a3
        return self.bn_out(F.conv2d(merged, self.w, padding=1)).mean((2, 3))


@pytest.mark.parametrize(("alpha3", "offset"), [(0.1, 0.0), (-0.1, 0.0), (0.1, 0.05)])
def test_hand_written_merged_bases_with_an_offset(alpha3: float, offset: float, tmp_path: Path) -> None:
    model = calibrate(HandWrittenABC(alpha3, offset), (8, 6, 10, 10))
    # the staircase's offset (min + max) / 2 per output channel: 0 for positive alphas and no offset
    w = model.w.double()
    has_offset = bool(torch.any(w.amin(dim=(1, 2, 3)) + w.amax(dim=(1, 2, 3)) != 0))
    assert has_offset == (alpha3 < 0 or offset != 0)
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(16, 6, 10, 10)).astype(np.float32))
    path = tmp_path / "h.xbin"
    graph = convert(model, (x[:1],), output=path, calib=x)
    assert not graph.metadata["verification"]["problems"]
    planes = 3 * 3 + (3 if has_offset else 0)  # 3 activation bases x 3 steps (+ one all-ones conv per base)
    assert kinds(graph).count("bconv2d") == planes and "conv2d" not in kinds(graph), kinds(graph)
    (how,) = graph.metadata["bit_serial_layers"].values()
    assert ("offset plane" in how) == has_offset
    engine_vs_torch(model, path, x)


def test_weight_staircase_is_exact_and_per_channel() -> None:
    rng = np.random.default_rng(3)
    levels = np.array([[-0.7, -0.1, 0.2, 0.9], [0.3, 0.3, 0.5, 0.5], [-1.0, 2.0, 2.0, 2.0]], np.float32)
    w = np.stack([rng.choice(levels[o], size=(5, 3, 3)) for o in range(3)]).astype(np.float32)
    w[1, 0, 0, 0], w[1, 0, 0, 1] = 0.3, 0.5  # (each channel holds all its levels)
    w[2, 0, 0, 0], w[2, 0, 0, 1] = -1.0, 2.0
    stairs = weight_staircase(w)
    assert stairs is not None
    planes, a, c = stairs
    assert planes.shape == (3, *w.shape) and set(np.unique(planes)) <= {-1.0, 1.0}
    np.testing.assert_array_equal(c[:, None, None, None] + np.einsum("jo,joxyz->oxyz", a, planes), w)
    assert np.count_nonzero(a[:, 1]) == 1 and np.count_nonzero(a[:, 2]) == 1  # fewer levels: zero steps
    # continuous (latent) weights are not a staircase
    assert weight_staircase(rng.normal(size=(4, 8, 3, 3)).astype(np.float32)) is None


def test_binarize_still_declares_a_multi_level_layer_binary() -> None:
    """A --binarize pattern keeps its meaning on a multi-level layer (sign * mean|W|, not the exact planes)."""

    class SignThenConv(nn.Module):
        def __init__(self, w: torch.Tensor) -> None:
            super().__init__()
            self.conv = nn.Conv2d(w.shape[1], w.shape[0], 3, bias=False)
            self.conv.weight.data.copy_(w)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(torch.where(x < 0, -1.0, 1.0)).mean((2, 3))

    g = torch.Generator().manual_seed(4)
    w = torch.tensor([-3.0, -1.0, 1.0, 3.0])[torch.randint(0, 4, (8, 4, 3, 3), generator=g)] * 0.1
    model = SignThenConv(w).eval()
    x = torch.randn(4, 4, 6, 6)
    exact = convert(model, (x,), calib=x)  # without --binarize: 3 exact planes
    assert kinds(exact).count("bconv2d") == 3 and not exact.metadata["verification"]["problems"]
    forced = convert(model, (x,), binarize=["conv"], force=True, verify=False)
    assert kinds(forced).count("bconv2d") == 1 and forced.metadata["binarized"]["conv"]


def test_abc_layers_train() -> None:
    """The layers learn (STE): a few Adam steps lower the loss of a tiny ABC-Net on real images."""
    torch.manual_seed(0)
    x = fmnist_images(64)
    _, labels, _ = datasets.load("fashion-mnist", DATA, "test")
    y = torch.from_numpy(labels[:64].astype(np.int64))
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        ABCConv2d(8, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.MaxPool2d(4),
        nn.Flatten(),
        ABCLinear(8 * 49, 10),
        nn.BatchNorm1d(10),
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    conv = model[2]
    assert conv.weight.grad is not None and conv.alpha.grad is not None and conv.input_quantizer.shift.grad is not None


def torch_boundary(v: float, t: float, strict: bool) -> np.float32:
    """The least float32 x with fl32(x + v) >= t (> t when strict) as eager PyTorch decides it: step from
    float32(t - v) one float32 at a time (an independent check of the converter's bisection)."""
    v32 = torch.tensor(v, dtype=torch.float32)

    def up(x: np.float32) -> bool:
        y = torch.tensor(x, dtype=torch.float32) + v32
        return bool(y > t) if strict else bool(y >= t)

    x = np.float32(t - v)
    while up(x):
        x = np.nextafter(x, np.float32(-np.inf))
    while not up(x):
        x = np.nextafter(x, np.float32(np.inf))
    return x


SHIFTS = [0.1, -0.3333333, 0.7771, 1e-3, 123.456, -2.5e-6, 0.0, 0.4999, 0.3, -0.3699, -0.5]


@pytest.mark.parametrize("sign_zero", ["+1", "-1"])
@pytest.mark.parametrize("t", [0.5, -0.37, 0.0, 1e-30])
def test_folded_threshold_is_where_pytorch_rounding_flips(sign_zero: str, t: float) -> None:
    v = np.array(SHIFTS, np.float32).astype(np.float64)
    t32 = float(np.float32(t))
    got = folded_threshold(v, np.full(len(v), t32), sign_zero)
    assert got is not None
    for vn, g in zip(v, got, strict=True):
        least_up = torch_boundary(float(vn), t32, strict=sign_zero == "-1")
        # "+1": +1 iff x >= t'; "-1": +1 iff x > t', t' the greatest x on the -1 side
        want = least_up if sign_zero == "+1" else np.nextafter(least_up, np.float32(-np.inf))
        assert np.float32(g) == want, (vn, t32, g, want)
    # the fold is not t - v: float32 rounding of x + v moves it for some of these shifts (v near t)
    naive = (np.float32(t32) - v.astype(np.float32)).astype(np.float64)
    assert t in (0.0, 1e-30) or np.count_nonzero(naive != got) >= 2, (naive, got)
    # non-float32 or non-finite constants are left alone (the affine stays)
    assert folded_threshold(np.array([0.1]), np.array([0.5]), "+1") is None
    assert folded_threshold(np.array([np.inf]), np.array([0.5]), "+1") is None
    assert folded_threshold(np.array([0.5]), np.array([0.5]), "0") is None


class ABCOnInput(nn.Module):
    """R = the input: ABC-Net's activation bases (betas 1, 2, 4) -> a ±1 conv, so the output is an exact integer
    sum that changes with every base bit."""

    def __init__(self, shifts: list[float]) -> None:
        super().__init__()
        self.act = ABCActivation(len(shifts))
        with torch.no_grad():
            self.act.shift.copy_(torch.tensor(shifts))
            self.act.beta.copy_(2.0 ** torch.arange(len(shifts), dtype=torch.float32))
        g = torch.Generator().manual_seed(5)
        self.register_buffer("w", torch.where(torch.rand(6, 8, 3, 3, generator=g) < 0.5, -1.0, 1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(self.act(x), self.w, padding=1)


def test_abc_bases_bit_exact_on_their_thresholds(tmp_path: Path) -> None:
    shifts = [0.4999, -0.3333333, 0.3]  # (0.4999, 0.3: the boundary is not float32(0.5 - v))
    model = ABCOnInput(shifts).eval()
    rng = np.random.default_rng(11)
    x = rng.normal(size=(8, 8, 9, 9)).astype(np.float32)
    # every base's boundary (as eager PyTorch decides it), its float32 neighbours, and the naive 0.5 - v
    special = []
    for v in np.array(shifts, np.float32):
        b = torch_boundary(float(v), 0.5, strict=False)
        special += [b, np.nextafter(b, np.float32(-1)), np.nextafter(b, np.float32(2)), np.float32(0.5) - v]
        special.append(np.float32(0.5 - float(v)))
    place(x.reshape(-1), special, 40, rng)
    signs_read_the_input_bit_exact(model, x, 3, tmp_path)


def place(flat: np.ndarray, values: list[np.float32], copies: int, rng: np.random.Generator) -> None:
    """Write each value at `copies` distinct random positions of `flat` (a view)."""
    where = rng.choice(flat.size, size=(len(values), copies), replace=False)
    for value, idx in zip(values, where, strict=True):
        flat[idx] = value


def signs_read_the_input_bit_exact(model: nn.Module, x: np.ndarray, bases: int, tmp_path: Path):
    """Convert (verification on x), check each base is one sign reading the graph input (no float op before
    it) feeding one bconv2d, and the engine's integer output equal to eager PyTorch's on every ISA x 1/2
    threads (a flipped base bit changes it)."""
    xt = torch.from_numpy(x)
    path = tmp_path / "on_input.xbin"
    graph = convert(model, (xt[:1],), output=path, calib=xt)
    assert not graph.metadata["verification"]["problems"], graph.metadata["verification"]["problems"]
    signs = [op for op in graph.ops if op.kind == "sign"]
    assert len(signs) == bases and {op.inputs[0] for op in signs} == set(graph.inputs), graph.ops
    assert kinds(graph).count("bconv2d") == bases and not {"affine", "binary"} & set(kinds(graph)), kinds(graph)
    with torch.no_grad():
        want = model(xt).numpy()
    got = run_everywhere(path, x).transpose(0, 3, 1, 2)  # (the engine writes NHWC)
    np.testing.assert_array_equal(got, want)  # integers: every base bit as PyTorch's
    return graph


class ChannelShiftsOnInput(nn.Module):
    """Per-channel shifts before thresholded signs: sign(x - b >= 0.2) and sign(x + c > -0.4) (strict: sign(t) =
    -1), summed with betas 1, 2 into a ±1 conv (exact integer output)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(9)
        self.register_buffer("b", (torch.rand(1, 8, 1, 1, generator=g) - 0.5) * 0.9)
        self.register_buffer("c", (torch.rand(1, 8, 1, 1, generator=g) - 0.5) * 0.9)
        self.register_buffer("w", torch.where(torch.rand(4, 8, 3, 3, generator=g) < 0.5, -1.0, 1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a0 = torch.where(x - self.b >= 0.2, 1.0, -1.0)
        a1 = torch.where(x + self.c > -0.4, 1.0, -1.0)
        return F.conv2d(a0 + 2.0 * a1, self.w, padding=1)


def test_per_channel_shifts_fold_bit_exact(tmp_path: Path) -> None:
    model = ChannelShiftsOnInput().eval()
    rng = np.random.default_rng(12)
    x = rng.normal(size=(6, 8, 7, 7)).astype(np.float32) * 0.5
    for ch in range(8):  # each channel's two boundaries (as eager PyTorch decides them) and their neighbours
        b0 = torch_boundary(-float(model.b[0, ch, 0, 0]), 0.2, strict=False)
        b1 = torch_boundary(float(model.c[0, ch, 0, 0]), -0.4, strict=True)
        values = [v for b in (b0, b1) for v in (b, np.nextafter(b, np.float32(-1)), np.nextafter(b, np.float32(1)))]
        plane = x[:, ch].reshape(-1)
        place(plane, values, 20, rng)
        x[:, ch] = plane.reshape(x[:, ch].shape)
    graph = signs_read_the_input_bit_exact(model, x, 2, tmp_path)
    assert {op.attrs["sign_zero"] for op in graph.ops if op.kind == "sign"} == {"+1", "-1"}
