"""The ops that emptied the converter's refusal list (issue 12): reduce "prod", the cumsum node's
cumprod / cummax / cummin modes, scatter's reductions (scatter_reduce prod / amax / amin / mean,
include_self or not; scatter reduce="multiply"), cast_float (float16 / bfloat16 rounding) and
rank-0 results of whole-tensor reductions (x.max(), x.prod(), x.sum()).

Kernels: `_core.run_op` on every ISA path and 1 / 2 threads (bit-identical) against eager PyTorch.
Models: converted and run against eager PyTorch (float32) and the reference interpreter against
PyTorch in float64 (test_general_graph.check).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from engine_ops import run_everywhere_op
from test_general_graph import IMG, Fn, check

import xnorinfer
from xnorinfer import _core, xbin
from xnorinfer.convert import convert, reference
from xnorinfer.ops.cast_ops import round_to_bfloat16

VEC = (1, 12)


def _ties(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Multiples of 0.5 in [-2, 2]: many ties."""
    return np.random.default_rng(seed).integers(-4, 5, size=shape).astype(np.float32) * np.float32(0.5)


# --------------------------------------------------------------------------- reduce prod


@pytest.mark.parametrize(
    ("shape", "axes"), [((2, 7, 5), [1]), ((3, 4, 6, 5), [1, 3]), ((1, 300), [1]), ((1, 4, 70), [1])]
)
def test_reduce_prod_matches_float64_and_torch(shape, axes):
    rng = np.random.default_rng(1)
    x = (rng.uniform(0.8, 1.25, size=shape) * rng.choice([-1, 1], size=shape)).astype(np.float32)
    got = run_everywhere_op("reduce", {"op": "prod", "axes": axes, "keepdims": True}, [x])
    exact = np.prod(x.astype(np.float64), axis=tuple(axes), keepdims=True)
    n = int(np.prod([shape[a] for a in axes]))
    # a double product of n float32 factors rounded once: within 1 ulp of float32 (plus n double roundings)
    np.testing.assert_allclose(got, exact, rtol=2.0**-23 + n * 2.0**-52, atol=0)
    want = torch.from_numpy(x)
    for a in reversed(axes):
        want = want.prod(dim=a, keepdim=True)
    # PyTorch multiplies in float32 in its own order: within n float32 roundings
    np.testing.assert_allclose(got, want.numpy(), rtol=n * 2.0**-23, atol=0)


def test_reduce_prod_zero_inf_nan_as_torch():
    x = np.array([[1.0, 0.0, 5.0], [np.inf, 0.0, 1.0], [np.nan, 2.0, 3.0], [1e30, 1e30, -1.0]], np.float32)
    got = run_everywhere_op("reduce", {"op": "prod", "axes": [1], "keepdims": False}, [x])
    np.testing.assert_array_equal(got, torch.from_numpy(x).prod(1).numpy())


# --------------------------------------------------------------------------- cumsum: prod, max, min


@pytest.mark.parametrize(("shape", "axis"), [((2, 60, 3), 1), ((4, 200), -1), ((1, 3, 5, 7), 2)])
def test_cumprod_equals_torch_bit_for_bit(shape, axis):
    rng = np.random.default_rng(3)
    x = rng.uniform(0.5, 1.7, size=shape).astype(np.float32) * rng.choice([-1, 1], size=shape).astype(np.float32)
    got = run_everywhere_op("cumsum", {"axis": axis, "op": "prod"}, [x])
    want = torch.cumprod(torch.from_numpy(x), dim=axis).numpy()  # PyTorch's CPU kernel multiplies in double
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("op", ["max", "min"])
@pytest.mark.parametrize(("shape", "axis"), [((3, 40, 2), 1), ((5, 17), -1), ((2, 3, 9, 4), 2), ((1, 6, 3), 1)])
def test_cummax_cummin_values_and_indices_equal_torch(op, shape, axis):
    x = _ties(shape, seed=len(shape))  # ties: PyTorch takes the LAST index of equal values
    flat = x.reshape(-1)
    flat[::7] = np.nan  # NaN wins, each new NaN moves the index
    flat[3::11] = -np.inf
    t = (torch.cummax if op == "max" else torch.cummin)(torch.from_numpy(x), dim=axis)
    values = run_everywhere_op("cumsum", {"axis": axis, "op": op}, [x])
    indices = run_everywhere_op("cumsum", {"axis": axis, "op": op, "output": "indices"}, [x])
    np.testing.assert_array_equal(values, t.values.numpy())
    np.testing.assert_array_equal(indices, t.indices.numpy().astype(np.float32))


