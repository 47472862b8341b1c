#!/usr/bin/env python
"""libFuzzer (atheris) target for the .xbin loader: every input loads and runs, or is refused.

    python tools/fuzz_xbin.py CORPUS_DIR [libFuzzer flags, e.g. -atheris_runs=20000]

The custom mutator lets libFuzzer mutate the bytes, then usually reseals the file (section
CRCs, table and header checksums, file size) so that mutants get past the checksums into the
JSON, shape and parameter validation. Any exception other than ValueError/TypeError, a crash or
a hang is a finding: libFuzzer writes the input to crash-*/timeout-* in the working directory;
check it in under tests/fuzz_regressions/ with a test.
"""

from __future__ import annotations

import os
import random
import struct
import sys
import tempfile
import zlib

import atheris

with atheris.instrument_imports():
    import numpy as np

    import xnorinfer

_TMP = tempfile.NamedTemporaryFile(suffix=".xbin", delete=False)
_TMP.close()


def reseal(data: bytes) -> bytes:
    buf = bytearray(data)
    if len(buf) < 64:
        return data
    count = struct.unpack_from("<I", buf, 12)[0]
    table_end = 64 + 64 * count
    if count < 4096 and table_end <= len(buf):
        for i in range(count):
            _, _, off, size, _ = struct.unpack_from("<IIQQI", buf, 64 + 64 * i)
            if off + size <= len(buf):
                struct.pack_into("<I", buf, 64 + 64 * i + 24, zlib.crc32(bytes(buf[off : off + size])))
        struct.pack_into("<I", buf, 24, zlib.crc32(bytes(buf[64:table_end])))
    struct.pack_into("<Q", buf, 16, len(buf))
    struct.pack_into("<I", buf, 28, zlib.crc32(bytes(buf[:28])))
    return bytes(buf)


def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
    mutated = atheris.Mutate(data, max(len(data), max_size))
    return reseal(mutated) if random.Random(seed).random() < 0.8 else mutated


def test_one_input(data: bytes) -> None:
    with open(_TMP.name, "wb") as f:
        f.write(data)
    try:
        session = xnorinfer.load(_TMP.name, threads=1)
        n, c, h, w = session.input_shape
        session.run(np.zeros((1, c, h, w), np.float32))
    except (ValueError, TypeError):
        pass


def main() -> None:
    try:
        atheris.Setup(sys.argv, test_one_input, custom_mutator=custom_mutator)
        atheris.Fuzz()
    finally:
        os.unlink(_TMP.name)


if __name__ == "__main__":
    main()
