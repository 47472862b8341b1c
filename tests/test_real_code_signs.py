"""Sign forms, element-wise float ops and export diagnostics on BNN code written as public repositories
write it (tests/realcode/*.py, each citing its source), plus the small forms each one exercises.

- Comparison-based signs: Brevitas bnn_pynq's `binary_sign` (`ge(x, 0).float() - lt(x, 0).float()`),
  `2 * (x >= 0).float() - 1`, bitorch's `where(sign(x) == 0, tensor(1.), sign(x))`, each with its sign(0)
  checked on inputs that hit 0 and the threshold exactly.
- Element-wise float ops where no binary form applies: DoReFa's k-bit activation
  `round(clamp(x, 0, 1) * n) / n`, Brevitas CNV's 8-bit input quantizer, comparisons giving 0/1 floats.
- torch.export failures caused by `.data` in forward name the model's line and the rewrite that works.
- `binarize` on an nn.Linear with a bias (aten.addmm: the weight is the third argument).

Converted with verification on (engine included), then run by the engine on every ISA path and two
thread counts on real test images where the input matches, against eager PyTorch.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from realcode_support import load_fixture, run_everywhere

from xnorinfer import datasets
from xnorinfer.convert import ConversionError, capture, convert, patterns

REALCODE = Path(__file__).resolve().parent / "realcode"
DATA = Path(__file__).resolve().parent / "data"


def engine_nchw(path: Path, x: np.ndarray) -> np.ndarray:
    """run_everywhere's output, NCHW when 4-D (the engine returns NHWC)."""
    out = run_everywhere(path, x)
    return out.transpose(0, 3, 1, 2) if out.ndim == 4 else out


def kinds(graph) -> list[str]:
    return [op.kind for op in graph.ops]


def mnist_images(n: int) -> torch.Tensor:
    images, _, _ = datasets.load("mnist", DATA, "test")
    return torch.from_numpy(images[:n].astype(np.float32) / 255.0).reshape(n, 1, 28, 28)


