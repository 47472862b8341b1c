"""The .xbin format: round trip, atomic writes, and rejection of bad files by both readers.

Every bad file must be rejected with XbinError (a ValueError) naming the file, by `xbin.read` (the
C++ loader's checks without building the runtime graph) and by `xnorinfer.load` (the C++ loader),
never with a crash.
"""

from __future__ import annotations

import json
import os
import struct
import zlib

import numpy as np
import pytest

import xnorinfer
from xnorinfer import ir, xbin
from xnorinfer.xbin import XbinError


def small_graph(rng: np.random.Generator) -> ir.Graph:
    w = rng.integers(0, 2**63, size=(8, 3, 3, 1), dtype=np.uint64) & np.uint64(0xFFFF)  # 16 real channels
    ops = [
        ir.Op(
            "conv2d",
            "stem",
            ["x"],
            ["a"],
            {"stride": [1, 1], "padding": [1, 1], "relu": False},
            {
                "weight": rng.normal(size=(16, 3, 3, 3)).astype(np.float32),
                "bias": rng.normal(size=16).astype(np.float32),
            },
        ),
        ir.Op("sign", "act1", ["a"], ["b"], {"sign_zero": "+1"}, {"threshold": rng.normal(size=16).astype(np.float32)}),
        ir.Op(
            "bconv2d",
            "conv1",
            ["b"],
            ["c"],
            {"stride": [1, 1], "padding": [1, 1], "pad_mode": "zero", "output": "float", "in_channels": 16},
            {"weight": w, "multiplier": np.full(8, 0.1, np.float32), "bias": np.zeros(8, np.float32)},
        ),
        ir.Op("global_avgpool", "pool", ["c"], ["d"]),
        ir.Op("linear", "fc", ["d"], ["e"], {}, {"weight": rng.normal(size=(4, 8)).astype(np.float32)}),
        ir.Op("softmax", "softmax", ["e"], ["y"]),
    ]
    tensors = {
        "x": ir.Tensor("x", (1, 6, 6, 3), "f32"),
        "a": ir.Tensor("a", (1, 6, 6, 16), "f32"),
        "b": ir.Tensor("b", (1, 6, 6, 16), "bits"),
        "c": ir.Tensor("c", (1, 6, 6, 8), "f32"),
        "d": ir.Tensor("d", (1, 8), "f32"),
        "e": ir.Tensor("e", (1, 4), "f32"),
        "y": ir.Tensor("y", (1, 4), "f32"),
    }
    meta = {
        "input_shape": [1, 3, 6, 6],
        "input_layout": "NCHW",
        "labels": ["w", "x", "y", "z"],
        "mean": [0.5, 0.5, 0.5],
        "ir_version": 1,
    }
    return ir.Graph(["x"], ["y"], tensors, ops, meta)


@pytest.fixture
def model(tmp_path, rng):
    g = small_graph(rng)
    path = tmp_path / "model.xbin"
    xbin.write(g, path)
    return g, path


def both_reject(path, match: str) -> None:
    """`xbin.read` and `xnorinfer.load` both reject `path` with XbinError matching `match`."""
    with pytest.raises(XbinError, match=match) as e1:
        xbin.read(path)
    assert str(path) in str(e1.value)
    with pytest.raises(XbinError, match=match) as e2:
        xnorinfer.load(path, threads=1)
    assert str(path) in str(e2.value)


def rewrite_json(path, mutate) -> None:
    """Rewrite the JSON section through `mutate(doc)`, keeping every checksum valid."""
    data = path.read_bytes()
    sections = xbin.parse_container(data, str(path))
    payloads = [(k, n, data[o : o + s]) for k, n, o, s in sections]
    doc = json.loads(payloads[0][2])
    mutate(doc)
    payloads[0] = (xbin.KIND_JSON, "graph", json.dumps(doc).encode())
    path.write_bytes(xbin.assemble(payloads))


# --------------------------------------------------------------------------- round trip


def test_round_trip(model):
    g, path = model
    back = xbin.read(path)
    assert back.inputs == g.inputs and back.outputs == g.outputs
    assert back.metadata == g.metadata
    assert back.tensors == g.tensors
    assert [(o.kind, o.name, o.inputs, o.outputs, o.attrs) for o in back.ops] == [
        (o.kind, o.name, o.inputs, o.outputs, o.attrs) for o in g.ops
    ]
    for a, b in zip(g.ops, back.ops, strict=True):
        assert a.params.keys() == b.params.keys()
        for k in a.params:
            assert a.params[k].dtype == b.params[k].dtype and a.params[k].shape == b.params[k].shape
            assert a.params[k].tobytes() == b.params[k].tobytes()
    # writing what was read gives the same bytes
    again = path.with_name("again.xbin")
    xbin.write(back, again)
    assert again.read_bytes() == path.read_bytes()


