"""The vectorised float convolution paths: depthwise (groups == channels) and 1x1 convolutions.

Reference: torch.nn.functional.conv2d in float64 on the same float32 inputs (NHWC <-> NCHW).
Tolerance: the rigorous bound for one FMA chain over the K = KH * KW (depthwise) or Cin (1x1)
in-bounds taps followed by one bias add (u = 2**-24 unit roundoff):
    |y - ref| <= (K + 2) * u * (sum_k |x_k| |w_k| + |b|)
Every result must also be bit-identical (uint32 patterns) across every ISA in
``_core.available_isas()`` and with 1 vs 2 threads.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import ISAS
from hypothesis import given, settings
from hypothesis import strategies as st

from xnorinfer import _core

U = 2.0**-24
THREADS = (1, 2)


def _nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).double().permute(0, 3, 1, 2)


def _nhwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(0, 2, 3, 1).contiguous().numpy()


def assert_within_chain_bound(y: np.ndarray, ref: torch.Tensor, mag: torch.Tensor, taps: int) -> None:
    """y (NHWC) against the float64 reference (NCHW) within (taps + 2) u (sum |x| |w| + |b|), mag
    being the same conv of the absolute values."""
    want, bound = _nhwc(ref), (taps + 2) * U * _nhwc(mag)
    assert y.shape == want.shape
    err = np.abs(y.astype(np.float64) - want)
    assert (err <= bound).all(), f"{int((err > bound).sum())} outside bound; worst err {err.max():.3g}"


def run_all_paths(attrs: dict, params: dict, x: np.ndarray) -> np.ndarray:
    """The op on every ISA x thread count; all must agree bit for bit."""
    first = None
    for isa in ISAS:
        for threads in THREADS:
            y = _core.run_op("conv2d", attrs, params, [x], isa=isa, threads=threads)
            assert y.dtype == np.float32
            if first is None:
                first = y
                continue
            assert y.shape == first.shape
            same = y.view(np.uint32) == first.view(np.uint32)
            assert same.all(), f"isa={isa} threads={threads}: {int((~same).sum())} elements differ"
    return first


def check_depthwise(rng, n, h, w, c, k, stride, pad, dilation=(1, 1), bias=True, relu=False, mult=1):
    """groups = c; mult > 1 is a channel multiplier (c * mult output channels)."""
    x = rng.standard_normal((n, h, w, c), dtype=np.float32)
    kh, kw = k
    wt = rng.standard_normal((c * mult, 1, kh, kw), dtype=np.float32)  # torch OIHW
    b = rng.standard_normal(c * mult, dtype=np.float32) if bias else None
    attrs = {"stride": list(stride), "padding": list(pad), "groups": c, "dilation": list(dilation), "relu": relu}
    params = {"weight": np.ascontiguousarray(wt.transpose(0, 2, 3, 1))}
    if bias:
        params["bias"] = b
    y = run_all_paths(attrs, params, x)
    wd = torch.from_numpy(wt).double()
    bd = None if b is None else torch.from_numpy(b).double()
    ref = F.conv2d(_nchw(x), wd, bd, stride, pad, dilation, groups=c)
    if relu:
        ref = torch.relu(ref)
    mag = F.conv2d(_nchw(np.abs(x)), wd.abs(), None if bd is None else bd.abs(), stride, pad, dilation, groups=c)
    assert_within_chain_bound(y, ref, mag, kh * kw)
    if relu:
        assert (y >= 0).all()
    return y


@pytest.mark.parametrize(
    "n,h,w,c,k,stride,pad",
    [
        (1, 12, 12, 32, 3, 1, 1),  # MobileNet block, reduced image: 2 AVX2 / 1 AVX-512 double blocks
        (1, 13, 11, 64, 3, 2, 1),  # stride 2, odd sizes
        (2, 7, 7, 24, 3, 1, 1),  # batch 2, 24 = 16 + 8 channels (one double, one single AVX2 block)
        (1, 9, 10, 5, 3, 1, 1),  # channels below every vector width (masked tail only)
        (1, 8, 9, 37, 3, 2, 1),  # 37 = 32 + 5: full blocks and a masked tail
        (1, 6, 5, 17, 5, 1, 2),  # 5x5 kernel
        (1, 5, 6, 9, 3, 1, 0),  # no padding: interior only
        (1, 4, 4, 8, 3, 1, 3),  # padding wider than the kernel: pixels with no in-bounds tap
        (1, 1, 1, 40, 3, 1, 1),  # 1x1 image: only the centre tap
        (3, 15, 14, 33, 3, 2, 0),  # stride 2, no padding, batch 3
        (1, 7, 7, 1024, 3, 1, 1),  # MobileNet 1024x7x7: wide channels, border-heavy
        (1, 10, 3, 48, 1, 1, 0),  # 1x1 depthwise (a per-channel scale)
        (1, 21, 22, 40, 5, 1, 2),  # 5x5 (EfficientNet): the shared-load block, masked tail
        (1, 23, 20, 24, 5, 2, 2),  # 5x5 stride 2
        (1, 20, 21, 48, 7, 1, 3),  # 7x7 (ConvNeXt)
        (1, 25, 24, 16, 7, 2, 3),  # 7x7 stride 2
    ],
)
@pytest.mark.parametrize("relu", [False, True])
def test_depthwise_cases(rng, n, h, w, c, k, stride, pad, relu):
    check_depthwise(rng, n, h, w, c, (k, k), (stride, stride), (pad, pad), relu=relu)


@pytest.mark.parametrize(
    "h,w,c,k,stride,pad,dilation",
    [
        (11, 12, 8, (3, 3), (1, 1), (3, 3), (3, 3)),  # DeepLab-style dilated depthwise
        (9, 13, 21, (3, 3), (2, 1), (2, 2), (2, 2)),
        (10, 10, 16, (3, 5), (1, 2), (1, 4), (1, 2)),  # rectangular kernel, mixed dilation
        (6, 7, 19, (3, 3), (1, 1), (0, 0), (2, 3)),  # dilated, unpadded
    ],
)
def test_depthwise_dilated_and_rectangular(rng, h, w, c, k, stride, pad, dilation):
    check_depthwise(rng, 2, h, w, c, k, stride, pad, dilation)


def test_depthwise_without_bias_and_multiplier(rng):
    check_depthwise(rng, 1, 9, 8, 24, (3, 3), (1, 1), (1, 1), bias=False)
    # a channel multiplier keeps the grouped loop; it must still match torch
    check_depthwise(rng, 1, 7, 6, 6, (3, 3), (1, 1), (1, 1), mult=2)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 2),
    c=st.integers(1, 70),
    kh=st.sampled_from([1, 2, 3, 5]),
    kw=st.sampled_from([1, 3, 4, 5, 7]),
    sh=st.integers(1, 3),
    sw=st.integers(1, 3),
    dh=st.integers(1, 3),
    dw=st.integers(1, 2),
    data=st.data(),
)
def test_depthwise_random(n, c, kh, kw, sh, sw, dh, dw, data):
    ph = data.draw(st.integers(0, kh + 1), "pad_h")
    pw = data.draw(st.integers(0, kw + 1), "pad_w")
    h = data.draw(st.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), 14), "h")
    w = data.draw(st.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), 14), "w")
    bias = data.draw(st.booleans(), "bias")
    relu = data.draw(st.booleans(), "relu")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), "seed"))
    check_depthwise(rng, n, h, w, c, (kh, kw), (sh, sw), (ph, pw), (dh, dw), bias, relu)


def test_depthwise_exact_values(rng):
    """Small-integer data: every product and partial sum is exact, so the result equals torch's exactly."""
    x = rng.integers(-8, 9, (1, 9, 9, 20)).astype(np.float32)
    wt = rng.integers(-4, 5, (20, 3, 3, 1)).astype(np.float32)
    b = rng.integers(-4, 5, 20).astype(np.float32)
    attrs = {"stride": [2, 2], "padding": [1, 1], "groups": 20}
    y = run_all_paths(attrs, {"weight": wt, "bias": b}, x)
    ref = F.conv2d(
        _nchw(x), torch.from_numpy(wt.transpose(0, 3, 1, 2)).double(), torch.from_numpy(b).double(), 2, 1, groups=20
    )
    np.testing.assert_array_equal(y, _nhwc(ref))


