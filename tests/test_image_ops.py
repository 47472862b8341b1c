"""The image ops: conv2d with dilation, conv_transpose2d, resize, adaptive pools and the pad modes.

Each op runs through `_core.run_op` on every ISA path and thread count (all must agree bit for bit)
against PyTorch's float64 functional ops (F.conv2d with dilation, F.conv_transpose2d, F.interpolate,
F.adaptive_avg_pool2d / adaptive_max_pool2d, F.pad modes) on odd sizes; the ops that only copy
values (nearest resize, adaptive max, pad) must equal it exactly. Then small PyTorch models using
each are converted (xnorinfer.convert.convert) and run (xnorinfer.load(...).run) against eager torch.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import xnorinfer
from xnorinfer import _core, ir
from xnorinfer.convert import convert
from xnorinfer.ops import OPS
from xnorinfer.ops.image_ops import torch_to_ct_weight

THREADS = (1, 2)


def _nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x.astype(np.float64)).permute(0, 3, 1, 2)


def _nhwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(0, 2, 3, 1).numpy()


def _run_all(kind: str, attrs: dict, params: dict, x: np.ndarray) -> np.ndarray:
    """The op on every ISA path and thread count; asserts they agree bit for bit and returns one."""
    results = [
        _core.run_op(kind, attrs, params, [np.ascontiguousarray(x, np.float32)], isa=isa, threads=threads)
        for isa in _core.available_isas()
        for threads in THREADS
    ]
    for r in results[1:]:
        assert r.shape == results[0].shape
        assert r.tobytes() == results[0].tobytes()
    return results[0]


def _declared_shape(kind: str, attrs: dict, params: dict, shape: tuple[int, ...]) -> tuple[int, ...]:
    op = ir.Op(kind, "op", ["x"], ["y"], attrs, params)
    OPS[kind].check(op)
    return OPS[kind].shape(op, [shape])


def _python_reference(kind: str, attrs: dict, params: dict, x: np.ndarray) -> np.ndarray:
    op = ir.Op(kind, "op", ["x"], ["y"], attrs, params)
    return OPS[kind].reference(op, [x.astype(np.float64)], [])


# --------------------------------------------------------------------------- conv2d with dilation

CONVS = [
    # in_channels, out_channels, kernel, stride, padding, dilation, groups, input (H, W)
    (3, 5, 3, 1, 2, (2, 2), 1, (11, 9)),  # DeepLab-style "same" dilated conv
    (4, 6, 3, 2, 1, (3, 2), 1, (13, 10)),
    (6, 6, 3, 1, 4, (4, 4), 6, (9, 11)),  # depthwise, dilated
    (4, 8, (3, 2), 1, (1, 0), (2, 3), 2, (10, 9)),  # grouped
    (5, 7, 1, 1, 0, (2, 2), 1, (7, 7)),  # 1x1 (dilation has no effect)
]


@pytest.mark.parametrize(("ci", "co", "k", "s", "p", "d", "g", "hw"), CONVS)
def test_dilated_conv2d_matches_torch(ci, co, k, s, p, d, g, hw, rng):
    kh, kw = (k, k) if isinstance(k, int) else k
    ph, pw = (p, p) if isinstance(p, int) else p
    x = rng.standard_normal((2, *hw, ci)).astype(np.float32)
    w = rng.standard_normal((co, ci // g, kh, kw)).astype(np.float32)
    b = rng.standard_normal(co).astype(np.float32)
    attrs = {"stride": [s, s], "padding": [ph, pw], "dilation": list(d)}
    if g != 1:
        attrs["groups"] = g
    params = {"weight": np.ascontiguousarray(w.transpose(0, 2, 3, 1)), "bias": b}
    y = _run_all("conv2d", attrs, params, x)
    want = _nhwc(F.conv2d(_nchw(x), torch.from_numpy(w).double(), torch.from_numpy(b).double(), s, (ph, pw), d, g))
    assert y.shape == want.shape == _declared_shape("conv2d", attrs, params, x.shape)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_python_reference("conv2d", attrs, params, x), want, rtol=1e-12, atol=1e-12)


def test_conv2d_refuses_bad_dilation():
    x = np.zeros((1, 5, 5, 2), np.float32)
    params = {"weight": np.zeros((3, 3, 3, 2), np.float32)}
    with pytest.raises(ValueError, match="dilation must be positive"):
        _core.run_op("conv2d", {"stride": [1, 1], "padding": [0, 0], "dilation": [0, 1]}, params, [x])
    with pytest.raises(ValueError, match="smaller than the kernel"):  # a 5-wide dilated kernel on 4 columns
        _core.run_op("conv2d", {"stride": [1, 1], "padding": [0, 0], "dilation": [2, 2]}, params, [x[:, :, :4]])


# --------------------------------------------------------------------------- conv_transpose2d

TRANSPOSED = [
    # in, out, kernel, stride, padding, output_padding, dilation, groups, input (H, W)
    (3, 5, 3, 2, 1, 1, 1, 1, (5, 7)),  # the usual 2x upsampling
    (4, 6, 2, 2, 0, 0, 1, 1, (6, 5)),  # UNet's up-conv
    (4, 6, (3, 4), (2, 3), (1, 2), (1, 0), (2, 1), 2, (5, 4)),
    (6, 6, 3, 1, 1, 0, 2, 6, (7, 9)),  # depthwise, dilated
    (5, 3, 1, 3, 0, 2, 1, 1, (3, 4)),
]


@pytest.mark.parametrize(("ci", "co", "k", "s", "p", "op_", "d", "g", "hw"), TRANSPOSED)
def test_conv_transpose2d_matches_torch(ci, co, k, s, p, op_, d, g, hw, rng):
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
    (kh, kw), s, p, op_, d = pair(k), pair(s), pair(p), pair(op_), pair(d)
    x = rng.standard_normal((2, *hw, ci)).astype(np.float32)
    w = rng.standard_normal((ci, co // g, kh, kw)).astype(np.float32)
    b = rng.standard_normal(co).astype(np.float32)
    attrs = {"stride": list(s), "padding": list(p), "output_padding": list(op_), "dilation": list(d), "groups": g}
    params = {"weight": torch_to_ct_weight(w, g), "bias": b}
    y = _run_all("conv_transpose2d", attrs, params, x)
    wt, bt = torch.from_numpy(w).double(), torch.from_numpy(b).double()
    want = _nhwc(F.conv_transpose2d(_nchw(x), wt, bt, s, p, op_, g, d))
    assert y.shape == want.shape == _declared_shape("conv_transpose2d", attrs, params, x.shape)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_python_reference("conv_transpose2d", attrs, params, x), want, rtol=1e-12, atol=1e-12)
    op = ir.Op("conv_transpose2d", "op", ["x"], ["y"], attrs, params)  # the torch form reads the stored weight back
    torch_params = {k: OPS["conv_transpose2d"].torch_param(op, k, v).double() for k, v in params.items()}
    np.testing.assert_allclose(_nhwc(OPS["conv_transpose2d"].torch(op, [_nchw(x)], torch_params)), want, rtol=1e-12)


def test_conv_transpose2d_refuses_bad_geometry():
    x = np.zeros((1, 4, 4, 2), np.float32)
    w = {"weight": np.zeros((3, 3, 3, 2), np.float32)}
    with pytest.raises(ValueError, match="output_padding"):
        _core.run_op("conv_transpose2d", {"stride": [2, 2], "padding": [0, 0], "output_padding": [2, 0]}, w, [x])
    with pytest.raises(ValueError, match="channels"):
        _core.run_op("conv_transpose2d", {"stride": [1, 1], "padding": [0, 0]}, w, [np.zeros((1, 4, 4, 3), np.float32)])
    with pytest.raises(ValueError, match="empty output"):
        _core.run_op("conv_transpose2d", {"stride": [1, 1], "padding": [3, 3]}, w, [x[:, :1, :1]])


# --------------------------------------------------------------------------- resize

RESIZES = [
    # mode, align_corners, input (H, W), output (OH, OW), scale factors given by the model (or None)
    ("nearest", False, (5, 7), (10, 14), None),
    ("nearest", False, (5, 7), (9, 11), None),
    ("nearest", False, (9, 11), (4, 5), None),
    ("nearest", False, (7, 5), (10, 7), (1.5, 1.5)),  # scale_factor 1.5: step 1/1.5, not 7/10
    ("nearest_exact", False, (5, 7), (9, 11), None),
    ("nearest_exact", False, (9, 7), (5, 3), None),
    ("bilinear", False, (5, 7), (10, 14), None),
    ("bilinear", False, (5, 7), (9, 13), None),
    ("bilinear", True, (5, 7), (9, 13), None),
    ("bilinear", True, (6, 5), (1, 8), None),
    ("bilinear", False, (9, 11), (4, 6), None),
    ("bilinear", False, (7, 5), (10, 7), (1.5, 1.5)),
    ("bilinear", False, (6, 6), (6, 6), None),
]


@pytest.mark.parametrize(("mode", "align", "hw", "out", "scales"), RESIZES)
def test_resize_matches_interpolate(mode, align, hw, out, scales, rng):
    x = rng.standard_normal((2, *hw, 3)).astype(np.float32)
    attrs = {"size": list(out), "mode": mode}
    if align:
        attrs["align_corners"] = True
    if scales is not None:
        attrs["scale_h"], attrs["scale_w"] = scales
    y = _run_all("resize", attrs, {}, x)
    # PyTorch's float32 kernels decide the source indices (float32 index arithmetic): compare with those.
    t32 = torch.from_numpy(x).permute(0, 3, 1, 2)
    torch_mode = {"nearest": "nearest", "nearest_exact": "nearest-exact", "bilinear": "bilinear"}[mode]
    kwargs = {"align_corners": align} if mode == "bilinear" else {}
    if scales is None:
        want = F.interpolate(t32, size=out, mode=torch_mode, **kwargs)
    else:
        want = F.interpolate(t32, scale_factor=scales, mode=torch_mode, **kwargs)
    assert tuple(want.shape[2:]) == out
    want = _nhwc(want)
    assert y.shape == want.shape == _declared_shape("resize", attrs, {}, x.shape)
    if mode == "bilinear":
        want64 = F.interpolate(_nchw(x), size=out, mode="bilinear", align_corners=align) if scales is None else None
        np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)
        if want64 is not None:
            np.testing.assert_allclose(y, _nhwc(want64), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(_python_reference("resize", attrs, {}, x), want, rtol=1e-5, atol=1e-5)
    else:
        np.testing.assert_array_equal(y, want)  # a copy: exact
        np.testing.assert_array_equal(_python_reference("resize", attrs, {}, x), want)


def test_resize_refuses_bad_attributes():
    x = np.zeros((1, 4, 4, 2), np.float32)
    with pytest.raises(ValueError, match="mode"):
        _core.run_op("resize", {"size": [8, 8], "mode": "area"}, {}, [x])
    with pytest.raises(ValueError, match="align_corners"):
        _core.run_op("resize", {"size": [8, 8], "mode": "nearest", "align_corners": True}, {}, [x])
    with pytest.raises(ValueError, match="out of range"):
        _core.run_op("resize", {"size": [0, 8], "mode": "nearest"}, {}, [x])


# --------------------------------------------------------------------------- adaptive pools

ADAPTIVE = [((10, 10), (7, 7)), ((9, 13), (4, 5)), ((5, 7), (5, 7)), ((3, 4), (7, 6)), ((11, 8), (1, 3))]


@pytest.mark.parametrize(("hw", "out"), ADAPTIVE)
def test_adaptive_pools_match_torch(hw, out, rng):
    x = rng.standard_normal((2, *hw, 5)).astype(np.float32)
    x[0, 0, 0, 0] = np.nan  # max propagates NaN as PyTorch does
    attrs = {"size": list(out)}
    avg = _run_all("adaptive_avgpool2d", attrs, {}, x)
    mx = _run_all("adaptive_maxpool2d", attrs, {}, x)
    want_avg = _nhwc(F.adaptive_avg_pool2d(_nchw(x), out))
    want_max = _nhwc(F.adaptive_max_pool2d(torch.from_numpy(x).permute(0, 3, 1, 2), out))
    assert avg.shape == mx.shape == want_avg.shape == _declared_shape("adaptive_avgpool2d", attrs, {}, x.shape)
    np.testing.assert_allclose(avg, want_avg, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(mx, want_max)
    np.testing.assert_allclose(_python_reference("adaptive_avgpool2d", attrs, {}, x), want_avg, rtol=1e-12)
    np.testing.assert_array_equal(_python_reference("adaptive_maxpool2d", attrs, {}, x), want_max)


# --------------------------------------------------------------------------- pad modes

PADS = [((1, 2), (2, 1)), ((0, 3), (4, 0)), ((2, 2), (0, 0)), ((4, 4), (6, 6))]


@pytest.mark.parametrize("mode", ["reflect", "replicate"])
@pytest.mark.parametrize(("ph", "pw"), PADS)
def test_pad_modes_match_torch(mode, ph, pw, rng):
    x = rng.standard_normal((2, 5, 7, 3)).astype(np.float32)
    attrs = {"pad_h": list(ph), "pad_w": list(pw), "mode": mode}
    y = _run_all("pad", attrs, {}, x)
    want = _nhwc(F.pad(_nchw(x), (pw[0], pw[1], ph[0], ph[1]), mode=mode))
    assert y.shape == want.shape == _declared_shape("pad", attrs, {}, x.shape)
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(_python_reference("pad", attrs, {}, x), want)


def test_pad_modes_refuse_what_torch_refuses():
    x = np.zeros((1, 3, 6, 2), np.float32)
    with pytest.raises(ValueError, match="reflect padding must be smaller"):
        _core.run_op("pad", {"pad_h": [3, 0], "pad_w": [0, 0], "mode": "reflect"}, {}, [x])
    with pytest.raises(ValueError, match="H and W only"):
        _core.run_op("pad", {"pad_h": [1, 1], "pad_w": [0, 0], "pad_c": [1, 0], "mode": "replicate"}, {}, [x])
    with pytest.raises(ValueError, match="mode"):
        _core.run_op("pad", {"pad_h": [1, 1], "pad_w": [0, 0], "mode": "circular"}, {}, [x])
    op = ir.Op("pad", "p", ["x"], ["y"], {"pad_h": [3, 0], "pad_w": [0, 0], "mode": "reflect"})
    with pytest.raises(ValueError, match="reflect padding must be smaller"):
        OPS["pad"].shape(op, [x.shape])


# --------------------------------------------------------------------------- converted models


def _randomise_bn(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


def _convert_and_run(model: nn.Module, shape: tuple[int, ...], tmp_path, batch: int = 3) -> list[str]:
    torch.manual_seed(0)
    model = model.eval()
    _randomise_bn(model)
    x = torch.randn(batch, *shape)
    graph = convert(model, (x[:1],), output=tmp_path / "m.xbin")
    got = xnorinfer.load(tmp_path / "m.xbin").run(x.numpy())
    with torch.no_grad():
        want = model(x)
    want = want.permute(0, 2, 3, 1) if want.dim() == 4 else want
    scale = float(want.abs().max())
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-4 * scale)
    return [op.kind for op in graph.ops]


class UNetDecoder(nn.Module):
    """An encoder-decoder: strided convs down, ConvTranspose2d and F.interpolate up, skip concats."""

    def __init__(self) -> None:
        super().__init__()
        self.enc1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.enc2 = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.enc3 = nn.Sequential(nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.ReLU())
        self.up1 = nn.ConvTranspose2d(16, 16, 2, stride=2)
        self.dec1 = nn.Sequential(nn.Conv2d(32, 8, 3, padding=1), nn.ReLU())
        self.dec2 = nn.Conv2d(16, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        d1 = self.dec1(torch.cat([self.up1(e3), e2], dim=1))
        up = F.interpolate(d1, scale_factor=2, mode="bilinear", align_corners=False)
        return self.dec2(torch.cat([up, e1], dim=1))


def test_unet_decoder_converts_and_runs(tmp_path):
    kinds = _convert_and_run(UNetDecoder(), (3, 16, 12), tmp_path)
    assert "conv_transpose2d" in kinds and "resize" in kinds


class DilatedHead(nn.Module):
    """DeepLab-like: a dilated backbone conv, parallel atrous branches (dilation 2 and 3, depthwise
    too), concatenated, projected, upsampled to the input size with bilinear align_corners."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(8, 8, 3, padding=2, dilation=2), nn.ReLU())
        self.a1 = nn.Conv2d(8, 6, 1)
        self.a2 = nn.Sequential(nn.Conv2d(8, 6, 3, padding=2, dilation=2), nn.BatchNorm2d(6), nn.ReLU())
        self.a3 = nn.Sequential(nn.Conv2d(8, 8, 3, padding=3, dilation=3, groups=8), nn.Conv2d(8, 6, 1))
        self.project = nn.Conv2d(18, 5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.body(self.stem(x))
        y = self.project(torch.cat([self.a1(f), self.a2(f), self.a3(f)], dim=1))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=True)


