"""The per-op summary of a converted graph: what is binary, what stayed float, what it costs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xnorinfer import ir

BINARY_KINDS = {"sign", "bconv2d", "blinear", "bmaxpool2d", "bconcat"}


@dataclass
class Row:
    path: str
    kind: str
    domain: str  # "binary" | "float"
    out_shape: tuple[int, ...]
    weight_bits: int  # storage of weights and per-channel params in bits
    float32_weight_bits: int  # the same parameters stored as float32
    binary_macs: int
    float_flops: int


def rows(graph: ir.Graph) -> list[Row]:
    out = []
    for op in graph.ops:
        t = graph.tensors[op.outputs[0]]
        spatial = int(np.prod(t.shape[1:-1])) if len(t.shape) > 2 else 1
        wbits = sum(int(p.size) * p.dtype.itemsize * 8 for p in op.params.values())
        f32bits = wbits
        bmacs = flops = 0
        if op.kind == "bconv2d":
            o, kh, kw, _ = op.params["weight"].shape
            k = kh * kw * op.attrs["in_channels"]
            bmacs = spatial * o * k
            f32bits = (o * k + 2 * o) * 32
        elif op.kind == "blinear":
            o = op.params["weight"].shape[0]
            bmacs = o * op.attrs["in_features"]
            f32bits = (bmacs + 2 * o) * 32
        elif op.kind == "conv2d":
            o, kh, kw, i = op.params["weight"].shape
            flops = 2 * spatial * o * kh * kw * i
        elif op.kind == "linear":
            flops = 2 * op.params["weight"].size
        else:
            n_in = int(np.prod(graph.tensors[op.inputs[0]].shape))
            flops = 0 if op.kind in BINARY_KINDS else n_in
        out.append(Row(op.name, op.kind, "binary" if op.kind in BINARY_KINDS else "float", t.shape,
                       wbits, f32bits, bmacs, flops))
    return out


def totals(graph: ir.Graph) -> dict[str, int | float]:
    rs = rows(graph)
    bits = sum(r.weight_bits for r in rs)
    f32 = sum(r.float32_weight_bits for r in rs)
    return {
        "binary_macs": sum(r.binary_macs for r in rs),
        "float_flops": sum(r.float_flops for r in rs),
        "weight_bytes": bits // 8,
        "float32_weight_bytes": f32 // 8,
        "compression": (f32 / bits) if bits else 1.0,
    }


def format_table(graph: ir.Graph) -> str:
    """A plain-text table, one line per IR op, then totals and the layers that stayed float."""
    head = (f"{'module':<28} {'op':<14} {'kind':<6} {'output (NHWC)':<18} {'weight bits':>11} {'bin MACs':>10} "
            f"{'FLOPs':>10}")
    lines = [head, "-" * len(head)]
    for r in rows(graph):
        lines.append(f"{r.path[:28]:<28} {r.kind:<14} {r.domain:<6} {str(r.out_shape):<18} {r.weight_bits:>11} "
                     f"{r.binary_macs:>10} {r.float_flops:>10}")
    t = totals(graph)
    lines.append("-" * len(head))
    lines.append(f"total: {t['binary_macs']} binary MACs, {t['float_flops']} float FLOPs, "
                 f"{t['weight_bytes']} weight bytes vs {t['float32_weight_bytes']} as float32 "
                 f"({t['compression']:.1f}x smaller)")
    for path, why in graph.metadata.get("float_layers", {}).items():
        lines.append(f"stayed float: {path}: {why}")
    for path, info in graph.metadata.get("binarized", {}).items():
        lines.append(f"declared binary: {path}: relative weight quantization error {info['relative_error']:.4f}")
    lines.append(f"sign(0) convention: {graph.metadata.get('sign_zero')}")
    if graph.metadata.get("threshold_ties"):
        lines.append(f"threshold ties (float64 value exactly on the sign threshold): "
                     f"{graph.metadata['threshold_ties']}")
    if graph.metadata.get("threshold_float32_disagreements"):
        lines.append(f"float32 evaluation disagrees with float64 (near-ties): "
                     f"{graph.metadata['threshold_float32_disagreements']}")
    v = graph.metadata.get("verification")
    if v:
        lines.append(f"verification on {v['n_inputs']} inputs: max abs error {v['max_abs_error']:.3g}, "
                     f"top-1 agreement {v['top1_agreement']:.4f}, engine: {v['engine']}")
    return "\n".join(lines)
