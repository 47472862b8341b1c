"""The `bitplane` op: one bit-plane of a k-bit activation, float in, packed ±1 bits out.

The kernel through `_core.run_op` on every ISA path and thread count against an independent numpy
reference (q counted level by level in int64, its bit taken with shifts), channel counts that are not
multiples of 8 or 64, thresholds with ties (equal neighbours) and inputs exactly on them, NaN, and the
default thresholds m - 0.5 on integer inputs; the factory's refusals.
"""

from __future__ import annotations

import numpy as np
import pytest

from xnorinfer import _core
from xnorinfer.bits import unpack_last


def numpy_plane(x: np.ndarray, thresholds: np.ndarray, plane: int) -> np.ndarray:
    """True (= -1) where bit `plane` of q = #{m : x >= t[m]} is clear; NaN counts no level."""
    x64 = x.astype(np.float64)
    q = np.zeros(x.shape, np.int64)
    for t in thresholds.astype(np.float64):
        q += np.where(np.isnan(x64), False, x64 >= t)
    return ((q >> plane) & 1) == 0


def everywhere(x: np.ndarray, attrs: dict, params: dict) -> np.ndarray:
    results = [
        _core.run_op("bitplane", attrs, params, [x], isa=isa, threads=threads)
        for isa in _core.available_isas()
        for threads in (1, 2)
    ]
    for r in results[1:]:
        assert r.tobytes() == results[0].tobytes()
    return results[0]


@pytest.mark.parametrize("channels", [1, 7, 8, 63, 64, 65, 131])
@pytest.mark.parametrize("k", [2, 3])
def test_planes_with_tied_thresholds_match_numpy(channels: int, k: int) -> None:
    rng = np.random.default_rng(channels * 10 + k)
    n = 2**k - 1
    t = np.sort(rng.normal(size=(n, channels)), axis=0).astype(np.float32)
    t[1, ::3] = t[0, ::3]  # ties: two levels at one threshold (q jumps by 2 there)
    if k == 3:
        t[4:, ::5] = t[4, ::5]
    x = rng.normal(size=(5, 3, channels)).astype(np.float32) * 1.5
    x[0, 0] = t[0]  # exactly on a threshold: x >= t counts it
    x[0, 1] = t[1]
    x[1, 0] = np.nextafter(t[1], -np.inf)
    x[1, 1, :: max(1, channels // 3)] = np.nan
    x[1, 2, 0] = -np.inf
    x[2, 0, 0] = np.inf
    for plane in range(k):
        got = everywhere(x, {"plane": plane, "bits": k}, {"threshold": t})
        assert got.dtype == np.uint64 and got.shape == (5, 3, (channels + 63) // 64)
        np.testing.assert_array_equal(unpack_last(got, channels), numpy_plane(x, t, plane))
        words = got.reshape(-1, got.shape[-1])
        if channels % 64:  # pad bits stay 0
            assert not np.any(words[:, -1] >> np.uint64(channels % 64))


@pytest.mark.parametrize("k", [2, 3, 4])
def test_default_thresholds_give_the_bits_of_an_integer_input(k: int) -> None:
    n = 2**k - 1
    rng = np.random.default_rng(k)
    q = rng.integers(0, n + 1, size=(3, 4, 4, 37))
    x = q.astype(np.float32)
    for plane in range(k):
        got = everywhere(x, {"plane": plane, "bits": k}, {})
        np.testing.assert_array_equal(unpack_last(got, 37), ((q >> plane) & 1) == 0)


def test_default_thresholds_round_a_non_integer_half_up() -> None:
    x = np.array([[-0.7, 0.49, 0.5, 1.5, 2.49999, 2.5, 3.0, 9.0]], np.float32)
    q = np.array([0, 0, 1, 2, 2, 3, 3, 3])
    for plane in range(2):
        got = everywhere(x, {"plane": plane, "bits": 2}, {})
        np.testing.assert_array_equal(unpack_last(got, 8)[0], ((q >> plane) & 1) == 0)


@pytest.mark.parametrize(
    ("attrs", "params", "message"),
    [
        ({"plane": 2, "bits": 2}, {}, "plane must be in 0..1"),
        ({"plane": 0, "bits": 9}, {}, "bits must be in 1..8"),
        ({"plane": 0, "bits": 2}, {"threshold": np.zeros((2, 4), np.float32)}, r"threshold must be \(3, C\)"),
        (
            {"plane": 0, "bits": 2},
            {"threshold": np.array([[0.0] * 4, [1.0] * 4, [0.5] * 4], np.float32)},
            "sorted",
        ),
        ({"plane": 0, "bits": 2}, {"threshold": np.full((3, 4), np.nan, np.float32)}, "NaN"),
    ],
)
def test_factory_refuses_bad_attributes(attrs: dict, params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _core.run_op("bitplane", attrs, params, [np.zeros((1, 4), np.float32)])


def test_schema_refuses_missing_plane() -> None:
    with pytest.raises(ValueError, match="plane"):
        _core.run_op("bitplane", {"bits": 2}, {}, [np.zeros((1, 4), np.float32)])
