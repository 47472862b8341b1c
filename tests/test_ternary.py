"""Ternary weights {-Wn, 0, +Wp} (TTQ, TWN): the bwconv2d / bwlinear kernels with a non-zero mask on
every ISA path and thread count against float64 torch; TTQ models (learned Wp / Wn, threshold delta)
converted and run against eager PyTorch; --binarize refusing ternary and multi-level weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import ISAS
from test_bwn import U, check_conv, planes, randomise_bn, run_all, torch_conv64

import xnorinfer
from xnorinfer import _core
from xnorinfer.bits import pack_last
from xnorinfer.convert import ConversionError, convert
from xnorinfer.convert.report import format_table


@pytest.mark.parametrize(
    "o, i, k, stride, padding, hw",
    [(16, 3, 3, (1, 1), (1, 1), (8, 8)), (70, 9, 3, (2, 2), (1, 1), (9, 7)), (5, 66, 1, (1, 1), (0, 0), (3, 3))],
)
def test_ternary_conv_every_path_against_float64(rng, o, i, k, stride, padding, hw):
    t = rng.integers(-1, 2, (o, k, k, i))
    t[0] = 0  # an output channel with no live weight: bias only
    wp = (rng.random(o) + 0.1).astype(np.float32)
    wn = (rng.random(o) + 0.1).astype(np.float32)
    bias = rng.standard_normal(o).astype(np.float32)
    x = rng.standard_normal((2, *hw, i)).astype(np.float32)
    got = check_conv(rng, t, wp, wn, bias, x, stride, padding)
    np.testing.assert_array_equal(got[..., 0], np.broadcast_to(bias[0], got.shape[:-1]))


def test_ternary_linear_on_pm1_input_is_exact(rng):
    """On ±1 inputs every partial sum is a small integer: the result is fma(Wp, P, fma(-Wn, N, b)) exactly."""
    o, f = 12, 300
    t = rng.integers(-1, 2, (o, f))
    wp = (rng.random(o) + 0.1).astype(np.float32)
    wn = (rng.random(o) + 0.1).astype(np.float32)
    bias = rng.standard_normal(o).astype(np.float32)
    x = np.where(rng.random((4, f)) < 0.5, -1.0, 1.0).astype(np.float32)
    got = run_all("bwlinear", {"in_features": f}, {**planes(t), "scale_pos": wp, "scale_neg": wn, "bias": bias}, x)
    p = x.astype(np.float64) @ (t > 0).T.astype(np.float64)
    n = x.astype(np.float64) @ (t < 0).T.astype(np.float64)
    # float64 fma of float32 operands with |P|, |N| <= 300: each product exact, one rounding per fma
    inner = (-wn.astype(np.float64) * n + bias).astype(np.float32)
    want = (wp.astype(np.float64) * p + inner.astype(np.float64)).astype(np.float32)
    np.testing.assert_array_equal(got, want)
    w = np.where(t > 0, wp[:, None], np.where(t < 0, -wn[:, None], 0)).astype(np.float64)
    assert np.all(np.abs(got - (x @ w.T + bias)) <= (f + 2) * U * (np.abs(x) @ np.abs(w).T + np.abs(bias)))


@pytest.mark.parametrize(
    "o, i, k, stride, padding, hw",
    [(16, 3, 3, (1, 1), (1, 1), (6, 7)), (70, 130, 3, (2, 1), (1, 2), (5, 6)), (9, 64, 1, (1, 1), (0, 0), (3, 2))],
)
def test_tbconv2d_on_bits_every_path_exact(rng, o, i, k, stride, padding, hw):
    """Ternary weights on packed ±1 inputs: the integer sums P, N against numpy int64, then the two fmas
    (float64 of float32 operands and integers below 2^24: the product is exact, one rounding per fma);
    the same bytes as bwconv2d on the unpacked ±1.0 input."""
    t = rng.integers(-1, 2, (o, k, k, i))
    wp = (rng.random(o) + 0.1).astype(np.float32)
    wn = (rng.random(o) + 0.1).astype(np.float32)
    bias = rng.standard_normal(o).astype(np.float32)
    s = np.where(rng.random((2, *hw, i)) < 0.5, -1, 1)
    params = {"weight": pack_last(t < 0), "mask": pack_last(t != 0), "scale_pos": wp, "scale_neg": wn, "bias": bias}
    attrs = {"stride": list(stride), "padding": list(padding), "in_channels": i}
    got = run_all("tbconv2d", attrs, params, pack_last(s < 0), i)
    p = torch_conv64(s, (t > 0).astype(np.float64), np.zeros(o), stride, padding)  # exact small integers
    n = torch_conv64(s, (t < 0).astype(np.float64), np.zeros(o), stride, padding)
    inner = (-wn.astype(np.float64) * n + bias).astype(np.float32).astype(np.float64)
    want = (wp.astype(np.float64) * p + inner).astype(np.float32)
    np.testing.assert_array_equal(got, want)
    same = run_all("bwconv2d", attrs, params, s.astype(np.float32))
    assert same.tobytes() == got.tobytes()


def test_tblinear_on_bits_and_load_checks(rng):
    o, f = 20, 200
    t = rng.integers(-1, 2, (o, f))
    one = np.ones(o, np.float32)
    s = np.where(rng.random((3, f)) < 0.5, -1, 1)
    params = {"weight": pack_last(t < 0), "mask": pack_last(t != 0), "scale_pos": one, "scale_neg": one}
    got = run_all("tblinear", {"in_features": f}, params, pack_last(s < 0), f)
    np.testing.assert_array_equal(got, (s @ t.T).astype(np.float32))
    with pytest.raises(ValueError, match="mask"):
        _core.run_op(
            "tblinear",
            {"in_features": f},
            {**params, "mask": params["mask"] & np.uint64(0)},
            [pack_last(s < 0)],
            channels=[f],
        )


# --------------------------------------------------------------------------- models


class TTQConv2d(nn.Conv2d):
    """Trained ternary quantization (Zhu et al. 2017): w_t = Wp if w > delta, -Wn if w < -delta, else 0,
    delta = t * max|w|, with learned per-layer Wp and Wn."""

    def __init__(self, *args, t: float = 0.3, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.t = t
        self.wp = nn.Parameter(torch.tensor(1.3))
        self.wn = nn.Parameter(torch.tensor(0.7))

    def ternary_weight(self) -> torch.Tensor:
        w = self.weight
        delta = self.t * w.abs().max()
        return torch.where(w > delta, self.wp, torch.where(w < -delta, -self.wn, torch.zeros_like(w)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.ternary_weight(), self.bias, self.stride, self.padding)


class TTQLinear(nn.Linear):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.wp = nn.Parameter(torch.tensor(0.9))
        self.wn = nn.Parameter(torch.tensor(1.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        delta = 0.3 * w.abs().max()
        wt = torch.where(w > delta, self.wp, torch.where(w < -delta, -self.wn, torch.zeros_like(w)))
        return F.linear(x, wt, self.bias)


class TTQNet(nn.Module):
    """Ternary weights on the image (float input) and after a sign (binary input)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = TTQConv2d(1, 16, 3, padding=1)
        self.b1 = nn.BatchNorm2d(16)
        self.c2 = TTQConv2d(16, 16, 3, padding=1, bias=False)
        self.b2 = nn.BatchNorm2d(16)
        self.fc = TTQLinear(16 * 7 * 7, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.b1(self.c1(x)), 2)
        x = torch.where(x < 0, -1.0, 1.0)  # a binary activation: c2 reads ±1
        x = F.max_pool2d(F.relu(self.b2(self.c2(x))), 2)
        return self.fc(x.flatten(1))


