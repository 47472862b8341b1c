"""The emulated AMX tile unit (csrc/microkernels/amx_tile.h) against numpy.

TDPBSSD as an int8 matrix product: with B's VNNI layout unfolded (B'[4k + i][n] = B[k][4n + i]),
C += A @ B' in 64-bit integers, wrapped to int32 as the hardware's dword sums wrap. A small
harness (built here from the header alone) loads the tiles, runs one TDPBSSD and stores C into a
buffer pre-filled with a marker, so the test also sees that TILESTORED writes rows(C) x colsb(C)
bytes and nothing else. Shapes the instruction refuses (#UD) and bad configurations (#GP) must
throw.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

HARNESS = r"""
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <vector>

#include "microkernels/amx_tile.h"

// stdin: int32 rows_a, colsb_a, rows_b, colsb_b, rows_c, colsb_c; then A, B, C, each rows x colsb
// bytes. stdout: the 16 x 64 bytes of a 0xAB-filled buffer after TILESTORED of C (stride 64).
int main() {
  int32_t h[6];
  if (std::fread(h, sizeof h, 1, stdin) != 1) return 2;
  std::vector<uint8_t> t[3];
  for (int i = 0; i < 3; ++i) {
    t[i].resize(static_cast<size_t>(h[2 * i]) * static_cast<size_t>(h[2 * i + 1]) + 1);
    if (std::fread(t[i].data(), 1, t[i].size() - 1, stdin) != t[i].size() - 1) return 2;
  }
  xnor::AmxTileConfig config;
  config.palette = 1;
  const int tile[3] = {1, 2, 0};  // A in tmm1, B in tmm2, C in tmm0
  for (int i = 0; i < 3; ++i) {
    config.rows[tile[i]] = static_cast<uint8_t>(h[2 * i]);
    config.colsb[tile[i]] = static_cast<uint16_t>(h[2 * i + 1]);
  }
  std::vector<uint8_t> out(16 * 64, 0xAB);
  try {
    xnor::AmxEmulated unit;
    unit.load_config(config);
    for (int i = 0; i < 3; ++i) unit.load(tile[i], t[i].data(), h[2 * i + 1]);
    unit.dpbssd(0, 1, 2);
    unit.store(0, out.data(), 64);
    unit.release();
  } catch (const std::logic_error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 3;
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}
"""


@pytest.fixture(scope="module")
def harness(tmp_path_factory) -> Path:
    cxx = shutil.which(os.environ.get("CXX", "c++"))
    assert cxx, "a C++ compiler is needed to build the emulator harness (set CXX)"
    folder = tmp_path_factory.mktemp("amx_harness")
    (folder / "harness.cc").write_text(HARNESS)
    exe = folder / "harness"
    proc = subprocess.run(
        [cxx, "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", f"-I{ROOT / 'csrc'}", "harness.cc", "-o", str(exe)],
        cwd=folder,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    return exe


def _run(harness: Path, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> subprocess.CompletedProcess:
    """a, b: int8 (rows, colsb); c: int32 (rows, colsb / 4)."""
    shapes = [a.shape[0], a.shape[1], b.shape[0], b.shape[1], c.shape[0], c.shape[1] * 4]
    payload = np.array(shapes, np.int32).tobytes() + a.tobytes() + b.tobytes() + c.astype("<i4").tobytes()
    return subprocess.run([str(harness)], input=payload, capture_output=True)


def _reference(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    k, colsb = b.shape
    unfolded = b.reshape(k, colsb // 4, 4).transpose(0, 2, 1).reshape(4 * k, colsb // 4)
    wide = c.astype(np.int64) + a.astype(np.int64) @ unfolded.astype(np.int64)
    return (wide & 0xFFFFFFFF).astype(np.uint32).view(np.int32)


@pytest.mark.parametrize(
    "m, k, n",  # rows of A and C, rows of B (= colsb(A) / 4), dwords per row of B and C
    [(16, 16, 16), (1, 1, 1), (3, 2, 5), (16, 7, 16), (9, 16, 3)],
)
def test_tdpbssd_is_an_int8_matrix_product(harness, m, k, n, rng):
    a = rng.integers(-128, 128, (m, 4 * k), dtype=np.int8)
    b = rng.integers(-128, 128, (k, 4 * n), dtype=np.int8)
    a[0, :] = -128  # the extremes: -128 * -128 products
    b[:, :4] = -128
    c = rng.integers(-(2**31), 2**31, (m, n), dtype=np.int64).astype(np.int32)
    c[0, 0] = 2**31 - 1  # plus a positive sum: the dword wraps
    proc = _run(harness, a, b, c)
    assert proc.returncode == 0, proc.stderr.decode()
    out = np.frombuffer(proc.stdout, np.uint8).reshape(16, 64)
    got = out[:m, : 4 * n].copy().view("<i4")
    want = _reference(a, b, c)
    assert np.array_equal(got, want)
    assert want[0, 0] < 0  # the wrap happened
    assert (out[m:] == 0xAB).all() and (out[:m, 4 * n :] == 0xAB).all(), "TILESTORED wrote past rows x colsb"


def test_bconv_tile_layout_gives_pm1_dot_products(harness, rng):
    """The layout amx_bgemm.h uses: A = 16 pixels x one 64-bit word as +/-1 bytes, B = 16 channels'
    words in the VNNI layout; C = the +/-1 dot products, which are 64 - 2 * popcount(x ^ w)."""
    x = rng.integers(0, 2**63, 16, dtype=np.uint64) * 2 + rng.integers(0, 2, 16).astype(np.uint64)
    w = rng.integers(0, 2**63, 16, dtype=np.uint64) * 2 + rng.integers(0, 2, 16).astype(np.uint64)
    bits = lambda v: ((v[:, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)).astype(np.int8)  # noqa: E731
    a = 1 - 2 * bits(x)  # [pixel][bit]
    wb = 1 - 2 * bits(w)  # [channel][bit]
    b = wb.reshape(16, 16, 4).transpose(1, 0, 2).reshape(16, 64)  # row r: channel n's bits 4r..4r+3 at 4n
    proc = _run(harness, a.astype(np.int8), b.astype(np.int8), np.zeros((16, 16), np.int32))
    assert proc.returncode == 0, proc.stderr.decode()
    got = np.frombuffer(proc.stdout, np.uint8).reshape(16, 64).copy().view("<i4")
    pop = np.array([[bin(int(xi) ^ int(wj)).count("1") for wj in w] for xi in x])
    assert np.array_equal(got, 64 - 2 * pop)


@pytest.mark.parametrize(
    "shapes, message",
    [
        (((16, 64), (15, 64), (16, 64)), r"rows\(B\) != colsb\(A\) / 4 \(#UD\)"),
        (((16, 64), (16, 32), (16, 64)), r"colsb\(B\) != colsb\(C\) \(#UD\)"),
        (((8, 64), (16, 64), (16, 64)), r"rows\(A\) != rows\(C\) \(#UD\)"),
        (((16, 62), (15, 64), (16, 64)), r"colsb not a multiple of 4 \(#UD\)"),
        (((17, 64), (16, 64), (17, 64)), r"tile larger than palette 1 allows \(#GP\)"),
        (((16, 68), (17, 64), (16, 64)), r"tile larger than palette 1 allows \(#GP\)"),
    ],
)
def test_refused_shapes_fault(harness, shapes, message):
    import re

    (am, ac), (bm, bc), (cm, cc) = shapes
    a = np.zeros((am, ac), np.int8)
    b = np.zeros((bm, bc), np.int8)
    c = np.zeros((cm, cc // 4), np.int32)
    proc = _run(harness, a, b, c)
    assert proc.returncode == 3, (proc.returncode, proc.stderr)
    assert re.search(message, proc.stderr.decode()), proc.stderr.decode()
