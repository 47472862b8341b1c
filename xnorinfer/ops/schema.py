"""What an op declaration holds: typed attributes, parameter dtypes, the shape rule, the reference
semantics, the float PyTorch equivalent and the cost.

Every op kind of the IR is one `OpDef` (xnorinfer/ops/float_ops.py, binary_ops.py). The C++ runtime
declares the same schema beside each node (csrc/runtime/nodes/), and tests/test_op_schema.py fails
when the two disagree. Nothing here imports torch: the torch equivalents import it when called.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from xnorinfer import ir

AttrType = Literal["int", "float", "bool", "string", "ints"]
ParamDtype = Literal["float32", "uint64", "int32", "uint8"]
TensorDtype = Literal["f32", "bits"]
Shape = tuple[int, ...]


MAX_RANK = 6  # of any tensor or parameter (csrc/runtime/tensor_shape.h kMaxRank)


@dataclass(frozen=True)
class Attr:
    """An attribute: its JSON type, whether it must be present, its value when absent, allowed strings."""

    type: AttrType
    required: bool = True
    default: Any = None
    choices: tuple[str, ...] = ()
    length: int | None = 2  # "ints": the list's length; None: 1 to MAX_RANK values (axes, a shape)

    def check(self, value: Any) -> str | None:
        """Why `value` is not a valid value of this attribute, or None."""
        is_int = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
        if self.type == "int":
            ok = is_int
        elif self.type == "float":
            ok = (is_int or isinstance(value, (float, np.floating))) and math.isfinite(float(value))
        elif self.type == "bool":
            ok = isinstance(value, (bool, np.bool_))
        elif self.type == "string":
            ok = isinstance(value, str) and (not self.choices or value in self.choices)
        else:  # "ints": a (height, width) pair, or a list of 1 to MAX_RANK integers (length None)
            ok = (
                isinstance(value, (list, tuple))
                and (len(value) == self.length if self.length is not None else 1 <= len(value) <= MAX_RANK)
                and all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in value)
            )
        if ok:
            return None
        if self.choices:
            return f"must be one of {list(self.choices)}, got {value!r}"
        ints = "a list of two integers" if self.length == 2 else f"a list of 1 to {MAX_RANK} integers"
        if self.length not in (2, None):
            ints = f"a list of {self.length} integers"
        want = {"ints": ints, "float": "a finite number"}.get(self.type, f"a {self.type}")
        return f"must be {want}, got {value!r}"


@dataclass(frozen=True)
class Param:
    """A parameter array: its dtype as stored in the .xbin, and whether it must be present."""

    dtype: ParamDtype
    required: bool = True


# (op, input arrays, input tensors) -> output array. f32 tensors are float64 arrays, bits packed uint64.
ReferenceFn = Callable[["ir.Op", list[np.ndarray], list["ir.Tensor"]], np.ndarray]
# (op, input torch tensors (NCHW for 4-D), parameters as prepared by torch_params) -> output tensor.
TorchFn = Callable[["ir.Op", list[Any], Mapping[str, Any]], Any]
# (op, name, array) -> torch tensor: how a parameter enters the float equivalent.
TorchParamFn = Callable[["ir.Op", str, np.ndarray], Any]
# (attrs, param shapes, input shape, output shape) -> (binary MACs, float FLOPs, bits as a float32 layer)
CostFn = Callable[[Mapping[str, Any], Mapping[str, Shape], Shape, Shape], tuple[int, int, int | None]]


def _default_torch_param(op: ir.Op, name: str, value: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(np.asarray(value).copy())


def elementwise_cost(
    attrs: Mapping[str, Any], params: Mapping[str, Shape], x: Shape, y: Shape
) -> tuple[int, int, None]:
    """A float op that costs one operation per input element."""
    return 0, math.prod(x), None


def no_cost(attrs: Mapping[str, Any], params: Mapping[str, Shape], x: Shape, y: Shape) -> tuple[int, int, None]:
    return 0, 0, None


@dataclass(frozen=True)
class OpDef:
    """One op kind of the IR, declared once (docs/adding-an-op.md)."""

    name: str
    summary: str  # one line: inputs -> output and what it computes (docs/ir.md has the full rule)
    in_dtype: TensorDtype
    out_dtype: Callable[[Mapping[str, Any]], TensorDtype]
    shape: Callable[[ir.Op, Sequence[Shape]], Shape]
    reference: ReferenceFn
    torch: TorchFn
    inputs: tuple[int, int] = (1, 1)  # at least, at most
    attrs: Mapping[str, Attr] = field(default_factory=dict)
    params: Mapping[str, Param] = field(default_factory=dict)
    domain: Literal["binary", "float"] = "float"  # how the cost report counts it
    cost: CostFn = elementwise_cost
    torch_param: TorchParamFn = _default_torch_param
    later_in_dtype: TensorDtype | None = None  # the dtype of inputs after the first (None: in_dtype)

    def input_dtype(self, i: int) -> TensorDtype:
        """The dtype input i must have."""
        return self.in_dtype if i == 0 or self.later_in_dtype is None else self.later_in_dtype

    def attr(self, op: ir.Op, key: str) -> Any:
        """The attribute's value, or its declared default when absent."""
        return op.attrs.get(key, self.attrs[key].default)

    def check(self, op: ir.Op) -> None:
        """Input count, attributes (names, types, values) and parameters (names, dtypes) against the declaration."""
        where = f"op {op.name} ({op.kind})"
        lo, hi = self.inputs
        if not lo <= len(op.inputs) <= hi:
            want = str(lo) if lo == hi else f"{lo} to {hi}"
            raise ValueError(f"{where}: takes {want} input(s), got {len(op.inputs)}")
        if len(op.outputs) != 1:
            raise ValueError(f"{where}: must have exactly one output, got {len(op.outputs)}")
        missing = {k for k, a in self.attrs.items() if a.required} - op.attrs.keys()
        missing |= {k for k, p in self.params.items() if p.required} - op.params.keys()
        extra = (op.attrs.keys() - self.attrs.keys()) | (op.params.keys() - self.params.keys())
        if missing:
            raise ValueError(f"{where}: missing {sorted(missing)}")
        if extra:
            raise ValueError(f"{where}: unexpected {sorted(extra)}")
        for key, value in op.attrs.items():
            why = self.attrs[key].check(value)
            if why:
                raise ValueError(f"{where}: attribute {key!r} {why}")
        for key, value in op.params.items():
            want = self.params[key].dtype
            if not isinstance(value, np.ndarray) or value.dtype != np.dtype(want):
                got = value.dtype if isinstance(value, np.ndarray) else type(value).__name__
                raise ValueError(f"{where}: parameter {key!r} must be a {want} array, got {got}")
            if not 1 <= value.ndim <= MAX_RANK or value.size == 0:
                raise ValueError(
                    f"{where}: parameter {key!r} has shape {value.shape}; need 1 to {MAX_RANK} non-empty dims"
                )
