"""Element-wise steps chained onto a binary conv (Session::plan_chains, OutputRowsDone).

The session runs the residual add, PReLU and affine steps that follow a float-output bconv2d
inside it: the conv hands each run of complete output rows to them while the rows are in cache,
each writes its own output (and its fused sign's bits) as it would alone. These tests check the
outputs against a float32 numpy reference built from exact integer conv sums, byte for byte
against the unchained graph (XNORINFER_FUSE=sign) on every ISA path, thread count and binary
GEMM engine, and that the chains were planned where they should be and not where an input is not
ready yet.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ISAS, load_with_env
from reference import conv_sums, fma_f32, pack_weights_oihw, random_pm1

import xnorinfer
from xnorinfer import ir, xbin
from xnorinfer.convert.pipeline import convert

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from imagenet_bnns import BiRealBlock, ReActBlock, randomised  # noqa: E402


def _outputs(session: xnorinfer.Session, x: np.ndarray, isa: str) -> list[np.ndarray]:
    out = session.run(x, isa=isa)
    return [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])]


def _prelu(t: np.ndarray, slope: np.ndarray, pre: np.ndarray, post: np.ndarray) -> np.ndarray:
    t = (t - pre).astype(np.float32)
    return (np.where(t >= 0, t, slope * t).astype(np.float32) + post).astype(np.float32)


OUTPUTS = ("conv", "res", "act", "conv2", "out")


def _chain_graph(
    rng: np.random.Generator, n: int, c: int, h: int, w: int, k: int, late_residual: bool, outputs: tuple = OUTPUTS
):
    """x -> sign -> bconv2d kxk (float) -> add x -> prelu (+ fused sign) -> bconv2d 1x1 -> affine.

    late_residual: the add's second operand is made after the conv (a 1x1 float conv of x), so
    the add cannot run inside the conv and stays a step of its own (reference: None, the float
    conv's rounding is not modelled here).
    Returns the graph, the input and the numpy reference of its outputs (conv, res, act, conv2, out).
    """
    pad = k // 2
    w1 = random_pm1(rng, (c, c, k, k))
    w2 = random_pm1(rng, (c, c, 1, 1))
    m1, b1, m2, b2, slope, pre, post, scale, shift = rng.standard_normal((9, c)).astype(np.float32)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)

    nhwc = (1, h, w, c)  # as recorded; the run's batch is n
    t = {name: ir.Tensor(name, nhwc, "f32") for name in ("x", "conv", "res", "act", "conv2", "out")}
    t["s0"] = ir.Tensor("s0", nhwc, "bits")
    t["s1"] = ir.Tensor("s1", nhwc, "bits")
    zero = {"threshold": np.zeros(c, np.float32)}

    def bconv(name: str, src: str, weights: np.ndarray, m: np.ndarray, b: np.ndarray) -> ir.Op:
        p = weights.shape[-1] // 2
        attrs = {"stride": [1, 1], "padding": [p, p], "pad_mode": "zero", "output": "float", "in_channels": c}
        return ir.Op(
            "bconv2d", name, [src], [name], attrs, {"weight": pack_weights_oihw(weights), "multiplier": m, "bias": b}
        )

    ops = [ir.Op("sign", "s0", ["x"], ["s0"], {"sign_zero": "+1"}, zero), bconv("conv", "s0", w1, m1, b1)]
    residual = "x"
    if late_residual:
        t["late"] = ir.Tensor("late", nhwc, "f32")
        fw = rng.standard_normal((c, 1, 1, c)).astype(np.float32)
        ops.append(ir.Op("conv2d", "late", ["x"], ["late"], {"stride": [1, 1], "padding": [0, 0]}, {"weight": fw}))
        residual = "late"
    ops += [
        ir.Op("add", "res", ["conv", residual], ["res"]),
        ir.Op("prelu", "act", ["res"], ["act"], {}, {"slope": slope, "pre_shift": pre, "post_shift": post}),
        ir.Op("sign", "s1", ["act"], ["s1"], {"sign_zero": "+1"}, zero),
        bconv("conv2", "s1", w2, m2, b2),
        ir.Op("affine", "out", ["conv2"], ["out"], {}, {"scale": scale, "shift": shift}),
    ]
    g = ir.Graph(inputs=["x"], outputs=list(outputs), tensors=t, ops=ops, metadata={"input_shape": [1, c, h, w]})
    if late_residual:
        return g, x, None

    # Exact integer sums, the conv's fma, then float32 element-wise steps as numpy rounds them.
    conv = fma_f32(m1, conv_sums(np.where(x < 0, -1.0, 1.0), w1, (1, 1), (pad, pad), "zero"), b1)
    res = (conv + x.transpose(0, 2, 3, 1)).astype(np.float32)
    act = _prelu(res, slope, pre, post)
    conv2 = fma_f32(m2, conv_sums(np.where(act < 0, -1.0, 1.0).transpose(0, 3, 1, 2), w2, (1, 1), (0, 0), "zero"), b2)
    out = fma_f32(scale, conv2, shift)  # affine: one fma per value, fma(x, scale, shift)
    values = {"conv": conv, "res": res, "act": act, "conv2": conv2, "out": out}
    return g, x, [values[name] for name in outputs]


CASES = [  # (n, c, h, w, k): channel blocks of 32, a last block of 8 lanes, one under 8, channel groups
    (1, 64, 13, 11, 3),
    (2, 40, 9, 7, 3),
    (1, 5, 8, 9, 3),
    (1, 96, 6, 5, 1),
    (1, 256, 2, 2, 1),  # 3 threads: one tile, so the channel blocks split into groups
]


@pytest.mark.parametrize(("n", "c", "h", "w", "k"), CASES)
def test_chain_equals_reference_and_unchained(tmp_path, monkeypatch, n, c, h, w, k):
    rng = np.random.default_rng(c * 31 + h * 7 + k)
    g, x, want = _chain_graph(rng, n, c, h, w, k, late_residual=False)
    path = tmp_path / "chain.xbin"
    xbin.write(g, path)
    unchained = _outputs(load_with_env(path, 1, monkeypatch, XNORINFER_FUSE="sign"), x, "scalar")
    for got, ref, name in zip(unchained, want, ("conv", "res", "act", "conv2", "out"), strict=True):
        np.testing.assert_array_equal(got.reshape(ref.shape), ref, err_msg=name)
    for threads in (1, 2, 3):
        session = load_with_env(path, threads, monkeypatch)
        # Steps: 0 sign, 1 conv, 2 add, 3 prelu, 4 sign (fused into the prelu), 5 conv2, 6 affine.
        assert session._core.fused_chain == [[], [2, 3], [], [], [], [6], []]
        for engine in ("popcount", "amx-emulated", "auto-emulated"):
            monkeypatch.setenv("XNORINFER_BGEMM", engine)
            for isa in ISAS:
                for got, ref in zip(_outputs(session, x, isa), unchained, strict=True):
                    assert got.tobytes() == ref.tobytes(), f"{isa}, {threads} threads, {engine}"
        monkeypatch.delenv("XNORINFER_BGEMM")
    # The chained steps did no work of their own.
    times = {r["name"]: r["total_ms"] for r in load_with_env(path, 1, monkeypatch).profile(x, runs=2)}
    assert times["res"] == times["act"] == times["out"] == 0.0


def test_chain_stops_at_an_operand_made_later(tmp_path, monkeypatch):
    """An add whose other operand is computed after the binary conv cannot run inside it: it runs
    inside the float conv that computes that operand (the conv's output is its other input)."""
    g, x, _ = _chain_graph(np.random.default_rng(5), 1, 64, 9, 9, 3, late_residual=True)
    path = tmp_path / "late.xbin"
    xbin.write(g, path)
    # Steps: 0 sign, 1 conv, 2 late (conv2d), 3 add, 4 prelu, 5 sign, 6 conv2, 7 affine.
    unchained = _outputs(load_with_env(path, 1, monkeypatch, XNORINFER_FUSE="sign"), x, "scalar")
    for threads in (1, 2):
        session = load_with_env(path, threads, monkeypatch)
        assert session._core.fused_chain == [[], [], [3, 4], [], [], [], [7], []]
        for isa in ISAS:
            for got, ref in zip(_outputs(session, x, isa), unchained, strict=True):
                assert got.tobytes() == ref.tobytes(), f"{isa}, {threads} threads"


@pytest.mark.parametrize("block", [BiRealBlock, ReActBlock])
def test_chains_in_converted_blocks(tmp_path, monkeypatch, block):
    """Bi-Real and ReActNet blocks as their training code writes them: every residual add (and
    ReActNet's RPReLU) runs inside the binary conv before it, and the outputs are the bytes of
    the unchained graph on every path and thread count."""
    torch.manual_seed(0)
    body = torch.nn.Sequential(block(64, 64, 1), block(64, 128, 2), block(128, 128, 1))
    model = randomised(torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3, 1, 1), torch.nn.BatchNorm2d(64), body))
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    path = tmp_path / "blocks.xbin"
    convert(model, (x[:1],), verify=False, output=path)
    unchained = _outputs(load_with_env(path, 1, monkeypatch, XNORINFER_FUSE="sign"), x.numpy(), "scalar")
    for threads in (1, 2):
        session = load_with_env(path, threads, monkeypatch)
        kinds = [r["kind"] for r in session.profile(x.numpy(), runs=1)]
        chained = {i for chain in session._core.fused_chain for i in chain}
        adds = [i for i, kind in enumerate(kinds) if kind == "add"]
        assert adds and set(adds) <= chained, (kinds, session._core.fused_chain)
        if block is ReActBlock:  # RPReLU, and the concat of the two 1x1 branches of the stride-2 block
            assert {i for i, kind in enumerate(kinds) if kind in ("prelu", "concat")} <= chained
        for isa in ISAS:
            for got, ref in zip(_outputs(session, x.numpy(), isa), unchained, strict=True):
                assert got.tobytes() == ref.tobytes(), f"{isa}, {threads} threads"


def test_chain_writes_over_inputs_nothing_else_reads(tmp_path, monkeypatch):
    """With only the last tensor a graph output, the add and the affine write over the conv output
    they read (the PReLU too, over the add's): a smaller memory plan, the same values."""
    g, x, (want,) = _chain_graph(np.random.default_rng(9), 2, 64, 11, 10, 3, late_residual=False, outputs=("out",))
    path = tmp_path / "in_place.xbin"
    xbin.write(g, path)
    unchained = load_with_env(path, 1, monkeypatch, XNORINFER_FUSE="sign")
    np.testing.assert_array_equal(_outputs(unchained, x, "scalar")[0].reshape(want.shape), want)
    for threads in (1, 2):
        session = load_with_env(path, threads, monkeypatch)
        # conv, res and act share one buffer, conv2 and out another: the plan's peak is lower.
        assert session.planned_bytes(x.shape) < unchained.planned_bytes(x.shape)
        for isa in ISAS:
            assert _outputs(session, x, isa)[0].tobytes() == _outputs(unchained, x, "scalar")[0].tobytes(), isa
