"""ONNX counterparts of the ops that emptied the refusal list (issue 12): ReduceProd, Cast to FLOAT16 /
BFLOAT16 (and back), ScatterElements with reduction none / add / mul / max / min, ScatterND with a
constant index. Each graph converts (verified against onnxruntime inside convert) and the engine's
output matches onnxruntime run here, on every ISA path and 1 / 2 threads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import ISAS
from onnx import TensorProto
from test_onnx_ops import N, build, reference

import xnorinfer
from xnorinfer.convert import convert

IDX = np.array([[[0, 2, 2, 5], [1, 1, 0, 7], [3, 3, 3, 3]]], np.int64)  # (1, 3, 4) into axis 2 of (1, 3, 8)

CASES = {
    "reduce_prod": (
        [
            N("Mul", ["x", "tenth"], ["s"]),
            N("Add", ["s", "one"], ["n"]),
            N("ReduceProd", ["n", "axes"], ["p"], keepdims=1),
            N("ReduceProd", ["n", "axes2"], ["q"], keepdims=1),
            N("Add", ["p", "q"], ["pq"]),
            N("Concat", ["p", "pq"], ["y"], axis=2),
        ],
        {
            "tenth": np.array(0.1, np.float32),
            "one": np.array(1.0, np.float32),
            "axes": np.array([2], np.int64),
            "axes2": np.array([1, 2], np.int64),
        },
        [1, 3, 8],
        18,
    ),
    "cast_float16_bfloat16": (
        [
            N("Mul", ["x", "big"], ["m"]),
            N("Cast", ["m"], ["h"], to=TensorProto.FLOAT16),
            N("Cast", ["h"], ["hf"], to=TensorProto.FLOAT),
            N("Cast", ["m"], ["b"], to=TensorProto.BFLOAT16),
            N("Cast", ["b"], ["bf"], to=TensorProto.FLOAT),
            N("Concat", ["hf", "bf"], ["y"], axis=2),
        ],
        {"big": np.array([[[1e-6, 1e-3, 1.0, 3.0, 1e2, 1e3, 5e3, 1e4]]], np.float32)},
        [1, 3, 8],
    ),
    "scatter_elements_reductions": (
        [
            N("ScatterElements", ["x", "idx", "upd"], ["a"], axis=2),
            N("ScatterElements", ["x", "idx", "upd"], ["b"], axis=2, reduction="add"),
            N("ScatterElements", ["x", "idx", "upd"], ["c"], axis=2, reduction="mul"),
            N("ScatterElements", ["x", "idx", "upd"], ["d"], axis=2, reduction="max"),
            N("ScatterElements", ["x", "idx", "upd"], ["e"], axis=2, reduction="min"),
            N("Concat", ["a", "b", "c", "d", "e"], ["y"], axis=2),
        ],
        {
            "idx": np.array([[[0, 2, 5, 6], [1, 4, 0, 7], [3, 2, 6, 5]]], np.int64),
            "upd": np.full((1, 3, 4), 1.5, np.float32),
        },
        [1, 3, 8],
        18,
    ),
    "scatter_elements_repeated_add_mul": (
        [
            N("ScatterElements", ["x", "idx", "upd"], ["b"], axis=2, reduction="add"),
            N("ScatterElements", ["x", "idx", "upd"], ["c"], axis=2, reduction="mul"),
            N("Concat", ["b", "c"], ["y"], axis=2),
        ],
        {"idx": IDX, "upd": np.linspace(-1, 1, 12, dtype=np.float32).reshape(1, 3, 4)},
        [1, 3, 8],
        18,
    ),
    "scatter_nd": (
        [
            N("ScatterND", ["x", "ind", "upd"], ["a"]),
            N("ScatterND", ["x", "ind2", "upd2"], ["b"], reduction="add"),
            N("Concat", ["a", "b"], ["y"], axis=2),
        ],
        {
            "ind": np.array([[[0, 1], [0, 2]]], np.int64),  # rows (0, 1) and (0, 2) of (1, 3, 8)
            "upd": np.full((1, 2, 8), -3.0, np.float32),
            "ind2": np.array([[0, 2, 1], [0, 2, 1], [0, 0, 7]], np.int64),  # single elements, one repeated
            "upd2": np.array([0.5, 0.25, -1.0], np.float32),
        },
        [1, 3, 8],
        18,
    ),
    "scatter_nd_computed_updates": (
        [
            N("Slice", ["x", "starts", "ends", "axes"], ["sl"]),
            N("Mul", ["sl", "two"], ["upd"]),
            N("ScatterND", ["x", "ind", "upd"], ["y"], reduction="mul"),
        ],
        {
            "starts": np.array([1], np.int64),
            "ends": np.array([3], np.int64),
            "axes": np.array([1], np.int64),
            "two": np.array(2.0, np.float32),
            "ind": np.array([[[0, 2], [0, 0]]], np.int64),
        },
        [1, 3, 8],
        18,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_onnx_op(case: str, tmp_path: Path) -> None:
    nodes, inits, shape, *opset = CASES[case]
    model = build(nodes, inits, shape, *opset)
    path = tmp_path / f"{case}.onnx"
    onnx.save(model, path)
    x = np.random.default_rng(1).standard_normal([1] + shape[1:]).astype(np.float32)
    # one image: a constant scatter index has batch 1, so (as in onnxruntime) only image 0 is scattered
    graph = convert(path, calib=x, output=tmp_path / "m.xbin")
    assert graph.metadata["verification"]["problems"] == []
    ref = reference(model, x)
    for threads in (1, 2):
        for isa in ISAS:
            ours = np.asarray(xnorinfer.load(tmp_path / "m.xbin", threads=threads).run(x, isa=isa))
            np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)


def test_onnx_cast_float16_is_bit_exact(tmp_path: Path) -> None:
    model = build(
        [N("Cast", ["x"], ["h"], to=TensorProto.FLOAT16), N("Cast", ["h"], ["y"], to=TensorProto.FLOAT)], {}, [1, 4096]
    )
    path = tmp_path / "cast.onnx"
    onnx.save(model, path)
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((1, 4096)) * rng.choice([1e-7, 1e-5, 1.0, 1e4, 7e4], size=(1, 4096))).astype(np.float32)
    convert(path, calib=x, output=tmp_path / "m.xbin", verify=False)  # inf (overflow) is compared here
    ours = np.asarray(xnorinfer.load(tmp_path / "m.xbin").run(x))
    assert ours.tobytes() == reference(model, x).tobytes()
