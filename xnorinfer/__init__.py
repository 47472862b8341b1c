"""xnorinfer: a CPU inference engine for binarized neural networks."""

from __future__ import annotations

try:
    from xnorinfer import _core
except ImportError as err:  # pragma: no cover - depends on how the package was installed
    raise ImportError(
        "xnorinfer's C++ extension (xnorinfer._core) could not be imported. If you are running from "
        "the source checkout, this directory shadows the installed package: run from elsewhere, or "
        "install in place with `pip install -e .` (or tools/dev_build.sh)."
    ) from err

__version__ = "0.1.0"

from xnorinfer.preprocess import preprocess  # noqa: E402
from xnorinfer.session import Session, load, load_bytes  # noqa: E402

__all__ = ["Session", "__version__", "_core", "convert", "load", "load_bytes", "preprocess"]


def __getattr__(name: str):
    # The converter needs torch: import it only when asked for, so that the run path
    # (`import xnorinfer; xnorinfer.load(...)`) never imports torch.
    if name == "convert":
        import importlib

        return importlib.import_module("xnorinfer.convert")
    raise AttributeError(f"module 'xnorinfer' has no attribute {name!r}")
