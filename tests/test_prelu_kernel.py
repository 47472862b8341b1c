"""The `prelu` op (RPReLU: y = t >= 0 ? t : slope * t, t = x - pre_shift, then + post_shift) against
numpy float32 arithmetic, on every ISA path and thread count, for each of its kernel's loop variants
(pre / post shift present or not, one shared or a per-channel slope) and on the values where a
select can go wrong: signed zeros, infinities, NaN, and channel counts around the vector widths."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from engine_ops import run_everywhere_op


def _reference(x: np.ndarray, slope: np.ndarray, pre: np.ndarray | None, post: np.ndarray | None) -> np.ndarray:
    t = x - pre if pre is not None else x.copy()
    with np.errstate(invalid="ignore", over="ignore"):
        y = np.where(t >= 0, t, slope * t).astype(np.float32)
    return y + post if post is not None else y


def _same(got: np.ndarray, want: np.ndarray) -> None:
    """Equal values, NaN where NaN, and the sign of every zero."""
    assert got.shape == want.shape
    assert np.array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    np.testing.assert_array_equal(got[ok], want[ok])
    np.testing.assert_array_equal(np.signbit(got[ok]), np.signbit(want[ok]))


@pytest.mark.parametrize("has_pre,has_post,per_channel", list(itertools.product([False, True], repeat=3)))
@pytest.mark.parametrize("channels", [1, 7, 8, 9, 31, 64, 67])
def test_prelu_matches_numpy(has_pre: bool, has_post: bool, per_channel: bool, channels: int) -> None:
    rng = np.random.default_rng(channels * 8 + has_pre * 4 + has_post * 2 + per_channel)
    rows = 37
    x = rng.standard_normal((rows, channels)).astype(np.float32)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 3e38, -3e38], np.float32)
    x.flat[: min(x.size, 3 * specials.size)] = np.resize(specials, min(x.size, 3 * specials.size))
    slope = rng.standard_normal(channels if per_channel else 1).astype(np.float32)
    pre = rng.standard_normal(channels).astype(np.float32) if has_pre else None
    post = rng.standard_normal(channels).astype(np.float32) if has_post else None
    if pre is not None:
        pre[0] = 0.0  # x - 0 keeps the special values of channel 0 as they are
    params = {"slope": slope}
    if pre is not None:
        params["pre_shift"] = pre
    if post is not None:
        params["post_shift"] = post
    got = run_everywhere_op("prelu", {}, [x], params=params)
    _same(got, _reference(x, slope, pre, post))
