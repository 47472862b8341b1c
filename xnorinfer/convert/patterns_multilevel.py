"""ABC-Net with merged bases: conv(sum_n beta_n A_n, W) with a few-level W -> M x N binary layers.

ABC-Net (Lin et al. 2017) approximates the weight by M binary bases that all threshold the same
tensor, W = sum_m alpha_m B_m with B_m = sign(W_bar - mean + u_m std), and the activation by N
shifted binarizations, R = sum_n beta_n A_n. Written in the merged form (the bases summed before
one conv), the eval graph is a float conv whose input is a sum of scaled signs and whose constant
weight has few distinct values. This rewrite splits it back:

* Input: value = sum_n beta_n s_n (adds, subs, and multiplies by scalar constants beta_n of ±1 tensors
  s_n: signs in any form phase 1 recognises, or binary layers with a folded sign).
* Weight, per output channel o: its sorted distinct values L_0 < ... < L_k (k <= MAX_STEPS) form a
  staircase: W = c + sum_j a_j sign(W - mid_j) with c = (L_0 + L_k) / 2, a_j = (L_j - L_(j-1)) / 2 and
  mid_j = (L_(j-1) + L_j) / 2 (exact in float64; checked). Channels with fewer levels get a_j = 0 for
  the missing steps. Thresholds of one tensor nest (ABC-Net's B_m), so M bases give at most M + 1
  levels and M planes; bases that do not nest give up to 2^M levels, which this decomposes into
  2^M - 1 planes (correct, not minimal).
* conv(sum_n beta_n s_n, W) = sum_n sum_j (beta_n a_j) conv(s_n, P_j) + c sum_n beta_n conv(s_n, 1):
  one conv per (n, j) with ±1 weights P_j (BinaryWeights makes each a bconv2d / blinear whose
  per-channel multiply beta_n a_j joins its epilogue), plus, when some c != 0, one conv of all +1
  weights per n. Zero padding of the sum is zero padding of every s_n (bconv2d's `pad_mode="zero"`:
  padded taps add 0). The integer sums S_nj are exact; each plane rounds once (fma(beta_n a_j, S_nj, 0)
  in float32); the partial outputs are added in the order n = 0.., j = 1.. (then the offset terms,
  then the bias): docs/exactness.md gives the bound.

Layers a `binarize` pattern names are left to BinaryWeights (declared binary, with its weight-error
check); a plain ±1 input with ±alpha or ternary weights is left to BinaryWeights / WeightPlanes.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from xnorinfer.convert.attrs import ConvAttrs, NoAttrs
from xnorinfer.convert.graph import Model, Node, Rewrite
from xnorinfer.convert.patterns import (
    NEAR_BINARY_SPREAD,
    _one_magnitude_up_to_rounding,
    _plus_minus_one,
    _scalar,
    _ternary,
    is_bits,
)
from xnorinfer.convert.shift_threshold import fold_shift

MAX_STEPS = 15  # at most 16 distinct weight values per output channel (and at most half the row)
MAX_TERMS = 16  # activation bases


def activation_terms(model: Model, value: str, depth: int = 0) -> list[tuple[str, float]] | None:
    """[(s_n, beta_n)] when `value` = sum_n beta_n s_n of ±1 tensors s_n (scalar beta_n), else None."""
    if depth > 2 * MAX_TERMS or model.is_const(value):
        return None
    if is_bits(model, value) or _plus_minus_one(model, value):
        return [(value, 1.0)]
    p = model.producer(value)
    if p is None or len(p.inputs) != 2:
        return None
    if p.op == "mul":
        return _scaled(model, p.inputs, value, depth)
    if p.op in ("add", "sub") and all(model.shapes.get(v) == model.shapes[value] for v in p.inputs):
        a, b = (activation_terms(model, v, depth + 1) for v in p.inputs)
        if a is None or b is None:
            return None
        terms = a + (b if p.op == "add" else [(s, -k) for s, k in b])
        return terms if len(terms) <= MAX_TERMS else None
    return None


def _scaled(model: Model, inputs: list[str], value: str, depth: int) -> list[tuple[str, float]] | None:
    """beta * (terms): one input a scalar constant, the other a sum of ±1 tensors of `value`'s shape."""
    for x, c in (inputs, inputs[::-1]):
        k = _scalar(model, c)
        if k is None or model.is_const(x) or model.shapes.get(x) != model.shapes[value] or not np.isfinite(k):
            continue
        terms = activation_terms(model, x, depth + 1)
        return None if terms is None else [(s, k * float(beta)) for s, beta in terms]
    return None


