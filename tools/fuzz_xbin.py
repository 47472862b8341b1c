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

import random
import sys

import atheris

with atheris.instrument_imports():
    import numpy as np

    import xnorinfer
    from xnorinfer import xbin


def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
    mutated = atheris.Mutate(data, max(len(data), max_size))
    return xbin.reseal(mutated) if random.Random(seed).random() < 0.8 else mutated


def test_one_input(data: bytes) -> None:
    try:
        session = xnorinfer.load(data, threads=1)  # the same C++ loader as a path, no temp file
        n, c, h, w = session.input_shape
        session.run(np.zeros((1, c, h, w), np.float32))
    except (ValueError, TypeError):
        pass


def main() -> None:
    atheris.Setup(sys.argv, test_one_input, custom_mutator=custom_mutator)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
