"""The float layout ops of the IR: constant padding and strided slicing (docs/ir.md has each one's rule).

They move data without arithmetic, so the engine's float32 result equals the float64 reference
rounded to float32 exactly. Reference arrays are NHWC / (N, F) float64; torch tensors are NCHW.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from xnorinfer.ops.float_ops import from_physical, to_physical
from xnorinfer.ops.schema import Attr, OpDef, Shape, no_cost

if TYPE_CHECKING:
    from xnorinfer import ir


def _f32(attrs: Mapping[str, Any]) -> str:
    return "f32"


# pad

PAD_ATTRS = {
    "pad_h": Attr("ints"),  # (top, bottom)
    "pad_w": Attr("ints"),  # (left, right)
    "pad_c": Attr("ints", False, (0, 0)),  # (front, back)
    "value": Attr("float", False, 0.0),
    "mode": Attr(
        "string", False, "constant", choices=("constant", "reflect", "replicate")
    ),  # H, W only if not constant
}


def _pads(op: ir.Op) -> tuple[Sequence[int], Sequence[int], Sequence[int], float]:
    a = op.attrs
    return a["pad_h"], a["pad_w"], a.get("pad_c", (0, 0)), float(a.get("value", 0.0))


def _pad_shape(op: ir.Op, shapes: Sequence[Shape]) -> Shape:
    if len(shapes[0]) != 4:
        raise ValueError(f"op {op.name} (pad): input must be NHWC, got {tuple(shapes[0])}")
    (t, b), (left, right), (f, k), _ = _pads(op)
    if min(t, b, left, right, f, k) < 0:
        raise ValueError(f"op {op.name} (pad): padding must not be negative")
    n, h, w, c = shapes[0]
    mode = op.attrs.get("mode", "constant")
    if mode != "constant" and (f or k):
        raise ValueError(f"op {op.name} (pad): {mode} padding pads H and W only")
    if mode == "reflect" and (max(t, b) >= h or max(left, right) >= w):
        raise ValueError(f"op {op.name} (pad): reflect padding must be smaller than the input's height and width")
    return (n, h + t + b, w + left + right, c + f + k)


def _pad_ref(op: ir.Op, ins: list[np.ndarray], tensors: list[ir.Tensor]) -> np.ndarray:
    (t, b), (left, right), (f, k), value = _pads(op)
    mode = op.attrs.get("mode", "constant")
    if mode != "constant":  # numpy's "reflect" and "edge" are PyTorch's reflect and replicate
        return np.pad(ins[0], ((0, 0), (t, b), (left, right), (0, 0)), mode="reflect" if mode == "reflect" else "edge")
    return np.pad(ins[0], ((0, 0), (t, b), (left, right), (f, k)), constant_values=value)


def _pad_torch(op: ir.Op, ins: list[Any], p: Mapping[str, Any]) -> Any:
    import torch.nn.functional as F

    (t, b), (left, right), (f, k), value = _pads(op)
    mode = op.attrs.get("mode", "constant")
    if mode != "constant":
        return F.pad(ins[0], (left, right, t, b), mode=mode)
    return F.pad(ins[0], (left, right, t, b, f, k), value=value)


PAD = OpDef(
    "pad",
    "f32 NHWC -> f32 NHWC: constant padding of H, W and C, or reflect / replicate padding of H and W (F.pad)",
    "f32",
    _f32,
    _pad_shape,
    _pad_ref,
    _pad_torch,
    attrs=PAD_ATTRS,
    cost=no_cost,
)


# slice


def slice_length(size: int, start: int, stop: int, step: int) -> int:
    """len(range(start, stop, step)) for 0 <= start < stop <= size and step >= 1; ValueError otherwise."""
    if not (0 <= start < stop <= size and step >= 1):
        raise ValueError(f"slice [{start}:{stop}:{step}] of an axis of size {size}: need 0 <= start < stop <= size")
    return (stop - start + step - 1) // step


def _slice_axis(op: ir.Op, rank: int) -> int:
    """The sliced physical axis: 1 .. rank-1, or 0 (only in per-image graphs; the runtime checks)."""
    axis = op.attrs["axis"]
    if not 0 <= axis < rank:
        raise ValueError(f"op {op.name} (slice): axis {axis} is out of range for rank {rank}")
    return axis


def _slice_shape(op: ir.Op, shapes: Sequence[Shape]) -> Shape:
    out = list(shapes[0])
    ax = _slice_axis(op, len(out))
    a = op.attrs
    try:
        out[ax] = slice_length(out[ax], a["start"], a["stop"], a["step"])
    except ValueError as err:
        raise ValueError(f"op {op.name} (slice): {err}") from None
    return tuple(out)


def _slice_ref(op: ir.Op, ins: list[np.ndarray], tensors: list[ir.Tensor]) -> np.ndarray:
    x = ins[0]
    ax = _slice_axis(op, x.ndim)
    if ax == 0 and tensors and x.shape[0] != tensors[0].shape[0]:
        raise ValueError(f"op {op.name} (slice): slices axis 0, the batch: runs with batch 1 only (or per image)")
    index = [slice(None)] * x.ndim
    index[ax] = slice(op.attrs["start"], op.attrs["stop"], op.attrs["step"])
    return x[tuple(index)]


def _slice_torch(op: ir.Op, ins: list[Any], p: Mapping[str, Any]) -> Any:
    x = to_physical(ins[0])
    index = [slice(None)] * x.dim()
    index[_slice_axis(op, x.dim())] = slice(op.attrs["start"], op.attrs["stop"], op.attrs["step"])
    return from_physical(x[tuple(index)])


SLICE = OpDef(
    "slice",
    "f32 -> f32: x[start:stop:step] along one physical axis (1 .. rank-1; 0 in per-image graphs)",
    "f32",
    _f32,
    _slice_shape,
    _slice_ref,
    _slice_torch,
    attrs={
        "axis": Attr("int"),
        "start": Attr("int"),
        "stop": Attr("int"),
        "step": Attr("int"),
    },
    cost=no_cost,
)

LAYOUT_OPS: tuple[OpDef, ...] = (PAD, SLICE)
