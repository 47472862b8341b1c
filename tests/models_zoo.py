"""Small BNNs for the converter tests, each binarizing activations with a different STE.

Weights are random; BatchNorm running statistics are calibrated on random data and then made
non-trivial: negative gamma, a zero-gamma channel (with a non-zero beta), tiny and huge variances.
Every binary activation comes out of a module of one of the `SIGN_MODULES` classes, so tests can
hook them.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

# --------------------------------------------------------------------------- STE formulations


class _SignFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # noqa: D102
        ctx.save_for_backward(x)
        return torch.sign(x)

    @staticmethod
    def backward(ctx, g):  # noqa: D102
        (x,) = ctx.saved_tensors
        return g * (x.abs() <= 1).to(g.dtype)


class AutogradSign(nn.Module):
    """BinaryNet: a custom autograd.Function whose forward is torch.sign (sign(0) = 0)."""

    def forward(self, x):
        return _SignFn.apply(x)


class DetachSign(nn.Module):
    """XNOR-Net / Bi-Real style: (sign(x) - x).detach() + x."""

    def forward(self, x):
        return (torch.sign(x) - x).detach() + x


class RSign(nn.Module):
    """ReActNet's RSign: where(x - b >= 0, 1, -1) with a learnable per-channel shift b."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.shift = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x):
        return torch.where(x - self.shift >= 0, 1.0, -1.0)


