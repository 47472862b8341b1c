"""The engine's ops as the kernel tests call them, each through `_core.run_op`.

run_op builds the op with the runtime's own registry, schema checks and node factory, infers its
output shape, plans its workspace and runs it once: the tests reach every kernel exactly as a
loaded model does. The helpers only translate keyword arguments into an op's attributes and
parameters (docs/ir.md); the references the tests compare with live in reference.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xnorinfer import _core


def run_everywhere_op(kind: str, attrs: dict, inputs: list[np.ndarray], params: dict | None = None) -> np.ndarray:
    """The op on every ISA path and 1 / 2 threads; the results must agree bit for bit."""
    results = [
        _core.run_op(kind, attrs, params or {}, inputs, isa=isa, threads=threads)
        for isa in _core.available_isas()
        for threads in (1, 2)
    ]
    for r in results[1:]:
        assert r.shape == results[0].shape and r.tobytes() == results[0].tobytes()
    return results[0]


def _pair(v: Any) -> list[int]:
    return [int(v), int(v)] if np.isscalar(v) else [int(e) for e in v]


def sign_pack(x: np.ndarray, isa: str | None = None, pool: Any = None) -> np.ndarray:
    """The `sign` op (threshold 0, sign(0) = +1) on float32 (..., C): packed uint64 (..., words)."""
    x = np.asarray(x)
    if x.ndim < 1:
        raise ValueError("sign_pack: need at least 1 dimension (channels last)")
    rows = x.reshape(int(np.prod(x.shape[:-1])), x.shape[-1])
    if rows.shape[0] == 0:  # the engine never runs an empty tensor (the loader refuses empty shapes)
        return np.zeros(x.shape[:-1] + ((x.shape[-1] + 63) // 64,), np.uint64)
    y = _core.run_op("sign", {}, {}, [rows], isa=isa, pool=pool)
    return y.reshape(x.shape[:-1] + (y.shape[-1],))


def sign_pack_nchw(x: np.ndarray, isa: str | None = None) -> np.ndarray:
    """float32 NCHW -> packed NHWC words, by the `sign` op on the NHWC transpose."""
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"sign_pack_nchw: input must be (N, C, H, W), got {x.shape}")
    return sign_pack(np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1))), isa=isa)


def _binary_params(
    weights: np.ndarray,
    out_channels: int,
    output: str,
    threshold: np.ndarray | None,
    flip: np.ndarray | None,
    multiplier: np.ndarray | None,
    bias: np.ndarray | None,
) -> tuple[str, dict[str, np.ndarray]]:
    params: dict[str, np.ndarray] = {"weight": np.asarray(weights)}
    if output == "int32":
        # The exact integer sums as float (multiplier 1, bias 0: fma(1, s, 0) = s, exact below 2^24).
        params["multiplier"] = np.ones(out_channels, np.float32)
        params["bias"] = np.zeros(out_channels, np.float32)
        return "float", params
    for name, value in (("threshold", threshold), ("flip", flip), ("multiplier", multiplier), ("bias", bias)):
        if value is not None:
            params[name] = np.asarray(value)
    return output, params


class BinaryConv2d:
    """The `bconv2d` op. output="int32" gives the exact sums (as the float output of the identity
    transform, converted back: run_op has no integer outputs because the format has none)."""

    def __init__(
        self,
        weights: np.ndarray,
        in_channels: int,
        stride: Any = (1, 1),
        padding: Any = (0, 0),
        pad_mode: str = "zero",
        output: str = "int32",
        threshold: np.ndarray | None = None,
        flip: np.ndarray | None = None,
        multiplier: np.ndarray | None = None,
        bias: np.ndarray | None = None,
    ) -> None:
        self.weights = np.asarray(weights)
        self.in_channels = in_channels
        self.out_channels = int(self.weights.shape[0]) if self.weights.ndim else 0
        self.output = output
        kind, self.params = _binary_params(self.weights, self.out_channels, output, threshold, flip, multiplier, bias)
        self.attrs = {
            "stride": _pair(stride),
            "padding": _pair(padding),
            "pad_mode": pad_mode,
            "output": kind,
            "in_channels": in_channels,
        }

    def run(self, x: np.ndarray, out: np.ndarray | None = None, pool: Any = None, isa: str | None = None) -> np.ndarray:
        y = _core.run_op(
            "bconv2d",
            self.attrs,
            self.params,
            [x],
            isa=isa,
            pool=pool,
            channels=[self.in_channels],
            out=out,
        )
        return y.astype(np.int32) if self.output == "int32" else y

    def output_shape(self, n: int, h: int, w: int) -> tuple[int, ...]:
        """The engine's shape inference, by running on an input of that shape."""
        words = (self.in_channels + 63) // 64
        return self.run(np.zeros((n, h, w, words), np.uint64)).shape

    def held_bytes(self) -> int:
        """Bytes the built node holds (its repacked weights and per-block constants)."""
        return int(_core.PreparedOp("bconv2d", self.attrs, self.params, [self.in_channels]).held_bytes)

    def layout(self) -> dict[str, int]:
        """The built layer's reduction layout: k_words, taps_per_word, slot_bits."""
        return dict(_core.PreparedOp("bconv2d", self.attrs, self.params, [self.in_channels]).bgemm_layout)


