"""Verification: the PyTorch model vs the IR reference (and the engine, when the caller passes one).

Per binary tensor of the IR (every sign output, threshold output, bit max-pool), the bits the
reference computes are compared with the sign of the corresponding PyTorch value (recorded by
running the exported program with an fx Interpreter). A PyTorch value of exactly 0 (torch.sign's
sign(0) = 0, which the IR treats as +1) is counted as a tie, not a mismatch; so is a flip whose
reference sign input lies within its own float32 error bound of the threshold (reference.error_bound,
propagated through the reference beside the values; `TIE_ULPS` where an op upstream has no error rule;
counted apart as `rounding_ties`): verification fails only on flips that ties do not explain. The
reference is teacher-forced by PyTorch's binary activations; the engine, which decides ties with its
own float32 stream, is compared with the reference forced by the engine's activations when it
differs (`engine_forced`). A torch.sign of a non-negative tensor ({0, 1}, graph metadata
"zero_one_signs") is compared with 0 as the -1 level. Float outputs are compared within `rtol` of
the output's largest magnitude, and the top-1 class must agree.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from xnorinfer import ir, xbin
from xnorinfer.bits import pack_last
from xnorinfer.convert import reference
from xnorinfer.convert.graph import ConversionError

RTOL = 1e-3  # |out - ref| <= RTOL * max(1, max|ref|) for float outputs
LIVE_CHECK_INPUTS = 8  # inputs on which the live model is compared with its exported program

# The fallback tie rule, for a sign after an op that reference.error_bound has no rule for: a flip
# (IR bit != PyTorch bit) at a sign op whose reference (float64) input lies within TIE_ULPS float32
# ULPs of the largest |input| of that image's sign-input tensor from the threshold is a rounding tie:
# PyTorch computes the same value in float32, each op rounding at the scale of its operands (the
# sign's input tensor: a residual stream, a BatchNorm output), and a short chain of such roundings
# (a conv's accumulation of K terms, a BatchNorm, a residual add) moves a value by a few to a few
# tens of ULPs of the operand magnitude. 64 ULPs = 2^-17 (7.6e-6) of max|input|.
TIE_ULPS = 64


@dataclass
class LayerCheck:
    path: str
    total: int
    mismatches: int
    ties: int
    rounding_ties: int = 0  # flips explained by float32 rounding of an input at its threshold
    # how rounding ties are told: "bound" (each element's own float32 error bound,
    # reference.error_bound) or "ulps" (TIE_ULPS of the image's largest |input|: an op upstream has no bound)
    tie_rule: str = "bound"
    worst_tie: float = 0.0  # the largest margin / bound among the rounding ties (<= 1)


@dataclass
class VerifyResult:
    n_inputs: int
    layers: dict[str, LayerCheck] = field(default_factory=dict)
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0
    top1_agreement: float = 1.0
    top1_ties: int = 0  # inputs whose top class differs from PyTorch's only by a tie (top1_ties())
    engine: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "n_inputs": self.n_inputs,
            "max_abs_error": self.max_abs_error,
            "max_rel_error": self.max_rel_error,
            "top1_agreement": self.top1_agreement,
            "top1_ties": self.top1_ties,
            "engine": self.engine,
            "problems": self.problems,
            "layers": {k: vars(v) for k, v in self.layers.items()},
        }


class _Recorder(torch.fx.Interpreter):
    def __init__(self, gm: torch.fx.GraphModule, names: set[str]) -> None:
        super().__init__(gm)
        self.names, self.seen = names, {}

    def run_node(self, n: torch.fx.Node) -> Any:
        result = super().run_node(n)
        if n.name in self.names:
            self.seen[n.name] = result[0] if isinstance(result, (tuple, list)) else result
        return result


# The verification inputs: one array, or a tuple of arrays (one per model input, same batch).
Inputs = np.ndarray | tuple[np.ndarray, ...]


def _arrays(x: Inputs) -> tuple[np.ndarray, ...]:
    return x if isinstance(x, tuple) else (x,)


def _rows(x: Inputs) -> int:
    return len(_arrays(x)[0])


def _first(x: Inputs, k: int) -> Inputs:
    return tuple(a[:k] for a in x) if isinstance(x, tuple) else x[:k]


def _chunks(x: Inputs, batch: int) -> list[tuple[tuple[torch.Tensor, ...], int]]:
    """Split x into (chunk per input, n_real) of exactly `batch` rows (the exported program may fix the batch size)."""
    out = []
    for i in range(0, _rows(x), batch):
        parts = []
        for a in _arrays(x):
            part = a[i : i + batch]
            n = len(part)
            if n < batch:
                part = np.concatenate([part, np.repeat(part[-1:], batch - n, axis=0)])
            parts.append(torch.from_numpy(np.ascontiguousarray(part)))
        out.append((tuple(parts), n))
    return out


# Chunks of the exported batch size run together under torch.vmap, this many at a time: one pass of
# the fx interpreter per group instead of one per chunk, batched kernels, bounded memory.
VMAP_GROUP = 16


def _run_chunks(
    run_one: Callable[[tuple[torch.Tensor, ...]], list[torch.Tensor]], x: Inputs, batch: int
) -> list[np.ndarray]:
    """run_one on every `batch`-row chunk of x; its list of tensors concatenated over the real rows.

    Chunks go through torch.vmap (each chunk exactly as the model sees one batch); a model that vmap
    cannot batch (data-dependent Python control flow, .item(), in-place ops on inputs) runs chunk by chunk.
    """
    chunks = _chunks(x, batch)
    parts: list[list[np.ndarray]] = []

    def keep(outs: list[torch.Tensor], ns: list[int]) -> None:
        for k, v in enumerate(outs):
            if len(parts) <= k:
                parts.append([])
            v = v.detach()
            parts[k].extend(np.atleast_1d(v[j].numpy())[:n] for j, n in enumerate(ns))  # a rank-0 output: (1,)

    # vmap runs ops without a batching rule (eval BatchNorm, ...) through a per-chunk loop, correctly;
    # its C++ warning for each such op would reach the user's terminal dozens of times per model.
    warn_fallback = torch._C._functorch._set_vmap_fallback_warning_enabled
    warn_fallback(False)
    with torch.no_grad():
        try:
            for g in range(0, len(chunks), VMAP_GROUP):
                group = chunks[g : g + VMAP_GROUP]
                stacked = [torch.stack([c[k] for c, _ in group]) for k in range(len(group[0][0]))]
                outs = torch.vmap(lambda *c: tuple(run_one(c)))(*stacked)
                keep(list(outs), [n for _, n in group])
        except Exception:  # noqa: BLE001 - whatever vmap cannot batch runs one chunk at a time
            parts.clear()
            for c, n in chunks:
                keep([v.unsqueeze(0) for v in run_one(c)], [n])
        finally:
            warn_fallback(True)
    return [np.concatenate(p) for p in parts]


def torch_run(
    gm: torch.fx.GraphModule, x: Inputs, names: set[str], batch: int
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The named fx nodes' values and the first output of `gm` on `x` (float32, batch-first)."""
    order: list[str] = []

    def run_one(chunk: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        rec = _Recorder(gm, names)
        out = rec.run(*chunk)
        order[:] = sorted(rec.seen)
        return [rec.seen[k] for k in order] + [out[0] if isinstance(out, (tuple, list)) else out]

    *values, out = _run_chunks(run_one, x, batch)
    return dict(zip(order, values, strict=True)), out


def torch_outputs(fn: Callable[..., Any], x: Inputs, batch: int) -> np.ndarray:
    def run_one(chunk: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        o = fn(*chunk)
        return [o[0] if isinstance(o, (tuple, list)) else o]

    return _run_chunks(run_one, x, batch)[0]


def rounding_ties(xin: np.ndarray, threshold: np.ndarray, flips: np.ndarray) -> np.ndarray:
    """Which `flips` (boolean, shaped like `xin`: (N, ..., C)) are float32 rounding ties (TIE_ULPS).

    `xin` is the reference's float64 input of the sign, `threshold` its per-channel threshold (C,).
    """
    n = len(xin)
    scale = np.abs(xin).reshape(n, -1).max(axis=1) if xin.size else np.zeros(n)
    tol = TIE_ULPS * np.spacing(scale.astype(np.float32)).astype(np.float64)
    margin = np.abs(xin - np.asarray(threshold, np.float64))
    return flips & (margin <= tol.reshape((n,) + (1,) * (xin.ndim - 1)))


def bounded_ties(
    xin: np.ndarray, threshold: np.ndarray, bound: np.ndarray | float, flips: np.ndarray
) -> tuple[np.ndarray, float]:
    """Which `flips` lie within their own float32 error bound of the threshold, and the largest margin/bound among them.

    `xin` is the reference's float64 input of the sign, `bound` the bound on |PyTorch's float32 input
    - xin| (reference.error_bound, broadcastable to xin), `threshold` the per-channel threshold (C,),
    itself a float32 rounding of the model's (one more U32 * |threshold|). PyTorch and the reference
    can fall on opposite sides of the threshold only where |xin - threshold| <= that bound.
    """
    thr = np.asarray(threshold, np.float64)
    margin = np.abs(xin - thr)
    tol = np.asarray(bound, np.float64) + reference.U32 * np.abs(thr)
    ties = flips & (margin <= tol)
    worst = float((margin / np.maximum(tol, 1e-300))[ties].max()) if ties.any() else 0.0
    return ties, worst


def _rows_near_a_tie(
    sign_ops: dict[str, ir.Op],
    env: dict[str, np.ndarray],
    bounds: dict[str, reference.Bound],
    torch_side: dict[str, tuple[np.ndarray, np.ndarray]],
    k: int,
) -> np.ndarray:
    """Per input among the first k: does any binary activation sit within float32 rounding of its threshold?

    Two float32 runs that agree up to rounding can only pick different sides of a threshold there (an
    exact zero of torch.sign counts too).
    """
    near = np.zeros(k, bool)
    for _, tie in torch_side.values():
        if len(tie) >= k:
            near |= tie[:k].reshape(k, -1).any(axis=1)
    for op in sign_ops.values():
        full = env.get(op.inputs[0])
        if full is None or len(full) < k:
            continue
        xin = full[:k]
        everywhere = np.ones(xin.shape, bool)
        bound = bounds.get(op.inputs[0])
        if bound is None:
            close = rounding_ties(xin, op.params["threshold"], everywhere)
        else:
            b = np.asarray(bound, np.float64)
            per_row = b.ndim == full.ndim and b.shape[0] == full.shape[0]  # else it broadcasts over the rows
            close, _ = bounded_ties(xin, op.params["threshold"], b[:k] if per_row else b, everywhere)
        near |= close.reshape(k, -1).any(axis=1)
    return near


def _nhwc(a: np.ndarray) -> np.ndarray:
    return np.transpose(a, (0, 2, 3, 1)) if a.ndim == 4 else a


def top1_ties(out: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per row: does `out`'s top class differ from `ref`'s only by a tie of the reference?

    A tie: the reference's logit for out's class is within TIE_ULPS float32 ULPs of the row's largest
    |logit| below its best one. Binary layers give integer sums, so two classes often tie exactly (a
    ±1 linear head): float32 rounding of the scale then picks either class.
    """
    out, ref = out.reshape(len(out), -1), ref.reshape(len(ref), -1)
    if not ref.size:
        return np.zeros(len(ref), bool)
    picked = np.take_along_axis(ref, out.argmax(1)[:, None], 1)[:, 0]
    tol = TIE_ULPS * np.spacing(np.abs(ref).max(1).astype(np.float32)).astype(np.float64)
    return (out.argmax(1) != ref.argmax(1)) & (ref.max(1) - picked <= tol)


def compare_outputs(out: np.ndarray, ref: np.ndarray) -> tuple[float, float, float]:
    """(max abs error, max error relative to max(1, max|ref|), top-1 agreement; ties count as agreeing)."""
    out, ref = np.asarray(out, np.float64), np.asarray(ref, np.float64)
    err = np.abs(out - ref)
    max_abs = float(err.max()) if err.size else 0.0
    rel = max_abs / max(1.0, float(np.abs(ref).max()))
    same = out.reshape(len(out), -1).argmax(1) == ref.reshape(len(ref), -1).argmax(1)
    top1 = float(np.mean(same | top1_ties(out, ref))) if len(out) else 1.0
    return max_abs, rel, top1


class EngineSession(Protocol):
    def run(self, x: np.ndarray) -> Any: ...


# Loads an engine session from .xbin bytes (xnorinfer.convert passes the package's loader).
EngineLoader = Callable[[bytes], EngineSession]


def engine_run(graph: ir.Graph, x: Inputs, engine: EngineLoader) -> np.ndarray:
    """Run `graph` on the engine `engine` loads from its .xbin bytes (in memory: no file is written)."""
    arrays = [np.ascontiguousarray(a, dtype=np.float32) for a in _arrays(x)]
    out = engine(xbin.to_bytes(graph)).run(arrays if isinstance(x, tuple) else arrays[0])
    return np.asarray(out[0] if isinstance(out, list) else out)  # (verification compares the first output)


# Runs the source model on inputs: (the named source values, its first output). The ONNX front end
# passes one (onnx_verify.py) instead of a PyTorch program.
SourceRunner = Callable[[Inputs, set[str]], tuple[dict[str, np.ndarray], np.ndarray]]


def _with_bit_outputs(graph: ir.Graph, names: list[str]) -> ir.Graph:
    """A copy of `graph` that also outputs the bits tensors `names`, each unpacked to ±1.0 (after its outputs)."""
    ops, tensors, outs = list(graph.ops), dict(graph.tensors), list(graph.outputs)
    for name in names:
        t = f"{name}__verify_bits"
        tensors[t] = ir.Tensor(t, graph.tensors[name].shape, "f32")
        ops.append(ir.Op("unpack", f"verify:{name}", [name], [t]))
        outs.append(t)
    return dataclasses.replace(graph, ops=ops, tensors=tensors, outputs=outs)


# The engine's own binary activations come back as float32 ±1 outputs: this many images at a time.
ENGINE_BITS_BATCH = 8


def engine_forced(
    graph: ir.Graph,
    x: Inputs,
    engine: EngineLoader,
    signs: dict[str, ir.Op],
    pytorch_forced: tuple[dict[str, np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, tuple[int, int, float]]]:
    """The engine's output, the reference's teacher-forced by the engine's own binary activations, and the sign flips.

    The engine decides rounding ties with its own float32 stream; a tie it decides unlike PyTorch
    cascades through later layers, so its output is compared with the reference following the
    engine's binary activations (at the sign ops in `signs`), and every sign where that reference
    differs from the engine must lie within its float32 error bound (reference.error_bound; the
    engine rounds less than PyTorch: docs/exactness.md).
    `pytorch_forced` = (the binary activations the PyTorch-forced reference read, per sign, unpacked;
    its output): the reference then runs again only on the images where the engine's activations
    differ from those (elsewhere the two forcings are the same run; its flips were checked already).
    Returns (engine output, forced reference output, {sign output: (flips, flips beyond the bound,
    largest margin / bound)}).
    """
    names = sorted(signs)
    session = engine(xbin.to_bytes(_with_bit_outputs(graph, names)))
    outs: list[list[np.ndarray]] = [[] for _ in range(len(names) + 1)]
    for i in range(0, _rows(x), ENGINE_BITS_BATCH):
        part = [np.ascontiguousarray(a[i : i + ENGINE_BITS_BATCH]) for a in _arrays(x)]
        got = session.run(part if isinstance(x, tuple) else part[0])
        got = got if isinstance(got, list) else [got]
        outs[0].append(np.asarray(got[0]))
        for k, v in enumerate(got[len(graph.outputs) :]):
            outs[k + 1].append(np.asarray(v) < 0)  # ±1.0 -> bit (True = -1)
    eng = np.concatenate(outs[0])
    eng_bits = {n: np.concatenate(outs[k + 1]) for k, n in enumerate(names)}
    redo = np.arange(_rows(x))
    if pytorch_forced is not None:
        used, forced_out = pytorch_forced
        differs = np.zeros(_rows(x), bool)
        for n in names:
            differs |= (eng_bits[n] != used[n]).reshape(_rows(x), -1).any(axis=1)
        redo = np.flatnonzero(differs)
        if not len(redo):
            return eng, forced_out, {n: (0, 0, 0.0) for n in names}
        eng_bits = {n: b[redo] for n, b in eng_bits.items()}
    local: dict[str, np.ndarray] = {}

    def substitute(name: str, value: np.ndarray) -> np.ndarray:
        if name not in eng_bits:
            return value
        local[name] = reference.bits_of(graph, name, value)
        return pack_last(eng_bits[name])

    bounds: dict[str, reference.Bound] = {}
    keep = [op.inputs[0] for op in signs.values()]
    env = reference.run(graph, [a[redo] for a in _arrays(x)], keep=keep, override=substitute, bounds=bounds)
    out = env[graph.outputs[0]]
    if pytorch_forced is not None:
        out = pytorch_forced[1].copy()
        out[redo] = env[graph.outputs[0]]
    flips: dict[str, tuple[int, int, float]] = {}
    for name, op in signs.items():
        diff = local[name] != eng_bits[name]
        bound = bounds.get(op.inputs[0])
        if bound is None:
            near, worst = rounding_ties(env[op.inputs[0]], op.params["threshold"], diff), 0.0
        else:
            near, worst = bounded_ties(env[op.inputs[0]], op.params["threshold"], bound, diff)
        flips[name] = (int(diff.sum()), int((diff & ~near).sum()), worst)
    return eng, out, flips


def verify(
    graph: ir.Graph,
    model_fn: Callable[[torch.Tensor], torch.Tensor] | None,
    gm: torch.fx.GraphModule | None,
    inputs: Inputs,
    *,
    batch: int,
    force: bool = False,
    rtol: float = RTOL,
    engine: EngineLoader | None = None,
    progress: bool = False,
    source: SourceRunner | None = None,
) -> VerifyResult:
    """Compare `model_fn` (eager PyTorch) and `gm` (the exported program) with the IR reference.

    With `engine` (a loader from .xbin bytes to a session, e.g. `xnorinfer.load`), the engine's
    outputs are compared with the reference too.

    With `progress`, a progress bar on stderr follows the stages (reference, PyTorch, engine).
    """
    from tqdm import tqdm

    if isinstance(inputs, (tuple, list)):  # a model with several inputs: one array each
        x: Inputs = tuple(np.ascontiguousarray(a, dtype=np.float32) for a in inputs)
    else:
        x = np.ascontiguousarray(inputs, dtype=np.float32)
    res = VerifyResult(n_inputs=_rows(x))
    bar = tqdm(
        total=3 if engine is not None else 2,
        desc=f"verifying on {_rows(x)} inputs",
        unit="stage",
        disable=not progress,
        leave=False,
    )
    try:
        return _verify_stages(
            graph, model_fn, gm, x, res, bar, batch=batch, force=force, rtol=rtol, engine=engine, source=source
        )
    finally:
        bar.close()  # also on errors and interrupts, so that the error line starts on its own line


def _verify_stages(
    graph: ir.Graph,
    model_fn: Callable[[torch.Tensor], torch.Tensor] | None,
    gm: torch.fx.GraphModule | None,
    x: Inputs,
    res: VerifyResult,
    bar: Any,
    *,
    batch: int,
    force: bool,
    rtol: float,
    engine: EngineLoader | None,
    source: SourceRunner | None = None,
) -> VerifyResult:
    bar.set_postfix_str("PyTorch")
    bin_outs: dict[str, dict[str, str]] = graph.metadata.get("binary_outputs", {})
    # sign ops with one threshold per channel: their float input is kept (rounding-tie classification)
    sign_ops = {
        op.outputs[0]: op
        for op in graph.ops
        if op.kind == "sign" and op.outputs[0] in bin_outs and np.ndim(op.params.get("threshold")) == 1
    }
    names = {d["fx"] for d in bin_outs.values()}
    if source is not None:
        tv, out = source(x, names)
    elif gm is not None:
        tv, out = torch_run(gm, x, names, batch)
    else:
        raise ConversionError("internal: verify needs a PyTorch program or a source runner")
    bar.update()
    bar.set_postfix_str("reference")
    zero_one = set(graph.metadata.get("zero_one_signs", []))
    # PyTorch's binary activations in the IR's layout, and where PyTorch sits exactly on a tie
    torch_side: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for tname, info in bin_outs.items():
        if info["fx"] not in tv:
            continue
        t = tv[info["fx"]]
        shape = graph.tensors[tname].shape if tname in graph.tensors else ()
        if t.ndim == 3 and len(shape) == 4 and shape[1] == 1 and tuple(shape[2:]) == (t.shape[2], t.shape[1]):
            t = t[:, :, None, :]  # a sign of an (N, C, L) signal that the IR holds as conv1d's (N, 1, L, C)
        t = _nhwc(t)
        if "perm" in info:  # a flattened (C, H, W) tensor that the IR holds in (H, W, C) order
            t = t[:, np.asarray(info["perm"])]
        if info["fx"] in zero_one:  # torch.sign of a non-negative tensor: {0, 1}, 0 is the -1 level
            torch_side[tname] = (t <= 0, np.zeros(t.shape, bool))
        else:
            torch_side[tname] = (t < 0, t == 0)
    # The reference computes each binary activation from PyTorch's upstream ones (teacher forcing):
    # a rounding tie then shows as one flip where it happens instead of cascading into later layers.
    local: dict[str, np.ndarray] = {}

    def substitute(name: str, value: np.ndarray) -> np.ndarray:
        if name not in torch_side:
            return value
        ref_bits = reference.bits_of(graph, name, value)
        torch_bits, tie = torch_side[name]
        if ref_bits.shape != torch_bits.shape:
            return value
        local[name] = ref_bits
        return pack_last(np.where(tie, ref_bits, torch_bits))

    forced = not (graph.metadata.get("per_image") and _rows(x) > 1)
    keep = [*bin_outs, *(op.inputs[0] for op in sign_ops.values())]
    bounds: dict[str, reference.Bound] = {}
    zeros = {name: tie for name, (_, tie) in torch_side.items() if tie.any()} if forced else None
    env = reference.run(
        graph, list(_arrays(x)), keep=keep, override=substitute if forced else None, bounds=bounds, zeros=zeros
    )
    bar.update()
    used: dict[str, np.ndarray] = {}
    for tname, info in bin_outs.items():
        if tname not in torch_side:
            continue
        torch_bits, tie = torch_side[tname]
        ref_bits = local.get(tname)
        if ref_bits is None:
            ref_bits = reference.bits_of(graph, tname, env[tname])
        if tname in sign_ops and tname in local:  # the activations the forced reference read
            used[tname] = np.where(tie, ref_bits, torch_bits)
        bad = (ref_bits != torch_bits) & ~tie
        near, rule, worst = np.zeros(bad.shape, bool), "bound", 0.0
        op = sign_ops.get(tname)
        if bad.any() and op is not None:
            bound = bounds.get(op.inputs[0])
            if bound is None:  # an op upstream has no error rule: the image-scale rule
                rule, near = "ulps", rounding_ties(env[op.inputs[0]], op.params["threshold"], bad)
            else:
                near, worst = bounded_ties(env[op.inputs[0]], op.params["threshold"], bound, bad)
            bad &= ~near
        check = LayerCheck(
            info["path"], int(ref_bits.size), int(bad.sum()), int(tie.sum()), int(near.sum()), rule, worst
        )
        res.layers[tname] = check
        if bad.any():
            res.problems.append(
                f"{info['path'] or tname}: {check.mismatches} of {check.total} binary activations differ from "
                f"PyTorch beyond float32 rounding ({check.rounding_ties} more are rounding ties)"
            )
    if model_fn is not None and model_fn is not gm:
        # The exported program's outputs (above) stand for the live model once they agree on a few
        # inputs: a faithful export agrees on any; one that is not (e.g. a side effect in forward)
        # shows on these.
        # Two float32 runs of one network (eager and the exported program, whose kernels or batch sizes
        # differ) may disagree where a binary activation's input lies within float32 rounding of its
        # threshold: such an input is no evidence of a side effect.
        k = min(_rows(x), LIVE_CHECK_INPUTS)
        live = torch_outputs(model_fn, _first(x, k), batch)
        if live.size:
            diff = np.abs(live.astype(np.float64) - out[:k]).reshape(k, -1).max(axis=1)
            differs = diff > rtol * max(1.0, float(np.abs(live).max(initial=0.0)))
            unexplained = differs & ~_rows_near_a_tie(sign_ops, env, bounds, torch_side, k)
            if unexplained.any():
                res.problems.append(
                    f"the exported program differs from the live model by {diff[unexplained].max():.3g} on "
                    f"{int(unexplained.sum())} of the first {k} inputs, where no binary activation is within "
                    "float32 rounding of its threshold (forward has effects torch.export does not capture)"
                )
    ref = env[graph.outputs[0]]
    out_cmp = _nhwc(out)
    res.max_abs_error, res.max_rel_error, res.top1_agreement = compare_outputs(out_cmp, ref)
    if res.max_rel_error > rtol:
        res.problems.append(
            f"output differs from PyTorch by {res.max_abs_error:.3g} (relative {res.max_rel_error:.3g} > {rtol:g})"
        )
    res.top1_ties = int(top1_ties(np.asarray(out_cmp, np.float64), np.asarray(ref, np.float64)).sum())
    if res.top1_agreement < 1.0 and out_cmp.ndim == 2:
        res.problems.append(f"top-1 agreement with PyTorch is {res.top1_agreement:.4f}")
    if engine is not None:
        bar.set_postfix_str("engine")
        try:
            eng = engine_run(graph, x, engine)
        except Exception as err:  # noqa: BLE001 - report whatever the engine says
            eng = None
            res.engine = {"error": f"{type(err).__name__}: {err}"}
            res.problems.append(f"the engine could not run the graph: {type(err).__name__}: {err}")
        if eng is not None:
            ea, er, et = compare_outputs(eng, ref)
            res.engine = {"max_abs_error": ea, "max_rel_error": er, "top1_agreement": et}
            if (er > rtol or et < 1.0) and forced and sign_ops:
                # The engine follows its own binary activations, not PyTorch's: a tie it decided the
                # other way cascades. Compare it with the reference forced by its own activations,
                # each of its flips within the float32 bound.
                known = (used, ref) if used.keys() == sign_ops.keys() else None
                eng, forced_ref, flips = engine_forced(graph, x, engine, sign_ops, known)
                ea, er, et = compare_outputs(eng, forced_ref)
                res.engine = {
                    "max_abs_error": ea,
                    "max_rel_error": er,
                    "top1_agreement": et,
                    "forced_by": "engine",
                    "tie_flips": sum(f[0] - f[1] for f in flips.values()),
                    "worst_tie": max((f[2] for f in flips.values()), default=0.0),
                }
                for name, (n, beyond, _) in flips.items():
                    if beyond:
                        path = bin_outs[name]["path"] or name
                        res.problems.append(
                            f"{path}: the engine's binary activations differ from the reference beyond float32 "
                            f"rounding at {beyond} of {n} flips"
                        )
            if er > rtol or et < 1.0:
                res.problems.append(f"engine output differs from the reference by {ea:.3g} (top-1 agreement {et:.4f})")
    bar.update()
    if res.problems and not force:
        raise ConversionError("verification failed:\n  " + "\n  ".join(res.problems))
    return res
