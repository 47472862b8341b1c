"""The graph runtime (xnorinfer.load / Session.run) against an independent torch float64 interpreter.

Graphs are hand-built `ir.Graph`s written with `xbin.write` and loaded back. The reference below
never calls `_core`: bits are ±1 float64 tensors, binary convolutions are float64 convolutions of
±1 tensors (exact integers), weights are packed with numpy. First float layers use small integer
inputs and weights so that the values feeding `sign` are exact in float32 and float64: binary
intermediates (returned through `unpack`) must then be bit-exact, and float outputs agree within
RTOL/ATOL. Every graph also runs on every ISA path with 1 and 2 threads, and all results must be
byte-identical.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import ISAS
from reference import pack_bool_last

import xnorinfer
from xnorinfer import ir, xbin

RTOL = 1e-5  # float32 engine vs float64 reference, relative
ATOL = 1e-5  # and absolute (outputs here are O(1))


# --------------------------------------------------------------------------- reference interpreter


def unpack_weights(w: np.ndarray, channels: int) -> np.ndarray:
    """uint64 packed (..., words) -> ±1 float64 (..., channels); bit 1 = -1."""
    bits = np.unpackbits(np.ascontiguousarray(w).view(np.uint8), axis=-1, bitorder="little")
    return np.where(bits[..., :channels] == 1, -1.0, 1.0)


def _nchw(t: torch.Tensor) -> torch.Tensor:
    return t.permute(0, 3, 1, 2)


def _nhwc(t: torch.Tensor) -> torch.Tensor:
    return t.permute(0, 2, 3, 1)


def _binary_output(s: torch.Tensor, op: ir.Op) -> torch.Tensor:
    p = op.params
    if op.attrs["output"] == "bits":
        th = torch.from_numpy(p["threshold"].astype(np.int64))
        flip = torch.from_numpy(p.get("flip", np.zeros(th.shape[0], np.uint8)).astype(bool))
        bit = (s.round().long() < th) ^ flip
        return torch.where(bit, -1.0, 1.0).double()
    m = torch.from_numpy(p["multiplier"].astype(np.float64))
    b = torch.from_numpy(p["bias"].astype(np.float64))
    return (m * s + b).float().double()  # the kernel's one rounding


def reference_run(g: ir.Graph, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every tensor of `g` for NCHW input x, float64 NHWC; bits tensors as ±1 values."""
    env: dict[str, torch.Tensor] = {g.inputs[0]: _nhwc(torch.from_numpy(x.astype(np.float64)))}
    for op in g.ops:
        ins = [env[t] for t in op.inputs]
        a, p, k = op.attrs, op.params, op.kind
        t = {n: torch.from_numpy(v.astype(np.float64)) for n, v in p.items() if v.dtype == np.float32}
        x0 = ins[0]
        if k == "conv2d":
            y = _nhwc(
                F.conv2d(
                    _nchw(x0), t["weight"].permute(0, 3, 1, 2), t.get("bias"), stride=a["stride"], padding=a["padding"]
                )
            )
            y = y.clamp_min(0) if a.get("relu") else y
        elif k == "linear":
            y = x0 @ t["weight"].T + (t["bias"] if "bias" in t else 0)
            y = y.clamp_min(0) if a.get("relu") else y
        elif k == "affine":
            y = x0 * t["scale"] + t["shift"]
        elif k == "prelu":
            v = x0 - t["pre_shift"] if "pre_shift" in t else x0
            y = torch.where(v >= 0, v, t["slope"] * v) + (t["post_shift"] if "post_shift" in t else 0)
        elif k == "relu":
            y = x0.clamp_min(0)
        elif k == "hardtanh":
            y = x0.clamp(a["min_val"], a["max_val"])
        elif k == "sigmoid":
            y = torch.sigmoid(x0)
        elif k == "maxpool2d":
            y = _nhwc(F.max_pool2d(_nchw(x0), a["kernel"], a["stride"], a["padding"]))
        elif k == "avgpool2d":
            y = _nhwc(
                F.avg_pool2d(
                    _nchw(x0),
                    a["kernel"],
                    a["stride"],
                    a["padding"],
                    count_include_pad=a.get("count_include_pad", True),
                )
            )
        elif k == "global_avgpool":
            y = x0.mean(dim=(1, 2))
        elif k == "add":
            y = x0 + ins[1]
        elif k == "mul":
            y = x0 * (ins[1][:, None, None, :] if ins[1].dim() == 2 and x0.dim() == 4 else ins[1])
        elif k in ("concat", "bconcat"):
            y = torch.cat(ins, dim=-1)
        elif k == "flatten":
            y = x0.reshape(x0.shape[0], -1)
        elif k == "softmax":
            y = torch.softmax(x0, dim=-1)
        elif k == "log_softmax":
            y = torch.log_softmax(x0, dim=-1)
        elif k == "bflatten":
            y = x0.reshape(x0.shape[0], -1)
        elif k == "sign":
            c = x0.shape[-1]
            th = t.get("threshold", torch.zeros(c, dtype=torch.float64)).reshape(-1, c)
            minus = [(x0 <= th[j]) if a.get("sign_zero", "+1") == "-1" else (x0 < th[j]) for j in range(th.shape[0])]
            y = torch.where(torch.cat(minus, dim=-1), -1.0, 1.0).double()
        elif k == "bconv2d":
            ci = a["in_channels"]
            w = torch.from_numpy(unpack_weights(p["weight"], ci)).permute(0, 3, 1, 2)
            xin = _nchw(x0)
            ph, pw = a["padding"]
            if a["pad_mode"] != "zero":
                xin = F.pad(xin, (pw, pw, ph, ph), value=1.0 if a["pad_mode"] == "plus_one" else -1.0)
                ph = pw = 0
            s = _nhwc(F.conv2d(xin, w, stride=a["stride"], padding=(ph, pw)))
            y = _binary_output(s, op)
        elif k == "blinear":
            w = torch.from_numpy(unpack_weights(p["weight"], a["in_features"]))
            y = _binary_output(x0 @ w.T, op)
        elif k == "bmaxpool2d":
            y = _nhwc(F.max_pool2d(_nchw(x0), a["kernel"], a["stride"], a["padding"]))
        elif k == "unpack":
            y = x0
        else:  # pragma: no cover
            raise AssertionError(k)
        env[op.outputs[0]] = y
    return {n: v.numpy() for n, v in env.items()}