def test_cumsum_schema_refuses_bad_modes():
    x = _ties((2, 5))
    with pytest.raises((RuntimeError, ValueError), match="output 'indices' needs op 'max' or 'min'"):
        _core.run_op("cumsum", {"axis": 1, "op": "prod", "output": "indices"}, {}, [x])
    with pytest.raises((RuntimeError, ValueError), match="op must be"):
        _core.run_op("cumsum", {"axis": 1, "op": "mean"}, {}, [x])


# --------------------------------------------------------------------------- scatter reductions


@pytest.mark.parametrize("include_self", [True, False])
@pytest.mark.parametrize("reduce", ["mul", "max", "min", "mean", "add"])
def test_scatter_reduce_matches_torch(reduce, include_self):
    rng = np.random.default_rng(11)
    x = _ties((3, 6, 4), seed=6) + np.float32(0.25)
    index = rng.integers(-6, 6, size=(2, 5, 3))  # repeated targets, some elements never reached
    src = _ties((2, 5, 3), seed=7)
    src.flat[4] = np.nan
    attrs = {"axis": 1, "reduce": reduce, "include_self": include_self}
    got = run_everywhere_op("scatter", attrs, [x, index.astype(np.float32), src])
    name = {"mul": "prod", "max": "amax", "min": "amin", "mean": "mean", "add": "sum"}[reduce]
    i = torch.from_numpy(index % 6)
    want = torch.from_numpy(x).scatter_reduce(1, i, torch.from_numpy(src), name, include_self=include_self)
    # multiples of 0.25: sums, products and means of these few values are exact in any order
    np.testing.assert_array_equal(got, want.numpy())


def test_scatter_multiply_one_value():
    x = _ties((2, 5), seed=2) + np.float32(0.25)
    index = np.array([[0, 3, 3], [4, 4, 1]], np.float32)
    got = run_everywhere_op("scatter", {"axis": 1, "reduce": "mul"}, [x, index, np.full((1,), -2.0, np.float32)])
    want = torch.from_numpy(x).scatter(1, torch.from_numpy(index).long(), -2.0, reduce="multiply")
    np.testing.assert_array_equal(got, want.numpy())


def test_scatter_include_self_false_needs_a_reduction():
    x = _ties((2, 5))
    with pytest.raises((RuntimeError, ValueError), match="include_self false needs a reduce"):
        _core.run_op("scatter", {"axis": 1, "include_self": False}, {}, [x, np.zeros((2, 1), np.float32), x])


# --------------------------------------------------------------------------- cast_float


def _edge_values() -> np.ndarray:
    """Every float16 / bfloat16 boundary and its neighbours: overflow, normal / subnormal limits, ties."""
    base = [0.0, 1.0, 65504.0, 65519.996, 65520.0, 65536.0, 2.0**-14, 2.0**-24, 2.0**-25, 3 * 2.0**-26]
    base += [2.0**-126, 2.0**-133, 2.0**-134, 2.0**-149, 3.4028235e38, 3.3895314e38, 1 + 2.0**-8, 1 + 2.0**-11]
    base += [1 + 3 * 2.0**-11, 1 + 3 * 2.0**-9, 1.0009765625, 1.00048828125, 2049.0, 2051.0, np.inf]
    bits = np.array(base, np.float32).view(np.uint32)
    around = (bits[:, None].astype(np.int64) + np.arange(-3, 4)[None, :]).clip(0, 0x7F800000).astype(np.uint32)
    v = around.reshape(-1).view(np.float32)
    return np.concatenate([v, -v])


def _sweep(n: int, seed: int) -> np.ndarray:
    """Random float32 bit patterns (every exponent, NaN included) and random values near 1 and in
    float16's range."""
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2**32, size=n, dtype=np.uint64).astype(np.uint32).view(np.float32)
    near = (rng.standard_normal(n) * rng.choice([1e-6, 1e-3, 1.0, 1e3, 7e4], size=n)).astype(np.float32)
    return np.concatenate([bits, near, _edge_values()])


