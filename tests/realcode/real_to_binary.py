"""Real-to-Binary Net (Martinez et al., ICLR 2020) block written in PyTorch, shrunk to CIFAR size.

Source: the reference implementation is TensorFlow/larq: larq/zoo,
larq_zoo/literature/real_to_binary_convolutions/ (model definitions with LearnedRescaleLayer and the
data-driven channel re-scaling of the binary conv output); PyTorch users re-write it as below (the
common form: an SE-style gate computed from the *real-valued* block input with 1x1 convs, multiplied
onto the binary conv output). Structure follows the paper; layer code is this corpus' own.
Idioms preserved:
- Binary path: sign activation (STE Function returning torch.sign) -> conv with sign(W) weights (no
  per-channel alpha) -> `out * gate` where gate = sigmoid(conv1x1(relu(conv1x1(adaptive_avg_pool(x)))))
  from the real input x (reduction 8): a `mul` by a non-constant (N, C, 1, 1) tensor.
- LearnedRescaleLayer style learned (1, C, 1, 1) scale multiplied in (XNOR-Net++).
- BN -> `+ shortcut` -> PReLU; downsample shortcut AvgPool2d(2, 2) -> float 1x1 conv -> BN.
- float stem conv + BN + ReLU, AdaptiveAvgPool2d(1), flatten with x.view(x.size(0), -1), Linear.
Shrunk: widths 16/32/64, one block per stage (2 binary convs per block as in the paper's ResNet-18
double-skip layout).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from realcode_support import calibrate  # BN calibration shared by the fixtures (not in the source repo)


class SteSign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.sign(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (x.abs() <= 1).to(g.dtype)


class QuantConv2d(nn.Conv2d):
    def forward(self, x):
        return F.conv2d(SteSign.apply(x), SteSign.apply(self.weight), None, self.stride, self.padding)


class ScaleGate(nn.Module):
    def __init__(self, in_ch, out_ch, reduction=8):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(in_ch, max(in_ch // reduction, 4), 1)
        self.fc2 = nn.Conv2d(max(in_ch // reduction, 4), out_ch, 1)

    def forward(self, x):
        return torch.sigmoid(self.fc2(F.relu(self.fc1(self.pool(x)))))


class LearnedRescaleLayer(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1, ch, 1, 1))

    def forward(self, x):
        return x * self.scale


class R2BConv(nn.Module):
    def __init__(self, in_ch, out_ch, stride=1):
        super().__init__()
        self.conv = QuantConv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.gate = ScaleGate(in_ch, out_ch)
        self.rescale = LearnedRescaleLayer(out_ch)
        self.bn = nn.BatchNorm2d(out_ch)
        self.act = nn.PReLU(out_ch)
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.AvgPool2d(2, 2), nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch)
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x):
        out = self.conv(x)
        out = out * self.gate(x)
        out = self.rescale(out)
        out = self.bn(out)
        out = out + self.shortcut(x)
        return self.act(out)


class RealToBinaryNet(nn.Module):
    def __init__(self, widths=(16, 32, 64), num_classes=10):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)
        )
        blocks = []
        cin = widths[0]
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            blocks += [R2BConv(cin, w, stride), R2BConv(w, w, 1)]
            cin = w
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.stem(x)
        x = self.blocks(x)
        x = self.pool(x)
        x = x.view(x.size(0), -1)
        return self.fc(x)


def make():
    torch.manual_seed(0)
    model = RealToBinaryNet()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, LearnedRescaleLayer):
                m.scale.copy_(torch.rand_like(m.scale) + 0.5)
    return calibrate(model, (16, 3, 32, 32))


def example_input():
    return torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
