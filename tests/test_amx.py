"""The AMX binary GEMM engine (XNORINFER_BGEMM=amx | amx-emulated | auto | auto-emulated) against
the popcount kernels.

The tile kernel (csrc/microkernels/amx_bgemm.h) runs here on the emulated tile unit on every
machine: its outputs must be the popcount kernels' bytes, and an independent float64 reference's
values, on every shape class (kernel 1x1 / 3x3 / 5x5, stride 1 / 2, zero / +1 / -1 padding, input
channels 1..300 across word boundaries, output channels 1..100 across 16- and 32-lane tiles,
batch 1..3, int32 / float / bit output, 1 and 2 threads), and on a whole shipped model. On a CPU
with AMX the same checks also run the hardware engine, in a subprocess so that a fault fails a
test instead of killing pytest; elsewhere that engine must refuse with a clear reason. The
per-layer measured choice (auto) must give the same bytes, measure each layer once per input
shape, keep the faster engine by its own measurements, and say why it did not measure.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import engine_ops as E
import numpy as np
import pytest
import reference as R
from conftest import ISAS, POOLS
from test_binary_conv import Case, _bits_params, make_data

import xnorinfer
from xnorinfer import _core, cli

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
PAD_MODES = ["zero", "plus_one", "minus_one"]
OUTPUTS = ["int32", "float", "bits"]

CASES = [
    Case(1, 1, 5, 4, 1, 1, 1, 1, 1),  # one channel in and out; 1x1 kernel with padding
    Case(3, 63, 6, 5, 7, 3, 3, 1, 1),  # under a word; a block under 8 lanes
    Case(2, 64, 7, 7, 16, 3, 3, 2, 1),  # one whole word; exactly one 16-lane tile
    Case(1, 65, 9, 8, 33, 5, 5, 1, 2),  # word + 1 bit; 5x5; a 33rd channel in a second block
    Case(2, 130, 6, 6, 48, 3, 3, 1, 1),  # 3 words; a 16-lane tail after a full block
    Case(1, 300, 5, 6, 100, 3, 3, 2, 1),  # 5 words; 100 = 3 blocks + 4
    Case(1, 200, 9, 9, 64, 1, 1, 2, 0),  # 1x1 stride 2, no padding
    Case(3, 64, 20, 11, 40, 3, 3, 1, 1),  # 220 pixels: several 32-pixel blocks, a partial last one
    Case(1, 5, 3, 3, 1, 5, 5, 1, 2),  # input smaller than the kernel
    Case(2, 70, 1, 1, 70, 3, 3, 1, 1),  # 1x1 image: every tap but one is padding
    Case(1, 33, 13, 17, 129, 2, 2, 2, 0),  # even kernel, 3 output words (odd block count)
]


def _op(case: Case, pad_mode: str, output: str, rng: np.random.Generator):
    """The bconv2d op, its packed input and the float64-reference output."""
    x, w, xp, wp = make_data(case, rng)
    s = R.conv_sums(x, w, case.stride, case.padding, pad_mode)
    kw: dict = {}
    if output == "float":
        kw["multiplier"] = (rng.standard_normal(case.cout) * 3).astype(np.float32)
        kw["bias"] = (rng.standard_normal(case.cout) * 100).astype(np.float32)
        expected = R.fma_f32(kw["multiplier"], s, kw["bias"])
    elif output == "bits":
        kw["threshold"], kw["flip"] = _bits_params(rng, s, case.cout)
        expected = R.threshold_bits(s, kw["threshold"], kw["flip"])
    else:
        expected = s.astype(np.int32)
    op = E.BinaryConv2d(wp, case.cin, stride=case.stride, padding=case.padding, pad_mode=pad_mode, output=output, **kw)
    return op, xp, expected


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("pad_mode", PAD_MODES)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_emulated_amx_gives_the_popcount_bytes(case, pad_mode, output, rng, monkeypatch):
    op, xp, expected = _op(case, pad_mode, output, rng)
    monkeypatch.delenv("XNORINFER_BGEMM", raising=False)
    popcount = op.run(xp, pool=POOLS[1])
    assert popcount.tobytes() == expected.tobytes()  # the baseline itself is right
    monkeypatch.setenv("XNORINFER_BGEMM", "amx-emulated")
    for pool in POOLS:  # 1 and 2 threads
        got = op.run(xp, pool=pool)
        assert got.dtype == popcount.dtype and got.shape == popcount.shape
        threads = 1 if pool is None else pool.threads
        assert got.tobytes() == popcount.tobytes(), f"{case} {pad_mode} {output}, {threads} thread(s)"
    if output == "bits":  # pad bits of the last word come back zero even in a garbage-filled out=
        out = np.full(expected.shape, np.uint64(0xFFFF_FFFF_FFFF_FFFF))
        op.run(xp, out=out)
        assert out.tobytes() == expected.tobytes()


def test_emulated_amx_binary_linear(rng, monkeypatch):
    """blinear runs as a 1x1 conv over rows: the engine switch reaches it too."""
    rows, fin, fout = 37, 150, 45
    x = R.random_pm1(rng, (rows, fin))
    w = R.random_pm1(rng, (fout, fin))
    from xnorinfer.bits import pack_last

    op = E.BinaryLinear(pack_last(w < 0), fin)
    xp = pack_last(x < 0)
    expected = (x.astype(np.int64) @ w.astype(np.int64).T).astype(np.int32)
    monkeypatch.setenv("XNORINFER_BGEMM", "amx-emulated")
    for pool in POOLS:
        assert op.run(xp, pool=pool).tobytes() == expected.tobytes()


def test_emulated_amx_with_pixel_scale(rng, monkeypatch):
    """XNOR-Net's per-pixel scale K (bconv2d's second input) goes through the same epilogue."""
    n, h, w_, i, o = 2, 6, 7, 70, 40
    x = np.where(rng.random((n, h, w_, i)) < 0.5, -1, 1)
    w = np.where(rng.random((o, 3, 3, i)) < 0.5, -1, 1)
    from xnorinfer.bits import pack_last

    attrs = {"stride": [1, 1], "padding": [1, 1], "pad_mode": "zero", "in_channels": i, "output": "float"}
    params = {
        "weight": pack_last(w < 0),
        "multiplier": rng.standard_normal(o).astype(np.float32),
        "bias": rng.standard_normal(o).astype(np.float32),
    }
    kmap = (rng.random((n, h, w_, 1)) * 2).astype(np.float32)
    inputs = [pack_last(x < 0), kmap]
    monkeypatch.delenv("XNORINFER_BGEMM", raising=False)
    popcount = _core.run_op("bconv2d", attrs, params, inputs, channels=[i, 1])
    monkeypatch.setenv("XNORINFER_BGEMM", "amx-emulated")
    for pool in POOLS:
        got = _core.run_op("bconv2d", attrs, params, inputs, pool=pool, channels=[i, 1])
        assert got.tobytes() == popcount.tobytes()


def test_concurrent_first_runs_share_the_tile_weights(rng, monkeypatch):
    """The B tiles are built by a layer's first AMX run and cached in the layer: first runs racing
    from several threads (the GIL is released while an op runs) all give the popcount bytes."""
    from xnorinfer.bits import pack_last

    i, o = 200, 70
    x = np.where(rng.random((2, 9, 8, i)) < 0.5, -1, 1)
    w = np.where(rng.random((o, 3, 3, i)) < 0.5, -1, 1)
    attrs = {"stride": [1, 1], "padding": [1, 1], "pad_mode": "zero", "in_channels": i, "output": "float"}
    params = {"weight": pack_last(w < 0), "multiplier": np.ones(o, np.float32), "bias": np.zeros(o, np.float32)}
    xp = pack_last(x < 0)
    monkeypatch.delenv("XNORINFER_BGEMM", raising=False)
    popcount = _core.run_op("bconv2d", attrs, params, [xp], channels=[i])
    monkeypatch.setenv("XNORINFER_BGEMM", "amx-emulated")
    for _ in range(3):
        op = _core.PreparedOp("bconv2d", attrs, params, [i])  # a fresh layer: nothing cached yet
        for r in _race(op, xp, 4):
            assert r is not None and r.tobytes() == popcount.tobytes()


def _race(op, xp: np.ndarray, n: int) -> list:
    """op.run([xp]) from n threads released at once (odd ones on 2 threads of their own)."""
    import threading

    barrier = threading.Barrier(n)
    results: list = [None] * n

    def run(k: int) -> None:
        barrier.wait()
        results[k] = op.run([xp], threads=1 + k % 2)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_engine_names_are_checked(rng, monkeypatch):
    op, xp, _ = _op(CASES[1], "zero", "int32", rng)
    monkeypatch.setenv("XNORINFER_BGEMM", "avx2")
    with pytest.raises(
        ValueError, match=r"XNORINFER_BGEMM must be popcount, amx, amx-emulated, auto or auto-emulated, got 'avx2'"
    ):
        op.run(xp)
    monkeypatch.setenv("XNORINFER_BGEMM", "popcount")
    assert op.run(xp).dtype == np.int32


def test_shipped_model_runs_the_same_bytes_on_emulated_amx(tmp_path, monkeypatch):
    """bnn-cnn-fmnist (models/, converted with its documented command): the whole network with
    every binary layer the tiles take (its 64-channel conv and dense layers; the 32-channel convs
    group taps per word and keep popcount) on the emulated tile unit gives the default engine's bytes."""
    from test_reference_models import COMMANDS, _inputs

    from xnorinfer.zoo import load_reference

    model_dir = ROOT / "models" / "bnn-cnn-fmnist"
    _, metrics = load_reference(model_dir)
    argv = list(COMMANDS[model_dir.name])
    out = tmp_path / "model.xbin"
    argv[argv.index("-o") + 1] = str(out)
    monkeypatch.chdir(ROOT)
    assert cli.main(argv) == 0
    x = _inputs(metrics)[0][:8]
    monkeypatch.delenv("XNORINFER_BGEMM", raising=False)
    session = xnorinfer.load(out, threads=2)
    default = session.run(x)
    monkeypatch.setenv("XNORINFER_BGEMM", "amx-emulated")
    for threads in (1, 2):
        assert xnorinfer.load(out, threads=threads).run(x).tobytes() == default.tobytes(), f"{threads} threads"
    if not _cpu_has_amx():  # the model's binary layers do go through the engine switch
        monkeypatch.setenv("XNORINFER_BGEMM", "amx")
        with pytest.raises(RuntimeError, match="AMX is not usable here"):
            session.run(x)
        return
    # On AMX hardware, the real engine too, in a subprocess (a fault fails this test only).
    np.save(tmp_path / "x.npy", x)
    script = (
        "import sys, numpy as np, xnorinfer; "
        "np.save(sys.argv[3], xnorinfer.load(sys.argv[1], threads=2).run(np.load(sys.argv[2])))"
    )
    env = dict(os.environ, XNORINFER_BGEMM="amx")
    y = tmp_path / "y.npy"
    proc = subprocess.run(
        [sys.executable, "-c", script, str(out), str(tmp_path / "x.npy"), str(y)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,  # not the checkout: its xnorinfer/ would shadow the installed package
    )
    assert proc.returncode == 0, proc.stderr
    assert np.load(y).tobytes() == default.tobytes()


def _cpu_has_amx() -> bool:
    """From the kernel's own CPU flags (independent of the engine's CPUID probe)."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return False
    return {"amx_tile", "amx_int8"} <= set(flags.split())


HARDWARE_SCRIPT = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    import test_amx as T
    rng = np.random.default_rng(7)
    checked = 0
    for case in T.CASES:
        for pad_mode in T.PAD_MODES:
            for output in T.OUTPUTS:
                op, xp, expected = T._op(case, pad_mode, output, rng)
                os.environ["XNORINFER_BGEMM"] = "popcount"
                popcount = op.run(xp)
                os.environ["XNORINFER_BGEMM"] = "amx"
                for pool in T.POOLS:
                    got = op.run(xp, pool=pool)
                    assert got.tobytes() == popcount.tobytes() == expected.tobytes(), (case, pad_mode, output)
                    checked += 1
    print("checked", checked)
    """
)


