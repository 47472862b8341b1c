"""Brevitas BNN-PYNQ TFC 1w1a (MNIST), plain-PyTorch equivalent.

Source: Xilinx/brevitas, src/brevitas_examples/bnn_pynq/models/FC.py (FC; TFC = out_features
[64, 64, 64], cfg/tfc_1w1a.ini with in_bit_width 1), models/common.py, models/tensor_norm.py, and
brevitas' binary_sign (ge/lt masks subtracted) with a constant scale 1.0.
brevitas is not installed here: QuantIdentity / QuantLinear are written as the plain PyTorch
computation they perform in eval mode.
Idioms preserved:
- forward: `x = x.view(x.shape[0], -1)` first (a 2-D (N, 784) graph from the start), then
  `x = 2.0 * x - torch.tensor([1.0], device=x.device)`.
- QuantIdentity(bit_width=1) on the input (binary input layer), Dropout(0.2) after every activation
  (identity in eval), QuantLinear(bias=False) with binary_sign(W)*1.0, BatchNorm1d, QuantIdentity(1),
  last QuantLinear -> TensorNorm (scalar running mean/var).
- uniform_(-1, 1) init and clip_weights with `.data.clamp_`.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from realcode_support import calibrate  # BN calibration shared by the fixtures (not in the source repo)

DROPOUT = 0.2


def binary_sign(x):
    positive_mask = torch.ge(x, 0.0)
    negative_mask = torch.lt(x, 0.0)
    return positive_mask.to(x.dtype) - negative_mask.to(x.dtype)


class BinarySignSte(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return binary_sign(x)

    @staticmethod
    def backward(ctx, g):
        return g


class QuantIdentity(nn.Module):
    def forward(self, x):
        return BinarySignSte.apply(x) * 1.0


class QuantLinear(nn.Linear):
    def forward(self, x):
        return F.linear(x, BinarySignSte.apply(self.weight) * 1.0, self.bias)


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


class FC(nn.Module):
    def __init__(self, num_classes=10, out_features=(64, 64, 64), in_features=(28, 28)):
        super().__init__()
        self.features = nn.ModuleList()
        self.features.append(QuantIdentity())
        self.features.append(nn.Dropout(p=DROPOUT))
        in_f = in_features[0] * in_features[1]
        for out_f in out_features:
            self.features.append(QuantLinear(in_features=in_f, out_features=out_f, bias=False))
            in_f = out_f
            self.features.append(nn.BatchNorm1d(num_features=in_f))
            self.features.append(QuantIdentity())
            self.features.append(nn.Dropout(p=DROPOUT))
        self.features.append(QuantLinear(in_features=in_f, out_features=num_classes, bias=False))
        self.features.append(TensorNorm())
        for m in self.modules():
            if isinstance(m, QuantLinear):
                torch.nn.init.uniform_(m.weight.data, -1, 1)

    def clip_weights(self, min_val, max_val):
        for mod in self.features:
            if isinstance(mod, QuantLinear):
                mod.weight.data.clamp_(min_val, max_val)

    def forward(self, x):
        x = x.view(x.shape[0], -1)
        x = 2.0 * x - torch.tensor([1.0], device=x.device)
        for mod in self.features:
            x = mod(x)
        return x


def make():
    torch.manual_seed(0)
    model = calibrate(FC(), (16, 1, 28, 28), data="rand")
    with torch.no_grad():
        model.features[-1].weight.fill_(0.7)
        model.features[-1].bias.fill_(0.1)
    return model


def example_input():
    return torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(1))