def test_layout_is_aligned(model):
    _, path = model
    data = path.read_bytes()
    assert data[:8] == b"XNORBIN\0"
    assert struct.unpack_from("<I", data, 8)[0] == 1
    sections = xbin.parse_container(data, str(path))
    assert sections[0][0] == xbin.KIND_JSON
    assert all(off % 64 == 0 for _, _, off, _ in sections)
    assert len(sections) == 1 + 7  # JSON + one data section per parameter
    f = xnorinfer._core.XbinFile(str(path))
    assert [s["offset"] for s in f.sections] == [s[2] for s in sections]


def test_loaded_session_runs(model, rng):
    _, path = model
    s = xnorinfer.load(path, threads=1)
    y = s.run(rng.normal(size=(2, 3, 6, 6)).astype(np.float32))
    assert y.shape == (2, 4) and y.dtype == np.float32
    np.testing.assert_allclose(y.sum(axis=1), 1, rtol=1e-5)
    assert s.labels == ["w", "x", "y", "z"]


# --------------------------------------------------------------------------- writer validation


def test_write_is_atomic(tmp_path, rng, monkeypatch):
    g = small_graph(rng)
    path = tmp_path / "m.xbin"
    path.write_bytes(b"old contents")

    def boom(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        xbin.write(g, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.xbin"]
    assert path.read_bytes() == b"old contents"


@pytest.mark.parametrize(
    "breaker, match",
    [
        (lambda g: g.ops[2].params.__setitem__("weight", g.ops[2].params["weight"].astype(np.int64)), "uint64"),
        (lambda g: g.ops[0].params.__setitem__("weight", g.ops[0].params["weight"].astype(np.float64)), "float32"),
        (lambda g: g.ops[1].attrs.__setitem__("bogus", 1), "unexpected"),
        (lambda g: g.ops.reverse(), "before it is produced"),
        (lambda g: g.metadata.__setitem__("x", float("nan")), "non-finite"),
        (lambda g: g.ops[0].params.__setitem__("weight", np.zeros((0, 3), np.float32)), "non-empty"),
    ],
)
def test_write_rejects_invalid_graph(tmp_path, rng, breaker, match):
    g = small_graph(rng)
    breaker(g)
    with pytest.raises(XbinError, match=match):
        xbin.write(g, tmp_path / "m.xbin")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- reader rejection


def test_bad_magic(model):
    _, path = model
    data = bytearray(path.read_bytes())
    data[0:8] = b"NOTXBIN\0"
    path.write_bytes(bytes(data))
    both_reject(path, "bad magic")


def test_newer_version(model):
    _, path = model
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, 8, 7)
    struct.pack_into("<I", data, 28, zlib.crc32(bytes(data[:28])))
    path.write_bytes(bytes(data))
    both_reject(path, r"format version 7 is newer than this xnorinfer supports \(1\)")


def test_truncated(model):
    _, path = model
    data = path.read_bytes()
    for cut in (0, 10, 63, 64, 100, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:cut])
        both_reject(path, "truncated|smaller than")


def test_bad_checksum(model):
    _, path = model
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x40  # last byte of the last parameter
    path.write_bytes(bytes(data))
    both_reject(path, "checksum mismatch")


def test_missing_file(tmp_path):
    both_reject(tmp_path / "nope.xbin", "cannot")


def test_random_corruption_never_crashes(model, rng):
    _, path = model
    data = path.read_bytes()
    for _ in range(60):
        bad = bytearray(data)
        for pos in rng.integers(0, len(bad), size=int(rng.integers(1, 4))):
            bad[pos] ^= int(rng.integers(1, 256))
        path.write_bytes(bytes(bad))
        both_reject(path, ".")


def test_misaligned_and_overlapping_sections(model):
    _, path = model
    data = path.read_bytes()
    sections = xbin.parse_container(data, str(path))
    payloads = [(k, n, data[o : o + s]) for k, n, o, s in sections]
    blob = bytearray(xbin.assemble(payloads))
    # point section 2 at section 1's bytes (overlap), fixing the checksums
    entry = lambda i: xbin.HEADER_BYTES + i * xbin.ENTRY_BYTES  # noqa: E731
    k, f, off1, size1, crc1, r, name = xbin._ENTRY.unpack_from(blob, entry(1))
    xbin._ENTRY.pack_into(blob, entry(2), k, f, off1, size1, crc1, r, b"param2")
    table = bytes(blob[xbin.HEADER_BYTES : entry(len(payloads))])
    struct.pack_into("<I", blob, 24, zlib.crc32(table))
    struct.pack_into("<I", blob, 28, zlib.crc32(bytes(blob[:28])))
    path.write_bytes(bytes(blob))
    both_reject(path, "overlap")
    # misaligned offset
    xbin._ENTRY.pack_into(blob, entry(2), k, f, off1 + 8, 0, zlib.crc32(b""), r, b"param2")
    table = bytes(blob[xbin.HEADER_BYTES : entry(len(payloads))])
    struct.pack_into("<I", blob, 24, zlib.crc32(table))
    struct.pack_into("<I", blob, 28, zlib.crc32(bytes(blob[:28])))
    path.write_bytes(bytes(blob))
    both_reject(path, "aligned")


