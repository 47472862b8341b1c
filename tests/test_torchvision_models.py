"""torchvision's own classification models (random weights, nothing downloaded) convert and run.

Issue 12's list: resnet18, mobilenet_v2, mobilenet_v3_small, efficientnet_b0, shufflenet_v2_x0_5,
squeezenet1_1, regnet_y_400mf, convnext_tiny and a small VisionTransformer, built by torchvision
itself (tests/torchvision_import.py says how torchvision is imported beside the CPU build of torch).
Each is exported at batch 1 (64x64 images; the ViT at 32x32), converted, and the engine's output on
a batch of 3 compared with eager PyTorch: max |engine - torch| <= 1e-4 * max |torch|.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision_import import import_torchvision

import xnorinfer
from xnorinfer import xbin
from xnorinfer.convert import ConversionError, convert

models = import_torchvision().models

CNNS = [
    "resnet18",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "efficientnet_b0",
    "shufflenet_v2_x0_5",
    "squeezenet1_1",
    "regnet_y_400mf",
    "convnext_tiny",
]


def _check(model: torch.nn.Module, shape: tuple[int, ...]) -> None:
    model = model.eval()
    g = torch.Generator().manual_seed(0)
    graph = convert(model, (torch.randn(1, *shape, generator=g),), verify=False)
    session = xnorinfer.load(xbin.to_bytes(graph), 2)
    x = torch.randn(3, *shape, generator=g)
    got = np.asarray(session.run(x.numpy()), np.float64)
    with torch.no_grad():
        want = model(x).numpy().astype(np.float64)
    assert got.shape == want.shape
    scale = float(np.abs(want).max())
    assert scale > 0 and float(np.abs(got - want).max()) <= 1e-4 * scale


@pytest.mark.parametrize("name", CNNS)
def test_torchvision_cnn_converts_and_matches(name: str) -> None:
    torch.manual_seed(0)
    _check(getattr(models, name)(weights=None), (3, 64, 64))


def test_torchvision_vision_transformer_converts_and_matches() -> None:
    torch.manual_seed(0)
    vit = models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=64, mlp_dim=128, num_classes=10
    )
    torch.nn.init.normal_(vit.heads.head.weight)  # torchvision initialises the head to zeros
    _check(vit, (3, 32, 32))


class _Restride(torch.nn.Module):
    def __init__(self, stride: tuple[int, ...]) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x).as_strided((1, 3, 2, 2), self.stride) * 2.0


def test_as_strided_restating_the_layout_is_the_input_and_any_other_is_refused() -> None:
    x = torch.randn(1, 3, 2, 2)
    graph = convert(_Restride((12, 4, 2, 1)), (x,), verify=False)  # the contiguous strides: the identity
    got = np.asarray(xnorinfer.load(xbin.to_bytes(graph), 1).run(x.numpy()))
    np.testing.assert_allclose(got, (torch.relu(x) * 2.0).numpy().transpose(0, 2, 3, 1), rtol=1e-6)
    with pytest.raises(ConversionError, match="aten.as_strided"):
        convert(_Restride((12, 1, 6, 3)), (x,), verify=False)  # channels read as the fastest axis: a reorder
