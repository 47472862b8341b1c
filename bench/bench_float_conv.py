"""Float first-layer convolution: xnorinfer Conv2d vs torch float32 conv2d, 1 and 2 threads.

Run:  .venv/bin/pytest bench/bench_float_conv.py --benchmark-columns=median,iqr,rounds \
          --benchmark-group-by=param:shape,param:threads

Both sides get the same float32 data; ours runs on NHWC input with a preallocated output and
xnorinfer.ThreadPool(threads) (None for 1), torch on NCHW with torch.set_num_threads(threads).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xnorinfer import _core

# name: (batch, in_channels, height, width, out_channels, kernel, stride, padding)
SHAPES = {
    "imagenet_7x7s2_3to64": (1, 3, 224, 224, 64, 7, 2, 3),
    "cifar_3x3_3to128": (1, 3, 32, 32, 128, 3, 1, 1),
}
_POOLS = {1: None, 2: _core.ThreadPool(2)}


def _data(shape):
    n, c, h, w, o, k, _, _ = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, h, w, c), dtype=np.float32)
    wt = rng.standard_normal((o, k, k, c), dtype=np.float32)
    b = rng.standard_normal(o, dtype=np.float32)
    return x, wt, b


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_xnorinfer_conv(benchmark, shape, threads):
    spec = SHAPES[shape]
    x, wt, b = _data(spec)
    s, p = spec[6], spec[7]
    op = _core.PreparedOp("conv2d", {"stride": [s, s], "padding": [p, p]}, {"weight": wt, "bias": b}, [x.shape[3]])
    out = op.run([x])
    pool = _POOLS[threads]
    benchmark.extra_info.update(impl="xnorinfer", isa=_core.available_isas()[-1])
    benchmark(op.run, [x], out=out, pool=pool)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_torch_conv(benchmark, shape, threads):
    spec = SHAPES[shape]
    x, wt, b = _data(spec)
    s, p = spec[6], spec[7]
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    wtt = torch.from_numpy(wt).permute(0, 3, 1, 2).contiguous()
    bt = torch.from_numpy(b)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        benchmark.extra_info.update(impl="torch")
        with torch.inference_mode():
            benchmark(F.conv2d, xt, wtt, bt, s, p)
    finally:
        torch.set_num_threads(old)
