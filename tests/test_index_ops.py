"""The index ops (arg_reduce, topk, cumsum, take, gather) and the ATen forms that become them or other
ops (argmax / argmin, max.dim / min.dim, topk, sort, cumsum, gather, index_select, embedding, x[:, idx],
masked_fill, add / sub with alpha, reductions and softmax with dtype=float32, dtype casts).

Kernels: `_core.run_op` on every ISA path and 1 / 2 threads (bit-identical) against torch / numpy.
Models: converted and run against eager PyTorch (float32) and the reference interpreter against
PyTorch in float64 (test_general_graph.check).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import ISAS
from engine_ops import run_everywhere_op
from test_general_graph import IMG, Fn, check
from torch import nn

import xnorinfer
from xnorinfer import _core, xbin
from xnorinfer.convert import ConversionError, convert


def _data(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Random values with repeats (ties) and a NaN-free body."""
    rng = np.random.default_rng(seed)
    return rng.integers(-4, 5, size=shape).astype(np.float32) * np.float32(0.5)


# --------------------------------------------------------------------------- kernels


@pytest.mark.parametrize("op", ["argmax", "argmin"])
@pytest.mark.parametrize(
    ("shape", "axis", "keep"), [((3, 7, 5), 1, False), ((2, 4, 6, 9), -1, True), ((1, 40), 0, False)]
)
def test_arg_reduce_matches_torch(op, shape, axis, keep):
    x = _data(shape)
    got = run_everywhere_op("arg_reduce", {"op": op, "axis": axis, "keepdims": keep}, [x])
    want = getattr(torch, op)(torch.from_numpy(x), dim=axis, keepdim=keep)  # first index on ties
    np.testing.assert_array_equal(got, want.numpy().astype(np.float32))


def test_arg_reduce_nan_wins_as_in_torch():
    x = np.array([[1.0, np.nan, 5.0, np.nan], [3.0, 3.0, -1.0, -1.0]], np.float32)
    for op in ("argmax", "argmin"):
        got = run_everywhere_op("arg_reduce", {"op": op, "axis": 1}, [x])
        np.testing.assert_array_equal(got, getattr(torch, op)(torch.from_numpy(x), dim=1).numpy())


@pytest.mark.parametrize("largest", [True, False])
@pytest.mark.parametrize(("shape", "axis", "k"), [((2, 9, 3), 1, 4), ((3, 11), -1, 11), ((1, 2, 3, 70), 3, 5)])
def test_topk_matches_torch_stable_sort(shape, axis, k, largest):
    x = _data(shape, seed=k)
    x.flat[0] = np.nan
    t = torch.sort(torch.from_numpy(x), dim=axis, descending=largest, stable=True)
    for output, want in (("values", t.values), ("indices", t.indices)):
        got = run_everywhere_op("topk", {"k": k, "axis": axis, "largest": largest, "output": output}, [x])
        np.testing.assert_array_equal(got, want.narrow(axis, 0, k).numpy().astype(np.float32))


@pytest.mark.parametrize(("shape", "axis"), [((2, 300, 3), 1), ((4, 1000), -1), ((1, 3, 5, 7), 2)])
def test_cumsum_equals_torch_bit_for_bit(shape, axis):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(shape) * 100).astype(np.float32)
    got = run_everywhere_op("cumsum", {"axis": axis}, [x])
    want = torch.cumsum(torch.from_numpy(x), dim=axis).numpy()  # PyTorch's CPU kernel sums in double
    assert got.tobytes() == want.tobytes()
    exact = np.cumsum(x.astype(np.float64), axis=axis)
    np.testing.assert_array_less(np.abs(got - exact), np.abs(exact) * 2**-23 + 1e-30)


@pytest.mark.parametrize(
    ("x_shape", "axis", "idx"), [((2, 5, 3), 1, [[4, 0], [-1, 2]]), ((6, 4), 0, [5, 5, 0]), ((3, 7), -1, [6])]
)
def test_take_matches_numpy(x_shape, axis, idx):
    x = _data(x_shape, seed=1)
    index = np.asarray(idx, np.float32)
    got = run_everywhere_op("take", {"axis": axis}, [x, index])
    np.testing.assert_array_equal(got, np.take(x, np.asarray(idx), axis=axis))


def test_gather_matches_torch():
    rng = np.random.default_rng(5)
    x = _data((3, 6, 4), seed=2)
    index = rng.integers(0, 6, size=(2, 5, 3))
    got = run_everywhere_op("gather", {"axis": 1}, [x, index.astype(np.float32)])
    np.testing.assert_array_equal(got, torch.gather(torch.from_numpy(x), 1, torch.from_numpy(index)).numpy())


