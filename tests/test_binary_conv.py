"""BinaryConv2d against a float64 PyTorch conv2d of +-1 tensors, on every ISA and thread count.

The exactness contract: int32 output is the exact integer sum; bits output is decided by one
integer comparison; float output is one float32 fma of the exact sum; nothing depends on the ISA
path or the number of threads.
"""

from __future__ import annotations

from dataclasses import dataclass

import engine_ops as E
import numpy as np
import pytest
import reference as R
from conftest import ISAS, POOLS
from hypothesis import given, settings
from hypothesis import strategies as st

from xnorinfer import _core

PAD_MODES = ["zero", "plus_one", "minus_one"]
ALL_ISAS = ISAS


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


@dataclass
class Case:
    n: int
    cin: int
    h: int
    w: int
    cout: int
    kh: int
    kw: int
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)

    def __post_init__(self):
        self.stride = _pair(self.stride)
        self.padding = _pair(self.padding)

    def __str__(self):
        return (
            f"N{self.n}_C{self.cin}_{self.h}x{self.w}_O{self.cout}_k{self.kh}x{self.kw}"
            f"_s{self.stride[0]}{self.stride[1]}_p{self.padding[0]}{self.padding[1]}"
        )


def make_data(case: Case, rng: np.random.Generator):
    """+-1 float input (NCHW), +-1 float weights (OIHW) and their packed forms."""
    x = R.random_pm1(rng, (case.n, case.cin, case.h, case.w))
    w = R.random_pm1(rng, (case.cout, case.cin, case.kh, case.kw))
    return x, w, R.pack_nchw(x), R.pack_weights_oihw(w)


def run_everywhere(op, xp, isas=None, pools=None, **kw):
    """Run on every (isa, pool) pair; assert every result is bit-identical; return one."""
    isas = ALL_ISAS if isas is None else isas
    pools = POOLS if pools is None else pools
    results = {}
    for isa in isas:
        for pool in pools:
            results[(isa, None if pool is None else pool.threads)] = op.run(xp, pool=pool, isa=isa, **kw)
    (k0, first), *rest = results.items()
    for k, r in rest:
        assert r.dtype == first.dtype and r.shape == first.shape
        assert r.tobytes() == first.tobytes(), f"result of {k} differs from {k0}"
    return first, results


def assert_equal_each(results, expected, what):
    for k, r in results.items():
        if not np.array_equal(r, expected):
            bad = np.argwhere(r != expected)
            i = tuple(bad[0])
            raise AssertionError(
                f"{what}: (isa, threads)={k} differs from reference at {len(bad)} places; "
                f"first at {i}: got {r[i]}, want {expected[i]}"
            )


CASES = [
    Case(3, 1, 5, 7, 1, 3, 3, 1, 1),
    Case(1, 3, 9, 8, 5, 3, 3, 2, 1),
    Case(2, 63, 7, 6, 33, 5, 5, 1, 2),
    Case(1, 65, 6, 9, 70, 2, 3, 1, (1, 0)),
    Case(1, 130, 5, 5, 8, 1, 1, 1, 0),
    Case(3, 64, 1, 9, 32, 1, 3, (1, 2), (0, 1)),  # H = 1
    Case(1, 128, 8, 1, 64, 3, 1, 2, (1, 0)),  # W = 1
    Case(1, 65, 4, 4, 96, 3, 3, 2, 2),
    Case(2, 200, 7, 7, 65, 3, 3, 1, 1),
    Case(1, 5, 11, 13, 33, 5, 5, 2, 2),
    Case(1, 3, 3, 3, 1, 5, 5, 1, 1),  # input smaller than kernel, padding makes it fit
    Case(1, 65, 3, 4, 5, 1, 1, 1, 1),  # 1x1 with padding: border outputs are all padding
    Case(2, 1, 1, 1, 70, 3, 3, 1, 1),  # 1x1 image, every tap but one is padding
    Case(1, 130, 9, 10, 33, 3, 3, 2, 2),  # padding >= kernel // 2 with stride 2
    Case(1, 33, 13, 17, 129, 2, 2, 2, 0),  # even kernel, valid, 3 words out
    Case(3, 64, 20, 11, 40, 3, 3, 1, 1),  # > 96 output pixels: several pixel chunks
]


