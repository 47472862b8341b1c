"""Models with several inputs (issue 12): converted, verified bit for bit, and the engine compared with
eager PyTorch on every ISA path and thread count; Session.run with a list, a tuple or a dict."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from realcode_support import binary_layers, run_everywhere
from torch import nn

import xnorinfer
from xnorinfer.convert import convert
from xnorinfer.nn.layers import BinaryConv2d, BinaryLinear


class TwoImages(nn.Module):
    """Two images (a grey and a colour view) through a binary conv branch each, fused by a sum."""

    def __init__(self) -> None:
        super().__init__()
        self.stem_a = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16))
        self.stem_b = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16))
        self.bin_a = nn.Sequential(BinaryConv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32))
        self.bin_b = nn.Sequential(BinaryConv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32))
        self.head = nn.Linear(32, 10)

    def forward(self, grey: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
        a = self.bin_a(self.stem_a(grey))
        b = self.bin_b(self.stem_b(colour))
        return self.head((a + b).mean((2, 3)))


class ImageAndMetadata(nn.Module):
    """An image through a binary conv, a (N, F) metadata vector through a binary linear, concatenated."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16))
        self.conv = nn.Sequential(BinaryConv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.MaxPool2d(2))
        self.side = nn.Sequential(nn.Linear(7, 32), nn.BatchNorm1d(32), BinaryLinear(32, 16), nn.BatchNorm1d(16))
        self.head = nn.Linear(16 * 4 * 4 + 16, 5)

    def forward(self, image: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.conv(self.stem(image)), 1)
        return self.head(torch.cat([x, self.side(meta)], 1))


def _calibrated(model: nn.Module, examples: list[torch.Tensor]) -> nn.Module:
    """BatchNorm statistics from a few random batches (so that signs see both signs), then eval."""
    model.train()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(4):
            model(*[torch.randn((32, *e.shape[1:]), generator=g) for e in examples])
    return model.eval()


def _inputs(examples: list[torch.Tensor], n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n, *e.shape[1:])).astype(np.float32) for e in examples]


def _convert_and_compare(model: nn.Module, examples: list[torch.Tensor], tmp_path) -> tuple[object, list]:
    model = _calibrated(model, examples)
    xs = _inputs(examples, 48, 1)
    path = tmp_path / "model.xbin"
    graph = convert(model, tuple(examples), output=path, calib=xs)
    v = graph.metadata["verification"]
    assert not v["problems"], v["problems"]
    assert v["layers"] and all(layer["mismatches"] == 0 for layer in v["layers"].values()), v["layers"]
    got = run_everywhere(path, xs)  # a list: one array per input, every ISA, 1 and 2 threads
    with torch.no_grad():
        want = model(*[torch.from_numpy(x) for x in xs]).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(want).max())))
    np.testing.assert_array_equal(got.argmax(1), want.argmax(1))
    return graph, xs


def test_two_images_fused(tmp_path):
    examples = [torch.randn(1, 1, 12, 12), torch.randn(1, 3, 12, 12)]
    model = TwoImages()
    graph, xs = _convert_and_compare(model, examples, tmp_path)  # (calibrates `model` in place)
    assert graph.inputs == ["grey", "colour"]  # forward's argument names
    assert binary_layers(graph) == {"bin_a.0", "bin_b.0"}
    s = xnorinfer.load(tmp_path / "model.xbin", threads=1)
    assert s.input_names == ["grey", "colour"]
    assert s.input_shapes == [(1, 1, 12, 12), (1, 3, 12, 12)]
    # a tuple and a dict (any key order) give the same as the list
    by_list = s.run(xs)
    np.testing.assert_array_equal(s.run(tuple(xs)), by_list)
    np.testing.assert_array_equal(s.run({"colour": xs[1], "grey": xs[0]}), by_list)
    # both images may change size together (a model without per-image ops runs any H, W)
    big = [np.ascontiguousarray(np.tile(x[:2], (1, 1, 2, 2))) for x in xs]
    with torch.no_grad():
        want = model(*[torch.from_numpy(x) for x in big]).numpy()
    np.testing.assert_allclose(s.run(big), want, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(want).max())))


def test_image_and_metadata_vector(tmp_path):
    examples = [torch.randn(1, 3, 8, 8), torch.randn(1, 7)]
    graph, xs = _convert_and_compare(ImageAndMetadata(), examples, tmp_path)
    assert binary_layers(graph) == {"conv.0", "side.2"}
    assert graph.metadata["input_shapes"] == [[1, 3, 8, 8], [1, 7]]
    s = xnorinfer.load(tmp_path / "model.xbin", threads=2)
    assert s.input_names == ["image", "meta"] and s.input_shapes == [(1, 3, 8, 8), (1, 7)]
    # each row alone equals its row of the batch
    full = s.run(xs)
    for i in (0, 17, 47):
        np.testing.assert_array_equal(s.run([xs[0][i : i + 1], xs[1][i : i + 1]])[0], full[i])
    # profile takes the same forms as run
    rows = s.profile({"image": xs[0][:4], "meta": xs[1][:4]}, runs=2)
    assert {r["kind"] for r in rows} >= {"bconv2d", "blinear"}


