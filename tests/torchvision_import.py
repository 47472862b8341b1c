"""Import torchvision's model definitions, also where its C++ ops library cannot load.

PyPI serves one torchvision 0.28.0 wheel for Linux, built against the CUDA build of torch 2.13.0.
Beside the CPU build of torch (what the README installs, and all these machines have) its C++ library
`torchvision/_C.so` does not load (it links libtorch_cuda.so). torchvision then still imports its pure
Python parts, except that `torchvision/_meta_registrations.py` registers fake kernels for two ops of
that library (`torchvision::nms`, `torchvision::qnms`) and fails because they were never declared.
Declaring those two schemas, and nothing else, lets the import finish: the models (resnet18, ...)
never call either op. With a torchvision whose library loads (the CPU wheel from PyTorch's index),
the first import succeeds and nothing is declared.
"""

from __future__ import annotations

import sys
from types import ModuleType

import torch

_UNDECLARED = "operator torchvision::nms does not exist"
_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_LIBRARIES: list[torch.library.Library] = []  # a Library's definitions live as long as the object


def import_torchvision() -> ModuleType:
    try:
        import torchvision
    except RuntimeError as err:
        if _UNDECLARED not in str(err):
            raise
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]  # the failed import's half-initialised modules
        lib = torch.library.Library("torchvision", "DEF")
        for schema in _SCHEMAS:
            lib.define(schema)
        _LIBRARIES.append(lib)
        import torchvision
    return torchvision
