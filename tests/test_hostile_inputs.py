"""Hostile inputs on the Python side (issue 13): no unpickling of untrusted archives, no lost input
file, the user's file mode, bounded CLI arguments, displayed text that cannot drive the terminal,
images turned as displayed and free of NaN. docs/reliability.md lists each case with its test."""

from __future__ import annotations

import io
import json
import os
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_api import small_model

import xnorinfer
from xnorinfer import cli, xbin
from xnorinfer.preprocess import ImageError, InputSpec, preprocess_image

torch = pytest.importorskip("torch")

EXIT_USAGE, EXIT_MODEL, EXIT_IMAGE, EXIT_CONVERT = 2, 3, 4, 5


class _Payload:
    """Unpickling this writes a marker file: proof that code from the archive ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def _torch_save(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _rewrite(src: Path, dst: Path, change) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, change(info.filename, zin.read(info)))
    return dst


@pytest.fixture(scope="module")
def good_pt2(tmp_path_factory) -> Path:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 10)).eval()
    path = tmp_path_factory.mktemp("pt2") / "good.pt2"
    torch.export.save(torch.export.export(model, (torch.zeros(1, 1, 4, 4),)), str(path))
    return path


def _evil_archives(good: Path, tmp_path: Path) -> dict[str, tuple[Path, Path, str]]:
    """name -> (archive, marker, the member the refusal must name)."""
    out = {}
    m1 = tmp_path / "marker_sample_inputs"
    out["sample_inputs"] = (
        _rewrite(
            good,
            tmp_path / "evil1.pt2",
            lambda n, d: _torch_save(_Payload(m1)) if n.endswith("data/sample_inputs/model.pt") else d,
        ),
        m1,
        "data/sample_inputs/model.pt",
    )
    m2 = tmp_path / "marker_weights"

    def pickled_weight(name: str, data: bytes) -> bytes:
        if name.endswith("model_weights_config.json"):
            config = json.loads(data)
            for entry in config["config"].values():
                entry["use_pickle"] = True
            return json.dumps(config).encode()
        return _torch_save(_Payload(m2)) if "/data/weights/weight_" in name else data

    out["use_pickle"] = (_rewrite(good, tmp_path / "evil2.pt2", pickled_weight), m2, "data/weights/")
    return out


@pytest.mark.parametrize("case", ["sample_inputs", "use_pickle"])
def test_pickles_in_a_pt2_never_run(good_pt2, tmp_path, capsys, case):
    evil, marker, member = _evil_archives(good_pt2, tmp_path)[case]
    # The payload is live: torch's own loader runs it (so this test can fail).
    try:
        torch.export.load(str(evil))
    except Exception:  # noqa: BLE001 - torch fails after running it; the marker is what matters
        pass
    assert marker.exists()
    marker.unlink()
    capsys.readouterr()  # torch's own complaints while it ran the payload
    out = tmp_path / "evil.xbin"
    assert cli.main(["convert", str(evil), "-o", str(out)]) == EXIT_CONVERT
    err = capsys.readouterr().err
    assert "Traceback" not in err and member in err and "--trust-pickle" in err
    with pytest.raises(xnorinfer.convert.ConversionError, match="unpickle"):
        xnorinfer.convert.convert(str(evil), output=out)
    model, _ = small_model(tmp_path, np.random.default_rng(0))
    assert cli.main(["bench", str(model), "--runs", "1", "--compare", str(evil)]) == EXIT_MODEL
    assert member in capsys.readouterr().err
    assert not marker.exists() and not out.exists()


def test_use_pickle_flag_alone_is_refused(good_pt2, tmp_path):
    """A config that asks for unpickling is refused even when the member itself is harmless."""

    def flag(name: str, data: bytes) -> bytes:
        if name.endswith("model_weights_config.json"):
            config = json.loads(data)
            next(iter(config["config"].values()))["use_pickle"] = True
            return json.dumps(config).encode()
        return data

    evil = _rewrite(good_pt2, tmp_path / "flag.pt2", flag)
    with pytest.raises(xnorinfer.convert.ConversionError, match=r"model_weights_config.json marks .* \(use_pickle\)"):
        xnorinfer.convert.convert(str(evil))
    # The untouched archive converts.
    assert xnorinfer.convert.convert(str(good_pt2), output=tmp_path / "ok.xbin").ops


def test_raw_weights_that_start_like_a_pickle_are_not_refused(tmp_path):
    """Raw float32 data starts with byte 0x80 (a pickle's protocol opcode) for 1 tensor in 256; a member the
    config declares raw is never unpickled by torch, so it must not be taken for a pickle."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 10)).eval()
    with torch.no_grad():
        model[1].bias[0] = float(np.frombuffer(b"\x80\x00\x00\x3f", np.float32)[0])  # little-endian: byte 0x80 first
    path = tmp_path / "raw80.pt2"
    torch.export.save(torch.export.export(model, (torch.zeros(1, 1, 4, 4),)), str(path))
    with zipfile.ZipFile(path) as z:
        assert any(n.split("/")[-2:-1] == ["weights"] and z.read(n)[:1] == b"\x80" for n in z.namelist())
    graph = xnorinfer.convert.convert(str(path), output=tmp_path / "raw80.xbin")
    assert graph.ops and (tmp_path / "raw80.xbin").exists()


def test_output_that_is_the_input_is_refused(good_pt2, tmp_path, capsys):
    src = tmp_path / "m.pt2"
    src.write_bytes(good_pt2.read_bytes())
    before = src.read_bytes()
    link = tmp_path / "link.pt2"
    link.symlink_to(src)
    hard = tmp_path / "hard.pt2"
    os.link(src, hard)
    for output in (src, link, hard):
        assert cli.main(["convert", str(src), "-o", str(output)]) == EXIT_USAGE
        assert "is the input model itself" in capsys.readouterr().err
    named_xbin = tmp_path / "model.xbin"  # convert model.xbin (no -o) would write model.xbin
    named_xbin.write_bytes(before)
    assert cli.main(["convert", str(named_xbin)]) == EXIT_USAGE
    assert named_xbin.read_bytes() == before and src.read_bytes() == before
    with pytest.raises(xnorinfer.convert.ConversionError, match="is the input model itself"):
        xnorinfer.convert.convert(str(src), output=str(link))


def test_xbin_mode_follows_the_umask(tmp_path, rng):
    old = os.umask(0o022)
    try:
        path, _ = small_model(tmp_path, rng)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    old = os.umask(0o077)
    try:
        b = xbin.read(path)
        xbin.write(b, tmp_path / "private.xbin")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "private.xbin").stat().st_mode) == 0o600
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize(
    "args",
    [
        ["bench", "M", "--batch", "1000000000"],
        ["bench", "M", "--threads", "2147483648"],
        ["run", "M", "I", "--threads", "1025"],
        ["bench", "M", "--batch", "1e9"],
        ["demo", "--threads", "0"],
    ],
)
def test_absurd_numbers_are_usage_errors(tmp_path, rng, capsys, args):
    model, image = small_model(tmp_path, rng)
    argv = [str(model) if a == "M" else str(image) if a == "I" else a for a in args]
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "expected" in err


