"""CLI error paths: one `xnorinfer: error:` line naming the file and the problem, the documented
exit code (docs/cli.md), no traceback unless --debug; and the Python API's input-shape checks."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_api import small_model

import xnorinfer
from xnorinfer import cli, xbin

EXIT_FAILED, EXIT_USAGE, EXIT_MODEL, EXIT_IMAGE = 1, 2, 3, 4


@pytest.fixture
def model(tmp_path, rng):
    return small_model(tmp_path, rng)


def _error_line(err: str) -> str:
    """The CLI's error output must be exactly one line, with no traceback."""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("xnorinfer: error: "), err
    return lines[0]


def _run(capsys, *args) -> tuple[int, str]:
    rc = cli.main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, _error_line(out.err)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_declaring(width: int, height: int) -> bytes:
    """A PNG whose IHDR (valid CRC) declares width x height grayscale; the pixel data is tiny."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + _png_chunk(b"IEND", b"")
    )


# --- model file errors (exit 3) ------------------------------------------------------------------


def _patched_version(data: bytes, version: int) -> bytes:
    """Set the header's format version and recompute the header CRC (docs/xbin-format.md)."""
    b = bytearray(data)
    assert b[:8] == b"XNORBIN\0"
    struct.pack_into("<I", b, 8, version)
    struct.pack_into("<I", b, 28, zlib.crc32(bytes(b[:28])))
    return bytes(b)


def _flip_data_byte(data: bytes) -> bytes:
    """Flip the first byte of section 1 (the first raw data section) without touching any CRC."""
    count = struct.unpack_from("<I", data, 12)[0]
    assert count >= 2
    kind, _, offset, size = struct.unpack_from("<IIQQ", data, 64 + 64 * 1)
    assert kind == 2 and size > 0
    b = bytearray(data)
    b[offset] ^= 0xFF
    return bytes(b)


def _bad_models(path, tmp_path):
    data = path.read_bytes()
    cases = {
        "missing": (None, ["cannot open", "no such file"]),
        "random": (np.random.default_rng(1).bytes(300), ["not an .xbin"]),
        "truncated": (data[: len(data) // 2], ["truncated"]),
        "corrupted": (_flip_data_byte(data), ["checksum"]),
        "newer": (_patched_version(data, 2), ["format version 2 is newer"]),
    }
    return {name: (tmp_path / f"{name}.xbin", content, expect) for name, (content, expect) in cases.items()}


@pytest.mark.parametrize("case", ["missing", "random", "truncated", "corrupted", "newer"])
@pytest.mark.parametrize("command", ["run", "inspect", "bench"])
def test_bad_model_file_exits_3(model, tmp_path, capsys, case, command):
    path, image = model
    bad, content, expect = _bad_models(path, tmp_path)[case]
    if content is not None:
        bad.write_bytes(content)
    args = {"run": ["run", bad, image], "inspect": ["inspect", bad], "bench": ["bench", bad, "--runs", "1"]}[command]
    rc, line = _run(capsys, *args)
    assert rc == EXIT_MODEL, line
    assert str(bad) in line
    assert any(e in line.lower() for e in expect), line


def test_bad_model_file_api_raises_xbin_error(model, tmp_path):
    path, _ = model
    for bad, content, expect in _bad_models(path, tmp_path).values():
        if content is None:
            continue
        bad.write_bytes(content)
        with pytest.raises(xbin.XbinError) as err:
            xnorinfer.load(bad, threads=1)
        assert str(bad) in str(err.value) and any(e in str(err.value).lower() for e in expect)


# --- image errors (exit 4) -----------------------------------------------------------------------


def test_missing_image(model, tmp_path, capsys):
    path, _ = model
    missing = tmp_path / "nope.png"
    rc, line = _run(capsys, "run", path, missing)
    assert rc == EXIT_IMAGE
    assert line == f"xnorinfer: error: {missing}: file not found"


def test_not_an_image(model, tmp_path, capsys):
    path, _ = model
    fake = tmp_path / "notes.png"
    fake.write_text("this is not an image\n" * 10)
    rc, line = _run(capsys, "run", path, fake)
    assert rc == EXIT_IMAGE
    assert str(fake) in line and "not a recognised image" in line


def test_truncated_image(model, tmp_path, capsys):
    path, image = model
    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (64, 64), dtype=np.uint8), "L").save(big)
    data = big.read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[: len(data) // 2])
    rc, line = _run(capsys, "run", path, cut)
    assert rc == EXIT_IMAGE
    assert str(cut) in line and "truncated" in line


def test_image_declaring_huge_dimensions(model, tmp_path, capsys):
    path, _ = model
    huge = tmp_path / "huge.png"
    huge.write_bytes(_png_declaring(100_000, 100_000))
    assert huge.stat().st_size < 200
    rc, line = _run(capsys, "run", path, huge)
    assert rc == EXIT_IMAGE
    assert str(huge) in line and "too large" in line


def test_image_over_the_pixel_limit_below_pillows(model, tmp_path, capsys):
    # 9000 x 9000 = 81M pixels: over xnorinfer's 64 Mi limit, under Pillow's bomb threshold.
    path, _ = model
    big = tmp_path / "big.png"
    big.write_bytes(_png_declaring(9000, 9000))
    rc, line = _run(capsys, "run", path, big)
    assert rc == EXIT_IMAGE
    assert str(big) in line and "9000x9000" in line and "pixels allowed" in line


def test_folder_without_images(model, tmp_path, capsys):
    path, _ = model
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "readme.txt").write_text("no images here")
    rc, line = _run(capsys, "run", path, folder)
    assert rc == EXIT_IMAGE
    assert str(folder) in line and "no images" in line


