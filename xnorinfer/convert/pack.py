"""Packing of ±1 weights into the IR's bit format (xnorinfer.bits: bit 1 = -1, 64 channels a word)."""

from __future__ import annotations

import numpy as np

from xnorinfer.bits import WORD_BITS, pack_last, unpack_last, words

__all__ = ["WORD_BITS", "words", "pack_last", "unpack_last", "pack_conv_weight", "pack_linear_weight"]


def pack_conv_weight(sign_oihw: np.ndarray) -> np.ndarray:
    """±1 conv weight (O, I, KH, KW) -> uint64 (O, KH, KW, ceil(I/64)), packed along input channels."""
    return pack_last(np.transpose(np.asarray(sign_oihw), (0, 2, 3, 1)) < 0)


def pack_linear_weight(sign_of: np.ndarray) -> np.ndarray:
    """±1 dense weight (O, F) -> uint64 (O, ceil(F/64))."""
    return pack_last(np.asarray(sign_of) < 0)
