"""A bounded libFuzzer (atheris) run of the .xbin loader, seeded with real converted models."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from test_fuzz_loader import _seed_model

import xnorinfer

ROOT = Path(__file__).resolve().parents[1]
RUNS = int(os.environ.get("XNORINFER_ATHERIS_RUNS", "20000"))


def test_atheris_finds_no_crash(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(Path(xnorinfer.__file__).resolve().parent / "assets" / "default.xbin", corpus / "default.xbin")
    (corpus / "small.xbin").write_bytes(_seed_model(tmp_path))
    res = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "fuzz_xbin.py"),
            str(corpus),
            f"-atheris_runs={RUNS}",
            "-max_len=500000",
            # libFuzzer's hang timer fires every timeout/2+1 s, also after the last run while the
            # interpreter shuts down (a SIGALRM death after "Done"); 600 s keeps it out of a bounded
            # run, and a hang still fails through subprocess's timeout below.
            "-timeout=600",
            "-seed=1",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=900,
    )
    tail = res.stderr[-2000:]
    assert res.returncode == 0, tail
    assert f"Done {RUNS} in " in tail, tail  # libFuzzer's closing line: every run completed
    assert not list(tmp_path.glob("crash-*")) and not list(tmp_path.glob("timeout-*"))
