"""The binary ops of the IR: `bits` tensors (±1 packed 64 channels a word, xnorinfer.bits) in or out.

Each op is one `OpDef` (see float_ops.py). The reference is exact integer arithmetic (int64); in
the float PyTorch equivalent a bits tensor is a float32 tensor of ±1.0 values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from xnorinfer.bits import pack_last, unpack_last
from xnorinfer.ops.float_ops import (
    MAX_CONCAT_INPUTS,
    POOL_ATTRS,
    channel,
    concat_shape,
    flatten_shape,
    flatten_torch,
    pad_hw,
    pool,
    same_shape,
    window_shape,
    windows,
)
from xnorinfer.ops.schema import Attr, OpDef, Param, Shape, no_cost

if TYPE_CHECKING:
    from xnorinfer import ir

PAD_VALUE = {"zero": 0, "plus_one": 1, "minus_one": -1}


def bits(attrs: Mapping[str, Any]) -> str:
    return "bits"


def by_output(attrs: Mapping[str, Any]) -> str:
    return "bits" if attrs.get("output") == "bits" else "f32"


def pm1(packed: np.ndarray, channels: int) -> np.ndarray:
    """Packed bits -> int64 ±1 values."""
    return np.where(unpack_last(packed, channels), -1, 1).astype(np.int64)


def binary_sum_conv(
    x_pm1: np.ndarray, w_pm1_ohwi: np.ndarray, stride: Sequence[int], padding: Sequence[int], pad_mode: str = "zero"
) -> np.ndarray:
    """Exact integer ±1 convolution sum (int64).

    The products are ±1 or 0 and every partial sum an integer of magnitude <= K = KH*KW*I, so a
    float32 GEMM is exact in any summation order while K < 2**24 (float64 above that). Rows are
    taken a slice of images at a time so the im2col matrix stays near 32 MB.
    """
    o, kh, kw, i = w_pm1_ohwi.shape
    k = kh * kw * i
    ftype = np.float32 if k < 1 << 24 else np.float64
    xp = pad_hw(x_pm1.astype(np.int8), padding[0], padding[1], PAD_VALUE[pad_mode])
    win = windows(xp, kh, kw, stride[0], stride[1])
    n, oh, ow = win.shape[:3]
    wt = np.ascontiguousarray(w_pm1_ohwi.reshape(o, k).astype(ftype).T)
    out = np.empty((n, oh, ow, o), np.int64)
    step = max(1, (32 << 20) // max(1, oh * ow * k * np.dtype(ftype).itemsize))
    for b in range(0, n, step):
        cols = win[b : b + step].reshape(-1, k).astype(ftype)
        out[b : b + step] = (cols @ wt).astype(np.int64).reshape(-1, oh, ow, o)
    return out


# sign


def _sign_shape(op: ir.Op, shapes: Sequence[Shape]) -> Shape:
    t = op.params.get("threshold")
    groups = t.shape[0] if t is not None and t.ndim == 2 else 1
    return tuple(shapes[0][:-1]) + (shapes[0][-1] * groups,)


def _sign_ref(op: ir.Op, ins: list[np.ndarray], tensors: list[ir.Tensor]) -> np.ndarray:
    x = ins[0]
    c = x.shape[-1]
    thr = op.params.get("threshold", np.zeros(c, np.float32)).astype(np.float64).reshape(-1, c)
    below = [(x <= t) if op.attrs.get("sign_zero", "+1") == "-1" else (x < t) for t in thr]
    return pack_last(np.concatenate(below, axis=-1))


def _sign_torch(op: ir.Op, ins: list[Any], p: Mapping[str, Any]) -> Any:
    import torch

    x = ins[0]
    c = x.shape[1]
    thr = p["threshold"].view(-1, c) if "threshold" in p else torch.zeros(1, c)
    parts = []
    for t in thr:
        neg = x <= channel(t, x.dim()) if op.attrs.get("sign_zero", "+1") == "-1" else x < channel(t, x.dim())
        parts.append(torch.where(neg, -1.0, 1.0))
    return torch.cat(parts, dim=1)


SIGN = OpDef(
    "sign",
    "f32 (..., C) -> bits (..., J*C): bit j*C+c = x < threshold[j, c] (x <= with sign_zero '-1')",
    "f32",
    bits,
    _sign_shape,
    _sign_ref,
    _sign_torch,
    attrs={"sign_zero": Attr("string", False, "+1", ("+1", "-1"))},
    params={"threshold": Param("float32", False)},
    domain="binary",
    cost=no_cost,
)


# binary conv / linear: an exact ±1 sum, then the folded output transform


def output_transform(s: np.ndarray, op: ir.Op) -> np.ndarray:
    if op.attrs["output"] == "bits":
        bit = (s < op.params["threshold"].astype(np.int64)) ^ op.params["flip"].astype(bool)
        return pack_last(bit)
    m = op.params["multiplier"].astype(np.float64)
    b = op.params["bias"].astype(np.float64)
    return m * s.astype(np.float32).astype(np.float64) + b


def _transform_torch(s: Any, op: ir.Op, p: Mapping[str, Any]) -> Any:
    import torch

    nd = s.dim()
    if op.attrs["output"] == "bits":
        neg = (s < channel(p["threshold"], nd)) ^ channel(p["flip"], nd).bool()
        return torch.where(neg, -1.0, 1.0)
    return s * channel(p["multiplier"], nd) + channel(p["bias"], nd)


def in_width(op: ir.Op) -> int:
    """The ±1 values per weight row (channels of a conv tap, features of a dense row)."""
    return int(op.attrs["in_channels"] if op.kind == "bconv2d" else op.attrs["in_features"])


def _pm1_weight_torch(op: ir.Op, name: str, value: np.ndarray) -> Any:
    import torch

    if name != "weight":
        return torch.from_numpy(np.asarray(value).copy())
    w = np.where(unpack_last(value, in_width(op)), -1.0, 1.0).astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(w.transpose(0, 3, 1, 2) if w.ndim == 4 else w))


OUTPUT_ATTR = Attr("string", choices=("bits", "float"))
OUTPUT_PARAMS = {
    "threshold": Param("int32", False),
    "flip": Param("uint8", False),
    "multiplier": Param("float32", False),
    "bias": Param("float32", False),
}


def _bconv2d_shape(op: ir.Op, shapes: Sequence[Shape]) -> Shape:
    out = window_shape(op, shapes, op.params["weight"].shape[0])
    if len(shapes) == 2:
        if op.attrs["output"] != "float":
            raise ValueError("a pixel scale input needs output 'float'")
        if tuple(shapes[1]) != (*out[:3], 1):
            raise ValueError(f"pixel scale must have shape {(*out[:3], 1)}, got {tuple(shapes[1])}")
    return out


def _bconv2d_ref(op: ir.Op, ins: list[np.ndarray], tensors: list[ir.Tensor]) -> np.ndarray:
    a, c = op.attrs, in_width(op)
    s = binary_sum_conv(pm1(ins[0], c), pm1(op.params["weight"], c), a["stride"], a["padding"], a["pad_mode"])
    if len(ins) == 2:  # the pixel scale K (N, OH, OW, 1): multiplier * fl32(s * K) + bias
        sk = (s.astype(np.float32) * np.asarray(ins[1], np.float32)).astype(np.float64)
        return op.params["multiplier"].astype(np.float64) * sk + op.params["bias"].astype(np.float64)
    return output_transform(s, op)


def _bconv2d_torch(op: ir.Op, ins: list[Any], p: Mapping[str, Any]) -> Any:
    import torch.nn.functional as F

    a = op.attrs
    ph, pw = a["padding"]
    pad_value = float(PAD_VALUE[a["pad_mode"]])
    x = F.pad(ins[0], (pw, pw, ph, ph), value=pad_value) if pad_value else ins[0]
    s = F.conv2d(x, p["weight"], None, a["stride"], 0 if pad_value else a["padding"])
    if len(ins) == 2:  # the pixel scale K, (N, 1, OH, OW) here
        s = s * ins[1]
    return _transform_torch(s, op, p)


def _bconv2d_cost(attrs: Mapping[str, Any], params: Mapping[str, Shape], x: Shape, y: Shape) -> tuple[int, int, int]:
    o, kh, kw, _ = params["weight"]
    k = kh * kw * int(attrs["in_channels"])
    return math.prod(y[1:-1]) * o * k, 0, (o * k + 2 * o) * 32


BCONV2D = OpDef(
    "bconv2d",
    "bits NHWC [, f32 K (N, OH, OW, 1)] -> bits or f32 NHWC: exact ±1 convolution sum, then threshold/flip or "
    "multiplier/bias (with K: fma(multiplier, fl(s * K), bias))",
    "bits",
    by_output,
    _bconv2d_shape,
    _bconv2d_ref,
    _bconv2d_torch,
    attrs={
        "stride": Attr("ints"),
        "padding": Attr("ints"),
        "pad_mode": Attr("string", choices=tuple(PAD_VALUE)),
        "output": OUTPUT_ATTR,
        "in_channels": Attr("int"),
    },
    params={"weight": Param("uint64"), **OUTPUT_PARAMS},
    domain="binary",
    cost=_bconv2d_cost,
    torch_param=_pm1_weight_torch,
    inputs=(1, 2),
    later_in_dtype="f32",
)


def _blinear_ref(op: ir.Op, ins: list[np.ndarray], tensors: list[ir.Tensor]) -> np.ndarray:
    c = in_width(op)
    s = pm1(ins[0], c).astype(np.float64) @ pm1(op.params["weight"], c).astype(np.float64).T
    return output_transform(s.astype(np.int64), op)


def _blinear_torch(op: ir.Op, ins: list[Any], p: Mapping[str, Any]) -> Any:
    import torch.nn.functional as F

    return _transform_torch(F.linear(ins[0], p["weight"]), op, p)


def _blinear_cost(attrs: Mapping[str, Any], params: Mapping[str, Shape], x: Shape, y: Shape) -> tuple[int, int, int]:
    o = params["weight"][0]
    macs = o * int(attrs["in_features"])
    return macs, 0, (macs + 2 * o) * 32


BLINEAR = OpDef(
    "blinear",
    "bits (N, F) -> bits or f32 (N, O): binary dense layer, the output transforms of bconv2d",
    "bits",
    by_output,
    lambda op, s: (s[0][0], op.params["weight"].shape[0]),
    _blinear_ref,
    _blinear_torch,
    attrs={"output": OUTPUT_ATTR, "in_features": Attr("int")},
    params={"weight": Param("uint64"), **OUTPUT_PARAMS},
    domain="binary",
    cost=_blinear_cost,
    torch_param=_pm1_weight_torch,
)


# moving bits around


def _bmaxpool_ref(op: ir.Op, ins: list[np.ndarray], tensors: list[ir.Tensor]) -> np.ndarray:
    c = tensors[0].shape[-1]
    neg = unpack_last(ins[0], c).astype(np.float64)  # 1 = -1
    # max of ±1 = -1 only if all are -1: min over the window of the "-1" indicator, padding ignored
    all_neg = -pool(-neg, op, "max") > 0.5
    if "min_channels" not in op.params:
        return pack_last(all_neg)
    # min of ±1 = -1 if any is -1 (padding ignored: -inf never wins the max of the indicator)
    any_neg = pool(neg, op, "max") > 0.5
    return pack_last(np.where(unpack_last(op.params["min_channels"], c), any_neg, all_neg))


def _bmaxpool_torch(op: ir.Op, ins: list[Any], p: Mapping[str, Any]) -> Any:
    import torch
    import torch.nn.functional as F

    k, s, pad = op.attrs["kernel"], op.attrs["stride"], op.attrs["padding"]
    y = F.max_pool2d(ins[0], k, s, pad)
    if "min_channels" not in p:
        return y
    is_min = p["min_channels"][: ins[0].shape[1]].view(1, -1, 1, 1)
    return torch.where(is_min, -F.max_pool2d(-ins[0], k, s, pad), y)


def _bmaxpool_torch_param(op: ir.Op, name: str, value: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(unpack_last(value, 64 * value.shape[-1]).copy())  # bool per channel (+ tail)


BMAXPOOL2D = OpDef(
    "bmaxpool2d",
    "bits NHWC -> bits NHWC: max-pool of ±1 values (bitwise AND), padding ignored; the channels set in "
    "min_channels take the min (bitwise OR)",
    "bits",
    bits,
    window_shape,
    _bmaxpool_ref,
    _bmaxpool_torch,
    attrs=POOL_ATTRS,
    params={"min_channels": Param("uint64", required=False)},
    domain="binary",
    cost=no_cost,
    torch_param=_bmaxpool_torch_param,
)


def _bconcat_ref(op: ir.Op, ins: list[np.ndarray], tensors: list[ir.Tensor]) -> np.ndarray:
    parts = [unpack_last(v, t.shape[-1]) for v, t in zip(ins, tensors, strict=True)]
    return pack_last(np.concatenate(parts, axis=-1))


def _cat_torch(op: ir.Op, ins: list[Any], p: Mapping[str, Any]) -> Any:
    import torch

    return torch.cat(ins, dim=1)


BCONCAT = OpDef(
    "bconcat",
    "bits, bits, ... -> bits: concatenation along C",
    "bits",
    bits,
    concat_shape,
    _bconcat_ref,
    _cat_torch,
    inputs=(1, MAX_CONCAT_INPUTS),
    domain="binary",
    cost=no_cost,
)


def _bflatten_ref(op: ir.Op, ins: list[np.ndarray], tensors: list[ir.Tensor]) -> np.ndarray:
    x = unpack_last(ins[0], tensors[0].shape[-1])
    return pack_last(x.reshape(len(x), -1))


BFLATTEN = OpDef(
    "bflatten",
    "bits (N, H, W, C) -> bits (N, H*W*C): NHWC order, one bit row per image",
    "bits",
    bits,
    flatten_shape,
    _bflatten_ref,
    flatten_torch,
    domain="binary",
    cost=no_cost,
)

UNPACK = OpDef(
    "unpack",
    "bits -> f32: ±1.0",
    "bits",
    lambda attrs: "f32",
    same_shape,
    lambda op, ins, t: np.where(unpack_last(ins[0], t[0].shape[-1]), -1.0, 1.0),
    lambda op, ins, p: ins[0],
)

BINARY_OPS: tuple[OpDef, ...] = (SIGN, BCONV2D, BLINEAR, BMAXPOOL2D, BCONCAT, BFLATTEN, UNPACK)