def cifar_images(n: int) -> torch.Tensor:
    images, _, _ = datasets.load("cifar10", DATA, "test")
    x = images[:: max(1, len(images) // n)][:n].astype(np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2) if x.shape[-1] == 3 else x))


def engine_vs_torch(model: nn.Module, graph, path: Path, x: torch.Tensor, rtol: float = 1e-3) -> np.ndarray:
    with torch.no_grad():
        want = model(x).numpy()
    got = engine_nchw(path, x.numpy())
    err = float(np.abs(got.astype(np.float64) - want).max())
    assert err <= rtol * max(1.0, float(np.abs(want).max())), err
    if want.ndim == 2 and want.shape[1] > 1:
        np.testing.assert_array_equal(got.argmax(1), want.argmax(1))
    return got


# --------------------------------------------------------------------------- 1. comparison-based signs


class GeMinusLt(nn.Module):
    """Brevitas bnn_pynq binary_sign, with an optional per-channel learnable threshold (x - b)."""

    def __init__(self, channels: int = 0, op: str = "ge") -> None:
        super().__init__()
        self.b = nn.Parameter(torch.linspace(-0.5, 0.5, channels).reshape(1, -1, 1, 1)) if channels else None
        self.op = op

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x - self.b if self.b is not None else x
        if self.op == "ge":
            return torch.ge(y, 0.0).to(y.dtype) - torch.lt(y, 0.0).to(y.dtype)
        return torch.gt(y, 0.0).to(y.dtype) - torch.le(y, 0.0).to(y.dtype)


class TwiceCompareMinusOne(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * (x >= 0).float() - 1


class MaskedAssignSign(nn.Module):
    """In-place masked STE forward: `out = x.clone(); out[x >= 0] = 1; out[x < 0] = -1` (or onto zeros_like,
    with > / <=), exported as index_put with computed bool masks."""

    def __init__(self, op: str = "ge", base: str = "clone") -> None:
        super().__init__()
        self.op, self.base = op, base

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x.clone() if self.base == "clone" else torch.zeros_like(x)
        pos, neg = (x >= 0, x < 0) if self.op == "ge" else (x > 0, x <= 0)
        out[pos] = 1.0
        out[neg] = -1.0
        return out


class BitorchSign(nn.Module):
    """bitorch's sign: torch.sign, then 0 mapped to `zero_to` with torch.where (a 0-d tensor constant)."""

    def __init__(self, zero_to: float = 1.0, shift: bool = False) -> None:
        super().__init__()
        self.zero_to = zero_to
        self.b = nn.Parameter(torch.tensor([0.25, -0.5, 0.0, 1.0]).reshape(1, 4, 1, 1)) if shift else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.b is not None:
            x = x - self.b
        s = torch.sign(x)
        return torch.where(s == 0, torch.tensor(self.zero_to), s)


def inputs_hitting_zero_and_thresholds(n: int = 8) -> torch.Tensor:
    """(n, 4, 5, 5) values with exact 0, -0, the thresholds of GeMinusLt(4) / BitorchSign(shift) and ±tiny."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(n, 4, 5, 5, generator=g)
    x[:, :, 0, 0] = 0.0
    x[:, :, 0, 1] = -0.0
    x[:, :, 0, 2] = torch.linspace(-0.5, 0.5, 4)
    x[:, :, 0, 3] = torch.tensor([0.25, -0.5, 0.0, 1.0])
    x[:, :, 0, 4] = 1e-45
    x[:, :, 1, 0] = -1e-45
    return x


@pytest.mark.parametrize(
    ("module", "zero"),
    [
        (GeMinusLt(), "+1"),
        (GeMinusLt(op="gt"), "-1"),
        (GeMinusLt(4), "+1"),
        (GeMinusLt(4, op="gt"), "-1"),
        (TwiceCompareMinusOne(), "+1"),
        (BitorchSign(), "+1"),
        (BitorchSign(-1.0), "-1"),
        (BitorchSign(shift=True), "+1"),
        (MaskedAssignSign(), "+1"),
        (MaskedAssignSign("gt", "zeros"), "-1"),
    ],
    ids=[
        "ge-lt",
        "gt-le",
        "ge-lt-shifted",
        "gt-le-shifted",
        "2cmp-1",
        "bitorch",
        "bitorch-minus",
        "bitorch-shifted",
        "masked-assign",
        "masked-assign-zeros",
    ],
)
def test_comparison_sign_forms_are_one_sign_with_the_right_zero(module: nn.Module, zero: str, tmp_path) -> None:
    x = inputs_hitting_zero_and_thresholds()
    path = tmp_path / "m.xbin"
    graph = convert(module.eval(), (x[:1],), output=path, calib=x)
    assert kinds(graph) == ["sign", "unpack"]
    sign = graph.ops[0]
    assert sign.attrs["sign_zero"] == zero
    with torch.no_grad():
        want = module(x).numpy()
    assert set(np.unique(want)) <= {-1.0, 1.0}  # these forms never give torch.sign's 0
    np.testing.assert_array_equal(engine_nchw(path, x.numpy()), want)


class GeMinusLe(nn.Module):
    """Not a sign: 0 where x == 0 (three levels). Must not be taken for one."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ge(x, 0.0).float() - torch.le(x, 0.0).float()


def test_non_complementary_difference_is_not_a_sign() -> None:
    model = capture.to_model(capture.decompose(capture.export(GeMinusLe().eval(), (torch.randn(1, 4, 5, 5),))))
    model = patterns.run_to_fixed_point(model, patterns.ACTIVATIONS)
    assert not [n for n in model.nodes if n.op == "act_sign"]


def test_bitorch_densenet_sign_is_recognised(tmp_path) -> None:
    """bitorch_densenet's own QActivation / SignFunction (where(sign(x) == 0, tensor(1.), sign(x))) is one
    sign with sign(0) = +1, bit-exact at 0. (The whole model also needs F.pad(value=-1) before its
    binary convs, another change.)"""
    m = load_fixture("bitorch_densenet")
    act = m.QActivation().eval()
    x = inputs_hitting_zero_and_thresholds()
    path = tmp_path / "m.xbin"
    graph = convert(act, (x[:1],), output=path, calib=x)
    assert kinds(graph) == ["sign", "unpack"] and graph.ops[0].attrs["sign_zero"] == "+1"
    with torch.no_grad():
        np.testing.assert_array_equal(engine_nchw(path, x.numpy()), act(x).numpy())


def test_brevitas_tfc_converts_all_binary_on_mnist(tmp_path) -> None:
    """Did not convert before ('ge' refused): now every QuantLinear is a blinear, on real MNIST digits."""
    m = load_fixture("brevitas_tfc")
    model = m.make()
    path = tmp_path / "tfc.xbin"
    graph = convert(model, (m.example_input(),), output=path, calib=mnist_images(64))
    assert not graph.metadata["verification"]["problems"]
    assert kinds(graph).count("blinear") == 4
    assert "linear" not in kinds(graph) and "conv2d" not in kinds(graph)
    assert graph.metadata["sign_zero"] == "sign(0) = +1"
    engine_vs_torch(model, graph, path, mnist_images(100))


def test_brevitas_cnv_converts_with_its_8bit_input_quantizer_on_cifar(tmp_path) -> None:
    """Did not convert before (aten.round, then 'ge'): the Q1.7 input quantizer runs as float round/clamp,
    the first conv has binary weights on the real input (bwconv2d), every other conv and linear is binary."""
    m = load_fixture("brevitas_cnv")
    model = m.make()
    path = tmp_path / "cnv.xbin"
    images = cifar_images(64)
    graph = convert(model, (m.example_input(),), output=path, calib=images)
    assert not graph.metadata["verification"]["problems"]
    k = kinds(graph)
    assert "round" in k and "hardtanh" in k
    assert k.count("bconv2d") == 5 and k.count("blinear") == 3 and k.count("bwconv2d") == 1 and "conv2d" not in k
    engine_vs_torch(model, graph, path, cifar_images(100))


# --------------------------------------------------------------------------- 2. element-wise float ops


class DoReFaAct(nn.Module):
    def __init__(self, k: int = 2) -> None:
        super().__init__()
        self.n = float(2**k - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(torch.clamp(x, 0, 1) * self.n) / self.n


class FloatElementwise(nn.Module):
    """Comparisons (scalar, per-channel, constant on the left), floor, abs, one-sided clamps, neg."""

    def __init__(self) -> None:
        super().__init__()
        self.t = nn.Parameter(torch.tensor([0.5, -0.25, 0.0, 1.0]).reshape(1, 4, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = (x > 0.5).float() + (x <= self.t).float() + (0.0 >= x).float() + (x == 0).float()
        b = torch.floor(x * 2).abs() + torch.clamp(x, min=-0.3) + (-torch.clamp(x, max=0.2))
        return a + b + DoReFaAct(3)(x) + torch.floor(-x.abs())


def test_float_elementwise_ops_are_exact_against_torch(tmp_path) -> None:
    x = inputs_hitting_zero_and_thresholds(16) * 1.5
    x[:, :, 2, 0] = 0.5  # ties of round(x * 7) and comparisons at 0.5
    x[:, :, 2, 1] = 1.5 / 7
    model = FloatElementwise().eval()
    path = tmp_path / "m.xbin"
    graph = convert(model, (x[:1],), output=path, calib=x)
    k = kinds(graph)
    assert {"compare", "floor", "abs", "round", "hardtanh"} <= set(k)
    assert not [op for op in graph.ops if op.kind.startswith("b")]
    with torch.no_grad():
        want = model(x).numpy()
    got = engine_nchw(path, x.numpy())
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_dorefa_resnet20_body_runs_its_kbit_activations_bit_serially(tmp_path) -> None:
    """dorefa_resnet20 (W1A2) with its real blocks: each quantized conv reading round(clamp(x, 0, 1) * 3) / 3
    runs as 2 bconv2d on its bit-planes, and every quantizer folds into `bitplane` thresholds (integer ones
    on the exact sum of the bit-serial layer before, float32 ones on a float input): no `round` is left.

    The model's own head `out.mean(dim=2).mean(dim=2)` is another change (one-dim means); the body and
    the classifier are the file's modules, with a global average pool for the head.
    """
    m = load_fixture("dorefa_resnet20")
    net = m.make()
    model = nn.Sequential(net.conv0, *net.layers, net.bn, nn.AdaptiveAvgPool2d(1), nn.Flatten(), net.logit).eval()
    images = cifar_images(48)
    path = tmp_path / "dorefa.xbin"
    graph = convert(model, (images[:1],), output=path, calib=images)
    assert not graph.metadata["verification"]["problems"]
    k = kinds(graph)
    assert k.count("round") == 0 and k.count("bitplane") >= 2 * len(net.layers)
    assert k.count("bconv2d") == 2 * 8 and k.count("conv2d") == 1  # 8 quantized convs; the float stem
    # exact integer sums vs PyTorch's float32 conv: a pre-activation on a round() tie (one of these
    # images has one) flips one level of q, a small change of the logits
    engine_vs_torch(model, graph, path, cifar_images(64), rtol=1e-2)


# --------------------------------------------------------------------------- 3. export diagnostics


@pytest.mark.parametrize(
    ("name", "line_text", "advice"),
    [
        ("binarynet_vgg_cifar10", "self.bias.org = self.bias.data.clone()", "delete this line for inference"),
        ("binarynet_resnet_cifar", "if residual.data.max() > 1:", "take this data-dependent check out of forward"),
        ("xnor_lenet5_mnist", "m.weight.data.clamp_(min=0.01)", "apply it once before converting"),
    ],
)
def test_export_failure_names_the_line_and_the_rewrite(name: str, line_text: str, advice: str, capfd) -> None:
    m = load_fixture(name)
    with pytest.raises(ConversionError) as info:
        convert(m.make(), (m.example_input(),))
    msg = str(info.value)
    assert "\n" not in msg and len(msg) < 1200, msg  # one paragraph, no traceback
    assert f"{name}.py" in msg and line_text in msg and advice in msg, msg
    source = (REALCODE / f"{name}.py").read_text().splitlines()
    lineno = int(msg.split(f'{name}.py", line ', 1)[1].split(":", 1)[0])
    assert line_text in source[lineno - 1]
    assert "autograd.Function" not in msg
    out, err = capfd.readouterr()
    assert "def forward(self" not in err + out  # torch's partial-graph dump is not printed


@pytest.mark.parametrize("name", ["binarynet_vgg_cifar10", "binarynet_resnet_cifar", "xnor_lenet5_mnist"])
def test_the_named_rewrite_converts_with_binary_layers(name: str, tmp_path) -> None:
    m = load_fixture(name)
    model = m.make_exportable()
    images = mnist_images(48) if name.startswith("xnor") else cifar_images(48)
    path = tmp_path / "m.xbin"
    graph = convert(model, (m.example_input(),), output=path, calib=images)
    assert not graph.metadata["verification"]["problems"]
    assert kinds(graph).count("bconv2d") + kinds(graph).count("blinear") >= 2
    engine_vs_torch(model, graph, path, images)


def test_parameter_update_under_no_grad_in_forward_is_not_an_output(tmp_path) -> None:
    """`with torch.no_grad(): m.weight.clamp_(min=0.01)` in forward exports as a parameter mutation: an
    update from parameters only (idempotent in eval), not a model output (was: 'a model output is a
    constant; nothing to convert')."""
    m = load_fixture("xnor_lenet5_mnist")
    model = m.make_exportable_no_grad()
    images = mnist_images(48)
    path = tmp_path / "m.xbin"
    graph = convert(model, (m.example_input(),), output=path, calib=images)
    assert not graph.metadata["verification"]["problems"]
    assert kinds(graph).count("bconv2d") + kinds(graph).count("blinear") >= 2
    engine_vs_torch(model, graph, path, images)


class UpdatesBufferFromInput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("seen", torch.zeros(1, 4, 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            self.seen.copy_(x.relu())
        return x.relu()


def test_state_updated_from_the_input_is_refused() -> None:
    with pytest.raises(ConversionError, match="updates 'seen' from the model input"):
        convert(UpdatesBufferFromInput(), (torch.randn(1, 4, 3, 3),), verify=False)


def test_a_pt2_that_fails_to_load_is_not_told_to_export(tmp_path) -> None:
    ep = torch.export.export(nn.Sequential(nn.Conv2d(1, 2, 3)).eval(), (torch.randn(1, 1, 8, 8),))
    path = tmp_path / "m.pt2"
    torch.export.save(ep, path)

    damaged = tmp_path / "damaged.pt2"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(damaged, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.endswith("models/model.json"):
                data = data[: len(data) // 2]  # truncate the serialized program
            dst.writestr(item, data)
    with pytest.raises(ConversionError) as info:
        convert(damaged)
    msg = str(info.value)
    assert "torch.export.load failed" in msg
    assert "Export the model instead" not in msg and "save it again" in msg


# --------------------------------------------------------------------------- 4. binarize on Linear with bias


class SignLinearBias(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(32, 10, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.sign(x.flatten(1)))


def test_binarize_linear_with_bias(tmp_path) -> None:
    """aten.addmm(bias, x, W.T): the weight parameter is the third argument (was: 'binarize needs the
    layer's weight to be a parameter')."""
    torch.manual_seed(0)
    model = SignLinearBias().eval()
    x = torch.randn(1, 2, 4, 4)
    path = tmp_path / "m.xbin"
    graph = convert(model, (x,), binarize=["fc"], output=path)
    assert kinds(graph)[-1] == "blinear"
    assert graph.metadata["binarized"]["fc"]["param"] == "fc.weight"
    assert not graph.metadata["verification"]["problems"]
    xs = torch.randn(16, 2, 4, 4)
    w = model.fc.weight.detach()
    wq = torch.where(w < 0, -1.0, 1.0) * w.abs().mean(dim=1, keepdim=True)
    want = F.linear(xs.flatten(1).sign(), wq, model.fc.bias.detach()).numpy()
    np.testing.assert_allclose(engine_nchw(path, xs.numpy()), want, rtol=1e-5, atol=1e-5)
