"""Verification runs PyTorch batched (torch.vmap over chunks), falls back chunk by chunk, and
compares the live model with its exported program on a few inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from xnorinfer.convert import verify as verify_mod
from xnorinfer.convert.graph import ConversionError
from xnorinfer.convert.pipeline import convert


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 5)).eval()


@pytest.mark.parametrize("batch", [1, 2])
def test_vmapped_chunks_equal_one_chunk_at_a_time(batch):
    net = _net()
    x = np.random.default_rng(0).standard_normal((7, 3, 6, 6)).astype(np.float32)
    got = verify_mod.torch_outputs(net, x, batch)
    with torch.no_grad():
        want = np.concatenate([net(torch.from_numpy(x[i : i + 1])).numpy() for i in range(7)])
    assert got.shape == want.shape == (7, 5)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_a_model_vmap_cannot_batch_runs_chunk_by_chunk():
    net = _net()
    calls = []

    def data_dependent(chunk: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        scale = 2.0 if float(chunk.sum().item()) > 0 else 3.0  # .item() under vmap raises
        return net(chunk) * scale

    x = np.random.default_rng(1).standard_normal((5, 3, 6, 6)).astype(np.float32)
    got = verify_mod.torch_outputs(data_dependent, x, 1)
    with torch.no_grad():
        want = np.concatenate([data_dependent(torch.from_numpy(x[i : i + 1])).numpy() for i in range(5)])
    np.testing.assert_allclose(got, want, rtol=1e-6)


class _Drifting(nn.Module):
    """forward branches on whether it is being exported: the program torch.export captures differs."""

    def __init__(self) -> None:
        super().__init__()
        self.net = _net()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) * (2.0 if torch.compiler.is_exporting() else 1.0)


def test_live_model_that_differs_from_its_export_is_reported():
    x = torch.randn(1, 3, 6, 6)
    with pytest.raises(ConversionError, match="exported program differs from the live model"):
        convert(_Drifting().eval(), (x,), n_verify=4)


def test_reference_override_feeds_later_ops():
    """Verification's teacher forcing: a substituted binary activation is what later ops read."""
    from xnorinfer import ir
    from xnorinfer.bits import pack_last
    from xnorinfer.convert import reference

    g = ir.Graph(
        inputs=["x"],
        outputs=["y"],
        tensors={
            "x": ir.Tensor("x", (1, 2, 2, 3), "f32"),
            "s": ir.Tensor("s", (1, 2, 2, 3), "bits"),
            "y": ir.Tensor("y", (1, 2, 2, 3), "f32"),
        },
        ops=[
            ir.Op("sign", "s", ["x"], ["s"], {}, {"threshold": np.zeros(3, np.float32)}),
            ir.Op("unpack", "u", ["s"], ["y"]),
        ],
        metadata={"input_shape": [1, 3, 2, 2]},
    )
    x = np.random.default_rng(0).standard_normal((2, 3, 2, 2)).astype(np.float32)
    free = reference.run(g, x)["y"]
    np.testing.assert_array_equal(free, np.where(np.transpose(x, (0, 2, 3, 1)) < 0, -1.0, 1.0))
    flipped = np.zeros((2, 2, 2, 3), bool)
    flipped[1, 0, 1, 2] = True
    seen = []

    def substitute(name, value):
        if name != "s":
            return value
        seen.append(name)
        return pack_last(reference.bits_of(g, name, value) ^ flipped)

    forced = reference.run(g, x, override=substitute)["y"]
    assert seen == ["s"]
    np.testing.assert_array_equal(forced, np.where(flipped, -free, free))


class _NearTie(nn.Module):
    """conv -> sign -> binary linear; the exported program's conv output differs from eager's by `shift`
    (as a decomposed or differently batched float32 run may), and the inputs put one conv output
    `margin` below the sign's threshold."""

    def __init__(self, shift: float) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 6 * 6, 5, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.sign(self.fc.weight))
        self.shift = shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if torch.compiler.is_exporting():
            y = y + self.shift
        return self.fc(torch.sign(y).flatten(1))


def _inputs_with_a_near_tie(net: _NearTie, margin: float, n: int = 8) -> np.ndarray:
    x = torch.from_numpy(np.random.default_rng(2).standard_normal((n, 3, 6, 6)).astype(np.float32))
    with torch.no_grad():
        y = net.conv(x)
        # move every image's input so that conv output (channel 0, pixel (2, 2)) lands `margin` below 0
        w = net.conv.weight[0, :, 1, 1]
        x[:, :, 2, 2] -= ((y[:, 0, 2, 2] + margin) / w.pow(2).sum())[:, None] * w
        assert torch.all((net.conv(x)[:, 0, 2, 2] + margin).abs() < 1e-6)
    return x.numpy()


def test_live_model_differing_only_at_a_rounding_tie_is_accepted():
    net = _NearTie(shift=2e-7).eval()
    x = _inputs_with_a_near_tie(net, margin=1e-7)
    with torch.no_grad():
        eager = net(torch.from_numpy(x))
        exported = torch.export.export(net, (torch.from_numpy(x),)).module()(torch.from_numpy(x))
    assert (eager - exported).abs().max() > 1.0  # the flip changes the outputs by whole ±1 steps
    graph = convert(net, (torch.from_numpy(x[:1]),), calib=x, n_verify=8)
    assert not graph.metadata["verification"]["problems"]


def test_live_model_differing_beyond_rounding_is_still_reported():
    net = _NearTie(shift=0.5).eval()
    x = _inputs_with_a_near_tie(net, margin=1e-7)
    with pytest.raises(ConversionError, match="exported program differs from the live model"):
        convert(net, (torch.from_numpy(x[:1]),), calib=x, n_verify=8)
