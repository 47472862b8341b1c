"""`bnn` library (1adrianb/binary-networks-pytorch) binary ResNet-18 style, shrunk to CIFAR size.

Source: 1adrianb/binary-networks-pytorch: bnn/ops.py (SignActivation, BasicInputBinarizer,
XNORWeightBinarizer, BasicScaleBinarizer), bnn/layers/conv.py (bnn Conv2d with bconfig:
activation_pre_process / weight_pre_process / activation_post_process), bnn/models/resnet.py
(ResNet with the AvgPool2d(ceil_mode=True, count_include_pad=False) downsample) and
bnn/models/layers/res_block.py (BasicBlock with activation=nn.ReLU).
Idioms preserved:
- SignActivation: static autograd Function, forward `input.sign()` (torch.sign: sign(0) = 0).
- XNORWeightBinarizer: alpha = x.norm(1, 3, keepdim=True).sum([2, 1], keepdim=True).div_(n), `.detach()`,
  `x = SignActivation.apply(x)` then `x.mul_(alpha.expand_as(x))` (in-place mul of an expanded alpha).
- BasicScaleBinarizer as activation_post_process: `layer_out.mul_(self.alpha)` with a learnable
  (1, C, 1, 1) alpha (the XNOR-Net++ style output scale) -- called as post(out, input) with 2 args.
- Conv2d.forward: input_proc = activation_pre_process(input); `self._conv_forward(input_proc,
  weight_pre_process(self.weight), bias=self.bias)`; tuple unwrapping; post-process.
- The model is built the library way: a float torchvision-like ResNet whose convs (all but the stem
  and the fc) are swapped for bnn Conv2d via from_module-style replacement (prepare_binary_model).
- BasicBlock: conv -> BN -> ReLU -> conv -> BN -> `out += identity` -> ReLU, so the next binary conv
  sees sign(relu(.)): a {0, 1} activation with exact zeros that torch.sign keeps as 0.
- downsample: AvgPool2d(kernel_size=stride, stride=stride, ceil_mode=True, count_include_pad=False)
  -> conv1x1 (binarized too) -> BN; stem conv + BN + ReLU + MaxPool2d(3, 2, 1);
  AdaptiveAvgPool2d((1, 1)); torch.flatten(x, 1); nn.Linear.
Shrunk: stem 3x3/1, widths 16/32/64/64, one BasicBlock per stage.
"""

from functools import partial

import torch
import torch.nn as nn
from realcode_support import calibrate  # BN calibration shared by the fixtures (not in the source repo)


class SignActivation(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input):
        ctx.save_for_backward(input)
        return input.sign()

    @staticmethod
    def backward(ctx, grad_output):
        (input,) = ctx.saved_tensors
        grad_input = grad_output.clone()
        grad_input.masked_fill_(input.ge(1) | input.le(-1), 0)
        return grad_input


class BasicInputBinarizer(nn.Module):
    def forward(self, x):
        return SignActivation.apply(x)


class XNORWeightBinarizer(nn.Module):
    def __init__(self, compute_alpha=True, center_weights=False):
        super().__init__()
        self.compute_alpha = compute_alpha
        self.center_weights = center_weights

    def _compute_alpha(self, x):
        n = x[0].nelement()
        if x.dim() == 4:
            alpha = x.norm(1, 3, keepdim=True).sum([2, 1], keepdim=True).div_(n)
        elif x.dim() == 2:
            alpha = x.norm(1, 1, keepdim=True).div_(n)
        else:
            raise ValueError(f"Expected ndims equal with 2 or 4, but found {x.dim()}")
        return alpha.detach()

    def forward(self, x):
        if self.center_weights:
            mean = x.mean(1, keepdim=True).expand_as(x)
            x = x.sub(mean)
        if self.compute_alpha:
            alpha = self._compute_alpha(x)
            x = SignActivation.apply(x)
            x = x.mul_(alpha.expand_as(x))
        else:
            x = SignActivation.apply(x)
        return x