def test_undecodable_file_names(tmp_path, rng, capsys):
    model, image = small_model(tmp_path, rng)
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/m\xff.xbin"))
    odd.write_bytes(model.read_bytes())
    assert cli.main(["inspect", str(odd)]) == 0
    assert "m\\xff.xbin" in capsys.readouterr().out
    assert xnorinfer.load(odd, threads=1).input_shape == (1, 1, 8, 8)
    broken = Path(os.fsdecode(bytes(tmp_path) + b"/b\xfe.xbin"))
    broken.write_bytes(b"garbage")
    assert cli.main(["run", str(broken), str(image)]) == EXIT_MODEL
    assert "b\\xfe.xbin" in capsys.readouterr().err


def test_names_and_labels_cannot_drive_the_terminal(tmp_path, rng, capsys):
    model, image = small_model(tmp_path, rng)
    g = xbin.read(model)
    g.ops[0].name = "conv\x1b[2J\nFAKE LINE"
    g.metadata["labels"] = ["\x1b]0;title\x07zero"] + [str(i) for i in range(1, 10)]
    evil = tmp_path / "escapes.xbin"
    xbin.write(g, evil)
    assert cli.main(["inspect", str(evil)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and not any(line.startswith("FAKE") for line in out.splitlines())
    assert "conv\\x1b[2J\\nFAKE" in out
    assert cli.main(["run", str(evil), str(image), "--top", "10"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\\x1b]0;title\\x07zero" in out


def test_exif_orientation_is_applied(tmp_path):
    """A JPEG stored sideways with orientation 6 (rotate 90 degrees clockwise to display)."""
    shown = np.zeros((40, 20), np.uint8)  # displayed: 20 wide, 40 tall, a bright bar on top
    shown[:8] = 255
    stored = np.rot90(shown, 1)  # what the camera wrote: turning it clockwise gives `shown`
    img = Image.fromarray(np.ascontiguousarray(stored), "L")
    exif = img.getexif()
    exif[0x0112] = 6
    path = tmp_path / "sideways.jpg"
    img.save(path, exif=exif.tobytes(), quality=100)
    x = preprocess_image(path, InputSpec(1, 40, 20))
    assert x.shape == (1, 1, 40, 20)
    assert x[0, 0, :6].mean() > 0.9 and x[0, 0, 10:].mean() < 0.1  # the bar is on top, as displayed


def test_float_images_with_nan_or_inf_are_refused(tmp_path):
    for bad in (np.nan, np.inf):
        pixels = np.full((4, 4), 0.5, np.float32)
        pixels[1, 2] = bad
        path = tmp_path / f"f{bad}.tif"
        Image.fromarray(pixels, "F").save(path)
        with pytest.raises(ImageError, match="non-finite pixel values"):
            preprocess_image(path, InputSpec(1, 4, 4))


@pytest.mark.parametrize(
    "change, expect",
    [
        ({"resize": 200000}, "resize must be an integer from 8"),
        ({"resize": [1]}, "resize must be an integer"),
        ({"resize": 4}, "resize must be an integer from 8"),
        ({"mean": 5}, "mean must be a list"),
        ({"std": ["0.5"]}, "std must be a list of 1 or 1 finite numbers"),
        ({"std": [0.5, 0.5, 0.5]}, "std must be a list of 1 or 1"),
        ({"labels": "0123456789"}, "labels must be a list of strings"),
    ],
)
def test_bad_preprocessing_metadata_is_refused_at_load(tmp_path, rng, capsys, change, expect):
    model, image = small_model(tmp_path, rng)
    g = xbin.read(model)
    g.metadata.update(change)
    bad = tmp_path / "bad_meta.xbin"
    xbin.write(g, bad)
    with pytest.raises(xbin.XbinError, match=expect):
        xnorinfer.load(bad, threads=1)
    assert cli.main(["run", str(bad), str(image)]) == EXIT_MODEL
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expect in err


def test_an_input_too_large_for_any_image_is_refused_at_load(tmp_path):
    from xnorinfer import ir

    side = 16384  # 16384^2 = 256 Mi pixels: preprocessing would allocate 1 GiB per channel and image
    tensors = {name: ir.Tensor(name, (1, side, side, 1), "f32") for name in ("x", "y")}
    g = ir.Graph(
        inputs=["x"],
        outputs=["y"],
        tensors=tensors,
        ops=[ir.Op("relu", "relu", ["x"], ["y"])],
        metadata={"input_shape": [1, 1, side, side]},
    )
    path = tmp_path / "huge_input.xbin"
    xbin.write(g, path)
    with pytest.raises(xbin.XbinError, match="larger than the 67108864 pixels"):
        xnorinfer.load(path, threads=1)
