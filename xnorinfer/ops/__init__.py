"""Every op kind of the IR, each declared once (`OpDef`): typed attributes, parameter dtypes, the
shape rule, the numpy reference, the float PyTorch equivalent and the cost.

The graph checks (`ir.Graph.validate`), the writer (xnorinfer.xbin), the reference interpreter
(xnorinfer.convert.reference), the float equivalent (xnorinfer.float_equivalent) and the cost model
(xnorinfer.cost) all read this table; the C++ runtime declares the same schema beside each node and
tests/test_op_schema.py checks that the two agree. docs/adding-an-op.md walks through adding one.
"""

from __future__ import annotations

from collections.abc import Mapping

from xnorinfer.ops.binary_ops import BINARY_OPS
from xnorinfer.ops.bitplane_ops import BITPLANE_OPS
from xnorinfer.ops.cast_ops import CAST_OPS
from xnorinfer.ops.elementwise_ops import ELEMENTWISE_OPS
from xnorinfer.ops.float_ops import FLOAT_OPS
from xnorinfer.ops.general_ops import GENERAL_OPS
from xnorinfer.ops.image_ops import IMAGE_OPS
from xnorinfer.ops.index_ops import INDEX_OPS
from xnorinfer.ops.layout_ops import LAYOUT_OPS
from xnorinfer.ops.schema import Attr, OpDef, Param
from xnorinfer.ops.shape_ops import SHAPE_OPS
from xnorinfer.ops.weight_binary_ops import WEIGHT_BINARY_OPS

__all__ = ["OPS", "Attr", "OpDef", "Param", "op_def"]

OPS: Mapping[str, OpDef] = {
    d.name: d for d in FLOAT_OPS + BINARY_OPS + LAYOUT_OPS + ELEMENTWISE_OPS + SHAPE_OPS + IMAGE_OPS + GENERAL_OPS
}
OPS = {**OPS, **{d.name: d for d in INDEX_OPS}}  # the index ops (index_ops.py)
OPS = {**OPS, **{d.name: d for d in WEIGHT_BINARY_OPS}}
OPS = {**OPS, **{d.name: d for d in CAST_OPS}}  # cast_float (cast_ops.py)
OPS = {**OPS, **{d.name: d for d in BITPLANE_OPS}}


def op_def(kind: str) -> OpDef:
    """The declaration of op kind `kind`; ValueError naming it when there is none."""
    try:
        return OPS[kind]
    except KeyError:
        raise ValueError(f"unknown op kind {kind!r}") from None