class BasicScaleBinarizer(nn.Module):
    def __init__(self, module):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, module.out_channels, 1, 1))

    def forward(self, layer_out, layer_in):
        x = layer_out
        return x.mul_(self.alpha)


class BConfig:
    def __init__(self, activation_pre_process, activation_post_process, weight_pre_process):
        self.activation_pre_process = activation_pre_process
        self.activation_post_process = activation_post_process
        self.weight_pre_process = weight_pre_process


class Conv2d(nn.Conv2d):
    _FLOAT_MODULE = nn.Conv2d

    def __init__(self, *args, bconfig=None, **kwargs):
        super().__init__(*args, **kwargs)
        assert bconfig, "bconfig is required for a binarized module"
        self.bconfig = bconfig
        self.activation_pre_process = bconfig.activation_pre_process()
        self.activation_post_process = bconfig.activation_post_process(self)
        self.weight_pre_process = bconfig.weight_pre_process()

    def forward(self, input):
        input_proc = self.activation_pre_process(input)
        input_proc = self._conv_forward(input_proc, self.weight_pre_process(self.weight), bias=self.bias)
        if isinstance(input_proc, tuple) and len(input_proc) == 1:
            input_proc = input_proc[0]
        return self.activation_post_process(input_proc, input)

    @classmethod
    def from_module(cls, mod, bconfig):
        bnn_conv = cls(
            mod.in_channels,
            mod.out_channels,
            mod.kernel_size,
            stride=mod.stride,
            padding=mod.padding,
            dilation=mod.dilation,
            groups=mod.groups,
            bias=mod.bias is not None,
            padding_mode=mod.padding_mode,
            bconfig=bconfig,
        )
        bnn_conv.weight = mod.weight
        bnn_conv.bias = mod.bias
        return bnn_conv


def conv3x3(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, activation=nn.ReLU):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        # the repo passes `inpace=True` (sic) here; inplace is what it means
        self.act1 = activation(inplace=True) if activation == nn.ReLU else activation(num_parameters=planes)
        self.act2 = activation(inplace=True) if activation == nn.ReLU else activation(num_parameters=planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.act1(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.act2(out)
        return out


class ResNet(nn.Module):
    def __init__(self, block, layers, num_classes=10, widths=(16, 32, 64, 64)):
        super().__init__()
        self.inplanes = widths[0]
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, widths[0], layers[0])
        self.layer2 = self._make_layer(block, widths[1], layers[1], stride=2)
        self.layer3 = self._make_layer(block, widths[2], layers[2], stride=2)
        self.layer4 = self._make_layer(block, widths[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(self.outplanes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.AvgPool2d(kernel_size=stride, stride=stride, ceil_mode=True, count_include_pad=False),
                conv1x1(self.inplanes, planes * block.expansion, stride=1),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes))
        self.outplanes = planes
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.maxpool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.fc(x)
        return x


def prepare_binary_model(model, bconfig, skip=("conv1", "fc")):
    """The library's convert step: swap every nn.Conv2d except the skipped names for a bnn Conv2d."""
    for name, mod in list(model.named_modules()):
        for child_name, child in list(mod.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if type(child) is nn.Conv2d and full not in skip:
                setattr(mod, child_name, Conv2d.from_module(child, bconfig))
    return model


BCONFIG = BConfig(
    activation_pre_process=BasicInputBinarizer,
    activation_post_process=BasicScaleBinarizer,
    weight_pre_process=partial(XNORWeightBinarizer, compute_alpha=True, center_weights=False),
)


def make():
    torch.manual_seed(0)
    model = prepare_binary_model(ResNet(BasicBlock, [1, 1, 1, 1]), BCONFIG)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, BasicScaleBinarizer):
                m.alpha.copy_(torch.rand_like(m.alpha) + 0.5)
    return calibrate(model, (16, 3, 32, 32))


def example_input():
    return torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
