"""Shape, reduction and matmul ops of the general float graph (docs/ir.md has each one's exact rule).

transpose, reshape, expand (data movement, exact), reduce (mean/sum accumulated in double and rounded
once; max/min exact) and matmul (batched, numpy broadcasting of the batch dims). Every axis is
PHYSICAL: the tensor's axis as stored, row-major (4-D images are NHWC). Reference arrays are float64
in that layout. The torch forms follow xnorinfer.float_equivalent, which holds 4-D tensors as NCHW:
they view a 4-D input as stored (NHWC), apply the op, and hand a 4-D result back as NCHW.

Batch (axis 0): recorded shapes have axis 0 == 1 and the runtime substitutes N. `reshape` and `expand`
name a fixed output shape; when its first value is 1 the output's axis 0 is the input's (the batch
carries through). `reduce` over axis 0, and other ops that would mix images, run only with N == 1 or
in per-image graphs (metadata["per_image"]), where recorded shapes are exact.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from xnorinfer.ops.float_ops import f32, from_physical, to_physical
from xnorinfer.ops.schema import Attr, OpDef, Shape, no_cost

if TYPE_CHECKING:
    from xnorinfer import ir

REDUCTIONS = ("mean", "sum", "max", "min", "prod")


def _where(op: ir.Op) -> str:
    return f"op {op.name} ({op.kind})"


# transpose


def _perm(op: ir.Op, rank: int) -> tuple[int, ...]:
    perm = tuple(int(v) for v in op.attrs["perm"])
    if sorted(perm) != list(range(rank)):
        raise ValueError(f"{_where(op)}: perm {list(perm)} is not a permutation of the {rank} axes")
    return perm


def _transpose_shape(op: ir.Op, shapes: Sequence[Shape]) -> Shape:
    x = shapes[0]
    return tuple(x[p] for p in _perm(op, len(x)))


TRANSPOSE = OpDef(
    "transpose",
    "f32 -> f32: y = x.transpose(perm) (perm: a permutation of the physical axes); exact",
    "f32",
    f32,
    _transpose_shape,
    lambda op, ins, t: np.transpose(ins[0], _perm(op, ins[0].ndim)),
    lambda op, ins, p: from_physical(to_physical(ins[0]).permute(*_perm(op, ins[0].dim()))),
    attrs={"perm": Attr("ints", length=None)},
    cost=no_cost,
)


# reshape and expand: a fixed output shape, axis 0 carried from the input when shape[0] == 1


def reshape_to(where: str, x: Sequence[int], shape: Sequence[int]) -> Shape:
    """The output shape of reshaping `x` to `shape` (docs/ir.md `reshape`).

    When shape[0] == 1 and the per-image element counts agree (prod(x[1:]) == prod(shape[1:])), the
    output's axis 0 is x[0] (the batch carries through); otherwise the shape is taken as written and the
    element counts must agree.
    """
    shape = tuple(int(v) for v in shape)
    if min(shape) < 1:
        raise ValueError(f"{where}: shape {list(shape)} must be positive")
    if shape[0] == 1 and len(x) >= 1 and math.prod(x[1:]) == math.prod(shape[1:]):
        return (int(x[0]),) + shape[1:]
    if math.prod(x) != math.prod(shape):
        raise ValueError(f"{where}: cannot reshape {tuple(x)} ({math.prod(x)} elements) to {list(shape)}")
    return shape


def expand_to(where: str, x: Sequence[int], shape: Sequence[int]) -> Shape:
    """The output shape of broadcasting `x` to `shape` (numpy broadcast_to, docs/ir.md `expand`).

    When the ranks agree and shape[0] == 1, the output's axis 0 is x[0] (the batch carries through).
    """
    shape = tuple(int(v) for v in shape)
    if min(shape) < 1:
        raise ValueError(f"{where}: shape {list(shape)} must be positive")
    if len(x) > len(shape):
        raise ValueError(f"{where}: cannot expand rank {len(x)} {tuple(x)} to rank {len(shape)}")
    out = list(shape)
    if len(x) == len(shape) and shape[0] == 1:
        out[0] = int(x[0])
    lead = len(shape) - len(x)
    for i, d in enumerate(x):
        if d != out[lead + i] and d != 1:
            raise ValueError(f"{where}: cannot expand {tuple(x)} to {list(shape)} (axis {lead + i})")
    return tuple(out)


def _reshape_shape(op: ir.Op, shapes: Sequence[Shape]) -> Shape:
    return reshape_to(_where(op), shapes[0], op.attrs["shape"])


def _reshape_torch(op: ir.Op, ins: list[Any], p: Mapping[str, Any]) -> Any:
    x = to_physical(ins[0])
    return from_physical(x.reshape(reshape_to(_where(op), tuple(x.shape), op.attrs["shape"])))


RESHAPE = OpDef(
    "reshape",
    "f32 -> f32: x.reshape(shape), row-major; shape[0] == 1 carries the batch; exact",
    "f32",
    f32,
    _reshape_shape,
    lambda op, ins, t: ins[0].reshape(reshape_to(_where(op), ins[0].shape, op.attrs["shape"])),
    _reshape_torch,
    attrs={"shape": Attr("ints", length=None)},
    cost=no_cost,
)


def _expand_shape(op: ir.Op, shapes: Sequence[Shape]) -> Shape:
    return expand_to(_where(op), shapes[0], op.attrs["shape"])


def _expand_torch(op: ir.Op, ins: list[Any], p: Mapping[str, Any]) -> Any:
    x = to_physical(ins[0])
    return from_physical(x.expand(*expand_to(_where(op), tuple(x.shape), op.attrs["shape"])).contiguous())


EXPAND = OpDef(
    "expand",
    "f32 -> f32: numpy broadcast_to(x, shape); shape[0] == 1 carries the batch; exact",
    "f32",
    f32,
    _expand_shape,
    lambda op, ins, t: np.broadcast_to(ins[0], expand_to(_where(op), ins[0].shape, op.attrs["shape"])).copy(),
    _expand_torch,
    attrs={"shape": Attr("ints", length=None)},
    cost=no_cost,
)


# reduce


def reduce_axes(op: ir.Op, rank: int) -> tuple[int, ...]:
    """The reduced axes: sorted, unique, in [0, rank); and the output keeps rank >= 1."""
    axes = tuple(int(v) for v in op.attrs["axes"])
    if list(axes) != sorted(set(axes)) or axes[0] < 0 or axes[-1] >= rank:
        raise ValueError(f"{_where(op)}: axes {list(axes)} must be sorted, unique and in [0, {rank})")
    if not op.attrs.get("keepdims", True) and len(axes) == rank:
        raise ValueError(f"{_where(op)}: reducing every axis without keepdims leaves rank 0")
    return axes


def _reduce_shape(op: ir.Op, shapes: Sequence[Shape]) -> Shape:
    x = shapes[0]
    axes = reduce_axes(op, len(x))
    if op.attrs.get("keepdims", True):
        return tuple(1 if i in axes else d for i, d in enumerate(x))
    return tuple(d for i, d in enumerate(x) if i not in axes)


def _check_batch_axis(op: ir.Op, axes: Sequence[int], x_shape: Sequence[int], recorded: Sequence[int]) -> None:
    if 0 in axes and x_shape[0] != recorded[0]:
        raise ValueError(
            f"{_where(op)}: reduces axis 0, the batch: runs with batch 1 only (or in a per-image graph), "
            f"got {x_shape[0]}"
        )


def _reduce_ref(op: ir.Op, ins: list[np.ndarray], tensors: list[ir.Tensor]) -> np.ndarray:
    x = ins[0]
    axes = reduce_axes(op, x.ndim)
    _check_batch_axis(op, axes, x.shape, tensors[0].shape if tensors else x.shape)
    fn = {"mean": np.mean, "sum": np.sum, "max": np.max, "min": np.min, "prod": np.prod}[op.attrs["op"]]
    return fn(x, axis=axes, keepdims=bool(op.attrs.get("keepdims", True)))


def _reduce_torch(op: ir.Op, ins: list[Any], p: Mapping[str, Any]) -> Any:
    import torch

    x = to_physical(ins[0])
    axes = reduce_axes(op, x.dim())
    keep = bool(op.attrs.get("keepdims", True))
    if op.attrs["op"] == "prod":  # torch.prod takes one dim: the axes one after the other, last first
        for ax in reversed(axes):
            x = torch.prod(x, dim=ax, keepdim=keep)
        return from_physical(x)
    fn = {"mean": torch.mean, "sum": torch.sum, "max": torch.amax, "min": torch.amin}[op.attrs["op"]]
    return from_physical(fn(x, dim=axes, keepdim=keep))


def _reduce_cost(attrs: Mapping[str, Any], params: Mapping[str, Shape], x: Shape, y: Shape) -> tuple[int, int, None]:
    return 0, math.prod(x), None


REDUCE = OpDef(
    "reduce",
    "f32 -> f32: mean, sum, prod, max or min over physical axes (keepdims); mean/sum/prod accumulate in double",
    "f32",
    f32,
    _reduce_shape,
    _reduce_ref,
    _reduce_torch,
    attrs={
        "op": Attr("string", choices=REDUCTIONS),
        "axes": Attr("ints", length=None),
        "keepdims": Attr("bool", False, True),
    },
    cost=_reduce_cost,
)


# matmul


def matmul_shape(where: str, a: Sequence[int], b: Sequence[int]) -> Shape:
    """(..., M, K) x (..., K, N) -> (..., M, N), the batch dims broadcast as numpy matmul does."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"{where}: both inputs need rank >= 2, got {tuple(a)} and {tuple(b)}")
    if a[-1] != b[-2]:
        raise ValueError(f"{where}: inner sizes differ: {tuple(a)} x {tuple(b)}")
    try:
        batch = np.broadcast_shapes(tuple(a[:-2]), tuple(b[:-2]))
    except ValueError:
        raise ValueError(f"{where}: batch dims of {tuple(a)} and {tuple(b)} do not broadcast") from None
    return tuple(int(v) for v in batch) + (int(a[-2]), int(b[-1]))


def _matmul_shape(op: ir.Op, shapes: Sequence[Shape]) -> Shape:
    return matmul_shape(_where(op), shapes[0], shapes[1])


def _matmul_torch(op: ir.Op, ins: list[Any], p: Mapping[str, Any]) -> Any:
    import torch

    return from_physical(torch.matmul(to_physical(ins[0]), to_physical(ins[1])))


def _matmul_cost(attrs: Mapping[str, Any], params: Mapping[str, Shape], x: Shape, y: Shape) -> tuple[int, int, None]:
    # x is the first input (..., M, K), y the output (..., M, N): 2*K FLOPs per output element
    return 0, 2 * x[-1] * math.prod(y), None


MATMUL = OpDef(
    "matmul",
    "f32 (..., M, K), f32 (..., K, N) -> f32 (..., M, N): numpy matmul, batch dims broadcast",
    "f32",
    f32,
    _matmul_shape,
    lambda op, ins, t: np.matmul(ins[0], ins[1]),
    _matmul_torch,
    inputs=(2, 2),
    cost=_matmul_cost,
)

SHAPE_OPS: tuple[OpDef, ...] = (TRANSPOSE, RESHAPE, EXPAND, REDUCE, MATMUL)
