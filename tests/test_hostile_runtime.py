"""Hostile inputs to the runtime (issue 13, C++ side; docs/reliability.md lists each case).

Every payload is built here, in the test: fork after the pool started, a tiny model whose memory
plan is many GiB, random buffer lifetimes for the planner, a binary layer with one output channel,
a misaligned input, a large file that is not a model, bad IR versions and oversized images. Peak
memory is measured in a fresh interpreter that imported only numpy and xnorinfer, with the
kernel's peak-RSS mark reset just before the step measured (Linux /proc/self/clear_refs).
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import engine_ops as E
import numpy as np
import pytest
from conftest import ISAS
from reference import conv_sums, pack_bool_last, pack_nhwc
from test_api import small_model

import xnorinfer
from xnorinfer import _core, ir, xbin
from xnorinfer.cli import main
from xnorinfer.xbin import XbinError

MIB = 1 << 20


def _peak_rss_growth(setup: str, action: str) -> tuple[int, str]:
    """Run `setup` then `action` in a fresh interpreter; returns (peak RSS during `action` less the RSS
    before it, in bytes; stdout). The kernel's peak (VmHWM) is reset first (clear_refs 5), so an
    earlier transient peak (imports) cannot hide an allocation."""
    code = (
        "import sys\nimport numpy as np\nimport xnorinfer\nfrom xnorinfer import _core, xbin\n"
        "def status(key):\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith(key + ':'):\n"
        "            return int(line.split()[1]) * 1024\n"
        f"{setup}\n"
        "with open('/proc/self/clear_refs', 'w') as f:\n    f.write('5')\n"
        "before = status('VmRSS')\n"
        f"{action}\n"
        "print('GROWTH', status('VmHWM') - before)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tempfile.gettempdir(), timeout=300
    )
    assert res.returncode == 0, res.stderr
    line = [s for s in res.stdout.splitlines() if s.startswith("GROWTH ")][-1]
    return int(line.split()[1]), res.stdout


# --------------------------------------------------------------------------- row 3: fork


def _run_in_child(session, x, conn) -> None:
    try:
        conn.send(session.run(x).tobytes())
    except BaseException as err:  # report anything to the parent instead of dying silently
        conn.send(f"{type(err).__name__}: {err}")
    conn.close()


def test_session_with_a_pool_runs_in_a_forked_child(tmp_path, rng):
    path, _ = small_model(tmp_path, rng)
    session = xnorinfer.load(path, threads=2)
    x = rng.standard_normal((4, 1, 8, 8)).astype(np.float32)
    expect = session.run(x).tobytes()  # the pool's workers exist and have run before the fork
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_run_in_child, args=(session, x, send))
    child.start()
    send.close()
    try:
        # A child waiting for workers that fork() did not copy never answers.
        assert receive.poll(120), "the forked child did not finish run() within 120 s"
        got = receive.recv()
        child.join(60)
    finally:
        if child.is_alive():
            child.kill()
        child.join()
    assert got == expect
    assert child.exitcode == 0
    assert session.run(x).tobytes() == expect  # the parent's pool is untouched


# --------------------------------------------------------------------------- row 4: memory limit


def _huge_plan_model(path: Path, channels: int = 600) -> None:
    """The issue's case: 1x1 float conv with padding 1024 on a 1x1 image; output (1, 2049, 2049, C)."""
    g = ir.Graph(
        inputs=["x"],
        outputs=["y"],
        tensors={"x": ir.Tensor("x", (1, 1, 1, 1), "f32"), "y": ir.Tensor("y", (1, 2049, 2049, channels), "f32")},
        ops=[
            ir.Op(
                "conv2d",
                "features.wide",
                ["x"],
                ["y"],
                {"stride": [1, 1], "padding": [1024, 1024]},
                {"weight": np.ones((channels, 1, 1, 1), np.float32)},
            )
        ],
    )
    xbin.write(g, path)


