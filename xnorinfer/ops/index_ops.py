"""Index ops (docs/ir.md has each one's exact rule): arg_reduce (argmax / argmin), topk (and sort),
cumsum (cumprod, cummax, cummin), take (index_select, embedding, x[:, idx]), gather and scatter
(scatter_add, scatter_reduce, index_put).

The IR has f32 and bits tensors only, so an index is a float32 holding an exact integer (exact below
2^24; the converter and the runtime refuse a longer indexed axis). An index read by `take` or
`gather` is checked at run time: not an integer inside the axis fails the run naming the op.

Every axis is PHYSICAL (4-D images are NHWC). Reference arrays are float64; the torch forms follow
the float equivalent's convention (a 4-D tensor is NCHW there, every other rank physical).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from xnorinfer.ops.float_ops import f32, from_physical, norm_axis, to_physical
from xnorinfer.ops.schema import Attr, OpDef, Shape, no_cost

if TYPE_CHECKING:
    from xnorinfer import ir

MAX_EXACT_INDEX = 1 << 24  # float32 holds every integer up to here (csrc/runtime/nodes/index_util.h)


def _where(op: ir.Op) -> str:
    return f"op {op.name} ({op.kind})"


def op_axis(op: ir.Op, rank: int) -> int:
    """The op's `axis` attribute as a physical axis in [0, rank)."""
    return norm_axis(_where(op), int(op.attrs["axis"]), rank)


def _check_exact(op: ir.Op, size: int) -> None:
    if size > MAX_EXACT_INDEX:
        raise ValueError(f"{_where(op)}: axis of size {size} exceeds 2^24 (indices are float32)")


def _row_cost(attrs: Mapping[str, Any], params: Mapping[str, Shape], x: Shape, y: Shape) -> tuple[int, int, None]:
    return 0, math.prod(x), None


# arg_reduce


def _arg_shape(op: ir.Op, shapes: Sequence[Shape]) -> Shape:
    x = shapes[0]
    ax = op_axis(op, len(x))
    _check_exact(op, x[ax])
    if op.attrs.get("keepdims", False):
        return tuple(1 if i == ax else d for i, d in enumerate(x))
    if len(x) == 1:
        raise ValueError(f"{_where(op)}: reducing the only axis without keepdims leaves rank 0")
    return tuple(d for i, d in enumerate(x) if i != ax)


def _arg_ref(op: ir.Op, ins: list[np.ndarray], tensors: list[ir.Tensor]) -> np.ndarray:
    # numpy's argmax / argmin: the first index on ties, the first NaN wins (as PyTorch).
    x = ins[0]
    fn = np.argmax if op.attrs["op"] == "argmax" else np.argmin
    return fn(x, axis=op_axis(op, x.ndim), keepdims=bool(op.attrs.get("keepdims", False))).astype(np.float64)


def _arg_torch(op: ir.Op, ins: list[Any], p: Mapping[str, Any]) -> Any:
    import torch

    x = to_physical(ins[0])
    fn = torch.argmax if op.attrs["op"] == "argmax" else torch.argmin
    return from_physical(fn(x, dim=op_axis(op, x.dim()), keepdim=bool(op.attrs.get("keepdims", False))).to(x.dtype))


ARG_REDUCE = OpDef(
    "arg_reduce",
    "f32 -> f32: argmax / argmin along a physical axis as a float32 index (first index on ties, NaN wins)",
    "f32",
    f32,
    _arg_shape,
    _arg_ref,
    _arg_torch,
    attrs={
        "op": Attr("string", choices=("argmax", "argmin")),
        "axis": Attr("int"),
        "keepdims": Attr("bool", False, False),
    },
    cost=_row_cost,
)


# topk (sort: k = the axis size)


def _topk_shape(op: ir.Op, shapes: Sequence[Shape]) -> Shape:
    x = shapes[0]
    ax = op_axis(op, len(x))
    _check_exact(op, x[ax])
    k = int(op.attrs["k"])
    if not 1 <= k <= x[ax]:
        raise ValueError(f"{_where(op)}: k {k} must be in [1, {x[ax]}] (the axis size)")
    return tuple(k if i == ax else d for i, d in enumerate(x))