def test_ttq_model_converts_to_ternary_layers(tmp_path):
    torch.manual_seed(0)
    model = randomise_bn(TTQNet())
    assert float((model.c1.ternary_weight() == 0).float().mean()) > 0.2  # really ternary
    x = torch.randn(16, 1, 28, 28)
    path = tmp_path / "ttq.xbin"
    graph = convert(model, (x[:1],), calib=x.numpy(), output=path)
    kinds = [op.kind for op in graph.ops]
    # c1 reads the image (float), c2 a sign (bits: popcounts), fc a relu (float)
    assert [k for k in kinds if k[:2] in ("bw", "tb")] == ["bwconv2d", "tbconv2d", "bwlinear"]
    assert "conv2d" not in kinds and "linear" not in kinds and "unpack" not in kinds
    assert all("mask" in op.params for op in graph.ops if op.kind[:2] in ("bw", "tb"))
    report = format_table(graph)
    for layer in ("c1", "c2", "fc"):
        assert f"ternary: {layer}: ternary weights {{-Wn, 0, +Wp}}" in report
    assert "stayed float" not in report
    outs = [np.asarray(xnorinfer.load(path, threads=t).run(x.numpy(), isa=isa)) for isa in ISAS for t in (1, 2)]
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(outs[0], want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))
    np.testing.assert_array_equal(outs[0].argmax(1), want.argmax(1))


