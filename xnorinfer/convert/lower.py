"""Lowering: the recognised internal `Model` (PyTorch NCHW shapes) -> `ir.Graph` (NHWC).

Conv weights become OHWI, binary weights are packed (pack.py), binary epilogues become
threshold/flip (already folded) or multiplier/bias (fold.affine), and a flatten of a (C, H, W)
tensor permutes the following (b)linear's weight columns to the IR's (H, W, C) order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from xnorinfer import ir
from xnorinfer.convert import fold
from xnorinfer.convert.attrs import (
    ActSignAttrs,
    AdaptivePoolAttrs,
    AffineAttrs,
    AvgPoolAttrs,
    BinaryConvAttrs,
    BinaryLayerAttrs,
    CompareAttrs,
    ConvAttrs,
    ConvTransposeAttrs,
    HardtanhAttrs,
    PadAttrs,
    PoolAttrs,
    PReLUAttrs,
    ResizeAttrs,
    SliceAttrs,
)
from xnorinfer.convert.graph import ConversionError, Model, Node
from xnorinfer.convert.pack import pack_conv_weight, pack_linear_weight
from xnorinfer.ops import OPS
from xnorinfer.ops.image_ops import torch_to_ct_weight

NEAREST = {
    "where": "where(x >= t, 1, -1) as a sign, or PReLU",
    "ge": "a comparison used as a sign: where(x >= t, 1, -1) or (x >= t).float() * 2 - 1",
    "gt": "a comparison used as a sign",
    "le": "a comparison used as a sign",
    "lt": "a comparison used as a sign",
    "to_float": "(x >= t).float() * 2 - 1",
    "sub": "x - constant (affine) or a residual add",
    "div": "division by a constant (affine)",
    "batch_norm": "BatchNorm on an NCHW or (N, F) tensor",
    "mul": "channel-wise multiply by a constant or by a (N, C) tensor",
    "reshape": "flatten(1) / view(N, -1) of an NCHW tensor before a linear",
    "add": "add of two same-shape tensors or of a per-channel constant",
    "neg": "negation (affine)",
    "pad": "F.pad of an NCHW tensor (a ±1 pad of a sign right before a binary conv)",
    "slice": "slicing along C, H or W of an NCHW tensor",
}


@dataclass
class _Val:
    name: str  # IR tensor name
    dtype: str
    shape: tuple[int, ...]  # NHWC / (N, F), batch 1
    perm: np.ndarray | None = None  # for (N, F): IR column j holds PyTorch column perm[j]
    as_4d: bool = False  # a (N, C) tensor standing for PyTorch's (N, C, 1, 1)


def _nhwc(shape: tuple[int, ...]) -> tuple[int, ...]:
    if len(shape) == 4:
        return (1, shape[2], shape[3], shape[1])
    return (1,) + tuple(shape[1:])


def lower(model: Model) -> ir.Graph:
    """The recognised `model` as a validated `ir.Graph`: one handler per node kind (`HANDLERS`)."""
    cx = Lowering(model)
    in_name = cx.lower_input()
    for node in model.nodes:
        shape = _nhwc(model.shapes[node.output])
        handler = HANDLERS.get(node.op)
        if handler is None and _is_plain_unary(node.op):
            handler = _elementwise  # an IR op of the same name that takes the node as it is
        if handler is None:
            raise cx.unsupported(node)
        handler(cx, node, shape)
    graph = ir.Graph(
        inputs=[in_name],
        outputs=cx.lower_outputs(),
        tensors=cx.tensors,
        ops=cx.ops,
        metadata={"binary_outputs": cx.binary_outputs},
    )
    graph.validate()
    return graph


def _is_plain_unary(kind: str) -> bool:
    """A one-input f32 IR op without attributes or parameters: a converter node of that name lowers as is."""
    d = OPS.get(kind)
    return d is not None and d.inputs == (1, 1) and d.in_dtype == "f32" and not d.attrs and not d.params


class Lowering:
    """The IR being built: its tensors and ops, and the IR value standing for each converter value."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.tensors: dict[str, ir.Tensor] = {}
        self.ops: list[ir.Op] = []
        self.vals: dict[str, _Val] = {}  # converter value -> IR value ("<value>#bits": its bits when unpacked)
        self.binary_outputs: dict[str, dict[str, Any]] = {}  # bits tensors verification compares with PyTorch

    def new_tensor(self, stem: str, shape: tuple[int, ...], dtype: str) -> str:
        name = stem
        i = 1
        while name in self.tensors:
            name, i = f"{stem}_{i}", i + 1
        self.tensors[name] = ir.Tensor(name, tuple(int(d) for d in shape), dtype)
        return name

    def lower_input(self) -> str:
        x0 = self.model.inputs[0]
        shape = self.model.shapes[x0]
        if len(shape) == 2:  # an (N, F) input: the engine takes it as NCHW (N, F, 1, 1), then flattens
            f = shape[1]
            in_name = self.new_tensor("input", (1, 1, 1, f), "f32")
            flat = self.new_tensor("input_flat", (1, f), "f32")
            self.ops.append(ir.Op("flatten", "input", [in_name], [flat]))
            self.vals[x0] = _Val(flat, "f32", (1, f))
        else:
            in_name = self.new_tensor("input", _nhwc(shape), "f32")
            self.vals[x0] = _Val(in_name, "f32", _nhwc(shape))
        return in_name

    def lower_outputs(self) -> list[str]:
        outputs = []
        for o in self.model.outputs:
            v = self.vals[o]
            if v.dtype == "bits":  # a model that ends in a sign: the engine returns ±1.0
                v = self.f32(o, Node("unpack", [o], o, path="output"))
            if v.perm is not None:
                raise ConversionError(
                    "a graph output is a flattened (C, H, W) tensor in NHWC order; "
                    "end the model with a linear layer or a global pool"
                )
            outputs.append(v.name)
        return outputs

    def f32(self, value: str, node: Node) -> _Val:
        """`value` as a float tensor, unpacking bits (once) if it is binary."""
        v = self.vals[value]
        if v.dtype == "f32":
            return v
        out = self.new_tensor(f"{v.name}_unpacked", v.shape, "f32")
        self.ops.append(ir.Op("unpack", node.path or node.output, [v.name], [out]))
        u = _Val(out, "f32", v.shape, v.perm, v.as_4d)
        self.vals[value] = u  # later float readers share it; bits readers use the bits tensor via the op input
        self.vals[value + "#bits"] = v
        return u

    def bits(self, value: str, node: Node) -> _Val:
        v = self.vals.get(value + "#bits", self.vals[value])
        if v.dtype != "bits":
            raise ConversionError(f"{node.op} at {node.path or node.output} needs a binarized input")
        return v

    def emit(
        self,
        node: Node,
        kind: str,
        inputs: list[_Val],
        shape: tuple[int, ...],
        dtype: str,
        attrs: dict[str, Any] | None = None,
        params: dict[str, np.ndarray] | None = None,
        perm: np.ndarray | None = None,
    ) -> _Val:
        out = self.new_tensor(node.output, shape, dtype)
        op = ir.Op(kind, node.path or node.output, [v.name for v in inputs], [out], attrs or {}, params or {})
        op.validate()
        self.ops.append(op)
        val = _Val(out, dtype, shape, perm)
        self.vals[node.output] = val
        return val

    def record_binary_output(self, out: _Val, node: Node) -> dict[str, Any]:
        """Mark a bits tensor for verification against the PyTorch value of `node.origin`."""
        info = {"fx": node.origin, "path": node.path, "module": self.model.metadata["fx_paths"].get(node.origin, "")}
        self.binary_outputs[out.name] = info
        return info

    def const(self, node: Node, index: int) -> np.ndarray:
        """The constant operand `index` of `node` (a weight or bias); unsupported if it is computed."""
        value = self.model.const(node.inputs[index])
        if value is None:
            raise self.unsupported(node)
        return value

    def unsupported(self, node: Node) -> ConversionError:
        return ConversionError(
            f"unsupported op '{node.op}' in {node.where or node.path or '<top level>'} "
            f"(as used here); nearest supported pattern: {NEAREST.get(node.op, 'see docs/ops.md')}"
        )


