"""Typed payloads of the converter graph's nodes (`graph.Node.attrs`), one class per kind of node.

capture.py fills the payloads of the ATen-level ops, patterns.py those of the recognised ops, and
lower.py reads them back. Payloads are frozen: a transformation that changes one builds a new one
(`dataclasses.replace`). Ops without parameters of their own (add, relu, concat, ...) carry `NoAttrs`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, TypeAlias

import numpy as np

SignZero = Literal["0", "+1", "-1"]  # what sign(0) is in the source model ("0": torch.sign)
Pair = tuple[int, int]


@dataclass(frozen=True)
class ChannelStage:
    """y = y <kind> v, v per channel (C,) float64."""

    kind: Literal["add", "sub", "mul", "div"]
    v: np.ndarray


@dataclass(frozen=True)
class BatchNormStage:
    """y = (y - mean) / sqrt(var + eps) * gamma + beta, per channel."""

    gamma: np.ndarray
    beta: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    eps: float


# One per-channel stage of a binary layer's float epilogue (fold.py evaluates chains of them).
Stage: TypeAlias = ChannelStage | BatchNormStage


@dataclass(frozen=True)
class NoAttrs:
    """An op whose behaviour is fully given by its kind and inputs."""


@dataclass(frozen=True)
class ConvAttrs:
    """conv2d (capture): NCHW convolution."""

    stride: Pair
    padding: Pair
    weight_param: str | None = None  # the weight's parameter name, for `binarize`
    groups: int = 1  # > 1: grouped / depthwise (always float)
    dilation: Pair = (1, 1)  # != (1, 1): dilated (always float)


@dataclass(frozen=True)
class LinearAttrs:
    """linear (capture): y = x @ W.T (+ b); the weight input is (out, in)."""

    weight_param: str | None = None


@dataclass(frozen=True)
class BatchNormAttrs:
    eps: float


@dataclass(frozen=True)
class HardtanhAttrs:
    min_val: float
    max_val: float


@dataclass(frozen=True)
class PoolAttrs:
    """maxpool2d / bmaxpool2d."""

    kernel: Pair
    stride: Pair
    padding: Pair
    ceil_mode: bool = field(default=False, kw_only=True)  # PyTorch's ceil_mode (float pools only)
    # (C,) bool or None: channels that take the min, set when the pool moved past a decreasing
    # per-channel op (patterns.MaxPoolSink); only bmaxpool2d runs it (param min_channels)
    min_channels: np.ndarray | None = field(default=None, kw_only=True)


@dataclass(frozen=True)
class AvgPoolAttrs(PoolAttrs):
    count_include_pad: bool = True


@dataclass(frozen=True)
class ActSignAttrs:
    """act_sign: bit = -1 where x < threshold (x <= threshold for sign_zero "-1"), per channel.

    threshold is (J, C) float64: J >= 2 for decoupled signs that become J * C output channels.
    """

    threshold: np.ndarray
    sign_zero: SignZero
    ste: str  # how the source model wrote the sign (for the report)


@dataclass(frozen=True)
class SignFold:
    """The sign that follows a binary layer, folded into an integer threshold (fold.thresholds)."""

    threshold: np.ndarray  # int32 (C,)
    flip: np.ndarray  # uint8 (C,)
    sign_zero: SignZero
    ste: str
    k: int  # number of ±1 terms in each output's sum
    constant: list[int] = field(default_factory=list)
    ties: list[tuple[int, int]] = field(default_factory=list)
    float32_disagree: list[tuple[int, int]] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class BinaryLayerAttrs:
    """bconv2d / blinear: ±1 weights times a per-channel alpha, then the float epilogue `chain`.

    With `sign` set the layer outputs bits (the chain and the sign folded to thresholds); without,
    floats (the chain composed into multiplier/bias when lowering).
    """

    weight_sign: np.ndarray  # int8 ±1, (O, I, KH, KW) or (O, F)
    alpha: np.ndarray  # float64 (O,)
    chain: tuple[Stage, ...] = ()
    weight_kind: str = ""  # how the weights were found binary (for messages)
    sign: SignFold | None = None


@dataclass(frozen=True, kw_only=True)
class BinaryConvAttrs(BinaryLayerAttrs):
    stride: Pair
    padding: Pair
    pad_mode: Literal["zero", "plus_one", "minus_one"] = "zero"  # a ±1 F.pad folded in (patterns.py)


@dataclass(frozen=True, kw_only=True)
class WeightPlaneAttrs:
    """bwconv2d / bwlinear: binary (BWN) or ternary (TTQ) weights on a float input.

    Weight = scale_pos * [t = +1] - scale_neg * [t = -1] per output channel; the bias stays the
    node's third input. `stride` / `padding` for the conv only.
    """

    ternary: np.ndarray  # int8 {-1, 0, +1}, (O, I, KH, KW) or (O, F)
    scale_pos: np.ndarray  # float64 (O,)
    scale_neg: np.ndarray  # float64 (O,)
    weight_kind: str  # how the weights were found binary / ternary (for the report)
    stride: Pair = (1, 1)
    padding: Pair = (0, 0)


@dataclass(frozen=True)
class PReLUAttrs:
    """prelu (with RPReLU's optional shifts): y = prelu(x - pre_shift, slope) + post_shift."""

    slope: np.ndarray
    pre_shift: np.ndarray | None = None
    post_shift: np.ndarray | None = None


@dataclass(frozen=True)
class AffineAttrs:
    """affine: y = scale * x + shift per channel (float32 values)."""

    scale: np.ndarray
    shift: np.ndarray


@dataclass(frozen=True)
class PadAttrs:
    """pad (capture): constant padding of an NCHW tensor, each side's count and the fill value."""

    top: int
    bottom: int
    left: int
    right: int
    front: int = 0  # channels
    back: int = 0
    value: float = 0.0
    mode: Literal["constant", "reflect", "replicate"] = "constant"  # reflect / replicate: H and W only


@dataclass(frozen=True)
class SliceAttrs:
    """slice (capture): x[start:stop:step] along PyTorch dim `dim` (1 = C, 2 = H, 3 = W), bounds resolved."""

    dim: int
    start: int
    stop: int
    step: int


@dataclass(frozen=True)
class CompareAttrs:
    """compare: 1.0 where x OP threshold (per channel, float64 of the float32 value), else 0.0."""

    cmp: Literal["gt", "ge", "lt", "le", "eq", "ne"]
    threshold: np.ndarray  # (C,)


@dataclass(frozen=True)
class AxisAttrs:
    """softmax / log_softmax / cat (capture): the PyTorch dim they act along (non-negative)."""

    dim: int


@dataclass(frozen=True)
class PermuteAttrs:
    """transpose (capture): y = x.permute(perm), PyTorch dims."""

    perm: tuple[int, ...]


@dataclass(frozen=True)
class ReduceAttrs:
    """reduce (capture): op over PyTorch `dims` (sorted, non-negative); var: the correction subtracted from n."""

    op: Literal["mean", "sum", "max", "min", "var"]
    dims: tuple[int, ...]
    keepdim: bool
    correction: float = 0.0


@dataclass(frozen=True)
class LayerNormAttrs:
    """layer_norm (capture): normalise over the last `ndims` PyTorch dims (then weight, bias if given)."""

    ndims: int
    eps: float


@dataclass(frozen=True)
class BinaryOpAttrs:
    """binary (capture): an element-wise op of two tensors with numpy broadcasting (max, min, pow, ...)."""

    op: str


@dataclass(frozen=True)
class UnaryAttrs:
    """gelu, leaky_relu, elu (capture): the IR op of the node's name with these IR attributes."""

    values: tuple[tuple[str, float | str], ...] = ()


@dataclass(frozen=True)
class ConvTransposeAttrs:
    """conv_transpose2d (capture): PyTorch's ConvTranspose2d; the weight input is (I, O / groups, KH, KW)."""

    stride: Pair
    padding: Pair
    output_padding: Pair
    dilation: Pair
    groups: int = 1


@dataclass(frozen=True)
class ResizeAttrs:
    """resize (capture): to the node's output size; scales are PyTorch's scale factors (out / in) if given."""

    mode: Literal["nearest", "nearest_exact", "bilinear", "bicubic"]
    align_corners: bool = False
    scales: tuple[float | None, float | None] = (None, None)


@dataclass(frozen=True)
class AdaptivePoolAttrs:
    """adaptive_avgpool2d / adaptive_maxpool2d (capture): to output size (OH, OW)."""

    size: Pair


@dataclass(frozen=True)
class IndexAttrs:
    """arg_reduce / topk / cumsum / take / gather (capture): along PyTorch `dim`."""

    dim: int
    op: str = ""  # arg_reduce: "argmax" / "argmin"; topk: "values" / "indices"
    keepdim: bool = False  # arg_reduce
    k: int = 0  # topk
    largest: bool = True  # topk


@dataclass(frozen=True)
class BitPlaneAttrs:
    """bitplane: +1 where bit `plane` of q = #{m : x >= threshold[m-1, c]} is set (threshold (2^bits - 1, C)
    float64, sorted along m; None: m - 0.5 for every channel, q = x for an integer x)."""

    plane: int
    bits: int
    threshold: np.ndarray | None = None


NodeAttrs: TypeAlias = (
    NoAttrs
    | ConvAttrs
    | LinearAttrs
    | BatchNormAttrs
    | HardtanhAttrs
    | PoolAttrs
    | ActSignAttrs
    | BinaryLayerAttrs
    | PReLUAttrs
    | AffineAttrs
    | PadAttrs
    | SliceAttrs
    | CompareAttrs
    | AxisAttrs
    | PermuteAttrs
    | ReduceAttrs
    | LayerNormAttrs
    | BinaryOpAttrs
    | UnaryAttrs
    | ConvTransposeAttrs
    | ResizeAttrs
    | AdaptivePoolAttrs
    | IndexAttrs
    | BitPlaneAttrs
)
