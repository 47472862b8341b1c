"""Float kernels (Conv2d, Linear, max/avg/global pooling) against PyTorch float64.

Reference: torch.nn.functional conv2d / linear / max_pool2d / avg_pool2d in float64 on the same
float32 inputs (NHWC <-> NCHW permuted). Tolerances are the rigorous bounds for a sequential
float32 sum (u = 2**-24 unit roundoff):

* conv / linear: |y - ref| <= (K + 2) * u * (sum_k |x_k| |w_k| + |b|), K = KH * KW * Cin, since
  each output is one FMA chain over K followed by one bias add (relu is 1-Lipschitz);
* avg pool:      |y - ref| <= (n + 1) * u * mean(|x|) over the window (n terms, then a division);
* max pool:      exact.

Every result must also be bit-identical (compared as uint32 bit patterns) across every ISA in
``_core.available_isas()`` and with pool=None vs a 2-thread pool.
"""

from __future__ import annotations

import engine_ops as E
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import _POOL2, ISAS
from hypothesis import given, settings
from hypothesis import strategies as st

U = 2.0**-24
VARIANTS = [(isa, pool) for isa in ISAS for pool in (None, _POOL2)]


def nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).double().permute(0, 3, 1, 2)


def nhwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(0, 2, 3, 1).contiguous().numpy()


def assert_identical_variants(run) -> np.ndarray:
    """Run `run(isa, pool)` on every ISA x pool variant; all must agree bit for bit."""
    first = None
    for isa, pool in VARIANTS:
        y = run(isa, pool)
        assert y.dtype == np.float32
        if first is None:
            first = y
            continue
        assert y.shape == first.shape
        same = y.view(np.uint32) == first.view(np.uint32)
        assert same.all(), (
            f"isa={isa} pool={pool is not None}: {int((~same).sum())} elements differ from {VARIANTS[0][0]}/no pool"
        )
    return first


def assert_within(y: np.ndarray, ref: np.ndarray, bound: np.ndarray) -> None:
    err = np.abs(y.astype(np.float64) - ref)
    bad = err > bound
    assert not bad.any(), f"{int(bad.sum())} outside bound; worst err {err.max():.3g}"


# --------------------------------------------------------------------------- conv2d


def conv_reference(x, w, b, stride, padding, relu):
    wt = torch.from_numpy(w).double().permute(0, 3, 1, 2)
    bt = None if b is None else torch.from_numpy(b).double()
    ref = F.conv2d(nchw(x), wt, bt, stride, padding)
    if relu:
        ref = torch.relu(ref)
    mag = F.conv2d(nchw(np.abs(x)), wt.abs(), None if bt is None else bt.abs(), stride, padding)
    k = w.shape[1] * w.shape[2] * w.shape[3]
    return nhwc(ref), (k + 2) * U * nhwc(mag)


def check_conv(rng, n, h, w, cin, cout, kh, kw, stride, padding, bias=True, relu=False):
    x = rng.standard_normal((n, h, w, cin), dtype=np.float32)
    wt = rng.standard_normal((cout, kh, kw, cin), dtype=np.float32)
    b = rng.standard_normal(cout, dtype=np.float32) if bias else None
    op = E.Conv2d(wt, b, stride=stride, padding=padding, relu=relu)
    y = assert_identical_variants(lambda isa, pool: op.run(x, pool=pool, isa=isa))
    ref, bound = conv_reference(x, wt, b, stride, padding, relu)
    assert y.shape == ref.shape == op.output_shape(n, h, w)
    assert_within(y, ref, bound)
    if relu:
        assert (y >= 0).all()