@pytest.mark.parametrize("reduce", ["none", "add"])
def test_scatter_matches_torch(reduce):
    rng = np.random.default_rng(9)
    x = _data((3, 6, 4), seed=6)
    if reduce == "none":  # distinct targets per line: PyTorch leaves the winner of repeated ones unspecified
        index = np.stack([np.stack([rng.permutation(6)[:5] for _ in range(3)], axis=1) for _ in range(2)])
    else:
        index = rng.integers(-6, 6, size=(2, 5, 3))
    # multiples of 0.5: the sums are exact in any order; "none": a src larger than index (read at p)
    src = _data((2, 5, 3) if reduce == "add" else (3, 6, 4), seed=7)
    got = run_everywhere_op("scatter", {"axis": 1, "reduce": reduce}, [x, index.astype(np.float32), src])
    t = torch.from_numpy(x)
    i = torch.from_numpy(index % 6)
    want = t.scatter_add(1, i, torch.from_numpy(src)) if reduce == "add" else t.scatter(1, i, torch.from_numpy(src))
    np.testing.assert_array_equal(got, want.numpy())
    one = run_everywhere_op("scatter", {"axis": 1}, [x, index.astype(np.float32), np.full((1,), 7.0, np.float32)])
    np.testing.assert_array_equal(one, t.scatter(1, i, 7.0).numpy())


@pytest.mark.parametrize("kind", ["take", "gather", "scatter"])
@pytest.mark.parametrize("bad", [5.0, -6.0, 1.5, np.nan, np.inf])
def test_bad_index_fails_the_run_naming_the_op(kind, bad):
    x = _data((2, 5), seed=4)
    index = np.zeros((3,) if kind == "take" else (2, 5), np.float32)
    index.flat[1] = bad
    src = [np.zeros((1,), np.float32)] if kind == "scatter" else []
    with pytest.raises((RuntimeError, ValueError), match=rf"\({kind}\): index .* is not an integer in \[-5, 5\)"):
        _core.run_op(kind, {"axis": 1}, {}, [x, index, *src])


def test_schemas_refuse_bad_attributes():
    x = _data((2, 5))
    with pytest.raises(ValueError, match=r"\(topk\): k 6 exceeds the axis size 5"):
        _core.run_op("topk", {"k": 6, "axis": 1, "output": "values"}, {}, [x])
    with pytest.raises(ValueError, match=r"\(arg_reduce\): op must be 'argmax' or 'argmin'"):
        _core.run_op("arg_reduce", {"op": "max", "axis": 1}, {}, [x])
    with pytest.raises(ValueError, match=r"\(cumsum\): axis 2 does not fit"):
        _core.run_op("cumsum", {"axis": 2}, {}, [x])


# --------------------------------------------------------------------------- models


VEC = (1, 12)


