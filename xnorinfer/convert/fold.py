"""Exact folding of the float epilogue of a binary layer.

A binary conv/linear computes an integer sum ``s`` in [-K, K]; the float model then applies
``y = alpha * s`` followed by a chain of per-channel stages (bias add, BatchNorm, scales, the
shift of a learnable sign). `thresholds` evaluates the real step ``sign(chain(alpha * s) - t)``
for every integer ``s`` in [-K, K] (float64, vectorised), reads off one integer threshold per
channel in the IR's (threshold, flip) encoding, and cross-checks a float32 evaluation of the same
chain; `affine` composes the chain into the ``multiplier``/``bias`` of a float output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from xnorinfer.convert.attrs import BatchNormStage, SignZero, Stage
from xnorinfer.convert.graph import ConversionError

INT32_MIN = int(np.iinfo(np.int32).min)
_CHANNEL_OPS = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}


def eval_chain(chain: Sequence[Stage], alpha: np.ndarray, s: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """chain(alpha * s) for s of shape (S,), per channel -> (C, S), in `dtype` arithmetic.

    The float32 path mirrors PyTorch's CPU order of operations (BatchNorm as
    ``x * (gamma / sqrt(var + eps)) + (beta - mean * gamma / sqrt(var + eps))``).
    """
    a = np.asarray(alpha, dtype=dtype)[:, None]
    y = a * np.asarray(s, dtype=dtype)[None, :]
    for stage in chain:
        if isinstance(stage, BatchNormStage):
            g, b, m, var = (
                np.asarray(p, dtype=dtype)[:, None] for p in (stage.gamma, stage.beta, stage.mean, stage.var)
            )
            if dtype == np.float64:
                y = (y - m) / np.sqrt(var + stage.eps) * g + b
            else:
                invstd = (1.0 / np.sqrt(var + np.float32(stage.eps))).astype(dtype)
                sc = (invstd * g).astype(dtype)
                y = y * sc + (b - m * sc).astype(dtype)
        else:
            y = _CHANNEL_OPS[stage.kind](y, np.asarray(stage.v, dtype=dtype)[:, None])
        y = y.astype(dtype)
    return y


def affine(chain: Sequence[Stage], alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Compose alpha and the chain into y = multiplier * s + bias (float64, rounded once to float32)."""
    m = np.asarray(alpha, dtype=np.float64).copy()
    c = np.zeros_like(m)
    for stage in chain:
        if isinstance(stage, BatchNormStage):
            sc = np.asarray(stage.gamma, np.float64) / np.sqrt(np.asarray(stage.var, np.float64) + stage.eps)
            m, c = m * sc, (c - stage.mean) * sc + stage.beta
        elif stage.kind == "add":
            c = c + stage.v
        elif stage.kind == "sub":
            c = c - stage.v
        elif stage.kind == "mul":
            m, c = m * stage.v, c * stage.v
        elif stage.kind == "div":
            m, c = m / stage.v, c / stage.v
        else:  # pragma: no cover - ChannelStage.kind is one of the four
            raise ValueError(stage.kind)
    return m.astype(np.float32), c.astype(np.float32)


@dataclass
class ThresholdFold:
    threshold: np.ndarray  # int32 (C,)
    flip: np.ndarray  # uint8 (C,)
    constant: list[int] = field(default_factory=list)  # channels with a constant output
    ties: list[tuple[int, int]] = field(default_factory=list)  # (channel, s) where the float64 value == t
    float32_disagree: list[tuple[int, int]] = field(default_factory=list)  # (channel, s) float32 != float64


def step_bits(values: np.ndarray, t: np.ndarray, sign_zero: SignZero) -> np.ndarray:
    """Bit (True = -1) of sign(values - t) under the model's sign(0) convention ("0" counts as +1)."""
    t = np.asarray(t)[:, None]
    return values <= t if sign_zero == "-1" else values < t


def thresholds(
    chain: Sequence[Stage], alpha: np.ndarray, k: int, t: np.ndarray | None = None, sign_zero: SignZero = "+1"
) -> ThresholdFold:
    """Integer threshold and flip per channel so that ``(s < thr) XOR flip`` equals the float step.

    `k` is the number of ±1 terms of the sum (s is evaluated for every integer in [-k, k]); `t`
    the per-channel threshold of the sign that follows (0 for a plain sign).
    """
    alpha = np.asarray(alpha, dtype=np.float64)
    c = alpha.shape[0]
    t = np.zeros(c) if t is None else np.asarray(t, dtype=np.float64)
    s = np.arange(-k, k + 1, dtype=np.int64)
    v64 = eval_chain(chain, alpha, s, np.float64)
    bits = step_bits(v64, t, sign_zero)
    v32 = eval_chain(chain, alpha, s, np.float32)
    bits32 = step_bits(v32.astype(np.float64), t.astype(np.float32).astype(np.float64), sign_zero)
    thr = np.empty(c, dtype=np.int64)
    flip = np.zeros(c, dtype=np.uint8)
    const: list[int] = []
    for ch in range(c):
        b = bits[ch]
        if b.all() or not b.any():
            thr[ch], flip[ch] = INT32_MIN, int(b[0])
            const.append(ch)
            continue
        changes = np.flatnonzero(b[1:] != b[:-1])
        if len(changes) != 1:
            raise ConversionError(f"channel {ch}: the folded step is not monotone in the integer sum")
        first_after = int(s[changes[0] + 1])
        thr[ch], flip[ch] = first_after, (0 if b[0] else 1)  # 1...1 0...0 -> s < thr; 0..0 1..1 -> s >= thr
    ties = [(int(ch), int(s[j])) for ch, j in zip(*np.nonzero(v64 == t[:, None]), strict=True)]
    dis = [(int(ch), int(s[j])) for ch, j in zip(*np.nonzero(bits != bits32), strict=True)]
    return ThresholdFold(thr.astype(np.int32), flip, const, ties, dis)


def apply_threshold(s: np.ndarray, thr: np.ndarray, flip: np.ndarray) -> np.ndarray:
    """The IR's bit rule: (s < threshold[c]) XOR flip[c], for s (..., C)."""
    return (np.asarray(s, np.int64) < np.asarray(thr, np.int64)) ^ np.asarray(flip, bool)