def _permuted(p: np.ndarray, v: _Val) -> np.ndarray:
    """A per-feature parameter in the IR's column order of `v` (a flattened NHWC tensor)."""
    return p if v.perm is None else p[v.perm]


Shape = tuple[int, ...]
Handler = Callable[[Lowering, Node, Shape], None]


def _conv2d(cx: Lowering, node: Node, shape: Shape) -> None:
    x = cx.f32(node.inputs[0], node)
    a = node.attrs_as(ConvAttrs)
    if x.as_4d:  # a conv of a pooled (N, C, 1, 1) vector (an SE gate): only its kernel centre sees data
        _conv_of_vector(cx, node, x, a)
        return
    w = np.transpose(cx.const(node, 1), (0, 2, 3, 1)).astype(np.float32)
    params = {"weight": np.ascontiguousarray(w)}
    if len(node.inputs) > 2:
        params["bias"] = cx.const(node, 2).astype(np.float32)
    attrs: dict[str, Any] = {"stride": list(a.stride), "padding": list(a.padding)}
    if a.groups != 1:
        attrs["groups"] = a.groups
    if a.dilation != (1, 1):
        attrs["dilation"] = list(a.dilation)
    cx.emit(node, "conv2d", [x], shape, "f32", attrs, params)


def _conv_of_vector(cx: Lowering, node: Node, x: _Val, a: ConvAttrs) -> None:
    """conv2d of a (N, C) value standing for (N, C, 1, 1) -> linear (N, O), still standing for (N, O, 1, 1)."""
    w = cx.const(node, 1)
    kh, kw = w.shape[2:]
    if a.groups != 1 or x.perm is not None or kh - 1 - a.padding[0] != kh // 2 or kw - 1 - a.padding[1] != kw // 2:
        raise cx.unsupported(node)  # (an output other than 1x1, or one that is not the kernel centre)
    if a.dilation != (1, 1) and (kh, kw) != (1, 1):
        raise cx.unsupported(node)  # (a dilated kernel's taps)
    params = {"weight": np.ascontiguousarray(w[:, :, kh // 2, kw // 2].astype(np.float32))}
    if len(node.inputs) > 2:
        params["bias"] = cx.const(node, 2).astype(np.float32)
    out = cx.emit(node, "linear", [x], (x.shape[0], int(w.shape[0])), "f32", {}, params)
    out.as_4d = True


def _linear(cx: Lowering, node: Node, shape: Shape) -> None:
    x = cx.f32(node.inputs[0], node)
    w = cx.const(node, 1)
    w = w if x.perm is None else w[:, x.perm]
    params = {"weight": np.ascontiguousarray(w.astype(np.float32))}
    if len(node.inputs) > 2:
        params["bias"] = cx.const(node, 2).astype(np.float32)
    cx.emit(node, "linear", [x], shape, "f32", {}, params)


def _binary_layer(cx: Lowering, node: Node, shape: Shape) -> None:
    """bconv2d / blinear: packed weights, then threshold/flip (bits out) or multiplier/bias (floats out)."""
    x = cx.bits(node.inputs[0], node)
    a = node.attrs_as(BinaryLayerAttrs)
    ws = a.weight_sign
    attrs: dict[str, Any]
    if isinstance(a, BinaryConvAttrs):
        attrs = {
            "stride": list(a.stride),
            "padding": list(a.padding),
            "pad_mode": a.pad_mode,
            "in_channels": int(ws.shape[1]),
        }
        params = {"weight": pack_conv_weight(ws)}
    else:
        ws = ws if x.perm is None else ws[:, x.perm]
        attrs = {"in_features": int(ws.shape[1])}
        params = {"weight": pack_linear_weight(ws)}
    if a.sign is not None:
        attrs["output"] = "bits"
        params.update(threshold=a.sign.threshold.astype(np.int32), flip=a.sign.flip.astype(np.uint8))
        cx.record_binary_output(cx.emit(node, node.op, [x], shape, "bits", attrs, params), node)
    else:
        attrs["output"] = "float"
        m, b = fold.affine(a.chain, a.alpha)
        params.update(multiplier=m, bias=b)
        cx.emit(node, node.op, [x], shape, "f32", attrs, params)


def _act_sign(cx: Lowering, node: Node, shape: Shape) -> None:
    x = cx.f32(node.inputs[0], node)
    a = node.attrs_as(ActSignAttrs)
    thr = a.threshold.astype(np.float32)
    if x.perm is not None:
        if thr.shape[0] != 1:
            raise cx.unsupported(node)
        thr = thr[:, x.perm]
    params = {"threshold": thr[0] if thr.shape[0] == 1 else thr}
    zero = "-1" if a.sign_zero == "-1" else "+1"
    out = cx.emit(node, "sign", [x], shape, "bits", {"sign_zero": zero}, params, perm=x.perm)
    if node.origin:
        info = cx.record_binary_output(out, node)
        if x.perm is not None:
            info["perm"] = [int(i) for i in x.perm]


def _affine(cx: Lowering, node: Node, shape: Shape) -> None:
    x = cx.f32(node.inputs[0], node)
    a = node.attrs_as(AffineAttrs)
    params = {"scale": _permuted(a.scale, x).astype(np.float32), "shift": _permuted(a.shift, x).astype(np.float32)}
    cx.emit(node, "affine", [x], shape, "f32", {}, params, perm=x.perm)


def _prelu(cx: Lowering, node: Node, shape: Shape) -> None:
    x = cx.f32(node.inputs[0], node)
    if not isinstance(node.attrs, PReLUAttrs):  # a prelu whose slope is not a constant
        raise cx.unsupported(node)
    a = node.attrs
    params = {"slope": _permuted(np.asarray(a.slope), x).astype(np.float32)}
    if a.pre_shift is not None:
        params["pre_shift"] = _permuted(a.pre_shift, x).astype(np.float32)
    if a.post_shift is not None:
        params["post_shift"] = _permuted(a.post_shift, x).astype(np.float32)
    if len(params) == 2:  # the IR wants both shifts or neither
        c = x.shape[-1]
        params.setdefault("pre_shift", np.zeros(c, np.float32))
        params.setdefault("post_shift", np.zeros(c, np.float32))
    cx.emit(node, "prelu", [x], shape, "f32", {}, params, perm=x.perm)


def _elementwise(cx: Lowering, node: Node, shape: Shape) -> None:
    """relu, sigmoid: any layout; softmax, log_softmax: over the features in PyTorch's order only."""
    x = cx.f32(node.inputs[0], node)
    if node.op in ("softmax", "log_softmax") and x.perm is not None:
        raise cx.unsupported(node)
    out = cx.emit(node, node.op, [x], x.shape if x.as_4d else shape, "f32", perm=x.perm)
    out.as_4d = x.as_4d


def _hardtanh(cx: Lowering, node: Node, shape: Shape) -> None:
    x = cx.f32(node.inputs[0], node)
    a = node.attrs_as(HardtanhAttrs)
    cx.emit(node, "hardtanh", [x], shape, "f32", {"min_val": a.min_val, "max_val": a.max_val}, perm=x.perm)


def _compare(cx: Lowering, node: Node, shape: Shape) -> None:
    """compare: x OP threshold[c] as 0.0 / 1.0 floats; one threshold when all channels share it."""
    x = cx.f32(node.inputs[0], node)
    a = node.attrs_as(CompareAttrs)
    thr = _permuted(np.asarray(a.threshold), x).astype(np.float32)
    if np.all(thr == thr[0]):
        thr = thr[:1]
    cx.emit(node, "compare", [x], shape, "f32", {"cmp": a.cmp}, {"threshold": thr}, perm=x.perm)


def _unary_math(cx: Lowering, node: Node, shape: Shape) -> None:
    """round, floor, abs, neg: any layout."""
    x = cx.f32(node.inputs[0], node)
    out = cx.emit(node, node.op, [x], shape, "f32", perm=x.perm)
    out.as_4d = x.as_4d


def _pool_attrs(a: PoolAttrs) -> dict[str, Any]:
    return {"kernel": list(a.kernel), "stride": list(a.stride), "padding": list(a.padding)}


def _float_pool(cx: Lowering, node: Node, shape: Shape) -> None:
    """maxpool2d / avgpool2d on floats."""
    x = cx.f32(node.inputs[0], node)
    a = node.attrs_as(PoolAttrs)
    attrs = _pool_attrs(a)
    if node.op == "avgpool2d":
        attrs["count_include_pad"] = node.attrs_as(AvgPoolAttrs).count_include_pad
    if a.ceil_mode:
        attrs["ceil_mode"] = True
    cx.emit(node, node.op, [x], shape, "f32", attrs)


def _bmaxpool2d(cx: Lowering, node: Node, shape: Shape) -> None:
    x = cx.bits(node.inputs[0], node)
    out = cx.emit(node, "bmaxpool2d", [x], shape, "bits", _pool_attrs(node.attrs_as(PoolAttrs)))
    if node.origin:
        cx.record_binary_output(out, node)


def _global_avgpool(cx: Lowering, node: Node, shape: Shape) -> None:
    x = cx.f32(node.inputs[0], node)
    torch_shape = cx.model.shapes[node.output]
    out = cx.emit(node, "global_avgpool", [x], (1, shape[-1] if len(shape) == 2 else torch_shape[1]), "f32")
    out.as_4d = len(torch_shape) == 4


def _add_mul(cx: Lowering, node: Node, shape: Shape) -> None:
    """add / mul of two tensors: same shape, or mul of NHWC by a per-channel (N, C) tensor."""
    if not all(v in cx.vals for v in node.inputs):  # (a constant operand: affine, recognised earlier)
        raise cx.unsupported(node)
    xa, xb = (cx.f32(v, node) for v in node.inputs)
    if node.op == "mul" and xa.as_4d and not xb.as_4d:
        xa, xb = xb, xa
    same = xa.shape == xb.shape and xa.as_4d == xb.as_4d
    if not same and not (node.op == "mul" and xb.as_4d and len(xa.shape) == 4 and xb.shape[-1] == xa.shape[-1]):
        raise cx.unsupported(node)
    if (xa.perm is None) != (xb.perm is None) or (xa.perm is not None and not np.array_equal(xa.perm, xb.perm)):
        raise cx.unsupported(node)
    out = cx.emit(node, node.op, [xa, xb], xa.shape, "f32", perm=xa.perm)
    out.as_4d = xa.as_4d


def _concat(cx: Lowering, node: Node, shape: Shape) -> None:
    """concat (floats) / bconcat (bits) along channels."""
    on_bits = node.op == "bconcat"
    ins = [cx.bits(v, node) if on_bits else cx.f32(v, node) for v in node.inputs]
    if any(v.perm is not None or v.as_4d for v in ins):
        raise cx.unsupported(node)
    out = cx.emit(node, node.op, ins, shape, "bits" if on_bits else "f32")
    if on_bits and node.origin:
        cx.record_binary_output(out, node)


def _reshape(cx: Lowering, node: Node, shape: Shape) -> None:
    """A reshape that keeps the data (alias), or a flatten of (C, H, W) (permuting the next linear)."""
    src = cx.vals.get(node.inputs[0] + "#bits", cx.vals[node.inputs[0]])
    tshape = cx.model.shapes[node.inputs[0]]
    oshape = cx.model.shapes[node.output]
    if tuple(tshape[1:]) == tuple(oshape[1:]):
        cx.vals[node.output] = src
    elif len(tshape) == 4 and len(oshape) == 2 and src.as_4d:
        cx.vals[node.output] = _Val(src.name, src.dtype, src.shape, src.perm, as_4d=False)
    elif len(tshape) == 4 and len(oshape) == 2 and oshape[1] == int(np.prod(tshape[1:])):
        # The IR flattens in NHWC order; the next (b)linear gets its columns permuted to match.
        # Bits flatten as bits (bflatten): no unpacking between a sign and a binary linear.
        c, h, w = tshape[1:]
        perm = np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)
        kind = "bflatten" if src.dtype == "bits" else "flatten"
        cx.emit(node, kind, [src], (1, c * h * w), src.dtype, perm=None if h * w == 1 else perm)
    elif len(tshape) == 2 and len(oshape) == 4 and oshape[2:] == (1, 1):
        cx.vals[node.output] = _Val(src.name, src.dtype, src.shape, src.perm, as_4d=True)
    else:
        raise cx.unsupported(node)


def _pad(cx: Lowering, node: Node, shape: Shape) -> None:
    """F.pad of an NCHW float tensor (a ±1 pad of bits before a binary conv is that conv's pad_mode)."""
    x = cx.f32(node.inputs[0], node)
    if len(x.shape) != 4 or x.perm is not None:
        raise cx.unsupported(node)
    a = node.attrs_as(PadAttrs)
    attrs: dict[str, Any] = {"pad_h": [a.top, a.bottom], "pad_w": [a.left, a.right]}
    if a.mode == "constant":
        attrs.update(pad_c=[a.front, a.back], value=a.value)
    else:
        attrs["mode"] = a.mode
    cx.emit(node, "pad", [x], shape, "f32", attrs)


def _slice(cx: Lowering, node: Node, shape: Shape) -> None:
    """x[start:stop:step] along C, H or W (PyTorch dims 1, 2, 3); along C only for an (N, F) tensor."""
    x = cx.f32(node.inputs[0], node)
    a = node.attrs_as(SliceAttrs)
    axis = {1: "c", 2: "h", 3: "w"}.get(a.dim) if len(cx.model.shapes[node.inputs[0]]) == 4 else None
    if len(x.shape) == 2 and a.dim == 1:
        axis = "c"
    if axis is None or x.perm is not None or (len(x.shape) == 2 and axis != "c"):
        raise cx.unsupported(node)
    physical = {"h": 1, "w": 2, "c": len(x.shape) - 1}[axis]  # the IR's physical axis (NHWC or (N, F))
    attrs = {"axis": physical, "start": a.start, "stop": a.stop, "step": a.step}
    out = cx.emit(node, "slice", [x], shape if not x.as_4d else (1, shape[-1]), "f32", attrs)
    out.as_4d = x.as_4d


def _image(cx: Lowering, node: Node) -> _Val:
    """The float NHWC image input of an image op (conv_transpose2d, resize, adaptive pools)."""
    x = cx.f32(node.inputs[0], node)
    if len(x.shape) != 4 or x.perm is not None or x.as_4d:
        raise cx.unsupported(node)
    return x


def _conv_transpose2d(cx: Lowering, node: Node, shape: Shape) -> None:
    x = _image(cx, node)
    a = node.attrs_as(ConvTransposeAttrs)
    params = {"weight": torch_to_ct_weight(cx.const(node, 1), a.groups).astype(np.float32)}
    if len(node.inputs) > 2:
        params["bias"] = cx.const(node, 2).astype(np.float32)
    attrs: dict[str, Any] = {"stride": list(a.stride), "padding": list(a.padding)}
    if a.output_padding != (0, 0):
        attrs["output_padding"] = list(a.output_padding)
    if a.dilation != (1, 1):
        attrs["dilation"] = list(a.dilation)
    if a.groups != 1:
        attrs["groups"] = a.groups
    cx.emit(node, "conv_transpose2d", [x], shape, "f32", attrs, params)


def _resize(cx: Lowering, node: Node, shape: Shape) -> None:
    x = _image(cx, node)
    a = node.attrs_as(ResizeAttrs)
    attrs: dict[str, Any] = {"size": list(shape[1:3]), "mode": a.mode}
    if a.align_corners:
        attrs["align_corners"] = True
    for key, scale in zip(("scale_h", "scale_w"), a.scales, strict=True):
        if scale is not None and scale > 0:
            attrs[key] = float(scale)
    cx.emit(node, "resize", [x], shape, "f32", attrs)


def _adaptive_pool(cx: Lowering, node: Node, shape: Shape) -> None:
    x = _image(cx, node)
    cx.emit(node, node.op, [x], shape, "f32", {"size": list(node.attrs_as(AdaptivePoolAttrs).size)})


HANDLERS: dict[str, Handler] = {
    "conv2d": _conv2d,
    "linear": _linear,
    "bconv2d": _binary_layer,
    "blinear": _binary_layer,
    "act_sign": _act_sign,
    "affine": _affine,
    "prelu": _prelu,
    "relu": _elementwise,
    "sigmoid": _elementwise,
    "softmax": _elementwise,
    "log_softmax": _elementwise,
    "hardtanh": _hardtanh,
    "maxpool2d": _float_pool,
    "avgpool2d": _float_pool,
    "bmaxpool2d": _bmaxpool2d,
    "global_avgpool": _global_avgpool,
    "add": _add_mul,
    "mul": _add_mul,
    "concat": _concat,
    "bconcat": _concat,
    "reshape": _reshape,
    "pad": _pad,
    "slice": _slice,
    "compare": _compare,
    **dict.fromkeys(("round", "floor", "abs", "neg"), _unary_math),
    "conv_transpose2d": _conv_transpose2d,
    "resize": _resize,
    **dict.fromkeys(("adaptive_avgpool2d", "adaptive_maxpool2d"), _adaptive_pool),
}
