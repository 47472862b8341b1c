"""cast_float: a float32 value rounded to float16 or bfloat16 and held in float32 again (the IR has f32
and bits tensors only), bit for bit as torch's `.half().float()` / `.bfloat16().float()`: round to
nearest, ties to even; float16 overflows to inf from 65520 on and has subnormals down to 2^-24;
bfloat16 has float32's exponent range. The reference rounds the float64 value directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from xnorinfer.ops.float_ops import f32, same_shape
from xnorinfer.ops.schema import Attr, OpDef

if TYPE_CHECKING:
    from xnorinfer import ir

CAST_FORMATS = ("float16", "bfloat16")


def round_to_bfloat16(x: np.ndarray) -> np.ndarray:
    """float64 `x` rounded to the nearest bfloat16 (8 significant bits, ties to even, quantum >= 2^-133),
    as float64; beyond the largest bfloat16's rounding range, +-inf."""
    x = np.asarray(x, np.float64)
    m, e = np.frexp(x)  # x = m * 2^e, 0.5 <= |m| < 1
    quantum = np.maximum(e - 8, -133)
    with np.errstate(over="ignore", invalid="ignore"):
        y = np.ldexp(np.round(np.ldexp(x, -quantum)), quantum)  # np.round: half to even
        y = np.where(np.abs(y) >= 2.0**128, np.copysign(np.inf, x), y)
    return np.where(np.isfinite(x), y, x)


def _cast_ref(op: ir.Op, ins: list[np.ndarray], tensors: list[ir.Tensor]) -> np.ndarray:
    x = np.asarray(ins[0], np.float64)
    if op.attrs["to"] == "float16":
        with np.errstate(over="ignore"):
            return x.astype(np.float16).astype(np.float64)
    return round_to_bfloat16(x)


def _cast_torch(op: ir.Op, ins: list[Any], p: Mapping[str, Any]) -> Any:
    import torch

    x = ins[0]
    return x.to(torch.float16 if op.attrs["to"] == "float16" else torch.bfloat16).to(x.dtype)


CAST_FLOAT = OpDef(
    "cast_float",
    "f32 -> f32: rounded to float16 / bfloat16 (nearest, ties to even) and widened back; exact",
    "f32",
    f32,
    same_shape,
    _cast_ref,
    _cast_torch,
    attrs={"to": Attr("string", choices=CAST_FORMATS)},
)

CAST_OPS: tuple[OpDef, ...] = (CAST_FLOAT,)
