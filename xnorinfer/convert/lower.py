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
from xnorinfer.bits import pack_last
from xnorinfer.convert import fold
from xnorinfer.convert.attrs import (
    ActSignAttrs,
    AdaptivePoolAttrs,
    AffineAttrs,
    AvgPoolAttrs,
    AxisAttrs,
    BinaryConvAttrs,
    BinaryLayerAttrs,
    BinaryOpAttrs,
    BitPlaneAttrs,
    CompareAttrs,
    ConvAttrs,
    ConvTransposeAttrs,
    HardtanhAttrs,
    IndexAttrs,
    LayerNormAttrs,
    PadAttrs,
    PermuteAttrs,
    PoolAttrs,
    PReLUAttrs,
    ReduceAttrs,
    ResizeAttrs,
    SliceAttrs,
    UnaryAttrs,
    WeightPlaneAttrs,
)
from xnorinfer.convert.graph import ConversionError, Model, Node, collapse_uniform
from xnorinfer.convert.pack import pack_conv_weight, pack_linear_weight
from xnorinfer.ops import OPS
from xnorinfer.ops.image_ops import torch_to_ct_weight

NEAREST = {
    "batch_norm": "BatchNorm on an NCHW or (N, F) tensor",
    "pad": "F.pad of an NCHW tensor (a ±1 pad of a sign right before a binary conv)",
    "act_sign": "a sign of a float tensor with one threshold per channel (dim 1)",
}


@dataclass
class _Val:
    """The IR tensor standing for a converter value, and how its physical axes map to PyTorch's.

    Values lowered by the image/matrix handlers leave `axes` None: their layout is then NHWC for a 4-D
    value, (N, F) for a 2-D one (with `perm` for a flattened (C, H, W) tensor held in (H, W, C) order, and
    `as_4d` for a pooled (N, C) vector standing for (N, C, 1, 1)), and PyTorch's order for other ranks.
    Values lowered by the general handlers set `axes`: physical axis i holds PyTorch axis axes[i].
    """

    name: str  # IR tensor name
    dtype: str
    shape: tuple[int, ...]  # physical shape, batch 1
    perm: np.ndarray | None = None  # for (N, F): IR column j holds PyTorch column perm[j]
    as_4d: bool = False  # a (N, C) tensor standing for PyTorch's (N, C, 1, 1)
    axes: tuple[int, ...] | None = None  # physical axis i holds PyTorch axis axes[i] (None: the default above)
    chw: tuple[int, int, int] | None = None  # with `perm`: the (C, H, W) that was flattened


def _default_axes(rank: int) -> tuple[int, ...]:
    return (0, 2, 3, 1) if rank == 4 else tuple(range(rank))


def _moved(src: tuple[int, ...], dst: tuple[int, ...]) -> list[int]:
    """The physical transpose perm taking a tensor whose axes are `src` to axes `dst`."""
    return [src.index(a) for a in dst]


def _nhwc(shape: tuple[int, ...]) -> tuple[int, ...]:
    if len(shape) == 4:
        return (1, shape[2], shape[3], shape[1])
    return (1,) + tuple(shape[1:])


def lower(model: Model) -> ir.Graph:
    """The recognised `model` as a validated `ir.Graph`: one handler per node kind (`HANDLERS`)."""
    _linear_of_rank3(model)
    _matmul_of_rank4(model)
    _rank0_as_one_element(model)
    cx = Lowering(model)
    in_names = cx.lower_inputs()
    for node in model.nodes:
        shape = _nhwc(model.shapes[node.output])
        if any(cx.bdim.get(v, 0) != 0 for v in node.inputs if not model.is_const(v)):  # exact shapes (per-image)
            s = tuple(int(d) for d in model.shapes[node.output])
            shape = (s[0], s[2], s[3], s[1]) if len(s) == 4 else s
        handler = HANDLERS.get(node.op)
        if handler is None and _is_plain_unary(node.op):
            handler = _elementwise  # an IR op of the same name that takes the node as it is
        if handler is None:
            raise cx.unsupported(node)
        handler(cx, node, shape)
    outputs = cx.lower_outputs()
    metadata: dict[str, Any] = {"binary_outputs": cx.binary_outputs}
    if cx.per_image:
        metadata["per_image"] = True
    graph = ir.Graph(inputs=in_names, outputs=outputs, tensors=cx.tensors, ops=cx.ops, metadata=metadata)
    graph.validate()
    return graph


def _rank0_as_one_element(model: Model) -> None:
    """A rank-0 value (x.max(), x.sum() of a whole tensor) is held as shape (1,): it broadcasts as a scalar,
    and the IR's tensors have rank >= 1."""
    for name, shape in model.shapes.items():
        if len(shape) == 0 and not model.is_const(name):
            model.shapes[name] = (1,)


def _linear_of_rank3(model: Model) -> None:
    """view(..., K) -> (M, K), linear, view -> (..., O) (how nn.Linear on a rank-3+ input decomposes) -> one
    linear of the rank-3+ value: the batch stays axis 0 (the reshapes become aliases of equal shapes)."""
    for node in model.nodes:
        if node.op != "linear" or model.is_const(node.inputs[0]):
            continue
        flat = model.producer(node.inputs[0])
        if flat is None or flat.op != "reshape" or model.is_const(flat.inputs[0]):
            continue
        src = model.shapes[flat.inputs[0]]
        out = model.shapes[node.output]
        users = model.consumers(node.output)
        if len(src) < 3 or node.output in model.outputs or not users:
            continue
        want = tuple(src[:-1]) + (out[-1],)
        if not all(u.op == "reshape" and model.shapes[u.output] == want for u in users):
            continue
        node.inputs = [flat.inputs[0]] + node.inputs[1:]
        model.shapes[node.output] = want
    model.remove_dead()


def _matmul_of_rank4(model: Model) -> None:
    """expand / reshape (B, ..., M, K) -> (B*..., M, K), bmm, reshape back (how `a @ b` of rank-4+
    tensors decomposes) -> one matmul of the rank-4+ values (it broadcasts the batch dims itself)."""
    for node in model.nodes:
        if node.op != "matmul" or any(model.is_const(v) for v in node.inputs):
            continue
        users = model.consumers(node.output)
        out = model.shapes[node.output]
        if len(out) != 3 or not users or node.output in model.outputs or any(u.op != "reshape" for u in users):
            continue
        want = model.shapes[users[0].output]
        if any(model.shapes[u.output] != want for u in users) or len(want) < 4 or want[-2:] != out[-2:]:
            continue
        srcs = [_unmerged(model, v, len(want)) for v in node.inputs]
        if any(s is None for s in srcs):
            continue
        node.inputs = [s for s in srcs if s is not None]
        model.shapes[node.output] = want
    model.remove_dead()


