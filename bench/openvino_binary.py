"""OpenVINO running the BNNs of bench/imagenet_bnns.py with its binary op (BinaryConvolution).

Usage:  python bench/openvino_binary.py [--model bireal18 reactnet_a] [--inputs 4] [--threads 1]
                                        [--profile]

`ov_binary_model(model)` builds, with OpenVINO's opset API, the same network as the PyTorch module
(read from its modules and weights, eval mode): every `BinaryConv` becomes
`opset1.binary_convolution` (mode "xnor-popcount") on u1 sign bits of its weights, fed by a
FakeQuantize with levels=2 (OpenVINO's binarization pattern: x <= threshold -> 0, else 1; the
threshold is 0 for Bi-Real's sign and -bias for ReActNet's RSign). The float layers (stem conv,
BatchNorm as multiply/add, RPReLU as add/PReLU/add, residual adds, pools, 1x1 float downsample,
concat, FC) come from the same weights.

Two facts of the model that BinaryConvolution does not express directly:
  - PyTorch pads the +-1 activations with 0; BinaryConvolution pads with +-1. The conv is run with
    pad_value +1 and the padded taps' weight sum (a constant per output channel and position) is
    subtracted: exact, and folded into the BatchNorm shift, a [1, C, H, W] constant add.
  - alpha (mean |W| per output channel) scales the +-1 dot product: folded into the BatchNorm
    scale.
u1 constants are packed least significant bit first: what OpenVINO 2026.4's CPU plugin reads
(checked against torch by this script's comparison).

Run as a script, it compares the network's logits with eager PyTorch on `--inputs` random inputs,
at INFERENCE_PRECISION_HINT f32 and at the plugin's default precision (bf16 on CPUs with
AVX512_BF16), printing top-1 agreement and the max error; --profile prints OpenVINO's per-op
profile (time by layer type and the kernel it ran). bench/whole_models.py --ov-binary times the
network beside xnorinfer and torch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from imagenet_bnns import MODELS, BinaryConv, BiReal18, BiRealBlock, ReActBlock, ReActNetA, RPReLU, build  # noqa: E402

try:
    import openvino as ov
    import openvino.opset1 as opset1
    import openvino.opset13 as ops
except ImportError:  # the bench extra; callers check `ov is None`
    ov = None

Node = Any  # an openvino Output


def _const(a: np.ndarray | torch.Tensor) -> Node:
    return ops.constant(np.ascontiguousarray(np.asarray(a, dtype=np.float32)))


def _channel(v: torch.Tensor) -> np.ndarray:
    """A per-channel vector as a [1, C, 1, 1] float32 array."""
    return v.detach().reshape(1, -1, 1, 1).numpy().astype(np.float32)


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias.detach() - bn.running_mean * scale


def _bn(x: Node, bn: nn.BatchNorm2d) -> Node:
    scale, shift = _bn_affine(bn)
    return ops.add(ops.multiply(x, _const(_channel(scale))), _const(_channel(shift)))


def _float_conv(x: Node, conv: nn.Conv2d) -> Node:
    s, p = conv.stride, conv.padding
    return ops.convolution(x, _const(conv.weight.detach()), list(s), list(p), list(p), [1, 1])


def _binarize(x: Node, threshold: np.ndarray | float) -> Node:
    t = _const(np.asarray(threshold, dtype=np.float32))
    # Outputs 0/1 (bit values): the form the CPU plugin fuses into its producer with a u1 output;
    # -1/+1 instead costs a reference f32->u1 reorder per binary conv, and bf16 cannot compile it.
    return ops.fake_quantize(x, t, t, _const(np.float32(0.0)), _const(np.float32(1.0)), 2)


def _binary_conv_bn(x: Node, conv: BinaryConv, bn: nn.BatchNorm2d, in_hw: tuple[int, int]) -> Node:
    """bn(conv(x)) for +-1 `x`: BinaryConvolution (pad +1), then one multiply and one add."""
    w = conv.weight.detach()
    sign = torch.where(w > 0, 1.0, -1.0)  # torch.sign(0) = 0 never occurs with random float weights
    bits = np.packbits((w > 0).numpy().astype(np.uint8).reshape(-1), bitorder="little")
    # shared_memory=False: a shared Constant would read `bits` after it is freed.
    weights = ov.op.Constant(ov.Tensor(bits, ov.Shape(list(w.shape)), ov.Type.u1), shared_memory=False)
    p, s = conv.padding, conv.stride
    y = opset1.binary_convolution(x, weights, [s, s], [p, p], [p, p], [1, 1], "xnor-popcount", 1.0)
    alpha = w.abs().mean(dim=(1, 2, 3))
    scale, shift = _bn_affine(bn)
    scale = alpha * scale
    shift = shift.reshape(1, -1, 1, 1)
    if p:  # the padded taps counted +1 * w; PyTorch counts 0 * w
        border = F.pad(torch.zeros(1, w.shape[1], *in_hw), (p, p, p, p), value=1.0)
        shift = shift - scale.reshape(1, -1, 1, 1) * F.conv2d(border, sign, stride=s)
    return ops.add(ops.multiply(y, _const(_channel(scale))), _const(shift.numpy()))


def _rprelu(x: Node, act: RPReLU) -> Node:
    x = ops.add(x, _const(act.pre.bias.detach()))
    x = ops.prelu(x, _const(act.prelu.weight.detach().reshape(1, -1, 1, 1)))
    return ops.add(x, _const(act.post.bias.detach()))


def _avgpool2(x: Node) -> Node:
    return ops.avg_pool(x, [2, 2], [0, 0], [0, 0], [2, 2], True, "floor")


def _bireal_block(x: Node, blk: BiRealBlock, hw: tuple[int, int]) -> tuple[Node, tuple[int, int]]:
    shortcut = x
    if blk.down is not None:
        pool, conv, bn = blk.down
        shortcut = _bn(_float_conv(_avgpool2(x), conv), bn)
    y = _binary_conv_bn(_binarize(x, 0.0), blk.conv, blk.bn, hw)
    s = blk.conv.stride
    return ops.add(y, shortcut), (hw[0] // s, hw[1] // s)


def _react_block(x: Node, blk: ReActBlock, hw: tuple[int, int]) -> tuple[Node, tuple[int, int]]:
    shortcut = x if blk.pool is None else _avgpool2(x)
    y = _binary_conv_bn(_binarize(x, -_channel(blk.sign3.shift.bias)), blk.conv3, blk.bn3, hw)
    x = _rprelu(ops.add(y, shortcut), blk.act3)
    hw = (hw[0] // blk.stride, hw[1] // blk.stride)
    s = _binarize(x, -_channel(blk.sign1.shift.bias))
    outs = [_rprelu(ops.add(_binary_conv_bn(s, conv, bn, hw), x), act) for conv, bn, act in blk.branches]
    return (outs[0] if len(outs) == 1 else ops.concat(outs, 1)), hw


def ov_binary_model(model: nn.Module, size: int = 224) -> Any:
    """An `ov.Model` computing `model` (BiReal18 or ReActNetA, eval mode) with BinaryConvolution."""
    if ov is None:
        raise RuntimeError("openvino is not installed (pip install openvino, the bench extra)")
    param = ops.parameter([1, 3, size, size], np.float32, name="x")
    if isinstance(model, BiReal18):
        conv, bn, pool = model.stem
        x = _bn(_float_conv(param, conv), bn)
        x = opset1.max_pool(x, [2, 2], [1, 1], [1, 1], [3, 3], "floor")
        hw, block = (size // 4, size // 4), _bireal_block
    elif isinstance(model, ReActNetA):
        conv, bn = model.stem
        x = _bn(_float_conv(param, conv), bn)
        hw, block = (size // 2, size // 2), _react_block
    else:
        raise TypeError(f"ov_binary_model: no builder for {type(model).__name__}")
    for blk in model.blocks:
        x, hw = block(x, blk, hw)
    x = ops.reduce_mean(x, ops.constant(np.array([2, 3], np.int64)), False)
    fc = model.fc
    logits = ops.add(ops.matmul(x, _const(fc.weight.detach()), False, True), _const(fc.bias.detach()))
    return ov.Model([logits], [param], type(model).__name__ + "_binary")


def compile_binary(model: nn.Module, threads: int, precision: str | None, profile: bool = False) -> Any:
    """The compiled network; `precision` None leaves the plugin's default inference precision."""
    config: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
    if precision is not None:
        config["INFERENCE_PRECISION_HINT"] = precision
    if profile:
        config["PERF_COUNT"] = True
    return ov.Core().compile_model(ov_binary_model(model), "CPU", config)


