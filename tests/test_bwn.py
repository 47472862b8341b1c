"""Binary-weight layers (BWN: ±alpha weights on float activations): the bwconv2d / bwlinear kernels on
every ISA path and thread count against float64 torch, and BWN models converted and run against
eager PyTorch (XNOR-Net's binary-weight networks: W_b = alpha * sign(W), alpha = mean |W|)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import ISAS, POOLS

from xnorinfer import _core
from xnorinfer.bits import pack_last
from xnorinfer.convert import ConversionError, convert
from xnorinfer.convert.report import format_table

U = 2.0**-24


def planes(t: np.ndarray) -> dict[str, np.ndarray]:
    """Sign bits and (with zeros) the non-zero mask of int {-1, 0, 1} weights (O, ..., I), packed along I."""
    p = {"weight": pack_last(t < 0)}
    if np.any(t == 0):
        p["mask"] = pack_last(t != 0)
    return p


def run_all(kind: str, attrs: dict, params: dict, x: np.ndarray, channels: int | None = None) -> np.ndarray:
    """The op on every ISA path x {1 thread, 2 threads}: the bytes must agree; returns one result.
    `channels`: the real channel count of a packed bits input."""
    ch = None if channels is None else [channels]
    outs = [_core.run_op(kind, attrs, params, [x], isa=isa, pool=pool, channels=ch) for isa in ISAS for pool in POOLS]
    for o in outs[1:]:
        assert o.tobytes() == outs[0].tobytes()
    return outs[0]


def torch_conv64(x_nhwc, w_ohwi, bias, stride, padding):
    y = F.conv2d(
        torch.from_numpy(x_nhwc.transpose(0, 3, 1, 2).astype(np.float64)),
        torch.from_numpy(w_ohwi.transpose(0, 3, 1, 2).astype(np.float64)),
        torch.from_numpy(bias.astype(np.float64)),
        stride,
        padding,
    )
    return y.numpy().transpose(0, 2, 3, 1)


def check_conv(rng, t, wp, wn, bias, x, stride, padding):
    """bwconv2d against float64 torch within the documented bound (docs/exactness.md)."""
    o, kh, kw, i = t.shape
    params = {**planes(t), "scale_pos": wp, "scale_neg": wn, "bias": bias}
    attrs = {"stride": list(stride), "padding": list(padding), "in_channels": i}
    got = run_all("bwconv2d", attrs, params, x)
    w = np.where(t > 0, wp[:, None, None, None], np.where(t < 0, -wn[:, None, None, None], 0.0)).astype(np.float64)
    want = torch_conv64(x, w, bias, stride, padding)
    mag = torch_conv64(np.abs(x), np.abs(w), np.abs(bias), stride, padding)  # sum |x * w| + |b|
    k = kh * kw * i
    assert got.shape == want.shape
    assert np.all(np.abs(got - want) <= (k + 2) * U * mag)
    return got


@pytest.mark.parametrize(
    "o, i, k, stride, padding, hw",
    [
        (16, 3, 3, (1, 1), (1, 1), (9, 8)),  # a first conv on an RGB image
        (70, 1, 3, (2, 1), (1, 0), (7, 6)),  # O across a word, a lane block tail on every path
        (7, 65, 1, (1, 1), (0, 0), (3, 4)),  # I across a word
        (130, 5, 5, (2, 2), (2, 2), (11, 10)),
        (1, 2, 2, (1, 3), (1, 1), (5, 9)),
    ],
)
def test_bwconv2d_every_path_against_float64(rng, o, i, k, stride, padding, hw):
    t = np.where(rng.random((o, k, k, i)) < 0.5, -1, 1)
    alpha = (rng.random(o) + 0.1).astype(np.float32)
    bias = rng.standard_normal(o).astype(np.float32)
    x = rng.standard_normal((3, *hw, i)).astype(np.float32)
    check_conv(rng, t, alpha, alpha, bias, x, stride, padding)


def test_bwconv2d_summation_order_is_the_documented_one(rng):
    """P and N sums in (ky, kx, c) order from +0, then fma(alpha, P, fma(-alpha, N, b)): float32 numpy."""
    o, i, k = 9, 4, 3
    t = np.where(rng.random((o, k, k, i)) < 0.5, -1, 1)
    alpha = (rng.random(o) + 0.5).astype(np.float32)
    bias = rng.standard_normal(o).astype(np.float32)
    x = (rng.standard_normal((1, 4, 4, i)) * 10.0 ** rng.integers(-3, 4, (1, 4, 4, i))).astype(np.float32)
    got = run_all(
        "bwconv2d",
        {"stride": [1, 1], "padding": [1, 1], "in_channels": i},
        {**planes(t), "scale_pos": alpha, "scale_neg": alpha, "bias": bias},
        x,
    )
    want = np.empty_like(got)
    for oy in range(4):
        for ox in range(4):
            for oc in range(o):
                p = n = np.float32(0)
                for ky in range(k):
                    for kx in range(k):
                        iy, ix = oy - 1 + ky, ox - 1 + kx
                        if not (0 <= iy < 4 and 0 <= ix < 4):
                            continue
                        for c in range(i):
                            if t[oc, ky, kx, c] > 0:
                                p = np.float32(p + x[0, iy, ix, c])
                            else:
                                n = np.float32(n + x[0, iy, ix, c])
                # fma in float64 is exact for float32 operands' product; one rounding to float32 each
                inner = np.float32(-np.float64(alpha[oc]) * np.float64(n) + np.float64(bias[oc]))
                want[0, oy, ox, oc] = np.float32(np.float64(alpha[oc]) * np.float64(p) + np.float64(inner))
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("o, f", [(10, 784), (65, 3), (1, 64), (33, 130)])
def test_bwlinear_every_path_against_float64(rng, o, f):
    t = np.where(rng.random((o, f)) < 0.5, -1, 1)
    alpha = (rng.random(o) + 0.1).astype(np.float32)
    bias = rng.standard_normal(o).astype(np.float32)
    x = rng.standard_normal((5, f)).astype(np.float32)
    got = run_all(
        "bwlinear", {"in_features": f}, {**planes(t), "scale_pos": alpha, "scale_neg": alpha, "bias": bias}, x
    )
    w = t * alpha[:, None].astype(np.float64)
    want = x.astype(np.float64) @ w.T + bias
    mag = np.abs(x).astype(np.float64) @ np.abs(w).T + np.abs(bias)
    assert np.all(np.abs(got - want) <= (f + 2) * U * mag)


def test_bwconv2d_without_bias_and_the_load_checks(rng):
    t = np.where(rng.random((4, 3, 3, 2)) < 0.5, -1, 1)
    one = np.ones(4, np.float32)
    x = rng.standard_normal((1, 5, 5, 2)).astype(np.float32)
    attrs = {"stride": [1, 1], "padding": [0, 0], "in_channels": 2}
    got = run_all("bwconv2d", attrs, {**planes(t), "scale_pos": one, "scale_neg": one}, x)
    np.testing.assert_allclose(got, torch_conv64(x, t.astype(np.float64), np.zeros(4), (1, 1), (0, 0)), atol=1e-5)
    w = planes(t)["weight"]
    with pytest.raises(ValueError, match="pad bits|beyond"):
        _core.run_op("bwconv2d", attrs, {"weight": w | (1 << 5), "scale_pos": one, "scale_neg": one}, [x])
    with pytest.raises(ValueError, match="mask is 0"):
        mask = pack_last(np.ones(t.shape, bool)) & ~np.uint64(1)
        _core.run_op("bwconv2d", attrs, {"weight": w | 1, "mask": mask, "scale_pos": one, "scale_neg": one}, [x])
    with pytest.raises(ValueError, match="scale_neg"):
        _core.run_op("bwconv2d", attrs, {"weight": w, "scale_pos": one, "scale_neg": one[:3]}, [x])
    with pytest.raises(ValueError, match="in_channels"):
        _core.run_op("bwconv2d", {**attrs, "in_channels": 65}, {"weight": w, "scale_pos": one, "scale_neg": one}, [x])


# --------------------------------------------------------------------------- models


class BWConv2d(nn.Conv2d):
    """XNOR-Net's binary-weight conv: alpha * sign(W) per output channel, float input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.weight.abs().mean(dim=(1, 2, 3), keepdim=True)
        return F.conv2d(x, alpha * torch.sign(self.weight), self.bias, self.stride, self.padding)


class BWLinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight.abs().mean(dim=1, keepdim=True) * torch.sign(self.weight), self.bias)


class BWNet(nn.Module):
    """A BWN: every conv / linear has binary weights, the activations stay float."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = BWConv2d(1, 16, 3, padding=1)
        self.b1 = nn.BatchNorm2d(16)
        self.c2 = BWConv2d(16, 32, 3, stride=2, padding=1, bias=False)
        self.b2 = nn.BatchNorm2d(32)
        self.fc = BWLinear(32 * 7 * 7, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.b1(self.c1(x))), 2)
        x = F.relu(self.b2(self.c2(x)))
        return self.fc(x.flatten(1))


def randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.5, generator=g)
            m.running_var.uniform_(0.5, 2.0, generator=g)
    return model.eval()


def test_bwn_model_converts_to_binary_weight_layers(tmp_path):
    torch.manual_seed(0)
    model = randomise_bn(BWNet())
    x = torch.randn(16, 1, 28, 28)
    path = tmp_path / "bwn.xbin"
    graph = convert(model, (x[:1],), calib=x.numpy(), output=path)
    kinds = [op.kind for op in graph.ops]
    assert kinds.count("bwconv2d") == 2 and kinds.count("bwlinear") == 1
    assert "conv2d" not in kinds and "linear" not in kinds
    report = format_table(graph)
    assert "binary-weight: c1: binary weights (BWN), ±alpha per output channel" in report
    assert "stayed float: c1" not in report and "looks meant to be binary" not in report
    import xnorinfer

    outs = [np.asarray(xnorinfer.load(path, threads=t).run(x.numpy(), isa=isa)) for isa in ISAS for t in (1, 2)]
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(outs[0], want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))
    np.testing.assert_array_equal(outs[0].argmax(1), want.argmax(1))


class FloatStem(nn.Module):
    """A plain float conv (latent weights) declared binary with --binarize, on the image."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.stem(x)).mean((2, 3)))


