"""The float ops of the IR: f32 tensors in and out (docs/ir.md has each one's exact rule).

Each op is one `OpDef`: its attributes and parameters, output shape, numpy float64 reference and
float32 PyTorch equivalent. Reference arrays are NHWC / (N, F) float64; torch tensors are NCHW.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from xnorinfer.ops.schema import Attr, OpDef, Param, Shape

if TYPE_CHECKING:
    from xnorinfer import ir

PAIR = Attr("ints")


def f32(attrs: Mapping[str, Any]) -> str:
    return "f32"


def same_shape(op: ir.Op, shapes: Sequence[Shape]) -> Shape:
    return tuple(shapes[0])


def window_shape(op: ir.Op, shapes: Sequence[Shape], out_channels: int | None = None) -> Shape:
    """(N, H, W, C) through a kernel/stride/padding window: PyTorch's floor rule."""
    n, h, w, c = shapes[0]
    kh, kw = op.attrs["kernel"] if "kernel" in op.attrs else op.params["weight"].shape[1:3]
    (sh, sw), (ph, pw) = op.attrs["stride"], op.attrs["padding"]
    ceil = bool(op.attrs.get("ceil_mode", False))
    oh, ow = pooled_size(h, kh, sh, ph, ceil), pooled_size(w, kw, sw, pw, ceil)
    return (n, oh, ow, c if out_channels is None else out_channels)


def pooled_size(size: int, k: int, s: int, p: int, ceil_mode: bool = False) -> int:
    """PyTorch's pooling output size: floor, or ceil where the last window must start inside the
    input or the left padding (aten pooling_output_shape)."""
    out = (size + 2 * p - k + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


# numpy helpers shared with binary_ops.py


def pad_hw(x: np.ndarray, ph: int, pw: int, value: float) -> np.ndarray:
    return np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)), constant_values=value)


def windows(x: np.ndarray, kh: int, kw: int, sh: int, sw: int) -> np.ndarray:
    """(N, H, W, C) -> (N, OH, OW, KH, KW, C) sliding windows (a view)."""
    n, h, w, c = x.shape
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    st = x.strides
    return np.lib.stride_tricks.as_strided(
        x, (n, oh, ow, kh, kw, c), (st[0], st[1] * sh, st[2] * sw, st[1], st[2], st[3]), writeable=False
    )


def _clipped_windows(size: int, k: int, s: int, p: int, out: int) -> list[tuple[int, int, int]]:
    """Per output index: (first, last + 1) of the window inside the input, and PyTorch's
    count_include_pad divisor (the window clipped to the padded input [-p, size + p))."""
    spans = []
    for o in range(out):
        start = o * s - p
        end = min(start + k, size + p)
        spans.append((max(start, 0), min(end, size), end - start))
    return spans


def _ceil_pool(x: np.ndarray, op: ir.Op, reduce: str) -> np.ndarray:
    """Pooling with ceil_mode: windows may run past the padded input; each is clipped as PyTorch does."""
    (kh, kw), (sh, sw), (ph, pw) = op.attrs["kernel"], op.attrs["stride"], op.attrs["padding"]
    n, h, w, c = x.shape
    rows = _clipped_windows(h, kh, sh, ph, pooled_size(h, kh, sh, ph, True))
    cols = _clipped_windows(w, kw, sw, pw, pooled_size(w, kw, sw, pw, True))
    y = np.empty((n, len(rows), len(cols), c))
    for i, (y0, y1, dh) in enumerate(rows):
        for j, (x0, x1, dw) in enumerate(cols):
            win = x[:, y0:y1, x0:x1, :]
            if reduce == "max":
                y[:, i, j] = win.max(axis=(1, 2))
            else:
                count = dh * dw if op.attrs.get("count_include_pad", True) else (y1 - y0) * (x1 - x0)
                y[:, i, j] = win.sum(axis=(1, 2)) / count
    return y


def pool(x: np.ndarray, op: ir.Op, reduce: str) -> np.ndarray:
    if op.attrs.get("ceil_mode", False):
        return _ceil_pool(x, op, reduce)
    (kh, kw), (sh, sw), (ph, pw) = op.attrs["kernel"], op.attrs["stride"], op.attrs["padding"]
    if reduce == "max":
        return windows(pad_hw(x, ph, pw, -np.inf), kh, kw, sh, sw).max(axis=(3, 4))
    total = windows(pad_hw(x, ph, pw, 0.0), kh, kw, sh, sw).sum(axis=(3, 4))
    if op.attrs.get("count_include_pad", True):
        return total / (kh * kw)
    ones = pad_hw(np.ones((1,) + x.shape[1:3] + (1,)), ph, pw, 0.0)
    return total / windows(ones, kh, kw, sh, sw).sum(axis=(3, 4))