def test_memory_plan_above_the_limit_is_refused_at_load(tmp_path):
    path = tmp_path / "wide.xbin"
    _huge_plan_model(path)
    assert path.stat().st_size < 8192
    want = 2049 * 2049 * 600 * 4
    with pytest.raises(XbinError) as info:
        xnorinfer.load(path, threads=1, max_memory=1 << 30)
    msg = str(info.value)
    assert "\n" not in msg
    assert str(path) in msg and "max_memory" in msg and "1073741824 bytes" in msg
    assert "tensor 'y' (1, 2049, 2049, 600)" in msg and "op 'features.wide' (conv2d)" in msg
    assert f"{want} bytes" in msg
    # Under a limit that allows it, the plan is known without allocating it.
    session = xnorinfer.load(path, threads=1, max_memory=1 << 40)
    assert session.max_memory == 1 << 40
    assert session.planned_bytes((1, 1, 1, 1)) >= want


def test_memory_limit_keeps_rss_small(tmp_path):
    path = tmp_path / "wide.xbin"
    _huge_plan_model(path)
    growth, out = _peak_rss_growth(
        "",
        f"try:\n    xnorinfer.load({str(path)!r}, threads=2, max_memory=1 << 30)\n"
        "except xbin.XbinError as err:\n    print('REFUSED', err)",
    )
    assert "REFUSED" in out
    assert growth < 64 * MIB


def test_default_limit_is_half_the_memory(tmp_path):
    page = os.sysconf("SC_PAGE_SIZE")
    memory = os.sysconf("SC_PHYS_PAGES") * page
    for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            memory = min(memory, int(Path(limit).read_text().split()[0]))
        except (OSError, ValueError, IndexError):  # absent, or "max"
            pass
    assert _core.default_max_memory() == memory // 2 // page * page
    path = tmp_path / "wider.xbin"
    _huge_plan_model(path, channels=12000)  # 201 GB of output: above half of any machine we test on
    if _core.default_max_memory() >= 2049 * 2049 * 12000 * 4:
        pytest.skip("this machine has more than 400 GB of memory")
    with pytest.raises(XbinError, match="max_memory"):
        xnorinfer.load(path, threads=1)


def test_memory_limit_at_run_for_a_larger_batch(tmp_path, rng):
    path, _ = small_model(tmp_path, rng)
    one = xnorinfer.load(path, threads=1).planned_bytes((1, 1, 8, 8))
    session = xnorinfer.load(path, threads=1, max_memory=one * 2)
    x = rng.standard_normal((64, 1, 8, 8)).astype(np.float32)
    with pytest.raises(ValueError, match=r"max_memory.*largest buffer"):
        session.run(x)
    assert session.run(x[:1]).shape == (1, 10)  # the session still runs what fits


def test_cli_max_memory_is_one_line_and_the_bad_model_code(tmp_path, capsys):
    path = tmp_path / "wide.xbin"
    _huge_plan_model(path)
    for command in (["run", str(path), str(tmp_path / "none.png")], ["bench", str(path), "--runs", "1"]):
        assert main([*command, "--max-memory", str(1 << 30)]) == 3
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("xnorinfer: error: ") and "max_memory" in err


def test_max_memory_must_be_positive(tmp_path, rng):
    path, _ = small_model(tmp_path, rng)
    for bad in (0, -1, 1.5, True, 1 << 64):
        with pytest.raises(ValueError, match="max_memory"):
            xnorinfer.load(path, max_memory=bad)


# --------------------------------------------------------------------------- row 6: planner


