"""Binary convs with short reductions (3x3 over 16-32 channels, 1x1 over 32-128), against a baseline build.

    python bench/short_reductions.py [--baseline DIR] [--rounds 5] [--runs 30]

These layers spend as much in their output stage as in their popcounts (tap grouping and the
AVX2 direct output stage, docs/kernels.md, target them). Times each shape's bconv2d (batch 1,
'same' zero padding, float output, one thread) in this build
and, with --baseline DIR (a copy of the xnorinfer package whose _core extension was built from
another commit, as bench/thread_scaling.py takes it), in that build, each in its own process,
rounds interleaved; prints the median over rounds of the best of --runs calls, the words each
output pixel reduces over (PreparedOp.bgemm_layout: fewer with tap grouping) and the ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

# (in channels, H = W, out channels, kernel)
SHAPES = [
    (32, 112, 32, 3),
    (32, 56, 64, 3),
    (16, 32, 16, 3),
    (32, 16, 32, 3),
    (16, 28, 16, 3),
    (32, 112, 32, 1),
    (64, 56, 64, 1),
    (128, 28, 128, 1),
    (512, 14, 512, 1),
]

CHILD = r"""
import json, sys, time
core_dir = sys.argv[1]
if core_dir:
    sys.meta_path[:] = [f for f in sys.meta_path if "Redirecting" not in type(f).__name__]
    sys.path.insert(0, core_dir)
import numpy as np
from xnorinfer import _core
rng = np.random.default_rng(0)
out = {}
for cin, h, cout, k in json.loads(sys.argv[2]):
    sign = _core.PreparedOp("sign", {}, {}, [cin])
    pm1 = lambda s: np.where(rng.random(s) < 0.5, -1.0, 1.0).astype(np.float32)
    xp = sign.run([pm1((h * h, cin))]).reshape(1, h, h, -1)
    wp = sign.run([pm1((cout * k * k, cin))]).reshape(cout, k, k, -1)
    pad = k // 2
    attrs = {"stride": [1, 1], "padding": [pad, pad], "pad_mode": "zero", "output": "float", "in_channels": cin}
    params = {"weight": wp, "multiplier": np.ones(cout, np.float32), "bias": np.zeros(cout, np.float32)}
    op = _core.PreparedOp("bconv2d", attrs, params, [cin])
    y = op.run([xp])
    best = float("inf")
    for _ in range(int(sys.argv[3])):
        t0 = time.perf_counter()
        op.run([xp], out=y)
        best = min(best, time.perf_counter() - t0)
    layout = getattr(op, "bgemm_layout", None)
    out[f"{k}x{k} {cin}x{h}x{h}-{cout}"] = [best * 1e3, layout["k_words"] if layout else k * k * ((cin + 63) // 64)]
print(json.dumps(out))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default=None)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    builds = {"this": ""} | ({"baseline": args.baseline} if args.baseline else {})
    times: dict[str, dict[str, list[float]]] = {b: {} for b in builds}
    words: dict[str, dict[str, int]] = {b: {} for b in builds}
    for _ in range(args.rounds):
        for name, core in builds.items():
            cmd = [sys.executable, "-c", CHILD, core, json.dumps(SHAPES), str(args.runs)]
            res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            for shape, (ms, k) in res.items():
                times[name].setdefault(shape, []).append(ms)
                words[name][shape] = k
    print("| kernel, shape (in x H x W - out) | build | words per pixel | ms | baseline / this |")
    print("|---|---|---|---|---|")
    for shape in times["this"]:
        this = statistics.median(times["this"][shape])
        for name in builds:
            ms = statistics.median(times[name][shape])
            ratio = f"{ms / this:.2f}x" if name == "baseline" else ""
            print(f"| {shape} | {name} | {words[name][shape]} | {ms:.3f} | {ratio} |")


if __name__ == "__main__":
    main()