@pytest.mark.parametrize("pad_mode", PAD_MODES)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_int32_exact(case, pad_mode, rng):
    x, w, xp, wp = make_data(case, rng)
    op = E.BinaryConv2d(wp, case.cin, stride=case.stride, padding=case.padding, pad_mode=pad_mode)
    assert (op.in_channels, op.out_channels) == (case.cin, case.cout)
    expected = R.conv_sums(x, w, case.stride, case.padding, pad_mode)
    assert op.output_shape(case.n, case.h, case.w) == expected.shape
    got, results = run_everywhere(op, xp)
    assert got.dtype == np.int32 and got.shape == expected.shape
    assert_equal_each(results, expected, f"{case} pad_mode={pad_mode}")


def test_pad_modes_differ_only_at_border(rng):
    """Sanity on the reference and the kernel alike: pad modes agree away from the border and
    'plus_one' - 'minus_one' at a corner equals 2 * (sum of the weights on padded taps)."""
    case = Case(1, 70, 6, 6, 3, 3, 3, 1, 1)
    x, w, xp, wp = make_data(case, rng)
    out = {m: E.BinaryConv2d(wp, case.cin, padding=(1, 1), pad_mode=m).run(xp) for m in PAD_MODES}
    inner = (slice(None), slice(1, -1), slice(1, -1))
    assert np.array_equal(out["zero"][inner], out["plus_one"][inner])
    assert np.array_equal(out["zero"][inner], out["minus_one"][inner])
    padded_taps = [(0, 0), (0, 1), (0, 2), (1, 0), (2, 0)]  # taps of output (0, 0) in the padding
    wsum = sum(w[:, :, ky, kx].sum(axis=1) for ky, kx in padded_taps)
    assert np.array_equal(out["plus_one"][0, 0, 0] - out["minus_one"][0, 0, 0], 2 * wsum)
    assert np.array_equal(out["plus_one"][0, 0, 0] - out["zero"][0, 0, 0], wsum)


@pytest.mark.parametrize("pad_mode", PAD_MODES)
@pytest.mark.parametrize(
    "case",
    [CASES[1], CASES[3], CASES[8], CASES[12], CASES[15], Case(1, 64, 5, 5, 64, 3, 3, 1, 1)],
    ids=str,
)
def test_float_output_is_one_fma(case, pad_mode, rng):
    """float output == float32(fma(multiplier, s, bias)) bit for bit, on every path."""
    x, w, xp, wp = make_data(case, rng)
    multiplier = (rng.standard_normal(case.cout) * 3).astype(np.float32)
    bias = (rng.standard_normal(case.cout) * 100).astype(np.float32)
    multiplier[0] = 0.0
    if case.cout > 2:
        multiplier[1] = np.float32(1 / 3)  # inexact products: fma vs mul+add differ often
        bias[1] = np.float32(0.1)
        multiplier[2] = -1.0
        bias[2] = 0.0
    op = E.BinaryConv2d(
        wp,
        case.cin,
        stride=case.stride,
        padding=case.padding,
        pad_mode=pad_mode,
        output="float",
        multiplier=multiplier,
        bias=bias,
    )
    s = R.conv_sums(x, w, case.stride, case.padding, pad_mode)
    expected = R.fma_f32(multiplier, s, bias)
    got, results = run_everywhere(op, xp)
    assert got.dtype == np.float32 and got.shape == s.shape
    np.testing.assert_allclose(got, multiplier.astype(np.float64) * s + bias, rtol=1e-6, atol=1e-4)
    for k, r in results.items():
        assert r.view(np.uint32).tobytes() == expected.view(np.uint32).tobytes(), (
            f"{case} {pad_mode} {k}: float output is not the correctly rounded fma"
        )


