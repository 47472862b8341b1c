"""Small float models written the way torchvision writes its architectures, for the general-graph
converter tests (torchvision's own models are converted in tests/test_torchvision_models.py; these small
ones, with randomised BatchNorm, also run the reference interpreter and batches of 1 and 3).

Channel counts are small, weights random and BatchNorm statistics randomised (`randomise`), so that
every op's effect shows in the outputs. Each entry of `MODELS` is (constructor, input shape).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import nn


def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BatchNorm statistics and affine parameters (fresh ones are the identity), eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.randn(c, generator=g) * 0.1)
            elif isinstance(m, nn.LayerNorm | nn.GroupNorm) and m.weight is not None:
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model.eval()


def conv_bn(
    cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, act: type | None = nn.ReLU
) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------- ResNet


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = BasicBlock(8, 8)
        self.layer2 = BasicBlock(8, 16, 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# --------------------------------------------------------------------------- MobileNetV2 / V3, EfficientNet


class InvertedResidual(nn.Module):
    """MobileNetV2: 1x1 expand (ReLU6), 3x3 depthwise (ReLU6), 1x1 project, residual when shapes agree."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.conv = nn.Sequential(
            conv_bn(cin, hidden, 1, act=nn.ReLU6),
            conv_bn(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


class SqueezeExcitation(nn.Module):
    """torchvision.ops.SqueezeExcitation: avg pool -> 1x1 conv -> act -> 1x1 conv -> scale act -> mul."""

    def __init__(self, c: int, squeeze: int, act: Callable[[], nn.Module], scale: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(c, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, c, 1)
        self.activation = act()
        self.scale_activation = scale()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return s * x


class MobileNetV3Block(nn.Module):
    def __init__(self, cin: int = 8, hidden: int = 16, cout: int = 8) -> None:
        super().__init__()
        self.block = nn.Sequential(
            conv_bn(cin, hidden, 1, act=nn.Hardswish),
            conv_bn(hidden, hidden, 5, groups=hidden, act=nn.Hardswish),
            SqueezeExcitation(hidden, 8, nn.ReLU, nn.Hardsigmoid),
            conv_bn(hidden, cout, 1, act=None),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class MBConv(nn.Module):
    """EfficientNet MBConv: 1x1 expand (SiLU), depthwise (SiLU), SE (SiLU, sigmoid), project, residual."""

    def __init__(self, cin: int = 8, expand: int = 4, cout: int = 8) -> None:
        super().__init__()
        hidden = cin * expand
        self.block = nn.Sequential(
            conv_bn(cin, hidden, 1, act=nn.SiLU),
            conv_bn(hidden, hidden, 3, groups=hidden, act=nn.SiLU),
            SqueezeExcitation(hidden, max(1, cin // 4), nn.SiLU, nn.Sigmoid),
            conv_bn(hidden, cout, 1, act=None),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


def with_stem(block: nn.Module, c: int = 8, cout: int = 8, classes: int = 10) -> nn.Module:
    """stem conv -> block -> global pool -> flatten -> linear (as torchvision's classifiers end)."""
    return nn.Sequential(
        conv_bn(3, c, 3, 2),
        block,
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(1),
        nn.Linear(cout, classes),
    )


def _mobilenet_v2() -> nn.Module:
    return with_stem(nn.Sequential(InvertedResidual(8, 8, 1, 4), InvertedResidual(8, 8, 2, 3)))


# --------------------------------------------------------------------------- ShuffleNetV2, SqueezeNet, RegNet


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    batchsize, num_channels, height, width = x.size()
    channels_per_group = num_channels // groups
    x = x.view(batchsize, groups, channels_per_group, height, width)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(batchsize, -1, height, width)


class ShuffleUnit(nn.Module):
    """ShuffleNetV2 unit (stride 1): chunk, a branch on one half, cat, channel shuffle."""

    def __init__(self, c: int = 8) -> None:
        super().__init__()
        h = c // 2
        self.branch2 = nn.Sequential(
            conv_bn(h, h, 1),
            conv_bn(h, h, 3, groups=h, act=None),
            conv_bn(h, h, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.chunk(2, dim=1)
        out = torch.cat((x1, self.branch2(x2)), dim=1)
        return channel_shuffle(out, 2)


class Fire(nn.Module):
    def __init__(self, cin: int = 8, squeeze: int = 4, e1: int = 6, e3: int = 6) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze, e1, 1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze, e3, 3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat(
            [self.expand1x1_activation(self.expand1x1(x)), self.expand3x3_activation(self.expand3x3(x))], 1
        )


class SqueezeNet(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, 2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(8, 4, 6, 6),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(12, 4, 8, 8),
        )
        self.classifier = nn.Sequential(nn.Conv2d(16, classes, 1), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)


class RegNetYBlock(nn.Module):
    """ResBottleneckBlock with SE (RegNetY): 1x1, 3x3 grouped, SE, 1x1, projection shortcut, ReLU."""

    def __init__(self, cin: int = 8, cout: int = 16, group_width: int = 4) -> None:
        super().__init__()
        self.proj = conv_bn(cin, cout, 1, 2, act=None)
        self.f = nn.Sequential(
            conv_bn(cin, cout, 1),
            conv_bn(cout, cout, 3, 2, groups=cout // group_width),
            SqueezeExcitation(cout, cin // 4, nn.ReLU, nn.Sigmoid),
            conv_bn(cout, cout, 1, act=None),
        )
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.proj(x) + self.f(x))


# --------------------------------------------------------------------------- ConvNeXt, ViT


class Permute(nn.Module):
    def __init__(self, dims: list[int]) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.permute(x, self.dims)


class CNBlock(nn.Module):
    """ConvNeXt block: depthwise 7x7, to NHWC, LayerNorm, Linear 4C, GELU, Linear, layer scale, back, residual."""

    def __init__(self, dim: int = 8, layer_scale: float = 0.5) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, 7, padding=3, groups=dim, bias=True),
            Permute([0, 2, 3, 1]),
            nn.LayerNorm(dim, eps=1e-6),
            nn.Linear(dim, 4 * dim),
            nn.GELU(),
            nn.Linear(4 * dim, dim),
            Permute([0, 3, 1, 2]),
        )
        self.layer_scale = nn.Parameter(torch.rand(dim, 1, 1) * layer_scale + 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layer_scale * self.block(x)


class HandAttention(nn.Module):
    """Attention written out: qkv linear, heads by reshape/permute, softmax(q k^T / sqrt(d)) v, projection."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = (q @ k.transpose(-2, -1)) * (c // self.heads) ** -0.5
        attn = attn.softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class EncoderBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp: int, hand: bool) -> None:
        super().__init__()
        self.hand = hand
        self.ln_1 = nn.LayerNorm(dim, eps=1e-6)
        self.self_attention = HandAttention(dim, heads) if hand else nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Linear(mlp, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln_1(x)
        if self.hand:
            y = self.self_attention(y)
        else:
            y, _ = self.self_attention(y, y, y, need_weights=False)
        x = x + y
        return x + self.mlp(self.ln_2(x))


class VisionTransformer(nn.Module):
    def __init__(self, image: int = 16, patch: int = 4, dim: int = 16, heads: int = 2, hand: bool = False) -> None:
        super().__init__()
        self.patch = patch
        self.conv_proj = nn.Conv2d(3, dim, patch, patch)
        n = (image // patch) ** 2 + 1
        self.class_token = nn.Parameter(torch.randn(1, 1, dim) * 0.5)
        self.pos_embedding = nn.Parameter(torch.randn(1, n, dim) * 0.1)
        self.layers = nn.Sequential(EncoderBlock(dim, heads, 2 * dim, hand), EncoderBlock(dim, heads, 2 * dim, hand))
        self.ln = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        x = self.conv_proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_token.expand(n, -1, -1), x], dim=1)
        x = self.ln(self.layers(x + self.pos_embedding))
        return self.head(x[:, 0])


MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "resnet": (ResNet, (1, 3, 32, 32)),
    "mobilenet_v2": (
        lambda: with_stem(nn.Sequential(InvertedResidual(8, 8, 1, 4), InvertedResidual(8, 8, 2, 3))),
        (1, 3, 16, 16),
    ),
    "mobilenet_v3": (lambda: with_stem(MobileNetV3Block()), (1, 3, 16, 16)),
    "efficientnet": (lambda: with_stem(MBConv()), (1, 3, 16, 16)),
    "shufflenet_v2": (lambda: with_stem(ShuffleUnit(8)), (1, 3, 16, 16)),
    "squeezenet": (SqueezeNet, (1, 3, 33, 33)),
    "regnet_y": (lambda: with_stem(RegNetYBlock(8, 16, 4), cout=16), (1, 3, 16, 16)),
    "convnext": (lambda: with_stem(CNBlock(8)), (1, 3, 16, 16)),
    "vit": (VisionTransformer, (1, 3, 16, 16)),
    "vit_hand_attention": (partial(VisionTransformer, hand=True), (1, 3, 16, 16)),
}


def _regnet() -> nn.Module:
    return nn.Sequential(
        conv_bn(3, 8, 3, 2), RegNetYBlock(8, 16, 4), nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(16, 10)
    )


def build(name: str, seed: int = 0) -> tuple[nn.Module, tuple[int, ...]]:
    make, shape = MODELS[name]
    torch.manual_seed(seed)
    return randomise(make(), seed), shape