def test_a_bad_image_among_good_ones_still_fails(model, tmp_path, capsys):
    path, image = model
    missing = tmp_path / "gone.png"
    rc, line = _run(capsys, "run", path, image, missing, "--batch", "1")
    assert rc == EXIT_IMAGE and str(missing) in line


# --- usage errors (exit 2) -----------------------------------------------------------------------


@pytest.mark.parametrize("args", [["--top", "0"], ["--top", "x"], ["--batch", "0"], ["--threads", "-1"]])
def test_run_bad_option_is_usage(model, capsys, args):
    path, image = model
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", str(path), str(image), *args])
    assert exc.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert (
        f"argument {args[0]}: expected a positive integer, got 'x'" in err
        if args[1] == "x"
        else f"argument {args[0]}: expected an integer from 1 to " in err
    )


def test_run_without_images_is_usage(model, capsys):
    path, _ = model
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", str(path)])
    assert exc.value.code == EXIT_USAGE
    assert "Traceback" not in capsys.readouterr().err


def test_success_prints_no_error(model, capsys):
    path, image = model
    assert cli.main(["run", str(path), str(image), "--top", "2", "--json"]) == 0
    out = capsys.readouterr()
    assert out.err == "" and '"image"' in out.out


# --- in a real process: no traceback, and --debug shows it ---------------------------------------


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "xnorinfer", *map(str, args)], capture_output=True, text=True, cwd=tempfile.gettempdir()
    )


def test_subprocess_error_has_no_traceback_and_debug_shows_it(model, tmp_path):
    path, _ = model
    missing = tmp_path / "nope.png"
    res = _cli("run", path, missing)
    assert res.returncode == EXIT_IMAGE
    assert _error_line(res.stderr) == f"xnorinfer: error: {missing}: file not found"
    res = _cli("--debug", "run", path, missing)
    assert res.returncode != 0
    assert "Traceback" in res.stderr and "file not found" in res.stderr


def test_subprocess_bad_model_and_debug(model, tmp_path):
    path, image = model
    bad = tmp_path / "newer.xbin"
    bad.write_bytes(_patched_version(path.read_bytes(), 7))
    res = _cli("run", bad, image)
    assert res.returncode == EXIT_MODEL
    assert "format version 7 is newer" in _error_line(res.stderr)
    res = _cli("--debug", "run", bad, image)
    assert res.returncode != 0
    assert "Traceback" in res.stderr and "format version 7 is newer" in res.stderr


# --- Python API: batches of the wrong shape ------------------------------------------------------


def test_run_wrong_channels_raises_value_error(model):
    path, _ = model
    session = xnorinfer.load(path, threads=1)
    with pytest.raises(ValueError, match=r"input must be .*NCHW \(N, 1, H, W\).*got \(1, 3, 8, 8\)"):
        session.run(np.zeros((1, 3, 8, 8), np.float32))


def test_run_3d_input_raises_value_error(model):
    path, _ = model
    session = xnorinfer.load(path, threads=1)
    with pytest.raises(ValueError, match=r"input must be NCHW \(N, C, H, W\), got shape \(1, 8, 8\)") as err:
        session.run(np.zeros((1, 8, 8), np.float32))
    assert str(path) in str(err.value)


def test_run_empty_batch_raises_value_error(model):
    path, _ = model
    session = xnorinfer.load(path, threads=1)
    with pytest.raises(ValueError, match=r"N >= 1"):
        session.run(np.zeros((0, 1, 8, 8), np.float32))


@pytest.mark.parametrize("hw", [(9, 8), (4, 4)])
def test_run_wrong_spatial_size_raises_value_error(model, hw):
    path, _ = model
    session = xnorinfer.load(path, threads=1)
    with pytest.raises(ValueError):
        session.run(np.zeros((2, 1, *hw), np.float32))


