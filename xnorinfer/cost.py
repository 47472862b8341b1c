"""The cost model: per-op weight storage, binary MACs and float FLOPs, for `convert` and `inspect` alike.

Each op's numbers come from its declaration (xnorinfer.ops). One definition, so the converter's
report and `xnorinfer inspect` print the same numbers for one model. Shapes are the engine's
(batch 1, NHWC for 4-D tensors); no torch and no parameter data are needed, only parameter shapes
and dtypes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from xnorinfer.ops import op_def
from xnorinfer.text import printable


@dataclass(frozen=True)
class OpCost:
    name: str
    kind: str
    domain: str  # "binary" | "float"
    out_shape: tuple[int, ...]
    weight_bits: int  # the op's parameters as the engine stores them (packed weights, thresholds, floats)
    float32_weight_bits: int  # the same layer with float32 weights (and a float BatchNorm for binary layers)
    binary_macs: int
    float_flops: int


def op_cost(
    name: str,
    kind: str,
    attrs: Mapping[str, object],
    params: Mapping[str, tuple[Sequence[int], str]],
    in_shape: Sequence[int],
    out_shape: Sequence[int],
) -> OpCost:
    """Cost of one op; `params` maps a parameter name to (shape, numpy dtype name)."""
    d = op_def(kind)
    shapes = {key: tuple(int(v) for v in shape) for key, (shape, _) in params.items()}
    x, y = tuple(int(v) for v in in_shape), tuple(int(v) for v in out_shape)
    stored = sum(math.prod(shape) * np.dtype(dtype).itemsize * 8 for shape, dtype in params.values())
    macs, flops, float32_bits = d.cost(attrs, shapes, x, y)
    return OpCost(
        name,
        kind,
        d.domain,
        y,
        int(stored),
        int(stored if float32_bits is None else float32_bits),
        int(macs),
        int(flops),
    )


def totals(costs: Sequence[OpCost]) -> dict[str, int | float]:
    bits = sum(c.weight_bits for c in costs)
    f32 = sum(c.float32_weight_bits for c in costs)
    return {
        "binary_macs": sum(c.binary_macs for c in costs),
        "float_flops": sum(c.float_flops for c in costs),
        "weight_bytes": bits // 8,
        "float32_weight_bytes": f32 // 8,
        "compression": (f32 / bits) if bits else 1.0,
    }


def format_table(costs: Sequence[OpCost]) -> list[str]:
    """One line per op, then the totals line."""
    head = (
        f"{'module':<28} {'op':<14} {'kind':<6} {'output (NHWC)':<18} {'weight bits':>11} {'bin MACs':>10} "
        f"{'FLOPs':>10}"
    )
    lines = [head, "-" * len(head)]
    for c in costs:
        name = printable(c.name)[:28]
        lines.append(
            f"{name:<28} {c.kind:<14} {c.domain:<6} {str(c.out_shape):<18} {c.weight_bits:>11} "
            f"{c.binary_macs:>10} {c.float_flops:>10}"
        )
    t = totals(costs)
    lines.append("-" * len(head))
    lines.append(
        f"total: {t['binary_macs']} binary MACs, {t['float_flops']} float FLOPs, "
        f"{t['weight_bytes']} weight bytes vs {t['float32_weight_bytes']} as float32 "
        f"({t['compression']:.1f}x smaller)"
    )
    return lines
