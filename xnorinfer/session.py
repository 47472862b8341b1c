"""Run a .xbin model: ``xnorinfer.load(path or bytes) -> Session``; ``Session.run(x)`` is one C++ call.

A thin layer over the C++ loader and runtime (`_core.Model`, `_core.Session`), which the public C++
API (include/xnorinfer/xnorinfer.h) uses too: the file is parsed and checked there, once.

The run path imports numpy and the extension only (never torch).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from xnorinfer import _core
from xnorinfer.cost import OpCost, op_cost
from xnorinfer.xbin import XbinError

MAX_THREADS = 1024  # the runtime's limit (csrc/runtime/session.cc)


def _default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class Session:
    """A loaded model: one memory plan and one thread pool, reused across `run` calls.

    `max_memory` bounds the bytes of one memory plan (all activations and scratch of one run);
    the default is half of the physical memory or of the cgroup limit (`_core.default_max_memory()`). A model whose
    recorded input shape needs more is refused at load (XbinError); a larger input at run
    (ValueError). Either message names the largest buffer and its op.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        threads: int | None = None,
        max_memory: int | None = None,
        *,
        data: bytes | None = None,
        name: str = "<bytes>",
    ) -> None:
        _core.default_isa()  # a bad XNORINFER_ISA is named now, not blamed on the first input later
        if (path is None) == (data is None):
            raise TypeError("Session takes a path or data=, not both")
        if threads is None:
            threads = _default_threads()
        if not isinstance(threads, int) or isinstance(threads, bool) or not 1 <= threads <= MAX_THREADS:
            raise ValueError(f"threads must be an integer from 1 to {MAX_THREADS}, got {threads!r}")
        if max_memory is not None and (
            not isinstance(max_memory, int) or isinstance(max_memory, bool) or not 1 <= max_memory < 1 << 64
        ):
            raise ValueError(f"max_memory must be a positive number of bytes, got {max_memory!r}")
        if path is not None:
            name = os.fspath(path)
            if os.path.isdir(name):
                raise XbinError(f"{name}: is a directory, not a .xbin file")
            if os.path.exists(name) and not os.path.isfile(name):
                raise XbinError(f"{name}: not a regular file (a pipe or device cannot hold a .xbin model)")
        try:  # the C++ loader: container, graph JSON, parameters, metadata (csrc/runtime/model.cc)
            if path is not None:
                self._model = _core.Model(os.fsencode(name))  # bytes: any file name the OS allows
            else:
                self._model = _core.Model.from_bytes(bytes(data), name)
            self._core = _core.Session(self._model, threads, max_memory)
        except UnicodeDecodeError as err:  # the C++ message quotes a file name that is not UTF-8
            raise XbinError(err.object.decode("utf-8", "surrogateescape")) from None
        except ValueError as err:  # XbinFormatError, or MemoryLimitError for the recorded input
            raise XbinError(str(err)) from None
        self._metadata: dict[str, Any] = self._model.metadata
        self._desc: dict[str, Any] | None = None  # the graph description, built when costs() needs it
        self._path = name
        self._input_shape: tuple[int, ...] = tuple(self._core.input_shape)
        self._input_names: list[str] = [str(n) for n in self._core.input_names]
        self._input_shapes: list[tuple[int, ...]] = [tuple(int(d) for d in s) for s in self._core.input_shapes]
        # an (N, F) model (an MLP without Flatten): the engine runs it as NCHW (N, F, 1, 1)
        self._features_input = self._metadata.get("input_layout") == "NF" and tuple(self._input_shape[2:]) == (
            1,
            1,
        )

    @property
    def path(self) -> str:
        return self._path

    @property
    def threads(self) -> int:
        return int(self._core.threads)

    @property
    def max_memory(self) -> int:
        """The most bytes one memory plan may take."""
        return int(self._core.max_memory)

    def planned_bytes(self, shape: tuple[int, ...] | list[tuple[int, ...]]) -> int:
        """Bytes of the memory plan for an NCHW input shape (or a list of shapes, one per input),
        computed without allocating anything."""
        if isinstance(shape, list):
            return int(self._core.planned_bytes_inputs([list(s) for s in shape]))
        if len(shape) != 4:
            return int(self._core.planned_bytes_inputs([list(shape)]))
        n, c, h, w = shape
        return int(self._core.planned_bytes(n, c, h, w))

    @property
    def input_names(self) -> list[str]:
        """The model's inputs in run order (a model converted from forward(x, y) takes two)."""
        return list(self._input_names)

    @property
    def input_shapes(self) -> list[tuple[int, ...]]:
        """The recorded shape of every input (batch 1; any batch runs): NCHW for a 4-D (image) input,
        PyTorch's order for any other rank; (1, F) for a one-input (N, F) model."""
        shapes = list(self._input_shapes)
        if self._features_input:
            shapes[0] = self.input_shape
        return shapes

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The recorded NCHW input shape (batch 1), or (1, F) for an (N, F) model; any batch size runs."""
        if self._features_input:
            return (1, self._input_shape[1])
        return (1, *self._input_shape[1:])

    @property
    def labels(self) -> list[str] | None:
        labels = self._metadata.get("labels")
        return [str(v) for v in labels] if isinstance(labels, list) else None

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self._metadata)

    def run(
        self, x: np.ndarray | Sequence[np.ndarray] | Mapping[str, np.ndarray], isa: str | None = None
    ) -> np.ndarray | list[np.ndarray]:
        """Run on a float32 NCHW batch; returns the graph output (a list when there are several).

        A model with several inputs takes a list or tuple of arrays (in `input_names` order) or a dict
        name -> array, all with the same batch N. A 4-D input is NCHW; any other rank in PyTorch's
        order (as `input_shapes` shows). Outputs are float32 in the engine's layout: (N, F), or NHWC
        for 4-D outputs. `isa` forces a kernel path ("scalar", "avx2", "avx512"); the default is
        XNORINFER_ISA or the best one.
        """
        arrs = self._checked_inputs(x)
        try:
            outs = self._core.run(arrs[0], isa) if self._legacy_call(arrs) else self._core.run_inputs(arrs, isa)
        except ValueError as err:
            raise ValueError(f"{self._path}: {self._fit_message(arrs)}: {err}") from None
        return outs[0] if len(outs) == 1 else list(outs)

    def profile(
        self, x: np.ndarray | Sequence[np.ndarray] | Mapping[str, np.ndarray], runs: int = 10, isa: str | None = None
    ) -> list[dict[str, Any]]:
        """Time every op over `runs` runs of `x` (after one untimed warm-up run); `x` as `run` takes it.

        Returns one row per op in execution order: name (module path), kind, total_ms (summed over
        the runs), ms_per_run, and share (of the summed op time, 0..1); a binary conv/linear row also
        has engine, the binary GEMM engine its last run used ("popcount", "amx" or "amx-emulated",
        see XNORINFER_BGEMM in docs/kernels.md). Results of the runs are the same as `run`'s; the
        timing covers the ops only (not the input layout change or copy-out).
        """
        if not isinstance(runs, int) or isinstance(runs, bool) or runs < 1:
            raise ValueError(f"runs must be a positive integer, got {runs!r}")
        arrs = self._checked_inputs(x)
        try:
            if self._legacy_call(arrs):
                self._core.run(arrs[0], isa)  # warm-up: plans memory for this shape, fills caches
                ops, _ = self._core.profile(arrs[0], runs, isa)
            else:
                self._core.run_inputs(arrs, isa)
                ops, _ = self._core.profile_inputs(arrs, runs, isa)
        except ValueError as err:
            raise ValueError(f"{self._path}: {self._fit_message(arrs)}: {err}") from None
        total = sum(float(op["seconds"]) for op in ops)
        rows: list[dict[str, Any]] = []
        for op in ops:
            row: dict[str, Any] = {
                "name": str(op["name"]),
                "kind": str(op["kind"]),
                "total_ms": float(op["seconds"]) * 1e3,
                "ms_per_run": float(op["seconds"]) * 1e3 / runs,
                "share": float(op["seconds"]) / total if total > 0 else 1.0 / len(ops),
            }
            if "engine" in op:
                row["engine"] = str(op["engine"])
            rows.append(row)
        return rows

    def bgemm_choices(self) -> list[dict[str, Any]]:
        """What XNORINFER_BGEMM=auto decided so far: one row per binary conv/linear op and input shape.

        Under auto, the first run of each binary layer for an input shape, thread count and ISA path
        times the popcount kernels and the AMX tiles on it (interleaved, best of 3 each) and keeps the
        faster for every later run. Each row: name, kind, batch, height, width (the layer's input),
        threads, isa (the popcount kernels' path), engine (the one chosen), amx_engine (the tile
        engine measured: "amx", or "amx-emulated" under auto-emulated), popcount_ms and amx_ms (0.0
        when not measured) and not_measured (why the tile engine was no candidate, e.g. a CPU without
        AMX; empty when it was measured). Empty when auto has not run; a layer keeps its last 64.
        """
        return [
            {
                "name": str(c["name"]),
                "kind": str(c["kind"]),
                "batch": int(c["batch"]),
                "height": int(c["height"]),
                "width": int(c["width"]),
                "threads": int(c["threads"]),
                "isa": str(c["isa"]),
                "engine": str(c["engine"]),
                "amx_engine": str(c["amx_engine"]),
                "popcount_ms": float(c["popcount_seconds"]) * 1e3,
                "amx_ms": float(c["amx_seconds"]) * 1e3,
                "not_measured": str(c["not_measured"]),
            }
            for c in self._core.bgemm_choices()
        ]

    def _legacy_call(self, arrs: list[np.ndarray]) -> bool:
        """One 4-D input: the single-image entry point (its messages name NCHW)."""
        return len(arrs) == 1 and arrs[0].ndim == 4 and len(self._input_shapes[0]) == 4

    def _fit_message(self, arrs: list[np.ndarray]) -> str:
        if len(self._input_names) == 1:
            return f"input of shape {arrs[0].shape} does not fit this model (converted for {tuple(self.input_shape)})"
        return (
            f"inputs of shapes {[a.shape for a in arrs]} do not fit this model (converted for "
            f"{dict(zip(self._input_names, self.input_shapes, strict=True))})"
        )

    def _checked_inputs(self, x: np.ndarray | Sequence[np.ndarray] | Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """The arrays of one call, one per graph input in order, each C-contiguous float32."""
        names = self._input_names
        if isinstance(x, np.ndarray) and len(names) == 1:  # the common call first: one array, one input
            return [self._checked_input(x)]
        if isinstance(x, Mapping):
            unknown = sorted(set(x) - set(names))
            missing = [n for n in names if n not in x]
            if unknown or missing:
                raise ValueError(
                    f"{self._path}: this model's inputs are {names}; "
                    + (f"missing {missing}" if missing else "")
                    + ("; " if missing and unknown else "")
                    + (f"unknown {unknown}" if unknown else "")
                )
            items = [x[n] for n in names]
        elif isinstance(x, (list, tuple)):
            items = list(x)
            if len(items) != len(names):
                raise ValueError(
                    f"{self._path}: this model takes {len(names)} input{'s' * (len(names) != 1)} {names}, "
                    f"got {len(items)} arrays"
                )
        else:
            if len(names) != 1:
                raise ValueError(
                    f"{self._path}: this model takes {len(names)} inputs {names}: pass a list of arrays in that "
                    "order or a dict name -> array"
                )
            items = [x]
        if len(names) == 1:
            return [self._checked_input(items[0])]
        return [self._as_float32(a, f"input '{n}'") for n, a in zip(names, items, strict=True)]

    def _as_float32(self, x: Any, what: str) -> np.ndarray:
        arr = np.asarray(x)
        if arr.dtype != np.float32:
            if not np.issubdtype(arr.dtype, np.floating):
                raise TypeError(f"{self._path}: {what} must be a float32 array, got dtype {arr.dtype}")
            arr = arr.astype(np.float32)
        return np.ascontiguousarray(arr)

    def _checked_input(self, x: np.ndarray) -> np.ndarray:
        """x as a C-contiguous float32 NCHW array with this model's channel count, or a clear error.

        A model converted from an (N, F) input takes (N, F) (run as (N, F, 1, 1)); a model whose input
        has another rank takes it in PyTorch's order (checked by the runtime).
        """
        arr = self._as_float32(x, "input")
        if self._features_input:
            if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] != self._input_shape[1]:
                raise ValueError(
                    f"{self._path}: input must be float32 (N, {self._input_shape[1]}) with N >= 1, "
                    f"got shape {arr.shape}"
                )
            return arr.reshape(arr.shape[0], arr.shape[1], 1, 1)
        if len(self._input_shapes[0]) != 4:
            return arr
        if arr.ndim != 4:
            raise ValueError(f"{self._path}: input must be NCHW (N, C, H, W), got shape {arr.shape}")
        if arr.shape[0] < 1 or arr.shape[1] != self.input_shape[1]:
            raise ValueError(
                f"{self._path}: input must be float32 NCHW (N, {self.input_shape[1]}, H, W) with N >= 1 "
                f"(the model was converted for {tuple(self.input_shape)}), got {arr.shape}"
            )
        return arr

    def costs(self) -> list[OpCost]:
        """Per-op cost (xnorinfer.cost, the model `convert` reports with), batch 1."""
        shapes = self._core.declared_shapes  # batch 1: what the ops produce for the recorded inputs
        return [
            op_cost(
                op["name"],
                op["kind"],
                op["attrs"],
                {k: (p["shape"], p["dtype"]) for k, p in op["params"].items()},
                shapes[(op["inputs"] or op["outputs"])[0]],  # constant: no input
                shapes[op["outputs"][0]],
            )
            for op in self._describe()["ops"]
        ]

    def _describe(self) -> dict[str, Any]:
        if self._desc is None:
            self._desc = self._model.describe()
        return self._desc

    def summary(self) -> list[dict[str, Any]]:
        """Per-op rows: name, kind, output shape, weight bits/bytes as stored, binary MACs and FLOPs (batch 1)."""
        return [
            {
                "name": c.name,
                "kind": c.kind,
                "output_shape": c.out_shape,
                "weight_bits": c.weight_bits,
                "weight_bytes": c.weight_bits // 8,
                "float32_weight_bits": c.float32_weight_bits,
                "binary_macs": c.binary_macs,
                "flops": c.float_flops,
            }
            for c in self.costs()
        ]

    def __repr__(self) -> str:
        return f"Session({self._path!r}, threads={self.threads}, input_shape={self.input_shape})"


def load(
    model: str | os.PathLike[str] | bytes | bytearray | memoryview,
    threads: int | None = None,
    max_memory: int | None = None,
    *,
    name: str = "<bytes>",
) -> Session:
    """Load a .xbin model from a path, or from its bytes (`name` then stands for the file in messages).

    `threads` defaults to the CPUs this process may use, `max_memory` (bytes per memory plan) to half of
    the physical memory or of the cgroup limit. Both forms go through the same C++ loader.
    """
    if isinstance(model, (bytes, bytearray, memoryview)):
        return Session(data=bytes(model), name=name, threads=threads, max_memory=max_memory)
    return Session(model, threads=threads, max_memory=max_memory)


def load_bytes(
    data: bytes, threads: int | None = None, max_memory: int | None = None, name: str = "<bytes>"
) -> Session:
    """`load` for a model already in memory (no file is written)."""
    return Session(data=bytes(data), name=name, threads=threads, max_memory=max_memory)
