"""Loading and running a model many times in one process does not grow its memory."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

import xnorinfer

DEFAULT = Path(xnorinfer.__file__).resolve().parent / "assets" / "default.xbin"
ROUNDS = int(os.environ.get("XNORINFER_LEAK_ROUNDS", "1000"))


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_load_and_run_repeatedly_keeps_memory_flat():
    x = np.zeros((4, 1, 28, 28), np.float32)
    for _ in range(50):  # warm up allocator pools and caches
        xnorinfer.load(DEFAULT, threads=2).run(x)
    before = rss_bytes()
    for _ in range(ROUNDS):
        xnorinfer.load(DEFAULT, threads=2).run(x)
    growth = rss_bytes() - before
    # A leak of even one weight buffer (390 KB) per round would be hundreds of MB here.
    assert growth < 16 * 1024 * 1024, f"RSS grew by {growth / 1e6:.1f} MB over {ROUNDS} load+run rounds"
