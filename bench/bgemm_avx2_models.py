"""Whole-model A/B of two xnorinfer builds, interleaved: wall time and time per op kind.

Each round runs one child process per build (its own Python, so its own extension), one
after the other, so that both see the same machine load; the report gives the median over
the rounds of each child's median. 1 thread, batch 1, a fixed random 224x224 input.

    .venv/bin/python bench/bgemm_avx2_models.py MODEL.xbin [MODEL.xbin ...] \
        --baseline /work/main/.venv/bin/python --rounds 5

With --baseline-path / --this-path a build is a staged copy of the package (a folder holding
xnorinfer/ with its _core) put first on PYTHONPATH, for a Python without an editable install.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import time

# The `layers` pseudo-model: Bi-Real-18's binary 3x3 convs (stride 1, zero padding 1) and a 1x1,
# as (in_channels, height, width, out_channels, kernel), each with float and bit outputs.
LAYERS = [(64, 56, 56, 64, 3), (128, 28, 28, 128, 3), (256, 14, 14, 256, 3), (512, 7, 7, 512, 3), (256, 14, 14, 512, 1)]


def layers_child(runs: int) -> dict[str, object]:
    import numpy as np

    import xnorinfer
    from xnorinfer import _core

    rng = np.random.default_rng(0)

    def pm1(shape: tuple[int, ...]) -> np.ndarray:
        return np.where(rng.random(shape) < 0.5, -1.0, 1.0).astype(np.float32)

    kinds: dict[str, float] = {}
    for c, h, w, o, k in LAYERS:
        sign = _core.PreparedOp("sign", {}, {}, [c])
        xp = sign.run([pm1((h * w, c))]).reshape(1, h, w, -1)
        wp = sign.run([pm1((o * k * k, c))]).reshape(o, k, k, -1)
        for output in ("float", "bits"):
            pad = k // 2
            attrs = {"stride": [1, 1], "padding": [pad, pad], "pad_mode": "zero", "output": output, "in_channels": c}
            if output == "bits":
                params = {"weight": wp, "threshold": rng.integers(-9, 9, o).astype(np.int32)}
            else:
                params = {
                    "weight": wp,
                    "multiplier": rng.random(o).astype(np.float32),
                    "bias": rng.random(o).astype(np.float32),
                }
            op = _core.PreparedOp("bconv2d", attrs, params, [c])
            out = op.run([xp])
            for _ in range(3):
                op.run([xp], out=out)
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                op.run([xp], out=out)
                times.append((time.perf_counter() - t0) * 1e3)
            kinds[f"{c}x{h}x{w}-{o} {k}x{k} {output}"] = statistics.median(times)
    return {"wall_ms": sum(kinds.values()), "kinds": kinds, "isa": _core.default_isa(), "at": xnorinfer.__file__}


def child(model: str, runs: int) -> dict[str, object]:
    if model == "layers":
        return layers_child(runs)
    import numpy as np

    import xnorinfer
    from xnorinfer import _core

    session = xnorinfer.load(model, threads=1)
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    for _ in range(3):
        session.run(x)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        session.run(x)
        times.append((time.perf_counter() - t0) * 1e3)
    kinds: dict[str, float] = collections.defaultdict(float)
    for op in session.profile(x, runs=runs):
        kinds[op["kind"]] += op["ms_per_run"]
    return {
        "wall_ms": statistics.median(times),
        "kinds": dict(kinds),
        "isa": _core.default_isa(),
        "at": xnorinfer.__file__,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="*", help="model .xbin files, or `layers` (Bi-Real-18's binary conv shapes)")
    p.add_argument("--baseline", help="python of the baseline build (required)")
    p.add_argument("--baseline-path", help="PYTHONPATH entry of the baseline build")
    p.add_argument("--this-python", default=sys.executable, help="python of the build under test")
    p.add_argument("--this-path", help="PYTHONPATH entry of the build under test")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--runs", type=int, default=15)
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.runs)))
        return
    if not args.baseline:
        p.error("--baseline is required")
    builds = {"baseline": (args.baseline, args.baseline_path), "this": (args.this_python, args.this_path)}
    for model in args.models:
        got: dict[str, list[dict]] = {b: [] for b in builds}
        for _ in range(args.rounds):
            for name, (python, path) in builds.items():
                env = dict(os.environ)
                if path:
                    env["PYTHONPATH"] = path + os.pathsep + env.get("PYTHONPATH", "")
                out = subprocess.run(
                    [python, os.path.abspath(__file__), "--child", model, "--runs", str(args.runs)],
                    check=True,
                    capture_output=True,
                    text=True,
                    env=env,
                    cwd="/",  # not the checkout: its xnorinfer/ would shadow a staged build
                ).stdout
                got[name].append(json.loads(out.strip().splitlines()[-1]))
        print(f"{model}: {args.rounds} interleaved rounds of {args.runs} runs, 1 thread")
        for name in builds:
            print(f"  {name}: {got[name][0]['at']} ({got[name][0]['isa']})")
        med = {b: statistics.median(r["wall_ms"] for r in got[b]) for b in builds}
        ratio = med["baseline"] / med["this"]
        label = "sum of layers" if model == "layers" else "wall"
        print(f"  {label} ms: baseline {med['baseline']:.2f}  this {med['this']:.2f}  ratio {ratio:.2f}x")
        kinds = list(got["this"][0]["kinds"])
        if model != "layers":
            kinds.sort(key=lambda k: -got["this"][0]["kinds"][k])
        for k in kinds:
            b = statistics.median(r["kinds"].get(k, 0.0) for r in got["baseline"])
            t = statistics.median(r["kinds"].get(k, 0.0) for r in got["this"])
            print(f"  {k:28s} baseline {b:7.3f} ms  this {t:7.3f} ms  ratio {b / max(t, 1e-9):5.2f}x")


if __name__ == "__main__":
    main()
