"""The element-wise float ops of the general graph (compare, round, floor, abs, neg) through
`_core.run_op`, on every ISA path and thread count, against torch float32 (bit for bit: every one
of them is exact in IEEE arithmetic) and the OpDef's numpy reference."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ISAS, POOLS

from xnorinfer import _core, ir
from xnorinfer.ops import op_def
from xnorinfer.ops.elementwise_ops import COMPARISONS

torch = pytest.importorskip("torch")

UNARY = {"round": torch.round, "floor": torch.floor, "abs": torch.abs, "neg": torch.neg}


def special_values(rng: np.random.Generator, rows: int, channels: int) -> np.ndarray:
    """Random values plus the cases that decide rounding and comparisons: halves, integers, ±0, ±inf, NaN."""
    x = (rng.standard_normal((rows, channels)) * 4).astype(np.float32)
    specials = np.array(
        [
            0.5,
            1.5,
            2.5,
            -0.5,
            -1.5,
            -2.5,
            0.0,
            -0.0,
            1.0,
            -1.0,
            3.0,
            0.49999997,
            8388607.5,
            8388609.0,
            np.inf,
            -np.inf,
            np.nan,
            1e-45,
            -1e-45,
            0.1,
            0.25,
        ],
        np.float32,
    )
    flat = x.reshape(-1)
    flat[: specials.size] = specials
    flat[specials.size : 2 * specials.size] = np.round(x.reshape(-1)[specials.size : 2 * specials.size])
    return x


def _same_bits(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_array_equal(np.asarray(a, np.float32).view(np.uint32), np.asarray(b, np.float32).view(np.uint32))


@pytest.mark.parametrize("kind", sorted(UNARY))
@pytest.mark.parametrize("isa", ISAS)
def test_unary_matches_torch_bit_for_bit(kind: str, isa: str, rng: np.random.Generator) -> None:
    x = special_values(rng, 37, 19)  # an odd size: vector bodies and scalar tails
    want = UNARY[kind](torch.from_numpy(x)).numpy()
    for pool in POOLS:
        got = _core.run_op(kind, {}, {}, [x], isa=isa, pool=pool)
        assert got.shape == x.shape
        _same_bits(got, want)


def test_round_is_half_to_even() -> None:
    x = np.array([[0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5, 4.5]], np.float32)
    got = _core.run_op("round", {}, {}, [x])
    np.testing.assert_array_equal(got, [[0.0, 2.0, 2.0, -0.0, -2.0, -2.0, 4.0, 4.0]])
    assert np.signbit(got[0, 3]) and np.signbit(got[0, 0]) is np.False_  # -0.5 -> -0.0, 0.5 -> +0.0


@pytest.mark.parametrize("cmp", COMPARISONS)
@pytest.mark.parametrize("isa", ISAS)
def test_compare_per_channel_and_scalar(cmp: str, isa: str, rng: np.random.Generator) -> None:
    rows, channels = 29, 11
    x = special_values(rng, rows, channels)
    thr = (rng.standard_normal(channels) * 2).astype(np.float32)
    x[:5] = thr  # values exactly at the threshold
    want = getattr(torch, cmp)(torch.from_numpy(x), torch.from_numpy(thr)).float().numpy()
    scalar = np.array([0.5], np.float32)
    want_scalar = getattr(torch, cmp)(torch.from_numpy(x), 0.5).float().numpy()
    for pool in POOLS:
        _same_bits(_core.run_op("compare", {"cmp": cmp}, {"threshold": thr}, [x], isa=isa, pool=pool), want)
        _same_bits(_core.run_op("compare", {"cmp": cmp}, {"threshold": scalar}, [x], isa=isa, pool=pool), want_scalar)


def test_compare_on_nhwc_uses_the_last_axis() -> None:
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5) / 7
    thr = np.linspace(0, 10, 5, dtype=np.float32)
    got = _core.run_op("compare", {"cmp": "ge"}, {"threshold": thr}, [x])
    np.testing.assert_array_equal(got, (x >= thr).astype(np.float32))


def test_compare_refuses_bad_attributes() -> None:
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(Exception, match="cmp"):
        _core.run_op("compare", {"cmp": "gte"}, {"threshold": np.zeros(3, np.float32)}, [x])
    with pytest.raises(Exception, match="channels"):
        _core.run_op("compare", {"cmp": "gt"}, {"threshold": np.zeros(4, np.float32)}, [x])
    with pytest.raises(Exception, match="threshold"):
        _core.run_op("compare", {"cmp": "gt"}, {}, [x])


@pytest.mark.parametrize("kind", ["compare", "round", "floor", "abs", "neg"])
def test_reference_and_torch_equivalent_agree_with_the_engine(kind: str, rng: np.random.Generator) -> None:
    """The OpDef's float64 reference and float torch form give the engine's values (finite inputs)."""
    x = np.round(rng.standard_normal((1, 3, 4, 6)).astype(np.float32) * 8) / 4  # many halves and ties
    attrs = {"cmp": "le"} if kind == "compare" else {}
    params = {"threshold": np.array([0.5, -0.25, 0.0, 1.0, 2.0, -1.0], np.float32)} if kind == "compare" else {}
    t = ir.Tensor("x", x.shape, "f32")
    op = ir.Op(kind, "op", ["x"], ["y"], attrs, params)
    d = op_def(kind)
    d.check(op)
    engine = _core.run_op(kind, attrs, params, [x])
    np.testing.assert_array_equal(d.reference(op, [x.astype(np.float64)], [t]), engine)
    tp = {k: torch.from_numpy(v) for k, v in params.items()}
    got = d.torch(op, [torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))], tp).numpy()
    np.testing.assert_array_equal(got.transpose(0, 2, 3, 1), engine)
