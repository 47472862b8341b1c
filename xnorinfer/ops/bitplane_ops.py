"""`bitplane`: one bit-plane of a k-bit activation, float in, packed ±1 bits out (docs/ir.md).

q = #{m in 1..n : x >= threshold[m-1, c]} with n = 2^bits - 1 (threshold (n, C), sorted along m; absent,
threshold[m-1] = m - 0.5, so an integer x in [0, n] is q itself); the output is +1 where bit `plane` of q
is set and -1 where it is clear. NaN passes no threshold (q = 0).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from xnorinfer.bits import pack_last
from xnorinfer.ops.binary_ops import bits
from xnorinfer.ops.float_ops import channel, same_shape
from xnorinfer.ops.schema import Attr, OpDef, Param, elementwise_cost

if TYPE_CHECKING:
    from xnorinfer import ir


def levels_of(k: int) -> int:
    return (1 << k) - 1


def uniform_thresholds(k: int, channels: int) -> np.ndarray:
    """The (n, C) thresholds m - 0.5 that make q = x for an integer x in [0, n]."""
    return np.repeat(np.arange(levels_of(k), dtype=np.float64)[:, None] + 0.5, channels, axis=1)


def _thresholds(op: ir.Op, channels: int) -> np.ndarray:
    t = op.params.get("threshold")
    k = int(op.attrs["bits"])
    return uniform_thresholds(k, channels) if t is None else np.asarray(t, np.float64).reshape(levels_of(k), channels)


def _bitplane_ref(op: ir.Op, ins: list[np.ndarray], tensors: list[ir.Tensor]) -> np.ndarray:
    x = ins[0]
    thr = _thresholds(op, x.shape[-1])
    q = np.zeros(x.shape, np.int64)
    for t in thr:
        q += x >= t  # NaN: False
    return pack_last(((q >> int(op.attrs["plane"])) & 1) == 0)


def _bitplane_torch(op: ir.Op, ins: list[Any], p: Mapping[str, Any]) -> Any:
    import torch

    x = ins[0]
    k = int(op.attrs["bits"])
    c = x.shape[1]
    thr = p["threshold"].view(levels_of(k), c) if "threshold" in p else torch.arange(levels_of(k))[:, None] + 0.5
    q = torch.zeros(x.shape, dtype=torch.int64)
    for t in thr:
        q += (x >= channel(t.expand(c).to(x.dtype), x.dim())).to(torch.int64)
    return torch.where(((q >> int(op.attrs["plane"])) & 1) == 1, 1.0, -1.0)


BITPLANE = OpDef(
    "bitplane",
    "f32 (..., C) -> bits (..., C): +1 where bit `plane` of q = #{m : x >= threshold[m-1, c]} is set",
    "f32",
    bits,
    same_shape,
    _bitplane_ref,
    _bitplane_torch,
    attrs={"plane": Attr("int"), "bits": Attr("int")},
    params={"threshold": Param("float32", False)},
    domain="binary",
    cost=elementwise_cost,
)

BITPLANE_OPS: tuple[OpDef, ...] = (BITPLANE,)