@pytest.mark.parametrize("to", ["float16", "bfloat16"])
def test_cast_float_equals_torch_bit_for_bit(to):
    x = _sweep(1 << 18, seed=5 if to == "float16" else 6)
    got = run_everywhere_op("cast_float", {"to": to}, [x])
    want = torch.from_numpy(x).to(torch.float16 if to == "float16" else torch.bfloat16).float().numpy()
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(got), nan)
    assert got[~nan].tobytes() == want[~nan].tobytes()  # zeros keep their sign: bytes, not values


@pytest.mark.parametrize("to", ["float16", "bfloat16"])
def test_cast_float_reference_rounds_float64_as_torch(to):
    x32 = _sweep(1 << 14, seed=9)
    x = x32[np.isfinite(x32)].astype(np.float64)
    with np.errstate(over="ignore"):  # beyond float16's range: inf, as PyTorch
        ref = x.astype(np.float16).astype(np.float64) if to == "float16" else round_to_bfloat16(x)
    want = torch.from_numpy(x.astype(np.float32)).to(getattr(torch, to)).double().numpy()
    np.testing.assert_array_equal(ref, want)


def test_cast_float_schema_refuses_other_formats():
    with pytest.raises((RuntimeError, ValueError), match="to must be 'float16' or 'bfloat16'"):
        _core.run_op("cast_float", {"to": "float8"}, {}, [np.zeros((2, 3), np.float32)])


# --------------------------------------------------------------------------- models


