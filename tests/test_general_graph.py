"""The converter's general float graph: torchvision-style models and single general ops, converted with
xnorinfer.convert.convert and run by the engine (xnorinfer.load(bytes).run) on batches of 1 and 3,
against eager PyTorch (float64 where the reference interpreter is compared, float32 for the engine)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from vision_models import MODELS, build

import xnorinfer
from xnorinfer import ir, xbin
from xnorinfer.convert import ConversionError, convert, reference

RTOL = 1e-4  # |engine - torch| <= RTOL * max(1, max |torch|)


def _torch_outputs(model: nn.Module, x: torch.Tensor) -> list[np.ndarray]:
    with torch.no_grad():
        out = model(x)
    outs = list(out) if isinstance(out, tuple | list) else [out]
    # the engine returns 4-D outputs NHWC
    return [o.numpy().transpose(0, 2, 3, 1) if o.ndim == 4 else o.numpy() for o in outs]


def _reference(graph: ir.Graph, x: np.ndarray) -> list[np.ndarray]:
    """The numpy float64 interpreter; a per-image graph one image at a time (as the engine runs it)."""
    if graph.metadata.get("per_image"):
        runs = [reference.run(graph, x[i : i + 1]) for i in range(len(x))]
        return [np.concatenate([r[o] for r in runs]) for o in graph.outputs]
    env = reference.run(graph, x)
    return [env[o] for o in graph.outputs]


def _close(got: np.ndarray, want: np.ndarray, rtol: float) -> None:
    assert got.shape == want.shape
    scale = max(1.0, float(np.abs(want).max()))
    assert float(np.abs(got.astype(np.float64) - want).max()) <= rtol * scale


def check(model: nn.Module, shape: tuple[int, ...], *, per_image: bool | None = None, seed: int = 0) -> ir.Graph:
    """Convert `model` (exported at batch 1), then compare the engine (float32) with eager PyTorch and the
    reference interpreter (float64) with PyTorch in float64, on batches of 1 and 3."""
    model = model.eval()
    g = torch.Generator().manual_seed(seed)
    graph = convert(model, (torch.randn(*shape, generator=g),), verify=False)
    if per_image is not None:
        assert bool(graph.metadata.get("per_image", False)) == per_image
    session = xnorinfer.load(xbin.to_bytes(graph), 1)
    m64 = _double(model)
    for n in (1, 3):
        x = torch.randn(n, *shape[1:], generator=g)
        got = session.run(x.numpy())
        got = got if isinstance(got, list) else [got]
        want = _torch_outputs(model, x)
        assert len(got) == len(want)
        for a, b in zip(got, want, strict=True):
            _close(np.asarray(a), b.astype(np.float64), RTOL)
        for a, b in zip(_reference(graph, x.numpy()), _torch_outputs(m64, x.double()), strict=True):
            _close(a, b, 1e-6)
    return graph


def _double(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model).double()


# --------------------------------------------------------------------------- the models


@pytest.mark.parametrize("name", sorted(MODELS))
def test_torchvision_style_model_converts_and_runs(name: str) -> None:
    model, shape = build(name)
    graph = check(model, shape)
    kinds = {op.kind for op in graph.ops}
    assert "sign" not in kinds  # a float model stays float


def test_convnext_permutes_cost_no_transpose() -> None:
    """permute(0, 2, 3, 1) of an NHWC conv output is PyTorch's NHWC order already: the LayerNorm and the
    linears run on it as stored, and permute back is NHWC again for the residual add."""
    model, shape = build("convnext")
    graph = check(model, shape, per_image=False)
    assert not [op for op in graph.ops if op.kind == "transpose"]


def test_resnet_and_mobilenet_graphs_are_batched() -> None:
    for name in ("resnet", "mobilenet_v3", "shufflenet_v2"):
        model, shape = build(name)
        graph = convert(model, (torch.randn(*shape),), verify=False)
        assert not graph.metadata.get("per_image")


def test_vit_runs_per_image() -> None:
    """nn.MultiheadAttention folds the heads into axis 0: the graph runs one image at a time."""
    model, shape = build("vit")
    check(model, shape, per_image=True)


# --------------------------------------------------------------------------- single ops


class Fn(nn.Module):
    def __init__(self, fn: Callable[..., object]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> object:
        return self.fn(x)


def _tokens(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, H * W, C), as ViTs make tokens (the engine's inputs are images)."""
    return x.flatten(2).transpose(1, 2)


