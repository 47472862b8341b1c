"""The float image ops of the IR on NHWC tensors: transposed convolution, resizing and adaptive
pooling (docs/ir.md has each one's rule).

Reference arrays are NHWC float64; torch tensors are NCHW. Each reference is written from PyTorch's
definition (scatter form for the transposed convolution, the upsample kernels' index rules,
adaptive windows), independently of the engine's loops.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from xnorinfer.ops.schema import Attr, OpDef, Param, Shape

if TYPE_CHECKING:
    from xnorinfer import ir

PAIR = Attr("ints")


def _f32(attrs: Mapping[str, Any]) -> str:
    return "f32"


def _four_d(op: ir.Op, shapes: Sequence[Shape]) -> Shape:
    if len(shapes[0]) != 4:
        raise ValueError(f"op {op.name} ({op.kind}): input must be NHWC, got {tuple(shapes[0])}")
    return tuple(shapes[0])


def _size(op: ir.Op) -> tuple[int, int]:
    oh, ow = op.attrs["size"]
    if oh < 1 or ow < 1:
        raise ValueError(f"op {op.name} ({op.kind}): size must be positive, got {[oh, ow]}")
    return int(oh), int(ow)


# conv_transpose2d: weight stored (O, KH, KW, I / groups)


def _ct_attrs(op: ir.Op) -> tuple[tuple[int, int], ...]:
    a = op.attrs
    return (
        tuple(a["stride"]),
        tuple(a["padding"]),
        tuple(a.get("output_padding", (0, 0))),
        tuple(a.get("dilation", (1, 1))),
    )


def _ct_shape(op: ir.Op, shapes: Sequence[Shape]) -> Shape:
    n, h, w, c = _four_d(op, shapes)
    o, kh, kw, ipg = op.params["weight"].shape
    groups = int(op.attrs.get("groups", 1))
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = _ct_attrs(op)
    where = f"op {op.name} (conv_transpose2d)"
    if groups < 1 or o % groups or c != ipg * groups:
        raise ValueError(f"{where}: {groups} group(s) of weight {(o, kh, kw, ipg)} do not fit {c} input channels")
    if min(sh, sw, dh, dw) < 1 or min(ph, pw, oph, opw) < 0 or oph >= max(sh, dh) or opw >= max(sw, dw):
        raise ValueError(f"{where}: stride and dilation must be positive, output_padding below stride or dilation")
    oh = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    ow = (w - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    if oh < 1 or ow < 1:
        raise ValueError(f"{where}: input {tuple(shapes[0])} gives an empty output")
    return (n, oh, ow, o)


def _ct_ref(op: ir.Op, ins: list[np.ndarray], tensors: list[ir.Tensor]) -> np.ndarray:
    """Scatter form: every input pixel adds weight * x to the outputs its taps reach."""
    x = ins[0]
    w = op.params["weight"].astype(np.float64)
    o, kh, kw, ipg = w.shape
    groups = int(op.attrs.get("groups", 1))
    opg = o // groups
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = _ct_attrs(op)
    n, h, wd, _ = x.shape
    full_h = (h - 1) * sh + dh * (kh - 1) + 1 + oph
    full_w = (wd - 1) * sw + dw * (kw - 1) + 1 + opw
    y = np.zeros((n, full_h + ph, full_w + pw, o))  # room for output_padding past the last tap
    for g in range(groups):
        xg = x[..., g * ipg : (g + 1) * ipg]
        wg = w[g * opg : (g + 1) * opg]
        for ky in range(kh):
            for kx in range(kw):
                contrib = xg @ wg[:, ky, kx, :].T  # (n, h, w, opg)
                y0, x0 = ky * dh, kx * dw
                y[:, y0 : y0 + (h - 1) * sh + 1 : sh, x0 : x0 + (wd - 1) * sw + 1 : sw, g * opg : (g + 1) * opg] += (
                    contrib
                )
    oh, ow = _ct_shape(op, [x.shape])[1:3]
    y = y[:, ph : ph + oh, pw : pw + ow]
    return y + op.params["bias"].astype(np.float64) if "bias" in op.params else y


def _ct_torch(op: ir.Op, ins: list[Any], p: Mapping[str, Any]) -> Any:
    import torch.nn.functional as F

    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = _ct_attrs(op)
    groups = int(op.attrs.get("groups", 1))
    return F.conv_transpose2d(ins[0], p["weight"], p.get("bias"), (sh, sw), (ph, pw), (oph, opw), groups, (dh, dw))


def _ct_torch_param(op: ir.Op, name: str, value: np.ndarray) -> Any:
    """The stored (O, KH, KW, I / groups) weight back as PyTorch's (I, O / groups, KH, KW)."""
    import torch

    if name != "weight":
        return torch.from_numpy(np.ascontiguousarray(value))
    groups = int(op.attrs.get("groups", 1))
    o, kh, kw, ipg = value.shape
    w = value.reshape(groups, o // groups, kh, kw, ipg).transpose(0, 4, 1, 2, 3)
    return torch.from_numpy(np.ascontiguousarray(w.reshape(groups * ipg, o // groups, kh, kw)))


def torch_to_ct_weight(w: np.ndarray, groups: int) -> np.ndarray:
    """PyTorch's ConvTranspose2d weight (I, O / groups, KH, KW) as the IR's (O, KH, KW, I / groups)."""
    i, opg, kh, kw = w.shape
    ipg = i // groups
    g = w.reshape(groups, ipg, opg, kh, kw).transpose(0, 2, 3, 4, 1)  # (groups, opg, kh, kw, ipg)
    return np.ascontiguousarray(g.reshape(groups * opg, kh, kw, ipg))


def _ct_cost(attrs: Mapping[str, Any], params: Mapping[str, Shape], x: Shape, y: Shape) -> tuple[int, int, None]:
    o, kh, kw, ipg = params["weight"]
    return 0, 2 * math.prod(x[1:-1]) * o * kh * kw * ipg, None


CONV_TRANSPOSE2D = OpDef(
    "conv_transpose2d",
    "f32 NHWC -> f32 NHWC: PyTorch's conv_transpose2d (stride, padding, output_padding, dilation, groups), + bias",
    "f32",
    _f32,
    _ct_shape,
    _ct_ref,
    _ct_torch,
    attrs={
        "stride": PAIR,
        "padding": PAIR,
        "output_padding": Attr("ints", False, (0, 0)),
        "dilation": Attr("ints", False, (1, 1)),
        "groups": Attr("int", False, 1),
    },
    params={"weight": Param("float32"), "bias": Param("float32", False)},
    cost=_ct_cost,
    torch_param=_ct_torch_param,
)


# resize

RESIZE_MODES = ("nearest", "nearest_exact", "bilinear", "bicubic")
_ALIGNABLE = ("bilinear", "bicubic")  # the modes that take align_corners


def _resize_shape(op: ir.Op, shapes: Sequence[Shape]) -> Shape:
    n, _, _, c = _four_d(op, shapes)
    if op.attrs.get("align_corners", False) and op.attrs["mode"] not in _ALIGNABLE:
        raise ValueError(f"op {op.name} (resize): align_corners is for bilinear and bicubic only")
    for key in ("scale_h", "scale_w"):
        if key in op.attrs and not op.attrs[key] > 0:
            raise ValueError(f"op {op.name} (resize): {key} must be positive")
    return (n, *_size(op), c)


def _step(op: ir.Op, size_in: int, size_out: int, key: str) -> np.float32:
    """PyTorch's source step per output index, in float32 as its kernels compute it."""
    if op.attrs["mode"] in _ALIGNABLE and op.attrs.get("align_corners", False):
        return np.float32(size_in - 1) / np.float32(size_out - 1) if size_out > 1 else np.float32(0)
    if key in op.attrs:
        return np.float32(1.0 / float(op.attrs[key]))
    return np.float32(size_in) / np.float32(size_out)


def _nearest_index(op: ir.Op, size_in: int, size_out: int, key: str) -> np.ndarray:
    dst = np.arange(size_out)
    if op.attrs["mode"] == "nearest" and size_out in (size_in, 2 * size_in):
        return dst * size_in // size_out
    off = np.float32(0.5) if op.attrs["mode"] == "nearest_exact" else np.float32(0)
    src = np.floor((dst.astype(np.float32) + off) * _step(op, size_in, size_out, key)).astype(np.int64)
    return np.minimum(src, size_in - 1)


def _linear_weights(op: ir.Op, size_in: int, size_out: int, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(index0, index1, lambda1) per output index: upsample_bilinear2d's source positions."""
    dst = np.arange(size_out, dtype=np.float64)
    if size_in == size_out:
        i = np.arange(size_out)
        return i, i, np.zeros(size_out)
    scale = float(_step(op, size_in, size_out, key))
    if op.attrs.get("align_corners", False):
        src = scale * dst
    else:
        src = np.maximum(scale * (dst + 0.5) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), size_in - 1)
    lam = np.clip(src - i0, 0.0, 1.0)
    return i0, np.minimum(i0 + 1, size_in - 1), lam


def _cubic_weights(op: ir.Op, size_in: int, size_out: int, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(indices (out, 4), weights (out, 4)): upsample_bicubic2d's taps (Keys' kernel, A = -0.75), float64."""
    a = -0.75
    dst = np.arange(size_out, dtype=np.float64)
    scale = float(_step(op, size_in, size_out, key))
    src = scale * dst if op.attrs.get("align_corners", False) else scale * (dst + 0.5) - 0.5
    i0 = np.minimum(np.floor(src).astype(np.int64), size_in - 1)
    t = np.clip(src - i0, 0.0, 1.0)
    d = np.stack([t + 1, t, 1 - t, 2 - t], axis=1)  # distances to the four taps
    near = ((a + 2) * d - (a + 3)) * d * d + 1  # |d| <= 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a  # 1 < |d| < 2
    weights = np.where(d <= 1, near, far)
    idx = np.clip(i0[:, None] + np.arange(-1, 3)[None, :], 0, size_in - 1)
    return idx, weights


def _resize_ref(op: ir.Op, ins: list[np.ndarray], tensors: list[ir.Tensor]) -> np.ndarray:
    x = ins[0]
    _, h, w, _ = x.shape
    oh, ow = _size(op)
    if op.attrs["mode"] == "bicubic":
        yi, yw = _cubic_weights(op, h, oh, "scale_h")
        xi, xw = _cubic_weights(op, w, ow, "scale_w")
        t = (x[:, yi] * yw[None, :, :, None, None]).sum(axis=2)  # (n, oh, w, c)
        return (t[:, :, xi] * xw[None, None, :, :, None]).sum(axis=3)
    if op.attrs["mode"] != "bilinear":
        return x[:, _nearest_index(op, h, oh, "scale_h")][:, :, _nearest_index(op, w, ow, "scale_w")]
    y0, y1, ly = _linear_weights(op, h, oh, "scale_h")
    x0, x1, lx = _linear_weights(op, w, ow, "scale_w")
    ly, lx = ly[None, :, None, None], lx[None, None, :, None]
    top = x[:, y0][:, :, x0] * (1 - lx) + x[:, y0][:, :, x1] * lx
    bottom = x[:, y1][:, :, x0] * (1 - lx) + x[:, y1][:, :, x1] * lx
    return top * (1 - ly) + bottom * ly


def _resize_torch(op: ir.Op, ins: list[Any], p: Mapping[str, Any]) -> Any:
    import torch

    a = op.attrs
    scales = (a.get("scale_h"), a.get("scale_w"))
    if a["mode"] == "bicubic":
        return torch.ops.aten.upsample_bicubic2d(ins[0], list(a["size"]), bool(a.get("align_corners", False)), *scales)
    if a["mode"] == "bilinear":
        return torch.ops.aten.upsample_bilinear2d(ins[0], list(a["size"]), bool(a.get("align_corners", False)), *scales)
    fn = torch.ops.aten.upsample_nearest2d if a["mode"] == "nearest" else torch.ops.aten._upsample_nearest_exact2d
    return fn(ins[0], list(a["size"]), *scales)


RESIZE = OpDef(
    "resize",
    "f32 NHWC -> f32 (N, OH, OW, C): PyTorch's upsample_nearest2d / _upsample_nearest_exact2d / upsample_bilinear2d",
    "f32",
    _f32,
    _resize_shape,
    _resize_ref,
    _resize_torch,
    attrs={
        "size": PAIR,
        "mode": Attr("string", choices=RESIZE_MODES),
        "align_corners": Attr("bool", False, False),
        "scale_h": Attr("float", False),  # PyTorch's scale factor (out / in) when the model gave one
        "scale_w": Attr("float", False),
    },
    cost=lambda a, p, x, y: (0, 4 * math.prod(y), None),
)


# adaptive pooling


def adaptive_windows(size_in: int, size_out: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive windows: [floor(i * in / out), ceil((i + 1) * in / out))."""
    return [((i * size_in) // size_out, -((-(i + 1) * size_in) // size_out)) for i in range(size_out)]


def _adaptive_ref(op: ir.Op, x: np.ndarray, reduce: str) -> np.ndarray:
    n, h, w, c = x.shape
    oh, ow = _size(op)
    y = np.empty((n, oh, ow, c))
    for i, (y0, y1) in enumerate(adaptive_windows(h, oh)):
        for j, (x0, x1) in enumerate(adaptive_windows(w, ow)):
            win = x[:, y0:y1, x0:x1]
            y[:, i, j] = win.max(axis=(1, 2)) if reduce == "max" else win.mean(axis=(1, 2))
    return y


def _adaptive_shape(op: ir.Op, shapes: Sequence[Shape]) -> Shape:
    n, _, _, c = _four_d(op, shapes)
    return (n, *_size(op), c)


def _adaptive_max_torch(op: ir.Op, ins: list[Any], p: Mapping[str, Any]) -> Any:
    import torch.nn.functional as F

    return F.adaptive_max_pool2d(ins[0], list(op.attrs["size"]))


def _adaptive_avg_torch(op: ir.Op, ins: list[Any], p: Mapping[str, Any]) -> Any:
    import torch.nn.functional as F

    return F.adaptive_avg_pool2d(ins[0], list(op.attrs["size"]))


ADAPTIVE_AVGPOOL2D = OpDef(
    "adaptive_avgpool2d",
    "f32 NHWC -> f32 (N, OH, OW, C): PyTorch's adaptive_avg_pool2d (windows floor(i*in/out) to ceil((i+1)*in/out))",
    "f32",
    _f32,
    _adaptive_shape,
    lambda op, ins, t: _adaptive_ref(op, ins[0], "avg"),
    _adaptive_avg_torch,
    attrs={"size": PAIR},
)

ADAPTIVE_MAXPOOL2D = OpDef(
    "adaptive_maxpool2d",
    "f32 NHWC -> f32 (N, OH, OW, C): PyTorch's adaptive_max_pool2d (its values; NaN propagates)",
    "f32",
    _f32,
    _adaptive_shape,
    lambda op, ins, t: _adaptive_ref(op, ins[0], "max"),
    _adaptive_max_torch,
    attrs={"size": PAIR},
)

IMAGE_OPS: tuple[OpDef, ...] = (CONV_TRANSPOSE2D, RESIZE, ADAPTIVE_AVGPOOL2D, ADAPTIVE_MAXPOOL2D)
