"""Readers for the image classification sets used to train and evaluate reference models.

The package never needs these at run time; tools/ and tests/ use them with a data root given by
`--data DIR` (tests read the small subset shipped in tests/data). Each set is read in the form its
publishers distribute it, so a downloaded copy works as it is:

- MNIST and Fashion-MNIST: the four IDX files (`train-images-idx3-ubyte[.gz]`,
  `train-labels-idx1-ubyte[.gz]`, `t10k-images-idx3-ubyte[.gz]`, `t10k-labels-idx1-ubyte[.gz]`),
  in `DIR/mnist/` (`DIR/fashion-mnist/`), torchvision's `DIR/MNIST/raw/` or `DIR` itself.
- CIFAR-10: the *binary* version (`cifar-10-batches-bin/data_batch_{1..5}.bin`, `test_batch.bin`,
  extracted or as `cifar-10-binary.tar.gz`), or JPEG files `<split>/<class>/<NNNN>.jpg` inside
  `DIR/cifar10-jpeg/<split>.tar.gz`. The Python-pickle version is not read (unpickling runs code).
- Any other set: an ImageFolder tree `DIR/<split>/<class>/<image>` (name 'imagefolder'); classes
  are the sorted folder names, and every image must have the size of the first.

Images come back as uint8 NCHW arrays with int64 labels, in a fixed order.
"""

from __future__ import annotations

import gzip
import io
import struct
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

MNIST_CLASSES = [str(d) for d in range(10)]
FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
NAMES = ("mnist", "fashion-mnist", "cifar10", "imagefolder")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}

_CIFAR_RECORD = 1 + 3 * 32 * 32  # one label byte, then the red, green and blue 32x32 planes
_IDX_PREFIX = {"train": "train", "test": "t10k"}
_WHERE_TO_GET = {
    "mnist": "the four MNIST IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
    "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) in {root}/mnist/",
    "fashion-mnist": "the four Fashion-MNIST IDX files (train-images-idx3-ubyte.gz, ..., "
    "t10k-labels-idx1-ubyte.gz) in {root}/fashion-mnist/",
    "cifar10": "the CIFAR-10 binary version (cifar-10-binary.tar.gz, or its extracted cifar-10-batches-bin/) "
    "in {root}/",
    "imagefolder": "an ImageFolder tree {root}/<split>/<class>/<image files>",
}


class DatasetError(ValueError):
    """A data file is missing or not in the expected format."""


def missing_message(name: str, root: Path, split: str) -> str:
    """One line that says what to download and where to put it."""
    what = _WHERE_TO_GET.get(name, name).format(root=root)
    return f"no {name} {split} set under {root}: get {what}, and pass --data {root}"


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


def _find_idx(folder: Path, stem: str) -> Path | None:
    for name in (f"{stem}.gz", stem, stem.replace("-idx", ".idx")):  # the last: a common renamed form
        if (folder / name).is_file():
            return folder / name
    return None


