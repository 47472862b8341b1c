"""Binary-weight (BWN) and ternary (TTQ) 3x3 convolution vs float conv (ours and torch float32) and
the binary conv (XOR + popcount) on the same shapes, batch 1, one thread.

Run:  .venv/bin/python bench/bench_bwn.py [--isa avx512] [--repeat 200]

Prints a markdown table of median milliseconds (interleaved rounds, so a busy neighbour slows every
column alike). bwconv2d reads float32 NHWC and writes float32; bconv2d reads packed bits and writes
float32 (multiplier * s + bias); tbconv2d (ternary weights) reads packed bits and writes float32;
torch runs float32 NCHW with torch.set_num_threads(1).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from xnorinfer import _core
from xnorinfer.bits import pack_last

# (in_channels, height, width, out_channels): a first conv on MNIST and CIFAR images, mid layers.
SHAPES = [(1, 28, 28, 32), (3, 32, 32, 64), (3, 224, 224, 64), (64, 32, 32, 64), (128, 16, 16, 128)]


def median_ms(fns: dict[str, object], repeat: int) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()  # type: ignore[operator]
            times[k].append(time.perf_counter() - t0)
    return {k: 1e3 * float(np.median(v)) for k, v in times.items()}


def bench(shape: tuple[int, int, int, int], isa: str, repeat: int) -> dict[str, float]:
    c, h, w, o = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, h, w, c)).astype(np.float32)
    t = rng.integers(-1, 2, (o, 3, 3, c))
    s = np.where(rng.random((o, 3, 3, c)) < 0.5, -1, 1)
    one = rng.random(o).astype(np.float32) + 0.5
    conv = {"stride": [1, 1], "padding": [1, 1]}
    bwn = _core.PreparedOp(
        "bwconv2d", {**conv, "in_channels": c}, {"weight": pack_last(s < 0), "scale_pos": one, "scale_neg": one}, [c]
    )
    ttq = _core.PreparedOp(
        "bwconv2d",
        {**conv, "in_channels": c},
        {"weight": pack_last(t < 0), "mask": pack_last(t != 0), "scale_pos": one, "scale_neg": one},
        [c],
    )
    fw = (s * one[:, None, None, None]).astype(np.float32)
    fconv = _core.PreparedOp("conv2d", conv, {"weight": fw, "bias": one}, [c])
    bconv = _core.PreparedOp(
        "bconv2d",
        {**conv, "pad_mode": "zero", "output": "float", "in_channels": c},
        {"weight": pack_last(s < 0), "multiplier": one, "bias": one},
        [c],
    )
    tb = _core.PreparedOp(
        "tbconv2d",
        {**conv, "in_channels": c},
        {"weight": pack_last(t < 0), "mask": pack_last(t != 0), "scale_pos": one, "scale_neg": one},
        [c],
    )
    xb = pack_last(x < 0)
    out_t = tb.run([xb], isa=isa)
    outs = {k: op.run([xb if k == "bconv2d" else x], isa=isa) for k, op in (("bwn", bwn), ("ttq", ttq))}
    out_b = bconv.run([xb], isa=isa)
    out_f = fconv.run([x], isa=isa)
    xt, wt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), torch.from_numpy(fw.transpose(0, 3, 1, 2).copy())
    torch.set_num_threads(1)
    fns = {
        "bwconv2d BWN": lambda: bwn.run([x], out=outs["bwn"], isa=isa),
        "bwconv2d ternary": lambda: ttq.run([x], out=outs["ttq"], isa=isa),
        "conv2d (ours, float)": lambda: fconv.run([x], out=out_f, isa=isa),
        "torch conv2d float32": lambda: F.conv2d(xt, wt, None, 1, 1),
        "bconv2d (bits in)": lambda: bconv.run([xb], out=out_b, isa=isa),
        "tbconv2d (bits in, ternary)": lambda: tb.run([xb], out=out_t, isa=isa),
    }
    return median_ms(fns, repeat)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--isa", default=_core.default_isa())
    ap.add_argument("--repeat", type=int, default=100)
    args = ap.parse_args()
    rows = [(s, bench(s, args.isa, args.repeat)) for s in SHAPES]
    cols = list(rows[0][1])
    print(f"isa {args.isa}, 1 thread, median ms of {args.repeat} interleaved rounds")
    print("| C x H x W -> O | " + " | ".join(cols) + " | BWN / torch |")
    print("|---" * (len(cols) + 2) + "|")
    for (c, h, w, o), r in rows:
        cells = " | ".join(f"{r[k]:.3f}" for k in cols)
        print(f"| {c}x{h}x{w} -> {o} | {cells} | {r['bwconv2d BWN'] / r['torch conv2d float32']:.2f} |")


if __name__ == "__main__":
    main()
