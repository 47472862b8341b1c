#!/usr/bin/env python
"""Train a reference BNN on a real data set and export it for conversion.

Example (the MNIST LFC reference; DIR holds mnist/ with the four MNIST IDX files):
    python tools/train.py lfc --dataset mnist --data DIR --epochs 20 --out models/lfc-mnist

--data DIR takes the data sets in the forms they are distributed in: MNIST / Fashion-MNIST IDX
files, the CIFAR-10 binary version, CIFAR-10 as JPEGs in <split>.tar.gz, or an ImageFolder tree
DIR/{train,test}/<class>/<images> with --dataset imagefolder (xnorinfer/datasets.py says where each
is looked for).

Writes to --out: model.pt2 (torch.export of the eval-mode model), state_dict.pth, and
metrics.json (architecture, data set, normalization, labels, epochs, optimizer, seed, eager test
accuracy, training time, threads, torch version). Runs on CPU with a fixed seed; the progress bar
shows the loss and the running accuracy.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from xnorinfer import datasets
from xnorinfer.nn import (
    BinaryRegularizer,
    Bop,
    binarize_latent_weights_,
    clip_latent_weights,
    split_binary_params,
)
from xnorinfer.zoo import ARCHITECTURES

NORMALIZATION = {
    "mnist": ([0.5], [0.5]),
    "fashion-mnist": ([0.5], [0.5]),
    "cifar10": ([0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]),
}


def to_tensor(images: np.ndarray, mean: list[float], std: list[float]) -> torch.Tensor:
    x = torch.tensor(images, dtype=torch.float32).div_(255.0)
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    return (x - m) / s


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random 4-pixel-padded crop and horizontal flip (CIFAR-10)."""
    n, _, h, w = x.shape
    padded = F.pad(x, (4, 4, 4, 4))
    dy = torch.randint(0, 9, (n,), generator=generator)
    dx = torch.randint(0, 9, (n,), generator=generator)
    out = torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])
    flip = torch.rand(n, generator=generator) < 0.5
    out[flip] = out[flip].flip(3)
    return out


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 500) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x), batch):
        correct += int((model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum())
    return correct / len(x)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("arch", choices=sorted(ARCHITECTURES))
    parser.add_argument(
        "--dataset",
        choices=datasets.NAMES,
        default="mnist",
        help="imagefolder: DIR/{train,test}/<class>/<images>, normalised by its own mean and std",
    )
    parser.add_argument("--data", type=Path, default=None, help="the folder that holds the data set (required)")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (cosine-annealed)")
    parser.add_argument("--width", type=float, default=1.0, help="channel width multiplier")
    parser.add_argument("--optimizer", choices=["adam", "bop"], default="adam")
    parser.add_argument("--bop-threshold", type=float, default=1e-6)
    parser.add_argument("--bop-gamma", type=float, default=1e-3)
    parser.add_argument("--regularizer", choices=["none", "tanh", "power"], default="none")
    parser.add_argument("--reg-p", type=float, default=2.0)
    parser.add_argument("--reg-lambda", type=float, default=1e-5)
    parser.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="crop+flip augmentation (default: on for cifar10)",
    )
    parser.add_argument("--limit", type=int, default=0, help="train on the first N images only (smoke tests)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--bf16",
        action="store_true",
        help="train under bfloat16 autocast with channels-last tensors (2-3x faster on CPUs with "
        "AMX or AVX512-BF16); evaluation and export stay float32",
    )
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(args.seed)
    try:
        train_images, train_labels, classes = datasets.load(args.dataset, args.data, "train")
        test_images, test_labels, _ = datasets.load(args.dataset, args.data, "test")
    except datasets.DatasetError as err:
        print(f"train.py: error: {err}", file=sys.stderr)
        return 2
    if args.dataset in NORMALIZATION:
        mean, std = NORMALIZATION[args.dataset]
    else:  # the training set's own per-channel statistics
        pixels = train_images.astype(np.float64) / 255.0
        mean = [round(float(v), 4) for v in pixels.mean(axis=(0, 2, 3))]
        std = [round(float(v), 4) for v in pixels.std(axis=(0, 2, 3))]
    if args.limit:
        train_images, train_labels = train_images[: args.limit], train_labels[: args.limit]
    x_train, y_train = to_tensor(train_images, mean, std), torch.from_numpy(train_labels)
    x_test, y_test = to_tensor(test_images, mean, std), torch.from_numpy(test_labels)
    in_shape = tuple(x_train.shape[1:])
    model = ARCHITECTURES[args.arch](args.width, in_shape, len(classes))
    do_augment = args.augment if args.augment is not None else args.dataset == "cifar10"
    layout = torch.channels_last if args.bf16 and x_train.ndim == 4 else torch.contiguous_format
    model = model.to(memory_format=layout)

    steps_per_epoch = math.ceil(len(x_train) / args.batch_size)
    total_steps = steps_per_epoch * args.epochs
    regularizer = None
    if args.regularizer != "none":
        regularizer = BinaryRegularizer(
            model, args.regularizer, pattern="linear*" if args.arch == "mlp-regularized" else None, p=args.reg_p
        )
    if args.optimizer == "bop":
        binarize_latent_weights_(model)
        binary, other = split_binary_params(model)
        optimizers = [
            Bop(binary, threshold=args.bop_threshold, gamma=args.bop_gamma),
            torch.optim.Adam(other, lr=args.lr),
        ]
    else:
        params = list(model.parameters()) + (list(regularizer.parameters()) if regularizer else [])
        optimizers = [torch.optim.Adam(params, lr=args.lr)]
    schedulers = [
        torch.optim.lr_scheduler.CosineAnnealingLR(o, total_steps) for o in optimizers if not isinstance(o, Bop)
    ]

    start = time.time()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{args.epochs}", unit="batch", leave=False)
        seen = correct = 0
        for step in bar:
            idx = order[step * args.batch_size : (step + 1) * args.batch_size]
            xb, yb = x_train[idx], y_train[idx]
            if do_augment:
                xb = augment(xb, generator)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                logits = model(xb.contiguous(memory_format=layout)).float()
            loss = F.cross_entropy(logits, yb)
            if regularizer is not None:
                loss = loss + regularizer(epoch=epoch + 1, lambda0=args.reg_lambda)
            for o in optimizers:
                o.zero_grad(set_to_none=True)
            loss.backward()
            for o in optimizers:
                o.step()
            for s in schedulers:
                s.step()
            if args.optimizer == "adam":
                clip_latent_weights(model)
            seen += len(yb)
            correct += int((logits.argmax(1) == yb).sum())
            if step % 20 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{correct / seen:.3f}")
        accuracy = evaluate(model, x_test, y_test)
        print(
            f"epoch {epoch + 1}/{args.epochs}: train acc {correct / seen:.4f}, test acc {accuracy:.4f}, "
            f"{time.time() - start:.0f} s",
            flush=True,
        )
    train_time = time.time() - start

    model = model.to(memory_format=torch.contiguous_format).eval()
    args.out.mkdir(parents=True, exist_ok=True)
    example = x_test[:1]
    exported = torch.export.export(model, (example,), strict=False)
    torch.export.save(exported, args.out / "model.pt2")
    torch.save(model.state_dict(), args.out / "state_dict.pth")
    metrics = {
        "arch": args.arch,
        "dataset": args.dataset,
        "width": args.width,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "optimizer": args.optimizer,
        "regularizer": args.regularizer,
        "seed": args.seed,
        "threads": args.threads,
        "train_images": len(x_train),
        "augment": do_augment,
        "test_accuracy": evaluate(model, x_test, y_test),
        "train_time_s": round(train_time, 1),
        "input_shape": [1, *in_shape],
        "mean": mean,
        "std": std,
        "labels": classes,
        "bf16_autocast": args.bf16,
        "torch": torch.__version__,
        "command": " ".join(sys.argv),
    }
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"test accuracy {metrics['test_accuracy']:.4f}; wrote {args.out}/model.pt2, state_dict.pth, metrics.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