def test_float_output_fma_rounding_cases(rng):
    """Values chosen so that m*s+b rounded twice differs from one fma rounding."""
    case = Case(1, 200, 4, 4, 64, 1, 1)
    x, w, xp, wp = make_data(case, rng)
    s = R.conv_sums(x, w, case.stride, case.padding, "zero")
    # multiplier = 1 + 2^-23 makes m*s need > 24 bits; bias chosen near -m*s.
    multiplier = np.full(64, np.float32(1 + 2**-23), np.float32)
    multiplier[32:] = np.float32(0.1)
    bias = (-(multiplier.astype(np.float64) * s[0, 0, 0])).astype(np.float32)
    op = E.BinaryConv2d(wp, case.cin, output="float", multiplier=multiplier, bias=bias)
    expected = R.fma_f32(multiplier, s, bias)
    two_roundings = (multiplier * s.astype(np.float32)).astype(np.float32) + bias
    assert not np.array_equal(expected, two_roundings), "test data does not separate fma from mul+add"
    _, results = run_everywhere(op, xp)
    for k, r in results.items():
        assert r.tobytes() == expected.tobytes(), f"{k}: not a single-rounding fma"


@given(
    m=st.floats(width=32, allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6),
    b=st.floats(width=32, allow_nan=False, allow_infinity=False, min_value=-1e9, max_value=1e9),
    s=st.integers(-20000, 20000),
)
@settings(max_examples=200)
def test_reference_fma_is_correctly_rounded(m, b, s):
    """Check the reference itself against exact rational arithmetic."""
    from fractions import Fraction

    r = R.fma_f32(np.float32(m), np.int64(s), np.float32(b))
    exact = Fraction(float(np.float32(m))) * s + Fraction(float(np.float32(b)))
    err = abs(Fraction(float(r)) - exact)
    for nb in (np.nextafter(r, np.float32(np.inf)), np.nextafter(r, np.float32(-np.inf))):
        nerr = abs(Fraction(float(nb)) - exact)
        assert err < nerr or (err == nerr and (r.view(np.uint32) & 1) == 0)


def _bits_params(rng, s, cout):
    """Thresholds on achievable sums (ties), +-1 around them, extremes; random flips."""
    flat = s.reshape(-1, cout)
    threshold = flat[rng.integers(0, flat.shape[0], cout), np.arange(cout)].astype(np.int64)
    threshold += rng.choice([0, 0, 0, 1, -1], size=cout)
    threshold[0] = flat[0, 0]  # channel 0 always ties at pixel 0
    flip = rng.integers(0, 2, cout).astype(np.uint8)
    special = [R.INT32_MIN, R.INT32_MIN, R.INT32_MAX, R.INT32_MAX, 0]
    for i, t in enumerate(special[: max(0, cout - 1)]):
        threshold[i + 1] = t
        flip[i + 1] = i % 2  # INT32_MIN with flip 0 (constant +1) and 1 (constant -1)
    return threshold.astype(np.int32), flip


@pytest.mark.parametrize("pad_mode", PAD_MODES)
@pytest.mark.parametrize(
    "case",
    [
        CASES[0],
        CASES[2],
        CASES[3],
        CASES[5],
        CASES[8],
        CASES[12],
        CASES[14],
        CASES[15],
        Case(2, 64, 6, 6, 32, 3, 3, 1, 1),
        Case(1, 100, 5, 5, 128, 3, 3, 1, 1),
        Case(1, 10, 5, 5, 96, 3, 3, 1, 0),
    ],
    ids=str,
)
def test_bits_output(case, pad_mode, rng):
    x, w, xp, wp = make_data(case, rng)
    s = R.conv_sums(x, w, case.stride, case.padding, pad_mode)
    threshold, flip = _bits_params(rng, s, case.cout)
    op = E.BinaryConv2d(
        wp,
        case.cin,
        stride=case.stride,
        padding=case.padding,
        pad_mode=pad_mode,
        output="bits",
        threshold=threshold,
        flip=flip,
    )
    expected = R.threshold_bits(s, threshold, flip)
    assert op.output_shape(case.n, case.h, case.w) == expected.shape
    got, results = run_everywhere(op, xp)
    assert got.dtype == np.uint64 and got.shape == expected.shape
    assert_equal_each(results, expected, f"{case} {pad_mode}")
    # The data really exercises ties.
    assert (s == threshold.astype(np.int64)).any()
    # Written into a garbage-filled out=, pad bits must still come back zero.
    for isa in ALL_ISAS:
        out = np.full(expected.shape, np.uint64(0xFFFF_FFFF_FFFF_FFFF))
        r = op.run(xp, out=out, isa=isa, pool=POOLS[1])
        assert np.shares_memory(r, out)
        assert np.array_equal(out, expected), f"{isa}: out= result (pad bits?) wrong"
        assert not R.pad_bits_of(out, case.cout).any()


