"""docs/adding-an-op.md stays true: the files it lists for the worked example exist, each really
holds a part of that op, and their number meets the project's target (at most 6 for a float
element-wise op, test included)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "adding-an-op.md"


def _listed_files() -> list[str]:
    text = DOC.read_text()
    block = text.split("<!-- float-op-files", 1)[1].split("<!-- end float-op-files -->", 1)[0]
    return re.findall(r"^- `([^`]+)`$", block, flags=re.MULTILINE)


def test_worked_example_files_exist_and_hold_the_op():
    files = _listed_files()
    assert 1 <= len(files) <= 6
    for f in files:
        path = ROOT / f
        assert path.is_file(), f
        assert "tanh" in path.read_text(), f"{f} does not mention the worked example op"


def test_the_binary_op_table_lists_existing_files():
    text = DOC.read_text()
    section = text.split("## A binary op with a SIMD kernel", 1)[1].split("That is", 1)[0]
    files = [
        f
        for cell in re.findall(r"^\| (`[^|]+`) \|", section, flags=re.MULTILINE)
        for f in re.findall(r"`([^`]+)`", cell)
    ]
    files = [f if "/" in f else f"csrc/microkernels/{f}" for f in files]
    assert len(files) <= 12
    for f in files:
        assert (ROOT / f).is_file(), f
