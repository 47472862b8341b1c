"""Brevitas BNN-PYNQ CNV 1w1a (CIFAR-10), plain-PyTorch equivalent, shrunk.

Source: Xilinx/brevitas, src/brevitas_examples/bnn_pynq/models/CNV.py (CNV), models/common.py
(CommonWeightQuant / CommonActQuant: CONST scaling 1.0, narrow range, signed; bit_width 1 ->
QuantType.BINARY), models/tensor_norm.py (TensorNorm), and brevitas' binary quantizer whose core is
`binary_sign(x) = ge(x, 0).to(dtype) - lt(x, 0).to(dtype)` (src/brevitas/function/ops.py) wrapped in an
STE and multiplied by the constant scale.
brevitas is not installed here, so QuantConv2d / QuantLinear / QuantIdentity are written as the plain
PyTorch computation they perform in eval mode (what torch.export sees after brevitas' own modules are
traced is a different, larger graph -- note for the converter: the real thing adds brevitas'
QuantTensor plumbing on top of this arithmetic):
- QuantIdentity(bit_width=8, min -1, max 1 - 2^-7, POWER_OF_TWO scale) on the input:
  `clamp(round(x / 2^-7), -128, 127) * 2^-7` (aten.round + clamp: the Q1.7 input quantizer).
- QuantConv2d(bias=False, padding 0) / QuantLinear(bias=False) with 1-bit weights: binary_sign(W) * 1.0.
- QuantIdentity(bit_width=1): binary_sign(x) * 1.0 after every BatchNorm (eps=1e-4).
- `x = 2.0 * x - torch.tensor([1.0], device=x.device)` input scaling; `x.view(x.shape[0], -1)` flatten of
  a binary (+-1) 1x1 feature map into a binary QuantLinear; TensorNorm (one scalar mean/var/affine) head.
- clip_weights() training util with `mod.weight.data.clamp_(min, max)`; uniform_(-1, 1) weight init.
Shrunk: CNV_OUT_CH_POOL (16,F),(16,T),(32,F),(32,T),(64,F),(64,F); FC 64 -> 64 -> 64 -> 10.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from realcode_support import calibrate  # BN calibration shared by the fixtures (not in the source repo)

CNV_OUT_CH_POOL = [(16, False), (16, True), (32, False), (32, True), (64, False), (64, False)]
INTERMEDIATE_FC_FEATURES = [(64, 64), (64, 64)]
LAST_FC_IN_FEATURES = 64
KERNEL_SIZE = 3


def binary_sign(x):
    positive_mask = torch.ge(x, 0.0)
    negative_mask = torch.lt(x, 0.0)
    y = positive_mask.to(x.dtype) - negative_mask.to(x.dtype)
    return y


class BinarySignSte(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return binary_sign(x)

    @staticmethod
    def backward(ctx, g):
        return g


class BinaryQuant(nn.Module):
    """QuantType.BINARY with ScalingImplType.CONST: y = sign_ste(x) * scale."""

    def __init__(self, scaling_const=1.0):
        super().__init__()
        self.scaling_const = scaling_const

    def forward(self, x):
        return BinarySignSte.apply(x) * self.scaling_const


class QuantIdentity(nn.Module):
    def __init__(self, bit_width):
        super().__init__()
        self.bit_width = bit_width
        self.act_quant = BinaryQuant() if bit_width == 1 else None

    def forward(self, x):
        if self.bit_width == 1:
            return self.act_quant(x)
        scale = 2.0 ** (-(self.bit_width - 1))  # POWER_OF_TWO scaling of [-1, 1 - 2^-7]
        lo, hi = -(2 ** (self.bit_width - 1)), 2 ** (self.bit_width - 1) - 1
        return torch.clamp(torch.round(x / scale), lo, hi) * scale


class QuantConv2d(nn.Conv2d):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.weight_quant = BinaryQuant()

    def forward(self, x):
        return F.conv2d(x, self.weight_quant(self.weight), self.bias, self.stride, self.padding)


class QuantLinear(nn.Linear):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.weight_quant = BinaryQuant()

    def forward(self, x):
        return F.linear(x, self.weight_quant(self.weight), self.bias)


class TensorNorm(nn.Module):
    def __init__(self, eps=1e-4, momentum=0.1):
        super().__init__()
        self.eps = eps
        self.momentum = momentum
        self.weight = nn.Parameter(torch.rand(1))
        self.bias = nn.Parameter(torch.rand(1))
        self.register_buffer("running_mean", torch.zeros(1))
        self.register_buffer("running_var", torch.ones(1))

    def forward(self, x):
        if self.training:
            mean = x.mean()
            unbias_var = x.var(unbiased=True)
            biased_var = x.var(unbiased=False)
            self.running_mean = (1 - self.momentum) * self.running_mean + self.momentum * mean.detach()
            self.running_var = (1 - self.momentum) * self.running_var + self.momentum * unbias_var.detach()
            inv_std = 1 / (biased_var + self.eps).pow(0.5)
            return (x - mean) * inv_std * self.weight + self.bias
        return ((x - self.running_mean) / (self.running_var + self.eps).pow(0.5)) * self.weight + self.bias


class CNV(nn.Module):
    def __init__(self, num_classes=10, in_bit_width=8, in_ch=3):
        super().__init__()
        self.conv_features = nn.ModuleList()
        self.linear_features = nn.ModuleList()
        self.conv_features.append(QuantIdentity(bit_width=in_bit_width))
        for out_ch, is_pool_enabled in CNV_OUT_CH_POOL:
            self.conv_features.append(QuantConv2d(kernel_size=KERNEL_SIZE, in_channels=in_ch, out_channels=out_ch, bias=False))
            in_ch = out_ch
            self.conv_features.append(nn.BatchNorm2d(in_ch, eps=1e-4))
            self.conv_features.append(QuantIdentity(bit_width=1))
            if is_pool_enabled:
                self.conv_features.append(nn.MaxPool2d(kernel_size=2))
        for in_features, out_features in INTERMEDIATE_FC_FEATURES:
            self.linear_features.append(QuantLinear(in_features=in_features, out_features=out_features, bias=False))
            self.linear_features.append(nn.BatchNorm1d(out_features, eps=1e-4))
            self.linear_features.append(QuantIdentity(bit_width=1))
        self.linear_features.append(QuantLinear(in_features=LAST_FC_IN_FEATURES, out_features=num_classes, bias=False))
        self.linear_features.append(TensorNorm())
        for m in self.modules():
            if isinstance(m, (QuantConv2d, QuantLinear)):
                torch.nn.init.uniform_(m.weight.data, -1, 1)

    def clip_weights(self, min_val, max_val):
        for mod in self.conv_features:
            if isinstance(mod, QuantConv2d):
                mod.weight.data.clamp_(min_val, max_val)
        for mod in self.linear_features:
            if isinstance(mod, QuantLinear):
                mod.weight.data.clamp_(min_val, max_val)

    def forward(self, x):
        x = 2.0 * x - torch.tensor([1.0], device=x.device)
        for mod in self.conv_features:
            x = mod(x)
        x = x.view(x.shape[0], -1)
        for mod in self.linear_features:
            x = mod(x)
        return x


def make():
    torch.manual_seed(0)
    model = CNV()
    model = calibrate(model, (16, 3, 32, 32), data="rand")
    with torch.no_grad():
        model.linear_features[-1].weight.fill_(0.7)
        model.linear_features[-1].bias.fill_(0.1)
    return model


def example_input():
    return torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
