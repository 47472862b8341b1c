"""A sign after a ternary-weight layer fused into it (tbconv2d / tblinear output "bits").

Asymmetric scales (TTQ's Wp != Wn): the fused op computes the float epilogue, the affine and the
compare in one pass; its bits equal tbconv2d (float) -> affine -> sign run one after the other, byte for
byte, on every ISA path and thread count, ties at the threshold included. Symmetric scales: an integer
threshold on P - N, checked against exact rational arithmetic over every possible sum. Then TTQ networks
with binary activations (a sign before each ternary layer) convert to fused ops and match eager PyTorch
and the unfused conversion.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import ISAS
from test_bwn import randomise_bn, run_all
from test_ternary import TTQConv2d, TTQLinear

import xnorinfer
from xnorinfer import _core
from xnorinfer.bits import pack_last, unpack_last
from xnorinfer.convert import convert, pipeline
from xnorinfer.convert.ternary_sign import integer_threshold


def _ternary_params(rng, t, symmetric: bool, bias: bool) -> dict[str, np.ndarray]:
    o = t.shape[0]
    wp = (rng.random(o) + 0.1).astype(np.float32)
    wn = wp.copy() if symmetric else (rng.random(o) + 0.1).astype(np.float32)
    p = {"weight": pack_last(t < 0), "mask": pack_last(t != 0), "scale_pos": wp, "scale_neg": wn}
    if bias:
        p["bias"] = rng.standard_normal(o).astype(np.float32)
    return p


def _unfused(kind, attrs, params, x, channels, scale, shift, thr, zero):
    """tbconv2d / tblinear (float), then affine, then sign: each op on every ISA path and pool."""
    y = run_all(kind, attrs, params, x, channels)
    z = run_all("affine", {}, {"scale": scale, "shift": shift}, y)
    return z, run_all("sign", {"sign_zero": zero}, {"threshold": thr}, z)


CASES = [
    ("tbconv2d", 16, 3, 3, (1, 1), (1, 1), (6, 7)),
    ("tbconv2d", 70, 130, 3, (2, 1), (1, 2), (5, 6)),  # two output words, the second partial
    ("tbconv2d", 128, 64, 1, (1, 1), (0, 0), (3, 2)),  # two full output words
    ("tblinear", 9, 200, 1, None, None, None),
    ("tblinear", 65, 70, 1, None, None, None),
]


@pytest.mark.parametrize("zero", ["+1", "-1"])
@pytest.mark.parametrize("kind, o, i, k, stride, padding, hw", CASES)
def test_float_epilogue_sign_is_the_unfused_ops_bit_for_bit(rng, kind, o, i, k, stride, padding, hw, zero):
    conv = kind == "tbconv2d"
    t = rng.integers(-1, 2, (o, k, k, i) if conv else (o, i))
    t[0] = 0  # a channel with no live weight
    params = _ternary_params(rng, t, symmetric=False, bias=True)
    attrs = {"stride": list(stride), "padding": list(padding), "in_channels": i} if conv else {"in_features": i}
    s = np.where(rng.random((2, *hw, i) if conv else (5, i)) < 0.5, -1, 1)
    x = pack_last(s < 0)
    scale = rng.standard_normal(o).astype(np.float32)  # some negative (a BN with gamma < 0)
    scale[1] = 0.0
    shift = rng.standard_normal(o).astype(np.float32)
    thr = rng.standard_normal(o).astype(np.float32) * 0.1
    z, want = _unfused(kind, attrs, params, x, i, scale, shift, thr, zero)
    zf = z.reshape(-1, o)
    thr[2:6] = zf[0, 2:6]  # exact ties: sign_zero decides them
    z, want = _unfused(kind, attrs, params, x, i, scale, shift, thr, zero)
    assert np.any(z.reshape(-1, o)[:, 2:6] == thr[2:6])
    fused = {**params, "post_scale": scale, "post_shift": shift, "sign_threshold": thr}
    got = run_all(kind, {**attrs, "output": "bits", "sign_zero": zero}, fused, x, i)
    assert got.dtype == np.uint64 and got.shape == want.shape
    assert got.tobytes() == want.tobytes()
    minus = unpack_last(got, o)
    np.testing.assert_array_equal(minus, (z <= thr) if zero == "-1" else (z < thr))


def test_integer_threshold_is_exact_for_every_sum():
    """(T, flip) against the exact rational decision at every S in [-k, k], both signs of the scale,
    both sign_zero conventions, thresholds on an integer sum (ties) and between sums."""
    rng = np.random.default_rng(1)
    k = 40
    cases = [(0.5, 0.25, 2.0, -1.0, 0.0), (0.5, 0.25, -2.0, -1.0, 0.0), (0.3, 0.0, 0.0, 0.7, 0.0)]
    cases += [(0.5, 0.0, 1.0, 0.0, 5.0 * 0.5), (0.5, 0.0, -1.0, 0.0, -5.0 * 0.5)]  # ties at S = 5
    cases += [tuple(float(np.float32(v)) for v in rng.standard_normal(5)) for _ in range(30)]
    cases += [(1.0, 0.0, 1.0, 0.0, 1e9), (1.0, 0.0, 1.0, 0.0, -1e9)]  # constant channels after clamping
    for a, b, scale, shift, t in cases:
        for zero_is_minus in (False, True):
            cut, flip = integer_threshold(a, b, scale, shift, t, zero_is_minus, k)
            assert -(2**31) <= cut < 2**31 and flip in (0, 1)
            for s in range(-k, k + 1):
                z = Fraction(scale) * (Fraction(a) * s + Fraction(b)) + Fraction(shift)
                minus = z <= Fraction(t) if zero_is_minus else z < Fraction(t)
                assert ((s < cut) != bool(flip)) == minus, (a, b, scale, shift, t, zero_is_minus, s)


@pytest.mark.parametrize("kind", ["tbconv2d", "tblinear"])
def test_integer_sign_output_every_path(rng, kind):
    conv = kind == "tbconv2d"
    o, i = 70, 90
    t = rng.integers(-1, 2, (o, 3, 3, i) if conv else (o, i))
    params = _ternary_params(rng, t, symmetric=True, bias=False)
    attrs = {"stride": [1, 1], "padding": [1, 1], "in_channels": i} if conv else {"in_features": i}
    s = np.where(rng.random((2, 5, 4, i) if conv else (6, i)) < 0.5, -1, 1)
    k = 9 * i if conv else i
    threshold = rng.integers(-k // 8, k // 8, o).astype(np.int32)
    flip = rng.integers(0, 2, o).astype(np.uint8)
    got = run_all(
        kind, {**attrs, "output": "bits"}, {**params, "threshold": threshold, "flip": flip}, pack_last(s < 0), i
    )
    if conv:
        sums = F.conv2d(
            torch.from_numpy(s.transpose(0, 3, 1, 2).astype(np.float64)),
            torch.from_numpy(t.transpose(0, 3, 1, 2).astype(np.float64)),
            padding=1,
        )
        sums = sums.numpy().transpose(0, 2, 3, 1)
    else:
        sums = s.astype(np.float64) @ t.T.astype(np.float64)
    want = (sums.astype(np.int64) < threshold) ^ flip.astype(bool)
    np.testing.assert_array_equal(unpack_last(got, o), want)


def test_bits_output_load_checks(rng):
    t = rng.integers(-1, 2, (4, 10))
    params = _ternary_params(rng, t, symmetric=True, bias=False)
    x = [pack_last(rng.random((2, 10)) < 0.5)]
    thr = np.zeros(4, np.int32)
    f4 = np.zeros(4, np.float32)
    bad = [
        ({"output": "bits"}, params, "takes threshold"),  # no sign parameters
        (
            {"output": "bits"},
            {**params, "threshold": thr, "post_scale": f4, "post_shift": f4, "sign_threshold": f4},
            "takes threshold",  # both kinds of sign parameters
        ),
        ({"output": "float"}, {**params, "threshold": thr}, "float"),
        ({"output": "bits"}, {**params, "threshold": thr, "flip": np.full(4, 2, np.uint8)}, "flip"),
        ({"output": "bits", "sign_zero": "-1"}, {**params, "threshold": thr}, "sign_zero"),
        ({"output": "bits"}, {**params, "post_scale": f4, "post_shift": f4}, "sign_threshold"),
        ({"output": "bits"}, {**params, "post_scale": f4, "post_shift": f4, "sign_threshold": f4 * np.nan}, "NaN"),
        ({"output": "sums"}, params, "output"),
    ]
    for extra, p, match in bad:
        with pytest.raises(ValueError, match=match):
            _core.run_op("tblinear", {"in_features": 10, **extra}, p, x, channels=[10])


# --------------------------------------------------------------------------- models


class TTQBinaryNet(nn.Module):
    """A TTQ network with binary activations: a sign before each ternary layer (BN -> sign)."""

    def __init__(self, symmetric: bool, sign_zero_minus: bool = False) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.b0 = nn.BatchNorm2d(8)
        self.c1 = TTQConv2d(8, 70, 3, padding=1, bias=False)
        self.b1 = nn.BatchNorm2d(70)
        self.c2 = TTQConv2d(70, 16, 3, stride=2, padding=1)
        self.b2 = nn.BatchNorm2d(16)
        self.fc = TTQLinear(16 * 7 * 7, 40)
        self.b3 = nn.BatchNorm1d(40)
        self.head = TTQLinear(40, 10)
        self.zero_minus = sign_zero_minus
        if symmetric:
            for m in (self.c1, self.c2, self.fc, self.head):
                m.wn = m.wp

    def sign(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x <= 0, -1.0, 1.0) if self.zero_minus else torch.where(x < 0, -1.0, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.sign(self.b0(self.stem(x)))
        x = F.max_pool2d(self.sign(self.b1(self.c1(x))), 2)
        x = self.sign(self.b2(self.c2(x)))
        x = self.sign(self.b3(self.fc(x.flatten(1))))
        return self.head(x)


def _model(symmetric: bool, zero_minus: bool = False) -> nn.Module:
    torch.manual_seed(0)
    model = TTQBinaryNet(symmetric, zero_minus)
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            m.weight.data.uniform_(-1.0, 1.5, generator=g)  # some gamma < 0
            m.bias.data.normal_(0, 0.3, generator=g)
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.normal_(0, 2.0, generator=g)
                m.running_var.uniform_(5.0, 20.0, generator=g)
    return randomise_bn(model)


def _run_everywhere(path, x: np.ndarray) -> np.ndarray:
    outs = [np.asarray(xnorinfer.load(path, threads=p).run(x, isa=isa)) for isa in ISAS for p in (1, 2)]
    for o in outs[1:]:
        assert o.tobytes() == outs[0].tobytes()
    return outs[0]


@pytest.mark.parametrize("symmetric, zero_minus", [(False, False), (False, True), (True, False)])
def test_ttq_binary_network_fuses_its_signs(tmp_path, monkeypatch, symmetric, zero_minus):
    model = _model(symmetric, zero_minus)
    x = torch.randn(32, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    fused_path, plain_path = tmp_path / "fused.xbin", tmp_path / "plain.xbin"
    graph = convert(model, (x[:1],), calib=x.numpy(), output=fused_path)
    kinds = [op.kind for op in graph.ops]
    tern = [op for op in graph.ops if op.kind in ("tbconv2d", "tblinear")]
    assert [op.name for op in tern] == ["c1", "c2", "fc", "head"]
    assert [op.attrs.get("output", "float") for op in tern] == ["bits", "bits", "bits", "float"]
    assert kinds.count("affine") == 1 and kinds.count("sign") == 1  # only the stem's BN -> sign
    assert graph.metadata["fused_ternary_signs"] == ["c1", "c2", "fc"]
    for op in tern[:3]:
        assert ("threshold" in op.params) == symmetric and ("sign_threshold" in op.params) != symmetric
    v = graph.metadata["verification"]
    assert not v["problems"] and all(layer["mismatches"] == 0 for layer in v["layers"].values())
    got = _run_everywhere(fused_path, x.numpy())
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))
    np.testing.assert_array_equal(got.argmax(1), want.argmax(1))
    # The same model without the fusion: three ops per sign. The float epilogue (asymmetric) gives the
    # same output bytes by construction; the integer threshold is exact, the unfused float32 ops may
    # round across a threshold (docs/exactness.md), so there only the top-1 is compared.
    monkeypatch.setattr(pipeline, "fuse_ternary_signs", lambda g: g)
    plain = convert(model, (x[:1],), calib=x.numpy(), output=plain_path)
    assert [op.kind for op in plain.ops].count("sign") == 4
    unfused = _run_everywhere(plain_path, x.numpy())
    if symmetric:
        np.testing.assert_array_equal(unfused.argmax(1), got.argmax(1))
    else:
        assert unfused.tobytes() == got.tobytes()
