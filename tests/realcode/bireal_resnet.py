"""Bi-Real Net 18 style (1w1a), shrunk to CIFAR size.

Source: liuzechun/Bi-Real-net, pytorch_implementation/BiReal18_34/birealnet.py (BinaryActivation,
HardBinaryConv, BasicBlock, BiRealNet), written here from the repository's structure (no code copied).
Idioms preserved:
- BinaryActivation: torch.sign forward plus the piecewise-quadratic approximation built from three
  float masks (`x < -1`, `x < 0`, `x < 1` cast with .type(torch.float32)); the output is
  `out_forward.detach() - out3.detach() + out3` (the detach trick on the activation: its forward value
  equals the sign only up to float32 rounding).
- HardBinaryConv: the latent weight is a flat (n, 1) parameter viewed as (O, I, kh, kw); alpha is a
  nested `torch.mean(torch.mean(torch.mean(abs(w), dim=3, keepdim=True), dim=2, keepdim=True), dim=1,
  keepdim=True)`, `.detach()`ed; binary weights `(alpha * torch.sign(w)).detach() - clip(w).detach() +
  clip(w)` with `clip = torch.clamp(w, -1.0, 1.0)` (detach-trick weights: one magnitude per output
  channel only up to float32 rounding); F.conv2d.
- BasicBlock: one binary 3x3 conv per block with a real-valued shortcut around it:
  `out = bn1(binary_conv(binary_activation(x))); out += residual`.
- Downsample: nn.AvgPool2d(kernel_size=2, stride=stride) -> float conv1x1 -> BN (the repository keeps
  the downsample 1x1 real-valued).
- CIFAR stem (imagenet=False): 3x3 conv stride 1 + BN, no max-pool; AdaptiveAvgPool2d((1, 1)),
  x.view(x.size(0), -1), nn.Linear.
Shrunk: widths 16/32/64/64, two blocks in the first stage and one in the others (repo [4, 4, 4, 4], 64 to
512). The repository initialises the latent weights to rand * 0.001 (all positive); trained-like random
signs (randn * 0.05) are used instead so that the binary weights are not all +alpha.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from realcode_support import calibrate  # BN calibration shared by the fixtures (not in the source repo)


def conv1x1(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BinaryActivation(nn.Module):
    def __init__(self):
        super(BinaryActivation, self).__init__()

    def forward(self, x):
        out_forward = torch.sign(x)
        mask1 = x < -1
        mask2 = x < 0
        mask3 = x < 1
        out1 = (-1) * mask1.type(torch.float32) + (x * x + 2 * x) * (1 - mask1.type(torch.float32))
        out2 = out1 * mask2.type(torch.float32) + (-x * x + 2 * x) * (1 - mask2.type(torch.float32))
        out3 = out2 * mask3.type(torch.float32) + 1 * (1 - mask3.type(torch.float32))
        out = out_forward.detach() - out3.detach() + out3
        return out


class HardBinaryConv(nn.Module):
    def __init__(self, in_chn, out_chn, kernel_size=3, stride=1, padding=1):
        super(HardBinaryConv, self).__init__()
        self.stride = stride
        self.padding = padding
        self.number_of_weights = in_chn * out_chn * kernel_size * kernel_size
        self.shape = (out_chn, in_chn, kernel_size, kernel_size)
        self.weights = nn.Parameter(torch.randn((self.number_of_weights, 1)) * 0.05, requires_grad=True)

    def forward(self, x):
        real_weights = self.weights.view(self.shape)
        scaling_factor = torch.mean(
            torch.mean(torch.mean(abs(real_weights), dim=3, keepdim=True), dim=2, keepdim=True), dim=1, keepdim=True
        )
        scaling_factor = scaling_factor.detach()
        binary_weights_no_grad = scaling_factor * torch.sign(real_weights)
        cliped_weights = torch.clamp(real_weights, -1.0, 1.0)
        binary_weights = binary_weights_no_grad.detach() - cliped_weights.detach() + cliped_weights
        y = F.conv2d(x, binary_weights, stride=self.stride, padding=self.padding)
        return y


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super(BasicBlock, self).__init__()
        self.binary_activation = BinaryActivation()
        self.binary_conv = HardBinaryConv(inplanes, planes, stride=stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        residual = x
        out = self.binary_activation(x)
        out = self.binary_conv(out)
        out = self.bn1(out)
        if self.downsample is not None:
            residual = self.downsample(x)
        out += residual
        return out


class BiRealNet(nn.Module):
    def __init__(self, block, layers, num_classes=10, widths=(16, 32, 64, 64)):
        super(BiRealNet, self).__init__()
        self.inplanes = widths[0]
        self.conv1 = nn.Conv2d(3, widths[0], kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.layer1 = self._make_layer(block, widths[0], layers[0])
        self.layer2 = self._make_layer(block, widths[1], layers[1], stride=2)
        self.layer3 = self._make_layer(block, widths[2], layers[2], stride=2)
        self.layer4 = self._make_layer(block, widths[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[3] * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.AvgPool2d(kernel_size=2, stride=stride),
                conv1x1(self.inplanes, planes * block.expansion),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = []
        layers.append(block(self.inplanes, planes, stride, downsample))
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.avgpool(x)
        x = x.view(x.size(0), -1)
        x = self.fc(x)
        return x


def make():
    torch.manual_seed(0)
    return calibrate(BiRealNet(BasicBlock, [2, 1, 1, 1]), (16, 3, 32, 32))


def example_input():
    return torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