@pytest.mark.parametrize(
    "n,h,w,cin,cout,k,stride,pad",
    [
        (3, 23, 19, 3, 64, 7, 2, 3),  # first-layer 7x7/2 shape, reduced image, batch 3
        (1, 32, 32, 3, 128, 3, 1, 1),  # CIFAR first layer
        (2, 9, 7, 1, 33, 3, 1, 1),  # Cin = 1, Cout one past a panel
        (1, 1, 9, 5, 10, 1, 1, 0),  # H = 1, 1x1 fast path
        (3, 7, 1, 8, 20, 1, 2, 0),  # W = 1, 1x1 stride 2 (im2col path)
        (1, 6, 6, 64, 70, 3, 2, 1),  # K = 576, 3 panels
        (1, 5, 5, 2, 3, 5, 1, 0),  # kernel = input: 1x1 output
    ],
)
@pytest.mark.parametrize("relu", [False, True])
def test_conv2d_cases(rng, n, h, w, cin, cout, k, stride, pad, relu):
    check_conv(rng, n, h, w, cin, cout, k, k, (stride, stride), (pad, pad), bias=True, relu=relu)


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(1, 3),
    cin=st.sampled_from([1, 2, 3, 4, 7, 16]),
    cout=st.integers(1, 70),
    kh=st.sampled_from([1, 2, 3, 5, 7]),
    kw=st.sampled_from([1, 3, 5]),
    sh=st.integers(1, 2),
    sw=st.integers(1, 3),
    data=st.data(),
)
def test_conv2d_random(n, cin, cout, kh, kw, sh, sw, data):
    ph = data.draw(st.integers(0, kh // 2 + 1), "pad_h")
    pw = data.draw(st.integers(0, kw // 2), "pad_w")
    h = data.draw(st.integers(max(1, kh - 2 * ph), 13), "h")
    w = data.draw(st.integers(max(1, kw - 2 * pw), 13), "w")
    bias = data.draw(st.booleans(), "bias")
    relu = data.draw(st.booleans(), "relu")
    seed = data.draw(st.integers(0, 2**32 - 1), "seed")
    rng = np.random.default_rng(seed)
    check_conv(rng, n, h, w, cin, cout, kh, kw, (sh, sw), (ph, pw), bias, relu)


def test_conv2d_out_argument(rng):
    x = rng.standard_normal((2, 8, 8, 3), dtype=np.float32)
    op = E.Conv2d(rng.standard_normal((16, 3, 3, 3), dtype=np.float32), None, padding=(1, 1))
    out = np.empty(op.output_shape(2, 8, 8), dtype=np.float32)
    y = op.run(x, out=out)
    assert y is out or np.shares_memory(y, out)
    assert np.array_equal(out, op.run(x))


def test_conv2d_errors(rng):
    w = rng.standard_normal((4, 3, 3, 2), dtype=np.float32)
    x = np.zeros((1, 5, 5, 2), np.float32)
    with pytest.raises(ValueError, match=r"weight must be \(O, KH, KW, I\)"):
        E.Conv2d(np.zeros((4, 3, 3), np.float32), None).run(x)
    with pytest.raises(ValueError, match="bias' must have shape"):
        E.Conv2d(w, np.zeros(5, np.float32)).run(x)
    with pytest.raises(ValueError, match="stride must be positive"):
        E.Conv2d(w, None, stride=(0, 1)).run(x)
    op = E.Conv2d(w, None)
    with pytest.raises(ValueError, match="input must be NHWC"):
        op.run(np.zeros((1, 5, 5, 3), np.float32))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        op.run(np.zeros((1, 2, 5, 2), np.float32))
    with pytest.raises(ValueError, match="out must be"):
        op.run(np.zeros((1, 5, 5, 2), np.float32), out=np.zeros((1, 3, 3, 5), np.float32))


# --------------------------------------------------------------------------- linear


def check_linear(rng, m, k, n, bias=True):
    x = rng.standard_normal((m, k), dtype=np.float32)
    w = rng.standard_normal((n, k), dtype=np.float32)
    b = rng.standard_normal(n, dtype=np.float32) if bias else None
    op = E.Linear(w, b)
    y = assert_identical_variants(lambda isa, pool: op.run(x, pool=pool, isa=isa))
    xt, wt = torch.from_numpy(x).double(), torch.from_numpy(w).double()
    bt = None if b is None else torch.from_numpy(b).double()
    ref = F.linear(xt, wt, bt).numpy()
    mag = F.linear(xt.abs(), wt.abs(), None if bt is None else bt.abs()).numpy()
    assert y.shape == (m, n)
    assert_within(y, ref, (k + 2) * U * mag)


@pytest.mark.parametrize("m,k,n", [(1, 512, 1000), (200, 37, 65), (3, 1, 1), (97, 130, 32)])
def test_linear_cases(rng, m, k, n):
    check_linear(rng, m, k, n)


@settings(max_examples=50, deadline=None)
@given(
    m=st.integers(1, 130),
    k=st.integers(1, 200),
    n=st.integers(1, 80),
    bias=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_linear_random(m, k, n, bias, seed):
    check_linear(np.random.default_rng(seed), m, k, n, bias)


def test_linear_errors(rng):
    with pytest.raises(ValueError, match=r"weight must be \(O, K\)"):
        E.Linear(np.zeros(4, np.float32), None).run(np.zeros((2, 4), np.float32))
    op = E.Linear(np.ones((4, 6), np.float32), None)
    with pytest.raises(ValueError, match=r"input must be \(N, 6\)"):
        op.run(np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match="bias' must have shape"):
        E.Linear(np.ones((4, 6), np.float32), np.zeros((1, 4), np.float32)).run(np.zeros((2, 6), np.float32))


# --------------------------------------------------------------------------- pooling


def check_pool(rng, kind, n, h, w, c, kernel, stride, padding, count_include_pad=True):
    x = rng.standard_normal((n, h, w, c), dtype=np.float32)
    if kind == "max":
        y = assert_identical_variants(lambda isa, pool: E.maxpool2d(x, kernel, stride, padding, pool=pool, isa=isa))
        ref = nhwc(F.max_pool2d(nchw(x), kernel, stride or kernel, padding))
        assert y.shape == ref.shape
        assert np.array_equal(y.astype(np.float64), ref)
        return
    y = assert_identical_variants(
        lambda isa, pool: E.avgpool2d(
            x, kernel, stride, padding, count_include_pad=count_include_pad, pool=pool, isa=isa
        )
    )
    args = (kernel, stride or kernel, padding)
    ref = nhwc(F.avg_pool2d(nchw(x), *args, count_include_pad=count_include_pad))
    mag = nhwc(F.avg_pool2d(nchw(np.abs(x)), *args, count_include_pad=count_include_pad))
    assert y.shape == ref.shape
    assert_within(y, ref, (kernel[0] * kernel[1] + 1) * U * mag)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize(
    "n,h,w,c,kernel,stride,padding",
    [
        (1, 112, 112, 64, (3, 3), (2, 2), (1, 1)),  # ResNet stem max-pool
        (3, 7, 5, 3, (2, 2), None, (0, 0)),
        (2, 1, 9, 17, (1, 3), (1, 2), (0, 1)),
        (1, 6, 6, 40, (6, 6), None, (3, 3)),
    ],
)
def test_pool_cases(rng, kind, n, h, w, c, kernel, stride, padding):
    check_pool(rng, kind, n, h, w, c, kernel, stride, padding)


@settings(max_examples=80, deadline=None)
@given(
    kind=st.sampled_from(["max", "avg"]),
    n=st.integers(1, 3),
    c=st.sampled_from([1, 3, 8, 16, 17, 33, 64]),
    kh=st.integers(1, 4),
    kw=st.integers(1, 4),
    stride=st.none() | st.tuples(st.integers(1, 3), st.integers(1, 3)),
    count_include_pad=st.booleans(),
    data=st.data(),
)
def test_pool_random(kind, n, c, kh, kw, stride, count_include_pad, data):
    ph = data.draw(st.integers(0, kh // 2), "pad_h")
    pw = data.draw(st.integers(0, kw // 2), "pad_w")
    h = data.draw(st.integers(max(1, kh - 2 * ph), 11), "h")
    w = data.draw(st.integers(max(1, kw - 2 * pw), 11), "w")
    seed = data.draw(st.integers(0, 2**32 - 1), "seed")
    check_pool(np.random.default_rng(seed), kind, n, h, w, c, (kh, kw), stride, (ph, pw), count_include_pad)


@pytest.mark.parametrize("n,h,w,c", [(1, 7, 7, 512), (3, 1, 1, 5), (2, 5, 3, 130), (1, 13, 11, 3)])
def test_global_avgpool(rng, n, h, w, c):
    x = rng.standard_normal((n, h, w, c), dtype=np.float32)
    y = assert_identical_variants(lambda isa, pool: E.global_avgpool(x, pool=pool, isa=isa))
    ref = F.adaptive_avg_pool2d(nchw(x), 1).flatten(1).numpy()
    mag = F.adaptive_avg_pool2d(nchw(np.abs(x)), 1).flatten(1).numpy()
    assert y.shape == (n, c)
    assert_within(y, ref, (h * w + 1) * U * mag)


def test_pool_errors():
    x = np.zeros((1, 4, 4, 2), np.float32)
    with pytest.raises(ValueError, match="padding must be between 0 and half the kernel"):
        E.maxpool2d(x, (2, 2), padding=(2, 0))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        E.avgpool2d(x, (5, 5))
    with pytest.raises(ValueError, match="kernel and stride must be positive"):
        E.maxpool2d(x, (2, 2), (0, 1))
    with pytest.raises(ValueError, match=r"input must be NHWC, got \(4, 4, 2\)"):
        E.avgpool2d(np.zeros((4, 4, 2), np.float32), (2, 2))
    with pytest.raises(ValueError, match="empty or oversized dimension"):
        E.global_avgpool(np.zeros((1, 0, 4, 2), np.float32))
