"""Memory planning and loading of a long op chain (issue 13 row 6): the time is measured here, never
asserted in tests.

Run:  python bench/plan_chain.py [N ...]     (default 80000 160000)

For each N: `_core.plan_memory` on the requests a Session builds for an N-op chain (the input, one
output per op read by the next op, one empty workspace per op), on buffers all alive to the end
(the best-fit sweep), then end to end: write an N-op affine/relu chain .xbin, load it (which plans
the recorded shape) and run it twice (the second run with a new shape re-plans).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import xnorinfer
from xnorinfer import _core, ir, xbin


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def chain_requests(n: int) -> tuple[list[int], list[int], list[int]]:
    sizes, first, last = [4096], [-1], [0]
    for i in range(n):
        sizes.append(4096), first.append(i), last.append(min(i + 1, n))
    for i in range(n):
        sizes.append(0), first.append(i), last.append(i)
    return sizes, first, last


def chain_model(n: int, path: Path) -> None:
    g = ir.Graph(inputs=["x"], outputs=[], tensors={"x": ir.Tensor("x", (1, 2, 2, 3), "f32")}, ops=[])
    prev = "x"
    shift = {"scale": np.ones(3, np.float32), "shift": np.full(3, 0.5, np.float32)}
    for i in range(n):
        name = f"t{i}"
        g.ops.append(ir.Op("relu" if i % 2 else "affine", f"chain.{i}", [prev], [name], {}, {} if i % 2 else shift))
        g.tensors[name] = ir.Tensor(name, (1, 2, 2, 3), "f32")
        prev = name
    g.outputs = [prev]
    xbin.write(g, path)


def main(sizes: list[int]) -> None:
    for n in sizes:
        req = chain_requests(n)
        plan = timed(lambda: _core.plan_memory(*req))  # noqa: B023
        alive = ([64 + (i % 7) * 64 for i in range(n)], list(range(n)), [n] * n)
        sweep = timed(lambda: _core.plan_memory(*alive))  # noqa: B023
        print(f"{n}-op chain: plan_memory {plan:.3f} s; {n} buffers all alive to the end {sweep:.3f} s")
        path = Path(tempfile.mkdtemp()) / "chain.xbin"
        chain_model(n, path)
        t0 = time.perf_counter()
        session = xnorinfer.load(path, threads=1)
        t1 = time.perf_counter()
        session.run(np.zeros((1, 3, 2, 2), np.float32))
        t2 = time.perf_counter()
        session.run(np.zeros((2, 3, 2, 2), np.float32))
        t3 = time.perf_counter()
        print(
            f"  {path.stat().st_size / 1e6:.1f} MB file: load {t1 - t0:.2f} s, first run {t2 - t1:.3f} s, "
            f"run with a new shape {t3 - t2:.3f} s"
        )


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [80000, 160000])
