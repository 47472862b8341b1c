"""Reference models trained on real data keep their accuracy after conversion.

For every trained model under models/ (tools/train.py writes state_dict.pth and metrics.json):
convert it with the command models/README.md documents for it (`xnorinfer convert --module
'xnorinfer.zoo:...' --weights models/NAME/state_dict.pth ...`), run the .xbin with the C++ runtime
on the real test images shipped in tests/data (1,000 MNIST / Fashion-MNIST, 500 CIFAR-10), and check that
(1) the engine's predictions equal the canonical reference's (numpy interpreter of the same graph),
(2) top-1 agreement with the eager PyTorch model is at least 99.9%, and (3) the accuracy on the
subset is consistent with the whole-test-set accuracy recorded at training time. Whole test sets:
`python tools/evaluate.py models/NAME --data DIR`.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np
import pytest
import torch

import xnorinfer
from xnorinfer import cli, datasets, xbin
from xnorinfer.convert import reference
from xnorinfer.zoo import load_reference

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
MODELS = sorted(p for p in (ROOT / "models").glob("*") if (p / "state_dict.pth").exists())


def _documented_commands() -> dict[str, list[str]]:
    """models/README.md's `xnorinfer convert` lines, by the model folder their --weights names."""
    commands = {}
    for line in (ROOT / "models" / "README.md").read_text().splitlines():
        if line.startswith("xnorinfer convert "):
            argv = shlex.split(line)[1:]
            commands[Path(argv[argv.index("--weights") + 1]).parent.name] = argv
    return commands


COMMANDS = _documented_commands()
FLOAT32_TIE = 2.0**-17  # a sign input this close to its threshold is a tie between float32 and float64


def _inputs(metrics: dict) -> tuple[np.ndarray, np.ndarray]:
    images, labels, _ = datasets.load(metrics["dataset"], DATA, "test")
    return datasets.normalize(images, metrics["mean"], metrics["std"]), labels


@pytest.mark.parametrize("model_dir", MODELS, ids=[p.name for p in MODELS])
def test_converted_accuracy_is_kept(model_dir, tmp_path, monkeypatch):
    module, metrics = load_reference(model_dir)
    x, y = _inputs(metrics)
    out = tmp_path / "model.xbin"
    assert model_dir.name in COMMANDS, f"models/README.md documents no convert command for {model_dir.name}"
    argv = list(COMMANDS[model_dir.name])
    argv[argv.index("-o") + 1] = str(out)
    monkeypatch.chdir(ROOT)  # the documented paths are relative to the clone
    assert cli.main(argv) == 0
    graph = xbin.read(out)
    binarize = argv[argv.index("--binarize") + 1 : argv.index("--binarize") + 2] if "--binarize" in argv else []
    assert graph.metadata["labels"] == metrics["labels"] and graph.metadata["mean"] == metrics["mean"]
    if binarize:  # regularizer-trained: the engine runs sign(W) * mean|W|; compare with that model
        from xnorinfer.nn import apply_binarization

        apply_binarization(module, binarize[0])
    session = xnorinfer.load(out, threads=2)
    engine = np.concatenate([session.run(x[i : i + 1000]) for i in range(0, len(x), 1000)]).argmax(1)
    ref = np.concatenate(
        [reference.run(graph, x[i : i + 1000])[graph.outputs[0]] for i in range(0, len(x), 1000)]
    ).argmax(1)
    # The engine's float layers run in float32, the reference's in float64: they may differ only
    # where the reference sits on a rounding tie, a sign input within float32 resolution of its
    # threshold (docs/exactness.md), and on at most 0.1% of the images.
    differ = np.nonzero(engine != ref)[0]
    assert len(differ) <= max(1, 0.001 * len(x)), f"engine and reference disagree on {len(differ)} images"
    if len(differ):
        margins = reference.sign_margins(graph, x[differ])
        closest = np.min(list(margins.values()), axis=0) if margins else np.full(len(differ), np.inf)
        unexplained = differ[closest > FLOAT32_TIE]
        assert not len(unexplained), f"engine and reference disagree without a rounding tie on {unexplained}"

    # Identical bytes on every ISA path and for 1, 2, 4 and 8 threads (this machine has 2 cores).
    probe = x[:64]
    expect = session.run(probe, isa="scalar").tobytes()
    for threads in (1, 2, 4, 8):
        s = xnorinfer.load(out, threads=threads)
        for isa in xnorinfer._core.available_isas():
            assert s.run(probe, isa=isa).tobytes() == expect, f"{isa} with {threads} threads differs"

    with torch.inference_mode():
        eager = np.concatenate([module(torch.from_numpy(x[i : i + 1000])).numpy() for i in range(0, len(x), 1000)])
    agreement = float(np.mean(eager.argmax(1) == engine))
    assert agreement >= 0.999, f"top-1 agreement with PyTorch {agreement:.4f}"
    if not binarize:  # (the recorded accuracy is the float model's for a regularizer-trained one)
        # A subset's accuracy scatters around the whole set's by the binomial standard error; a
        # converted model that lost accuracy falls far below that band.
        accuracy, recorded = float(np.mean(engine == y)), metrics["test_accuracy"]
        stderr = (recorded * (1 - recorded) / len(y)) ** 0.5
        assert accuracy >= recorded - 4 * stderr - 0.01, f"accuracy {accuracy:.4f} on {len(y)} images, {recorded}"


