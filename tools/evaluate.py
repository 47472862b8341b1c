#!/usr/bin/env python
"""Convert a trained reference model and evaluate the .xbin on the whole test set.

    python tools/evaluate.py models/lfc-mnist --data DIR [--binarize 'linear*'] [--reference]

DIR holds the model's data set in its distributed form (see tools/train.py and
xnorinfer/datasets.py); `--data tests/data` evaluates on the small subset shipped for the tests.

Prints the eager PyTorch accuracy, the converted (engine) accuracy and their top-1 agreement;
with --reference also the canonical reference's accuracy (the float64 numpy interpreter of the
converted graph, xnorinfer.convert.reference) and whether the engine's predictions equal it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

import xnorinfer
from xnorinfer import datasets
from xnorinfer.convert import convert, reference
from xnorinfer.nn import apply_binarization
from xnorinfer.zoo import load_reference


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--binarize", action="append", default=[])
    parser.add_argument("--data", type=Path, default=None, help="the folder that holds the data set (required)")
    parser.add_argument("--reference", action="store_true", help="also run the canonical reference (slow)")
    args = parser.parse_args()
    if not (args.model_dir / "metrics.json").is_file():
        print(f"evaluate.py: error: {args.model_dir}: no metrics.json (not a tools/train.py folder)", file=sys.stderr)
        return 2
    module, m = load_reference(args.model_dir)
    try:
        images, labels, _ = datasets.load(m["dataset"], args.data, "test")
    except datasets.DatasetError as err:
        print(f"evaluate.py: error: {err}", file=sys.stderr)
        return 2
    x = datasets.normalize(images, m["mean"], m["std"])

    def eager() -> np.ndarray:
        with torch.inference_mode():
            return np.concatenate(
                [module(torch.from_numpy(x[i : i + 500])).numpy().argmax(1) for i in range(0, len(x), 500)]
            )

    float_pred = eager()
    for pattern in args.binarize:
        apply_binarization(module, pattern)
    eager_pred = eager() if args.binarize else float_pred
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "m.xbin"
        graph = convert(module, (torch.zeros(m["input_shape"]),), binarize=args.binarize, output=out)
        session = xnorinfer.load(out)
        engine = np.concatenate([session.run(x[i : i + 1000]) for i in range(0, len(x), 1000)]).argmax(1)
    extra = {}
    if args.reference:
        ref = np.concatenate(
            [reference.run(graph, x[i : i + 500])[graph.outputs[0]].argmax(1) for i in range(0, len(x), 500)]
        )
        differ = np.nonzero(engine != ref)[0]
        # Explain each difference: the reference's smallest distance to a sign threshold there.
        margins = reference.sign_margins(graph, x[differ]) if len(differ) else {}
        extra = {
            "reference_accuracy": float(np.mean(ref == labels)),
            "engine_equals_reference": bool(len(differ) == 0),
            "engine_vs_reference": [
                {
                    "image": int(i),
                    "engine": int(engine[i]),
                    "reference": int(ref[i]),
                    "closest_sign": min(
                        ((name, float(m[j])) for name, m in margins.items()), key=lambda t: t[1], default=None
                    ),
                }
                for j, i in enumerate(differ)
            ],
        }
    print(
        json.dumps(
            {
                "model": args.model_dir.name,
                "images": len(x),
                "pytorch_accuracy": float(np.mean(float_pred == labels)),
                "pytorch_binarized_accuracy": float(np.mean(eager_pred == labels)) if args.binarize else None,
                "converted_accuracy": float(np.mean(engine == labels)),
                "top1_agreement": float(np.mean(engine == eager_pred)),
                "disagreements": int(np.sum(engine != eager_pred)),
                **extra,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
