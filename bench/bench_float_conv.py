"""Float convolutions: xnorinfer conv2d vs torch float32 conv2d, 1 and 2 threads.

First-layer convs (pytest-benchmark):
      .venv/bin/pytest bench/bench_float_conv.py --benchmark-columns=median,iqr,rounds \
          --benchmark-group-by=param:shape,param:threads

Depthwise 3x3 and 1x1 convs (the float ops of MobileNet-style and BNN blocks), interleaved in one
process, ours and torch alternating round by round, medians, the table for bench/RESULTS.md:
      OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_float_conv.py [--threads 1] [--rounds 31]

Both sides get the same float32 data; ours runs on NHWC input with a preallocated output and
xnorinfer.ThreadPool(threads) (None for 1), torch with torch.set_num_threads(threads) on NCHW
and on channels_last input, whichever is faster for torch (the ratio compares against it).
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


# ----------------------------------------------------------------------------- depthwise and 1x1
# name: (in_channels, height, width, out_channels, kernel, stride, padding, groups)
DW_1X1_SHAPES = {
    "dw3x3 32x112x112 s1": (32, 112, 112, 32, 3, 1, 1, 32),
    "dw3x3 64x112x112 s2": (64, 112, 112, 64, 3, 2, 1, 64),
    "dw3x3 128x56x56 s1": (128, 56, 56, 128, 3, 1, 1, 128),
    "dw3x3 128x56x56 s2": (128, 56, 56, 128, 3, 2, 1, 128),
    "dw3x3 256x28x28 s1": (256, 28, 28, 256, 3, 1, 1, 256),
    "dw3x3 512x14x14 s1": (512, 14, 14, 512, 3, 1, 1, 512),
    "dw3x3 1024x7x7 s1": (1024, 7, 7, 1024, 3, 1, 1, 1024),
    "1x1 64->64 56x56": (64, 56, 56, 64, 1, 1, 0, 1),
    "1x1 128->256 28x28": (128, 28, 28, 256, 1, 1, 0, 1),
    "1x1 256->512 14x14": (256, 14, 14, 512, 1, 1, 0, 1),
    "1x1 512->1024 7x7": (512, 7, 7, 1024, 1, 1, 0, 1),
    "1x1 s2 64->128 56x56": (64, 56, 56, 128, 1, 2, 0, 1),
    "1x1 s2 256->512 28x28": (256, 28, 28, 512, 1, 2, 0, 1),
}


def _median_ms(fn, rounds: int, inner: int) -> list[float]:
    import time

    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - t0) * 1e3 / inner)
    return times


def _time_shape(spec, threads: int, pool, rounds: int, rng) -> dict[str, float]:
    """Median ms of ours, torch NCHW and torch channels_last on one shape, interleaved round by round."""
    import statistics

    c, h, w, o, k, s, p, g = spec
    x = rng.standard_normal((1, h, w, c), dtype=np.float32)
    wt = rng.standard_normal((o, k, k, c // g), dtype=np.float32)
    b = rng.standard_normal(o, dtype=np.float32)
    op = _core.PreparedOp("conv2d", {"stride": [s, s], "padding": [p, p], "groups": g}, {"weight": wt, "bias": b}, [c])
    out = op.run([x])
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    xcl = xt.contiguous(memory_format=torch.channels_last)
    wtt = torch.from_numpy(wt).permute(0, 3, 1, 2).contiguous()
    wcl = wtt.contiguous(memory_format=torch.channels_last)
    bt = torch.from_numpy(b)
    with torch.inference_mode():
        ref = F.conv2d(xt, wtt, bt, s, p, 1, g).permute(0, 2, 3, 1).numpy()
        np.testing.assert_allclose(out, ref, rtol=1e-3, atol=1e-3)
        fns = {
            "ours": lambda: op.run([x], out=out, pool=pool),
            "nchw": lambda: F.conv2d(xt, wtt, bt, s, p, 1, g),
            "cl": lambda: F.conv2d(xcl, wcl, bt, s, p, 1, g),
        }
        for f in fns.values():  # warm-up
            f()
        t0 = min(_median_ms(f, 3, 1)[0] for f in fns.values())
        inner = max(1, int(3.0 / max(t0, 1e-3)))  # rounds of about 3 ms
        times: dict[str, list[float]] = {key: [] for key in fns}
        for _ in range(rounds):  # interleaved: each round runs every implementation once
            for key, f in fns.items():
                times[key] += _median_ms(f, 1, inner)
    return {key: statistics.median(v) for key, v in times.items()}


def dw_1x1_table(threads: int = 1, rounds: int = 31) -> str:
    """Markdown table: ours ms, torch ms (NCHW, channels_last), ours / the faster torch."""
    torch.set_num_threads(threads)
    pool = None if threads == 1 else _core.ThreadPool(threads)
    rng = np.random.default_rng(0)
    lines = [
        "| conv | threads | xnorinfer ms | torch NCHW ms | torch channels_last ms | ours / best torch |",
        "|---|---|---|---|---|---|",
    ]
    for name, spec in DW_1X1_SHAPES.items():
        med = _time_shape(spec, threads, pool, rounds, rng)
        ratio = med["ours"] / min(med["nchw"], med["cl"])
        lines.append(f"| {name} | {threads} | {med['ours']:.3f} | {med['nchw']:.3f} | {med['cl']:.3f} | {ratio:.2f} |")
        print(lines[-1], flush=True)
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--rounds", type=int, default=31)
    args = parser.parse_args()
    for t in args.threads:
        print(dw_1x1_table(t, args.rounds))
