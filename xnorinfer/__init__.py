"""xnorinfer: a CPU inference engine for binarized neural networks."""

from __future__ import annotations

from xnorinfer import _core

__version__ = "0.1.0"

__all__ = ["__version__", "_core"]
