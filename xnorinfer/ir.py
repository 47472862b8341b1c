"""The graph IR shared by the converter, the .xbin file and the runtime.

A `Graph` is a list of `Op`s in execution (topological) order over named `Tensor`s. It is the
contract between the three parts of xnorinfer:

- the converter (`xnorinfer.convert`) builds it from a PyTorch model and folds BatchNorm and
  scales into the binary ops' output transforms;
- `xnorinfer.xbin` writes it to and reads it from a `.xbin` file (docs/xbin-format.md);
- the C++ runtime executes it in one call (csrc/runtime/), and `xnorinfer.convert.reference`
  interprets it in float64/int64 numpy as the canonical reference.

Layouts. Activations inside the engine are NHWC. A 4-D tensor has shape (N, H, W, C); a 2-D
tensor (N, F). The batch dimension is recorded as 1 and may be any N at run time. A tensor's
`dtype` is "f32" (float32 values) or "bits" (±1 values packed along the last axis into uint64
words, bit 1 = -1, channel c in word c // 64, pad bits zero; `shape` gives the real channel
count). The graph input is float32 NCHW as the user passes it; the runtime permutes it to NHWC.

The ops and their attributes and parameters are listed in docs/ir.md; `OP_SPECS` below is the
machine-readable form that both the writer and the loader check against.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

IR_VERSION = 1

# op kind -> (required attrs, optional attrs, required params, optional params)
# Param dtypes: weights of binary ops are uint64 (packed), thresholds int32, flips uint8,
# everything else float32.
OP_SPECS: dict[str, tuple[set[str], set[str], set[str], set[str]]] = {
    # float -> float
    "conv2d": ({"stride", "padding"}, {"relu"}, {"weight"}, {"bias"}),
    "linear": (set(), {"relu"}, {"weight"}, {"bias"}),
    "affine": (set(), set(), {"scale", "shift"}, set()),
    "prelu": (set(), set(), {"slope"}, {"pre_shift", "post_shift"}),
    "relu": (set(), set(), set(), set()),
    "hardtanh": ({"min_val", "max_val"}, set(), set(), set()),
    "sigmoid": (set(), set(), set(), set()),
    "maxpool2d": ({"kernel", "stride", "padding"}, set(), set(), set()),
    "avgpool2d": ({"kernel", "stride", "padding"}, {"count_include_pad"}, set(), set()),
    "global_avgpool": (set(), set(), set(), set()),
    "add": (set(), set(), set(), set()),
    "mul": (set(), set(), set(), set()),
    "concat": (set(), set(), set(), set()),
    "flatten": (set(), set(), set(), set()),
    "softmax": (set(), set(), set(), set()),
    "log_softmax": (set(), set(), set(), set()),
    # float -> bits
    "sign": (set(), {"sign_zero"}, set(), {"threshold"}),
    # bits -> bits / float
    "bconv2d": (
        {"stride", "padding", "pad_mode", "output", "in_channels"},
        set(),
        {"weight"},
        {"threshold", "flip", "multiplier", "bias"},
    ),
    "blinear": ({"output", "in_features"}, set(), {"weight"}, {"threshold", "flip", "multiplier", "bias"}),
    "bmaxpool2d": ({"kernel", "stride", "padding"}, set(), set(), set()),
    "bconcat": (set(), set(), set(), set()),
    "bflatten": (set(), set(), set(), set()),
    "unpack": (set(), set(), set(), set()),
}


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: str  # "f32" | "bits"

    def __post_init__(self) -> None:
        if self.dtype not in ("f32", "bits"):
            raise ValueError(f"tensor {self.name}: dtype must be 'f32' or 'bits', got {self.dtype!r}")


@dataclass
class Op:
    kind: str
    name: str  # the PyTorch module path the op came from (for messages and the report)
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    params: dict[str, np.ndarray] = field(default_factory=dict)

    def validate(self) -> None:
        if self.kind not in OP_SPECS:
            raise ValueError(f"op {self.name}: unknown kind {self.kind!r}")
        req_a, opt_a, req_p, opt_p = OP_SPECS[self.kind]
        missing = (req_a - self.attrs.keys()) | (req_p - self.params.keys())
        extra = (self.attrs.keys() - req_a - opt_a) | (self.params.keys() - req_p - opt_p)
        if missing:
            raise ValueError(f"op {self.name} ({self.kind}): missing {sorted(missing)}")
        if extra:
            raise ValueError(f"op {self.name} ({self.kind}): unexpected {sorted(extra)}")


@dataclass
class Graph:
    inputs: list[str]
    outputs: list[str]
    tensors: dict[str, Tensor]
    ops: list[Op]
    metadata: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Structural checks: known ops, defined tensors, single assignment, topological order."""
        defined = set(self.inputs)
        for name in self.inputs:
            if name not in self.tensors:
                raise ValueError(f"graph input {name} has no tensor entry")
        for op in self.ops:
            op.validate()
            for t in op.inputs:
                if t not in defined:
                    raise ValueError(f"op {op.name} ({op.kind}) reads {t} before it is produced")
            for t in op.outputs:
                if t in defined:
                    raise ValueError(f"op {op.name} ({op.kind}) writes {t}, which is already defined")
                if t not in self.tensors:
                    raise ValueError(f"op {op.name} ({op.kind}) writes {t}, which has no tensor entry")
                defined.add(t)
        for t in self.outputs:
            if t not in defined:
                raise ValueError(f"graph output {t} is never produced")