def _compare(name: str, model: nn.Module, inputs: int, threads: int) -> None:
    g = torch.Generator().manual_seed(2)
    xs = [torch.randn(1, 3, 224, 224, generator=g) for _ in range(inputs)]
    with torch.inference_mode():
        refs = [model(x).numpy().astype(np.float64) for x in xs]
    for precision in ("f32", None):
        compiled = compile_binary(model, threads, precision)
        got = [compiled([x.numpy()])[0].astype(np.float64) for x in xs]
        agree = sum(int(np.argmax(a) == np.argmax(b)) for a, b in zip(got, refs, strict=True))
        err = max(float(np.abs(a - b).max()) for a, b in zip(got, refs, strict=True))
        span = max(float(np.abs(b).max()) for b in refs)
        actual = compiled.get_property("INFERENCE_PRECISION_HINT")
        print(
            f"{name} openvino binary, precision {precision or 'default'} (runs {actual}): top-1 agrees on "
            f"{agree}/{inputs} inputs; max |error| {err:.4g} (max |logit| {span:.4g})"
        )


def _ov_profile(name: str, model: nn.Module, threads: int, precision: str | None, runs: int) -> None:
    request = compile_binary(model, threads, precision, profile=True).create_infer_request()
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1)).numpy()
    best: dict[str, float] = {}
    kinds: dict[str, tuple[str, str]] = {}
    for _ in range(runs):
        request.infer([x])
        for info in request.profiling_info:
            us = info.real_time.total_seconds() * 1e6
            best[info.node_name] = min(best.get(info.node_name, us), us)
            kinds[info.node_name] = (info.node_type, info.exec_type)
    by_kind: dict[tuple[str, str], list[float]] = {}
    for node, us in best.items():
        by_kind.setdefault(kinds[node], []).append(us)
    total = sum(best.values()) / 1e3
    print(
        f"\n{name}, openvino binary per-op profile ({precision or 'default'} precision, {threads} thr, best of {runs})"
    )
    print(f"  sum of per-op best {total:.3f} ms")
    for (node_type, exec_type), v in sorted(by_kind.items(), key=lambda kv: -sum(kv[1])):
        if sum(v) > 0:
            print(f"  {node_type:<22} {exec_type:<28} {len(v):>4} ops {sum(v) / 1e3:>8.3f} ms")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", nargs="+", choices=sorted(MODELS), default=sorted(MODELS))
    ap.add_argument("--inputs", type=int, default=4, help="random inputs compared with eager PyTorch")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--profile", action="store_true", help="print OpenVINO's per-op profile (f32 and default)")
    ap.add_argument("--runs", type=int, default=10, help="profiled runs (best per op)")
    args = ap.parse_args()
    if ov is None:
        print("openvino is not installed (pip install openvino, the bench extra)")
        return 1
    print(f"openvino {ov.__version__}, torch {torch.__version__}")
    for name in args.model:
        model = build(name)
        _compare(name, model, args.inputs, args.threads)
        if args.profile:
            for precision in ("f32", None):
                _ov_profile(name, model, args.threads, precision, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
