"""General element-wise float ops (docs/ir.md has each one's exact rule).

- `binary`: two f32 tensors, numpy broadcasting of their PHYSICAL shapes (right-aligned), one of
  add sub mul div max min pow (float32 arithmetic) or gt ge lt le eq ne (1.0 / 0.0).
- `where`: cond != 0 ? a : b, broadcasting the three inputs.
- `constant`: no input; its `value` parameter (rank 1 to 6, exact shape) is the output.
- unary float ops of any rank: exp log sqrt rsqrt reciprocal erf silu hardswish hardsigmoid gelu
  leaky_relu elu signum.

Reference arrays are physical (images NHWC) float64. The torch forms follow the float equivalent's
convention (xnorinfer.float_equivalent): a 4-D tensor is NCHW there, every other rank physical, so
the broadcasting ops permute 4-D operands to NHWC, broadcast, and permute a 4-D result back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from xnorinfer.ops.float_ops import f32, same_shape
from xnorinfer.ops.schema import Attr, OpDef, Param, Shape, no_cost

if TYPE_CHECKING:
    from xnorinfer import ir


def _output_cost(attrs: Mapping[str, Any], params: Mapping[str, Shape], x: Shape, y: Shape) -> tuple[int, int, None]:
    """One operation per output element (broadcasting ops: the output may exceed input 0)."""
    return 0, math.prod(y), None


def _broadcast_shape(op: ir.Op, shapes: Sequence[Shape]) -> Shape:
    try:
        return tuple(int(v) for v in np.broadcast_shapes(*[tuple(s) for s in shapes]))
    except ValueError:
        raise ValueError(f"shapes {[tuple(s) for s in shapes]} do not broadcast") from None


def _to_physical(t: Any) -> Any:
    return t.permute(0, 2, 3, 1) if t.dim() == 4 else t


def _from_physical(t: Any) -> Any:
    return t.permute(0, 3, 1, 2) if t.dim() == 4 else t


# binary

ARITHMETIC = ("add", "sub", "mul", "div", "max", "min", "pow")
COMPARISONS = ("gt", "ge", "lt", "le", "eq", "ne")
BINARY_KINDS = ARITHMETIC + COMPARISONS

_NUMPY_BINARY = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": np.divide,
    "max": np.maximum,  # NaN propagates, as torch.maximum
    "min": np.minimum,
    "pow": np.power,
    "gt": np.greater,
    "ge": np.greater_equal,
    "lt": np.less,
    "le": np.less_equal,
    "eq": np.equal,
    "ne": np.not_equal,
}
_TORCH_BINARY = {"max": "maximum", "min": "minimum"}


def _binary_ref(op: ir.Op, ins: list[np.ndarray], tensors: list[ir.Tensor]) -> np.ndarray:
    with np.errstate(all="ignore"):
        return _NUMPY_BINARY[op.attrs["op"]](ins[0], ins[1]).astype(np.float64)


def _binary_torch(op: ir.Op, ins: list[Any], p: Mapping[str, Any]) -> Any:
    import torch

    a, b = _to_physical(ins[0]), _to_physical(ins[1])
    name = op.attrs["op"]
    y = getattr(torch, _TORCH_BINARY.get(name, name))(a, b)
    return _from_physical(y.to(a.dtype) if name in COMPARISONS else y)


BINARY = OpDef(
    "binary",
    "f32, f32 -> f32: a OP b with numpy broadcasting of the physical shapes "
    "(add sub mul div max min pow; gt ge lt le eq ne give 1.0 / 0.0)",
    "f32",
    f32,
    _broadcast_shape,
    _binary_ref,
    _binary_torch,
    inputs=(2, 2),
    attrs={"op": Attr("string", choices=BINARY_KINDS)},
    cost=_output_cost,
)


# where


def _where_ref(op: ir.Op, ins: list[np.ndarray], tensors: list[ir.Tensor]) -> np.ndarray:
    return np.where(ins[0] != 0, ins[1], ins[2]).astype(np.float64)


def _where_torch(op: ir.Op, ins: list[Any], p: Mapping[str, Any]) -> Any:
    import torch

    c, a, b = (_to_physical(t) for t in ins)
    return _from_physical(torch.where(c != 0, a, b))


WHERE = OpDef(
    "where",
    "f32 cond, f32 a, f32 b -> f32: cond != 0 ? a : b, numpy broadcasting of the physical shapes",
    "f32",
    f32,
    _broadcast_shape,
    _where_ref,
    _where_torch,
    inputs=(3, 3),
    cost=_output_cost,
)


# constant


def _constant_shape(op: ir.Op, shapes: Sequence[Shape]) -> Shape:
    return tuple(int(v) for v in op.params["value"].shape)


def _constant_torch(op: ir.Op, ins: list[Any], p: Mapping[str, Any]) -> Any:
    return _from_physical(p["value"])


CONSTANT = OpDef(
    "constant",
    "no input -> f32: the parameter `value` (rank 1 to 6, its exact shape)",
    "f32",
    f32,
    _constant_shape,
    lambda op, ins, t: op.params["value"].astype(np.float64),
    _constant_torch,
    inputs=(0, 0),
    params={"value": Param("float32")},
    cost=no_cost,
)


# unary


def _vectorized(fn: Any, x: np.ndarray) -> np.ndarray:
    return np.vectorize(fn, otypes=[np.float64])(x) if x.size else x.astype(np.float64)


def _gelu_ref(op: ir.Op, ins: list[np.ndarray], tensors: list[ir.Tensor]) -> np.ndarray:
    # PyTorch's float32 operation order (docs/ir.md): each step rounded to float32, erf / tanh
    # evaluated in float64 and rounded once. In float32 1 + erf(x / sqrt(2)) is exactly 0 for
    # x below ~ -5.5, so gelu is -0.0 there, as in the models this reference stands for.
    f = np.float32
    x = ins[0].astype(f)
    if op.attrs.get("approximate", "none") == "tanh":
        inner = (f(0.7978845608028654) * (x + f(0.044715) * (x * x * x))).astype(f)
        t = np.tanh(inner.astype(np.float64)).astype(f)
        return (f(0.5) * x * (f(1) + t)).astype(np.float64)
    e = _vectorized(math.erf, (x * f(0.7071067811865476)).astype(np.float64)).astype(f)
    return (x * f(0.5) * (f(1) + e)).astype(np.float64)


def _slope(op: ir.Op) -> float:
    return float(np.float32(op.attrs.get("negative_slope", 0.01)))  # the engine holds it as float32


def _alpha(op: ir.Op) -> float:
    return float(np.float32(op.attrs.get("alpha", 1.0)))


def _unary(name: str, summary: str, ref: Any, torch_name: str, **kw: Any) -> OpDef:
    def run(op: ir.Op, ins: list[Any], p: Mapping[str, Any]) -> Any:
        import torch
        import torch.nn.functional as F

        fn = getattr(F, torch_name[2:]) if torch_name.startswith("F.") else getattr(torch, torch_name)
        return fn(ins[0], **{k: op.attrs.get(k, a.default) for k, a in kw.get("attrs", {}).items()})

    def reference(op: ir.Op, ins: list[np.ndarray], tensors: list[ir.Tensor]) -> np.ndarray:
        with np.errstate(all="ignore"):
            return np.asarray(ref(op, ins[0]), dtype=np.float64)

    return OpDef(name, f"f32 -> f32 (any rank): {summary}", "f32", f32, same_shape, reference, run, **kw)


def _hardsigmoid(x: np.ndarray) -> np.ndarray:
    return np.clip(x + 3.0, 0.0, 6.0) / 6.0


UNARY_OPS: tuple[OpDef, ...] = (
    _unary("exp", "exp(x)", lambda op, x: np.exp(x), "exp"),
    _unary("log", "log(x) (natural)", lambda op, x: np.log(x), "log"),
    _unary("sqrt", "sqrt(x)", lambda op, x: np.sqrt(x), "sqrt"),
    _unary("rsqrt", "1 / sqrt(x)", lambda op, x: 1.0 / np.sqrt(x), "rsqrt"),
    _unary("reciprocal", "1 / x", lambda op, x: 1.0 / x, "reciprocal"),
    _unary("erf", "erf(x)", lambda op, x: _vectorized(math.erf, x), "erf"),
    _unary("silu", "x * sigmoid(x)", lambda op, x: x / (1.0 + np.exp(-x)), "F.silu"),
    _unary("hardswish", "x * min(max(x + 3, 0), 6) / 6", lambda op, x: x * _hardsigmoid(x), "F.hardswish"),
    _unary("hardsigmoid", "min(max(x + 3, 0), 6) / 6", lambda op, x: _hardsigmoid(x), "F.hardsigmoid"),
    _unary(
        "gelu",
        "x * Phi(x) (approximate 'none': erf form; 'tanh': the tanh approximation)",
        lambda op, x: _gelu_ref(op, [x], []),
        "F.gelu",
        attrs={"approximate": Attr("string", False, "none", choices=("none", "tanh"))},
    ),
    _unary(
        "leaky_relu",
        "x > 0 ? x : negative_slope * x",
        lambda op, x: np.where(x > 0, x, x * _slope(op)),
        "F.leaky_relu",
        attrs={"negative_slope": Attr("float", False, 0.01)},
    ),
    _unary(
        "elu",
        "x > 0 ? x : alpha * (exp(x) - 1)",
        lambda op, x: np.where(x > 0, x, _alpha(op) * np.expm1(x)),
        "F.elu",
        attrs={"alpha": Attr("float", False, 1.0)},
    ),
    _unary(
        "signum",
        "-1.0, 0.0 or +1.0 by the sign of x (torch.sign: NaN and -0.0 give 0.0)",
        lambda op, x: np.sign(np.nan_to_num(x, nan=0.0)) + 0.0,
        "sign",
    ),
)

GENERAL_OPS: tuple[OpDef, ...] = (BINARY, WHERE, CONSTANT, *UNARY_OPS)
