"""A constant shift before a thresholded sign, folded into the threshold exactly: sign(x + b >= t) -> sign(x >= t').

ABC-Net's activation bases `2 * 1[clip(R + v, 0, 1) >= 0.5] - 1` reach the converter as a sign at 0.5 of
`R + v` (SignThroughHardtanh drops the clip, which does not change a test at 0.5). PyTorch rounds
`R + v` to float32 before comparing, so `x + v >= t` is not `x >= t - v`: the threshold on x is the least
float32 x with fl32(x + v) >= t (for sign(t) = -1, `>`: the greatest x with fl32(x + v) <= t, and the bit
is `x <= t'`). x -> fl32(x + v) is non-decreasing, so that x exists and bisection over the float32 values
(in their integer order) finds it in 32 steps per channel. When t = 0 it is -v (ShiftedSign's exact rule).

`fold_shift(model, sign)` rewires one `act_sign` (one threshold per channel, sign(t) = +1 or -1) that reads
`x + b` / `x - b` (b a per-channel float32 constant, x not broadcast) to read x with the folded threshold;
the add stays for its other readers (or dead-code elimination). It leaves the sign alone where a value is
not finite or not a float32 (PyTorch would round it first) or where the folded threshold is infinite.
"""

from __future__ import annotations

import numpy as np

from xnorinfer.convert.attrs import ActSignAttrs
from xnorinfer.convert.graph import Model, Node, channel_vector
from xnorinfer.convert.patterns import _float_key, _key_float


def _is_float32(v: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(v)) and np.array_equal(v.astype(np.float32).astype(np.float64), v))


def folded_threshold(shift: np.ndarray, threshold: np.ndarray, sign_zero: str) -> np.ndarray | None:
    """Per channel t' (float64 holding float32 values) with step(fl32(x + shift) vs threshold) = step(x vs t')
    for every float32 x: sign_zero "+1": fl32(x + shift) >= threshold <=> x >= t'; "-1": fl32(x + shift) >
    threshold <=> x > t'. None when shift or threshold is not a finite float32 or some t' is infinite."""
    b, t = np.asarray(shift, np.float64).reshape(-1), np.asarray(threshold, np.float64).reshape(-1)
    if sign_zero not in ("+1", "-1") or b.shape != t.shape or not (_is_float32(b) and _is_float32(t)):
        return None
    b32, t32 = b.astype(np.float32), t.astype(np.float32)

    def above(keys: np.ndarray) -> np.ndarray:  # the step's +1 side, non-decreasing in the key
        with np.errstate(over="ignore"):
            y = _key_float(keys) + b32  # float32 + float32: rounded once, as PyTorch does
        return y >= t32 if sign_zero == "+1" else y > t32

    lo = np.full(b.shape, _float_key(np.array([-np.inf]))[0], np.int64)  # above(-inf): False (finite b, t)
    hi = np.full(b.shape, _float_key(np.array([np.inf]))[0], np.int64)  # above(+inf): True
    while np.any(hi - lo > 1):
        mid = lo + (hi - lo) // 2
        up = above(mid)
        hi, lo = np.where(up, mid, hi), np.where(up, lo, mid)
    # hi: the least float32 on the +1 side; lo: the greatest on the -1 side (the `<=` rule's threshold)
    out = _key_float(hi if sign_zero == "+1" else lo).astype(np.float64)
    return out if np.all(np.isfinite(out)) else None


def fold_shift(model: Model, sign: Node) -> bool:
    """Fold the constant shift `sign` reads (x + b, x - b) into its thresholds (module docstring); True if done."""
    if sign.op != "act_sign":
        return False
    a = sign.attrs_as(ActSignAttrs)
    p = model.producer(sign.inputs[0])
    if a.threshold.shape[0] != 1 or p is None or p.op not in ("add", "sub") or len(p.inputs) != 2:
        return False
    pairs = [(p.inputs[0], p.inputs[1])] + ([(p.inputs[1], p.inputs[0])] if p.op == "add" else [])
    for x, c in pairs:
        if model.is_const(x) or model.shapes.get(x) != model.shapes[p.output]:
            continue
        raw = model.const(c)
        b = channel_vector(raw, model.shapes[x])
        if b is None or not _is_float32(np.asarray(raw, np.float64)):
            continue
        t = folded_threshold(b if p.op == "add" else -b, a.threshold[0], a.sign_zero)
        if t is None:
            return False
        sign.attrs = ActSignAttrs(t.reshape(1, -1), a.sign_zero, f"{a.ste}, its shift folded into the threshold")
        sign.inputs = [x]
        return True
    return False