def to_physical(x: Any) -> Any:
    """A float-equivalent torch tensor (4-D: NCHW) as stored in the engine (4-D: NHWC)."""
    return x.permute(0, 2, 3, 1) if x.dim() == 4 else x


def from_physical(y: Any) -> Any:
    """The inverse of to_physical: a 4-D result goes back to NCHW for the float equivalent."""
    return y.permute(0, 3, 1, 2) if y.dim() == 4 else y


def norm_axis(where: str, axis: int, rank: int) -> int:
    """`axis` in [-rank, rank) as an index in [0, rank); ValueError naming the op otherwise."""
    if not -rank <= axis < rank:
        raise ValueError(f"{where}: axis {axis} is out of range for rank {rank}")
    return axis % rank


def channel(t: Any, ndim: int) -> Any:
    """A (C,) torch tensor broadcast over NCHW or (N, C)."""
    return t.reshape(1, -1, 1, 1) if ndim == 4 else t.reshape(1, -1)


def _f(name: str) -> Any:
    import torch.nn.functional as F

    return getattr(F, name)


def _p(op: ir.Op, name: str) -> np.ndarray:
    return op.params[name].astype(np.float64)


# conv2d


def _dilated(k: int, d: int) -> int:
    return d * (k - 1) + 1


def _conv2d_ref(op: ir.Op, ins: list[np.ndarray], tensors: list[ir.Tensor]) -> np.ndarray:
    w = _p(op, "weight")
    (sh, sw), (ph, pw) = op.attrs["stride"], op.attrs["padding"]
    dh, dw = op.attrs.get("dilation", (1, 1))
    win = windows(pad_hw(ins[0], ph, pw, 0), _dilated(w.shape[1], dh), _dilated(w.shape[2], dw), sh, sw)
    win = win[:, :, :, ::dh, ::dw, :]  # the taps of the dilated kernel
    groups = int(op.attrs.get("groups", 1))
    ci, co = w.shape[3], w.shape[0] // groups  # per group
    y = np.concatenate(
        [
            np.einsum("nhwijc,oijc->nhwo", win[..., g * ci : (g + 1) * ci], w[g * co : (g + 1) * co], optimize=True)
            for g in range(groups)
        ],
        axis=-1,
    )
    y = y + _p(op, "bias") if "bias" in op.params else y
    return np.maximum(y, 0) if op.attrs.get("relu") else y


def _conv2d_torch(op: ir.Op, ins: list[Any], p: Mapping[str, Any]) -> Any:
    a = op.attrs
    y = _f("conv2d")(
        ins[0], p["weight"], p.get("bias"), a["stride"], a["padding"], a.get("dilation", (1, 1)), a.get("groups", 1)
    )
    return _f("relu")(y) if op.attrs.get("relu") else y


