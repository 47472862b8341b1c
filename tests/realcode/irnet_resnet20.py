"""IR-Net ResNet-20 1w1a (CIFAR-10), shrunk to one block per stage.

Source: htqin/IR-Net, CIFAR-10/ResNet20/1w1a/resnet.py (LambdaLayer, BasicBlock_1w1a, ResNet) with
CIFAR-10/ResNet20/1w1a/modules/ir_1w1a.py (IRConv2d) and the BinaryQuantize Function
(modules/binaryfunction.py).
Idioms preserved:
- IRConv2d(nn.Conv2d) holding k, t as tensors (`torch.tensor([10]).float()`; the repo calls .cuda(),
  dropped here for CPU) and, in forward: weight balancing `w - w.view(O, -1).mean(-1).view(O, 1, 1, 1)`,
  standardisation `/ bw.view(O, -1).std(-1).view(O, 1, 1, 1)`, the power-of-two scale
  `torch.pow(torch.tensor([2]*O).float(), (torch.log(bw.abs().view(O,-1).mean(-1)) / math.log(2)).round().float())
  .view(O,1,1,1).detach()`, BinaryQuantize().apply(bw, k, t) and BinaryQuantize().apply(input, k, t)
  (torch.sign forward; a Function instance's .apply with tensor extra args), `bw = bw * sw`, F.conv2d.
- Option-A shortcut: LambdaLayer(lambda x: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes//4, planes//4),
  "constant", 0)) -- strided slicing plus zero channel padding.
- Block: bn1(conv1(x)); `out += self.shortcut(x)`; F.hardtanh; x1 = out; bn2(conv2(out)); `out += x1`;
  F.hardtanh (a shortcut around every binary conv).
- float stem conv + BN + F.hardtanh; `F.avg_pool2d(out, out.size()[3])`; out.view(out.size(0), -1);
  BatchNorm1d; nn.Linear.
Shrunk: [1, 1, 1] blocks (repo [3, 3, 3]); widths 16/32/64 as in the repo.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd import Function
from realcode_support import calibrate  # BN calibration shared by the fixtures (not in the source repo)


class BinaryQuantize(Function):
    @staticmethod
    def forward(ctx, input, k, t):
        ctx.save_for_backward(input, k, t)
        out = torch.sign(input)
        return out

    @staticmethod
    def backward(ctx, grad_output):
        input, k, t = ctx.saved_tensors
        grad_input = k * t * (1 - torch.pow(torch.tanh(input * t), 2)) * grad_output
        return grad_input, None, None


class IRConv2d(nn.Conv2d):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)
        self.k = torch.tensor([10]).float()
        self.t = torch.tensor([0.1]).float()

    def forward(self, input):
        w = self.weight
        a = input
        bw = w - w.view(w.size(0), -1).mean(-1).view(w.size(0), 1, 1, 1)
        bw = bw / bw.view(bw.size(0), -1).std(-1).view(bw.size(0), 1, 1, 1)
        sw = (
            torch.pow(
                torch.tensor([2] * bw.size(0)).float(),
                (torch.log(bw.abs().view(bw.size(0), -1).mean(-1)) / math.log(2)).round().float(),
            )
            .view(bw.size(0), 1, 1, 1)
            .detach()
        )
        bw = BinaryQuantize().apply(bw, self.k, self.t)
        ba = BinaryQuantize().apply(a, self.k, self.t)
        bw = bw * sw
        output = F.conv2d(ba, bw, self.bias, self.stride, self.padding, self.dilation, self.groups)
        return output


class LambdaLayer(nn.Module):
    def __init__(self, lambd):
        super().__init__()
        self.lambd = lambd

    def forward(self, x):
        return self.lambd(x)


class BasicBlock_1w1a(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1, option="A"):
        super().__init__()
        self.conv1 = IRConv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = IRConv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            if option == "A":
                self.shortcut = LambdaLayer(
                    lambda x: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4), "constant", 0)
                )
            elif option == "B":
                self.shortcut = nn.Sequential(
                    IRConv2d(in_planes, self.expansion * planes, kernel_size=1, stride=stride, bias=False),
                    nn.BatchNorm2d(self.expansion * planes),
                )

    def forward(self, x):
        out = self.bn1(self.conv1(x))
        out += self.shortcut(x)
        out = F.hardtanh(out)
        x1 = out
        out = self.bn2(self.conv2(out))
        out += x1
        out = F.hardtanh(out)
        return out


class ResNet(nn.Module):
    def __init__(self, block, num_blocks, num_classes=10):
        super().__init__()
        self.in_planes = 16
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._make_layer(block, 16, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(block, 32, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(block, 64, num_blocks[2], stride=2)
        self.bn2 = nn.BatchNorm1d(64)
        self.linear = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.kaiming_normal_(m.weight)

    def _make_layer(self, block, planes, num_blocks, stride):
        strides = [stride] + [1] * (num_blocks - 1)
        layers = []
        for stride in strides:
            layers.append(block(self.in_planes, planes, stride))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x):
        out = F.hardtanh(self.bn1(self.conv1(x)))
        out = self.layer1(out)
        out = self.layer2(out)
        out = self.layer3(out)
        out = F.avg_pool2d(out, out.size()[3])
        out = out.view(out.size(0), -1)
        out = self.bn2(out)
        out = self.linear(out)
        return out


def make():
    torch.manual_seed(0)
    return calibrate(ResNet(BasicBlock_1w1a, [1, 1, 1]), (16, 3, 32, 32))


def example_input():
    return torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
