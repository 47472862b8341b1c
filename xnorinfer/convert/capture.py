"""Capture: a PyTorch model -> torch.export (non-strict) + core-ATen decompositions -> `Model`.

Everything that depends only on parameters, buffers and constants is folded here (evaluated with
torch once), so recognition sees effective weights such as ``mean(|W|) * sign(W)`` as plain
constants. Each remaining ATen call becomes one node of the small op vocabulary of `graph.py`.
"""

from __future__ import annotations

import operator
import os
import zipfile
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from xnorinfer.convert.archive_safety import check_weights_only
from xnorinfer.convert.graph import ConversionError, Model, Node

PT2_HOWTO = (
    "Export the model instead: `ep = torch.export.export(model.eval(), (example_input,)); "
    "torch.export.save(ep, 'model.pt2')`, or call xnorinfer.convert.convert(model, (example_input,)) "
    "on the live module."
)

# ATen ops that only alias or check: their output is their first input.
_IDENTITY = {
    "alias",
    "clone",
    "detach",
    "contiguous",
    "lift_fresh_copy",
    "dropout",
    "_to_copy_same",
}
# ATen ops whose value depends only on the shape of their (activation) input: folded to a constant
# broadcast view (ones_like / full_like / zeros_like, as sign STEs write them).
_SHAPE_ONLY = {"full_like": None, "ones_like": 1.0, "zeros_like": 0.0}
_NO_OUTPUT = {"_assert_tensor_metadata", "_assert_scalar", "sym_constrain_range_for_size", "_assert_async"}


def module_path(fx_node: torch.fx.Node) -> str:
    """The innermost module path of an fx node ('' for the root), from nn_module_stack."""
    stack = fx_node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    path, _cls = list(stack.values())[-1]
    return str(path).replace("L['self'].", "").replace("L__self___", "")


def where_is(fx_node: torch.fx.Node) -> str:
    path = module_path(fx_node) or "<top level>"
    trace = fx_node.meta.get("stack_trace") or ""
    lines = [ln.strip() for ln in trace.strip().splitlines() if ln.strip().startswith("File")]
    return f"module '{path}'" + (f" ({lines[-1]})" if lines else "")


# --------------------------------------------------------------------------- loading


