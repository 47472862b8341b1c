"""The per-op summary of a converted graph: what is binary, what stayed float, what it costs."""

from __future__ import annotations

from xnorinfer import ir
from xnorinfer.cost import OpCost, op_cost
from xnorinfer.cost import format_table as cost_table


def rows(graph: ir.Graph) -> list[OpCost]:
    """The cost of every op (xnorinfer.cost: the same model `xnorinfer inspect` uses)."""
    out = []
    for op in graph.ops:
        params = {k: (p.shape, p.dtype.name) for k, p in op.params.items()}
        out.append(
            op_cost(
                op.name,
                op.kind,
                op.attrs,
                params,
                graph.tensors[op.inputs[0] if op.inputs else op.outputs[0]].shape,  # constant: no input
                graph.tensors[op.outputs[0]].shape,
            )
        )
    return out


def format_table(graph: ir.Graph) -> str:
    """A plain-text table, one line per IR op, then totals and the layers that stayed float."""
    lines = cost_table(rows(graph))
    warned = graph.metadata.get("binary_warnings", {})
    for path, why in graph.metadata.get("float_layers", {}).items():
        lines.append(f"stayed float: {path}: {why}")
    for path, why in warned.items():
        lines.append(f"warning: {path} looks meant to be binary but stayed float: {why}")
    for path, how in graph.metadata.get("weight_plane_layers", {}).items():
        lines.append(f"{'ternary' if how.startswith('ternary') else 'binary-weight'}: {path}: {how}")
    for path, how in graph.metadata.get("bit_serial_layers", {}).items():
        lines.append(f"bit-serial: {path}: {how}")
    for path, how in graph.metadata.get("grouped_binary_layers", {}).items():
        lines.append(f"grouped binary: {path}: {how}")
    for path, info in graph.metadata.get("binarized", {}).items():
        lines.append(f"declared binary: {path}: relative weight quantization error {info['relative_error']:.4f}")
        if info.get("zero_weights"):
            lines.append(
                f"warning: {path}: {info['zero_weights']} latent weight(s) are exactly 0.0; binarized "
                "they become +alpha where torch.sign gives 0"
            )
    lines.append(f"sign(0) convention: {graph.metadata.get('sign_zero')}")
    if graph.metadata.get("threshold_ties"):
        lines.append(
            f"threshold ties (float64 value exactly on the sign threshold): {graph.metadata['threshold_ties']}"
        )
    if graph.metadata.get("threshold_float32_disagreements"):
        lines.append(
            f"float32 evaluation disagrees with float64 (near-ties): "
            f"{graph.metadata['threshold_float32_disagreements']}"
        )
    v = graph.metadata.get("verification")
    if v:
        lines.append(
            f"verification on {v['n_inputs']} inputs: the reference matches PyTorch to "
            f"{v['max_abs_error']:.3g} (max abs error), top-1 agreement {v['top1_agreement']:.2%}; "
            f"{_engine_sentence(v.get('engine'))}"
        )
        if v.get("top1_ties"):
            lines.append(
                f"inputs whose top class differs from PyTorch's only by a tie of the two best logits (counted "
                f"as agreeing; a ±1 head gives equal integer sums): {v['top1_ties']} of {v['n_inputs']}"
            )
        layers = v.get("layers", {}).values()
        rounding = sum(layer.get("rounding_ties", 0) for layer in layers)
        if rounding:
            total = sum(layer["total"] for layer in layers)
            lines.append(
                f"binary activations that differ from PyTorch only at float32 rounding level (ties): "
                f"{rounding} of {total}; beyond rounding: {sum(layer['mismatches'] for layer in layers)}"
            )
    return "\n".join(lines)


def _engine_sentence(engine: dict | None) -> str:
    if not engine:
        return "the C++ engine was not run"
    if "error" in engine:
        return f"the C++ engine could not run the graph ({engine['error']})"
    return (
        f"the C++ engine matches the reference to {engine['max_abs_error']:.3g} (max abs error, "
        f"{engine['max_rel_error']:.3g} relative), top-1 agreement {engine['top1_agreement']:.2%}"
    )
