"""The .xbin model file: writer and reader (numpy only; the format is docs/xbin-format.md).

``write(graph, path)`` validates an `ir.Graph` and writes it atomically; ``read(path)`` returns
the `ir.Graph` back (for inspection and tests). The C++ runtime reads the same container with
csrc/runtime/xbin_reader.cc and takes the graph description that `describe()` builds here from the
JSON section, checking every size and shape again before it allocates.
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
    if len(graph.inputs) != 1:
        raise XbinError(f"invalid graph: exactly one graph input is supported, got {len(graph.inputs)}")
    for name, t in graph.tensors.items():
        if t.name != name:
            raise XbinError(f"invalid graph: tensor entry {name!r} is named {t.name!r}")
        if len(t.shape) not in (2, 4) or any(int(d) < 1 for d in t.shape):
            raise XbinError(f"invalid graph: tensor {name!r} has shape {t.shape}; need rank 2 or 4, positive dims")
    for op in graph.ops:
        for pname, arr in op.params.items():
            where = f"op {op.name} ({op.kind}) param {pname!r}"
            if not isinstance(arr, np.ndarray):
                raise XbinError(f"invalid graph: {where} is {type(arr).__name__}, not a numpy array")
            want = param_dtype(op.kind, pname)
            if arr.dtype != np.dtype(want):
                raise XbinError(f"invalid graph: {where} must be {want}, got {arr.dtype}")
            if not 1 <= arr.ndim <= 4 or arr.size == 0:
                raise XbinError(f"invalid graph: {where} has shape {arr.shape}; need 1 to 4 non-empty dims")


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


def write(graph: ir.Graph, path: str | os.PathLike[str]) -> None:
    """Validate `graph` and write it to `path` atomically (temp file, fsync, rename)."""
    path = Path(path)
    check_graph(graph)
    text, arrays = _graph_json(graph)
    payloads: list[tuple[int, str, bytes]] = [(KIND_JSON, "graph", text)]
    payloads += [(KIND_DATA, f"param{i + 1}", a.tobytes()) for i, a in enumerate(arrays)]
    blob = assemble(payloads)
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


def check_header(head: bytes, size: int, path: str) -> tuple[int, int]:
    """Validate the 64-byte header of a `size`-byte file; returns (section count, table crc).

    Readers call this on the header alone before reading the rest, so that a file that is not an
    .xbin is never read whole.
    """
    if size < HEADER_BYTES or len(head) < HEADER_BYTES:
        raise XbinError(
            f"{path}: file is {size} bytes, smaller than the {HEADER_BYTES}-byte header "
            "(truncated or not an .xbin file)"
        )
    magic, version, count, declared, table_crc, header_crc = _HEADER.unpack_from(head, 0)
    if magic != MAGIC:
        raise XbinError(f"{path}: bad magic: not an .xbin file")
    if version > FORMAT_VERSION:
        raise XbinError(f"{path}: format version {version} is newer than this xnorinfer supports ({FORMAT_VERSION})")
    if version == 0:
        raise XbinError(f"{path}: format version 0 is invalid")
    if zlib.crc32(head[:28]) != header_crc:
        raise XbinError(f"{path}: header checksum mismatch (corrupted header)")
    if any(head[32:HEADER_BYTES]):
        raise XbinError(f"{path}: reserved header bytes are not zero (corrupted header)")
    if declared != size:
        why = "truncated" if declared > size else "trailing bytes"
        raise XbinError(f"{path}: header declares {declared} bytes but the file has {size} ({why})")
    return count, table_crc


def parse_container(data: bytes | bytearray, path: str) -> list[tuple[int, str, int, int]]:
    """Validate the binary layer; returns (kind, name, offset, size) per section."""
    size = len(data)
    count, table_crc = check_header(data[:HEADER_BYTES], size, path)
    if count < 1:
        raise XbinError(f"{path}: no sections (the graph JSON section is required)")
    if count > (size - HEADER_BYTES) // ENTRY_BYTES:
        raise XbinError(f"{path}: section table of {count} entries does not fit in the file")
    table_end = HEADER_BYTES + count * ENTRY_BYTES
    if zlib.crc32(data[HEADER_BYTES:table_end]) != table_crc:
        raise XbinError(f"{path}: section table checksum mismatch (corrupted section table)")
    sections = []
    for i in range(count):
        kind, flags, off, n, crc, reserved, raw = _ENTRY.unpack_from(data, HEADER_BYTES + i * ENTRY_BYTES)
        name = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
        where = f"{path}: section {i} ({name!r})"
        if flags or reserved:
            raise XbinError(f"{where}: reserved fields are not zero")
        if kind not in (KIND_JSON, KIND_DATA):
            raise XbinError(f"{where}: unknown kind {kind}")
        if (i == 0) != (kind == KIND_JSON):
            raise XbinError(f"{where}: section 0, and only it, must be the graph JSON")
        if off % ALIGN:
            raise XbinError(f"{where}: offset {off} is not 64-byte aligned")
        if off < table_end or off > size or n > size - off:
            raise XbinError(f"{where}: bytes [{off}, +{n}) lie outside the file's data area [{table_end}, {size})")
        if kind == KIND_JSON and not 0 < n <= MAX_JSON_BYTES:
            raise XbinError(f"{where}: graph JSON size {n} is out of range")
        if zlib.crc32(data[off : off + n]) != crc:
            raise XbinError(f"{where}: checksum mismatch (corrupted data)")
        sections.append((kind, name, off, n))
    # Empty sections hold no bytes: they overlap nothing and end no padding run (as in the C++ reader).
    ordered = sorted((s for s in sections if s[3]), key=lambda s: s[2])
    for a, b in zip(ordered, ordered[1:], strict=False):
        if a[2] + a[3] > b[2]:
            raise XbinError(f"{path}: sections {a[1]!r} and {b[1]!r} overlap")
    # No checksum covers the padding: every byte outside the header, table and sections must be zero.
    pos = table_end
    for start, end in [(s[2], s[2] + s[3]) for s in ordered] + [(size, size)]:
        if any(data[pos:start]):
            raise XbinError(f"{path}: padding bytes in [{pos}, {start}) are not zero (corrupted file)")
        pos = end
    return sections


def _expect(cond: bool, path: str, what: str) -> None:
    if not cond:
        raise XbinError(f"{path}: {what}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _shape(v: Any, path: str, where: str, ranks: Sequence[int]) -> list[int]:
    _expect(
        isinstance(v, list) and len(v) in ranks and all(_is_int(d) and 1 <= d <= 1 << 30 for d in v),
        path,
        f"{where}: shape {v!r} must be a list of {'/'.join(map(str, ranks))} positive integers",
    )
    return list(v)


def parse_json(text: bytes, path: str) -> dict[str, Any]:
    """Parse the graph JSON section (strict: no NaN/Infinity, must be an object)."""

    def bad_constant(name: str) -> Any:
        raise ValueError(f"non-finite number {name}")

    try:
        doc = json.loads(text.decode("utf-8"), parse_constant=bad_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise XbinError(f"{path}: graph JSON section is not valid JSON ({err})") from None
    _expect(isinstance(doc, dict), path, "graph JSON must be an object")
    _expect(doc.get("format") == "xnorinfer.xbin", path, "graph JSON 'format' is not 'xnorinfer.xbin'")
    _expect(_is_int(doc.get("ir_version")), path, "graph JSON 'ir_version' is missing")
    _expect(doc["ir_version"] >= 1, path, f"IR version {doc['ir_version']} is invalid (versions start at 1)")
    _expect(
        doc["ir_version"] <= ir.IR_VERSION,
        path,
        f"IR version {doc['ir_version']} is newer than this xnorinfer supports ({ir.IR_VERSION})",
    )
    return doc


def _placeholders(params: dict[str, dict[str, Any]]) -> dict[str, np.ndarray]:
    """Arrays of each parameter's dtype and shape that hold no memory, for the structural checks."""
    return {
        k: np.lib.stride_tricks.as_strided(
            np.zeros(1, _NUMPY_DTYPES[p["dtype"]]), tuple(p["shape"]), (0,) * len(p["shape"])
        )
        for k, p in params.items()
    }


