"""Binary-weight (BWN) and ternary-weight (TTQ) layers: `bwconv2d`, `bwlinear` on float activations,
`tbconv2d`, `tblinear` (ternary weights) on packed binary activations.

Each weight is +, - or 0. The weights are stored as bconv2d / blinear store them (sign bits per
output channel, bit 1 = -, packed 64 a word along the input channels) plus an optional non-zero
`mask` in the same layout (ternary; absent: every weight is non-zero). Per output channel o:
``y = scale_pos[o] * P - scale_neg[o] * N + bias[o]`` where P (N) is the sum of the inputs under
the + (-) weights. BWN (XNOR-Net's binary-weight networks) has scale_pos = scale_neg = alpha;
TTQ has Wp and Wn. The engine's summation order and rounding are in csrc/microkernels/bwconv.h and
docs/exactness.md; the reference here is float64.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from xnorinfer.bits import pack_last, unpack_last
from xnorinfer.ops.float_ops import channel, pad_hw, window_shape, windows
from xnorinfer.ops.schema import Attr, OpDef, Param, Shape

if TYPE_CHECKING:
    from xnorinfer import ir


def ternary_weight(op: ir.Op) -> np.ndarray:
    """The weights as int8 {-1, 0, +1}, (O, KH, KW, I) or (O, F)."""
    width = int(op.attrs["in_channels"] if "in_channels" in op.attrs else op.attrs["in_features"])
    neg = unpack_last(op.params["weight"], width)
    live = unpack_last(op.params["mask"], width) if "mask" in op.params else np.ones_like(neg)
    return np.where(live, np.where(neg, -1, 1), 0).astype(np.int8)


def scaled_weight(op: ir.Op) -> np.ndarray:
    """The float64 weights scale_pos * [w = +] - scale_neg * [w = -], (O, KH, KW, I) or (O, F)."""
    t = ternary_weight(op)
    shape = (-1,) + (1,) * (t.ndim - 1)
    wp = op.params["scale_pos"].astype(np.float64).reshape(shape)
    wn = op.params["scale_neg"].astype(np.float64).reshape(shape)
    return np.where(t > 0, wp, np.where(t < 0, -wn, 0.0))


def _bias(op: ir.Op) -> np.ndarray:
    o = op.params["weight"].shape[0]
    return op.params["bias"].astype(np.float64) if "bias" in op.params else np.zeros(o)


def _bwconv2d_ref(op: ir.Op, ins: list[np.ndarray], tensors: list[ir.Tensor]) -> np.ndarray:
    w = scaled_weight(op)
    o, kh, kw, i = w.shape
    (sh, sw), (ph, pw) = op.attrs["stride"], op.attrs["padding"]
    win = windows(pad_hw(ins[0].astype(np.float64), ph, pw, 0.0), kh, kw, sh, sw)
    n, oh, ow = win.shape[:3]
    y = win.reshape(n * oh * ow, kh * kw * i) @ w.reshape(o, -1).T
    return y.reshape(n, oh, ow, o) + _bias(op)


def _bwlinear_ref(op: ir.Op, ins: list[np.ndarray], tensors: list[ir.Tensor]) -> np.ndarray:
    return ins[0].astype(np.float64) @ scaled_weight(op).T + _bias(op)


def _bw_torch(op: ir.Op, ins: list[Any], p: Mapping[str, Any]) -> Any:
    import torch.nn.functional as F

    w = p["weight"]
    if "in_channels" in op.attrs:
        y = F.conv2d(ins[0], w, None, op.attrs["stride"], op.attrs["padding"])
    else:
        y = F.linear(ins[0], w)
    return y + channel(p["bias"], y.dim()) if "bias" in p else y


def _bw_torch_param(op: ir.Op, name: str, value: np.ndarray) -> Any:
    import torch

    if name != "weight":
        return torch.from_numpy(np.asarray(value).copy())
    w = scaled_weight(op).astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(w.transpose(0, 3, 1, 2) if w.ndim == 4 else w))


def _bw_cost(attrs: Mapping[str, Any], params: Mapping[str, Shape], x: Shape, y: Shape) -> tuple[int, int, int]:
    o = params["weight"][0]
    if "in_channels" in attrs:
        k = params["weight"][1] * params["weight"][2] * int(attrs["in_channels"])
    else:
        k = int(attrs["in_features"])
    macs = math.prod(y[1:-1]) * o * k
    return macs, 0, (o * k + o) * 32


WEIGHT_PARAMS = {
    "weight": Param("uint64"),
    "mask": Param("uint64", False),
    "scale_pos": Param("float32"),
    "scale_neg": Param("float32"),
    "bias": Param("float32", False),
}

BWCONV2D = OpDef(
    "bwconv2d",
    "f32 NHWC -> f32 NHWC: convolution with binary (±alpha) or ternary ({-Wn, 0, +Wp}) weights, zero padding",
    "f32",
    lambda attrs: "f32",
    lambda op, s: window_shape(op, s, op.params["weight"].shape[0]),
    _bwconv2d_ref,
    _bw_torch,
    attrs={"stride": Attr("ints"), "padding": Attr("ints"), "in_channels": Attr("int")},
    params=WEIGHT_PARAMS,
    domain="binary",
    cost=_bw_cost,
    torch_param=_bw_torch_param,
)

BWLINEAR = OpDef(
    "bwlinear",
    "f32 (N, F) -> f32 (N, O): dense layer with binary (±alpha) or ternary ({-Wn, 0, +Wp}) weights",
    "f32",
    lambda attrs: "f32",
    lambda op, s: (s[0][0], op.params["weight"].shape[0]),
    _bwlinear_ref,
    _bw_torch,
    attrs={"in_features": Attr("int")},
    params=WEIGHT_PARAMS,
    domain="binary",
    cost=_bw_cost,
    torch_param=_bw_torch_param,
)


# Ternary weights on binary activations: the same parameters (the mask required), bits in, f32 out
# (or bits: output "bits" below).
# The reference sums the ±1 inputs exactly (float64 of small integers); so does the engine (popcounts).


def _pm1_input(op: ir.Op, x: np.ndarray, tensors: list[ir.Tensor]) -> np.ndarray:
    return np.where(unpack_last(x, tensors[0].shape[-1]), -1.0, 1.0)


def _tb_out_dtype(attrs: Mapping[str, Any]) -> str:
    return "bits" if attrs.get("output") == "bits" else "f32"


def _tb_sign(op: ir.Op, s: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The fused sign of output "bits": s the exact ternary sums P - N, y the float output (float64)."""
    if "threshold" in op.params:  # symmetric scales: an integer threshold on P - N
        flip = op.params["flip"].astype(bool) if "flip" in op.params else False
        return pack_last((s < op.params["threshold"].astype(np.int64)) ^ flip)
    z = y * op.params["post_scale"].astype(np.float64) + op.params["post_shift"].astype(np.float64)
    t = op.params["sign_threshold"].astype(np.float64)
    return pack_last(z <= t if op.attrs.get("sign_zero") == "-1" else z < t)


