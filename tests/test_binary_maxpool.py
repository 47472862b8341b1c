"""binary_maxpool2d against torch max_pool2d of the +-1 tensor (padding acts as -inf)."""

from __future__ import annotations

import engine_ops as E
import numpy as np
import pytest
import reference as R
from conftest import ISAS, POOLS
from hypothesis import given, settings
from hypothesis import strategies as st

ALL_ISAS = ISAS


def expected_pool(x_nchw, kernel, stride, padding):
    y = R.maxpool_pm1(x_nchw, kernel, stride, padding)
    assert np.isin(y, (-1.0, 1.0)).all()
    return R.pack_nchw(y)


def check_everywhere(xp, expected, **kw):
    first = None
    for isa in ALL_ISAS:
        for pool in POOLS:
            got = E.binary_maxpool2d(xp, pool=pool, isa=isa, **kw)
            threads = None if pool is None else pool.threads
            assert got.dtype == np.uint64 and got.shape == expected.shape, (isa, threads, got.shape)
            if not np.array_equal(got, expected):
                bad = np.argwhere(got != expected)
                raise AssertionError(
                    f"isa={isa} threads={threads} {kw}: {len(bad)} words differ, first at {tuple(bad[0])}"
                )
            if first is None:
                first = got
            assert got.tobytes() == first.tobytes()


def _pm1_biased(rng, shape, p_minus):
    """+-1 values with P(-1) = p_minus: pools of mostly -1 make the AND non-trivial."""
    return np.where(rng.random(shape) < p_minus, np.float32(-1.0), np.float32(1.0)).astype(np.float32)


@pytest.mark.parametrize("channels", [1, 63, 64, 65, 130, 257])
@pytest.mark.parametrize(
    "kernel,stride,padding",
    [
        (2, 2, 0),
        (2, 1, 0),
        (2, 2, 1),
        (2, 1, 1),
        (3, 2, 0),
        (3, 1, 0),
        (3, 2, 1),
        (3, 1, 1),
        ((2, 3), (1, 2), (1, 1)),
        ((3, 2), (2, 1), (0, 1)),
    ],
)
def test_matches_torch(channels, kernel, stride, padding, rng):
    n, h, w = 2, 7, 9  # odd sizes: the last partial window is dropped (floor mode)
    x = _pm1_biased(rng, (n, channels, h, w), 0.8)
    check_everywhere(
        R.pack_nchw(x),
        expected_pool(x, kernel, stride, padding),
        kernel=_pair(kernel),
        stride=_pair(stride),
        padding=_pair(padding),
    )


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


@pytest.mark.parametrize("kernel", [2, 3])
def test_default_stride_is_kernel(kernel, rng):
    x = _pm1_biased(rng, (1, 70, 9, 8), 0.7)
    check_everywhere(R.pack_nchw(x), expected_pool(x, kernel, kernel, 0), kernel=(kernel, kernel))


def test_all_minus_one_and_single_plus_one(isa):
    """An all -1 window stays -1; one +1 anywhere in a window makes it +1; pad bits stay 0."""
    c = 70
    x = -np.ones((1, c, 4, 4), np.float32)
    x[0, 5, 1, 1] = 1.0  # window (0, 0) of a 2x2/2 pool
    x[0, 69, 3, 2] = 1.0  # window (1, 1)
    got = E.binary_maxpool2d(R.pack_nchw(x), kernel=(2, 2), isa=isa)
    bits = R.unpack_last(got, c)[0]
    want = np.ones((2, 2, c), bool)
    want[0, 0, 5] = False
    want[1, 1, 69] = False
    assert np.array_equal(bits, want)
    assert not R.pad_bits_of(got, c).any()


def test_padding_acts_as_minus_infinity(isa):
    """With padding, border windows of an all -1 image are still -1 (padding never wins)."""
    x = -np.ones((1, 65, 5, 5), np.float32)
    got = E.binary_maxpool2d(R.pack_nchw(x), kernel=(3, 3), stride=(2, 2), padding=(1, 1), isa=isa)
    assert got.shape == (1, 3, 3, 2)
    assert np.array_equal(got, R.pack_nchw(-np.ones((1, 65, 3, 3), np.float32)))


@settings(max_examples=150)
@given(
    n=st.integers(1, 3),
    c=st.sampled_from([1, 5, 64, 65, 128, 200]),
    kh=st.integers(1, 4),
    kw=st.integers(1, 4),
    sh=st.integers(1, 3),
    sw=st.integers(1, 3),
    data=st.data(),
)
def test_property(n, c, kh, kw, sh, sw, data):
    ph = data.draw(st.integers(0, kh // 2))
    pw = data.draw(st.integers(0, kw // 2))
    h = data.draw(st.integers(max(1, kh - 2 * ph), 11))
    w = data.draw(st.integers(max(1, kw - 2 * pw), 11))
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x = _pm1_biased(rng, (n, c, h, w), data.draw(st.sampled_from([0.5, 0.8, 0.95])))
    check_everywhere(
        R.pack_nchw(x),
        expected_pool(x, (kh, kw), (sh, sw), (ph, pw)),
        kernel=(kh, kw),
        stride=(sh, sw),
        padding=(ph, pw),
    )


def test_errors():
    x = np.zeros((1, 4, 4, 1), np.uint64)
    with pytest.raises(ValueError, match=r"input must be NHWC, got \(4, 4, 64\)"):
        E.binary_maxpool2d(np.zeros((4, 4, 1), np.uint64), kernel=(2, 2))
    with pytest.raises(ValueError, match="padding must be between 0 and half the kernel"):
        E.binary_maxpool2d(x, kernel=(2, 2), padding=(2, 0))
    with pytest.raises(ValueError, match="kernel and stride must be positive"):
        E.binary_maxpool2d(x, kernel=(0, 2))
    with pytest.raises(ValueError, match="kernel and stride must be positive"):
        E.binary_maxpool2d(x, kernel=(2, 2), stride=(2, 0))
    with pytest.raises(ValueError, match="'padding' value -1 is out of range"):
        E.binary_maxpool2d(x, kernel=(2, 2), padding=(-1, 0))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        E.binary_maxpool2d(np.zeros((1, 1, 1, 1), np.uint64), kernel=(3, 3), stride=(2, 2))
    with pytest.raises(ValueError, match="unknown ISA path 'avx1024'"):
        E.binary_maxpool2d(x, kernel=(2, 2), isa="avx1024")


def test_window_larger_than_input_is_rejected():
    # torch.nn.functional.max_pool2d(torch.zeros(1, 1, 4, 4), (5, 2)) raises: output size too small.
    with pytest.raises(ValueError, match="smaller than the kernel"):
        E.binary_maxpool2d(np.zeros((1, 4, 4, 1), np.uint64), kernel=(5, 2))
