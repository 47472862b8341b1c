"""The float PyTorch model a .xbin graph replaces, for speed comparisons (`demo`, `bench`).

`torch_module(graph)` builds a torch.nn.Module that computes the graph's function the way an
ordinary PyTorch BNN does at inference: ±1 activations and weights held as float32 NCHW
tensors, convolutions and matmuls in float (oneDNN), BatchNorm already folded into the
per-channel transforms. Each op runs its declaration's `torch` form (xnorinfer.ops). It imports
torch, so the run path never imports this module.
"""

from __future__ import annotations

import torch

from xnorinfer import ir
from xnorinfer.ops import op_def


class GraphModule(torch.nn.Module):
    """Executes an ir.Graph op by op with float32 torch tensors (NCHW for 4-D)."""

    def __init__(self, graph: ir.Graph) -> None:
        super().__init__()
        self.graph = graph
        self.consts: list[dict[str, torch.Tensor]] = [
            {name: op_def(op.kind).torch_param(op, name, value) for name, value in op.params.items()}
            for op in graph.ops
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env = {self.graph.inputs[0]: x}
        for op, consts in zip(self.graph.ops, self.consts, strict=True):
            env[op.outputs[0]] = op_def(op.kind).torch(op, [env[v] for v in op.inputs], consts)
        out = env[self.graph.outputs[0]]
        return out.permute(0, 2, 3, 1) if out.dim() == 4 else out


def torch_module(graph: ir.Graph) -> torch.nn.Module:
    """The float32 PyTorch module computing `graph` (eval mode, no gradients needed)."""
    return GraphModule(graph).eval()
