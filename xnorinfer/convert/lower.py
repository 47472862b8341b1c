"""Lowering: the recognised internal `Model` (PyTorch NCHW shapes) -> `ir.Graph` (NHWC).

Conv weights become OHWI, binary weights are packed (pack.py), binary epilogues become
threshold/flip (already folded) or multiplier/bias (fold.affine), and a flatten of a (C, H, W)
tensor permutes the following (b)linear's weight columns to the IR's (H, W, C) order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xnorinfer import ir
from xnorinfer.convert import fold
from xnorinfer.convert.graph import ConversionError, Model, Node
from xnorinfer.convert.pack import pack_conv_weight, pack_linear_weight

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
    tensors: dict[str, ir.Tensor] = {}
    ops: list[ir.Op] = []
    vals: dict[str, _Val] = {}
    binary_outputs: dict[str, dict[str, str]] = {}

    def new_tensor(stem: str, shape: tuple[int, ...], dtype: str) -> str:
        name = stem
        i = 1
        while name in tensors:
            name, i = f"{stem}_{i}", i + 1
        tensors[name] = ir.Tensor(name, tuple(int(d) for d in shape), dtype)
        return name

    x0 = model.inputs[0]
    if len(model.shapes[x0]) == 2:  # an (N, F) input: the engine takes it as NCHW (N, F, 1, 1), then flattens
        f = model.shapes[x0][1]
        in_name = new_tensor("input", (1, 1, 1, f), "f32")
        flat = new_tensor("input_flat", (1, f), "f32")
        ops.append(ir.Op("flatten", "input", [in_name], [flat]))
        vals[x0] = _Val(flat, "f32", (1, f))
    else:
        in_name = new_tensor("input", _nhwc(model.shapes[x0]), "f32")
        vals[x0] = _Val(in_name, "f32", _nhwc(model.shapes[x0]))

    def f32(value: str, node: Node) -> _Val:
        v = vals[value]
        if v.dtype == "f32":
            return v
        out = new_tensor(f"{v.name}_unpacked", v.shape, "f32")
        ops.append(ir.Op("unpack", node.path or node.output, [v.name], [out]))
        u = _Val(out, "f32", v.shape, v.perm, v.as_4d)
        vals[value] = u  # later float readers share it; bits readers use the bits tensor via the op input
        vals[value + "#bits"] = v
        return u

    def bits(value: str, node: Node) -> _Val:
        v = vals.get(value + "#bits", vals[value])
        if v.dtype != "bits":
            raise ConversionError(f"{node.op} at {node.path or node.output} needs a binarized input")
        return v

    def perm_param(p: np.ndarray, v: _Val) -> np.ndarray:
        return p if v.perm is None else p[v.perm]

    def emit(
        node: Node,
        kind: str,
        inputs: list[_Val],
        shape: tuple[int, ...],
        dtype: str,
        attrs: dict | None = None,
        params: dict | None = None,
        perm: np.ndarray | None = None,
    ) -> _Val:
        out = new_tensor(node.output, shape, dtype)
        op = ir.Op(kind, node.path or node.output, [v.name for v in inputs], [out], attrs or {}, params or {})
        op.validate()
        ops.append(op)
        val = _Val(out, dtype, shape, perm)
        vals[node.output] = val
        return val

    def unsupported(node: Node) -> ConversionError:
        return ConversionError(
            f"unsupported op '{node.op}' in {node.attrs.get('where') or node.path or '<top level>'} "
            f"(as used here); nearest supported pattern: {NEAREST.get(node.op, 'see docs/ops.md')}"
        )

    for node in model.nodes:
        k, a = node.op, node.attrs
        shape = _nhwc(model.shapes[node.output])
        if k == "conv2d":
            x = f32(node.inputs[0], node)
            w = np.transpose(model.const(node.inputs[1]), (0, 2, 3, 1)).astype(np.float32)
            params = {"weight": np.ascontiguousarray(w)}
            if len(node.inputs) > 2:
                params["bias"] = model.const(node.inputs[2]).astype(np.float32)
            emit(node, "conv2d", [x], shape, "f32", {"stride": a["stride"], "padding": a["padding"]}, params)
        elif k == "linear":
            x = f32(node.inputs[0], node)
            w = model.const(node.inputs[1])
            w = w if x.perm is None else w[:, x.perm]
            params = {"weight": np.ascontiguousarray(w.astype(np.float32))}
            if len(node.inputs) > 2:
                params["bias"] = model.const(node.inputs[2]).astype(np.float32)
            emit(node, "linear", [x], shape, "f32", {}, params)
        elif k in ("bconv2d", "blinear"):
            x = bits(node.inputs[0], node)
            ws = a["weight_sign"]
            if k == "blinear" and x.perm is not None:
                ws = ws[:, x.perm]
            attrs = (
                {"stride": a["stride"], "padding": a["padding"], "pad_mode": "zero", "in_channels": int(ws.shape[1])}
                if k == "bconv2d"
                else {"in_features": int(ws.shape[1])}
            )
            params = {"weight": pack_conv_weight(ws) if k == "bconv2d" else pack_linear_weight(ws)}
            if "sign" in a:
                attrs["output"] = "bits"
                params.update(
                    threshold=a["sign"]["threshold"].astype(np.int32), flip=a["sign"]["flip"].astype(np.uint8)
                )
                out = emit(node, k, [x], shape, "bits", attrs, params)
                binary_outputs[out.name] = {
                    "fx": node.origin,
                    "path": node.path,
                    "module": model.metadata["fx_paths"].get(node.origin, ""),
                }
            else:
                attrs["output"] = "float"
                m, b = fold.affine(a["chain"], a["alpha"])
                params.update(multiplier=m, bias=b)
                emit(node, k, [x], shape, "f32", attrs, params)
        elif k == "act_sign":
            x = f32(node.inputs[0], node)
            thr = a["threshold"].astype(np.float32)
            if x.perm is not None:
                if thr.shape[0] != 1:
                    raise unsupported(node)
                thr = thr[:, x.perm]
            params = {"threshold": thr[0] if thr.shape[0] == 1 else thr}
            zero = "-1" if a["sign_zero"] == "-1" else "+1"
            out = emit(node, "sign", [x], shape, "bits", {"sign_zero": zero}, params, perm=x.perm)
            if node.origin:
                binary_outputs[out.name] = {
                    "fx": node.origin,
                    "path": node.path,
                    "module": model.metadata["fx_paths"].get(node.origin, ""),
                }
                if x.perm is not None:
                    binary_outputs[out.name]["perm"] = [int(i) for i in x.perm]
        elif k == "affine":
            x = f32(node.inputs[0], node)
            emit(
                node,
                "affine",
                [x],
                shape,
                "f32",
                {},
                {
                    "scale": perm_param(a["scale"], x).astype(np.float32),
                    "shift": perm_param(a["shift"], x).astype(np.float32),
                },
                perm=x.perm,
            )
        elif k == "prelu":
            x = f32(node.inputs[0], node)
            params = {"slope": perm_param(np.asarray(a["slope"]), x).astype(np.float32)}
            for key in ("pre_shift", "post_shift"):
                if key in a:
                    params[key] = perm_param(a[key], x).astype(np.float32)
            if len(params) == 2:  # the IR wants both shifts or neither
                c = x.shape[-1]
                params.setdefault("pre_shift", np.zeros(c, np.float32))
                params.setdefault("post_shift", np.zeros(c, np.float32))
            emit(node, "prelu", [x], shape, "f32", {}, params, perm=x.perm)
        elif k in ("relu", "sigmoid", "softmax", "log_softmax"):
            x = f32(node.inputs[0], node)
            if k in ("softmax", "log_softmax") and x.perm is not None:
                raise unsupported(node)
            emit(node, k, [x], shape, "f32", perm=x.perm)
        elif k == "hardtanh":
            x = f32(node.inputs[0], node)
            emit(node, k, [x], shape, "f32", {"min_val": a["min_val"], "max_val": a["max_val"]}, perm=x.perm)
        elif k in ("maxpool2d", "avgpool2d"):
            x = f32(node.inputs[0], node)
            attrs = {key: a[key] for key in ("kernel", "stride", "padding")}
            if k == "avgpool2d":
                attrs["count_include_pad"] = a["count_include_pad"]
            emit(node, k, [x], shape, "f32", attrs)
        elif k == "bmaxpool2d":
            x = bits(node.inputs[0], node)
            out = emit(node, k, [x], shape, "bits", {key: a[key] for key in ("kernel", "stride", "padding")})
            if node.origin:
                binary_outputs[out.name] = {
                    "fx": node.origin,
                    "path": node.path,
                    "module": model.metadata["fx_paths"].get(node.origin, ""),
                }
        elif k == "global_avgpool":
            x = f32(node.inputs[0], node)
            out = emit(node, k, [x], (1, shape[-1] if len(shape) == 2 else model.shapes[node.output][1]), "f32")
            out.as_4d = len(model.shapes[node.output]) == 4
        elif k in ("add", "mul") and all(v in vals for v in node.inputs):
            xa, xb = (f32(v, node) for v in node.inputs)
            if k == "mul" and xa.as_4d and not xb.as_4d:
                xa, xb = xb, xa
            same = xa.shape == xb.shape and xa.as_4d == xb.as_4d
            if not same and not (k == "mul" and xb.as_4d and len(xa.shape) == 4 and xb.shape[-1] == xa.shape[-1]):
                raise unsupported(node)
            if (xa.perm is None) != (xb.perm is None) or (xa.perm is not None and not np.array_equal(xa.perm, xb.perm)):
                raise unsupported(node)
            out = emit(node, k, [xa, xb], xa.shape, "f32", perm=xa.perm)
            out.as_4d = xa.as_4d
        elif k in ("concat", "bconcat"):
            ins = [bits(v, node) if k == "bconcat" else f32(v, node) for v in node.inputs]
            if any(v.perm is not None or v.as_4d for v in ins):
                raise unsupported(node)
            out = emit(node, k, ins, shape, "bits" if k == "bconcat" else "f32")
            if k == "bconcat" and node.origin:
                binary_outputs[out.name] = {
                    "fx": node.origin,
                    "path": node.path,
                    "module": model.metadata["fx_paths"].get(node.origin, ""),
                }
        elif k == "reshape":
            src = vals.get(node.inputs[0] + "#bits", vals[node.inputs[0]])
            tshape = model.shapes[node.inputs[0]]
            oshape = model.shapes[node.output]
            if tuple(tshape[1:]) == tuple(oshape[1:]):
                vals[node.output] = src
            elif len(tshape) == 4 and len(oshape) == 2 and src.as_4d:
                vals[node.output] = _Val(src.name, src.dtype, src.shape, src.perm, as_4d=False)
            elif len(tshape) == 4 and len(oshape) == 2 and oshape[1] == int(np.prod(tshape[1:])):
                # The IR flattens in NHWC order; the next (b)linear gets its columns permuted to match.
                # Bits flatten as bits (bflatten): no unpacking between a sign and a binary linear.
                c, h, w = tshape[1:]
                perm = np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)
                kind = "bflatten" if src.dtype == "bits" else "flatten"
                emit(node, kind, [src], (1, c * h * w), src.dtype, perm=None if h * w == 1 else perm)
            elif len(tshape) == 2 and len(oshape) == 4 and oshape[2:] == (1, 1):
                vals[node.output] = _Val(src.name, src.dtype, src.shape, src.perm, as_4d=True)
            else:
                raise unsupported(node)
        else:
            raise unsupported(node)

    outputs = []
    for o in model.outputs:
        v = vals[o]
        if v.dtype == "bits":  # a model that ends in a sign: the engine returns ±1.0
            v = f32(o, Node("unpack", [o], o, path="output"))
        if v.perm is not None:
            raise ConversionError(
                "a graph output is a flattened (C, H, W) tensor in NHWC order; "
                "end the model with a linear layer or a global pool"
            )
        outputs.append(v.name)
    graph = ir.Graph(
        inputs=[in_name], outputs=outputs, tensors=tensors, ops=ops, metadata={"binary_outputs": binary_outputs}
    )
    graph.validate()
    return graph
