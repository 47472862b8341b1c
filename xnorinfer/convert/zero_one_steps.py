"""Multi-level step activations written with compares, where or round (BinaryDuo as its paper writes it)
into the binary layer that reads them.

BinaryDuo's coupled ternary activation {0, 0.5, 1}, a {0, 1} step, or any activation

    v = sum_j c_j * B_j,     B_j = [x_j >= t_j] (or [x_j > t_j]) in {0, 1}

written in the forward pass as ``(x >= t).float()`` sums and multiples, nested
``torch.where(x >= t2, 1.0, torch.where(x >= t1, 0.5, 0.0))``, or ``torch.round(torch.clamp(x, 0, 1) * n) / n``,
read by a conv2d / linear with weights W. With B_j = (1 + s_j) / 2, s_j = sign(x_j - t_j) (±1),

    conv(v, W) = conv(cat_j B_j, cat_j c_j * W)     (input channels concatenated),

and a zero-padded v is a zero-padded cat B_j, which is padding s with -1. :class:`StepsIntoLayer` rewrites
the layer that way: J shifted signs, a concat, the {0, 1} form (1 + s) / 2 and the weights
[c_1 W, ..., c_J W]; the {0, 1} patterns then make it a binary layer over J * C binary channels (the
1/2 and the per-channel constant folded into its epilogue, -1 padding) when the c_j W are ±alpha per
output channel. Exactness: only multiplications and divisions by powers of two (and sums of the
resulting levels) are taken, so every level the source computes is the exact value of the sum; the
threshold of a round is the exact float32 boundary of round(fl(n * x)) (ties to even).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from xnorinfer.convert.attrs import ActSignAttrs, ConvAttrs, HardtanhAttrs, NoAttrs, SignZero
from xnorinfer.convert.graph import Model, Node, Rewrite, channel_vector, uniform_value

MAX_STEPS = 16  # more steps than this is not a binary activation worth splitting


@dataclass
class Step:
    """coef * B with B = 1 where x >= threshold (sign_zero "+1") or x > threshold ("-1"), else 0."""

    x: str
    threshold: np.ndarray  # (C,) float64 of float32 values
    sign_zero: SignZero
    coef: np.ndarray  # (C,)
    origin: str = ""  # the fx node whose {0, 1} value B is, when the source computes B alone


Steps = tuple[float, list[Step]]  # (constant d, steps): v = d + sum coef_j * B_j


def _power_of_two(c: float | None) -> bool:
    if c is None or c == 0 or not math.isfinite(c):
        return False
    m, _ = math.frexp(abs(c))
    return m == 0.5


def _const_scalar(model: Model, value: str) -> float | None:
    return uniform_value(model.const(value))


def _compare_step(model: Model, value: str) -> Steps | None:
    """(x OP t).float() with a per-channel constant t."""
    cast = model.producer(value)
    if cast is None or cast.op != "to_float":
        return None
    found = _condition(model, cast.inputs[0])
    if found is not None and found[0] == 0.0:
        found[1][0].origin = cast.origin  # B itself is a PyTorch value: verified bit for bit
    return found


def _condition(model: Model, cond: str) -> Steps | None:
    c = model.producer(cond)
    if c is None or c.op not in ("ge", "gt", "le", "lt") or len(c.inputs) != 2:
        return None
    x, t = c.inputs
    if model.is_const(x) or not model.is_const(t) or len(model.shapes[x]) < 2:
        return None
    thr = channel_vector(model.const(t), model.shapes[x])
    if thr is None:
        return None
    chans = model.shapes[x][1]
    thr = np.broadcast_to(np.asarray(thr, np.float32).astype(np.float64), (chans,)).copy()
    one = np.ones(chans)
    if c.op in ("ge", "gt"):
        return 0.0, [Step(x, thr, "+1" if c.op == "ge" else "-1", one)]
    # x <= t is 1 - [x > t]; x < t is 1 - [x >= t]
    return 1.0, [Step(x, thr, "-1" if c.op == "le" else "+1", -one)]


def _scaled(s: Steps, k: float) -> Steps:
    d, steps = s
    return d * k, [Step(st.x, st.threshold, st.sign_zero, st.coef * k, st.origin) for st in steps]


def _implied(outer: Step, inner: Step) -> bool:
    """Does outer's B = 1 imply inner's B = 1 (same x, every channel)?"""
    if outer.x != inner.x:
        return False
    strict_outer, strict_inner = outer.sign_zero == "-1", inner.sign_zero == "-1"
    if strict_inner and not strict_outer:
        return bool(np.all(inner.threshold < outer.threshold))
    return bool(np.all(inner.threshold <= outer.threshold))


def _where(model: Model, node: Node, depth: int) -> Steps | None:
    """where(x >= t, a, b): b + (a - b) * B for a scalar b; for a nested step activation b, exact when
    B = 1 implies every inner step is 1 (then b is the constant K there: b + (a - K) * B)."""
    cond, a, b = node.inputs
    va = _const_scalar(model, a)
    found = _condition(model, cond)
    if va is None or found is None:
        return None
    d0, (step,) = found
    if d0 != 0.0:  # (x < t selects a: swap the branches)
        return None
    vb = _const_scalar(model, b)
    if vb is not None:
        return vb, [Step(step.x, step.threshold, step.sign_zero, step.coef * (va - vb))]
    inner = _steps(model, b, depth + 1)
    if inner is None or not all(_implied(step, st) for st in inner[1]):
        return None
    top = inner[0] + sum(st.coef for st in inner[1])  # b where B = 1, per channel
    coef = va - np.asarray(top, np.float64)
    return inner[0], [*inner[1], Step(step.x, step.threshold, step.sign_zero, coef * step.coef)]


def _round_threshold(n: float, j: int) -> float | None:
    """The smallest float32 x0 in (0, 1] with round_half_even(fl32(n * x0)) >= j."""

    def ok(x: np.float32) -> bool:
        y = float(np.float32(n) * x)
        return y > j - 0.5 or (y == j - 0.5 and j % 2 == 0)

    x0 = np.float32((j - 0.5) / n)
    for _ in range(64):
        if ok(x0):
            break
        x0 = np.nextafter(x0, np.float32(np.inf))
    else:
        return None
    for _ in range(64):
        below = np.nextafter(x0, np.float32(-np.inf))
        if not ok(below):
            break
        x0 = below
    if not ok(x0) or not 0.0 < float(x0) <= 1.0:
        return None
    return float(x0)


def _round(model: Model, node: Node) -> Steps | None:
    """round(clamp(x, 0, 1) * n) for an integer n: n steps [x >= x0_j] (torch.round: ties to even)."""
    mul = model.producer(node.inputs[0])
    if mul is None or mul.op != "mul" or len(mul.inputs) != 2:
        return None
    u, k = mul.inputs if model.is_const(mul.inputs[1]) else mul.inputs[::-1]
    n = _const_scalar(model, k)
    clamp = model.producer(u)
    if n is None or clamp is None or clamp.op != "hardtanh" or not isinstance(clamp.attrs, HardtanhAttrs):
        return None
    if clamp.attrs.min_val != 0.0 or clamp.attrs.max_val != 1.0 or n != int(n) or not 1 <= n <= MAX_STEPS:
        return None
    x = clamp.inputs[0]
    chans = model.shapes[x][1]
    steps = []
    for j in range(1, int(n) + 1):
        x0 = _round_threshold(n, j)
        if x0 is None:
            return None
        steps.append(Step(x, np.full(chans, x0), "+1", np.ones(chans)))
    return 0.0, steps


def _steps(model: Model, value: str, depth: int = 0) -> Steps | None:
    """`value` as d + sum_j coef_j * B_j, or None."""
    p = model.producer(value)
    if p is None or depth > 8:
        return None
    if p.op == "to_float":
        return _compare_step(model, value)
    if p.op == "where" and len(p.inputs) == 3:
        return _where(model, p, depth)
    if p.op == "round" and len(p.inputs) == 1:
        return _round(model, p)
    if p.op in ("mul", "div") and len(p.inputs) == 2:
        u, k = p.inputs if model.is_const(p.inputs[1]) else p.inputs[::-1]
        c = _const_scalar(model, k)
        if not _power_of_two(c) or (p.op == "div" and u != p.inputs[0]):
            return None
        inner = _steps(model, u, depth + 1)
        return None if inner is None else _scaled(inner, c if p.op == "mul" else 1.0 / c)  # type: ignore[operator]
    if p.op == "add" and len(p.inputs) == 2 and not any(model.is_const(v) for v in p.inputs):
        a, b = (_steps(model, v, depth + 1) for v in p.inputs)
        if a is None or b is None:
            return None
        return a[0] + b[0], a[1] + b[1]
    return None


class StepsIntoLayer(Rewrite):
    """conv2d / linear of a {0, 1}-step activation -> the layer over the concatenated steps (see above).
    (A patterns.py transformation; registered in its ACTIVATIONS list.)"""

    name = "steps_into_layer"

    def rewrite(self, model: Model, node: Node) -> bool:
        from xnorinfer.convert.patterns import _zero_one_affine  # (patterns imports this module)

        if node.op not in ("conv2d", "linear") or len(node.inputs) < 2:
            return False
        if isinstance(node.attrs, ConvAttrs) and (node.attrs.groups != 1 or node.attrs.dilation != (1, 1)):
            return False
        v, w_name = node.inputs[0], node.inputs[1]
        w = model.const(w_name)
        rank = len(model.shapes[v])
        if w is None or rank != (4 if node.op == "conv2d" else 2):
            return False
        found = _steps(model, v)
        if found is None:
            return False
        d, steps = found
        if np.any(np.asarray(d) != 0) or not 1 <= len(steps) <= MAX_STEPS:
            return False  # (a constant offset would make zero padding a third level)
        if any(model.shapes[st.x] != model.shapes[v] for st in steps):
            return False
        chans = model.shapes[v][1]
        signs = []
        for st in steps:
            out = model.fresh(v)
            model.shapes[out] = model.shapes[v]
            attrs = ActSignAttrs(st.threshold.reshape(1, chans), st.sign_zero, "{0, 1} step (compare / where / round)")
            signs.append(Node("act_sign", [st.x], out, attrs, node.path, st.origin, node.where))
            if st.origin:
                model.metadata.setdefault("zero_one_signs", []).append(st.origin)
        wide = (model.shapes[v][0], chans * len(steps), *model.shapes[v][2:])
        new: list[Node] = signs
        bits = signs[0].output
        if len(signs) > 1:
            bits = model.fresh(v)
            model.shapes[bits] = wide
            new.append(Node("concat", [s.output for s in signs], bits, NoAttrs(), node.path, "", node.where))
        zero_one = model.fresh(v)
        model.shapes[zero_one] = wide
        new.append(_zero_one_affine(model, bits, zero_one, node.path, ""))
        shape = (1, chans) + (1,) * (w.ndim - 2)
        w_new = np.concatenate([np.asarray(st.coef, np.float64).reshape(shape) * w for st in steps], axis=1)
        w_const = model.fresh(w_name)
        model.consts[w_const] = w_new.astype(w.dtype)
        model.nodes[model.nodes.index(node) : model.nodes.index(node)] = new
        node.inputs = [zero_one, w_const, *node.inputs[2:]]
        model.metadata.setdefault("step_activations", {})[node.path or node.output] = len(steps)
        model.remove_dead()
        return True