class BinaryLinear:
    """The `blinear` op; output="int32" as for BinaryConv2d."""

    def __init__(
        self,
        weights: np.ndarray,
        in_features: int,
        output: str = "int32",
        threshold: np.ndarray | None = None,
        flip: np.ndarray | None = None,
        multiplier: np.ndarray | None = None,
        bias: np.ndarray | None = None,
    ) -> None:
        self.weights = np.asarray(weights)
        self.in_features = in_features
        self.out_features = int(self.weights.shape[0]) if self.weights.ndim else 0
        self.output = output
        kind, self.params = _binary_params(self.weights, self.out_features, output, threshold, flip, multiplier, bias)
        self.attrs = {"output": kind, "in_features": in_features}

    def run(self, x: np.ndarray, out: np.ndarray | None = None, pool: Any = None, isa: str | None = None) -> np.ndarray:
        y = _core.run_op(
            "blinear", self.attrs, self.params, [x], isa=isa, pool=pool, channels=[self.in_features], out=out
        )
        return y.astype(np.int32) if self.output == "int32" else y


class Conv2d:
    """The `conv2d` op: float NHWC input, OHWI weights."""

    def __init__(
        self,
        weight: np.ndarray,
        bias: np.ndarray | None,
        stride: Any = (1, 1),
        padding: Any = (0, 0),
        relu: bool = False,
    ) -> None:
        self.params = {"weight": np.asarray(weight)}
        if bias is not None:
            self.params["bias"] = np.asarray(bias)
        self.attrs = {"stride": _pair(stride), "padding": _pair(padding), "relu": bool(relu)}

    def run(self, x: np.ndarray, out: np.ndarray | None = None, pool: Any = None, isa: str | None = None) -> np.ndarray:
        return _core.run_op("conv2d", self.attrs, self.params, [x], isa=isa, pool=pool, out=out)

    def output_shape(self, n: int, h: int, w: int) -> tuple[int, ...]:
        cin = int(self.params["weight"].shape[-1])
        return self.run(np.zeros((n, h, w, cin), np.float32)).shape


class Linear:
    """The `linear` op: y = x W^T + b."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray | None, relu: bool = False) -> None:
        self.params = {"weight": np.asarray(weight)}
        if bias is not None:
            self.params["bias"] = np.asarray(bias)
        self.attrs = {"relu": bool(relu)}

    def run(self, x: np.ndarray, out: np.ndarray | None = None, pool: Any = None, isa: str | None = None) -> np.ndarray:
        return _core.run_op("linear", self.attrs, self.params, [x], isa=isa, pool=pool, out=out)


def _pool_attrs(kernel: Any, stride: Any, padding: Any) -> dict[str, Any]:
    return {"kernel": _pair(kernel), "stride": _pair(kernel if stride is None else stride), "padding": _pair(padding)}


def maxpool2d(
    x: np.ndarray, kernel: Any, stride: Any = None, padding: Any = (0, 0), pool: Any = None, isa: str | None = None
) -> np.ndarray:
    return _core.run_op("maxpool2d", _pool_attrs(kernel, stride, padding), {}, [x], isa=isa, pool=pool)


def avgpool2d(
    x: np.ndarray,
    kernel: Any,
    stride: Any = None,
    padding: Any = (0, 0),
    count_include_pad: bool = True,
    pool: Any = None,
    isa: str | None = None,
) -> np.ndarray:
    attrs = _pool_attrs(kernel, stride, padding)
    attrs["count_include_pad"] = bool(count_include_pad)
    return _core.run_op("avgpool2d", attrs, {}, [x], isa=isa, pool=pool)


def global_avgpool(x: np.ndarray, pool: Any = None, isa: str | None = None) -> np.ndarray:
    return _core.run_op("global_avgpool", {}, {}, [x], isa=isa, pool=pool)


def binary_maxpool2d(
    x: np.ndarray, kernel: Any, stride: Any = None, padding: Any = (0, 0), pool: Any = None, isa: str | None = None
) -> np.ndarray:
    """The `bmaxpool2d` op on packed NHWC words (every bit of each word taken as a channel)."""
    return _core.run_op("bmaxpool2d", _pool_attrs(kernel, stride, padding), {}, [x], isa=isa, pool=pool)
