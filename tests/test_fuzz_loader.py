"""Mutation fuzzing of the .xbin loader: every input loads and runs, or is refused cleanly.

Mutations are resealed (section CRCs, table and header checksums, file size recomputed) so
that they get past the checksums and reach the JSON, shape and parameter validation of both
readers and the C++ graph builder. A crash or hang fails the whole run; an exception other than
ValueError (XbinError is one) or TypeError fails the test. Seeds: a small hand-built graph and
the shipped default model. The iteration count is bounded for CI; a longer run:
`XNORINFER_FUZZ_ITERATIONS=100000 pytest tests/test_fuzz_loader.py`.
"""

from __future__ import annotations

import json
import os
import random
import struct
from pathlib import Path

import numpy as np
import pytest
from test_runtime import Builder

import xnorinfer
from xnorinfer import xbin

ITERATIONS = int(os.environ.get("XNORINFER_FUZZ_ITERATIONS", "4000"))
DEFAULT = Path(xnorinfer.__file__).resolve().parent / "assets" / "default.xbin"


def sections(data: bytes) -> list[list[int]]:
    count = struct.unpack_from("<I", data, 12)[0]
    return [list(struct.unpack_from("<IIQQI", data, 64 + 64 * i)) for i in range(count)]


def mutate_json(data: bytes, rng: random.Random) -> bytes:
    kind, _, off, size, _ = sections(data)[0]
    doc = json.loads(data[off : off + size])
    interesting = [0, -1, 1, 2**31, 2**40, -(2**31), 3.5, "x", None, [], {}, [2**20, 2**20]]
    target = rng.choice(["tensor", "op_attr", "param", "metadata", "drop"])
    if target == "tensor" and doc["tensors"]:
        t = rng.choice(doc["tensors"])
        if t["shape"]:
            t["shape"][rng.randrange(len(t["shape"]))] = rng.choice(interesting)
    elif target == "op_attr" and doc["ops"]:
        op = rng.choice(doc["ops"])
        if op["attrs"]:
            op["attrs"][rng.choice(sorted(op["attrs"]))] = rng.choice(interesting)
    elif target == "param" and doc["ops"]:
        op = rng.choice([o for o in doc["ops"] if o["params"]] or doc["ops"])
        if op["params"]:
            p = op["params"][rng.choice(sorted(op["params"]))]
            field = rng.choice(["shape", "section", "dtype"])
            p[field] = rng.choice(interesting) if field != "shape" else [rng.choice(interesting)]
    elif target == "metadata":
        doc["metadata"]["input_shape"] = rng.choice([[1, 1, 2**20, 2**20], [0, 1, 8, 8], "x", [1, -3, 8, 8]])
    else:
        victim = rng.choice(doc["ops"])
        victim.pop(rng.choice(["inputs", "outputs", "attrs", "params", "kind"]), None)
    text = json.dumps(doc).encode()
    body = bytearray(data)
    body[off : off + size] = b""  # rebuild: JSON is section 0; shift later sections by the size change
    delta = ((len(text) + 63) // 64 * 64) - ((size + 63) // 64 * 64)
    new = bytearray(data[:off]) + text + b"\0" * ((-len(text)) % 64) + bytearray(data[off + (size + 63) // 64 * 64 :])
    count = struct.unpack_from("<I", new, 12)[0]
    struct.pack_into("<Q", new, 64 + 16, len(text))
    for i in range(1, count):
        o = struct.unpack_from("<Q", new, 64 + 64 * i + 8)[0]
        struct.pack_into("<Q", new, 64 + 64 * i + 8, o + delta)
    return xbin.reseal(new)


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    how = rng.choice(["flip", "overwrite", "table", "truncate"])
    if how == "flip":
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
    elif how == "overwrite":
        i = rng.randrange(len(buf))
        buf[i : i + 8] = struct.pack("<Q", rng.choice([0, 2**63, 2**64 - 1, len(buf), 64, 2**40]))[: len(buf) - i]
    elif how == "table":
        count = struct.unpack_from("<I", buf, 12)[0]
        i = rng.randrange(count)
        field = rng.choice([0, 8, 16])
        fmt = "<I" if field == 0 else "<Q"
        struct.pack_into(fmt, buf, 64 + 64 * i + field, rng.choice([0, 1, 2, 3, 64, 2**31, len(buf), len(buf) - 64]))
        if rng.random() < 0.3:
            struct.pack_into("<I", buf, 12, rng.choice([0, 1, count + 1, 2**31]))
    else:
        del buf[rng.randrange(64, len(buf)) :]
    return xbin.reseal(buf) if rng.random() < 0.8 else bytes(buf)


def _seed_model(tmp_path: Path) -> bytes:
    b = Builder(np.random.default_rng(7), (1, 2, 6, 6))
    t = b.sign(b.int_conv("x", 8))
    t = b.add("bmaxpool2d", [b.bconv(t, 40, output="bits")], bits=True, kernel=[2, 2], stride=[2, 2], padding=[0, 0])
    t = b.add("flatten", [b.bconv(t, 8, pad=0, output="float")])
    b.g.outputs = [b.add("softmax", [b.linear(t, 4)])]
    path = tmp_path / "seed.xbin"
    xbin.write(b.g, path)
    return path.read_bytes()


@pytest.mark.parametrize("seed_name", ["small", "default"])
def test_mutated_files_load_and_run_or_are_refused(tmp_path, seed_name):
    data = _seed_model(tmp_path) if seed_name == "small" else DEFAULT.read_bytes()
    rng = random.Random(1234)
    path = tmp_path / "fuzz.xbin"
    iterations = ITERATIONS if seed_name == "small" else max(1, ITERATIONS // 6)
    loaded = refused = 0
    for _ in range(iterations):
        mutant = mutate_json(data, rng) if rng.random() < 0.5 else mutate_bytes(data, rng)
        path.write_bytes(mutant)
        try:
            session = xnorinfer.load(path, threads=1)
            n, c, h, w = session.input_shape
            session.run(np.zeros((1, c, h, w), np.float32))
            loaded += 1
        except (ValueError, TypeError) as err:
            assert str(err), "an error without a message"
            refused += 1
    assert loaded + refused == iterations and refused > 0
