"""Training-side layers for binarized networks that export cleanly with torch.export.

Everything here is plain PyTorch (no dependency on the engine at run time); see docs/training.md.
"""

from __future__ import annotations

from xnorinfer.nn.abcnet import ABCActivation, ABCConv2d, ABCLinear, abc_weight_bases
from xnorinfer.nn.binaryduo import CoupledTernary, DecoupledBinaryConv2d, DecoupledBinaryLinear, decouple
from xnorinfer.nn.dorefa import DoReFaAct, dorefa_quantize
from xnorinfer.nn.layers import (
    BinaryConv2d,
    BinaryLinear,
    WeightBinarizer,
    binarize_latent_weights_,
    binary_layers,
    clip_latent_weights,
    register_clip_hook,
)
from xnorinfer.nn.optim import Bop, split_binary_params
from xnorinfer.nn.quantizers import (
    ApproxSign,
    IdentitySign,
    RPReLU,
    RSign,
    SteSign,
    SwishSign,
    approx_sign,
    identity_sign,
    sign,
    ste_sign,
    swish_sign,
)
from xnorinfer.nn.regularizers import BinaryRegularizer, apply_binarization, log_lambda, power_reg, tanh_reg
from xnorinfer.nn.ternary import TernaryConv2d, TernaryLinear
from xnorinfer.nn.xnornet import XnorConv2d, beta_map

__all__ = [
    "TernaryConv2d",
    "TernaryLinear",
    "ApproxSign",
    "BinaryConv2d",
    "BinaryLinear",
    "BinaryRegularizer",
    "Bop",
    "CoupledTernary",
    "DecoupledBinaryConv2d",
    "DecoupledBinaryLinear",
    "IdentitySign",
    "RPReLU",
    "RSign",
    "SteSign",
    "SwishSign",
    "WeightBinarizer",
    "apply_binarization",
    "approx_sign",
    "binarize_latent_weights_",
    "binary_layers",
    "clip_latent_weights",
    "decouple",
    "identity_sign",
    "log_lambda",
    "power_reg",
    "register_clip_hook",
    "sign",
    "split_binary_params",
    "ste_sign",
    "swish_sign",
    "tanh_reg",
    "XnorConv2d",
    "beta_map",
    "ABCActivation",
    "ABCConv2d",
    "ABCLinear",
    "abc_weight_bases",
    "DoReFaAct",
    "dorefa_quantize",
]