def topk_order(x: np.ndarray, axis: int, largest: bool) -> np.ndarray:
    """Indices sorting `x` along `axis`: largest (or smallest) first, NaN above every number, equal
    values by lower index (PyTorch's stable sort)."""
    key = np.where(np.isnan(x), np.inf, x)  # NaN ranks above +inf: a second key separates them
    nan = np.isnan(x).astype(np.int8)
    if largest:
        key, nan = -key, -nan
    moved = [np.moveaxis(a, axis, -1) for a in (key, nan)]
    # lexsort's last key is the primary one; it is stable, so ties keep the lower index first.
    order = np.lexsort((moved[0], moved[1]), axis=-1)
    return np.moveaxis(order, -1, axis)


def _topk_ref(op: ir.Op, ins: list[np.ndarray], tensors: list[ir.Tensor]) -> np.ndarray:
    x = ins[0]
    ax = op_axis(op, x.ndim)
    order = topk_order(x, ax, bool(op.attrs.get("largest", True)))
    idx = np.take(order, np.arange(int(op.attrs["k"])), axis=ax)
    if op.attrs["output"] == "indices":
        return idx.astype(np.float64)
    return np.take_along_axis(x, idx, axis=ax).astype(np.float64)


def _topk_torch(op: ir.Op, ins: list[Any], p: Mapping[str, Any]) -> Any:
    import torch

    x = to_physical(ins[0])
    ax = op_axis(op, x.dim())
    s = torch.sort(x, dim=ax, descending=bool(op.attrs.get("largest", True)), stable=True)
    part = s.values if op.attrs["output"] == "values" else s.indices.to(x.dtype)
    return from_physical(part.narrow(ax, 0, int(op.attrs["k"])))


def _topk_cost(attrs: Mapping[str, Any], params: Mapping[str, Shape], x: Shape, y: Shape) -> tuple[int, int, None]:
    n = math.prod(x)
    return 0, n * max(1, int(math.log2(max(2, n)))), None


TOPK = OpDef(
    "topk",
    "f32 -> f32: the k largest (smallest) values along a physical axis, sorted, or their float32 indices",
    "f32",
    f32,
    _topk_shape,
    _topk_ref,
    _topk_torch,
    attrs={
        "k": Attr("int"),
        "axis": Attr("int"),
        "largest": Attr("bool", False, True),
        "output": Attr("string", choices=("values", "indices")),
    },
    cost=_topk_cost,
)


# cumsum (and cumprod, cummax / cummin: attribute `op`)


def _cumsum_shape(op: ir.Op, shapes: Sequence[Shape]) -> Shape:
    ax = op_axis(op, len(shapes[0]))
    scan, output = op.attrs.get("op", "sum"), op.attrs.get("output", "values")
    if output == "indices":
        if scan not in ("max", "min"):
            raise ValueError(f"{_where(op)}: output 'indices' needs op 'max' or 'min', got {scan!r}")
        _check_exact(op, shapes[0][ax])
    return tuple(shapes[0])


def cum_extreme(x: np.ndarray, axis: int, largest: bool) -> tuple[np.ndarray, np.ndarray]:
    """(values, indices) of torch.cummax / cummin along `axis`: an element replaces the running value
    when it is NaN, or when the running value is not NaN and the element is >= (<=) it: ties take the
    last index."""
    xm = np.moveaxis(x, axis, -1)
    vals, idx = np.empty_like(xm), np.zeros(xm.shape, np.int64)
    best, at = xm[..., 0].copy(), np.zeros(xm.shape[:-1], np.int64)
    for j in range(xm.shape[-1]):
        e = xm[..., j]
        wins = e >= best if largest else e <= best
        take = np.isnan(e) | (~np.isnan(best) & wins)
        best = np.where(take, e, best)
        at = np.where(take, j, at)
        vals[..., j], idx[..., j] = best, at
    return np.moveaxis(vals, -1, axis), np.moveaxis(idx, -1, axis)


def _cumsum_ref(op: ir.Op, ins: list[np.ndarray], tensors: list[ir.Tensor]) -> np.ndarray:
    x, scan = ins[0], op.attrs.get("op", "sum")
    ax = op_axis(op, x.ndim)
    if scan in ("sum", "prod"):
        return (np.cumsum if scan == "sum" else np.cumprod)(x, axis=ax)
    vals, idx = cum_extreme(x, ax, scan == "max")
    return idx.astype(np.float64) if op.attrs.get("output", "values") == "indices" else vals


