"""Capture: a PyTorch model -> torch.export (non-strict) + core-ATen decompositions -> `Model`.

Everything that depends only on parameters, buffers and constants is folded here (evaluated with
torch once), so recognition sees effective weights such as ``mean(|W|) * sign(W)`` as plain
constants. Each remaining ATen call becomes one node of the small op vocabulary of `graph.py`.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import math
import operator
import os
import re
import sys
import traceback
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from xnorinfer.convert.archive_safety import check_weights_only
from xnorinfer.convert.attrs import (
    AdaptivePoolAttrs,
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
    NoAttrs,
    NodeAttrs,
    PadAttrs,
    PermuteAttrs,
    PoolAttrs,
    ReduceAttrs,
    ResizeAttrs,
    SliceAttrs,
    UnaryAttrs,
)
from xnorinfer.convert.graph import ConversionError, Model, Node
from xnorinfer.ops import OPS
from xnorinfer.ops.schema import MAX_RANK

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
            raise ConversionError(
                f"{path}: not a readable torch.export archive ({err}): the file is damaged or truncated; "
                "save it again with torch.export.save."
            ) from err
    try:
        return torch.export.load(path)
    except Exception as err:  # noqa: BLE001 - any failure here means "not a loadable .pt2"
        # It is a torch.export archive already: telling the user to export the model would be no help.
        raise ConversionError(
            f"{path}: torch.export.load failed ({type(err).__name__}: {_first_line(err)}). The archive is "
            f"damaged, or was saved by a torch version that this one (torch {torch.__version__}) cannot "
            "read: save it again with this version of torch."
        ) from err


def export(module: torch.nn.Module, example_inputs: Sequence[torch.Tensor]) -> torch.export.ExportedProgram:
    """torch.export (non-strict) of a module in eval mode.

    On failure the ConversionError is one paragraph naming the model's source line responsible and the
    rewrite that exports (`explain_export_failure`); the torch traceback stays in `__cause__` (CLI --debug).
    """
    module = module.eval()
    # torch.export prints the partial traced program (hundreds of lines) to stderr when it fails: keep
    # stderr aside and pass it on only on success (warnings); the exception keeps `partial_fx_graph`.
    held = io.StringIO()
    try:
        with _quiet_torch_logs(), contextlib.redirect_stderr(held):
            ep = torch.export.export(module, tuple(example_inputs), strict=False)
    except Exception as err:  # noqa: BLE001
        raise ConversionError(explain_export_failure(module, err)) from err
    sys.stderr.write(held.getvalue())
    return ep


# torch loggers that print whole graphs on an export failure (a data-dependent guard dumps the traced
# program): the ConversionError says what matters, the traceback has the rest (CLI --debug).
_NOISY_TORCH_LOGGERS = ("torch.fx.experimental.symbolic_shapes", "torch._export", "torch.export")


@contextlib.contextmanager
def _quiet_torch_logs() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in _NOISY_TORCH_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _first_line(err: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message; its first sentence when the line is long."""
    text = (str(err).strip().splitlines() or [""])[0].strip()
    if len(text) > limit and ". " in text:
        text = text.split(". ", 1)[0] + "."
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class SourceLine:
    """One line of the model's Python source."""

    file: str
    line: int
    text: str

    def __str__(self) -> str:
        return f'File "{self.file}", line {self.line}: `{self.text}`'


_DATA_DEPENDENT = ("GuardOnDataDependentSymNode", "data-dependent", "data dependent")
_LIFTED = re.compile(r"model attribute: (?:(\S+)\.)?lifted_tensor_\d+")


def _rewrite_for(text: str, data_dependent: bool) -> str:
    """The rewrite that lets torch.export trace a `.data` line (or a data-dependent branch) of forward."""
    if data_dependent or re.match(r"\s*(if|elif|while|assert)\b", text):
        return (
            "take this data-dependent check out of forward (torch.export traces one path and cannot "
            "branch on tensor values; a debugging check such as `if x.data.max() > 1: pdb.set_trace()` "
            "can simply be deleted)"
        )
    if re.search(r"\.data\.clone\(\)", text) and re.match(r"\s*[\w.]+\.\w+\s*=", text):
        return (
            "delete this line for inference: it only keeps a copy of the parameter for the optimizer "
            "(e.g. `self.bias.org = self.bias.data.clone()`)"
        )
    if re.search(r"\.data\.\w+_\(", text):
        return (
            "take this in-place update of a parameter out of forward and apply it once before converting "
            "(`with torch.no_grad(): m.weight.clamp_(min=0.01)` for every module it touches): in eval mode "
            "it is idempotent, so the converted model computes the same"
        )
    if re.search(r"\.data\s*=[^=]", text):
        return "assign the value to a plain variable instead of through `.data` (`x = Binarize(x)`)"
    return "use the tensor itself instead of `.data` in forward (weight updates belong outside forward)"


def _user_frame(err: BaseException) -> SourceLine | None:
    """The innermost traceback frame in the model's own code (not torch's, not xnorinfer's, not the stdlib)."""
    skip = tuple(
        os.path.dirname(os.path.abspath(m.__file__ or ""))
        for m in (torch, __import__("xnorinfer"), os, __import__("contextlib"))
    )
    found = None
    tb = err.__traceback__
    for frame in traceback.extract_tb(tb) if tb is not None else []:
        path = os.path.abspath(frame.filename)
        if frame.filename.startswith("<") or path.startswith(skip):
            continue
        found = SourceLine(frame.filename, frame.lineno or 0, (frame.line or "").strip())
    return found


def _forward_lines_with_data(modules: Sequence[torch.nn.Module]) -> list[SourceLine]:
    """Lines of these modules' forward methods (one visit per class) that use `.data`."""
    found: list[SourceLine] = []
    seen: set[type] = set()
    for m in modules:
        cls = type(m)
        if cls in seen:
            continue
        seen.add(cls)
        forward = getattr(cls, "forward", None)
        try:
            lines, start = inspect.getsourcelines(forward)  # type: ignore[arg-type]
            file = inspect.getsourcefile(forward) or "<unknown>"  # type: ignore[arg-type]
        except (OSError, TypeError):
            continue
        for i, text in enumerate(lines):
            code = text.split("#", 1)[0]
            if re.search(r"\.data\b", code):
                found.append(SourceLine(file, start + i, text.strip()))
    return found


def explain_export_failure(module: torch.nn.Module, err: BaseException) -> str:
    """One paragraph: why torch.export failed, the model line responsible and the rewrite that works."""
    kind = f"{type(err).__name__}: {_first_line(err)}"
    data_dependent = any(k in f"{type(err).__name__} {err}" for k in _DATA_DEPENDENT)
    culprits: list[SourceLine] = []
    frame = _user_frame(err)
    if frame is not None and (data_dependent or ".data" in frame.text):
        culprits.append(frame)
    lifted = _LIFTED.search(str(err))
    if not culprits and (lifted or "fake tensor" in str(err)):
        path = lifted.group(1) if lifted and lifted.group(1) else ""
        try:
            owner = module.get_submodule(path)
        except AttributeError:
            owner = module
        culprits = _forward_lines_with_data([owner])  # the module torch names first, then every other one
        culprits += [c for c in _forward_lines_with_data(list(module.modules())) if c not in culprits]
    if not culprits and frame is not None:
        culprits.append(frame)
    if not culprits:
        return (
            f"torch.export could not trace the model ({kind}). A `.data` access or an in-place parameter "
            "update inside forward, data-dependent Python control flow, or a custom autograd.Function "
            "that is not traceable in eval mode blocks it; run with --debug for the full traceback."
        )
    shown = culprits[:3]
    more = f" (and {len(culprits) - len(shown)} more such line(s))" if len(culprits) > len(shown) else ""
    where = "; ".join(f"{c}: {_rewrite_for(c.text, data_dependent and c is frame)}" for c in shown)
    return f"torch.export could not trace the model ({kind}). The line responsible: {where}{more}."


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


# Core-ATen decompositions that would split an IR op into pieces: kept whole (one IR op each).
_KEPT_WHOLE = ("silu", "hardswish", "hardsigmoid")
_KEPT_WHOLE += ("upsample_bicubic2d",)  # the resize op computes it (its decomposition is dozens of gathers)


def decompose(ep: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    table = torch.export.default_decompositions()
    for name in _KEPT_WHOLE:
        table.pop(getattr(torch.ops.aten, name).default, None)
    table.pop(torch.ops.aten.upsample_bicubic2d.vec, None)  # F.interpolate's overload (kept as the .default)
    with warnings.catch_warnings():
        # torch's own deprecation notice from copying the call graph: nothing the user can act on
        warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)
        return ep.run_decompositions(table)


# --------------------------------------------------------------------------- to the internal graph


def to_model(ep: torch.export.ExportedProgram) -> Model:
    """The decomposed ExportedProgram as a `Model`, with all parameter-only computation folded."""
    capture = _Capture(ep)
    for fx in ep.graph.nodes:
        capture.visit(fx)
    return capture.finish(ep)


def _lifted_constants(ep: torch.export.ExportedProgram) -> dict[str, torch.Tensor]:
    """Placeholder name -> value for every parameter, buffer and lifted constant input."""
    sig = ep.graph_signature
    state = dict(ep.state_dict)
    consts_src = dict(getattr(ep, "constants", {}) or {})
    lifted: dict[str, torch.Tensor] = {}
    for name, target in sig.inputs_to_parameters.items():
        lifted[name] = state[target]
    for name, target in sig.inputs_to_buffers.items():
        lifted[name] = state[target] if target in state else consts_src[target]
    for name, target in getattr(sig, "inputs_to_lifted_tensor_constants", {}).items():
        lifted[name] = consts_src[target]
    return lifted


# ATen ops that only change the view of a constant: a folded view of a parameter keeps its name.
_VIEWS = ("view", "permute", "reshape", "t", "expand", "_unsafe_view", "clone", "alias")


