#!/usr/bin/env python
"""Build the shipped default model (xnorinfer/assets) from a trained reference model.

    python tools/make_assets.py models/lfc-mnist --data DIR

Rebuilds the model from state_dict.pth + metrics.json (tools/train.py's output), converts it
with verification, evaluates the .xbin with the runtime on the whole test set, and writes
xnorinfer/assets/default.xbin, default.json (how it was trained, eager and converted accuracy)
and samples/ (the first ten test images of its data set, as lossless PNG named
<set>_<test index>_<label>.png). DIR holds the data set in its distributed form (tools/train.py).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import xnorinfer
from xnorinfer import datasets
from xnorinfer.convert import convert
from xnorinfer.zoo import load_reference

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "xnorinfer" / "assets"
SAMPLE_PREFIX = {"mnist": "mnist", "fashion-mnist": "fashionMNIST", "cifar10": "cifar10"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--data", type=Path, default=None, help="the folder that holds the data set (required)")
    args = parser.parse_args()
    module, metrics = load_reference(args.model_dir)
    shape = metrics["input_shape"]
    try:
        images, labels, _ = datasets.load(metrics["dataset"], args.data, "test")
    except datasets.DatasetError as err:
        print(f"make_assets.py: error: {err}", file=sys.stderr)
        return 2
    ASSETS.mkdir(exist_ok=True)
    out = ASSETS / "default.xbin"
    convert(
        module,
        (torch.zeros(shape),),
        output=out,
        progress=True,
        metadata={
            "mean": metrics["mean"],
            "std": metrics["std"],
            "labels": metrics["labels"],
            "trained": {k: metrics[k] for k in ("arch", "dataset", "epochs", "width", "optimizer")},
        },
    )
    x = datasets.normalize(images, metrics["mean"], metrics["std"])
    session = xnorinfer.load(out)
    predicted = np.concatenate([session.run(x[i : i + 1000]) for i in range(0, len(x), 1000)]).argmax(1)
    info = dict(metrics, converted_accuracy=float(np.mean(predicted == labels)), xbin_bytes=out.stat().st_size)
    (ASSETS / "default.json").write_text(json.dumps(info, indent=2) + "\n")
    samples = ASSETS / "samples"
    shutil.rmtree(samples, ignore_errors=True)
    samples.mkdir()
    prefix = SAMPLE_PREFIX[metrics["dataset"]]
    for i in range(10):
        pixels = images[i].transpose(1, 2, 0)
        Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels).save(
            samples / f"{prefix}_{i:02d}_{labels[i]}.png"
        )
    print(
        f"wrote {out} ({out.stat().st_size / 1024:.1f} KiB), converted accuracy {info['converted_accuracy']:.4f} "
        f"(PyTorch {metrics['test_accuracy']:.4f}), {len(list(samples.iterdir()))} samples"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
