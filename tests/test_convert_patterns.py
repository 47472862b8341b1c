"""Recognition patterns, the flatten permutation, the reference, refusals and error messages."""

from __future__ import annotations

import os

import models_zoo as zoo
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from xnorinfer import ir
from xnorinfer.convert import ConversionError, convert, reference
from xnorinfer.convert.pack import pack_last, unpack_last


class GtSign(nn.Module):
    def forward(self, x):
        return torch.where(x > 0, 1.0, -1.0)  # sign(0) = -1


class GeAffineSign(nn.Module):
    def forward(self, x):
        return (x >= 0).float() * 2 - 1  # sign(0) = +1


class AllSTEs(nn.Module):
    """One float stem feeding one binary conv per STE formulation; the branches are summed."""

    input_shape = (3, 8, 8)
    # module -> expected IR sign_zero note prefix
    EXPECTED = {
        "b0.act": "torch.sign",
        "b1.act": "torch.sign",
        "b2.act": "sign(0) = +1",
        "b3.act": "sign(0) = +1",
        "b4.act": "sign(0) = -1",
        "b5.act": "sign(0) = +1",
        "b6.act": "sign(0) = +1",
    }

    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.bn = nn.BatchNorm2d(c)
        acts = [
            zoo.AutogradSign(),
            zoo.DetachSign(),
            zoo.RSign(c),
            zoo.SignSign(),
            GtSign(),
            GeAffineSign(),
            zoo.DecoupledSign(c),
        ]
        self.branches = nn.ModuleList(zoo.BinConv(2 * c if i == 6 else c, c, a, scale=True) for i, a in enumerate(acts))
        for i, b in enumerate(self.branches):
            self.add_module(f"b{i}", b)
        self.fc = nn.Linear(c, 5)

    def forward(self, x):
        h = self.bn(self.stem(x))
        y = sum(b(h) for b in self.branches)
        return self.fc(F.adaptive_avg_pool2d(y, 1).flatten(1))


@pytest.fixture(scope="module")
def all_stes():
    model = zoo.build_model(AllSTEs)
    return model, convert(model, (zoo.example_input(model),), engine=False)


def test_each_ste_is_recognised(all_stes):
    model, graph = all_stes
    signs = [op for op in graph.ops if op.kind == "sign"]
    assert len([op for op in graph.ops if op.kind == "bconv2d"]) == 7
    assert len(signs) == 7
    sign_ops = graph.metadata["sign_ops"]
    for path, prefix in AllSTEs.EXPECTED.items():
        # the branch's module path may be b{i} or branches.{i}; both name the same module
        i = path[1]
        info = sign_ops.get(path) or sign_ops.get(f"branches.{i}.act")
        assert info is not None, f"{path} not recognised; have {sorted(sign_ops)}"
        assert info["sign_zero"].startswith(prefix), (path, info)
    gt = [op for op in signs if op.attrs["sign_zero"] == "-1"]
    assert len(gt) == 1


def test_decoupled_signs_become_one_sign_with_two_thresholds(all_stes):
    model, graph = all_stes
    duo = [op for op in graph.ops if op.kind == "sign" and op.params["threshold"].ndim == 2]
    assert len(duo) == 1
    act = model.b6.act
    want = np.stack([act.t1.detach().numpy().reshape(-1), act.t2.detach().numpy().reshape(-1)])
    assert np.array_equal(duo[0].params["threshold"], want.astype(np.float32))
    assert graph.tensors[duo[0].outputs[0]].shape[-1] == 16


def test_rsign_shift_is_the_sign_threshold(all_stes):
    model, graph = all_stes
    shift = model.b2.act.shift.detach().numpy().reshape(-1)
    assert any(
        op.kind == "sign" and op.params["threshold"].ndim == 1 and np.array_equal(op.params["threshold"], shift)
        for op in graph.ops
    )


