"""A sign after a ternary-weight layer, fused into the layer (tbconv2d / tblinear output "bits").

Lowering writes a binary activation after a ternary layer on binary inputs as three ops:
``tbconv2d`` (float y = fma(Wp, P, fma(-Wn, N, b))) -> ``affine`` (z = fma(y, scale, shift), a folded
BatchNorm) -> ``sign`` (bit = z < t, or z <= t with sign_zero '-1'). :func:`fuse_ternary_signs` makes
them one op that writes the bits in the same pass:

- symmetric scales (scale_pos == scale_neg = a per channel): y = a * (P - N) + b, so the bit is an
  integer threshold on the one exact sum S = P - N, found here in exact rational arithmetic from the
  float32 parameters (as bconv2d's bits output): ``threshold`` and ``flip``, bit = (S < T) XOR flip;
- otherwise the float epilogue stays as it is, then the affine and the compare (``post_scale``,
  ``post_shift``, ``sign_threshold``, ``sign_zero``): bit-identical to the three unfused ops.

The fused op keeps the sign's output tensor (and so its verification against PyTorch).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from xnorinfer import ir

TERNARY_OPS = ("tbconv2d", "tblinear")


def _readers(graph: ir.Graph) -> dict[str, list[ir.Op]]:
    readers: dict[str, list[ir.Op]] = {}
    for op in graph.ops:
        for name in op.inputs:
            readers.setdefault(name, []).append(op)
    return readers


def _only_reader(graph: ir.Graph, readers: dict[str, list[ir.Op]], value: str, kind: str) -> ir.Op | None:
    users = readers.get(value, [])
    if value in graph.outputs or len(users) != 1 or users[0].kind != kind:
        return None
    return users[0]


def _sums_per_output(op: ir.Op) -> int:
    """K: the number of weights (so |P - N| <= K) behind one output."""
    w = op.params["weight"]
    if op.kind == "tbconv2d":
        return int(w.shape[1] * w.shape[2] * int(op.attrs["in_channels"]))
    return int(op.attrs["in_features"])


def integer_threshold(
    a: float, b: float, scale: float, shift: float, t: float, zero_is_minus: bool, k: int
) -> tuple[int, int]:
    """(T, flip) with bit(S) = (S < T) XOR flip equal to [z < t] ([z <= t] when zero_is_minus) for every
    integer S in [-k, k], z = scale * (a * S + b) + shift in exact arithmetic."""
    c = Fraction(scale) * Fraction(a)
    z0 = Fraction(scale) * Fraction(b) + Fraction(shift) - Fraction(t)  # z - t = c * S + z0
    if c == 0:  # a constant channel: INT32_MIN never exceeds S; flip gives -1
        minus = z0 <= 0 if zero_is_minus else z0 < 0
        return -(2**31), int(minus)
    r = -z0 / c  # z - t changes sign at S = r
    if c > 0:  # minus iff S < r (S <= r)
        cut, flip = (math.floor(r) + 1 if zero_is_minus else math.ceil(r)), 0
    else:  # minus iff S > r (S >= r): bit = not (S < T)
        cut, flip = (math.ceil(r) if zero_is_minus else math.floor(r) + 1), 1
    return int(min(max(cut, -k - 1), k + 1)), flip


def _fused_params(op: ir.Op, aff: ir.Op, sign: ir.Op, channels: int) -> tuple[dict, dict] | None:
    scale = aff.params["scale"].astype(np.float32).reshape(-1)
    shift = aff.params["shift"].astype(np.float32).reshape(-1)
    thr = sign.params.get("threshold")
    thr = np.zeros(channels, np.float32) if thr is None else np.asarray(thr, np.float32)
    if scale.shape != (channels,) or shift.shape != (channels,) or thr.shape != (channels,):
        return None  # broadcast or grouped (J thresholds) forms stay unfused
    zero = str(sign.attrs.get("sign_zero", "+1"))
    attrs = {**op.attrs, "output": "bits"}
    params = {k: v for k, v in op.params.items()}
    wp, wn = op.params["scale_pos"].astype(np.float32), op.params["scale_neg"].astype(np.float32)
    if np.array_equal(wp, wn):
        bias = op.params["bias"].astype(np.float32) if "bias" in op.params else np.zeros(channels, np.float32)
        k = _sums_per_output(op)
        cuts = [
            integer_threshold(
                float(wp[o]), float(bias[o]), float(scale[o]), float(shift[o]), float(thr[o]), zero == "-1", k
            )
            for o in range(channels)
        ]
        params["threshold"] = np.array([c for c, _ in cuts], np.int32)
        params["flip"] = np.array([f for _, f in cuts], np.uint8)
    else:
        attrs["sign_zero"] = zero
        params.update(post_scale=scale, post_shift=shift, sign_threshold=thr)
    return attrs, params


def fuse_ternary_signs(graph: ir.Graph) -> ir.Graph:
    """tbconv2d / tblinear (float) -> affine -> sign, each value read once: one op with output "bits"."""
    readers = _readers(graph)
    fused: dict[int, ir.Op] = {}
    dropped: set[int] = set()
    for op in graph.ops:
        if op.kind not in TERNARY_OPS or op.attrs.get("output", "float") != "float":
            continue
        aff = _only_reader(graph, readers, op.outputs[0], "affine")
        sign = aff and _only_reader(graph, readers, aff.outputs[0], "sign")
        if aff is None or sign is None:
            continue
        got = _fused_params(op, aff, sign, int(op.params["weight"].shape[0]))
        if got is None:
            continue
        attrs, params = got
        fused[id(op)] = ir.Op(op.kind, op.name, list(op.inputs), list(sign.outputs), attrs, params)
        dropped |= {id(aff), id(sign)}
        for gone in (op.outputs[0], aff.outputs[0]):
            graph.tensors.pop(gone, None)
    if fused:
        graph.ops = [fused.get(id(op), op) for op in graph.ops if id(op) not in dropped]
        graph.metadata["fused_ternary_signs"] = [op.name for op in fused.values()]
    return graph
