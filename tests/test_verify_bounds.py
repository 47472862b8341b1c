"""Verification's float32 error bound (reference.error_bound): it holds against the float32 error
PyTorch actually makes (float64 numpy / torch as the exact side), it explains a torch.sign(0) tie's
effect on the next binary conv, and it does not swallow real bugs: a wrong threshold, a wrong weight
sign or a wrong bias in one channel of a Bi-Real-like model still fails verification."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xnorinfer import ir, load_bytes
from xnorinfer.bits import pack_last
from xnorinfer.convert import capture, patterns, reference, verify
from xnorinfer.convert.graph import ConversionError
from xnorinfer.convert.lower import lower
from xnorinfer.convert.pipeline import capture_model, describe


def _conv_op(w_oihw: np.ndarray, bias: np.ndarray, padding: int) -> ir.Op:
    params = {"weight": np.ascontiguousarray(w_oihw.transpose(0, 2, 3, 1)), "bias": bias}
    return ir.Op("conv2d", "c", ["x"], ["y"], {"stride": [1, 1], "padding": [padding, padding]}, params)


def test_float_conv_error_stays_under_the_bound_in_1000_cases():
    """PyTorch's float32 conv2d against float64: |error| <= the bound on every output of 1000 random convs."""
    rng = np.random.default_rng(0)
    worst = 0.0
    for case in range(1000):
        c, k = int(rng.integers(1, 65) if case % 10 else rng.integers(65, 513)), int(rng.choice([1, 3, 5]))
        kind = case % 6
        x = rng.standard_normal((1, c, 4, 4)).astype(np.float32)
        w = rng.standard_normal((4, c, k, k)).astype(np.float32)
        if kind == 1:  # all terms positive: no cancellation
            x, w = np.abs(x), np.abs(w)
        elif kind == 2:  # a ±1 input with +-alpha weights (a binary conv in float)
            x = np.where(x < 0, -1.0, 1.0).astype(np.float32)
            w = (np.where(w < 0, -1.0, 1.0) * np.float32(rng.uniform(1e-3, 1.0))).astype(np.float32)
        elif kind == 3:  # values far apart in scale
            x = (x * np.exp(rng.uniform(-8, 8, x.shape))).astype(np.float32)
        elif kind == 4:  # K equal terms: roundings that do not cancel
            x, w = np.ones_like(x), np.full_like(w, np.float32(rng.uniform(1e-3, 1.0)))
        elif kind == 5:  # ±1 with ±alpha, 90% of the products positive: a drifting sum
            x = np.ones_like(x)
            w = (np.where(rng.random(w.shape) < 0.9, 1.0, -1.0) * np.float32(rng.uniform(1e-3, 1.0))).astype(np.float32)
        b = rng.standard_normal(4).astype(np.float32)
        got = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), padding=k // 2).numpy()
        exact = F.conv2d(
            torch.from_numpy(x).double(), torch.from_numpy(w).double(), torch.from_numpy(b).double(), padding=k // 2
        ).numpy()
        op = _conv_op(w, b, k // 2)
        xin = np.transpose(x, (0, 2, 3, 1)).astype(np.float64)
        out = np.transpose(exact, (0, 2, 3, 1))
        bound = reference.error_bound(op, [xin], [0.0], out, [ir.Tensor("x", xin.shape, "f32")])
        err = np.abs(np.transpose(got, (0, 2, 3, 1)) - out)
        assert (err <= bound).all(), f"case {case}: error {err.max():.3g} above bound"
        worst = max(worst, float((err / bound).max()))
    assert worst > 1e-4  # the bound is not astronomically loose for these sizes


def test_detach_trick_binary_conv_and_batchnorm_stay_under_the_bound():
    """A Bi-Real binary conv (alpha * sign(W) by the detach trick) + BatchNorm, run in float32 by
    PyTorch, against the folded bconv2d (multiplier, bias) evaluated in float64 with its bound."""
    rng = np.random.default_rng(1)
    for case in range(100):
        cin, cout = int(rng.integers(8, 513)), 4
        torch.manual_seed(case)
        w = torch.randn(cout, cin, 3, 3) * 0.01
        alpha = w.abs().mean(dim=(1, 2, 3), keepdim=True)
        clipped = torch.clamp(w, -1.0, 1.0)
        bw = ((alpha * torch.sign(w)) - clipped + clipped).detach()  # the detach trick's forward value
        bn = nn.BatchNorm2d(cout).eval()
        with torch.no_grad():
            bn.running_mean.copy_(torch.rand(cout) - 0.5)
            bn.running_var.copy_(torch.rand(cout) + 0.5)
            bn.weight.copy_(torch.rand(cout) * 2 - 1)
            bn.bias.copy_(torch.rand(cout) - 0.5)
        x = torch.from_numpy(np.where(rng.standard_normal((2, cin, 5, 5)) < 0, -1.0, 1.0).astype(np.float32))
        with torch.no_grad():
            got = bn(F.conv2d(x, bw, padding=1)).numpy().astype(np.float64)
            s = F.conv2d(x.double(), torch.sign(w).double(), padding=1)
        # the exact model: alpha * sign(W) and BatchNorm in float64
        scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        m = (alpha.double().reshape(-1) * scale).detach().numpy()
        b = (bn.bias.double() - bn.running_mean.double() * scale).detach().numpy()
        exact = np.transpose(s.numpy(), (0, 2, 3, 1)) * m + b
        op = ir.Op(
            "bconv2d",
            "b",
            ["s"],
            ["y"],
            {"stride": [1, 1], "padding": [1, 1], "pad_mode": "zero", "in_channels": cin, "output": "float"},
            {
                "weight": np.zeros((cout, 3, 3, (cin + 63) // 64), np.uint64),
                "multiplier": m.astype(np.float32),
                "bias": b.astype(np.float32),
            },
        )
        bound = reference.error_bound(op, [np.zeros(1)], [0.0], exact, [ir.Tensor("s", (2, 7, 7, cin), "bits")])
        err = np.abs(np.transpose(got, (0, 2, 3, 1)) - exact)
        assert (err <= bound).all(), f"case {case}: error {err.max():.3g} above bound {bound.min():.3g}"


def test_a_sign_zero_tie_moves_the_next_binary_conv_within_the_bound():
    """torch.sign(0) = 0 feeds the next conv a 0 where the IR reads +1: the bound covers it, and only with `zeros`."""
    rng = np.random.default_rng(2)
    cin, cout = 16, 8
    pm = np.where(rng.standard_normal((1, cin, 5, 5)) < 0, -1.0, 1.0)
    w = np.where(rng.standard_normal((cout, cin, 3, 3)) < 0, -1.0, 1.0) * 0.25
    with_zero = pm.copy()
    with_zero[0, 3, 2, 2] = 0.0  # the tie: PyTorch's activation is 0, the IR's +1
    pm[0, 3, 2, 2] = 1.0
    ir_value = np.transpose(F.conv2d(torch.from_numpy(pm), torch.from_numpy(w), padding=1).numpy(), (0, 2, 3, 1))
    torch_value = np.transpose(
        F.conv2d(torch.from_numpy(with_zero), torch.from_numpy(w), padding=1).numpy(), (0, 2, 3, 1)
    )
    op = ir.Op(
        "bconv2d",
        "b",
        ["s"],
        ["y"],
        {"stride": [1, 1], "padding": [1, 1], "pad_mode": "zero", "in_channels": cin, "output": "float"},
        {
            "weight": np.zeros((cout, 3, 3, 1), np.uint64),
            "multiplier": np.full(cout, 0.25, np.float32),
            "bias": np.zeros(cout, np.float32),
        },
    )
    spec = [ir.Tensor("s", (1, 5, 5, cin), "bits")]
    zeros = np.transpose(with_zero == 0, (0, 2, 3, 1))
    diff = np.abs(torch_value - ir_value)
    assert diff.max() == pytest.approx(0.25)  # one tap of |alpha|
    bound = reference.error_bound(op, [np.zeros(1)], [0.0], ir_value, spec, zeros)
    assert (diff <= bound).all()
    without = np.broadcast_to(reference.error_bound(op, [np.zeros(1)], [0.0], ir_value, spec), diff.shape)
    assert (diff > without).any()


# --------------------------------------------------------------------------- a Bi-Real-like model


class _Sign(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sign(x)


class _BinConv(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c, c, 3, 3) * 0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        alpha = w.abs().mean(dim=(1, 2, 3), keepdim=True).detach()
        clipped = torch.clamp(w, -1.0, 1.0)
        return F.conv2d(x, (alpha * torch.sign(w)).detach() - clipped.detach() + clipped, padding=1)


class _Block(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.act, self.conv, self.bn = _Sign(), _BinConv(c), nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(self.act(x))) + x


class _BiRealLike(nn.Module):
    def __init__(self, c: int = 32, blocks: int = 4) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
        self.blocks = nn.Sequential(*(_Block(c) for _ in range(blocks)))
        self.fc = nn.Linear(c, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.blocks(self.stem(x)).mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def bireal_like():
    torch.manual_seed(0)
    model = _BiRealLike()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) * 2 - 1)
                m.bias.copy_(torch.rand(c, generator=g) - 0.5)
    model.eval()
    ep, _, sha = capture_model(model, (torch.randn(1, 3, 12, 12),))
    m = patterns.recognise(capture.to_model(ep), ())
    graph = lower(m)
    describe(graph, m, sha, None)
    x = np.random.default_rng(3).standard_normal((32, 3, 12, 12)).astype(np.float32)
    return graph, ep.module(), x


def _verify(graph, gm, x, engine=None):
    return verify.verify(graph, gm, gm, x, batch=1, engine=engine)


def test_the_model_verifies_with_the_engine(bireal_like):
    graph, gm, x = bireal_like
    res = _verify(graph, gm, x, engine=load_bytes)
    assert not res.problems
    signs = [c for c in res.layers.values() if c.total]
    assert len(signs) == 4 and all(c.mismatches == 0 and c.tie_rule == "bound" for c in signs)
    assert res.engine is not None and res.engine["top1_agreement"] == 1.0


def _sign_ops(graph):
    return [op for op in graph.ops if op.kind == "sign"]


@pytest.mark.parametrize("delta", [1e-2, 1e-3])
def test_a_wrong_threshold_in_one_channel_fails(bireal_like, delta):
    graph, gm, x = bireal_like
    bad = copy.deepcopy(graph)
    op = _sign_ops(bad)[2]
    env = reference.run(graph, x, keep=[op.inputs[0]])
    c = int(np.argmax(np.mean(np.abs(env[op.inputs[0]]) < delta, axis=(0, 1, 2))))  # a channel with values there
    thr = op.params["threshold"].copy()
    thr[c] += np.float32(delta)
    op.params["threshold"] = thr
    with pytest.raises(ConversionError, match=r"blocks\.2\.act: \d+ of \d+ binary activations differ"):
        _verify(bad, gm, x)


def test_a_wrong_weight_sign_in_one_channel_fails(bireal_like):
    graph, gm, x = bireal_like
    bad = copy.deepcopy(graph)
    op = [op for op in bad.ops if op.kind == "bconv2d"][1]
    w = op.params["weight"].copy()
    w[5] ^= pack_last(np.ones(op.attrs["in_channels"], bool))  # output channel 5: every weight negated
    op.params["weight"] = w
    with pytest.raises(ConversionError, match="differ from PyTorch beyond float32 rounding"):
        _verify(bad, gm, x)


def test_a_small_bias_error_in_one_channel_fails(bireal_like):
    """One channel's folded BatchNorm shift off by 1e-3 (far below the activations' scale) still shows."""
    graph, gm, x = bireal_like
    bad = copy.deepcopy(graph)
    op = [op for op in bad.ops if op.kind == "bconv2d"][0]
    b = op.params["bias"].copy()
    b[7] += np.float32(1e-3)
    op.params["bias"] = b
    with pytest.raises(ConversionError, match="verification failed"):
        _verify(bad, gm, x)


def test_engine_bits_read_back_equal_the_reference(bireal_like):
    """engine_forced: the engine's own binary activations (extra unpacked outputs) and its output
    against the reference forced by them."""
    graph, _, x = bireal_like
    signs = {op.outputs[0]: op for op in _sign_ops(graph)}
    eng, forced_ref, flips = verify.engine_forced(graph, x[:10], load_bytes, signs)
    assert eng.shape == forced_ref.shape == (10, 10)
    np.testing.assert_allclose(eng, forced_ref, atol=1e-4)
    assert set(flips) == set(signs) and all(beyond == 0 for _, beyond, _ in flips.values())
    free = reference.run(graph, x[:10])[graph.outputs[0]]
    np.testing.assert_allclose(eng, free, atol=1e-4)


def _chain(kinds_attrs, per_image=False):
    """x -> float ops -> sign -> unpack: the bound at the sign input after the float ops."""
    shape = (1, 2, 2, 3)
    tensors = {"x": ir.Tensor("x", shape, "f32")}
    ops, prev = [], "x"
    for i, (kind, attrs, params) in enumerate(kinds_attrs):
        tensors[f"t{i}"] = ir.Tensor(f"t{i}", shape, "f32")
        ops.append(ir.Op(kind, f"op{i}", [prev], [f"t{i}"], attrs, params))
        prev = f"t{i}"
    tensors["s"], tensors["y"] = ir.Tensor("s", shape, "bits"), ir.Tensor("y", shape, "f32")
    ops += [
        ir.Op("sign", "s", [prev], ["s"], {}, {"threshold": np.zeros(3, np.float32)}),
        ir.Op("unpack", "u", ["s"], ["y"]),
    ]
    meta = {"input_shape": [1, 3, 2, 2], "per_image": per_image}
    g = ir.Graph(inputs=["x"], outputs=["y"], tensors=tensors, ops=ops, metadata=meta)
    x = np.random.default_rng(4).standard_normal((2, 3, 2, 2)).astype(np.float32)
    bounds: dict = {}
    env = reference.run(g, x, keep=[prev], bounds=bounds)
    return env[prev], bounds[prev]


def test_an_op_without_an_error_rule_leaves_no_bound():
    """After tanh (no rule) the sign input has no bound: verification uses the TIE_ULPS rule there."""
    affine = ("affine", {}, {"scale": np.full(3, 2.0, np.float32), "shift": np.ones(3, np.float32)})
    value, bound = _chain([affine])
    assert isinstance(bound, np.ndarray) and bound.shape == value.shape and (bound > 0).all()
    assert (bound < 1e-5 * (np.abs(value) + 1)).all()
    _, bound = _chain([affine, ("tanh", {}, {})])
    assert bound is None


def test_engine_forced_reruns_only_the_images_whose_activations_differ(bireal_like):
    graph, _, x = bireal_like
    x = x[:6]
    signs = {op.outputs[0]: op for op in _sign_ops(graph)}
    env = reference.run(graph, x, keep=list(signs))
    used = {n: reference.bits_of(graph, n, env[n]) for n in signs}
    marked = env[graph.outputs[0]].copy()
    marked[:] = 100.0  # stands for the PyTorch-forced output: kept where nothing is rerun
    first = sorted(signs)[0]
    used[first] = used[first].copy()
    used[first][3, 0, 0, 0] ^= True  # image 3: PyTorch's activations differ from the engine's
    eng, out, flips = verify.engine_forced(graph, x, load_bytes, signs, (used, marked))
    np.testing.assert_array_equal(out[[0, 1, 2, 4, 5]], 100.0)
    np.testing.assert_allclose(out[3], eng[3], atol=1e-4)
    assert all(beyond == 0 for _, beyond, _ in flips.values())


def test_per_image_graphs_get_the_same_bounds():
    affine = ("affine", {}, {"scale": np.full(3, 2.0, np.float32), "shift": np.ones(3, np.float32)})
    value, bound = _chain([affine, ("relu", {}, {})])
    value_1, bound_1 = _chain([affine, ("relu", {}, {})], per_image=True)
    np.testing.assert_array_equal(value, value_1)
    np.testing.assert_array_equal(bound, bound_1)
