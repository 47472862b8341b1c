"""Whole-model 1-thread / 2-thread scaling, optionally against a baseline build, in one run.

Each round runs every build in its own process (the builds cannot share one), and each process
times 1 and 2 threads interleaved in 0.25 s bursts, so a change of machine load hits both alike.
A burst counts ("kept") only when the other processes on the machine used under 0.15 of a core
meanwhile (/proc/stat busy time minus this process's CPU time): on a shared machine the figures
come from its quiet moments, and the busy bursts are shown apart.

    python bench/thread_scaling.py /tmp/ttcache/bireal18.xbin /tmp/ttcache/reactnet_a.xbin \
        --baseline /tmp/base --rounds 5 [--bursts 4] [--per-op]

--baseline DIR: a copy of the xnorinfer package directory whose _core extension was built from the
baseline commit (``cp -r xnorinfer DIR/ && cp .venv/.../xnorinfer/_core*.so DIR/xnorinfer/``);
--build NAME=DIR: more such copies, timed in the same rounds.
--per-op: also print, per op, the 1-thread and 2-thread time (Session.profile) of the last build.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

_CHILD = r"""
import json, os, sys, time
core_dir = sys.argv[1]
if core_dir:
    sys.meta_path[:] = [f for f in sys.meta_path if "Redirecting" not in type(f).__name__]
    sys.path.insert(0, core_dir)
import numpy as np
import xnorinfer
models, bursts, per_op = json.loads(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
tick = os.sysconf("SC_CLK_TCK")

def busy():  # seconds of CPU time all processes used (every core), and this process's own
    with open("/proc/stat") as f:
        v = [int(t) for t in f.readline().split()[1:]]
    t = os.times()
    return (sum(v) - v[3] - v[4]) / tick, t.user + t.system

out = {"core": xnorinfer.__file__}
for path in models:
    sessions = {t: xnorinfer.load(path, threads=t) for t in (1, 2)}
    x = np.random.default_rng(0).standard_normal((1, *sessions[1].input_shape[1:])).astype(np.float32)
    for s in sessions.values():
        for _ in range(5):
            s.run(x)
    kept, other = {1: [], 2: []}, {1: [], 2: []}
    for _ in range(bursts):
        for t, s in sessions.items():
            ts = []
            b0, o0 = busy()
            w0 = time.perf_counter()
            while time.perf_counter() - w0 < 0.25:
                t0 = time.perf_counter()
                s.run(x)
                ts.append((time.perf_counter() - t0) * 1e3)
            b1, o1 = busy()
            foreign = max(0.0, (b1 - b0) - (o1 - o0)) / (time.perf_counter() - w0)  # cores used by others
            (kept if foreign < 0.15 else other)[t].append(sorted(ts)[len(ts) // 2])
    entry = {"kept": kept, "other": other}
    if per_op:
        prof = {t: s.profile(x, runs=20) for t, s in sessions.items()}
        entry["ops"] = [
            [a["name"], a["kind"], a["ms_per_run"], b["ms_per_run"]] for a, b in zip(prof[1], prof[2])
        ]
    out[path] = entry
print(json.dumps(out))
"""


def _median(v: list[float]) -> float:
    return statistics.median(v) if v else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--baseline", type=Path, default=None, help="directory holding a baseline xnorinfer package")
    ap.add_argument(
        "--build", action="append", default=[], metavar="NAME=DIR", help="another build to time (repeatable)"
    )
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bursts", type=int, default=4, help="0.25 s bursts per thread count per round and model")
    ap.add_argument("--per-op", action="store_true")
    args = ap.parse_args()
    builds = ([("baseline", str(args.baseline))] if args.baseline else []) + [("this", "")]
    builds += [(spec.split("=", 1)[0], spec.split("=", 1)[1]) for spec in args.build]
    models = [str(m) for m in args.models]
    kept: dict[tuple[str, str, int], list[float]] = {}
    other: dict[tuple[str, str, int], list[float]] = {}
    last: dict[str, dict] = {}
    for _ in range(args.rounds):
        for name, core in builds:
            per_op = "1" if args.per_op and name == "this" else "0"
            cmd = [sys.executable, "-c", _CHILD, core, json.dumps(models), str(args.bursts), per_op]
            res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            for m in models:
                for t in (1, 2):
                    kept.setdefault((name, m, t), []).extend(res[m]["kept"][str(t)])
                    other.setdefault((name, m, t), []).extend(res[m]["other"][str(t)])
                if name == "this":
                    last[m] = res[m]
    print(f"{args.rounds} rounds x {args.bursts} bursts of 0.25 s per thread count; medians of the burst medians")
    print("kept: bursts where other processes used < 0.15 of a core; load average now:", os.getloadavg())
    print(f"{'model':14s} {'build':9s} {'1 thr ms':>9s} {'2 thr ms':>9s} {'ratio':>6s} {'kept':>6s} | busy bursts")
    for m in models:
        for name, _ in builds:
            k1, k2 = kept[(name, m, 1)], kept[(name, m, 2)]
            o1, o2 = other[(name, m, 1)], other[(name, m, 2)]
            print(
                f"{Path(m).stem:14s} {name:9s} {_median(k1):9.2f} {_median(k2):9.2f} "
                f"{_median(k1) / _median(k2):5.2f}x {len(k1):2d}/{len(k2):2d} | "
                f"{_median(o1):6.2f} {_median(o2):6.2f} ({len(o1)}/{len(o2)})"
            )
    if args.per_op:
        for m in models:
            print(f"\n{Path(m).stem}: per op, 1 thr / 2 thr ms (Session.profile, 20 runs, last round)")
            for op_name, kind, a, b in last[m]["ops"]:
                if a > 0:
                    print(f"  {op_name:28s} {kind:14s} {a:7.3f} {b:7.3f} {a / max(b, 1e-9):5.2f}x")


if __name__ == "__main__":
    main()