def describe(
    doc: dict[str, Any], path: str, section_sizes: Sequence[tuple[int, int]], section_names: Sequence[str] | None = None
) -> dict[str, Any]:
    """Check the graph JSON against the section table and return the runtime's graph description.

    `section_sizes` is (kind, size) per section. The description is plain dicts/lists:
    inputs, outputs, tensors [{name, dtype, shape}], ops [{kind, name, inputs, outputs, attrs,
    params {name: {section, dtype, shape}}}], metadata.
    """
    for key, typ in (("metadata", dict), ("inputs", list), ("outputs", list), ("tensors", list), ("ops", list)):
        _expect(isinstance(doc.get(key), typ), path, f"graph JSON '{key}' must be a {typ.__name__}")
    tensors = []
    for t in doc["tensors"]:
        _expect(isinstance(t, dict) and isinstance(t.get("name"), str), path, "tensor entry without a name")
        _expect(t.get("dtype") in ("f32", "bits"), path, f"tensor {t['name']!r}: dtype must be 'f32' or 'bits'")
        tensors.append(
            {
                "name": t["name"],
                "dtype": t["dtype"],
                "shape": _shape(t.get("shape"), path, f"tensor {t['name']!r}", (2, 4)),
            }
        )
    used_sections: set[int] = set()
    ops = []
    for o in doc["ops"]:
        _expect(
            isinstance(o, dict) and isinstance(o.get("name"), str) and isinstance(o.get("kind"), str),
            path,
            "op entry without a name or kind",
        )
        where = f"op {o['name']} ({o['kind']})"
        _expect(o["kind"] in OPS, path, f"{where}: unknown op kind")
        for key in ("inputs", "outputs"):
            _expect(
                isinstance(o.get(key), list) and all(isinstance(s, str) for s in o[key]),
                path,
                f"{where}: '{key}' must be a list of tensor names",
            )
        _expect(
            isinstance(o.get("attrs"), dict) and isinstance(o.get("params"), dict),
            path,
            f"{where}: 'attrs' and 'params' must be objects",
        )
        for key, value in o["attrs"].items():
            ok = isinstance(value, (bool, int, float, str)) or (
                isinstance(value, list) and all(_is_int(v) for v in value)
            )
            _expect(ok, path, f"{where}: attribute {key!r} has an unsupported value {value!r}")
        params = {}
        for pname, p in o["params"].items():
            pw = f"{where} param {pname!r}"
            _expect(isinstance(p, dict), path, f"{pw}: must be an object")
            _expect(pname in OPS[o["kind"]].params, path, f"{where}: unexpected parameter {pname!r}")
            want = param_dtype(o["kind"], pname)
            _expect(p.get("dtype") == want, path, f"{pw}: dtype must be {want}, got {p.get('dtype')!r}")
            shape = _shape(p.get("shape"), path, pw, (1, 2, 3, 4))
            sec = p.get("section")
            _expect(
                _is_int(sec) and 1 <= sec < len(section_sizes) and section_sizes[sec][0] == KIND_DATA,
                path,
                f"{pw}: section {sec!r} is not a data section of this file",
            )
            _expect(sec not in used_sections, path, f"{pw}: section {sec} is used twice")
            # Entry i must be the section written as param<i>: a consistent swap of two table
            # entries (each with its own valid CRC) would otherwise load the wrong weights.
            _expect(
                section_names is None or section_names[sec] == f"param{sec}",
                path,
                f"{pw}: section {sec} is named {section_names[sec] if section_names else ''!r}, expected "
                f"'param{sec}' (section table entries reordered?)",
            )
            used_sections.add(sec)
            need = math.prod(shape) * _NUMPY_DTYPES[want].itemsize
            _expect(
                need == section_sizes[sec][1],
                path,
                f"{pw}: {want} shape {tuple(shape)} needs {need} bytes but its section has {section_sizes[sec][1]}",
            )
            params[pname] = {"section": sec, "dtype": want, "shape": shape}
        ops.append(
            {
                "kind": o["kind"],
                "name": o["name"],
                "inputs": list(o["inputs"]),
                "outputs": list(o["outputs"]),
                "attrs": dict(o["attrs"]),
                "params": params,
            }
        )
    for key in ("inputs", "outputs"):
        _expect(all(isinstance(s, str) for s in doc[key]), path, f"graph '{key}' must be tensor names")
    names = [t["name"] for t in tensors]
    _expect(len(set(names)) == len(names), path, "a tensor name is declared twice")
    # Structural checks of the IR (known ops, attrs/params present, topological order).
    skeleton = ir.Graph(
        inputs=list(doc["inputs"]),
        outputs=list(doc["outputs"]),
        tensors={t["name"]: ir.Tensor(t["name"], tuple(t["shape"]), t["dtype"]) for t in tensors},
        ops=[
            ir.Op(o["kind"], o["name"], o["inputs"], o["outputs"], o["attrs"], _placeholders(o["params"])) for o in ops
        ],
    )
    try:
        skeleton.validate()
    except ValueError as err:
        raise XbinError(f"{path}: {err}") from None
    return {
        "inputs": list(doc["inputs"]),
        "outputs": list(doc["outputs"]),
        "tensors": tensors,
        "ops": ops,
        "metadata": doc["metadata"],
    }


