"""The op declarations of both languages agree: xnorinfer.ops (Python) and the C++ node registry.

Every op kind is declared once per language (xnorinfer/ops/*.py, csrc/runtime/nodes/*.cc); the C++
loader checks a file against its schema before a node is built, the Python writer against its
declaration before a file is written. This test fails when the two differ in any op, attribute,
parameter, type, dtype, requiredness or input count, and when docs/ir.md's op table drifts.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from xnorinfer import _core, ir
from xnorinfer.ops import OPS

ROOT = Path(__file__).resolve().parents[1]


def _cpp_schemas() -> dict[str, dict]:
    return {s["name"]: s for s in _core.op_schemas()}


def test_both_languages_declare_the_same_op_kinds():
    assert sorted(_cpp_schemas()) == sorted(OPS)


@pytest.mark.parametrize("kind", sorted(OPS))
def test_op_declarations_agree(kind):
    cpp, py = _cpp_schemas()[kind], OPS[kind]
    assert (cpp["min_inputs"], cpp["max_inputs"]) == py.inputs
    assert {k: (v["type"], v["required"]) for k, v in cpp["attrs"].items()} == {
        k: (a.type, a.required) for k, a in py.attrs.items()
    }
    assert {k: (v["dtype"], v["required"]) for k, v in cpp["params"].items()} == {
        k: (p.dtype, p.required) for k, p in py.params.items()
    }


def test_docs_ir_table_lists_every_op():
    text = (ROOT / "docs" / "ir.md").read_text()
    documented = re.findall(r"^\| `([a-z_0-9]+)` \|", text, flags=re.MULTILINE)
    assert sorted(documented) == sorted(OPS)


def _graph(op: ir.Op, in_shape, in_dtype, out_shape, out_dtype) -> ir.Graph:
    return ir.Graph(
        ["x"], ["y"], {"x": ir.Tensor("x", in_shape, in_dtype), "y": ir.Tensor("y", out_shape, out_dtype)}, [op]
    )


def _pool(attrs):
    return ir.Op("maxpool2d", "pool", ["x"], ["y"], attrs)


@pytest.mark.parametrize(
    "attrs, match",
    [
        ({"kernel": [2, 2], "stride": [2, 2]}, r"missing \['padding'\]"),
        ({"kernel": [2, 2], "stride": [2, 2], "padding": [0, 0], "dilation": [1, 1]}, r"unexpected \['dilation'\]"),
        ({"kernel": 2, "stride": [2, 2], "padding": [0, 0]}, "'kernel' must be a list of two integers"),
        ({"kernel": [2, 2, 2], "stride": [2, 2], "padding": [0, 0]}, "'kernel' must be a list of two integers"),
        ({"kernel": [True, 2], "stride": [2, 2], "padding": [0, 0]}, "'kernel' must be a list of two integers"),
    ],
)
def test_python_checks_attributes_by_declaration(attrs, match):
    with pytest.raises(ValueError, match=match):
        _graph(_pool(attrs), (1, 4, 4, 3), "f32", (1, 2, 2, 3), "f32").validate()


def test_python_checks_choices_dtypes_and_shapes():
    w = np.zeros((2, 1), np.uint64)
    ok = {"output": "float", "in_features": 5}
    params = {"weight": w, "multiplier": np.ones(2, np.float32), "bias": np.zeros(2, np.float32)}
    _graph(ir.Op("blinear", "fc", ["x"], ["y"], ok, params), (1, 5), "bits", (1, 2), "f32").validate()
    with pytest.raises(ValueError, match=r"'output' must be one of \['bits', 'float'\]"):
        bad = ir.Op("blinear", "fc", ["x"], ["y"], {**ok, "output": "int8"}, params)
        _graph(bad, (1, 5), "bits", (1, 2), "f32").validate()
    with pytest.raises(ValueError, match="'weight' must be a uint64 array, got float32"):
        bad = ir.Op("blinear", "fc", ["x"], ["y"], ok, {**params, "weight": w.astype(np.float32)})
        _graph(bad, (1, 5), "bits", (1, 2), "f32").validate()
    with pytest.raises(ValueError, match=r"writes y as \(1, 3\), produces \(1, 2\)"):
        _graph(ir.Op("blinear", "fc", ["x"], ["y"], ok, params), (1, 5), "bits", (1, 3), "f32").validate()
    with pytest.raises(ValueError, match="writes y as bits, produces f32"):
        _graph(ir.Op("blinear", "fc", ["x"], ["y"], ok, params), (1, 5), "bits", (1, 2), "bits").validate()
    with pytest.raises(ValueError, match="reads x of dtype f32, needs bits"):
        _graph(ir.Op("blinear", "fc", ["x"], ["y"], ok, params), (1, 5), "f32", (1, 2), "f32").validate()


@pytest.mark.parametrize(
    "in_shape, attrs, out_shape",
    [
        ((1, 7, 7, 3), {"kernel": [3, 3], "stride": [2, 2], "padding": [1, 1]}, (1, 4, 4, 3)),
        ((1, 7, 5, 3), {"kernel": [2, 2], "stride": [2, 2], "padding": [0, 0]}, (1, 3, 2, 3)),
        ((1, 1, 1, 8), {"kernel": [1, 1], "stride": [1, 1], "padding": [0, 0]}, (1, 1, 1, 8)),
    ],
)
def test_pool_shape_rule_matches_torch(in_shape, attrs, out_shape):
    x = torch.zeros(in_shape[0], in_shape[3], in_shape[1], in_shape[2])
    y = torch.nn.functional.max_pool2d(x, attrs["kernel"], attrs["stride"], attrs["padding"])
    assert OPS["maxpool2d"].shape(_pool(attrs), [in_shape]) == (y.shape[0], y.shape[2], y.shape[3], y.shape[1])
    assert OPS["maxpool2d"].shape(_pool(attrs), [in_shape]) == out_shape
