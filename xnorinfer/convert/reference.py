"""The canonical reference: a numpy interpreter of an `ir.Graph`, following docs/ir.md.

Each op's semantics is its declaration's `reference` (xnorinfer.ops). Binary ops are exact integer
arithmetic (int64); float ops run in float64 (values of f32 tensors are kept as float64 arrays).
``bits`` tensors are held packed (uint64, as the runtime holds them).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

import numpy as np

from xnorinfer import ir
from xnorinfer.bits import unpack_last
from xnorinfer.ops import op_def

__all__ = ["run", "bits_of", "sign_margins"]


def run(
    graph: ir.Graph,
    x_nchw: np.ndarray | Sequence[np.ndarray],
    *,
    keep_all: bool = False,
    keep: Collection[str] = (),
    override: Callable[[str, np.ndarray], np.ndarray] | None = None,
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
    """
    xs = list(x_nchw) if isinstance(x_nchw, (list, tuple)) else [x_nchw]
    if len(xs) != len(graph.inputs):
        raise ValueError(f"reference.run: the graph takes {len(graph.inputs)} inputs, got {len(xs)}")
    n = len(xs[0])
    if graph.metadata.get("per_image") and n > 1:  # axis 0 is not the batch: one image at a time
        if override is not None:
            raise ValueError("reference.run: override needs a batched graph or one image")
        runs = [run(graph, [a[i : i + 1] for a in xs], keep_all=keep_all, keep=keep) for i in range(n)]
        return {name: np.concatenate([r[name] for r in runs]) for name in runs[0]}
    env: dict[str, np.ndarray] = {}
    for name, a in zip(graph.inputs, xs, strict=True):
        x = np.asarray(a, dtype=np.float32).astype(np.float64)
        if x.ndim == 2 and len(graph.tensors[name].shape) == 4:  # an (N, F) model input
            x = x.reshape(len(x), 1, 1, -1)
        elif x.ndim == 4:
            x = np.transpose(x, (0, 2, 3, 1))
        env[name] = x
    wanted = set(graph.outputs) | set(keep)
    last_use = {v: i for i, op in enumerate(graph.ops) for v in op.inputs}
    for i, op in enumerate(graph.ops):
        ins = [env[v] for v in op.inputs]
        out = op_def(op.kind).reference(op, ins, [graph.tensors[v] for v in op.inputs])
        env[op.outputs[0]] = out if override is None else override(op.outputs[0], out)
        if not keep_all:
            for v in set(op.inputs):
                if last_use[v] == i and v not in wanted:
                    del env[v]
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
