"""The canonical reference: a numpy interpreter of an `ir.Graph`, following docs/ir.md.

Each op's semantics is its declaration's `reference` (xnorinfer.ops). Binary ops are exact integer
arithmetic (int64); float ops run in float64 (values of f32 tensors are kept as float64 arrays).
``bits`` tensors are held packed (uint64, as the runtime holds them).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Sequence

import numpy as np

from xnorinfer import ir
from xnorinfer.bits import pack_last, unpack_last
from xnorinfer.ops import op_def
from xnorinfer.ops.binary_ops import binary_sum_conv, in_width

__all__ = ["run", "bits_of", "sign_margins", "error_bound", "U32", "ACC_LAMBDA"]

# Unit roundoff of float32 (round to nearest): one float32 operation changes its exact result by at
# most U32 times its magnitude.
U32 = 2.0**-24
# A float32 dot product of K terms (PyTorch's conv / linear, blocked in any order) errs by at most
# gamma_K * sum|w_i x_i| with gamma_K = K * U32 in the worst case (Higham, Accuracy and Stability of
# Numerical Algorithms, 3.1). Treating the roundings as independent, mean-zero random variables,
# Higham & Mary (SIAM J. Sci. Comput. 41(5), 2019, thm 3.1) bound it by lambda * sqrt(K) * U32 *
# sum|w_i x_i| except with probability 2K exp(-lambda^2 / 2): with lambda = 10 below 1e-17 per element,
# below 1e-8 over the ~1e10 activations a 64-image ImageNet verification checks. The worst-case form
# would let a 4608-term binary conv err by a whole integer step of its ±1 sum. Roundings that do not
# cancel (K equal terms: partial sums growing steadily to the result) break that model; each rounding
# is then at most U32 times a partial sum no larger than the result, so K * U32 * |sum w x| is added
# (`_drift`), which covers them without the worst case's K * U32 * sum|w x|.
ACC_LAMBDA = 10.0
# A per-channel transform PyTorch evaluates in a few float32 steps (BatchNorm's (x - mean) * invstd
# * gamma + beta with invstd itself rounded, a detach-trick weight (a - c) + c): this many roundings,
# each at the scale of the operands, bound it.
_STEP_ROUNDINGS = 8.0


def _acc(k: int) -> float:
    """The float32 error of a k-term dot product, relative to sum|w x| (ACC_LAMBDA, plus the bias add)."""
    return (ACC_LAMBDA * np.sqrt(k) + 2.0) * U32


def _drift(k: int) -> float:
    """The float32 error of a k-term dot product whose roundings do not cancel, relative to |sum w x|."""
    return k * U32


def _abs_weight_op(op: ir.Op) -> ir.Op:
    """`op` (conv2d / linear) with |weight|, no bias, no ReLU: sum |w| * x over each output's taps."""
    params = {"weight": np.abs(op.params["weight"])}
    return dataclasses.replace(op, params=params, attrs={**op.attrs, "relu": False})


Bound = np.ndarray | float | None  # an error bound tensor; 0.0: exact; None: no rule for a producing op


