"""XNOR-Net's beta map into the binary conv's epilogue (a pass over the lowered `ir.Graph`).

XNOR-Net (Rastegari et al. 2016) scales the binary conv's output by K = box filter of mean_c |x|,
one value per output pixel, shared by every output channel. Lowered, that is

    s = bconv2d(bits)                  float output, multiplier 1, bias 0: s itself
    y = binary mul(s, K)               K: f32 (N, OH, OW, 1), broadcast over channels
    z = affine(y, scale, shift)        optional, alone reading y (alpha, BatchNorm)

and becomes one ``bconv2d(bits, K)`` whose epilogue computes ``fma(multiplier, fl(s * K), bias)``
(docs/ir.md, docs/exactness.md): with the affine absorbed multiplier = scale, bias = shift, else
multiplier 1, bias -0.0 (``fma(1, v, -0.0) == v`` for every float v, signed zeros included). The
engine's unfused ops compute the same float32 operations, so the fusion changes no bit. K itself
(abs, mean over channels, average pool) stays float ops.

A bconv2d whose multiplier/bias are not 1/0 (a scale folded before the K multiply) is left alone:
``fl(fl(alpha * s) * K)`` is not the epilogue's order.
"""

from __future__ import annotations

import numpy as np

from xnorinfer import ir


def _index(graph: ir.Graph, op: ir.Op) -> int:
    """The position of `op` itself (ops compare by value, and their arrays cannot)."""
    return next(i for i, o in enumerate(graph.ops) if o is op)


def _readers(graph: ir.Graph, tensor: str) -> list[ir.Op]:
    return [op for op in graph.ops if tensor in op.inputs]


def _sole_reader(graph: ir.Graph, tensor: str) -> ir.Op | None:
    """The one op reading `tensor` once, when it is not a graph output; else None."""
    users = _readers(graph, tensor)
    if len(users) != 1 or tensor in graph.outputs or users[0].inputs.count(tensor) != 1:
        return None
    return users[0]


def _plain_sum(op: ir.Op) -> bool:
    """A float-output bconv2d without a pixel scale whose output is the exact sum s (multiplier 1, bias 0)."""
    if op.kind != "bconv2d" or op.attrs.get("output") != "float" or len(op.inputs) != 1:
        return False
    return bool(np.all(op.params["multiplier"] == 1.0) and np.all(op.params["bias"] == 0.0))


def _pixel_scale(graph: ir.Graph, conv: ir.Op, mul: ir.Op) -> str | None:
    """The K that `mul` multiplies `conv`'s output by, when it is a per-pixel (N, OH, OW, 1) f32 map."""
    if mul.kind != "binary" or mul.attrs.get("op") != "mul" or len(mul.inputs) != 2:
        return None
    s = conv.outputs[0]
    k = mul.inputs[1] if mul.inputs[0] == s else mul.inputs[0]
    if k == s:
        return None
    out_shape = tuple(graph.tensors[s].shape)
    kt = graph.tensors[k]
    if kt.dtype != "f32" or tuple(kt.shape) != (*out_shape[:3], 1):
        return None
    if tuple(graph.tensors[mul.outputs[0]].shape) != out_shape:
        return None
    return k


def fuse_pixel_scale(graph: ir.Graph) -> tuple[ir.Graph, int]:
    """Fuse every ``mul(bconv2d sum, K)`` (and an affine alone after it) into the bconv2d. Returns the
    graph (changed in place) and the number of binary convs that now take K."""
    fused = 0
    for conv in list(graph.ops):
        if not _plain_sum(conv):
            continue
        mul = _sole_reader(graph, conv.outputs[0])
        k = None if mul is None else _pixel_scale(graph, conv, mul)
        if mul is None or k is None:
            continue
        out_c = graph.tensors[conv.outputs[0]].shape[-1]
        multiplier = np.ones(out_c, np.float32)
        bias = np.full(out_c, -0.0, np.float32)
        last = mul
        after = _sole_reader(graph, mul.outputs[0])
        if after is not None and after.kind == "affine":
            multiplier = after.params["scale"].astype(np.float32)
            bias = after.params["shift"].astype(np.float32)
            last = after
        # The fused op takes the place of the last op it replaces: both of mul's inputs exist there.
        del graph.tensors[conv.outputs[0]]
        if last is not mul:
            del graph.tensors[mul.outputs[0]]
        conv.inputs = [conv.inputs[0], k]
        conv.outputs = list(last.outputs)
        conv.params["multiplier"] = multiplier
        conv.params["bias"] = bias
        graph.ops[_index(graph, last)] = conv
        del graph.ops[_index(graph, conv)]  # the first occurrence: its old place, before `last`'s
        if last is not mul:
            del graph.ops[_index(graph, mul)]
        fused += 1
    return graph, fused
