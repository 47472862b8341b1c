"""Data set readers against the real files in ../shared/data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from xnorinfer import datasets

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_idx_sets(name):
    images, labels, classes = datasets.load(name, DATA, "test")
    assert images.shape == (10000, 1, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and set(np.unique(labels)) == set(range(10)) and len(classes) == 10
    # The foolbox samples are test[0..19] as lossless PNGs (see shared/data/README.md).
    from PIL import Image

    prefix = "mnist" if name == "mnist" else "fashionMNIST"
    for png in sorted((DATA / "foolbox-samples").glob(f"{prefix}_0*_*.png"))[:5]:
        index, label = (int(v) for v in png.stem.split("_")[1:])
        assert labels[index] == label
        assert np.array_equal(np.asarray(Image.open(png).convert("L")), images[index, 0])


def test_cifar10_test_set():
    images, labels, classes = datasets.load("cifar10", DATA, "test")
    assert images.shape == (10000, 3, 32, 32)
    assert np.bincount(labels).tolist() == [1000] * 10 and classes[3] == "cat"


def test_errors(tmp_path):
    with pytest.raises(datasets.DatasetError, match="cannot read"):
        datasets.read_idx(tmp_path / "missing.gz")
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05abc")
    with pytest.raises(datasets.DatasetError, match="holds 3 bytes, header declares 5"):
        datasets.read_idx(bad)
    with pytest.raises(datasets.DatasetError, match="unknown data set"):
        datasets.load("imagenet", tmp_path, "test")
