"""`xnorinfer demo` on the shipped default model and samples (installed with the package)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import xnorinfer

ASSETS = Path(xnorinfer.__file__).resolve().parent / "assets"


def test_shipped_model_is_small_and_documented():
    assert (ASSETS / "default.xbin").stat().st_size < 2 * 1024 * 1024
    info = json.loads((ASSETS / "default.json").read_text())
    # The converted accuracy on the whole test set was measured when the assets were built.
    assert abs(info["converted_accuracy"] - info["test_accuracy"]) <= 0.001
    assert xnorinfer.load(ASSETS / "default.xbin").labels == info["labels"]


def test_demo_predicts_the_samples():
    res = subprocess.run(
        [sys.executable, "-m", "xnorinfer", "demo", "--threads", "1"],
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    samples = sorted((ASSETS / "samples").glob("*.png"))
    for s in samples:
        assert s.name in res.stdout
    correct, total = (int(v) for v in re.search(r"(\d+)/(\d+) correct", res.stdout).groups())
    assert total == len(samples) == 10 and correct >= 9
    assert "faster" in res.stdout  # torch is installed with the test extra: the float comparison ran