def test_binarize_on_a_float_input_makes_a_binary_weight_layer():
    torch.manual_seed(1)
    model = FloatStem().eval()
    graph = convert(model, (torch.randn(2, 3, 8, 8),), binarize=["stem"])
    assert [op.kind for op in graph.ops][0] == "bwconv2d"
    assert graph.metadata["binarized"]["stem"]["relative_error"] > 0.3  # latent Gaussian-like weights
    assert graph.metadata["verification"]["engine"]["top1_agreement"] == 1.0
    assert "binary-weight: stem: declared binary weights (BWN" in format_table(graph)


def test_binarize_pattern_matching_nothing_is_an_error(tmp_path, capsys):
    model = FloatStem().eval()
    with pytest.raises(ConversionError, match="'stme' matches no conv/linear layer.*stem"):
        convert(model, (torch.randn(2, 3, 8, 8),), binarize=["stme"], verify=False)
    from xnorinfer import cli

    pt2 = tmp_path / "stem.pt2"
    torch.export.save(torch.export.export(model, (torch.randn(2, 3, 8, 8),)), str(pt2))
    rc = cli.main(["convert", str(pt2), "-o", str(tmp_path / "s.xbin"), "--binarize", "nope*", "--no-verify"])
    assert rc != 0
    assert "'nope*' matches no conv/linear layer" in capsys.readouterr().err
    assert not (tmp_path / "s.xbin").exists()


def test_alpha_after_the_conv_joins_the_scales(tmp_path):
    """xnorinfer.nn's BinaryConv2d(weight_scale='mean') computes conv(x, sign W) * alpha: the multiply
    becomes the layer's scale_pos / scale_neg (no separate op)."""
    from xnorinfer.nn import BinaryConv2d, BinaryLinear

    torch.manual_seed(2)
    model = nn.Sequential(
        BinaryConv2d(3, 8, 3, padding=1, input_quantizer=None, weight_scale="mean"),
        nn.Flatten(),
        BinaryLinear(8 * 6 * 6, 5, input_quantizer=None, weight_scale="mean"),
    ).eval()
    x = torch.randn(8, 3, 6, 6)
    path = tmp_path / "alpha.xbin"
    graph = convert(model, (x[:1],), calib=x.numpy(), output=path)
    assert [op.kind for op in graph.ops] == ["bwconv2d", "flatten", "bwlinear"]
    alpha = model[0].weight.abs().mean(dim=(1, 2, 3)).detach().numpy()
    np.testing.assert_allclose(graph.ops[0].params["scale_pos"], alpha, rtol=1e-6)
    import xnorinfer

    got = np.asarray(xnorinfer.load(path).run(x.numpy()))
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))


class SEGate(nn.Module):
    """A squeeze-excitation gate whose 1x1 convs have ±alpha weights: convs of a pooled (N, C, 1, 1) vector."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.squeeze = BWConv2d(8, 4, 1)
        self.excite = BWConv2d(4, 8, 3, padding=1)  # only its centre tap sees the 1x1 vector

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.stem(x))
        g = torch.sigmoid(self.excite(F.relu(self.squeeze(F.adaptive_avg_pool2d(y, 1)))))
        return (y * g).mean((2, 3))


def test_binary_weights_on_a_pooled_vector_run_as_bwlinear(tmp_path):
    torch.manual_seed(3)
    model = SEGate().eval()
    x = torch.randn(4, 3, 8, 8)
    graph = convert(model, (x[:1],), calib=x.numpy())
    kinds = [op.kind for op in graph.ops]
    assert kinds.count("bwlinear") == 2 and "bwconv2d" not in kinds
    assert graph.metadata["verification"]["engine"]["top1_agreement"] == 1.0
    assert graph.metadata["verification"]["engine"]["max_abs_error"] < 1e-4
