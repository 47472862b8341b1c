"""ONNX front end: an ONNX / QONNX / FINN-ONNX model -> the converter's `graph.Model`.

The nodes are the ones capture.py emits for the same computation (an ONNX `Sign` is aten.sign's
`sign`, `Gemm` is `linear`, a QONNX `BipolarQuant` of an activation is `where(x >= 0, 1, -1)`), so
recognition, folding, lowering and verification are shared with the PyTorch path. Everything that
depends only on initializers (a `BipolarQuant` of a weight, `Shape` arithmetic) is folded to a
constant by one run of the graph on a zero input (onnx's reference evaluator; QONNX custom ops by
qonnx's own functions), which also gives every value's static shape.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from xnorinfer.convert.attrs import (
    AffineAttrs,
    AvgPoolAttrs,
    AxisAttrs,
    BatchNormAttrs,
    BinaryOpAttrs,
    ConvAttrs,
    ConvTransposeAttrs,
    HardtanhAttrs,
    IndexAttrs,
    LayerNormAttrs,
    LinearAttrs,
    PadAttrs,
    PermuteAttrs,
    PoolAttrs,
    PReLUAttrs,
    ReduceAttrs,
    ResizeAttrs,
    SliceAttrs,
    UnaryAttrs,
)
from xnorinfer.convert.capture import PREV, Lowered, repeat_chain
from xnorinfer.convert.graph import ConversionError, Model, Node
from xnorinfer.ops import OPS

MAX_ONNX_BYTES = 2 << 30  # the protobuf limit; larger models keep weights as external data
MAX_EXTERNAL_BYTES = 16 << 30  # all external data files of one model together
MIN_OPSET = 13  # older models are upgraded with onnx's version converter
# QONNX's domain, FINN's, and "onnx.brevitas" (older Brevitas exports; qonnx's cleanup renames it too)
CUSTOM_DOMAINS = ("qonnx.custom_op.general", "finn.custom_op.general", "finn", "qonnx", "onnx.brevitas")


def is_onnx(source: Any) -> bool:
    """An onnx.ModelProto, or a path ending in .onnx (or whose bytes parse as an ONNX model header)."""
    if type(source).__name__ == "ModelProto":
        return True
    if not isinstance(source, (str, os.PathLike)):
        return False
    path = os.fspath(source)
    if path.lower().endswith(".onnx"):
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError:
        return False
    # field 1 (ir_version, varint) first, as every ONNX writer puts it; a zip (.pt2) starts with "PK"
    return head[:1] == b"\x08" and 0 < head[1:2][0] < 0x20 if len(head) == 2 else False


# --------------------------------------------------------------------------- loading


def load(path: str | os.PathLike[str]) -> Any:
    """Read an ONNX file; external data only from files inside the model's folder."""
    import onnx
    from onnx.external_data_helper import load_external_data_for_model, uses_external_data

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConversionError(f"{path}: no such file")
    size = os.path.getsize(path)
    if size > MAX_ONNX_BYTES:
        raise ConversionError(f"{path}: {size} bytes is over the ONNX limit of {MAX_ONNX_BYTES} bytes")
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as err:  # noqa: BLE001 - a protobuf parse error in any form
        raise ConversionError(f"{path}: not a readable ONNX model ({type(err).__name__}: {err})") from err
    folder = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    total = 0
    for t in _all_tensors(model.graph):
        if not uses_external_data(t):
            continue
        info = {e.key: e.value for e in t.external_data}
        where = os.path.realpath(os.path.join(folder, info.get("location", "")))
        if os.path.commonpath([folder, where]) != folder or where == folder:
            raise ConversionError(
                f"{path}: initializer {t.name!r} reads external data from {info.get('location')!r}, "
                "outside the model's folder; refused"
            )
        if not os.path.isfile(where):
            raise ConversionError(f"{path}: initializer {t.name!r}: external data file {where} is missing")
        total += int(info.get("length", os.path.getsize(where)))
        if total > MAX_EXTERNAL_BYTES:
            raise ConversionError(f"{path}: external data over {MAX_EXTERNAL_BYTES} bytes; refused")
    try:
        load_external_data_for_model(model, folder)
    except Exception as err:  # noqa: BLE001
        raise ConversionError(f"{path}: cannot read external data ({type(err).__name__}: {err})") from err
    return model


def _all_tensors(graph: Any) -> list[Any]:
    out = list(graph.initializer)
    for n in graph.node:
        for a in n.attribute:
            if a.HasField("t"):
                out.append(a.t)
    return out


def custom_ops(model: Any) -> set[str]:
    """The QONNX / FINN custom op types the model uses."""
    return {n.op_type for n in model.graph.node if n.domain and n.domain.startswith(CUSTOM_DOMAINS)}


def prepare(model: Any, source: str = "model") -> Any:
    """Refuse ops of unknown domains; upgrade a standard model to opset >= 13 (onnx's version converter)."""
    import onnx

    standard = ("", "ai.onnx")
    unknown = [
        n.op_type for n in model.graph.node if n.domain not in standard and not n.domain.startswith(CUSTOM_DOMAINS)
    ]
    if unknown:
        raise ConversionError(f"{source}: custom ops of an unknown domain: {sorted(set(unknown))}")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), MIN_OPSET)
    if opset < MIN_OPSET and not custom_ops(model):
        try:
            model = onnx.version_converter.convert_version(model, MIN_OPSET)
        except Exception as err:  # noqa: BLE001
            raise ConversionError(f"{source}: opset {opset} could not be upgraded to {MIN_OPSET} ({err})") from err
    return model


def checker_findings(model: Any) -> str | None:
    """What onnx.checker finds in a standard model (reported in the metadata; a pedantic finding such as
    an output without a shape is no reason to refuse a model the executors run)."""
    import onnx

    if custom_ops(model):
        return None  # (the checker does not know QONNX's ops)
    try:
        onnx.checker.check_model(model)
    except Exception as err:  # noqa: BLE001
        return f"{type(err).__name__}: {err}"
    return None
    return model


def graph_inputs(model: Any) -> list[Any]:
    """The graph inputs that are not initializers (the model's data inputs)."""
    inits = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def input_shapes(model: Any, source: str = "model") -> list[tuple[int, ...]]:
    """Every data input's static shape, in graph order (a symbolic batch dimension is taken as 1)."""
    ins = graph_inputs(model)
    if not ins:
        raise ConversionError(f"{source}: the model takes no tensor input")
    shapes = []
    for inp in ins:
        shape = []
        for i, d in enumerate(inp.type.tensor_type.shape.dim):
            if d.HasField("dim_value") and d.dim_value > 0:
                shape.append(int(d.dim_value))
            elif i == 0:
                shape.append(1)
            else:
                raise ConversionError(f"{source}: input {inp.name!r} has a symbolic dimension {i} ({d.dim_param!r})")
        shapes.append(tuple(shape))
    batches = {s[0] if s else None for s in shapes}
    if len(batches) != 1 or None in batches:
        raise ConversionError(f"{source}: the inputs must share their first (batch) dimension; shapes {shapes}")
    return shapes


def input_shape(model: Any, source: str = "model") -> tuple[int, ...]:
    """The first data input's static shape (a symbolic batch dimension is taken as 1)."""
    return input_shapes(model, source)[0]


# --------------------------------------------------------------------------- one evaluation


def multithreshold_channel_axis(layout: Any, rank: int) -> int:
    """MultiThreshold's channel axis as qonnx reads `data_layout` (guessed from the rank when empty)."""
    layout = layout.decode() if isinstance(layout, bytes) else str(layout or "")
    if not layout:
        layout = {2: "NC", 3: "NWC", 4: "NCHW"}.get(rank, "")
    return layout.index("C") if "C" in layout else 1