def _unmerged(model: Model, value: str, rank: int) -> str | None:
    """The rank-`rank` value that `value` merges the leading dims of (through a reshape, maybe an expand)."""
    p = model.producer(value)
    if p is None or p.op != "reshape":
        return None
    src = p.inputs[0]
    q = model.producer(src)
    if q is not None and q.op == "expand":
        src = q.inputs[0]
    shape = model.shapes[src]
    if model.is_const(src) or len(shape) != rank or tuple(shape[-2:]) != tuple(model.shapes[value][-2:]):
        return None
    return src


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
        self.bdim: dict[str, int | None] = {}  # converter value -> the PyTorch dim holding the batch
        self.per_image = ""  # where the graph first needs to run one image at a time ("" = never)
        self.consts: dict[tuple[str, tuple[int, ...], int], _Val] = {}  # constant ops emitted
        self.graph_inputs: list[str] = []  # IR names of the graph inputs

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

    def lower_inputs(self) -> list[str]:
        """The graph inputs: one model input as `lower_input` records it (unchanged for old readers); several
        named after forward's arguments, a 4-D one NHWC (the caller passes NCHW), any other rank in
        PyTorch's order (an (N, F) one as it is)."""
        if len(self.model.inputs) == 1:
            self.graph_inputs = [self.lower_input()]
            return self.graph_inputs
        names = self.graph_inputs
        for x in self.model.inputs:
            shape = _nhwc(self.model.shapes[x])
            name = self.new_tensor(x, shape, "f32")
            self.vals[x] = _Val(name, "f32", shape)
            names.append(name)
        return names

    def lower_outputs(self) -> list[str]:
        """The graph outputs: 4-D ones NHWC (the engine's output layout), others in PyTorch's order."""
        outputs = []
        for o in self.model.outputs:
            if o not in self.vals:  # the model returns its input
                raise ConversionError("a model output is the model input itself; nothing to convert")
            v = self.vals[o]
            node = Node("output", [o], o, path="output")
            if v.dtype == "bits":  # a model that ends in a sign: the engine returns ±1.0
                v = self.f32(o, node)
            if v.perm is not None or v.axes is not None:
                rank = len(self.model.shapes[o])
                v = self.arranged(o, node, _default_axes(rank))
            if outputs and v.name in outputs or v.name in self.graph_inputs:
                v = self.copy_of(v, node)
            outputs.append(v.name)
        return outputs

    def copy_of(self, v: _Val, node: Node) -> _Val:
        """A new tensor equal to `v` (a graph output listed twice, or the input returned as is)."""
        out = self.new_tensor(f"{v.name}_copy", v.shape, "f32")
        self.ops.append(ir.Op("reshape", node.path or node.output, [v.name], [out], {"shape": list(v.shape)}))
        return _Val(out, "f32", v.shape, v.perm, v.as_4d, v.axes, v.chw)

    def f32(self, value: str, node: Node) -> _Val:
        """`value` as a float tensor in the image/matrix handlers' layout, unpacking bits (once) if it is
        binary and transposing (once) a value the general handlers left in another order."""
        v = self.vals[value]
        if v.dtype != "f32":
            out = self.new_tensor(f"{v.name}_unpacked", v.shape, "f32")
            self.ops.append(ir.Op("unpack", node.path or node.output, [v.name], [out]))
            u = _Val(out, "f32", v.shape, v.perm, v.as_4d, v.axes, v.chw)
            self.vals[value] = u  # later float readers share it; bits readers use the bits tensor via the op input
            self.vals[value + "#bits"] = v
            v = u
        if v.axes is None or v.axes == _default_axes(len(v.axes)):
            return v
        return self.arranged(value, node, _default_axes(len(v.axes)))

    # ------------------------------------------------------------- layout (general handlers)
    def tshape(self, value: str) -> tuple[int, ...]:
        """`value`'s PyTorch shape with the batch dim at 1 (constants: their own shape)."""
        shape = list(self.model.shapes[value])
        if self.model.is_const(value):
            return tuple(shape)
        b = self.bdim.get(value, 0)
        if b is not None and b < len(shape):
            shape[b] = 1
        return tuple(int(d) for d in shape)

    def plain(self, value: str, node: Node) -> _Val:
        """`value` as f32 with explicit `axes` (a flattened or pooled vector made a real tensor first)."""
        key = value + "#plain"
        if key in self.vals:
            return self.vals[key]
        v = self.vals[value]
        if v.dtype != "f32":
            v = self.f32(value, node)
        if v.axes is not None:
            return v
        ts = self.tshape(value)
        if v.as_4d:  # (1, C) standing for (N, C, 1, 1): an NHWC (N, 1, 1, C)
            c = v.shape[-1]
            p = self.emit_op(node, "reshape", [v], (1, 1, 1, c), {"shape": [1, 1, 1, c]})
            p.axes = (0, 2, 3, 1)
        elif v.perm is not None and v.chw is not None:  # (1, H*W*C) standing for (N, C*H*W)
            c, h, w = v.chw
            r = self.emit_op(node, "reshape", [v], (1, h, w, c), {"shape": [1, h, w, c]})
            t = self.emit_op(node, "transpose", [r], (1, c, h, w), {"perm": [0, 3, 1, 2]})
            p = self.emit_op(node, "reshape", [t], (1, c * h * w), {"shape": [1, c * h * w]})
            p.axes = (0, 1)
        elif v.perm is not None:
            raise self.unsupported(node)
        else:
            p = _Val(v.name, "f32", v.shape, axes=_default_axes(len(ts)))
        self.vals[key] = p
        return p

    def arranged(self, value: str, node: Node, axes: tuple[int, ...]) -> _Val:
        """`value` with physical axes holding PyTorch axes `axes` (a transpose, emitted once per order)."""
        v = self.plain(value, node)
        assert v.axes is not None
        if v.axes == axes:
            return v
        key = f"{value}#axes{list(axes)}"
        if key not in self.vals:
            perm = _moved(v.axes, axes)
            out = self.emit_op(node, "transpose", [v], tuple(v.shape[i] for i in perm), {"perm": perm})
            out.axes = axes
            self.vals[key] = out
            if axes[0] != self.bdim.get(value, 0):
                self.need_per_image(node)
        return self.vals[key]

    def constant(self, value: str, node: Node, axes: tuple[int, ...]) -> _Val:
        """A constant operand as a `constant` op, PyTorch shape padded to len(axes) dims and permuted to `axes`
        (in numpy, once per order); axes along which it is constant are collapsed to size 1."""
        key = (value, axes, 0)
        if key not in self.consts:
            a = np.asarray(self.model.consts[value])
            rank = len(axes)
            if a.ndim > rank:
                raise self.unsupported(node)
            a = a.reshape((1,) * (rank - a.ndim) + a.shape)
            c = collapse_uniform(a, tuple(ax for ax in range(rank) if a.strides[ax] == 0 or ax == 0))
            a = c if c is not None and c.shape[0] == 1 else a
            a = np.ascontiguousarray(np.transpose(a, axes)).astype(np.float32)
            if a.shape[0] != 1:
                self.need_per_image(node)  # (a constant's axis 0 is not a batch of 1)
            out = self.new_tensor(f"{node.output}_const", a.shape, "f32")
            op = ir.Op("constant", node.path or node.output, [], [out], {}, {"value": a})
            op.validate()
            self.ops.append(op)
            self.consts[key] = _Val(out, "f32", a.shape, axes=axes)
        return self.consts[key]

    def operand(self, value: str, node: Node, axes: tuple[int, ...]) -> _Val:
        """An operand of an element-wise op in the layout `axes` (constants permuted, activations transposed;
        an activation of lower rank made that rank with leading 1s, in PyTorch order)."""
        if self.model.is_const(value):
            return self.constant(value, node, axes)
        rank = len(self.tshape(value))
        if rank == len(axes):
            return self.arranged(value, node, axes)
        v = self.arranged(value, node, tuple(range(rank)))
        shape = (1,) * (len(axes) - rank) + v.shape
        self.need_per_image(node)  # (its batch dim is no longer axis 0)
        r = self.emit_op(node, "reshape", [v], shape, {"shape": list(shape)})
        r.axes = tuple(range(len(axes)))
        key = f"{value}#rank{len(axes)}"
        self.vals[key] = r
        if r.axes == axes:
            return r
        perm = _moved(r.axes, axes)
        t = self.emit_op(node, "transpose", [r], tuple(r.shape[i] for i in perm), {"perm": perm})
        t.axes = axes
        return t

    def emit_op(
        self,
        node: Node,
        kind: str,
        inputs: list[_Val],
        shape: tuple[int, ...],
        attrs: dict[str, Any],
        params: dict[str, np.ndarray] | None = None,
    ) -> _Val:
        """An f32 IR op that computes an intermediate (not a converter value)."""
        out = self.new_tensor(f"{node.output}_{kind}", shape, "f32")
        op = ir.Op(kind, node.path or node.output, [v.name for v in inputs], [out], attrs, params or {})
        self.checked(op, node)
        return _Val(out, "f32", shape)

    def general(
        self,
        node: Node,
        kind: str,
        inputs: list[_Val],
        axes: tuple[int, ...],
        attrs: dict[str, Any] | None = None,
        bdim: int | None = 0,
    ) -> _Val:
        """Emit `kind` for `node` with an output whose physical axes hold PyTorch axes `axes`."""
        ts = tuple(int(d) for d in self.model.shapes[node.output])
        if bdim is not None and bdim < len(ts):
            ts = tuple(1 if i == bdim else d for i, d in enumerate(ts))
        shape = tuple(int(ts[a]) for a in axes)
        out = self.emit(node, kind, inputs, shape, "f32", attrs)
        out.axes = axes
        self.set_bdim(node, bdim, axes)
        return out

    def set_bdim(self, node: Node, bdim: int | None, axes: tuple[int, ...]) -> None:
        self.bdim[node.output] = bdim
        if bdim is None or axes[0] != bdim:
            self.need_per_image(node)

    def need_per_image(self, node: Node) -> None:
        """The graph must run one image at a time (a value's axis 0 is not the batch from `node` on)."""
        if self.per_image:
            return
        self.per_image = f"{node.op} in {node.where or node.path or node.output}"
        if self.model.metadata.get("input_shape", [1])[0] != 1:
            raise ConversionError(
                f"{self.per_image}: this model moves the batch dim away from axis 0, so the engine runs it one "
                "image at a time, at the exported shapes: export it with a batch-1 example input"
            )

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
        like: _Val | None = None,
    ) -> _Val:
        """Emit the op computing `node`'s value; with `like`, the output has that value's shape and layout."""
        if like is not None:
            shape, perm = like.shape, like.perm
        out = self.new_tensor(node.output, shape, dtype)
        op = ir.Op(kind, node.path or node.output, [v.name for v in inputs], [out], attrs or {}, params or {})
        self.checked(op, node)
        val = _Val(out, dtype, shape, perm)
        if perm is not None:
            val.chw = next((v.chw for v in inputs if v.chw is not None), None)
        if like is not None:
            val.as_4d, val.axes, val.chw = like.as_4d, like.axes, like.chw
        self.vals[node.output] = val
        first = next((v for v in node.inputs if not self.model.is_const(v)), None)
        self.bdim[node.output] = self.bdim.get(first, 0) if first is not None else 0
        return val

    def checked(self, op: ir.Op, node: Node) -> None:
        """Append `op` after checking it (declaration and shapes); a ConversionError naming `node` if it fails."""
        try:
            op.validate()
            ir.Graph(inputs=[], outputs=[], tensors=self.tensors, ops=[])._check_types(op)
        except ValueError as err:
            raise ConversionError(
                f"unsupported op '{node.op}' in {node.where or node.path or '<top level>'} (as used here: {err}); "
                f"nearest supported pattern: {NEAREST.get(node.op, 'see docs/ops.md')}"
            ) from None
        self.ops.append(op)

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
    if len(cx.model.shapes[node.inputs[0]]) > 2:
        _linear_nd(cx, node)
        return
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


