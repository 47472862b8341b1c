"""The canonical reference: a numpy interpreter of an `ir.Graph`, following docs/ir.md.

Binary ops are exact integer arithmetic (int64); float ops run in float64 (values of f32 tensors are
kept as float64 arrays). ``bits`` tensors are held packed (uint64, as the runtime holds them).
"""

from __future__ import annotations

import numpy as np

from xnorinfer import ir
from xnorinfer.convert.pack import pack_last, unpack_last


def _pad_hw(x: np.ndarray, ph: int, pw: int, value: float) -> np.ndarray:
    return np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)), constant_values=value)


def _windows(x: np.ndarray, kh: int, kw: int, sh: int, sw: int) -> np.ndarray:
    """(N, H, W, C) -> (N, OH, OW, KH, KW, C) sliding windows (a view)."""
    n, h, w, c = x.shape
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    st = x.strides
    return np.lib.stride_tricks.as_strided(
        x, (n, oh, ow, kh, kw, c), (st[0], st[1] * sh, st[2] * sw, st[1], st[2], st[3]), writeable=False
    )


def _conv(x: np.ndarray, w_ohwi: np.ndarray, stride: list[int], padding: list[int]) -> np.ndarray:
    o, kh, kw, i = w_ohwi.shape
    xp = _pad_hw(x, padding[0], padding[1], 0)
    win = _windows(xp, kh, kw, stride[0], stride[1])
    return np.einsum("nhwijc,oijc->nhwo", win, w_ohwi, optimize=True)


def _pm1(bits_packed: np.ndarray, channels: int) -> np.ndarray:
    """Packed bits -> int64 ±1 values."""
    return np.where(unpack_last(bits_packed, channels), -1, 1).astype(np.int64)


def binary_sum_conv(
    x_pm1: np.ndarray, w_pm1_ohwi: np.ndarray, stride: list[int], padding: list[int], pad_mode: str = "zero"
) -> np.ndarray:
    """Exact integer ±1 convolution sum (int64)."""
    pad_value = {"zero": 0, "plus_one": 1, "minus_one": -1}[pad_mode]
    o, kh, kw, i = w_pm1_ohwi.shape
    xp = _pad_hw(x_pm1.astype(np.int64), padding[0], padding[1], pad_value)
    win = _windows(xp, kh, kw, stride[0], stride[1])
    n, oh, ow = win.shape[:3]
    cols = win.reshape(n * oh * ow, kh * kw * i).astype(np.float64)  # exact: |values| < 2**53
    s = cols @ w_pm1_ohwi.reshape(o, -1).astype(np.float64).T
    return s.astype(np.int64).reshape(n, oh, ow, o)


def _output_transform(s: np.ndarray, op: ir.Op) -> np.ndarray:
    if op.attrs["output"] == "bits":
        bit = (s < op.params["threshold"].astype(np.int64)) ^ op.params["flip"].astype(bool)
        return pack_last(bit)
    m = op.params["multiplier"].astype(np.float64)
    b = op.params["bias"].astype(np.float64)
    return m * s.astype(np.float32).astype(np.float64) + b


def _pool(x: np.ndarray, op: ir.Op, reduce: str) -> np.ndarray:
    (kh, kw), (sh, sw), (ph, pw) = op.attrs["kernel"], op.attrs["stride"], op.attrs["padding"]
    if reduce == "max":
        return _windows(_pad_hw(x, ph, pw, -np.inf), kh, kw, sh, sw).max(axis=(3, 4))
    total = _windows(_pad_hw(x, ph, pw, 0.0), kh, kw, sh, sw).sum(axis=(3, 4))
    if op.attrs.get("count_include_pad", True):
        return total / (kh * kw)
    ones = _pad_hw(np.ones((1,) + x.shape[1:3] + (1,)), ph, pw, 0.0)
    return total / _windows(ones, kh, kw, sh, sw).sum(axis=(3, 4))