class _Capture:
    """The state of one walk over the fx graph: constants folded so far, aliases, the nodes built."""

    def __init__(self, ep: torch.export.ExportedProgram) -> None:
        self.lifted = _lifted_constants(ep)
        self.param_of = dict(ep.graph_signature.inputs_to_parameters)
        self.tensors: dict[str, torch.Tensor] = {}  # constant values (torch, for folding)
        self.alias: dict[str, str] = {}  # fx name -> value name
        self.nodes: list[Node] = []
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.user_inputs: list[str] = []
        self.outputs: list[str] = []
        self.param_names: dict[str, str] = {}  # value name -> parameter FQN (for `binarize`)
        self.pieces: dict[str, list[list[Lowered]]] = {}  # split-like node -> the nodes of each piece
        sig = ep.graph_signature
        # output fx name -> the parameter / buffer forward mutates with it (not a model output)
        self.mutated: dict[str, str] = {**dict(sig.parameters_to_mutate), **dict(sig.buffers_to_mutate)}

    def val(self, a: Any) -> Any:
        """An fx argument as a constant tensor, a value name, or (lists, scalars) itself."""
        if isinstance(a, torch.fx.Node):
            name = self.alias.get(a.name, a.name)
            return self.tensors.get(name, name)
        if isinstance(a, (list, tuple)):
            return type(a)(self.val(x) for x in a)
        return a

    def visit(self, fx: torch.fx.Node) -> None:
        if fx.op == "placeholder":
            self.placeholder(fx)
            return
        if fx.op == "output":
            self.output(fx)
            return
        if fx.op != "call_function":
            raise ConversionError(f"unsupported fx node {fx.op} {fx.target} in {where_is(fx)}")
        args = [self.val(a) for a in fx.args]
        kwargs = {k: self.val(v) for k, v in fx.kwargs.items()}
        if fx.target is operator.getitem:
            self.getitem(fx, args)
            return
        base, _ = _aten_name(fx.target)
        if base in _NO_OUTPUT or self.fold_constant(fx, base, args, kwargs):
            return
        shape_const = _shape_only_constant(fx, base, args)
        if shape_const is not None:
            self.tensors[fx.name] = shape_const
            return
        self.add_node(fx, base, args, kwargs)

    def placeholder(self, fx: torch.fx.Node) -> None:
        if fx.name in self.lifted:
            self.tensors[fx.name] = self.lifted[fx.name].detach()
            if fx.name in self.param_of:
                self.param_names[fx.name] = self.param_of[fx.name]
        else:
            self.user_inputs.append(fx.name)
            self.shapes[fx.name] = tuple(fx.meta["val"].shape)

    def output(self, fx: torch.fx.Node) -> None:
        outs = fx.args[0]
        for o in outs if isinstance(outs, (list, tuple)) else [outs]:
            v = self.val(o)
            target = self.mutated.get(o.name) if isinstance(o, torch.fx.Node) else None
            if target is not None:
                # A parameter/buffer updated in forward (`with torch.no_grad(): m.weight.clamp_(min=0.01)`):
                # an update computed from parameters only is idempotent in eval, and the graph already
                # reads the updated value; one computed from the input is state the engine cannot keep.
                if not isinstance(v, torch.Tensor):
                    raise ConversionError(
                        f"forward updates '{target}' from the model input ({where_is(o)}); the engine keeps no "
                        "state between runs: take the update out of forward"
                    )
                continue
            if isinstance(v, torch.Tensor):
                raise ConversionError("a model output is a constant; nothing to convert")
            self.outputs.append(v)

    def getitem(self, fx: torch.fx.Node, args: list[Any]) -> None:
        src, idx = args
        if isinstance(src, (tuple, list)):  # a folded multi-output constant
            self.tensors[fx.name] = src[idx]
        elif src in self.pieces:  # split / chunk / unbind: each piece is its own slice (+ reshape)
            self.add_chain(fx, self.pieces[src][idx], tuple(fx.meta["val"].shape))
        elif idx == 0:
            self.alias[fx.name] = src
        elif fx.users:  # only the first output of batch norm / max pool (values) is supported
            raise ConversionError(f"output {idx} of {src} is used in {where_is(fx)} (e.g. max-pool indices)")

    def fold_constant(self, fx: torch.fx.Node, base: str, args: list[Any], kwargs: dict[str, Any]) -> bool:
        """Evaluate an op whose every input is a parameter, buffer or constant; False if one is not."""
        flat = [x for a in args for x in (a if isinstance(a, (list, tuple)) else [a])]
        if any(isinstance(x, str) for x in flat) or any(isinstance(v, str) for v in kwargs.values()):
            return False
        with torch.no_grad():
            self.tensors[fx.name] = _fold(fx, base, args, kwargs)
        if base in _VIEWS and isinstance(fx.args[0], torch.fx.Node):
            src = self.alias.get(fx.args[0].name, fx.args[0].name)
            if src in self.param_names:
                self.param_names[fx.name] = self.param_names[src]
        return True

    def add_node(self, fx: torch.fx.Node, base: str, args: list[Any], kwargs: dict[str, Any]) -> None:
        out_val = fx.meta.get("val")
        if isinstance(out_val, (tuple, list)):
            out_val = out_val[0]
        shape = tuple(out_val.shape) if hasattr(out_val, "shape") else ()
        call = _lower_aten(AtenCall(fx, base, args, kwargs, shape))
        if call is None:  # identity
            self.alias[fx.name] = args[0]
            return
        if isinstance(call, Pieces):  # several outputs, each read through getitem
            self.pieces[fx.name] = call.pieces
            return
        if isinstance(call, list):  # one ATen call as a chain of nodes
            self.add_chain(fx, call, shape)
            return
        attrs = call.attrs
        if isinstance(attrs, (ConvAttrs, LinearAttrs)):
            attrs = replace(attrs, weight_param=self.weight_param(fx))
        node = Node(call.op, self.operand_names(fx.name, call.operands), fx.name, attrs, module_path(fx), fx.name)
        node.where = where_is(fx)
        self.shapes[fx.name] = shape
        self.nodes.append(node)

    def add_chain(self, fx: torch.fx.Node, chain: list[Lowered], shape: tuple[int, ...]) -> None:
        """Nodes for one value computed in steps: each step's PREV operand is the previous step's output."""
        prev = ""
        for i, step in enumerate(chain):
            last = i == len(chain) - 1
            out = fx.name if last else f"{fx.name}__{i}"
            operands = [prev if a is PREV else a for a in step.operands]
            attrs = step.attrs
            if isinstance(attrs, ConvAttrs):  # conv1d as conv2d: its weight parameter, for `binarize`
                attrs = replace(attrs, weight_param=self.weight_param(fx))
            node = Node(step.op, self.operand_names(out, operands), out, attrs, module_path(fx), fx.name)
            node.where = where_is(fx)
            if not last:
                node.origin = ""
            self.shapes[out] = shape if last else tuple(step.shape or ())
            self.nodes.append(node)
            prev = out

    def operand_names(self, stem: str, operands: list[Any]) -> list[str]:
        """Value names for a node's operands; constant operands become named constants."""
        names = []
        for i, a in enumerate(operands):
            if isinstance(a, torch.Tensor):
                cname = f"{stem}_c{i}"
                self.tensors[cname] = a
                names.append(cname)
            elif isinstance(a, (int, float, bool)):
                cname = f"{stem}_c{i}"
                self.tensors[cname] = torch.tensor(float(a))
                names.append(cname)
            else:
                names.append(a)
        return names

    def weight_param(self, fx: torch.fx.Node) -> str | None:
        """The parameter name of a conv/linear weight, for `binarize`: the second argument of
        convolution and mm, the third of addmm (bias, input, weight.T)."""
        index = 2 if _aten_name(fx.target)[0] == "addmm" else 1
        if len(fx.args) > index and isinstance(fx.args[index], torch.fx.Node):
            return self.param_names.get(self.alias.get(fx.args[index].name, fx.args[index].name))
        return None

    def finish(self, ep: torch.export.ExportedProgram) -> Model:
        used = {v for n in self.nodes for v in n.inputs}
        consts = {k: to_numpy(v) for k, v in self.tensors.items() if k in used and isinstance(v, torch.Tensor)}
        for k in consts:
            self.shapes[k] = tuple(consts[k].shape)
        if not self.user_inputs:
            raise ConversionError("the model takes no tensor input; nothing to convert")
        for name in self.user_inputs:
            if not 1 <= len(self.shapes[name]) <= MAX_RANK:
                raise ConversionError(
                    f"model input '{name}' has shape {self.shapes[name]}: the engine takes inputs of rank 1 to "
                    f"{MAX_RANK} with the batch first"
                )
        fx_paths = {fx.name: module_path(fx) for fx in ep.graph.nodes if fx.op == "call_function"}
        return Model(
            inputs=self.user_inputs,
            outputs=self.outputs,
            nodes=self.nodes,
            consts=consts,
            shapes=self.shapes,
            metadata={
                "input_shape": list(self.shapes[self.user_inputs[0]]),
                "input_shapes": [list(self.shapes[n]) for n in self.user_inputs],  # every input, in order
                "fx_paths": fx_paths,
            },
        )


# --------------------------------------------------------------------------- one ATen call -> one node


@dataclass(frozen=True)
class AtenCall:
    """One ATen call of the decomposed graph, its arguments resolved (constants as tensors, values as names)."""

    fx: torch.fx.Node
    base: str  # the op's name without overload, e.g. "convolution"
    args: list[Any]
    kwargs: dict[str, Any]
    shape: tuple[int, ...]  # the output's shape

    def unsupported(self, hint: str) -> ConversionError:
        return ConversionError(
            f"unsupported op aten.{self.base} in {where_is(self.fx)}; nearest supported pattern: {hint}"
        )

    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.fx.args[0].meta["val"].shape)  # type: ignore[union-attr]


@dataclass(frozen=True)
class Lowered:
    """The node an ATen call becomes: its op, operands (value names, constant tensors or scalars), payload.

    In a chain (a list of Lowered for one ATen call) `shape` is each intermediate's PyTorch shape and an
    operand PREV stands for the previous step's output.
    """

    op: str
    operands: list[Any]
    attrs: NodeAttrs = field(default_factory=NoAttrs)
    shape: tuple[int, ...] | None = None


PREV = object()  # in a chain: the previous step's output


@dataclass(frozen=True)
class Pieces:
    """An ATen call with several outputs (split, unbind): the chain of nodes computing each one."""

    pieces: list[list[Lowered]]


LoweredCall = Lowered | list[Lowered] | Pieces | None


def _aten_name(target: Any) -> tuple[str, str]:
    name = getattr(target, "__name__", str(target))  # e.g. "convolution.default"
    base, _, overload = name.partition(".")
    return base, overload