# --------------------------------------------------------------------------- graph building


class Builder:
    """Builds an ir.Graph op by op, inferring recorded shapes with the reference."""

    def __init__(self, rng: np.random.Generator, input_shape: tuple[int, int, int, int]) -> None:
        self.rng = rng
        n, c, h, w = input_shape
        self.g = ir.Graph(
            inputs=["x"],
            outputs=[],
            tensors={"x": ir.Tensor("x", (1, h, w, c), "f32")},
            ops=[],
            metadata={"input_shape": list(input_shape), "labels": ["a", "b"]},
        )
        self.probe = rng.integers(-3, 4, size=(1, c, h, w)).astype(np.float32)
        self.count = 0

    def add(self, kind: str, inputs: list[str], bits: bool = False, **kw) -> str:
        params = kw.pop("params", {})
        self.count += 1
        name = f"t{self.count}"
        op = ir.Op(kind, f"layer{self.count}.{kind}", inputs, [name], kw, params)
        self.g.ops.append(op)
        self.g.tensors[name] = ir.Tensor(name, (1,), "bits" if bits else "f32")
        shape = reference_run(self.g, self.probe)[name].shape
        self.g.tensors[name] = ir.Tensor(name, tuple(shape), "bits" if bits else "f32")
        return name

    def channels(self, t: str) -> int:
        return self.g.tensors[t].shape[-1]

    def int_conv(self, x: str, out: int, k: int = 3, pad: int = 1, stride: int = 1) -> str:
        ci = self.channels(x)
        w = self.rng.integers(-2, 3, size=(out, k, k, ci)).astype(np.float32)
        b = self.rng.integers(-2, 3, size=out).astype(np.float32)
        return self.add("conv2d", [x], stride=[stride, stride], padding=[pad, pad], params={"weight": w, "bias": b})

    def sign(self, x: str, groups: int = 1, sign_zero: str = "+1") -> str:
        c = self.channels(x)
        shape = (c,) if groups == 1 else (groups, c)
        th = (self.rng.integers(-4, 5, size=shape) / 2).astype(np.float32)  # integers and halves: ties happen
        return self.add("sign", [x], bits=True, sign_zero=sign_zero, params={"threshold": th})

    def transform(self, out: int, k: int, output: str) -> dict[str, np.ndarray]:
        if output == "bits":
            return {
                "threshold": self.rng.integers(-k // 3, k // 3 + 1, size=out).astype(np.int32),
                "flip": self.rng.integers(0, 2, size=out).astype(np.uint8),
            }
        return {
            "multiplier": self.rng.uniform(0.01, 0.1, size=out).astype(np.float32),
            "bias": self.rng.uniform(-1, 1, size=out).astype(np.float32),
        }

    def bconv(
        self, x: str, out: int, k: int = 3, pad: int = 1, output: str = "bits", pad_mode: str = "zero", stride: int = 1
    ) -> str:
        ci = self.channels(x)
        w = pack_bool_last(self.rng.integers(0, 2, size=(out, k, k, ci)).astype(bool))
        params = {"weight": w, **self.transform(out, k * k * ci, output)}
        return self.add(
            "bconv2d",
            [x],
            bits=output == "bits",
            stride=[stride, stride],
            padding=[pad, pad],
            pad_mode=pad_mode,
            output=output,
            in_channels=ci,
            params=params,
        )

    def blinear(self, x: str, out: int, output: str = "bits") -> str:
        f = self.channels(x)
        w = pack_bool_last(self.rng.integers(0, 2, size=(out, f)).astype(bool))
        return self.add(
            "blinear",
            [x],
            bits=output == "bits",
            output=output,
            in_features=f,
            params={"weight": w, **self.transform(out, f, output)},
        )

    def linear(self, x: str, out: int) -> str:
        f = self.channels(x)
        return self.add(
            "linear",
            [x],
            params={
                "weight": self.rng.normal(0, 0.2, size=(out, f)).astype(np.float32),
                "bias": self.rng.normal(0, 0.2, size=out).astype(np.float32),
            },
        )

    def unpack(self, x: str) -> str:
        return self.add("unpack", [x])

    def per_channel(self, x: str, lo: float = -1.0, hi: float = 1.0) -> np.ndarray:
        return self.rng.uniform(lo, hi, size=self.channels(x)).astype(np.float32)


def check_graph(tmp_path, g: ir.Graph, x: np.ndarray, exact: set[str] | None = None) -> list[np.ndarray]:
    """Write, load, run on every ISA with 1 and 2 threads; compare with the reference. Returns outputs."""
    path = tmp_path / "model.xbin"
    xbin.write(g, path)
    sessions = [xnorinfer.load(path, threads=1), xnorinfer.load(path, threads=2)]
    results = []
    for s in sessions:
        for isa in ISAS:
            out = s.run(x, isa=isa)
            results.append(out if isinstance(out, list) else [out])
    first = results[0]
    for other in results[1:]:
        for a, b in zip(first, other, strict=True):
            assert a.dtype == np.float32 and a.shape == b.shape
            assert a.tobytes() == b.tobytes(), "results differ between ISA paths / thread counts"
    ref = reference_run(g, x)
    for name, got in zip(g.outputs, first, strict=True):
        want = ref[name]
        assert got.shape == want.shape, name
        if exact and name in exact:
            np.testing.assert_array_equal(got, want.astype(np.float32), err_msg=f"binary tensor {name}")
        else:
            np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg=name)
    return first


