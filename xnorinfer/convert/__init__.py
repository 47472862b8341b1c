"""Convert a trained PyTorch BNN into the xnorinfer graph IR (and optionally a .xbin file).

    graph = xnorinfer.convert.convert(model, (example_input,))          # a live nn.Module
    graph = xnorinfer.convert.convert("model.pt2", output="model.xbin")  # torch.export.save archive

The chain: capture (torch.export + decompositions + constant folding -> `graph.Model`) ->
recognise (patterns.py, three phases of small transformations run to a fixed point) -> lower
(NHWC, packed weights, folded thresholds -> `ir.Graph`) -> verify (PyTorch vs reference.py,
and the engine when it is built) -> write (xnorinfer.xbin, when present). pipeline.py runs it.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from xnorinfer import ir
from xnorinfer.convert.graph import ConversionError
from xnorinfer.convert.pipeline import CONVERTER_VERSION, capture_model, convert, same_file
from xnorinfer.convert.report import format_table
from xnorinfer.convert.verify import VerifyResult

__all__ = [
    "ConversionError",
    "convert",
    "capture_model",
    "same_file",
    "format_table",
    "VerifyResult",
    "CONVERTER_VERSION",
]


class _CallableModule(types.ModuleType):
    """Lets `xnorinfer.convert(model, example_inputs, ...)` call `convert` directly."""

    def __call__(self, *args: Any, **kwargs: Any) -> ir.Graph:
        return convert(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