def test_hardware_amx_engine():
    """AMX CPU: the hardware engine gives the popcount bytes on every shape class. Elsewhere it
    must refuse, naming what is missing."""
    env = dict(os.environ, XNORINFER_BGEMM="popcount")
    proc = subprocess.run(
        [sys.executable, "-c", HARDWARE_SCRIPT, str(TESTS)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=tempfile.gettempdir(),  # not the checkout: its xnorinfer/ would shadow the installed package
    )
    if _cpu_has_amx():
        assert proc.returncode == 0, f"AMX engine failed (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        assert f"checked {len(CASES) * len(PAD_MODES) * len(OUTPUTS) * len(POOLS)}" in proc.stdout
    else:
        assert proc.returncode != 0
        assert "RuntimeError: XNORINFER_BGEMM=amx: AMX is not usable here: the CPU lacks AMX-TILE" in proc.stderr, (
            proc.stderr
        )


def _auto_models(tmp_path: Path) -> list[tuple[Path, np.ndarray]]:
    """Binary layers of both kinds: a conv chain (3x3 bconv2d with float output, residual, PReLU,
    1x1 bconv2d) and the shipped default MLP (blinear layers), each with an input batch."""
    from importlib.resources import files

    from test_fused_chain import _chain_graph

    from xnorinfer import xbin

    rng = np.random.default_rng(11)
    g, x, _ = _chain_graph(rng, 2, 70, 9, 8, 3, late_residual=False)
    chain = tmp_path / "chain.xbin"
    xbin.write(g, chain)
    mlp = Path(str(files("xnorinfer") / "assets" / "default.xbin"))
    return [(chain, x), (mlp, rng.standard_normal((5, 1, 28, 28)).astype(np.float32))]


def _output_bytes(out) -> list[bytes]:
    return [np.asarray(o).tobytes() for o in (out if isinstance(out, (list, tuple)) else [out])]


@pytest.mark.parametrize("threads", [1, 2])
def test_auto_emulated_measures_each_layer_once_and_keeps_the_faster(tmp_path, monkeypatch, threads):
    """XNORINFER_BGEMM=auto-emulated: the first run of each binary layer times popcount and the
    emulated tiles on it; the faster (by those times) runs from then on, with the popcount bytes."""
    for path, x in _auto_models(tmp_path):
        monkeypatch.setenv("XNORINFER_BGEMM", "popcount")
        want = _output_bytes(xnorinfer.load(path, threads=threads).run(x))
        monkeypatch.setenv("XNORINFER_BGEMM", "auto-emulated")
        session = xnorinfer.load(path, threads=threads)
        assert session.bgemm_choices() == []
        for _ in range(2):
            assert _output_bytes(session.run(x)) == want, path.name
        rows = session.profile(x, runs=1)
        binary = [r["name"] for r in rows if "engine" in r]
        assert binary and all(r["kind"] in ("bconv2d", "blinear") for r in rows if "engine" in r)
        choices = session.bgemm_choices()
        assert sorted(c["name"] for c in choices) == sorted(binary), "one measurement per layer, not per run"
        chosen = {}
        for c in choices:
            assert c["amx_engine"] == "amx-emulated" and c["not_measured"] == ""
            assert c["popcount_ms"] > 0 and c["amx_ms"] > 0
            assert c["engine"] == ("amx-emulated" if c["amx_ms"] < c["popcount_ms"] else "popcount")
            assert c["batch"] >= 1 and c["height"] >= 1 and c["width"] >= 1 and c["threads"] in (1, threads)
            assert c["isa"] in ISAS
            chosen[c["name"]] = c["engine"]
        assert {r["name"]: r["engine"] for r in rows if "engine" in r} == chosen  # what ran is what was chosen
        # Another batch size is another shape, another ISA path another kernel: measured again, once.
        x2 = np.concatenate([x, x[:1]])
        session.run(x2)
        session.run(x2)
        assert len(session.bgemm_choices()) == 2 * len(choices)
        other = "scalar" if choices[0]["isa"] != "scalar" else "avx2"
        if other in ISAS:
            session.run(x, isa=other)
            session.run(x, isa=other)
            assert len(session.bgemm_choices()) == 3 * len(choices)
            assert sorted(c["name"] for c in session.bgemm_choices() if c["isa"] == other) == sorted(binary)


AUTO_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import xnorinfer
    x = np.load(sys.argv[2])
    session = xnorinfer.load(sys.argv[1], threads=2)
    out = session.run(x)
    np.save(sys.argv[3], np.asarray(out[-1] if isinstance(out, list) else out))
    print(json.dumps(session.bgemm_choices()))
    """
)


def test_auto_measures_the_hardware_engine_or_says_why_not(tmp_path):
    """XNORINFER_BGEMM=auto: on an AMX CPU each layer is measured and keeps the faster engine, with
    the popcount bytes; elsewhere every layer runs popcount and the choice names what is missing.
    In a subprocess, so that a fault on AMX hardware fails this test only."""
    import json

    path, x = _auto_models(tmp_path)[0]
    np.save(tmp_path / "x.npy", x)
    results = {}
    for engine in ("popcount", "auto"):
        proc = subprocess.run(
            [sys.executable, "-c", AUTO_SCRIPT, str(path), str(tmp_path / "x.npy"), str(tmp_path / f"{engine}.npy")],
            capture_output=True,
            text=True,
            env=dict(os.environ, XNORINFER_BGEMM=engine),
            timeout=600,
            cwd=tempfile.gettempdir(),  # not the checkout: its xnorinfer/ would shadow the installed package
        )
        assert proc.returncode == 0, f"{engine}: rc {proc.returncode}\n{proc.stderr}"
        results[engine] = json.loads(proc.stdout.strip().splitlines()[-1])
        assert (tmp_path / f"{engine}.npy").exists()
    assert np.load(tmp_path / "auto.npy").tobytes() == np.load(tmp_path / "popcount.npy").tobytes()
    assert results["popcount"] == []  # nothing measured unless asked
    choices = results["auto"]
    assert len(choices) == 2  # the chain's two binary convs
    for c in choices:
        assert c["amx_engine"] == "amx"
        if _cpu_has_amx():
            assert c["not_measured"] == "" and c["popcount_ms"] > 0 and c["amx_ms"] > 0
            assert c["engine"] == ("amx" if c["amx_ms"] < c["popcount_ms"] else "popcount")
        else:
            assert c["engine"] == "popcount" and c["popcount_ms"] == c["amx_ms"] == 0.0
            assert c["not_measured"].startswith("AMX is not usable here: the CPU lacks AMX-TILE"), c


def test_auto_remembers_the_last_64_shapes(tmp_path, monkeypatch):
    """A model fed ever new image sizes keeps at most 64 choices per layer, the newest."""
    path, x = _auto_models(tmp_path)[0]
    monkeypatch.setenv("XNORINFER_BGEMM", "auto-emulated")
    session = xnorinfer.load(path, threads=1)
    widths = list(range(3, 3 + 66))
    for w in widths:
        session.run(np.ascontiguousarray(x[:1, :, :3, :1].repeat(w, axis=3)))
    choices = session.bgemm_choices()
    per_layer: dict[str, list[int]] = {}
    for c in choices:
        per_layer.setdefault(c["name"], []).append(c["width"])
    assert len(per_layer) == 2
    for name, seen in per_layer.items():
        assert seen == widths[-64:], name


def test_amx_support_matches_the_cpu_flags(monkeypatch):
    """_core.amx_support() (the engine's CPUID / XCR0 / permission probe) against the kernel's CPU
    flags, and `xnorinfer kernels`' engine line saying the same."""
    available, reason = _core.amx_support()
    assert (reason == "") == available
    if not _cpu_has_amx():
        assert not available and reason.startswith("the CPU lacks AMX-TILE"), reason
    elif not available:  # an AMX CPU whose OS does not hand out the tile state (old kernel, VM)
        assert reason.startswith(("the OS", "Linux refused")), reason
    monkeypatch.setenv("XNORINFER_BGEMM", "auto")
    line = cli._bgemm_engine_line()
    assert line.startswith("binary GEMM engine: auto; ")
    assert ("AMX-INT8 usable" in line) == available and (reason in line)
