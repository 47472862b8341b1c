"""The converter's small internal graph: what capture produces and the transformations rewrite.

It is deliberately framework-free (numpy constants, string op names) so that another front end
(ONNX) can produce the same graph. Shapes are PyTorch's (NCHW); the NHWC layout of the IR is
introduced only when lowering (`lower.py`).

Op vocabulary produced by capture (see docs/ops.md):
  conv2d linear batch_norm sign add sub mul div cmp where to_float relu hardtanh sigmoid prelu
  maxpool2d avgpool2d global_avgpool reshape concat softmax neg
and by the recognition transformations:
  act_sign (float -> ±1 with per-channel thresholds, J >= 1), bconv2d, blinear, bmaxpool2d,
  bconcat, affine
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


class ConversionError(Exception):
    """The model cannot be converted, or verification failed. The message says what and where."""


@dataclass
class Node:
    op: str
    inputs: list[str]  # value names: the graph input, another node's output, or a constant
    output: str
    attrs: dict[str, Any] = field(default_factory=dict)
    path: str = ""  # PyTorch module path (from nn_module_stack) for messages and the report
    origin: str = ""  # the fx node whose value this node's output equals (for verification)


@dataclass
class Model:
    inputs: list[str]
    outputs: list[str]
    nodes: list[Node]
    consts: dict[str, np.ndarray]
    shapes: dict[str, tuple[int, ...]]  # every value's PyTorch shape (batch included)
    metadata: dict[str, Any] = field(default_factory=dict)
    _counter: int = 0

    # ----------------------------------------------------------------- queries
    def producer(self, value: str) -> Node | None:
        for n in self.nodes:
            if n.output == value:
                return n
        return None

    def consumers(self, value: str) -> list[Node]:
        return [n for n in self.nodes if value in n.inputs]

    def n_uses(self, value: str) -> int:
        return sum(n.inputs.count(value) for n in self.nodes) + self.outputs.count(value)

    def const(self, value: str) -> np.ndarray | None:
        return self.consts.get(value)

    def is_const(self, value: str) -> bool:
        return value in self.consts

    # ----------------------------------------------------------------- edits
    def fresh(self, stem: str) -> str:
        self._counter += 1
        return f"{stem}__{self._counter}"

    def add_const(self, stem: str, array: np.ndarray) -> str:
        name = self.fresh(stem)
        self.consts[name] = np.asarray(array)
        return name

    def replace_uses(self, old: str, new: str) -> None:
        for n in self.nodes:
            n.inputs = [new if v == old else v for v in n.inputs]
        self.outputs = [new if v == old else v for v in self.outputs]

    def insert_before(self, anchor: Node, node: Node) -> None:
        self.nodes.insert(self.nodes.index(anchor), node)

    def remove_dead(self) -> bool:
        """Drop nodes whose output nobody reads; drop unused constants. Returns whether anything went."""
        changed = False
        while True:
            used = set(self.outputs)
            for n in self.nodes:
                used.update(n.inputs)
            keep = [n for n in self.nodes if n.output in used]
            if len(keep) == len(self.nodes):
                break
            self.nodes = keep
            changed = True
        used = set(self.outputs)
        for n in self.nodes:
            used.update(n.inputs)
        self.consts = {k: v for k, v in self.consts.items() if k in used}
        return changed


def channel_vector(array: np.ndarray | None, tensor_shape: tuple[int, ...]) -> np.ndarray | None:
    """A constant that broadcasts over a (N, C, ...) tensor per channel, as a (C,) float64 vector.

    Returns None if the constant varies along another axis (not a per-channel constant).
    """
    if array is None or len(tensor_shape) < 2:
        return None
    channels = tensor_shape[1]
    a = np.asarray(array, dtype=np.float64)
    if a.size == 1:
        return np.full(channels, float(a.reshape(-1)[0]))
    if a.ndim > len(tensor_shape):
        return None
    if a.ndim == 1:  # broadcasts against the last axis: per-channel only for (N, C) tensors
        return a.copy() if len(tensor_shape) == 2 and a.shape[0] == channels else None
    a = a.reshape((1,) * (len(tensor_shape) - a.ndim) + a.shape)
    shape = a.shape[1:]
    if a.shape[0] == 1 and shape[0] == channels and all(d == 1 for d in shape[1:]):
        return a.reshape(channels).copy()
    return None
