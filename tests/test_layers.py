"""The C++ layers depend one way only: python -> runtime -> operators -> microkernels.

csrc/microkernels holds the SIMD and portable inner loops (no threads, no runtime), csrc/operators
the threaded operators, csrc/runtime the graph, nodes, loader and session, csrc/python the
bindings. A layer may include its own headers and those of the layers below it, never above.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

CSRC = Path(__file__).resolve().parent.parent / "csrc"
LAYERS = ["microkernels", "operators", "runtime", "python"]  # bottom to top
INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"/]+)/', re.MULTILINE)


def _sources(layer: str) -> list[Path]:
    return sorted(p for p in (CSRC / layer).rglob("*") if p.suffix in (".h", ".cc"))


@pytest.mark.parametrize("layer", LAYERS)
def test_layer_includes_point_down_only(layer):
    allowed = set(LAYERS[: LAYERS.index(layer) + 1])
    files = _sources(layer)
    assert files, f"csrc/{layer} has no sources"
    bad = [
        f"{path.relative_to(CSRC)} includes {folder}/"
        for path in files
        for folder in INCLUDE.findall(path.read_text())
        if folder not in allowed
    ]
    assert not bad, "includes against the layer order:\n" + "\n".join(bad)


def test_microkernels_include_no_runtime_or_operator_header():
    """The issue's check, spelled out: nothing under csrc/microkernels includes a header of the
    runtime (or of the operators, the threading layer)."""
    for path in _sources("microkernels"):
        text = path.read_text()
        assert '#include "runtime/' not in text, path
        assert '#include "operators/' not in text, path
        assert "thread" not in re.sub(r"//.*", "", text), f"{path}: micro-kernels do not thread"
