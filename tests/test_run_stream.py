"""`xnorinfer run --output`: streaming many real images into Parquet/CSV/JSONL, errors, resume.

The images are the repository's real test data (tests/data): the 1000 MNIST test images written as
PNG files, and the 500 CIFAR-10 JPEGs (colour, 32x32: converted to the model's 28x28 grayscale).
The reference is independent of the code under test: the MNIST pixels straight from the IDX file,
normalised by hand as the model's metadata says, run through `Session.run` one image at a time, and
the softmax in float64.
"""

from __future__ import annotations

import csv
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xnorinfer import cli
from xnorinfer.batch import OutputError, columns_for, iter_inputs, open_output, run_stream
from xnorinfer.datasets import read_idx
from xnorinfer.preprocess import InputSpec, preprocess_image
from xnorinfer.session import load

DATA = Path(__file__).parent / "data"
MODEL = Path(cli.__file__).parent / "assets" / "default.xbin"  # LFC on MNIST, mean 0.5 std 0.5
TOP = 3


def softmax64(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64).reshape(-1)
    e = np.exp(z - z.max())
    return e / e.sum()


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("images")
    mnist = read_idx(DATA / "mnist" / "t10k-images-idx3-ubyte.gz")
    (root / "mnist").mkdir()
    for i, img in enumerate(mnist):
        Image.fromarray(img).save(root / "mnist" / f"{i:04d}.png")
    with tarfile.open(DATA / "cifar10-jpeg" / "test.tar.gz") as tar:
        tar.extractall(root / "cifar", filter="data")
    (root / "mnist" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a PNG body")
    whole = (root / "mnist" / "0000.png").read_bytes()
    (root / "mnist" / "truncated.png").write_bytes(whole[: len(whole) // 2])
    return {"root": root, "mnist": mnist}


@pytest.fixture(scope="module")
def session():
    return load(str(MODEL), threads=1)


def reference(session, images: dict) -> dict[str, tuple[list[int], list[float]]]:
    """path -> (top classes, top scores), one Session.run per image."""
    out: dict[str, tuple[list[int], list[float]]] = {}
    for i, img in enumerate(images["mnist"]):
        x = ((img.astype(np.float32) / 255.0 - 0.5) / 0.5)[None, None]
        p = softmax64(session.run(x))
        order = np.argsort(-p, kind="stable")[:TOP]
        out[str(images["root"] / "mnist" / f"{i:04d}.png")] = ([int(c) for c in order], [float(p[c]) for c in order])
    spec = InputSpec.from_metadata(session.metadata)
    for path in sorted((images["root"] / "cifar").rglob("*.jpg")):
        p = softmax64(session.run(preprocess_image(path, spec)))
        order = np.argsort(-p, kind="stable")[:TOP]
        out[str(path)] = ([int(c) for c in order], [float(p[c]) for c in order])
    return out


def read_rows(path: Path) -> list[dict]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    if path.suffix == ".csv":
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        for r in rows:
            for k, v in r.items():
                if v == "":
                    r[k] = None
                elif k.startswith("class_"):
                    r[k] = int(v)
                elif k.startswith("score_"):
                    r[k] = float(v)
        return rows
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def check_rows(rows: list[dict], ref: dict, errors: set[str]) -> None:
    paths = [r["path"] for r in rows]
    assert len(paths) == len(set(paths)), "a path appears twice"
    assert set(paths) == set(ref) | errors, "rows in != rows out"
    for r in rows:
        assert list(r)[: len(columns_for(TOP))] == columns_for(TOP)
        if r["path"] in errors:
            assert r["error"] and r["path"] in r["error"]
            assert all(r[f"class_{k}"] is None and r[f"score_{k}"] is None for k in range(1, TOP + 1))
            continue
        classes, scores = ref[r["path"]]
        assert r["error"] is None
        assert [r[f"class_{k}"] for k in range(1, TOP + 1)] == classes, r["path"]
        assert [r[f"label_{k}"] for k in range(1, TOP + 1)] == [str(c) for c in classes]
        np.testing.assert_allclose([r[f"score_{k}"] for k in range(1, TOP + 1)], scores, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("fmt", [".parquet", ".csv", ".jsonl"])
def test_folder_streams_to_each_format_with_the_image_by_image_predictions(fmt, images, session, tmp_path, capsys):
    out = tmp_path / f"results{fmt}"
    code = cli.main(["run", str(MODEL), str(images["root"]), "--output", str(out), "--top", str(TOP), "--batch", "64"])
    assert code == 0
    err = capsys.readouterr().err
    assert "img/s" in err  # the progress bar
    assert "wrote 1502 rows" in err and "(2 error rows)" in err
    mnist = images["root"] / "mnist"
    rows = read_rows(out)
    check_rows(rows, reference(session, images), {str(mnist / "corrupt.png"), str(mnist / "truncated.png")})
    by_path = {r["path"]: r for r in rows}
    assert "not a recognised image" in by_path[str(mnist / "corrupt.png")]["error"]
    assert "truncated" in by_path[str(mnist / "truncated.png")]["error"]
    # input order: folders walked in sorted order
    assert [r["path"] for r in rows] == list(iter_inputs([str(images["root"])]))


def test_globs_and_a_file_list_with_a_missing_file(images, session, tmp_path, capsys):
    mnist = images["root"] / "mnist"
    listed = [str(mnist / f"{i:04d}.png") for i in range(500, 1000)] + [str(tmp_path / "gone.png")]
    (tmp_path / "list.txt").write_text("\n".join(listed) + "\n")
    out = tmp_path / "r.jsonl"
    args = ["run", str(MODEL), str(mnist / "0[0-4]*.png"), "--list", str(tmp_path / "list.txt"), "-o", str(out)]
    assert cli.main([*args, "--top", str(TOP), "--no-progress"]) == 0
    rows = read_rows(out)
    ref = {k: v for k, v in reference(session, images).items() if k.startswith(str(mnist))}
    check_rows(rows, ref, {str(tmp_path / "gone.png")})
    assert "file not found" in rows[-1]["error"]
    assert "img/s" not in capsys.readouterr().err


class Interrupt(KeyboardInterrupt):
    pass


@pytest.mark.parametrize("fmt", [".parquet", ".csv", ".jsonl"])
def test_resume_after_an_interrupted_run_has_no_duplicates_or_gaps(fmt, images, session, tmp_path):
    mnist = images["root"] / "mnist"
    out = tmp_path / f"r{fmt}"

    def stop_after_three(rows: int) -> None:
        if rows >= 3 * 50:
            raise Interrupt

    with pytest.raises(Interrupt):
        run_stream(
            session, iter_inputs([str(mnist)]), out, top=TOP, batch=50, progress=False, on_batch=stop_after_three
        )
    first = read_rows(out)
    assert len(first) == 150  # every finished batch is in the file
    if fmt != ".parquet":  # a process killed mid-write leaves half a line: resume drops it
        with open(out, "a") as f:
            f.write('{"path": "/half/a/li' if fmt == ".jsonl" else "/half/a/li")
    code = cli.main(["run", str(MODEL), str(mnist), "-o", str(out), "--resume", "--top", str(TOP), "--no-progress"])
    assert code == 0
    rows = read_rows(out)
    assert rows[:150] == first
    ref = {k: v for k, v in reference(session, images).items() if k.startswith(str(mnist))}
    check_rows(rows, ref, {str(mnist / "corrupt.png"), str(mnist / "truncated.png")})
    # a second resume finds nothing to do
    assert cli.main(["run", str(MODEL), str(mnist), "-o", str(out), "--resume", "--top", str(TOP)]) == 0
    assert len(read_rows(out)) == len(rows)


def test_parquet_without_pyarrow_says_so(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # makes the import fail
    with pytest.raises(OutputError, match="needs pyarrow"):
        open_output(tmp_path / "r.parquet", 3, resume=False)
    with pytest.raises(OutputError, match="unknown output format"):
        open_output(tmp_path / "r.txt", 3, resume=False)


def test_without_tqdm_the_run_goes_on_without_a_bar(images, tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "tqdm", None)
    out = tmp_path / "r.csv"
    assert cli.main(["run", str(MODEL), str(images["root"] / "mnist" / "000*.png"), "-o", str(out)]) == 0
    assert "no progress bar: pip install tqdm" in capsys.readouterr().err
    assert len(read_rows(out)) == 10


def test_stream_only_flags_need_output(images, capsys):
    assert cli.main(["run", str(MODEL), "--list", "x.txt"]) == 2  # also without images
    assert "--list needs --output" in capsys.readouterr().err
    assert cli.main(["run", str(MODEL), str(images["root"] / "mnist" / "0000.png"), "--resume"]) == 2
    assert cli.main(["run", str(MODEL), "-o", "r.txt", str(images["root"] / "mnist" / "0000.png")]) == 2
    assert "unknown output format" in capsys.readouterr().err


def test_single_image_output_is_unchanged(images, capsys):
    # without --output, `run` prints as before (and still fails on a bad image, exit code 4)
    path = images["root"] / "mnist" / "0000.png"
    assert cli.main(["run", str(MODEL), str(path), "--top", "1"]) == 0
    assert capsys.readouterr().out == f"{path}: 7 (0.998)\n"
    assert cli.main(["run", str(MODEL), str(images["root"] / "mnist" / "corrupt.png")]) == 4
