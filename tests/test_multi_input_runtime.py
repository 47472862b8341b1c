"""The runtime on hand-made graphs with several inputs of every rank 1..6 (no converter, fast: in the
sanitizer subset): each input lands where the graph reads it (a 4-D one permuted from NCHW), batched
and per-image graphs, every ISA path and 1/2 threads, and clear errors for inputs that do not fit."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ISAS

import xnorinfer
from xnorinfer import ir, xbin

# graph input name -> recorded shape (batch 1) in the graph's layout; "x4" is NHWC (the caller passes NCHW)
SHAPES = {
    "x1": (1,),
    "x2": (1, 3),
    "x3": (1, 2, 3),
    "x4": (1, 2, 3, 4),
    "x5": (1, 2, 1, 2, 3),
    "x6": (1, 1, 2, 1, 2, 2),
}


def _graph(per_image: bool) -> ir.Graph:
    tensors = {n: ir.Tensor(n, s, "f32") for n, s in SHAPES.items()}
    ops = []
    for n, s in SHAPES.items():
        tensors[f"r{n}"] = ir.Tensor(f"r{n}", s, "f32")
        ops.append(ir.Op("relu", f"relu_{n}", [n], [f"r{n}"]))
    tensors["sum"] = ir.Tensor("sum", SHAPES["x3"], "f32")  # two reads of one input
    ops.append(ir.Op("binary", "twice", ["x3", "x3"], ["sum"], {"op": "add"}))
    metadata = {"per_image": True} if per_image else {}
    g = ir.Graph(list(SHAPES), [f"r{n}" for n in SHAPES] + ["sum"], tensors, ops, metadata)
    g.validate()
    return g


def _user_inputs(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for name, s in SHAPES.items():
        shape = (n, s[3], s[1], s[2]) if name == "x4" else (n, *s[1:])
        out.append(rng.standard_normal(shape).astype(np.float32))
    return out


@pytest.mark.parametrize("per_image", [False, True])
def test_every_rank_lands_where_the_graph_reads_it(per_image):
    data = xbin.to_bytes(_graph(per_image))
    xs = _user_inputs(3, 0)
    want = [np.maximum(x, 0) for x in xs]
    want[3] = np.transpose(want[3], (0, 2, 3, 1))  # the engine's output layout for 4-D: NHWC
    want.append(xs[2] + xs[2])
    for threads in (1, 2):
        s = xnorinfer.load(data, threads=threads)
        assert s.input_names == list(SHAPES)
        assert s.input_shapes[3] == (1, 4, 2, 3) and s.input_shapes[5] == (1, 1, 2, 1, 2, 2)
        for isa in ISAS:
            got = s.run(xs, isa=isa)
            assert len(got) == len(want)
            for g, w in zip(got, want, strict=True):
                np.testing.assert_array_equal(g, w)
        # one row alone equals its row of the batch, and a dict gives the same as the list
        row = s.run([x[1:2] for x in xs])
        for g, w in zip(row, want, strict=True):
            np.testing.assert_array_equal(g[0], w[1])
        by_name = s.run(dict(zip(SHAPES, xs, strict=True)))
        for g, w in zip(by_name, want, strict=True):
            np.testing.assert_array_equal(g, w)


def test_inputs_that_do_not_fit_are_named():
    s = xnorinfer.load(xbin.to_bytes(_graph(False)), threads=1)
    xs = _user_inputs(2, 1)
    with pytest.raises(ValueError, match="takes 6 inputs"):
        s.run(xs[:5])
    bad = list(xs)
    bad[4] = xs[4][:1]
    with pytest.raises(ValueError, match=r"input 4 \('x5'\) must be float32 \(N, 2, 1, 2, 3\) with the batch N"):
        s.run(bad)
    bad = list(xs)
    bad[0] = xs[0].reshape(2, 1)
    with pytest.raises(ValueError, match=r"input 0 \('x1'\) must be float32 \(N\) with N >= 1, got \(2, 1\)"):
        s.run(bad)
    # a batched graph's 4-D input may change H and W (its ops allow it); memory is planned for it
    bad = list(xs)
    bad[3] = np.zeros((2, 4, 5, 6), np.float32)
    assert s.run(bad)[3].shape == (2, 5, 6, 4)
    shapes = [x.shape for x in xs]
    assert s.planned_bytes(shapes) > 0
    with pytest.raises(ValueError, match="rank"):
        s.planned_bytes([(2,)] * 5 + [()])


def test_an_input_listed_twice_or_missing_is_refused():
    g = _graph(False)
    g.inputs = ["x1", "x1"] + g.inputs[1:]
    with pytest.raises(xbin.XbinError, match="x1"):
        xnorinfer.load(xbin.to_bytes(g), threads=1)
