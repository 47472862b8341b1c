"""Per-op work threshold (Session: an op below XNORINFER_MIN_PARALLEL_WORK runs on the calling thread)
and the affine op (folded batch norm) fused into the float conv2d/linear that produces its input.

Both are plan-time decisions of the session that must change no result: the outputs are compared
byte for byte with a one-thread session and with the unfused graph (XNORINFER_FUSE=sign keeps the
sign fusion and turns the affine fusion off) on every ISA path with 1 and 2 threads, and the fused
affine's output with a float64 reference of fma(conv, scale, shift) on the engine's own conv output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ISAS, load_with_env

import xnorinfer
from xnorinfer import ir, xbin
from xnorinfer.convert.pipeline import convert


def _outs(session: xnorinfer.Session, x: np.ndarray, isa: str) -> list[bytes]:
    out = session.run(x, isa=isa)
    return [np.asarray(o).tobytes() for o in (out if isinstance(out, (list, tuple)) else [out])]


def _conv_graph(path: Path, h: int, w: int, cin: int, cout: int, kernel: int, stride: int, pad: int) -> None:
    """x -> conv2d -> c -> affine -> a -> add(a, a) -> y; outputs c, a and y."""
    rng = np.random.default_rng(kernel * 100 + cout)
    oh, ow = (h + 2 * pad - kernel) // stride + 1, (w + 2 * pad - kernel) // stride + 1
    tensors = {
        "x": ir.Tensor("x", (1, h, w, cin), "f32"),
        "c": ir.Tensor("c", (1, oh, ow, cout), "f32"),
        "a": ir.Tensor("a", (1, oh, ow, cout), "f32"),
        "y": ir.Tensor("y", (1, oh, ow, cout), "f32"),
    }
    weight = rng.normal(size=(cout, kernel, kernel, cin)).astype(np.float32)
    ops = [
        ir.Op(
            "conv2d",
            "conv",
            ["x"],
            ["c"],
            {"stride": [stride, stride], "padding": [pad, pad]},
            {"weight": weight, "bias": rng.normal(size=cout).astype(np.float32)},
        ),
        ir.Op(
            "affine",
            "bn",
            ["c"],
            ["a"],
            {},
            {"scale": rng.normal(size=cout).astype(np.float32), "shift": rng.normal(size=cout).astype(np.float32)},
        ),
        ir.Op("add", "add", ["a", "a"], ["y"]),
    ]
    g = ir.Graph(inputs=["x"], outputs=["c", "a", "y"], tensors=tensors, ops=ops, metadata={})
    xbin.write(g, path)


def test_threshold_boundary(tmp_path, monkeypatch):
    """At work == threshold an op runs on every thread, one value below on the calling thread only;
    the outputs are the bytes of a one-thread session either way, on every ISA path."""
    h, w, cin, cout, k = 23, 19, 5, 40, 3
    path = tmp_path / "conv.xbin"
    _conv_graph(path, h, w, cin, cout, k, 1, 1)
    x = np.random.default_rng(0).normal(size=(1, cin, h, w)).astype(np.float32)
    shape = [list(x.shape)]
    out = h * w * cout
    # Node::work: conv = MACs / 8 + values read and written; add = its 2 inputs and its output.
    conv_work = out * k * k * cin / 8 + h * w * cin + out
    affine_work = 2 * out  # fused into the conv: its work counts with the conv's
    add_work = 3 * out
    one = xnorinfer.load(path, threads=1)
    assert one._core.parallel_steps(shape) == [False, False, False]
    want = {isa: _outs(one, x, isa) for isa in ISAS}
    cases = [
        (conv_work + affine_work, [True, False, False]),
        (conv_work + affine_work + 1, [False, False, False]),
        (add_work, [True, False, True]),
        (add_work + 1, [True, False, False]),
        (0, [True, False, True]),
    ]
    for threshold, parallel in cases:
        s = load_with_env(path, 2, monkeypatch, XNORINFER_MIN_PARALLEL_WORK=repr(float(threshold)))
        assert s._core.min_parallel_work == threshold
        assert s._core.fused_affine == [1, -1, -1]
        assert s._core.parallel_steps(shape) == parallel, threshold
        for isa in ISAS:
            assert _outs(s, x, isa) == want[isa], f"threshold {threshold}, {isa}"


def test_threshold_env_is_checked(tmp_path, monkeypatch):
    path = tmp_path / "conv.xbin"
    _conv_graph(path, 8, 8, 3, 8, 3, 1, 1)
    for bad in ("-1", "many", "1e400", "nan"):
        with pytest.raises(ValueError, match="XNORINFER_MIN_PARALLEL_WORK"):
            load_with_env(path, 2, monkeypatch, XNORINFER_MIN_PARALLEL_WORK=bad)


def test_default_threshold_keeps_tiny_ops_on_one_thread(tmp_path):
    """The LFC-sized case: at batch 1 every op of a small MLP is below the default threshold (the
    two-thread session runs it on the calling thread); at batch 256 the big layers use both threads."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(784, 64),
        torch.nn.BatchNorm1d(64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, 10),
    ).eval()
    path = tmp_path / "mlp.xbin"
    convert(model, (torch.randn(1, 1, 28, 28),), verify=False, output=path)
    s = xnorinfer.load(path, threads=2)
    assert not any(s._core.parallel_steps([[1, 1, 28, 28]]))
    assert any(s._core.parallel_steps([[256, 1, 28, 28]]))
    x = np.random.default_rng(1).normal(size=(256, 1, 28, 28)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(s.run(x), model(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-4)
    assert np.asarray(s.run(x)).tobytes() == np.asarray(xnorinfer.load(path, threads=1).run(x)).tobytes()


@pytest.mark.parametrize(
    ("h", "w", "cin", "cout", "kernel", "stride", "pad"),
    [
        (37, 29, 3, 64, 7, 2, 3),  # the ImageNet stem's geometry (im2col tiles)
        (15, 13, 24, 70, 1, 1, 0),  # 1x1: a GEMM on the input rows, a ragged last panel
        (15, 14, 16, 48, 1, 2, 0),  # strided 1x1 (downsample)
        (9, 11, 5, 33, 3, 1, 1),  # a partial panel of one column
    ],
)
def test_affine_fused_into_conv(tmp_path, monkeypatch, h, w, cin, cout, kernel, stride, pad):
    path = tmp_path / "conv.xbin"
    _conv_graph(path, h, w, cin, cout, kernel, stride, pad)
    x = np.random.default_rng(2).normal(size=(1, cin, h, w)).astype(np.float32)
    unfused = load_with_env(path, 1, monkeypatch, XNORINFER_FUSE="sign")
    assert unfused._core.fused_affine == [-1, -1, -1]
    want = _outs(unfused, x, "scalar")
    for threads in (1, 2):
        for env in ({}, {"XNORINFER_MIN_PARALLEL_WORK": "0"}):  # 2 threads: every op split, too
            fused = load_with_env(path, threads, monkeypatch, **env)
            assert fused._core.fused_affine == [1, -1, -1]
            for isa in ISAS:
                assert _outs(fused, x, isa) == want, f"{threads} threads {env} {isa}"
            # The fused op's profile row is zero: the conv wrote its output.
            rows = fused.profile(x, runs=1)
            assert [r["total_ms"] for r in rows if r["kind"] == "affine"] == [0.0]
    c, a, _ = unfused.run(x)
    params = xbin.read(path).ops[1].params
    ref = np.asarray(c).astype(np.float64) * params["scale"] + params["shift"]  # an exact product, one rounding
    np.testing.assert_array_equal(np.asarray(a), ref.astype(np.float32))


def test_affine_fused_into_linear_and_converted_stem(tmp_path, monkeypatch):
    """A converted conv + BatchNorm stem and a Linear + BatchNorm1d head: the converter's affine ops
    run fused, with the unfused bytes, and the logits match PyTorch."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 7, 2, 3, bias=False),
        torch.nn.BatchNorm2d(16),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(16, 40),
        torch.nn.BatchNorm1d(40),
    )
    for m in model.modules():  # calibrated-looking statistics, negative gammas too
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm1d)):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.normal_()
            m.bias.data.normal_()
    model.eval()
    x = torch.randn(3, 3, 30, 26)
    path = tmp_path / "stem.xbin"
    convert(model, (x[:1],), verify=False, output=path)
    kinds = [op.kind for op in xbin.read(path).ops]
    want = _outs(load_with_env(path, 1, monkeypatch, XNORINFER_FUSE="sign"), x.numpy(), "scalar")
    for threads in (1, 2):
        fused = load_with_env(path, threads, monkeypatch, XNORINFER_MIN_PARALLEL_WORK="0")
        got = [kinds[j] for j in fused._core.fused_affine if j >= 0]
        assert got == ["affine"] * kinds.count("affine") and got, kinds
        for isa in ISAS:
            assert _outs(fused, x.numpy(), isa) == want, f"{threads} threads {isa}"
    with torch.no_grad():
        np.testing.assert_allclose(
            np.frombuffer(want[0], np.float32).reshape(3, 40), model(x).numpy(), rtol=1e-4, atol=1e-4
        )
