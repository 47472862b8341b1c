"""Binary dense layer (binary GEMM) against a float64 matmul of the same +/-1 values."""

from __future__ import annotations

import engine_ops as E
import numpy as np
import pytest
import reference as R
from conftest import ISAS, POOLS
from hypothesis import given
from hypothesis import strategies as st


def _run_all(op, xp):
    """Run on every ISA and pool; assert the outputs are byte-identical; return one."""
    outs = [op.run(xp, pool=pool, isa=isa) for isa in ISAS for pool in POOLS]
    for o in outs[1:]:
        assert o.dtype == outs[0].dtype and np.array_equal(o.view(np.uint8), outs[0].view(np.uint8))
    return outs[0]


@given(
    m=st.integers(1, 40),
    k=st.sampled_from([1, 3, 63, 64, 65, 200, 784, 1024]),
    n=st.sampled_from([1, 5, 10, 33, 70, 128]),
    seed=st.integers(0, 2**32 - 1),
)
def test_int32_matches_matmul(m, k, n, seed):
    rng = np.random.default_rng(seed)
    x, w = R.random_pm1(rng, (m, k)), R.random_pm1(rng, (n, k))
    op = E.BinaryLinear(R.pack_nhwc(w), k)
    expect = x.astype(np.float64) @ w.astype(np.float64).T
    assert np.array_equal(_run_all(op, R.pack_nhwc(x)), expect.astype(np.int32))


@pytest.mark.parametrize("m,k,n", [(1, 1024, 1024), (7, 300, 70), (64, 128, 10)])
def test_bits_and_float_outputs(m, k, n, rng):
    x, w = R.random_pm1(rng, (m, k)), R.random_pm1(rng, (n, k))
    s = (x.astype(np.float64) @ w.astype(np.float64).T).astype(np.int64)
    # Thresholds on achievable sums (ties), both directions, and constants.
    threshold = s[0].astype(np.int32).copy()
    threshold[::7] = np.iinfo(np.int32).min
    flip = (np.arange(n) % 3 == 1).astype(np.uint8)
    bits = _run_all(E.BinaryLinear(R.pack_nhwc(w), k, output="bits", threshold=threshold, flip=flip), R.pack_nhwc(x))
    assert np.array_equal(bits, R.threshold_bits(s, threshold, flip))
    mult = rng.standard_normal(n).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    y = _run_all(E.BinaryLinear(R.pack_nhwc(w), k, output="float", multiplier=mult, bias=bias), R.pack_nhwc(x))
    assert np.array_equal(y, R.fma_f32(mult, s, bias))


def test_errors():
    w = np.zeros((4, 2), np.uint64)
    with pytest.raises(ValueError, match=r"weight has 2 words per row, in_features 300 needs 5"):
        E.BinaryLinear(w, 300).run(np.zeros((3, 5), np.uint64))
    op = E.BinaryLinear(w, 100)
    with pytest.raises(ValueError, match="3 words do not hold 100 channels"):
        op.run(np.zeros((3, 3), np.uint64))
    with pytest.raises(ValueError, match="missing parameter 'threshold'"):
        E.BinaryLinear(w, 100, output="bits").run(np.zeros((3, 2), np.uint64))
    with pytest.raises(ValueError, match="out must be a writeable C-contiguous"):
        opf = E.BinaryLinear(w, 100, output="float", multiplier=np.ones(4, np.float32), bias=np.zeros(4, np.float32))
        opf.run(np.zeros((3, 2), np.uint64), out=np.zeros((3, 5), np.float32))
