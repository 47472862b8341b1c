"""ReActNet-A (MobileNet-style 1w1a), shrunk to CIFAR size.

Source: liuzechun/ReActNet, resnet/... and mobilenet/reactnet.py (LearnableBias, BinaryActivation,
HardBinaryConv, firstconv3x3, BasicBlock, reactnet), written here from the repository's structure (no code
copied).
Idioms preserved:
- LearnableBias: a (1, C, 1, 1) parameter added as `x + self.bias.expand_as(x)` (RSign's shift before
  the sign, RPReLU's two shifts around nn.PReLU).
- BinaryActivation: torch.sign with the piecewise-quadratic STE and the detach trick
  `out_forward.detach() - out3.detach() + out3`.
- HardBinaryConv: flat latent weight viewed as (O, I, kh, kw), nested-mean alpha `.detach()`ed, weights
  `(alpha * sign(w)).detach() - clip(w).detach() + clip(w)`; conv3x3 / conv1x1 helpers built on it.
- BasicBlock: move11 -> sign -> binary 3x3 (stride 2 when downsampling) -> bn1; AvgPool2d(2, 2) on the
  shortcut when strided; `out1 = x + out1`; move12 -> prelu1 -> move13; then move21 -> sign -> binary 1x1
  -> bn2 -> `+= out1` when the width stays, or two binary 1x1 branches (binary_pw_down1/2, bn2_1/bn2_2,
  each `+= out1`) concatenated with torch.cat(dim=1) when it doubles; move22 -> prelu2 -> move23.
- firstconv3x3 (float conv + BN), nn.ModuleList of blocks iterated in forward, AdaptiveAvgPool2d(1),
  x.view(x.size(0), -1), nn.Linear. The block layout follows `stage_out_channel` and the repository's
  rule for stride 2 (width changes, except to the first width after the stem).
Shrunk: stage_out_channel = [8, 16, 32, 32, 64, 64] (repo [32, 64, 128, 128, ..., 1024]); the stem stride
1 for 32x32 inputs. Latent weights randn * 0.05 (repo rand * 0.001, all positive); LearnableBias and
PReLU slopes randomised (repo zeros / 0.25) so that the shifts and slopes matter.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from realcode_support import calibrate  # BN calibration shared by the fixtures (not in the source repo)

stage_out_channel = [8, 16, 32, 32, 64, 64]


def conv3x3(in_planes, out_planes, stride=1):
    return HardBinaryConv(in_planes, out_planes, kernel_size=3, stride=stride, padding=1)


def conv1x1(in_planes, out_planes, stride=1):
    return HardBinaryConv(in_planes, out_planes, kernel_size=1, stride=stride, padding=0)


class firstconv3x3(nn.Module):
    def __init__(self, inp, oup, stride):
        super(firstconv3x3, self).__init__()
        self.conv1 = nn.Conv2d(inp, oup, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(oup)

    def forward(self, x):
        out = self.conv1(x)
        out = self.bn1(out)
        return out


class LearnableBias(nn.Module):
    def __init__(self, out_chn):
        super(LearnableBias, self).__init__()
        self.bias = nn.Parameter(torch.zeros(1, out_chn, 1, 1), requires_grad=True)

    def forward(self, x):
        out = x + self.bias.expand_as(x)
        return out


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
        self.weight = nn.Parameter(torch.randn((self.number_of_weights, 1)) * 0.05, requires_grad=True)

    def forward(self, x):
        real_weights = self.weight.view(self.shape)
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

    def __init__(self, inplanes, planes, stride=1):
        super(BasicBlock, self).__init__()
        norm_layer = nn.BatchNorm2d

        self.move11 = LearnableBias(inplanes)
        self.binary_3x3 = conv3x3(inplanes, inplanes, stride=stride)
        self.bn1 = norm_layer(inplanes)

        self.move12 = LearnableBias(inplanes)
        self.prelu1 = nn.PReLU(inplanes)
        self.move13 = LearnableBias(inplanes)

        self.move21 = LearnableBias(inplanes)

        if inplanes == planes:
            self.binary_pw = conv1x1(inplanes, planes)
            self.bn2 = norm_layer(planes)
        else:
            self.binary_pw_down1 = conv1x1(inplanes, inplanes)
            self.binary_pw_down2 = conv1x1(inplanes, inplanes)
            self.bn2_1 = norm_layer(inplanes)
            self.bn2_2 = norm_layer(inplanes)

        self.move22 = LearnableBias(planes)
        self.prelu2 = nn.PReLU(planes)
        self.move23 = LearnableBias(planes)

        self.binary_activation = BinaryActivation()
        self.stride = stride
        self.inplanes = inplanes
        self.planes = planes

        if self.inplanes != self.planes:
            self.pooling = nn.AvgPool2d(2, 2)

    def forward(self, x):
        out1 = self.move11(x)

        out1 = self.binary_activation(out1)
        out1 = self.binary_3x3(out1)
        out1 = self.bn1(out1)

        if self.stride == 2:
            x = self.pooling(x)

        out1 = x + out1

        out1 = self.move12(out1)
        out1 = self.prelu1(out1)
        out1 = self.move13(out1)

        out2 = self.move21(out1)
        out2 = self.binary_activation(out2)

        if self.inplanes == self.planes:
            out2 = self.binary_pw(out2)
            out2 = self.bn2(out2)
            out2 += out1
        else:
            assert self.planes == self.inplanes * 2
            out2_1 = self.binary_pw_down1(out2)
            out2_2 = self.binary_pw_down2(out2)
            out2_1 = self.bn2_1(out2_1)
            out2_2 = self.bn2_2(out2_2)
            out2_1 += out1
            out2_2 += out1
            out2 = torch.cat([out2_1, out2_2], dim=1)

        out2 = self.move22(out2)
        out2 = self.prelu2(out2)
        out2 = self.move23(out2)
        return out2


class reactnet(nn.Module):
    def __init__(self, num_classes=10):
        super(reactnet, self).__init__()
        self.feature = nn.ModuleList()
        for i in range(len(stage_out_channel)):
            if i == 0:
                self.feature.append(firstconv3x3(3, stage_out_channel[i], 1))
            elif stage_out_channel[i - 1] != stage_out_channel[i] and stage_out_channel[i] != stage_out_channel[1]:
                self.feature.append(BasicBlock(stage_out_channel[i - 1], stage_out_channel[i], 2))
            else:
                self.feature.append(BasicBlock(stage_out_channel[i - 1], stage_out_channel[i], 1))
        self.pool1 = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(stage_out_channel[-1], num_classes)

    def forward(self, x):
        for i, block in enumerate(self.feature):
            x = block(x)

        x = self.pool1(x)
        x = x.view(x.size(0), -1)
        x = self.fc(x)

        return x


def make():
    torch.manual_seed(0)
    model = reactnet()
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, LearnableBias):
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            elif isinstance(m, nn.PReLU):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.5)
    return calibrate(model, (16, 3, 32, 32))


def example_input():
    return torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
