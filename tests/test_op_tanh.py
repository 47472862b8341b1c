"""The `tanh` op (the worked example of docs/adding-an-op.md): the engine kernel through the
runtime's node factory on every ISA path and thread count, and `nn.Tanh` in a converted model.

The reference is numpy float64 tanh; float32 libraries may differ from it by a few ulps, so the
comparison has a tolerance, while the ISA paths and thread counts must agree bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import xnorinfer
from xnorinfer import _core
from xnorinfer.convert import convert


@pytest.mark.parametrize("shape", [(1, 5, 7, 3), (2, 37), (1, 1, 1, 1)])
def test_engine_tanh_matches_float64_on_every_path(shape):
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(shape) * 4).astype(np.float32)
    x.flat[0] = 0.0
    if x.size > 3:
        x.flat[1], x.flat[2] = 30.0, -30.0  # saturation
    want = np.tanh(x.astype(np.float64))
    results = [
        _core.run_op("tanh", {}, {}, [x], isa=isa, threads=threads)
        for isa in _core.available_isas()
        for threads in (1, 2, 3)
    ]
    np.testing.assert_allclose(results[0], want, rtol=0, atol=2e-7)
    for r in results[1:]:
        assert r.tobytes() == results[0].tobytes()


def test_tanh_schema_refuses_attributes():
    with pytest.raises(ValueError, match=r"op 'tanh' \(tanh\): unknown attribute 'alpha'"):
        _core.run_op("tanh", {"alpha": 1.0}, {}, [np.zeros((1, 4), np.float32)])


class TanhMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(12, 16), nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.fc1(x)))


def test_nn_tanh_converts_and_runs_like_torch(tmp_path):
    torch.manual_seed(0)
    model = TanhMLP().eval()
    x = torch.randn(64, 12)
    graph = convert(model, (x[:1],), output=tmp_path / "tanh.xbin")
    assert [op.kind for op in graph.ops][-3:] == ["linear", "tanh", "linear"]
    got = xnorinfer.load(tmp_path / "tanh.xbin").run(x.numpy())
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