class SignThenConv(nn.Module):
    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.conv = nn.Conv2d(weight.shape[1], weight.shape[0], 3, padding=1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.where(x < 0, -1.0, 1.0)).mean((2, 3))


def test_binarize_refuses_ternary_weights_unless_forced():
    g = torch.Generator().manual_seed(3)
    t = torch.randint(-1, 2, (8, 4, 3, 3), generator=g).float()
    model = SignThenConv(t * 0.5).eval()
    x = torch.randn(2, 4, 6, 6)
    plain = convert(model, (x,))  # without --binarize: exact, a ternary layer
    assert [op.kind for op in plain.ops if op.kind.startswith(("b", "t"))] == ["tbconv2d"]
    with pytest.raises(
        ConversionError, match=r"conv: --binarize.*ternary.*relative weight error 0\.\d+ > 0\.1.*--force"
    ):
        convert(model, (x,), binarize=["conv"], verify=False)
    forced = convert(model, (x,), binarize=["conv"], force=True, verify=False)
    assert forced.metadata["binarized"]["conv"]["relative_error"] > 0.1
    assert "bconv2d" in [op.kind for op in forced.ops]


def test_binarize_refuses_multi_level_weights_unless_forced():
    g = torch.Generator().manual_seed(4)
    levels = torch.tensor([-3.0, -1.0, 1.0, 3.0])  # 2-bit weights
    w = levels[torch.randint(0, 4, (8, 4, 3, 3), generator=g)] * 0.1
    model = SignThenConv(w).eval()
    x = torch.randn(2, 4, 6, 6)
    with pytest.raises(ConversionError, match="multi-level, at most 4 distinct values"):
        convert(model, (x,), binarize=["conv"], verify=False)
    assert convert(model, (x,), binarize=["conv"], force=True, verify=False).metadata["binarized"]["conv"]


def test_cli_binarize_on_ternary_weights_fails_with_the_hint(tmp_path, capsys):
    from xnorinfer import cli

    g = torch.Generator().manual_seed(5)
    model = SignThenConv(torch.randint(-1, 2, (8, 4, 3, 3), generator=g).float() * 0.25).eval()
    pt2 = tmp_path / "ternary.pt2"
    torch.export.save(torch.export.export(model, (torch.randn(2, 4, 6, 6),)), str(pt2))
    out = tmp_path / "t.xbin"
    rc = cli.main(["convert", str(pt2), "-o", str(out), "--binarize", "conv", "--no-verify"])
    err = capsys.readouterr().err
    assert rc != 0 and not out.exists()
    assert "without --binarize it converts exactly as a ternary layer" in err and "--force" in err
    assert cli.main(["convert", str(pt2), "-o", str(out), "--binarize", "conv", "--no-verify", "--force"]) == 0
    assert out.exists()
