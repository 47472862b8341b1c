"""The IR's bit format (numpy): ±1 values packed along the last axis into uint64 words.

Bit 1 = -1, channel c in word c // 64 at bit c % 64, pad bits 0 (docs/ir.md). The converter packs
weights with it and the reference interprets `bits` tensors with it; it needs no torch.
"""

from __future__ import annotations

import numpy as np

WORD_BITS = 64


def words(channels: int) -> int:
    return (channels + WORD_BITS - 1) // WORD_BITS


def pack_last(negative: np.ndarray) -> np.ndarray:
    """Pack a boolean array (..., C) (True = -1) along the last axis into uint64 words (..., ceil(C/64))."""
    neg = np.asarray(negative, dtype=bool)
    c = neg.shape[-1]
    padded = np.zeros(neg.shape[:-1] + (words(c) * WORD_BITS,), dtype=bool)
    padded[..., :c] = neg
    as_bytes = np.packbits(padded, axis=-1, bitorder="little")
    return np.ascontiguousarray(as_bytes).view("<u8").astype(np.uint64).reshape(neg.shape[:-1] + (words(c),))


def unpack_last(packed: np.ndarray, channels: int) -> np.ndarray:
    """Inverse of `pack_last`: uint64 words (..., W) -> boolean (..., channels) (True = -1)."""
    p = np.ascontiguousarray(np.asarray(packed, dtype=np.uint64)).astype("<u8")
    as_bytes = p.view(np.uint8).reshape(p.shape[:-1] + (p.shape[-1] * 8,))
    return np.unpackbits(as_bytes, axis=-1, bitorder="little")[..., :channels].astype(bool)
