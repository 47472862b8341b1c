"""An interrupted or failing `xnorinfer convert` leaves no damage: no partial output, no temp file,
and an existing .xbin untouched. SIGINT and SIGTERM exit 130 / 143 with `xnorinfer: error: interrupted`.

The signal tests make verification slow (a float and a binary 3x3 conv at 56x56 on 500 inputs: the
PyTorch stage takes seconds, the float64 reference some 15 s more) and send the signal only once the
progress bar on stderr shows the PyTorch stage, which runs before anything is written, so the signal
certainly lands during verification.
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from xnorinfer import cli, xbin  # noqa: E402
from xnorinfer.nn import BinaryConv2d, BinaryLinear  # noqa: E402

OLD_BYTES = b"an existing model file that must survive\n" * 7
STAGE_TIMEOUT_S = 300  # generous: the PyTorch stage normally starts a few seconds after launch
verify_mod = importlib.import_module("xnorinfer.convert.verify")


def _save(model: nn.Module, shape: tuple[int, ...], path: Path) -> str:
    torch.export.save(torch.export.export(model.eval(), (torch.zeros(shape),)), str(path))
    return str(path)


@pytest.fixture(scope="module")
def slow_pt2(tmp_path_factory) -> str:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 64, 3, padding=1),
        nn.BatchNorm2d(64),
        BinaryConv2d(64, 64, 3, padding=1),
        nn.BatchNorm2d(64),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 10),
    )
    return _save(model, (1, 1, 56, 56), tmp_path_factory.mktemp("pt2") / "slow_bnn.pt2")


@pytest.fixture(scope="module")
def small_pt2(tmp_path_factory) -> str:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), BinaryLinear(16, 32), nn.BatchNorm1d(32), BinaryLinear(32, 10))
    return _save(model, (1, 1, 4, 4), tmp_path_factory.mktemp("pt2") / "small_bnn.pt2")


def _error_lines(stderr: str) -> list[str]:
    """The `xnorinfer: error:` lines, without the progress-bar text that may precede one on its line."""
    return [
        "xnorinfer: error:" + line.split("xnorinfer: error:", 1)[1].rstrip()
        for line in stderr.split("\n")
        if "xnorinfer: error:" in line
    ]


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_signal_during_verification_leaves_existing_output(slow_pt2, tmp_path, sig, code):
    out = tmp_path / "model.xbin"
    out.write_bytes(OLD_BYTES)
    tmp = Path(tempfile.gettempdir())
    before = set(os.listdir(tmp_path))
    # As from a terminal: SIGINT at its default. A test run started in the background by a
    # non-interactive shell inherits SIGINT ignored, and Python keeps an inherited SIG_IGN.
    proc = subprocess.Popen(
        [sys.executable, "-m", "xnorinfer", "convert", slow_pt2, "-o", str(out), "--samples", "500"],
        cwd=tmp,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    err = bytearray()

    def pump() -> None:
        while chunk := proc.stderr.read1(4096):
            err.extend(chunk)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + STAGE_TIMEOUT_S
        while b"PyTorch" not in err:  # the verification stage before the engine stage and the write
            assert proc.poll() is None, f"convert ended before verification was interrupted: {bytes(err)!r}"
            assert time.monotonic() < deadline, f"verification did not start: {bytes(err)!r}"
            time.sleep(0.05)
        time.sleep(0.5)  # well inside verification (some 20 s with 500 inputs)
        assert proc.poll() is None, "convert finished too early: the signal would not land in verification"
        proc.send_signal(sig)
        proc.wait(timeout=120)  # not communicate(): the reader thread owns stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=10)
    stdout = proc.stdout.read()
    proc.stdout.close()
    proc.stderr.close()
    assert proc.returncode == code, bytes(err)
    # one error line; the progress bar (\r-redrawn, never closed on an interrupt) may precede it on that line
    assert _error_lines(bytes(err).decode(errors="replace")) == ["xnorinfer: error: interrupted"], bytes(err)
    assert b"Traceback" not in err
    assert b"wrote" not in stdout
    assert out.read_bytes() == OLD_BYTES
    assert set(os.listdir(tmp_path)) == before == {"model.xbin"}


def _convert(pt2: str, out: Path, *extra: str) -> int:
    return cli.main(["convert", pt2, "-o", str(out), "--samples", "8", *extra])


def test_exception_in_verification_writes_nothing(small_pt2, tmp_path, monkeypatch, capsys):
    def boom(*args, **kwargs):
        raise RuntimeError("boom in verification")

    monkeypatch.setattr(verify_mod, "torch_run", boom)
    out = tmp_path / "model.xbin"
    assert _convert(small_pt2, out) == 1
    err = capsys.readouterr().err
    assert "xnorinfer: error: boom in verification" in err
    assert os.listdir(tmp_path) == []


def test_exception_in_verification_keeps_existing_output(small_pt2, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(verify_mod, "torch_run", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    out = tmp_path / "model.xbin"
    out.write_bytes(OLD_BYTES)
    assert _convert(small_pt2, out) == 1
    assert out.read_bytes() == OLD_BYTES
    assert os.listdir(tmp_path) == ["model.xbin"]


def test_keyboard_interrupt_in_engine_stage(small_pt2, tmp_path, monkeypatch, capsys):
    """verify() catches Exception from the engine; a KeyboardInterrupt must still get through."""

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(verify_mod, "engine_run", interrupt)
    handler = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "model.xbin"
    assert _convert(small_pt2, out) == 130
    assert _error_lines(capsys.readouterr().err) == ["xnorinfer: error: interrupted"]
    assert os.listdir(tmp_path) == []
    assert signal.getsignal(signal.SIGTERM) is handler  # the SIGTERM handler is restored


@pytest.mark.parametrize("exc", [KeyboardInterrupt, OSError], ids=["KeyboardInterrupt", "OSError"])
def test_xbin_write_interrupted_mid_write_cleans_up(small_pt2, tmp_path, monkeypatch, exc):
    """An exception (BaseException included) between the temp file and the rename removes the temp file."""
    from xnorinfer.convert import convert

    graph = convert(small_pt2, n_verify=4)
    out = tmp_path / "model.xbin"
    out.write_bytes(OLD_BYTES)

    def failing_fsync(fd: int) -> None:
        raise exc("interrupted while writing")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(exc):
        xbin.write(graph, out)
    assert out.read_bytes() == OLD_BYTES
    assert os.listdir(tmp_path) == ["model.xbin"]
    monkeypatch.undo()
    xbin.write(graph, out)  # and the same graph then writes fine
    assert np.frombuffer(out.read_bytes()[:8], np.uint8).tobytes() == xbin.MAGIC
