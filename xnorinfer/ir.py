"""The graph IR shared by the converter, the .xbin file and the runtime.

A `Graph` is a list of `Op`s in execution (topological) order over named `Tensor`s. It is the
contract between the three parts of xnorinfer:

- the converter (`xnorinfer.convert`) builds it from a PyTorch model and folds BatchNorm and
  scales into the binary ops' output transforms;
- `xnorinfer.xbin` writes it to and reads it from a `.xbin` file (docs/xbin-format.md);
- the C++ runtime executes it in one call (csrc/runtime/), and `xnorinfer.convert.reference`
  interprets it in float64/int64 numpy as the canonical reference.

Layouts. Activations inside the engine are NHWC. A 4-D image tensor has shape (N, H, W, C); a 2-D
tensor (N, F); general float ops take tensors of rank 1 to MAX_RANK, row-major, with their axes
in the order the converter chose (it maps PyTorch's axes). The batch dimension (axis 0) is recorded
as 1 and may be any N at run time, unless `metadata["per_image"]` is true: then axis 0 need not be
the batch, recorded shapes are exact, and the runtime runs the graph one image at a time. A tensor's
`dtype` is "f32" (float32 values) or "bits" (±1 values packed along the last axis into uint64
words, bit 1 = -1, channel c in word c // 64, pad bits zero; `shape` gives the real channel
count). A graph has one or more float32 inputs of rank 1 to MAX_RANK: a 4-D one is NCHW as the user
passes it (the runtime permutes it to NHWC), any other rank is passed in the graph's order.

The ops are declared once in `xnorinfer.ops` (attributes, parameters, shape rule, reference);
docs/ir.md specifies what each computes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xnorinfer.ops import op_def
from xnorinfer.ops.schema import MAX_RANK as MAX_RANK  # re-exported: the IR's rank limit

IR_VERSION = 1


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
        """Inputs, attributes and parameters against the op's declaration (xnorinfer.ops)."""
        op_def(self.kind).check(self)


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
            self._check_types(op)
        for t in self.outputs:
            if t not in defined:
                raise ValueError(f"graph output {t} is never produced")

    def _check_types(self, op: Op) -> None:
        """The op's input dtypes and its output's dtype and shape (batch 1) follow its declaration."""
        d = op_def(op.kind)
        ins = [self.tensors[t] for t in op.inputs]
        for i, t in enumerate(ins):
            want_in = d.input_dtype(i)
            if t.dtype != want_in:
                raise ValueError(f"op {op.name} ({op.kind}) reads {t.name} of dtype {t.dtype}, needs {want_in}")
        out = self.tensors[op.outputs[0]]
        want_dtype = d.out_dtype(op.attrs)
        if out.dtype != want_dtype:
            raise ValueError(f"op {op.name} ({op.kind}) writes {out.name} as {out.dtype}, produces {want_dtype}")
        try:
            want = tuple(int(v) for v in d.shape(op, [tuple(t.shape) for t in ins]))
        except (ValueError, IndexError, KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"op {op.name} ({op.kind}) cannot take inputs {[t.shape for t in ins]}: {err}") from None
        if tuple(int(v) for v in out.shape) != want:
            raise ValueError(f"op {op.name} ({op.kind}) writes {out.name} as {tuple(out.shape)}, produces {want}")