def _conv2d_torch_param(op: ir.Op, name: str, value: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(np.ascontiguousarray(value.transpose(0, 3, 1, 2) if name == "weight" else value))


def _conv2d_cost(attrs: Mapping[str, Any], params: Mapping[str, Shape], x: Shape, y: Shape) -> tuple[int, int, None]:
    o, kh, kw, i = params["weight"]
    return 0, 2 * math.prod(y[1:-1]) * o * kh * kw * i, None


def _conv2d_shape(op: ir.Op, shapes: Sequence[Shape]) -> Shape:
    o, _, _, i = op.params["weight"].shape
    groups = int(op.attrs.get("groups", 1))
    if groups < 1 or o % groups or shapes[0][-1] != i * groups:
        raise ValueError(
            f"op {op.name} (conv2d): {groups} group(s) of weight {tuple(op.params['weight'].shape)} "
            f"do not fit an input of {shapes[0][-1]} channels"
        )
    dh, dw = op.attrs.get("dilation", (1, 1))
    if min(dh, dw) < 1:
        raise ValueError(f"op {op.name} (conv2d): dilation must be positive, got {[dh, dw]}")
    n, h, w, _ = shapes[0]
    (_, kh, kw, _), (sh, sw), (ph, pw) = op.params["weight"].shape, op.attrs["stride"], op.attrs["padding"]
    return (n, pooled_size(h, _dilated(kh, dh), sh, ph), pooled_size(w, _dilated(kw, dw), sw, pw), o)


CONV2D = OpDef(
    "conv2d",
    "f32 NHWC -> f32 NHWC: float convolution (optionally grouped, dilated), zero padding, + bias, optional ReLU",
    "f32",
    f32,
    _conv2d_shape,
    _conv2d_ref,
    _conv2d_torch,
    attrs={
        "stride": PAIR,
        "padding": PAIR,
        "relu": Attr("bool", False, False),
        "groups": Attr("int", False, 1),
        "dilation": Attr("ints", False, (1, 1)),
    },
    params={"weight": Param("float32"), "bias": Param("float32", False)},
    cost=_conv2d_cost,
    torch_param=_conv2d_torch_param,
)


# linear


def _linear_ref(op: ir.Op, ins: list[np.ndarray], tensors: list[ir.Tensor]) -> np.ndarray:
    y = ins[0] @ _p(op, "weight").T
    y = y + _p(op, "bias") if "bias" in op.params else y
    return np.maximum(y, 0) if op.attrs.get("relu") else y


def _linear_torch(op: ir.Op, ins: list[Any], p: Mapping[str, Any]) -> Any:
    y = _f("linear")(ins[0], p["weight"], p.get("bias"))
    return _f("relu")(y) if op.attrs.get("relu") else y


LINEAR = OpDef(
    "linear",
    "f32 (N, K) -> f32 (N, O): x @ weight.T + bias, optional ReLU",
    "f32",
    f32,
    lambda op, s: (s[0][0], op.params["weight"].shape[0]),
    _linear_ref,
    _linear_torch,
    attrs={"relu": Attr("bool", False, False)},
    params={"weight": Param("float32"), "bias": Param("float32", False)},
    cost=lambda a, p, x, y: (0, 2 * math.prod(p["weight"]), None),
)


# per-channel transforms and activations


def _affine_torch(op: ir.Op, ins: list[Any], p: Mapping[str, Any]) -> Any:
    x = ins[0]
    return x * channel(p["scale"], x.dim()) + channel(p["shift"], x.dim())


AFFINE = OpDef(
    "affine",
    "f32 -> f32: fma(x, scale[c], shift[c]) (an unfolded BatchNorm or channel scale)",
    "f32",
    f32,
    same_shape,
    lambda op, ins, t: ins[0] * _p(op, "scale") + _p(op, "shift"),
    _affine_torch,
    params={"scale": Param("float32"), "shift": Param("float32")},
)


def _prelu_ref(op: ir.Op, ins: list[np.ndarray], tensors: list[ir.Tensor]) -> np.ndarray:
    c = ins[0].shape[-1]
    pre = op.params.get("pre_shift", np.zeros(c)).astype(np.float64)
    post = op.params.get("post_shift", np.zeros(c)).astype(np.float64)
    t = ins[0] - pre
    return np.where(t >= 0, t, _p(op, "slope") * t) + post


def _prelu_torch(op: ir.Op, ins: list[Any], p: Mapping[str, Any]) -> Any:
    import torch

    x = ins[0]
    zeros = torch.zeros(x.shape[1])
    t = x - channel(p.get("pre_shift", zeros), x.dim())
    return torch.where(t >= 0, t, channel(p["slope"], x.dim()) * t) + channel(p.get("post_shift", zeros), x.dim())


PRELU = OpDef(
    "prelu",
    "f32 -> f32: t = x - pre_shift[c]; (t >= 0 ? t : slope[c] * t) + post_shift[c] (RPReLU, PReLU)",
    "f32",
    f32,
    same_shape,
    _prelu_ref,
    _prelu_torch,
    params={"slope": Param("float32"), "pre_shift": Param("float32", False), "post_shift": Param("float32", False)},
)

RELU = OpDef(
    "relu",
    "f32 -> f32: max(x, 0)",
    "f32",
    f32,
    same_shape,
    lambda op, ins, t: np.maximum(ins[0], 0),
    lambda op, ins, p: _f("relu")(ins[0]),
)

HARDTANH = OpDef(
    "hardtanh",
    "f32 -> f32: min(max(x, min_val), max_val)",
    "f32",
    f32,
    same_shape,
    lambda op, ins, t: np.clip(ins[0], op.attrs["min_val"], op.attrs["max_val"]),
    lambda op, ins, p: _f("hardtanh")(ins[0], op.attrs["min_val"], op.attrs["max_val"]),
    attrs={"min_val": Attr("float"), "max_val": Attr("float")},
)


def _sigmoid_torch(op: ir.Op, ins: list[Any], p: Mapping[str, Any]) -> Any:
    import torch

    return torch.sigmoid(ins[0])


SIGMOID = OpDef(
    "sigmoid",
    "f32 -> f32: 1 / (1 + exp(-x))",
    "f32",
    f32,
    same_shape,
    lambda op, ins, t: 1.0 / (1.0 + np.exp(-ins[0])),
    _sigmoid_torch,
)


def _tanh_torch(op: ir.Op, ins: list[Any], p: Mapping[str, Any]) -> Any:
    import torch

    return torch.tanh(ins[0])


TANH = OpDef(
    "tanh",
    "f32 -> f32: tanh(x)",
    "f32",
    f32,
    same_shape,
    lambda op, ins, t: np.tanh(ins[0]),
    _tanh_torch,
)


# pooling

POOL_ATTRS = {"kernel": PAIR, "stride": PAIR, "padding": PAIR}
CEIL_MODE = Attr("bool", False, False)  # PyTorch's ceil_mode (float pools only)


def _maxpool_torch(op: ir.Op, ins: list[Any], p: Mapping[str, Any]) -> Any:
    a = op.attrs
    return _f("max_pool2d")(ins[0], a["kernel"], a["stride"], a["padding"], ceil_mode=a.get("ceil_mode", False))


MAXPOOL2D = OpDef(
    "maxpool2d",
    "f32 NHWC -> f32 NHWC: PyTorch max_pool2d (padding is -inf, optional ceil_mode)",
    "f32",
    f32,
    window_shape,
    lambda op, ins, t: pool(ins[0], op, "max"),
    _maxpool_torch,
    attrs={**POOL_ATTRS, "ceil_mode": CEIL_MODE},
)


def _avgpool_torch(op: ir.Op, ins: list[Any], p: Mapping[str, Any]) -> Any:
    a = op.attrs
    return _f("avg_pool2d")(
        ins[0],
        a["kernel"],
        a["stride"],
        a["padding"],
        ceil_mode=a.get("ceil_mode", False),
        count_include_pad=a.get("count_include_pad", True),
    )


AVGPOOL2D = OpDef(
    "avgpool2d",
    "f32 NHWC -> f32 NHWC: PyTorch avg_pool2d (count_include_pad, optional ceil_mode)",
    "f32",
    f32,
    window_shape,
    lambda op, ins, t: pool(ins[0], op, "avg"),
    _avgpool_torch,
    attrs={**POOL_ATTRS, "count_include_pad": Attr("bool", False, True), "ceil_mode": CEIL_MODE},
)

GLOBAL_AVGPOOL = OpDef(
    "global_avgpool",
    "f32 (N, H, W, C) -> f32 (N, C): mean over H, W",
    "f32",
    f32,
    lambda op, s: (s[0][0], s[0][-1]),
    lambda op, ins, t: ins[0].mean(axis=(1, 2)),
    lambda op, ins, p: ins[0].mean(dim=(2, 3)),
)


# combining tensors


def _mul_ref(op: ir.Op, ins: list[np.ndarray], tensors: list[ir.Tensor]) -> np.ndarray:
    a, b = ins
    return a * (b[:, None, None, :] if a.ndim == 4 and b.ndim == 2 else b)


def _mul_torch(op: ir.Op, ins: list[Any], p: Mapping[str, Any]) -> Any:
    a, b = ins
    return a * (b[:, :, None, None] if a.dim() == 4 and b.dim() == 2 else b)


ADD = OpDef(
    "add",
    "f32, f32 (same shape) -> f32: a + b",
    "f32",
    f32,
    same_shape,
    lambda op, ins, t: ins[0] + ins[1],
    lambda op, ins, p: ins[0] + ins[1],
    inputs=(2, 2),
)

MUL = OpDef(
    "mul",
    "f32 (N, H, W, C), f32 (N, C) or the same shape -> f32: a * b, b broadcast over H, W",
    "f32",
    f32,
    same_shape,
    _mul_ref,
    _mul_torch,
    inputs=(2, 2),
)

# The runtime's bound on concatenated inputs (csrc/runtime: kMaxConcatInputs).
MAX_CONCAT_INPUTS = 64


AXIS = Attr("int", False, -1)  # a physical axis; negative counts from the end; default: the last


def concat_axis(op: ir.Op, shapes: Sequence[Shape]) -> int:
    """The concatenation axis in [0, rank); ValueError unless the inputs agree on every other axis."""
    rank = len(shapes[0])
    axis = norm_axis(f"op {op.name} ({op.kind})", int(op.attrs.get("axis", -1)), rank)
    for s in shapes[1:]:
        if len(s) != rank or any(d != e for i, (d, e) in enumerate(zip(s, shapes[0], strict=True)) if i != axis):
            raise ValueError(f"op {op.name} ({op.kind}): inputs {[tuple(s) for s in shapes]} differ off axis {axis}")
    return axis


def concat_shape(op: ir.Op, shapes: Sequence[Shape]) -> Shape:
    axis = concat_axis(op, shapes)
    out = list(shapes[0])
    out[axis] = sum(s[axis] for s in shapes)
    return tuple(out)


def _cat_ref(op: ir.Op, ins: list[np.ndarray], tensors: list[ir.Tensor]) -> np.ndarray:
    return np.concatenate(ins, axis=concat_axis(op, [x.shape for x in ins]))


def _cat_torch(op: ir.Op, ins: list[Any], p: Mapping[str, Any]) -> Any:
    import torch

    xs = [to_physical(x) for x in ins]
    return from_physical(torch.cat(xs, dim=concat_axis(op, [tuple(x.shape) for x in xs])))


CONCAT = OpDef(
    "concat",
    "f32, f32, ... -> f32: concatenation along `axis` (physical; default the last, C)",
    "f32",
    f32,
    concat_shape,
    _cat_ref,
    _cat_torch,
    inputs=(1, MAX_CONCAT_INPUTS),
    attrs={"axis": AXIS},
)


def flatten_shape(op: ir.Op, shapes: Sequence[Shape]) -> Shape:
    return (shapes[0][0], math.prod(shapes[0][1:]))


def flatten_torch(op: ir.Op, ins: list[Any], p: Mapping[str, Any]) -> Any:
    x = ins[0]  # NCHW in torch, flattened in NHWC order as the engine does
    return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1) if x.dim() == 4 else x


