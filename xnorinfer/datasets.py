"""Readers for the image classification sets used to train and evaluate reference models.

The package never needs these at run time; tools/ and tests/ use them with a data root such
as ../shared/data (see its README). Formats: MNIST and Fashion-MNIST as IDX .gz files, and
CIFAR-10 as JPEG files inside `<split>.tar.gz` (`<split>/<class>/<NNNN>.jpg`). Images come
back as uint8 NCHW arrays with int64 labels.
"""

from __future__ import annotations

import gzip
import io
import struct
import tarfile
from pathlib import Path

import numpy as np

MNIST_CLASSES = [str(d) for d in range(10)]
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot"]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


class DatasetError(ValueError):
    """A data file is missing or not in the expected format."""


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) as a numpy array of its declared shape."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise DatasetError(f"{path}: cannot read: {err}") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path}: truncated header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    count = int(np.prod(shape))
    if len(raw) != header + count:
        raise DatasetError(f"{path}: holds {len(raw) - header} bytes, header declares {count}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def load_idx_set(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-format set in `root`: split 'train' or 'test' -> (N, 1, 28, 28) uint8, (N,) int64."""
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise DatasetError(f"split must be 'train' or 'test', got {split!r}")
    images = read_idx(Path(root) / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(Path(root) / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
    if images.ndim != 3 or labels.shape != (images.shape[0],):
        raise DatasetError(f"{root}: images {images.shape} and labels {labels.shape} do not match")
    return np.ascontiguousarray(images[:, None]), labels


def load_cifar10_jpeg(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 JPEG set: `root/<split>.tar.gz` -> (N, 3, 32, 32) uint8, (N,) int64, sorted by path."""
    from PIL import Image

    archive = Path(root) / f"{split}.tar.gz"
    if split not in ("train", "test"):
        raise DatasetError(f"split must be 'train' or 'test', got {split!r}")
    items: list[tuple[str, int, np.ndarray]] = []
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                if not member.isfile() or not member.name.endswith(".jpg"):
                    continue
                parts = Path(member.name).parts
                if len(parts) < 3 or parts[-2] not in CIFAR10_CLASSES:
                    raise DatasetError(f"{archive}: unexpected member {member.name}")
                data = tar.extractfile(member).read()
                with Image.open(io.BytesIO(data)) as img:
                    pixels = np.asarray(img.convert("RGB"), dtype=np.uint8)
                if pixels.shape != (32, 32, 3):
                    raise DatasetError(f"{archive}: {member.name} is {pixels.shape}, expected 32x32 RGB")
                items.append((member.name, CIFAR10_CLASSES.index(parts[-2]), pixels))
    except (OSError, tarfile.TarError) as err:
        raise DatasetError(f"{archive}: cannot read: {err}") from err
    items.sort(key=lambda t: t[0])
    images = np.stack([t[2] for t in items]).transpose(0, 3, 1, 2)
    labels = np.array([t[1] for t in items], dtype=np.int64)
    return np.ascontiguousarray(images), labels


def load(name: str, root: Path, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Load a named set ('mnist', 'fashion-mnist', 'cifar10') from `root` (e.g. ../shared/data)."""
    root = Path(root)
    if name == "mnist":
        return (*load_idx_set(root / "mnist", split), MNIST_CLASSES)
    if name == "fashion-mnist":
        return (*load_idx_set(root / "fashion-mnist", split), FASHION_MNIST_CLASSES)
    if name == "cifar10":
        return (*load_cifar10_jpeg(root / "cifar10-jpeg", split), CIFAR10_CLASSES)
    raise DatasetError(f"unknown data set {name!r} (expected mnist, fashion-mnist or cifar10)")