# --------------------------------------------------------------------------- graphs


def test_binarynet_vgg(tmp_path, rng):
    b = Builder(rng, (1, 3, 12, 12))
    t = b.int_conv("x", 16)
    t = b.sign(t)
    t = b.bconv(t, 70, pad=1, output="bits")  # zero padding, 2 output words
    pooled = b.add("bmaxpool2d", [t], bits=True, kernel=[2, 2], stride=[2, 2], padding=[0, 0])
    t = b.bconv(pooled, 24, pad=0, output="float")
    t = b.add("global_avgpool", [t])
    t = b.linear(t, 10)
    probs = b.add("softmax", [t])
    bits = b.unpack(pooled)
    b.g.outputs = [probs, bits]
    x = rng.integers(-3, 4, size=(3, 3, 12, 12)).astype(np.float32)
    out = check_graph(tmp_path, b.g, x, exact={bits})
    np.testing.assert_allclose(out[0].sum(axis=1), 1.0, rtol=1e-5)


def test_mlp_maxpool_flatten_blinear(tmp_path, rng):
    b = Builder(rng, (1, 2, 8, 8))
    t = b.int_conv("x", 8)
    t = b.add("maxpool2d", [t], kernel=[3, 3], stride=[2, 2], padding=[1, 1])
    t = b.add("flatten", [t])
    t = b.sign(t, sign_zero="-1")
    h1 = b.blinear(t, 100, output="bits")
    h2 = b.blinear(h1, 65, output="bits")
    t = b.blinear(h2, 10, output="float")
    t = b.add("affine", [t], params={"scale": b.per_channel(t, 0.5, 2), "shift": b.per_channel(t)})
    t = b.add("softmax", [t])
    bits = b.unpack(h2)
    b.g.outputs = [t, bits]
    x = rng.integers(-3, 4, size=(4, 2, 8, 8)).astype(np.float32)
    check_graph(tmp_path, b.g, x, exact={bits})


