"""Tap grouping in binary convolutions over at most 32 input channels (docs/kernels.md).

Such a layer holds each pixel in a slot of a power-of-two width >= in_channels and packs up to
64 / slot horizontally adjacent taps of a kernel row into one word (a 3x3 over 32 channels: 6
words instead of 9; over 16 channels: 3), built per run from frames of neighbouring pixels. The
sums must stay exact against a float64 reference on every ISA path and thread count, with every
pad mode and output kind, for slot widths 1..32, rows split into full groups and a remainder,
strides and paddings that put pad pixels in any slot, and a word count that really shrank.
"""

from __future__ import annotations

import engine_ops as E
import numpy as np
import pytest
import reference as R
from test_binary_conv import Case, _bits_params, assert_equal_each, make_data, run_everywhere

PAD_MODES = ["zero", "plus_one", "minus_one"]

CASES = [
    # (case, expected slot bits, taps per word)
    (Case(2, 32, 9, 8, 40, 3, 3, 1, 1), 32, 2),  # ReActNet-A's first block: words (2 + 1) per row
    (Case(1, 17, 7, 9, 33, 3, 3, 2, 1), 32, 2),  # 17 channels still take a 32-bit slot
    (Case(1, 16, 8, 8, 16, 3, 3, 1, 1), 16, 3),  # ResNet-20's first stage: one word per row
    (Case(2, 9, 6, 11, 8, 5, 5, (1, 2), 2), 16, 4),  # 4 + remainder 1 per row
    (Case(1, 8, 10, 10, 70, 3, 7, 1, (1, 3)), 8, 7),  # a whole 7-tap row in 56 bits
    (Case(1, 5, 12, 13, 20, 2, 9, 3, (0, 4)), 8, 8),  # 8 + 1, stride 3
    (Case(3, 1, 5, 20, 3, 1, 9, 1, (0, 4)), 1, 9),  # one bit per pixel
    (Case(1, 3, 9, 9, 12, 4, 2, 2, (2, 1)), 4, 2),  # even kernel, padding on one side larger than half
    (Case(1, 31, 3, 3, 5, 5, 5, 1, 2), 32, 2),  # input smaller than the kernel: most taps padding
    (Case(2, 2, 1, 1, 4, 3, 3, 1, 1), 2, 3),  # 1x1 image: every tap but the centre is padding
]


@pytest.mark.parametrize("output", ["int32", "bits", "float"])
@pytest.mark.parametrize("pad_mode", PAD_MODES)
@pytest.mark.parametrize(("case", "slot", "group"), CASES, ids=[str(c[0]) for c in CASES])
def test_grouped_taps_are_exact(case, slot, group, pad_mode, output, rng):
    x, w, xp, wp = make_data(case, rng)
    s = R.conv_sums(x, w, case.stride, case.padding, pad_mode)
    kw: dict = dict(stride=case.stride, padding=case.padding, pad_mode=pad_mode)
    if output == "bits":
        kw["threshold"], kw["flip"] = _bits_params(rng, s, case.cout)
        expected = R.threshold_bits(s, kw["threshold"], kw["flip"])
    elif output == "float":
        kw["multiplier"] = (rng.standard_normal(case.cout) * 3).astype(np.float32)
        kw["bias"] = (rng.standard_normal(case.cout) * 50).astype(np.float32)
        expected = R.fma_f32(kw["multiplier"], s, kw["bias"])
    else:
        expected = s
    op = E.BinaryConv2d(wp, case.cin, output=output, **kw)
    rows_words = -(-case.kw // group)  # words per kernel row
    assert op.layout() == {"k_words": case.kh * rows_words, "taps_per_word": group, "slot_bits": slot}
    _, results = run_everywhere(op, xp)
    assert_equal_each(results, expected, f"{case} {pad_mode} {output}")


@pytest.mark.parametrize(
    "case",
    [
        Case(1, 33, 5, 5, 8, 3, 3, 1, 1),  # over 32 channels: one tap per word
        Case(1, 64, 5, 5, 8, 3, 3, 1, 1),
        Case(1, 16, 5, 5, 8, 3, 1, 1, 1),  # a kernel row of one tap: nothing to group
        Case(1, 16, 5, 5, 8, 1, 1, 1, 0),
    ],
    ids=str,
)
def test_layers_that_keep_one_tap_per_word(case, rng):
    x, w, xp, wp = make_data(case, rng)
    op = E.BinaryConv2d(wp, case.cin, stride=case.stride, padding=case.padding, pad_mode="zero")
    words = (case.cin + 63) // 64
    assert op.layout() == {"k_words": case.kh * case.kw * words, "taps_per_word": 1, "slot_bits": 64}
    _, results = run_everywhere(op, xp)
    assert_equal_each(results, R.conv_sums(x, w, case.stride, case.padding, "zero"), str(case))


def test_grouping_shrinks_nothing_but_the_reduction(rng):
    """The same weights with 32 and 33 input channels (the 33rd all zero on both sides): equal sums,
    the 32-channel layer on 6 words per pixel, the other on 9."""
    case = Case(1, 32, 14, 14, 64, 3, 3, 1, 1)
    x, w, xp, wp = make_data(case, rng)
    x33 = np.concatenate([x, np.ones_like(x[:, :1])], axis=1)
    w33 = np.concatenate([w, np.ones_like(w[:, :1])], axis=1)
    op32 = E.BinaryConv2d(wp, 32, padding=1, pad_mode="plus_one")
    op33 = E.BinaryConv2d(R.pack_weights_oihw(w33), 33, padding=1, pad_mode="plus_one")
    assert op32.layout()["k_words"] == 6 and op33.layout()["k_words"] == 9
    s32 = op32.run(xp)
    s33 = op33.run(R.pack_nchw(x33))
    # The extra channel adds +1 per tap: 9 inside the image, 9 at the border too (+1 padding).
    np.testing.assert_array_equal(s33, s32 + 9)
    np.testing.assert_array_equal(s32, R.conv_sums(x, w, (1, 1), (1, 1), "plus_one"))