def load_exported(path: str | os.PathLike[str], *, trust_pickle: bool = False) -> Any:
    """Load an ExportedProgram saved with torch.export.save. Refuses TorchScript and pickles.

    With ``trust_pickle=True`` a pickled whole module is loaded with torch.load(weights_only=False)
    (this runs arbitrary code from the file) and returned as an nn.Module.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConversionError(f"{path}: no such file")
    names: list[str] = []
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    is_torchscript = any(n.split("/", 1)[-1].startswith(("code/", "constants.pkl")) for n in names)
    is_pickle_zip = any(n.endswith("/data.pkl") or n == "data.pkl" for n in names) and not is_torchscript
    if is_torchscript:
        raise ConversionError(f"{path} is a TorchScript archive, which xnorinfer cannot convert. {PT2_HOWTO}")
    if is_pickle_zip or not names:
        if trust_pickle:
            obj = torch.load(path, weights_only=False)  # explicitly trusted by the caller
            if isinstance(obj, torch.nn.Module):
                return obj
            raise ConversionError(f"{path}: the pickle holds a {type(obj).__name__}, not an nn.Module. {PT2_HOWTO}")
        kind = "a pickled object (torch.save)" if is_pickle_zip else "not a torch.export archive"
        raise ConversionError(
            f"{path} is {kind}; loading it would need torch.load(weights_only=False), which can run "
            f"arbitrary code (pass trust_pickle=True only for files you trust, plus example_inputs). {PT2_HOWTO}"
        )
    if not trust_pickle:
        try:
            with zipfile.ZipFile(path) as zf:
                check_weights_only(path, zf)
        except (zipfile.BadZipFile, OSError) as err:
            raise ConversionError(f"{path}: not a readable torch.export archive ({err}). {PT2_HOWTO}") from err
    try:
        return torch.export.load(path)
    except Exception as err:  # noqa: BLE001 - any failure here means "not a loadable .pt2"
        raise ConversionError(f"{path}: torch.export.load failed ({type(err).__name__}: {err}). {PT2_HOWTO}") from err


def export(module: torch.nn.Module, example_inputs: Sequence[torch.Tensor]) -> torch.export.ExportedProgram:
    """torch.export (non-strict) of a module in eval mode."""
    module = module.eval()
    try:
        return torch.export.export(module, tuple(example_inputs), strict=False)
    except Exception as err:  # noqa: BLE001
        raise ConversionError(
            f"torch.export could not trace the model ({type(err).__name__}: {str(err).splitlines()[0]}). "
            "A custom autograd.Function must be traceable in eval mode (its forward is recorded as the "
            "ops it computes); data-dependent Python control flow is not."
        ) from err


def to_numpy(t: torch.Tensor) -> Any:
    """A folded constant as numpy (float64 for floats), keeping broadcast (zero-stride) axes as views.

    `bias.expand_as(x)` or `ones_like(x)` fold to tensors whose expanded axes have stride 0; they stay
    zero-stride numpy views of the small tensor instead of being materialised at full size.
    """
    t = t.detach()
    small = t
    for ax in range(t.dim()):
        if t.stride(ax) == 0 and t.shape[ax] > 1:
            small = small.narrow(ax, 0, 1)
    a = small.to(torch.float64).numpy() if small.is_floating_point() else small.numpy()
    return np.broadcast_to(a, tuple(t.shape)) if small is not t else a


# Element-wise ATen ops (broadcasting): folded on the small tensor behind an expanded constant.
_ELEMENTWISE = {
    "neg",
    "add",
    "sub",
    "mul",
    "div",
    "where",
    "sign",
    "abs",
    "clone",
    "alias",
    "detach",
    "_to_copy",
    "gt",
    "ge",
    "lt",
    "le",
    "eq",
    "ne",
    "clamp",
    "hardtanh",
}


def _collapsed(a: Any) -> Any:
    """A tensor with its expanded (zero-stride) axes narrowed to size 1; anything else unchanged."""
    if not isinstance(a, torch.Tensor):
        return a
    for ax in range(a.dim()):
        if a.stride(ax) == 0 and a.shape[ax] > 1:
            a = a.narrow(ax, 0, 1)
    return a


def _fold(fx: torch.fx.Node, base: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """Evaluate an op whose inputs are all constants. An element-wise op of an expanded constant
    (`-torch.ones_like(x)`) is computed on the small tensor and expanded again, never materialised."""
    val = fx.meta.get("val")
    expanded = any(isinstance(a, torch.Tensor) and 0 in a.stride() and a.numel() > 1 for a in args)
    if (
        base in _ELEMENTWISE
        and expanded
        and isinstance(val, torch.Tensor)
        and all(isinstance(d, int) for d in val.shape)
    ):
        small = fx.target(*[_collapsed(a) for a in args], **kwargs)
        if isinstance(small, torch.Tensor):
            try:
                return small.expand(tuple(val.shape))
            except RuntimeError:
                pass
    return fx.target(*args, **kwargs)


def _shape_only_constant(fx: torch.fx.Node, base: str, args: list[Any]) -> torch.Tensor | None:
    """full_like(x, v) / ones_like(x) / zeros_like(x) of an activation x with a static shape -> constant."""
    if base not in _SHAPE_ONLY:
        return None
    val = fx.meta.get("val")
    if not isinstance(val, torch.Tensor) or not all(isinstance(d, int) for d in val.shape):
        return None
    fill = _SHAPE_ONLY[base] if _SHAPE_ONLY[base] is not None else (args[1] if len(args) > 1 else None)
    if not isinstance(fill, (int, float, bool)):
        return None
    return torch.full((), fill, dtype=val.dtype).expand(tuple(val.shape))


def decompose(ep: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    return ep.run_decompositions()


# --------------------------------------------------------------------------- to the internal graph

# aten name -> internal op for ops that map one-to-one with tensor args in order
_SIMPLE = {
    "sign": "sign",
    "relu": "relu",
    "sigmoid": "sigmoid",
    "neg": "neg",
    "add": "add",
    "sub": "sub",
    "mul": "mul",
    "div": "div",
    "where": "where",
}
_CMP = {"ge": "ge", "gt": "gt", "le": "le", "lt": "lt"}


def _aten_name(target: Any) -> tuple[str, str]:
    name = getattr(target, "__name__", str(target))  # e.g. "convolution.default"
    base, _, overload = name.partition(".")
    return base, overload


def to_model(ep: torch.export.ExportedProgram) -> Model:
    """The decomposed ExportedProgram as a `Model`, with all parameter-only computation folded."""
    sig = ep.graph_signature
    state = dict(ep.state_dict)
    consts_src = dict(getattr(ep, "constants", {}) or {})
    input_to_const: dict[str, torch.Tensor] = {}
    for name, target in sig.inputs_to_parameters.items():
        input_to_const[name] = state[target]
    for name, target in sig.inputs_to_buffers.items():
        input_to_const[name] = state[target] if target in state else consts_src[target]
    for name, target in getattr(sig, "inputs_to_lifted_tensor_constants", {}).items():
        input_to_const[name] = consts_src[target]
    param_of = {**sig.inputs_to_parameters}

    tensors: dict[str, torch.Tensor] = {}  # constant values (torch, for folding)
    alias: dict[str, str] = {}  # fx name -> value name
    nodes: list[Node] = []
    shapes: dict[str, tuple[int, ...]] = {}
    user_inputs: list[str] = []
    outputs: list[str] = []
    param_names: dict[str, str] = {}  # value name -> parameter FQN (for `binarize`)

    def val(a: Any) -> Any:
        if isinstance(a, torch.fx.Node):
            name = alias.get(a.name, a.name)
            return tensors.get(name, name)
        if isinstance(a, (list, tuple)):
            return type(a)(val(x) for x in a)
        return a

    for fx in ep.graph.nodes:
        if fx.op == "placeholder":
            if fx.name in input_to_const:
                tensors[fx.name] = input_to_const[fx.name].detach()
                if fx.name in param_of:
                    param_names[fx.name] = param_of[fx.name]
            else:
                user_inputs.append(fx.name)
                shapes[fx.name] = tuple(fx.meta["val"].shape)
            continue
        if fx.op == "output":
            outs = fx.args[0]
            for o in outs if isinstance(outs, (list, tuple)) else [outs]:
                v = val(o)
                if isinstance(v, torch.Tensor):
                    raise ConversionError("a model output is a constant; nothing to convert")
                outputs.append(v)
            continue
        if fx.op != "call_function":
            raise ConversionError(f"unsupported fx node {fx.op} {fx.target} in {where_is(fx)}")

        args = [val(a) for a in fx.args]
        kwargs = {k: val(v) for k, v in fx.kwargs.items()}
        if fx.target is operator.getitem:
            src, idx = args
            if isinstance(src, (tuple, list)):  # a folded multi-output constant
                tensors[fx.name] = src[idx]
            elif idx == 0:
                alias[fx.name] = src
            else:
                # only the first output of batch norm / max pool (values) is supported
                if fx.users:
                    raise ConversionError(f"output {idx} of {src} is used in {where_is(fx)} (e.g. max-pool indices)")
            continue
        base, _ = _aten_name(fx.target)
        if base in _NO_OUTPUT:
            continue

        tensor_args = [a for a in list(args) + list(kwargs.values()) if isinstance(a, str)]
        flat = [x for a in args for x in (a if isinstance(a, (list, tuple)) else [a])]
        if not any(isinstance(x, str) for x in flat) and not any(isinstance(v, str) for v in kwargs.values()):
            # constant folding: every input is a parameter, buffer or constant
            with torch.no_grad():
                tensors[fx.name] = _fold(fx, base, args, kwargs)
            if base in ("view", "permute", "reshape", "t", "expand", "_unsafe_view", "clone", "alias") and isinstance(
                fx.args[0], torch.fx.Node
            ):
                src = alias.get(fx.args[0].name, fx.args[0].name)
                if src in param_names:
                    param_names[fx.name] = param_names[src]
            continue
        del tensor_args
        shape_const = _shape_only_constant(fx, base, args)
        if shape_const is not None:
            tensors[fx.name] = shape_const
            continue

        path = module_path(fx)
        out_val = fx.meta.get("val")
        if isinstance(out_val, (tuple, list)):
            out_val = out_val[0]
        shape = tuple(out_val.shape) if hasattr(out_val, "shape") else ()
        node = _lower_aten(fx, base, args, kwargs, shape)
        if node is None:  # identity
            alias[fx.name] = args[0]
            continue
        node.output = fx.name
        node.path = path
        node.origin = fx.name
        node.attrs.setdefault("fx", fx.name)
        node.attrs["where"] = where_is(fx)
        # materialise constant operands as named constants
        ins = []
        for i, a in enumerate(node.inputs):
            if isinstance(a, torch.Tensor):
                cname = f"{fx.name}_c{i}"
                tensors[cname] = a
                ins.append(cname)
            elif isinstance(a, (int, float, bool)):
                cname = f"{fx.name}_c{i}"
                tensors[cname] = torch.tensor(float(a))
                ins.append(cname)
            else:
                ins.append(a)
        node.inputs = ins
        # carry the parameter name of the weight (for `binarize`)
        if node.op in ("conv2d", "linear") and len(fx.args) > 1 and isinstance(fx.args[1], torch.fx.Node):
            w = alias.get(fx.args[1].name, fx.args[1].name)
            if w in param_names:
                node.attrs["weight_param"] = param_names[w]
                node.attrs["weight_transposed"] = node.op == "linear"
        shapes[fx.name] = shape
        nodes.append(node)

    used = {v for n in nodes for v in n.inputs}
    consts = {k: to_numpy(v) for k, v in tensors.items() if k in used and isinstance(v, torch.Tensor)}
    for k in consts:
        shapes[k] = tuple(consts[k].shape)
    if len(user_inputs) != 1:
        raise ConversionError(f"the model must take exactly one tensor input, it takes {len(user_inputs)}")
    fx_paths = {fx.name: module_path(fx) for fx in ep.graph.nodes if fx.op == "call_function"}
    return Model(
        inputs=user_inputs,
        outputs=outputs,
        nodes=nodes,
        consts=consts,
        shapes=shapes,
        metadata={"input_shape": list(shapes[user_inputs[0]]), "fx_paths": fx_paths},
    )


def _lower_aten(
    fx: torch.fx.Node, base: str, args: list[Any], kwargs: dict[str, Any], shape: tuple[int, ...]
) -> Node | None:
    """One ATen call -> one internal node (output/path filled in by the caller); None = identity."""

    def unsupported(hint: str) -> ConversionError:
        return ConversionError(f"unsupported op aten.{base} in {where_is(fx)}; nearest supported pattern: {hint}")

    if base in _IDENTITY:
        return None
    if base == "_to_copy":
        dtype = kwargs.get("dtype")
        src = fx.args[0].meta["val"].dtype if isinstance(fx.args[0], torch.fx.Node) else None
        if dtype in (None, src):
            return None
        if dtype == torch.float32 and src == torch.bool:
            return Node("to_float", [args[0]], "")
        raise unsupported("float32 tensors only (dtype casts other than bool -> float32 are not supported)")
    if base == "convolution":
        x, w, b, stride, padding, dilation, transposed, _out_pad, groups = args[:9]
        if transposed or groups != 1 or any(d != 1 for d in dilation) or len(stride) != 2:
            raise unsupported("nn.Conv2d with groups=1, dilation=1 (no transposed/grouped/dilated conv)")
        ins = [x, w] + ([b] if b is not None else [])
        return Node("conv2d", ins, "", {"stride": list(stride), "padding": list(padding)})
    if base in ("addmm", "mm"):
        if base == "addmm":
            b, x, wt = args[:3]
            if kwargs.get("beta", 1) != 1 or kwargs.get("alpha", 1) != 1:
                raise unsupported("nn.Linear (addmm with alpha = beta = 1)")
        else:
            b, (x, wt) = None, args[:2]
        if not isinstance(wt, torch.Tensor):
            raise unsupported("nn.Linear / x @ W with a constant W")
        ins = [x, wt.t().contiguous()] + ([b] if b is not None else [])
        return Node("linear", ins, "")
    if base == "_native_batch_norm_legit_no_training":
        x, w, b, mean, var, _mom, eps = args[:7]
        c = mean.shape[0]
        w = torch.ones(c) if w is None else w
        b = torch.zeros(c) if b is None else b
        return Node("batch_norm", [x, w, b, mean, var], "", {"eps": float(eps)})
    if base in _SIMPLE:
        if base in ("add", "sub") and kwargs.get("alpha", 1) != 1:
            raise unsupported("add/sub without alpha")
        n_in = {"where": 3, "sign": 1, "relu": 1, "sigmoid": 1, "neg": 1}.get(base, 2)
        return Node(_SIMPLE[base], list(args[:n_in]), "")
    if base in _CMP:
        return Node(_CMP[base], list(args[:2]), "")
    if base in ("hardtanh", "clamp"):
        lo = args[1] if len(args) > 1 else (-1.0 if base == "hardtanh" else None)
        hi = args[2] if len(args) > 2 else (1.0 if base == "hardtanh" else None)
        lo = kwargs.get("min", kwargs.get("min_val", lo))
        hi = kwargs.get("max", kwargs.get("max_val", hi))
        if lo is None or hi is None or isinstance(lo, (str, torch.Tensor)) or isinstance(hi, (str, torch.Tensor)):
            raise unsupported("hardtanh / clamp with both scalar bounds")
        return Node("hardtanh", [args[0]], "", {"min_val": float(lo), "max_val": float(hi)})
    if base == "_prelu_kernel" or base == "prelu":
        return Node("prelu", [args[0], args[1]], "")
    if base in ("max_pool2d_with_indices", "max_pool2d"):
        x, kernel = args[0], list(args[1])
        stride = list(args[2]) if len(args) > 2 and args[2] else kernel
        padding = list(args[3]) if len(args) > 3 else [0, 0]
        dilation = list(args[4]) if len(args) > 4 else [1, 1]
        ceil = bool(args[5]) if len(args) > 5 else False
        if any(d != 1 for d in dilation) or ceil:
            raise unsupported("nn.MaxPool2d without dilation or ceil_mode")
        return Node("maxpool2d", [x], "", {"kernel": _pair(kernel), "stride": _pair(stride), "padding": _pair(padding)})
    if base == "avg_pool2d":
        x, kernel = args[0], list(args[1])
        stride = list(args[2]) if len(args) > 2 and args[2] else kernel
        padding = list(args[3]) if len(args) > 3 else [0, 0]
        ceil = bool(args[4]) if len(args) > 4 else False
        cip = bool(args[5]) if len(args) > 5 else True
        div = args[6] if len(args) > 6 else None
        if ceil or div is not None:
            raise unsupported("nn.AvgPool2d without ceil_mode or divisor_override")
        return Node(
            "avgpool2d",
            [x],
            "",
            {"kernel": _pair(kernel), "stride": _pair(stride), "padding": _pair(padding), "count_include_pad": cip},
        )
    if base == "_adaptive_avg_pool2d":
        x, out = args[0], list(args[1])
        h, w = fx.args[0].meta["val"].shape[-2:]
        if out == [1, 1]:
            return Node("global_avgpool", [x], "")
        if h % out[0] == 0 and w % out[1] == 0:
            k = [h // out[0], w // out[1]]
            return Node("avgpool2d", [x], "", {"kernel": k, "stride": k, "padding": [0, 0], "count_include_pad": True})
        raise unsupported("adaptive_avg_pool2d to 1x1 or to a size that divides the input")
    if base == "mean":
        x, dims = args[0], sorted(d % 4 for d in args[1])
        if len(fx.args[0].meta["val"].shape) == 4 and dims == [2, 3]:
            return Node("global_avgpool", [x], "")
        raise unsupported("mean over the spatial dims (2, 3) of an NCHW tensor = global average pool")
    if base in ("view", "_unsafe_view", "reshape", "flatten", "squeeze", "unsqueeze"):
        return Node("reshape", [args[0]], "", {"shape": list(shape)})
    if base == "cat":
        tensors, dim = args[0], (args[1] if len(args) > 1 else 0)
        dim = dim % len(shape)
        if dim != 1:
            raise unsupported("torch.cat along channels (dim=1)")
        return Node("concat", list(tensors), "")
    if base in ("_softmax", "softmax"):
        dim = args[1] % len(shape)
        if len(shape) != 2 or dim != 1:
            raise unsupported("softmax over the features of a (N, F) output")
        return Node("softmax", [args[0]], "")
    if base == "_log_softmax":
        dim = args[1] % len(shape)
        if len(shape) != 2 or dim != 1:
            raise unsupported("log_softmax over the features of a (N, F) output")
        return Node("log_softmax", [args[0]], "")
    hints = {
        "pow": "x * x as mul",
        "exp": "sigmoid",
        "tanh": "hardtanh",
        "leaky_relu": "PReLU",
        "gelu": "ReLU / PReLU",
        "slice": "no slicing: flatten + linear",
        "bmm": "nn.Linear",
        "avg_pool1d": "avg_pool2d",
        "upsample_nearest2d": "none (no upsampling)",
    }
    raise unsupported(hints.get(base, "see docs/ops.md for the supported list"))


def _pair(v: list[int]) -> list[int]:
    return [int(v[0]), int(v[0])] if len(v) == 1 else [int(v[0]), int(v[1])]
