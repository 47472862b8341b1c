"""Time a DoReFa 2-bit (and 3-bit) conv layer, run bit-serially, against one binary conv of the same shape.

Usage:  python bench/bitserial_speed.py [--runs 50] [--repeat 7]

Each model is act -> 3x3 conv (±alpha weights, padding 1) -> BatchNorm on a (C, H, W) float input:
"W1A1" has act = torch.sign (one `sign` + one `bconv2d`), "W1Ak" has act = round(clamp(x, 0, 1) * n) / n
(k `bitplane` reading x with the quantizer folded into float32 thresholds, k `bconv2d` on the planes, the
`add` of their sums and the scale / BatchNorm affines).
Converted with verification, profiled with `Session.profile` on one thread and the best ISA path of
this CPU (avx512 where available, else avx2); the best of `--repeat` profiles, summed by op kind.
"torch f32" is the same W1A2 model in eager PyTorch (float32, one thread), best of `--repeat` means
of `--runs` calls, timed in the same run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import xnorinfer
from xnorinfer import _core
from xnorinfer.convert import convert

ISA = "avx512" if "avx512" in _core.available_isas() else "avx2"

SHAPES = [(64, 56, 56), (128, 28, 28), (256, 14, 14)]


class Act(nn.Module):
    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.k == 1:
            return torch.sign(x)
        n = float(2**self.k - 1)
        return torch.round(torch.clamp(x, 0, 1) * n) / n


class SignConv(nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.weight.abs().mean().detach()
        return F.conv2d(x, torch.sign(self.weight) * e, None, self.stride, self.padding)


def layer(k: int, c: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(Act(k), SignConv(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)).eval()


def torch_ms(k: int, c: int, h: int, w: int, runs: int, repeat: int) -> float:
    model = layer(k, c)
    x = torch.rand(1, c, h, w) * 1.2 - 0.1
    best = np.inf
    with torch.no_grad():
        model(x)
        for _ in range(repeat):
            t = time.perf_counter()
            for _ in range(runs):
                model(x)
            best = min(best, (time.perf_counter() - t) * 1e3 / runs)
    return best


def profile(k: int, c: int, h: int, w: int, runs: int, repeat: int, tmp: Path) -> dict[str, float]:
    model = layer(k, c)
    x = torch.rand(8, c, h, w) * 1.2 - 0.1
    path = tmp / f"k{k}_{c}.xbin"
    convert(model, (x[:1],), output=path, calib=x)
    session = xnorinfer.load(path, threads=1)
    best: dict[str, float] = {}
    for _ in range(repeat):
        by_kind: dict[str, float] = defaultdict(float)
        for row in session.profile(x[:1].numpy(), runs=runs, isa=ISA):
            by_kind[row["kind"]] += row["ms_per_run"]
        for kind, ms in by_kind.items():
            best[kind] = min(best.get(kind, np.inf), ms)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    cols = [
        "W1A1: bconv2d",
        "W1A1: all ops",
        "W1A2: bconv2d (2)",
        "W1A2: all ops",
        "W1A3: bconv2d (3)",
        "W1A3: all ops",
        "W1A2: torch f32",
    ]
    torch.set_num_threads(1)
    print(f"ISA path {ISA}, one thread")
    print("| shape (C, H, W) | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    with tempfile.TemporaryDirectory() as d:
        for c, h, w in SHAPES:
            one = profile(1, c, h, w, args.runs, args.repeat, Path(d))
            two = profile(2, c, h, w, args.runs, args.repeat, Path(d))
            three = profile(3, c, h, w, args.runs, args.repeat, Path(d))
            cells = [f"{one['bconv2d']:.3f} ms", f"{sum(one.values()):.3f} ms"]
            for r in (two, three):
                cells += [f"{r['bconv2d']:.3f} ms ({r['bconv2d'] / one['bconv2d']:.2f}x)", f"{sum(r.values()):.3f} ms"]
            ref = torch_ms(2, c, h, w, args.runs, args.repeat)
            cells.append(f"{ref:.3f} ms ({ref / sum(two.values()):.1f}x W1A2 all ops)")
            print(f"| {c}x{h}x{w} | " + " | ".join(cells) + " |")
            print("   W1A2 by kind:", {k: round(v, 3) for k, v in sorted(two.items())})


if __name__ == "__main__":
    main()