class FlattenNet(nn.Module):
    input_shape = (3, 5, 6)

    def __init__(self, binary: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.binary = binary
        self.fc = zoo.BinLinear(120, 7, zoo.SignSign()) if binary else nn.Linear(120, 7)

    def forward(self, x):
        return self.fc(torch.flatten(self.conv(x), 1))


@pytest.mark.parametrize("binary", [False, True])
def test_flatten_permutes_the_following_linear_to_hwc(binary):
    torch.manual_seed(0)
    model = FlattenNet(binary).eval()
    graph = convert(model, (zoo.example_input(model),), engine=False)
    w = model.fc.weight.detach().numpy()
    want = w.reshape(7, 4, 5, 6).transpose(0, 2, 3, 1).reshape(7, 120)  # (C, H, W) -> (H, W, C) columns
    (op,) = [op for op in graph.ops if op.kind in ("linear", "blinear")]
    if binary:
        assert np.array_equal(unpack_last(op.params["weight"], 120), want < 0)
    else:
        assert np.array_equal(op.params["weight"], want.astype(np.float32))
    x = zoo.example_input(model, 16, seed=5)
    with torch.no_grad():
        ref = model(x).numpy()
    got = reference.run(graph, x.numpy())[graph.outputs[0]]
    assert np.allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_reference_bconv_zero_padding_matches_float_conv():
    rng = np.random.default_rng(3)
    n, h, w, ci, co = 2, 5, 4, 70, 3
    x = np.where(rng.random((n, h, w, ci)) < 0.5, -1.0, 1.0)
    wt = np.where(rng.random((co, 3, 3, ci)) < 0.5, -1.0, 1.0)
    mult = np.ones(co, np.float32)
    op = ir.Op(
        "bconv2d",
        "t",
        ["x"],
        ["y"],
        {"stride": [1, 1], "padding": [1, 1], "pad_mode": "zero", "output": "float", "in_channels": ci},
        {"weight": pack_last(wt < 0), "multiplier": mult, "bias": np.zeros(co, np.float32)},
    )
    g = ir.Graph(
        ["x"], ["y"], {"x": ir.Tensor("x", (1, h, w, ci), "bits"), "y": ir.Tensor("y", (1, h, w, co), "f32")}, [op]
    )
    env = {"x": pack_last(x < 0)}
    # run the op alone: reference.run takes NCHW float input, so feed the bits through a sign op
    g2 = ir.Graph(
        ["in"],
        ["y"],
        {"in": ir.Tensor("in", (1, h, w, ci), "f32"), **g.tensors},
        [ir.Op("sign", "s", ["in"], ["x"], {"sign_zero": "+1"}, {}), op],
    )
    got = reference.run(g2, np.transpose(x, (0, 3, 1, 2)))["y"]
    want = F.conv2d(
        torch.from_numpy(np.transpose(x, (0, 3, 1, 2))), torch.from_numpy(np.transpose(wt, (0, 3, 1, 2))), padding=1
    ).numpy()
    assert np.array_equal(got, np.transpose(want, (0, 2, 3, 1)))
    assert env["x"].dtype == np.uint64


def _tiny():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()


def test_torchscript_is_refused(tmp_path):
    path = tmp_path / "model.pt"
    torch.jit.script(_tiny()).save(str(path))
    with pytest.raises(ConversionError, match="TorchScript") as e:
        convert(str(path))
    assert "torch.export.save" in str(e.value)


def test_pickled_module_is_refused_unless_trusted(tmp_path):
    path = tmp_path / "model.pt"
    model = _tiny()
    torch.save(model, str(path))
    with pytest.raises(ConversionError, match="trust_pickle") as e:
        convert(str(path))
    assert "torch.export.save" in str(e.value)
    graph = convert(str(path), (torch.randn(2, 3, 8, 8),), trust_pickle=True, engine=False)
    assert graph.metadata["source_sha256"]
    torch.save(model.state_dict(), str(path))
    with pytest.raises(ConversionError, match="not an nn.Module"):
        convert(str(path), (torch.randn(2, 3, 8, 8),), trust_pickle=True)


def test_exported_program_file_with_any_name(tmp_path):
    model = _tiny()
    x = torch.randn(4, 3, 8, 8)
    path = tmp_path / "weights.bin"
    torch.export.save(torch.export.export(model, (x,)), str(path))
    graph = convert(str(path), engine=False)
    got = reference.run(graph, x.numpy())[graph.outputs[0]]
    assert np.allclose(got, model(x).detach().numpy(), rtol=1e-4, atol=1e-5)


class Cummax(nn.Module):  # an op the converter does not support
    def forward(self, x):
        return torch.logcumsumexp(x, 1)


class WithCummax(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(3, 4, 3), Cummax())

    def forward(self, x):
        return self.block(x).mean((2, 3))


def test_unsupported_op_names_op_module_and_nearest_pattern(tmp_path):
    out = tmp_path / "model.xbin"
    with pytest.raises(ConversionError) as e:
        convert(WithCummax().eval(), (torch.randn(2, 3, 8, 8),), output=str(out))
    msg = str(e.value)
    assert "logcumsumexp" in msg and "block.1" in msg and "nearest supported" in msg
    assert not out.exists() and not os.listdir(tmp_path)


class FloatWeightConv(nn.Module):
    input_shape = (3, 8, 8)

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.act = zoo.AutogradSign()
        self.body = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(self.body(self.act(self.stem(x))).mean((2, 3)))


def test_binarize_option_declares_a_layer_binary():
    torch.manual_seed(0)
    model = FloatWeightConv().eval()
    ep = torch.export.export(model, (zoo.example_input(model),))
    plain = convert(ep, engine=False)
    assert "not binary-valued" in plain.metadata["float_layers"]["body"]
    assert not any(op.kind == "bconv2d" for op in plain.ops)
    declared = convert(ep, binarize=["bo*"], engine=False)  # verified against sign(W) * mean|W|
    assert [op.name for op in declared.ops if op.kind == "bconv2d"] == ["body"]
    err = declared.metadata["binarized"]["body"]["relative_error"]
    w = model.body.weight.detach().numpy().astype(np.float64)
    q = np.sign(w) * np.abs(w).mean(axis=(1, 2, 3), keepdims=True)
    assert err == pytest.approx(np.linalg.norm(q - w) / np.linalg.norm(w), rel=1e-9)


def test_output_writes_an_xbin_the_engine_runs(tmp_path):
    import xnorinfer

    pytest.importorskip("xnorinfer.xbin")
    if not hasattr(xnorinfer, "load"):
        pytest.skip("no session runtime in this build")
    model = zoo.build("binary_mlp")
    path = tmp_path / "mlp.xbin"
    graph = convert(model, (zoo.example_input(model),), output=str(path))
    x = zoo.example_input(model, 8, seed=9)
    got = np.asarray(xnorinfer.load(str(path), 1).run(x.numpy()))
    ref = reference.run(graph, x.numpy())[graph.outputs[0]]
    assert np.allclose(got, ref, rtol=1e-5, atol=1e-5)


class PoolBeforeBN(nn.Module):
    """BinaryNet order conv -> max-pool -> BN -> sign, with all BN gammas positive."""

    input_shape = (3, 8, 8)

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.conv = zoo.BinConv(16, 16, zoo.AutogradSign())
        self.pool = nn.MaxPool2d(2)
        self.bn = nn.BatchNorm2d(16)
        self.conv2 = zoo.BinConv(16, 16, zoo.AutogradSign())
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        return self.head(self.conv2(self.bn(self.pool(self.conv(self.stem(x))))).mean((2, 3)))


def test_maxpool_moves_after_positive_bn_and_becomes_a_bit_maxpool():
    model = zoo.build_model(PoolBeforeBN)
    with torch.no_grad():
        model.bn.weight.abs_().add_(0.1)
    graph = convert(model, (zoo.example_input(model),), engine=False)  # verification checks the bits
    kinds = [(op.kind, op.attrs.get("output")) for op in graph.ops]
    i = kinds.index(("bconv2d", "bits"))
    assert kinds[i + 1] == ("bmaxpool2d", None)
    assert graph.metadata["verification"]["layers"]  # the pooled bits were compared with PyTorch