FLATTEN = OpDef(
    "flatten",
    "f32 (N, H, W, C) -> f32 (N, H*W*C): NHWC order",
    "f32",
    f32,
    flatten_shape,
    lambda op, ins, t: ins[0].reshape(ins[0].shape[0], -1),
    flatten_torch,
)


# classifier heads


def softmax_axis(op: ir.Op, rank: int) -> int:
    return norm_axis(f"op {op.name} ({op.kind})", int(op.attrs.get("axis", -1)), rank)


def _softmax_ref(op: ir.Op, ins: list[np.ndarray], tensors: list[ir.Tensor]) -> np.ndarray:
    ax = softmax_axis(op, ins[0].ndim)
    e = np.exp(ins[0] - ins[0].max(axis=ax, keepdims=True))
    return e / e.sum(axis=ax, keepdims=True)


def _log_softmax_ref(op: ir.Op, ins: list[np.ndarray], tensors: list[ir.Tensor]) -> np.ndarray:
    ax = softmax_axis(op, ins[0].ndim)
    t = ins[0] - ins[0].max(axis=ax, keepdims=True)
    return t - np.log(np.exp(t).sum(axis=ax, keepdims=True))


def _softmax_torch(name: str) -> Any:
    def run(op: ir.Op, ins: list[Any], p: Mapping[str, Any]) -> Any:
        x = to_physical(ins[0])
        return from_physical(getattr(x, name)(dim=softmax_axis(op, x.dim())))

    return run


def _softmax_shape(op: ir.Op, shapes: Sequence[Shape]) -> Shape:
    softmax_axis(op, len(shapes[0]))
    return tuple(shapes[0])


SOFTMAX = OpDef(
    "softmax",
    "f32 -> f32: softmax along `axis` (physical; default the last)",
    "f32",
    f32,
    _softmax_shape,
    _softmax_ref,
    _softmax_torch("softmax"),
    attrs={"axis": AXIS},
)

LOG_SOFTMAX = OpDef(
    "log_softmax",
    "f32 -> f32: (x - max) - log(sum(exp(x - max))) along `axis` (physical; default the last)",
    "f32",
    f32,
    _softmax_shape,
    _log_softmax_ref,
    _softmax_torch("log_softmax"),
    attrs={"axis": AXIS},
)

FLOAT_OPS: tuple[OpDef, ...] = (
    CONV2D,
    LINEAR,
    AFFINE,
    PRELU,
    RELU,
    HARDTANH,
    SIGMOID,
    TANH,
    MAXPOOL2D,
    AVGPOOL2D,
    GLOBAL_AVGPOOL,
    ADD,
    MUL,
    CONCAT,
    FLATTEN,
    SOFTMAX,
    LOG_SOFTMAX,
)
