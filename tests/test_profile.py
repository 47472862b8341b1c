"""Per-op profiling: Session.profile and `xnorinfer bench --profile`."""

from __future__ import annotations

import numpy as np
import pytest
from test_runtime import Builder

import xnorinfer
import xnorinfer.cli
from xnorinfer import xbin


@pytest.fixture
def model(tmp_path, rng):
    b = Builder(rng, (1, 3, 8, 8))
    t = b.int_conv("x", 8)
    t = b.sign(t)
    t = b.bconv(t, 16, output="bits")
    t = b.add("bmaxpool2d", [t], bits=True, kernel=[2, 2], stride=[2, 2], padding=[0, 0])
    t = b.bconv(t, 8, output="float")
    t = b.add("global_avgpool", [t])
    t = b.linear(t, 2)
    b.g.outputs = [b.add("softmax", [t])]
    path = tmp_path / "m.xbin"
    xbin.write(b.g, path)
    return path, b.g


@pytest.mark.parametrize("threads", [1, 2])
def test_profile_rows(model, rng, threads):
    path, g = model
    s = xnorinfer.load(path, threads=threads)
    x = rng.integers(-3, 4, size=(2, 3, 8, 8)).astype(np.float32)
    before = s.run(x)
    rows = s.profile(x, runs=3)
    after = s.run(x)
    assert before.tobytes() == after.tobytes()
    assert [r["name"] for r in rows] == [op.name for op in g.ops]
    assert [r["kind"] for r in rows] == [op.kind for op in g.ops]
    for r in rows:
        binary_gemm = r["kind"] in ("bconv2d", "blinear")  # these also say which engine ran
        assert set(r) == {"name", "kind", "total_ms", "ms_per_run", "share"} | ({"engine"} if binary_gemm else set())
        assert r.get("engine", "popcount") == "popcount"  # the default engine
        assert r["total_ms"] >= 0 and r["ms_per_run"] >= 0 and 0 <= r["share"] <= 1
        assert r["ms_per_run"] == pytest.approx(r["total_ms"] / 3)
    assert sum(r["share"] for r in rows) == pytest.approx(1.0, abs=1e-9)
    # another shape replans and still profiles, and run() agrees with a fresh session afterwards
    xb = rng.integers(-3, 4, size=(1, 3, 10, 6)).astype(np.float32)
    assert len(s.profile(xb, runs=1)) == len(g.ops)
    assert s.run(xb).tobytes() == xnorinfer.load(path, threads=threads).run(xb).tobytes()
    assert s.run(x).tobytes() == before.tobytes()


def test_profile_rejects_bad_arguments(model):
    path, _ = model
    s = xnorinfer.load(path, threads=1)
    with pytest.raises(ValueError, match="runs"):
        s.profile(np.zeros((1, 3, 8, 8), np.float32), runs=0)
    with pytest.raises(ValueError, match="NCHW"):
        s.profile(np.zeros((3, 8, 8), np.float32))


def test_bench_profile_cli(model, capsys):
    path, g = model
    assert xnorinfer.cli.main(["bench", str(path), "--runs", "5", "--profile"]) == 0
    out = capsys.readouterr().out
    assert "latency ms: median" in out
    table = out[out.index("per-op profile") :]
    for op in g.ops:
        assert op.name in table and op.kind in table
    # execution order
    positions = [table.index(op.name) for op in g.ops]
    assert positions == sorted(positions)
    assert "sum of ops:" in out and "end-to-end median" in out


def test_bench_without_profile_prints_no_table(model, capsys):
    path, _ = model
    assert xnorinfer.cli.main(["bench", str(path), "--runs", "3"]) == 0
    assert "per-op profile" not in capsys.readouterr().out
