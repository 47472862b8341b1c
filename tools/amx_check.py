"""What a session on an AMX machine runs first: is the AMX binary GEMM usable, exact and faster?

Usage:  python tools/amx_check.py [--threads 1] [--repeats 20] [--engine amx|amx-emulated]

1. Detection: the kernel's CPU flags (amx_tile, amx_int8) and the engine's own probe (CPUID,
   XCR0, Linux's permission for the tile data), by running one small layer with XNORINFER_BGEMM.
2. Exactness: every shape class of tests/test_amx.py (kernels 1x1/3x3/5x5, strides 1/2, the three
   pad modes, int32/float/bit output, 1 and 2 threads) on the engine vs the popcount kernels,
   byte for byte.
3. Speed: each binary 3x3 convolution shape of Bi-Real-18 at 224x224 (batch 1, float output, as
   before its BN + shortcut), the popcount kernel, the engine and the per-layer measured choice
   (XNORINFER_BGEMM=auto, or auto-emulated; its first, measuring run untimed) timed interleaved in
   one run; medians and their ratio. auto should track the faster of the two on every layer.
   Ratios only: absolute times depend on the machine's load.

--engine amx-emulated runs the same steps on the software tile unit (a dry run of this script on
a machine without AMX; its timings mean nothing). Exit status 1 when the engine is unusable or
any result differs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from xnorinfer import _core

ROOT = Path(__file__).resolve().parents[1]

# Bi-Real-18's binary 3x3 convolutions at 224: (name, in_channels, in_h, in_w, out_channels, stride).
BIREAL18_LAYERS = [
    ("layer1 3x3 s1", 64, 56, 56, 64, 1),
    ("layer2.0 3x3 s2", 64, 56, 56, 128, 2),
    ("layer2 3x3 s1", 128, 28, 28, 128, 1),
    ("layer3.0 3x3 s2", 128, 28, 28, 256, 2),
    ("layer3 3x3 s1", 256, 14, 14, 256, 1),
    ("layer4.0 3x3 s2", 256, 14, 14, 512, 2),
    ("layer4 3x3 s1", 512, 7, 7, 512, 1),
]


def _set_engine(name: str) -> None:
    os.environ["XNORINFER_BGEMM"] = name


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _layer(cin: int, h: int, w: int, cout: int, stride: int, rng: np.random.Generator):
    """A PreparedOp of the layer (float output), its packed input and a preallocated output."""
    sign = _core.PreparedOp("sign", {}, {}, [cin])
    pm1 = lambda shape: np.where(rng.random(shape) < 0.5, -1.0, 1.0).astype(np.float32)  # noqa: E731
    xp = sign.run([pm1((h * w, cin))]).reshape(1, h, w, -1)
    wp = sign.run([pm1((cout * 9, cin))]).reshape(cout, 3, 3, -1)
    attrs = {"stride": [stride, stride], "padding": [1, 1], "pad_mode": "zero", "output": "float", "in_channels": cin}
    params = {
        "weight": wp,
        "multiplier": rng.standard_normal(cout).astype(np.float32),
        "bias": rng.standard_normal(cout).astype(np.float32),
    }
    op = _core.PreparedOp("bconv2d", attrs, params, [cin])
    _set_engine("popcount")
    return op, xp, op.run([xp])


def detect(engine: str) -> bool:
    flags = _cpu_flags()
    print(f"CPU flags: amx_tile={'amx_tile' in flags} amx_int8={'amx_int8' in flags}")
    op, xp, _ = _layer(64, 4, 4, 32, 1, np.random.default_rng(0))
    _set_engine(engine)
    try:
        op.run([xp])
    except RuntimeError as e:
        print(f"engine {engine}: NOT usable: {e}")
        return False
    print(f"engine {engine}: usable")
    return True


def exactness(engine: str) -> int:
    sys.path.insert(0, str(ROOT / "tests"))
    import test_amx as T  # the test suite's shape classes and references

    rng = np.random.default_rng(14)
    pools = [None, _core.ThreadPool(2)]
    checked = bad = 0
    for case in T.CASES:
        for pad_mode in T.PAD_MODES:
            for output in T.OUTPUTS:
                op, xp, expected = T._op(case, pad_mode, output, rng)
                _set_engine("popcount")
                popcount = op.run(xp)
                _set_engine(engine)
                for pool in pools:
                    got = op.run(xp, pool=pool)
                    checked += 1
                    if got.tobytes() != popcount.tobytes() or got.tobytes() != expected.tobytes():
                        bad += 1
                        print(f"DIFFERS: {case} pad_mode={pad_mode} output={output} pool={pool}")
    print(f"exactness: {checked - bad}/{checked} runs give the popcount kernels' bytes")
    return bad


def speed(engine: str, threads: int, repeats: int) -> int:
    pool = None if threads == 1 else _core.ThreadPool(threads)
    rng = np.random.default_rng(18)
    print(f"\nBi-Real-18 binary 3x3 convs, batch 1, float output, {threads} thread(s), median of {repeats} interleaved")
    auto = "auto" if engine == "amx" else "auto-emulated"
    print(f"| layer | input | out ch | popcount ms | {engine} ms | popcount / {engine} | {auto} ms | same bytes |")
    print("|---|---|---|---|---|---|---|---|")
    bad = 0
    for name, cin, h, w, cout, stride in BIREAL18_LAYERS:
        op, xp, reference = _layer(cin, h, w, cout, stride, rng)
        out = np.empty_like(reference)
        same = True
        for untimed in (engine, auto):  # builds the layer's B tiles; auto measures its choice
            _set_engine(untimed)
            same = same and op.run([xp], pool=pool).tobytes() == reference.tobytes()
        times: dict[str, list[float]] = {"popcount": [], engine: [], auto: []}
        for _ in range(repeats):
            for which in times:
                _set_engine(which)
                t0 = time.perf_counter()
                op.run([xp], out=out, pool=pool)
                times[which].append(time.perf_counter() - t0)
                same = same and out.tobytes() == reference.tobytes()
        p, a, c = (statistics.median(times[k]) * 1e3 for k in ("popcount", engine, auto))
        bad += not same
        print(f"| {name} | {cin}x{h}x{w} | {cout} | {p:.3f} | {a:.3f} | {p / a:.2f}x | {c:.3f} | {same} |")
    return bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", choices=["amx", "amx-emulated"], default="amx")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args(argv)
    try:
        if not detect(args.engine):
            return 1
        bad = exactness(args.engine)
        bad += speed(args.engine, args.threads, args.repeats)
    finally:
        os.environ.pop("XNORINFER_BGEMM", None)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
