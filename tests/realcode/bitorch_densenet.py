# ruff: noqa: UP031, B905 -- %-formatting and zip() kept as the source repository writes them
"""bitorch BinaryDenseNet (DenseNet-28 style), shrunk to CIFAR size.

Source: hpi-xnor/bitorch, bitorch/models/densenet.py (DenseLayer, BaseNetDense, _make_transition with
DOWNSAMPLE_STRUCT = "bn,max_pool,relu,fp_conv"), bitorch/layers/qconv2d.py (QConv2d: QActivation sign,
F.pad with the default pad value -1.0, conv2d(padding=0) with sign(W)), bitorch/quantizations/sign.py.
Idioms preserved:
- DenseLayer: nn.Sequential of BatchNorm2d -> QConv2d(3x3, padding=1) (no bottleneck, bn_size=0),
  `torch.cat([ident, x], dim=1)` -- the binary conv output concatenated to the real input.
- Every QConv2d pads with -1 via F.pad(value=-1.0) after the sign: a binary tensor padded with -1.
- sign = torch.sign then `torch.where(sign_tensor == 0, torch.tensor(1.0, device=...), sign_tensor)`
  (a scalar-tensor operand in where).
- transition: BatchNorm2d -> MaxPool2d(2, 2) -> ReLU -> float 1x1 conv (fp_conv), channel count rounded
  to a multiple of 32 with int(round(n / 32)) * 32 (kept).
- finalize: BN -> ReLU -> AdaptiveAvgPool2d(1) -> nn.Flatten(); nn.Linear output.
Approximated: the initial layers (bitorch common_layers for a 32x32 resolution) as conv3x3 + BN + ReLU.
Shrunk: 32 initial features, growth 16, block_config [2, 2, 2], reductions 1/2.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.functional import conv2d, pad
from realcode_support import calibrate  # BN calibration shared by the fixtures (not in the source repo)


class SignFunction(torch.autograd.Function):
    """bitorch/quantizations/sign.py: torch.sign, then zeros mapped to +1 with torch.where."""

    @staticmethod
    def forward(ctx, input_tensor):
        ctx.save_for_backward(input_tensor)
        sign_tensor = torch.sign(input_tensor)
        sign_tensor = torch.where(sign_tensor == 0, torch.tensor(1.0, device=sign_tensor.device), sign_tensor)
        return sign_tensor

    @staticmethod
    def backward(ctx, output_grad):
        (input_tensor,) = ctx.saved_tensors
        return output_grad * (input_tensor.abs() <= 1).to(output_grad.dtype)


class Sign(nn.Module):
    def forward(self, x):
        return SignFunction.apply(x)


class QActivation(nn.Module):
    def __init__(self, activation=None, gradient_cancellation_threshold=None):
        super().__init__()
        self.activation_function = activation or Sign()
        self.gradient_cancellation_threshold = gradient_cancellation_threshold

    def forward(self, input_tensor):
        return self.activation_function(input_tensor)


PADDING_VALUE = -1.0  # bitorch/layers/config.py: LayerConfig.padding_value


class QConv2d_NoAct(nn.Conv2d):
    def __init__(self, *args, weight_quantization=None, pad_value=None, bias=False, **kwargs):
        assert bias is False, "A QConv layer can not use a bias due to acceleration techniques during deployment."
        kwargs["bias"] = False
        super().__init__(*args, **kwargs)
        self._weight_quantize = weight_quantization or Sign()
        self._pad_value = pad_value or PADDING_VALUE

    def _apply_padding(self, x):
        return pad(x, self._reversed_padding_repeated_twice, mode="constant", value=self._pad_value)

    def forward(self, input):
        return conv2d(
            input=self._apply_padding(input),
            weight=self._weight_quantize(self.weight),
            bias=None,
            stride=self.stride,
            padding=0,
            dilation=self.dilation,
            groups=self.groups,
        )


class QConv2d(QConv2d_NoAct):
    def __init__(
        self, *args, input_quantization=None, weight_quantization=None, gradient_cancellation_threshold=None, **kwargs
    ):
        super().__init__(*args, weight_quantization=weight_quantization, **kwargs)
        self.activation = QActivation(input_quantization, gradient_cancellation_threshold)

    def forward(self, input_tensor):
        return super().forward(self.activation(input_tensor))


class PadModule(nn.Module):
    def __init__(self, padding_left=0, padding_right=0, padding_top=0, padding_bottom=0, padding_value=0):
        super().__init__()
        self.padding_tensor = (padding_left, padding_right, padding_top, padding_bottom)
        self.padding_value = padding_value

    def forward(self, x):
        x = F.pad(x, self.padding_tensor, "constant", self.padding_value)
        return x


class DenseLayer(nn.Module):
    def __init__(self, num_features, growth_rate, bn_size, dilation, dropout):
        super().__init__()
        self.dropout = dropout
        self.num_features = num_features
        self.features = nn.Sequential()
        self._add_conv_block(
            QConv2d(self.num_features, growth_rate, kernel_size=3, padding=dilation, dilation=dilation)
        )

    def _add_conv_block(self, layer):
        self.features.append(nn.BatchNorm2d(self.num_features))
        self.features.append(layer)
        if self.dropout:
            self.features.append(nn.Dropout(self.dropout))

    def forward(self, x):
        ident = x
        x = self.features(x)
        x = torch.cat([ident, x], dim=1)
        return x


class BaseNetDense(nn.Module):
    def __init__(
        self,
        num_init_features=32,
        growth_rate=16,
        block_config=(2, 2, 2),
        reduction=(2, 2),
        downsample="bn,max_pool,relu,fp_conv",
        classes=10,
    ):
        super().__init__()
        self.growth_rate = growth_rate
        self.num_features = num_init_features
        self.downsample_struct = downsample
        self.reduction_rates = reduction
        self.features = nn.Sequential(
            nn.Conv2d(3, self.num_features, kernel_size=3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(self.num_features),
            nn.ReLU(),
        )
        for i, repeat_num in enumerate(block_config):
            block = nn.Sequential()
            for j in range(repeat_num):
                block.add_module("DenseLayer_%d" % (j + 1), DenseLayer(self.num_features, self.growth_rate, 0, 1, 0))
                self.num_features += self.growth_rate
            self.features.add_module("DenseBlock_%d" % (i + 1), block)
            if i != len(block_config) - 1:
                self._make_transition(i)
        self.finalize = nn.Sequential(
            nn.BatchNorm2d(self.num_features), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.output = nn.Linear(self.num_features, classes)

    def _make_transition(self, transition_num):
        num_out_features = self.num_features // self.reduction_rates[transition_num]
        num_out_features = int(round(num_out_features / 32)) * 32
        transition = nn.Sequential()
        for layer in self.downsample_struct.split(","):
            if layer == "bn":
                transition.append(nn.BatchNorm2d(self.num_features))
            elif layer == "relu":
                transition.append(nn.ReLU())
            elif "fp_conv" in layer:
                transition.append(nn.Conv2d(self.num_features, num_out_features, kernel_size=1, bias=False))
            elif layer == "max_pool":
                transition.append(nn.MaxPool2d(2, stride=2))
        self.features.add_module("Transition_%d" % (transition_num + 1), transition)
        self.num_features = num_out_features

    def forward(self, x):
        x = self.features(x)
        x = self.finalize(x)
        x = self.output(x)
        return x


def make():
    torch.manual_seed(0)
    return calibrate(BaseNetDense(), (16, 3, 32, 32))


def example_input():
    return torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
