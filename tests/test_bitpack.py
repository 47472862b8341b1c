"""Bit-packing by the `sign` op (threshold 0, sign(0) = +1) against a numpy (np.packbits) reference, on every
ISA path: the packing inference does (the converter's xnorinfer/convert/pack.py packs weights the same way)."""

from __future__ import annotations

import engine_ops as E
import numpy as np
import pytest
import reference as R
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from xnorinfer import _core

CHANNELS = [1, 32, 63, 64, 65, 127, 128, 200, 513]

F32 = np.finfo(np.float32)
SPECIALS = np.array(
    [
        0.0,
        -0.0,
        1.0,
        -1.0,
        F32.tiny,  # smallest normal
        -F32.tiny,
        np.float32(1e-45),  # smallest subnormal
        np.float32(-1e-45),
        F32.max,
        -F32.max,
        np.inf,
        -np.inf,
        F32.eps,
        -F32.eps,
    ],
    dtype=np.float32,
)


def _mixed_values(rng: np.random.Generator, shape) -> np.ndarray:
    """Gaussian values with ~25% replaced by specials (zeros, -0.0, subnormals, infs)."""
    x = rng.standard_normal(shape).astype(np.float32)
    mask = rng.random(shape) < 0.25
    x[mask] = rng.choice(SPECIALS, size=int(mask.sum()))
    return x


@pytest.mark.parametrize("channels", CHANNELS)
def test_nhwc_matches_reference(channels, isa, rng):
    x = _mixed_values(rng, (2, 3, 5, channels))
    got = E.sign_pack(x, isa=isa)
    assert got.dtype == np.uint64
    assert got.shape == (2, 3, 5, R.words_for(channels))
    np.testing.assert_array_equal(got, R.pack_nhwc(x))
    assert not R.pad_bits_of(got, channels).any()


@pytest.mark.parametrize("channels", CHANNELS)
def test_nchw_matches_reference(channels, isa, rng):
    x = _mixed_values(rng, (2, channels, 3, 5))
    got = E.sign_pack_nchw(x, isa=isa)
    assert got.dtype == np.uint64
    assert got.shape == (2, 3, 5, R.words_for(channels))
    np.testing.assert_array_equal(got, R.pack_nchw(x))
    # Same values laid out NHWC must pack to the same words.
    np.testing.assert_array_equal(got, E.sign_pack(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), isa=isa))


@pytest.mark.parametrize("channels", CHANNELS)
def test_all_negative_sets_exactly_c_bits(channels, isa):
    """All -1 input: the first C bits are 1, every pad bit is 0 (both layouts)."""
    x = np.full((3, channels), -1.0, dtype=np.float32)
    got = E.sign_pack(x, isa=isa)
    bits = R.unpack_last(got, R.words_for(channels) * 64)
    assert bits[:, :channels].all()
    assert not bits[:, channels:].any()
    got4 = E.sign_pack_nchw(np.full((1, channels, 2, 3), -0.5, dtype=np.float32), isa=isa)
    assert not R.pad_bits_of(got4, channels).any()
    assert int(np.bitwise_count(got4).sum()) == channels * 6


def test_sign_convention_specials(isa):
    """0.0 and -0.0 are +1 (bit 0); any negative value, however tiny, is -1 (bit 1)."""
    x = SPECIALS[None, :]
    got = E.sign_pack(x, isa=isa)
    bits = R.unpack_last(got, x.shape[1])[0]
    for value, bit in zip(SPECIALS, bits, strict=True):
        want = bool(value < 0)
        assert bit == want, f"isa={isa}: value {value!r} (signbit={np.signbit(value)}) packed as {int(bit)}"
    # -0.0 explicitly, in a full 64-lane word and in the tail, in both layouts.
    for c in (5, 64, 70, 130):
        z = np.full((4, c), -0.0, dtype=np.float32)
        assert not E.sign_pack(z, isa=isa).any(), f"-0.0 packed as -1 (isa={isa}, C={c})"
        assert not E.sign_pack_nchw(z.reshape(1, c, 2, 2), isa=isa).any()
        t = np.full((4, c), -1e-45, dtype=np.float32)  # negative subnormal: must not be flushed to 0
        assert np.array_equal(E.sign_pack(t, isa=isa), R.pack_nhwc(t)), f"isa={isa}, C={c}"
        assert np.array_equal(E.sign_pack_nchw(t.reshape(1, c, 2, 2), isa=isa), R.pack_nchw(t.reshape(1, c, 2, 2)))


