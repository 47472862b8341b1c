"""Threshold folding against brute force: every integer sum s in [-K, K], evaluated directly."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from xnorinfer.convert import fold
from xnorinfer.convert.attrs import BatchNormStage, ChannelStage
from xnorinfer.convert.pack import pack_conv_weight, pack_linear_weight, unpack_last


def brute_bits(alpha, bias, gamma, beta, mean, var, eps, k, t=0.0, zero="+1"):
    """bit (True = -1) of sign(BN(alpha * s + bias) - t) for every s in [-k, k], plain Python floats."""
    out = []
    for s in range(-k, k + 1):
        v = (alpha * s + bias - mean) / math.sqrt(var + eps) * gamma + beta
        out.append(v <= t if zero == "-1" else v < t)
    return np.array(out)


def folded_bits(res: fold.ThresholdFold, k: int) -> np.ndarray:
    s = np.arange(-k, k + 1)[:, None]
    return fold.apply_threshold(s, res.threshold, res.flip).T  # (C, S)


def fold_one(alpha, bias, gamma, beta, mean, var, eps, k, t=0.0, zero="+1") -> fold.ThresholdFold:
    chain = [
        ChannelStage("add", np.array([bias])),
        BatchNormStage(np.array([gamma]), np.array([beta]), np.array([mean]), np.array([var]), eps),
    ]
    return fold.thresholds(chain, np.array([alpha]), k, np.array([t]), zero)


@pytest.mark.parametrize("gamma", [1.3, -0.7])
@pytest.mark.parametrize("var", [1e-8, 1.0, 1e8])
def test_positive_negative_gamma_and_variances(gamma, var):
    k = 75
    args = (0.37, 0.1, gamma, 0.2, 2.9, var, 1e-5, k)
    res = fold_one(*args)
    assert np.array_equal(folded_bits(res, k)[0], brute_bits(*args))
    if res.constant:  # huge variance: beta dominates, every s gives the same sign
        assert var == 1e8
    else:
        assert res.flip[0] == (1 if gamma < 0 else 0)


@pytest.mark.parametrize("beta,expected_bit", [(0.5, False), (-0.5, True), (0.0, False)])
def test_zero_gamma_is_a_constant_channel(beta, expected_bit):
    res = fold_one(0.5, 0.0, 0.0, beta, 0.3, 1.0, 1e-5, 9)
    assert res.threshold[0] == np.iinfo(np.int32).min
    assert bool(res.flip[0]) is expected_bit
    assert res.constant == [0]
    assert np.all(folded_bits(res, 9)[0] == expected_bit)


@pytest.mark.parametrize("zero", ["+1", "-1", "0"])
def test_tie_exactly_on_the_threshold(zero):
    # alpha * 3 - 1.5 == 0 exactly (eps = 0, var = 1): s = 3 sits on the step
    args = (0.5, 0.0, 1.0, 0.0, 1.5, 1.0, 0.0, 8)
    res = fold_one(*args, zero=zero)
    assert res.ties == [(0, 3)]
    assert np.array_equal(folded_bits(res, 8)[0], brute_bits(*args, zero=zero))
    assert res.threshold[0] == (4 if zero == "-1" else 3)  # "+1"/"0": s = 3 gives +1 (bit 0)


def test_negative_gamma_tie_uses_threshold_plus_one():
    args = (0.5, 0.0, -1.0, 0.0, 1.5, 1.0, 0.0, 8)  # f(3) == 0, decreasing
    res = fold_one(*args)
    assert np.array_equal(folded_bits(res, 8)[0], brute_bits(*args))
    assert res.flip[0] == 1 and res.threshold[0] == 4  # -1 exactly for s >= 4


def test_rsign_shift_is_part_of_the_step():
    args = (0.25, 0.0, 2.0, 0.1, 0.0, 4.0, 0.0, 20)
    res = fold_one(*args, t=0.33)
    assert np.array_equal(folded_bits(res, 20)[0], brute_bits(*args, t=0.33))


@given(
    alpha=st.floats(1e-3, 10),
    bias=st.floats(-5, 5),
    gamma=st.floats(-5, 5),
    beta=st.floats(-3, 3),
    mean=st.floats(-20, 20),
    var=st.floats(1e-6, 1e6),
    k=st.integers(1, 300),
    t=st.floats(-1, 1),
    zero=st.sampled_from(["+1", "-1"]),
)
def test_fold_matches_brute_force(alpha, bias, gamma, beta, mean, var, k, t, zero):
    args = (alpha, bias, gamma, beta, mean, var, 1e-5, k)
    res = fold_one(*args, t=t, zero=zero)
    assert np.array_equal(folded_bits(res, k)[0], brute_bits(*args, t=t, zero=zero))


def test_float_fold_composes_alpha_bn_and_scales():
    rng = np.random.default_rng(0)
    c = 7
    alpha, b = rng.uniform(0.1, 2, c), rng.normal(size=c)
    g, be, m, v = rng.normal(size=c), rng.normal(size=c), rng.normal(size=c), rng.uniform(0.1, 3, c)
    chain = [
        ChannelStage("add", b),
        BatchNormStage(g, be, m, v, 1e-5),
        ChannelStage("mul", np.full(c, 0.5)),
        ChannelStage("sub", np.full(c, 0.25)),
    ]
    mult, bias = fold.affine(chain, alpha)
    s = np.arange(-30, 31)
    want = (
        ((alpha[:, None] * s + b[:, None]) - m[:, None]) / np.sqrt(v[:, None] + 1e-5) * g[:, None] + be[:, None]
    ) * 0.5 - 0.25
    got = mult[:, None].astype(np.float64) * s + bias[:, None]
    assert np.allclose(got, want, rtol=1e-6, atol=1e-5)


def test_pack_weights_bit_layout():
    rng = np.random.default_rng(1)
    w = np.where(rng.random((5, 70, 3, 3)) < 0.5, -1, 1)
    packed = pack_conv_weight(w)
    assert packed.shape == (5, 3, 3, 2) and packed.dtype == np.uint64
    o, i, kh, kw = 3, 65, 1, 2
    word, bit = i // 64, i % 64
    assert bool((int(packed[o, kh, kw, word]) >> bit) & 1) == (w[o, i, kh, kw] < 0)
    assert np.all(packed[:, :, :, 1] >> np.uint64(6) == 0)  # pad bits past channel 69 are zero
    lin = np.where(rng.random((4, 130)) < 0.5, -1, 1)
    assert np.array_equal(unpack_last(pack_linear_weight(lin), 130), lin < 0)
