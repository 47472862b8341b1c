"""The .xbin model file: the writer, and `read` over the C++ reader (the format is docs/xbin-format.md).

``write(graph, path)`` validates an `ir.Graph` and writes it atomically (``to_bytes`` gives the same
bytes in memory). ``read(path)`` returns the `ir.Graph` back (for inspection and tests): the file is
parsed and checked once, in C++ (csrc/runtime/model.cc), by the reader the runtime loads with.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xnorinfer import ir
from xnorinfer.ops import OPS

MAGIC = b"XNORBIN\0"
FORMAT_VERSION = 1
HEADER_BYTES = 64
ENTRY_BYTES = 64
ALIGN = 64
NAME_BYTES = 32
KIND_JSON = 1
KIND_DATA = 2
MAX_JSON_BYTES = 64 << 20

_HEADER = struct.Struct("<8sIIQII")  # magic, version, section count, file size, table crc, header crc
_ENTRY = struct.Struct("<IIQQII32s")  # kind, flags, offset, size, crc32, reserved, name

_NUMPY_DTYPES: dict[str, np.dtype] = {
    "float32": np.dtype("<f4"),
    "uint64": np.dtype("<u8"),
    "int32": np.dtype("<i4"),
    "uint8": np.dtype("u1"),
}


class XbinError(ValueError):
    """A .xbin file (or a graph to be written) is malformed; the message names the file and the problem."""


def param_dtype(kind: str, param: str) -> str:
    """The dtype a parameter is stored as (its op's declaration, xnorinfer.ops)."""
    return OPS[kind].params[param].dtype


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _json_value(value: Any, where: str) -> Any:
    """Attribute/metadata value as plain JSON types (numpy scalars and tuples converted)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(float(value)):
            raise XbinError(f"{where}: non-finite number {value!r} cannot be stored")
        return float(value)
    if isinstance(value, str) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_json_value(v, where) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return _json_value(value.tolist(), where)
    raise XbinError(f"{where}: value of type {type(value).__name__} cannot be stored")


def check_graph(graph: ir.Graph) -> None:
    """`graph.validate()` plus parameter dtype/shape checks; raises XbinError."""
    try:
        graph.validate()
    except ValueError as err:
        raise XbinError(f"invalid graph: {err}") from None
    if not graph.inputs:
        raise XbinError("invalid graph: the graph has no inputs")
    for name, t in graph.tensors.items():
        if t.name != name:
            raise XbinError(f"invalid graph: tensor entry {name!r} is named {t.name!r}")
        if not 1 <= len(t.shape) <= ir.MAX_RANK or any(int(d) < 1 for d in t.shape):
            raise XbinError(
                f"invalid graph: tensor {name!r} has shape {t.shape}; need rank 1 to {ir.MAX_RANK}, positive dims"
            )
    for op in graph.ops:
        for pname, arr in op.params.items():
            where = f"op {op.name} ({op.kind}) param {pname!r}"
            if not isinstance(arr, np.ndarray):
                raise XbinError(f"invalid graph: {where} is {type(arr).__name__}, not a numpy array")
            want = param_dtype(op.kind, pname)
            if arr.dtype != np.dtype(want):
                raise XbinError(f"invalid graph: {where} must be {want}, got {arr.dtype}")
            if not 1 <= arr.ndim <= ir.MAX_RANK or arr.size == 0:  # (the C++ loader's limit too)
                raise XbinError(f"invalid graph: {where} has shape {arr.shape}; need 1 to {ir.MAX_RANK} non-empty dims")


def _graph_json(graph: ir.Graph) -> tuple[bytes, list[np.ndarray]]:
    arrays: list[np.ndarray] = []
    ops = []
    for op in graph.ops:
        params = {}
        for pname, arr in op.params.items():
            arrays.append(np.ascontiguousarray(arr, dtype=_NUMPY_DTYPES[param_dtype(op.kind, pname)]))
            params[pname] = {
                "dtype": param_dtype(op.kind, pname),
                "shape": [int(d) for d in arr.shape],
                "section": len(arrays),
            }
        ops.append(
            {
                "kind": op.kind,
                "name": op.name,
                "inputs": list(op.inputs),
                "outputs": list(op.outputs),
                "attrs": _json_value(dict(op.attrs), f"op {op.name} attrs"),
                "params": params,
            }
        )
    doc = {
        "format": "xnorinfer.xbin",
        "ir_version": ir.IR_VERSION,
        "metadata": _json_value(dict(graph.metadata), "metadata"),
        "inputs": list(graph.inputs),
        "outputs": list(graph.outputs),
        "tensors": [
            {"name": t.name, "dtype": t.dtype, "shape": [int(d) for d in t.shape]} for t in graph.tensors.values()
        ],
        "ops": ops,
    }
    return json.dumps(doc, allow_nan=False, separators=(",", ":")).encode(), arrays


def assemble(payloads: Sequence[tuple[int, str, bytes]]) -> bytes:
    """The container bytes for (kind, name, payload) sections: header, table, 64-byte aligned sections."""
    offset = _align(HEADER_BYTES + ENTRY_BYTES * len(payloads))
    table = bytearray()
    layout = []
    for kind, name, data in payloads:
        table += _ENTRY.pack(kind, 0, offset, len(data), zlib.crc32(data), 0, name.encode()[: NAME_BYTES - 1])
        layout.append((offset, data))
        offset = _align(offset + len(data))
    file_size = layout[-1][0] + len(layout[-1][1]) if layout else HEADER_BYTES
    head = struct.pack("<8sIIQI", MAGIC, FORMAT_VERSION, len(payloads), file_size, zlib.crc32(bytes(table)))
    out = bytearray((head + struct.pack("<I", zlib.crc32(head))).ljust(HEADER_BYTES, b"\0"))
    out += table
    for off, data in layout:
        out += b"\0" * (off - len(out))
        out += data
    return bytes(out)


def reseal(data: bytes | bytearray) -> bytes:
    """`data` with every checksum and the declared size recomputed after a deliberate edit (for tests
    and fuzzers: a mutant then gets past the checksums to the checks behind them). Sections whose
    entries point outside the data are left as they are; data shorter than a header is returned as is."""
    buf = bytearray(data)
    if len(buf) < HEADER_BYTES:
        return bytes(buf)
    count = struct.unpack_from("<I", buf, 12)[0]
    table_end = HEADER_BYTES + ENTRY_BYTES * count
    if table_end <= len(buf):
        for i in range(count):
            _, _, off, size, _ = struct.unpack_from("<IIQQI", buf, HEADER_BYTES + ENTRY_BYTES * i)
            if off + size <= len(buf):
                crc = zlib.crc32(bytes(buf[off : off + size]))
                struct.pack_into("<I", buf, HEADER_BYTES + ENTRY_BYTES * i + 24, crc)
        struct.pack_into("<I", buf, 24, zlib.crc32(bytes(buf[HEADER_BYTES:table_end])))
    struct.pack_into("<Q", buf, 16, len(buf))
    struct.pack_into("<I", buf, 28, zlib.crc32(bytes(buf[:28])))
    return bytes(buf)


def write(graph: ir.Graph, path: str | os.PathLike[str]) -> None:
    """Validate `graph` and write it to `path` atomically (temp file, fsync, rename)."""
    path = Path(path)
    blob = to_bytes(graph)
    directory = path.parent if str(path.parent) else Path(".")
    # os.open with 0o666 lets the umask decide the mode, as for any file the user writes
    # (mkstemp would make it 0600); O_EXCL and a random name keep the temp file our own.
    tmp = str(directory / f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


# ----------------------------------------------------------------------------- reading


def _graph_from(desc: dict[str, Any]) -> ir.Graph:
    ops = [
        ir.Op(
            o["kind"],
            o["name"],
            o["inputs"],
            o["outputs"],
            o["attrs"],
            {k: p["array"] for k, p in o["params"].items()},
        )
        for o in desc["ops"]
    ]
    return ir.Graph(
        inputs=desc["inputs"],
        outputs=desc["outputs"],
        tensors={t["name"]: ir.Tensor(t["name"], tuple(t["shape"]), t["dtype"]) for t in desc["tensors"]},
        ops=ops,
        metadata=desc["metadata"],
    )


def _core_read(read: Any, name: str) -> ir.Graph:
    from xnorinfer import _core

    try:
        return _graph_from(read())
    except _core.XbinFormatError as err:
        raise XbinError(str(err)) from None
    except UnicodeDecodeError as err:  # the C++ message quotes a file name that is not UTF-8
        raise XbinError(err.object.decode("utf-8", "surrogateescape")) from None


def parse_container(data: bytes | bytearray, path: str) -> list[tuple[int, str, int, int]]:
    """The section table of a model in memory, validated by the C++ container reader: (kind, name,
    offset, size) per section (names decoded as UTF-8 with "replace"); XbinError when it is damaged."""
    from xnorinfer import _core

    try:
        f = _core.XbinFile.from_bytes(bytes(data), path)
    except _core.XbinFormatError as err:
        raise XbinError(str(err)) from None
    return [(KIND_JSON if s["kind"] == "json" else KIND_DATA, s["name"], s["offset"], s["size"]) for s in f.sections]


def read(path: str | os.PathLike[str]) -> ir.Graph:
    """Read and validate a .xbin file; returns its `ir.Graph` (parameters copied into numpy arrays).

    The C++ loader reads and checks the file (csrc/runtime/model.cc, the runtime's own reader),
    without building the runtime graph.
    """
    from xnorinfer import _core

    name = os.fspath(path)
    return _core_read(lambda: _core.read_graph(os.fsencode(name)), name)


def read_bytes(data: bytes, name: str = "<bytes>") -> ir.Graph:
    """`read` for a model already in memory; `name` stands for the file in messages."""
    from xnorinfer import _core

    return _core_read(lambda: _core.read_graph(bytes(data), name), name)


def to_bytes(graph: ir.Graph) -> bytes:
    """The .xbin file `write` would write for `graph` (validated), as bytes."""
    check_graph(graph)
    text, arrays = _graph_json(graph)
    payloads: list[tuple[int, str, bytes]] = [(KIND_JSON, "graph", text)]
    payloads += [(KIND_DATA, f"param{i + 1}", a.tobytes()) for i, a in enumerate(arrays)]
    return assemble(payloads)
