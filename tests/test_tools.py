"""tools/train.py and tools/evaluate.py as a user runs them: --data in a distributed form, and one
line (no traceback) when the data is not there."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xnorinfer import datasets

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"


def _tool(name: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / name), *map(str, args)], capture_output=True, text=True, timeout=600
    )


@pytest.mark.parametrize(
    "tool, args",
    [
        ("train.py", ["lfc", "--dataset", "mnist", "--out", "OUT"]),
        ("train.py", ["lfc", "--dataset", "cifar10", "--data", "EMPTY", "--out", "OUT"]),
        ("train.py", ["lfc", "--dataset", "mnist", "--data", DATA, "--out", "OUT"]),  # the subset has no train split
        ("evaluate.py", ["models/lfc-mnist"]),
        ("evaluate.py", ["models/lfc-mnist", "--data", "EMPTY"]),
        ("make_assets.py", ["models/lfc-mnist"]),
    ],
)
def test_missing_data_is_one_line(tmp_path, tool, args):
    argv = [
        str(tmp_path / "out")
        if a == "OUT"
        else str(tmp_path)
        if a == "EMPTY"
        else str(ROOT / a)
        if str(a).startswith("models/")
        else a
        for a in args
    ]
    res = _tool(tool, *argv)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert lines[0].startswith(f"{tool}: error: no ") and "--data" in lines[0]
    assert "get " in lines[0]  # says what to download
    assert not (tmp_path / "out").exists()


def test_train_and_evaluate_an_image_folder(tmp_path):
    """An ImageFolder tree of real digits: trains, exports, and evaluates through the engine."""
    images, labels, _ = datasets.load("mnist", DATA, "test")
    for split, part in (("train", slice(0, 600)), ("test", slice(600, 800))):
        for i in range(part.start, part.stop):
            folder = tmp_path / "tree" / split / f"digit {labels[i]}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[i, 0]).save(folder / f"{i}.png")
    out = tmp_path / "model"
    res = _tool(
        "train.py",
        "lfc",
        "--dataset",
        "imagefolder",
        "--data",
        tmp_path / "tree",
        "--epochs",
        "1",
        "--width",
        "0.1",
        "--threads",
        "1",
        "--out",
        out,
    )
    assert res.returncode == 0, res.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["labels"] == [f"digit {d}" for d in range(10)] and metrics["input_shape"] == [1, 1, 28, 28]
    pixels = images[:600].astype(np.float64) / 255.0
    assert metrics["mean"] == [round(float(pixels.mean()), 4)] and (out / "model.pt2").is_file()
    res = _tool("evaluate.py", out, "--data", tmp_path / "tree")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["images"] == 200 and report["top1_agreement"] == 1.0
    assert abs(report["pytorch_accuracy"] - metrics["test_accuracy"]) < 1e-9