def test_depthwise_refuses_an_input_smaller_than_the_kernel():
    params = {"weight": np.zeros((8, 3, 3, 1), np.float32)}
    with pytest.raises(ValueError, match="smaller than the kernel"):
        _core.run_op(
            "conv2d", {"stride": [1, 1], "padding": [0, 0], "groups": 8}, params, [np.zeros((1, 2, 5, 8), np.float32)]
        )
    with pytest.raises(ValueError, match="channels"):
        _core.run_op(
            "conv2d", {"stride": [1, 1], "padding": [1, 1], "groups": 8}, params, [np.zeros((1, 5, 5, 4), np.float32)]
        )


# --------------------------------------------------------------------------- 1x1 convolutions


def check_1x1(rng, n, h, w, cin, cout, stride, pad=(0, 0), bias=True, relu=False):
    x = rng.standard_normal((n, h, w, cin), dtype=np.float32)
    wt = rng.standard_normal((cout, 1, 1, cin), dtype=np.float32)
    b = rng.standard_normal(cout, dtype=np.float32) if bias else None
    attrs = {"stride": list(stride), "padding": list(pad), "relu": relu}
    params = {"weight": wt} if b is None else {"weight": wt, "bias": b}
    y = run_all_paths(attrs, params, x)
    wd = torch.from_numpy(wt.transpose(0, 3, 1, 2)).double()
    bd = None if b is None else torch.from_numpy(b).double()
    ref = F.conv2d(_nchw(x), wd, bd, stride, pad)
    if relu:
        ref = torch.relu(ref)
    mag = F.conv2d(_nchw(np.abs(x)), wd.abs(), None if bd is None else bd.abs(), stride, pad)
    assert_within_chain_bound(y, ref, mag, cin)


