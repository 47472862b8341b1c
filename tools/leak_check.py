#!/usr/bin/env python
"""LeakSanitizer check of load + run + failed loads, run by tools/sanitize.sh.

Needs the AddressSanitizer runtime preloaded (tools/sanitize.sh does that) and PYTHONMALLOC=malloc
so that LeakSanitizer can follow pointers held by Python objects. The check runs while the
interpreter is alive (``__lsan_do_recoverable_leak_check``): at exit CPython keeps memory on
purpose, which LeakSanitizer would report as leaks that are not ours.

    python tools/leak_check.py [--rounds N] [--self-test] [MODEL.xbin ...]   (default: the shipped model)

Each round loads every model, runs a batch of 4 on 2 threads, profiles one run, and tries to
load a truncated and a bit-flipped copy (the error paths). Exit 0: no leak; 1: leaks (the
report is on stderr); 2: not running under the sanitizer. --self-test drops a malloc'd block on
purpose instead and exits 0 only if LeakSanitizer reports it (the set-up can see leaks at all).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import itertools
import sys
import tempfile
from pathlib import Path

import numpy as np

import xnorinfer
from xnorinfer.xbin import XbinError

DEFAULT = Path(xnorinfer.__file__).resolve().parent / "assets" / "default.xbin"


def damaged_copies(model: Path, folder: Path) -> list[Path]:
    data = model.read_bytes()
    truncated = folder / f"{model.stem}-truncated.xbin"
    truncated.write_bytes(data[: len(data) // 2])
    flipped = folder / f"{model.stem}-flipped.xbin"
    flipped.write_bytes(data[:-100] + bytes([data[-100] ^ 0x10]) + data[-99:])
    return [truncated, flipped]


def rounds(count: int, models: list[Path], inputs: list[np.ndarray], broken: list[Path]) -> None:
    # The loop runs in its own frame, gone before the leak check: CPython 3.11 keeps frame locals
    # in mmap'd chunks that LeakSanitizer does not scan, so an int held there looks leaked.
    for _ in itertools.repeat(None, count):
        for path, x in zip(models, inputs, strict=True):
            session = xnorinfer.load(path, threads=2)
            session.run(x)
            session.profile(x, runs=1)
        for path in broken:
            try:
                xnorinfer.load(path)
            except XbinError:
                pass
            else:
                raise AssertionError(f"{path}: a damaged copy loaded")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", type=Path, default=[DEFAULT])
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="drop one malloc'd block on purpose and succeed only if LeakSanitizer reports it",
    )
    args = parser.parse_args()

    process = ctypes.CDLL(None)
    try:
        leak_check = process.__lsan_do_recoverable_leak_check
    except AttributeError:
        print("leak_check: LeakSanitizer is not loaded; run tools/sanitize.sh", file=sys.stderr)
        return 2
    leak_check.restype = ctypes.c_int

    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((4, *xnorinfer.load(m).input_shape[1:])).astype(np.float32) for m in args.models]
    with tempfile.TemporaryDirectory() as tmp:
        broken = [p for m in args.models for p in damaged_copies(m, Path(tmp))]
        rounds(1, args.models, inputs, broken)  # first-use allocations (caches, thread start-up)
        gc.collect()
        if leak_check():
            print("leak_check: leaks before the first round (the environment, not the rounds)", file=sys.stderr)
            return 1
        if args.self_test:
            process.malloc.restype = ctypes.c_void_p
            process.malloc(4096)  # the only pointer to it is dropped here
            if leak_check():
                print("leak_check: self-test passed: the dropped 4096-byte block was reported")
                return 0
            print("leak_check: self-test failed: a dropped block was not reported", file=sys.stderr)
            return 1
        rounds(args.rounds, args.models, inputs, broken)
        gc.collect()
        if leak_check():
            print(f"leak_check: leaks after {args.rounds} rounds (report above)", file=sys.stderr)
            return 1
    print(
        f"leak_check: no leaks after {args.rounds} rounds of load + run + profile + 2 damaged loads "
        f"for {len(args.models)} model(s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
