"""`xnorinfer kernels`: check and time the binary convolution against float convolution.

For each benchmark shape, runs the binary 3x3 conv (bit-packed, XOR + popcount) and
xnorinfer's own float32 conv (im2col + SGEMM) on the same +/-1 data, checks that the binary
integer sums equal the float sums exactly, and reports both times and the speedup. Needs
neither torch nor a model, so it is the quickest way to see what this machine gets.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from xnorinfer import _core

# (in_channels, height, width, out_channels): 3x3, stride 1, 'same' zero padding, batch 1.
BENCH_SHAPES: list[tuple[int, int, int, int]] = [
    (128, 32, 32, 128),
    (256, 16, 16, 256),
    (512, 8, 8, 512),
    (64, 56, 56, 64),
    (128, 28, 28, 128),
    (256, 14, 14, 256),
    (512, 7, 7, 512),
]


@dataclass(frozen=True)
class KernelTiming:
    shape: tuple[int, int, int, int]
    binary_ms: float
    float_ms: float
    exact: bool

    @property
    def speedup(self) -> float:
        return self.float_ms / self.binary_ms

    @property
    def binary_macs_per_s(self) -> float:
        c, h, w, o = self.shape
        return c * 9 * h * w * o / (self.binary_ms * 1e-3)


def _median_ms(fn: Callable[[], object], min_time: float = 0.2, min_runs: int = 5) -> float:
    fn()  # warm up: caches, page faults, thread wake-up
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def time_shape(
    shape: tuple[int, int, int, int], threads: int = 1, isa: str | None = None, seed: int = 0
) -> KernelTiming:
    """Time one shape; `exact` says whether binary and float sums agreed on every output."""
    c, h, w, o = shape
    rng = np.random.default_rng(seed)
    x = np.where(rng.random((1, h, w, c)) < 0.5, -1.0, 1.0).astype(np.float32)
    wt = np.where(rng.random((o, 3, 3, c)) < 0.5, -1.0, 1.0).astype(np.float32)
    pool = _core.ThreadPool(threads) if threads > 1 else None
    # Both ops built once by the runtime's own registry, as a model's nodes are. The binary conv's
    # float output with multiplier 1 and bias 0 is its exact integer sums.
    sign = _core.PreparedOp("sign", {}, {}, [c])
    conv = {"stride": [1, 1], "padding": [1, 1]}
    wp = sign.run([wt.reshape(o * 9, c)]).reshape(o, 3, 3, -1)
    identity = {"multiplier": np.ones(o, np.float32), "bias": np.zeros(o, np.float32)}
    binary = _core.PreparedOp(
        "bconv2d",
        {**conv, "pad_mode": "zero", "output": "float", "in_channels": c},
        {"weight": wp, **identity},
        [c],
    )
    dense = _core.PreparedOp("conv2d", conv, {"weight": wt}, [c])
    xp = sign.run([x.reshape(h * w, c)]).reshape(1, h, w, -1)
    sums = binary.run([xp], pool=pool, isa=isa)
    ref = dense.run([x], pool=pool, isa=isa)
    exact = bool(np.array_equal(sums, ref))
    out_b, out_f = np.empty_like(sums), np.empty_like(ref)
    binary_ms = _median_ms(lambda: binary.run([xp], out=out_b, pool=pool, isa=isa))
    float_ms = _median_ms(lambda: dense.run([x], out=out_f, pool=pool, isa=isa))
    return KernelTiming(shape, binary_ms, float_ms, exact)