def test_binaryduo_converts_binary_after_decoupling(tmp_path, monkeypatch):
    """models/binaryduo-fmnist, trained coupled ({0, 0.5, 1} activations), converts with its documented
    command (the zoo factory decouples on loading the weights): every binary layer is bconv2d / blinear
    over two shifted signs per channel, -1 padding; the decoupled model is the coupled one bit for bit."""
    from xnorinfer.nn import decouple

    model_dir = ROOT / "models" / "binaryduo-fmnist"
    coupled, metrics = load_reference(model_dir)
    x, _ = _inputs(metrics)
    decoupled = decouple(coupled)
    with torch.inference_mode():
        xs = torch.from_numpy(x[:500])
        assert torch.equal(coupled(xs), decoupled(xs))
    argv = list(COMMANDS[model_dir.name])
    argv[argv.index("-o") + 1] = str(tmp_path / "duo.xbin")
    monkeypatch.chdir(ROOT)
    assert cli.main(argv) == 0
    graph = xbin.read(tmp_path / "duo.xbin")
    kinds = [op.kind for op in graph.ops]
    assert kinds.count("bconv2d") == 3 and kinds.count("blinear") == 1 and kinds.count("conv2d") == 1
    convs = [op for op in graph.ops if op.kind == "bconv2d"]
    assert [op.attrs["pad_mode"] for op in convs] == ["minus_one", "minus_one", "zero"]
    assert [op.attrs["in_channels"] for op in convs] == [64, 64, 128]  # 2C: two signs per channel


def test_dorefa_fmnist_layers_run_bit_serial(tmp_path, monkeypatch):
    """models/dorefa-fmnist (DoReFa W1A2): its 4 binary-weight convs and its binary-weight linear on 2-bit
    activations run as 2 binary layers each on `bitplane` ops; the quantizers after the bit-serial layers are
    folded into integer thresholds (float32 thresholds for the one after the float stem); only the quantizer
    that feeds the float classifier keeps its `round`."""
    argv = list(COMMANDS["dorefa-fmnist"])
    out = tmp_path / "dorefa.xbin"
    argv[argv.index("-o") + 1] = str(out)
    monkeypatch.chdir(ROOT)
    assert cli.main(argv) == 0
    kinds = [op.kind for op in xbin.read(out).ops]
    assert kinds.count("bconv2d") == 8 and kinds.count("blinear") == 2 and kinds.count("bitplane") == 10, kinds
    assert "bwconv2d" not in kinds and "bwlinear" not in kinds and kinds.count("round") == 1, kinds
    assert kinds.count("conv2d") == 1 and kinds.count("linear") == 1, kinds