def read(path: str | os.PathLike[str]) -> ir.Graph:
    """Read and validate a .xbin file; returns its `ir.Graph` (parameters copied into numpy arrays)."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(HEADER_BYTES)
            check_header(head, size, name)  # before the rest is read: a non-model file is not read whole
            data = bytearray(size)
            data[:HEADER_BYTES] = head
            if f.readinto(memoryview(data)[HEADER_BYTES:]) != size - HEADER_BYTES:
                raise XbinError(f"{name}: short read (the file changed while it was read)")
    except OSError as err:
        raise XbinError(f"{name}: cannot read: {err.strerror or err}") from None
    sections = parse_container(data, name)
    kind, _, off, size = sections[0]
    desc = describe(
        parse_json(data[off : off + size], name), name, [(s[0], s[3]) for s in sections], [s[1] for s in sections]
    )
    ops = []
    for o in desc["ops"]:
        params = {}
        for pname, p in o["params"].items():
            _, _, poff, psize = sections[p["section"]]
            arr = np.frombuffer(data, dtype=_NUMPY_DTYPES[p["dtype"]], count=math.prod(p["shape"]), offset=poff)
            params[pname] = arr.astype(np.dtype(p["dtype"]), copy=True).reshape(p["shape"])
        ops.append(ir.Op(o["kind"], o["name"], o["inputs"], o["outputs"], o["attrs"], params))
    return ir.Graph(
        inputs=desc["inputs"],
        outputs=desc["outputs"],
        tensors={t["name"]: ir.Tensor(t["name"], tuple(t["shape"]), t["dtype"]) for t in desc["tensors"]},
        ops=ops,
        metadata=desc["metadata"],
    )