def test_nan_is_not_negative(isa):
    """bit = (x < 0): NaN of either sign (any payload) packs as +1 on every path."""
    x = np.full((3, 130), np.nan, np.float32)
    x[1] = -x[1]
    x[2].view(np.uint32)[:] = 0xFFC00001  # negative NaN with a payload
    assert np.signbit(x[1:]).all()
    assert not E.sign_pack(x, isa=isa).any()
    assert not E.sign_pack_nchw(x.reshape(1, 3, 130, 1).transpose(0, 2, 1, 3).copy(), isa=isa).any()


def test_single_bit_positions(isa):
    """One negative channel at a time lands in word c // 64, bit c % 64."""
    c_total = 200
    x = np.ones((c_total, c_total), dtype=np.float32)
    np.fill_diagonal(x, -1.0)
    got = E.sign_pack(x, isa=isa)
    for c in range(c_total):
        expected = np.zeros(R.words_for(c_total), dtype=np.uint64)
        expected[c // 64] = np.uint64(1) << np.uint64(c % 64)
        assert np.array_equal(got[c], expected), f"channel {c} (isa={isa})"


def test_isas_give_identical_words(isas, rng):
    x = _mixed_values(rng, (3, 7, 9, 130))
    outs = [E.sign_pack(x, isa=i) for i in isas]
    for i, o in zip(isas, outs, strict=True):
        assert np.array_equal(o, outs[0]), f"{i} differs from {isas[0]}"
    xc = _mixed_values(rng, (2, 513, 3, 7))
    outs = [E.sign_pack_nchw(xc, isa=i) for i in isas]
    for i, o in zip(isas, outs, strict=True):
        assert np.array_equal(o, outs[0]), f"{i} differs from {isas[0]}"


@pytest.mark.parametrize("shape", [(7,), (65,), (4, 1), (2, 3, 1), (1, 1, 1, 1, 129), (0, 5)])
def test_nhwc_any_rank(shape, isa, rng):
    x = _mixed_values(rng, shape)
    got = E.sign_pack(x, isa=isa)
    assert got.shape == shape[:-1] + (R.words_for(shape[-1]),)
    np.testing.assert_array_equal(got, R.pack_nhwc(x))


def test_non_contiguous_inputs(isa, rng):
    """Views with strides (transposes, slices) pack by value, not by memory order."""
    base = _mixed_values(rng, (4, 70, 6, 8))
    view = base.transpose(0, 2, 3, 1)  # NHWC view of an NCHW buffer
    np.testing.assert_array_equal(E.sign_pack(view, isa=isa), R.pack_nhwc(view))
    sliced = base[:, ::2, :, ::3]
    np.testing.assert_array_equal(E.sign_pack_nchw(sliced, isa=isa), R.pack_nchw(sliced))


@settings(max_examples=100)
@given(
    x=hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=140),
        elements=st.floats(width=32),
    )
)
def test_nhwc_property(x):
    ref = R.pack_nhwc(x)
    for isa in _core.available_isas():
        np.testing.assert_array_equal(E.sign_pack(x, isa=isa), ref, err_msg=f"isa={isa}")


@settings(max_examples=100)
@given(
    x=hnp.arrays(
        np.float32,
        st.tuples(st.integers(1, 2), st.integers(1, 140), st.integers(1, 5), st.integers(1, 5)),
        elements=st.floats(width=32),
    )
)
def test_nchw_property(x):
    ref = R.pack_nchw(x)
    for isa in _core.available_isas():
        np.testing.assert_array_equal(E.sign_pack_nchw(x, isa=isa), ref, err_msg=f"isa={isa}")


def test_errors():
    with pytest.raises(ValueError, match=r"input must be \(N, C, H, W\)"):
        E.sign_pack_nchw(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match="empty or oversized dimension"):
        E.sign_pack(np.zeros((3, 0), np.float32))
    with pytest.raises(ValueError, match="empty or oversized dimension"):
        E.sign_pack_nchw(np.zeros((1, 0, 2, 2), np.float32))
    with pytest.raises(ValueError, match="need at least 1 dimension"):
        E.sign_pack(np.float32(1.0).reshape(()))
    with pytest.raises(ValueError, match="unknown ISA path 'neon'"):
        E.sign_pack(np.zeros((2, 8), np.float32), isa="neon")
    with pytest.raises(ValueError, match="unknown ISA path 'AVX2'"):
        E.sign_pack_nchw(np.zeros((1, 8, 2, 2), np.float32), isa="AVX2")
