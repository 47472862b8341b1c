"""Independent float64 / numpy references for the binary kernels.

Nothing here calls ``xnorinfer._core``: bits are packed with ``np.packbits``,
convolutions and pooling are PyTorch float64 ops on +-1 tensors, and the fused
float epilogue is a correctly rounded float32 fma built from float64 pieces.

Conventions (docs/DESIGN.md, "Data conventions"): bit 1 = -1 (x < 0), bit 0 = +1
(x >= 0, so 0.0 and -0.0 are +1); channel c lives in word c // 64, bit c % 64;
pad bits past C are 0.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

WORD_BITS = 64
INT32_MIN = int(np.iinfo(np.int32).min)
INT32_MAX = int(np.iinfo(np.int32).max)


def words_for(channels: int) -> int:
    return (channels + WORD_BITS - 1) // WORD_BITS


# --------------------------------------------------------------------------- packing


def pack_bool_last(bits: np.ndarray) -> np.ndarray:
    """Pack a boolean array (..., C) (True = -1) into uint64 words (..., ceil(C/64))."""
    bits = np.asarray(bits, dtype=bool)
    c = bits.shape[-1]
    w = words_for(c)
    padded = np.zeros(bits.shape[:-1] + (w * WORD_BITS,), dtype=bool)
    padded[..., :c] = bits
    as_bytes = np.packbits(padded, axis=-1, bitorder="little")  # (..., w*8) uint8
    return np.ascontiguousarray(as_bytes).view("<u8").astype(np.uint64).reshape(bits.shape[:-1] + (w,))


def pack_nhwc(x: np.ndarray) -> np.ndarray:
    """Reference of the sign op's packing: bit = 1 where x < 0 (so -0.0 -> 0, NaN excluded)."""
    return pack_bool_last(np.asarray(x) < 0)


def pack_nchw(x: np.ndarray) -> np.ndarray:
    """NCHW packing: (N, C, H, W) float -> (N, H, W, words) uint64."""
    return pack_nhwc(np.transpose(np.asarray(x), (0, 2, 3, 1)))


def unpack_last(words: np.ndarray, channels: int) -> np.ndarray:
    """Inverse of pack_bool_last: uint64 (..., words) -> bool (..., channels), True = -1."""
    words = np.ascontiguousarray(words, dtype="<u8")
    as_bytes = words.view(np.uint8).reshape(words.shape[:-1] + (words.shape[-1] * 8,))
    return np.unpackbits(as_bytes, axis=-1, bitorder="little")[..., :channels].astype(bool)


def pad_bits_of(words: np.ndarray, channels: int) -> np.ndarray:
    """The bits past `channels` in the last word of each pixel (must be zero)."""
    used = channels % WORD_BITS
    if used == 0:
        return np.zeros(words.shape[:-1], dtype=np.uint64)
    mask = np.uint64(~((1 << used) - 1) & ((1 << 64) - 1))
    return words[..., -1] & mask


# --------------------------------------------------------------------------- data


def random_pm1(rng: np.random.Generator, shape) -> np.ndarray:
    """Random float32 tensor of +-1 values."""
    return np.where(rng.random(shape) < 0.5, np.float32(-1.0), np.float32(1.0)).astype(np.float32)


def pack_weights_oihw(w: np.ndarray) -> np.ndarray:
    """+-1 weights (O, I, KH, KW) -> packed (O, KH, KW, ceil(I/64)) uint64 (OHWI order)."""
    return pack_nhwc(np.transpose(w, (0, 2, 3, 1)))


# --------------------------------------------------------------------------- conv


def conv_sums(x_nchw: np.ndarray, w_oihw: np.ndarray, stride, padding, pad_mode: str) -> np.ndarray:
    """Exact integer conv sums as int64 NHWC, from a float64 torch conv of +-1 tensors.

    'zero' pads with 0.0 exactly like torch; 'plus_one' / 'minus_one' pad the +-1
    tensor with the constant and then run a valid conv.
    """
    sh, sw = stride
    ph, pw = padding
    xt = torch.from_numpy(np.asarray(x_nchw, dtype=np.float64))
    wt = torch.from_numpy(np.asarray(w_oihw, dtype=np.float64))
    if pad_mode == "zero":
        y = F.conv2d(xt, wt, stride=(sh, sw), padding=(ph, pw))
    else:
        value = {"plus_one": 1.0, "minus_one": -1.0}[pad_mode]
        xp = F.pad(xt, (pw, pw, ph, ph), mode="constant", value=value)
        y = F.conv2d(xp, wt, stride=(sh, sw), padding=0)
    y = y.numpy()
    s = np.rint(y).astype(np.int64)
    assert np.array_equal(s.astype(np.float64), y), "reference conv sum is not an integer"
    return np.ascontiguousarray(np.transpose(s, (0, 2, 3, 1)))


def threshold_bits(s_nhwc: np.ndarray, threshold: np.ndarray, flip: np.ndarray) -> np.ndarray:
    """Packed bit output: bit = (s < threshold[c]) XOR flip[c]."""
    bits = (s_nhwc < threshold.astype(np.int64)) ^ flip.astype(bool)
    return pack_bool_last(bits)


def fma_f32(multiplier: np.ndarray, s: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Correctly rounded float32 fma(multiplier, float32(s), bias), computed without fma.

    float32(s) is exact for |s| < 2**24; the product of two float32 values is exact in
    float64. The sum p + b is computed in float64 with round-to-odd (TwoSum gives the
    exact error), and round-to-odd to 53 bits followed by round-to-nearest to 24 bits
    equals a single round-to-nearest of the exact value.
    """
    s = np.asarray(s)
    assert np.all(np.abs(s) < 2**24)
    m = np.asarray(multiplier, dtype=np.float32).astype(np.float64)
    b = np.asarray(bias, dtype=np.float32).astype(np.float64)
    p = m * s.astype(np.float32).astype(np.float64)  # exact
    hi = p + b
    bb = hi - p
    lo = (p - (hi - bb)) + (b - bb)  # exact error of hi (TwoSum)
    even = (hi.view(np.int64) & 1) == 0
    nudge = (lo != 0) & even & np.isfinite(hi)
    hi = np.where(nudge, np.nextafter(hi, np.where(lo > 0, np.inf, -np.inf)), hi)
    return hi.astype(np.float32)


# --------------------------------------------------------------------------- pooling


def maxpool_pm1(x_nchw: np.ndarray, kernel, stride, padding) -> np.ndarray:
    """torch max_pool2d of a +-1 tensor in float64 (padding is -inf), as NCHW float64."""
    xt = torch.from_numpy(np.asarray(x_nchw, dtype=np.float64))
    return F.max_pool2d(xt, kernel_size=kernel, stride=stride, padding=padding).numpy()