def load_idx_set(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-format set in `root`: split 'train' or 'test' -> (N, 1, 28, 28) uint8, (N,) int64."""
    prefix = _IDX_PREFIX.get(split)
    if prefix is None:
        raise DatasetError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root)
    images_path = _find_idx(root, f"{prefix}-images-idx3-ubyte")
    labels_path = _find_idx(root, f"{prefix}-labels-idx1-ubyte")
    if images_path is None or labels_path is None:
        raise DatasetError(f"{root}: no {prefix}-images-idx3-ubyte[.gz] and {prefix}-labels-idx1-ubyte[.gz]")
    images = read_idx(images_path)
    labels = read_idx(labels_path).astype(np.int64)
    if images.ndim != 3 or labels.shape != (images.shape[0],):
        raise DatasetError(f"{root}: images {images.shape} and labels {labels.shape} do not match")
    return np.ascontiguousarray(images[:, None]), labels


def parse_cifar10_binary(raw: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Records of the CIFAR-10 binary version -> (N, 3, 32, 32) uint8, (N,) int64."""
    if len(raw) == 0 or len(raw) % _CIFAR_RECORD:
        raise DatasetError(f"{source}: {len(raw)} bytes is not a whole number of {_CIFAR_RECORD}-byte records")
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, _CIFAR_RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() >= len(CIFAR10_CLASSES):
        raise DatasetError(f"{source}: label {labels.max()} is out of range (0..9)")
    return np.ascontiguousarray(records[:, 1:].reshape(-1, 3, 32, 32)), labels


def _cifar10_batch_names(split: str) -> list[str]:
    if split == "train":
        return [f"data_batch_{i}.bin" for i in range(1, 6)]
    if split == "test":
        return ["test_batch.bin"]
    raise DatasetError(f"split must be 'train' or 'test', got {split!r}")


def load_cifar10_binary(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The extracted binary version: `folder/data_batch_{1..5}.bin` or `folder/test_batch.bin`."""
    parts = []
    for name in _cifar10_batch_names(split):
        path = Path(folder) / name
        try:
            parts.append(parse_cifar10_binary(path.read_bytes(), str(path)))
        except OSError as err:
            raise DatasetError(f"{path}: cannot read: {err}") from err
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def load_cifar10_binary_archive(archive: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """`cifar-10-binary.tar.gz` as distributed, read without extracting it."""
    wanted = _cifar10_batch_names(split)
    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                name = Path(member.name).name
                if member.isfile() and name in wanted:
                    found[name] = parse_cifar10_binary(tar.extractfile(member).read(), f"{archive}:{member.name}")
    except (OSError, tarfile.TarError, EOFError) as err:
        raise DatasetError(f"{archive}: cannot read: {err}") from err
    missing = [n for n in wanted if n not in found]
    if missing:
        raise DatasetError(f"{archive}: has no {', '.join(missing)}")
    return (np.concatenate([found[n][0] for n in wanted]), np.concatenate([found[n][1] for n in wanted]))


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
    except (OSError, tarfile.TarError, EOFError) as err:
        raise DatasetError(f"{archive}: cannot read: {err}") from err
    if not items:
        raise DatasetError(f"{archive}: holds no <class>/<name>.jpg images")
    items.sort(key=lambda t: t[0])
    images = np.stack([t[2] for t in items]).transpose(0, 3, 1, 2)
    labels = np.array([t[1] for t in items], dtype=np.int64)
    return np.ascontiguousarray(images), labels


def _image_files(folder: Path) -> Iterator[Path]:
    return (p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def load_image_folder(root: Path, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """ImageFolder tree `root/<split>/<class>/<image>` -> uint8 NCHW, int64 labels, sorted class names.

    Grayscale sets (every image mode 'L' or '1') come back with one channel, others as RGB.
    """
    from PIL import Image

    base = Path(root) / split
    classes = sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
    if not classes:
        raise DatasetError(f"{base}: no class folders")
    files = [(path, label) for label, name in enumerate(classes) for path in _image_files(base / name)]
    if not files:
        raise DatasetError(f"{base}: the class folders hold no images")
    decoded: list[Image.Image] = []
    for path, _ in files:
        try:
            with Image.open(path) as img:
                img.load()
                decoded.append(img.copy())
        except OSError as err:
            raise DatasetError(f"{path}: not a readable image: {err}") from err
    mode = "L" if all(img.mode in ("L", "1") for img in decoded) else "RGB"
    size = decoded[0].size
    arrays = []
    for (path, _), img in zip(files, decoded, strict=True):
        if img.size != size:
            raise DatasetError(f"{path}: is {img.size[0]}x{img.size[1]}, the set's first image is {size[0]}x{size[1]}")
        pixels = np.asarray(img.convert(mode), dtype=np.uint8)
        arrays.append(pixels[None] if mode == "L" else pixels.transpose(2, 0, 1))
    return np.ascontiguousarray(np.stack(arrays)), np.array([f[1] for f in files], dtype=np.int64), classes


def _load_cifar10(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    for folder in (root / "cifar-10-batches-bin", root / "cifar10" / "cifar-10-batches-bin", root):
        if all((folder / n).is_file() for n in _cifar10_batch_names(split)):
            return load_cifar10_binary(folder, split)
    for archive in (root / "cifar-10-binary.tar.gz", root / "cifar10" / "cifar-10-binary.tar.gz"):
        if archive.is_file():
            return load_cifar10_binary_archive(archive, split)
    for folder in (root / "cifar10-jpeg", root):
        if (folder / f"{split}.tar.gz").is_file():
            return load_cifar10_jpeg(folder, split)
    raise DatasetError(missing_message("cifar10", root, split))


def normalize(images: np.ndarray, mean: list[float], std: list[float]) -> np.ndarray:
    """uint8 NCHW images -> float32 (x / 255 - mean) / std per channel, as the reference models were trained."""
    m = np.asarray(mean, np.float32).reshape(1, -1, 1, 1)
    s = np.asarray(std, np.float32).reshape(1, -1, 1, 1)
    return ((images.astype(np.float32) / 255.0 - m) / s).astype(np.float32)


def load(name: str, root: Path | None, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Load a named set ('mnist', 'fashion-mnist', 'cifar10', 'imagefolder') found under `root`.

    `root` None (no --data given) raises DatasetError saying what to get and where to put it.
    """
    if root is None:
        raise DatasetError(missing_message(name, Path("DIR"), split))
    root = Path(root)
    if split not in ("train", "test"):
        raise DatasetError(f"split must be 'train' or 'test', got {split!r}")
    if name not in NAMES:
        raise DatasetError(f"unknown data set {name!r} (expected {', '.join(NAMES)})")
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder; {missing_message(name, root, split)}")
    if name in ("mnist", "fashion-mnist"):
        sub = {"mnist": ("mnist", "MNIST"), "fashion-mnist": ("fashion-mnist", "FashionMNIST")}[name]
        stem = f"{_IDX_PREFIX[split]}-images-idx3-ubyte"
        for folder in (root / sub[0], root / sub[1] / "raw", root):
            if _find_idx(folder, stem) is not None:
                images, labels = load_idx_set(folder, split)
                return images, labels, MNIST_CLASSES if name == "mnist" else FASHION_MNIST_CLASSES
        raise DatasetError(missing_message(name, root, split))
    if name == "cifar10":
        return (*_load_cifar10(root, split), CIFAR10_CLASSES)
    if not (root / split).is_dir():
        raise DatasetError(missing_message(name, root, split))
    return load_image_folder(root, split)