def _qonnx_op_classes() -> list[type]:
    """onnx reference-evaluator ops that call qonnx's own implementations of its custom ops."""
    from onnx.reference.op_run import OpRun
    from qonnx.custom_op.general.bipolar_quant import binary_quant
    from qonnx.custom_op.general.intquant import int_quant
    from qonnx.custom_op.general.multithreshold import multithreshold
    from qonnx.custom_op.general.trunc import trunc_v1, trunc_v2
    from qonnx.custom_op.general.xnorpopcount import xnorpopcountmatmul

    class BipolarQuant(OpRun):
        op_domain = "qonnx.custom_op.general"

        def _run(self, x, scale, **_):  # type: ignore[no-untyped-def]
            return (binary_quant(x, scale).astype(x.dtype),)

    class Quant(OpRun):
        op_domain = "qonnx.custom_op.general"

        def _run(self, x, scale, zeropt, bitwidth, signed=1, narrow=0, rounding_mode="ROUND", **_):  # type: ignore[no-untyped-def]
            y = int_quant(x, scale, zeropt, bitwidth, signed, narrow, rounding_mode)
            return (np.asarray(y).astype(x.dtype),)

    class MultiThreshold(OpRun):
        op_domain = "qonnx.custom_op.general"

        def _run(self, x, thr, out_scale=None, out_bias=None, data_layout="", **_):  # type: ignore[no-untyped-def]
            last = multithreshold_channel_axis(data_layout, x.ndim) == x.ndim - 1 and x.ndim > 2
            return (np.asarray(multithreshold(x, thr, out_scale, out_bias, last)).astype(x.dtype),)

    class Trunc(OpRun):
        op_domain = "qonnx.custom_op.general"

        def _run(self, x, scale, zeropt, in_bits, *rest, rounding_mode="FLOOR", signed=1, narrow=0, **_):  # type: ignore[no-untyped-def]
            if len(rest) == 1:  # Trunc v1: (x, scale, zero point, input bits, output bits)
                y = trunc_v1(x, scale, zeropt, in_bits, rest[0], rounding_mode)
            else:  # v2: (x, scale, zero point, input bits, output scale, output bits)
                y = trunc_v2(x, scale, zeropt, in_bits, narrow, signed, rest[0], rest[1], rounding_mode)
            return (np.asarray(y).astype(x.dtype),)

    class XnorPopcountMatMul(OpRun):
        op_domain = "qonnx.custom_op.general"

        def _run(self, a, b, **_):  # type: ignore[no-untyped-def]
            return (np.asarray(xnorpopcountmatmul(a, b)).astype(a.dtype),)

    class QuantAvgPool2d(OpRun):
        op_domain = "qonnx.custom_op.general"

        def _run(self, x, kernel=1, stride=1, ibits=1, obits=1, data_layout="NCHW", **_):  # type: ignore[no-untyped-def]
            # qonnx's rule (round(avgpool * k * k) >> shift) on the window sums, in numpy
            nhwc = (data_layout.decode() if isinstance(data_layout, bytes) else str(data_layout)) == "NHWC"
            v = x.transpose(0, 3, 1, 2) if nhwc else x
            win = np.lib.stride_tricks.sliding_window_view(v, (kernel, kernel), axis=(2, 3))[:, :, ::stride, ::stride]
            y = np.floor(np.round(win.sum(axis=(-2, -1))) / 2.0 ** quant_avgpool_shift(kernel, ibits, obits))
            return ((y.transpose(0, 2, 3, 1) if nhwc else y).astype(x.dtype),)

    IntQuant = type("IntQuant", (Quant,), {})
    return [BipolarQuant, Quant, IntQuant, MultiThreshold, Trunc, XnorPopcountMatMul, QuantAvgPool2d]


def quant_avgpool_shift(kernel: int, ibits: int, obits: int) -> int:
    """QuantAvgPool2d's right shift: the bits of the largest window sum of ibits-bit values, less obits
    (qonnx's get_shifts)."""
    return max(0, int((2**ibits - 1) * kernel * kernel).bit_length() - obits)


def evaluate_all(model: Any, x: np.ndarray | tuple[np.ndarray, ...]) -> dict[str, np.ndarray]:
    """Every value of the graph on input x, one array per data input (onnx's reference evaluator;
    qonnx's functions for its ops)."""
    from onnx.reference import ReferenceEvaluator

    model = single_custom_domain(model)
    new_ops = _qonnx_op_classes() if custom_ops(model) else None
    ev = ReferenceEvaluator(model, new_ops=new_ops)
    arrays = x if isinstance(x, tuple) else (x,)
    feeds = {i.name: a for i, a in zip(graph_inputs(model), arrays, strict=True)}
    results = ev.run(None, feeds, intermediate=True)
    return {k: np.asarray(v) for k, v in results.items()}


def single_custom_domain(model: Any) -> Any:
    """A copy whose QONNX / FINN custom ops all name the domain the evaluator's classes declare."""
    import copy

    if not custom_ops(model):
        return model
    m = copy.deepcopy(model)
    for n in m.graph.node:
        if n.domain.startswith(CUSTOM_DOMAINS):
            n.domain = "qonnx.custom_op.general"
    if not any(o.domain == "qonnx.custom_op.general" for o in m.opset_import):
        o = m.opset_import.add()
        o.domain, o.version = "qonnx.custom_op.general", 1
    return m


# --------------------------------------------------------------------------- to the internal graph


@dataclass(frozen=True)
class OnnxNode:
    """One ONNX node, its operands resolved: constant numpy arrays or value names."""

    proto: Any
    args: list[Any]  # per input: np.ndarray (constant), str (a value), or None (an omitted optional input)
    attrs: dict[str, Any]
    shape: tuple[int, ...]  # the first output's shape
    in_shapes: list[tuple[int, ...] | None]

    @property
    def op(self) -> str:
        return str(self.proto.op_type)

    def unsupported(self, hint: str) -> ConversionError:
        name = f" '{self.proto.name}'" if self.proto.name else ""
        return ConversionError(f"unsupported ONNX node {self.op}{name}: {hint}")

    def const(self, i: int, what: str) -> np.ndarray:
        a = self.args[i] if i < len(self.args) else None
        if not isinstance(a, np.ndarray):
            raise self.unsupported(f"its {what} (input {i}) must be a constant")
        return a


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _safe_names(model: Any) -> dict[str, str]:
    """ONNX value name -> a plain identifier, unique (ONNX names hold '/', ':', '.')."""
    out: dict[str, str] = {}
    used: set[str] = set()
    names = [i.name for i in model.graph.input] + [o for n in model.graph.node for o in n.output]
    for name in names:
        base = re.sub(r"[^0-9A-Za-z_]", "_", name).strip("_") or "v"
        if base[0].isdigit():
            base = "v_" + base
        cand, k = base, 1
        while cand in used:
            k += 1
            cand = f"{base}_{k}"
        used.add(cand)
        out[name] = cand
    return out


def _path(node: Any) -> str:
    """A module-like path for messages: the ONNX node name without its op suffix ('/conv1/Conv' -> 'conv1')."""
    name = str(node.name or "").strip("/")
    if "/" in name:
        name = name.rsplit("/", 1)[0]
    return name.replace("/", ".") or str(node.output[0])


