"""Time the engine's sign op (float activations -> packed bits) and unpack, per ISA path.

Usage:  python bench/sign_speed.py [--runs 200]

Builds one-op graphs (sign of an NHWC float tensor against per-channel thresholds; unpack of
its bits) for Bi-Real-18's activation shapes, runs them with `Session.profile` on one thread,
and prints the median op time on each available ISA path next to the time to read the float
tensor once (numpy sum), the memory-speed floor this op should approach.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import xnorinfer
from xnorinfer import _core, ir, xbin

SHAPES = [(64, 56, 56), (128, 28, 28), (256, 14, 14), (512, 7, 7)]


def _graph(c: int, h: int, w: int) -> ir.Graph:
    rng = np.random.default_rng(0)
    tensors = {
        "x": ir.Tensor("x", (1, h, w, c), "f32"),
        "s": ir.Tensor("s", (1, h, w, c), "bits"),
        "y": ir.Tensor("y", (1, h, w, c), "f32"),
    }
    ops = [
        ir.Op(
            "sign", "sign", ["x"], ["s"], {"sign_zero": "+1"}, {"threshold": rng.normal(0, 0.1, c).astype(np.float32)}
        ),
        ir.Op("unpack", "unpack", ["s"], ["y"]),
    ]
    return ir.Graph(inputs=["x"], outputs=["y"], tensors=tensors, ops=ops, metadata={"input_shape": [1, c, h, w]})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    print(f"{'C x H x W':<16}{'isa':<8}{'sign us':>10}{'unpack us':>11}{'read us':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for c, h, w in SHAPES:
            path = Path(tmp) / "sign.xbin"
            xbin.write(_graph(c, h, w), path)
            session = xnorinfer.load(path, threads=1)
            x = np.random.default_rng(1).standard_normal((1, c, h, w)).astype(np.float32)
            nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
            reads = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                nhwc.sum()
                reads.append(time.perf_counter() - t0)
            for isa in _core.available_isas():
                rows = {r["kind"]: r["ms_per_run"] * 1e3 for r in session.profile(x, runs=args.runs, isa=isa)}
                print(
                    f"{f'{c} x {h} x {w}':<16}{isa:<8}{rows['sign']:>10.1f}{rows['unpack']:>11.1f}"
                    f"{np.median(reads) * 1e6:>10.1f}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
