"""bmaxpool2d's min_channels: a max-pool moved past a BatchNorm with gamma < 0 takes the min there.

sign(gamma * max(y) + beta) with gamma < 0 is the min over the window of sign(gamma * y + beta): the
converter folds BN + sign into the binary layer's threshold output and pools the bits, AND (max of
±1) for gamma > 0 channels and OR (min of ±1) for gamma < 0 ones. Checked against torch's max_pool2d
(padding = -inf) for the kernel on every ISA and thread count, and end to end against eager PyTorch.
"""

from __future__ import annotations

import engine_ops as E
import models_zoo as zoo
import numpy as np
import pytest
import reference as R
import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import ISAS, POOLS
from realcode_support import run_everywhere

from xnorinfer import _core
from xnorinfer.bits import pack_last
from xnorinfer.convert import convert
from xnorinfer.float_equivalent import torch_module


def torch_minmax_pool(x: np.ndarray, is_min: np.ndarray, kernel, stride, padding) -> np.ndarray:
    """±1 NCHW float: max_pool2d per channel, or -max_pool2d(-x) (the min) where is_min."""
    t = torch.from_numpy(x).double()
    mx = F.max_pool2d(t, kernel, stride, padding)
    mn = -F.max_pool2d(-t, kernel, stride, padding)
    return torch.where(torch.from_numpy(is_min).view(1, -1, 1, 1), mn, mx).numpy()


def run_minmax(xp: np.ndarray, mask: np.ndarray, kernel, stride, padding, isa=None, pool=None) -> np.ndarray:
    attrs = {"kernel": list(kernel), "stride": list(stride), "padding": list(padding)}
    return _core.run_op("bmaxpool2d", attrs, {"min_channels": mask}, [xp], isa=isa, pool=pool)


@pytest.mark.parametrize("channels", [1, 63, 65, 130, 64 * 70 + 5])  # the last: > 64 words (chunked OR)
@pytest.mark.parametrize(
    "kernel,stride,padding", [((2, 2), (2, 2), (0, 0)), ((3, 3), (2, 2), (1, 1)), ((2, 3), (1, 2), (1, 1))]
)
def test_kernel_matches_torch_on_every_isa(channels, kernel, stride, padding, rng):
    h, w = (5, 6) if channels > 1000 else (7, 9)
    p_minus = rng.choice([0.2, 0.8], size=(1, channels, 1, 1))  # both AND and OR non-trivial
    x = np.where(rng.random((2, channels, h, w)) < p_minus, -1.0, 1.0).astype(np.float32)
    is_min = rng.random(channels) < 0.5
    want = R.pack_nchw(torch_minmax_pool(x, is_min, kernel, stride, padding).astype(np.float32))
    mask = pack_last(is_min)
    first = None
    for isa in ISAS:
        for pool in POOLS:
            got = run_minmax(R.pack_nchw(x), mask, kernel, stride, padding, isa=isa, pool=pool)
            np.testing.assert_array_equal(got, want, err_msg=f"isa={isa} pool={pool}")
            first = got if first is None else first
            assert got.tobytes() == first.tobytes()


def test_empty_mask_is_the_plain_max_pool(rng):
    x = np.where(rng.random((1, 70, 6, 6)) < 0.7, -1.0, 1.0).astype(np.float32)
    xp = R.pack_nchw(x)
    plain = E.binary_maxpool2d(xp, kernel=(2, 2), stride=(2, 2))
    got = run_minmax(xp, np.zeros(2, np.uint64), (2, 2), (2, 2), (0, 0))
    np.testing.assert_array_equal(got, plain)


def test_mask_of_the_wrong_size_is_refused(rng):
    xp = R.pack_nchw(np.ones((1, 70, 4, 4), np.float32))
    with pytest.raises(ValueError, match="min_channels"):
        run_minmax(xp, np.zeros(3, np.uint64), (2, 2), (2, 2), (0, 0))


# --------------------------------------------------------------------------- end to end


class GtSign(nn.Module):
    def forward(self, x):
        return torch.where(x > 0, 1.0, -1.0)  # sign(0) = -1


class GeSign(nn.Module):
    def forward(self, x):
        return (x >= 0).float() * 2 - 1  # sign(0) = +1


class PoolBeforeMixedBN(nn.Module):
    """BinaryNet order: binary conv -> max-pool -> BN (some gamma < 0) -> sign -> binary conv."""

    input_shape = (3, 9, 9)
    C = 70  # two words, the second partial

    def __init__(self, sign: nn.Module, pool: nn.MaxPool2d, tail_sign: bool = True) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, self.C, 3, padding=1)
        self.conv = zoo.BinConv(self.C, self.C, GtSign())
        self.pool = pool
        self.bn = nn.BatchNorm2d(self.C)
        self.conv2 = zoo.BinConv(self.C, 24, sign) if tail_sign else None

    def forward(self, x):
        y = self.bn(self.pool(self.conv(self.stem(x))))
        return self.conv2(y) if self.conv2 is not None else y