@pytest.mark.parametrize("channels", [1, 40, 63, 64, 65, 130])
def test_bflatten_into_blinear(tmp_path, rng, channels):
    """Bits flattened in NHWC order without unpacking: repacked across words, or a view when C % 64 == 0."""
    b = Builder(rng, (1, 2, 5, 3))
    t = b.int_conv("x", channels)
    t = b.sign(t)
    flat = b.add("bflatten", [t], bits=True)
    assert b.g.tensors[flat].shape == (1, 5 * 3 * channels)
    h = b.blinear(flat, 70, output="bits")
    logits = b.blinear(h, 10, output="float")
    t = b.add("log_softmax", [logits])
    b.g.outputs = [t, b.unpack(flat), b.unpack(h)]
    x = rng.integers(-3, 4, size=(5, 2, 5, 3)).astype(np.float32)
    out = check_graph(tmp_path, b.g, x, exact={b.g.outputs[1], b.g.outputs[2]})
    np.testing.assert_allclose(np.exp(out[0]).sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("pad_mode", ["zero", "plus_one", "minus_one"])
def test_residual_prelu_block(tmp_path, rng, pad_mode):
    b = Builder(rng, (1, 4, 9, 7))
    stem = b.int_conv("x", 12)
    t = b.sign(stem)
    t = b.bconv(t, 12, pad=1, output="float", pad_mode=pad_mode)
    t = b.add("add", [t, stem])
    t = b.add(
        "prelu",
        [t],
        params={"slope": b.per_channel(t, 0, 0.5), "pre_shift": b.per_channel(t), "post_shift": b.per_channel(t)},
    )
    t = b.add("prelu", [t], params={"slope": np.array([0.25], np.float32)})
    t = b.add("hardtanh", [t], min_val=-1.5, max_val=2.0)
    t = b.add("avgpool2d", [t], kernel=[3, 3], stride=[2, 2], padding=[1, 1], count_include_pad=False)
    t = b.add("relu", [t])
    t = b.add("sigmoid", [t])
    b.g.outputs = [t]
    x = rng.integers(-3, 4, size=(2, 4, 9, 7)).astype(np.float32)
    check_graph(tmp_path, b.g, x)


def test_binaryduo_two_thresholds(tmp_path, rng):
    b = Builder(rng, (1, 3, 10, 10))
    t = b.int_conv("x", 40)
    t = b.sign(t, groups=2)  # 80 channels, j-major
    t = b.bconv(t, 33, pad=1, output="bits", stride=2)
    b.g.outputs = [b.unpack(t)]
    x = rng.integers(-3, 4, size=(2, 3, 10, 10)).astype(np.float32)
    check_graph(tmp_path, b.g, x, exact=set(b.g.outputs))


def test_concat_and_bconcat(tmp_path, rng):
    b = Builder(rng, (1, 3, 6, 6))
    a1 = b.int_conv("x", 37)
    a2 = b.int_conv("x", 50, k=1, pad=0)
    fcat = b.add("concat", [a1, a2, a1])
    s1 = b.sign(a1)
    s2 = b.sign(a2)
    bcat = b.add("bconcat", [s1, s2, s1], bits=True)  # 124 channels at unaligned bit offsets
    t = b.bconv(bcat, 20, pad=1, output="bits")
    b.g.outputs = [fcat, b.unpack(bcat), b.unpack(t)]
    x = rng.integers(-3, 4, size=(2, 3, 6, 6)).astype(np.float32)
    check_graph(tmp_path, b.g, x, exact=set(b.g.outputs))


def test_mul_broadcast(tmp_path, rng):
    b = Builder(rng, (1, 3, 5, 5))
    feat = b.int_conv("x", 16)
    gate = b.add("global_avgpool", [feat])
    gate = b.linear(gate, 16)
    gate = b.add("sigmoid", [gate])
    t = b.add("mul", [feat, gate])
    t = b.add("mul", [t, feat])
    b.g.outputs = [t]
    x = rng.integers(-3, 4, size=(3, 3, 5, 5)).astype(np.float32)
    out = check_graph(tmp_path, b.g, x)
    assert out[0].shape == (3, 5, 5, 16)


# --------------------------------------------------------------------------- session behaviour


def test_replanning_and_batch(tmp_path, rng):
    b = Builder(rng, (1, 3, 8, 8))
    t = b.int_conv("x", 8)
    t = b.sign(t)
    t = b.bconv(t, 8, output="float")
    b.g.outputs = [b.add("global_avgpool", [t])]
    path = tmp_path / "m.xbin"
    xbin.write(b.g, path)
    s = xnorinfer.load(path, threads=2)
    xa = rng.integers(-3, 4, size=(2, 3, 8, 8)).astype(np.float32)
    xb = rng.integers(-3, 4, size=(5, 3, 11, 9)).astype(np.float32)
    ya = s.run(xa)
    yb = s.run(xb)
    assert ya.shape == (2, 8) and yb.shape == (5, 8)
    assert s.run(xa).tobytes() == ya.tobytes()
    np.testing.assert_allclose(yb, reference_run(b.g, xb)[b.g.outputs[0]], rtol=RTOL, atol=ATOL)
    # one image of a batch equals that image alone
    assert s.run(xb[2:3]).tobytes() == yb[2:3].tobytes()


def test_session_api(tmp_path, rng):
    b = Builder(rng, (1, 3, 8, 8))
    t = b.int_conv("x", 8)
    t = b.sign(t)
    t = b.bconv(t, 64, output="float")
    t = b.add("global_avgpool", [t])
    b.g.outputs = [b.linear(t, 2)]
    path = tmp_path / "m.xbin"
    xbin.write(b.g, path)
    s = xnorinfer.load(path, threads=1)
    assert isinstance(s, xnorinfer.Session)
    assert s.input_shape == (1, 3, 8, 8)
    assert s.labels == ["a", "b"]
    assert s.metadata["input_shape"] == [1, 3, 8, 8]
    rows = s.summary()
    assert [r["kind"] for r in rows] == ["conv2d", "sign", "bconv2d", "global_avgpool", "linear"]
    bconv = rows[2]
    assert bconv["output_shape"] == (1, 8, 8, 64)
    # weight bits are the parameters as stored: packed weights (one 64-bit word per tap for 8
    # channels) plus the per-channel epilogue, not the 64 * 9 * 8 logical weights
    stored = sum(p.nbytes * 8 for p in b.g.ops[2].params.values())
    assert bconv["weight_bits"] == stored >= 64 * 9 * 64 and bconv["weight_bytes"] * 8 == stored
    assert bconv["float32_weight_bits"] == (64 * 9 * 8 + 2 * 64) * 32
    assert bconv["binary_macs"] == 8 * 8 * 64 * 9 * 8
    assert rows[0]["flops"] == 2 * 8 * 8 * 8 * 9 * 3
    with pytest.raises(ValueError, match="3"):
        s.run(np.zeros((1, 4, 8, 8), np.float32))
    with pytest.raises(ValueError, match="NCHW"):
        s.run(np.zeros((3, 8, 8), np.float32))
    with pytest.raises(ValueError, match="smaller than the kernel|linear|input"):
        s.run(np.zeros((1, 3, 8, 8), np.float32)[:, :, :0])


def test_flatten_then_linear_rejects_other_sizes(tmp_path, rng):
    b = Builder(rng, (1, 2, 4, 4))
    t = b.add("flatten", ["x"])
    b.g.outputs = [b.linear(t, 3)]
    path = tmp_path / "m.xbin"
    xbin.write(b.g, path)
    s = xnorinfer.load(path, threads=1)
    x = rng.normal(size=(2, 2, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(s.run(x), reference_run(b.g, x)[b.g.outputs[0]], rtol=RTOL, atol=ATOL)
    with pytest.raises(ValueError, match=r"layer2\.linear.*\(N, 32\)"):
        s.run(np.zeros((1, 2, 5, 4), np.float32))


def test_isa_env_override(tmp_path, rng, monkeypatch):
    b = Builder(rng, (1, 3, 6, 6))
    t = b.sign(b.int_conv("x", 8))
    b.g.outputs = [b.unpack(b.bconv(t, 8))]
    path = tmp_path / "m.xbin"
    xbin.write(b.g, path)
    s = xnorinfer.load(path, threads=1)
    x = rng.integers(-3, 4, size=(1, 3, 6, 6)).astype(np.float32)
    want = s.run(x)
    for isa in ISAS:
        monkeypatch.setenv("XNORINFER_ISA", isa)
        assert s.run(x).tobytes() == want.tobytes()


@pytest.mark.parametrize("channels", [1, 3, 8, 13, 56, 64, 70, 130])
@pytest.mark.parametrize("groups", [1, 2, 3])
@pytest.mark.parametrize("sign_zero", ["+1", "-1"])
def test_sign_and_unpack_bits_on_every_path(tmp_path, channels, groups, sign_zero):
    """The SIMD sign (8 channels per compare, groups straddling 64-bit words) and unpack against
    numpy: ties, -0.0, NaN and infinities included; identical bytes on every ISA path."""
    rng = np.random.default_rng(channels * 10 + groups)
    h, w = 3, 5
    th = (rng.integers(-3, 4, size=(groups, channels)) / 2).astype(np.float32)
    th[0, 0] = 0.0
    x = (rng.integers(-4, 5, size=(2, channels, h, w)) / 2).astype(np.float32)  # ties with the thresholds
    x.reshape(-1)[:4] = [-0.0, np.nan, np.inf, -np.inf]
    tensors = {
        "x": ir.Tensor("x", (1, h, w, channels), "f32"),
        "s": ir.Tensor("s", (1, h, w, groups * channels), "bits"),
        "y": ir.Tensor("y", (1, h, w, groups * channels), "f32"),
    }
    ops = [
        ir.Op("sign", "sign", ["x"], ["s"], {"sign_zero": sign_zero}, {"threshold": th if groups > 1 else th[0]}),
        ir.Op("unpack", "unpack", ["s"], ["y"]),
    ]
    g = ir.Graph(inputs=["x"], outputs=["y"], tensors=tensors, ops=ops, metadata={"input_shape": [1, channels, h, w]})
    path = tmp_path / "sign.xbin"
    xbin.write(g, path)
    nhwc = x.transpose(0, 2, 3, 1)
    below = [(nhwc <= th[j]) if sign_zero == "-1" else (nhwc < th[j]) for j in range(groups)]
    want = np.where(np.concatenate(below, axis=-1), -1.0, 1.0).astype(np.float32)  # NaN compares false: +1
    outputs = set()
    for threads in (1, 2):
        session = xnorinfer.load(path, threads=threads)
        for isa in ISAS:
            got = session.run(x, isa=isa)
            np.testing.assert_array_equal(got, want, err_msg=f"{isa}, {threads} threads")
            outputs.add(got.tobytes())
    assert len(outputs) == 1
