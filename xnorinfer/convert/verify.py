"""Verification: the PyTorch model vs the IR reference (and the engine, when the caller passes one).

Per binary tensor of the IR (every sign output, threshold output, bit max-pool), the bits the
reference computes are compared with the sign of the corresponding PyTorch value (recorded by
running the exported program with an fx Interpreter). A PyTorch value of exactly 0 (torch.sign's
sign(0) = 0, which the IR treats as +1) is counted as a tie, not a mismatch; so is a flip whose
reference sign input lies within float32 rounding of its threshold (`TIE_ULPS`; counted apart as
`rounding_ties`): verification fails only on flips that ties do not explain. A torch.sign of a
non-negative tensor ({0, 1}, graph metadata "zero_one_signs") is compared with 0 as the -1 level.
Float outputs are compared within `rtol` of the output's largest magnitude, and the top-1 class
must agree.
"""

from __future__ import annotations

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

# A flip (IR bit != PyTorch bit) at a sign op whose reference (float64) input lies within TIE_ULPS
# float32 ULPs of the largest |input| of that image's sign-input tensor from the threshold is a
# rounding tie: PyTorch computes the same value in float32, each op rounding at the scale of its
# operands (the sign's input tensor: a residual stream, a BatchNorm output), and a short chain of such
# roundings (a conv's accumulation of K terms, a BatchNorm, a residual add) moves a value by a few to
# a few tens of ULPs of the operand magnitude. 64 ULPs = 2^-17 (7.6e-6) of max|input|.
TIE_ULPS = 64


@dataclass
class LayerCheck:
    path: str
    total: int
    mismatches: int
    ties: int
    rounding_ties: int = 0  # flips explained by float32 rounding of an input at its threshold (TIE_ULPS)


@dataclass
class VerifyResult:
    n_inputs: int
    layers: dict[str, LayerCheck] = field(default_factory=dict)
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0
    top1_agreement: float = 1.0
    top1_ties: int = 0  # inputs whose top class differs from PyTorch's only by a tie (top1_ties())
    engine: dict[str, float] | None = None
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
            parts[k].extend(v[j].numpy()[:n] for j, n in enumerate(ns))

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
SourceRunner = Callable[[np.ndarray, set[str]], tuple[dict[str, np.ndarray], np.ndarray]]


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
        t = _nhwc(tv[info["fx"]])
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
    env = reference.run(graph, list(_arrays(x)), keep=keep, override=substitute if forced else None)
    bar.update()
    for tname, info in bin_outs.items():
        if tname not in torch_side:
            continue
        torch_bits, tie = torch_side[tname]
        ref_bits = local.get(tname)
        if ref_bits is None:
            ref_bits = reference.bits_of(graph, tname, env[tname])
        bad = (ref_bits != torch_bits) & ~tie
        near = np.zeros(bad.shape, bool)
        op = sign_ops.get(tname)
        if bad.any() and op is not None:
            near = rounding_ties(env[op.inputs[0]], op.params["threshold"], bad)
            bad &= ~near
        check = LayerCheck(info["path"], int(ref_bits.size), int(bad.sum()), int(tie.sum()), int(near.sum()))
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
        k = min(_rows(x), LIVE_CHECK_INPUTS)
        live = torch_outputs(model_fn, _first(x, k), batch)
        err = float(np.abs(live.astype(np.float64) - out[:k]).max()) if live.size else 0.0
        if err > rtol * max(1.0, float(np.abs(live).max(initial=0.0))):
            res.problems.append(
                f"the exported program differs from the live model by {err:.3g} on the first {k} inputs "
                "(forward has effects torch.export does not capture)"
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
            if (er > rtol or et < 1.0) and forced and local:
                # The engine follows its own binary activations, not PyTorch's: compare it with the
                # reference running free as well (a tie PyTorch decided one way may go the other here).
                ea, er, et = compare_outputs(eng, reference.run(graph, list(_arrays(x)))[graph.outputs[0]])
            res.engine = {"max_abs_error": ea, "max_rel_error": er, "top1_agreement": et}
            if er > rtol or et < 1.0:
                res.problems.append(f"engine output differs from the reference by {ea:.3g} (top-1 agreement {et:.4f})")
    bar.update()
    if res.problems and not force:
        raise ConversionError("verification failed:\n  " + "\n  ".join(res.problems))
    return res
