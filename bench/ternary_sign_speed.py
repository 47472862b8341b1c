#!/usr/bin/env python
"""A sign after ternary layers: fused (tbconv2d output "bits") against unfused (tbconv2d -> affine -> sign).

    python bench/ternary_sign_speed.py [sym]

Three 3x3 TTQ convs (64 -> 128 -> 128 -> 128 channels, 32x32, batch 8) with BN -> sign between them,
converted twice (with and without the fusion), run interleaved on one thread: median ms and the ratio
plain / fused. `sym`: Wp == Wn (the integer-threshold form); otherwise the float epilogue form. The two
outputs are checked to be the same bytes first.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import xnorinfer  # noqa: E402
from xnorinfer.convert import convert, pipeline  # noqa: E402


def _sign(v: torch.Tensor) -> torch.Tensor:
    return torch.where(v < 0, -1.0, 1.0)


def main() -> None:
    from test_bwn import randomise_bn
    from test_ternary import TTQConv2d

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem, self.b0 = nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64)
            self.c1, self.b1 = TTQConv2d(64, 128, 3, padding=1, bias=False), nn.BatchNorm2d(128)
            self.c2, self.b2 = TTQConv2d(128, 128, 3, padding=1, bias=False), nn.BatchNorm2d(128)
            self.c3 = TTQConv2d(128, 128, 3, padding=1, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = _sign(self.b0(self.stem(x)))
            x = _sign(self.b1(self.c1(x)))
            x = _sign(self.b2(self.c2(x)))
            return self.c3(x).mean((2, 3))

    torch.manual_seed(0)
    m = randomise_bn(Net())
    if "sym" in sys.argv[1:]:
        for c in (m.c1, m.c2, m.c3):
            c.wn = c.wp
    x = torch.randn(8, 3, 32, 32)
    d = Path(tempfile.mkdtemp())
    convert(m, (x[:1],), calib=x.numpy(), output=d / "fused.xbin", verify=False)
    pipeline.fuse_ternary_signs = lambda g: g  # type: ignore[assignment]
    convert(m, (x[:1],), calib=x.numpy(), output=d / "plain.xbin", verify=False)
    xs = x.numpy()
    sess = {k: xnorinfer.load(d / f"{k}.xbin", threads=1) for k in ("fused", "plain")}
    assert sess["fused"].run(xs).tobytes() == sess["plain"].run(xs).tobytes()
    times: dict[str, list[float]] = {k: [] for k in sess}
    for _ in range(15):
        for k, s in sess.items():
            t = time.perf_counter()
            s.run(xs)
            times[k].append(time.perf_counter() - t)
    med = {k: float(np.median(v)) for k, v in times.items()}
    print({k: round(v * 1e3, 2) for k, v in med.items()}, "plain/fused", round(med["plain"] / med["fused"], 3))


if __name__ == "__main__":
    main()