def _greedy_by_size_reference(sizes, first, last) -> tuple[list[int], int]:
    """The planner's greedy by size written out directly (every placed buffer checked: quadratic)."""
    aligned = [(s + 63) // 64 * 64 for s in sizes]
    order = sorted(range(len(sizes)), key=lambda i: -sizes[i])  # stable: ties by index
    offsets, arena, placed = [0] * len(sizes), 0, []
    for i in order:
        if sizes[i] == 0:
            continue
        busy = sorted(
            (offsets[j], offsets[j] + aligned[j]) for j in placed if first[j] <= last[i] and first[i] <= last[j]
        )
        offset = 0
        for b, e in busy:
            if b >= offset + aligned[i]:
                break
            offset = max(offset, e)
        offsets[i] = offset
        arena = max(arena, offset + aligned[i])
        placed.append(i)
    return offsets, arena


def _check_plan(sizes, first, last, offsets, arena) -> None:
    """Brute force: buffers alive at a common step never share a byte; all inside the arena."""
    n = len(sizes)
    size = [(s + 63) // 64 * 64 for s in sizes]  # 64-byte blocks, so that the padding is not shared either
    for i in range(n):
        if sizes[i] == 0:
            continue
        assert offsets[i] % 64 == 0 and offsets[i] + size[i] <= arena
        for j in range(i + 1, n):
            if sizes[j] and first[i] <= last[j] and first[j] <= last[i]:
                assert offsets[i] + size[i] <= offsets[j] or offsets[j] + size[j] <= offsets[i], (i, j)


@pytest.mark.parametrize("seed", range(6))
def test_memory_planner_on_random_lifetimes(seed):
    rng = np.random.default_rng(seed)
    n = 300
    steps = int(rng.integers(5, 200))
    first = rng.integers(-1, steps, size=n)
    last = np.minimum(first + rng.geometric(0.15 if seed % 2 else 0.02, size=n) - 1, steps)
    sizes = rng.integers(1, 5000, size=n) * rng.integers(0, 2, size=n) * rng.choice([1, 64, 4096], size=n)
    sizes, first, last = [int(v) for v in sizes], [int(v) for v in first], [int(v) for v in last]
    live_peak = max(
        sum((s + 63) // 64 * 64 for s, f, la in zip(sizes, first, last, strict=True) if f <= t <= la)
        for t in range(-1, steps + 1)
    )
    greedy = _core.plan_memory(sizes, first, last)
    sweep = _core.plan_memory(sizes, first, last, pair_budget=0)
    for offsets, arena in (greedy, sweep):
        _check_plan(sizes, first, last, offsets, arena)
        assert arena >= live_peak
    assert tuple(greedy) == tuple(_greedy_by_size_reference(sizes, first, last))


def test_memory_planner_rejects_inverted_lifetimes():
    with pytest.raises(ValueError, match="ends"):
        _core.plan_memory([64], [3], [2])


def test_long_chain_plans_and_runs(tmp_path, rng):
    """A 3,000-op chain of element-wise ops: planned once per shape, run exactly."""
    g = ir.Graph(inputs=["x"], outputs=[], tensors={"x": ir.Tensor("x", (1, 2, 2, 3), "f32")}, ops=[])
    prev = "x"
    shift = {"scale": np.full(3, 1.0, np.float32), "shift": np.full(3, 0.5, np.float32)}
    for i in range(3000):
        name = f"t{i}"
        g.ops.append(ir.Op("relu" if i % 2 else "affine", f"chain.{i}", [prev], [name], {}, {} if i % 2 else shift))
        g.tensors[name] = ir.Tensor(name, (1, 2, 2, 3), "f32")
        prev = name
    g.outputs = [prev]
    path = tmp_path / "chain.xbin"
    xbin.write(g, path)
    x = rng.standard_normal((2, 3, 2, 2)).astype(np.float32)
    session = xnorinfer.load(path, threads=1)
    # relu(x + 0.5) + 0.5 ... : after the first two ops every value is >= 0.5, then +0.5 per affine.
    want = np.maximum(x.transpose(0, 2, 3, 1) + np.float32(0.5), 0)
    for _ in range(1499):
        want = np.maximum(want + np.float32(0.5), 0)
    assert session.run(x).tobytes() == want.astype(np.float32).tobytes()
    # Each tensor lives two steps: the arena holds two of them, not 3,000.
    assert session.planned_bytes((2, 3, 2, 2)) <= 4 * 64


# --------------------------------------------------------------------------- row 7: narrow binary layers


def test_one_output_channel_does_not_repack_to_32():
    words, taps = 64, 9
    w = np.random.default_rng(0).integers(0, 1 << 63, size=(1, 3, 3, words), dtype=np.uint64)
    op = E.BinaryConv2d(w, words * 64)  # no padding: no per-tap sums
    assert op.held_bytes() <= w.nbytes + 16384  # was 32 x w.nbytes
    assert taps * words * 8 == w.nbytes


@pytest.mark.parametrize("cout", [1, 3, 7, 8, 9, 17, 24, 33, 39])
def test_narrow_last_block_is_exact_on_every_path(cout):
    rng = np.random.default_rng(cout)
    cin, h, w = 70, 5, 6
    x = np.where(rng.integers(0, 2, size=(2, cin, h, w)) == 1, -1.0, 1.0)
    wt = np.where(rng.integers(0, 2, size=(cout, cin, 3, 3)) == 1, -1.0, 1.0)
    want = conv_sums(x, wt, (1, 1), (1, 1), "zero")
    op = E.BinaryConv2d(pack_bool_last(np.transpose(wt, (0, 2, 3, 1)) < 0), cin, padding=(1, 1))
    xp = pack_nhwc(np.transpose(x, (0, 2, 3, 1)).astype(np.float32))
    pool = _core.ThreadPool(2)
    for isa in ISAS:
        for p in (None, pool):
            np.testing.assert_array_equal(op.run(xp, pool=p, isa=isa), want, err_msg=f"{isa} pool={p}")
    # Blocks: full ones at 32 lanes, the last at its channels rounded up to 8 (or exactly, under 8).
    full, last = divmod(cout, 32)
    lanes = full * 32 + (0 if last == 0 else last if last < 8 else -(-last // 8) * 8)
    assert op.held_bytes() < lanes * 9 * 2 * 8 + 64 + (full + 1) * (1024 + 9 * 32 * 4)


def test_load_of_a_one_channel_layer_is_bounded_by_the_file_size(tmp_path):
    words, k = 256, 64  # 8 MiB of weights for one output channel
    rng = np.random.default_rng(1)
    weight = rng.integers(0, 1 << 63, size=(1, k, k, words), dtype=np.uint64)
    g = ir.Graph(
        inputs=["x"],
        outputs=["z"],
        tensors={
            "x": ir.Tensor("x", (1, k, k, words * 64), "f32"),
            "b": ir.Tensor("b", (1, k, k, words * 64), "bits"),
            "z": ir.Tensor("z", (1, 1, 1, 1), "f32"),
        },
        ops=[
            ir.Op("sign", "sign", ["x"], ["b"]),
            ir.Op(
                "bconv2d",
                "narrow",
                ["b"],
                ["z"],
                {"stride": [1, 1], "padding": [0, 0], "pad_mode": "zero", "output": "float", "in_channels": words * 64},
                {"weight": weight, "multiplier": np.ones(1, np.float32), "bias": np.zeros(1, np.float32)},
            ),
        ],
    )
    path = tmp_path / "narrow.xbin"
    xbin.write(g, path)
    size = path.stat().st_size
    assert size > 8 * MIB
    growth, _ = _peak_rss_growth("", f"s = xnorinfer.load({str(path)!r}, threads=1)")
    assert growth < 3 * size  # the file once, the repacked weights once; was 33 x


# --------------------------------------------------------------------------- row 11: misaligned input


def test_misaligned_input_gives_the_aligned_result(tmp_path, rng):
    path, _ = small_model(tmp_path, rng)
    session = xnorinfer.load(path, threads=2)
    x = rng.standard_normal((3, 1, 8, 8)).astype(np.float32)
    buf = bytearray(x.nbytes + 1)
    buf[1:] = x.tobytes()
    odd = np.frombuffer(buf, dtype=np.float32, offset=1).reshape(x.shape)
    assert odd.flags.c_contiguous and not odd.flags.aligned
    for isa in ISAS:
        assert session.run(odd, isa=isa).tobytes() == session.run(x, isa=isa).tobytes()
    # Kernel bindings take the same path: inputs are copied aligned, outputs must be aligned.
    assert E.sign_pack(odd.reshape(3, 8, 8, 1)).tobytes() == E.sign_pack(x.reshape(3, 8, 8, 1)).tobytes()
    wt = pack_bool_last(rng.integers(0, 2, size=(4, 3, 3, 1)).astype(bool))
    ones, zeros = np.ones(4, np.float32), np.zeros(4, np.float32)
    op = E.BinaryConv2d(wt, 1, padding=(1, 1), output="float", multiplier=ones, bias=zeros)
    xp = E.sign_pack(x.reshape(3, 8, 8, 1))
    out_buf = bytearray(3 * 8 * 8 * 4 * 4 + 1)
    bad_out = np.frombuffer(out_buf, dtype=np.float32, offset=1).reshape(3, 8, 8, 4)
    with pytest.raises(ValueError, match="aligned"):
        op.run(xp, out=bad_out)


# --------------------------------------------------------------------------- row 12: header first


def test_non_model_file_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "big.bin"
    with open(path, "wb") as f:  # sparse: 256 MiB of zeros that take no disk
        f.truncate(256 * MIB)
    with pytest.raises(XbinError, match="bad magic"):
        xnorinfer.load(path)
    with pytest.raises(XbinError, match="bad magic"):
        xbin.read(path)
    for action in (
        f"try:\n    _core.XbinFile({str(path)!r})\nexcept ValueError as err:\n    print('REFUSED', err)",
        f"try:\n    xbin.read({str(path)!r})\nexcept ValueError as err:\n    print('REFUSED', err)",
    ):
        growth, out = _peak_rss_growth("", action)
        assert "REFUSED" in out and "bad magic" in out
        assert growth < 32 * MIB


def test_header_declaring_another_size_is_refused_before_reading(tmp_path, rng):
    path, _ = small_model(tmp_path, rng)
    data = bytearray(path.read_bytes())
    big = tmp_path / "padded.xbin"
    big.write_bytes(bytes(data))
    with open(big, "ab") as f:
        f.truncate(len(data) + 128 * MIB)
    with pytest.raises(XbinError, match="trailing bytes"):
        xnorinfer.load(big)
    with pytest.raises(XbinError, match="trailing bytes"):
        xbin.read(big)


# --------------------------------------------------------------------------- row 15: versions and 64-bit sizes


@pytest.mark.parametrize("version", [0, -1, -(1 << 40)])
def test_ir_version_below_one_is_refused(tmp_path, rng, monkeypatch, version):
    path, _ = small_model(tmp_path, rng)
    g = xbin.read(path)
    monkeypatch.setattr(ir, "IR_VERSION", version)
    xbin.write(g, path)
    monkeypatch.undo()
    for load in (xnorinfer.load, xbin.read):
        with pytest.raises(XbinError, match=f"IR version {version} is invalid"):
            load(path)


def test_image_above_2_31_pixels_is_refused(tmp_path, rng):
    # Recorded in the file: refused at load, before any kernel sees int-sized pixel counts.
    g = ir.Graph(
        inputs=["x"],
        outputs=["y"],
        tensors={"x": ir.Tensor("x", (1, 65536, 32768, 1), "f32"), "y": ir.Tensor("y", (1, 65536, 32768, 1), "f32")},
        ops=[ir.Op("relu", "act", ["x"], ["y"])],
    )
    path = tmp_path / "tall.xbin"
    xbin.write(g, path)
    with pytest.raises(XbinError, match="pixels per image"):
        xnorinfer.load(path)
    # Given at run time: refused when planning, before anything is allocated.
    small, _ = small_model(tmp_path, rng)
    session = xnorinfer.load(small, threads=1)
    with pytest.raises(ValueError, match="pixels per image"):
        session.planned_bytes((1, 1, 65536, 32769))
