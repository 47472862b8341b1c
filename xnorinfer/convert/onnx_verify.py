"""Convert and verify an ONNX model without PyTorch as the reference.

The reference for an ONNX input is an independent executor of that ONNX graph: onnxruntime for a
standard model, qonnx's `execute_onnx` when QONNX / FINN custom ops are present. Its values are
compared with the IR reference and the engine by verify.py, exactly as a PyTorch program's are.
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from xnorinfer import ir
from xnorinfer.convert import onnx_capture, patterns
from xnorinfer.convert.beta import fuse_pixel_scale
from xnorinfer.convert.graph import ConversionError
from xnorinfer.convert.lower import lower
from xnorinfer.convert.verify import Inputs, SourceRunner
from xnorinfer.convert.verify import _chunks as verify_chunks
from xnorinfer.convert.verify import verify as run_verify

ORT_CHUNK = 256  # rows per onnxruntime call when the batch dimension is free


def _chunks(x: Inputs, batch: int) -> list[tuple[tuple[np.ndarray, ...], int]]:
    """x (one array per input) in pieces of exactly `batch` rows with their real row counts (verify.py's split)."""
    return [
        (tuple(np.ascontiguousarray(t.numpy(), dtype=np.float32) for t in c), n) for c, n in verify_chunks(x, batch)
    ]


def _feeds(inputs: list[str], chunk: tuple[np.ndarray, ...]) -> dict[str, np.ndarray]:
    return dict(zip(inputs, chunk, strict=True))


def _fixed_batch(model: Any) -> int | None:
    dims = onnx_capture.graph_inputs(model)[0].type.tensor_type.shape.dim
    return int(dims[0].dim_value) if dims and dims[0].HasField("dim_value") and dims[0].dim_value > 0 else None


def _join(parts: list[tuple[dict[str, np.ndarray], int]], names: list[str]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([np.asarray(p[k])[:n] for p, n in parts]) for k in names}


def onnxruntime_runner(model: Any) -> SourceRunner:
    """Run a standard ONNX model with onnxruntime, the named intermediate values exposed as outputs."""
    import onnx
    import onnxruntime as ort

    def run(x: Inputs, names: set[str]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        m = onnx.shape_inference.infer_shapes(copy.deepcopy(model))
        info = {v.name: v for v in m.graph.value_info}
        outs = [o.name for o in m.graph.output]
        for name in sorted(names):
            if name not in outs:
                m.graph.output.append(info.get(name) or onnx.helper.make_empty_tensor_value_info(name))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the graph as written
        sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        inputs = [i.name for i in onnx_capture.graph_inputs(m)]
        wanted = [outs[0], *sorted(names)]
        parts = []
        for chunk, n in _chunks(x, _fixed_batch(model) or ORT_CHUNK):
            values = sess.run(wanted, _feeds(inputs, chunk))
            parts.append((dict(zip(wanted, values, strict=True)), n))
        joined = _join(parts, wanted)
        return {k: joined[k] for k in names}, joined[outs[0]]

    return run


def qonnx_runner(model: Any) -> SourceRunner:
    """Run a QONNX / FINN-ONNX model node by node with qonnx's executor (its custom ops in numpy)."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    # (one domain for the custom ops, as qonnx's cleanup does: older Brevitas exports name "onnx.brevitas")
    wrapped = ModelWrapper(onnx_capture.single_custom_domain(model)).transform(InferShapes())
    inputs = [i.name for i in onnx_capture.graph_inputs(wrapped.model)]
    out = wrapped.graph.output[0].name
    batch = _fixed_batch(wrapped.model) or 1

    def run(x: Inputs, names: set[str]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        wanted = [out, *sorted(names)]
        parts = []
        for chunk, n in _chunks(x, batch):
            ctx = execute_onnx(wrapped, _feeds(inputs, chunk), return_full_exec_context=True)
            parts.append(({k: ctx[k] for k in wanted}, n))
        joined = _join(parts, wanted)
        return {k: joined[k] for k in names}, joined[out]

    return run


def source_runner(model: Any) -> SourceRunner:
    """qonnx's executor for a model with QONNX / FINN custom ops, onnxruntime otherwise."""
    return qonnx_runner(model) if onnx_capture.custom_ops(model) else onnxruntime_runner(model)


def _flat_output(run: SourceRunner, graph: ir.Graph) -> SourceRunner:
    """The source's (N, C, 1, 1) output as the (N, C) the IR holds it in (the IR drops a trailing 1x1 reshape)."""
    ir_rank = len(graph.tensors[graph.outputs[0]].shape)

    def flat(x: Inputs, names: set[str]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        values, out = run(x, names)
        if ir_rank == 2 and out.ndim == 4 and out.shape[2:] == (1, 1):
            out = out.reshape(out.shape[:2])
        return values, out

    return flat


def _array(a: Any) -> np.ndarray:
    return np.asarray(a.detach().numpy() if hasattr(a, "detach") else a, np.float32)


def convert_onnx(
    source: Any,
    *,
    binarize: Sequence[str] = (),
    calib: Any = None,
    force: bool = False,
    verify: bool = True,
    engine: bool = True,
    output: str | os.PathLike[str] | None = None,
    n_verify: int = 64,
    seed: int = 0,
    metadata: dict[str, Any] | None = None,
    progress: bool = False,
) -> ir.Graph:
    """`xnorinfer.convert` for an ONNX model (an onnx.ModelProto or the path of a .onnx file)."""
    from xnorinfer.convert import pipeline

    if binarize:
        raise ConversionError(
            "binarize applies to PyTorch models: an ONNX model's weights are taken as they are "
            "(export them binary, e.g. with Brevitas's BipolarQuant, or quantize them in the ONNX graph)"
        )
    sha = None
    name = "ONNX model"
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        with open(name, "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()
        proto = onnx_capture.load(name)
    else:
        proto = source
    try:
        model = onnx_capture.to_model(proto, name)
    except ConversionError as err:
        raise ConversionError(f"{name}: {err}" if not str(err).startswith(name) else str(err)) from err
    model = patterns.recognise(model)
    graph = lower(model)
    graph, _ = fuse_pixel_scale(graph)  # XNOR-Net's beta map into the bconv2d epilogue (beta.py)
    pipeline.describe(graph, model, sha, metadata)
    custom = sorted(onnx_capture.custom_ops(proto))
    graph.metadata["source_format"] = "qonnx" if custom else "onnx"
    for key in ("onnx_datatypes", "onnx_checker"):
        if key in model.metadata:
            graph.metadata[key] = model.metadata[key]
    if verify:
        in_shape = list(model.metadata["input_shape"])
        x: Inputs
        if isinstance(calib, (list, tuple)):  # several inputs: one array per input, in graph order
            x = tuple(_array(c) for c in calib)
        elif calib is not None:
            x = _array(calib)
        else:
            rng = np.random.default_rng(seed)
            shapes = model.metadata["input_shapes"]
            x = tuple(rng.standard_normal([n_verify] + list(s[1:])).astype(np.float32) for s in shapes)
            x = x if len(x) > 1 else x[0]
        result = run_verify(
            graph,
            None,
            None,
            x,
            batch=int(in_shape[0]),
            force=force,
            engine=pipeline._engine if engine else None,
            progress=progress,
            source=_flat_output(source_runner(proto), graph),
        )
        graph.metadata["verification"] = result.as_dict()
        graph.metadata["verification"]["reference"] = "qonnx execute_onnx" if custom else "onnxruntime"
    if output is not None:
        pipeline.write(graph, output)
    return graph
