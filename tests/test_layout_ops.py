"""The layout ops (pad, slice; xnorinfer/ops/layout_ops.py) through `_core.run_op`, on every ISA path
and thread count, against numpy float64 slicing/padding and against PyTorch's F.pad / indexing.

Both ops copy values, so the engine must equal the reference exactly (no tolerance).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xnorinfer import _core, ir
from xnorinfer.ops import OPS

THREADS = (1, 2, 3)


def _run(kind: str, attrs: dict, x: np.ndarray, isa: str, threads: int) -> np.ndarray:
    return _core.run_op(kind, attrs, {}, [np.ascontiguousarray(x, np.float32)], isa=isa, threads=threads)


def _reference(kind: str, attrs: dict, x: np.ndarray) -> np.ndarray:
    op = ir.Op(kind, "op", ["x"], ["y"], attrs)
    OPS[kind].check(op)
    return OPS[kind].reference(op, [x.astype(np.float64)], [])


PADS = [
    {"pad_h": [1, 1], "pad_w": [1, 1], "value": -1.0},
    {"pad_h": [0, 2], "pad_w": [3, 0], "value": 1.0},
    {"pad_h": [0, 0], "pad_w": [0, 0], "pad_c": [4, 4]},  # IR-Net's option-A channel padding
    {"pad_h": [2, 1], "pad_w": [1, 2], "pad_c": [1, 3], "value": 0.5},
]


@pytest.mark.parametrize("attrs", PADS)
@pytest.mark.parametrize("threads", THREADS)
def test_pad_matches_numpy_and_torch(attrs, threads, isa, rng):
    x = rng.standard_normal((2, 5, 7, 6)).astype(np.float32)
    y = _run("pad", attrs, x, isa, threads)
    ref = _reference("pad", attrs, x)
    assert y.shape == ref.shape == OPS["pad"].shape(ir.Op("pad", "op", ["x"], ["y"], attrs), [x.shape])
    np.testing.assert_array_equal(y, ref.astype(np.float32))
    (t, b), (left, right), (f, k) = attrs["pad_h"], attrs["pad_w"], attrs.get("pad_c", [0, 0])
    expect = F.pad(torch.from_numpy(x).permute(0, 3, 1, 2), (left, right, t, b, f, k), value=attrs.get("value", 0.0))
    np.testing.assert_array_equal(y, expect.permute(0, 2, 3, 1).numpy())


SLICES = [
    ("h", 0, 9, 2),
    ("w", 0, 8, 2),
    ("w", 1, 8, 3),
    ("c", 2, 12, 4),
    ("c", 0, 12, 1),
    ("h", 8, 9, 5),
]
NHWC_AXIS = {"h": 1, "w": 2, "c": 3}  # the physical axis of each NHWC name


@pytest.mark.parametrize(("axis", "start", "stop", "step"), SLICES)
@pytest.mark.parametrize("threads", THREADS)
def test_slice_matches_numpy_and_torch(axis, start, stop, step, threads, isa, rng):
    x = rng.standard_normal((2, 9, 8, 12)).astype(np.float32)
    attrs = {"axis": NHWC_AXIS[axis], "start": start, "stop": stop, "step": step}
    y = _run("slice", attrs, x, isa, threads)
    ref = _reference("slice", attrs, x)
    np.testing.assert_array_equal(y, ref.astype(np.float32))
    nchw = torch.from_numpy(x).permute(0, 3, 1, 2)
    dim = {"c": 1, "h": 2, "w": 3}[axis]
    expect = nchw.narrow(dim, 0, nchw.shape[dim])[(slice(None),) * dim + (slice(start, stop, step),)]
    np.testing.assert_array_equal(y, expect.permute(0, 2, 3, 1).numpy())


@pytest.mark.parametrize("threads", THREADS)
def test_slice_of_features(threads, isa, rng):
    x = rng.standard_normal((3, 50)).astype(np.float32)
    attrs = {"axis": 1, "start": 3, "stop": 47, "step": 5}
    np.testing.assert_array_equal(_run("slice", attrs, x, isa, threads), x[:, 3:47:5])


@pytest.mark.parametrize(
    ("kind", "attrs", "shape", "message"),
    [
        ("slice", {"axis": 1, "start": 3, "stop": 3, "step": 1}, (1, 4, 4, 2), "start < stop"),
        ("slice", {"axis": 2, "start": 0, "stop": 5, "step": 1}, (1, 4, 4, 2), "stop <= size"),
        ("slice", {"axis": 2, "start": 0, "stop": 2, "step": 0}, (1, 4, 4, 2), "step"),
        ("slice", {"axis": 2, "start": 0, "stop": 2, "step": 1}, (4, 2), "does not fit"),
        ("slice", {"axis": "h", "start": 0, "stop": 1, "step": 1}, (1, 4, 4, 2), "axis"),
        ("slice", {"axis": 0, "start": 0, "stop": 1, "step": 1}, (3, 4, 4, 2), "batch"),
        ("pad", {"pad_h": [-1, 0], "pad_w": [0, 0]}, (1, 4, 4, 2), "out of range"),
        ("pad", {"pad_h": [1, 1], "pad_w": [0, 0]}, (4, 2), "NHWC"),
    ],
)
def test_engine_refuses_bad_geometry(kind, attrs, shape, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _run(kind, attrs, np.zeros(shape, np.float32), None, 1)


def test_python_shape_rule_refuses_what_the_engine_refuses():
    op = ir.Op("slice", "s", ["x"], ["y"], {"axis": 1, "start": 0, "stop": 5, "step": 1})
    with pytest.raises(ValueError, match="stop <= size"):
        OPS["slice"].shape(op, [(1, 4, 4, 2)])
    op = ir.Op("pad", "p", ["x"], ["y"], {"pad_h": [1, 1], "pad_w": [0, 0]})
    assert OPS["pad"].shape(op, [(1, 4, 4, 2)]) == (1, 6, 4, 2)


# --------------------------------------------------------------------------- pools with ceil_mode


def _nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x.astype(np.float64)).permute(0, 3, 1, 2)


POOLS = [
    # kernel, stride, padding, ceil_mode, count_include_pad: bnn_lib_resnet's downsample, XNOR NIN's
    # AvgPool2d(3, 2, 1), and ceil-mode windows that run past the padded input
    (2, 2, 0, True, False),
    (3, 2, 1, False, True),
    (3, 2, 1, True, True),
    (3, 2, 1, True, False),
    (2, 3, 1, True, True),
    (3, 3, 0, True, True),
    (4, 3, 2, True, False),
]


@pytest.mark.parametrize(("k", "s", "p", "ceil", "include"), POOLS)
@pytest.mark.parametrize("kind", ["maxpool2d", "avgpool2d"])
@pytest.mark.parametrize("hw", [(7, 7), (8, 5)])
def test_float_pools_match_torch(kind, k, s, p, ceil, include, hw, isa, rng):
    x = rng.standard_normal((2,) + hw + (19,)).astype(np.float32)
    attrs = {"kernel": [k, k], "stride": [s, s], "padding": [p, p], "ceil_mode": ceil}
    if kind == "avgpool2d":
        attrs["count_include_pad"] = include
        want = F.avg_pool2d(_nchw(x), k, s, p, ceil_mode=ceil, count_include_pad=include)
    else:
        want = F.max_pool2d(_nchw(x), k, s, p, ceil_mode=ceil)
    want = want.permute(0, 2, 3, 1).numpy()
    ref = _reference(kind, attrs, x)
    assert ref.shape == want.shape == OPS[kind].shape(ir.Op(kind, "op", ["x"], ["y"], attrs), [x.shape])
    np.testing.assert_allclose(ref, want, rtol=1e-12, atol=1e-12)
    outs = [_run(kind, attrs, x, isa, threads) for threads in THREADS]
    for y in outs:
        np.testing.assert_array_equal(y, outs[0])
    np.testing.assert_allclose(outs[0], want, rtol=1e-6, atol=1e-6)
    if kind == "maxpool2d":
        np.testing.assert_array_equal(outs[0], want.astype(np.float32))


def test_pool_isa_paths_agree(rng):
    x = rng.standard_normal((1, 9, 9, 37)).astype(np.float32)
    attrs = {"kernel": [3, 3], "stride": [2, 2], "padding": [1, 1], "ceil_mode": True, "count_include_pad": False}
    outs = [_run("avgpool2d", attrs, x, isa, 2) for isa in _core.available_isas()]
    for y in outs:
        np.testing.assert_array_equal(y, outs[0])


# --------------------------------------------------------------------------- grouped convolution


@pytest.mark.parametrize(
    ("cin", "cout", "groups", "k", "s", "p"), [(8, 8, 8, 3, 2, 1), (12, 6, 3, 3, 1, 1), (6, 12, 2, 1, 1, 0)]
)
@pytest.mark.parametrize("bias", [False, True])
def test_grouped_conv2d_matches_torch(cin, cout, groups, k, s, p, bias, rng):
    x = rng.standard_normal((2, 9, 7, cin)).astype(np.float32)
    w = rng.standard_normal((cout, cin // groups, k, k)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    attrs = {"stride": [s, s], "padding": [p, p], "groups": groups}
    params = {"weight": np.ascontiguousarray(w.transpose(0, 2, 3, 1))}
    if bias:
        params["bias"] = b
    want = F.conv2d(
        _nchw(x), torch.from_numpy(w).double(), torch.from_numpy(b).double() if bias else None, s, p, groups=groups
    )
    want = want.permute(0, 2, 3, 1).numpy()
    op = ir.Op("conv2d", "op", ["x"], ["y"], attrs, params)
    OPS["conv2d"].check(op)
    np.testing.assert_allclose(OPS["conv2d"].reference(op, [x.astype(np.float64)], []), want, rtol=1e-10, atol=1e-10)
    outs = [
        _core.run_op("conv2d", attrs, params, [x], isa=isa, threads=threads)
        for isa in _core.available_isas()
        for threads in THREADS
    ]
    for y in outs:
        np.testing.assert_array_equal(y, outs[0])
    np.testing.assert_allclose(outs[0], want, rtol=1e-5, atol=1e-5)


def test_grouped_conv2d_refuses_groups_that_do_not_divide():
    params = {"weight": np.zeros((6, 3, 3, 2), np.float32)}
    with pytest.raises(ValueError, match="groups"):
        _core.run_op(
            "conv2d", {"stride": [1, 1], "padding": [1, 1], "groups": 4}, params, [np.zeros((1, 4, 4, 8), np.float32)]
        )
    op = ir.Op("conv2d", "op", ["x"], ["y"], {"stride": [1, 1], "padding": [1, 1], "groups": 2}, params)
    with pytest.raises(ValueError, match="group"):
        OPS["conv2d"].shape(op, [(1, 4, 4, 8)])