def _assigned(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """In-place assignments to slices, a selected row and constant indices (copy, slice_scatter, index_put)."""
    a, b, c, d = x.clone(), x.clone(), x.clone(), x.clone()
    a[:, :, 1:3] = 0.5
    b[:, 1] = b[:, 0] * 2
    c[:, torch.tensor([0, 2])] = -1.0
    d[:, :2] = x[:, 1:].relu()
    return a, b, c, d


MODELS = {
    "argmax_head": (lambda x: x.flatten(1).softmax(1).argmax(1), IMG),
    "argmin_keepdim": (lambda x: torch.argmin(x, dim=2, keepdim=True), IMG),
    "max_dim_values_indices": (lambda x: tuple(x.max(dim=1)), IMG),
    "min_dim": (lambda x: tuple(torch.min(x, -1, keepdim=True)), IMG),
    "topk": (lambda x: tuple(torch.topk(x, 3)), VEC),
    "topk_smallest_dim1": (lambda x: tuple(torch.topk(x, 2, dim=1, largest=False)), IMG),
    "sort": (lambda x: tuple(torch.sort(x, dim=2, descending=True)), IMG),
    "cumsum": (lambda x: x.cumsum(dim=3) + x.cumsum(1), IMG),
    "gather_topk": (lambda x: torch.gather(x * 2, 1, torch.topk(x, 4, dim=1).indices), VEC),
    "index_select": (lambda x: torch.index_select(x, 1, torch.tensor([2, 0, 2])), IMG),
    "index_select_w": (lambda x: torch.index_select(x, 3, torch.tensor([5, 1])), IMG),
    "advanced_index": (lambda x: x[:, torch.tensor([1, 3, 3])], VEC),
    "masked_fill": (lambda x: x.masked_fill(x > 0.5, -1.0), IMG),
    "masked_attention": (
        lambda x: x.masked_fill(torch.ones(4, 6, dtype=torch.bool).tril(-1), float("-inf")).softmax(-1),
        IMG,
    ),
    "add_alpha": (lambda x: torch.add(x, x.abs(), alpha=2), IMG),
    "sub_alpha_const": (lambda x: torch.sub(x, torch.arange(6.0), alpha=0.5), IMG),
    "rsub_alpha": (lambda x: torch.sub(x.exp(), x, alpha=3), VEC),
    "sum_dtype": (lambda x: x.sum(dim=1, dtype=torch.float32), IMG),
    "mean_dtype": (lambda x: x.mean(dim=(2, 3), dtype=torch.float32), IMG),
    "sum_dtype_float64": (lambda x: x.sum(dim=1, dtype=torch.float64), IMG),
    "count_dtype_int32": (lambda x: (x > 0).sum(dim=(2, 3), dtype=torch.int32).float(), IMG),
    "softmax_dtype": (lambda x: torch.softmax(x, 1, dtype=torch.float32), IMG),
    "cast_int_truncates": (lambda x: (x * 3).to(torch.int64).float(), IMG),
    "cast_int32_arith": (lambda x: ((x * 4).int() + 1).float() * 0.5, VEC),
    "cast_bool": (lambda x: x.round().bool().float(), IMG),
    "trunc_ceil_frac": (lambda x: torch.trunc(x * 3) + torch.ceil(x * 3) + torch.frac(x * 3), IMG),
    "floor_divide": (lambda x: ((x.argmax(3) // 2).float(), torch.div(x * 5, 2, rounding_mode="trunc")), IMG),
    "isnan_nan_to_num": (lambda x: torch.nan_to_num(x.log()) + torch.isnan(x.log()).float(), IMG),
    "clamp_tensor_bounds": (lambda x: torch.clamp(x, min=torch.linspace(-1, 0, 6), max=x.mean(1, keepdim=True)), IMG),
    "flip_roll": (lambda x: x.flip(3, 1) + torch.roll(x, 2, 2), IMG),
    "repeat": (lambda x: x.repeat(1, 2, 1, 3), IMG),
    "norm_normalize": (
        lambda x: (F.normalize(x, dim=1), x.norm(dim=3), torch.linalg.vector_norm(x, 1, dim=(2, 3))),
        IMG,
    ),
    "norm_inf_p3": (
        lambda x: (torch.linalg.vector_norm(x, float("inf"), dim=2), torch.linalg.vector_norm(x, 3, dim=1)),
        IMG,
    ),
    "scalar_on_reduced_3d": (lambda x: x.sum(3) / 2 + 1, IMG),
    "assignments": (_assigned, IMG),
    "scatter_one_hot": (lambda x: torch.zeros_like(x).scatter(3, x.argmax(3, keepdim=True), 1.0), IMG),
    "scatter_src_permutation": (lambda x: x.scatter(3, x.argsort(3), x * 2), IMG),
    "scatter_add": (
        lambda x: x.scatter_add(1, torch.tensor([[[[0, 2], [1, 1]]]]).expand(1, 2, 2, 2), x[:, :2, :2, :2]),
        IMG,
    ),
    "unravel_remainder": (lambda x: ((x.flatten(2).argmax(2) % 6).float(), (x.flatten(2).argmax(2) // 6).float()), IMG),
    "every_index_mod_div": (
        lambda x: ((x.flatten(1).argsort(1) % 7).float(), (x.flatten(1).argsort(1) // 7).float()),
        IMG,
    ),
    "fmod_remainder_ints": (lambda x: (torch.fmod((x * 8).trunc(), 3), torch.remainder((x * 8).trunc(), -3)), IMG),
    "count_positive": (lambda x: (x > 0).long().sum(1).float(), IMG),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_converts_and_runs_like_torch(name):
    fn, shape = MODELS[name]
    check(Fn(fn), shape)


class EmbedArgmax(nn.Module):
    """Tokens from an argmax (computed indices) looked up in an embedding table."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.emb(x.argmax(dim=3)).sum(1)


class ClassifierTop5(nn.Module):
    """A classification head returning the top-5 classes and their probabilities."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.fc(self.conv(x).relu().mean(dim=(2, 3)))
        p, i = logits.softmax(1).topk(5)
        return p, i


def test_embedding_of_computed_indices():
    torch.manual_seed(0)
    graph = check(EmbedArgmax(), IMG, per_image=False)
    assert {"arg_reduce", "take"} <= {op.kind for op in graph.ops}


def test_top5_head_with_verification(tmp_path):
    torch.manual_seed(0)
    model = ClassifierTop5().eval()
    graph = convert(model, (torch.randn(1, 3, 8, 8),), output=tmp_path / "top5.xbin", n_verify=16)
    assert graph.metadata["verification"]["engine"]["max_rel_error"] < 1e-4
    x = torch.randn(7, 3, 8, 8)
    p, i = xnorinfer.load(tmp_path / "top5.xbin").run(x.numpy())
    with torch.no_grad():
        wp, wi = model(x)
    np.testing.assert_allclose(p, wp.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(i, wi.numpy())


def test_out_of_range_embedding_index_fails_at_run_time():
    class Emb(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.emb(x.argmax(dim=3))  # indices up to 5 into a table of 4 rows

    x = torch.zeros(1, 3, 4, 6)
    x[..., 1] = 1.0
    graph = convert(Emb().eval(), (x,), verify=False)
    session = xnorinfer.load(xbin.to_bytes(graph), 1)
    x[0, 0, 0, 5] = 9.0
    with pytest.raises(RuntimeError, match=r"\(take\): index 5\.0+ is not an integer in \[-4, 4\)"):
        session.run(x.numpy())


def test_data_dependent_shape_is_refused():
    with pytest.raises(ConversionError):
        convert(Fn(lambda x: torch.nonzero(x > 0).float()), (torch.randn(*IMG),), verify=False)


# --------------------------------------------------------------------------- bicubic resize


@pytest.mark.parametrize(
    ("size", "align", "scale"),
    [
        ((8, 12), False, None),
        ((8, 12), True, None),
        ((3, 5), False, None),
        ((7, 13), True, None),
        ((8, 12), False, 2.0),
    ],
)
def test_bicubic_resize_matches_torch(size, align, scale):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 4, 6, 3)).astype(np.float32)  # NHWC
    attrs = {"size": list(size), "mode": "bicubic", "align_corners": align}
    if scale is not None:
        attrs.update(scale_h=scale, scale_w=scale)
    got = run_everywhere_op("resize", attrs, [x])
    t = torch.from_numpy(x).permute(0, 3, 1, 2)
    if scale is None:
        want = torch.nn.functional.interpolate(t, size=size, mode="bicubic", align_corners=align)
    else:
        want = torch.nn.functional.interpolate(t, scale_factor=scale, mode="bicubic", align_corners=align)
    # float32 rounding: PyTorch's vectorised kernel orders (and fuses) the 16 products differently
    np.testing.assert_allclose(got, want.permute(0, 2, 3, 1).numpy(), rtol=0, atol=1e-5)


BICUBIC = {
    "bicubic_x2": (lambda x: F.interpolate(x, scale_factor=2, mode="bicubic"), IMG),
    "bicubic_align_size": (lambda x: F.interpolate(x, size=(7, 9), mode="bicubic", align_corners=True), IMG),
    "bicubic_down": (lambda x: F.interpolate(x.relu(), size=(3, 4), mode="bicubic"), (1, 3, 8, 8)),
}


@pytest.mark.parametrize("name", sorted(BICUBIC))
def test_bicubic_model_converts_to_one_resize(name):
    fn, shape = BICUBIC[name]
    graph = check(Fn(fn), shape, per_image=False)
    assert [op.attrs["mode"] for op in graph.ops if op.kind == "resize"] == ["bicubic"]


class _GatherConstantIndex(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("idx", torch.tensor([[2, 0, 1, 3, 3]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.gather(x, 1, self.idx) * 2.0


def test_an_output_whose_axis_0_is_not_the_batch_keeps_its_shape() -> None:
    """gather by a constant batch-1 index gives 1 row whatever the batch (as PyTorch): the engine returns
    that row, never rows no op wrote (the session used to hand back (N, ...) with N - 1 unwritten rows)."""
    model = _GatherConstantIndex().eval()
    graph = convert(model, (torch.randn(1, 4),), verify=False)
    x = torch.randn(3, 4)
    with torch.no_grad():
        want = model(x).numpy()
    for isa in ISAS:
        for threads in (1, 2):
            got = np.asarray(xnorinfer.load(xbin.to_bytes(graph), threads).run(x.numpy(), isa=isa))
            assert got.shape == want.shape == (1, 5)
            np.testing.assert_array_equal(got, want)
