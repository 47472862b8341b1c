"""The general element-wise float ops (binary, where, constant and the unary kinds of
xnorinfer/ops/general_ops.py) through `_core.run_op` on every ISA path and thread count, against
numpy float64 (exact ops bit for bit, transcendental ones within docs/ir.md's tolerance) and torch
float32; their refusals; and a converted model using the activations, run against PyTorch."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import ISAS, POOLS

import xnorinfer
from xnorinfer import _core, ir, xbin
from xnorinfer.convert import convert, reference
from xnorinfer.float_equivalent import torch_module
from xnorinfer.ops import op_def
from xnorinfer.ops.general_ops import ARITHMETIC, BINARY_KINDS, COMPARISONS

torch = pytest.importorskip("torch")
nn = torch.nn

SPECIALS = np.array(
    [0.0, -0.0, 1.0, -1.0, 0.5, 3.0, -3.0, 1e-45, -1e-45, 1e30, -1e30, np.inf, -np.inf, np.nan], np.float32
)


def _data(rng: np.random.Generator, shape: tuple[int, ...], scale: float = 3.0, specials: bool = True) -> np.ndarray:
    x = (rng.standard_normal(shape) * scale).astype(np.float32)
    if specials:
        flat = x.reshape(-1)
        k = min(flat.size, SPECIALS.size)
        flat[rng.choice(flat.size, k, replace=False)] = SPECIALS[rng.permutation(SPECIALS.size)[:k]]
    return x


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, np.float32).view(np.uint32)


def _run_everywhere(kind: str, attrs: dict, params: dict, inputs: list[np.ndarray]) -> np.ndarray:
    """The op on every ISA path with 1 and 2 threads: all results identical bit for bit; returns one."""
    results = [_core.run_op(kind, attrs, params, inputs, isa=isa, pool=pool) for isa in ISAS for pool in POOLS]
    for r in results[1:]:
        assert r.shape == results[0].shape and r.dtype == np.float32
        np.testing.assert_array_equal(_bits(r), _bits(results[0]), err_msg="ISA paths / thread counts differ")
    return results[0]


def _reference(kind: str, attrs: dict, params: dict, inputs: list[np.ndarray]) -> np.ndarray:
    op = ir.Op(kind, kind, [f"x{i}" for i in range(len(inputs))], ["y"], attrs, params)
    return op_def(kind).reference(op, [x.astype(np.float64) for x in inputs], [])


def _exact(got: np.ndarray, want64: np.ndarray, signed_zero: bool = True) -> None:
    """got is want64 rounded to float32, bit for bit (any NaN for NaN; ±0 alike unless signed_zero)."""
    want = want64.astype(np.float32)
    assert got.shape == want.shape
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(got), nan)
    if signed_zero:
        np.testing.assert_array_equal(_bits(got)[~nan], _bits(want)[~nan])
    else:
        np.testing.assert_array_equal(got[~nan], want[~nan])


# --------------------------------------------------------------------------- binary

# (a, b) physical shapes: equal, per-channel, scalar, (1, 1, 1, C) / (N, 1, 1, C) gates on NHWC, a
# broadcast on both sides, ranks 1 to 6 and different ranks (right-aligned).
BROADCASTS = [
    ((2, 3, 4, 5), (2, 3, 4, 5)),
    ((2, 4, 5, 3), (3,)),
    ((3, 7), (1,)),
    ((1,), (3, 7)),
    ((2, 4, 5, 3), (1, 1, 1, 3)),
    ((2, 4, 5, 3), (2, 1, 1, 3)),
    ((1, 1, 1, 3), (2, 4, 5, 3)),
    ((3, 1, 5), (1, 4, 1)),
    ((7,), (7,)),
    ((5,), (1,)),
    ((2, 1, 3, 1, 2, 5), (1, 3, 1, 4, 1, 5)),
    ((2, 3, 1, 5, 1, 3), (3, 1, 5, 2, 1)),
    ((1, 9, 1), (6, 1, 11)),
    ((2, 3, 5, 7), (1, 3, 1, 7)),
]


@pytest.mark.parametrize("op", BINARY_KINDS)
@pytest.mark.parametrize("shapes", BROADCASTS, ids=lambda s: f"{s[0]}x{s[1]}")
def test_binary_matches_numpy_float64(op, shapes, rng):
    a, b = _data(rng, shapes[0]), _data(rng, shapes[1])
    if op in COMPARISONS:  # small integers: many equal pairs decide ge / le / eq / ne
        a, b = np.round(a / 2), np.round(b / 2)
    if op == "pow":  # positive bases (any exponent) and integer exponents of negative bases
        a = np.abs(a) + np.float32(0.1)
        b = np.where(rng.random(b.shape) < 0.5, np.round(b / 2), b).astype(np.float32)
        a = np.where((rng.random(a.shape) < 0.3) & (np.round(b) == b).all(), -a, a).astype(np.float32)
    got = _run_everywhere("binary", {"op": op}, {}, [a, b])
    want = _reference("binary", {"op": op}, {}, [a, b])
    assert got.shape == np.broadcast_shapes(a.shape, b.shape)
    if op == "pow":  # std::pow in float32: within 2 ulp of float64 (where float32 is finite)
        w32 = want.astype(np.float32)
        fin = np.isfinite(w32) & (w32 != 0)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(w32))
        ulp = np.spacing(np.abs(w32[fin])).astype(np.float64)
        assert np.all(np.abs(got[fin].astype(np.float64) - want[fin]) <= 2 * ulp)
    else:
        _exact(got, want, signed_zero=op not in ("max", "min"))
    t = getattr(torch, {"max": "maximum", "min": "minimum"}.get(op, op))(torch.from_numpy(a), torch.from_numpy(b))
    if op in ARITHMETIC and op != "pow":
        _exact(got, t.to(torch.float64).numpy(), signed_zero=op not in ("max", "min"))
    elif op in COMPARISONS:
        np.testing.assert_array_equal(got, t.to(torch.float32).numpy())


@pytest.mark.parametrize("op", ["add", "mul", "gt", "max"])
@pytest.mark.parametrize("shapes", [((3, 41, 67, 19), (3, 1, 67, 1)), ((181, 211), (211,)), ((5, 7, 2003), (1,))])
def test_binary_splits_large_broadcasts_over_threads(op, shapes, rng):
    """Enough elements for several tasks: runs cross task boundaries mid-row."""
    a, b = _data(rng, shapes[0], specials=False), _data(rng, shapes[1], specials=False)
    _exact(_run_everywhere("binary", {"op": op}, {}, [a, b]), _reference("binary", {"op": op}, {}, [a, b]))


def test_binary_nan_rules():
    nan = np.float32(np.nan)
    a = np.array([nan, 1.0, nan, 2.0, -0.0], np.float32)
    b = np.array([1.0, nan, nan, 2.0, 0.0], np.float32)
    run = {op: _core.run_op("binary", {"op": op}, {}, [a, b]) for op in BINARY_KINDS}
    assert np.isnan(run["max"][:3]).all() and np.isnan(run["min"][:3]).all()  # NaN propagates (torch.maximum)
    for op in ("gt", "ge", "lt", "le", "eq"):
        np.testing.assert_array_equal(run[op][:3], 0.0)
    np.testing.assert_array_equal(run["ne"], [1.0, 1.0, 1.0, 0.0, 0.0])
    np.testing.assert_array_equal(run["eq"][3:], [1.0, 1.0])  # -0 == 0


# --------------------------------------------------------------------------- where


@pytest.mark.parametrize(
    "shapes",
    [
        ((2, 4, 5, 3), (2, 4, 5, 3), (2, 4, 5, 3)),
        ((2, 4, 5, 3), (3,), (1,)),
        ((1, 1, 1, 3), (2, 4, 5, 3), (2, 4, 1, 1)),
        ((5, 1), (1, 6), (5, 6)),
        ((7,), (1,), (7,)),
        ((2, 1, 3, 1, 2, 5), (3, 4, 1, 5), (1, 1, 1, 1, 2, 1)),
        ((3, 33, 97, 13), (3, 33, 97, 13), (13,)),
    ],
    ids=str,
)
def test_where_matches_numpy(shapes, rng):
    c = np.where(rng.random(shapes[0]) < 0.5, 0.0, rng.standard_normal(shapes[0])).astype(np.float32)
    c.reshape(-1)[:3] = [np.nan, -0.0, np.inf][: min(3, c.size)]
    a, b = _data(rng, shapes[1]), _data(rng, shapes[2])
    got = _run_everywhere("where", {}, {}, [c, a, b])
    _exact(got, np.where(c != 0, a, b).astype(np.float64))
    _exact(got, _reference("where", {}, {}, [c, a, b]))
    t = torch.where(torch.from_numpy(c) != 0, torch.from_numpy(a), torch.from_numpy(b))
    np.testing.assert_array_equal(_bits(got), _bits(t.numpy()))


# --------------------------------------------------------------------------- constant


@pytest.mark.parametrize("shape", [(1,), (5,), (1, 7), (1, 2, 3), (1, 3, 4, 5), (1, 2, 1, 3, 2), (1, 2, 3, 1, 2, 3)])
def test_constant_outputs_its_value(shape, rng):
    value = _data(rng, shape)
    got = _run_everywhere("constant", {}, {"value": value}, [])
    np.testing.assert_array_equal(_bits(got), _bits(value))


def _constant_graph(rng) -> ir.Graph:
    """x (N, 4, 5, 3) NHWC -> where(x > c1, x * c2, exp(x) - 1) with constants of several shapes."""
    c1 = _data(rng, (3,), specials=False)  # rank 1: a per-channel constant, batch-independent
    c2 = _data(rng, (1, 4, 5, 3), specials=False)
    shape = (1, 4, 5, 3)
    t = {n: ir.Tensor(n, s, "f32") for n, s in [("x", shape), ("c1", c1.shape), ("c2", c2.shape), ("one", (1,))]}
    t |= {n: ir.Tensor(n, shape, "f32") for n in ("gt", "m", "e", "em1", "y")}
    ops = [
        ir.Op("constant", "c1", [], ["c1"], {}, {"value": c1}),
        ir.Op("binary", "gt", ["x", "c1"], ["gt"], {"op": "gt"}),
        ir.Op("constant", "c2", [], ["c2"], {}, {"value": c2}),
        ir.Op("binary", "m", ["x", "c2"], ["m"], {"op": "mul"}),
        ir.Op("exp", "e", ["x"], ["e"]),
        ir.Op("constant", "one", [], ["one"], {}, {"value": np.ones(1, np.float32)}),
        ir.Op("binary", "em1", ["e", "one"], ["em1"], {"op": "sub"}),
        ir.Op("where", "y", ["gt", "m", "em1"], ["y"]),
    ]
    return ir.Graph(["x"], ["y"], t, ops, {"input_shape": [1, 3, 4, 5]})


def test_graph_with_constants_runs_any_batch(tmp_path, rng):
    g = _constant_graph(rng)
    g.validate()
    path = tmp_path / "consts.xbin"
    xbin.write(g, path)
    x = rng.standard_normal((3, 3, 4, 5)).astype(np.float32)
    outs = [xnorinfer.load(path, threads=t).run(x, isa=isa) for t in (1, 2) for isa in ISAS]
    for o in outs[1:]:
        np.testing.assert_array_equal(_bits(o), _bits(outs[0]))
    want = reference.run(g, x)["y"]
    assert outs[0].shape == (3, 4, 5, 3)
    np.testing.assert_allclose(outs[0], want, rtol=1e-6, atol=1e-7)
    # the float equivalent (torch, NCHW for 4-D) computes the same graph
    t = torch_module(g)(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(t, want, rtol=1e-6, atol=1e-7)
    assert xnorinfer.load(path).costs()[0].kind == "constant"


# --------------------------------------------------------------------------- unary


def _domain(kind: str, x: np.ndarray) -> np.ndarray:
    return np.abs(x) if kind in ("log", "sqrt", "rsqrt") else x


# kind -> (attrs, exact vs float64, bit-exact vs torch float32)
UNARY = {
    "exp": ({}, False, False),
    "log": ({}, False, False),
    "sqrt": ({}, True, False),  # torch's float32 sqrt is not always correctly rounded
    "rsqrt": ({}, False, False),
    "reciprocal": ({}, True, True),
    "erf": ({}, False, False),
    "silu": ({}, False, False),
    "hardswish": ({}, False, True),
    "hardsigmoid": ({}, False, True),
    "gelu": ({}, False, False),
    "gelu-tanh": ({"approximate": "tanh"}, False, False),
    "leaky_relu": ({}, True, True),
    "leaky_relu-0.3": ({"negative_slope": 0.3}, True, True),
    "elu": ({}, False, False),
    "elu-0.5": ({"alpha": 0.5}, False, False),
    "signum": ({}, True, True),
}
TORCH_UNARY = {
    "exp": torch.exp,
    "log": torch.log,
    "sqrt": torch.sqrt,
    "rsqrt": torch.rsqrt,
    "reciprocal": torch.reciprocal,
    "erf": torch.erf,
    "silu": nn.functional.silu,
    "hardswish": nn.functional.hardswish,
    "hardsigmoid": nn.functional.hardsigmoid,
    "gelu": nn.functional.gelu,
    "leaky_relu": nn.functional.leaky_relu,
    "elu": nn.functional.elu,
    "signum": torch.sign,
}


@pytest.mark.parametrize("case", sorted(UNARY))
@pytest.mark.parametrize("shape", [(1,), (7,), (3, 5), (2, 3, 4, 5), (2, 1, 3, 1, 2, 3), (3, 61, 127, 7)], ids=str)
def test_unary_matches_numpy_float64(case, shape, rng):
    kind = case.split("-")[0]
    attrs, exact, torch_exact = UNARY[case]
    x = _domain(kind, _data(rng, shape, specials=math.prod(shape) < 100_000))
    got = _run_everywhere(kind, attrs, {}, [x])
    want = _reference(kind, attrs, {}, [x])
    assert got.shape == x.shape
    if exact:
        _exact(got, want)
    else:  # within 2 ulp of the float64 value, or 1e-6 relative (plus float32 underflow)
        w32 = want.astype(np.float32)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(w32))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(w32))
        fin = np.isfinite(w32)
        err = np.abs(got[fin].astype(np.float64) - want[fin])
        tol = np.maximum(2 * np.spacing(np.abs(w32[fin])).astype(np.float64), 1e-6 * np.abs(want[fin]))
        if kind == "gelu":  # PyTorch's float32 steps: erf / tanh within 1 ulp of each other scale by x / 2
            tol = 2 * np.spacing(np.abs(w32[fin])).astype(np.float64) + np.abs(x[fin]) * 2.0**-22
        assert np.all(err <= tol), f"max error {err.max()} ({kind})"
    if torch_exact:  # the same float32 operations as torch (any NaN for NaN)
        _exact(got, TORCH_UNARY[kind](torch.from_numpy(x), **attrs).double().numpy())
    elif kind == "gelu":  # torch's float32 gelu: the same float32 steps, but its vectorised erf / tanh
        # are polynomial approximations a few ulp from ours (NaN at +inf there, +inf here)
        t = TORCH_UNARY[kind](torch.from_numpy(x), **attrs).double().numpy()
        fin = np.isfinite(t)
        err = np.abs(got[fin].astype(np.float64) - t[fin])
        assert np.all(err <= 2 * np.spacing(np.abs(t[fin]).astype(np.float32)) + np.abs(x[fin]) * 2.0**-20)
    else:  # torch in float64
        t = TORCH_UNARY[kind](torch.from_numpy(x).double(), **attrs).numpy()
        np.testing.assert_allclose(got, t, rtol=2e-6, atol=1e-12, equal_nan=True)


def test_signum_of_nan_and_zeros_is_torch_sign():
    x = np.array([np.nan, -0.0, 0.0, -1e-45, 1e-45, -np.inf, np.inf], np.float32)
    got = _core.run_op("signum", {}, {}, [x])
    np.testing.assert_array_equal(_bits(got), _bits(torch.sign(torch.from_numpy(x)).numpy()))
    np.testing.assert_array_equal(_bits(got), _bits(np.array([0, 0, 0, -1, 1, -1, 1], np.float32)))


# --------------------------------------------------------------------------- refusals


def test_refusals():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"missing attribute 'op'"):
        _core.run_op("binary", {}, {}, [x, x])
    with pytest.raises(ValueError, match=r"op must be one of add, .*got 'mod'"):
        _core.run_op("binary", {"op": "mod"}, {}, [x, x])
    with pytest.raises(ValueError, match=r"do not broadcast"):
        _core.run_op("binary", {"op": "add"}, {}, [x, np.ones((2, 4), np.float32)])
    with pytest.raises(ValueError, match=r"do not broadcast"):
        _core.run_op("where", {}, {}, [x, x, np.ones((2,), np.float32)])
    with pytest.raises(ValueError, match=r"takes 3 input\(s\), got 2"):
        _core.run_op("where", {}, {}, [x, x])
    with pytest.raises(ValueError, match=r"missing parameter 'value'"):
        _core.run_op("constant", {}, {}, [])
    with pytest.raises(ValueError, match=r"takes 0 input\(s\), got 1"):
        _core.run_op("constant", {}, {"value": x}, [x])
    with pytest.raises(ValueError, match=r"approximate must be 'none' or 'tanh', got 'fast'"):
        _core.run_op("gelu", {"approximate": "fast"}, {}, [x])
    with pytest.raises(ValueError, match=r"negative_slope must be a finite float32 value"):
        _core.run_op("leaky_relu", {"negative_slope": 1e300}, {}, [x])
    with pytest.raises(ValueError, match=r"unknown attribute 'beta'"):
        _core.run_op("elu", {"beta": 1.0}, {}, [x])
    # Python's declarations refuse the same
    op = ir.Op("binary", "b", ["x", "x"], ["y"], {"op": "mod"})
    g = ir.Graph(["x"], ["y"], {"x": ir.Tensor("x", (1, 3), "f32"), "y": ir.Tensor("y", (1, 3), "f32")}, [op])
    with pytest.raises(ValueError, match=r"'op' must be one of"):
        g.validate()
    op.attrs["op"] = "add"
    g.validate()
    with pytest.raises(ValueError, match=r"do not broadcast"):
        op_def("binary").shape(op, [(1, 3), (1, 4)])


def test_loader_refuses_a_bad_op_string(tmp_path):
    g = ir.Graph(
        ["x"],
        ["y"],
        {"x": ir.Tensor("x", (1, 2, 2, 3), "f32"), "y": ir.Tensor("y", (1, 2, 2, 3), "f32")},
        [ir.Op("binary", "b", ["x", "x"], ["y"], {"op": "add"})],
        {"input_shape": [1, 3, 2, 2]},
    )
    path = tmp_path / "m.xbin"
    xbin.write(g, path)
    data = path.read_bytes().replace(b'"add"', b'"mod"')
    bad = tmp_path / "bad.xbin"
    bad.write_bytes(xbin.reseal(data))
    with pytest.raises(ValueError, match=r"op 'b' \(binary\).*op must be one of"):
        xnorinfer.load(bad)
    bad.write_bytes(xbin.reseal(path.read_bytes().replace(b'{"op":"add"}', b'{"qq":"add"}')))
    with pytest.raises(ValueError, match=r"op b \(binary\): missing \[.op.\]"):
        xnorinfer.load(bad)


# --------------------------------------------------------------------------- a converted model


class Activations(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.acts = nn.Sequential(
            nn.GELU(),
            nn.SiLU(),
            nn.Hardswish(),
            nn.LeakyReLU(0.2),
            nn.ELU(0.7),
            nn.GELU(approximate="tanh"),
            nn.Hardsigmoid(),
        )
        self.fc = nn.Linear(8 * 6 * 5, 5)

    def forward(self, x):
        y = self.acts(self.conv(x))
        y = torch.exp(y) + torch.sqrt(y) + torch.erf(y) + torch.rsqrt(torch.exp(y)) + torch.log(torch.exp(y))
        return self.fc(torch.reciprocal(torch.exp(y)).flatten(1))


def test_converted_activations_match_torch(tmp_path):
    torch.manual_seed(0)
    model = Activations().eval()
    x = torch.randn(3, 3, 6, 5)
    path = tmp_path / "acts.xbin"
    graph = convert(model, (x,), output=str(path))
    kinds = {op.kind for op in graph.ops}
    assert {"gelu", "silu", "hardswish", "leaky_relu", "elu", "hardsigmoid", "exp", "sqrt", "erf", "rsqrt"} <= kinds
    assert {"log", "reciprocal"} <= kinds
    gelus = [op.attrs for op in graph.ops if op.kind == "gelu"]
    assert {"approximate": "none"} in gelus and {"approximate": "tanh"} in gelus
    assert [op.attrs for op in graph.ops if op.kind == "leaky_relu"] == [{"negative_slope": 0.2}]
    with torch.no_grad():
        want = model(x).numpy()
    for batch in (x, x[:1]):
        got = xnorinfer.load(path).run(batch.numpy())
        np.testing.assert_allclose(got, want[: len(batch)], rtol=1e-5, atol=1e-6)


def test_gelu_underflow_is_torchs_negative_zero():
    """In float32, PyTorch's gelu is -0.0 below x ~ -5.5 (1 + erf rounds to 0): a sign that maps 0 to
    +1 then gives +1, so the engine must give -0.0 there too, not the true tiny negative value."""
    x = np.array([-5.0, -5.6, -6.0, -8.0, -30.0], np.float32)
    for approximate in ("none", "tanh"):
        got = _core.run_op("gelu", {"approximate": approximate}, {}, [x])
        want = nn.functional.gelu(torch.from_numpy(x), approximate=approximate).numpy()
        np.testing.assert_array_equal(got == 0, want == 0)
        assert (want[2:] == 0).all()


def test_binary_model_signing_a_gelu_verifies():
    """BatchNorm -> GELU -> binary linear: the signs of the GELU's underflowed outputs agree with torch."""
    from xnorinfer.convert.pipeline import convert
    from xnorinfer.nn import BinaryLinear

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), BinaryLinear(16, 32), nn.BatchNorm1d(32), nn.GELU(), BinaryLinear(32, 10))
    with torch.no_grad():
        bn = model[2]
        bn.running_mean.uniform_(-2, 2)
        bn.running_var.uniform_(0.5, 3)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-1, 1)
    graph = convert(model.eval(), (torch.randn(1, 1, 4, 4),), n_verify=256)  # raises if verification fails
    assert graph.metadata["verification"]["top1_agreement"] == 1.0
