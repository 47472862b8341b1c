"""`xnorinfer convert`: a .pt2 and a --module factory convert, verify and load; unsupported ops and
TorchScript archives exit 5 without writing (or overwriting) the output."""

from __future__ import annotations

import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import xnorinfer  # noqa: E402
from xnorinfer import cli  # noqa: E402
from xnorinfer.nn.layers import BinaryLinear  # noqa: E402

EXIT_MODEL, EXIT_CONVERT = 3, 5
LABELS = list("abcdefghij")
FACTORY_SOURCE = """
import torch
from torch import nn
from xnorinfer.nn.layers import BinaryLinear


def factory(hidden=32):
    return nn.Sequential(nn.Flatten(), BinaryLinear(16, hidden), nn.BatchNorm1d(hidden), BinaryLinear(hidden, 10))
"""


def _factory_module(tmp_path, monkeypatch) -> None:
    """Write tests_pkg.py into tmp_path and make it importable (fresh, not a cached copy)."""
    (tmp_path / "tests_pkg.py").write_text(FACTORY_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tests_pkg", raising=False)


def _bnn(middle: nn.Module | None = None, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    layers = [nn.Flatten(), BinaryLinear(16, 32), nn.BatchNorm1d(32)]
    if middle is not None:
        layers.append(middle)
    layers.append(BinaryLinear(32, 10))
    model = nn.Sequential(*layers)
    with torch.no_grad():  # non-trivial BatchNorm: the folded thresholds differ from zero
        bn = model[2]
        bn.running_mean.uniform_(-2, 2)
        bn.running_var.uniform_(0.5, 3)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-1, 1)
    return model.eval()


def _save_pt2(model: nn.Module, path) -> str:
    torch.export.save(torch.export.export(model, (torch.zeros(1, 1, 4, 4),)), str(path))
    return str(path)


@pytest.fixture(scope="module")
def bnn_pt2(tmp_path_factory):
    model = _bnn()
    return model, _save_pt2(model, tmp_path_factory.mktemp("pt2") / "bnn.pt2")


class Cummax(nn.Module):  # an op the converter does not support
    def forward(self, x):
        return torch.logcumsumexp(x, 1)


@pytest.fixture(scope="module")
def unsupported_pt2(tmp_path_factory):
    return _save_pt2(_bnn(Cummax()), tmp_path_factory.mktemp("pt2") / "cummax.pt2")


def _argmax_agrees(model: nn.Module, path, n: int = 64) -> None:
    session = xnorinfer.load(path, threads=1)
    x = torch.randn(n, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expect = model(x).argmax(1).numpy()
    got = np.asarray(session.run(x.numpy())).reshape(n, -1).argmax(1)
    np.testing.assert_array_equal(got, expect)


def test_convert_pt2(bnn_pt2, tmp_path, capsys):
    model, pt2 = bnn_pt2
    out = tmp_path / "bnn.xbin"
    rc = cli.main(["convert", pt2, "-o", str(out), "--labels", ",".join(LABELS), "--mean", "0.5", "--std", "0.5"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert out.is_file() and f"wrote {out}" in captured.out
    session = xnorinfer.load(out, threads=1)
    meta = session.metadata
    assert session.labels == LABELS
    assert meta["mean"] == [0.5] and meta["std"] == [0.5]
    assert meta["input_shape"] == [1, 1, 4, 4]
    assert meta["verification"]["top1_agreement"] == 1.0
    _argmax_agrees(model, out)


def test_convert_labels_from_file(bnn_pt2, tmp_path, capsys):
    _, pt2 = bnn_pt2
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"class {c}" for c in LABELS) + "\n")
    out = tmp_path / "bnn.xbin"
    assert cli.main(["convert", pt2, "-o", str(out), "--labels", str(labels), "--no-verify"]) == 0
    assert xnorinfer.load(out, threads=1).labels == [f"class {c}" for c in LABELS]


def test_convert_module_factory_with_prefixed_state_dict(tmp_path, monkeypatch, capsys):
    _factory_module(tmp_path, monkeypatch)
    model = _bnn(seed=3)
    # as saved from a DataParallel/DDP wrapper: every key carries a `module.` prefix
    ckpt = tmp_path / "ckpt.pth"
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, ckpt)
    out = tmp_path / "factory.xbin"
    rc = cli.main(
        ["convert", "--module", "tests_pkg:factory", "--weights", str(ckpt), "--input-shape", "1,1,4,4", "-o", str(out)]
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert out.is_file()
    _argmax_agrees(model, out)  # the weights (not the factory's random init) were loaded


def test_convert_module_weights_that_do_not_fit(tmp_path, monkeypatch, capsys):
    _factory_module(tmp_path, monkeypatch)
    ckpt = tmp_path / "wrong.pth"
    torch.save(nn.Linear(3, 2).state_dict(), ckpt)
    out = tmp_path / "never.xbin"
    rc = cli.main(
        ["convert", "--module", "tests_pkg:factory", "--weights", str(ckpt), "--input-shape", "1,1,4,4", "-o", str(out)]
    )
    err = capsys.readouterr().err
    assert rc == EXIT_CONVERT
    assert err.startswith(f"xnorinfer: error: {ckpt}: does not fit tests_pkg:factory") and "Traceback" not in err
    assert not out.exists()


def test_unsupported_op_exits_5_and_writes_nothing(unsupported_pt2, tmp_path, capsys):
    out = tmp_path / "cummax.xbin"
    rc = cli.main(["convert", unsupported_pt2, "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == EXIT_CONVERT
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"xnorinfer: error: {unsupported_pt2}: unsupported op aten.logcumsumexp")
    assert "module '3'" in line  # the op's module path
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind either


def test_failed_conversion_keeps_an_existing_output(unsupported_pt2, tmp_path, capsys):
    out = tmp_path / "existing.xbin"
    before = b"previous model bytes\x00\x01\x02"
    out.write_bytes(before)
    assert cli.main(["convert", unsupported_pt2, "-o", str(out)]) == EXIT_CONVERT
    capsys.readouterr()
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.xbin"]


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_torchscript_archive_exits_5_with_export_howto(tmp_path, capsys):
    # BinaryLinear's annotations do not script; any TorchScript archive is refused the same way.
    scripted = tmp_path / "model.pt"
    torch.jit.script(nn.Sequential(nn.Flatten(), nn.Linear(16, 10)).eval()).save(str(scripted))
    out = tmp_path / "model.xbin"
    rc = cli.main(["convert", str(scripted), "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == EXIT_CONVERT
    assert "Traceback" not in err
    assert err.startswith(f"xnorinfer: error: {scripted}: ") and "TorchScript" in err
    assert "torch.export.export" in err and "torch.export.save" in err and ".pt2" in err
    assert not out.exists()


def test_missing_pt2_exits_with_the_file_not_found_code(tmp_path, capsys):
    missing = tmp_path / "nope.pt2"
    rc = cli.main(["convert", str(missing), "-o", str(tmp_path / "x.xbin")])
    err = capsys.readouterr().err
    assert rc == EXIT_MODEL  # the code of a missing model file, as for run/inspect/bench
    assert err.strip() == f"xnorinfer: error: {missing}: file not found"


def test_module_from_a_file_path_with_literal_arguments(tmp_path, capsys):
    """`path/to/file.py:factory(hidden=48)`: no PYTHONPATH set-up, arguments parsed as literals only."""
    source = tmp_path / "models_dir" / "my_bnn.py"
    source.parent.mkdir()
    source.write_text(FACTORY_SOURCE)
    torch.manual_seed(5)
    exec_globals: dict = {}
    exec(FACTORY_SOURCE, exec_globals)  # the same factory, to make weights of the matching width
    model = exec_globals["factory"](hidden=48).eval()
    ckpt = tmp_path / "w.pth"
    torch.save(model.state_dict(), ckpt)
    out = tmp_path / "file.xbin"
    rc = cli.main(
        [
            "convert",
            "--module",
            f"{source}:factory(hidden=48)",
            "--weights",
            str(ckpt),
            "--input-shape",
            "1,1,4,4",
            "-o",
            str(out),
        ]
    )
    assert rc == 0, capsys.readouterr().err
    _argmax_agrees(model, out)
    for bad in [f"{source}:factory(hidden=__import__('os').getpid())", f"{source}:factory(**{{}})", "no_colon"]:
        assert cli.main(["convert", "--module", bad, "--input-shape", "1,1,4,4", "-o", str(out)]) == 2
        assert "--module must look like" in capsys.readouterr().err
    rc = cli.main(["convert", "--module", f"{tmp_path}/absent.py:factory", "--input-shape", "1,1,4,4", "-o", str(out)])
    assert rc == 2 and "absent.py: file not found" in capsys.readouterr().err


def test_inspect_reports_what_convert_reported(bnn_pt2, tmp_path, capsys):
    """One cost model: the per-op table and totals of `convert` and `inspect` are the same lines."""
    _, pt2 = bnn_pt2
    out = tmp_path / "same.xbin"
    assert cli.main(["convert", pt2, "-o", str(out)]) == 0
    converted = capsys.readouterr().out.splitlines()
    assert cli.main(["inspect", str(out)]) == 0
    inspected = capsys.readouterr().out.splitlines()
    table = converted[: converted.index(next(line for line in converted if line.startswith("total: "))) + 1]
    assert len(table) >= 5 and table == inspected[1 : 1 + len(table)]
    # The engine check reads as a sentence, not a Python dict.
    check = next(line for line in converted if line.startswith("verification on"))
    assert "the C++ engine matches the reference" in check and "{" not in check


def test_convert_without_a_source_is_usage(capsys):
    assert cli.main(["convert"]) == 2
    assert capsys.readouterr().err.startswith("xnorinfer: error: give either a .pt2 file or --module")


def test_no_verify(bnn_pt2, tmp_path, capsys):
    model, pt2 = bnn_pt2
    out = tmp_path / "nv.xbin"
    rc = cli.main(["convert", pt2, "-o", str(out), "--no-verify"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "not verified (--no-verify)" in captured.out
    assert not xnorinfer.load(out, threads=1).metadata.get("verification")
    _argmax_agrees(model, out)


def test_calib_images_are_the_verification_inputs(bnn_pt2, tmp_path, capsys):
    from PIL import Image

    calib = tmp_path / "calib"
    calib.mkdir()
    rng = np.random.default_rng(3)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (4, 4), dtype=np.uint8), "L").save(calib / f"{i}.png")
    out = tmp_path / "calib.xbin"
    _, pt2 = bnn_pt2
    rc = cli.main(
        [
            "convert",
            pt2,
            "-o",
            str(out),
            "--calib",
            str(calib),
            "--input-shape",
            "1,1,4,4",
            "--mean",
            "0.5",
            "--std",
            "0.5",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    meta = xnorinfer.load(out).metadata
    assert meta["verification"]["n_inputs"] == 5  # the five images, not the 64 random inputs
