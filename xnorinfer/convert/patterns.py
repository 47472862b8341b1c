"""Recognition: small named transformations over the internal `Model`, FINN/QONNX style.

Each transformation has a name and ``apply(model) -> (model, changed)``; `run_to_fixed_point`
repeats a list of them until none changes anything. They are grouped in three phases:

1. ACTIVATIONS: whatever STE the model used, the eval graph's binarization becomes one
   ``act_sign`` node (per-channel threshold(s), sign(0) convention).
2. BINARY_LAYERS: conv/linear with a binarized input and per-channel ±alpha weights become
   ``bconv2d``/``blinear``; BatchNorm, biases and scales after them are absorbed into their float
   epilogue chain; max-pools are moved past monotone ops; a sign after the chain becomes the
   integer threshold output (fold.py).
3. FLOAT_OPS: what is left becomes the IR's float ops (affine, RPReLU, bmaxpool on bits, ...).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

import numpy as np

from xnorinfer.convert import fold
from xnorinfer.convert.attrs import (
    ActSignAttrs,
    AffineAttrs,
    BatchNormAttrs,
    BatchNormStage,
    BinaryConvAttrs,
    BinaryLayerAttrs,
    BitPlaneAttrs,
    ChannelStage,
    CompareAttrs,
    ConvAttrs,
    HardtanhAttrs,
    LinearAttrs,
    NoAttrs,
    PadAttrs,
    PoolAttrs,
    PReLUAttrs,
    SignFold,
    SignZero,
    Stage,
    WeightPlaneAttrs,
)
from xnorinfer.convert.conv1d_sign import SignBeforeUnsqueeze
from xnorinfer.convert.graph import ConversionError, Model, Node, Rewrite, channel_vector, uniform_value
from xnorinfer.convert.zero_one_steps import StepsIntoLayer

BITS_OPS = {"act_sign", "bmaxpool2d", "bconcat", "bitplane"}


class Transformation(Protocol):
    name: str

    def apply(self, model: Model) -> tuple[Model, bool]: ...


def run_to_fixed_point(model: Model, transforms: Sequence[Transformation], max_rounds: int = 100) -> Model:
    for _ in range(max_rounds):
        changed_any = False
        for t in transforms:
            model, changed = t.apply(model)
            changed_any |= changed
            model.remove_dead()
        if not changed_any:
            return model
    raise ConversionError("recognition did not reach a fixed point")  # pragma: no cover


def is_bits(model: Model, value: str) -> bool:
    p = model.producer(value)
    if p is None:
        return False
    if p.op in BITS_OPS:
        return True
    if p.op == "reshape":  # flatten / view of bits stays bits (lowered to bflatten)
        return _bits_view(model, p.inputs[0], value) and is_bits(model, p.inputs[0])
    return _binary_with_sign(p)


def _bits_view(model: Model, src: str, out: str) -> bool:
    """A reshape that lowering keeps in bits (lower._reshape): the same dims, a flatten of (C, H, W), or (N, C)
    standing for (N, C, 1, 1). Another (conv1d's (N, C, L) -> (N, C, 1, L)) unpacks, so its reader stays float."""
    a, b = tuple(model.shapes[src]), tuple(model.shapes[out])
    return a[1:] == b[1:] or (len(a), len(b)) == (4, 2) or (len(a) == 2 and len(b) == 4 and b[2:] == (1, 1))


def _binary_with_sign(node: Node) -> bool:
    """Is `node` a bconv2d/blinear whose output sign is folded in (it outputs bits)?"""
    return isinstance(node.attrs, BinaryLayerAttrs) and node.attrs.sign is not None


def _scalar(model: Model, value: str) -> float | None:
    """The value of a constant whose elements are all equal (`1`, `ones_like(x)`, `full_like(x, -1)`)."""
    return uniform_value(model.const(value))


def _per_channel(model: Model, value: str, like: str) -> np.ndarray | None:
    return channel_vector(model.const(value), model.shapes[like])


def _single_consumer(model: Model, value: str) -> Node | None:
    users = model.consumers(value)
    if len(users) == 1 and value not in model.outputs and users[0].inputs.count(value) == 1:
        return users[0]
    return None


_Rewrite = Rewrite  # (the base lives in graph.py, where the rewrites in other files find it)


def _replace(model: Model, old: Node, new: Node) -> None:
    """Put `new` in place of `old`, computing the same output value."""
    new.output, new.path, new.origin = old.output, new.path or old.path, old.origin
    new.where = new.where or old.where
    model.nodes[model.nodes.index(old)] = new


def _act_sign(x: str, model: Model, threshold: np.ndarray, sign_zero: SignZero, ste: str, path: str) -> Node:
    c = model.shapes[x][1]
    thr = np.broadcast_to(np.asarray(threshold, dtype=np.float64), (c,)).reshape(1, c).copy()
    return Node("act_sign", [x], "", ActSignAttrs(thr, sign_zero, ste), path)


# =========================================================================== phase 1: activations


class TorchSignToActSign(_Rewrite):
    """torch.sign(x) (also what a custom autograd.Function's forward traces to) -> act_sign, sign(0) = 0."""

    name = "torch_sign_to_act_sign"

    def rewrite(self, model: Model, node: Node) -> bool:
        if node.op != "sign" or len(model.shapes[node.output]) < 2:
            return False
        _replace(model, node, _act_sign(node.inputs[0], model, np.zeros(1), "0", "torch.sign", node.path))
        return True


_CMP_ZERO: dict[tuple[str, float], SignZero] = {  # (compare, value where true) -> sign(0 at threshold)
    ("ge", 1.0): "+1",
    ("gt", 1.0): "-1",
    ("lt", -1.0): "+1",
    ("le", -1.0): "-1",
}


def _compare_sign(model: Model, cond: str, where_true: float, out: str) -> tuple[str, np.ndarray, SignZero] | None:
    """(x, threshold, sign_zero) if `cond` = cmp(x, t) selects `where_true` for a sign-like output `out`."""
    c = model.producer(cond)
    if c is None or c.op not in ("ge", "gt", "le", "lt") or (c.op, where_true) not in _CMP_ZERO:
        return None
    x, t = c.inputs
    thr = _per_channel(model, t, x)
    if thr is None or model.is_const(x) or model.shapes[x] != model.shapes[out]:
        return None  # (the sign must have x's shape: constants of a larger shape would broadcast it)
    return x, thr, _CMP_ZERO[(c.op, where_true)]


class WhereToSign(_Rewrite):
    """where(x >= t, 1, -1) (and >, <, <= variants) -> act_sign."""

    name = "where_to_sign"

    def rewrite(self, model: Model, node: Node) -> bool:
        if node.op != "where":
            return False
        cond, a, b = node.inputs
        va, vb = _scalar(model, a), _scalar(model, b)
        if va is None or vb is None or {va, vb} != {1.0, -1.0}:
            return False
        found = _compare_sign(model, cond, va, node.output)
        if found is None:
            return False
        x, thr, zero = found
        _replace(model, node, _act_sign(x, model, thr, zero, f"where(cmp, {va:+g}, {vb:+g})", node.path))
        return True


class CompareAffineToSign(_Rewrite):
    """(x >= t).float() * 2 - 1 -> act_sign."""

    name = "compare_affine_to_sign"

    def rewrite(self, model: Model, node: Node) -> bool:
        if node.op not in ("sub", "add"):
            return False
        m, one = node.inputs
        k = _scalar(model, one)
        if k is None or (node.op == "sub" and k != 1.0) or (node.op == "add" and k != -1.0):
            return False
        mul = model.producer(m)
        if mul is None or mul.op != "mul":
            return False
        tf, two = mul.inputs if _scalar(model, mul.inputs[1]) is not None else mul.inputs[::-1]
        if _scalar(model, two) != 2.0:
            return False
        cast = model.producer(tf)
        if cast is None or cast.op != "to_float":
            return False
        found = _compare_sign(model, cast.inputs[0], 1.0, node.output)
        if found is None:
            return False
        x, thr, zero = found
        _replace(model, node, _act_sign(x, model, thr, zero, "cmp.float() * 2 - 1", node.path))
        return True


_COMPLEMENT: dict[tuple[str, str], SignZero] = {  # (cmp giving +1, cmp giving -1) -> sign(0 at threshold)
    ("ge", "lt"): "+1",
    ("gt", "le"): "-1",
}


def _compare_of(model: Model, value: str) -> Node | None:
    """The comparison behind `value` = cmp(x, t).float(), or None."""
    cast = model.producer(value)
    if cast is None or cast.op != "to_float":
        return None
    c = model.producer(cast.inputs[0])
    return c if c is not None and c.op in ("ge", "gt", "le", "lt") else None


class CompareDifferenceToSign(_Rewrite):
    """(x >= t).float() - (x < t).float() -> act_sign, sign(t) = +1 (Brevitas bnn_pynq `binary_sign`).

    Also (x > t) - (x <= t), sign(t) = -1. Only complementary pairs: (x >= t) - (x <= t) is 0 at t.
    """

    name = "compare_difference_to_sign"

    def rewrite(self, model: Model, node: Node) -> bool:
        if node.op != "sub" or len(node.inputs) != 2:
            return False
        pos, neg = (_compare_of(model, v) for v in node.inputs)
        if pos is None or neg is None or (pos.op, neg.op) not in _COMPLEMENT or pos.inputs[0] != neg.inputs[0]:
            return False
        x = pos.inputs[0]
        if model.is_const(x) or model.shapes[x] != model.shapes[node.output]:
            return False
        t_pos, t_neg = _per_channel(model, pos.inputs[1], x), _per_channel(model, neg.inputs[1], x)
        if t_pos is None or t_neg is None or not np.array_equal(t_pos, t_neg):
            return False
        ste = f"({pos.op}(x, t).float() - {neg.op}(x, t).float())"
        _replace(model, node, _act_sign(x, model, t_pos, _COMPLEMENT[(pos.op, neg.op)], ste, node.path))
        return True


def _complementary(model: Model, a: Node, b: Node) -> bool:
    """Are comparisons a and b each other's negation (x >= t and x < t, x > t and x <= t, same x and t)?"""
    if {a.op, b.op} not in ({"ge", "lt"}, {"gt", "le"}) or a.inputs[0] != b.inputs[0]:
        return False
    ta, tb = (_per_channel(model, c.inputs[1], c.inputs[0]) for c in (a, b))
    return ta is not None and tb is not None and np.array_equal(ta, tb)


class ComplementaryWheres(_Rewrite):
    """where(x < t, vb, where(x >= t, va, y)) -> where(x >= t, va, vb): the two masks cover every element,
    so y is never read (in-place masked STEs: `out[x >= 0] = 1; out[x < 0] = -1` export this way)."""

    name = "complementary_wheres"

    def rewrite(self, model: Model, node: Node) -> bool:
        if node.op != "where":
            return False
        cond_b, value_b, rest = node.inputs
        inner = model.producer(rest)
        if inner is None or inner.op != "where" or _single_consumer(model, rest) is not node:
            return False
        cond_a, value_a, _ = inner.inputs
        ca, cb = model.producer(cond_a), model.producer(cond_b)
        if ca is None or cb is None or not _complementary(model, ca, cb):
            return False
        if model.shapes[inner.output] != model.shapes[node.output]:
            return False
        node.inputs = [cond_a, value_a, value_b]
        return True


class SignZeroReplaced(_Rewrite):
    """where(sign(x) == 0, v, sign(x)) with v = +1 or -1 -> act_sign with sign(0) = v (bitorch's `sign`).

    The two torch.sign calls may be separate nodes of the same x (same threshold): both are accepted.
    """

    name = "sign_zero_replaced"

    def rewrite(self, model: Model, node: Node) -> bool:
        if node.op != "where":
            return False
        cond, a, b = node.inputs
        v = _scalar(model, a)
        eq, s = model.producer(cond), model.producer(b)
        if v not in (1.0, -1.0) or eq is None or eq.op != "eq" or s is None or s.op != "act_sign":
            return False
        compared = [u for u in eq.inputs if not model.is_const(u)]
        zeros = [u for u in eq.inputs if model.is_const(u)]
        if len(compared) != 1 or len(zeros) != 1 or _scalar(model, zeros[0]) != 0.0:
            return False
        s2 = model.producer(compared[0])
        sign = s.attrs_as(ActSignAttrs)
        if s2 is None or s2.op != "act_sign" or s2.inputs != s.inputs or sign.sign_zero != "0":
            return False
        sign2 = s2.attrs_as(ActSignAttrs)
        if sign2.sign_zero != "0" or not np.array_equal(sign2.threshold, sign.threshold):
            return False
        if model.shapes[b] != model.shapes[node.output] or sign.threshold.shape[0] != 1:
            return False
        zero: SignZero = "+1" if v == 1.0 else "-1"
        new = _act_sign(s.inputs[0], model, sign.threshold[0], zero, f"where(sign(x) == 0, {v:+g}, sign(x))", node.path)
        _replace(model, node, new)
        return True


class MulByOne(_Rewrite):
    """x * 1, 1 * x, x / 1 -> x (exact in IEEE): BinaryNet.pytorch's `x.sign().mul(1)`, `.sign() * 1.0`."""

    name = "mul_by_one"

    def rewrite(self, model: Model, node: Node) -> bool:
        if node.op not in ("mul", "div") or len(node.inputs) != 2:
            return False
        pairs = [(node.inputs[0], node.inputs[1])]
        if node.op == "mul":
            pairs.append((node.inputs[1], node.inputs[0]))
        for x, one in pairs:
            if not model.is_const(x) and _scalar(model, one) == 1.0 and model.shapes[x] == model.shapes[node.output]:
                model.replace_uses(node.output, x)
                return True
        return False


class DetachSTE(_Rewrite):
    """(sign(x) - p).detach() + p -> sign(x): the forward value of the detach trick."""

    name = "detach_ste"

    def rewrite(self, model: Model, node: Node) -> bool:
        if node.op != "add":
            return False
        for sub_v, p in (node.inputs, node.inputs[::-1]):
            sub = model.producer(sub_v)
            if sub is None or sub.op != "sub" or sub.inputs[1] != p:
                continue
            a = model.producer(sub.inputs[0])
            if a is None or a.op != "act_sign":
                continue
            model.replace_uses(node.output, a.output)
            sign = a.attrs_as(ActSignAttrs)
            a.attrs = replace(sign, ste=f"({sign.ste} - p).detach() + p")
            a.origin = node.origin  # the torch value of the whole expression equals the sign (up to rounding)
            return True
        return False


class ShiftedSign(_Rewrite):
    """sign(x - b) / sign(x + b) with a per-channel constant b -> act_sign with threshold b (RSign).

    Exact: in IEEE arithmetic x - b >= 0 <=> x >= b and x + b >= 0 <=> x >= -b.
    """

    name = "shifted_sign"

    def rewrite(self, model: Model, node: Node) -> bool:
        if node.op != "act_sign":
            return False
        sign = node.attrs_as(ActSignAttrs)
        if np.any(sign.threshold != 0) or sign.threshold.shape[0] != 1:
            return False
        p = model.producer(node.inputs[0])
        if p is None or p.op not in ("add", "sub") or model.is_const(p.inputs[0]):
            return False
        b = _per_channel(model, p.inputs[1], p.inputs[0])
        if b is None:
            return False
        node.attrs = ActSignAttrs(
            (b if p.op == "sub" else -b).reshape(1, -1), sign.sign_zero, f"{sign.ste} with a learnable shift"
        )
        node.inputs = [p.inputs[0]]
        return True


class SignOfSign(_Rewrite):
    """sign(sign(x) + c) for |c| < 1 -> one sign whose sign(0) follows c (e.g. c = 0.1 gives +1)."""

    name = "sign_of_sign"

    def rewrite(self, model: Model, node: Node) -> bool:
        if node.op != "act_sign" or node.attrs_as(ActSignAttrs).threshold.shape[0] != 1:
            return False
        inner = model.producer(node.inputs[0])
        if inner is None or inner.op != "act_sign" or inner.attrs_as(ActSignAttrs).threshold.shape[0] != 1:
            return False
        outer_sign, inner_sign = node.attrs_as(ActSignAttrs), inner.attrs_as(ActSignAttrs)
        t1 = outer_sign.threshold
        if not np.all(np.abs(t1) < 1):
            return False
        zero: SignZero
        if inner_sign.sign_zero != "0":
            zero = inner_sign.sign_zero
        elif np.all(t1 < 0):
            zero = "+1"
        elif np.all(t1 > 0):
            zero = "-1"
        elif np.all(t1 == 0):
            zero = outer_sign.sign_zero
        else:
            return False
        new = _act_sign(
            inner.inputs[0],
            model,
            inner_sign.threshold[0],
            zero,
            f"sign(sign(x) {-float(t1.reshape(-1)[0]):+g})",
            node.path,
        )
        _replace(model, node, new)
        return True


def _plus_minus_one(model: Model, value: str) -> bool:
    """Is `value` a ±1 tensor: a sign, or a max-pool / reshape / channel concat of ±1 tensors?"""
    p = model.producer(value)
    if p is None:
        return False
    if p.op == "act_sign":
        return True
    if p.op in ("maxpool2d", "reshape", "concat"):
        return all(_plus_minus_one(model, v) for v in p.inputs)
    return False


class SignOfBinary(_Rewrite):
    """sign(x - t) of a ±1 tensor x, |t| < 1 -> x (BinarizeLinear re-binarizing an input that is already ±1).

    Exact: ±1 - t keeps the sign of ±1 for |t| < 1. A sign directly of a sign is SignOfSign's (torch.sign's 0).
    """

    name = "sign_of_binary"

    def rewrite(self, model: Model, node: Node) -> bool:
        if node.op != "act_sign":
            return False
        t = node.attrs_as(ActSignAttrs).threshold
        if t.shape[0] != 1 or not np.all(np.abs(t) < 1):
            return False
        p = model.producer(node.inputs[0])
        if p is None or p.op == "act_sign" or not _plus_minus_one(model, node.inputs[0]):
            return False
        model.replace_uses(node.output, node.inputs[0])
        return True


class SignThroughHardtanh(_Rewrite):
    """sign(hardtanh(x) - t) = sign(x - t) when min < t < max (BinaryNet's htanh before sign)."""

    name = "sign_through_hardtanh"

    def rewrite(self, model: Model, node: Node) -> bool:
        if node.op != "act_sign":
            return False
        p = model.producer(node.inputs[0])
        if p is None or p.op != "hardtanh":
            return False
        t, clip = node.attrs_as(ActSignAttrs).threshold, p.attrs_as(HardtanhAttrs)
        if not (np.all(clip.min_val < t) and np.all(t < clip.max_val)):
            return False
        node.inputs = [p.inputs[0]]
        return True


_FLOAT32_MAX = float(np.finfo(np.float32).max)


class ClampFromWhere(_Rewrite):
    """where(x > c, c, x) -> hardtanh(x, max=c); where(x < c, c, x) -> hardtanh(x, min=c) (also >=, <=, and
    where(x < c, x, c) forms; c a scalar). Brevitas clamps this way before its binary quantizer, so the
    sign can then look through the clamp (SignThroughHardtanh) and fold into the layer before it."""

    name = "clamp_from_where"

    def rewrite(self, model: Model, node: Node) -> bool:
        if node.op != "where":
            return False
        cond, a, b = node.inputs
        c = model.producer(cond)
        if c is None or c.op not in ("gt", "ge", "lt", "le") or model.is_const(c.inputs[0]):
            return False
        x, t = c.inputs
        bound = _scalar(model, t)
        if bound is None or model.shapes[x] != model.shapes[node.output]:
            return False
        if _scalar(model, a) == bound and b == x:  # the compare picks the bound
            upper = c.op in ("gt", "ge")
        elif a == x and _scalar(model, b) == bound:  # the compare keeps x
            upper = c.op in ("lt", "le")
        else:
            return False
        lo, hi = (-_FLOAT32_MAX, bound) if upper else (bound, _FLOAT32_MAX)
        _replace(model, node, Node("hardtanh", [x], "", HardtanhAttrs(lo, hi), node.path))
        return True


class PReLUFromWhere(_Rewrite):
    """where(x > 0, x, w * x) (PReLU as decomposed by torch.export) -> prelu."""

    name = "prelu_from_where"

    def rewrite(self, model: Model, node: Node) -> bool:
        if node.op != "where":
            return False
        cond, a, b = node.inputs
        c, m = model.producer(cond), model.producer(b)
        if (
            c is None
            or c.op != "gt"
            or c.inputs[0] != a
            or _scalar(model, c.inputs[1]) != 0.0
            or m is None
            or m.op != "mul"
            or a not in m.inputs
        ):
            return False
        w = m.inputs[0] if m.inputs[1] == a else m.inputs[1]
        slope = _per_channel(model, w, a)
        if slope is None:
            return False
        _replace(model, node, Node("prelu", [a], "", PReLUAttrs(slope), node.path))
        return True


class DecoupledSigns(_Rewrite):
    """cat([sign(x - t1), sign(x - t2), ...], dim=1) of one tensor -> one act_sign with J thresholds."""

    name = "decoupled_signs"

    def rewrite(self, model: Model, node: Node) -> bool:
        if node.op != "concat" or len(node.inputs) < 2:
            return False
        prods = [model.producer(v) for v in node.inputs]
        if any(p is None or p.op != "act_sign" for p in prods):
            return False
        xs = {p.inputs[0] for p in prods}  # type: ignore[union-attr]
        signs = [p.attrs_as(ActSignAttrs) for p in prods]  # type: ignore[union-attr]
        zeros = {sign.sign_zero for sign in signs}
        if len(xs) != 1 or len(zeros) != 1:
            return False
        thr = np.concatenate([sign.threshold for sign in signs], axis=0)
        new = Node(
            "act_sign",
            [xs.pop()],
            "",
            ActSignAttrs(thr, zeros.pop(), f"decoupled: {thr.shape[0]} shifted signs"),
            node.path,
        )
        _replace(model, node, new)
        return True


# --------------------------------------------------------------------------- {0, 1} activations


def _non_negative(model: Model, value: str, depth: int = 0) -> bool:
    """Is `value` provably >= 0 (or NaN) everywhere: relu / clamp(min >= 0) / abs / sigmoid output, ..."""
    c = model.const(value)
    if c is not None:
        return bool(np.all(np.asarray(c) >= 0))
    p = model.producer(value)
    if p is None or depth > 64:
        return False
    if p.op in ("relu", "sigmoid", "abs", "to_float", "compare"):
        return True
    if p.op == "hardtanh":
        return p.attrs_as(HardtanhAttrs).min_val >= 0
    if p.op == "affine":
        return _zero_one_bits(model, value) is not None
    if p.op in ("maxpool2d", "avgpool2d", "global_avgpool", "reshape", "concat", "add", "mul"):
        return all(_non_negative(model, v, depth + 1) for v in p.inputs)
    return False


def _zero_one_bits(model: Model, value: str) -> str | None:
    """The bits s when `value` = (1 + s) / 2 of a ±1 tensor s (a {0, 1} activation), else None."""
    p = model.producer(value)
    if p is None or p.op != "affine":
        return None
    if not (is_bits(model, p.inputs[0]) or _plus_minus_one(model, p.inputs[0])):
        return None
    a = p.attrs_as(AffineAttrs)
    if np.all(np.asarray(a.scale) == 0.5) and np.all(np.asarray(a.shift) == 0.5):
        return p.inputs[0]
    return None


def _scaled_bits(model: Model, value: str) -> tuple[str, float] | None:
    """(bits s, c) when `value` = c * s for a ±1 tensor s and one nonzero constant c, else None."""
    p = model.producer(value)
    if p is None:
        return None
    if p.op == "affine":
        a = p.attrs_as(AffineAttrs)
        bits, scale, shift = p.inputs[0], np.asarray(a.scale, np.float32), np.asarray(a.shift)
    elif p.op == "mul" and len(p.inputs) == 2:
        consts = [model.const(v) for v in p.inputs]
        if (consts[0] is None) == (consts[1] is None):
            return None
        bits = p.inputs[1] if consts[0] is not None else p.inputs[0]
        scale, shift = np.asarray(consts[0] if consts[0] is not None else consts[1], np.float32), np.zeros(1)
    else:
        return None
    if model.shapes[bits] != model.shapes[value] or not is_bits(model, bits) or scale.size == 0:
        return None
    if np.any(shift != 0) or np.any(scale != scale.flat[0]):
        return None
    return (bits, float(scale.flat[0])) if scale.flat[0] != 0 else None


def _zero_one_affine(model: Model, bits: str, out: str, path: str, origin: str) -> Node:
    half = np.full(model.shapes[out][1], 0.5)
    return Node("affine", [bits], out, AffineAttrs(half, half.copy()), path, origin)


class SignOfNonNegative(_Rewrite):
    """torch.sign(x) of a provably non-negative x -> (1 + s) / 2 with s = act_sign(x, sign(0) = -1).

    torch.sign of x >= 0 has exactly two levels {0, 1} (the `bnn` library's sign(relu(bn(x))),
    Real-to-Binary / DoReFa W1A1): bit -1 where x <= 0. For relu(y) and hardtanh(y, 0, a > 0) the
    sign reads y itself (relu(y) > 0 <=> y > 0), so that it can fold into a binary layer before it.
    A convolution of the {0, 1} tensor becomes a binary convolution of s (BinaryWeights).
    """

    name = "sign_of_non_negative"

    def rewrite(self, model: Model, node: Node) -> bool:
        if node.op != "act_sign":
            return False
        sign = node.attrs_as(ActSignAttrs)
        if sign.sign_zero != "0" or sign.threshold.shape[0] != 1 or np.any(sign.threshold != 0):
            return False
        x = node.inputs[0]
        if not _non_negative(model, x):
            return False
        p = model.producer(x)
        if p is not None and (
            p.op == "relu"
            or (p.op == "hardtanh" and p.attrs_as(HardtanhAttrs).min_val == 0 and p.attrs_as(HardtanhAttrs).max_val > 0)
        ):
            x = p.inputs[0]
        bits = model.fresh(node.output)
        model.shapes[bits] = model.shapes[node.output]
        attrs = ActSignAttrs(np.zeros_like(sign.threshold), "-1", f"{sign.ste} of a non-negative tensor: {{0, 1}}")
        s = Node("act_sign", [x], bits, attrs, node.path, node.origin, node.where)
        model.metadata.setdefault("zero_one_signs", []).append(node.origin)
        i = model.nodes.index(node)
        model.nodes[i : i + 1] = [s, _zero_one_affine(model, bits, node.output, node.path, node.origin)]
        return True


class ZeroOneThrough(_Rewrite):
    """maxpool / reshape of (1 + s) / 2 -> (1 + maxpool / reshape of s) / 2 (exact: an increasing map)."""

    name = "zero_one_through"

    def rewrite(self, model: Model, node: Node) -> bool:
        if node.op not in ("maxpool2d", "reshape"):
            return False
        bits = _zero_one_bits(model, node.inputs[0])
        if bits is None:
            return False
        mid = model.fresh(node.output)
        model.shapes[mid] = model.shapes[node.output]
        inner = Node(node.op, [bits, *node.inputs[1:]], mid, node.attrs, node.path, "", node.where)
        i = model.nodes.index(node)
        model.nodes[i : i + 1] = [inner, _zero_one_affine(model, mid, node.output, node.path, node.origin)]
        return True


def _kbit_levels(model: Model, value: str) -> tuple[str, int, float] | None:
    """(q, k, c) when `value` = q * c with q = round(z) in {0 .. 2^k - 1}, k >= 2 (a k-bit uint activation).

    DoReFa: round(clamp(x, 0, 1) * n) / n; Brevitas-like: round(clamp(x * s, 0, n)) / s, and Brevitas's torch
    form clamp(round(x / s), 0, n) * s, n = 2^k - 1.
    """
    p = model.producer(value)
    if p is None or p.op not in ("div", "mul") or len(p.inputs) != 2:
        return None
    d = _scalar(model, p.inputs[1])
    r = model.producer(p.inputs[0])
    if d is None or d == 0 or r is None:
        return None
    n: float | None = None
    if r.op == "hardtanh":  # Brevitas's torch form: clamp(round(x / s), 0, n) * s (q: the clamp's output)
        h, inner = r.attrs_as(HardtanhAttrs), model.producer(r.inputs[0])
        n = h.max_val if h.min_val == 0 and inner is not None and inner.op == "round" else None
        if n is None or n < 3 or n > 255 or n != int(n) or (int(n) + 1) & int(n):
            return None
        return r.output, int(n).bit_length(), float(1.0 / np.float64(d)) if p.op == "div" else float(d)
    if r.op != "round":
        return None
    z = model.producer(r.inputs[0])
    if z is not None and z.op == "hardtanh":  # clamp(y, 0, n)
        h = z.attrs_as(HardtanhAttrs)
        n = h.max_val if h.min_val == 0 else None
    elif z is not None and z.op == "mul":  # clamp(x, 0, 1) * n
        h_node = model.producer(z.inputs[0])
        m = _scalar(model, z.inputs[1])
        if h_node is not None and h_node.op == "hardtanh" and m is not None:
            h = h_node.attrs_as(HardtanhAttrs)
            n = m if (h.min_val, h.max_val) == (0, 1) else None
    if n is None or n < 3 or n > 255 or n != int(n) or (int(n) + 1) & int(n):
        return None
    return r.output, int(n).bit_length(), float(1.0 / np.float64(d)) if p.op == "div" else float(d)


def _binary_weight_rows(w: np.ndarray) -> np.ndarray | None:
    """alpha per output channel (float64) when every row of `w` is ±alpha (up to float32 rounding), else None."""
    mag = np.abs(w.reshape(w.shape[0], -1))
    if np.all(mag == mag[:, :1]) and np.all(mag[:, 0] != 0):
        return mag[:, 0].astype(np.float64)
    if _one_magnitude_up_to_rounding(mag):
        return mag.astype(np.float64).mean(axis=1)
    return None


@dataclass
class _IntegerSum:
    """An exact integer sum in [-bound, bound] made by BitSerialPlanes (the add of its plane convs), stored as
    flip[c] * the true sum: the convs' weight rows and the scale after the sum are negated where flip is -1."""

    bound: int
    weights: list[str]
    scale: str
    flip: np.ndarray
    folded: bool = False


_CHAIN_OPS = ("mul", "div", "add", "sub", "hardtanh", "relu", "batch_norm")


def _quantizer_chain(model: Model, z: str) -> tuple[str, _IntegerSum, list[tuple[Node, str]]] | None:
    """(s, its sum, [(node, input read)]) when `z` = f(s) through per-channel float ops of an integer sum s."""
    sums: dict[str, _IntegerSum] = model.metadata.get("_integer_sums", {})
    chain: list[tuple[Node, str]] = []
    v = z
    for _ in range(16):
        if v in sums:
            return v, sums[v], chain[::-1]
        p = model.producer(v)
        if p is None or p.op not in _CHAIN_OPS:
            return None
        if p.op in ("hardtanh", "relu"):
            x = p.inputs[0]
        elif p.op == "batch_norm":
            channels = model.shapes[p.inputs[0]][1]
            if any(model.const(c) is None or np.asarray(model.const(c)).size != channels for c in p.inputs[1:]):
                return None
            x = p.inputs[0]
        else:
            if len(p.inputs) != 2:
                return None
            consts = [model.const(i) is not None for i in p.inputs]
            if consts == [False, True]:
                x = p.inputs[0]
            elif consts == [True, False] and p.op in ("add", "mul"):
                x = p.inputs[1]
            else:
                return None
            other = p.inputs[1] if x == p.inputs[0] else p.inputs[0]
            if _per_channel(model, other, x) is None:
                return None
        chain.append((p, x))
        v = x
    return None


def _run_chain(model: Model, chain: list[tuple[Node, str]], x: object) -> object:
    """The float32 ops of `chain` on x (L, C[, 1, 1]) as eager PyTorch evaluates them (converter side only)."""
    import torch
    import torch.nn.functional as F

    def vec(value: str, like: str) -> torch.Tensor:
        c = _per_channel(model, value, like)
        assert c is not None
        t = torch.from_numpy(np.asarray(c, np.float32).reshape(-1).copy())
        return t.reshape((1, -1) + (1,) * (x.dim() - 2)) if t.numel() > 1 else t.reshape(())

    y = x
    for node, src in chain:
        if node.op == "hardtanh":
            h = node.attrs_as(HardtanhAttrs)
            y = F.hardtanh(y, h.min_val, h.max_val)
        elif node.op == "relu":
            y = torch.relu(y)
        elif node.op == "batch_norm":
            w, b, mean, var = (
                torch.from_numpy(np.asarray(model.const(i), np.float32).reshape(-1).copy()) for i in node.inputs[1:]
            )
            y = F.batch_norm(y, mean, var, w, b, False, 0.0, node.attrs_as(BatchNormAttrs).eps)
        else:
            first = src == node.inputs[0]
            c = vec(node.inputs[1] if first else node.inputs[0], src)
            a, b = (y, c) if first else (c, y)
            y = {"mul": torch.mul, "div": torch.div, "add": torch.add, "sub": torch.sub}[node.op](a, b)
    return y


def _increasing_chain(model: Model, z: str) -> tuple[str, list[tuple[Node, str]]] | None:
    """(x, chain) when `z` = f(x) through float ops that are non-decreasing in float32 arithmetic: hardtanh,
    relu, + / - a constant, * / / a positive constant (per channel); x is the first value no such op made."""
    chain: list[tuple[Node, str]] = []
    v = z
    for _ in range(16):
        p = model.producer(v)
        if p is None or p.op not in ("hardtanh", "relu", "mul", "div", "add", "sub"):
            break
        if p.op in ("hardtanh", "relu"):
            x = p.inputs[0]
        else:
            if len(p.inputs) != 2:
                break
            consts = [model.const(i) is not None for i in p.inputs]
            if consts == [False, True]:
                x, other = p.inputs
            elif consts == [True, False] and p.op in ("add", "mul"):
                other, x = p.inputs
            else:
                break
            c = _per_channel(model, other, x)
            if c is None or (p.op in ("mul", "div") and not np.all(c > 0)) or not np.all(np.isfinite(c)):
                break
        chain.append((p, x))
        v = x
    return (v, chain[::-1]) if chain else None


def _float_key(x: np.ndarray) -> np.ndarray:
    """float32 -> int64 keys in the same order (-0.0 just below +0.0)."""
    b = x.astype(np.float32).view(np.int32).astype(np.int64)
    return np.where(b < 0, -(b & 0x7FFFFFFF) - 1, b)


def _key_float(k: np.ndarray) -> np.ndarray:
    b = np.where(k < 0, (-(k + 1)) | 0x80000000, k).astype(np.int64)
    return (b & 0xFFFFFFFF).astype(np.uint32).view(np.float32)


def _rounded(y: object, post: tuple[float, float] | None) -> object:
    """torch.round(y), then the clamp that follows it in Brevitas's torch form (post: (min, max)), if any."""
    import torch
    import torch.nn.functional as F

    q = torch.round(y)
    return q if post is None else F.hardtanh(q, post[0], post[1])


def _fold_float_quantizer(
    model: Model, z: str, k: int, post: tuple[float, float] | None = None
) -> tuple[str, np.ndarray] | None:
    """(x, float32 thresholds (n, C)) with round(f(x)) = #{m : x >= thresholds[m-1]} for every float32 x, when f
    is non-decreasing (_increasing_chain): T_m = the least float32 x with round(f(x)) >= m, found by bisection
    on the ordered float32 values, f evaluated as eager PyTorch does (the engine's hardtanh, affine and round
    give the same float32 values). NaN passes no threshold, as NaN through the float chain gives q = 0."""
    import torch

    found = _increasing_chain(model, z)
    if found is None:
        return None
    x, chain = found
    shape = model.shapes[x]
    if len(shape) not in (2, 4):
        return None
    n, channels = (1 << k) - 1, shape[1]
    lo = np.full((n, channels), _float_key(np.array([-np.inf]))[0], np.int64)  # f(lo) < m unless always >= m
    hi = np.full((n, channels), _float_key(np.array([np.inf]))[0], np.int64)
    level = np.arange(1, n + 1)[:, None]

    def q_at(keys: np.ndarray) -> np.ndarray:
        v = torch.from_numpy(_key_float(keys).reshape(n, channels).copy())
        v = v.reshape((n, channels) + (1,) * (len(shape) - 2))
        with torch.no_grad():
            return _rounded(_run_chain(model, chain, v), post).reshape(n, channels).double().numpy()

    if np.any(np.isnan(q_at(lo))) or np.any(np.isnan(q_at(hi))):
        return None
    always = q_at(lo) >= level
    never = q_at(hi) < level
    while np.any(hi - lo > 1):  # invariant: q(lo) < m <= q(hi) where neither always nor never
        mid = lo + (hi - lo) // 2
        up = q_at(mid) >= level
        hi, lo = np.where(up, mid, hi), np.where(up, lo, mid)
    t = _key_float(hi).astype(np.float64)
    if np.any(never):  # x >= +inf would count the level for x = +inf: keep the float chain
        return None
    t = np.where(always, -np.inf, t)
    if np.any(np.diff(t, axis=0) < 0):
        return None
    return x, t


def _fold_quantizer(model: Model, q: str, k: int) -> tuple[str, np.ndarray] | None:
    """(s, thresholds (n, C)) with q = #{m : s >= thresholds[m-1]} for every integer s of its range, when the
    k-bit q = round(f(s)) of an exact integer sum s (BitSerialPlanes of the layer before): f is evaluated in
    float32 at every integer s, as eager PyTorch would; q must be monotone per channel. A channel where q
    decreases is flipped (its plane convs' weight rows and its scale negated) unless another quantizer already
    read this sum. None: not such a chain, or not foldable (the float chain stays)."""
    import torch

    r = model.producer(q)
    post: tuple[float, float] | None = None
    if r is not None and r.op == "hardtanh":  # clamp(round(...), 0, n): the clamp after the round
        h = r.attrs_as(HardtanhAttrs)
        post, r = (h.min_val, h.max_val), model.producer(r.inputs[0])
    if r is None or r.op != "round":
        return None
    found = _quantizer_chain(model, r.inputs[0])
    if found is None:
        return _fold_float_quantizer(model, r.inputs[0], k, post)
    s, entry, chain = found
    n, shape = (1 << k) - 1, model.shapes[s]
    channels, rank = shape[1], len(shape)
    stored = np.arange(-entry.bound, entry.bound + 1, dtype=np.int64)
    levels = np.empty((len(stored), channels), np.int64)
    step = max(1, (1 << 22) // channels)
    with torch.no_grad():
        for i in range(0, len(stored), step):
            # the stored sum and the current constants: a flipped channel's negated scale undoes its sign
            rows = stored[i : i + step, None]
            part = np.broadcast_to(rows, (len(rows), channels)).astype(np.float32)
            x = torch.from_numpy(part).reshape((len(part), channels) + (1,) * (rank - 2))
            z = _rounded(_run_chain(model, chain, x), post).reshape(len(part), channels).double().numpy()
            if not np.all(np.isfinite(z)) or z.min() < 0 or z.max() > n:
                return None
            levels[i : i + step] = z.astype(np.int64)
    steps = np.diff(levels, axis=0)
    up, down = np.all(steps >= 0, axis=0), np.all(steps <= 0, axis=0)
    if not np.all(up | down):
        return None
    flip = down & ~up
    if flip.any():
        if entry.folded:
            return None
        for w in entry.weights:
            model.consts[w] = np.where(flip.reshape((-1,) + (1,) * (model.consts[w].ndim - 1)), -1, 1).astype(
                np.float32
            ) * np.asarray(model.consts[w], np.float32)
        if entry.scale in model.consts:
            sc = np.asarray(model.consts[entry.scale], np.float32)
            model.consts[entry.scale] = (np.where(flip, -1, 1).reshape(sc.shape) * sc).astype(np.float32)
        entry.flip = np.where(flip, -entry.flip, entry.flip)
        levels[:, flip] = levels[::-1, flip]  # the range is symmetric: stored s -> -s
    entry.folded = True
    thresholds = np.empty((n, channels), np.float64)
    for m in range(1, n + 1):
        passes = levels >= m
        thresholds[m - 1] = np.where(passes.any(axis=0), stored[0] + passes.argmax(axis=0), entry.bound + 1)
    return s, thresholds


class BitSerialPlanes(_Rewrite):
    """conv2d / linear with ±alpha weights on a k-bit activation q * c -> k binary layers on q's bit-planes.

    q = sum_j 2^j b_j with b_j in {0, 1}, so conv(q * c, alpha * S) = alpha * c * sum_j 2^j conv(b_j, S): one
    conv per plane with weights 2^j * S on b_j = (1 + s_j) / 2, which BinaryWeights makes a bconv2d of the
    ±1 plane s_j (zero padding of b_j = -1 padding of s_j). Each plane's float output
    fma(2^(j-1), S_j, 2^(j-1) * sum S) is an exact integer, so the sum is exact before the one rounding
    of alpha * c. Each plane s_j is one `bitplane` op reading the integer q once (thresholds m - 0.5), or,
    when q's quantizer folds (_fold_quantizer: integer thresholds on the exact sum of the bit-serial layer
    before, or float32 thresholds on a float input), reading that value with the folded thresholds.
    A flatten between q * c and a linear is kept on the planes' bits (bflatten).
    """

    name = "bit_serial_planes"

    def rewrite(self, model: Model, node: Node) -> bool:
        if node.op not in ("conv2d", "linear") or len(model.shapes[node.inputs[0]]) not in (2, 4):
            return False
        if isinstance(node.attrs, ConvAttrs) and (node.attrs.groups != 1 or node.attrs.dilation != (1, 1)):
            return False
        src, view = node.inputs[0], None
        p = model.producer(src)
        if node.op == "linear" and p is not None and p.op == "reshape" and _bits_view(model, p.inputs[0], src):
            src, view = p.inputs[0], p  # flatten(q * c): the planes of q, flattened as bits
        levels = _kbit_levels(model, src)
        w = model.const(node.inputs[1])
        if levels is None or w is None:
            return False
        alpha = _binary_weight_rows(w)
        if alpha is None:
            return False
        q, k, c = levels
        wsign = np.where(w < 0, -1.0, 1.0).astype(np.float32)
        new: list[Node] = []

        def const(stem: str, a: np.ndarray | float) -> str:
            v = model.fresh(f"{node.output}_{stem}")
            model.consts[v] = np.asarray(a, dtype=np.float32)
            return v

        def add(op: str, inputs: list[str], out: str, attrs: object = None) -> str:
            new.append(Node(op, inputs, out, attrs if attrs is not None else NoAttrs(), node.path))
            return out

        # the ±1 planes of q, extracted once for all its readers (DoReFa's skip conv and conv0)
        known = model.metadata.setdefault("_bit_planes", {}).get(q)
        signs = known if known and all(model.producer(v) is not None for v in known) else []
        if not signs:
            fold = _fold_quantizer(model, q, k)
            src_q, thresholds = fold if fold is not None else (q, None)
            for j in range(k):
                s_j = model.fresh(f"{q}_plane{j}")
                model.shapes[s_j] = model.shapes[q]
                add("bitplane", [src_q], s_j, BitPlaneAttrs(j, k, thresholds))
                signs.append(s_j)
            model.metadata["_bit_planes"][q] = signs
            if fold is not None:
                integer = fold[0] in model.metadata.get("_integer_sums", {})
                model.metadata.setdefault("_folded_planes", {})[q] = (
                    "integer thresholds on the layer before's sum" if integer else "float32 thresholds on its input"
                )
        folded = model.metadata.get("_folded_planes", {}).get(q, "")
        planes: list[str] = []
        for j, s_j in enumerate(signs):
            if view is not None:
                flat = model.fresh(f"{node.output}_flat{j}")
                model.shapes[flat] = model.shapes[view.output]
                new.append(Node(view.op, [s_j, *view.inputs[1:]], flat, view.attrs, view.path, "", view.where))
                s_j = flat
            z = model.fresh(f"{node.output}_z{j}")
            model.shapes[z] = model.shapes[s_j]
            new.append(_zero_one_affine(model, s_j, z, node.path, ""))
            planes.append(z)
        partial: str | None = None
        weights: list[str] = []
        for j, zo in enumerate(planes):
            conv_out = model.fresh(f"{node.output}_p{j}")
            model.shapes[conv_out] = model.shapes[node.output]
            weights.append(const("w", wsign * 2.0**j))
            add(node.op, [zo, weights[-1]], conv_out, node.attrs)
            partial = (
                conv_out if partial is None else add("add", [partial, conv_out], model.fresh(f"{node.output}_sum{j}"))
            )
            model.shapes[partial] = model.shapes[node.output]
        assert partial is not None
        scale = (alpha * c).reshape((-1,) + (1,) * (len(model.shapes[node.output]) - 2))
        out = node.output if len(node.inputs) < 3 else model.fresh(f"{node.output}_scaled")
        model.shapes[out] = model.shapes[node.output]
        scale_const = const("scale", scale)
        add("mul", [partial, scale_const], out)
        channels = model.shapes[node.output][1]
        bound = ((1 << k) - 1) * int(w[0].size)
        model.metadata.setdefault("_integer_sums", {})[partial] = _IntegerSum(
            bound, weights, scale_const, np.ones(channels, np.int64)
        )
        if len(node.inputs) > 2:
            bias = model.const(node.inputs[2])
            if bias is None:
                add("add", [out, node.inputs[2]], node.output)
            else:  # (O,) as (O, 1, 1): a per-channel constant of the NCHW output
                add("add", [out, const("bias", np.asarray(bias).reshape(scale.shape))], node.output)
        new[-1].origin, new[-1].where = node.origin, node.where
        model.metadata.setdefault("bit_serial_layers", {})[node.path or node.output] = (
            f"{k}-bit activation as {k} binary layers on its bit-planes"
            + (f", its quantizer folded into {folded}" if folded else "")
        )
        i = model.nodes.index(node)
        model.nodes[i : i + 1] = new
        return True


ACTIVATIONS: list[Transformation] = [
    MulByOne(),
    TorchSignToActSign(),
    ComplementaryWheres(),
    WhereToSign(),
    CompareAffineToSign(),
    CompareDifferenceToSign(),
    SignZeroReplaced(),
    DetachSTE(),
    SignOfSign(),
    ShiftedSign(),
    ClampFromWhere(),
    SignThroughHardtanh(),
    SignOfBinary(),
    DecoupledSigns(),
    PReLUFromWhere(),
    SignOfNonNegative(),
    ZeroOneThrough(),
    BitSerialPlanes(),
    StepsIntoLayer(),
]


# =========================================================================== phase 2: binary layers


@dataclass
class BinaryWeights:
    """conv2d/linear with a ±1 input and per-output-channel ±alpha weights -> bconv2d/blinear.

    Layers whose module path matches one of `binarize` (fnmatch patterns) are binarized as
    sign(W) * mean|W| per output channel; the relative quantization error is recorded.
    """

    binarize: Sequence[str] = ()
    force: bool = False  # binarize multi-level / ternary weights even above BINARIZE_MAX_ERROR
    name: str = "binary_weights"
    matched: set[str] = field(default_factory=set)  # the `binarize` patterns that matched a layer made binary

    def apply(self, model: Model) -> tuple[Model, bool]:
        changed = False
        float_layers = model.metadata.setdefault("float_layers", {})
        for node in list(model.nodes):
            if node.op not in ("conv2d", "linear"):
                continue
            key = node.path or node.output
            w = model.const(node.inputs[1])
            if w is None:
                float_layers[key] = "weight is not a constant"
                continue
            unsupported = _binary_conv_unsupported(node)
            if unsupported is not None:
                float_layers[key] = unsupported
                if is_bits(model, node.inputs[0]) and _one_magnitude_up_to_rounding(np.abs(w.reshape(w.shape[0], -1))):
                    _warn(model, key, f"its input is binary and its weights are ±alpha, but it is a {unsupported}")
                continue
            w = w.reshape(w.shape[0], -1) if node.op == "linear" else w
            # A ±1 F.pad of bits then an unpadded conv: the binary conv pads itself (pad_mode).
            padded = _sign_pad(model, node) if node.op == "conv2d" else None
            x_in = padded[0] if padded is not None else node.inputs[0]
            # A {0, 1} input x = (1 + s) / 2: conv(x, W) = (conv(s, W; pad -1) + sum_k W) / 2.
            zero_one = _zero_one_bits(model, x_in) if padded is None else None
            x_in = zero_one if zero_one is not None else x_in
            # A scaled sign s * sign(x) (a learnable activation scale): conv(s * b, W) = conv(b, s * W).
            scaled = _scaled_bits(model, x_in) if padded is None and zero_one is None else None
            if scaled is not None:
                x_in, w = scaled[0], (w * np.float32(scaled[1])).astype(np.float32)
            flat = w.reshape(w.shape[0], -1)
            mag = np.abs(flat)
            alpha = mag[:, 0]
            binary_valued = bool(np.all(mag == alpha[:, None]) and np.all(alpha != 0))
            rounded = not binary_valued and _one_magnitude_up_to_rounding(mag)
            if rounded:  # (a detach-trick weight: +-alpha up to float32 rounding; verification decides)
                alpha, binary_valued = mag.astype(np.float64).mean(axis=1), True
            declared_by = [pat for pat in self.binarize if fnmatch.fnmatch(key, pat)]
            if not is_bits(model, x_in):
                float_layers[key] = "input is not a binarized (sign) activation"
                p = model.producer(node.inputs[0])
                if binary_valued and mag.shape[1] > 1 and p is not None:  # (a stem on the image is float by design)
                    _warn(
                        model,
                        key,
                        f"its weights are ±alpha per output channel, but its input (from {p.op}) "
                        "is not a recognised binary activation",
                    )
                continue
            declared = any(fnmatch.fnmatch(key, pat) for pat in self.binarize)
            if binary_valued:
                wsign = np.where(w < 0, -1, 1).astype(np.int8)
                how = "±alpha per output channel" if np.any(alpha != 1) else "±1"
                if rounded:
                    how += f" up to float32 rounding (within {WEIGHT_ULPS} ULPs; alpha = mean |W|)"
            elif declared:
                alpha = mag.mean(axis=1)
                wsign = np.where(w < 0, -1, 1).astype(np.int8)
                q = alpha.reshape((-1,) + (1,) * (w.ndim - 1)) * wsign
                err = float(np.linalg.norm(q - w) / max(np.linalg.norm(w), 1e-30))
                _check_binarize(key, flat, err, self.force)
                zeros = int(np.count_nonzero(w == 0))
                how = f"declared binary (sign * mean|W|), relative weight error {err:.4f}"
                model.metadata.setdefault("binarized", {})[key] = {
                    "relative_error": err,
                    "zero_weights": zeros,
                    "param": node.attrs.weight_param if isinstance(node.attrs, (ConvAttrs, LinearAttrs)) else None,
                }
            else:
                float_layers[key] = (
                    "weight is not binary-valued (more than one magnitude per output channel"
                    " or zeros); pass binarize=[...] to declare it binary"
                )
                near, why = _weight_spread(mag)
                if near:
                    _warn(
                        model,
                        key,
                        f"its input is binary, but {why}; pass binarize=[...] (CLI: --binarize) to declare it binary",
                    )
                continue
            float_layers.pop(key, None)
            model.metadata.get("binary_warnings", {}).pop(key, None)
            self.matched.update(declared_by)
            bias = model.const(node.inputs[2]) if len(node.inputs) > 2 else None
            chain: tuple[Stage, ...] = () if bias is None else (ChannelStage("add", bias.astype(np.float64)),)
            alpha = alpha.astype(np.float64)
            pad_mode: Literal["zero", "plus_one", "minus_one"] = padded[2] if padded is not None else "zero"
            if zero_one is not None:
                # alpha * (S + sum_k ws) / 2: the integer sum S of s (zero padding of x = -1 padding of s)
                # scaled by alpha / 2, then a per-channel constant (exact thresholds: fold.py, float64).
                alpha = alpha / 2
                sum_w = wsign.reshape(wsign.shape[0], -1).sum(axis=1).astype(np.float64)
                chain = (ChannelStage("add", alpha * sum_w), *chain)
                how += " on a {0, 1} input (as (1 + s) / 2)"
                if isinstance(node.attrs, ConvAttrs) and node.attrs.padding != (0, 0):
                    pad_mode = "minus_one"
            attrs: BinaryLayerAttrs
            if node.op == "conv2d":
                conv = node.attrs_as(ConvAttrs)
                attrs = BinaryConvAttrs(
                    weight_sign=wsign,
                    alpha=alpha,
                    chain=chain,
                    weight_kind=how,
                    stride=conv.stride,
                    padding=padded[1] if padded is not None else conv.padding,
                    pad_mode=pad_mode,
                )
            else:
                attrs = BinaryLayerAttrs(weight_sign=wsign, alpha=alpha, chain=chain, weight_kind=how)
            new = Node("bconv2d" if node.op == "conv2d" else "blinear", [x_in], "", attrs, node.path)
            new.where = node.where
            _replace(model, node, new)
            changed = True
        return model, changed


def _sign_pad(model: Model, conv: Node) -> tuple[str, tuple[int, int], Literal["plus_one", "minus_one"]] | None:
    """(bits, padding, pad_mode) when `conv` (unpadded) reads F.pad(bits, (p, p, q, q), value=±1)."""
    p = model.producer(conv.inputs[0])
    if p is None or p.op != "pad" or conv.attrs_as(ConvAttrs).padding != (0, 0):
        return None
    a = p.attrs_as(PadAttrs)
    if (
        a.mode != "constant"
        or a.value not in (1.0, -1.0)
        or a.front
        or a.back
        or a.top != a.bottom
        or a.left != a.right
    ):
        return None
    if not is_bits(model, p.inputs[0]):
        return None
    return p.inputs[0], (a.top, a.left), "plus_one" if a.value == 1.0 else "minus_one"


# --binarize refuses ternary / multi-level weights whose binarization moves them by more than this
# relative weight error ||sign(W) * mean|W| - W|| / ||W|| (unless force): those weights were trained
# as they are, and binarizing them changes the model (a ternary layer at 0.45 loses all accuracy).
# Real-valued latent weights (continuous, no zeros) are not multi-level and stay declarable.
BINARIZE_MAX_ERROR = 0.1
MAX_LEVELS = 16  # a row with at most this many distinct values (and at most half its length) is multi-level
ZERO_SHARE = 0.25  # more exact zeros than this share: ternary or pruned (latent weights may hold a few)


def _ternary(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(t int8 {-1, 0, +1}, Wp, Wn float64 per row) when every row (output channel) of `flat` holds only
    {-Wn, 0, +Wp}, has more than two weights and is not plain ±alpha (it has zeros, or Wp != Wn)."""
    if flat.shape[1] <= 2 or not np.all(np.isfinite(flat)):
        return None
    pos, neg = flat > 0, flat < 0
    wp = np.where(pos, flat, 0).max(axis=1)
    wn = -np.where(neg, flat, 0).min(axis=1)
    if not (np.all(~pos | (flat == wp[:, None])) and np.all(~neg | (flat == -wn[:, None]))):
        return None
    if np.all(pos | neg) and np.all(wp == wn):
        return None  # ±alpha: a binary layer
    t = pos.astype(np.int8) - neg.astype(np.int8)
    return t, wp.astype(np.float64), wn.astype(np.float64)


def _multi_level(flat: np.ndarray) -> str | None:
    """Why the weights look trained as ternary / multi-level values (not real-valued latent weights), or None."""
    if _ternary(flat) is not None:
        return "ternary {-Wn, 0, +Wp} per output channel"
    zeros = np.count_nonzero(flat == 0)
    if zeros > ZERO_SHARE * flat.size:
        return f"{zeros} of {flat.size} exactly 0"
    levels = max(len(np.unique(row)) for row in flat)
    if levels <= min(MAX_LEVELS, flat.shape[1] // 2):
        return f"multi-level, at most {levels} distinct values per output channel"
    return None


def _check_binarize(key: str, flat: np.ndarray, err: float, force: bool) -> None:
    """--binarize on ternary / multi-level weights: an error above BINARIZE_MAX_ERROR unless `force`."""
    why = _multi_level(flat)
    if why is None or err <= BINARIZE_MAX_ERROR or force:
        return
    hint = (
        "without --binarize it converts exactly as a ternary layer"
        if _ternary(flat) is not None
        else "a ternary or k-bit weight path would keep them"
    )
    raise ConversionError(
        f"{key}: --binarize would replace its weights ({why}) by sign(W) * mean|W| with relative weight "
        f"error {err:.3f} > {BINARIZE_MAX_ERROR}; {hint}. Pass --force (force=True) to binarize anyway"
    )


def _weight_plane_layer(
    model: Model,
    node: Node,
    key: str,
    w: np.ndarray,
    binary_valued: bool,
    rounded: bool,
    alpha: np.ndarray,
    declared_by: Sequence[str],
    force: bool,
) -> bool:
    """conv2d / linear -> bwconv2d / bwlinear (float input): ±alpha weights (BWN), declared-binary
    weights (sign * mean|W|) or ternary {-Wn, 0, +Wp} weights (TTQ). False: not such a layer."""
    rank = len(model.shapes[node.inputs[0]])
    flat = w.reshape(w.shape[0], -1)
    if rank != (4 if node.op == "conv2d" else 2) or flat.shape[1] <= 1:
        return False  # (a 1-weight layer is a scale; other ranks keep the float handlers)
    tern = None if binary_valued else _ternary(flat)
    if binary_valued:
        t = np.where(w < 0, -1, 1).astype(np.int8)
        wp = wn = alpha.astype(np.float64)
        how = "binary weights (BWN), " + ("±alpha per output channel" if np.any(alpha != 1) else "±1")
        if rounded:
            how += f" up to float32 rounding (within {WEIGHT_ULPS} ULPs; alpha = mean |W|)"
    elif declared_by:
        tern = None  # (binarized: the binary-weight kernel)
        wp = wn = np.abs(flat).mean(axis=1).astype(np.float64)
        t = np.where(w < 0, -1, 1).astype(np.int8)
        q = wp.reshape((-1,) + (1,) * (w.ndim - 1)) * t
        err = float(np.linalg.norm(q - w) / max(np.linalg.norm(w), 1e-30))
        _check_binarize(key, flat, err, force)
        how = f"declared binary weights (BWN, sign * mean|W|), relative weight error {err:.4f}"
        model.metadata.setdefault("binarized", {})[key] = {
            "relative_error": err,
            "zero_weights": int(np.count_nonzero(w == 0)),
            "param": node.attrs.weight_param if isinstance(node.attrs, (ConvAttrs, LinearAttrs)) else None,
        }
    elif tern is not None:
        t, wp, wn = tern[0].reshape(w.shape), tern[1], tern[2]
        how = f"ternary weights {{-Wn, 0, +Wp}} per output channel ({int(np.count_nonzero(t == 0))} zeros)"
    else:
        return False
    conv = node.attrs if isinstance(node.attrs, ConvAttrs) else None
    attrs = WeightPlaneAttrs(
        ternary=t,
        scale_pos=wp,
        scale_neg=wn,
        weight_kind=how,
        stride=conv.stride if conv else (1, 1),
        padding=conv.padding if conv else (0, 0),
    )
    # Ternary weights on a binary input: AND + popcount sums (tbconv2d / tblinear); otherwise float input.
    kind = ("tbconv2d" if conv else "tblinear") if tern is not None and is_bits(model, node.inputs[0]) else None
    kind = kind or ("bwconv2d" if conv else "bwlinear")
    new = Node(kind, [node.inputs[0], *node.inputs[2:3]], "", attrs, node.path)
    new.where = node.where
    _replace(model, node, new)
    model.metadata.setdefault("float_layers", {}).pop(key, None)
    model.metadata.get("binary_warnings", {}).pop(key, None)
    model.metadata.setdefault("weight_plane_layers", {})[key] = how
    return True


def _check_patterns_matched(model: Model, binarize: Sequence[str], matched: set[str]) -> None:
    """Every --binarize pattern must have made at least one conv/linear layer binary."""
    for pat in binarize:
        if pat in matched:
            continue
        why = {k: v for k, v in model.metadata.get("float_layers", {}).items() if fnmatch.fnmatch(k, pat)}
        layers = sorted(n.path for n in model.nodes if n.path and n.op in LAYER_OPS)
        detail = (
            "; it matches only layers that cannot be binary: " + "; ".join(f"{k}: {v}" for k, v in why.items())
            if why
            else f"; the conv/linear layers are: {', '.join(layers[:20]) or 'none'}"
        )
        raise ConversionError(f"--binarize pattern {pat!r} matches no conv/linear layer that can be binary{detail}")


WEIGHT_PLANE_OPS = ("bwconv2d", "bwlinear", "tbconv2d", "tblinear")
LAYER_OPS = ("conv2d", "linear", "bconv2d", "blinear", *WEIGHT_PLANE_OPS)


def _binary_conv_unsupported(node: Node) -> str | None:
    """Why a conv cannot be a bconv2d whatever its input and weights (None when it can)."""
    if isinstance(node.attrs, ConvAttrs) and node.attrs.groups != 1:
        return "grouped convolution (the binary conv has no groups)"
    if isinstance(node.attrs, ConvAttrs) and node.attrs.dilation != (1, 1):
        return "dilated convolution (the binary conv has no dilation)"
    return None


def _warn(model: Model, layer: str, message: str) -> None:
    """A binary-looking layer stays float: `metadata["binary_warnings"][layer]` says why (the report prints it)."""
    model.metadata.setdefault("binary_warnings", {})[layer] = message


NEAR_BINARY_SPREAD = 1e-5  # relative spread of |W| within an output channel that float rounding explains

# |W| within an output channel may differ by this many float32 ULPs of the channel's largest |W| and
# still count as one magnitude alpha (their float64 mean). Bi-Real / ReActNet's detach trick
# `(alpha * sign(W)).detach() - clip(W).detach() + clip(W)` evaluates to alpha * sign(W) with two
# float32 roundings: |error| <= u * (2 alpha + max|clip(W)|) (u = 2^-24), i.e. a spread of at most
# 2 * (2 + max|clip(W)| / alpha) ULPs of alpha; 32 ULPs covers latent weights up to 14 alpha (measured
# on random and trained-like weights: 1 to 4 ULPs). The conversion is then checked by verification.
WEIGHT_ULPS = 32


def _one_magnitude_up_to_rounding(mag: np.ndarray) -> bool:
    """Are the nonzero magnitudes of every row (output channel) equal within WEIGHT_ULPS float32 ULPs?"""
    hi, lo = mag.max(axis=1), mag.min(axis=1)
    if not np.all(lo > 0):
        return False
    ulp = np.spacing(hi.astype(np.float32)).astype(np.float64)
    return bool(np.all(hi.astype(np.float64) - lo <= WEIGHT_ULPS * ulp))


def _weight_spread(mag: np.ndarray) -> tuple[bool, str]:
    """(does |W| look meant to be one magnitude per output channel, why it is not exactly that)."""
    hi = mag.max(axis=1)
    lo = np.where(mag == 0, np.inf, mag).min(axis=1)
    live = hi > 0
    spread = float(np.max((hi[live] - lo[live]) / hi[live])) if np.any(live) else 0.0
    zeros = int(np.count_nonzero(mag == 0))
    if zeros and spread == 0.0:
        return True, f"{zeros} weight(s) are exactly 0 (the others are ±alpha per output channel: ternary?)"
    if spread < NEAR_BINARY_SPREAD and not zeros:
        return True, (
            f"weights are ±alpha per output channel only up to float rounding (largest relative spread of "
            f"|W| within a channel {spread:.2g}, e.g. a detach-trick weight)"
        )
    return False, f"weights are not binary-valued (|W| varies within an output channel by up to {spread:.2g})"


def _chain_stage(model: Model, user: Node, value: str) -> Stage | None:
    """The per-channel stage `user` applies to `value`, or None if it is not one."""
    if user.inputs[0] != value:
        if user.op in ("add", "mul") and user.inputs[1] == value and model.is_const(user.inputs[0]):
            v = _per_channel(model, user.inputs[0], value)
            return None if v is None else ChannelStage(user.op, v)  # type: ignore[arg-type]
        return None
    if user.op == "batch_norm":
        g, b, m, var = (model.const(v) for v in user.inputs[1:5])
        return BatchNormStage(g, b, m, var, user.attrs_as(BatchNormAttrs).eps)  # type: ignore[arg-type]
    if user.op in ("add", "sub", "mul", "div") and len(user.inputs) == 2:
        v = _per_channel(model, user.inputs[1], value)
        return None if v is None else ChannelStage(user.op, v)  # type: ignore[arg-type]
    if user.op == "neg":
        return ChannelStage("mul", -np.ones(model.shapes[value][1]))
    return None


def _absorb(model: Model, node: Node, user: Node) -> None:
    """`node` now also computes `user`: take over its output name and origin; drop `user`."""
    model.nodes.remove(user)
    model.replace_uses(node.output, "__absorbed__")  # nothing else reads it (single consumer)
    node.output, node.origin = user.output, user.origin


class FoldIntoBinary(_Rewrite):
    """A BatchNorm / per-channel add, sub, mul, div that alone consumes a binary layer joins its chain."""

    name = "fold_into_binary"

    def rewrite(self, model: Model, node: Node) -> bool:
        if node.op not in ("bconv2d", "blinear") or _binary_with_sign(node):
            return False
        user = _single_consumer(model, node.output)
        if user is None:
            return False
        stage = _chain_stage(model, user, node.output)
        if stage is None:
            return False
        layer = node.attrs_as(BinaryLayerAttrs)
        node.attrs = replace(layer, chain=layer.chain + (stage,))
        _absorb(model, node, user)
        return True


def _decreasing(model: Model, user: Node, value: str) -> np.ndarray | None:
    """Per channel of `value`: is `user` non-increasing (True) or non-decreasing (False) in it?

    None when `user` is not such a per-channel monotone function. A non-decreasing g commutes with
    max; a non-increasing one turns it into min (g(max y) = min g(y)). Exact in float32 too:
    rounding is monotone.
    """
    channels = model.shapes[value][1] if len(model.shapes[value]) > 1 else 1
    up = np.zeros(channels, bool)
    if user.op in ("act_sign", "hardtanh", "relu"):
        return up if user.op != "act_sign" or user.attrs_as(ActSignAttrs).threshold.shape[0] == 1 else None
    stage = _chain_stage(model, user, value)
    if stage is None:
        return None
    if isinstance(stage, BatchNormStage):
        return np.broadcast_to(np.asarray(stage.gamma) < 0, up.shape).copy()
    if stage.kind in ("mul", "div"):
        return np.broadcast_to(np.asarray(stage.v) < 0, up.shape).copy()
    return up


def _reaches_sign(model: Model, value: str) -> bool:
    """Does `value` flow through single-consumer chain stages (BN, per-channel scale / bias: what
    FoldIntoBinary folds) into a per-channel sign? Then a pool moved there ends on bits."""
    for _ in range(64):  # a chain of stages is short; the bound only guards against a cycle
        user = _single_consumer(model, value)
        if user is None or _decreasing(model, user, value) is None:
            return False
        if user.op == "act_sign":
            return True
        if _chain_stage(model, user, value) is None:
            return False  # hardtanh, relu: they stay in the way of SignIntoBinary
        value = user.output
    return False


class MaxPoolSink(_Rewrite):
    """g(maxpool(x)) -> maxpool(g(x)) for a per-channel monotone g (BN, bias, scale, sign...).

    Exact in float32 too: rounding is monotone. It lets BatchNorm and the sign reach the binary layer
    (threshold output) and turns the pool into a bit max-pool. The channels where g decreases (a BN
    with gamma < 0, a negative scale) swap max and min: the pool records them in `min_channels`,
    which only the bit max-pool runs, so such a move needs the chain to end in a sign.
    """

    name = "maxpool_sink"

    def rewrite(self, model: Model, node: Node) -> bool:
        if node.op != "maxpool2d":
            return False
        src = model.producer(node.inputs[0])
        if src is None or src.op not in ("bconv2d", "blinear", "maxpool2d") or _binary_with_sign(src):
            return False
        user = _single_consumer(model, node.output)
        down = None if user is None else _decreasing(model, user, node.output)
        if user is None or down is None:
            return False
        pool = node.attrs_as(PoolAttrs)
        was = np.zeros_like(down) if pool.min_channels is None else pool.min_channels
        now = was ^ down
        if now.any() and (pool.ceil_mode or not _reaches_sign(model, node.output)):
            return False  # a min-pool on floats (or with ceil_mode) has no IR op: stay a float max-pool
        if down.any():
            node.attrs = replace(pool, min_channels=now if now.any() else None)
        x = node.inputs[0]
        mid = model.fresh(user.output)
        model.shapes[mid] = model.shapes[x]
        pooled_out, pooled_origin = user.output, user.origin
        user.inputs = [x if v == node.output else v for v in user.inputs]
        user.output, user.origin = mid, ""
        node.inputs, node.output, node.origin = [mid], pooled_out, pooled_origin
        model.nodes.remove(node)
        model.nodes.insert(model.nodes.index(user) + 1, node)
        return True


class SignIntoBinary(_Rewrite):
    """sign(chain(alpha * s) - t) after a binary layer -> integer threshold + flip per channel (fold.py)."""

    name = "sign_into_binary"

    def rewrite(self, model: Model, node: Node) -> bool:
        if node.op not in ("bconv2d", "blinear") or _binary_with_sign(node):
            return False
        user = _single_consumer(model, node.output)
        if user is None or user.op != "act_sign" or user.attrs_as(ActSignAttrs).threshold.shape[0] != 1:
            return False
        layer, sign = node.attrs_as(BinaryLayerAttrs), user.attrs_as(ActSignAttrs)
        k = int(np.prod(layer.weight_sign.shape[1:]))
        res = fold.thresholds(layer.chain, layer.alpha, k, sign.threshold[0], sign.sign_zero)
        folded = SignFold(
            threshold=res.threshold,
            flip=res.flip,
            sign_zero=sign.sign_zero,
            ste=sign.ste,
            k=k,
            constant=res.constant,
            ties=res.ties,
            float32_disagree=res.float32_disagree,
        )
        node.attrs = replace(layer, sign=folded)
        _absorb(model, node, user)
        return True


class MaxPoolOnBits(_Rewrite):
    """max-pool of a ±1 tensor -> bmaxpool2d on bits (bitwise AND)."""

    name = "maxpool_on_bits"

    def rewrite(self, model: Model, node: Node) -> bool:
        if node.op != "maxpool2d" or not is_bits(model, node.inputs[0]) or node.attrs_as(PoolAttrs).ceil_mode:
            return False  # (the bit max-pool has no ceil_mode: a ceil-mode pool of bits runs on floats)
        node.op = "bmaxpool2d"
        return True


class ConcatOfBits(_Rewrite):
    name = "concat_of_bits"

    def rewrite(self, model: Model, node: Node) -> bool:
        if node.op != "concat" or not all(is_bits(model, v) for v in node.inputs):
            return False
        node.op = "bconcat"
        return True


@dataclass
class WeightPlanes:
    """conv2d/linear that phase 2 left float, with ±alpha weights on a float input (BWN), weights declared
    binary (`binarize`), or ternary {-Wn, 0, +Wp} weights (TTQ, any input) -> bwconv2d / bwlinear.

    Runs after phase 2 has reached its fixed point, so a layer whose input becomes binary there is
    a bconv2d / blinear instead."""

    binarize: Sequence[str] = ()
    force: bool = False
    name: str = "weight_planes"
    matched: set[str] = field(default_factory=set)

    def apply(self, model: Model) -> tuple[Model, bool]:
        changed = False
        for node in list(model.nodes):
            if node.op not in ("conv2d", "linear"):
                continue
            w = model.const(node.inputs[1])
            if w is None or (
                isinstance(node.attrs, ConvAttrs) and (node.attrs.groups != 1 or node.attrs.dilation != (1, 1))
            ):
                continue
            key = node.path or node.output
            mag = np.abs(w.reshape(w.shape[0], -1))
            alpha = mag[:, 0]
            binary_valued = bool(np.all(mag == alpha[:, None]) and np.all(alpha != 0))
            rounded = not binary_valued and _one_magnitude_up_to_rounding(mag)
            if rounded:
                alpha, binary_valued = mag.astype(np.float64).mean(axis=1), True
            declared_by = [pat for pat in self.binarize if fnmatch.fnmatch(key, pat)]
            if _weight_plane_layer(model, node, key, w, binary_valued, rounded, alpha, declared_by, self.force):
                self.matched.update(declared_by)
                changed = True
        return model, changed


class ScaleIntoWeightPlanes(_Rewrite):
    """A per-channel multiply that alone reads a bias-free bwconv2d / bwlinear / tbconv2d / tblinear (XNOR-Net's
    alpha applied after conv(x, sign W)) joins its scales: y = (c Wp) P - (c Wn) N."""

    name = "scale_into_weight_planes"

    def rewrite(self, model: Model, node: Node) -> bool:
        if node.op not in WEIGHT_PLANE_OPS or len(node.inputs) > 1:
            return False
        user = _single_consumer(model, node.output)
        stage = None if user is None else _chain_stage(model, user, node.output)
        if user is None or not isinstance(stage, ChannelStage) or stage.kind != "mul":
            return False
        a = node.attrs_as(WeightPlaneAttrs)
        node.attrs = replace(a, scale_pos=a.scale_pos * stage.v, scale_neg=a.scale_neg * stage.v)
        _absorb(model, node, user)
        return True


def binary_layers(binarize: Sequence[str] = (), force: bool = False) -> list[Transformation]:
    """Phase 2 (the `binarize` patterns and `force` parameterise BinaryWeights)."""
    from xnorinfer.convert.grouped_binary import GroupedBinary  # grouped binary convs (grouped_binary.py)
    from xnorinfer.convert.patterns_multilevel import MultiLevelBases  # (it imports helpers from here)

    return [
        MaxPoolOnBits(),
        ConcatOfBits(),
        BinaryWeights(binarize, force),
        GroupedBinary(),
        FoldIntoBinary(),
        MaxPoolSink(),
        SignIntoBinary(),
        MultiLevelBases(binarize),
    ]


# =========================================================================== phase 3: float ops


class RPReLU(_Rewrite):
    """prelu(x - b1) + b2 (ReActNet's RPReLU) -> one prelu with pre_shift / post_shift."""

    name = "rprelu"

    def rewrite(self, model: Model, node: Node) -> bool:
        if node.op != "prelu" or not isinstance(node.attrs, PReLUAttrs):
            return False  # (a prelu with a slope tensor input, not a constant: not RPReLU)
        changed = False
        p = model.producer(node.inputs[0])
        if (
            node.attrs.pre_shift is None
            and p is not None
            and p.op in ("add", "sub")
            and not model.is_const(p.inputs[0])
        ):
            v = _per_channel(model, p.inputs[1], p.inputs[0])
            if v is not None:
                node.attrs = replace(node.attrs, pre_shift=v if p.op == "sub" else -v)
                node.inputs = [p.inputs[0]]
                changed = True
        user = _single_consumer(model, node.output)
        if (
            node.attrs.post_shift is None
            and user is not None
            and user.op in ("add", "sub")
            and user.inputs[0] == node.output
        ):
            v = _per_channel(model, user.inputs[1], node.output)
            if v is not None:
                node.attrs = replace(node.attrs, post_shift=v if user.op == "add" else -v)
                _absorb(model, node, user)
                changed = True
        return changed


class ElementwiseToAffine(_Rewrite):
    """BatchNorm and per-channel constant add/sub/mul/div/neg on float tensors -> affine."""

    name = "elementwise_to_affine"

    def rewrite(self, model: Model, node: Node) -> bool:
        if node.op not in ("batch_norm", "add", "sub", "mul", "div", "neg"):
            return False
        x = node.inputs[1] if (node.op in ("add", "mul") and model.is_const(node.inputs[0])) else node.inputs[0]
        if model.is_const(x) or (
            node.op in ("add", "sub", "mul", "div") and not any(model.is_const(v) for v in node.inputs)
        ):
            return False
        stage = _chain_stage(model, node, x)
        if stage is None:
            return False
        c = model.shapes[x][1]
        scale, shift = fold.affine([stage], np.ones(c))
        _replace(model, node, Node("affine", [x], "", AffineAttrs(scale, shift), node.path))
        return True


_SWAPPED = {"gt": "lt", "ge": "le", "lt": "gt", "le": "ge", "eq": "eq", "ne": "ne"}  # t OP x == x SWAPPED t


class CompareToFloat(_Rewrite):
    """cmp(x, t).float() with a per-channel constant t (x > t, t <= x, ...) -> compare (0.0 / 1.0)."""

    name = "compare_to_float"

    def rewrite(self, model: Model, node: Node) -> bool:
        if node.op != "to_float":
            return False
        c = model.producer(node.inputs[0])
        if c is None or c.op not in _SWAPPED or len(c.inputs) != 2:
            return False
        (x, t), cmp = c.inputs, c.op
        if model.is_const(x):
            (t, x), cmp = c.inputs, _SWAPPED[c.op]
        if model.is_const(x) or not model.is_const(t) or model.shapes[x] != model.shapes[node.output]:
            return False
        thr = _per_channel(model, t, x)
        if thr is None:
            return False
        attrs = CompareAttrs(cmp, thr.astype(np.float32).astype(np.float64))  # type: ignore[arg-type]
        _replace(model, node, Node("compare", [x], "", attrs, node.path))
        return True


FLOAT_OPS: list[Transformation] = [MaxPoolOnBits(), ConcatOfBits(), RPReLU(), ElementwiseToAffine(), CompareToFloat()]


def recognise(model: Model, binarize: Sequence[str] = (), force: bool = False) -> Model:
    """Run the three phases, each to a fixed point.

    A `binarize` pattern that matches no conv/linear layer made binary is an error (a typo, or a
    layer that cannot be binary: the message says why)."""
    model = run_to_fixed_point(model, ACTIVATIONS)
    phase2 = binary_layers(binarize, force)
    model = run_to_fixed_point(model, phase2)
    planes = WeightPlanes(binarize, force)
    model = run_to_fixed_point(model, [planes, ScaleIntoWeightPlanes()])
    bw = next(t for t in phase2 if isinstance(t, BinaryWeights))
    _check_patterns_matched(model, binarize, bw.matched | planes.matched)
    model = run_to_fixed_point(model, FLOAT_OPS)
    return model


ACTIVATIONS.append(SignBeforeUnsqueeze())  # conv1d of signs: the sign after the unsqueeze (conv1d_sign.py)
