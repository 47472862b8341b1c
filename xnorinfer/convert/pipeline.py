"""The converter's driver: the passes `convert()` runs, in order.

capture    torch.export + core-ATen decompositions -> `graph.Model` (capture.py)
recognise  three phases of small rewrites to a fixed point (patterns.py); the sign after a binary
           layer is folded into integer thresholds here (fold.thresholds)
lower      NHWC, packed weights (pack.py), float epilogues composed (fold.affine) -> `ir.Graph`
describe   the graph's metadata: input layout, provenance, what stayed float, the signs found
verify     PyTorch vs the reference (and the engine when it is built) on sample inputs (verify.py)
write      the .xbin file (xnorinfer.xbin)
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from xnorinfer import ir
from xnorinfer.convert import capture, patterns
from xnorinfer.convert.attrs import ActSignAttrs, BinaryLayerAttrs, SignFold
from xnorinfer.convert.beta import fuse_pixel_scale
from xnorinfer.convert.graph import ConversionError, Model
from xnorinfer.convert.lower import lower
from xnorinfer.convert.onnx_capture import is_onnx
from xnorinfer.convert.ternary_sign import fuse_ternary_signs
from xnorinfer.convert.verify import verify as run_verify

CONVERTER_VERSION = "0.1.0"
SIGN_ZERO_NOTE = {
    "0": "torch.sign: sign(0) = 0 in PyTorch; the IR treats it as +1 (a tie, reported by verification)",
    "+1": "sign(0) = +1",
    "-1": "sign(0) = -1",
}


def convert(
    model_or_path: torch.nn.Module | str | os.PathLike[str] | Any,
    example_inputs: Sequence[torch.Tensor] | None = None,
    *,
    binarize: Sequence[str] = (),
    calib: np.ndarray | torch.Tensor | Sequence[np.ndarray | torch.Tensor] | None = None,
    force: bool = False,
    verify: bool = True,
    engine: bool = True,
    output: str | os.PathLike[str] | None = None,
    trust_pickle: bool = False,
    n_verify: int = 64,
    seed: int = 0,
    metadata: dict[str, Any] | None = None,
    progress: bool = False,
) -> ir.Graph:
    """Convert a PyTorch BNN to an `ir.Graph`; with `output`, also write it as .xbin (after verification).

    An ONNX model (a .onnx path or an onnx.ModelProto; plain ONNX, QONNX or FINN-ONNX) goes through the
    ONNX front end and is verified against onnxruntime / qonnx's executor (docs/onnx.md).

    binarize: fnmatch patterns of module paths whose conv/linear weights are declared binary
        (sign(W) * mean|W| per output channel); verification then compares with that model.
    calib: inputs (N, C, H, W) for verification (a model with several inputs: a list, one array per
        input); default `n_verify` standard-normal inputs.
    force: keep going (and write) even if verification finds differences.
    engine: also run the C++ engine in verification (the package loader, on the .xbin bytes in memory).
    Raises ConversionError with a message naming the op and module for anything unsupported.
    """
    if output is not None and isinstance(model_or_path, (str, os.PathLike)) and same_file(model_or_path, output):
        raise ConversionError(f"{output}: is the input model itself; write the .xbin to another path")
    if is_onnx(model_or_path):  # an ONNX / QONNX model: its own capture and reference executor (onnx_verify.py)
        from xnorinfer.convert.onnx_verify import convert_onnx

        return convert_onnx(
            model_or_path,
            binarize=binarize,
            calib=calib,
            force=force,
            verify=verify,
            engine=engine,
            output=output,
            n_verify=n_verify,
            seed=seed,
            metadata=metadata,
            progress=progress,
        )
    ep, live, sha = capture_model(model_or_path, example_inputs, trust_pickle=trust_pickle)
    model = capture.to_model(ep)
    model = patterns.recognise(model, binarize, force)
    graph = lower(model)
    graph, _ = fuse_pixel_scale(graph)  # XNOR-Net's beta map into the bconv2d epilogue (beta.py)
    graph = fuse_ternary_signs(graph)  # tbconv2d / tblinear -> affine -> sign as one op (ternary_sign.py)
    describe(graph, model, sha, metadata)
    if verify:
        in_shape = list(model.metadata["input_shape"])
        verify_graph(
            graph,
            ep,
            live,
            in_shape,
            calib,
            n_verify=n_verify,
            seed=seed,
            force=force,
            engine=engine,
            progress=progress,
        )
    if output is not None:
        write(graph, output)
    return graph


# --------------------------------------------------------------------------- capture


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """True when writing `b` would replace `a`: the same path, or a link to the same file."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links
    except OSError:  # b does not exist yet
        return False