def _tbconv2d_ref(op: ir.Op, ins: list[np.ndarray], tensors: list[ir.Tensor]) -> np.ndarray:
    x = _pm1_input(op, ins[0], tensors)
    y = _bwconv2d_ref(op, [x], tensors)
    if op.attrs.get("output") != "bits":
        return y
    t = ternary_weight(op).astype(np.float64)
    o, kh, kw, i = t.shape
    (sh, sw), (ph, pw) = op.attrs["stride"], op.attrs["padding"]
    win = windows(pad_hw(x, ph, pw, 0.0), kh, kw, sh, sw)
    n, oh, ow = win.shape[:3]
    s = (win.reshape(n * oh * ow, kh * kw * i) @ t.reshape(o, -1).T).reshape(n, oh, ow, o)
    return _tb_sign(op, np.rint(s).astype(np.int64), y)


def _tblinear_ref(op: ir.Op, ins: list[np.ndarray], tensors: list[ir.Tensor]) -> np.ndarray:
    x = _pm1_input(op, ins[0], tensors)
    y = _bwlinear_ref(op, [x], tensors)
    if op.attrs.get("output") != "bits":
        return y
    s = x @ ternary_weight(op).astype(np.float64).T
    return _tb_sign(op, np.rint(s).astype(np.int64), y)


