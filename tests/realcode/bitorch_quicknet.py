# ruff: noqa: UP031, B905 -- %-formatting and zip() kept as the source repository writes them
"""bitorch QuickNet (the larq-zoo QuickNet rewritten in PyTorch), shrunk to CIFAR size.

Source: hpi-xnor/bitorch, bitorch/models/quicknet.py (ResidualBlock, TransitionBlock, QuickNet),
bitorch/layers/qconv2d.py (QConv2d_NoAct / QConv2d: F.pad with a pad value, then F.conv2d with padding=0),
bitorch/layers/pad.py (PadModule), bitorch/layers/config.py (padding_value = -1.0, default
quantization "sign"), bitorch/quantizations/sign.py (torch.sign then torch.where(sign == 0, 1.0, sign)).
Original architecture: larq/zoo QuickNet (TensorFlow).
Idioms preserved:
- QConv2d(kernel 3, pad_value=1, padding="same"): the input is sign-binarized by QActivation, padded
  with `F.pad(x, self._reversed_padding_repeated_twice, mode="constant", value=pad_value)` (+1 here;
  `pad_value or config.padding_value` makes 0 fall back to -1), then conv2d(padding=0) with sign(W)
  weights (no scale).
- ResidualBlock(nn.Sequential) with forward `super().forward(x) + x`: qconv -> ReLU -> BatchNorm(momentum=0.9).
- TransitionBlock: ReLU -> MaxPool2d(2, stride=1) -> PadModule(1, 1, 1, 1) (zero pad) -> depthwise 3x3
  stride 2 float conv (groups=C, requires_grad_(False), blur-pool init) -> 1x1 float conv -> ReLU -> BN.
- top: ReLU -> AdaptiveAvgPool2d(1) -> nn.Flatten() -> nn.Linear.
- clip_weights through `.data` (clamp to +-1.25).
Approximated: the stem (bitorch common_layers "quicknet_stem") is written as conv3x3/2 -> ReLU -> BN ->
depthwise 3x3/2 -> 1x1 conv -> BN. Shrunk: section_filters [16, 32, 64], section_blocks [1, 1, 1].
"""

import numpy as np
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


class ResidualBlock(nn.Sequential):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.add_module(
            "qconv", QConv2d(in_channels, out_channels, kernel_size=3, pad_value=1, padding="same", bias=False)
        )
        self.add_module("relu", nn.ReLU())
        self.add_module("bnorm", nn.BatchNorm2d(out_channels, momentum=0.9))

    def forward(self, x):
        return super().forward(x) + x


class TransitionBlock(nn.Sequential):
    def __init__(self, in_channels, out_channels, strides):
        super().__init__()
        self.add_module("relu", nn.ReLU())
        self.add_module("pool", nn.MaxPool2d(strides, stride=1))
        self.add_module("pad", PadModule(1, 1, 1, 1))
        self.add_module(
            "depth_conv",
            nn.Conv2d(
                in_channels, in_channels, kernel_size=3, groups=in_channels, stride=strides, bias=False
            ).requires_grad_(False),
        )
        self.add_module("conv", nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False))
        self.add_module("relu2", nn.ReLU())
        self.add_module("norm", nn.BatchNorm2d(out_channels, momentum=0.9))


def _blurpool_init(weight):
    filters, kernel_size = weight.data.shape[0], weight.data.shape[2]
    base = np.array([1.0, 2.0, 1.0]) if kernel_size == 3 else np.array([1.0, 1.0])
    new_weights = torch.Tensor(base[:, None] * base[None, :])
    new_weights = new_weights / torch.sum(new_weights)
    weight.data = new_weights[None, None, :, :].repeat((filters, 1, 1, 1))


class QuickNet(nn.Module):
    def __init__(self, section_filters=(16, 32, 64), section_blocks=(1, 1, 1), num_classes=10, image_channels=3):
        super().__init__()
        f0 = section_filters[0]
        stem = nn.Sequential(
            nn.Conv2d(image_channels, f0 // 2, kernel_size=3, stride=2, padding=1, bias=False),
            nn.ReLU(),
            nn.BatchNorm2d(f0 // 2, momentum=0.9),
            nn.Conv2d(f0 // 2, f0 // 2, kernel_size=3, stride=2, padding=1, groups=f0 // 2, bias=False),
            nn.Conv2d(f0 // 2, f0, kernel_size=1, bias=False),
            nn.BatchNorm2d(f0, momentum=0.9),
        )
        body = nn.Sequential()
        for block_num, (layers, filters) in enumerate(zip(section_blocks, section_filters)):
            body.add_module(
                "ResidualBlocks_%d" % (block_num + 1),
                nn.Sequential(*[ResidualBlock(filters, filters) for _ in range(layers)]),
            )
            if block_num != len(section_blocks) - 1:
                body.add_module(
                    "Transition_%d" % (block_num + 1), TransitionBlock(filters, section_filters[block_num + 1], 2)
                )
        top = nn.Sequential(
            nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(section_filters[-1], num_classes)
        )
        self._model = nn.Sequential()
        self._model.add_module("stem", stem)
        self._model.add_module("body", body)
        self._model.add_module("top", top)
        for m in self._model.body.modules():
            if isinstance(m, nn.Conv2d) and m.groups > 1:
                _blurpool_init(m.weight)

    def clip_weights(self, layer, clip_value=1.25):
        if isinstance(layer, ResidualBlock):
            weights = layer.qconv.weight.data
            weights = weights.clamp(-clip_value, clip_value)
            layer.qconv.weight.data = weights

    def forward(self, x):
        return self._model(x)


def make():
    torch.manual_seed(0)
    return calibrate(QuickNet(), (16, 3, 32, 32))


def example_input():
    return torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
