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

from xnorinfer.session import Session, load  # noqa: E402

__all__ = ["Session", "__version__", "_core", "load"]
