"""BinaryDuo's ternary activation on a flattened feature map larger than 1x1 (issue 15).

`Flatten -> BinaryLinear(input_quantizer=CoupledTernary())`, as trained and after `xnn.decouple` (whose
DecoupledBinaryLinear computes cat([sign(x - t1), sign(x - t2)], dim=1) of the flattened (N, C*H*W) value),
converts to one two-threshold `sign` of the flattened value feeding a `blinear` (its weight columns permuted
to the IR's (J, H, W, C) column order): no float linear, no unpack. The logits of a last layer without
alpha or bias are integers / 2, so the engine must equal eager PyTorch bit for bit on every ISA path and
both thread counts; with alpha and bias, within float rounding. Inputs placed exactly on the thresholds
check ties (T(t) goes up, as sign(0) = +1).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from realcode_support import calibrate, convert_verified, run_everywhere

from xnorinfer.nn import BinaryConv2d, BinaryLinear, CoupledTernary, DecoupledBinaryLinear, decouple


def _shift_bn(model: nn.Module) -> nn.Module:
    """BN outputs centred on [0, 1] so that every ternary level occurs."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                m.bias.add_(0.5)
    return model.eval()


def _conv_model(scale: str) -> nn.Module:
    """float stem -> BN -> T -> binary conv (stride 2: 6x6 map) -> BN -> flatten -> T -> binary linear -> BN
    -> T -> binary linear without alpha or bias (exact logits)."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        BinaryConv2d(8, 16, 3, stride=2, padding=1, input_quantizer=CoupledTernary(), weight_scale=scale),
        nn.BatchNorm2d(16),
        nn.Flatten(),
        BinaryLinear(16 * 6 * 6, 32, bias=True, input_quantizer=CoupledTernary(), weight_scale=scale),
        nn.BatchNorm1d(32),
        BinaryLinear(32, 10, input_quantizer=CoupledTernary()),
    )
    return _shift_bn(calibrate(model, (16, 3, 12, 12), data="randn"))


def _images(n: int = 24) -> np.ndarray:
    return torch.randn(n, 3, 12, 12, generator=torch.Generator().manual_seed(5)).numpy()


def _flattened_blinear(graph, features: int):
    """The blinear reading the two-threshold sign of the flattened map; no float linear and no unpack."""
    kinds = [op.kind for op in graph.ops]
    assert "linear" not in kinds and "unpack" not in kinds, kinds
    (sign,) = [
        op for op in graph.ops if op.kind == "sign" and np.asarray(op.params["threshold"]).shape == (2, features)
    ]
    (lin,) = [op for op in graph.ops if op.kind == "blinear" and op.inputs == sign.outputs]
    assert lin.attrs["in_features"] == 2 * features
    return sign, lin


@pytest.mark.parametrize("decoupled", [False, True])
@pytest.mark.parametrize("scale", ["none", "mean"])
def test_flatten_then_binaryduo_linear(tmp_path, decoupled, scale):
    coupled = _conv_model(scale)
    model = decouple(coupled) if decoupled else coupled
    if decoupled:
        assert isinstance(model[5], DecoupledBinaryLinear)
    x = _images()
    with torch.no_grad():
        levels = set(
            coupled[5]
            .input_quantizer(coupled[4](coupled[3](coupled[2](coupled[1](coupled[0](torch.from_numpy(x)))))))
            .unique()
            .tolist()
        )
    assert levels == {0.0, 0.5, 1.0}
    graph, path = convert_verified(model, x, tmp_path, verified=decoupled)
    _flattened_blinear(graph, 16 * 6 * 6)
    assert [op.kind for op in graph.ops].count("blinear") == 2
    got = run_everywhere(path, x)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
        assert torch.equal(coupled(torch.from_numpy(x)), torch.from_numpy(want))  # decouple is exact
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("decoupled", [False, True])
def test_flatten_input_on_thresholds(tmp_path, decoupled):
    """Flatten of the (N, C, H, W) input itself, values drawn from the thresholds and their float32
    neighbours (and 0, 1): every tie decided as PyTorch decides it; the exact logits bit for bit."""
    t1, t2 = 0.3, 0.6
    torch.manual_seed(1)
    hidden = BinaryLinear(5 * 3 * 4, 16, bias=True, input_quantizer=CoupledTernary(t1, t2), weight_scale="mean")
    coupled = nn.Sequential(
        nn.Flatten(), hidden, nn.BatchNorm1d(16), BinaryLinear(16, 7, input_quantizer=CoupledTernary(t1, t2))
    )
    coupled = _shift_bn(calibrate(coupled, (16, 5, 3, 4), data="rand"))
    model = decouple(coupled) if decoupled else coupled
    f32 = np.float32
    edges = [
        v for t in (f32(t1), f32(t2), f32(0), f32(1)) for v in (np.nextafter(t, f32(-1)), t, np.nextafter(t, f32(2)))
    ]
    g = np.random.default_rng(0)
    x = g.choice(np.asarray(edges, f32), size=(32, 5, 3, 4))
    x[:8] = g.uniform(-0.2, 1.2, size=(8, 5, 3, 4)).astype(f32)
    graph, path = convert_verified(model, x, tmp_path, verified=decoupled)
    _flattened_blinear(graph, 5 * 3 * 4)
    got = run_everywhere(path, x)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(got, want)


def test_hidden_layer_with_alpha_and_bias_is_close(tmp_path):
    """The flattened BinaryLinear with alpha and bias as the model's last layer: the engine's float epilogue
    (one fma) against PyTorch's multiply then add."""
    torch.manual_seed(2)
    model = nn.Sequential(
        nn.Flatten(), BinaryLinear(4 * 5 * 5, 6, bias=True, input_quantizer=CoupledTernary(), weight_scale="mean")
    ).eval()
    x = torch.rand(20, 4, 5, 5, generator=torch.Generator().manual_seed(3)).numpy()
    for m in (model, decouple(model)):
        graph, path = convert_verified(m, x, tmp_path, verified=m is not model)
        _flattened_blinear(graph, 4 * 5 * 5)
        got = run_everywhere(path, x)
        with torch.no_grad():
            want = m(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * float(np.abs(want).max()))


class _ShiftedSignsFloatLinear(nn.Module):
    """The decoupled signs of a flattened map read by a float nn.Linear (not ±alpha): unpacked, and the
    linear's weight columns permuted by the same (J, H, W, C) order."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2 * 4 * 3 * 3, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        return self.fc(torch.cat([torch.where(x - 0.25 < 0, -1.0, 1.0), torch.where(x - 0.75 < 0, -1.0, 1.0)], 1))


def test_shifted_signs_of_flattened_map_read_by_float_linear(tmp_path):
    torch.manual_seed(4)
    model = _ShiftedSignsFloatLinear().eval()
    x = torch.rand(16, 4, 3, 3, generator=torch.Generator().manual_seed(6)).numpy()
    x[0, :, 0, 0] = [0.25, 0.75, np.nextafter(np.float32(0.25), np.float32(0)), 0.5]
    graph, path = convert_verified(model, x, tmp_path, verified=True)
    assert [op.kind for op in graph.ops] == ["flatten", "sign", "unpack", "linear"]
    got = run_everywhere(path, x)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