def fold_nhwc_thresholds(model: Any) -> Any:
    """FINN's NHWC activations back in NCHW: `Transpose(0,2,3,1)`, `Mul`/`Add` by constants,
    `MultiThreshold(data_layout="NHWC")`, `Transpose(0,3,1,2)` becomes the `Mul`/`Add` (constants
    transposed) and an NCHW `MultiThreshold` on the transpose's input, which is then a binary activation
    with per-channel thresholds (a transpose of packed bits would have to unpack them). The
    MultiThreshold's output takes the second transpose's name, the value the references compute there."""
    import copy

    from onnx import numpy_helper

    g = model.graph
    inits = {t.name: t for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    outputs = {o.name for o in g.output}

    def only_use(value: str) -> Any:
        users = consumers.get(value, [])
        return users[0] if len(users) == 1 and value not in outputs else None

    def perm(node: Any) -> list[int]:
        return [int(p) for a in node.attribute if a.name == "perm" for p in a.ints]

    rewrites = []  # (first transpose, [Mul/Add nodes], MultiThreshold, second transpose)
    for mt in g.node:
        if mt.op_type != "MultiThreshold" or not mt.domain.startswith(CUSTOM_DOMAINS):
            continue
        layout = [a.s for a in mt.attribute if a.name == "data_layout"]
        if layout != [b"NHWC"]:
            continue
        after = only_use(mt.output[0])
        if after is None or after.op_type != "Transpose" or perm(after) != [0, 3, 1, 2]:
            continue
        chain, cur = [], mt.input[0]
        while True:
            p = producer.get(cur)
            if p is None or only_use(cur) is None:
                break
            if p.op_type in ("Mul", "Add") and sum(i in inits for i in p.input) == 1:
                chain.append(p)
                cur = next(i for i in p.input if i not in inits)
                continue
            break
        p = producer.get(cur)
        if p is not None and p.op_type == "Transpose" and perm(p) == [0, 2, 3, 1] and only_use(cur) is not None:
            rewrites.append((p, chain[::-1], mt, after))
    if not rewrites:
        return model
    model = copy.deepcopy(model)
    g = model.graph
    nodes = list(g.node)
    made = {n.output[0]: n for n in nodes}  # the copies, by the (unique) name of their first output
    dropped = {id(made[t1.output[0]]) for t1, _, _, _ in rewrites} | {id(made[t2.output[0]]) for *_, t2 in rewrites}
    for t1, chain, mt, t2 in rewrites:
        src = t1.input[0]
        for node in chain:
            c = made[node.output[0]]
            ci = next(j for j, i in enumerate(c.input) if i in inits)
            const = numpy_helper.to_array(inits[c.input[ci]])
            const = const.reshape((1,) * (4 - const.ndim) + const.shape).transpose(0, 3, 1, 2)
            cname = f"{c.input[ci]}__nchw_{c.output[0]}"
            g.initializer.append(numpy_helper.from_array(np.ascontiguousarray(const), cname))
            c.input[ci], c.input[1 - ci] = cname, src
            c.output[0] = src = f"{c.output[0]}__nchw"
        m = made[mt.output[0]]
        m.input[0], m.output[0] = src, t2.output[0]
        for a in m.attribute:
            if a.name == "data_layout":
                a.s = b"NCHW"
    del g.node[:]
    g.node.extend(n for n in nodes if id(n) not in dropped)
    return model


def to_model(model: Any, source: str = "model") -> Model:
    """The ONNX model as a `Model`, with all initializer-only computation folded."""
    model = fold_nhwc_thresholds(prepare(model, source))
    shapes = input_shapes(model, source)
    values = evaluate_all(model, tuple(np.zeros(s, np.float32) for s in shapes))
    result = _Capture(model, values, source).run(shapes)
    findings = checker_findings(model)
    if findings:
        result.metadata["onnx_checker"] = findings
    return result


class _Capture:
    def __init__(self, model: Any, values: dict[str, np.ndarray], source: str) -> None:
        self.model, self.values, self.source = model, values, source
        self.names = _safe_names(model)
        self.consts: dict[str, np.ndarray] = {}  # ONNX name -> constant (floats as float64)
        self.alias: dict[str, str] = {}  # ONNX name -> internal value name
        self.nodes: list[Node] = []
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.fx_paths: dict[str, str] = {}
        self.zero_one: dict[str, str] = {}  # internal {0, 1} value -> its ±1 (where) value
        self.metadata: dict[str, Any] = {}
        self.node_consts: dict[str, np.ndarray] = {}  # the constant operands of the nodes built
        for t in model.graph.initializer:
            self.consts[t.name] = self.values.get(t.name, _numpy(t))

    # ------------------------------------------------------------- the walk
    def run(self, shapes: list[tuple[int, ...]]) -> Model:
        inputs = []
        for inp, shape in zip(graph_inputs(self.model), shapes, strict=True):
            inputs.append(self.names[inp.name])
            self.alias[inp.name] = inputs[-1]
            self.shapes[inputs[-1]] = shape
        for node in self.model.graph.node:
            self.visit(node)
        outputs = []
        for o in self.model.graph.output:
            if o.name in self.consts:
                raise ConversionError(f"{self.source}: model output {o.name!r} is a constant; nothing to convert")
            outputs.append(self.alias[o.name])
        used = {v for n in self.nodes for v in n.inputs}
        consts: dict[str, np.ndarray] = {}
        for name, value in self.node_consts.items():
            if name in used:
                consts[name] = value
                self.shapes[name] = tuple(value.shape)
        annotations = _datatypes(self.model)
        if annotations:
            self.metadata["onnx_datatypes"] = annotations
        shape = shapes[0]
        return Model(
            inputs=inputs,
            outputs=outputs,
            nodes=self.nodes,
            consts=consts,
            shapes=self.shapes,
            metadata={
                "input_shape": list(shape),
                "input_shapes": [list(s) for s in shapes],  # every input, in graph order
                "fx_paths": self.fx_paths,
                **self.metadata,
            },
        )

    def visit(self, node: Any) -> None:
        if (
            node.op_type == "Constant"
            or all(i in self.consts or i == "" for i in node.input)
            or node.op_type
            in (
                "Shape",
                "Size",
            )
        ):
            for o in node.output:
                if o and o in self.values:
                    self.consts[o] = _as_const(self.values[o])
            return
        args: list[Any] = []
        in_shapes: list[tuple[int, ...] | None] = []
        for i in node.input:
            if i == "":
                args.append(None)
                in_shapes.append(None)
            elif i in self.consts:
                args.append(self.consts[i])
                in_shapes.append(tuple(self.consts[i].shape))
            else:
                v = self.alias[i]
                args.append(v)
                in_shapes.append(self.shapes[v])
        out_shape = tuple(self.values[node.output[0]].shape) if node.output[0] in self.values else ()
        call = OnnxNode(node, args, _attrs(node), out_shape, in_shapes)
        handler = _HANDLERS.get(node.op_type)
        if handler is None and node.op_type.lower() in OPS and _plain(node.op_type.lower()):
            handler = _plain_float
        if handler is None:
            raise call.unsupported("no ONNX handler for this op; see docs/onnx.md for the supported list")
        result = handler(self, call)
        out = node.output[0]
        if result is None:  # identity
            if isinstance(call.args[0], np.ndarray):  # e.g. CastLike(constant, x): a constant of x's type
                self.consts[out] = _as_const(self.values[out])
            else:
                self.alias[out] = call.args[0]
            return
        if isinstance(result, dict):  # several outputs, each its own chain
            for o, chain in result.items():
                self.add_chain(node, o, chain, tuple(self.values[o].shape))
            return
        chain = result if isinstance(result, list) else [result]
        self.add_chain(node, out, chain, out_shape)
        used = [o for o in node.output[1:] if o]
        if used and any(o in {i for n in self.model.graph.node for i in n.input} for o in used):
            raise call.unsupported("only its first output may be used (e.g. max-pool indices)")

    def add_chain(self, node: Any, onnx_out: str, chain: list[Lowered], shape: tuple[int, ...]) -> str:
        out_name = self.names[onnx_out]
        prev = ""
        path = _path(node)
        for i, step in enumerate(chain):
            last = i == len(chain) - 1
            out = out_name if last else f"{out_name}__{i}"
            operands = [prev if a is PREV else a for a in step.operands]
            origin = onnx_out if (last or step.shape == "origin") else ""
            n = Node(step.op, self.operand_names(out, operands), out, step.attrs, path, origin)
            n.where = f"ONNX node {node.op_type} '{node.name or onnx_out}'"
            self.shapes[out] = shape if last or step.shape in (None, "origin") else tuple(step.shape)  # type: ignore[arg-type]
            self.nodes.append(n)
            prev = out
        self.fx_paths[onnx_out] = path
        self.alias[onnx_out] = out_name
        return out_name

    def operand_names(self, stem: str, operands: list[Any]) -> list[str]:
        names = []
        for i, a in enumerate(operands):
            if isinstance(a, (np.ndarray, int, float, np.floating)):
                cname = f"{stem}_c{i}"
                self.node_consts[cname] = _as_const(np.asarray(a))
                names.append(cname)
            else:
                names.append(a)
        return names


def _numpy(t: Any) -> np.ndarray:
    from onnx import numpy_helper

    return numpy_helper.to_array(t)


def _as_const(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    return a.astype(np.float64) if a.dtype.kind == "f" else a


def _datatypes(model: Any) -> dict[str, str]:
    """FINN datatype annotations (graph.quantization_annotation): tensor name -> 'BIPOLAR', 'INT2', ..."""
    out = {}
    for qa in model.graph.quantization_annotation:
        for kv in qa.quant_parameter_tensor_names:
            if kv.key == "finn_datatype":
                out[qa.tensor_name] = kv.value
    return out


def _plain(op: str) -> bool:
    d = OPS[op]
    return d.in_dtype == "f32" and not d.attrs and not d.params


# --------------------------------------------------------------------------- handlers

Handler = Callable[[_Capture, OnnxNode], Any]


def _plain_float(cap: _Capture, n: OnnxNode) -> Lowered:
    op = n.op.lower()
    return Lowered(op, list(n.args[: OPS[op].inputs[1]]))


def _identity(cap: _Capture, n: OnnxNode) -> None:
    return None


_SAME = {
    "Sign": "sign",
    "Relu": "relu",
    "Sigmoid": "sigmoid",
    "Neg": "neg",
    "Add": "add",
    "Sub": "sub",
    "Mul": "mul",
    "Div": "div",
    "Where": "where",
    "Greater": "gt",
    "GreaterOrEqual": "ge",
    "Less": "lt",
    "LessOrEqual": "le",
    "Equal": "eq",
    "And": "mul",
}


def _same(cap: _Capture, n: OnnxNode) -> Lowered:
    return Lowered(_SAME[n.op], list(n.args))


def _binary_op(cap: _Capture, n: OnnxNode) -> Lowered:
    op = {"Max": "max", "Min": "min", "Pow": "pow", "Or": "max"}[n.op]
    if len(n.args) != 2:
        raise n.unsupported(f"{n.op} of exactly two tensors")
    return Lowered("binary", list(n.args), BinaryOpAttrs(op))


def _not(cap: _Capture, n: OnnxNode) -> Lowered:
    return Lowered("binary", [n.args[0], 0.0], BinaryOpAttrs("eq"))


def _cast(cap: _Capture, n: OnnxNode) -> Lowered | None:
    """Cast / CastLike: bool -> float is to_float, a float -> float cast is the identity (float32 throughout)."""
    src, out = cap.values.get(n.proto.input[0]), cap.values.get(n.proto.output[0])
    src_kind = src.dtype.kind if src is not None else "f"
    out_kind = out.dtype.kind if out is not None else "f"
    if out_kind == "f":
        return Lowered("to_float", [n.args[0]]) if src_kind == "b" else None
    if out_kind == src_kind:
        return None
    raise n.unsupported("casts to float32 (of a float or bool tensor) only")


def _clip(cap: _Capture, n: OnnxNode) -> Lowered | None:
    lo = n.attrs.get("min") if len(n.args) < 2 or n.args[1] is None else float(n.const(1, "min"))
    hi = n.attrs.get("max") if len(n.args) < 3 or n.args[2] is None else float(n.const(2, "max"))
    if lo is None and hi is None:
        return None
    fmax = float(np.finfo(np.float32).max)
    return Lowered("hardtanh", [n.args[0]], HardtanhAttrs(-fmax if lo is None else lo, fmax if hi is None else hi))


def _unary_attrs(cap: _Capture, n: OnnxNode) -> Lowered:
    if n.op == "LeakyRelu":
        return Lowered("leaky_relu", [n.args[0]], UnaryAttrs((("negative_slope", float(n.attrs.get("alpha", 0.01))),)))
    if n.op == "Elu":
        return Lowered("elu", [n.args[0]], UnaryAttrs((("alpha", float(n.attrs.get("alpha", 1.0))),)))
    approx = n.attrs.get("approximate", b"none")
    approx = approx.decode() if isinstance(approx, bytes) else str(approx)
    return Lowered("gelu", [n.args[0]], UnaryAttrs((("approximate", approx),)))


def _hard_sigmoid(cap: _Capture, n: OnnxNode) -> list[Lowered]:
    alpha, beta = float(n.attrs.get("alpha", 0.2)), float(n.attrs.get("beta", 0.5))
    if abs(alpha - 1 / 6) < 1e-7 and beta == 0.5:
        return [Lowered("hardsigmoid", [n.args[0]])]
    shape = n.shape
    return [
        Lowered("mul", [n.args[0], alpha], shape=shape),
        Lowered("add", [PREV, beta], shape=shape),
        Lowered("hardtanh", [PREV], HardtanhAttrs(0.0, 1.0)),
    ]


def _prelu(cap: _Capture, n: OnnxNode) -> Lowered:
    slope = n.const(1, "slope")
    c = n.in_shapes[0][1] if n.in_shapes[0] and len(n.in_shapes[0]) > 1 else 1  # type: ignore[index]
    if slope.size not in (1, c):
        raise n.unsupported("PRelu with one slope per channel (or one for all)")
    return Lowered("prelu", [n.args[0]], PReLUAttrs(np.broadcast_to(slope.reshape(-1), (c,)).astype(np.float64)))


def _conv_pads(n: OnnxNode, kernel: tuple[int, int], dil: tuple[int, int], stride: tuple[int, int]) -> list[int]:
    """[top, left, bottom, right] of a 2-D conv / pool, auto_pad resolved."""
    auto = n.attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if auto in ("NOTSET", ""):
        pads = [int(p) for p in n.attrs.get("pads", [0, 0, 0, 0])]
        return pads
    if auto == "VALID":
        return [0, 0, 0, 0]
    ins = n.in_shapes[0]
    assert ins is not None
    out: list[int] = []
    begins, ends = [], []
    for i in range(2):
        size = int(ins[2 + i])
        o = -(-size // stride[i])
        total = max(0, (o - 1) * stride[i] + (kernel[i] - 1) * dil[i] + 1 - size)
        small = total // 2
        begins.append(small if auto == "SAME_UPPER" else total - small)
        ends.append(total - begins[-1])
    out = begins + ends
    return out


def _spatial(n: OnnxNode, name: str, default: int) -> tuple[int, int]:
    v = n.attrs.get(name)
    if v is None:
        return (default, default)
    if len(v) != 2:
        raise n.unsupported(f"2-D {n.op} only ({name} {list(v)})")
    return int(v[0]), int(v[1])


def _pad_first(n: OnnxNode, x: Any, pads: list[int], value: float = 0.0) -> tuple[Any, list[Lowered], tuple[int, int]]:
    """(operand, chain before the op, symmetric padding): an asymmetric pad becomes a pad node first."""
    top, left, bottom, right = pads
    if top == bottom and left == right:
        return x, [], (top, left)
    ins = n.in_shapes[0]
    assert ins is not None
    padded = (ins[0], ins[1], ins[2] + top + bottom, ins[3] + left + right)
    return PREV, [Lowered("pad", [x], PadAttrs(top, bottom, left, right, value=value), shape=padded)], (0, 0)


def _conv(cap: _Capture, n: OnnxNode) -> list[Lowered]:
    w = n.const(1, "weight")
    if w.ndim != 4:
        raise n.unsupported("2-D convolutions (a 4-D weight)")
    stride, dil = _spatial(n, "strides", 1), _spatial(n, "dilations", 1)
    pads = _conv_pads(n, (w.shape[2], w.shape[3]), dil, stride)
    x, chain, padding = _pad_first(n, n.args[0], pads)
    bias = [n.const(2, "bias")] if len(n.args) > 2 and n.args[2] is not None else []
    attrs = ConvAttrs(stride, padding, groups=int(n.attrs.get("group", 1)), dilation=dil)
    return chain + [Lowered("conv2d", [x, w] + bias, attrs)]


def _conv_transpose(cap: _Capture, n: OnnxNode) -> Lowered:
    w = n.const(1, "weight")
    if w.ndim != 4:
        raise n.unsupported("2-D transposed convolutions (a 4-D weight)")
    if "output_shape" in n.attrs:
        raise n.unsupported("ConvTranspose with pads and output_padding (output_shape is not supported)")
    stride, dil = _spatial(n, "strides", 1), _spatial(n, "dilations", 1)
    pads = [int(p) for p in n.attrs.get("pads", [0, 0, 0, 0])]
    auto = n.attrs.get("auto_pad", b"NOTSET")
    if (auto.decode() if isinstance(auto, bytes) else str(auto)) not in ("NOTSET", "") or pads[:2] != pads[2:]:
        raise n.unsupported("ConvTranspose with symmetric explicit pads")
    bias = [n.const(2, "bias")] if len(n.args) > 2 and n.args[2] is not None else []
    attrs = ConvTransposeAttrs(
        stride, (pads[0], pads[1]), _spatial(n, "output_padding", 0), dil, int(n.attrs.get("group", 1))
    )
    return Lowered("conv_transpose2d", [n.args[0], w] + bias, attrs)


def _resize(cap: _Capture, n: OnnxNode) -> Lowered | None:
    """Resize of an NCHW tensor as F.interpolate computes it: nearest (asymmetric, floor) or bilinear."""
    shape = n.in_shapes[0]
    if shape is None or len(shape) != 4 or len(n.shape) != 4 or tuple(n.shape[:2]) != tuple(shape[:2]):
        raise n.unsupported("Resize of an NCHW tensor along H and W")
    if tuple(n.shape) == tuple(shape):
        return None

    def text(key: str, default: str) -> str:
        v = n.attrs.get(key, default)
        return v.decode() if isinstance(v, bytes) else str(v)

    mode, ctm = text("mode", "nearest"), text("coordinate_transformation_mode", "half_pixel")
    scales: tuple[float | None, float | None] = (None, None)
    if len(n.args) > 2 and isinstance(n.args[2], np.ndarray) and n.args[2].size == 4:
        scales = (float(n.args[2][2]), float(n.args[2][3]))
    if mode == "nearest" and ctm == "asymmetric" and text("nearest_mode", "round_prefer_floor") == "floor":
        return Lowered("resize", [n.args[0]], ResizeAttrs("nearest", False, scales))
    if mode == "linear" and ctm in ("align_corners", "pytorch_half_pixel", "half_pixel"):
        return Lowered("resize", [n.args[0]], ResizeAttrs("bilinear", ctm == "align_corners", scales))
    raise n.unsupported("Resize as F.interpolate exports it: nearest (asymmetric, floor) or linear (2-D)")


def _layer_norm(cap: _Capture, n: OnnxNode) -> Lowered:
    rank = len(n.in_shapes[0] or ())
    axis = int(n.attrs.get("axis", -1)) % rank
    scale = n.const(1, "scale")
    bias = n.const(2, "bias") if len(n.args) > 2 and n.args[2] is not None else np.zeros_like(scale)
    return Lowered(
        "layer_norm", [n.args[0], scale, bias], LayerNormAttrs(rank - axis, float(n.attrs.get("epsilon", 1e-5)))
    )


def _expand(cap: _Capture, n: OnnxNode) -> Lowered | None:
    return None if tuple(n.shape) == n.in_shapes[0] else Lowered("expand", [n.args[0]])


def _gemm(cap: _Capture, n: OnnxNode) -> list[Lowered]:
    if n.attrs.get("transA", 0):
        raise n.unsupported("Gemm with transA = 0 (x @ W)")
    b = n.const(1, "weight B")
    w = b if n.attrs.get("transB", 0) else b.T
    alpha, beta = float(n.attrs.get("alpha", 1.0)), float(n.attrs.get("beta", 1.0))
    if alpha != 1.0:
        w = w * alpha
    chain = [Lowered("linear", [n.args[0], np.ascontiguousarray(w)], LinearAttrs(), shape=n.shape)]
    if len(n.args) > 2 and n.args[2] is not None:
        c = n.const(2, "bias C") * beta
        if c.size == w.shape[0]:
            chain[0] = Lowered("linear", [n.args[0], np.ascontiguousarray(w), c.reshape(-1)], LinearAttrs())
        else:
            chain.append(Lowered("add", [PREV, c]))
    return chain


def _matmul(cap: _Capture, n: OnnxNode) -> Lowered:
    a, b = n.args
    if isinstance(b, np.ndarray) and b.ndim == 2 and isinstance(a, str) and len(n.in_shapes[0] or ()) == 2:
        return Lowered("linear", [a, np.ascontiguousarray(b.T)], LinearAttrs())
    return Lowered("matmul", [a, b])


def _einsum(cap: _Capture, n: OnnxNode) -> Lowered:
    """Einsum that is a matrix product: `...ij,jk->...ik` (or `kj`) with a constant right operand is a linear,
    `...ij,...jk->...ik` of two tensors with the same leading letters is a matmul; other equations are refused."""
    eq = n.attrs.get("equation", b"")
    eq = (eq.decode() if isinstance(eq, bytes) else str(eq)).replace(" ", "")
    hint = "Einsum as a matrix product ('...ij,jk->...ik', '...ij,kj->...ik' or '...ij,...jk->...ik')"
    if eq.count("->") != 1 or eq.count(",") != 1 or "." in eq or len(n.args) != 2:
        raise n.unsupported(hint)
    ins, out = eq.split("->")
    a, b = ins.split(",")
    if len(a) < 2 or len(set(a)) != len(a) or len(set(b)) != len(b):
        raise n.unsupported(hint)
    j = a[-1]
    x, w = n.args
    if isinstance(w, np.ndarray) and isinstance(x, str) and len(b) == 2 and j in b:
        k = b.replace(j, "")
        if k and k not in a and out == a[:-1] + k:
            mat = w if b == j + k else w.T  # (j, k)
            return Lowered("linear", [x, np.ascontiguousarray(mat.T)], LinearAttrs())
    lead = a[:-2]
    if len(b) == len(a) and b[:-2] == lead and b[-2] == j and out == lead + a[-2] + b[-1]:
        return Lowered("matmul", [x, w])
    raise n.unsupported(hint)


def _batch_norm(cap: _Capture, n: OnnxNode) -> Lowered:
    if n.attrs.get("training_mode", 0):
        raise n.unsupported("BatchNormalization in inference mode (training_mode = 0)")
    ops = [n.const(i, k) for i, k in ((1, "scale"), (2, "bias"), (3, "mean"), (4, "var"))]
    return Lowered("batch_norm", [n.args[0], *ops], BatchNormAttrs(float(n.attrs.get("epsilon", 1e-5))))


def _pool(cap: _Capture, n: OnnxNode) -> list[Lowered]:
    k = _spatial(n, "kernel_shape", 1)
    stride, dil = _spatial(n, "strides", 1), _spatial(n, "dilations", 1)
    if dil != (1, 1):
        raise n.unsupported("pooling without dilation")
    pads = _conv_pads(n, k, dil, stride)
    ceil = bool(n.attrs.get("ceil_mode", 0))
    if n.op == "MaxPool":
        x, chain, padding = _pad_first(n, n.args[0], pads, value=-float(np.finfo(np.float32).max))
        return chain + [Lowered("maxpool2d", [x], PoolAttrs(k, stride, padding, ceil_mode=ceil))]
    include = bool(n.attrs.get("count_include_pad", 0))
    if pads[0] != pads[2] or pads[1] != pads[3]:
        raise n.unsupported("AveragePool with symmetric pads")
    return [Lowered("avgpool2d", [n.args[0]], AvgPoolAttrs(k, stride, (pads[0], pads[1]), include, ceil_mode=ceil))]


def _global_avgpool(n: OnnxNode) -> list[Lowered]:
    """global_avgpool (N, C), then the (N, C, 1, 1) ONNX keeps as a reshape."""
    if len(n.shape) == 2:
        return [Lowered("global_avgpool", [n.args[0]])]
    return [Lowered("global_avgpool", [n.args[0]], shape=tuple(n.shape[:2])), Lowered("reshape", [PREV])]


def _global_pool(cap: _Capture, n: OnnxNode) -> Lowered | list[Lowered]:
    if n.op == "GlobalAveragePool":
        return _global_avgpool(n)
    rank = len(n.in_shapes[0] or ())
    return Lowered("reduce", [n.args[0]], ReduceAttrs("max", tuple(range(2, rank)), True))


def _reshape(cap: _Capture, n: OnnxNode) -> Lowered | None:
    if n.in_shapes[0] == n.shape:
        return None
    return Lowered("reshape", [n.args[0]])


def _concat(cap: _Capture, n: OnnxNode) -> Lowered:
    axis = int(n.attrs.get("axis", 1)) % len(n.shape)
    if axis == 1 and len(n.shape) in (2, 4):
        return Lowered("concat", list(n.args))
    return Lowered("cat", list(n.args), AxisAttrs(axis))


def _softmax(cap: _Capture, n: OnnxNode) -> Lowered:
    op = "log_softmax" if n.op == "LogSoftmax" else "softmax"
    return Lowered(op, [n.args[0]], AxisAttrs(int(n.attrs.get("axis", -1)) % len(n.shape)))


def _transpose(cap: _Capture, n: OnnxNode) -> Lowered | None:
    rank = len(n.shape)
    perm = tuple(int(p) for p in n.attrs.get("perm", list(range(rank))[::-1]))
    if perm == tuple(range(rank)):
        return None
    return Lowered("transpose", [n.args[0]], PermuteAttrs(perm))


def _pad(cap: _Capture, n: OnnxNode) -> Lowered | None:
    pads = [int(p) for p in (n.const(1, "pads") if len(n.args) > 1 else n.attrs.get("pads", []))]
    value = 0.0
    if len(n.args) > 2 and n.args[2] is not None:
        value = float(n.const(2, "constant_value").reshape(-1)[0])
    mode = n.attrs.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    modes = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}
    if len(n.args) > 3 and n.args[3] is not None or len(pads) != 8 or mode not in modes or pads[0] or pads[4]:
        raise n.unsupported("Pad of an NCHW tensor along C, H, W (constant, reflect or edge)")
    if min(pads) < 0:
        raise n.unsupported("Pad with non-negative sizes")
    if not any(pads):
        return None
    _, c0, h0, w0, _, c1, h1, w1 = pads
    return Lowered("pad", [n.args[0]], PadAttrs(h0, h1, w0, w1, c0, c1, value, modes[mode]))  # type: ignore[arg-type]


def _axes(n: OnnxNode, rank: int) -> tuple[int, ...]:
    axes = n.attrs.get("axes")
    if axes is None and len(n.args) > 1 and n.args[1] is not None:
        axes = n.const(1, "axes").reshape(-1).tolist()
    if not axes:
        if n.attrs.get("noop_with_empty_axes", 0):
            return ()
        return tuple(range(rank))
    return tuple(sorted({int(a) % rank for a in axes}))


def _reduce(cap: _Capture, n: OnnxNode) -> Lowered | list[Lowered] | None:
    rank = len(n.in_shapes[0] or ())
    dims = _axes(n, rank)
    if not dims:
        return None
    op = {"ReduceMean": "mean", "ReduceSum": "sum", "ReduceMax": "max", "ReduceMin": "min"}[n.op]
    if op == "mean" and rank == 4 and dims == (2, 3):
        return _global_avgpool(n)
    return Lowered("reduce", [n.args[0]], ReduceAttrs(op, dims, bool(n.attrs.get("keepdims", 1))))  # type: ignore[arg-type]


def _slice(cap: _Capture, n: OnnxNode) -> list[Lowered] | None:
    shape = n.in_shapes[0]
    assert shape is not None
    starts, ends = n.const(1, "starts").reshape(-1), n.const(2, "ends").reshape(-1)
    axes = n.const(3, "axes").reshape(-1) if len(n.args) > 3 and n.args[3] is not None else np.arange(len(starts))
    steps = n.const(4, "steps").reshape(-1) if len(n.args) > 4 and n.args[4] is not None else np.ones(len(starts))
    chain: list[Lowered] = []
    cur = list(shape)
    for s, e, a, st in zip(starts, ends, axes, steps, strict=True):
        a, st = int(a) % len(shape), int(st)
        if st <= 0:
            raise n.unsupported("Slice with positive steps")
        lo, hi, _ = slice(int(max(min(s, 2**62), -(2**62))), int(max(min(e, 2**62), -(2**62))), st).indices(cur[a])
        if (lo, hi, st) == (0, cur[a], 1):
            continue
        cur[a] = len(range(lo, hi, st))
        chain.append(Lowered("slice", [n.args[0] if not chain else PREV], SliceAttrs(a, lo, hi, st), shape=tuple(cur)))
    return chain or None


def _split(cap: _Capture, n: OnnxNode) -> dict[str, list[Lowered]]:
    shape = n.in_shapes[0]
    assert shape is not None
    axis = int(n.attrs.get("axis", 0)) % len(shape)
    out: dict[str, list[Lowered]] = {}
    start = 0
    for o in n.proto.output:
        size = int(cap.values[o].shape[axis])
        if o:
            out[o] = [Lowered("slice", [n.args[0]], SliceAttrs(axis, start, start + size, 1))]
        start += size
    return out


def _gather(cap: _Capture, n: OnnxNode) -> list[Lowered] | Lowered:
    """Gather: one constant index is a slice (x[:, i]); an index tensor (constant or computed) is `take`."""
    shape = n.in_shapes[0]
    assert shape is not None
    axis = int(n.attrs.get("axis", 0)) % len(shape)
    idx = n.args[1]
    if not isinstance(idx, np.ndarray) or idx.ndim != 0:
        return Lowered("take", [n.args[0], _index_operand(idx)], IndexAttrs(axis))
    i = int(idx) % int(shape[axis])
    kept = tuple(shape[:axis]) + (1,) + tuple(shape[axis + 1 :])
    return [Lowered("slice", [n.args[0]], SliceAttrs(axis, i, i + 1, 1), shape=kept), Lowered("reshape", [PREV])]


def _index_operand(idx: Any) -> Any:
    """An ONNX index operand for take / gather: a constant becomes float (the IR's index tensors are float32
    integers, docs/ir.md); a computed one (ArgMax, TopK indices) already is."""
    return idx.astype(np.float64) if isinstance(idx, np.ndarray) else idx


def _index_axis(n: OnnxNode, default: int) -> int:
    rank = len(n.in_shapes[0] or ())
    return int(n.attrs.get("axis", default)) % max(1, rank)


def _gather_elements(cap: _Capture, n: OnnxNode) -> Lowered:
    if isinstance(n.args[1], np.ndarray):
        # the index has x's rank, batch axis included: a constant one would fix the batch size at 1
        raise n.unsupported("GatherElements with a computed index (e.g. TopK's or ArgMax's); a constant one is not")
    return Lowered("gather", [n.args[0], _index_operand(n.args[1])], IndexAttrs(_index_axis(n, 0)))


def _arg_max_min(cap: _Capture, n: OnnxNode) -> Lowered:
    if n.attrs.get("select_last_index", 0):
        raise n.unsupported(f"{n.op} with select_last_index = 0 (the first index on ties)")
    keep = bool(n.attrs.get("keepdims", 1))
    return Lowered("arg_reduce", [n.args[0]], IndexAttrs(_index_axis(n, 0), n.op.lower(), keepdim=keep))


def _topk_onnx(cap: _Capture, n: OnnxNode) -> dict[str, list[Lowered]]:
    """TopK: (values, indices), each a `topk` node (sorted; equal values by lower index, as onnxruntime)."""
    k = int(n.const(1, "K").reshape(-1)[0])
    axis, largest = _index_axis(n, -1), bool(n.attrs.get("largest", 1))
    out: dict[str, list[Lowered]] = {}
    for o, part in zip(n.proto.output, ("values", "indices"), strict=False):
        if o:
            out[o] = [Lowered("topk", [n.args[0]], IndexAttrs(axis, part, k=k, largest=largest))]
    return out


def _cumsum_onnx(cap: _Capture, n: OnnxNode) -> Lowered | list[Lowered]:
    """CumSum; `reverse` as the running sum of the reversed axis, reversed back (two `take`s)."""
    if n.attrs.get("exclusive", 0):
        raise n.unsupported("CumSum with exclusive = 0")
    shape = n.in_shapes[0] or ()
    axis = int(n.const(1, "axis").reshape(-1)[0]) % max(1, len(shape))
    if not n.attrs.get("reverse", 0):
        return Lowered("cumsum", [n.args[0]], IndexAttrs(axis))
    rev = np.arange(shape[axis] - 1, -1, -1, dtype=np.float64)
    return [
        Lowered("take", [n.args[0], rev], IndexAttrs(axis), shape=n.shape),
        Lowered("cumsum", [PREV], IndexAttrs(axis), shape=n.shape),
        Lowered("take", [PREV, rev], IndexAttrs(axis)),
    ]


def _tile(cap: _Capture, n: OnnxNode) -> list[Lowered] | None:
    """Tile: per repeated axis, one concatenation of r copies (as x.repeat from PyTorch)."""
    shape = list(n.in_shapes[0] or ())
    reps = [int(r) for r in n.const(1, "repeats").reshape(-1)]
    if len(reps) != len(shape) or min(reps, default=1) < 1:
        raise n.unsupported("Tile with one positive repeat count per axis")
    return repeat_chain(n.args[0], shape, reps)


# --------------------------------------------------------------------------- QONNX / FINN


def _scalar_of(n: OnnxNode, i: int, what: str) -> float:
    a = n.const(i, what)
    if a.size != 1:
        raise n.unsupported(f"a scalar {what}")
    return float(a.reshape(-1)[0])


def _sign_where(x: Any, shape: tuple[int, ...], thr: Any = 0.0) -> list[Lowered]:
    """where(x >= thr, 1, -1): WhereToSign makes it an act_sign with sign(thr) = +1 (BipolarQuant's rule)."""
    return [
        Lowered("ge", [x, thr], shape=shape),
        Lowered("where", [PREV, 1.0, -1.0], shape="origin"),  # type: ignore[arg-type]
    ]


def _bipolar_quant(cap: _Capture, n: OnnxNode) -> list[Lowered]:
    scale = n.const(1, "scale")
    if np.any(scale <= 0):
        raise n.unsupported("BipolarQuant with a positive scale")
    chain = _sign_where(n.args[0], n.shape)
    if np.all(scale == 1):
        chain[-1] = Lowered("where", [PREV, 1.0, -1.0])
        return chain
    return chain + [Lowered("mul", [PREV, scale])]


_ROUNDING = {"ROUND": "round", "HALF_EVEN": "round", "FLOOR": "floor"}


def _quant(cap: _Capture, n: OnnxNode) -> list[Lowered]:
    """QONNX Quant of an activation: 1-bit signed -> the sign form; 2+ bits -> float fake-quant."""
    from qonnx.custom_op.general.intquant import max_int, min_int

    scale, zp, bits = n.const(1, "scale"), n.const(2, "zero point"), _scalar_of(n, 3, "bit width")
    signed, narrow = bool(n.attrs.get("signed", 1)), bool(n.attrs.get("narrow", 0))
    mode = n.attrs.get("rounding_mode", b"ROUND")
    mode = (mode.decode() if isinstance(mode, bytes) else str(mode)).upper()
    if np.any(scale <= 0):
        raise n.unsupported("Quant with a positive scale")
    shape = n.shape
    if bits == 1 and signed and np.all(zp == 0):
        chain = _sign_where(n.args[0], shape)
        if np.all(scale == 1):
            chain[-1] = Lowered("where", [PREV, 1.0, -1.0])
            return chain
        return chain + [Lowered("mul", [PREV, scale])]
    if bits != int(bits) or bits < 1:
        raise n.unsupported("Quant with an integer bit width")
    chain = [Lowered("div", [n.args[0], scale], shape=shape)]
    if np.any(zp != 0):
        chain.append(Lowered("add", [PREV, zp], shape=shape))
    if bits == 1 and signed:
        chain += [Lowered("ge", [PREV, 0.0], shape=shape), Lowered("where", [PREV, 1.0, -1.0], shape=shape)]
    else:
        lo, hi = min_int(signed, narrow, int(bits)), max_int(signed, narrow, int(bits))
        chain.append(Lowered("hardtanh", [PREV], HardtanhAttrs(float(lo), float(hi)), shape=shape))
        chain += _rounding(n, mode, shape)
    if np.any(zp != 0):
        chain.append(Lowered("sub", [PREV, zp], shape=shape))
    chain.append(Lowered("mul", [PREV, scale]))
    return chain


def _rounding(n: OnnxNode, mode: str, shape: tuple[int, ...]) -> list[Lowered]:
    """qonnx's rounding modes that have float IR ops: ROUND / HALF_EVEN (half to even), FLOOR, CEIL."""
    if mode in _ROUNDING:
        return [Lowered(_ROUNDING[mode], [PREV], shape=shape)]
    if mode == "CEIL":
        return [Lowered(op, [PREV], shape=shape) for op in ("neg", "floor", "neg")]
    raise n.unsupported(f"{n.op} with rounding_mode ROUND, HALF_EVEN, FLOOR or CEIL (not {mode})")


def _trunc(cap: _Capture, n: OnnxNode) -> list[Lowered]:
    """QONNX Trunc (v1: 5 inputs, v2: 6) as float ops, in qonnx's order (quantized average pooling)."""
    from qonnx.custom_op.general.intquant import max_int, min_int

    scale, zp = n.const(1, "scale"), n.const(2, "zero point")
    in_bits = _scalar_of(n, 3, "input bit width")
    mode = n.attrs.get("rounding_mode", b"FLOOR")
    mode = (mode.decode() if isinstance(mode, bytes) else str(mode)).upper()
    shape = n.shape
    chain = [Lowered("div", [n.args[0], scale], shape=shape)]
    if np.any(zp != 0):
        chain.append(Lowered("add", [PREV, zp], shape=shape))
    chain.append(Lowered("round", [PREV], shape=shape))
    if len(n.args) == 5:
        trunc_scale = 2.0 ** (in_bits - _scalar_of(n, 4, "output bit width"))
        chain.append(Lowered("div", [PREV, trunc_scale], shape=shape))
        chain += _rounding(n, mode, shape)
        out_zp, out_scale = zp, scale
    else:
        out_scale = n.const(4, "output scale")
        out_bits = int(_scalar_of(n, 5, "output bit width"))
        trunc_scale = 2.0 ** np.round(np.log2(out_scale / scale))
        signed, narrow = bool(n.attrs.get("signed", 1)), bool(n.attrs.get("narrow", 0))
        lo, hi = min_int(signed, narrow, out_bits), max_int(signed, narrow, out_bits)
        chain.append(Lowered("div", [PREV, trunc_scale], shape=shape))
        chain.append(Lowered("hardtanh", [PREV], HardtanhAttrs(float(lo), float(hi)), shape=shape))
        chain += _rounding(n, mode, shape)
        out_zp = zp / trunc_scale
    if np.any(out_zp != 0):
        chain.append(Lowered("sub", [PREV, out_zp], shape=shape))
    chain.append(Lowered("mul", [PREV, out_scale]))
    return chain


def _channel_thresholds(n: OnnxNode, thr: np.ndarray, j: int, rank: int, last: bool) -> np.ndarray:
    """Column j of (C, T) thresholds shaped to broadcast over the input's channel axis."""
    col = thr[:, j].astype(np.float64)
    if rank <= 1:
        return col.reshape(-1)
    shape = [1] * rank
    shape[-1 if last else 1] = col.size
    return col.reshape(shape)


def _multi_threshold(cap: _Capture, n: OnnxNode) -> list[Lowered]:
    """out_bias + out_scale * #(x >= t_j): one threshold with a ±1 or {0, 1} output becomes the sign form."""
    thr = n.const(1, "thresholds")
    if thr.ndim != 2:
        raise n.unsupported("MultiThreshold with (C, T) thresholds")
    shape = n.shape
    rank = len(shape)
    last = multithreshold_channel_axis(n.attrs.get("data_layout"), rank) == rank - 1 and rank > 2
    scale = float(n.attrs.get("out_scale", 1.0))
    bias = float(n.attrs.get("out_bias", 0.0))
    steps = thr.shape[1]
    x = n.args[0]
    if steps == 1 and last and rank == 4 and (scale, bias) in ((2.0, -1.0), (1.0, 0.0)):
        # NHWC (FINN's layout after its layout transforms): in NCHW, thresholded, back; the transposes
        # cancel against the graph's own NCHW <-> NHWC pair, so the activation is a binary one
        nchw = (shape[0], shape[3], shape[1], shape[2])
        inner = _sign_where(PREV, nchw, _channel_thresholds(n, thr, 0, rank, False))
        inner[-1] = Lowered("where", [PREV, 1.0, -1.0], shape=nchw)
        if (scale, bias) == (1.0, 0.0):
            half = np.full(nchw[1], 0.5)
            inner.append(Lowered("affine", [PREV], AffineAttrs(half, half.copy()), shape=nchw))
        return [
            Lowered("transpose", [x], PermuteAttrs((0, 3, 1, 2)), shape=nchw),
            *inner,
            Lowered("transpose", [PREV], PermuteAttrs((0, 2, 3, 1))),
        ]
    if steps == 1:
        t = _channel_thresholds(n, thr, 0, rank, last)
        if (scale, bias) == (2.0, -1.0):
            chain = _sign_where(x, shape, t)
            chain[-1] = Lowered("where", [PREV, 1.0, -1.0])
            return chain
        if (scale, bias) == (1.0, 0.0) and not last:
            # {0, 1} = (1 + s) / 2 of the sign s: a binary layer reading it reads s (BinaryWeights)
            cap.metadata.setdefault("zero_one_signs", []).append(n.proto.output[0])
            half = np.full(shape[1], 0.5)
            return _sign_where(x, shape, t) + [Lowered("affine", [PREV], AffineAttrs(half, half.copy()))]
    # the count: to_float(x >= t_j) summed; step i of the chain is the value `{output}__{i}` (add_chain)
    chain: list[Lowered] = []
    total = -1
    for j in range(steps):
        t = _channel_thresholds(n, thr, j, rank, last)
        chain += [Lowered("ge", [x, t], shape=shape), Lowered("to_float", [PREV], shape=shape)]
        if total >= 0:
            chain.append(Lowered("add", [PREV, f"{cap.names[n.proto.output[0]]}__{total}"], shape=shape))
        total = len(chain) - 1
    if scale != 1.0:
        chain.append(Lowered("mul", [PREV, scale], shape=shape))
    if bias != 0.0:
        chain.append(Lowered("add", [PREV, bias], shape=shape))
    return chain


def _quant_avgpool(cap: _Capture, n: OnnxNode) -> list[Lowered]:
    """QONNX QuantAvgPool2d: the window sum (average pool times k * k, rounded as qonnx does) shifted right by
    qonnx's shift (a floor division by a power of two); float ops, NHWC between two transposes."""
    k, stride = int(n.attrs.get("kernel", 1)), int(n.attrs.get("stride", 1))
    shift = quant_avgpool_shift(k, int(n.attrs.get("ibits", 1)), int(n.attrs.get("obits", 1)))
    layout = n.attrs.get("data_layout", b"NCHW")
    nhwc = (layout.decode() if isinstance(layout, bytes) else str(layout)) == "NHWC"
    shape = tuple(n.shape)
    inner = (shape[0], shape[3], shape[1], shape[2]) if nhwc else shape
    chain: list[Lowered] = []
    if nhwc:
        ins = n.in_shapes[0] or ()
        chain.append(
            Lowered("transpose", [n.args[0]], PermuteAttrs((0, 3, 1, 2)), shape=(ins[0], ins[3], ins[1], ins[2]))
        )
    chain += [
        Lowered(
            "avgpool2d",
            [PREV if nhwc else n.args[0]],
            AvgPoolAttrs((k, k), (stride, stride), (0, 0), True),
            shape=inner,
        ),
        Lowered("mul", [PREV, float(k * k)], shape=inner),
        Lowered("round", [PREV], shape=inner),
        Lowered("mul", [PREV, 2.0**-shift], shape=inner),
        Lowered("floor", [PREV], shape=inner),
    ]
    if nhwc:
        chain.append(Lowered("transpose", [PREV], PermuteAttrs((0, 2, 3, 1))))
    return chain


def _xnor_popcount(cap: _Capture, n: OnnxNode) -> list[Lowered]:
    """popcount(xnor(x, W)) of {0, 1} x and W = (s @ (2W - 1) + K) / 2 with s = 2x - 1."""
    w = n.const(1, "weight")
    if w.ndim != 2 or len(n.in_shapes[0] or ()) != 2:
        raise n.unsupported("XnorPopcountMatMul of an (N, K) activation and a constant (K, M) weight")
    k = w.shape[0]
    wt = np.ascontiguousarray((2.0 * w - 1.0).T)
    x = n.args[0]
    shape_in = n.in_shapes[0]
    chain: list[Lowered] = []
    # a {0, 1} tensor this front end built from a sign s: read s itself
    prod = next((nd for nd in cap.nodes if nd.output == x), None)
    if prod is not None and prod.op == "affine" and isinstance(prod.attrs, AffineAttrs):
        s: Any = prod.inputs[0]
    else:
        chain = [Lowered("ge", [x, 0.5], shape=shape_in), Lowered("where", [PREV, 1.0, -1.0], shape=shape_in)]
        s = PREV
    chain += [
        Lowered("linear", [s, wt], LinearAttrs(), shape=n.shape),
        Lowered("mul", [PREV, 0.5], shape=n.shape),
        Lowered("add", [PREV, k / 2.0]),
    ]
    return chain


_HANDLERS: dict[str, Handler] = {
    **dict.fromkeys(("Identity", "Dropout"), _identity),
    **dict.fromkeys(_SAME, _same),
    **dict.fromkeys(("Max", "Min", "Pow", "Or"), _binary_op),
    "Not": _not,
    **dict.fromkeys(("Cast", "CastLike"), _cast),
    "Clip": _clip,
    **dict.fromkeys(("LeakyRelu", "Elu", "Gelu"), _unary_attrs),
    "HardSigmoid": _hard_sigmoid,
    "PRelu": _prelu,
    "Conv": _conv,
    "Gemm": _gemm,
    "ConvTranspose": _conv_transpose,
    "Resize": _resize,
    "LayerNormalization": _layer_norm,
    "Expand": _expand,
    "MatMul": _matmul,
    "Einsum": _einsum,
    "BatchNormalization": _batch_norm,
    **dict.fromkeys(("MaxPool", "AveragePool"), _pool),
    **dict.fromkeys(("GlobalAveragePool", "GlobalMaxPool"), _global_pool),
    **dict.fromkeys(("Reshape", "Flatten", "Squeeze", "Unsqueeze"), _reshape),
    "Concat": _concat,
    **dict.fromkeys(("Softmax", "LogSoftmax"), _softmax),
    "Transpose": _transpose,
    "Pad": _pad,
    **dict.fromkeys(("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin"), _reduce),
    "Slice": _slice,
    "Split": _split,
    "Gather": _gather,
    "GatherElements": _gather_elements,
    **dict.fromkeys(("ArgMax", "ArgMin"), _arg_max_min),
    "TopK": _topk_onnx,
    "CumSum": _cumsum_onnx,
    "Tile": _tile,
    "BipolarQuant": _bipolar_quant,
    **dict.fromkeys(("Quant", "IntQuant"), _quant),
    "MultiThreshold": _multi_threshold,
    "Trunc": _trunc,
    "XnorPopcountMatMul": _xnor_popcount,
    "QuantAvgPool2d": _quant_avgpool,
}


# --------------------------------------------------------------------------- ReduceProd, narrow casts, scatters

_CAST_NARROW = {10: "float16", 16: "bfloat16"}  # TensorProto.FLOAT16, BFLOAT16


def _reduce_prod(cap: _Capture, n: OnnxNode) -> Lowered | list[Lowered] | None:
    """ReduceProd over any axes; all of them without keepdims is a rank-0 value (held as reduce + reshape)."""
    rank = len(n.in_shapes[0] or ())
    dims = _axes(n, rank)
    if not dims:
        return None
    keep = bool(n.attrs.get("keepdims", 1))
    if not keep and len(dims) == rank:
        return [
            Lowered("reduce", [n.args[0]], ReduceAttrs("prod", dims, True), shape=(1,) * rank),
            Lowered("reshape", [PREV]),
        ]
    return Lowered("reduce", [n.args[0]], ReduceAttrs("prod", dims, keep))


def _cast_narrow(cap: _Capture, n: OnnxNode) -> Lowered | list[Lowered] | None:
    """Cast to FLOAT16 / BFLOAT16: the value rounded to that format and held in float32 (cast_float); a cast
    back to float is then the identity. Other casts as before."""
    fmt = _CAST_NARROW.get(int(n.attrs.get("to", 1))) if n.op == "Cast" else None
    if fmt is None:
        return _cast(cap, n)
    return [Lowered("cast_float", [n.args[0]], UnaryAttrs((("to", fmt),)), shape=n.shape)]


_ONNX_SCATTER = {"none": "none", "add": "add", "mul": "mul", "max": "max", "min": "min"}


def _reduction(n: OnnxNode) -> str:
    r = n.attrs.get("reduction", b"none")
    r = r.decode() if isinstance(r, bytes) else str(r)
    if r not in _ONNX_SCATTER:
        raise n.unsupported(f"{n.op} with reduction none, add, mul, max or min")
    return _ONNX_SCATTER[r]


def _scatter_elements(cap: _Capture, n: OnnxNode) -> Lowered:
    """ScatterElements (reduction none / add / mul / max / min): the `scatter` op along `axis`."""
    return Lowered(
        "scatter",
        [n.args[0], _index_operand(n.args[1]), n.args[2]],
        IndexAttrs(_index_axis(n, 0), _reduction(n)),
    )


def _scatter_nd(cap: _Capture, n: OnnxNode) -> list[Lowered]:
    """ScatterND with a constant index (..., q): data seen as (P, rest) with P the product of its first q
    dims, the index made linear in numpy (checked here), a `scatter` along axis 0, data's shape again."""
    shape = tuple(n.in_shapes[0] or ())
    idx = n.const(1, "indices").astype(np.int64)
    q = int(idx.shape[-1])
    if not 1 <= q <= len(shape):
        raise n.unsupported("ScatterND with 1 <= indices.shape[-1] <= rank")
    lead, rest = shape[:q], shape[q:]
    if np.any(idx < -np.asarray(lead)) or np.any(idx >= np.asarray(lead)):
        raise n.unsupported(f"ScatterND with indices inside the data's first {q} dims {lead}")
    idx = np.where(idx < 0, idx + np.asarray(lead), idx)
    strides = np.cumprod((1,) + lead[::-1])[:-1][::-1]
    flat = (idx * strides).sum(-1).reshape(-1)  # (K,)
    k, p = int(flat.size), int(np.prod(lead))
    index = np.broadcast_to(flat.reshape((k,) + (1,) * len(rest)), (k,) + rest).astype(np.float64)
    updates: Any = n.args[2]
    folded = (p,) + rest
    steps = [Lowered("reshape", [n.args[0]], shape=folded)]
    if isinstance(updates, np.ndarray):
        updates = updates.reshape((k,) + rest)
    else:
        steps.append(Lowered("reshape", [updates], shape=(k,) + rest))
        updates = f"{cap.names[n.proto.output[0]]}__1"
    data = f"{cap.names[n.proto.output[0]]}__0"
    return steps + [
        Lowered("scatter", [data, np.ascontiguousarray(index), updates], IndexAttrs(0, _reduction(n)), shape=folded),
        Lowered("reshape", [PREV]),
    ]


_HANDLERS.update(
    {
        "ReduceProd": _reduce_prod,
        "Cast": _cast_narrow,
        "ScatterElements": _scatter_elements,
        "ScatterND": _scatter_nd,
    }
)