def test_deeplab_like_dilated_convs_convert_and_run(tmp_path):
    kinds = _convert_and_run(DilatedHead(), (3, 17, 15), tmp_path)
    assert "resize" in kinds and kinds.count("conv2d") == 7


class AdaptiveHead(nn.Module):
    def __init__(self, pool: nn.Module) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.pool = pool
        self.fc = nn.Linear(8 * 7 * 7, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.conv(x)), 1))


@pytest.mark.parametrize(
    ("pool", "kind"),
    [(nn.AdaptiveAvgPool2d((7, 7)), "adaptive_avgpool2d"), (nn.AdaptiveMaxPool2d(7), "adaptive_maxpool2d")],
)
def test_adaptive_pool_to_7x7_from_10x10_converts_and_runs(pool, kind, tmp_path):
    kinds = _convert_and_run(AdaptiveHead(pool), (3, 10, 10), tmp_path)
    assert kind in kinds


class PadsAndResizes(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 6, 3)
        self.c2 = nn.Conv2d(6, 6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.c1(F.pad(x, (1, 1, 1, 1), mode="reflect"))
        y = self.c2(F.pad(y, (2, 0, 1, 1), mode="replicate"))
        a = F.interpolate(y, scale_factor=2, mode="nearest")
        b = F.interpolate(y, size=(a.shape[2], a.shape[3]), mode="nearest-exact")
        return a + b + F.interpolate(y, scale_factor=(2, 2), mode="bilinear", align_corners=True)


def test_pad_modes_and_nearest_resizes_convert_and_run(tmp_path):
    kinds = _convert_and_run(PadsAndResizes(), (3, 9, 11), tmp_path)
    assert kinds.count("pad") >= 2 and kinds.count("resize") == 3


class Downsample(nn.Module):
    """The `bnn` library's ResNet shortcut: AvgPool2d(2, ceil_mode=True, count_include_pad=False), 1x1 conv."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(2, ceil_mode=True, count_include_pad=False)
        self.conv = nn.Conv2d(3, 8, 1, bias=False)
        self.bn = nn.BatchNorm2d(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(self.pool(x)))


def test_bnn_downsample_shortcut_converts_and_runs(tmp_path):
    kinds = _convert_and_run(Downsample(), (3, 9, 7), tmp_path)
    assert "avgpool2d" in kinds
