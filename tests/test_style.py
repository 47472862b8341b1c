"""The C++ sources follow .clang-format (clang-format pinned by the test extra, like ruff)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ["csrc", "fuzz", "examples", "include", "tests/cpp"]


def _clang_format() -> str | None:
    # The one installed beside this interpreter (pip's clang-format), else any on PATH.
    here = Path(sys.executable).parent / "clang-format"
    return str(here) if here.exists() else shutil.which("clang-format")


def test_cpp_sources_are_clang_formatted():
    exe = _clang_format()
    assert exe is not None, "clang-format is not installed: pip install '.[test]' pins it"
    files = sorted(
        str(p.relative_to(ROOT))
        for folder in FOLDERS
        if (ROOT / folder).is_dir()
        for p in (ROOT / folder).rglob("*")
        if p.suffix in (".h", ".cc", ".cpp", ".hpp")
    )
    assert files
    res = subprocess.run([exe, "--dry-run", "--Werror", *files], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, "run clang-format -i on these (see .clang-format):\n" + res.stderr[-4000:]