def _cumsum_torch(op: ir.Op, ins: list[Any], p: Mapping[str, Any]) -> Any:
    import torch

    x, scan = to_physical(ins[0]), op.attrs.get("op", "sum")
    ax = op_axis(op, x.dim())
    if scan in ("sum", "prod"):
        return from_physical(x.cumsum(dim=ax) if scan == "sum" else x.cumprod(dim=ax))
    r = (torch.cummax if scan == "max" else torch.cummin)(x, dim=ax)
    return from_physical(r.indices.to(x.dtype) if op.attrs.get("output", "values") == "indices" else r.values)


CUMSUM = OpDef(
    "cumsum",
    "f32 -> f32: running sum / product (double accumulators, each output rounded once) or max / min (values"
    " or float32 indices, the last index on ties) along a physical axis",
    "f32",
    f32,
    _cumsum_shape,
    _cumsum_ref,
    _cumsum_torch,
    attrs={
        "axis": Attr("int"),
        "op": Attr("string", False, "sum", choices=("sum", "prod", "max", "min")),
        "output": Attr("string", False, "values", choices=("values", "indices")),
    },
    cost=_row_cost,
)


# take and gather


def check_indices(op: ir.Op, index: np.ndarray, size: int) -> np.ndarray:
    """`index` (floats holding integers in [-size, size)) as int64 in [0, size); ValueError naming the op."""
    bad = ~((index >= -size) & (index < size) & (np.floor(index) == index))
    if bad.any():
        v = float(index[bad].flat[0])
        raise ValueError(
            f"{_where(op)}: index {v} is not an integer in [{-size}, {size}) (the size of the indexed axis)"
        )
    i = index.astype(np.int64)
    return np.where(i < 0, i + size, i)


def _take_shape(op: ir.Op, shapes: Sequence[Shape]) -> Shape:
    x, idx = shapes
    ax = op_axis(op, len(x))
    out = tuple(x[:ax]) + tuple(idx) + tuple(x[ax + 1 :])
    if len(out) > 6:
        raise ValueError(f"{_where(op)}: output rank {len(out)} exceeds 6")
    return out


def _take_ref(op: ir.Op, ins: list[np.ndarray], tensors: list[ir.Tensor]) -> np.ndarray:
    x, index = ins
    ax = op_axis(op, x.ndim)
    return np.take(x, check_indices(op, index, x.shape[ax]), axis=ax).astype(np.float64)


def _take_torch(op: ir.Op, ins: list[Any], p: Mapping[str, Any]) -> Any:
    import torch

    x, index = to_physical(ins[0]), to_physical(ins[1])
    ax = op_axis(op, x.dim())
    flat = torch.index_select(x, ax, index.reshape(-1).long() % x.shape[ax])
    return from_physical(flat.reshape(tuple(x.shape[:ax]) + tuple(index.shape) + tuple(x.shape[ax + 1 :])))


TAKE = OpDef(
    "take",
    "f32 x, f32 index -> f32: numpy.take(x, index, axis) (index_select, embedding, x[:, idx]); exact",
    "f32",
    f32,
    _take_shape,
    _take_ref,
    _take_torch,
    inputs=(2, 2),
    attrs={"axis": Attr("int")},
    cost=no_cost,
)


def _gather_shape(op: ir.Op, shapes: Sequence[Shape]) -> Shape:
    x, idx = shapes
    ax = op_axis(op, len(x))
    if len(idx) != len(x) or any(i != ax and e > d for i, (d, e) in enumerate(zip(x, idx, strict=True))):
        raise ValueError(f"{_where(op)}: index {tuple(idx)} must have the rank of input {tuple(x)}, no larger")
    return tuple(idx)


def _gather_ref(op: ir.Op, ins: list[np.ndarray], tensors: list[ir.Tensor]) -> np.ndarray:
    x, index = ins
    ax = op_axis(op, x.ndim)
    i = check_indices(op, index, x.shape[ax])
    grid = list(np.indices(i.shape, sparse=True))
    grid[ax] = i
    return x[tuple(grid)].astype(np.float64)


