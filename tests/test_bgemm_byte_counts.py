"""Binary GEMM tiles at the extremes of their partial counts.

The AVX2 tile sums nibble popcounts in unsigned bytes for up to 31 words (8 per byte per
word) before folding them into 64-bit lanes: all-disagreeing inputs (every XOR bit set)
over reductions just below, at and above each chunk boundary are where a byte would wrap.
Mixed channels (some agreeing everywhere, some disagreeing everywhere, some random) check
that each 4-channel vector and each pixel row of the tile keeps its own counts. Every ISA
path and thread count must give the exact integer sums of numpy's int64 reference.
"""

from __future__ import annotations

import engine_ops as E
import numpy as np
import pytest
import reference as R
from test_binary_conv import Case, assert_equal_each, run_everywhere

# Reduction lengths in 64-bit words around the 31-word chunks: 1x1 convs of 64 * words channels.
WORDS = [1, 30, 31, 32, 62, 63, 93, 200]


def _extreme_weights(rng: np.random.Generator, x_sign: float, cout: int, cin: int, kh: int, kw: int) -> np.ndarray:
    """Channel c: -x_sign everywhere (sum -K), +x_sign everywhere (sum +K) or random, in turn."""
    w = R.random_pm1(rng, (cout, cin, kh, kw))
    w[0::3] = -x_sign
    w[1::3] = x_sign
    return w


@pytest.mark.parametrize("words", WORDS)
@pytest.mark.parametrize("x_sign", [1.0, -1.0])
def test_all_disagreeing_words_do_not_wrap(words, x_sign, rng):
    cin = 64 * words
    case = Case(1, cin, 2, 4, 40, 1, 1)  # 8 pixels: a full tile of 6 and a tile of 2; blocks of 32 and 8
    x = np.full((case.n, cin, case.h, case.w), x_sign, np.float32)
    w = _extreme_weights(rng, x_sign, case.cout, cin, 1, 1)
    s = R.conv_sums(x, w, (1, 1), (0, 0), "zero")
    assert s[..., 0].min() == -cin and s[..., 1].max() == cin
    op = E.BinaryConv2d(R.pack_weights_oihw(w), cin)
    _, results = run_everywhere(op, R.pack_nchw(x))
    assert_equal_each(results, s, f"{words} words, x = {x_sign}")


@pytest.mark.parametrize("cout", [8, 13, 20, 29, 32, 44, 63])
@pytest.mark.parametrize("pixels", [1, 2, 3, 4, 5, 7])
def test_channel_vectors_and_rows_keep_their_counts(cout, pixels, rng):
    """3x3 zero-padded conv, 36 words (two chunks): every output width and tile row count."""
    cin = 256
    case = Case(1, cin, 1, pixels, cout, 3, 3, 1, 1)
    x = R.random_pm1(rng, (case.n, cin, case.h, case.w))
    x[:, :, :, 0] = 1.0  # pixel 0 constant: its taps meet the constant channels 0, 1 mod 3 fully (dis)agreeing
    w = _extreme_weights(rng, 1.0, cout, cin, 3, 3)
    s = R.conv_sums(x, w, (1, 1), (1, 1), "zero")
    wp = R.pack_weights_oihw(w)
    xp = R.pack_nchw(x)
    _, results = run_everywhere(E.BinaryConv2d(wp, cin, padding=1), xp)
    assert_equal_each(results, s, f"{cout} channels, {pixels} pixels, int32")
    threshold = rng.integers(-40, 40, cout).astype(np.int32)
    threshold[0::4] = s[0, 0, 0, 0::4]  # ties: s == threshold
    flip = rng.integers(0, 2, cout).astype(np.uint8)
    opb = E.BinaryConv2d(wp, cin, padding=1, output="bits", threshold=threshold, flip=flip)
    _, results = run_everywhere(opb, xp)
    assert_equal_each(results, R.threshold_bits(s, threshold, flip), f"{cout} channels, {pixels} pixels, bits")
    multiplier = rng.standard_normal(cout).astype(np.float32)
    bias = rng.standard_normal(cout).astype(np.float32)
    opf = E.BinaryConv2d(wp, cin, padding=1, output="float", multiplier=multiplier, bias=bias)
    _, results = run_everywhere(opf, xp)
    assert_equal_each(results, R.fma_f32(multiplier, s, bias), f"{cout} channels, {pixels} pixels, float")