def test_oversized_param_shape(model):
    _, path = model
    rewrite_json(path, lambda d: d["ops"][0]["params"]["weight"].__setitem__("shape", [1 << 30, 1 << 30, 9, 3]))
    both_reject(path, "needs .* bytes but its section has")


def test_oversized_tensor_shape(model):
    _, path = model
    rewrite_json(path, lambda d: d["tensors"][1].__setitem__("shape", [1, 1 << 30, 1 << 30, 16]))
    with pytest.raises(XbinError, match="too large|produces"):
        xnorinfer.load(path, threads=1)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda d: d["ops"][0].__setitem__("kind", "warp_drive"), "unknown op kind"),
        (lambda d: d["ops"][2]["params"]["weight"].__setitem__("section", 99), "not a data section"),
        (lambda d: d["ops"][2]["params"]["weight"].__setitem__("dtype", "float32"), "dtype must be uint64"),
        (lambda d: d["ops"][2]["attrs"].__setitem__("in_channels", 200), "in_channels|words"),
        (lambda d: d["ops"][2]["attrs"].__setitem__("pad_mode", "mirror"), "pad_mode"),
        (lambda d: d["tensors"][2].__setitem__("shape", [1, 6, 6, 17]), "channels|recorded|produces"),
        (lambda d: d.__setitem__("ops", d["ops"][::-1]), "before it is produced"),
        (lambda d: d.__setitem__("ir_version", 99), "IR version 99 is newer"),
        (lambda d: d.pop("tensors"), "'tensors'"),
    ],
)
def test_inconsistent_graph_json(model, mutate, match):
    _, path = model
    rewrite_json(path, mutate)
    with pytest.raises(XbinError, match=match):
        xnorinfer.load(path, threads=1)


def test_invalid_json_text(model):
    _, path = model
    data = path.read_bytes()
    sections = xbin.parse_container(data, str(path))
    payloads = [(k, n, data[o : o + s]) for k, n, o, s in sections]
    payloads[0] = (xbin.KIND_JSON, "graph", b'{"format": NaN')
    path.write_bytes(xbin.assemble(payloads))
    both_reject(path, "not valid JSON")


# --------------------------------------------------------------------------- one loader


def test_cpp_loader_reads_the_ir_version_python_writes():
    """The op tables themselves are compared in tests/test_op_schema.py."""
    assert xnorinfer._core.IR_VERSION == ir.IR_VERSION


def test_read_and_load_from_bytes_match_the_file(model, rng):
    g, path = model
    data = path.read_bytes()
    assert xbin.to_bytes(g) == data
    back = xbin.read_bytes(data, "mem")
    assert [o.params.keys() for o in back.ops] == [o.params.keys() for o in g.ops]
    x = rng.normal(size=(2, 3, 6, 6)).astype(np.float32)
    want = xnorinfer.load(path, threads=1).run(x)
    got = xnorinfer.load(data, threads=2, name="mem").run(x)
    assert np.array_equal(got, want)
    with pytest.raises(XbinError, match=r"^mem: .*checksum mismatch"):
        xnorinfer.load(data[:-1] + bytes([data[-1] ^ 1]), name="mem")
    with pytest.raises(XbinError, match=r"^<bytes>: "):
        xnorinfer.load_bytes(data[:100])


@pytest.mark.parametrize(
    "text, match",
    [
        (b'{"format":"xnorinfer.xbin","format":"x"}', "duplicate key"),
        (b"\xff{}", "not valid JSON"),
        (b"[" * 100 + b"]" * 100, "nesting deeper"),
        (b'{"ir_version": 1e999}', "outside the double range"),
        (b'{"ir_version": 99999999999999999999}', "outside the 64-bit range"),
    ],
)
def test_strict_json(model, text, match):
    _, path = model
    data = path.read_bytes()
    sections = xbin.parse_container(data, str(path))
    payloads = [(k, n, data[o : o + s]) for k, n, o, s in sections]
    payloads[0] = (xbin.KIND_JSON, "graph", text)
    path.write_bytes(xbin.assemble(payloads))
    both_reject(path, match)
