"""Shape, reduction and matmul ops (xnorinfer/ops/shape_ops.py: transpose, reshape, expand, reduce,
matmul) and the axis forms of softmax, log_softmax, concat and slice, through `_core.run_op`.

Every result is compared with numpy float64 (exact ops bit for bit, reduce's mean/sum within one
float32 rounding, matmul and softmax within their documented tolerances), and every ISA path and
thread count (1 and 2) must give the same bits. The batch rules (reshape/expand carry axis 0, ops that
mix along axis 0 need batch 1 or a per-image graph) are checked through loaded graphs too.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ISAS

import xnorinfer
from xnorinfer import _core, float_equivalent, ir, xbin
from xnorinfer.convert import reference
from xnorinfer.ops import OPS

THREADS = (1, 2)
EPS32 = 2.0**-23


def _run(kind: str, attrs: dict, *xs: np.ndarray, isa: str | None = None, threads: int = 1) -> np.ndarray:
    return _core.run_op(kind, attrs, {}, [np.ascontiguousarray(x, np.float32) for x in xs], isa=isa, threads=threads)


def _run_all(kind: str, attrs: dict, *xs: np.ndarray) -> np.ndarray:
    """The op on every ISA path and thread count; they must agree bit for bit. Returns the result."""
    results = [_run(kind, attrs, *xs, isa=isa, threads=t) for isa in ISAS for t in THREADS]
    for r in results[1:]:
        assert r.shape == results[0].shape
        np.testing.assert_array_equal(r.view(np.uint32), results[0].view(np.uint32))
    return results[0]


def _python_shape(kind: str, attrs: dict, *shapes: tuple[int, ...]) -> tuple[int, ...]:
    op = ir.Op(kind, "op", [f"x{i}" for i in range(len(shapes))], ["y"], attrs)
    OPS[kind].check(op)
    return tuple(OPS[kind].shape(op, list(shapes)))


def _data(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


# --------------------------------------------------------------------------- transpose

TRANSPOSES = [
    ((7,), (0,)),
    ((1, 5), (1, 0)),
    ((1, 37, 29), (0, 2, 1)),  # matrix transpose: the blocked path, partial tiles
    ((2, 5, 7, 3), (0, 3, 1, 2)),  # NHWC -> NCHW
    ((2, 3, 5, 7), (0, 2, 3, 1)),  # NCHW -> NHWC
    ((3, 4, 5, 6), (0, 1, 3, 2)),
    ((2, 3, 1, 4, 5), (0, 4, 2, 3, 1)),
    ((1, 2, 3, 4, 5, 3), (5, 3, 1, 0, 4, 2)),  # moves axis 0: batch 1
    ((2, 3, 2, 5, 2, 3), (0, 2, 1, 3, 5, 4)),  # last axis stays: contiguous rows
    ((1, 19, 33), (0, 2, 1)),
]


@pytest.mark.parametrize(("shape", "perm"), TRANSPOSES)
def test_transpose_equals_numpy(shape, perm, rng):
    x = _data(rng, shape)
    y = _run_all("transpose", {"perm": list(perm)}, x)
    np.testing.assert_array_equal(y, np.transpose(x, perm))
    assert y.shape == _python_shape("transpose", {"perm": list(perm)}, shape)


# --------------------------------------------------------------------------- reshape and expand

RESHAPES = [
    ((1, 4, 6), [1, 6, 4], (1, 6, 4)),
    ((3, 4, 6), [1, 24], (3, 24)),  # shape[0] == 1 carries the batch
    ((3, 2, 3, 4), [1, 4, 1, 6], (3, 4, 1, 6)),
    ((5, 7), [35], (35,)),
    ((2, 3, 5), [6, 5], (6, 5)),  # per-image counts differ: the shape as written
    ((1, 2, 3, 2, 1, 5), [1, 60], (1, 60)),
]


@pytest.mark.parametrize(("shape", "target", "want"), RESHAPES)
def test_reshape_is_row_major_and_carries_the_batch(shape, target, want, rng):
    x = _data(rng, shape)
    y = _run_all("reshape", {"shape": target}, x)
    assert y.shape == want
    np.testing.assert_array_equal(y, x.reshape(want))
    assert _python_shape("reshape", {"shape": target}, shape) == want
    op = ir.Op("reshape", "op", ["x"], ["y"], {"shape": target})
    np.testing.assert_array_equal(OPS["reshape"].reference(op, [x.astype(np.float64)], []), x.reshape(want))


EXPANDS = [
    ((1, 1, 5), [1, 4, 5], (1, 4, 5)),
    ((3, 1, 5), [1, 4, 5], (3, 4, 5)),  # the batch carries through
    ((5,), [1, 3, 5], (1, 3, 5)),
    ((1, 3, 1, 1), [1, 3, 4, 7], (1, 3, 4, 7)),
    ((2, 1, 3, 1, 2, 1), [1, 3, 3, 2, 2, 3], (2, 3, 3, 2, 2, 3)),
    ((1, 1), [1, 9], (1, 9)),
]


@pytest.mark.parametrize(("shape", "target", "want"), EXPANDS)
def test_expand_equals_numpy_broadcast_to(shape, target, want, rng):
    x = _data(rng, shape)
    y = _run_all("expand", {"shape": target}, x)
    assert y.shape == want
    np.testing.assert_array_equal(y, np.broadcast_to(x, want))
    assert _python_shape("expand", {"shape": target}, shape) == want


# --------------------------------------------------------------------------- reduce

REDUCES = [
    ((1,), [0]),  # rank 1: axis 0 is the batch (batch 1 here; per-image graphs below)
    ((1, 13), [1]),
    ((2, 5, 7, 3), [1, 2]),  # NHWC global pooling
    ((2, 5, 7, 3), [3]),
    ((2, 5, 7, 3), [1, 3]),
    ((1, 5, 7, 3), [0, 1, 2, 3]),
    ((2, 3, 4, 5, 3), [2, 4]),
    ((2, 3, 1, 4, 3, 5), [1, 3, 5]),
    ((1, 301), [1]),
    ((2, 3, 4, 70), [1]),  # column path: 280 contiguous outputs per block, a partial chunk
    ((1, 3, 2, 5, 67), [0, 2]),  # a kept axis between reduced ones
]


@pytest.mark.parametrize("op", ["mean", "sum", "max", "min"])
@pytest.mark.parametrize(
    ("shape", "axes", "keepdims"),
    # without keepdims, reducing every axis would leave rank 0 (test_reduce_refuses_a_rank_0_output)
    [(s, a, k) for s, a in REDUCES for k in (True, False) if k or len(a) < len(s)],
)
def test_reduce_matches_float64(shape, axes, op, keepdims, rng):
    x = _data(rng, shape)
    attrs = {"op": op, "axes": axes, "keepdims": keepdims}
    y = _run_all("reduce", attrs, x)
    fn = {"mean": np.mean, "sum": np.sum, "max": np.max, "min": np.min}[op]
    ref = fn(x.astype(np.float64), axis=tuple(axes), keepdims=keepdims)
    assert y.shape == ref.shape == _python_shape("reduce", attrs, shape)
    if op in ("max", "min"):
        np.testing.assert_array_equal(y, ref.astype(np.float32))
    else:  # double accumulation, one rounding: within one float32 ulp of the float64 value
        ulp = np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)
        assert np.all(np.abs(y.astype(np.float64) - ref) <= ulp)


def test_reduce_max_and_min_propagate_nan(rng):
    x = _data(rng, (1, 4, 6))
    x[0, 2, 3] = np.nan
    x[0, 1, 0] = np.nan
    for op in ("max", "min"):
        y = _run_all("reduce", {"op": op, "axes": [2]}, x)
        ref = np.max(x, axis=2, keepdims=True) if op == "max" else np.min(x, axis=2, keepdims=True)
        np.testing.assert_array_equal(y, ref)  # numpy and torch.amax propagate NaN alike
        assert np.isnan(y[0, 1, 0]) and np.isnan(y[0, 2, 0]) and not np.isnan(y[0, 0, 0])


def test_reduce_keepdims_defaults_to_true(rng):
    x = _data(rng, (1, 3, 4))
    assert _run("reduce", {"op": "sum", "axes": [2]}, x).shape == (1, 3, 1)


# --------------------------------------------------------------------------- matmul

MATMULS = [
    ((1, 3), (3, 5)),
    ((1, 7, 33), (1, 33, 40)),  # two panels, the second partial
    ((3, 5, 4), (4, 6)),  # b broadcast over the batch
    ((3, 5, 4), (1, 4, 6)),
    ((2, 3, 5, 8), (2, 1, 8, 2)),  # b broadcast along an inner batch dim
    ((1, 1, 9, 8), (1, 4, 8, 3)),  # a broadcast
    ((2, 1, 2, 1, 4, 3), (1, 2, 1, 2, 3, 65)),
    ((1, 200, 17), (1, 17, 31)),  # several row tiles
]


@pytest.mark.parametrize(("sa", "sb"), MATMULS)
def test_matmul_matches_float64(sa, sb, rng):
    a, b = _data(rng, sa), _data(rng, sb)
    y = _run_all("matmul", {}, a, b)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    ref = np.matmul(a64, b64)
    assert y.shape == ref.shape == _python_shape("matmul", {}, sa, sb)
    # K float32 fused multiply-adds: each rounding within 2^-24 of the partial sums' magnitude.
    bound = sa[-1] * EPS32 * np.matmul(np.abs(a64), np.abs(b64))
    assert np.all(np.abs(y - ref) <= bound + 1e-30)
    op = ir.Op("matmul", "op", ["a", "b"], ["y"], {})
    np.testing.assert_allclose(OPS["matmul"].reference(op, [a64, b64], []), ref)


# --------------------------------------------------------------------------- softmax, log_softmax, concat, slice


@pytest.mark.parametrize("kind", ["softmax", "log_softmax"])
@pytest.mark.parametrize(("shape", "axis"), [((2, 9), -1), ((2, 5, 7, 3), 1), ((2, 5, 7, 3), 3), ((1, 3, 4, 2, 5), 2)])
def test_softmax_along_an_axis(kind, shape, axis, rng):
    x = _data(rng, shape) * 3
    y = _run_all(kind, {"axis": axis}, x)
    x64 = x.astype(np.float64)
    t = x64 - x64.max(axis=axis, keepdims=True)
    ref = np.exp(t) / np.exp(t).sum(axis=axis, keepdims=True)
    if kind == "log_softmax":
        ref = t - np.log(np.exp(t).sum(axis=axis, keepdims=True))
    np.testing.assert_allclose(y, ref, rtol=2e-6, atol=2e-7)
    # The strided path computes exactly what the row path computes on the moved axis.
    moved = np.ascontiguousarray(np.moveaxis(x, axis, -1))
    np.testing.assert_array_equal(y, np.moveaxis(_run(kind, {}, moved), -1, axis))


def test_softmax_without_axis_is_the_old_last_axis_softmax(rng):
    x = _data(rng, (3, 10))
    np.testing.assert_array_equal(_run("softmax", {}, x), _run("softmax", {"axis": 1}, x))


@pytest.mark.parametrize(
    ("shapes", "axis"),
    [
        ([(2, 3, 4), (2, 3, 5)], -1),
        ([(2, 3, 4), (2, 1, 4), (2, 6, 4)], 1),
        ([(1, 3, 4, 5), (1, 3, 2, 5)], 2),
        ([(1, 2), (3, 2)], 0),  # axis 0 with batch 1 at the first input
        ([(2, 2, 3, 1, 2, 3), (2, 2, 3, 4, 2, 3)], 3),
    ],
)
def test_concat_along_an_axis(shapes, axis, rng):
    xs = [_data(rng, s) for s in shapes]
    y = _run_all("concat", {"axis": axis}, *xs)
    np.testing.assert_array_equal(y, np.concatenate(xs, axis=axis))
    assert y.shape == _python_shape("concat", {"axis": axis}, *shapes)


@pytest.mark.parametrize(
    ("shape", "axis", "start", "stop", "step"),
    [
        ((1, 5), 1, 1, 5, 2),
        ((1, 7, 3), 0, 0, 1, 1),  # axis 0 with batch 1
        ((2, 9, 4), 1, 0, 9, 4),
        ((2, 3, 9), 2, 2, 9, 3),
        ((2, 3, 4, 5, 6), 3, 1, 4, 1),
    ],
)
def test_slice_along_any_axis(shape, axis, start, stop, step, rng):
    x = _data(rng, shape)
    attrs = {"axis": axis, "start": start, "stop": stop, "step": step}
    y = _run_all("slice", attrs, x)
    index = [slice(None)] * x.ndim
    index[axis] = slice(start, stop, step)
    np.testing.assert_array_equal(y, x[tuple(index)])
    assert y.shape == _python_shape("slice", attrs, shape)


# --------------------------------------------------------------------------- refusals

BAD = [
    ("transpose", {"perm": [0, 0, 1]}, [(1, 2, 3)], "permutation"),
    ("transpose", {"perm": [0, 2, 1, 3]}, [(1, 2, 3)], "does not fit"),
    ("transpose", {"perm": [1, 0]}, [(3, 2)], "batch"),
    ("reshape", {"shape": [1, 7]}, [(1, 2, 3)], "cannot reshape"),
    ("reshape", {"shape": [2, 4]}, [(1, 2, 3)], "cannot reshape"),
    ("expand", {"shape": [1, 4, 5]}, [(1, 2, 5)], "cannot expand"),
    ("expand", {"shape": [4, 5]}, [(1, 1, 5)], "cannot expand"),
    ("reduce", {"op": "sum", "axes": [3]}, [(1, 2, 3)], "axes"),
    ("reduce", {"op": "sum", "axes": [2, 1]}, [(1, 2, 3)], "sorted"),
    ("reduce", {"op": "sum", "axes": [1, 1]}, [(1, 2, 3)], "sorted"),
    ("reduce", {"op": "median", "axes": [1]}, [(1, 2, 3)], "op"),
    ("reduce", {"op": "mean", "axes": [0, 1]}, [(3, 2, 3)], "batch"),
    ("matmul", {}, [(1, 2, 3), (1, 4, 5)], "inner sizes"),
    ("matmul", {}, [(2, 2, 3), (3, 3, 5)], "broadcast"),
    ("matmul", {}, [(3,), (3, 5)], "rank >= 2"),
    ("softmax", {"axis": 3}, [(1, 2, 3)], "axis"),
    ("softmax", {"axis": 0}, [(3, 2)], "batch"),
    ("concat", {"axis": 1}, [(1, 2, 3), (1, 2, 4)], "differ"),
    ("concat", {"axis": 0}, [(2, 3), (2, 3)], "batch"),
    ("slice", {"axis": 3, "start": 0, "stop": 1, "step": 1}, [(1, 2, 3)], "does not fit"),
]


@pytest.mark.parametrize(("kind", "attrs", "shapes", "message"), BAD)
def test_engine_refuses(kind, attrs, shapes, message):
    with pytest.raises(ValueError, match=message):
        _run(kind, attrs, *[np.zeros(s, np.float32) for s in shapes])


@pytest.mark.parametrize(("kind", "attrs", "shapes", "message"), [b for b in BAD if b[3] != "batch"])
def test_python_declaration_refuses_it_too(kind, attrs, shapes, message):
    with pytest.raises(ValueError):
        _python_shape(kind, attrs, *shapes)


def test_reduce_refuses_a_rank_0_output():
    with pytest.raises(ValueError, match="rank 0"):
        _run("reduce", {"op": "sum", "axes": [0, 1], "keepdims": False}, np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match="rank 0"):
        _python_shape("reduce", {"op": "sum", "axes": [0, 1], "keepdims": False}, (1, 3))


def test_the_loader_refuses_a_string_slice_axis_and_unknown_attributes():
    with pytest.raises(ValueError, match="axis"):
        _run("slice", {"axis": "h", "start": 0, "stop": 1, "step": 1}, np.zeros((1, 2, 2, 2), np.float32))
    with pytest.raises(ValueError, match="unknown|unexpected"):
        _run("matmul", {"transpose_b": True}, np.zeros((1, 2, 2), np.float32), np.zeros((1, 2, 2), np.float32))


# --------------------------------------------------------------------------- graphs: the batch rules


def _graph(input_hwc: tuple[int, int, int], per_image: bool = False) -> tuple[ir.Graph, list[str]]:
    h, w, c = input_hwc
    g = ir.Graph(
        inputs=["x"],
        outputs=[],
        tensors={"x": ir.Tensor("x", (1, h, w, c), "f32")},
        ops=[],
        metadata={"input_shape": [1, c, h, w]},
    )
    if per_image:
        g.metadata["per_image"] = True
    return g, ["x"]


def _add(g: ir.Graph, kind: str, inputs: list[str], **attrs) -> str:
    name = f"t{len(g.ops)}"
    op = ir.Op(kind, f"op{len(g.ops)}", inputs, [name], attrs)
    OPS[kind].check(op)
    shape = OPS[kind].shape(op, [g.tensors[i].shape for i in inputs])
    g.ops.append(op)
    g.tensors[name] = ir.Tensor(name, tuple(shape), "f32")
    return name


def test_batch_carries_through_reshape_and_expand_in_a_graph(tmp_path, rng):
    # NHWC (1, 4, 5, 3) -> NCHW-ordered (1, 3, 20) -> (1, 3, 1, 20) -> expand (1, 3, 4, 20) -> mean over
    # axis 2 -> (1, 3, 20); times its transpose -> (1, 3, 3); softmax over axis 1; reshape (1, 9).
    g, _ = _graph((4, 5, 3))
    t = _add(g, "transpose", ["x"], perm=[0, 3, 1, 2])
    t = _add(g, "reshape", [t], shape=[1, 3, 1, 20])
    t = _add(g, "expand", [t], shape=[1, 3, 4, 20])
    m = _add(g, "reduce", [t], op="mean", axes=[2], keepdims=False)
    mt = _add(g, "transpose", [m], perm=[0, 2, 1])
    p = _add(g, "matmul", [m, mt])
    s = _add(g, "softmax", [p], axis=1)
    g.outputs = [_add(g, "reshape", [s], shape=[1, 9])]
    g.validate()
    path = tmp_path / "shape.xbin"
    xbin.write(g, path)
    x = rng.standard_normal((3, 3, 4, 5)).astype(np.float32)
    # numpy float64, written from the PyTorch-side meaning (NCHW in, flatten C, H, W).
    f = x.astype(np.float64).reshape(3, 3, 20)
    prod = f @ f.transpose(0, 2, 1)
    e = np.exp(prod - prod.max(axis=1, keepdims=True))
    want = (e / e.sum(axis=1, keepdims=True)).reshape(3, 9)
    for threads in THREADS:
        s = xnorinfer.load(path, threads=threads)
        y = s.run(x)
        assert y.shape == (3, 9)
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(y, reference.run(g, x)[g.outputs[0]], rtol=1e-5, atol=1e-6)
        for i in range(3):  # each image as if alone: identical bits
            np.testing.assert_array_equal(y[i : i + 1], s.run(x[i : i + 1]))
    # The declarations' float32 torch forms (the float equivalent holds 4-D tensors as NCHW).
    with torch.no_grad():
        eq = float_equivalent.torch_module(g)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(eq, want, rtol=1e-5, atol=1e-6)


def test_reduce_over_axis_0_runs_in_a_per_image_graph(tmp_path, rng):
    # Axis 0 holds H (4 rows): legal only per image; the session runs each image alone.
    g, _ = _graph((4, 5, 3), per_image=True)
    t = _add(g, "reshape", ["x"], shape=[4, 15])
    t = _add(g, "reduce", [t], op="sum", axes=[0])
    g.outputs = [t]
    g.validate()
    path = tmp_path / "pi.xbin"
    xbin.write(g, path)
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    y = xnorinfer.load(path).run(x)
    want = x.astype(np.float64).transpose(0, 2, 3, 1).reshape(2, 4, 15).sum(axis=1)
    assert y.shape == (2, 15)
    ulp = np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
    assert np.all(np.abs(y - want) <= ulp)
    # Without per_image, a recorded axis 0 of 4 is refused (axis 0 must be the batch).
    g.metadata["per_image"] = False
    with pytest.raises(ValueError, match="batch"):
        xbin.write(g, tmp_path / "batched.xbin")
        xnorinfer.load(tmp_path / "batched.xbin")


def test_torch_forms_follow_the_physical_axes(rng):
    """Each new or generalised op's torch form on a 4-D input (NCHW in the float equivalent) equals
    its numpy reference on the stored (NHWC) tensor."""
    x = _data(rng, (2, 4, 5, 3))  # as stored: NHWC
    nchw = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    cases = [
        ("transpose", {"perm": [0, 3, 1, 2]}),
        ("reshape", {"shape": [1, 20, 3]}),
        ("expand", {"shape": [1, 2, 4, 5, 3]}),
        ("reduce", {"op": "mean", "axes": [1, 2]}),
        ("reduce", {"op": "max", "axes": [3], "keepdims": False}),
        ("softmax", {"axis": 2}),
        ("log_softmax", {"axis": 1}),
        ("concat", {"axis": 2}),
        ("slice", {"axis": 2, "start": 1, "stop": 5, "step": 2}),
    ]
    for kind, attrs in cases:
        op = ir.Op(kind, "op", ["x"], ["y"], attrs)
        OPS[kind].check(op)
        ref = OPS[kind].reference(op, [x.astype(np.float64)], [])
        with torch.no_grad():
            y = OPS[kind].torch(op, [nchw], {})
        y = y.permute(0, 2, 3, 1) if y.dim() == 4 else y
        np.testing.assert_allclose(y.numpy(), ref, rtol=1e-6, atol=1e-6, err_msg=kind)
    a, b = _data(rng, (2, 3, 4, 5)), _data(rng, (2, 3, 5, 2))
    op = ir.Op("matmul", "op", ["a", "b"], ["y"], {})
    ta, tb = (torch.from_numpy(np.ascontiguousarray(v.transpose(0, 3, 1, 2))) for v in (a, b))
    with torch.no_grad():
        y = OPS["matmul"].torch(op, [ta, tb], {}).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(y, np.matmul(a.astype(np.float64), b.astype(np.float64)), rtol=1e-5, atol=1e-5)
