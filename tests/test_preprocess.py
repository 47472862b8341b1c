"""Image decoding and preprocessing: modes, channels, scaling, resizing, and bad files."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xnorinfer.preprocess import ImageError, InputSpec, preprocess_image

PHOTOS = Path(__file__).resolve().parent / "data" / "photos"


def _save(tmp_path, img: Image.Image, name: str) -> Path:
    path = tmp_path / name
    img.save(path)
    return path


def test_rgb_normalization_matches_manual(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (8, 6, 3), dtype=np.uint8)
    path = _save(tmp_path, Image.fromarray(pixels, "RGB"), "x.png")
    spec = InputSpec(3, 8, 6, mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 2.0))
    got = preprocess_image(path, spec)
    expect = ((pixels / 255.0 - np.array([0.1, 0.2, 0.3])) / np.array([0.5, 0.25, 2.0])).transpose(2, 0, 1)[None]
    assert got.shape == (1, 3, 8, 6) and got.dtype == np.float32
    np.testing.assert_allclose(got, expect, rtol=1e-6, atol=1e-6)


def test_gray_to_rgb_replicates_and_rgb_to_gray_uses_luma(tmp_path):
    gray = np.arange(20, dtype=np.uint8).reshape(4, 5) * 10
    g = preprocess_image(_save(tmp_path, Image.fromarray(gray, "L"), "g.png"), InputSpec(3, 4, 5))
    assert np.array_equal(g[0, 0], g[0, 2]) and np.allclose(g[0, 1], gray / 255.0)
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 200
    r = preprocess_image(_save(tmp_path, Image.fromarray(rgb, "RGB"), "r.png"), InputSpec(1, 4, 5))
    assert r.shape == (1, 1, 4, 5) and np.allclose(r, round(200 * 299 / 1000) / 255.0, atol=1 / 255)


def test_rgba_palette_and_16bit(tmp_path):
    rgba = np.full((3, 3, 4), 128, np.uint8)
    rgba[..., 3] = 0
    a = preprocess_image(_save(tmp_path, Image.fromarray(rgba, "RGBA"), "a.png"), InputSpec(3, 3, 3))
    assert np.allclose(a, 128 / 255.0)  # alpha is dropped
    pal = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), "P")
    pal.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    p = preprocess_image(_save(tmp_path, pal, "p.png"), InputSpec(3, 2, 2))
    assert np.allclose(p[0, :, 0, 0], [1, 0, 0]) and np.allclose(p[0, :, 0, 1], [0, 0, 1])
    deep = np.array([[0, 65535], [32768, 1000]], np.uint16)
    d = preprocess_image(_save(tmp_path, Image.fromarray(deep), "d.png"), InputSpec(1, 2, 2))
    np.testing.assert_allclose(d[0, 0], deep / 65535.0, rtol=1e-6)


def test_resize_and_centre_crop():
    spec = InputSpec(3, 224, 224, resize=256)
    x = preprocess_image(PHOTOS / "chelsea.png", spec)
    assert x.shape == (1, 3, 224, 224) and 0 <= x.min() and x.max() <= 1
    direct = preprocess_image(PHOTOS / "chelsea.png", InputSpec(3, 32, 32))
    assert direct.shape == (1, 3, 32, 32)


def _png_declaring(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(ihdr))
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
        + struct.pack(">I", 0)
        + b"IEND"
        + struct.pack(">I", zlib.crc32(b"IEND"))
    )


def test_errors_name_the_file(tmp_path):
    spec = InputSpec(1, 4, 4)
    with pytest.raises(ImageError, match=r"missing\.png: file not found"):
        preprocess_image(tmp_path / "missing.png", spec)
    with pytest.raises(ImageError, match="is a directory"):
        preprocess_image(tmp_path, spec)
    noise = tmp_path / "noise.png"
    noise.write_bytes(np.random.default_rng(1).bytes(300))
    with pytest.raises(ImageError, match=r"noise\.png: not a recognised image"):
        preprocess_image(noise, spec)
    good = _save(tmp_path, Image.fromarray(np.zeros((64, 64), np.uint8) + 7, "L"), "full.png")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:60])
    with pytest.raises(ImageError, match=r"truncated\.png: truncated or corrupted"):
        preprocess_image(truncated, spec)
    huge = tmp_path / "huge.png"
    huge.write_bytes(_png_declaring(100000, 100000))
    with pytest.raises(ImageError, match=r"huge\.png: image (is 100000x100000, more than|dimensions are too large)"):
        preprocess_image(huge, spec)
    with pytest.raises(ImageError, match="zero size"):
        preprocess_image(Image.new("L", (0, 0)), spec)


def test_spec_from_metadata():
    spec = InputSpec.from_metadata({"input_shape": [1, 3, 32, 32], "mean": [0.5] * 3, "std": [0.2] * 3})
    assert (spec.channels, spec.height, spec.width, spec.resize) == (3, 32, 32, None)
    with pytest.raises(ValueError, match="no NCHW input_shape"):
        InputSpec.from_metadata({})
    with pytest.raises(ValueError, match="std has a zero entry"):
        InputSpec.from_metadata({"input_shape": [1, 1, 2, 2], "std": [0.0]})