def _tb_torch(op: ir.Op, ins: list[Any], p: Mapping[str, Any]) -> Any:
    import torch
    import torch.nn.functional as F

    if op.attrs.get("output") != "bits":
        return _bw_torch(op, ins, p)
    nd = ins[0].dim()
    if "threshold" in p:  # p["mask"] holds the ternary weights {-1, 0, +1} (_tb_torch_param)
        if "in_channels" in op.attrs:
            s = F.conv2d(ins[0], p["mask"], None, op.attrs["stride"], op.attrs["padding"])
        else:
            s = F.linear(ins[0], p["mask"])
        neg = s < channel(p["threshold"], nd)
        if "flip" in p:
            neg = neg ^ channel(p["flip"], nd).bool()
    else:
        z = _bw_torch(op, ins, p) * channel(p["post_scale"], nd) + channel(p["post_shift"], nd)
        t = channel(p["sign_threshold"], nd)
        neg = z <= t if op.attrs.get("sign_zero") == "-1" else z < t
    return torch.where(neg, -1.0, 1.0)


def _tb_torch_param(op: ir.Op, name: str, value: np.ndarray) -> Any:
    import torch

    if name != "mask":
        return _bw_torch_param(op, name, value)
    t = ternary_weight(op).astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(t.transpose(0, 3, 1, 2) if t.ndim == 4 else t))


# output "bits": the sign of the output, fused. Symmetric scales (scale_pos == scale_neg): `threshold`
# (int32) and optional `flip` (uint8) on the exact sum P - N, as bconv2d's bits output; otherwise
# `post_scale`, `post_shift`, `sign_threshold` (float32) and `sign_zero`: the affine and sign ops applied
# to the float output in the same pass.
T_ATTRS = {
    "output": Attr("string", False, "float", ("bits", "float")),
    "sign_zero": Attr("string", False, "+1", ("+1", "-1")),
}
T_PARAMS = {
    **WEIGHT_PARAMS,
    "mask": Param("uint64"),
    "threshold": Param("int32", False),
    "flip": Param("uint8", False),
    "post_scale": Param("float32", False),
    "post_shift": Param("float32", False),
    "sign_threshold": Param("float32", False),
}

TBCONV2D = OpDef(
    "tbconv2d",
    "bits NHWC -> f32 or bits NHWC: convolution with ternary ({-Wn, 0, +Wp}) weights, AND + popcount sums, "
    "optionally its sign fused (output 'bits')",
    "bits",
    _tb_out_dtype,
    lambda op, s: window_shape(op, s, op.params["weight"].shape[0]),
    _tbconv2d_ref,
    _tb_torch,
    attrs={**BWCONV2D.attrs, **T_ATTRS},
    params=T_PARAMS,
    domain="binary",
    cost=_bw_cost,
    torch_param=_tb_torch_param,
)

TBLINEAR = OpDef(
    "tblinear",
    "bits (N, F) -> f32 or bits (N, O): dense layer with ternary ({-Wn, 0, +Wp}) weights, AND + popcount "
    "sums, optionally its sign fused (output 'bits')",
    "bits",
    _tb_out_dtype,
    lambda op, s: (s[0][0], op.params["weight"].shape[0]),
    _tblinear_ref,
    _tb_torch,
    attrs={**BWLINEAR.attrs, **T_ATTRS},
    params=T_PARAMS,
    domain="binary",
    cost=_bw_cost,
    torch_param=_tb_torch_param,
)

WEIGHT_BINARY_OPS: tuple[OpDef, ...] = (BWCONV2D, BWLINEAR, TBCONV2D, TBLINEAR)
