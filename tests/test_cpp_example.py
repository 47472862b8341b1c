"""The C++ example application (examples/classify) against an installed C++ library.

Builds the C++ library (CMake, no Python module), installs it to a temporary prefix, builds
examples/classify with find_package(xnorinfer) against that install, and runs it on real MNIST
test images written as binary PGM. It must print what `xnorinfer run` prints for the same image
(top classes and probabilities), and logits equal to `Session.run`'s outputs bit for bit.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import xnorinfer
from xnorinfer import cli
from xnorinfer.datasets import read_idx

ROOT = Path(__file__).resolve().parent.parent
MODEL = Path(xnorinfer.__file__).parent / "assets" / "default.xbin"
IMAGES = ROOT / "tests" / "data" / "mnist" / "t10k-images-idx3-ubyte.gz"


def _tool(name: str) -> str:
    """The venv's tool (the test extra installs cmake and ninja) or the one on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    assert found, f"{name} is needed to build the C++ example (pip install '.[test]' installs it)"
    return found


def _check(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def classify(tmp_path_factory) -> Path:
    """The example binary, built against the C++ library installed in a temporary prefix."""
    cmake = _tool("cmake")
    work = tmp_path_factory.mktemp("cpp")
    # A build folder in the checkout (ignored by git) makes a second run incremental.
    build = Path(os.environ.get("CPP_BUILD_DIR", ROOT / "build" / "cpp"))
    gen = ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={_tool('ninja')}"] if not (build / "CMakeCache.txt").exists() else []
    _check(
        [cmake, "-S", str(ROOT), "-B", str(build), *gen, "-DCMAKE_BUILD_TYPE=Release", "-DXNORINFER_BUILD_PYTHON=OFF"]
    )
    _check([cmake, "--build", str(build), "--target", "xnorinfer", "-j", str(os.cpu_count() or 1)])
    prefix = work / "prefix"
    _check([cmake, "--install", str(build), "--prefix", str(prefix), "--component", "cpp"])
    assert (prefix / "include" / "xnorinfer" / "xnorinfer.h").exists()
    example = work / "classify"
    _check(
        [
            cmake,
            "-S",
            str(ROOT / "examples" / "classify"),
            "-B",
            str(example),
            "-G",
            "Ninja",
            f"-DCMAKE_MAKE_PROGRAM={_tool('ninja')}",
            f"-DCMAKE_PREFIX_PATH={prefix}",
        ]
    )
    _check([cmake, "--build", str(example)])
    return example / "classify"


def _write_pgm(path: Path, pixels: np.ndarray) -> None:
    h, w = pixels.shape
    path.write_bytes(f"P5\n{w} {h}\n255\n".encode() + pixels.astype(np.uint8).tobytes())


def _parse_run_line(line: str) -> tuple[str, list[tuple[str, float]]]:
    """`image: label (0.123), label (0.045)` -> (image, [(label, probability)])."""
    image, _, rest = line.rpartition(": ")
    pairs = re.findall(r"(\S+) \((\d+\.\d{3})\)", rest)
    return image, [(label, float(p)) for label, p in pairs]


def test_example_prints_what_xnorinfer_run_prints(classify, tmp_path, capsys):
    images = read_idx(IMAGES)
    session = xnorinfer.load(MODEL, threads=1)
    for index in (0, 1, 2, 3, 18):
        pgm = tmp_path / f"mnist_{index}.pgm"
        _write_pgm(pgm, images[index])
        out = _check([str(classify), str(MODEL), str(pgm), "--top", "10"]).stdout.splitlines()
        assert len(out) == 2 and out[1].startswith("logits: "), out
        capsys.readouterr()
        assert cli.main(["run", "--top", "10", "--threads", "1", str(MODEL), str(pgm)]) == 0
        want = capsys.readouterr().out.splitlines()
        assert len(want) == 1
        image, got_top = _parse_run_line(out[0])
        want_image, want_top = _parse_run_line(want[0])
        assert image == want_image == str(pgm)
        assert len(got_top) == 10 and got_top == want_top
        assert out[0] == want[0]
        # The logits, printed with 9 significant digits (exact for float32), are the engine's outputs.
        logits = np.array([float(v) for v in out[1].split()[1:]], dtype=np.float32)
        engine = np.asarray(session.run(xnorinfer.preprocess(pgm, session)))[0]
        assert logits.tobytes() == engine.tobytes()
        assert got_top[0][0] == session.labels[int(np.argmax(engine))]


def test_example_refuses_an_image_of_another_size(classify, tmp_path):
    pgm = tmp_path / "small.pgm"
    _write_pgm(pgm, np.zeros((20, 24), np.uint8))
    proc = subprocess.run([str(classify), str(MODEL), str(pgm)], capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stdout == ""
    assert (
        proc.stderr == f"classify: error: {pgm}: image is 24x20, the model takes 28x28 (this example does not resize)\n"
    )
    proc = subprocess.run([str(classify), str(tmp_path / "missing.xbin"), str(pgm)], capture_output=True, text=True)
    assert proc.returncode == 1 and f"{tmp_path / 'missing.xbin'}: cannot open" in proc.stderr