def _lower_aten(call: AtenCall) -> LoweredCall:
    """One ATen call -> one internal node; None = identity (its output is its first input)."""
    handler = _ATEN_HANDLERS.get(call.base)
    if handler is None and _is_plain_float_op(call.base):
        handler = _plain_float_op
    if handler is None:
        raise call.unsupported(_UNSUPPORTED_HINTS.get(call.base, "see docs/ops.md for the supported list"))
    return _narrowed(call, handler(call))


def _narrowed(call: AtenCall, lowered: LoweredCall) -> LoweredCall:
    """An op computed in float16 / bfloat16 (`x.half() * 2`): its float32 result rounded to that format
    (cast_float), as PyTorch's CPU kernels compute in float and round once."""
    val = call.fx.meta.get("val")
    fmt = _NARROW_FLOATS.get(getattr(val, "dtype", None)) if isinstance(val, torch.Tensor) else None
    if fmt is None or lowered is None or isinstance(lowered, Pieces) or call.base in ("_to_copy", *_VIEWS):
        return lowered
    steps = list(lowered) if isinstance(lowered, list) else [lowered]
    if steps[-1].op in ("cast_float", "reshape"):
        return lowered
    steps[-1] = replace(steps[-1], shape=call.shape)
    return steps + [Lowered("cast_float", [PREV], UnaryAttrs((("to", fmt),)))]


def _is_plain_float_op(base: str) -> bool:
    """An IR op named as the ATen op, on f32 tensors, with no attributes or parameters: captured as is."""
    d = OPS.get(base)
    return d is not None and d.in_dtype == "f32" and not d.attrs and not d.params


def _plain_float_op(call: AtenCall) -> Lowered:
    return Lowered(call.base, list(call.args[: OPS[call.base].inputs[1]]))


def _identity(call: AtenCall) -> Lowered | None:
    return None


def _as_strided(call: AtenCall) -> Lowered | None:
    """An as_strided that restates its input's own layout is the input (the adaptive-pool decomposition
    restrides a channels-last output this way: ConvNeXt's head); any other reads memory in a new order."""
    src = call.fx.args[0].meta["val"]  # type: ignore[union-attr]
    size, stride = list(call.args[1]), list(call.args[2])
    offset = call.args[3] if len(call.args) > 3 else call.kwargs.get("storage_offset")
    if (
        list(src.shape) == size
        and (offset or 0) == src.storage_offset()
        and all(n == 1 or s == t for n, s, t in zip(size, stride, src.stride(), strict=True))
    ):
        return None
    raise call.unsupported("as_strided that keeps the input's sizes and strides (a layout restatement)")


def _to_copy(call: AtenCall) -> Lowered | None:
    dtype = call.kwargs.get("dtype")
    src_node = call.fx.args[0]
    src = src_node.meta["val"].dtype if isinstance(src_node, torch.fx.Node) else None
    if dtype in (None, src):
        return None
    if dtype == torch.float32 and src == torch.bool:
        return Lowered("to_float", [call.args[0]])
    raise call.unsupported("float32 tensors only (dtype casts other than bool -> float32 are not supported)")


def _convolution(call: AtenCall) -> Lowered | list[Lowered]:
    x, w, b, stride, padding, dilation, transposed, out_pad, groups = call.args[:9]
    if len(stride) == 1 and not transposed and isinstance(w, torch.Tensor) and len(call.input_shape()) == 3:
        return _conv1d(call)
    if len(stride) != 2:
        raise call.unsupported("nn.Conv2d / nn.ConvTranspose2d (2-D convolutions)")
    bias = [b] if b is not None else []
    if transposed:
        attrs = ConvTransposeAttrs(_pair(stride), _pair(padding), _pair(out_pad), _pair(dilation), int(groups))
        return Lowered("conv_transpose2d", [x, w] + bias, attrs)
    attrs = ConvAttrs(_pair(stride), _pair(padding), groups=int(groups), dilation=_pair(dilation))
    return Lowered("conv2d", [x, w] + bias, attrs)


def _conv1d(call: AtenCall) -> list[Lowered]:
    """nn.Conv1d on (N, C, L): a conv2d of height 1 between two reshapes ((N, C, 1, L) and back)."""
    x, w, b, stride, padding, dilation, _transposed, _out_pad, groups = call.args[:9]
    n, c, length = call.input_shape()
    attrs = ConvAttrs((1, int(stride[0])), (0, int(padding[0])), groups=int(groups), dilation=(1, int(dilation[0])))
    o, lout = call.shape[1], call.shape[2]
    bias = [b] if b is not None else []
    return [
        Lowered("reshape", [x], shape=(n, c, 1, length)),
        Lowered("conv2d", [PREV, w.unsqueeze(2).contiguous()] + bias, attrs, shape=(n, o, 1, lout)),
        Lowered("reshape", [PREV]),
    ]


def _addmm(call: AtenCall) -> Lowered:
    if call.kwargs.get("beta", 1) != 1 or call.kwargs.get("alpha", 1) != 1:
        raise call.unsupported("nn.Linear (addmm with alpha = beta = 1)")
    b, x, wt = call.args[:3]
    return _linear(call, x, wt, b)


def _mm(call: AtenCall) -> Lowered:
    x, wt = call.args[:2]
    if not isinstance(wt, torch.Tensor):  # a product of two activations, or of a constant and an activation
        return Lowered("matmul", [x, wt])
    return _linear(call, x, wt, None)


def _bmm(call: AtenCall) -> Lowered:
    return Lowered("matmul", list(call.args[:2]))


def _linear(call: AtenCall, x: Any, wt: Any, b: Any) -> Lowered:
    if not isinstance(wt, torch.Tensor):
        raise call.unsupported("nn.Linear / x @ W with a constant W")
    return Lowered("linear", [x, wt.t().contiguous()] + ([b] if b is not None else []), LinearAttrs())


def _batch_norm(call: AtenCall) -> Lowered:
    x, w, b, mean, var, _mom, eps = call.args[:7]
    c = mean.shape[0]
    w = torch.ones(c) if w is None else w
    b = torch.zeros(c) if b is None else b
    return Lowered("batch_norm", [x, w, b, mean, var], BatchNormAttrs(float(eps)))


_ARITY = {"where": 3, "sign": 1, "relu": 1, "sigmoid": 1, "neg": 1}  # tensor operands; 2 otherwise


def _elementwise(call: AtenCall) -> Lowered:
    """Ops that map one-to-one, tensor operands in order (the internal op has the ATen name)."""
    if call.base in ("add", "sub") and call.kwargs.get("alpha", 1) != 1:
        raise call.unsupported("add/sub without alpha")
    return Lowered(call.base, list(call.args[: _ARITY.get(call.base, 2)]))


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _clamp(call: AtenCall) -> Lowered | None:
    args, kwargs, hardtanh = call.args, call.kwargs, call.base == "hardtanh"
    lo = args[1] if len(args) > 1 else (-1.0 if hardtanh else None)
    hi = args[2] if len(args) > 2 else (1.0 if hardtanh else None)
    if call.base == "clamp_max":  # clamp_max(x, max)
        lo, hi = None, lo
    lo = kwargs.get("min", kwargs.get("min_val", lo))
    hi = kwargs.get("max", kwargs.get("max_val", hi))
    if isinstance(lo, (str, torch.Tensor)) or isinstance(hi, (str, torch.Tensor)):
        raise call.unsupported("hardtanh / clamp with scalar bounds")
    if lo is None and hi is None:
        return None
    # A one-sided clamp: the open side is the float32 range (x = ±inf clamps to ±FLT_MAX there).
    lo = -_FLOAT32_MAX if lo is None else lo
    hi = _FLOAT32_MAX if hi is None else hi
    return Lowered("hardtanh", [args[0]], HardtanhAttrs(float(lo), float(hi)))


def _unary_math(call: AtenCall) -> Lowered:
    """round (half to even), floor, abs: the internal op has the ATen name."""
    if call.base == "round" and call.kwargs.get("decimals", call.args[1] if len(call.args) > 1 else 0) != 0:
        raise call.unsupported("torch.round without decimals")
    return Lowered(call.base, [call.args[0]])


def _prelu(call: AtenCall) -> Lowered:
    return Lowered("prelu", [call.args[0], call.args[1]])


def _max_pool(call: AtenCall) -> Lowered:
    args = call.args
    x, kernel = args[0], list(args[1])
    stride = list(args[2]) if len(args) > 2 and args[2] else kernel
    padding = list(args[3]) if len(args) > 3 else [0, 0]
    dilation = list(args[4]) if len(args) > 4 else [1, 1]
    ceil = bool(args[5]) if len(args) > 5 else False
    if any(d != 1 for d in dilation):
        raise call.unsupported("nn.MaxPool2d without dilation")
    return Lowered("maxpool2d", [x], PoolAttrs(_pair(kernel), _pair(stride), _pair(padding), ceil_mode=ceil))


def _avg_pool(call: AtenCall) -> Lowered:
    args = call.args
    x, kernel = args[0], list(args[1])
    stride = list(args[2]) if len(args) > 2 and args[2] else kernel
    padding = list(args[3]) if len(args) > 3 else [0, 0]
    ceil = bool(args[4]) if len(args) > 4 else False
    count_include_pad = bool(args[5]) if len(args) > 5 else True
    divisor = args[6] if len(args) > 6 else None
    if divisor is not None:
        raise call.unsupported("nn.AvgPool2d without divisor_override")
    attrs = AvgPoolAttrs(_pair(kernel), _pair(stride), _pair(padding), count_include_pad, ceil_mode=ceil)
    return Lowered("avgpool2d", [x], attrs)


