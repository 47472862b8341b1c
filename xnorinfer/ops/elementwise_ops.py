"""Element-wise float ops of the general graph (docs/ir.md has each one's exact rule).

compare (a comparison with a per-channel constant, giving 0.0 / 1.0), round (half to even, as
torch.round), floor, abs, neg. All are exact in IEEE arithmetic, so the engine's float32 result
equals torch's float32 one bit for bit; the reference computes in float64.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from xnorinfer.ops.float_ops import channel, f32, same_shape
from xnorinfer.ops.schema import Attr, OpDef, Param

if TYPE_CHECKING:
    from xnorinfer import ir

COMPARISONS = ("gt", "ge", "lt", "le", "eq", "ne")
_NUMPY_CMP = {
    "gt": np.greater,
    "ge": np.greater_equal,
    "lt": np.less,
    "le": np.less_equal,
    "eq": np.equal,
    "ne": np.not_equal,
}


def _compare_ref(op: ir.Op, ins: list[np.ndarray], tensors: list[ir.Tensor]) -> np.ndarray:
    # The threshold is float32 in the engine: compare against that value (x is float32 there too).
    t = op.params["threshold"].astype(np.float64)
    return _NUMPY_CMP[op.attrs["cmp"]](ins[0], t).astype(np.float64)


def _compare_torch(op: ir.Op, ins: list[Any], p: Mapping[str, Any]) -> Any:
    import torch

    x, t = ins[0], p["threshold"]
    t = t.reshape(()) if t.numel() == 1 else channel(t, x.dim())
    return getattr(torch, op.attrs["cmp"])(x, t).to(x.dtype)


COMPARE = OpDef(
    "compare",
    "f32 -> f32: 1.0 where x OP threshold[c] (gt, ge, lt, le, eq, ne), else 0.0; threshold (C,) or (1,)",
    "f32",
    f32,
    same_shape,
    _compare_ref,
    _compare_torch,
    attrs={"cmp": Attr("string", choices=COMPARISONS)},
    params={"threshold": Param("float32")},
)


def _torch_unary(name: str) -> Any:
    def run(op: ir.Op, ins: list[Any], p: Mapping[str, Any]) -> Any:
        import torch

        return getattr(torch, name)(ins[0])

    return run


ROUND = OpDef(
    "round",
    "f32 -> f32: round to the nearest integer, ties to even (torch.round)",
    "f32",
    f32,
    same_shape,
    lambda op, ins, t: np.round(ins[0]),  # numpy rounds half to even too
    _torch_unary("round"),
)

FLOOR = OpDef(
    "floor",
    "f32 -> f32: floor(x)",
    "f32",
    f32,
    same_shape,
    lambda op, ins, t: np.floor(ins[0]),
    _torch_unary("floor"),
)

ABS = OpDef(
    "abs",
    "f32 -> f32: |x|",
    "f32",
    f32,
    same_shape,
    lambda op, ins, t: np.abs(ins[0]),
    _torch_unary("abs"),
)

NEG = OpDef(
    "neg",
    "f32 -> f32: -x",
    "f32",
    f32,
    same_shape,
    lambda op, ins, t: -ins[0],
    _torch_unary("neg"),
)

ELEMENTWISE_OPS: tuple[OpDef, ...] = (COMPARE, ROUND, FLOOR, ABS, NEG)