def _gather_torch(op: ir.Op, ins: list[Any], p: Mapping[str, Any]) -> Any:
    import torch

    x, index = to_physical(ins[0]), to_physical(ins[1])
    ax = op_axis(op, x.dim())
    return from_physical(torch.gather(x, ax, index.long() % x.shape[ax]))


GATHER = OpDef(
    "gather",
    "f32 x, f32 index -> f32: torch.gather(x, axis, index) (index: x's rank, no larger off the axis); exact",
    "f32",
    f32,
    _gather_shape,
    _gather_ref,
    _gather_torch,
    inputs=(2, 2),
    attrs={"axis": Attr("int")},
    cost=no_cost,
)


def _scatter_shape(op: ir.Op, shapes: Sequence[Shape]) -> Shape:
    x, idx, src = shapes
    _gather_shape(op, [x, idx])
    covers = len(src) == len(idx) and all(s >= i for s, i in zip(src, idx, strict=True))
    if not covers and math.prod(src) != 1:
        raise ValueError(f"{_where(op)}: src {tuple(src)} must cover index {tuple(idx)} or have one element")
    return tuple(x)


_SCATTER_IDENTITY = {"add": 0.0, "mean": 0.0, "mul": 1.0, "max": -np.inf, "min": np.inf}


def _combine(reduce: str, d: float, v: float) -> float:
    """One scatter step (float64; max / min as std::max / std::min, a NaN src wins, as PyTorch's CPU kernel)."""
    if reduce in ("add", "mean"):
        return d + v
    if reduce == "mul":
        return d * v
    if reduce == "max":
        return v if math.isnan(v) or d < v else d
    if reduce == "min":
        return v if math.isnan(v) or v < d else d
    return v


def _scatter_ref(op: ir.Op, ins: list[np.ndarray], tensors: list[ir.Tensor]) -> np.ndarray:
    x, index, src = ins
    ax = op_axis(op, x.ndim)
    i = check_indices(op, index, x.shape[ax])
    src = np.broadcast_to(src.reshape(-1)[0], i.shape) if src.size == 1 else src  # else read at p, as PyTorch
    y = x.astype(np.float64).copy()
    reduce = op.attrs.get("reduce", "none")
    include_self = bool(op.attrs.get("include_self", True))
    targets = [(p, p[:ax] + (int(i[p]),) + p[ax + 1 :]) for p in np.ndindex(*i.shape)]
    count = np.full(y.shape, 1.0 if include_self else 0.0)
    if not include_self:
        for _, q in targets:
            y[q] = _SCATTER_IDENTITY[reduce]
    for p, q in targets:  # in index order: the last write wins, sums add in this order
        y[q] = _combine(reduce, float(y[q]), float(src[p]))
        count[q] += 1.0
    return y / np.maximum(count, 1.0) if reduce == "mean" else y


def _scatter_torch(op: ir.Op, ins: list[Any], p: Mapping[str, Any]) -> Any:
    x, index, src = (to_physical(t) for t in ins)
    ax = op_axis(op, x.dim())
    i = index.long() % x.shape[ax]
    src = src.reshape(-1)[0].expand(i.shape).contiguous() if src.numel() == 1 else src
    reduce = op.attrs.get("reduce", "none")
    if reduce == "none":
        return from_physical(x.scatter(ax, i, src))
    src = src[tuple(slice(0, n) for n in i.shape)]
    name = {"add": "sum", "mul": "prod", "max": "amax", "min": "amin", "mean": "mean"}[reduce]
    include_self = bool(op.attrs.get("include_self", True))
    return from_physical(x.scatter_reduce(ax, i, src, name, include_self=include_self))


SCATTER = OpDef(
    "scatter",
    "f32 x, f32 index, f32 src -> f32: torch.scatter / scatter_reduce along a physical axis (index order)",
    "f32",
    f32,
    _scatter_shape,
    _scatter_ref,
    _scatter_torch,
    inputs=(3, 3),
    attrs={
        "axis": Attr("int"),
        "reduce": Attr("string", False, "none", choices=("none", "add", "mul", "max", "min", "mean")),
        "include_self": Attr("bool", False, True),
    },
    cost=no_cost,
)

INDEX_OPS: tuple[OpDef, ...] = (ARG_REDUCE, TOPK, CUMSUM, TAKE, GATHER, SCATTER)
