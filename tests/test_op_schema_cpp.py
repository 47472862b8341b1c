"""The C++ op registry's schemas (`_core.op_schemas()`): well formed, and checked by the loader
before a node's factory runs. tests/test_op_schema.py compares them with the Python declarations."""

from __future__ import annotations

import pytest

from xnorinfer import _core

SCHEMAS = {s["name"]: s for s in _core.op_schemas()}


def test_schemas_are_sorted_and_well_formed():
    names = [s["name"] for s in _core.op_schemas()]
    assert names == sorted(names) and len(set(names)) == len(names)
    for s in SCHEMAS.values():
        assert 0 <= s["min_inputs"] <= s["max_inputs"]
        assert s["max_inputs"] >= 1 or s["name"] == "constant"  # the one op without inputs
        assert all(a["type"] in {"int", "float", "bool", "string", "ints"} for a in s["attrs"].values())
        assert all(p["dtype"] in {"float32", "uint64", "int32", "uint8"} for p in s["params"].values())


def test_schema_checks_run_before_the_factory():
    import numpy as np

    x = np.zeros((1, 4), np.float32)
    with pytest.raises(ValueError, match=r"^op 'relu' \(relu\): unknown attribute 'alpha'"):
        _core.run_op("relu", {"alpha": 1.0}, {}, [x])
    with pytest.raises(ValueError, match=r"^op 'hardtanh' \(hardtanh\): missing attribute 'max_val'"):
        _core.run_op("hardtanh", {"min_val": -1}, {}, [x])
    with pytest.raises(ValueError, match=r"'min_val' must be a number"):
        _core.run_op("hardtanh", {"min_val": "low", "max_val": 1.0}, {}, [x])
    with pytest.raises(ValueError, match=r"parameter 'scale' must be float32, got int32"):
        _core.run_op("affine", {}, {"scale": np.ones(4, np.int32), "shift": np.ones(4, np.float32)}, [x])
    with pytest.raises(ValueError, match=r"unknown parameter 'gamma'"):
        _core.run_op("relu", {}, {"gamma": np.ones(4, np.float32)}, [x])
    with pytest.raises(ValueError, match=r"takes 2 input\(s\), got 1"):
        _core.run_op("add", {}, {}, [x])
    with pytest.raises(ValueError, match=r"^op 'warp' \(warp\): unknown op kind"):
        _core.run_op("warp", {}, {}, [x])
    # A JSON integer is a valid float attribute.
    y = _core.run_op("hardtanh", {"min_val": -1, "max_val": 1}, {}, [np.array([[-3.0, 0.5, 2.0]], np.float32)])
    assert y.tolist() == [[-1.0, 0.5, 1.0]]
