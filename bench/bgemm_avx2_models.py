"""Whole-model A/B of two xnorinfer builds, interleaved: wall time and time per op kind.

Each round runs one child process per build (its own Python, so its own extension), one
after the other, so that both see the same machine load; the report gives the median over
the rounds of each child's median. 1 thread, batch 1, a fixed random 224x224 input.

    .venv/bin/python bench/bgemm_avx2_models.py MODEL.xbin [MODEL.xbin ...] \
        --baseline /work/main/.venv/bin/python --rounds 5
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import subprocess
import sys
import time


def child(model: str, runs: int) -> dict[str, object]:
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
    p.add_argument("models", nargs="*")
    p.add_argument("--baseline", required=True, help="python of the baseline build")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--runs", type=int, default=15)
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.runs)))
        return
    builds = {"baseline": args.baseline, "this": sys.executable}
    for model in args.models:
        got: dict[str, list[dict]] = {b: [] for b in builds}
        for _ in range(args.rounds):
            for name, python in builds.items():
                out = subprocess.run(
                    [python, __file__, "--child", model, "--runs", str(args.runs)],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
                got[name].append(json.loads(out.strip().splitlines()[-1]))
        print(f"{model}: {args.rounds} interleaved rounds of {args.runs} runs, 1 thread")
        for name in builds:
            print(f"  {name}: {got[name][0]['at']} ({got[name][0]['isa']})")
        med = {b: statistics.median(r["wall_ms"] for r in got[b]) for b in builds}
        ratio = med["baseline"] / med["this"]
        print(f"  wall ms: baseline {med['baseline']:.2f}  this {med['this']:.2f}  ratio {ratio:.2f}x")
        kinds = sorted(got["this"][0]["kinds"], key=lambda k: -got["this"][0]["kinds"][k])
        for k in kinds:
            b = statistics.median(r["kinds"].get(k, 0.0) for r in got["baseline"])
            t = statistics.median(r["kinds"].get(k, 0.0) for r in got["this"])
            print(f"  {k:16s} baseline {b:7.3f} ms  this {t:7.3f} ms  ratio {b / max(t, 1e-9):5.2f}x")


if __name__ == "__main__":
    main()
