#!/usr/bin/env python3
"""Rebuild the seed corpus of the C++ loader fuzzer (fuzz/corpus/xbin/, run by tools/fuzz_loader.sh).

Seeds are tiny: three valid models built by hand (dense, binary dense, binary conv; each loads
and runs) written with xnorinfer.xbin, a valid container with an empty data section, and damaged
copies that each stop at a different check (truncation, checksums, magic, version, overlap,
alignment, padding), the structural ones resealed so their checksums pass. Deterministic: the
same bytes every run. Needs numpy only (plus the built extension for the optional load check).

    python tools/make_fuzz_corpus.py [OUT_DIR]      # default fuzz/corpus/xbin
"""

from __future__ import annotations

import struct
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from xnorinfer import ir, xbin  # noqa: E402


def packed(rng: np.random.Generator, rows: tuple[int, ...], bits: int) -> np.ndarray:
    """Random ±1 weights packed along the last axis into uint64 words, pad bits zero."""
    b = rng.integers(0, 2, size=rows + (bits,)).astype(bool)
    words = -(-bits // 64)
    padded = np.zeros(rows + (words * 64,), dtype=bool)
    padded[..., :bits] = b
    return np.packbits(padded, axis=-1, bitorder="little").view("<u8").reshape(rows + (words,))


def graph(tensors: dict[str, tuple[tuple[int, ...], str]], ops: list[ir.Op], out: str) -> ir.Graph:
    x_shape = tensors["x"][0]
    return ir.Graph(
        inputs=["x"],
        outputs=[out],
        tensors={n: ir.Tensor(n, s, d) for n, (s, d) in tensors.items()},
        ops=ops,
        metadata={"input_shape": [1, x_shape[3], x_shape[1], x_shape[2]]},
    )


def models() -> dict[str, ir.Graph]:
    rng = np.random.default_rng(16)
    f32 = np.float32
    dense = graph(
        {"x": ((1, 2, 2, 3), "f32"), "t1": ((1, 12), "f32"), "t2": ((1, 3), "f32"), "t3": ((1, 3), "f32")},
        [
            ir.Op("flatten", "flatten", ["x"], ["t1"]),
            ir.Op(
                "linear",
                "fc",
                ["t1"],
                ["t2"],
                {},
                {"weight": rng.normal(size=(3, 12)).astype(f32), "bias": np.zeros(3, f32)},
            ),
            ir.Op("softmax", "softmax", ["t2"], ["t3"]),
        ],
        "t3",
    )
    binary_dense = graph(
        {"x": ((1, 2, 2, 4), "f32"), "t1": ((1, 16), "f32"), "t2": ((1, 16), "bits"), "t3": ((1, 4), "f32")},
        [
            ir.Op("flatten", "flatten", ["x"], ["t1"]),
            ir.Op("sign", "sign", ["t1"], ["t2"], {"sign_zero": "+1"}, {"threshold": np.zeros(16, f32)}),
            ir.Op(
                "blinear",
                "bfc",
                ["t2"],
                ["t3"],
                {"output": "float", "in_features": 16},
                {"weight": packed(rng, (4,), 16), "multiplier": np.full(4, 0.5, f32), "bias": np.zeros(4, f32)},
            ),
        ],
        "t3",
    )
    binary_conv = graph(
        {
            "x": ((1, 3, 3, 2), "f32"),
            "t1": ((1, 3, 3, 2), "bits"),
            "t2": ((1, 3, 3, 4), "bits"),
            "t3": ((1, 3, 3, 4), "f32"),
        },
        [
            ir.Op("sign", "sign", ["x"], ["t1"]),
            ir.Op(
                "bconv2d",
                "bconv",
                ["t1"],
                ["t2"],
                {"stride": [1, 1], "padding": [1, 1], "pad_mode": "zero", "output": "bits", "in_channels": 2},
                {
                    "weight": packed(rng, (4, 3, 3), 2),
                    "threshold": np.array([0, 1, -1, 2], np.int32),
                    "flip": np.array([0, 1, 0, 1], np.uint8),
                },
            ),
            ir.Op("unpack", "unpack", ["t2"], ["t3"]),
        ],
        "t3",
    )
    return {"valid-dense": dense, "valid-binary-dense": binary_dense, "valid-binary-conv": binary_conv}


def damaged(base: bytes) -> dict[str, bytes]:
    """Copies of `base` (at least two sections) each broken in one place."""
    b = bytearray(base)
    off1 = struct.unpack_from("<Q", b, 64 + 64 + 8)[0]  # section 1's offset
    out = {
        "trunc-header": base[:40],
        "trunc-table": base[:100],
        "trunc-data": base[:-5],
        "bad-magic": b"XNORBIM\0" + base[8:],
        "data-crc": base[:off1] + bytes([base[off1] ^ 1]) + base[off1 + 1 :],
    }
    v2 = bytearray(base)
    struct.pack_into("<I", v2, 8, 2)
    out["version-2"] = xbin.reseal(v2)
    overlap = bytearray(base)
    struct.pack_into("<Q", overlap, 64 + 64 + 8, struct.unpack_from("<Q", base, 64 + 8)[0])  # onto the JSON
    out["overlap"] = xbin.reseal(overlap)
    misaligned = bytearray(base)
    struct.pack_into("<Q", misaligned, 64 + 64 + 8, off1 + 8)
    out["misaligned"] = xbin.reseal(misaligned)
    padding = bytearray(base)
    off0, size0 = struct.unpack_from("<QQ", base, 64 + 8)
    assert off0 + size0 < off1, "the JSON section must end before an alignment gap"
    padding[off0 + size0] = 1  # the first byte of the gap after the JSON
    out["padding"] = xbin.reseal(padding)
    return {f"bad-{k}": v for k, v in out.items()}


def main() -> int:
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "fuzz" / "corpus" / "xbin"
    out_dir.mkdir(parents=True, exist_ok=True)
    seeds: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, g in models().items():
            path = Path(tmp) / f"{name}.xbin"
            xbin.write(g, path)
            seeds[name] = path.read_bytes()
            try:  # check that the model loads and runs when the extension is built
                import xnorinfer

                shape = g.metadata["input_shape"]
                xnorinfer.load(path).run(np.ones(shape, np.float32))
            except ImportError:
                pass
    seeds["valid-empty-section"] = xbin.assemble(
        [(xbin.KIND_JSON, "graph", b"{}"), (xbin.KIND_DATA, "param1", b""), (xbin.KIND_DATA, "param2", b"\1" * 8)]
    )
    seeds.update(damaged(seeds["valid-binary-dense"]))
    for old in out_dir.glob("*.xbin"):
        old.unlink()
    for name, data in sorted(seeds.items()):
        (out_dir / f"{name}.xbin").write_bytes(data)
    total = sum(len(d) for d in seeds.values())
    print(f"{len(seeds)} seeds, {total} bytes, in {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