def error_bound(
    op: ir.Op,
    ins: list[np.ndarray],
    errs: list[Bound],
    out: np.ndarray,
    tensors: list[ir.Tensor],
    zeros: np.ndarray | None = None,
) -> Bound:
    """A bound on |PyTorch's float32 value - this reference's float64 value| for op's output.

    `ins` are the reference's (float64) inputs, `errs` their bounds, `out` the reference's output.
    Binary activations are those PyTorch computed (verification teacher-forces them), so a bits
    tensor has no error; a binary conv's float output carries the float32 error of the ±alpha
    convolution PyTorch ran (accumulation over K, detach-trick weights exact only to a few roundings)
    and of its BatchNorm. First order in U32 (products of two roundings are ~1e-14 relative).
    None when the op has no rule (verification then falls back to verify.TIE_ULPS). Bounds are
    float32 arrays (or 0.0): their own rounding, a 1e-7 relative change, is far inside their slack.

    `zeros` (boolean, the unpacked layout of a binary input): where the source model's binary
    activation was exactly 0 (torch.sign(0)), which the IR reads as +1: a binary conv's value moves
    by |alpha| per such tap in PyTorch, |multiplier| after the fold.
    """
    kind = op.kind
    if kind == "unpack" or op_def(kind).out_dtype(op.attrs) == "bits":
        return 0.0
    if any(e is None for e in errs):
        return None
    if kind in ("bconv2d", "blinear"):
        # PyTorch: a float32 conv of ±1 inputs with weights alpha * sign(W) (sum |w x| = |alpha| K),
        # then BatchNorm; folded here into y = multiplier * s + bias with |multiplier| = |alpha * bn scale|.
        # The BatchNorm steps round at |alpha s| * |bn scale| + |bias| + |y| <= 2 |y| + 2 |bias|.
        m = np.abs(op.params["multiplier"].astype(np.float64))
        k = in_width(op) * (int(np.prod(op.params["weight"].shape[1:3])) if kind == "bconv2d" else 1)
        b = np.abs(op.params["bias"].astype(np.float64))
        # |alpha s| * |bn scale| = |y - bias| <= |y| + |bias| for the drift term
        e = _scaled_abs(out, 2 * _STEP_ROUNDINGS * U32 + _drift(k))
        e += (m * k * (_acc(k) + 3 * U32) + (2 * _STEP_ROUNDINGS * U32 + _drift(k)) * b).astype(np.float32)
        if zeros is not None and zeros.any():
            e += (m * _zero_taps(op, zeros)).astype(np.float32)
        return e
    if kind in ("conv2d", "linear"):
        w = op.params["weight"]
        k = int(np.prod(w.shape[1:]))
        ref = op_def(kind).reference
        acc = _acc(k)
        e = ref(_abs_weight_op(op), [errs[0] + acc * np.abs(ins[0])], tensors)
        if "bias" in op.params:
            e = e + acc * np.abs(op.params["bias"].astype(np.float64))
        # the drift term needs |sum w x| before a fused ReLU clips it (|y| bounds it, bias included)
        pre = (
            ref(dataclasses.replace(op, attrs={**op.attrs, "relu": False}), ins, tensors)
            if op.attrs.get("relu")
            else out
        )
        return (e + _drift(k) * np.abs(pre)).astype(np.float32)
    if kind == "affine":
        scale = np.abs(op.params["scale"].astype(np.float64))
        shift = np.abs(op.params["shift"].astype(np.float64))
        e = _scaled_abs(ins[0], 1.0)
        e *= (_STEP_ROUNDINGS * U32 * scale).astype(np.float32)
        e += _scaled_abs(out, _STEP_ROUNDINGS * U32)
        e += (_STEP_ROUNDINGS * U32 * shift).astype(np.float32)
        e += (scale * errs[0]).astype(np.float32) if isinstance(errs[0], np.ndarray) else np.float32(0)
        return e
    if kind == "prelu":
        # t = x - pre (one rounding), then slope * t where t < 0 (one), + post (one)
        slope = np.abs(op.params["slope"].astype(np.float64))
        pre = op.params.get("pre_shift", np.zeros(1, np.float32)).astype(np.float64)
        gain = np.maximum(slope, 1.0)
        t = np.abs(ins[0] - pre, dtype=np.float32)
        e = t * (U32 * (gain + slope)).astype(np.float32)
        e += _scaled_abs(out, U32)
        if isinstance(errs[0], np.ndarray):
            e += errs[0] * gain.astype(np.float32)
        return e
    if kind == "add":
        e = _scaled_abs(out, U32)
        for a in errs:
            e += a
        return e
    if kind == "constant":
        return 0.0  # the same float32 value on both sides
    if kind == "binary" and op.attrs["op"] in ("add", "sub", "mul", "max", "min"):
        a, b = ins
        ea, eb = errs
        if op.attrs["op"] in ("max", "min"):  # each within its bound: the result within the larger
            e = np.maximum(ea, eb)
        elif op.attrs["op"] == "mul":  # |(a + da)(b + db) - ab| <= |b| da + |a| db, first order
            e = np.abs(b) * ea + np.abs(a) * eb + U32 * np.abs(out)
        else:
            e = ea + eb + U32 * np.abs(out)
        return np.broadcast_to(np.asarray(e, np.float32), out.shape)
    if kind in ("relu", "hardtanh", "neg", "abs", "flatten", "reshape", "transpose", "slice", "expand"):
        # 1-Lipschitz or a copy: the input's bound, moved as the op moves values
        if not isinstance(errs[0], np.ndarray):
            return errs[0]
        return errs[0] if kind in ("relu", "hardtanh", "neg", "abs") else op_def(kind).reference(op, [errs[0]], tensors)
    if kind in ("maxpool2d", "adaptive_maxpool2d", "concat"):
        # max of values each within its bound: within the largest bound of the window
        if not any(isinstance(e, np.ndarray) for e in errs):
            return 0.0
        full = [e if isinstance(e, np.ndarray) else np.zeros_like(x) for e, x in zip(errs, ins, strict=True)]
        return op_def(kind).reference(op, full, tensors)
    if kind in ("avgpool2d", "global_avgpool", "adaptive_avgpool2d"):
        ref = op_def(kind).reference
        n = _window(op, ins[0], out)
        return ref(op, [errs[0] + _scaled_abs(ins[0], (n + 1) * U32)], tensors).astype(np.float32)
    return None