def capture_model(
    model_or_path: torch.nn.Module | str | os.PathLike[str],
    example_inputs: Sequence[torch.Tensor] | None = None,
    *,
    trust_pickle: bool = False,
) -> tuple[torch.export.ExportedProgram, torch.nn.Module | None, str | None]:
    """(decomposed ExportedProgram, live module or None, sha256 of the source file or None)."""
    sha = None
    live: torch.nn.Module | None = None
    if isinstance(model_or_path, (str, os.PathLike)):
        with open(model_or_path, "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()
        loaded = capture.load_exported(model_or_path, trust_pickle=trust_pickle)
        if isinstance(loaded, torch.nn.Module):
            if example_inputs is None:
                raise ConversionError(f"{model_or_path}: a pickled module needs example_inputs to be exported")
            live = loaded
            ep = capture.export(loaded, example_inputs)
        else:
            ep = loaded
    elif isinstance(model_or_path, torch.nn.Module):
        if example_inputs is None:
            raise ConversionError("convert(module, example_inputs): example_inputs are required for a live module")
        live = model_or_path
        ep = capture.export(model_or_path, example_inputs)
    elif isinstance(model_or_path, torch.export.ExportedProgram):
        ep = model_or_path
    else:
        raise ConversionError(
            f"cannot convert a {type(model_or_path).__name__}: pass an nn.Module, an "
            "ExportedProgram or the path of a torch.export.save archive"
        )
    return capture.decompose(ep), live, sha


# --------------------------------------------------------------------------- describe


def describe(graph: ir.Graph, model: Model, sha: str | None, metadata: dict[str, Any] | None) -> None:
    """Fill `graph.metadata`: input layout, provenance, float layers, the signs; then the caller's `metadata`."""
    in_shape = list(model.metadata["input_shape"])
    several = len(graph.inputs) > 1
    graph.metadata.update(
        {
            # an (N, F) model runs as NCHW (N, F, 1, 1) in the engine; Session.run takes (N, F) for it
            "input_shape": [1] + in_shape[1:] + [1, 1] * (len(in_shape) == 2 and not several),
            # NCHW images, (N, F) rows, or any other rank in PyTorch's order ("ND")
            "input_layout": "NCHW" if len(in_shape) == 4 else "NF" if len(in_shape) == 2 else "ND",
            "source_sha256": sha,
            # every input as Session.run takes it (batch 1): NCHW when 4-D, else PyTorch's order
            "input_shapes": [[1] + list(s[1:]) for s in model.metadata.get("input_shapes", [in_shape])],
            "converter_version": CONVERTER_VERSION,
            "ir_version": ir.IR_VERSION,
            "float_layers": model.metadata.get("float_layers", {}),
            "binarized": model.metadata.get("binarized", {}),
            "binary_warnings": model.metadata.get("binary_warnings", {}),
            "weight_plane_layers": model.metadata.get("weight_plane_layers", {}),
            "bit_serial_layers": model.metadata.get("bit_serial_layers", {}),
            "grouped_binary_layers": model.metadata.get("grouped_binary_layers", {}),
        }
    )
    _sign_summary(model, graph)
    if metadata:
        graph.metadata.update(metadata)


def _sign_summary(model: Model, graph: ir.Graph) -> None:
    """Every sign of the model (folded into a binary layer or not): its STE form, sign(0), ties."""
    signs: dict[str, dict[str, str]] = {}
    ties: dict[str, int] = {}
    disagree: dict[str, int] = {}
    for n in model.nodes:
        sign: ActSignAttrs | SignFold | None = None
        if isinstance(n.attrs, BinaryLayerAttrs):
            sign = n.attrs.sign
        elif isinstance(n.attrs, ActSignAttrs):
            sign = n.attrs
        if sign is None:
            continue
        key = n.path or n.output
        signs[key] = {"ste": sign.ste, "sign_zero": SIGN_ZERO_NOTE[sign.sign_zero]}
        if isinstance(sign, SignFold):
            if sign.ties:
                ties[key] = len(sign.ties)
            if sign.float32_disagree:
                disagree[key] = len(sign.float32_disagree)
    zeros = {v["sign_zero"] for v in signs.values()}
    graph.metadata["sign_ops"] = signs
    # fx values of torch.sign of a non-negative tensor ({0, 1}): verification compares them as x <= 0 -> -1
    graph.metadata["zero_one_signs"] = sorted({o for o in model.metadata.get("zero_one_signs", []) if o})
    graph.metadata["sign_zero"] = zeros.pop() if len(zeros) == 1 else ("mixed" if zeros else "none")
    graph.metadata["threshold_ties"] = ties
    graph.metadata["threshold_float32_disagreements"] = disagree


# --------------------------------------------------------------------------- verify


def verify_graph(
    graph: ir.Graph,
    ep: torch.export.ExportedProgram,
    live: torch.nn.Module | None,
    in_shape: list[int],
    calib: np.ndarray | torch.Tensor | Sequence[np.ndarray | torch.Tensor] | None,
    *,
    n_verify: int,
    seed: int,
    force: bool,
    engine: bool,
    progress: bool,
) -> None:
    """Compare the graph with the PyTorch model on `calib` (or random inputs); record the result.

    in_shape: the PyTorch model's input shape (its batch size is the batch verification runs).
    """
    gm = ep.module()
    binarized = graph.metadata["binarized"]
    if binarized:
        gm = copy.deepcopy(gm)  # its parameters may be the caller's tensors: never modify those
        _apply_binarized(gm, binarized)
    model_fn = live if (live is not None and not binarized) else gm
    x: np.ndarray | tuple[np.ndarray, ...]
    if isinstance(calib, (list, tuple)):  # a model with several inputs: one array per input
        x = tuple(np.asarray(c.detach().numpy() if isinstance(c, torch.Tensor) else c, np.float32) for c in calib)
    elif calib is not None:
        x = np.asarray(calib.detach().numpy() if isinstance(calib, torch.Tensor) else calib, np.float32)
    else:
        rng = np.random.default_rng(seed)
        shapes = graph.metadata.get("input_shapes") or [in_shape]
        x = tuple(rng.standard_normal([n_verify] + list(s[1:])).astype(np.float32) for s in shapes)
        x = x if len(x) > 1 else x[0]
    result = run_verify(
        graph,
        model_fn,
        gm,
        x,
        batch=int(in_shape[0]),
        force=force,
        engine=_engine if engine else None,
        progress=progress,
    )
    graph.metadata["verification"] = result.as_dict()


def _apply_binarized(gm: torch.fx.GraphModule, binarized: dict[str, Any]) -> None:
    """Replace declared-binary weights of `gm` by sign(W) * mean|W| (the model verification compares with)."""
    params = dict(gm.named_parameters())
    for path, info in binarized.items():
        name = info.get("param")
        if name is None or name not in params:
            raise ConversionError(f"{path}: binarize needs the layer's weight to be a parameter")
        with torch.no_grad():
            w = params[name]
            dims = tuple(range(1, w.dim()))
            w.copy_(torch.where(w < 0, -1.0, 1.0) * w.abs().mean(dim=dims, keepdim=True))


# --------------------------------------------------------------------------- write


def write(graph: ir.Graph, output: str | os.PathLike[str]) -> None:
    try:
        from xnorinfer import xbin  # type: ignore[attr-defined]
    except ImportError as err:
        raise ConversionError("writing .xbin needs xnorinfer.xbin, which this build does not have yet") from err
    xbin.write(graph, os.fspath(output))


def _engine(data: bytes) -> Any:
    """The engine verification runs: the package's loader, on the in-memory .xbin, one thread."""
    from xnorinfer.session import load

    return load(data, 1)