def _weight_plane_layer(cx: Lowering, node: Node, shape: Shape) -> None:
    """bwconv2d / bwlinear (float input), tbconv2d / tblinear (bits input): sign bits packed as bconv2d /
    blinear, a non-zero mask when a weight is 0 (always for tb*)."""
    on_bits = node.op in ("tbconv2d", "tblinear")
    x = cx.bits(node.inputs[0], node) if on_bits else cx.f32(node.inputs[0], node)
    a = node.attrs_as(WeightPlaneAttrs)
    t = a.ternary
    attrs: dict[str, Any]
    kind = node.op
    if node.op in ("bwconv2d", "tbconv2d") and x.as_4d:
        # A conv of a pooled (N, C, 1, 1) vector: only the kernel centre sees data (as _conv_of_vector).
        kh, kw = t.shape[2:]
        if x.perm is not None or kh - 1 - a.padding[0] != kh // 2 or kw - 1 - a.padding[1] != kw // 2:
            raise cx.unsupported(node)
        t, kind = t[:, :, kh // 2, kw // 2], "bwlinear" if node.op == "bwconv2d" else "tblinear"
        attrs = {"in_features": int(t.shape[1])}
        pack = pack_linear_weight
    elif node.op in ("bwconv2d", "tbconv2d"):
        attrs = {"stride": list(a.stride), "padding": list(a.padding), "in_channels": int(t.shape[1])}
        pack = pack_conv_weight
    else:
        t = t if x.perm is None else t[:, x.perm]
        attrs = {"in_features": int(t.shape[1])}
        pack = pack_linear_weight
    params = {
        "weight": pack(np.where(t < 0, -1, 1)),
        "scale_pos": a.scale_pos.astype(np.float32),
        "scale_neg": a.scale_neg.astype(np.float32),
    }
    if on_bits or np.any(t == 0):
        params["mask"] = pack(np.where(t != 0, -1, 1))  # (pack sets a bit for -1)
    if len(node.inputs) > 1:
        params["bias"] = cx.const(node, 1).astype(np.float32)
    if kind != node.op:
        out = cx.emit(node, kind, [x], (x.shape[0], int(t.shape[0])), "f32", attrs, params)
        out.as_4d = True
        return
    cx.emit(node, node.op, [x], shape, "f32", attrs, params)


def _check_per_channel(cx: Lowering, node: Node, values: np.ndarray) -> None:
    """Per-channel parameters act on the last physical axis: PyTorch dim 1 only for NCHW / (N, F) values."""
    v = np.asarray(values)
    if len(cx.model.shapes[node.inputs[0]]) not in (2, 4) and not np.all(v == v.reshape(-1)[0]):
        raise cx.unsupported(node)


def _off_last_axis(cx: Lowering, node: Node, values: np.ndarray | None) -> bool:
    """Per-channel (PyTorch dim 1) `values` on a value whose channels are not its last physical axis
    (a rank-3 (N, C, L) signal, a rank-5 volume): the handlers then broadcast a constant instead."""
    if values is None or len(cx.model.shapes[node.inputs[0]]) in (2, 4):
        return False
    v = np.asarray(values)
    return not np.all(v == v.reshape(-1)[0])


def _channel_constant(cx: Lowering, node: Node, x: _Val, values: np.ndarray) -> _Val:
    """A `constant` op holding per-channel `values` (PyTorch dim 1) shaped to broadcast over `x` (PyTorch order)."""
    rank = len(x.shape)
    c = np.asarray(values, np.float32).reshape((1, -1) + (1,) * (rank - 2))
    return cx.emit_op(node, "constant", [], c.shape, {}, {"value": np.ascontiguousarray(c)})


def _act_sign_off_last(cx: Lowering, node: Node, shape: Shape) -> None:
    """sign(x - t[c]) with t per PyTorch dim 1 not on the last axis: a broadcast `binary` sub, then a sign at 0.
    x - t < 0 exactly when x < t (and = 0 exactly when x = t) in IEEE arithmetic, so the bits are the same."""
    a = node.attrs_as(ActSignAttrs)
    x = cx.f32(node.inputs[0], node)  # PyTorch order for ranks other than 2 and 4
    d = cx.emit_op(node, "binary", [x, _channel_constant(cx, node, x, a.threshold[0])], x.shape, {"op": "sub"})
    zero = "-1" if a.sign_zero == "-1" else "+1"
    params = {"threshold": np.zeros(x.shape[-1], np.float32)}
    out = cx.emit(node, "sign", [d], shape, "bits", {"sign_zero": zero}, params)
    if node.origin:
        cx.record_binary_output(out, node)


def _channels_moved_last(cx: Lowering, node: Node) -> _Val:
    """The input with PyTorch dim 1 moved to the last physical axis (a `transpose`, emitted once), so that a
    per-channel op applies there; the output keeps these axes (later readers transpose back if they need to)."""
    rank = len(cx.model.shapes[node.inputs[0]])
    return cx.arranged(node.inputs[0], node, (0, *range(2, rank), 1))


def _act_sign(cx: Lowering, node: Node, shape: Shape) -> None:
    a = node.attrs_as(ActSignAttrs)
    if a.threshold.shape[0] == 1 and _off_last_axis(cx, node, a.threshold):
        _act_sign_off_last(cx, node, shape)
        return
    x = cx.f32(node.inputs[0], node)
    _check_per_channel(cx, node, a.threshold)
    thr = a.threshold.astype(np.float32)
    if thr.shape[0] == 1 and thr.shape[1] != x.shape[-1] and x.perm is None:
        # one threshold for all (checked above) on a value whose last axis is not dim 1 (an (N, C, L) signal)
        thr = np.full((1, x.shape[-1]), thr.reshape(-1)[0], np.float32)
    perm = x.perm
    if x.perm is not None:
        thr, perm = _signs_of_flattened(cx, node, x, thr)
    params = {"threshold": thr[0] if thr.shape[0] == 1 else thr}
    zero = "-1" if a.sign_zero == "-1" else "+1"
    out = cx.emit(node, "sign", [x], shape, "bits", {"sign_zero": zero}, params, perm=perm)
    if perm is not None and thr.shape[0] > 1:
        out.chw = None  # j-major (J, H, W, C) columns: (b)linear readers permute by `perm`; plain() refuses
    if node.origin:
        info = cx.record_binary_output(out, node)
        if perm is not None:
            info["perm"] = [int(i) for i in perm]


def _signs_of_flattened(cx: Lowering, node: Node, x: _Val, thr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (J, F) thresholds of a sign of a flattened value `x` (IR column i holds PyTorch column perm[i]) in
    the IR's column order, and the output's perm. J > 1 (BinaryDuo's decoupled signs, PyTorch's
    cat([sign(x - t_1), ...], dim=1) of the (N, F) value): the IR writes output column j*F + i from input column
    i, which is PyTorch's column j*F + perm[i]; the next blinear permutes its weight columns by that perm."""
    assert x.perm is not None
    f = x.shape[-1]
    if thr.shape[1] not in (1, f):
        raise cx.unsupported(node)
    thr = np.broadcast_to(thr, (thr.shape[0], f))[:, x.perm]
    perm = np.concatenate([x.perm + j * f for j in range(thr.shape[0])])
    return np.ascontiguousarray(thr), perm


def _channels_last(cx: Lowering, value: str) -> bool:
    """Does `value`'s last physical axis hold PyTorch dim 1 (the per-channel ops' channel axis)?"""
    v = cx.vals[value]
    rank = len(cx.model.shapes[value])
    if v.axes is not None:
        return v.axes[-1] == 1
    return rank in (2, 4) or v.as_4d


def _affine(cx: Lowering, node: Node, shape: Shape) -> None:
    a = node.attrs_as(AffineAttrs)
    if not _channels_last(cx, node.inputs[0]):  # e.g. BatchNorm1d on (N, C, L): broadcast mul and add
        v = cx.plain(node.inputs[0], node)
        assert v.axes is not None
        rank = len(v.axes)
        per_channel = (1, -1) + (1,) * (rank - 2)
        sc, sh = (np.transpose(p.reshape(per_channel), v.axes).astype(np.float32) for p in (a.scale, a.shift))
        k1 = cx.emit_op(node, "constant", [], sc.shape, {}, {"value": np.ascontiguousarray(sc)})
        k2 = cx.emit_op(node, "constant", [], sh.shape, {}, {"value": np.ascontiguousarray(sh)})
        y = cx.emit_op(node, "binary", [v, k1], v.shape, {"op": "mul"})
        cx.general(node, "binary", [y, k2], v.axes, {"op": "add"}, bdim=cx.bdim.get(node.inputs[0], 0))
        return
    # A value the general handlers laid out with dim 1 last stays as it is (f32 would transpose it to
    # PyTorch's order, where dim 1 is no longer last).
    x = cx.plain(node.inputs[0], node) if cx.vals[node.inputs[0]].axes is not None else cx.f32(node.inputs[0], node)
    params = {"scale": _permuted(a.scale, x).astype(np.float32), "shift": _permuted(a.shift, x).astype(np.float32)}
    cx.emit(node, "affine", [x], shape, "f32", {}, params, like=x)


def _prelu(cx: Lowering, node: Node, shape: Shape) -> None:
    x = cx.f32(node.inputs[0], node)
    if not isinstance(node.attrs, PReLUAttrs):  # a prelu whose slope is not a constant
        raise cx.unsupported(node)
    a = node.attrs
    if any(_off_last_axis(cx, node, p) for p in (a.slope, a.pre_shift, a.post_shift)):
        x = _channels_moved_last(cx, node)
    else:
        for p in (a.slope, a.pre_shift, a.post_shift):
            if p is not None:
                _check_per_channel(cx, node, p)
    params = {"slope": _permuted(np.asarray(a.slope), x).astype(np.float32)}
    if a.pre_shift is not None:
        params["pre_shift"] = _permuted(a.pre_shift, x).astype(np.float32)
    if a.post_shift is not None:
        params["post_shift"] = _permuted(a.post_shift, x).astype(np.float32)
    if len(params) == 2:  # the IR wants both shifts or neither
        c = x.shape[-1]
        params.setdefault("pre_shift", np.zeros(c, np.float32))
        params.setdefault("post_shift", np.zeros(c, np.float32))
    cx.emit(node, "prelu", [x], shape, "f32", {}, params, like=x)


def _any_layout(cx: Lowering, node: Node) -> _Val:
    """The float input of an element-wise one-input op, in whatever layout it has (bits unpacked)."""
    v = cx.vals[node.inputs[0]]
    return v if v.dtype == "f32" else cx.f32(node.inputs[0], node)


def _elementwise(cx: Lowering, node: Node, shape: Shape) -> None:
    """relu, sigmoid and the other one-input float ops: any layout."""
    x = _any_layout(cx, node)
    cx.emit(node, node.op, [x], shape, "f32", like=x)


def _softmax(cx: Lowering, node: Node, shape: Shape) -> None:
    """softmax / log_softmax along one PyTorch dim (the last when captured without one): the IR's `axis`
    is that dim's physical axis (left out when it is the last one, as graphs without it have it)."""
    rank = len(cx.model.shapes[node.output])
    dim = node.attrs.dim if isinstance(node.attrs, AxisAttrs) else rank - 1
    v = cx.vals[node.inputs[0]]
    if v.axes is None and v.perm is None and not v.as_4d and dim == rank - 1 and rank != 4:
        x = cx.f32(node.inputs[0], node)
        cx.emit(node, node.op, [x], x.shape, "f32", like=x)
        return
    x = cx.plain(node.inputs[0], node)
    assert x.axes is not None
    axis = x.axes.index(dim)
    if dim == cx.bdim.get(node.inputs[0], 0):
        cx.need_per_image(node)
    attrs = {} if axis == len(x.axes) - 1 else {"axis": axis}
    cx.general(node, node.op, [x], x.axes, attrs, bdim=cx.bdim.get(node.inputs[0], 0))


def _hardtanh(cx: Lowering, node: Node, shape: Shape) -> None:
    x = _any_layout(cx, node)
    a = node.attrs_as(HardtanhAttrs)
    cx.emit(node, "hardtanh", [x], shape, "f32", {"min_val": a.min_val, "max_val": a.max_val}, like=x)


def _compare(cx: Lowering, node: Node, shape: Shape) -> None:
    """compare: x OP threshold[c] as 0.0 / 1.0 floats; one threshold when all channels share it."""
    x = cx.f32(node.inputs[0], node)
    a = node.attrs_as(CompareAttrs)
    if _off_last_axis(cx, node, a.threshold):
        x = _channels_moved_last(cx, node)
    else:
        _check_per_channel(cx, node, a.threshold)
    thr = _permuted(np.asarray(a.threshold), x).astype(np.float32)
    if np.all(thr == thr[0]):
        thr = thr[:1]
    cx.emit(node, "compare", [x], shape, "f32", {"cmp": a.cmp}, {"threshold": thr}, like=x)


def _unary_math(cx: Lowering, node: Node, shape: Shape) -> None:
    """round, floor, abs, neg: any layout."""
    x = _any_layout(cx, node)
    cx.emit(node, node.op, [x], shape, "f32", like=x)


def _pool_attrs(a: PoolAttrs) -> dict[str, Any]:
    return {"kernel": list(a.kernel), "stride": list(a.stride), "padding": list(a.padding)}


def _float_pool(cx: Lowering, node: Node, shape: Shape) -> None:
    """maxpool2d / avgpool2d on floats."""
    x = cx.f32(node.inputs[0], node)
    a = node.attrs_as(PoolAttrs)
    if a.min_channels is not None:  # MaxPoolSink moves a pool past gamma < 0 only when it ends on bits
        raise ConversionError(f"{node.op} at {node.path or node.output}: a min-pool on floats has no IR op")
    attrs = _pool_attrs(a)
    if node.op == "avgpool2d":
        attrs["count_include_pad"] = node.attrs_as(AvgPoolAttrs).count_include_pad
    if a.ceil_mode:
        attrs["ceil_mode"] = True
    cx.emit(node, node.op, [x], shape, "f32", attrs)


def _bmaxpool2d(cx: Lowering, node: Node, shape: Shape) -> None:
    x = cx.bits(node.inputs[0], node)
    a = node.attrs_as(PoolAttrs)
    params = {} if a.min_channels is None else {"min_channels": pack_last(a.min_channels)}
    out = cx.emit(node, "bmaxpool2d", [x], shape, "bits", _pool_attrs(a), params)
    if node.origin:
        cx.record_binary_output(out, node)


def _global_avgpool(cx: Lowering, node: Node, shape: Shape) -> None:
    x = cx.f32(node.inputs[0], node)
    torch_shape = cx.model.shapes[node.output]
    out = cx.emit(node, "global_avgpool", [x], (1, shape[-1] if len(shape) == 2 else torch_shape[1]), "f32")
    out.as_4d = len(torch_shape) == 4


def _add_mul(cx: Lowering, node: Node, shape: Shape) -> None:
    """add / mul of two tensors: same shape, or mul of NHWC by a per-channel (N, C) tensor."""
    if not all(v in cx.vals for v in node.inputs) or not all(_legacy(cx, v) for v in node.inputs):
        _binary(cx, node, shape)  # a constant operand, or a value in another layout: broadcasting op
        return
    xa, xb = (cx.f32(v, node) for v in node.inputs)
    if node.op == "mul" and xa.as_4d and not xb.as_4d:
        xa, xb = xb, xa
    same = xa.shape == xb.shape and xa.as_4d == xb.as_4d
    if not same and not (node.op == "mul" and xb.as_4d and len(xa.shape) == 4 and xb.shape[-1] == xa.shape[-1]):
        _binary(cx, node, shape)
        return
    if (xa.perm is None) != (xb.perm is None) or (xa.perm is not None and not np.array_equal(xa.perm, xb.perm)):
        _binary(cx, node, shape)
        return
    out = cx.emit(node, node.op, [xa, xb], xa.shape, "f32", perm=xa.perm)
    out.as_4d = xa.as_4d


def _legacy(cx: Lowering, value: str) -> bool:
    """Is `value` an activation in the image/matrix handlers' layout (NHWC, (N, F))?"""
    if cx.model.is_const(value):
        return False
    v = cx.vals[value]
    return (v.axes is None or v.axes == _default_axes(len(v.axes))) and len(cx.model.shapes[value]) in (2, 4)


def _concat(cx: Lowering, node: Node, shape: Shape) -> None:
    """concat (floats) / bconcat (bits) along channels."""
    on_bits = node.op == "bconcat"
    plain_images = all(_legacy(cx, v) and cx.vals[v].perm is None and not cx.vals[v].as_4d for v in node.inputs)
    if not on_bits and not plain_images:
        _cat(cx, node, shape)
        return
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
    nhwc = src.axes is None or src.axes == _default_axes(len(src.axes))
    if tuple(tshape) == tuple(oshape):
        cx.vals[node.output] = cx.vals[node.inputs[0]]
        if node.inputs[0] + "#bits" in cx.vals:
            cx.vals[node.output + "#bits"] = src
        cx.bdim[node.output] = cx.bdim.get(node.inputs[0], 0)
    elif tuple(tshape[1:]) == tuple(oshape[1:]) and cx.bdim.get(node.inputs[0], 0) == 0:
        cx.vals[node.output] = src
    elif not nhwc or src.perm is not None:
        _general_reshape(cx, node)
    elif len(tshape) == 4 and len(oshape) == 2 and src.as_4d:
        cx.vals[node.output] = _Val(src.name, src.dtype, src.shape, src.perm, as_4d=False)
    elif len(tshape) == 4 and len(oshape) == 2 and oshape[1] == int(np.prod(tshape[1:])):
        # The IR flattens in NHWC order; the next (b)linear gets its columns permuted to match.
        # Bits flatten as bits (bflatten): no unpacking between a sign and a binary linear.
        c, h, w = tshape[1:]
        perm = np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)
        kind = "bflatten" if src.dtype == "bits" else "flatten"
        out = cx.emit(node, kind, [src], (1, c * h * w), src.dtype, perm=None if h * w == 1 else perm)
        out.chw = None if h * w == 1 else (c, h, w)
    elif len(tshape) == 2 and len(oshape) == 4 and oshape[2:] == (1, 1) and src.axes is None:
        cx.vals[node.output] = _Val(src.name, src.dtype, src.shape, src.perm, as_4d=True)
    else:
        _general_reshape(cx, node)


def _squeeze_or_unsqueeze(cx: Lowering, node: Node) -> bool:
    """A reshape that only drops or adds size-1 dims keeps the value's physical order: the size-1 axes go
    (new ones are appended last), the others are relabelled. False when the reshape is not of that kind."""
    x = node.inputs[0]
    ins, outs = tuple(cx.model.shapes[x]), tuple(cx.model.shapes[node.output])
    b = cx.bdim.get(x, 0)
    carries = b == 0 and len(outs) > 0 and ins[0] == outs[0]
    if b is not None and not carries:
        return False
    sig_in = [d for d in range(len(ins)) if ins[d] != 1 or (carries and d == 0)]
    sig_out = [d for d in range(len(outs)) if outs[d] != 1 or (carries and d == 0)]
    if [ins[d] for d in sig_in] != [outs[d] for d in sig_out]:
        return False
    v = cx.plain(x, node)
    assert v.axes is not None
    to_out = dict(zip(sig_in, sig_out, strict=True))
    keep = [i for i, t in enumerate(v.axes) if t in to_out]
    axes = tuple(to_out[v.axes[i]] for i in keep) + tuple(d for d in range(len(outs)) if d not in sig_out)
    shape = tuple(v.shape[i] for i in keep) + (1,) * (len(axes) - len(keep))
    bdim = 0 if carries else None
    if shape == v.shape:
        cx.vals[node.output] = _Val(v.name, "f32", v.shape, axes=axes)
        cx.set_bdim(node, bdim, axes)
    else:
        cx.general(node, "reshape", [v], axes, {"shape": list(shape)}, bdim=bdim)
    return True


def _general_reshape(cx: Lowering, node: Node) -> None:
    """A reshape in PyTorch's row-major order: the input in PyTorch's order first (a transpose if it is
    not), then `reshape`. The batch carries when the first dim keeps its size (else: per-image)."""
    x = node.inputs[0]
    if _squeeze_or_unsqueeze(cx, node):
        return
    v = cx.arranged(x, node, tuple(range(len(cx.model.shapes[x]))))
    ins, outs = cx.model.shapes[x], cx.model.shapes[node.output]
    b = cx.bdim.get(x, 0)
    bdim = 0 if b == 0 and len(outs) > 0 and ins[0] == outs[0] else None
    ts = cx.tshape(node.output) if bdim == 0 else tuple(int(d) for d in outs)
    cx.bdim[node.output] = bdim
    cx.general(node, "reshape", [v], tuple(range(len(outs))), {"shape": list(ts)}, bdim=bdim)


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
    a = node.attrs_as(SliceAttrs)
    v = cx.vals[node.inputs[0]]
    if not (_legacy(cx, node.inputs[0]) and v.perm is None and a.dim != 0) or (v.as_4d and a.dim != 1):
        _general_slice(cx, node)
        return
    x = cx.f32(node.inputs[0], node)
    axis = {1: "c", 2: "h", 3: "w"}.get(a.dim) if len(cx.model.shapes[node.inputs[0]]) == 4 else None
    if len(x.shape) == 2 and a.dim == 1:
        axis = "c"
    if axis is None or x.perm is not None or (len(x.shape) == 2 and axis != "c"):
        raise cx.unsupported(node)
    physical = {"h": 1, "w": 2, "c": len(x.shape) - 1}[axis]  # the IR's physical axis (NHWC or (N, F))
    attrs = {"axis": physical, "start": a.start, "stop": a.stop, "step": a.step}
    out = cx.emit(node, "slice", [x], shape if not x.as_4d else (1, shape[-1]), "f32", attrs)
    out.as_4d = x.as_4d


# --------------------------------------------------------------------------- general (any rank, any layout)

_BINARY_KIND = {"add": "add", "sub": "sub", "mul": "mul", "div": "div"}
_BINARY_KIND.update({k: k for k in ("ge", "gt", "le", "lt", "eq", "ne")})


def _layout_of(cx: Lowering, node: Node) -> tuple[tuple[int, ...], int | None]:
    """The layout for an element-wise op's output: that of its first activation operand of the output's
    rank (PyTorch's order when there is none); and the PyTorch dim holding the batch."""
    rank = len(cx.model.shapes[node.output])
    for v in node.inputs:
        if not cx.model.is_const(v) and len(cx.model.shapes[v]) == rank:
            p = cx.plain(v, node)
            assert p.axes is not None
            return p.axes, cx.bdim.get(v, 0)
    return tuple(range(rank)), None


def _binary(cx: Lowering, node: Node, shape: Shape) -> None:
    """add / sub / mul / div / comparisons / max / min / pow / where with numpy broadcasting, between
    activations or an activation and a constant (permuted to the activation's layout in numpy)."""
    acts = [v for v in node.inputs if not cx.model.is_const(v)]
    if not acts:
        raise cx.unsupported(node)
    axes, bdim = _layout_of(cx, node)
    ins = [cx.operand(v, node, axes) for v in node.inputs]
    if node.op == "where":
        cx.general(node, "where", ins, axes, {}, bdim=bdim)
        return
    op = node.attrs.op if isinstance(node.attrs, BinaryOpAttrs) else _BINARY_KIND[node.op]
    cx.general(node, "binary", ins, axes, {"op": op}, bdim=bdim)


def _to_float(cx: Lowering, node: Node, shape: Shape) -> None:
    """bool -> float of a comparison: the IR's comparisons already give 1.0 / 0.0."""
    cx.vals[node.output] = cx.vals[node.inputs[0]]
    cx.bdim[node.output] = cx.bdim.get(node.inputs[0], 0)


def _transpose(cx: Lowering, node: Node, shape: Shape) -> None:
    """permute / transpose: no op, the value's axes are relabelled (a later op that needs an order
    transposes then)."""
    x = node.inputs[0]
    if cx.model.is_const(x):
        raise cx.unsupported(node)
    v = cx.plain(x, node)
    assert v.axes is not None
    perm = list(node.attrs_as(PermuteAttrs).perm)
    axes = tuple(perm.index(a) for a in v.axes)
    cx.vals[node.output] = _Val(v.name, "f32", v.shape, axes=axes)
    b = cx.bdim.get(x, 0)
    cx.set_bdim(node, None if b is None else perm.index(b), axes)


def _expand(cx: Lowering, node: Node, shape: Shape) -> None:
    x = node.inputs[0]
    v = cx.plain(x, node)
    assert v.axes is not None
    out = cx.model.shapes[node.output]
    if len(out) != len(v.axes):
        v = cx.operand(x, node, tuple(range(len(out))))
    assert v.axes is not None
    b = cx.bdim.get(x, 0)
    ts = [int(d) for d in out]
    if b is not None:
        ts[b] = 1
    cx.general(node, "expand", [v], v.axes, {"shape": [ts[a] for a in v.axes]}, bdim=b)


def _general_slice(cx: Lowering, node: Node) -> None:
    a = node.attrs_as(SliceAttrs)
    v = cx.plain(node.inputs[0], node)
    assert v.axes is not None
    b = cx.bdim.get(node.inputs[0], 0)
    attrs = {"axis": v.axes.index(a.dim), "start": a.start, "stop": a.stop, "step": a.step}
    cx.general(node, "slice", [v], v.axes, attrs, bdim=None if a.dim == b else b)


def _cat(cx: Lowering, node: Node, shape: Shape) -> None:
    """torch.cat along any dim: every operand in the first activation's layout (constants permuted)."""
    dim = node.attrs.dim if isinstance(node.attrs, AxisAttrs) else 1
    axes, b = _layout_of(cx, node)
    ins = [cx.operand(v, node, axes) for v in node.inputs]
    if any(cx.model.is_const(v) for v in node.inputs):
        cx.need_per_image(node)  # a constant has batch 1: the concat runs image by image
    cx.general(node, "concat", ins, axes, {"axis": axes.index(dim)}, bdim=None if dim == b else b)


def _reduce(cx: Lowering, node: Node, shape: Shape) -> None:
    """mean / sum / max / min over PyTorch dims -> `reduce` over their physical axes; var as
    mean, difference, square, sum and a scale by 1 / (n - correction)."""
    a = node.attrs_as(ReduceAttrs)
    x = node.inputs[0]
    v = cx.plain(x, node)
    assert v.axes is not None
    b = cx.bdim.get(x, 0)
    phys = sorted(v.axes.index(d) for d in a.dims)
    if a.keepdim:
        axes = v.axes
    else:
        kept = [t for t in v.axes if t not in a.dims]
        axes = tuple(t - sum(d < t for d in a.dims) for t in kept)
    bdim = None if b is None or b in a.dims else b - sum(d < b for d in a.dims)
    if a.op != "var":
        cx.general(node, "reduce", [v], axes, {"op": a.op, "axes": phys, "keepdims": a.keepdim}, bdim=bdim)
        return
    full = v.shape
    m = cx.emit_op(node, "reduce", [v], tuple(1 if i in phys else d for i, d in enumerate(full)), _keep("mean", phys))
    d = cx.emit_op(node, "binary", [v, m], full, {"op": "sub"})
    sq = cx.emit_op(node, "binary", [d, d], full, {"op": "mul"})
    red = tuple(1 if i in phys else d for i, d in enumerate(full) if a.keepdim or i not in phys)
    total = cx.emit_op(node, "reduce", [sq], red, {"op": "sum", "axes": phys, "keepdims": a.keepdim})
    n = int(np.prod([full[i] for i in phys]))
    scale = np.full((1,) * len(red), 1.0 / max(n - a.correction, 0.0) if n > a.correction else np.nan, np.float32)
    k = cx.emit_op(node, "constant", [], scale.shape, {}, {"value": scale})
    cx.general(node, "binary", [total, k], axes, {"op": "mul"}, bdim=bdim)


def _keep(op: str, axes: list[int]) -> dict[str, Any]:
    return {"op": op, "axes": axes, "keepdims": True}


def _matmul(cx: Lowering, node: Node, shape: Shape) -> None:
    """a @ b (bmm, matmul, mm of activations): both in PyTorch's order (a constant as a `constant` op);
    `matmul` broadcasts the batch dims. The batch stays axis 0 unless it is one of the last two dims."""
    a, b = node.inputs
    rank = len(cx.model.shapes[node.output])
    ident = tuple(range(rank))
    ins = [
        cx.operand(v, node, ident) if len(cx.model.shapes[v]) == rank else _const_or_act(cx, node, v) for v in (a, b)
    ]
    if rank == 2 and cx.model.is_const(b) and not cx.model.is_const(a):  # (N, K) @ W: a linear layer
        x = cx.f32(a, node)
        w = np.ascontiguousarray(np.asarray(cx.model.consts[b]).T, np.float32)
        cx.emit(node, "linear", [x], (1, int(w.shape[0])), "f32", {}, {"weight": w})
        return
    act = a if not cx.model.is_const(a) else b
    bd = cx.bdim.get(act, 0)
    bdim = None if bd is None or bd >= rank - 2 else bd
    if rank == 2 and not cx.model.is_const(a):
        bdim = None  # (M, K) x (K, N) of an activation: M is the batch only for a linear layer
    cx.general(node, "matmul", ins, ident, {}, bdim=bdim)


def _const_or_act(cx: Lowering, node: Node, v: str) -> _Val:
    """A matmul operand of lower rank than the output: a constant as is, an activation in PyTorch's order."""
    if cx.model.is_const(v):  # with a leading 1 (the recorded batch of every tensor but a per-image graph's)
        return cx.constant(v, node, tuple(range(max(3, np.ndim(cx.model.consts[v])))))
    return cx.arranged(v, node, tuple(range(len(cx.model.shapes[v]))))


def _linear_nd(cx: Lowering, node: Node) -> None:
    """nn.Linear on a rank-3+ input: matmul with the constant W^T (K, O) (features last), then the bias
    as a broadcast add; the other axes keep their layout (the batch stays axis 0)."""
    x = node.inputs[0]
    v = cx.plain(x, node)
    assert v.axes is not None
    rank = len(v.axes)
    if v.axes[-1] != rank - 1:
        v = cx.arranged(x, node, tuple(range(rank)))
    assert v.axes is not None
    w = cx.const(node, 1)
    wt = np.ascontiguousarray(w.T, np.float32)[None]  # (1, K, O): tensors have a leading (batch) 1
    wv = cx.emit_op(node, "constant", [], wt.shape, {}, {"value": wt})
    b = cx.bdim.get(x, 0)
    if len(node.inputs) < 3:
        cx.general(node, "matmul", [v, wv], v.axes, {}, bdim=b)
        return
    out_shape = tuple(v.shape[:-1]) + (int(w.shape[0]),)
    y = cx.emit_op(node, "matmul", [v, wv], out_shape, {})
    bias = np.asarray(cx.const(node, 2), np.float32).reshape((1,) * (rank - 1) + (-1,))
    k = cx.emit_op(node, "constant", [], bias.shape, {}, {"value": np.ascontiguousarray(bias)})
    cx.general(node, "binary", [y, k], v.axes, {"op": "add"}, bdim=b)


def _layer_norm(cx: Lowering, node: Node, shape: Shape) -> None:
    """LayerNorm over the last `ndims` PyTorch dims (GroupNorm reaches here reshaped): mean, centred
    square mean, rsqrt(var + eps), then weight and bias (constants in the value's layout)."""
    a = node.attrs_as(LayerNormAttrs)
    x = node.inputs[0]
    v = cx.plain(x, node)
    assert v.axes is not None
    rank = len(v.axes)
    dims = list(range(rank - a.ndims, rank))
    phys = sorted(v.axes.index(d) for d in dims)
    kept = tuple(1 if i in phys else d for i, d in enumerate(v.shape))
    m = cx.emit_op(node, "reduce", [v], kept, _keep("mean", phys))
    d = cx.emit_op(node, "binary", [v, m], v.shape, {"op": "sub"})
    sq = cx.emit_op(node, "binary", [d, d], v.shape, {"op": "mul"})
    var = cx.emit_op(node, "reduce", [sq], kept, _keep("mean", phys))
    eps = np.full((1,) * rank, a.eps, np.float32)
    e = cx.emit_op(node, "constant", [], eps.shape, {}, {"value": eps})
    ve = cx.emit_op(node, "binary", [var, e], kept, {"op": "add"})
    r = cx.emit_op(node, "rsqrt", [ve], kept, {})
    b = cx.bdim.get(x, 0)
    if len(node.inputs) == 1:
        cx.general(node, "binary", [d, r], v.axes, {"op": "mul"}, bdim=b)
        return
    y = cx.emit_op(node, "binary", [d, r], v.shape, {"op": "mul"})
    w = cx.constant(node.inputs[1], node, v.axes)
    yw = cx.emit_op(node, "binary", [y, w], v.shape, {"op": "mul"})
    cx.general(node, "binary", [yw, cx.constant(node.inputs[2], node, v.axes)], v.axes, {"op": "add"}, bdim=b)


def _unary_with_attrs(cx: Lowering, node: Node, shape: Shape) -> None:
    """gelu, leaky_relu, elu: any layout, the output takes the input's."""
    x = _any_layout(cx, node)
    attrs = dict(node.attrs_as(UnaryAttrs).values)
    cx.emit(node, node.op, [x], shape, "f32", attrs, like=x)


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


# --------------------------------------------------------------------------- index ops (index_ops.py)


def _along_dim(cx: Lowering, node: Node, kind: str, attrs: dict[str, Any], keep: bool = True) -> None:
    """arg_reduce / topk / cumsum along PyTorch dim `node.attrs.dim`: `axis` is its physical axis; the
    output keeps the input's layout (without that dim when `keep` is false)."""
    a = node.attrs_as(IndexAttrs)
    x = node.inputs[0]
    v = cx.plain(x, node)
    assert v.axes is not None
    b = cx.bdim.get(x, 0)
    if keep:
        axes = v.axes
    else:
        axes = tuple(t - (t > a.dim) for t in v.axes if t != a.dim)
    bdim = None if b is None or b == a.dim else b - (0 if keep else int(b > a.dim))
    cx.general(node, kind, [v], axes, {**attrs, "axis": v.axes.index(a.dim)}, bdim=bdim)


def _arg_reduce(cx: Lowering, node: Node, shape: Shape) -> None:
    a = node.attrs_as(IndexAttrs)
    _along_dim(cx, node, "arg_reduce", {"op": a.op, "keepdims": a.keepdim}, keep=a.keepdim)


def _topk(cx: Lowering, node: Node, shape: Shape) -> None:
    a = node.attrs_as(IndexAttrs)
    _along_dim(cx, node, "topk", {"k": a.k, "largest": a.largest, "output": a.op})


def _cumsum(cx: Lowering, node: Node, shape: Shape) -> None:
    """cumsum / cumprod / cummax / cummin: IndexAttrs.op is "" (sum), "prod", or "max/values" ..."""
    scan, _, output = node.attrs_as(IndexAttrs).op.partition("/")
    attrs: dict[str, Any] = {"op": scan} if scan and scan != "sum" else {}
    if output:
        attrs["output"] = output
    _along_dim(cx, node, "cumsum", attrs)


def _exact_constant(cx: Lowering, node: Node, value: str, axes: tuple[int, ...] | None = None) -> _Val:
    """A constant operand as a `constant` op of its exact shape (an index tensor: no axis collapsed),
    permuted to `axes`; a rank-0 one as shape (1,)."""
    a = np.asarray(cx.model.consts[value], dtype=np.float64)
    a = a.reshape(1) if a.ndim == 0 else a
    if axes is not None:
        a = np.transpose(a, axes)
    v = cx.emit_op(node, "constant", [], a.shape, {}, {"value": np.ascontiguousarray(a, dtype=np.float32)})
    v.axes = tuple(range(a.ndim)) if axes is None else axes
    return v


def _take(cx: Lowering, node: Node, shape: Shape) -> None:
    """index_select / embedding / x[:, idx]: numpy.take along PyTorch dim `dim`. The index enters in
    PyTorch order and its dims land where `dim` was; the table's other axes keep their layout."""
    dim = node.attrs_as(IndexAttrs).dim
    x, index = node.inputs
    r = len(cx.model.shapes[index]) if not cx.model.is_const(index) else max(1, np.ndim(cx.model.consts[index]))
    if cx.model.is_const(x):
        v = _exact_constant(cx, node, x)
        ib = cx.bdim.get(index, 0)
        bdim = None if ib is None else dim + ib
    else:
        v = cx.plain(x, node)
        b = cx.bdim.get(x, 0)
        bdim = None if b is None or b == dim else b + (r - 1) * int(b > dim)
    if cx.model.is_const(index):
        i = _exact_constant(cx, node, index)
    else:
        i = cx.arranged(index, node, tuple(range(r)))
        if not cx.model.is_const(x):
            cx.need_per_image(node)  # both carry a batch: run image by image
            bdim = None
    assert v.axes is not None
    ax = v.axes.index(dim)
    moved = tuple(t + (r - 1) * int(t > dim) for t in v.axes)
    axes = moved[:ax] + tuple(dim + j for j in range(r)) + moved[ax + 1 :]
    cx.general(node, "take", [v, i], axes, {"axis": ax}, bdim=bdim)


def _gather(cx: Lowering, node: Node, shape: Shape) -> None:
    """torch.gather: the index in the input's layout (a constant permuted in numpy, its shape kept)."""
    dim = node.attrs_as(IndexAttrs).dim
    x, index = node.inputs
    v = cx.plain(x, node)
    assert v.axes is not None
    if cx.model.is_const(index):
        i = _exact_constant(cx, node, index, v.axes)
    else:
        i = cx.arranged(index, node, v.axes)
    b = cx.bdim.get(x, 0)
    cx.general(node, "gather", [v, i], v.axes, {"axis": v.axes.index(dim)}, bdim=None if b == dim else b)


def _scatter(cx: Lowering, node: Node, shape: Shape) -> None:
    """torch.scatter / scatter_add: index and src in the input's layout (constants permuted in numpy, their
    shapes kept; a one-element src as is); a constant input (a zeros target) keeps PyTorch's order."""
    a = node.attrs_as(IndexAttrs)
    x, index, src = node.inputs
    rank = len(cx.model.shapes[x])
    if cx.model.is_const(x):
        v = _exact_constant(cx, node, x)
        bdim = None  # the target's batch is its own, fixed one
    else:
        v = cx.plain(x, node)
        b = cx.bdim.get(x, 0)
        bdim = None if b is None or b == a.dim else b
    axes = v.axes
    assert axes is not None
    ins = [v]
    for value in (index, src):
        if not cx.model.is_const(value):
            ins.append(cx.arranged(value, node, axes))
        elif np.size(cx.model.consts[value]) == 1:
            one = np.asarray(cx.model.consts[value], np.float32).reshape((1,) * rank)
            ins.append(cx.emit_op(node, "constant", [], one.shape, {}, {"value": one}))
        else:
            ins.append(_exact_constant(cx, node, value, axes))
    reduce, _, exclude = a.op.partition("/")
    attrs: dict[str, Any] = {"axis": axes.index(a.dim), "reduce": reduce}
    if exclude:
        attrs["include_self"] = False
    cx.general(node, "scatter", ins, axes, attrs, bdim=bdim)


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
    "softmax": _softmax,
    "log_softmax": _softmax,
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
    **dict.fromkeys(("sub", "div", "binary", "ge", "gt", "le", "lt", "eq", "ne", "where"), _binary),
    "to_float": _to_float,
    "transpose": _transpose,
    "expand": _expand,
    "cat": _cat,
    "reduce": _reduce,
    "matmul": _matmul,
    "layer_norm": _layer_norm,
    "compare": _compare,
    **dict.fromkeys(("round", "floor", "abs", "neg"), _unary_math),
    **dict.fromkeys(("gelu", "leaky_relu", "elu"), _unary_with_attrs),
    "conv_transpose2d": _conv_transpose2d,
    "resize": _resize,
    **dict.fromkeys(("adaptive_avgpool2d", "adaptive_maxpool2d"), _adaptive_pool),
    "bwconv2d": _weight_plane_layer,
    "bwlinear": _weight_plane_layer,
    "tbconv2d": _weight_plane_layer,
    "tblinear": _weight_plane_layer,
}
HANDLERS.update(
    {
        "arg_reduce": _arg_reduce,
        "topk": _topk,
        "cumsum": _cumsum,
        "take": _take,
        "gather": _gather,
        "scatter": _scatter,
        "cast_float": _unary_with_attrs,
    }
)


def _bitplane(cx: Lowering, node: Node, shape: Shape) -> None:
    """One bit-plane of a k-bit activation (patterns.BitSerialPlanes): per-channel thresholds on the last axis."""
    a = node.attrs_as(BitPlaneAttrs)
    x = cx.f32(node.inputs[0], node)
    if len(cx.model.shapes[node.inputs[0]]) not in (2, 4):
        raise cx.unsupported(node)
    params = {}
    if a.threshold is not None:  # per channel (PyTorch dim 1), in the physical order of x's last axis
        thr = a.threshold if x.perm is None else a.threshold[:, x.perm]
        params["threshold"] = np.ascontiguousarray(thr, np.float32)
    cx.emit(node, "bitplane", [x], shape, "bits", {"plane": a.plane, "bits": a.bits}, params, perm=x.perm)


HANDLERS["bitplane"] = _bitplane
