"""ImageNet-size BNNs written the way their public training code writes them (plain PyTorch).

Bi-Real-18 (Liu et al. 2018: approx-sign activation, real-valued shortcut around every binary 3x3
conv, avgpool + 1x1 float downsample) and ReActNet-A (Liu et al. 2020: MobileNetV1 layout, RSign =
learnable bias + sign, RPReLU, binary 3x3 and 1x1 convs, downsample by two concatenated 1x1
branches). Binary weights use the training-time form `(alpha * sign(W)).detach() - clip(W).detach()
+ clip(W)` with alpha = mean |W| per output channel. Weights are random and BatchNorm statistics
randomised (negative gamma included): these models are for conversion-time and speed benchmarks,
not accuracy. No code is copied from those repositories.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ApproxSign(nn.Module):
    """Bi-Real's activation: sign forward, a piecewise-quadratic surrogate for the gradient."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        below_m1, below_0, below_1 = (x < -1).float(), (x < 0).float(), (x < 1).float()
        soft = -1 * below_m1 + (x * x + 2 * x) * (1 - below_m1)
        soft = soft * below_0 + (-x * x + 2 * x) * (1 - below_0)
        soft = soft * below_1 + 1 * (1 - below_1)
        return torch.sign(x).detach() - soft.detach() + soft


class BinaryConv(nn.Module):
    """A conv whose weights are alpha * sign(W) in the forward pass (the detach trick)."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.stride, self.padding, self.groups = stride, k // 2, groups
        self.weight = nn.Parameter(torch.randn(cout, cin // groups, k, k) * 0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        alpha = w.abs().mean(dim=(1, 2, 3), keepdim=True).detach()
        clipped = torch.clamp(w, -1.0, 1.0)
        bw = (alpha * torch.sign(w)).detach() - clipped.detach() + clipped
        return F.conv2d(x, bw, stride=self.stride, padding=self.padding, groups=self.groups)


class BiRealBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.act, self.conv, self.bn = ApproxSign(), BinaryConv(cin, cout, 3, stride), nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.down is None else self.down(x)
        return self.bn(self.conv(self.act(x))) + shortcut


class BiReal18(nn.Module):
    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.MaxPool2d(3, 2, 1))
        blocks, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            for i in range(4):
                blocks.append(BiRealBlock(cin, cout, stride if i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(512, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


class LearnableBias(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias.expand_as(x)


class RPReLU(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.pre, self.prelu, self.post = LearnableBias(c), nn.PReLU(c), LearnableBias(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(self.prelu(self.pre(x)))


class RSign(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.shift = LearnableBias(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sign(self.shift(x))


class ReActBlock(nn.Module):
    """Binary 3x3 (+ avgpool shortcut when strided), then binary 1x1: one or two concatenated branches."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.sign3, self.conv3, self.bn3, self.act3 = (
            RSign(cin),
            BinaryConv(cin, cin, 3, stride),
            nn.BatchNorm2d(cin),
            RPReLU(cin),
        )
        self.pool = nn.AvgPool2d(2, 2) if stride == 2 else None
        self.sign1 = RSign(cin)
        self.branches = nn.ModuleList(
            nn.ModuleList([BinaryConv(cin, cin, 1), nn.BatchNorm2d(cin), RPReLU(cin)]) for _ in range(cout // cin)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.pool is None else self.pool(x)
        x = self.act3(self.bn3(self.conv3(self.sign3(x))) + shortcut)
        s = self.sign1(x)
        outs = [act(bn(conv(s)) + x) for conv, bn, act in self.branches]
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)


class ReActNetA(nn.Module):
    LAYOUT = (
        ((32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1), (256, 512, 2))
        + ((512, 512, 1),) * 5
        + ((512, 1024, 2), (1024, 1024, 1))
    )

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32))
        self.blocks = nn.Sequential(*(ReActBlock(i, o, s) for i, o, s in self.LAYOUT))
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(1024, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


def randomised(model: nn.Module, seed: int = 0) -> nn.Module:
    """`model` in eval mode with random BatchNorm statistics and affine (negative gamma included)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) * 2 - 1)
                m.bias.copy_(torch.rand(c, generator=g) - 0.5)
            elif isinstance(m, LearnableBias):
                m.bias.copy_((torch.rand(m.bias.shape, generator=g) - 0.5) * 0.2)
    return model.eval()


MODELS = {"bireal18": BiReal18, "reactnet_a": ReActNetA}


def build(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return randomised(MODELS[name](), seed)
