"""How ops split their work over threads: the equal shares of the thread pool (operators/parallel.h
share_range) and the pixel-range shares of the 1x1 float convolutions.

Each op runs through `_core.run_op` (the registry's node, no session threshold: every op splits) on
1, 2, 3 and 5 threads and every ISA path; the outputs must be the same bytes, and equal to a numpy
float64 reference (exact where the operation is one rounding, else to float32 accuracy). The sizes
are the ones whose old whole-grain split was most uneven (7x7x512 floats: 16384 + 8704 values) and
odd pixel counts that end shares inside a GEMM tile.
"""

from __future__ import annotations

import numpy as np
import pytest

from xnorinfer import _core

THREADS = (1, 2, 3, 5)


def _everywhere(kind: str, attrs: dict, params: dict, inputs: list[np.ndarray]) -> np.ndarray:
    results = [
        _core.run_op(kind, attrs, params, inputs, isa=isa, threads=t) for isa in _core.available_isas() for t in THREADS
    ]
    for r in results[1:]:
        assert r.shape == results[0].shape and r.tobytes() == results[0].tobytes()
    return results[0]


@pytest.mark.parametrize(
    ("h", "w", "cin", "cout", "stride"),
    [
        (7, 7, 256, 512, 1),  # 49 pixels: shares of 24 and 25 rows
        (28, 28, 64, 128, 1),  # 784 pixels: two shares of 392 rows, tiles of 79 rows
        (13, 11, 24, 70, 1),  # 143 pixels, a ragged last panel
        (15, 14, 16, 48, 2),  # strided 1x1: shares of whole output rows
        (9, 31, 8, 40, 2),
    ],
)
def test_1x1_conv_splits_by_pixels(h, w, cin, cout, stride, rng):
    x = rng.standard_normal((1, h, w, cin)).astype(np.float32)
    weight = rng.standard_normal((cout, 1, 1, cin)).astype(np.float32)
    bias = rng.standard_normal(cout).astype(np.float32)
    attrs = {"stride": [stride, stride], "padding": [0, 0]}
    y = _everywhere("conv2d", attrs, {"weight": weight, "bias": bias}, [x])
    xs = x[:, ::stride, ::stride, :].astype(np.float64)
    ref = xs @ weight[:, 0, 0, :].T.astype(np.float64) + bias
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4 * np.sqrt(cin))


@pytest.mark.parametrize("shape", [(1, 7, 7, 512), (1, 14, 14, 256), (1, 28, 28, 128), (1, 5, 3, 1000)])
def test_elementwise_ops_split_evenly(shape, rng):
    a = rng.standard_normal(shape).astype(np.float32)
    b = rng.standard_normal(shape).astype(np.float32)
    y = _everywhere("add", {}, {}, [a, b])
    np.testing.assert_array_equal(y, (a.astype(np.float64) + b).astype(np.float32))  # one rounding
    scale = rng.standard_normal(shape[-1]).astype(np.float32)
    shift = rng.standard_normal(shape[-1]).astype(np.float32)
    y = _everywhere("affine", {}, {"scale": scale, "shift": shift}, [a])
    np.testing.assert_array_equal(y, (a.astype(np.float64) * scale + shift).astype(np.float32))  # fma: one rounding
    y = _everywhere("concat", {"axis": -1}, {}, [a, b])
    np.testing.assert_array_equal(y, np.concatenate([a, b], axis=-1))


@pytest.mark.parametrize("hw", [(56, 56), (28, 28), (14, 14), (7, 9)])
def test_avgpool_splits_by_rows(hw, rng):
    h, w = hw
    x = rng.standard_normal((1, h, w, 64)).astype(np.float32)
    attrs = {"kernel": [2, 2], "stride": [2, 2], "padding": [0, 0], "count_include_pad": True}
    y = _everywhere("avgpool2d", attrs, {}, [x])
    oh, ow = h // 2, w // 2
    ref = x[:, : 2 * oh, : 2 * ow, :].astype(np.float64).reshape(1, oh, 2, ow, 2, 64).mean(axis=(2, 4))
    np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-6)