def test_bits_ties_and_constants(rng):
    """s == threshold gives +1 (bit 0) with flip 0 and -1 with flip 1; INT32_MIN is constant."""
    case = Case(1, 64, 1, 1, 6, 1, 1)
    x, w, xp, wp = make_data(case, rng)
    s = int(R.conv_sums(x, w, (1, 1), (0, 0), "zero")[0, 0, 0, 0])
    w = np.repeat(w[:1], 6, axis=0)  # every channel sees the same sum s
    wp = R.pack_weights_oihw(w)
    threshold = np.array([s, s, s + 1, s + 1, R.INT32_MIN, R.INT32_MIN], np.int32)
    flip = np.array([0, 1, 0, 1, 0, 1], np.uint8)
    want = np.array([0, 1, 1, 0, 0, 1], bool)  # (s < t) ^ flip
    op = E.BinaryConv2d(wp, 64, output="bits", threshold=threshold, flip=flip)
    for isa in ALL_ISAS:
        got = op.run(xp, isa=isa)
        assert np.array_equal(R.unpack_last(got, 6)[0, 0, 0], want), isa
        assert not R.pad_bits_of(got, 6).any()


def test_bits_default_flip_is_zero(rng):
    case = Case(2, 70, 5, 5, 33, 3, 3, 1, 1)
    x, w, xp, wp = make_data(case, rng)
    s = R.conv_sums(x, w, (1, 1), (1, 1), "zero")
    threshold, _ = _bits_params(rng, s, case.cout)
    op = E.BinaryConv2d(wp, case.cin, padding=(1, 1), output="bits", threshold=threshold)
    _, results = run_everywhere(op, xp)
    assert_equal_each(results, R.threshold_bits(s, threshold, np.zeros(case.cout, np.uint8)), "flip=None")


BENCH_SHAPES = [
    (128, 32, 32, 128),
    (256, 16, 16, 256),
    (512, 8, 8, 512),
    (64, 56, 56, 64),
    (128, 28, 28, 128),
    (256, 14, 14, 256),
    (512, 7, 7, 512),
]


