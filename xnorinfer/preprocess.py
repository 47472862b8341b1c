"""Image decoding and preprocessing for `xnorinfer run` and `xnorinfer.preprocess`.

An image becomes the float32 NCHW tensor the model was trained on, as the model's metadata
says (the converter records it; `convert --mean/--std/--resize` set it):

1. decode with Pillow (PNG, JPEG, BMP, GIF, TIFF, WebP; grayscale, RGB, RGBA, palette, 16-bit),
   refusing images whose header declares more than `MAX_PIXELS` pixels before decoding them,
   and float images holding NaN or infinity; turn the image as its EXIF orientation says;
2. convert to the model's channel count: RGB from grayscale by replication, grayscale from RGB
   with Pillow's ITU-R 601-2 luma, alpha dropped, palette expanded;
3. scale pixels to [0, 1] (8-bit / 255, 16-bit / 65535);
4. resize: with `resize` set, the shorter side to `resize` then a centre crop to (H, W);
   otherwise directly to (H, W) when the size differs (bilinear);
5. normalize per channel: (x - mean) / std.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MAX_PIXELS = 64 * 1024 * 1024  # refuse larger images before decoding (decompression bombs)
MAX_RESIZE = 8192  # the shorter side after resizing: 8192^2 = MAX_PIXELS


class ImageError(ValueError):
    """An input image is missing, unreadable or unusable; the message names the file."""


@dataclass(frozen=True)
class InputSpec:
    """What the model expects: channels and size, plus resize and normalization."""

    channels: int
    height: int
    width: int
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    resize: int | None = None

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> InputSpec:
        """The spec a model's metadata describes; ValueError names the first bad entry.

        Checked when a model is loaded, so that a hostile file cannot ask preprocessing for
        absurd allocations: the input and the resized image stay within MAX_PIXELS.
        """
        shape = metadata.get("input_shape")
        if not isinstance(shape, Sequence) or len(shape) != 4 or not all(_is_int(v) and v >= 1 for v in shape):
            raise ValueError(f"model metadata has no NCHW input_shape of positive integers (got {shape!r})")
        _, c, h, w = (int(v) for v in shape)
        if h * w > MAX_PIXELS:
            raise ValueError(
                f"model metadata input_shape {list(shape)} is larger than the {MAX_PIXELS} pixels an image may have"
            )
        resize = metadata.get("resize")
        if resize is not None and (not _is_int(resize) or not max(h, w) <= resize <= MAX_RESIZE):
            raise ValueError(
                f"model metadata resize must be an integer from {max(h, w)} (the input size) to "
                f"{MAX_RESIZE}, got {resize!r}"
            )
        stats = {}
        for name in ("mean", "std"):
            values = metadata.get(name)
            if values is None:
                stats[name] = None
                continue
            if (
                not isinstance(values, list)
                or len(values) not in (1, c)
                or not all(_is_number(v) and math.isfinite(v) for v in values)
            ):
                raise ValueError(f"model metadata {name} must be a list of 1 or {c} finite numbers, got {values!r}")
            stats[name] = tuple(float(v) for v in values)
        if stats["std"] is not None and any(v == 0 for v in stats["std"]):
            raise ValueError("model metadata std has a zero entry")
        return cls(c, h, w, stats["mean"], stats["std"], int(resize) if resize else None)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _open(source: str | Path | Any):
    from PIL import Image, UnidentifiedImageError

    if not isinstance(source, (str, Path)):
        return source, "<image>"
    path = Path(source)
    if not path.exists():
        raise ImageError(f"{path}: file not found")
    if path.is_dir():
        raise ImageError(f"{path}: is a directory, not an image")
    if not path.is_file():  # a FIFO or device would block or never end
        raise ImageError(f"{path}: not a regular file")
    try:
        image = Image.open(path)
    except UnidentifiedImageError as err:
        raise ImageError(f"{path}: not a recognised image (PNG, JPEG, BMP, GIF, TIFF, WebP)") from err
    except Image.DecompressionBombError as err:
        raise ImageError(f"{path}: image dimensions are too large to decode safely ({err})") from err
    except OSError as err:
        raise ImageError(f"{path}: cannot read: {err}") from err
    return image, str(path)


_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


def _to_unit_array(image, channels: int, where: str, notes: list[str] | None = None) -> np.ndarray:
    """Decode to float32 HWC in [0, 1] with the requested channel count; conversions go to `notes`."""
    from PIL import Image, ImageOps

    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageError(f"{where}: image has zero size ({width}x{height})")
    if width * height > MAX_PIXELS:
        raise ImageError(f"{where}: image is {width}x{height}, more than the {MAX_PIXELS} pixels allowed")
    try:
        image.load()
        # A camera's JPEG stores the pixels as the sensor saw them and says in EXIF how to turn
        # them; the model must see the image as displayed.
        image = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ImageError(f"{where}: truncated or corrupted image ({err})") from err
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit (or 32-bit integer) grayscale: keep the precision, scale by the 16-bit range.
        gray = np.asarray(image, dtype=np.float64) / 65535.0
        gray = np.clip(gray, 0.0, 1.0).astype(np.float32)[..., None]
        return np.repeat(gray, channels, axis=2) if channels == 3 else gray
    if mode == "F":
        gray = np.asarray(image, dtype=np.float32)[..., None]
        if not np.isfinite(gray).all():
            raise ImageError(f"{where}: holds non-finite pixel values (NaN or infinity)")
        return np.repeat(gray, channels, axis=2) if channels == 3 else gray
    target = "L" if channels == 1 else "RGB"
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if notes is not None and channels == 1 and mode not in _GRAY_MODES:
        rgb = np.asarray(image.convert("RGB"))
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])):
            notes.append("colour image converted to grayscale")
    elif notes is not None and channels == 3 and mode in _GRAY_MODES:
        notes.append("grayscale image repeated into 3 channels")
    converted = image.convert(target)
    pixels = np.asarray(converted, dtype=np.float32) / 255.0
    return pixels[..., None] if channels == 1 else pixels


def _resize(pixels: np.ndarray, spec: InputSpec, where: str) -> np.ndarray:
    from PIL import Image

    h, w = pixels.shape[:2]
    if spec.resize is None and (h, w) == (spec.height, spec.width):
        return pixels
    planes = [Image.fromarray(pixels[..., c], mode="F") for c in range(pixels.shape[2])]
    if spec.resize is not None:
        scale = spec.resize / min(h, w)
        new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
        if new_w * new_h > MAX_PIXELS:  # a very long, thin image
            raise ImageError(
                f"{where}: resizing a {w}x{h} image to a shorter side of {spec.resize} gives "
                f"{new_w}x{new_h}, more than the {MAX_PIXELS} pixels allowed"
            )
        planes = [p.resize((new_w, new_h), Image.BILINEAR) for p in planes]
        left, top = (new_w - spec.width) // 2, (new_h - spec.height) // 2
        if left < 0 or top < 0:
            raise ValueError(f"resize {spec.resize} is smaller than the input size {spec.height}x{spec.width}")
        planes = [p.crop((left, top, left + spec.width, top + spec.height)) for p in planes]
    else:
        planes = [p.resize((spec.width, spec.height), Image.BILINEAR) for p in planes]
    return np.stack([np.asarray(p, dtype=np.float32) for p in planes], axis=2)


ASPECT_TOLERANCE = 0.05  # relative change of width/height that counts as distorting the image


def _note_resize(width: int, height: int, spec: InputSpec, notes: list[str]) -> None:
    if spec.resize is not None or (height, width) == (spec.height, spec.width):
        return  # resize + centre crop keeps the aspect ratio: the model's own preprocessing
    ratio, model_ratio = width / height, spec.width / spec.height
    if abs(ratio - model_ratio) > ASPECT_TOLERANCE * model_ratio:
        notes.append(f"{width}x{height} stretched to {spec.width}x{spec.height} (aspect ratio changed)")


def preprocess_image(source: str | Path | Any, spec: InputSpec, notes: list[str] | None = None) -> np.ndarray:
    """One image (path or PIL image) -> float32 (1, C, H, W) ready for `Session.run`.

    With `notes`, conversions that change what the image looks like to the model (colour to
    grayscale, grayscale to RGB, a changed aspect ratio) are appended to it as short phrases.
    """
    image, where = _open(source)
    try:
        pixels = _to_unit_array(image, spec.channels, where, notes)
        if notes is not None:
            _note_resize(pixels.shape[1], pixels.shape[0], spec, notes)
        pixels = _resize(pixels, spec, where)
    finally:
        if isinstance(source, (str, Path)):
            image.close()
    if spec.mean is not None:
        pixels = pixels - np.asarray(spec.mean, dtype=np.float32)
    if spec.std is not None:
        pixels = pixels / np.asarray(spec.std, dtype=np.float32)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)[None], dtype=np.float32)


def preprocess(image: str | Path | Any, session_or_spec: Any) -> np.ndarray:
    """`preprocess_image` with the InputSpec of a Session (from its metadata) or an InputSpec."""
    spec = (
        session_or_spec if isinstance(session_or_spec, InputSpec) else InputSpec.from_metadata(session_or_spec.metadata)
    )
    return preprocess_image(image, spec)