def _scaled_abs(a: np.ndarray, c: float) -> np.ndarray:
    """c * |a| in float32 (bounds need no more precision than that; half the memory of float64)."""
    e = np.abs(a, dtype=np.float32)
    e *= np.float32(c)
    return e


def _zero_taps(op: ir.Op, zeros: np.ndarray) -> np.ndarray:
    """Per output position of a binary conv / dense layer, how many of its input taps are `zeros`."""
    if op.kind == "blinear":
        return zeros.reshape(len(zeros), -1).sum(axis=1, keepdims=True).astype(np.float64)
    kh, kw = op.params["weight"].shape[1:3]
    ones = np.ones((1, kh, kw, zeros.shape[-1]), np.int64)
    return binary_sum_conv(zeros.astype(np.int64), ones, op.attrs["stride"], op.attrs["padding"]).astype(np.float64)


def _moved_zeros(op: ir.Op, zs: list[np.ndarray | None], graph: ir.Graph) -> np.ndarray | None:
    """Where a bits-to-bits copy (bconcat, bflatten) or bmaxpool2d moves its inputs' zero ties."""
    if op.kind not in ("bconcat", "bflatten", "bmaxpool2d") or all(z is None for z in zs):
        return None
    specs = [graph.tensors[v] for v in op.inputs]
    packed = []
    n = next(z for z in zs if z is not None).shape[0]
    for z, v in zip(zs, op.inputs, strict=True):
        z = np.zeros((n, *graph.tensors[v].shape[1:]), bool) if z is None else z
        # bmaxpool2d ANDs its bits (bit 1 = -1): on the complement it ORs, i.e. any zero in the window
        packed.append(pack_last(~z if op.kind == "bmaxpool2d" else z))
    # (a min channel of bmaxpool2d also moves a tie whenever its window holds one: the AND without the mask)
    plain = dataclasses.replace(op, params={}) if op.kind == "bmaxpool2d" else op
    moved = unpack_last(op_def(op.kind).reference(plain, packed, specs), graph.tensors[op.outputs[0]].shape[-1])
    return ~moved if op.kind == "bmaxpool2d" else moved