def run(graph: ir.Graph, x_nchw: np.ndarray, *, keep_all: bool = False) -> dict[str, np.ndarray]:
    """Interpret `graph` on a float32 NCHW (or (N, F)) input.

    Returns the graph outputs by name (float64 for f32 tensors, packed uint64 for bits), or every
    tensor with `keep_all`.
    """
    x = np.asarray(x_nchw, dtype=np.float32).astype(np.float64)
    if x.ndim == 2 and len(graph.tensors[graph.inputs[0]].shape) == 4:  # an (N, F) model input
        x = x.reshape(len(x), 1, 1, -1)
    elif x.ndim == 4:
        x = np.transpose(x, (0, 2, 3, 1))
    env: dict[str, np.ndarray] = {graph.inputs[0]: x}
    for op in graph.ops:
        ins = [env[v] for v in op.inputs]
        a, p, k = op.attrs, op.params, op.kind
        if k == "conv2d":
            y = _conv(ins[0], p["weight"].astype(np.float64), a["stride"], a["padding"])
            y = y + p["bias"].astype(np.float64) if "bias" in p else y
            y = np.maximum(y, 0) if a.get("relu") else y
        elif k == "linear":
            y = ins[0] @ p["weight"].astype(np.float64).T
            y = y + p["bias"].astype(np.float64) if "bias" in p else y
            y = np.maximum(y, 0) if a.get("relu") else y
        elif k == "affine":
            y = ins[0] * p["scale"].astype(np.float64) + p["shift"].astype(np.float64)
        elif k == "prelu":
            c = ins[0].shape[-1]
            pre = p.get("pre_shift", np.zeros(c)).astype(np.float64)
            post = p.get("post_shift", np.zeros(c)).astype(np.float64)
            t = ins[0] - pre
            y = np.where(t >= 0, t, p["slope"].astype(np.float64) * t) + post
        elif k == "relu":
            y = np.maximum(ins[0], 0)
        elif k == "hardtanh":
            y = np.clip(ins[0], a["min_val"], a["max_val"])
        elif k == "sigmoid":
            y = 1.0 / (1.0 + np.exp(-ins[0]))
        elif k == "maxpool2d":
            y = _pool(ins[0], op, "max")
        elif k == "avgpool2d":
            y = _pool(ins[0], op, "avg")
        elif k == "global_avgpool":
            y = ins[0].mean(axis=(1, 2))
        elif k == "add":
            y = ins[0] + ins[1]
        elif k == "mul":
            b = ins[1]
            y = ins[0] * (b[:, None, None, :] if ins[0].ndim == 4 and b.ndim == 2 else b)
        elif k == "concat":
            y = np.concatenate(ins, axis=-1)
        elif k == "flatten":
            y = ins[0].reshape(ins[0].shape[0], -1)
        elif k == "softmax":
            e = np.exp(ins[0] - ins[0].max(axis=1, keepdims=True))
            y = e / e.sum(axis=1, keepdims=True)
        elif k == "log_softmax":
            t = ins[0] - ins[0].max(axis=1, keepdims=True)
            y = t - np.log(np.exp(t).sum(axis=1, keepdims=True))
        elif k == "bflatten":
            c = graph.tensors[op.inputs[0]].shape[-1]
            y = pack_last(unpack_last(ins[0], c).reshape(len(ins[0]), -1))
        elif k == "sign":
            xin = ins[0]
            c = xin.shape[-1]
            thr = p.get("threshold", np.zeros(c, np.float32)).astype(np.float64).reshape(-1, c)
            below = [(xin <= t) if a.get("sign_zero", "+1") == "-1" else (xin < t) for t in thr]
            y = pack_last(np.concatenate(below, axis=-1))
        elif k in ("bconv2d", "blinear"):
            cin = a["in_channels"] if k == "bconv2d" else a["in_features"]
            xin = _pm1(ins[0], cin)
            w = p["weight"]
            wpm1 = _pm1(w, cin)
            if k == "bconv2d":
                s = binary_sum_conv(xin, wpm1, a["stride"], a["padding"], a["pad_mode"])
            else:
                s = (xin.astype(np.float64) @ wpm1.astype(np.float64).T).astype(np.int64)
            y = _output_transform(s, op)
        elif k == "bmaxpool2d":
            c = graph.tensors[op.inputs[0]].shape[-1]
            neg = unpack_last(ins[0], c).astype(np.float64)  # 1 = -1
            # max of ±1 = -1 only if all are -1: min over the window of the "-1" indicator, padding ignored
            pooled = -_pool(-neg, op, "max")
            y = pack_last(pooled > 0.5)
        elif k == "bconcat":
            chans = [graph.tensors[v].shape[-1] for v in op.inputs]
            y = pack_last(np.concatenate([unpack_last(v, c) for v, c in zip(ins, chans, strict=True)], axis=-1))
        elif k == "unpack":
            c = graph.tensors[op.inputs[0]].shape[-1]
            y = np.where(unpack_last(ins[0], c), -1.0, 1.0)
        else:
            raise ValueError(f"reference: op {op.name} has unknown kind {k!r}")
        env[op.outputs[0]] = y
    if keep_all:
        return env
    return {name: env[name] for name in graph.outputs}


def bits_of(graph: ir.Graph, name: str, value: np.ndarray) -> np.ndarray:
    """Packed bits tensor -> boolean (..., C) (True = -1)."""
    return unpack_last(value, graph.tensors[name].shape[-1])


def sign_margins(graph: ir.Graph, x_nchw: np.ndarray) -> dict[str, np.ndarray]:
    """Per image of x, the smallest distance |input - threshold| at each sign op (float inputs).

    The engine computes float layers in float32 and this reference in float64; where the two
    disagree on a binary activation, the reason is an input this close to its threshold (a
    rounding tie of the reference). Returns {sign op name: (N,) float64 margins}.
    """
    env = run(graph, x_nchw, keep_all=True)
    out: dict[str, np.ndarray] = {}
    for op in graph.ops:
        if op.kind != "sign":
            continue
        xin = env[op.inputs[0]]
        c = xin.shape[-1]
        thr = op.params.get("threshold", np.zeros(c, np.float32)).astype(np.float64).reshape(-1, c)
        dist = np.min([np.abs(xin - t).reshape(len(xin), -1).min(axis=1) for t in thr], axis=0)
        out[op.name] = dist
    return out
