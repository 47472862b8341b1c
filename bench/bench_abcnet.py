"""Time an ABC-Net layer (M weight bases x N activation bases, merged form) converted to M x N bconv2d,
against the same layer in torch float32 and a plain binary layer (sign -> ±alpha conv) of the same shape.

Usage:  python bench/bench_abcnet.py [--rounds 15] [--runs 20] [--isa avx2] [--threads 1]

Each model is layer -> BatchNorm on a (C, H, W) float input, batch 1:
  * "ABC M=3 N=3": xnorinfer.nn.ABCConv2d (3x3, padding 1): 3 activation bases + 3 weight bases ->
    9 `bconv2d` (+ the 3 `sign`s and the float `add`s of the plane sums);
  * "binary": torch.sign -> 3x3 conv with sign(W) * mean|W| -> one `sign` + one `bconv2d`;
  * "torch f32": the ABC model itself in eager PyTorch (3 float binarizations + one float conv), and
    a plain float32 F.conv2d of the same shape (torch.set_num_threads(--threads)).
Timings are interleaved: every round times each candidate once (`--runs` calls, mean per call), and
the table gives the best round. The xnorinfer per-op split is `Session.profile` (best of the rounds).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import xnorinfer
from xnorinfer.convert import convert
from xnorinfer.nn import ABCConv2d

SHAPES = [(64, 56, 56), (128, 28, 28), (256, 14, 14)]


class SignConv(nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.weight.abs().mean(dim=(1, 2, 3), keepdim=True).detach()
        return F.conv2d(torch.sign(x), torch.sign(self.weight) * alpha, None, self.stride, self.padding)


def calibrated(model: nn.Module, x: torch.Tensor) -> nn.Module:
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval()


def per_call_ms(fn: Callable[[], object], runs: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(runs):
        fn()
    return (time.perf_counter() - start) * 1e3 / runs


def bench(c: int, h: int, w: int, args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    torch.manual_seed(0)
    x = torch.randn(8, c, h, w)
    abc = calibrated(nn.Sequential(ABCConv2d(c, c, 3, padding=1), nn.BatchNorm2d(c)), x)
    binary = calibrated(nn.Sequential(SignConv(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)), x)
    paths = {}
    for name, model in (("abc", abc), ("binary", binary)):
        paths[name] = tmp / f"{name}_{c}.xbin"
        convert(model, (x[:1],), output=paths[name], calib=x)
    sessions = {name: xnorinfer.load(p, threads=args.threads) for name, p in paths.items()}
    one = x[:1].contiguous()
    one_np = one.numpy()
    weight = abc[0].abc_weight().detach()
    candidates: dict[str, Callable[[], object]] = {
        "xnorinfer ABC": lambda: sessions["abc"].run(one_np, isa=args.isa),
        "xnorinfer binary": lambda: sessions["binary"].run(one_np, isa=args.isa),
        "torch ABC (eager)": lambda: abc(one),
        "torch f32 conv": lambda: F.conv2d(one, weight, None, 1, 1),
    }
    best = dict.fromkeys(candidates, np.inf)
    split: dict[str, dict[str, float]] = {"abc": {}, "binary": {}}
    with torch.no_grad():
        for _ in range(args.rounds):
            for name, fn in candidates.items():
                best[name] = min(best[name], per_call_ms(fn, args.runs))
            for name, session in sessions.items():
                by_kind: dict[str, float] = defaultdict(float)
                for row in session.profile(one_np, runs=args.runs, isa=args.isa):
                    by_kind[row["kind"]] += row["ms_per_run"]
                for kind, ms in by_kind.items():
                    split[name][kind] = min(split[name].get(kind, np.inf), ms)
    return {
        **best,
        "abc bconv2d": split["abc"]["bconv2d"],
        "binary bconv2d": split["binary"]["bconv2d"],
        "abc other ops": sum(v for k, v in split["abc"].items() if k != "bconv2d"),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--isa", default=None, help="xnorinfer ISA path (default: the best available)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cols = [
        "xnorinfer ABC (9 bconv2d)",
        "its bconv2d",
        "its other ops",
        "xnorinfer binary",
        "binary bconv2d",
        "ABC / binary bconv2d",
        "torch ABC (eager)",
        "torch f32 conv",
        "speed-up vs torch ABC",
    ]
    print("| shape (C, H, W) | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    with tempfile.TemporaryDirectory() as d:
        for c, h, w in SHAPES:
            r = bench(c, h, w, args, Path(d))
            cells = [
                f"{r['xnorinfer ABC']:.3f} ms",
                f"{r['abc bconv2d']:.3f} ms",
                f"{r['abc other ops']:.3f} ms",
                f"{r['xnorinfer binary']:.3f} ms",
                f"{r['binary bconv2d']:.3f} ms",
                f"{r['abc bconv2d'] / r['binary bconv2d']:.2f}x",
                f"{r['torch ABC (eager)']:.3f} ms",
                f"{r['torch f32 conv']:.3f} ms",
                f"{r['torch ABC (eager)'] / r['xnorinfer ABC']:.1f}x",
            ]
            print(f"| {c}x{h}x{w} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