def test_several_inputs_are_checked(tmp_path):
    examples = [torch.randn(1, 3, 8, 8), torch.randn(1, 7)]
    model = _calibrated(ImageAndMetadata(), examples)
    path = tmp_path / "m.xbin"
    convert(model, tuple(examples), output=path)
    s = xnorinfer.load(path, threads=1)
    img, meta = _inputs(examples, 2, 3)
    with pytest.raises(ValueError, match=r"takes 2 inputs \['image', 'meta'\]: pass a list"):
        s.run(img)
    with pytest.raises(ValueError, match="takes 2 inputs .* got 1 arrays"):
        s.run([img])
    with pytest.raises(ValueError, match=r"missing \['meta'\]; unknown \['metadata'\]"):
        s.run({"image": img, "metadata": meta})
    with pytest.raises(ValueError, match=r"input 1 \('meta'\) must be float32 \(N, 7\) with the batch N of input 0"):
        s.run([img, meta[:1]])
    with pytest.raises(ValueError, match=r"input 1 \('meta'\) must be float32 \(N, 7\)"):
        s.run([img, np.zeros((2, 8), np.float32)])
    with pytest.raises(ValueError, match=r"input 0 \('image'\) must be float32 NCHW \(N, 3, H, W\)"):
        s.run([np.zeros((2, 4, 8, 8), np.float32), meta])
    with pytest.raises(TypeError, match="input 'meta' must be a float32 array"):
        s.run([img, meta.astype(np.int32)])
    # float64 inputs are converted, not refused
    np.testing.assert_array_equal(s.run([img.astype(np.float64), meta]), s.run([img, meta]))


def test_xbin_round_trip_keeps_the_inputs(tmp_path):
    from xnorinfer import xbin

    examples = [torch.randn(1, 1, 12, 12), torch.randn(1, 3, 12, 12)]
    graph = convert(_calibrated(TwoImages(), examples), tuple(examples), verify=False)
    path = tmp_path / "m.xbin"
    xbin.write(graph, path)
    back = xbin.read(path)
    assert back.inputs == ["grey", "colour"]
    assert [back.tensors[n].shape for n in back.inputs] == [(1, 12, 12, 1), (1, 12, 12, 3)]  # NHWC in the file


def test_cli_run_takes_arrays(tmp_path, capsys):
    from xnorinfer.cli import main

    examples = [torch.randn(1, 3, 8, 8), torch.randn(1, 7)]
    model = _calibrated(ImageAndMetadata(), examples)
    path = tmp_path / "m.xbin"
    convert(model, tuple(examples), output=path)
    img, meta = _inputs(examples, 3, 4)
    np.save(tmp_path / "img.npy", img)
    np.save(tmp_path / "meta.npy", meta)
    rc = main(
        [
            "run",
            str(path),
            "--input",
            f"meta={tmp_path / 'meta.npy'}",
            "--input",
            f"image={tmp_path / 'img.npy'}",
            "--json",
            "--top",
            "2",
        ]
    )
    assert rc == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    with torch.no_grad():
        logits = model(torch.from_numpy(img), torch.from_numpy(meta)).double()
    want = torch.softmax(logits, 1).numpy()
    assert [r["row"] for r in rows] == [0, 1, 2]
    for r, p in zip(rows, want, strict=True):
        assert [t["class"] for t in r["top"]] == list(np.argsort(-p)[:2])
        np.testing.assert_allclose([t["probability"] for t in r["top"]], np.sort(p)[::-1][:2], rtol=1e-4)
    # a missing input, an unknown name, and images for a model that takes arrays: clear messages, usage exit
    assert main(["run", str(path), "--input", f"image={tmp_path / 'img.npy'}"]) == 2
    assert "missing --input for ['meta']" in capsys.readouterr().err
    assert main(["run", str(path), "--input", f"pixels={tmp_path / 'img.npy'}"]) == 2
    assert "has no input 'pixels'" in capsys.readouterr().err
    assert main(["run", str(path), str(tmp_path / "img.npy")]) == 2
    assert "give each input as a .npy array with --input NAME=FILE.npy" in capsys.readouterr().err
    # bench draws one batch per input
    assert main(["bench", str(path), "--batch", "2", "--runs", "2", "--profile"]) == 0
    assert "bconv2d" in capsys.readouterr().out


class CrossAttention(nn.Module):
    """Two (N, T, F) sequences: queries from one, keys and values from the other (runs per image)."""

    def __init__(self) -> None:
        super().__init__()
        self.att = nn.MultiheadAttention(8, 2, batch_first=True)
        self.fc = nn.Linear(8, 3)

    def forward(self, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        y, _ = self.att(q, kv, kv, need_weights=False)
        return self.fc(y.mean(1))


def test_cross_attention_of_two_sequences_runs_per_image(tmp_path):
    torch.manual_seed(0)
    model = CrossAttention().eval()
    path = tmp_path / "m.xbin"
    graph = convert(model, (torch.randn(1, 5, 8), torch.randn(1, 7, 8)), output=path)
    assert graph.inputs == ["q", "kv"] and graph.metadata["per_image"] is True
    assert not graph.metadata["verification"]["problems"]
    rng = np.random.default_rng(2)
    xs = [rng.standard_normal((6, 5, 8)).astype(np.float32), rng.standard_normal((6, 7, 8)).astype(np.float32)]
    got = run_everywhere(path, xs)  # image i of each input goes with image i of the other
    with torch.no_grad():
        want = model(*[torch.from_numpy(x) for x in xs]).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    s = xnorinfer.load(path, threads=1)
    with pytest.raises(ValueError, match=r"input 1 \('kv'\) must be float32 \(N, 7, 8\)"):
        s.run([xs[0], xs[1][:, :6]])  # a per-image model runs at its recorded sizes