def _window(op: ir.Op, x: np.ndarray, out: np.ndarray) -> int:
    """The most inputs one output of a float pooling op averages."""
    if op.kind == "avgpool2d":
        return int(np.prod(op.attrs["kernel"]))
    h, w = x.shape[1:3]
    if op.kind == "global_avgpool":
        return h * w
    return (-(-h // out.shape[1]) + 1) * (-(-w // out.shape[2]) + 1)


def run(
    graph: ir.Graph,
    x_nchw: np.ndarray | Sequence[np.ndarray],
    *,
    keep_all: bool = False,
    keep: Collection[str] = (),
    override: Callable[[str, np.ndarray], np.ndarray] | None = None,
    bounds: dict[str, Bound] | None = None,
    zeros: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Interpret `graph` on a float32 NCHW (or (N, F)) input; a graph with several inputs takes a list
    (one array per graph input, NCHW when 4-D, else in the graph's order).

    Returns the graph outputs and the tensors named in `keep` by name (float64 for f32 tensors,
    packed uint64 for bits), or every tensor with `keep_all`. Without `keep_all` a tensor is freed
    after its last reader (a 224x224 model on 64 images would otherwise hold gigabytes). A
    per-image graph (metadata "per_image") runs one image at a time, its values joined along axis 0.

    `override(name, value)` sees each op's output and returns the value later ops read (verification
    substitutes PyTorch's binary activations so that a rounding tie does not cascade); not for
    per-image graphs with several images.

    With a `bounds` dict, each kept f32 tensor's float32 error bound (`error_bound`: how far
    PyTorch's float32 value may lie from this float64 one, PyTorch's binary activations given) is
    stored in it under the tensor's name. `zeros` names bits tensors and where (boolean, unpacked)
    the source model's activation was exactly 0 (`error_bound`).
    """
    xs = list(x_nchw) if isinstance(x_nchw, (list, tuple)) else [x_nchw]
    if len(xs) != len(graph.inputs):
        raise ValueError(f"reference.run: the graph takes {len(graph.inputs)} inputs, got {len(xs)}")
    n = len(xs[0])
    if graph.metadata.get("per_image") and n > 1:  # axis 0 is not the batch: one image at a time
        if override is not None:
            raise ValueError("reference.run: override needs a batched graph or one image")
        per = [{} if bounds is not None else None for _ in range(n)]
        runs = [run(graph, [a[i : i + 1] for a in xs], keep_all=keep_all, keep=keep, bounds=per[i]) for i in range(n)]
        if bounds is not None:
            for name in per[0]:
                es = [p[name] for p in per]
                if all(e is not None for e in es):
                    bounds[name] = np.concatenate(
                        [np.broadcast_to(e, r[name].shape) for e, r in zip(es, runs, strict=True)]
                    )
                else:
                    bounds[name] = None
        return {name: np.concatenate([r[name] for r in runs]) for name in runs[0]}
    env: dict[str, np.ndarray] = {}
    err: dict[str, Bound] = {}
    for name, a in zip(graph.inputs, xs, strict=True):
        x = np.asarray(a, dtype=np.float32).astype(np.float64)
        if x.ndim == 2 and len(graph.tensors[name].shape) == 4:  # an (N, F) model input
            x = x.reshape(len(x), 1, 1, -1)
        elif x.ndim == 4:
            x = np.transpose(x, (0, 2, 3, 1))
        env[name] = x
        err[name] = 0.0  # a model input is the same float32 in both
    zmask: dict[str, np.ndarray] = dict(zeros or {})
    wanted = set(graph.outputs) | set(keep)
    last_use = {v: i for i, op in enumerate(graph.ops) for v in op.inputs}
    for i, op in enumerate(graph.ops):
        ins = [env[v] for v in op.inputs]
        if op.kind == "round":
            # PyTorch rounds its input (e.g. clamp(x) * n) to float32 before torch.round: a product that is
            # m + 0.5 in float32 but not in float64 must pick the level torch picks (half to even)
            ins = [ins[0].astype(np.float32).astype(np.float64)]
        specs = [graph.tensors[v] for v in op.inputs]
        out = op_def(op.kind).reference(op, ins, specs)
        if bounds is not None:
            z = [zmask.get(v) for v in op.inputs]
            err[op.outputs[0]] = error_bound(op, ins, [err[v] for v in op.inputs], out, specs, z[0] if z else None)
            moved = _moved_zeros(op, z, graph)
            if moved is not None:
                zmask[op.outputs[0]] = moved
        env[op.outputs[0]] = out if override is None else override(op.outputs[0], out)
        if not keep_all:
            for v in set(op.inputs):
                if last_use[v] == i and v not in wanted:
                    del env[v]
                    err.pop(v, None)
    if bounds is not None:
        bounds.update({name: err[name] for name in (env if keep_all else wanted) if name in err})
    if keep_all:
        return env
    return {name: env[name] for name in wanted}


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
