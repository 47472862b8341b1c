"""Sign fused into the op that produces its float input (Session::plan_fusion, nodes::for_out_rows).

The session runs a sign op inside its producer (add, mul, affine, prelu, float max/avg pool,
concat) when it can: the producer
packs each block of rows right after writing it. These tests check that the fused graph gives the
bytes of the unfused one (XNORINFER_FUSE=0) on every ISA path with 1 and 2 threads, that both equal
a numpy reference where the float op is exact in float32 (add, mul), and that the fusion happened
(the profile times the fused sign op at zero).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import ISAS

import xnorinfer
from xnorinfer import ir, xbin
from xnorinfer.convert.pipeline import convert

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from imagenet_bnns import BiRealBlock, ReActBlock, randomised  # noqa: E402


def _sessions(path: Path, monkeypatch: pytest.MonkeyPatch, fuse: bool) -> list[xnorinfer.Session]:
    monkeypatch.setenv("XNORINFER_FUSE", "1" if fuse else "0")
    sessions = [xnorinfer.load(path, threads=1), xnorinfer.load(path, threads=2)]
    monkeypatch.delenv("XNORINFER_FUSE")
    return sessions


def _run_all(path: Path, x: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> list[np.ndarray]:
    """Outputs of the fused graph, checked byte-identical to the unfused one on every path and thread count."""
    unfused = [np.asarray(o) for o in _as_list(_sessions(path, monkeypatch, False)[0].run(x, isa="scalar"))]
    for fuse in (True, False):
        for session in _sessions(path, monkeypatch, fuse):
            for isa in ISAS:
                got = _as_list(session.run(x, isa=isa))
                for g, want in zip(got, unfused, strict=True):
                    assert np.asarray(g).tobytes() == want.tobytes(), f"fuse={fuse} {isa} {session.threads} threads"
    return unfused


def _as_list(out: object) -> list[np.ndarray]:
    return list(out) if isinstance(out, (list, tuple)) else [out]  # type: ignore[arg-type]


def _sign_ms(path: Path, x: np.ndarray, monkeypatch: pytest.MonkeyPatch, fuse: bool) -> list[float]:
    rows = _sessions(path, monkeypatch, fuse)[0].profile(x, runs=2)
    return [r["total_ms"] for r in rows if r["kind"] == "sign"]


@pytest.mark.parametrize("producer", ["add", "mul_channel", "affine", "prelu", "maxpool", "avgpool", "concat"])
@pytest.mark.parametrize(
    ("channels", "groups", "sign_zero"), [(64, 1, "+1"), (70, 2, "-1"), (128, 1, "-1"), (32, 3, "+1")]
)
def test_fused_sign_equals_unfused(tmp_path, monkeypatch, producer, channels, groups, sign_zero):
    rng = np.random.default_rng(channels + groups)
    h, w = 37, 41  # 1517 rows: several sign blocks per thread's share, a ragged last block
    shape = (1, h, w, channels)
    oh, ow = h, w  # of the producer's output
    # Values on a half-integer grid, thresholds too, so that ties with the thresholds occur.
    th = (rng.integers(-4, 5, size=(groups, channels)) / 2).astype(np.float32)
    x = (rng.integers(-6, 7, size=(1, channels, h, w)) / 2).astype(np.float32)
    b = (rng.integers(-6, 7, size=(1, channels, h, w)) / 2).astype(np.float32)
    tensors = {
        "x": ir.Tensor("x", shape, "f32"),
        "f": ir.Tensor("f", shape, "f32"),
    }
    ops = []
    want_f = None
    nhwc = x.transpose(0, 2, 3, 1)
    if producer == "add":
        tensors["b"] = ir.Tensor("b", shape, "f32")
        ops.append(ir.Op("constant", "b", [], ["b"], {}, {"value": np.ascontiguousarray(b.transpose(0, 2, 3, 1))}))
        ops.append(ir.Op("add", "f", ["x", "b"], ["f"]))
        want_f = nhwc + b.transpose(0, 2, 3, 1)
    elif producer == "mul_channel":
        scale = (rng.integers(-3, 4, size=(1, channels)) / 2).astype(np.float32)
        tensors["b"] = ir.Tensor("b", (1, channels), "f32")
        ops.append(ir.Op("constant", "b", [], ["b"], {}, {"value": scale}))
        ops.append(ir.Op("mul", "f", ["x", "b"], ["f"]))
        want_f = nhwc * scale[0]
    elif producer == "affine":
        scale = rng.normal(size=channels).astype(np.float32)
        shift = rng.normal(size=channels).astype(np.float32)
        ops.append(ir.Op("affine", "f", ["x"], ["f"], {}, {"scale": scale, "shift": shift}))
    elif producer in ("maxpool", "avgpool"):
        # 3x3 stride 2 pad 1 (Bi-Real's stem pool): output rows are fused one at a time.
        oh, ow = (h - 1) // 2 + 1, (w - 1) // 2 + 1
        tensors["f"] = ir.Tensor("f", (1, oh, ow, channels), "f32")
        geometry = {"kernel": [3, 3], "stride": [2, 2], "padding": [1, 1]}
        ops.append(ir.Op(f"{producer}2d", "f", ["x"], ["f"], geometry))
        t = torch.from_numpy(x)
        pooled = F.max_pool2d(t, 3, 2, 1) if producer == "maxpool" else F.avg_pool2d(t, 3, 2, 1)
        if producer == "maxpool":  # exact: a max is one of its inputs
            want_f = pooled.numpy().transpose(0, 2, 3, 1)
    elif producer == "concat":  # two halves of x's channels back together
        half = channels // 2
        tensors["a"] = ir.Tensor("a", (1, h, w, half), "f32")
        tensors["b"] = ir.Tensor("b", (1, h, w, channels - half), "f32")
        ops.append(ir.Op("slice", "a", ["x"], ["a"], {"axis": 3, "start": 0, "stop": half, "step": 1}))
        ops.append(ir.Op("slice", "b", ["x"], ["b"], {"axis": 3, "start": half, "stop": channels, "step": 1}))
        ops.append(ir.Op("concat", "f", ["a", "b"], ["f"], {"axis": 3}))
        want_f = nhwc
    else:
        slope = rng.normal(size=channels).astype(np.float32)
        pre = rng.normal(size=channels).astype(np.float32)
        ops.append(ir.Op("prelu", "f", ["x"], ["f"], {}, {"slope": slope, "pre_shift": pre, "post_shift": -pre}))
    tensors["s"] = ir.Tensor("s", (1, oh, ow, groups * channels), "bits")
    tensors["y"] = ir.Tensor("y", (1, oh, ow, groups * channels), "f32")
    ops.append(ir.Op("sign", "s", ["f"], ["s"], {"sign_zero": sign_zero}, {"threshold": th if groups > 1 else th[0]}))
    ops.append(ir.Op("unpack", "y", ["s"], ["y"]))
    g = ir.Graph(
        inputs=["x"], outputs=["f", "y"], tensors=tensors, ops=ops, metadata={"input_shape": [1, channels, h, w]}
    )
    path = tmp_path / "fused.xbin"
    xbin.write(g, path)
    f, y = _run_all(path, x, monkeypatch)
    # The bits are the sign of the float output the same graph returns, against the thresholds.
    f_nhwc = f.reshape(1, oh, ow, channels)  # outputs keep the engine's NHWC layout
    if want_f is not None:  # exact in float32: the engine's float output is numpy's
        np.testing.assert_array_equal(f_nhwc, want_f)
    below = [(f_nhwc <= th[j]) if sign_zero == "-1" else (f_nhwc < th[j]) for j in range(groups)]
    want_y = np.where(np.concatenate(below, axis=-1), -1.0, 1.0).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(y).reshape(1, oh, ow, groups * channels), want_y)
    # Fused: the sign op itself did no work; unfused: it did.
    assert _sign_ms(path, x, monkeypatch, True) == [0.0]
    assert _sign_ms(path, x, monkeypatch, False)[0] > 0.0


@pytest.mark.parametrize("block", ["bireal", "reactnet"])
def test_fused_sign_in_converted_blocks(tmp_path, block):
    """Bi-Real and ReActNet blocks as their training code writes them (bench/imagenet_bnns.py),
    converted: fused and unfused engines agree bit for bit on every path and thread count, the
    fusion covers the signs whose producers are add/prelu, and the logits match PyTorch."""
    torch.manual_seed(0)
    if block == "bireal":
        body = torch.nn.Sequential(BiRealBlock(64, 64, 1), BiRealBlock(64, 128, 2), BiRealBlock(128, 128, 1))
    else:
        body = torch.nn.Sequential(ReActBlock(64, 64, 1), ReActBlock(64, 128, 2), ReActBlock(128, 128, 1))
    model = randomised(torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3, 1, 1), torch.nn.BatchNorm2d(64), body))
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    path = tmp_path / f"{block}.xbin"
    convert(model, (x[:1],), verify=False, output=path)
    mp = pytest.MonkeyPatch()
    try:
        (out,) = _run_all(path, x.numpy(), mp)
        fused = _sign_ms(path, x.numpy(), mp, True)
        unfused = _sign_ms(path, x.numpy(), mp, False)
    finally:
        mp.undo()
    assert len(fused) >= 3 and fused.count(0.0) >= 3, fused  # signs after add / prelu / affine run fused
    assert all(v > 0.0 for v in unfused)
    with torch.no_grad():
        want = model(x).numpy()
    # Float model vs binary engine: the binary parts are exact, so only float rounding remains,
    # except where a sign input sits on a rounding tie; compare the bulk tightly.
    close = np.isclose(out.transpose(0, 3, 1, 2), want, rtol=1e-3, atol=1e-3)  # engine: NHWC
    assert close.mean() > 0.99, f"{(~close).sum()} of {close.size} values differ from PyTorch"


@pytest.mark.parametrize("channels", [8, 16, 24, 32, 40, 48, 56, 80, 96, 192])
@pytest.mark.parametrize("groups", [1, 2, 3])
@pytest.mark.parametrize("sign_zero", ["+1", "-1"])
def test_sign_multiple_of_8_channels(tmp_path, channels, groups, sign_zero):
    """The x86 sign's word assembly, from 16-channel masks (avx512, C % 16 == 0) or 8-channel
    masks (C % 8 == 0): groups meeting inside a word, a partial last word, against numpy: ties,
    -0.0, NaN and infinities included; the same bytes on every ISA path and thread count."""
    rng = np.random.default_rng(channels * 7 + groups)
    h, w = 9, 7
    th = (rng.integers(-3, 4, size=(groups, channels)) / 2).astype(np.float32)
    x = (rng.integers(-4, 5, size=(1, channels, h, w)) / 2).astype(np.float32)
    x.reshape(-1)[:4] = [-0.0, np.nan, np.inf, -np.inf]
    tensors = {
        "x": ir.Tensor("x", (1, h, w, channels), "f32"),
        "s": ir.Tensor("s", (1, h, w, groups * channels), "bits"),
        "y": ir.Tensor("y", (1, h, w, groups * channels), "f32"),
    }
    ops = [
        ir.Op("sign", "s", ["x"], ["s"], {"sign_zero": sign_zero}, {"threshold": th if groups > 1 else th[0]}),
        ir.Op("unpack", "y", ["s"], ["y"]),
    ]
    g = ir.Graph(inputs=["x"], outputs=["y"], tensors=tensors, ops=ops, metadata={"input_shape": [1, channels, h, w]})
    path = tmp_path / "sign.xbin"
    xbin.write(g, path)
    nhwc = x.transpose(0, 2, 3, 1)
    below = [(nhwc <= th[j]) if sign_zero == "-1" else (nhwc < th[j]) for j in range(groups)]
    want = np.where(np.concatenate(below, axis=-1), -1.0, 1.0).astype(np.float32)  # NaN compares false: +1
    for threads in (1, 2):
        session = xnorinfer.load(path, threads=threads)
        for isa in ISAS:
            np.testing.assert_array_equal(session.run(x, isa=isa), want, err_msg=f"{isa}, {threads} threads")
