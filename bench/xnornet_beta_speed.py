"""Time an XNOR-Net layer with the beta map K (converted, K fused into bconv2d) against the same layer
unfused, the plain binary conv (no K) and torch float32, on the same shapes.

Usage:  python bench/xnornet_beta_speed.py [--runs 30] [--repeat 7] [--isa avx2]

Each layer is BatchNorm -> 3x3 conv, padding 1, on a (C, H, W) float input, batch 1:
"beta"     xnorinfer.nn.XnorConv2d: sign(x) conv sign(W) * K * alpha, K = avgpool(mean_c |x|)
           (engine: abs, reduce mean, avgpool2d, sign, bconv2d with the pixel scale, BN affine)
"unfused"  the same graph without beta.py's fusion (bconv2d -> binary mul K -> affine alpha)
"plain"    xnorinfer.nn.BinaryConv2d(weight_scale="mean"): sign(x) conv sign(W) * alpha (no K)
"torch"    eager PyTorch float32 of the "beta" model, and a float conv2d of the same shape
"epilogue" the bconv2d op alone with and without K (same weights, input and output buffer, `PreparedOp`),
           alternated `--repeat` x 20 times, best call of each: what the pixel scale costs in the kernel.
Engine figures: `Session.profile` on one thread, summed over the layer's ops, best of `--repeat`
profiles of `--runs` runs; the models are profiled in turn inside each repeat (interleaved), so the
ratios come from the same moments. torch: best of `--repeat` means of `--runs` calls, one thread.
"""

from __future__ import annotations

import argparse
import copy
import time
from collections import defaultdict

import numpy as np
import torch
from torch import nn

import xnorinfer
from xnorinfer import _core, xbin
from xnorinfer.bits import pack_last
from xnorinfer.convert import capture, convert, patterns
from xnorinfer.convert.lower import lower
from xnorinfer.convert.pipeline import capture_model
from xnorinfer.nn import BinaryConv2d, XnorConv2d

SHAPES = [(64, 56, 56), (128, 28, 28), (256, 14, 14)]


def _model(c: int, beta: bool) -> nn.Module:
    torch.manual_seed(0)
    conv = XnorConv2d(c, c, 3, padding=1) if beta else BinaryConv2d(c, c, 3, padding=1, weight_scale="mean")
    return nn.Sequential(nn.BatchNorm2d(c), conv).eval()


def _sessions(c: int, x: torch.Tensor) -> dict[str, xnorinfer.Session]:
    beta, plain = _model(c, True), _model(c, False)
    fused = convert(beta, (x,), calib=x)
    ep, _, _ = capture_model(copy.deepcopy(beta), (x,))
    unfused = lower(patterns.recognise(capture.to_model(ep)))
    flat = convert(plain, (x,), calib=x)
    return {
        name: xnorinfer.load(xbin.to_bytes(g), threads=1)
        for name, g in (("beta", fused), ("unfused", unfused), ("plain", flat))
    }


def _epilogue_ms(c: int, h: int, w: int, rounds: int, isa: str | None) -> tuple[float, float]:
    """Best time of one bconv2d call without and with the pixel scale, calls alternated."""
    rng = np.random.default_rng(0)
    attrs = {"stride": [1, 1], "padding": [1, 1], "pad_mode": "zero", "in_channels": c, "output": "float"}
    params = {
        "weight": pack_last(rng.random((c, 3, 3, c)) < 0.5),
        "multiplier": rng.random(c).astype(np.float32),
        "bias": np.zeros(c, np.float32),
    }
    x = pack_last(rng.random((1, h, w, c)) < 0.5)
    k = rng.random((1, h, w, 1)).astype(np.float32)
    plain, scaled = _core.PreparedOp("bconv2d", attrs, params, [c]), _core.PreparedOp("bconv2d", attrs, params, [c, 1])
    out = np.empty((1, h, w, c), np.float32)
    best = [np.inf, np.inf]
    for _ in range(rounds):
        for i, (op, ins) in enumerate(((plain, [x]), (scaled, [x, k]))):
            t = time.perf_counter()
            op.run(ins, isa=isa, out=out)
            best[i] = min(best[i], (time.perf_counter() - t) * 1e3)
    return best[0], best[1]


def _torch_ms(fn, x: torch.Tensor, runs: int) -> float:
    with torch.no_grad():
        fn(x)
        t = time.perf_counter()
        for _ in range(runs):
            fn(x)
    return (time.perf_counter() - t) / runs * 1e3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--isa", default=None, help="force an ISA path (default: the best)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"isa {args.isa or xnorinfer._core.default_isa()}, 1 thread, batch 1, best of {args.repeat}")
    print(
        "| shape (C, H, W) | beta (fused) | of which bconv2d | of which K (abs, mean, avgpool) | unfused beta | "
        "plain binary conv | torch f32 beta layer | torch f32 conv2d | beta vs torch | beta vs plain |"
    )
    print("|---" * 10 + "|")
    for c, h, w in SHAPES:
        x = torch.randn(1, c, h, w)
        sessions = _sessions(c, x)
        beta_model = _model(c, True)
        conv = nn.Conv2d(c, c, 3, padding=1, bias=False).eval()
        best: dict[str, dict[str, float]] = {n: {} for n in sessions}
        t_beta = t_conv = np.inf
        for _ in range(args.repeat):
            for name, s in sessions.items():
                by_kind: dict[str, float] = defaultdict(float)
                for row in s.profile(x.numpy(), runs=args.runs, isa=args.isa):
                    by_kind[row["kind"]] += row["ms_per_run"]
                by_kind["total"] = sum(by_kind.values())
                for k, v in by_kind.items():
                    best[name][k] = min(best[name].get(k, np.inf), v)
            t_beta = min(t_beta, _torch_ms(beta_model, x, args.runs))
            t_conv = min(t_conv, _torch_ms(conv, x, args.runs))
        b, u, p = best["beta"], best["unfused"], best["plain"]
        k_ops = sum(b.get(k, 0.0) for k in ("abs", "reduce", "avgpool2d"))
        print(
            f"| {c}x{h}x{w} | {b['total']:.3f} ms | {b['bconv2d']:.3f} ms | {k_ops:.3f} ms | {u['total']:.3f} ms | "
            f"{p['total']:.3f} ms | {t_beta:.3f} ms | {t_conv:.3f} ms | {t_beta / b['total']:.1f}x faster | "
            f"{b['total'] / p['total']:.2f}x the time |"
        )
        print("   beta by kind:", {k: round(v, 3) for k, v in sorted(b.items())})
        print("   unfused by kind:", {k: round(v, 3) for k, v in sorted(u.items())})
        print("   plain by kind:", {k: round(v, 3) for k, v in sorted(p.items())})
        e_plain, e_scaled = _epilogue_ms(c, h, w, args.repeat * 20, args.isa)
        print(f"   epilogue: bconv2d alone {e_plain:.3f} ms, with K {e_scaled:.3f} ms ({e_scaled / e_plain:.3f}x)")


if __name__ == "__main__":
    main()