@pytest.mark.parametrize(
    "n,h,w,cin,cout,stride",
    [
        (1, 7, 7, 40, 70, (1, 1)),  # few pixels, 3 panels: tasks split over panels
        (2, 9, 11, 16, 33, (2, 2)),  # strided: rows read in place with a row stride
        (1, 13, 12, 24, 40, (2, 1)),
        (3, 8, 13, 5, 9, (1, 3)),
        (1, 15, 15, 64, 128, (2, 2)),  # ResNet downsample shortcut shape, reduced
        (1, 1, 9, 3, 7, (3, 2)),  # H = 1
        (1, 28, 28, 8, 16, (2, 2)),  # several output rows per task block
    ],
)
@pytest.mark.parametrize("relu", [False, True])
def test_1x1_cases(rng, n, h, w, cin, cout, stride, relu):
    check_1x1(rng, n, h, w, cin, cout, stride, relu=relu)


def test_1x1_padded_and_without_bias(rng):
    check_1x1(rng, 1, 6, 7, 12, 20, (2, 2), pad=(1, 1))  # padded 1x1 keeps the im2col path
    check_1x1(rng, 2, 5, 5, 9, 33, (2, 2), bias=False)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 2),
    h=st.integers(1, 17),
    w=st.integers(1, 17),
    cin=st.integers(1, 40),
    cout=st.integers(1, 70),
    sh=st.integers(1, 3),
    sw=st.integers(1, 3),
    seed=st.integers(0, 2**32 - 1),
)
def test_1x1_random(n, h, w, cin, cout, sh, sw, seed):
    check_1x1(np.random.default_rng(seed), n, h, w, cin, cout, (sh, sw))


# --------------------------------------------------------------------------- grouped convolutions


