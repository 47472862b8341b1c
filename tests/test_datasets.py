"""Data set readers, on the real subset shipped in tests/data and on files built in the test."""

from __future__ import annotations

import io
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xnorinfer import datasets

DATA = Path(__file__).resolve().parent / "data"
SAMPLES = Path(__file__).resolve().parents[1] / "xnorinfer" / "assets" / "samples"


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_idx_sets(name):
    images, labels, classes = datasets.load(name, DATA, "test")
    assert images.shape == (1000, 1, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (1000,) and set(np.unique(labels)) == set(range(10)) and len(classes) == 10
    # Real digits and garments: dark background, some bright strokes, every class well represented.
    assert np.median(images[:, 0, 0, 0]) == 0 and images.max() == 255 and np.bincount(labels).min() >= 70


def test_shipped_samples_are_the_first_mnist_test_images():
    images, labels, _ = datasets.load("mnist", DATA, "test")
    samples = sorted(SAMPLES.glob("mnist_*.png"))
    assert len(samples) == 10
    for png in samples:
        index, label = (int(v) for v in png.stem.split("_")[1:])
        assert labels[index] == label
        assert np.array_equal(np.asarray(Image.open(png).convert("L")), images[index, 0])


def test_cifar10_jpeg_subset():
    images, labels, classes = datasets.load("cifar10", DATA, "test")
    assert images.shape == (500, 3, 32, 32) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [50] * 10 and classes[3] == "cat"
    assert images.std() > 30  # photos, not a constant


def _cifar_binary(images: np.ndarray, labels: np.ndarray) -> bytes:
    """The published record layout, written independently of the reader: label, R, G, B planes."""
    return b"".join(bytes([int(y)]) + img.astype(np.uint8).tobytes() for img, y in zip(images, labels, strict=True))


def test_cifar10_binary_version_folder_and_archive(tmp_path):
    images, labels, _ = datasets.load("cifar10", DATA, "test")
    folder = tmp_path / "extracted" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    (folder / "test_batch.bin").write_bytes(_cifar_binary(images[:100], labels[:100]))
    for i in range(1, 6):
        sl = slice(100 * (i - 1), 100 * i)
        (folder / f"data_batch_{i}.bin").write_bytes(_cifar_binary(images[sl], labels[sl]))
    got, got_labels, _ = datasets.load("cifar10", tmp_path / "extracted", "test")
    assert np.array_equal(got, images[:100]) and np.array_equal(got_labels, labels[:100])
    train, train_labels, _ = datasets.load("cifar10", tmp_path / "extracted", "train")
    assert np.array_equal(train, images) and np.array_equal(train_labels, labels)
    # The distributed archive, read without extracting.
    archive = tmp_path / "dl" / "cifar-10-binary.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-bin")
    got, got_labels, _ = datasets.load("cifar10", archive.parent, "test")
    assert np.array_equal(got, images[:100]) and np.array_equal(got_labels, labels[:100])
    (folder / "test_batch.bin").write_bytes(b"\x00" * 3073 + b"\x01")
    with pytest.raises(datasets.DatasetError, match="not a whole number of 3073-byte records"):
        datasets.load("cifar10", tmp_path / "extracted", "test")


def test_image_folder_tree(tmp_path):
    rng = np.random.default_rng(0)
    expect = {}
    for cls in ("zebra", "ant"):
        (tmp_path / "test" / cls).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 256, (6, 5), dtype=np.uint8)
            Image.fromarray(pixels, "L").save(tmp_path / "test" / cls / f"{i}.png")
            expect[(cls, i)] = pixels
    (tmp_path / "test" / "ant" / "notes.txt").write_text("not an image")
    images, labels, classes = datasets.load("imagefolder", tmp_path, "test")
    assert classes == ["ant", "zebra"] and images.shape == (6, 1, 6, 5)
    assert labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert np.array_equal(images[4, 0], expect[("zebra", 1)])
    Image.fromarray(np.zeros((7, 5, 3), np.uint8)).save(tmp_path / "test" / "zebra" / "odd.png")
    with pytest.raises(datasets.DatasetError, match=r"odd\.png: is 5x7, the set's first image is 5x6"):
        datasets.load("imagefolder", tmp_path, "test")


def test_uncompressed_idx_in_torchvision_layout(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    pixels = np.arange(2 * 28 * 28, dtype=np.uint32).astype(np.uint8).reshape(2, 28, 28)
    (raw / "t10k-images-idx3-ubyte").write_bytes(struct.pack(">BBBBIII", 0, 0, 8, 3, 2, 28, 28) + pixels.tobytes())
    (raw / "t10k-labels-idx1-ubyte").write_bytes(struct.pack(">BBBBI", 0, 0, 8, 1, 2) + bytes([3, 9]))
    images, labels, _ = datasets.load("mnist", tmp_path, "test")
    assert np.array_equal(images[:, 0], pixels) and labels.tolist() == [3, 9]


def test_errors(tmp_path):
    with pytest.raises(datasets.DatasetError, match="cannot read"):
        datasets.read_idx(tmp_path / "missing.gz")
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05abc")
    with pytest.raises(datasets.DatasetError, match="holds 3 bytes, header declares 5"):
        datasets.read_idx(bad)
    with pytest.raises(datasets.DatasetError, match="unknown data set"):
        datasets.load("imagenet", tmp_path, "test")
    with pytest.raises(datasets.DatasetError, match=r"no mnist train set under .*: get the four MNIST IDX files"):
        datasets.load("mnist", DATA, "train")  # the shipped subset has the test split only
    with pytest.raises(datasets.DatasetError, match="no cifar10 test set under .*binary version"):
        datasets.load("cifar10", tmp_path, "test")
    with pytest.raises(datasets.DatasetError, match="no such folder"):
        datasets.load("mnist", tmp_path / "nowhere", "test")
    broken = tmp_path / "j"
    broken.mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("test/llama/0000.jpg")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    (broken / "test.tar.gz").write_bytes(buf.getvalue())
    with pytest.raises(datasets.DatasetError, match="unexpected member test/llama/0000.jpg"):
        datasets.load("cifar10", broken, "test")
