"""The converter's small internal graph: what capture produces and the transformations rewrite.

It is deliberately framework-free (numpy constants, string op names, each node's parameters as a
typed payload from attrs.py) so that another front end (ONNX) can produce the same graph. Shapes
are PyTorch's (NCHW); the NHWC layout of the IR is introduced only when lowering (`lower.py`).

Op vocabulary produced by capture (see docs/ops.md):
  conv2d linear batch_norm sign add sub mul div ge gt le lt where to_float relu hardtanh sigmoid prelu
  maxpool2d avgpool2d global_avgpool reshape concat softmax log_softmax neg
and by the recognition transformations:
  act_sign (float -> ±1 with per-channel thresholds, J >= 1), bconv2d, blinear, bmaxpool2d,
  bconcat, affine
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from xnorinfer.convert.attrs import NoAttrs, NodeAttrs

A = TypeVar("A", bound=NodeAttrs)


class ConversionError(Exception):
    """The model cannot be converted, or verification failed. The message says what and where."""


@dataclass
class Node:
    op: str
    inputs: list[str]  # value names: the graph input, another node's output, or a constant
    output: str
    attrs: NodeAttrs = field(default_factory=NoAttrs)  # the op's typed payload (attrs.py)
    path: str = ""  # PyTorch module path (from nn_module_stack) for messages and the report
    origin: str = ""  # the fx node whose value this node's output equals (for verification)
    where: str = ""  # the source location for messages (module path and line)

    def attrs_as(self, kind: type[A]) -> A:
        """The payload as `kind`; a ConversionError (an internal inconsistency) if it is another."""
        if not isinstance(self.attrs, kind):
            raise ConversionError(
                f"internal: {self.op} node {self.output} carries {type(self.attrs).__name__}, not {kind.__name__}"
            )
        return self.attrs


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

    def const(self, value: str) -> np.ndarray | None:
        return self.consts.get(value)

    def is_const(self, value: str) -> bool:
        return value in self.consts

    # ----------------------------------------------------------------- edits
    def fresh(self, stem: str) -> str:
        self._counter += 1
        return f"{stem}__{self._counter}"

    def replace_uses(self, old: str, new: str) -> None:
        for n in self.nodes:
            n.inputs = [new if v == old else v for v in n.inputs]
        self.outputs = [new if v == old else v for v in self.outputs]

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


class Rewrite:
    """Base of a graph transformation: visit the nodes in order; `rewrite(model, node)` returns True if it
    changed the graph (a node it removed is not visited)."""

    name = "rewrite"

    def apply(self, model: Model) -> tuple[Model, bool]:
        changed = False
        for node in list(model.nodes):
            if node in model.nodes and self.rewrite(model, node):
                changed = True
        return model, changed

    def rewrite(self, model: Model, node: Node) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError


def collapse_uniform(a: np.ndarray, axes: tuple[int, ...]) -> np.ndarray | None:
    """`a` with each of `axes` reduced to size 1 when `a` is constant along it (None if it is not).

    Broadcast views (zero strides, as capture keeps expanded constants) collapse without reading them.
    """
    for ax in axes:
        if a.shape[ax] <= 1:
            continue
        first = a.take([0], axis=ax)
        if a.strides[ax] != 0 and not np.array_equal(a, np.broadcast_to(first, a.shape)):
            return None
        a = first
    return a


def uniform_value(array: np.ndarray | None) -> float | None:
    """The value of a constant whose elements are all equal (a scalar however it is broadcast), else None."""
    if array is None or array.size == 0:
        return None
    a = collapse_uniform(np.asarray(array), tuple(range(np.ndim(array))))
    return None if a is None else float(a.reshape(-1)[0])


def channel_vector(array: np.ndarray | None, tensor_shape: tuple[int, ...]) -> np.ndarray | None:
    """A constant that broadcasts over a (N, C, ...) tensor per channel, as a (C,) float64 vector.

    The constant may be broadcast in any form: (C, 1, 1), (1, C, 1, 1), or a full (N, C, H, W) tensor
    (e.g. `bias.expand_as(x)` folded by capture) that is constant along N, H, W. Returns None if it
    varies along another axis or would broadcast the tensor to a larger shape.
    """
    if array is None or len(tensor_shape) < 2:
        return None
    channels = tensor_shape[1]
    a = np.asarray(array)
    if a.size == 1:
        return np.full(channels, float(a.reshape(-1)[0]))
    if a.ndim > len(tensor_shape):
        return None
    if a.ndim == 1:  # broadcasts against the last axis: per-channel only for (N, C) tensors
        if len(tensor_shape) == 2 and a.shape[0] == channels:
            return a.astype(np.float64)
        return uniform_channels(a, channels)
    a = a.reshape((1,) * (len(tensor_shape) - a.ndim) + a.shape)
    if any(d not in (1, t) for d, t in zip(a.shape, tensor_shape, strict=True)):
        return None  # the constant would broadcast the tensor
    other = tuple(ax for ax in range(a.ndim) if ax != 1)
    c = collapse_uniform(a, other)
    if c is None:
        return None
    if c.shape[1] == channels:
        return c.reshape(channels).astype(np.float64)
    return uniform_channels(c, channels)


def uniform_channels(a: np.ndarray, channels: int) -> np.ndarray | None:
    v = uniform_value(a)
    return None if v is None else np.full(channels, v)