class DecoupledSign(nn.Module):
    """BinaryDuo's decoupled ternary: two shifted signs of one tensor, as (x >= t).float() * 2 - 1."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.t1 = nn.Parameter(torch.full((1, channels, 1, 1), -0.4))
        self.t2 = nn.Parameter(torch.full((1, channels, 1, 1), 0.4))

    def forward(self, x):
        a = (x >= self.t1).float() * 2 - 1
        b = (x - self.t2 >= 0).float() * 2 - 1
        return torch.cat([a, b], dim=1)


class SignSign(nn.Module):
    """sign(sign(x) + 0.1): torch.sign with sign(0) forced to +1."""

    def forward(self, x):
        return torch.sign(torch.sign(x) + 0.1)


SIGN_MODULES = (AutogradSign, DetachSign, RSign, DecoupledSign, SignSign)

# --------------------------------------------------------------------------- binary layers


class BinConv(nn.Conv2d):
    """Binarizes its input with `act` and its weight as sign(W) (scale=False) or mean|W| * sign(W)."""

    def __init__(self, cin, cout, act: nn.Module, *, scale: bool = False, stride: int = 1, bias: bool = False):
        super().__init__(cin, cout, 3, stride=stride, padding=1, bias=bias)
        self.act, self.scale = act, scale

    def forward(self, x):
        w = torch.sign(self.weight)
        if self.scale:
            w = w * self.weight.abs().mean(dim=(1, 2, 3), keepdim=True)
        return F.conv2d(self.act(x), w, self.bias, self.stride, self.padding)


class BinLinear(nn.Linear):
    def __init__(self, cin, cout, act: nn.Module, *, scale: bool = False, bias: bool = False):
        super().__init__(cin, cout, bias=bias)
        self.act, self.scale = act, scale

    def forward(self, x):
        w = torch.sign(self.weight)
        if self.scale:
            w = w * self.weight.abs().mean(dim=1, keepdim=True)
        return F.linear(self.act(x), w, self.bias)


class RPReLU(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.pre = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.prelu = nn.PReLU(c, init=0.25)
        self.post = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, x):
        return self.prelu(x - self.pre) + self.post


# --------------------------------------------------------------------------- models


class BinaryNetVGG(nn.Module):
    """BinaryNet CIFAR VGG-small, reduced width: 6 conv (first float), 3 max-pools, 3 dense (last float)."""

    input_shape = (3, 32, 32)

    def __init__(self, w: int = 16) -> None:
        super().__init__()
        c = [w, w, 2 * w, 2 * w, 4 * w, 4 * w]
        layers: list[nn.Module] = [nn.Conv2d(3, c[0], 3, padding=1, bias=False), nn.BatchNorm2d(c[0]), nn.Hardtanh()]
        for i in range(1, 6):
            layers.append(BinConv(c[i - 1], c[i], AutogradSign()))
            if i in (1, 3, 5):
                layers.append(nn.MaxPool2d(2))
            layers += [nn.BatchNorm2d(c[i]), nn.Hardtanh()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            BinLinear(c[5] * 16, 64, AutogradSign()),
            nn.BatchNorm1d(64),
            nn.Hardtanh(),
            BinLinear(64, 64, AutogradSign()),
            nn.BatchNorm1d(64),
            nn.Hardtanh(),
            nn.Linear(64, 10),
            nn.BatchNorm1d(10),
        )

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


class XNORNet(nn.Module):
    """XNOR-Net style: BN -> sign -> (max-pool on the signs) -> conv with per-channel alpha -> ReLU."""

    input_shape = (3, 16, 16)

    def __init__(self, w: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, w, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(w)
        self.act2 = DetachSign()
        self.pool2 = nn.MaxPool2d(2)
        self.conv2 = BinConv(w, w, nn.Identity(), scale=True, bias=True)
        self.bn3 = nn.BatchNorm2d(w)
        self.conv3 = BinConv(w, 2 * w, DetachSign(), scale=True)
        self.bn4 = nn.BatchNorm2d(2 * w)
        self.conv4 = BinConv(2 * w, 2 * w, DetachSign(), scale=True, stride=2)
        self.fc = nn.Linear(2 * w, 10)

    def forward(self, x):
        x = self.bn1(self.conv1(x))
        x = self.conv2(self.pool2(self.act2(x)))
        x = F.relu(x)
        x = self.bn4(self.conv3(self.bn3(x)))
        x = F.relu(self.conv4(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class ReActBlock(nn.Module):
    def __init__(self, c: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = BinConv(c, c, RSign(c), scale=True, stride=stride)
        self.bn = nn.BatchNorm2d(c)
        self.shortcut = nn.AvgPool2d(2) if stride == 2 else nn.Identity()
        self.act = RPReLU(c)

    def forward(self, x):
        return self.act(self.bn(self.conv(x)) + self.shortcut(x))


class ReActNetSmall(nn.Module):
    """Bi-Real / ReActNet style: real-valued shortcuts, RSign, RPReLU, softmax output."""

    input_shape = (3, 16, 16)

    def __init__(self, w: int = 32) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, w, 3, padding=1, bias=False), nn.BatchNorm2d(w))
        self.blocks = nn.Sequential(ReActBlock(w), ReActBlock(w, stride=2), ReActBlock(w))
        self.fc = nn.Linear(w, 10)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return F.softmax(self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)), dim=1)


class BinaryDuoNet(nn.Module):
    """BinaryDuo decoupled blocks: two shifted signs per channel feed a binary conv over 2C channels."""

    input_shape = (3, 16, 16)

    def __init__(self, w: int = 24) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, w, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(w)
        self.conv2 = BinConv(2 * w, w, DecoupledSign(w), scale=True)
        self.bn2 = nn.BatchNorm2d(w)
        self.conv3 = BinConv(2 * w, w, DecoupledSign(w), scale=True, stride=2)
        self.bn3 = nn.BatchNorm2d(w)
        self.fc = nn.Linear(w * 8 * 8, 10)

    def forward(self, x):
        x = self.bn1(self.conv1(x))
        x = self.bn2(self.conv2(x))
        x = torch.sigmoid(self.bn3(self.conv3(x)))
        return self.fc(torch.flatten(x, 1))


class BinaryMLP(nn.Module):
    """Binary MLP on a small image: first and last dense float, sign(sign(x) + 0.1) activations."""

    input_shape = (1, 12, 12)

    def __init__(self, h: int = 96) -> None:
        super().__init__()
        self.fc1 = nn.Linear(144, h)
        self.bn1 = nn.BatchNorm1d(h)
        self.fc2 = BinLinear(h, h, SignSign())
        self.bn2 = nn.BatchNorm1d(h)
        self.fc3 = BinLinear(h, h, SignSign(), scale=True)
        self.bn3 = nn.BatchNorm1d(h)
        self.fc4 = nn.Linear(h, 10)

    def forward(self, x):
        x = self.bn1(self.fc1(torch.flatten(x, 1)))
        x = self.bn3(self.fc3(self.bn2(self.fc2(x))))
        return self.fc4(F.hardtanh(x))


ZOO = {
    "binarynet_vgg": BinaryNetVGG,
    "xnornet": XNORNet,
    "reactnet": ReActNetSmall,
    "binaryduo": BinaryDuoNet,
    "binary_mlp": BinaryMLP,
}


def make_bn_nontrivial(model: nn.Module, seed: int = 0) -> None:
    """Calibrate BatchNorm on random inputs, then perturb: gamma < 0, gamma = 0, tiny/huge variances."""
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    for m in model.modules():  # random shifts / slopes for RSign, RPReLU
        if isinstance(m, RSign):
            m.shift.data = 0.2 * torch.randn(m.shift.shape, generator=g)
        if isinstance(m, RPReLU):
            m.pre.data = 0.2 * torch.randn(m.pre.shape, generator=g)
            m.post.data = 0.2 * torch.randn(m.post.shape, generator=g)
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn((16,) + model.input_shape, generator=g))
    model.eval()
    with torch.no_grad():
        for m in bns:
            c = m.num_features
            gamma = 0.5 + torch.rand(c, generator=g)
            gamma[torch.rand(c, generator=g) < 0.3] *= -1  # negative gamma flips the threshold
            gamma[c // 2] = 0.0  # zero gamma: a constant output channel
            m.weight.copy_(gamma)
            beta = 0.3 * torch.randn(c, generator=g)
            beta[c // 2] = 0.7
            m.bias.copy_(beta)
            var = m.running_var.clone()
            var[1] *= 1e-4  # tiny variance: a steep step
            var[2] *= 1e4  # huge variance
            m.running_var.copy_(var)
            m.running_mean.add_(0.05 * torch.randn(c, generator=g) * var.sqrt())


def build_model(cls: type[nn.Module], seed: int = 0) -> nn.Module:
    """Instantiate `cls` with seeded random weights and non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    model = cls()
    make_bn_nontrivial(model, seed)
    return model.eval()


def build(name: str, seed: int = 0) -> nn.Module:
    return build_model(ZOO[name], seed)


def example_input(model: nn.Module, n: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn((n,) + tuple(model.input_shape), generator=torch.Generator().manual_seed(seed))