def check_grouped(rng, n, h, w, cin, cout, groups, k, stride, pad, dilation=(1, 1), bias=True, relu=False):
    x = rng.standard_normal((n, h, w, cin), dtype=np.float32)
    wt = rng.standard_normal((cout, cin // groups, k, k), dtype=np.float32)  # torch OIHW
    b = rng.standard_normal(cout, dtype=np.float32) if bias else None
    attrs = {"stride": list(stride), "padding": list(pad), "groups": groups, "dilation": list(dilation), "relu": relu}
    params = {"weight": np.ascontiguousarray(wt.transpose(0, 2, 3, 1))}
    if bias:
        params["bias"] = b
    y = run_all_paths(attrs, params, x)
    wd = torch.from_numpy(wt).double()
    bd = None if b is None else torch.from_numpy(b).double()
    ref = F.conv2d(_nchw(x), wd, bd, stride, pad, dilation, groups=groups)
    if relu:
        ref = torch.relu(ref)
    mag = F.conv2d(_nchw(np.abs(x)), wd.abs(), None if bd is None else bd.abs(), stride, pad, dilation, groups=groups)
    ref, bound = _nhwc(ref), (k * k * (cin // groups) + 2) * U * _nhwc(mag)
    assert y.shape == ref.shape
    err = np.abs(y.astype(np.float64) - ref)
    assert (err <= bound).all(), f"{int((err > bound).sum())} outside bound; worst err {err.max():.3g}"


@pytest.mark.parametrize(
    "n,h,w,cin,cout,groups,k,stride,pad,dilation",
    [
        (1, 9, 8, 16, 16, 2, 3, 1, 1, 1),  # ResNeXt-style, per-group GEMM
        (2, 11, 10, 24, 48, 3, 3, 2, 1, 1),  # stride 2, 16 outputs per group
        (1, 7, 9, 32, 80, 4, 3, 1, 2, 2),  # dilated, 20 outputs per group (one panel, partial)
        (1, 8, 8, 64, 64, 2, 1, 1, 0, 1),  # grouped 1x1: GEMM in place with a channel offset
        (1, 9, 9, 48, 96, 3, 1, 2, 0, 1),  # grouped strided 1x1
        (1, 6, 7, 40, 70, 5, 5, 1, 2, 1),  # 8 inputs, 14 outputs per group, 5x5
        (1, 8, 7, 12, 6, 3, 3, 1, 1, 1),  # 4 inputs, 2 outputs per group
        (1, 7, 7, 6, 12, 2, 3, 1, 1, 1),  # 3 inputs per group: the direct loop
        (1, 7, 7, 8, 16, 8, 3, 2, 1, 1),  # depthwise with a channel multiplier: the direct loop
    ],
)
@pytest.mark.parametrize("relu", [False, True])
def test_grouped_cases(rng, n, h, w, cin, cout, groups, k, stride, pad, dilation, relu):
    check_grouped(rng, n, h, w, cin, cout, groups, k, (stride, stride), (pad, pad), (dilation, dilation), relu=relu)


@settings(max_examples=40, deadline=None)
@given(
    groups=st.integers(2, 4),
    cin_g=st.integers(1, 12),
    cout_g=st.integers(1, 40),
    k=st.sampled_from([1, 2, 3]),
    s=st.integers(1, 2),
    p=st.integers(0, 1),
    d=st.integers(1, 2),
    h=st.integers(5, 11),
    w=st.integers(5, 11),
    bias=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_grouped_random(groups, cin_g, cout_g, k, s, p, d, h, w, bias, seed):
    # h, w >= 5 >= d * (k - 1) + 1: the dilated kernel always fits
    check_grouped(
        np.random.default_rng(seed), 1, h, w, cin_g * groups, cout_g * groups, groups, k, (s, s), (p, p), (d, d), bias
    )


# --------------------------------------------------------------------------- im2col (general) convolutions


def check_general(rng, n, h, w, cin, cout, k, stride, pad, dilation=(1, 1), groups=1):
    """A conv2d on the im2col path against torch float64, within the FMA-chain bound over its taps."""
    x = rng.standard_normal((n, h, w, cin), dtype=np.float32)
    wt = rng.standard_normal((cout, k[0], k[1], cin // groups), dtype=np.float32)
    b = rng.standard_normal(cout, dtype=np.float32)
    attrs = {"stride": list(stride), "padding": list(pad), "dilation": list(dilation), "groups": groups}
    y = run_all_paths(attrs, {"weight": wt, "bias": b}, x)
    wd = torch.from_numpy(wt.transpose(0, 3, 1, 2)).double()
    bd = torch.from_numpy(b).double()
    ref = F.conv2d(_nchw(x), wd, bd, stride, pad, dilation, groups)
    mag = F.conv2d(_nchw(np.abs(x)), wd.abs(), bd.abs(), stride, pad, dilation, groups)
    assert_within_chain_bound(y, ref, mag, k[0] * k[1] * cin // groups)


@pytest.mark.parametrize(
    "h,w,cin,cout,k,stride,pad,dilation,groups",
    [
        (30, 28, 3, 64, (7, 7), (2, 2), (3, 3), (1, 1), 1),  # ResNet / Bi-Real stem: 21-float window rows
        (24, 25, 3, 32, (3, 3), (2, 2), (1, 1), (1, 1), 1),  # ReActNet stem: 9-float rows
        (19, 17, 3, 16, (5, 5), (1, 1), (2, 2), (1, 1), 1),  # 15-float rows
        (12, 14, 8, 12, (3, 3), (1, 1), (0, 0), (1, 1), 1),  # no padding: every window inside
        (16, 13, 4, 8, (3, 2), (1, 2), (2, 1), (2, 1), 1),  # vertical dilation inside the fast copy
        (13, 15, 4, 8, (2, 3), (2, 1), (1, 2), (1, 2), 1),  # horizontal dilation: the per-tap copy
        (11, 12, 6, 8, (3, 3), (1, 1), (1, 1), (1, 1), 2),  # grouped: the per-tap copy of a group
    ],
)
def test_general_conv_windows(rng, h, w, cin, cout, k, stride, pad, dilation, groups):
    check_general(rng, 2, h, w, cin, cout, k, stride, pad, dilation, groups)


def test_general_conv_exact_values(rng):
    """Small-integer data through the stem's window copy: equal to torch exactly, borders included."""
    x = rng.integers(-8, 9, (1, 21, 23, 3)).astype(np.float32)
    wt = rng.integers(-4, 5, (16, 7, 7, 3)).astype(np.float32)
    b = rng.integers(-4, 5, 16).astype(np.float32)
    y = run_all_paths({"stride": [2, 2], "padding": [3, 3]}, {"weight": wt, "bias": b}, x)
    ref = F.conv2d(_nchw(x), torch.from_numpy(wt.transpose(0, 3, 1, 2)).double(), torch.from_numpy(b).double(), 2, 3)
    np.testing.assert_array_equal(y, _nhwc(ref))
