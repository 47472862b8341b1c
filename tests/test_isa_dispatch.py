"""ISA dispatch: available_isas(), default_isa() and the XNORINFER_ISA override.

default_isa() reads the environment on each call, but the override is exercised in a
subprocess so that this process's environment is never touched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap

import engine_ops as E
import numpy as np
import pytest
import reference as R

from xnorinfer import _core

KNOWN = ["scalar", "avx2", "avx512"]

PROBE = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from xnorinfer import _core
    res = {}
    try:
        res["default"] = _core.default_isa()
    except Exception as e:
        res["default_error"] = [type(e).__name__, str(e)]
    x = np.array([[-1.0, 0.0, -0.0, 2.0, -3.0] * 20], dtype=np.float32)
    try:
        res["packed"] = [int(v) for v in _core.run_op("sign", {}, {}, [x]).ravel()]
    except Exception as e:
        res["kernel_error"] = [type(e).__name__, str(e)]
    w3 = np.tile(np.array([1.0, -1.0, 1.0], dtype=np.float32), (1, 3, 3, 1))
    w = _core.run_op("sign", {}, {}, [w3.reshape(9, 3)], isa="scalar").reshape(1, 3, 3, 1)
    try:
        # bconv2d's exact sums: the float output with multiplier 1 and bias 0
        attrs = {"stride": [1, 1], "padding": [1, 1], "pad_mode": "minus_one", "output": "float", "in_channels": 3}
        params = {"weight": w, "multiplier": np.ones(1, np.float32), "bias": np.zeros(1, np.float32)}
        xp = _core.run_op("sign", {}, {}, [np.array([[-1.0, -1.0, 1.0]], dtype=np.float32)], isa="scalar")
        y = _core.run_op("bconv2d", attrs, params, [xp.reshape(1, 1, 1, 1)], channels=[3])
        res["conv"] = [int(v) for v in y.ravel()]
    except Exception as e:
        res["conv_error"] = [type(e).__name__, str(e)]
    res["available"] = _core.available_isas()
    print(json.dumps(res))
    """
)


# Subprocesses start outside the repository so that `import xnorinfer` finds the installed
# package (with its compiled extension), not the source directory.
OUTSIDE_SOURCE_TREE = tempfile.gettempdir()


def probe(value: str | None) -> dict:
    env = dict(os.environ)
    env.pop("XNORINFER_ISA", None)
    if value is not None:
        env["XNORINFER_ISA"] = value
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60, cwd=OUTSIDE_SOURCE_TREE
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_available_isas_shape():
    isas = _core.available_isas()
    assert isas, "no ISA path at all"
    assert isas[0] == "scalar", "scalar must always be available and listed first"
    assert set(isas) <= set(KNOWN)
    assert len(set(isas)) == len(isas)
    assert isas == [i for i in KNOWN if i in isas], "not ordered most portable first"
    if "avx512" in isas:
        assert "avx2" in isas


def test_threadpool_threads():
    assert _core.ThreadPool(2).threads == 2
    assert _core.ThreadPool(1).threads == 1


@pytest.fixture(scope="module")
def unset_probe():
    return probe(None)


def test_default_without_env_is_best(unset_probe):
    assert unset_probe["default"] == unset_probe["available"][-1]
    assert probe("")["default"] == unset_probe["available"][-1], "empty XNORINFER_ISA must mean unset"


@pytest.mark.parametrize("forced", _core.available_isas())
def test_env_forces_path(forced, unset_probe):
    res = probe(forced)
    assert res["default"] == forced
    # Kernels called without isa= run (on the forced path) and agree with the reference.
    x = np.array([[-1.0, 0.0, -0.0, 2.0, -3.0] * 20], dtype=np.float32)
    assert res["packed"] == [int(v) for v in R.pack_nhwc(x).ravel()]
    assert res["conv"] == unset_probe["conv"]
    # 1x1 image, 3x3 kernel, minus_one padding: 8 padded taps of -1 and the centre tap.
    w = np.array([1.0, -1.0, 1.0])
    centre = int(np.dot(w, [-1.0, -1.0, 1.0]))
    assert res["conv"] == [8 * int(-w.sum()) + centre]


@pytest.mark.parametrize("bad", ["bogus", "AVX2", "neon", "avx512 "])
def test_env_invalid_value_raises(bad):
    res = probe(bad)
    assert res["default_error"][0] == "ValueError"
    assert f"environment variable XNORINFER_ISA={bad} is not an ISA path" in res["default_error"][1]
    assert "expected scalar, avx2 or avx512" in res["default_error"][1]
    # A kernel call that relies on the default path fails with the same message ...
    assert res["kernel_error"][0] == "ValueError" and "XNORINFER_ISA" in res["kernel_error"][1]
    assert res["conv_error"][0] == "ValueError"
    # ... but listing the paths still works.
    assert res["available"] == _core.available_isas()


def test_explicit_isa_argument_is_validated():
    x = np.zeros((1, 4), np.float32)
    for bad in ["", "Scalar", "x86"]:
        with pytest.raises(ValueError, match="unknown ISA path"):
            E.sign_pack(x, isa=bad)
    for good in _core.available_isas():
        assert E.sign_pack(x, isa=good).shape == (1, 1)