@pytest.mark.parametrize("shape", BENCH_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}x{s[2]}-{s[3]}")
def test_benchmark_shapes_exact(shape, rng):
    cin, h, w_, cout = shape
    case = Case(1, cin, h, w_, cout, 3, 3, 1, 1)
    x, w, xp, wp = make_data(case, rng)
    expected = R.conv_sums(x, w, (1, 1), (1, 1), "zero")
    op = E.BinaryConv2d(wp, cin, padding=(1, 1))
    best = ALL_ISAS[-1]
    _, results = run_everywhere(op, xp)
    assert_equal_each(results, expected, f"bench {shape}")
    # Bits output on the same layer: the layer a binary net actually runs.
    threshold = expected[0, h // 2, w_ // 2].astype(np.int32)  # ties at the centre pixel
    flip = (np.arange(cout) % 3 == 0).astype(np.uint8)
    opb = E.BinaryConv2d(wp, cin, padding=(1, 1), output="bits", threshold=threshold, flip=flip)
    got = opb.run(xp, pool=POOLS[1], isa=best)
    assert np.array_equal(got, R.threshold_bits(expected, threshold, flip))


@st.composite
def conv_cases(draw):
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    # Padding up to the kernel size: what a bconv2d op accepts (docs/ir.md).
    ph, pw = draw(st.integers(0, min(3, kh))), draw(st.integers(0, min(3, kw)))
    h = draw(st.integers(max(1, kh - 2 * ph), 12))
    w = draw(st.integers(max(1, kw - 2 * pw), 12))
    return Case(
        n=draw(st.integers(1, 3)),
        cin=draw(st.sampled_from([1, 2, 3, 7, 31, 63, 64, 65, 100, 127, 128, 130, 193])),
        h=h,
        w=w,
        cout=draw(st.integers(1, 80)),
        kh=kh,
        kw=kw,
        stride=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        padding=(ph, pw),
    )


@settings(max_examples=200)
@given(
    case=conv_cases(),
    pad_mode=st.sampled_from(PAD_MODES),
    seed=st.integers(0, 2**32 - 1),
    output=st.sampled_from(["int32", "bits"]),
)
def test_random_shapes_property(case, pad_mode, seed, output):
    rng = np.random.default_rng(seed)
    x, w, xp, wp = make_data(case, rng)
    s = R.conv_sums(x, w, case.stride, case.padding, pad_mode)
    if output == "int32":
        op = E.BinaryConv2d(wp, case.cin, stride=case.stride, padding=case.padding, pad_mode=pad_mode)
        expected = s
    else:
        threshold, flip = _bits_params(rng, s, case.cout)
        op = E.BinaryConv2d(
            wp,
            case.cin,
            stride=case.stride,
            padding=case.padding,
            pad_mode=pad_mode,
            output="bits",
            threshold=threshold,
            flip=flip,
        )
        expected = R.threshold_bits(s, threshold, flip)
    _, results = run_everywhere(op, xp)
    assert_equal_each(results, expected, f"{case} {pad_mode} {output}")


@settings(max_examples=25)
@given(
    cin=st.integers(150, 700),
    cout=st.integers(50, 300),
    h=st.integers(3, 16),
    w=st.integers(3, 16),
    k=st.sampled_from([(1, 1), (3, 3), (2, 3)]),
    stride=st.sampled_from([(1, 1), (2, 2), (1, 2)]),
    pad_mode=st.sampled_from(PAD_MODES),
    seed=st.integers(0, 2**32 - 1),
)
def test_wide_layers_property(cin, cout, h, w, k, stride, pad_mode, seed):
    """Many input words, many output blocks, several pixel chunks per image."""
    case = Case(2, cin, h, w, cout, k[0], k[1], stride, 1)
    rng = np.random.default_rng(seed)
    x, wt, xp, wp = make_data(case, rng)
    s = R.conv_sums(x, wt, case.stride, case.padding, pad_mode)
    threshold, flip = _bits_params(rng, s, case.cout)
    kw = dict(stride=case.stride, padding=case.padding, pad_mode=pad_mode)
    op = E.BinaryConv2d(wp, cin, **kw)
    _, results = run_everywhere(op, xp)
    assert_equal_each(results, s, f"{case} {pad_mode} int32")
    opb = E.BinaryConv2d(wp, cin, output="bits", threshold=threshold, flip=flip, **kw)
    _, results = run_everywhere(opb, xp)
    assert_equal_each(results, R.threshold_bits(s, threshold, flip), f"{case} {pad_mode} bits")


def test_dense_as_1x1_conv(rng):
    """The binary dense layer is a 1x1 conv over an M x 1 image."""
    m, k, o = 7, 300, 45
    a = R.random_pm1(rng, (m, k))
    b = R.random_pm1(rng, (o, k))
    op = E.BinaryConv2d(R.pack_nhwc(b).reshape(o, 1, 1, -1), k)
    _, results = run_everywhere(op, R.pack_nhwc(a).reshape(1, m, 1, -1))
    expected = (a.astype(np.int64) @ b.T.astype(np.int64)).reshape(1, m, 1, o)
    assert_equal_each(results, expected, "dense")


def test_thread_pool_sizes_agree(rng):
    case = Case(2, 130, 21, 19, 70, 3, 3, 1, 1)
    x, w, xp, wp = make_data(case, rng)
    op = E.BinaryConv2d(wp, case.cin, padding=(1, 1))
    pools = [None, _core.ThreadPool(1), _core.ThreadPool(2), _core.ThreadPool(3)]
    assert [p.threads for p in pools[1:]] == [1, 2, 3]
    _, results = run_everywhere(op, xp, pools=pools)
    assert_equal_each(results, R.conv_sums(x, w, (1, 1), (1, 1), "zero"), "pools")


def test_k_is_the_real_channel_count(rng):
    """All +1 / all -1 weights on all +1 input: the sum is +-K*taps with K the real channel
    count (65), not the word width; pad bits never count."""
    case = Case(1, 65, 4, 4, 3, 3, 3, 1, 1)
    x, w, xp, wp = make_data(case, rng)
    ones = np.ones_like(w)
    op = E.BinaryConv2d(R.pack_weights_oihw(ones), 65, padding=(0, 0))
    xo = R.pack_nchw(np.ones_like(x))
    got = op.run(xo)
    assert np.all(got == 65 * 9)
    neg = E.BinaryConv2d(R.pack_weights_oihw(-ones), 65, padding=(0, 0)).run(xo)
    assert np.all(neg == -65 * 9)


def test_out_argument_int32_and_float(rng):
    case = Case(2, 70, 5, 6, 33, 3, 3, 1, 1)
    x, w, xp, wp = make_data(case, rng)
    s = R.conv_sums(x, w, (1, 1), (1, 1), "zero")
    # The exact sums through out=: the float output of the identity transform.
    ones, zeros = np.ones(case.cout, np.float32), np.zeros(case.cout, np.float32)
    op = E.BinaryConv2d(wp, case.cin, padding=(1, 1), output="float", multiplier=ones, bias=zeros)
    out = np.full(s.shape, -7, np.float32)
    r = op.run(xp, out=out)
    assert np.shares_memory(r, out) and np.array_equal(out, s)
    m = np.full(case.cout, 0.5, np.float32)
    b = np.full(case.cout, 0.25, np.float32)
    opf = E.BinaryConv2d(wp, case.cin, padding=(1, 1), output="float", multiplier=m, bias=b)
    outf = np.full(s.shape, np.nan, np.float32)
    r = opf.run(xp, out=outf)
    assert np.shares_memory(r, outf) and np.array_equal(outf, R.fma_f32(m, s, b))


@pytest.mark.parametrize("kind", ["float16", "strided"])
def test_out_argument_is_written_or_rejected(kind, rng):
    case = Case(1, 3, 4, 4, 5, 3, 3, 1, 1)
    x, w, xp, wp = make_data(case, rng)
    s = R.conv_sums(x, w, (1, 1), (1, 1), "zero")
    ones, zeros = np.ones(case.cout, np.float32), np.zeros(case.cout, np.float32)
    op = E.BinaryConv2d(wp, case.cin, padding=(1, 1), output="float", multiplier=ones, bias=zeros)
    if kind == "float16":
        out = np.zeros(s.shape, np.float16)
    else:
        out = np.zeros(s.shape[:-1] + (2 * s.shape[-1],), np.float32)[..., ::2]
    try:
        op.run(xp, out=out)
    except (ValueError, TypeError):
        return  # rejecting it is fine
    assert np.array_equal(out, s), "out= was accepted but not written"


# --------------------------------------------------------------------------- errors


def _small_op(**kw):
    w = np.zeros((4, 3, 3, 2), np.uint64)  # O=4, 3x3, 2 words -> in_channels 65..128
    return E.BinaryConv2d(w, 100, **kw)


def _small_float_op():
    return _small_op(output="float", multiplier=np.ones(4, np.float32), bias=np.zeros(4, np.float32))


def test_error_input_shape():
    op = _small_op(padding=(1, 1))
    with pytest.raises(ValueError, match="1 words do not hold 100 channels"):
        op.run(np.zeros((1, 5, 5, 1), np.uint64))
    with pytest.raises(ValueError, match=r"input must be packed NHWC with 100 channels, got \(5, 5, 100\)"):
        op.run(np.zeros((5, 5, 2), np.uint64))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        _small_op().run(np.zeros((1, 2, 5, 2), np.uint64))
    with pytest.raises(ValueError, match="empty or oversized dimension"):
        _small_op().run(np.zeros((0, 5, 5, 2), np.uint64))
    with pytest.raises(ValueError, match="out must be a writeable C-contiguous array of shape"):
        _small_float_op().run(np.zeros((1, 5, 5, 2), np.uint64), out=np.zeros((1, 3, 3, 5), np.float32))
    ro = np.zeros((1, 3, 3, 4), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out must be a writeable"):
        _small_float_op().run(np.zeros((1, 5, 5, 2), np.uint64), out=ro)
    with pytest.raises(ValueError, match="unknown ISA path 'sse'"):
        _small_op().run(np.zeros((1, 5, 5, 2), np.uint64), isa="sse")


def test_error_weights_shape():
    # The node is built (and refuses its weights) before the input is looked at.
    x = np.zeros((1, 5, 5, 1), np.uint64)
    with pytest.raises(ValueError, match="weight has 1 words per tap, in_channels 100 needs 2"):
        E.BinaryConv2d(np.zeros((4, 3, 3, 1), np.uint64), 100).run(x)
    with pytest.raises(ValueError, match="weight has 2 words per tap, in_channels 64 needs 1"):
        E.BinaryConv2d(np.zeros((4, 3, 3, 2), np.uint64), 64).run(x)
    with pytest.raises(ValueError, match=r"weight must be packed \(O, KH, KW, ceil\(I/64\)\)"):
        E.BinaryConv2d(np.zeros((4, 9, 2), np.uint64), 100).run(x)
    with pytest.raises(ValueError, match="in_channels 0 is out of range"):
        E.BinaryConv2d(np.zeros((4, 3, 3, 0), np.uint64), 0).run(x)
    with pytest.raises(ValueError, match="out_channels 0 is out of range"):
        E.BinaryConv2d(np.zeros((0, 3, 3, 1), np.uint64), 10).run(x)
    with pytest.raises(ValueError, match="stride must be positive"):
        E.BinaryConv2d(np.zeros((4, 3, 3, 1), np.uint64), 10, stride=(0, 1)).run(x)
    with pytest.raises(ValueError, match="'padding' value -1 is out of range"):
        E.BinaryConv2d(np.zeros((4, 3, 3, 1), np.uint64), 10, padding=(-1, 0)).run(x)


def test_error_transform_arguments():
    w = np.zeros((4, 3, 3, 1), np.uint64)
    x = np.zeros((1, 5, 5, 1), np.uint64)
    with pytest.raises(ValueError, match="missing parameter 'threshold'"):
        E.BinaryConv2d(w, 10, output="bits").run(x)
    with pytest.raises(ValueError, match=r"threshold' must have shape \(4,\), got \(3,\)"):
        E.BinaryConv2d(w, 10, output="bits", threshold=np.zeros(3, np.int32)).run(x)
    with pytest.raises(ValueError, match=r"flip' must have shape \(4,\), got \(4, 1\)"):
        E.BinaryConv2d(w, 10, output="bits", threshold=np.zeros(4, np.int32), flip=np.zeros((4, 1), np.uint8)).run(x)
    with pytest.raises(ValueError, match="missing parameter 'multiplier'"):
        E.BinaryConv2d(w, 10, output="float", bias=np.zeros(4, np.float32)).run(x)
    with pytest.raises(ValueError, match="missing parameter 'bias'"):
        E.BinaryConv2d(w, 10, output="float", multiplier=np.zeros(4, np.float32)).run(x)
    with pytest.raises(ValueError, match=r"bias' must have shape \(4,\)"):
        E.BinaryConv2d(w, 10, output="float", multiplier=np.zeros(4, np.float32), bias=np.zeros(5, np.float32)).run(x)
    with pytest.raises(ValueError, match="pad_mode must be 'zero', 'plus_one' or 'minus_one', got 'reflect'"):
        E.BinaryConv2d(w, 10, pad_mode="reflect").run(x)
    with pytest.raises(ValueError, match="output must be 'bits' or 'float', got 'int8'"):
        E.BinaryConv2d(w, 10, output="int8").run(x)
