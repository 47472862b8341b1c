"""Top-1 agreement in verification: a class flip counts only when ties do not explain it."""

from __future__ import annotations

import numpy as np

from xnorinfer.convert.verify import TIE_ULPS, compare_outputs, top1_ties


def test_an_exact_tie_of_two_classes_is_not_a_disagreement() -> None:
    ref = np.array([[3.0, 7.0, 7.0, -1.0], [0.5, 0.25, 0.0, 0.0]])  # row 0: classes 1 and 2 tie exactly
    out = ref.copy()
    out[0, 2] += 1e-7  # float32 rounding of a scale picks class 2
    assert list(top1_ties(out, ref)) == [True, False]
    assert compare_outputs(out, ref)[2] == 1.0


def test_a_flip_beyond_rounding_is_a_disagreement() -> None:
    ref = np.array([[3.0, 7.0, 6.99, -1.0], [0.5, 0.25, 0.0, 0.0]])
    out = ref.copy()
    out[0, 2] = 7.01
    assert not top1_ties(out, ref).any()
    assert compare_outputs(out, ref)[2] == 0.5


def test_the_tie_bound_is_tie_ulps_of_the_rows_largest_logit() -> None:
    big = 1000.0
    ulp = float(np.spacing(np.float32(big)))
    for gap, tie in [(TIE_ULPS * ulp, True), ((TIE_ULPS + 1) * ulp, False)]:
        ref = np.array([[big, big - gap]])
        out = np.array([[big - gap, big]])
        assert bool(top1_ties(out, ref)[0]) is tie
