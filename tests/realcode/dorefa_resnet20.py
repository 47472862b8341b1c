"""DoReFa-Net PyTorch port: pre-activation ResNet-20 (CIFAR-10), W1A2, shrunk.

Source: zzzxxxttt/pytorch_DoReFaNet, utils/quant_dorefa.py (uniform_quantize -> qfn Function,
weight_quantize_fn, activation_quantize_fn, conv2d_Q_fn) and nets/cifar_resnet.py
(PreActBlock_conv_Q, PreActResNet; the file's own __main__ builds resnet20(wbits=1, abits=2)).
Idioms preserved:
- uniform_quantize(k) builds a class inside a closure; `qfn().apply` (Function instance .apply);
  k == 1 -> torch.sign(input); k > 1 -> torch.round(input * n) / n with n = 2^k - 1 (aten.round).
- weight_quantize_fn(w_bit=1): E = torch.mean(torch.abs(x)).detach(); `uniform_q(x / E) * E` (one
  per-tensor scale, not per channel).
- activation_quantize_fn: uniform_q(torch.clamp(x, 0, 1)) -- a 2-bit {0, 1/3, 2/3, 1} activation,
  applied to F.relu(bn(x)).
- Conv2d_Q class returned by conv2d_Q_fn(w_bit) (class factory); forward calls F.conv2d with the
  quantized weight.
- Pre-activation block: act_q(relu(bn0(x))) feeds both conv0 and, on stride 2, a quantized 1x1 skip
  conv + BN; `out += shortcut`.
- float stem conv; final BN; `out.mean(dim=2).mean(dim=2)` global pooling; nn.Linear.
Shrunk: [1, 1, 1] units per stage (repo [3, 3, 3]); widths 16/32/64 as in the repo.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from realcode_support import calibrate  # BN calibration shared by the fixtures (not in the source repo)


def uniform_quantize(k):
    class qfn(torch.autograd.Function):
        @staticmethod
        def forward(ctx, input):
            if k == 32:
                out = input
            elif k == 1:
                out = torch.sign(input)
            else:
                n = float(2**k - 1)
                out = torch.round(input * n) / n
            return out

        @staticmethod
        def backward(ctx, grad_output):
            grad_input = grad_output.clone()
            return grad_input

    return qfn().apply


class weight_quantize_fn(nn.Module):
    def __init__(self, w_bit):
        super().__init__()
        assert w_bit <= 8 or w_bit == 32
        self.w_bit = w_bit
        self.uniform_q = uniform_quantize(k=w_bit)

    def forward(self, x):
        if self.w_bit == 32:
            weight_q = x
        elif self.w_bit == 1:
            E = torch.mean(torch.abs(x)).detach()
            weight_q = self.uniform_q(x / E) * E
        else:
            weight = torch.tanh(x)
            max_w = torch.max(torch.abs(weight)).detach()
            weight = weight / 2 / max_w + 0.5
            weight_q = max_w * (2 * self.uniform_q(weight) - 1)
        return weight_q


class activation_quantize_fn(nn.Module):
    def __init__(self, a_bit):
        super().__init__()
        assert a_bit <= 8 or a_bit == 32
        self.a_bit = a_bit
        self.uniform_q = uniform_quantize(k=a_bit)

    def forward(self, x):
        if self.a_bit == 32:
            activation_q = x
        else:
            activation_q = self.uniform_q(torch.clamp(x, 0, 1))
        return activation_q


def conv2d_Q_fn(w_bit):
    class Conv2d_Q(nn.Conv2d):
        def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True):
            super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)
            self.w_bit = w_bit
            self.quantize_fn = weight_quantize_fn(w_bit=w_bit)

        def forward(self, input, order=None):
            weight_q = self.quantize_fn(self.weight)
            return F.conv2d(input, weight_q, self.bias, self.stride, self.padding, self.dilation, self.groups)

    return Conv2d_Q


class PreActBlock_conv_Q(nn.Module):
    def __init__(self, wbit, abit, in_planes, out_planes, stride=1):
        super().__init__()
        Conv2d = conv2d_Q_fn(w_bit=wbit)
        self.act_q = activation_quantize_fn(a_bit=abit)
        self.bn0 = nn.BatchNorm2d(in_planes)
        self.conv0 = Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_planes)
        self.conv1 = Conv2d(out_planes, out_planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.skip_conv = None
        if stride != 1:
            self.skip_conv = Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, padding=0, bias=False)
            self.skip_bn = nn.BatchNorm2d(out_planes)

    def forward(self, x):
        out = self.act_q(F.relu(self.bn0(x)))
        if self.skip_conv is not None:
            shortcut = self.skip_conv(out)
            shortcut = self.skip_bn(shortcut)
        else:
            shortcut = x
        out = self.conv0(out)
        out = self.act_q(F.relu(self.bn1(out)))
        out = self.conv1(out)
        out += shortcut
        return out


class PreActResNet(nn.Module):
    def __init__(self, block, num_units, wbit, abit, num_classes):
        super().__init__()
        self.conv0 = nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1, bias=False)
        self.layers = nn.ModuleList()
        in_planes = 16
        strides = [1] * (num_units[0]) + [2] + [1] * (num_units[1] - 1) + [2] + [1] * (num_units[2] - 1)
        channels = [16] * num_units[0] + [32] * num_units[1] + [64] * num_units[2]
        for stride, channel in zip(strides, channels):
            self.layers.append(block(wbit, abit, in_planes, channel, stride))
            in_planes = channel
        self.bn = nn.BatchNorm2d(64)
        self.logit = nn.Linear(64, num_classes)

    def forward(self, x):
        out = self.conv0(x)
        for layer in self.layers:
            out = layer(out)
        out = self.bn(out)
        out = out.mean(dim=2).mean(dim=2)
        out = self.logit(out)
        return out


def make(wbits=1, abits=2):
    torch.manual_seed(0)
    return calibrate(PreActResNet(PreActBlock_conv_Q, [1, 1, 1], wbits, abits, num_classes=10), (16, 3, 32, 32))


def example_input():
    return torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