def test_run_wrong_spatial_size_message_names_expected_size(model):
    path, _ = model
    session = xnorinfer.load(path, threads=1)
    with pytest.raises(ValueError, match=r"8, 8|8x8") as err:
        session.run(np.zeros((1, 1, 9, 8), np.float32))
    assert "(1, 1, 9, 8)" in str(err.value) or "9x8" in str(err.value)


def test_run_integer_dtype_raises_type_error(model):
    path, _ = model
    session = xnorinfer.load(path, threads=1)
    with pytest.raises(TypeError, match="float32"):
        session.run(np.zeros((1, 1, 8, 8), np.int32))


# --- traps a newcomer met (issue 10): each says what is wrong ------------------------------------


@pytest.mark.parametrize("command", ["run", "inspect", "bench"])
def test_a_folder_or_a_pipe_as_the_model(model, tmp_path, capsys, command):
    _, image = model
    fifo = tmp_path / "pipe.xbin"
    os.mkfifo(fifo)
    for bad, expect in ((tmp_path, "is a directory, not a .xbin file"), (fifo, "not a regular file")):
        args = {"run": ["run", bad, image], "inspect": ["inspect", bad], "bench": ["bench", bad, "--runs", "1"]}
        rc, line = _run(capsys, *args[command])
        assert rc == EXIT_MODEL and line == f"xnorinfer: error: {bad}: {expect}" + (
            " (a pipe or device cannot hold a .xbin model)" if bad == fifo else ""
        )


def test_a_pipe_as_the_image_is_refused_at_once(model, tmp_path, capsys):
    path, _ = model
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    rc, line = _run(capsys, "run", path, fifo)  # a FIFO with no writer would block a read forever
    assert rc == EXIT_IMAGE and line == f"xnorinfer: error: {fifo}: not a regular file"


def test_a_bad_isa_variable_is_named(model, capsys, monkeypatch):
    path, image = model
    monkeypatch.setenv("XNORINFER_ISA", "bogus")
    rc, line = _run(capsys, "run", path, image)
    assert rc == EXIT_USAGE
    assert "environment variable XNORINFER_ISA=bogus is not an ISA path" in line
    assert "expected scalar, avx2 or avx512" in line and "input" not in line
    with pytest.raises(ValueError, match="XNORINFER_ISA=bogus"):
        xnorinfer.load(path)


def test_debug_works_after_the_command(model, tmp_path):
    path, _ = model
    missing = tmp_path / "nope.png"
    res = _cli("run", path, missing, "--debug")
    assert res.returncode != 0 and "Traceback" in res.stderr and "file not found" in res.stderr
    res = _cli("run", path, missing)
    assert "Traceback" not in res.stderr


def test_top_above_the_class_count_says_so(model, capsys):
    path, image = model
    assert cli.main(["run", str(path), str(image), "--top", "15"]) == 0
    out = capsys.readouterr()
    assert out.err.strip() == "xnorinfer: warning: --top 15 is more than the model's 10 classes; printing all 10"
    assert out.out.count("(") == 10


def test_a_colour_photo_into_a_grayscale_model_is_flagged(tmp_path, capsys):
    """The shipped 28x28 grayscale model and a 451x300 colour photo: say what was converted."""
    photo = Path(__file__).resolve().parent / "data" / "photos" / "chelsea.png"
    default = Path(xnorinfer.__file__).resolve().parent / "assets" / "default.xbin"
    assert cli.main(["run", str(default), str(photo)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"xnorinfer: warning: {photo}: colour image converted to grayscale, 451x300 stretched to 28x28 "
        f"(aspect ratio changed) (the model takes 28x28 grayscale images)"
    ]
    assert cli.main(["run", str(default), str(photo), "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    # An image already in the model's form gets no warning, nor does a gray image saved as RGB.
    gray = tmp_path / "gray_as_rgb.png"
    Image.fromarray(np.full((28, 28, 3), 90, np.uint8), "RGB").save(gray)
    samples = sorted((default.parent / "samples").glob("*.png"))[:2]
    assert cli.main(["run", str(default), str(gray), *map(str, samples)]) == 0
    assert capsys.readouterr().err == ""


def test_demo_names_the_model_and_how_to_get_the_comparison(tmp_path):
    no_torch = "import sys; sys.modules['torch'] = None; from xnorinfer.cli import main; sys.exit(main(['demo']))"
    res = subprocess.run([sys.executable, "-c", no_torch], capture_output=True, text=True, cwd=tempfile.gettempdir())
    assert res.returncode == 0, res.stderr
    default = Path(xnorinfer.__file__).resolve().parent / "assets" / "default.xbin"
    assert f"model: {default}" in res.stdout
    assert "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in res.stdout
    assert "xnorinfer[convert]" in res.stdout