def weight_staircase(w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(planes ±1 float32 (J, *w.shape), steps a (J, O) float64, offset c (O,) float64) with
    w = c + sum_j a_j planes_j exactly (float64), or None when some row has too many distinct values or two
    that differ by float rounding only (relative NEAR_BINARY_SPREAD: a detach-trick weight, not bases)."""
    flat = w.reshape(w.shape[0], -1).astype(np.float64)
    if not np.all(np.isfinite(flat)):
        return None
    cap = min(MAX_STEPS, flat.shape[1] // 2)
    if len(np.unique(flat[0])) - 1 > cap:  # (latent float weights: the first row already says so)
        return None
    rows = [np.unique(r) for r in flat]
    steps = max(len(r) for r in rows) - 1
    if steps > cap:
        return None
    planes = np.ones((max(steps, 0), *flat.shape), dtype=np.float32)
    a = np.zeros((max(steps, 0), flat.shape[0]))
    c = np.empty(flat.shape[0])
    for o, levels in enumerate(rows):
        c[o] = (levels[0] + levels[-1]) / 2
        for j in range(1, len(levels)):
            a[j - 1, o] = (levels[j] - levels[j - 1]) / 2
            planes[j - 1, o] = np.where(flat[o] > (levels[j - 1] + levels[j]) / 2, 1.0, -1.0)
    top = np.abs(flat).max(axis=1)
    if np.any((a > 0) & (a < NEAR_BINARY_SPREAD * top)):
        return None  # levels apart by float rounding only (a detach-trick weight): not bases, leave it be
    rebuilt = c[:, None] + np.einsum("jo,jok->ok", a, planes.astype(np.float64))
    if not np.array_equal(rebuilt, flat):
        return None  # (float64 cannot hold the staircase exactly: leave the layer float)
    return planes.reshape((planes.shape[0], *w.shape)), a, c


@dataclass
class MultiLevelBases(Rewrite):
    """conv2d / linear of a sum of scaled signs with a few-level constant weight -> M x N binary layers."""

    binarize: Sequence[str] = ()
    name: str = "multi_level_bases"

    def rewrite(self, model: Model, node: Node) -> bool:
        if node.op not in ("conv2d", "linear") or len(model.shapes[node.inputs[0]]) != (
            4 if node.op == "conv2d" else 2
        ):
            return False
        if isinstance(node.attrs, ConvAttrs) and (node.attrs.groups != 1 or node.attrs.dilation != (1, 1)):
            return False
        key = node.path or node.output
        w = model.const(node.inputs[1])
        if w is None or any(fnmatch.fnmatch(key, pat) for pat in self.binarize):
            return False
        terms = activation_terms(model, node.inputs[0])
        if terms is None:
            return False
        flat = w.reshape(w.shape[0], -1)
        if len(terms) == 1 and terms[0][1] == 1.0:  # a plain ±1 input: only what the binary / ternary paths miss
            mag = np.abs(flat)
            if _ternary(flat) is not None or np.all(mag == mag[:, :1]) or _one_magnitude_up_to_rounding(mag):
                return False
        stairs = weight_staircase(w)
        if stairs is None:
            return False
        planes, a, c = stairs
        for s, _ in terms:  # ABC-Net's H_v(R): each base one sign reading R (its shift v in the threshold)
            p = model.producer(s)
            if p is not None and p.op == "act_sign":
                fold_shift(model, p)
        self._emit(model, node, terms, planes, a, c)
        return True

    def _emit(
        self,
        model: Model,
        node: Node,
        terms: list[tuple[str, float]],
        planes: np.ndarray,
        a: np.ndarray,
        c: np.ndarray,
    ) -> None:
        out_shape = model.shapes[node.output]
        channel = (-1,) + (1,) * (len(out_shape) - 2)
        new: list[Node] = []

        def fresh(stem: str) -> str:
            v = model.fresh(f"{node.output}_{stem}")
            model.shapes[v] = out_shape
            return v

        def const(stem: str, value: np.ndarray) -> str:
            v = model.fresh(f"{node.output}_{stem}")
            model.consts[v] = value
            return v

        partial: str | None = None

        def plane(n: int, s: str, j: str, weight: np.ndarray, scale: np.ndarray) -> None:
            nonlocal partial
            conv_out = fresh(f"a{n}w{j}")
            new.append(Node(node.op, [s, const(f"w{j}", weight)], conv_out, node.attrs, node.path))
            scaled = fresh(f"a{n}w{j}_scaled")
            new.append(Node("mul", [conv_out, const("scale", scale.reshape(channel))], scaled, NoAttrs(), node.path))
            if partial is None:
                partial = scaled
            else:
                partial_sum = fresh(f"sum_a{n}w{j}")
                new.append(Node("add", [partial, scaled], partial_sum, NoAttrs(), node.path))
                partial = partial_sum

        for n, (s, beta) in enumerate(terms):
            for j in range(planes.shape[0]):
                plane(n, s, str(j), planes[j], beta * a[j])
        if np.any(c != 0) or partial is None:
            ones = np.ones(planes.shape[1:], np.float32)
            for n, (s, beta) in enumerate(terms):
                plane(n, s, "c", ones, beta * c)
        assert partial is not None
        if len(node.inputs) > 2:
            bias = model.const(node.inputs[2])
            b = node.inputs[2] if bias is None else const("bias", np.asarray(bias).reshape(channel))
            new.append(Node("add", [partial, b], node.output, NoAttrs(), node.path))
        else:
            new[-1].output = node.output
        new[-1].origin, new[-1].where = node.origin, node.where
        for n_ in new:
            n_.where = n_.where or node.where
        j_planes, n_terms = planes.shape[0], len(terms)
        offset = ", + an offset plane per activation base" if np.any(c != 0) else ""
        model.metadata.setdefault("bit_serial_layers", {})[node.path or node.output] = (
            f"{n_terms} activation base(s) x {j_planes} weight base(s) as {n_terms * j_planes} binary layers"
            f"{offset} (multi-level weights: ABC-Net merged bases)"
        )
        model.metadata.get("float_layers", {}).pop(node.path or node.output, None)
        model.metadata.get("binary_warnings", {}).pop(node.path or node.output, None)
        i = model.nodes.index(node)
        model.nodes[i : i + 1] = new
