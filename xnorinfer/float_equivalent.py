"""The float PyTorch model a .xbin graph replaces, for speed comparisons (`demo`, `bench`).

`torch_module(graph)` builds a torch.nn.Module that computes the graph's function the way an
ordinary PyTorch BNN does at inference: ±1 activations and weights held as float32 NCHW
tensors, convolutions and matmuls in float (oneDNN), BatchNorm already folded into the
per-channel transforms. It imports torch, so the run path never imports this module.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from xnorinfer import ir


def _unpack_pm1(words: np.ndarray, channels: int) -> np.ndarray:
    bits = np.unpackbits(np.ascontiguousarray(words).view(np.uint8), axis=-1, bitorder="little")[..., :channels]
    return np.where(bits.astype(bool), -1.0, 1.0).astype(np.float32)


def _chan(v: np.ndarray, ndim: int) -> torch.Tensor:
    t = torch.from_numpy(np.asarray(v, dtype=np.float32).copy())
    return t.view(1, -1, 1, 1) if ndim == 4 else t.view(1, -1)


class GraphModule(torch.nn.Module):
    """Executes an ir.Graph op by op with float32 torch tensors (NCHW for 4-D)."""

    def __init__(self, graph: ir.Graph) -> None:
        super().__init__()
        self.graph = graph
        self.consts: dict[tuple[int, str], torch.Tensor] = {}
        for i, op in enumerate(graph.ops):
            for name, value in op.params.items():
                if op.kind in ("bconv2d", "blinear") and name == "weight":
                    cin = op.attrs["in_channels"] if op.kind == "bconv2d" else op.attrs["in_features"]
                    w = _unpack_pm1(value, cin)
                    if op.kind == "bconv2d":
                        w = w.transpose(0, 3, 1, 2)
                    self.consts[(i, name)] = torch.from_numpy(np.ascontiguousarray(w))
                elif op.kind == "conv2d" and name == "weight":
                    self.consts[(i, name)] = torch.from_numpy(np.ascontiguousarray(value.transpose(0, 3, 1, 2)))
                else:
                    self.consts[(i, name)] = torch.from_numpy(np.asarray(value).copy())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: C901 - one branch per op kind
        env = {self.graph.inputs[0]: x}
        for i, op in enumerate(self.graph.ops):
            ins = [env[v] for v in op.inputs]
            a, k = op.attrs, op.kind

            def p(name: str, i: int = i) -> torch.Tensor:
                return self.consts[(i, name)]

            x0 = ins[0]
            if k == "conv2d":
                y = F.conv2d(x0, p("weight"), p("bias") if "bias" in op.params else None, a["stride"], a["padding"])
                y = F.relu(y) if a.get("relu") else y
            elif k == "linear":
                y = F.linear(x0, p("weight"), p("bias") if "bias" in op.params else None)
                y = F.relu(y) if a.get("relu") else y
            elif k == "affine":
                y = x0 * _chan(op.params["scale"], x0.dim()) + _chan(op.params["shift"], x0.dim())
            elif k == "prelu":
                c = x0.shape[1]
                pre = _chan(op.params.get("pre_shift", np.zeros(c)), x0.dim())
                post = _chan(op.params.get("post_shift", np.zeros(c)), x0.dim())
                t = x0 - pre
                y = torch.where(t >= 0, t, _chan(op.params["slope"], x0.dim()) * t) + post
            elif k == "relu":
                y = F.relu(x0)
            elif k == "hardtanh":
                y = F.hardtanh(x0, a["min_val"], a["max_val"])
            elif k == "sigmoid":
                y = torch.sigmoid(x0)
            elif k in ("maxpool2d", "bmaxpool2d"):
                y = F.max_pool2d(x0, a["kernel"], a["stride"], a["padding"])
            elif k == "avgpool2d":
                y = F.avg_pool2d(
                    x0, a["kernel"], a["stride"], a["padding"], count_include_pad=a.get("count_include_pad", True)
                )
            elif k == "global_avgpool":
                y = x0.mean(dim=(2, 3))
            elif k == "add":
                y = x0 + ins[1]
            elif k == "mul":
                b = ins[1]
                y = x0 * (b[:, :, None, None] if x0.dim() == 4 and b.dim() == 2 else b)
            elif k in ("concat", "bconcat"):
                y = torch.cat(ins, dim=1)
            elif k in ("flatten", "bflatten"):
                y = x0.permute(0, 2, 3, 1).reshape(x0.shape[0], -1) if x0.dim() == 4 else x0
            elif k == "softmax":
                y = torch.softmax(x0, dim=1)
            elif k == "log_softmax":
                y = torch.log_softmax(x0, dim=1)
            elif k == "sign":
                c = x0.shape[1]
                thr = p("threshold").view(-1, c) if "threshold" in op.params else torch.zeros(1, c)
                parts = []
                for t in thr:
                    t = t.view(1, -1, 1, 1) if x0.dim() == 4 else t.view(1, -1)
                    neg = x0 <= t if a.get("sign_zero", "+1") == "-1" else x0 < t
                    parts.append(torch.where(neg, -1.0, 1.0))
                y = torch.cat(parts, dim=1)
            elif k in ("bconv2d", "blinear"):
                if k == "bconv2d":
                    ph, pw = a["padding"]
                    pad_value = {"zero": 0.0, "plus_one": 1.0, "minus_one": -1.0}[a["pad_mode"]]
                    xin = F.pad(x0, (pw, pw, ph, ph), value=pad_value) if pad_value else x0
                    s = F.conv2d(xin, p("weight"), None, a["stride"], 0 if pad_value else a["padding"])
                else:
                    s = F.linear(x0, p("weight"))
                nd = s.dim()
                if a["output"] == "bits":
                    neg = (s < _chan(op.params["threshold"], nd)) ^ _chan(op.params["flip"], nd).bool()
                    y = torch.where(neg, -1.0, 1.0)
                else:
                    y = s * _chan(op.params["multiplier"], nd) + _chan(op.params["bias"], nd)
            elif k == "unpack":
                y = x0
            else:
                raise ValueError(f"float equivalent: op {op.name} has unknown kind {k!r}")
            env[op.outputs[0]] = y
        out = env[self.graph.outputs[0]]
        return out.permute(0, 2, 3, 1) if out.dim() == 4 else out


def torch_module(graph: ir.Graph) -> torch.nn.Module:
    """The float32 PyTorch module computing `graph` (eval mode, no gradients needed)."""
    return GraphModule(graph).eval()