MODELS = {
    "prod_dim": (lambda x: x.prod(dim=1, keepdim=True) + torch.prod(x, 3, keepdim=True), IMG),
    "cumprod": (lambda x: torch.cumprod(x.sigmoid() + 0.5, dim=3), IMG),
    "cummax_cummin": (lambda x: (*torch.cummax(x, dim=2), *torch.cummin(x.round(), dim=3)), IMG),
    "cummin_indices_used": (lambda x: x * torch.cummin(x, dim=1).indices.float(), VEC),
    "half_round_trip": (lambda x: (x * 300).half().float() + (x * 1e-6).half().float() * 1e6, IMG),
    "bfloat16_round_trip": (lambda x: (x * 3).bfloat16().float(), IMG),
    "half_arithmetic": (lambda x: ((x.half() * 3) + 1).float(), IMG),
    "half_softmax_to_float": (lambda x: torch.softmax((x * 4).half(), dim=1, dtype=torch.float32), IMG),
    "scatter_multiply": (
        lambda x: x.scatter(3, torch.tensor([[[[0, 2], [5, 5]]]]).expand(1, 3, 2, 2), 2.0, reduce="multiply"),
        IMG,
    ),
    "scatter_reduce_amax": (
        lambda x: x.scatter_reduce(1, (x[:, :2] > 0).long() * 2, x[:, 1:3] * 3, "amax", include_self=False),
        IMG,
    ),
    "scatter_reduce_mean_prod": (
        lambda x: (
            x.scatter_reduce(3, x.argsort(3) % 3, x * 2, "mean"),
            x.scatter_reduce(2, torch.tensor([[[[0], [1], [1], [0]]]]).expand(1, 3, 4, 6), x + 1, "prod"),
        ),
        IMG,
    ),
    "scatter_reduce_amin_exclude": (
        lambda x: x.scatter_reduce(1, x.argsort(1) // 3, x, "amin", include_self=False),
        VEC,
    ),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_converts_and_runs_like_torch(name):
    fn, shape = MODELS[name]
    check(Fn(fn), shape)


def _put_computed(x: torch.Tensor) -> torch.Tensor:
    """y[:, idx] = v with idx computed in the graph (the 4 smallest features, distinct)."""
    idx = x[0].argsort()[:4]
    y = x.clone()
    y[:, idx] = x[:, 4:8] * 2
    return y


def _put_accumulate(x: torch.Tensor) -> torch.Tensor:
    """index_put(accumulate=True) along dim 3 with repeated computed indices: the values add up."""
    idx = (x[0, 0, 0].argsort() % 3)[:5]  # 5 indices in [0, 3), repeats
    return torch.ops.aten.index_put(x, [None, None, None, idx], x[:, :, :, :5], True)


def _put_two_dims(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """y[:, i, j] (+)= v with two computed index tensors on adjacent dims (a flattened scatter), one of
    them negative."""
    i = x[0, 0, 0].argsort()[:4] % 3
    j = x[0, 1, 1].argsort()[:4] % 4 - 4
    v = x[:, 0, :4, :] * 2
    put = torch.ops.aten.index_put
    return put(x, [None, i, j], v, True), put(x, [None, i, j], v * 0 + 5.0)


def _masked_mean(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """y[mask] = v and y[mask] += v with a computed one-element v (a whole-tensor mean)."""
    y = x.clone()
    y[x < 0] = x.mean()
    z = torch.ops.aten.index_put(x, [x > 0.5], x.amax(), True)
    return y, z


# Models whose values mix the images of a batch (a whole-tensor reduction, indices computed from image 0):
# compared at batch 1, where PyTorch's result is the engine's (the graph runs one image at a time).
BATCH1 = {
    "prod_whole_in_arithmetic": (lambda x: x / x.abs().add(0.5).prod(), IMG),
    "max_min_whole": (lambda x: (x - x.min()) / (x.max() - x.min()), IMG),
    "sum_whole": (lambda x: x * x.sum(), VEC),
    "mean_whole_relu": (lambda x: (x - x.mean()).relu(), IMG),
    "index_put_computed": (_put_computed, VEC),
    "index_fill_computed": (lambda x: x.clone().index_fill(1, x[0].argmax(0, keepdim=True), 9.0), VEC),
    "index_add": (lambda x: x.index_add(3, (x[0, 0, 0].argsort() % 4)[:3], x[:, :, :, :3] * 0.5), IMG),
    "index_put_accumulate": (_put_accumulate, IMG),
    "index_put_two_dims": (_put_two_dims, IMG),
    "masked_put_computed_scalar": (_masked_mean, IMG),
    "argmax_argmin_whole": (lambda x: x * x.argmax() - x.argmin().float(), IMG),
}


@pytest.mark.parametrize("name", sorted(BATCH1))
def test_batch1_model_converts_and_runs_like_torch(name):
    fn, shape = BATCH1[name]
    model = Fn(fn)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(2))
    graph = convert(model, (x,), verify=False)
    got = xnorinfer.load(xbin.to_bytes(graph), 1).run(x.numpy())
    got = got if isinstance(got, list) else [got]
    ref = reference.run(graph, x.numpy())
    with torch.no_grad():
        outs32, outs64 = model(x), model(x.double())
    outs32 = outs32 if isinstance(outs32, tuple) else (outs32,)
    outs64 = outs64 if isinstance(outs64, tuple) else (outs64,)
    assert len(got) == len(outs32) == len(graph.outputs)
    for g, name_out, w32, w64 in zip(got, graph.outputs, outs32, outs64, strict=True):
        nhwc = (0, 2, 3, 1) if w32.dim() == 4 else tuple(range(w32.dim()))
        want = w32.numpy().transpose(nhwc)
        np.testing.assert_allclose(np.asarray(g).reshape(want.shape), want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            ref[name_out].reshape(want.shape), w64.numpy().transpose(nhwc), rtol=1e-9, atol=1e-12
        )


def test_rank0_output_keeps_one_element():
    """A rank-0 model output (x.max()) comes out of the engine as one element of the same value (the IR's
    tensors have rank >= 1: a rank-0 value is held as shape (1,))."""
    model = Fn(lambda x: x.abs().max())
    x = torch.randn(1, 3, 4, 6)
    graph = convert(model, (x,), verify=False)
    got = np.asarray(xnorinfer.load(xbin.to_bytes(graph), 1).run(x.numpy()))
    want = model(x)
    assert want.dim() == 0 and got.size == 1
    np.testing.assert_array_equal(got.reshape(()), want.numpy())


def test_half_cast_in_a_model_is_bit_exact():
    """`.half().float()` through the converter: the engine's output equals PyTorch's bit for bit."""
    model = Fn(lambda x: (x * 1000).half().float())
    x = torch.randn(1, 3, 4, 6) * torch.logspace(-8, 3, 6)
    graph = convert(model, (x,), verify=False)
    assert "cast_float" in {op.kind for op in graph.ops}
    got = xnorinfer.load(xbin.to_bytes(graph), 1).run(x.numpy())
    want = model(x).numpy().transpose(0, 2, 3, 1)
    assert np.asarray(got).tobytes() == np.ascontiguousarray(want).tobytes()


def test_log_softmax_half_to_float():
    check(Fn(lambda x: F.log_softmax((x * 2).half(), dim=3, dtype=torch.float32)), IMG)
