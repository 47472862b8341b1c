"""BinaryNet.pytorch VGG (CIFAR-10), shrunk.

Source: itayhubara/BinaryNet.pytorch, models/binarized_modules.py (Binarize, BinarizeConv2d,
BinarizeLinear) and models/vgg_cifar10_binary.py (VGG_Cifar10).
Idioms preserved:
- Binarize as an InplaceFunction: output.clone() then `.div(scale).sign().mul(scale)` with scale=1
  (so the sign is `sign(x) * 1`, a `mul` after `aten.sign`); the repo's non-static forward is written
  with @staticmethod/ctx here because legacy Functions no longer run on torch 2.x (forks do the same).
- BinarizeConv2d binarizes its input unless `input.size(1) != 3` (first layer: real input, binary weights);
  BinarizeLinear binarizes unless `input.size(1) != 784`.
- `self.bias.org = self.bias.data.clone()` inside forward (`.data` side effect), then
  `out += self.bias.view(1, -1, 1, 1).expand_as(out)` (in-place add of an expanded parameter).
- conv -> MaxPool -> BatchNorm -> Hardtanh(inplace=True) ordering; `x.view(-1, C*4*4)` flatten of a
  float (hardtanh) tensor into a BinarizeLinear that re-binarizes; BatchNorm1d(affine=False) and
  nn.LogSoftmax() (no dim) as the head.
Shrunk: widths 32/32/64/64/64/64 (repo: 384..1536), classifier 1024 -> 128.
"""

import torch
import torch.nn as nn
from torch.autograd.function import InplaceFunction
from realcode_support import calibrate  # BN calibration shared by the fixtures (not in the source repo)


class Binarize(InplaceFunction):
    @staticmethod
    def forward(ctx, input, quant_mode="det", allow_scale=False, inplace=False):
        ctx.inplace = inplace
        if ctx.inplace:
            ctx.mark_dirty(input)
            output = input
        else:
            output = input.clone()
        scale = output.abs().max() if allow_scale else 1
        if quant_mode == "det":
            return output.div(scale).sign().mul(scale)
        return (
            output.div(scale).add_(1).div_(2).add_(torch.rand(output.size()).add(-0.5)).clamp_(0, 1).round().mul_(2).add_(-1).mul(scale)
        )

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output, None, None, None


def binarized(input, quant_mode="det"):
    return Binarize.apply(input, quant_mode)


class BinarizeLinear(nn.Linear):
    def forward(self, input):
        if input.size(1) != 784:
            input_b = binarized(input)
        weight_b = binarized(self.weight)
        out = nn.functional.linear(input_b, weight_b)
        if self.bias is not None:
            self.bias.org = self.bias.data.clone()
            out += self.bias.view(1, -1).expand_as(out)
        return out


class BinarizeConv2d(nn.Conv2d):
    def forward(self, input):
        if input.size(1) != 3:
            input_b = binarized(input)
        else:
            input_b = input
        weight_b = binarized(self.weight)
        out = nn.functional.conv2d(input_b, weight_b, None, self.stride, self.padding, self.dilation, self.groups)
        if self.bias is not None:
            self.bias.org = self.bias.data.clone()
            out += self.bias.view(1, -1, 1, 1).expand_as(out)
        return out


class VGG_Cifar10(nn.Module):
    def __init__(self, num_classes=10, w=32):
        super().__init__()
        self.features = nn.Sequential(
            BinarizeConv2d(3, w, kernel_size=3, stride=1, padding=1, bias=True),
            nn.BatchNorm2d(w),
            nn.Hardtanh(inplace=True),
            BinarizeConv2d(w, w, kernel_size=3, padding=1, bias=True),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.BatchNorm2d(w),
            nn.Hardtanh(inplace=True),
            BinarizeConv2d(w, 2 * w, kernel_size=3, padding=1, bias=True),
            nn.BatchNorm2d(2 * w),
            nn.Hardtanh(inplace=True),
            BinarizeConv2d(2 * w, 2 * w, kernel_size=3, padding=1, bias=True),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.BatchNorm2d(2 * w),
            nn.Hardtanh(inplace=True),
            BinarizeConv2d(2 * w, 2 * w, kernel_size=3, padding=1, bias=True),
            nn.BatchNorm2d(2 * w),
            nn.Hardtanh(inplace=True),
            BinarizeConv2d(2 * w, 64, kernel_size=3, padding=1, bias=True),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.BatchNorm2d(64),
            nn.Hardtanh(inplace=True),
        )
        self.classifier = nn.Sequential(
            BinarizeLinear(64 * 4 * 4, 128, bias=True),
            nn.BatchNorm1d(128),
            nn.Hardtanh(inplace=True),
            BinarizeLinear(128, 128, bias=True),
            nn.BatchNorm1d(128),
            nn.Hardtanh(inplace=True),
            BinarizeLinear(128, num_classes, bias=True),
            nn.BatchNorm1d(num_classes, affine=False),
            nn.LogSoftmax(),
        )

    def forward(self, x):
        x = self.features(x)
        x = x.view(-1, 64 * 4 * 4)
        x = self.classifier(x)
        return x


def make():
    torch.manual_seed(0)
    return calibrate(VGG_Cifar10(), (16, 3, 32, 32))


def example_input():
    return torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def _conv_forward_no_org(self, input):
    input_b = binarized(input) if input.size(1) != 3 else input
    out = nn.functional.conv2d(input_b, binarized(self.weight), None, self.stride, self.padding, self.dilation, self.groups)
    if self.bias is not None:
        out += self.bias.view(1, -1, 1, 1).expand_as(out)
    return out


def _linear_forward_no_org(self, input):
    if input.size(1) != 784:
        input_b = binarized(input)
    out = nn.functional.linear(input_b, binarized(self.weight))
    if self.bias is not None:
        out += self.bias.view(1, -1).expand_as(out)
    return out


def make_exportable():
    """The same model with the one export blocker removed: `self.bias.org = self.bias.data.clone()`."""
    model = make()
    for m in model.modules():
        if isinstance(m, BinarizeConv2d):
            m.forward = _conv_forward_no_org.__get__(m)
        elif isinstance(m, BinarizeLinear):
            m.forward = _linear_forward_no_org.__get__(m)
    return model
