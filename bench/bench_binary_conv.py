"""Binary 3x3 convolution vs torch float32 conv2d on the same shapes, 1 and 2 threads.

Run:  .venv/bin/pytest bench/bench_binary_conv.py --benchmark-columns=median,iqr,rounds \
          --benchmark-group-by=param:shape,param:threads
or    python bench/make_results.py   (runs this file and bench_float_conv.py, writes RESULTS.md)

Batch 1, 'same' padding (zero padding, exact), stride 1. Ours runs on bit-packed NHWC input
with a preallocated output, either packed bits (threshold output, as when the next layer is
binary) or float32 (multiplier * s + bias, as before a float op). Torch runs float32 NCHW with
torch.set_num_threads(threads) in the same process.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xnorinfer import _core
from xnorinfer.kernel_check import BENCH_SHAPES

# name -> (in_channels, height, width, out_channels): the engine-core issue's shapes, as
# `xnorinfer kernels` uses them.
SHAPES = {f"{c}x{h}x{w}-{o}": (c, h, w, o) for c, h, w, o in BENCH_SHAPES}
_POOLS = {1: None, 2: _core.ThreadPool(2)}


def binary_macs(shape: tuple[int, int, int, int]) -> int:
    c, h, w, o = shape
    return c * 9 * h * w * o


def _pm1(rng, shape):
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0).astype(np.float32)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("output", ["bits", "float"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_xnorinfer_bconv(benchmark, shape, output, threads):
    c, h, w, o = SHAPES[shape]
    rng = np.random.default_rng(0)
    # The op built once by the runtime's registry, as a model's node is.
    sign = _core.PreparedOp("sign", {}, {}, [c])
    xp = sign.run([_pm1(rng, (h * w, c))]).reshape(1, h, w, -1)
    wp = sign.run([_pm1(rng, (o * 9, c))]).reshape(o, 3, 3, -1)
    attrs = {"stride": [1, 1], "padding": [1, 1], "pad_mode": "zero", "output": output, "in_channels": c}
    if output == "bits":
        params = {"weight": wp, "threshold": rng.integers(-9, 9, o).astype(np.int32)}
    else:
        multiplier, bias = rng.random(o).astype(np.float32), rng.random(o).astype(np.float32)
        params = {"weight": wp, "multiplier": multiplier, "bias": bias}
    op = _core.PreparedOp("bconv2d", attrs, params, [c])
    out = op.run([xp])
    benchmark.extra_info.update(impl="xnorinfer", isa=_core.default_isa(), binary_macs=binary_macs(SHAPES[shape]))
    benchmark(op.run, [xp], out=out, pool=_POOLS[threads])


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_torch_conv(benchmark, shape, threads):
    c, h, w, o = SHAPES[shape]
    rng = np.random.default_rng(0)
    x = torch.from_numpy(_pm1(rng, (1, c, h, w)))
    wt = torch.from_numpy(_pm1(rng, (o, c, 3, 3)))
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        benchmark.extra_info.update(impl="torch", binary_macs=binary_macs(SHAPES[shape]))
        with torch.inference_mode():
            benchmark(F.conv2d, x, wt, None, 1, 1)
    finally:
        torch.set_num_threads(old)