def build(sign: nn.Module, pool: nn.MaxPool2d, tail_sign: bool = True) -> nn.Module:
    """Calibrated BN, then mixed-sign gamma; half the channels get mean 0 and beta 0, so that BN(y) is
    exactly 0 (in any float formulation of BN) where the binary conv sum y is 0 (K = 70 * 9 is even):
    the sign(0) ties happen."""
    torch.manual_seed(0)
    model = PoolBeforeMixedBN(sign, pool, tail_sign)
    model.bn.momentum = None
    model.train()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn((16, *model.input_shape), generator=g))
    model.eval()
    with torch.no_grad():
        c = model.C
        gamma = 0.5 + torch.rand(c, generator=g)
        gamma[::3] *= -1
        gamma[1::5] *= -1
        model.bn.weight.copy_(gamma)
        model.bn.bias.copy_(0.3 * torch.randn(c, generator=g))
        tie = torch.arange(c) % 2 == 0
        model.bn.running_mean[tie] = 0.0
        model.bn.bias[tie] = 0.0
    return model


POOL_CASES = {
    "k2s2": nn.MaxPool2d(2),
    "k3s2p1": nn.MaxPool2d(3, 2, padding=1),
    "k2s1p1": nn.MaxPool2d(2, 1, padding=1),
}


def htanh_sign() -> nn.Module:
    return nn.Sequential(nn.Hardtanh(), GtSign())  # BinaryNet.pytorch: BN -> Hardtanh -> sign


@pytest.mark.parametrize("sign", [GtSign, GeSign, htanh_sign])
@pytest.mark.parametrize("pool", list(POOL_CASES))
def test_binarynet_pool_before_negative_bn_runs_on_bits(sign, pool, tmp_path):
    model = build(sign(), POOL_CASES[pool])
    example = torch.randn((2, *model.input_shape), generator=torch.Generator().manual_seed(2))
    x = torch.randn((24, *model.input_shape), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        pre = model.bn(model.pool(model.conv(model.stem(x))))
        want = model(x).numpy()
    assert (pre == 0).any(), "the test model should hit sign(0) ties"
    path = tmp_path / "m.xbin"
    graph = convert(model, (example,), output=path, calib=x.numpy())
    v = graph.metadata["verification"]
    assert not v["problems"] and v["layers"]
    assert all(layer["mismatches"] == 0 for layer in v["layers"].values()), v["layers"]
    kinds = [op.kind for op in graph.ops]
    # no float pool, affine or sign after the BN: only the stem's sign, then the bits flow through
    assert "maxpool2d" not in kinds and "affine" not in kinds and kinds.count("sign") == 1, kinds
    pools = [op for op in graph.ops if op.kind == "bmaxpool2d"]
    assert len(pools) == 1
    np.testing.assert_array_equal(pools[0].params["min_channels"], pack_last((model.bn.weight < 0).numpy()))
    # the binary conv's sums are integers: exact in float32, so the engine must match eager exactly
    got = run_everywhere(path, x.numpy())  # NHWC
    np.testing.assert_array_equal(got.transpose(0, 3, 1, 2), want)
    with torch.no_grad():  # the float PyTorch equivalent runs the min channels as -max_pool2d(-x)
        equiv = torch_module(graph)(x).permute(0, 3, 1, 2).numpy()
    np.testing.assert_allclose(equiv, want, atol=1e-4)


def test_ceil_mode_and_no_sign_after_stay_float_and_correct(tmp_path):
    for model in (build(GtSign(), nn.MaxPool2d(2, ceil_mode=True)), build(GtSign(), nn.MaxPool2d(2), False)):
        example = torch.randn((2, *model.input_shape), generator=torch.Generator().manual_seed(2))
        x = torch.randn((8, *model.input_shape), generator=torch.Generator().manual_seed(3))
        path = tmp_path / "m.xbin"
        graph = convert(model, (example,), output=path, calib=x.numpy())
        kinds = [op.kind for op in graph.ops]
        assert "maxpool2d" in kinds and "bmaxpool2d" not in kinds, kinds
        with torch.no_grad():
            want = model(x).numpy()
        got = run_everywhere(path, x.numpy()).transpose(0, 3, 1, 2)
        assert np.abs(got - want).max() <= 1e-4 * max(1.0, np.abs(want).max())
