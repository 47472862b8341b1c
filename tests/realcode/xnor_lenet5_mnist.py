"""XNOR-Net-PyTorch LeNet-5 (MNIST), shrunk.

Source: jiecaoyu/XNOR-Net-PyTorch, MNIST/models/LeNet_5.py (BinActive, BinConv2d with Linear=True,
LeNet_5) and MNIST/util.py (BinOp, `.data` weight binarization for conv and linear).
Idioms preserved:
- BinActive returns `input.sign()` only (the MNIST variant; the repo calls it old-style
  `BinActive()(x)`, written here as `BinActive.apply(x)` since legacy Functions no longer run).
- BinConv2d(Linear=True): BatchNorm1d(eps=1e-4) -> sign -> nn.Linear -> ReLU: a sign of a flattened
  tensor feeding a binary linear, after `x.view(x.size(0), C*4*4)` of a max-pooled float tensor.
- `m.weight.data.clamp_(min=0.01)` on every BatchNorm in forward; BN weights set with
  `.data.zero_().add_(1.0)` in __init__.
- float conv1 (5x5, no padding) + BatchNorm2d(affine=False) + ReLU + MaxPool, float last nn.Linear.
- Weights of bin_conv2 / bin_ip1 binarized by BinOp-style `.data` writes (alpha * sign(W),
  alpha = mean |W| per output channel, after mean-centering and clamping).
Shrunk: 20/50/500 -> 16/32/64.
"""

import torch
import torch.nn as nn
from realcode_support import calibrate  # BN calibration shared by the fixtures (not in the source repo)


class BinActive(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input):
        ctx.save_for_backward(input)
        input = input.sign()
        return input

    @staticmethod
    def backward(ctx, grad_output):
        (input,) = ctx.saved_tensors
        grad_input = grad_output.clone()
        grad_input[input.ge(1)] = 0
        grad_input[input.le(-1)] = 0
        return grad_input


class BinConv2d(nn.Module):
    def __init__(self, input_channels, output_channels, kernel_size=-1, stride=-1, padding=-1, groups=1, dropout=0, Linear=False):
        super().__init__()
        self.layer_type = "BinConv2d"
        self.dropout_ratio = dropout
        if dropout != 0:
            self.dropout = nn.Dropout(dropout)
        self.Linear = Linear
        if not self.Linear:
            self.bn = nn.BatchNorm2d(input_channels, eps=1e-4, momentum=0.1, affine=True)
            self.conv = nn.Conv2d(input_channels, output_channels, kernel_size=kernel_size, stride=stride, padding=padding, groups=groups)
        else:
            self.bn = nn.BatchNorm1d(input_channels, eps=1e-4, momentum=0.1, affine=True)
            self.linear = nn.Linear(input_channels, output_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.bn(x)
        x = BinActive.apply(x)
        if self.dropout_ratio != 0:
            x = self.dropout(x)
        if not self.Linear:
            x = self.conv(x)
        else:
            x = self.linear(x)
        x = self.relu(x)
        return x


class LeNet_5(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, kernel_size=5, stride=1)
        self.bn_conv1 = nn.BatchNorm2d(16, eps=1e-4, momentum=0.1, affine=False)
        self.relu_conv1 = nn.ReLU(inplace=True)
        self.pool1 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.bin_conv2 = BinConv2d(16, 32, kernel_size=5, stride=1, padding=0)
        self.pool2 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.bin_ip1 = BinConv2d(32 * 4 * 4, 64, Linear=True)
        self.ip2 = nn.Linear(64, 10)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d) or isinstance(m, nn.BatchNorm1d):
                if hasattr(m.weight, "data"):
                    m.weight.data.zero_().add_(1.0)

    def forward(self, x):
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d) or isinstance(m, nn.BatchNorm1d):
                if hasattr(m.weight, "data"):
                    m.weight.data.clamp_(min=0.01)
        x = self.conv1(x)
        x = self.bn_conv1(x)
        x = self.relu_conv1(x)
        x = self.pool1(x)
        x = self.bin_conv2(x)
        x = self.pool2(x)
        x = x.view(x.size(0), 32 * 4 * 4)
        x = self.bin_ip1(x)
        x = self.ip2(x)
        return x


def _binop(model):
    """MNIST/util.py BinOp.binarization() on bin_conv2.conv and bin_ip1.linear."""
    for w in (model.bin_conv2.conv.weight, model.bin_ip1.linear.weight):
        neg_mean = w.data.mean(1, keepdim=True).mul(-1).expand_as(w.data)
        w.data = w.data.add(neg_mean)
        torch.clamp(w.data, -1.0, 1.0, out=w.data)  # repo: w.data.clamp(..., out=w.data) (Tensor method out= no longer accepted)
        n = w.data[0].nelement()
        s = w.data.size()
        if len(s) == 4:
            m = w.data.norm(1, 3, keepdim=True).sum(2, keepdim=True).sum(1, keepdim=True).div(n)
        else:
            m = w.data.norm(1, 1, keepdim=True).div(n)
        torch.mul(w.data.sign(), m.expand(s), out=w.data)  # repo: w.data.sign().mul(m.expand(s), out=w.data)


def make():
    torch.manual_seed(0)
    model = LeNet_5()
    _binop(model)
    return calibrate(model, (16, 1, 28, 28), data="rand")


def example_input():
    return torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(1))


def _body(self, x):
    x = self.pool1(self.relu_conv1(self.bn_conv1(self.conv1(x))))
    x = self.pool2(self.bin_conv2(x))
    x = x.view(x.size(0), 32 * 4 * 4)
    return self.ip2(self.bin_ip1(x))


def _forward_clamp_no_data(self, x):
    with torch.no_grad():
        for m in self.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)) and m.weight is not None:
                m.weight.clamp_(min=0.01)
    x = self.pool1(self.relu_conv1(self.bn_conv1(self.conv1(x))))
    x = self.pool2(self.bin_conv2(x))
    x = x.view(x.size(0), 32 * 4 * 4)
    return self.ip2(self.bin_ip1(x))


def make_exportable():
    """The same model with the BN `m.weight.data.clamp_(min=0.01)` loop taken out of forward: it is applied once
    here (in eval the clamp is idempotent). Note: the rewrite `with torch.no_grad(): m.weight.clamp_(min=0.01)`
    exports, but torch.export then records a parameter mutation (make_exportable_no_grad)."""
    model = make()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)) and m.weight is not None:
                m.weight.clamp_(min=0.01)
    model.forward = _body.__get__(model)
    return model


def make_exportable_no_grad():
    model = make()
    model.forward = _forward_clamp_no_data.__get__(model)
    return model