class Tokens(nn.Module):
    """`inner` on the tokens of an image input."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(_tokens(x))


IMG = (1, 3, 4, 6)
TOK = (1, 7, 1, 5)  # 5 tokens of 7 features
CASES: dict[str, tuple[Callable[..., object], tuple[int, ...]]] = {
    "add_broadcast_mean": (lambda x: x + x.mean(dim=2, keepdim=True), IMG),
    "sub_div_activations": (lambda x: (x - x.amax(dim=1, keepdim=True)) / (x.abs() + 1), IMG),
    "scalar_ops": (lambda x: x * 0.5 + 1, IMG),
    "rsub": (lambda x: 1 - x, IMG),
    "const_broadcast_last_dim": (lambda x: x * torch.arange(6.0), IMG),
    "permute_then_const": (lambda x: x.permute(0, 2, 3, 1) * torch.arange(3.0), IMG),
    "flatten_transpose": (lambda x: x.flatten(2).transpose(1, 2), IMG),
    "flatten_1_then_scale": (lambda x: x.flatten(1) * 2.0, IMG),
    "softmax_channels": (lambda x: F.softmax(x, dim=1), IMG),
    "log_softmax_height": (lambda x: F.log_softmax(x, dim=2), IMG),
    "sum_dims": (lambda x: x.sum(dim=(1, 3)), IMG),
    "amin_keepdim": (lambda x: x.amin(dim=-1, keepdim=True) - x, IMG),
    "var_correction": (lambda x: x.var(dim=1), IMG),
    "var_unbiased_false": (lambda x: x.var(dim=(2, 3), unbiased=False, keepdim=True), IMG),
    "cat_height": (lambda x: torch.cat([x, x * 2], dim=2), IMG),
    "cat_width_three": (lambda x: torch.cat([x, -x, x.relu()], dim=-1), IMG),
    "chunk_width": (lambda x: x.chunk(2, dim=3)[1], IMG),
    "split_sizes": (lambda x: torch.split(x, [1, 2], dim=1)[1] + 1, IMG),
    "unbind_height": (lambda x: x.unbind(2)[1], IMG),
    "select_channel": (lambda x: x[:, 1], IMG),
    "slice_step_width": (lambda x: x[:, :, :, 1::2], IMG),
    "stack_last": (lambda x: torch.stack([x, -x], dim=-1), IMG),
    "where_compare": (lambda x: torch.where(x > 0.3, x, x * x), IMG),
    "maximum_broadcast": (lambda x: torch.maximum(x, x.mean(1, keepdim=True)), IMG),
    "minimum_const": (lambda x: torch.minimum(x, torch.full((1, 3, 1, 1), 0.2)), IMG),
    "pow_scalar": (lambda x: x.abs() ** 1.5, IMG),
    "comparison_as_float": (lambda x: (x > x.mean(dim=(2, 3), keepdim=True)).float() * x, IMG),
    "expand_pooled": (lambda x: x.mean(dim=(2, 3), keepdim=True).expand(-1, -1, 4, 6) + x, IMG),
    "matmul_activations": (lambda x: x @ x.transpose(-1, -2), IMG),
    "matmul_const": (lambda x: x @ torch.linspace(-1, 1, 12, dtype=x.dtype).reshape(6, 2), IMG),
    "two_outputs": (lambda x: (x.relu(), x.sum(-1)), IMG),
    "tokens_softmax_mean": (lambda x: F.softmax(_tokens(x), -1) * _tokens(x).mean(2, keepdim=True), IMG),
    "tokens_output_rank3": (lambda x: _tokens(x) * torch.arange(3.0, dtype=x.dtype), IMG),
    "rank2_output": (lambda x: x.mean(dim=(2, 3)) * torch.arange(3.0), IMG),
    "clamp_one_side_relu6": (lambda x: F.relu6(x * 4).clamp(min=1.0), IMG),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_general_op_converts_and_runs(name: str) -> None:
    fn, shape = CASES[name]
    check(Fn(fn), shape)


def test_layer_norm_group_norm_batch_norm_1d() -> None:
    check(nn.Sequential(nn.LayerNorm(6)), IMG)
    check(nn.Sequential(nn.LayerNorm([4, 6])), IMG)
    check(nn.Sequential(nn.Conv2d(3, 4, 1), nn.GroupNorm(2, 4)), IMG)
    check(Tokens(nn.Sequential(nn.LayerNorm(7), nn.Linear(7, 5))), TOK, per_image=False)
    check(nn.Sequential(nn.Flatten(2), nn.BatchNorm1d(3)), IMG, per_image=False)


def test_linear_on_rank3_keeps_the_batch_axis() -> None:
    graph = check(Tokens(nn.Sequential(nn.Linear(7, 5), nn.ReLU(), nn.Linear(5, 3))), TOK, per_image=False)
    assert [op.kind for op in graph.ops].count("matmul") == 2


def test_attention_written_out_converts() -> None:
    from vision_models import HandAttention

    check(Tokens(HandAttention(7, 1)), TOK)


class SelfAttention(nn.Module):
    def __init__(self, dim: int = 7, heads: int = 1) -> None:
        super().__init__()
        self.a = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x, x, x, need_weights=False)[0]


def test_multihead_attention_converts_per_image() -> None:
    check(Tokens(SelfAttention()), TOK, per_image=True)


def test_batched_export_of_a_batched_graph() -> None:
    """A model exported at batch 2 whose graph keeps the batch in axis 0 runs any batch."""
    model, shape = build("convnext")
    graph = convert(model, (torch.randn(2, *shape[1:]),), verify=False)
    x = torch.randn(3, *shape[1:])
    got = xnorinfer.load(xbin.to_bytes(graph), 1).run(x.numpy())
    _close(np.asarray(got), _torch_outputs(model, x)[0].astype(np.float64), RTOL)


def test_per_image_model_exported_at_batch_2_is_refused_with_the_fix() -> None:
    model, shape = build("vit")
    with pytest.raises(ConversionError, match="export it with a batch-1 example input"):
        convert(model, (torch.randn(2, *shape[1:]),), verify=False)


def test_convert_verifies_a_per_image_graph_with_several_outputs() -> None:
    """convert's own verification (reference and engine against PyTorch) on a per-image graph."""
    graph = convert(Tokens(SelfAttention()), (torch.randn(*TOK),), n_verify=8)
    assert graph.metadata["per_image"] and graph.metadata["verification"]["engine"]["max_rel_error"] < 1e-4
    graph = convert(Fn(lambda x: (x.relu(), x.sum(-1))), (torch.randn(*IMG),), n_verify=8)
    assert len(graph.outputs) == 2


def test_unsupported_op_names_the_op_and_the_model_line() -> None:
    class Cummax(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.logcumsumexp(x, dim=1)

    with pytest.raises(ConversionError, match=r"aten\.logcumsumexp .*test_general_graph\.py"):
        convert(Cummax(), (torch.randn(*IMG),), verify=False)


def test_layout_costs_nothing_where_no_order_is_needed() -> None:
    """x[:, 1] of an NHWC image: a slice and a size-1-dropping reshape, no transpose (the output (N, H, W)
    is NHWC's order already); a permute alone is a relabelling: permute + 4-D output = one transpose."""
    graph = check(Fn(lambda x: x[:, 1]), IMG, per_image=False)
    assert sorted(op.kind for op in graph.ops) == ["reshape", "slice"]
    graph = check(Fn(lambda x: x.permute(0, 3, 1, 2) * 2.0), IMG, per_image=False)
    assert [op.kind for op in graph.ops].count("transpose") == 1