def _adaptive_avg_pool(call: AtenCall) -> Lowered:
    x, out = call.args[0], list(call.args[1])
    h, w = call.input_shape()[-2:]
    if out == [1, 1]:
        return Lowered("global_avgpool", [x])
    if h % out[0] == 0 and w % out[1] == 0:
        k = (int(h // out[0]), int(w // out[1]))
        return Lowered("avgpool2d", [x], AvgPoolAttrs(k, k, (0, 0), True))
    return Lowered("adaptive_avgpool2d", [x], AdaptivePoolAttrs(_pair(call.shape[-2:])))


def _mean_dims(fx: Any) -> tuple[list[int], bool, int] | None:
    """(dims, keepdim, input rank) of an aten.mean.dim fx node, or None for anything else."""
    if not isinstance(fx, torch.fx.Node) or _aten_name(fx.target)[0] != "mean" or len(fx.args) < 2:
        return None
    src = fx.args[0]
    if not isinstance(src, torch.fx.Node) or not isinstance(fx.args[1], (list, tuple)):
        return None
    rank = len(src.meta["val"].shape)
    keepdim = bool(fx.args[2]) if len(fx.args) > 2 else bool(fx.kwargs.get("keepdim", False))
    return sorted(int(d) % rank for d in fx.args[1]), keepdim, rank


def _first_spatial_half(fx: Any) -> bool:
    """x.mean(dim=2) or x.mean(dim=3) of an NCHW tensor, each of whose users reduces the other spatial dim."""
    m = _mean_dims(fx)
    if m is None or m[2] != 4 or m[0] not in ([2], [3]) or not fx.users:
        return False
    return all(_second_spatial_half(u) for u in fx.users)


def _second_spatial_half(fx: Any) -> bool:
    """The mean over the spatial dim left by a first half: `x.mean(dim=2).mean(dim=2)` (dorefa's global pool)."""
    m, first = _mean_dims(fx), _mean_dims(fx.args[0]) if isinstance(fx, torch.fx.Node) else None
    if m is None or first is None or first[2] != 4 or first[0] not in ([2], [3]):
        return False
    remaining = ([3] if first[0] == [2] else [2]) if first[1] else [2]
    return m[0] == remaining and m[1] == first[1]


def _mean(call: AtenCall) -> LoweredCall:
    if len(call.args) < 2 or not call.args[1]:  # x.mean(): every dim
        return _reduce(call)
    x, dims = call.args[0], sorted(d % len(call.input_shape()) for d in call.args[1])
    if len(call.input_shape()) == 4 and dims == [2, 3]:
        return Lowered("global_avgpool", [x])
    # A mean over H then one over W (or W then H) is the global average pool: the first is an alias of
    # x here, the second the pool (the float result differs from PyTorch's by rounding only).
    if _first_spatial_half(call.fx):
        return None
    if _second_spatial_half(call.fx):
        return Lowered("global_avgpool", [x])
    return _reduce(call)


def _dims(call: AtenCall, dims: Any) -> tuple[int, ...]:
    rank = len(call.input_shape())
    if dims is None or (isinstance(dims, (list, tuple)) and len(dims) == 0):
        return tuple(range(rank))
    dims = [dims] if isinstance(dims, int) else dims
    return tuple(sorted({int(d) % rank for d in dims}))


_REDUCTIONS = {"mean": "mean", "sum": "sum", "amax": "max", "amin": "min", "any": "max", "var": "var"}
_REDUCTIONS.update({"prod": "prod", "max": "max", "min": "min"})  # max() / min() of a whole tensor


def _reduce(call: AtenCall) -> LoweredCall:
    """mean / sum / amax / amin / any (of 0/1 values) / var(correction) over any dims, keepdim or not."""
    args = call.args + [None] * (3 - len(call.args))
    dims = call.kwargs.get("dim", args[1])
    keepdim = bool(call.kwargs.get("keepdim", args[2] if args[2] is not None else False))
    if call.kwargs.get("dtype") is not None:
        raise call.unsupported(f"{call.base} without a dtype argument")
    correction = 0.0
    if call.base == "var":
        correction = float(call.kwargs.get("correction", 1) if call.kwargs.get("correction") is not None else 1)
    attrs = ReduceAttrs(_REDUCTIONS[call.base], _dims(call, dims), keepdim, correction)  # type: ignore[arg-type]
    if not call.shape:  # a rank-0 result (x.sum(), x.max()): reduced with keepdim, then reshaped to ()
        kept = (1,) * len(call.input_shape())
        return [Lowered("reduce", [call.args[0]], replace(attrs, keepdim=True), shape=kept), Lowered("reshape", [PREV])]
    return Lowered("reduce", [call.args[0]], attrs)


def _reshape(call: AtenCall) -> Lowered:
    return Lowered("reshape", [call.args[0]])  # the new shape is the output's (Model.shapes)


def _cat(call: AtenCall) -> Lowered:
    """torch.cat (and stack, as unsqueeze + cat): `concat` along channels of an NCHW or (N, F) tensor
    (binary recognition may make it a bconcat), `cat` along any other dim."""
    tensors, dim = call.args[0], int(call.args[1] if len(call.args) > 1 else call.kwargs.get("dim", 0))
    dim %= len(call.shape)
    if dim == 1 and len(call.shape) in (2, 4):
        return Lowered("concat", list(tensors))
    return Lowered("cat", list(tensors), AxisAttrs(dim))


def _softmax(call: AtenCall) -> Lowered:
    op = "log_softmax" if call.base == "_log_softmax" else "softmax"
    # half_to_float: a float16 input (its values rounded already, held in float32) gives a float32 result
    return Lowered(op, [call.args[0]], AxisAttrs(int(call.args[1]) % len(call.shape)))


def _permute(call: AtenCall) -> Lowered | None:
    rank = len(call.input_shape())
    perm = tuple(int(d) % rank for d in call.args[1])
    if perm == tuple(range(rank)):
        return None
    return Lowered("transpose", [call.args[0]], PermuteAttrs(perm))


def _transpose(call: AtenCall) -> Lowered | None:
    rank = len(call.input_shape())
    perm = list(range(rank))
    if rank >= 2:
        a, b = (int(call.args[1]) % rank, int(call.args[2]) % rank) if len(call.args) > 2 else (0, 1)
        perm[a], perm[b] = perm[b], perm[a]
    if perm == list(range(rank)):
        return None
    return Lowered("transpose", [call.args[0]], PermuteAttrs(tuple(perm)))


def _expand(call: AtenCall) -> Lowered | None:
    if tuple(call.shape) == call.input_shape():
        return None
    return Lowered("expand", [call.args[0]])


def _select(call: AtenCall) -> list[Lowered]:
    """x.select(dim, i) = x[..., i:i+1, ...] (slice) then the dim dropped (reshape)."""
    shape = call.input_shape()
    dim = int(call.args[1]) % len(shape)
    i = int(call.args[2]) % int(shape[dim])
    kept = tuple(shape[:dim]) + (1,) + tuple(shape[dim + 1 :])
    return [
        Lowered("slice", [call.args[0]], SliceAttrs(dim, i, i + 1, 1), shape=kept),
        Lowered("reshape", [PREV]),
    ]


def _split(call: AtenCall) -> Pieces:
    """split / split_with_sizes / chunk / unbind: one slice (unbind: + reshape) per piece."""
    shape = call.input_shape()
    x = call.args[0]
    if call.base == "unbind":
        dim = int(call.args[1] if len(call.args) > 1 else call.kwargs.get("dim", 0)) % len(shape)
        sizes = [1] * int(shape[dim])
    else:
        dim = int(call.args[2] if len(call.args) > 2 else call.kwargs.get("dim", 0)) % len(shape)
        n = int(shape[dim])
        if call.base == "split_with_sizes":
            sizes = [int(v) for v in call.args[1]]
        else:
            step = int(call.args[1])
            sizes = [min(step, n - i) for i in range(0, n, step)]
    pieces: list[list[Lowered]] = []
    start = 0
    for size in sizes:
        kept = tuple(shape[:dim]) + (size,) + tuple(shape[dim + 1 :])
        if size == shape[dim]:
            step_ = [Lowered("reshape", [x], shape=kept)]  # the whole tensor (a split into one piece)
        else:
            step_ = [Lowered("slice", [x], SliceAttrs(dim, start, start + size, 1), shape=kept)]
        if call.base == "unbind":
            step_.append(Lowered("reshape", [PREV]))
        pieces.append(step_)
        start += size
    return Pieces(pieces)


def _binary_op(call: AtenCall) -> Lowered:
    """maximum / minimum / pow / logical_and / logical_or: element-wise with broadcasting."""
    op = {"maximum": "max", "minimum": "min", "pow": "pow", "logical_and": "mul", "logical_or": "max"}[call.base]
    if op == "mul":
        return Lowered("mul", list(call.args[:2]))
    return Lowered("binary", list(call.args[:2]), BinaryOpAttrs(op))


def _logical_not(call: AtenCall) -> Lowered:
    return Lowered("binary", [call.args[0], 0.0], BinaryOpAttrs("eq"))


def _layer_norm(call: AtenCall) -> Lowered:
    x, normalized, w, b, eps = call.args[:5]
    operands = [x] + [v for v in (w, b) if v is not None]
    if (w is None) != (b is None):  # one of them: make the other explicit
        ones = torch.ones(tuple(int(d) for d in normalized))
        operands = [x, w if w is not None else ones, b if b is not None else torch.zeros_like(ones)]
    return Lowered("layer_norm", operands, LayerNormAttrs(len(normalized), float(eps)))


def _group_norm(call: AtenCall) -> list[Lowered]:
    """native_group_norm: (N, G, C/G * HxW) normalised over its last dim, then per-channel weight and bias."""
    x, w, b, n, c, hxw, groups, eps = call.args[:8]
    shape = call.input_shape()
    grouped = (int(shape[0]), int(groups), int(c) // int(groups) * int(hxw))
    chain = [
        Lowered("reshape", [x], shape=grouped),
        Lowered("layer_norm", [PREV], LayerNormAttrs(1, float(eps)), shape=grouped),
        Lowered("reshape", [PREV], shape=tuple(shape)),
    ]
    per_channel = (int(c),) + (1,) * (len(shape) - 2)
    if w is not None:
        chain.append(Lowered("mul", [PREV, w.reshape(per_channel)], shape=tuple(shape)))
    if b is not None:
        chain.append(Lowered("add", [PREV, b.reshape(per_channel)], shape=tuple(shape)))
    return chain


def _constant_pad(call: AtenCall) -> Lowered | None:
    """F.pad(x, pads, value=v) of an NCHW tensor: the pad list runs from the last dim backwards."""
    x, pads = call.args[0], [int(p) for p in call.args[1]]
    value = call.args[2] if len(call.args) > 2 else call.kwargs.get("value", 0.0)
    pads += [0] * (8 - len(pads))
    if len(call.input_shape()) != 4 or len(call.args[1]) > 6 or any(p < 0 for p in pads) or isinstance(value, str):
        raise call.unsupported("F.pad of an NCHW tensor along W, H and C with non-negative sizes and a scalar value")
    if not any(pads):
        return None
    left, right, top, bottom, front, back = pads[:6]
    return Lowered("pad", [x], PadAttrs(top, bottom, left, right, front, back, float(value)))


def _slice(call: AtenCall) -> Lowered | None:
    """x[..., start:stop:step] along one dim (aten.slice.Tensor), bounds clamped as Python slicing does."""
    args = call.args + [None] * (5 - len(call.args))
    x, dim, start, stop, step = args[:5]
    shape = call.input_shape()
    dim = int(dim if dim is not None else call.kwargs.get("dim", 0)) % len(shape)
    start = call.kwargs.get("start", start)
    stop = call.kwargs.get("end", stop)
    step = int(call.kwargs.get("step", step if step is not None else 1))
    if not all(isinstance(v, (int, type(None))) for v in (start, stop)):
        raise call.unsupported("slicing with constant bounds")
    lo, hi, _ = slice(start, stop, step).indices(int(shape[dim]))
    if (lo, hi, step) == (0, int(shape[dim]), 1):
        return None
    if hi <= lo:
        raise call.unsupported("a non-empty slice")
    return Lowered("slice", [x], SliceAttrs(dim, lo, hi, step))


def _adaptive_max_pool(call: AtenCall) -> Lowered:
    """aten.adaptive_max_pool2d (values; its indices output must be unused, see getitem)."""
    if len(call.input_shape()) != 4:
        raise call.unsupported("adaptive_max_pool2d of an NCHW tensor")
    return Lowered("adaptive_maxpool2d", [call.args[0]], AdaptivePoolAttrs(_pair(call.shape[-2:])))


def _upsample(call: AtenCall) -> Lowered:
    """upsample_nearest2d / upsample_bilinear2d / upsample_bicubic2d (.vec: output_size or scale_factors;
    .default: scales_h, _w)."""
    bilinear = call.base in ("upsample_bilinear2d", "upsample_bicubic2d")  # (both take align_corners)
    args = list(call.args) + [None] * 5
    align = bool(args[2]) if bilinear else False
    if len(call.input_shape()) != 4 or len(call.shape) != 4:
        raise call.unsupported("F.interpolate of an NCHW tensor (nearest or bilinear)")
    if _aten_name(call.fx.target)[1] == "vec":
        factors = call.kwargs.get("scale_factors", args[3 if bilinear else 2])
        scales = (None, None) if factors is None else (float(factors[0]), float(factors[-1]))
    else:
        first = 3 if bilinear else 2
        scales = (call.kwargs.get("scales_h", args[first]), call.kwargs.get("scales_w", args[first + 1]))
        scales = tuple(None if v is None else float(v) for v in scales)  # type: ignore[assignment]
    if any(isinstance(v, str) for v in scales):
        raise call.unsupported("F.interpolate with a constant size or scale factor")
    mode = "bicubic" if call.base == "upsample_bicubic2d" else "bilinear" if bilinear else "nearest"
    return Lowered("resize", [args[0]], ResizeAttrs(mode, align, scales))


def _pad2d(call: AtenCall) -> Lowered | None:
    """reflection_pad2d / replication_pad2d (F.pad with mode "reflect" / "replicate") of an NCHW tensor."""
    left, right, top, bottom = (int(p) for p in call.args[1])
    if len(call.input_shape()) != 4 or min(left, right, top, bottom) < 0:
        raise call.unsupported("F.pad(mode='reflect' or 'replicate') of an NCHW tensor with non-negative sizes")
    if not any((left, right, top, bottom)):
        return None
    mode = "reflect" if call.base == "reflection_pad2d" else "replicate"
    return Lowered("pad", [call.args[0]], PadAttrs(top, bottom, left, right, mode=mode))


def _pad_of_index(idx: np.ndarray, size: int) -> tuple[str, int, int] | None:
    """(mode, before, after) when gathering `idx` along an axis of `size` is a reflect / replicate pad."""
    for before in range(len(idx) - size + 1):
        pos = np.arange(-before, len(idx) - before)
        after = len(idx) - size - before
        refl = np.where(pos < 0, -pos, np.where(pos < size, pos, 2 * (size - 1) - pos))
        if max(before, after) < size and np.array_equal(idx, refl):
            return "reflect", before, after
        if np.array_equal(idx, np.clip(pos, 0, size - 1)):
            return "replicate", before, after
    return None


def _nearest_modes(idx: np.ndarray, size: int) -> set[str]:
    """The resize modes whose source indices along an axis of `size` are `idx` (PyTorch's float32 rules)."""
    out = len(idx)
    dst = np.arange(out, dtype=np.float32)
    step = np.float32(size) / np.float32(out)
    exact = np.minimum(np.floor((dst + np.float32(0.5)) * step).astype(np.int64), size - 1)
    legacy = np.minimum(np.floor(dst * step).astype(np.int64), size - 1)
    if out in (size, 2 * size):
        legacy = np.arange(out) * size // out
    return {m for m, src in (("nearest_exact", exact), ("nearest", legacy)) if np.array_equal(idx, src)}


def _index(call: AtenCall) -> Lowered | None:
    """x[:, :, i] / x[:, :, :, j] / x[:, :, i[:, None], j] with constant integer indices, as the
    decompositions of F.pad(mode="reflect" / "replicate") and of F.interpolate(mode="nearest-exact") write them."""
    shape = call.input_shape()
    indices = list(call.args[1]) + [None] * (4 - len(call.args[1]))
    hint = "F.pad(mode='reflect' / 'replicate') or F.interpolate(mode='nearest-exact') of an NCHW tensor"
    if len(shape) != 4 or len(call.args[1]) > 4 or indices[0] is not None or indices[1] is not None:
        raise call.unsupported(hint)
    hi, wi = indices[2], indices[3]
    if not all(v is None or (isinstance(v, torch.Tensor) and not v.is_floating_point()) for v in (hi, wi)):
        raise call.unsupported(hint)
    x = call.args[0]
    if (hi is None) != (wi is None):  # one axis: a reflect / replicate pad
        idx, size = (hi, shape[2]) if wi is None else (wi, shape[3])
        pad = _pad_of_index(idx.numpy(), int(size)) if idx.dim() == 1 else None
        if pad is None:
            raise call.unsupported(hint)
        mode, before, after = pad
        sides = (before, after, 0, 0) if wi is None else (0, 0, before, after)
        return Lowered("pad", [x], PadAttrs(*sides, mode=mode))  # type: ignore[arg-type]
    if hi is None or wi is None or hi.dim() != 2 or hi.shape[1] != 1 or wi.dim() != 1:
        raise call.unsupported(hint)
    modes = _nearest_modes(hi.reshape(-1).numpy(), int(shape[2])) & _nearest_modes(wi.numpy(), int(shape[3]))
    if not modes:
        raise call.unsupported(hint)
    return Lowered("resize", [x], ResizeAttrs("nearest_exact" if "nearest_exact" in modes else "nearest"))


def _pair(v: Sequence[int]) -> tuple[int, int]:
    return (int(v[0]), int(v[0])) if len(v) == 1 else (int(v[0]), int(v[1]))


def _unary_with_attrs(call: AtenCall) -> Lowered:
    """gelu (approximate), leaky_relu (negative_slope), elu (alpha; scale = input_scale = 1)."""
    args, kw = call.args, call.kwargs
    if call.base == "gelu":
        values: tuple[tuple[str, float | str], ...] = (("approximate", str(kw.get("approximate", "none"))),)
    elif call.base == "leaky_relu":
        values = (("negative_slope", float(args[1] if len(args) > 1 else kw.get("negative_slope", 0.01))),)
    else:
        alpha, scale, input_scale = (
            float(args[i] if len(args) > i else kw.get(k, 1.0))
            for i, k in ((1, "alpha"), (2, "scale"), (3, "input_scale"))
        )
        if scale != 1.0 or input_scale != 1.0:
            raise call.unsupported("nn.ELU (SELU / CELU: elu with scale = input_scale = 1 only)")
        values = (("alpha", alpha),)
    return Lowered(call.base, [args[0]], UnaryAttrs(values))


# --------------------------------------------------------------------------- index ops, casts, alpha, dtype
# Integer tensors (indices, casts to int) are carried as float32 holding exact integers (docs/ir.md).


def _dim_arg(call: AtenCall, index: int, name: str, default: int | None) -> int | None:
    d = call.args[index] if len(call.args) > index else call.kwargs.get(name, default)
    return None if d is None else int(d) % max(1, len(call.input_shape()))


def _arg_reduce(call: AtenCall) -> LoweredCall:
    """argmax / argmin along a dim (the index as float32); over the whole tensor has a rank-0 output."""
    dim = _dim_arg(call, 1, "dim", None)
    if dim is None and call.input_shape():  # the index into the flattened tensor, a rank-0 result
        n = math.prod(int(d) for d in call.input_shape())
        return [
            Lowered("reshape", [call.args[0]], shape=(n,)),
            Lowered("arg_reduce", [PREV], IndexAttrs(0, call.base, keepdim=True), shape=(1,)),
            Lowered("reshape", [PREV]),
        ]
    if dim is None or len(call.shape) == 0:
        raise call.unsupported(f"torch.{call.base}(x, dim=d) (an index along one dim)")
    keep = bool(call.args[2] if len(call.args) > 2 else call.kwargs.get("keepdim", False))
    return Lowered("arg_reduce", [call.args[0]], IndexAttrs(dim, call.base, keepdim=keep))


def _max_min_dim(call: AtenCall) -> LoweredCall:
    """max.dim / min.dim: (values, indices) = a reduce max / min and an arg_reduce; max.other /
    min.other: maximum / minimum."""
    overload = _aten_name(call.fx.target)[1]
    if overload == "other":
        return Lowered("binary", list(call.args[:2]), BinaryOpAttrs(call.base))
    if overload == "default":  # torch.max(x): the whole tensor, a rank-0 result
        return _reduce(call)
    dim = _dim_arg(call, 1, "dim", None)
    if overload != "dim" or dim is None:
        raise call.unsupported(
            f"torch.{call.base}(x, dim) or torch.a{call.base}(x, dims) (a rank-0 result is not supported)"
        )
    keep = bool(call.args[2] if len(call.args) > 2 else call.kwargs.get("keepdim", False))
    values = Lowered("reduce", [call.args[0]], ReduceAttrs(call.base, (dim,), keep))  # type: ignore[arg-type]
    indices = Lowered("arg_reduce", [call.args[0]], IndexAttrs(dim, "arg" + call.base, keepdim=keep))
    return Pieces([[values], [indices]])


def _topk(call: AtenCall) -> Pieces:
    """topk (sorted or not: the values come sorted) and sort (k = the dim's size): values and indices."""
    size = call.input_shape()
    if call.base == "topk":
        k = int(call.args[1])
        dim = _dim_arg(call, 2, "dim", -1)
        largest = bool(call.args[3] if len(call.args) > 3 else call.kwargs.get("largest", True))
    else:  # sort(x, dim=-1, descending=False) / sort.stable(x, *, stable, dim, descending)
        args = call.args[1:]  # sort.stable takes keywords only
        dim = int(call.kwargs.get("dim", args[0] if args else -1)) % max(1, len(size))
        largest = bool(call.kwargs.get("descending", args[1] if len(args) > 1 else False))
        k = int(size[dim]) if size else 1
    assert dim is not None
    if not size:
        raise call.unsupported(f"torch.{call.base} of a tensor with at least one dim")
    return Pieces(
        [[Lowered("topk", [call.args[0]], IndexAttrs(dim, out, k=k, largest=largest))] for out in ("values", "indices")]
    )


def _cumsum(call: AtenCall) -> Lowered:
    dtype = call.kwargs.get("dtype")
    if dtype not in (None, torch.float32):
        raise call.unsupported("torch.cumsum in float32")
    dim = _dim_arg(call, 1, "dim", None)
    assert dim is not None
    return Lowered("cumsum", [call.args[0]], IndexAttrs(dim))


def _gather(call: AtenCall) -> Lowered:
    return Lowered("gather", [call.args[0], call.args[2]], IndexAttrs(int(call.args[1]) % len(call.input_shape())))


def _index_select(call: AtenCall) -> Lowered:
    return Lowered("take", [call.args[0], call.args[2]], IndexAttrs(int(call.args[1]) % len(call.input_shape())))


def _embedding(call: AtenCall) -> Lowered:
    """F.embedding(indices, weight) (aten.embedding(weight, indices, ...)): rows of the table."""
    return Lowered("take", [call.args[0], call.args[1]], IndexAttrs(0))


def _index_or_take(call: AtenCall) -> LoweredCall:
    """x[..., idx, ...] with one integer tensor index (the other dims whole): take along that dim; the image
    helpers' gathers (pads, nearest-exact resize) first."""
    indices = list(call.args[1])
    tensors = [i for i, v in enumerate(indices) if v is not None]
    if len(tensors) == 1:
        v = indices[tensors[0]]
        integer = isinstance(v, str) or (
            isinstance(v, torch.Tensor) and not v.is_floating_point() and v.dtype != torch.bool
        )
        if integer:
            try:
                return _index(call)
            except ConversionError:
                return Lowered("take", [call.args[0], v], IndexAttrs(tensors[0]))
    return _index(call)


_INT_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)
_NARROW_FLOATS = {torch.float16: "float16", torch.bfloat16: "bfloat16"}


def _cast_step(x: Any, to: str, shape: tuple[int, ...]) -> Lowered:
    """x rounded to float16 / bfloat16 and held in float32: the `cast_float` op."""
    return Lowered("cast_float", [x], UnaryAttrs((("to", to),)), shape=shape)


def _to_copy_cast(call: AtenCall) -> LoweredCall:
    """dtype casts on float32-held values: to an integer type truncates toward zero (sign(x) * floor(|x|));
    to bool is x != 0; from an integer or bool type to float32 / float64 (or between integer types) keeps
    the value (exact below 2^24); float64 is computed in float32."""
    dtype = call.kwargs.get("dtype")
    src_node = call.fx.args[0]
    src = src_node.meta["val"].dtype if isinstance(src_node, torch.fx.Node) else None
    if dtype in (None, src) or (dtype == torch.float32 and src == torch.bool):
        return _to_copy(call)
    x = call.args[0]
    if dtype in _NARROW_FLOATS:  # rounded to the narrower format, held in float32 (cast_float)
        return [_cast_step(x, _NARROW_FLOATS[dtype], call.shape)]
    if src in _NARROW_FLOATS and dtype in (torch.float32, torch.float64):
        return None  # widening a float16 / bfloat16 value keeps it
    if dtype == torch.bool:
        return Lowered("binary", [x, 0.0], BinaryOpAttrs("ne"))
    floating = src in (torch.float32, torch.float64)
    if dtype in _INT_DTYPES and floating:
        return _truncated(call, x)
    if dtype in _INT_DTYPES + (torch.float32, torch.float64) and src in _INT_DTYPES + (
        torch.bool,
        torch.float32,
        torch.float64,
    ):
        return None
    raise call.unsupported("casts between float32, float64, bool and integer types")


def _add_alpha(call: AtenCall) -> LoweredCall:
    """add / sub with alpha: a +- alpha * b (b scaled first; a constant b folded)."""
    alpha = call.kwargs.get("alpha", 1)
    if alpha == 1 or len(call.args) < 2:
        return _elementwise(call)
    a, b = call.args[0], call.args[1]
    if isinstance(b, (torch.Tensor, int, float)):
        return Lowered(call.base, [a, b * alpha])
    b_shape = tuple(call.fx.args[1].meta["val"].shape)  # type: ignore[union-attr]
    return [Lowered("mul", [b, float(alpha)], shape=b_shape), Lowered(call.base, [a, PREV])]


def _float32_dtype(handler: Callable[[AtenCall], LoweredCall]) -> Callable[[AtenCall], LoweredCall]:
    """A reduction with a dtype as one without: float32 (what it computes in), float64 (its sums are
    accumulated in double already, the result rounded to float32), an integer type for integer or bool
    input (exact integers)."""

    def run(call: AtenCall) -> LoweredCall:
        dtype = call.kwargs.get("dtype")
        src = call.fx.args[0].meta["val"].dtype if isinstance(call.fx.args[0], torch.fx.Node) else None
        integer_input = src in _INT_DTYPES + (torch.bool,)
        if dtype not in (None, torch.float32, torch.float64) and not (dtype in _INT_DTYPES and integer_input):
            raise call.unsupported(f"{call.base} in float32 (dtype {dtype} of a {src} tensor is not supported)")
        return handler(replace(call, kwargs={k: v for k, v in call.kwargs.items() if k != "dtype"}))

    return run


def _truncated(call: AtenCall, x: Any, before: Sequence[Lowered] = ()) -> list[Lowered]:
    """trunc(q) = signum(q) * floor(|q|) of q = x, or of the last step of `before` (chain step names are
    `<fx name>__<i>`, so the product reads the signum step by name)."""
    steps, i = list(before), len(before)
    q = f"{call.fx.name}__{i - 1}" if before else x
    return steps + [
        Lowered("signum", [q], shape=call.shape),
        Lowered("abs", [q], shape=call.shape),
        Lowered("floor", [PREV], shape=call.shape),
        Lowered("binary", [f"{call.fx.name}__{i}", PREV], BinaryOpAttrs("mul")),
    ]


def _trunc(call: AtenCall) -> list[Lowered]:
    return _truncated(call, call.args[0])


def _ceil(call: AtenCall) -> list[Lowered]:
    s = call.shape
    return [Lowered("neg", [call.args[0]], shape=s), Lowered("floor", [PREV], shape=s), Lowered("neg", [PREV])]


def _div_mode(call: AtenCall) -> LoweredCall:
    """div with rounding_mode "floor" (x // y) or "trunc": the quotient in float32, then floor / trunc (exact
    for integer operands below 2^24)."""
    mode = call.kwargs.get("rounding_mode")
    if mode is None:
        return _elementwise(call)
    # a `binary` div, correctly rounded (a plain div by a constant may become a multiply by its reciprocal)
    quotient = Lowered("binary", list(call.args[:2]), BinaryOpAttrs("div"), shape=call.shape)
    if mode == "floor":
        return [quotient, Lowered("floor", [PREV])]
    return _truncated(call, None, [quotient])


def _isnan(call: AtenCall) -> Lowered:
    return Lowered("binary", [call.args[0], call.args[0]], BinaryOpAttrs("ne"))


def _clamp_tensor(call: AtenCall) -> LoweredCall:
    """clamp / clamp_min / clamp_max with tensor bounds: maximum with the lower, then minimum with the upper."""
    args, kw = list(call.args) + [None, None], call.kwargs
    lo, hi = kw.get("min", args[1]), kw.get("max", args[2])
    if call.base == "clamp_max":
        lo, hi = None, args[1]
    if not any(isinstance(v, (str, torch.Tensor)) for v in (lo, hi)):
        return _clamp(call)
    steps, src = [], call.args[0]
    for bound, op in ((lo, "max"), (hi, "min")):
        if bound is not None:
            steps.append(Lowered("binary", [src, bound], BinaryOpAttrs(op), shape=call.shape))
            src = PREV
    return steps


def _flip(call: AtenCall) -> list[Lowered]:
    """flip along dims: one take per dim with the reversed indices (a constant)."""
    shape, rank = call.input_shape(), len(call.input_shape())
    steps, src = [], call.args[0]
    for d in sorted({int(d) % rank for d in call.args[1]}):
        rev = torch.arange(int(shape[d]) - 1, -1, -1)
        steps.append(Lowered("take", [src, rev], IndexAttrs(d), shape=call.shape))
        src = PREV
    return steps


def repeat_chain(src: Any, shape: Sequence[int], reps: Sequence[int]) -> list[Lowered] | None:
    """`src` (of `shape`) repeated reps[d] times along each dim d (x.repeat, ONNX Tile): one concat of
    r copies per repeated dim; None when nothing repeats (the identity)."""
    shape, steps = list(shape), []
    for d, r in enumerate(reps):
        if r == 1:
            continue
        shape[d] *= r
        channel = d == 1 and len(shape) in (2, 4)
        attrs = NoAttrs() if channel else AxisAttrs(d)
        steps.append(Lowered("concat" if channel else "cat", [src] * r, attrs, shape=tuple(shape)))
        src = PREV
    return steps or None


def _repeat(call: AtenCall) -> LoweredCall:
    """x.repeat(r0, r1, ...) with one factor per dim."""
    shape, reps = list(call.input_shape()), [int(r) for r in call.args[1]]
    if len(reps) != len(shape):
        raise call.unsupported("x.repeat with one factor per dim of x")
    return repeat_chain(call.args[0], shape, reps)


def _vector_norm(call: AtenCall) -> list[Lowered]:
    """linalg_vector_norm (torch.norm, F.normalize): ord 2 = sqrt(sum(x * x)), 1 = sum(|x|), inf / -inf =
    max / min of |x|, other p > 0 = sum(|x|^p)^(1/p); reduced in double as `reduce` sums."""
    args = list(call.args) + [None] * 4
    p = float(call.kwargs.get("ord", args[1] if args[1] is not None else 2.0))
    dims = _dims(call, call.kwargs.get("dim", args[2]))
    keep = bool(call.kwargs.get("keepdim", args[3] if args[3] is not None else False))
    if call.kwargs.get("dtype") not in (None, torch.float32) or not call.shape or p <= 0:
        raise call.unsupported("torch.linalg.vector_norm / torch.norm over some dims, ord > 0, in float32")
    x, full = call.args[0], call.input_shape()
    reduced = tuple(1 if i in dims else d for i, d in enumerate(full) if keep or i not in dims)
    if p == 2.0:
        return [
            Lowered("binary", [x, x], BinaryOpAttrs("mul"), shape=full),
            Lowered("reduce", [PREV], ReduceAttrs("sum", dims, keep), shape=reduced),
            Lowered("sqrt", [PREV]),
        ]
    steps = [Lowered("abs", [x], shape=full)]
    if math.isinf(p):
        return steps + [Lowered("reduce", [PREV], ReduceAttrs("max" if p > 0 else "min", dims, keep))]
    if p == 1.0:
        return steps + [Lowered("reduce", [PREV], ReduceAttrs("sum", dims, keep))]
    return steps + [
        Lowered("binary", [PREV, p], BinaryOpAttrs("pow"), shape=full),
        Lowered("reduce", [PREV], ReduceAttrs("sum", dims, keep), shape=reduced),
        Lowered("binary", [PREV, 1.0 / p], BinaryOpAttrs("pow")),
    ]


def _copy(call: AtenCall) -> Lowered:
    """copy(dst, src) (an assignment `y[...] = v` decomposes into it): src broadcast to dst's shape; a
    constant src as where(1, src, dst), which broadcasts it in dst's layout without reading dst."""
    dst, src = call.args[0], call.args[1]
    if isinstance(src, (torch.Tensor, int, float)):
        return Lowered("where", [torch.ones(()), src, dst])
    return Lowered("expand", [src])


def _slice_scatter(call: AtenCall) -> LoweredCall:
    """slice_scatter(x, src, dim, start, end) with step 1 (`y[:, :, a:b] = v`): concat of x's part before
    the slice, src and x's part after it (steps named `<fx name>__<i>`)."""
    args = list(call.args) + [None] * 6
    x, src = args[0], args[1]
    shape = call.input_shape()
    dim = int(call.kwargs.get("dim", args[2] if args[2] is not None else 0)) % len(shape)
    start, end = call.kwargs.get("start", args[3]), call.kwargs.get("end", args[4])
    step = int(call.kwargs.get("step", args[5] if args[5] is not None else 1))
    lo, hi, _ = slice(start, end, step).indices(int(shape[dim]))
    if step != 1 or hi <= lo:
        raise call.unsupported("an assignment to a non-empty slice with step 1 (y[:, a:b] = v)")
    steps: list[Lowered] = []
    pieces: list[Any] = []
    for a, b in ((0, lo), (-1, -1), (hi, int(shape[dim]))):
        if a < 0:
            pieces.append(src)
        elif b > a:
            part = tuple(b - a if i == dim else d for i, d in enumerate(shape))
            steps.append(Lowered("slice", [x], SliceAttrs(dim, a, b, 1), shape=part))
            pieces.append(f"{call.fx.name}__{len(steps) - 1}")
    if not steps:
        return Lowered("expand", [src])
    channel = dim == 1 and len(shape) in (2, 4)
    return steps + [Lowered("concat" if channel else "cat", pieces, NoAttrs() if channel else AxisAttrs(dim))]


def _constant_int_scalar_put(idx: Any, values: Any) -> bool:
    """`y[:, idx] = c`: a constant integer index and a constant scalar (a `where` with a constant mask)."""
    constant_index = isinstance(idx, torch.Tensor) and not idx.is_floating_point() and idx.dtype != torch.bool
    return constant_index and isinstance(values, torch.Tensor) and values.numel() == 1


def _index_put_scatter(call: AtenCall, d: int, idx: Any, values: Any, accumulate: bool) -> list[Lowered]:
    """index_put(x, [None, ..., idx, ...], v, accumulate) with one integer index tensor of rank <= 1 (a
    constant, or computed in the graph: `y[:, i] = v`, `index_add`, `index_put(..., accumulate=True)`)."""
    idx_val = call.fx.args[1][d].meta["val"] if isinstance(idx, str) else idx  # type: ignore[index,union-attr]
    if idx_val.dim() > 1 or idx_val.is_floating_point() or idx_val.dtype == torch.bool:
        raise call.unsupported("y[..., i] = v / index_put with one integer index tensor of rank <= 1")
    return _scatter_along(call, call.args[0], call.input_shape(), d, idx, int(idx_val.numel()), values, accumulate, [])


def _scatter_along(
    call: AtenCall,
    x: Any,
    shape: Sequence[int],
    d: int,
    idx: Any,
    k: int,
    values: Any,
    accumulate: bool,
    steps: list[Lowered],
) -> list[Lowered]:
    """`steps`, then a scatter into x (of `shape`) along dim d at the k indices `idx` (a value name or a
    tensor, rank <= 1): the index broadcast to the indexed shape R = shape with dim d replaced by k, the
    src `values` broadcast to R (the scatter checks every index at run time). Steps are named
    `<fx name>__<i>`, so `steps` may be a prefix whose outputs the operands name."""
    line = (1,) * d + (k,) + (1,) * (len(shape) - d - 1)
    full = tuple(k if i == d else int(n) for i, n in enumerate(shape))
    steps = list(steps)
    name = call.fx.name
    if isinstance(idx, str):
        steps += [Lowered("reshape", [idx], shape=line), Lowered("expand", [PREV], shape=full)]
        index: Any = f"{name}__{len(steps) - 1}"
    else:
        index = idx.reshape(-1).expand(k).reshape(line).expand(full).contiguous()
    if isinstance(values, (int, float)) or (isinstance(values, torch.Tensor) and values.numel() == 1):
        src: Any = values.reshape(()).float() if isinstance(values, torch.Tensor) else torch.tensor(float(values))
    elif isinstance(values, torch.Tensor):
        src = values.float().expand(full).contiguous()
    else:
        steps.append(Lowered("expand", [values], shape=full))
        src = f"{name}__{len(steps) - 1}"
    return steps + [Lowered("scatter", [x, index, src], IndexAttrs(d, "add" if accumulate else "none"))]


def _index_put_flat(
    call: AtenCall, held: list[int], indices: list[Any], values: Any, accumulate: bool
) -> list[Lowered]:
    """index_put(x, [..., i_a, ..., i_b, ...], v) with index tensors of rank <= 1 on adjacent dims a..b
    (`y[i, j] = v`): x seen with dims a..b as one dim of size P, the linear index sum_j i_j * stride_j, the
    one-index scatter, then x's shape again. A computed i_j enters as take(arange(n_j) * stride_j, i_j): the
    take checks it against its own dim at run time and maps a negative one as Python indexing does."""
    shape = call.input_shape()
    a, b = held[0], held[-1]
    sizes = [int(shape[d]) for d in held]
    strides = [math.prod(sizes[i + 1 :]) for i in range(len(sizes))]
    vals = [call.fx.args[1][d].meta["val"] if isinstance(indices[d], str) else indices[d] for d in held]  # type: ignore[index,union-attr]
    if any(v.dim() > 1 or v.is_floating_point() or v.dtype == torch.bool for v in vals):
        raise call.unsupported("y[i, j] = v / index_put with integer index tensors of rank <= 1 on adjacent dims")
    k = max(int(v.numel()) for v in vals)
    if any(int(v.numel()) not in (1, k) for v in vals):
        raise call.unsupported("index_put with index tensors of one length (or one element)")
    name = call.fx.name
    steps: list[Lowered] = []
    linear: Any = None
    for d, v, n, stride in zip(held, vals, sizes, strides, strict=True):
        i = indices[d]
        if isinstance(i, str):
            table = torch.arange(n, dtype=torch.float64) * stride
            steps.append(Lowered("take", [table, i], IndexAttrs(0), shape=(int(v.numel()),)))
            term: Any = f"{name}__{len(steps) - 1}"
        else:
            j = i.reshape(-1).long()
            if bool(((j < -n) | (j >= n)).any()):
                raise call.unsupported(f"index_put with indices inside dim {d} (size {n})")
            term = ((j % n) * stride).double()
        if linear is None or (isinstance(linear, torch.Tensor) and isinstance(term, torch.Tensor)):
            linear = term if linear is None else linear + term
        else:
            steps.append(Lowered("add", [linear, term], shape=(k,)))
            linear = f"{name}__{len(steps) - 1}"
    folded = tuple(int(n) for n in shape[:a]) + (math.prod(sizes),) + tuple(int(n) for n in shape[b + 1 :])
    steps.append(Lowered("reshape", [call.args[0]], shape=folded))
    flat_x = f"{name}__{len(steps) - 1}"
    chain = _scatter_along(call, flat_x, folded, a, linear, k, values, accumulate, steps)
    return chain[:-1] + [replace(chain[-1], shape=folded), Lowered("reshape", [PREV])]


def _index_put(call: AtenCall) -> LoweredCall:
    """index_put(x, [None, ..., idx], v) with one constant integer index and a constant scalar v
    (`y[:, idx] = 0`): where(mask, v, x), the mask a constant along that dim."""
    x, indices, values = call.args[0], list(call.args[1]), call.args[2]
    accumulate = bool(call.args[3] if len(call.args) > 3 else call.kwargs.get("accumulate", False))
    held = [i for i, v in enumerate(indices) if v is not None]
    hint = "y[:, idx] = c with one constant integer index and a constant scalar c, or y[mask] = c"
    mask_node = call.fx.args[1][0] if held == [0] else None  # type: ignore[index]
    if (  # y[mask] = c with a computed bool mask of y's shape (in-place masked STEs): where(mask, c, y)
        isinstance(mask_node, torch.fx.Node)
        and mask_node.meta["val"].dtype == torch.bool
        and tuple(mask_node.meta["val"].shape) == call.input_shape()
        and not accumulate
        and isinstance(values, torch.Tensor)
        and values.numel() == 1
    ):
        return Lowered("where", [indices[0], values.reshape(()).float(), x])
    values_node = call.fx.args[2]
    if (  # y[mask] = v with a computed one-element v (x[x < 0] = x.mean()): where(mask, v, y)
        isinstance(mask_node, torch.fx.Node)
        and mask_node.meta["val"].dtype == torch.bool
        and tuple(mask_node.meta["val"].shape) == call.input_shape()
        and isinstance(values_node, torch.fx.Node)
        and isinstance(values, str)
        and values_node.meta["val"].numel() == 1
    ):
        if not accumulate:
            return Lowered("where", [indices[0], values, x])
        shape = call.input_shape()  # accumulate: y + where(mask, v, 0)
        return [Lowered("where", [indices[0], values, 0.0], shape=shape), Lowered("add", [x, PREV])]
    if len(held) == 1 and (accumulate or not _constant_int_scalar_put(indices[held[0]], values)):
        return _index_put_scatter(call, held[0], indices[held[0]], values, accumulate)
    if len(held) > 1 and held == list(range(held[0], held[-1] + 1)):
        return _index_put_flat(call, held, indices, values, accumulate)
    if accumulate or len(held) != 1 or not isinstance(values, torch.Tensor) or values.numel() != 1:
        raise call.unsupported(hint)
    d, idx = held[0], indices[held[0]]
    if not isinstance(idx, torch.Tensor) or idx.is_floating_point() or idx.dtype == torch.bool:
        raise call.unsupported(hint)
    shape = call.input_shape()
    mask = torch.zeros(int(shape[d]))
    mask[idx.reshape(-1).long()] = 1.0
    mask = mask.reshape((-1,) + (1,) * (len(shape) - d - 1))
    return Lowered("where", [mask, values.reshape(()).float(), x])


_SCATTER_REDUCE = {"add": "add", "sum": "add", "multiply": "mul", "prod": "mul", "amax": "max", "amin": "min"}
_SCATTER_REDUCE["mean"] = "mean"


def _scatter(call: AtenCall) -> Lowered:
    """scatter (src or value; reduce "add" / "multiply"), scatter_add and scatter_reduce (sum, prod, amax,
    amin, mean; include_self or not): the `scatter` op (IndexAttrs.op = its reduce, "/exclude_self" when
    include_self is false); a constant src larger than index is cut to index's shape (PyTorch reads src[p]
    for the positions p of index)."""
    args = list(call.args) + [None] * 3
    x, dim, index, src = args[0], int(args[1]) % len(call.input_shape()), args[2], args[3]
    reduce = call.kwargs.get("reduce", args[4])
    include_self = True
    if call.base == "scatter_add":
        reduce = "add"
    elif call.base == "scatter_reduce":
        include_self = bool(call.kwargs.get("include_self", args[5] if args[5] is not None else True))
    if reduce is not None and reduce not in _SCATTER_REDUCE:
        raise call.unsupported("torch.scatter / scatter_add / scatter_reduce (sum, prod, amax, amin, mean)")
    op = _SCATTER_REDUCE[reduce] if reduce is not None else "none"
    idx_shape = tuple(call.fx.args[2].meta["val"].shape) if isinstance(index, str) else tuple(index.shape)  # type: ignore[union-attr]
    if isinstance(src, (int, float)):
        src = torch.tensor(float(src))
    elif isinstance(src, torch.Tensor) and src.numel() != 1 and tuple(src.shape) != idx_shape:
        src = src[tuple(slice(0, n) for n in idx_shape)]
    return Lowered("scatter", [x, index, src], IndexAttrs(dim, op if include_self else f"{op}/exclude_self"))


def _cum_scan(call: AtenCall) -> LoweredCall:
    """cumprod (the `cumsum` op with op "prod"); cummax / cummin: values and indices (op "max/values" ...)."""
    dtype = call.kwargs.get("dtype")
    if dtype not in (None, torch.float32):
        raise call.unsupported(f"torch.{call.base} in float32")
    dim = _dim_arg(call, 1, "dim", None)
    assert dim is not None
    if not call.input_shape():
        raise call.unsupported(f"torch.{call.base} of a tensor with at least one dim")
    if call.base == "cumprod":
        return Lowered("cumsum", [call.args[0]], IndexAttrs(dim, "prod"))
    scan = call.base[3:]  # max / min
    parts = ("values", "indices")
    return Pieces([[Lowered("cumsum", [call.args[0]], IndexAttrs(dim, f"{scan}/{out}"))] for out in parts])


def _remainder(call: AtenCall) -> list[Lowered]:
    """remainder (Python's %, the divisor's sign) = a - floor(a / b) * b; fmod (the dividend's sign) =
    a - trunc(a / b) * b: exact for integer operands below 2^24 (index arithmetic such as `i % W`); for
    other floats the float32 steps, which may differ from PyTorch's result where a / b rounds across an
    integer."""
    a, b = call.args[0], call.args[1]
    s = call.shape
    steps = [Lowered("binary", [a, b], BinaryOpAttrs("div"), shape=s)]  # correctly rounded, as in _div_mode
    if call.base == "remainder":
        steps.append(Lowered("floor", [PREV], shape=s))
    else:
        steps = _truncated(call, None, steps)
        steps[-1] = replace(steps[-1], shape=s)
    n = len(steps)
    return steps + [
        Lowered("binary", [f"{call.fx.name}__{n - 1}", b], BinaryOpAttrs("mul"), shape=s),
        Lowered("binary", [a, PREV], BinaryOpAttrs("sub")),
    ]


_ATEN_HANDLERS: dict[str, Callable[[AtenCall], LoweredCall]] = {
    **dict.fromkeys(_IDENTITY, _identity),
    "as_strided": _as_strided,
    "_to_copy": _to_copy,
    "convolution": _convolution,
    "addmm": _addmm,
    "mm": _mm,
    "_native_batch_norm_legit_no_training": _batch_norm,
    **dict.fromkeys(("sign", "relu", "sigmoid", "neg", "add", "sub", "mul", "div", "where"), _elementwise),
    **dict.fromkeys(("ge", "gt", "le", "lt"), _elementwise),
    **dict.fromkeys(("eq", "ne"), _elementwise),
    **dict.fromkeys(("round", "floor", "abs"), _unary_math),
    "clamp_min": _clamp,
    "clamp_max": _clamp,
    "hardtanh": _clamp,
    "clamp": _clamp,
    "_prelu_kernel": _prelu,
    "prelu": _prelu,
    "max_pool2d_with_indices": _max_pool,
    "max_pool2d": _max_pool,
    "avg_pool2d": _avg_pool,
    "_adaptive_avg_pool2d": _adaptive_avg_pool,
    "mean": _mean,
    **dict.fromkeys(("view", "_unsafe_view", "reshape", "flatten", "squeeze", "unsqueeze"), _reshape),
    "cat": _cat,
    "_softmax": _softmax,
    "softmax": _softmax,
    "_log_softmax": _softmax,
    "constant_pad_nd": _constant_pad,
    "slice": _slice,
    "bmm": _bmm,
    "matmul": _bmm,
    **dict.fromkeys(("sum", "amax", "amin", "any", "var"), _reduce),
    "permute": _permute,
    "transpose": _transpose,
    "t": _transpose,
    "expand": _expand,
    "select": _select,
    **dict.fromkeys(("split", "split_with_sizes", "unbind"), _split),
    **dict.fromkeys(("maximum", "minimum", "pow", "logical_and", "logical_or"), _binary_op),
    "logical_not": _logical_not,
    "native_layer_norm": _layer_norm,
    "native_group_norm": _group_norm,
    **dict.fromkeys(("gelu", "leaky_relu", "elu"), _unary_with_attrs),
    "adaptive_max_pool2d": _adaptive_max_pool,
    **dict.fromkeys(("upsample_nearest2d", "upsample_bilinear2d"), _upsample),
    **dict.fromkeys(("reflection_pad2d", "replication_pad2d"), _pad2d),
    "index": _index,
}
_UNSUPPORTED_HINTS = {
    "avg_pool1d": "avg_pool2d",
    "logcumsumexp": "none (no scans other than cumsum, cumprod, cummax and cummin)",
}
_ATEN_HANDLERS.update(
    {
        "argmax": _arg_reduce,
        "argmin": _arg_reduce,
        "max": _max_min_dim,
        "min": _max_min_dim,
        "topk": _topk,
        "sort": _topk,
        "cumsum": _cumsum,
        "gather": _gather,
        "index_select": _index_select,
        "embedding": _embedding,
        "index": _index_or_take,
        "_to_copy": _to_copy_cast,
        "add": _add_alpha,
        "sub": _add_alpha,
        "sum": _float32_dtype(_reduce),
        "mean": _float32_dtype(_mean),
        "upsample_bicubic2d": _upsample,
        "trunc": _trunc,
        "ceil": _ceil,
        "div": _div_mode,
        "isnan": _isnan,
        "clamp": _clamp_tensor,
        "clamp_min": _clamp_tensor,
        "clamp_max": _clamp_tensor,
        "flip": _flip,
        "repeat": _repeat,
        "linalg_vector_norm": _vector_norm,
        "copy": _copy,
        "slice_scatter": _slice_scatter,
        "index_put": _index_put,
        **dict.fromkeys(("scatter", "scatter_add", "scatter_reduce"), _scatter),
        **dict.fromkeys(("remainder", "fmod"), _remainder),
        **dict.fromkeys(("cumprod", "cummax", "cummin"), _cum_scan),
        "prod": _float32_dtype(_reduce),
    }
)
_UNSUPPORTED_HINTS["nonzero"] = "none: its output shape depends on the data (torch.nonzero / boolean-mask indexing)"
