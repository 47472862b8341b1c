"""The public Python API: load/run/preprocess without torch, convert callable, Session sharing."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading

import numpy as np
from PIL import Image
from test_runtime import Builder

import xnorinfer
from xnorinfer import xbin

RUN_WITHOUT_TORCH = """
import sys
import numpy as np
import xnorinfer
from xnorinfer.cli import main
s = xnorinfer.load(sys.argv[1], threads=2)
x = xnorinfer.preprocess(sys.argv[2], s)
assert s.run(x).shape == (1, 10)
assert main(["run", sys.argv[1], sys.argv[2], "--top", "2"]) == 0
assert main(["inspect", sys.argv[1]]) == 0
assert "torch" not in sys.modules, "the run path imported torch"
print("no torch")
"""


def small_model(tmp_path, rng):
    """A valid small .xbin (1x8x8 input, 10 classes) and a matching 8x8 grayscale PNG."""
    b = Builder(rng, (1, 1, 8, 8))
    t = b.sign(b.int_conv("x", 8))
    t = b.bconv(t, 16, output="bits")
    t = b.add("flatten", [b.bconv(t, 8, output="float")])
    b.g.outputs = [b.add("softmax", [b.linear(t, 10)])]
    b.g.metadata.update({"labels": [str(i) for i in range(10)], "mean": [0.5], "std": [0.5]})
    path = tmp_path / "m.xbin"
    xbin.write(b.g, path)
    image = tmp_path / "digit.png"
    Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8), "L").save(image)
    return path, image


def test_run_path_never_imports_torch(tmp_path, rng):
    path, image = small_model(tmp_path, rng)
    res = subprocess.run(
        [sys.executable, "-c", RUN_WITHOUT_TORCH, str(path), str(image)],
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),
    )
    assert res.returncode == 0, res.stderr
    assert "no torch" in res.stdout


def test_one_session_from_many_threads_is_deterministic(tmp_path, rng):
    path, _ = small_model(tmp_path, rng)
    session = xnorinfer.load(path, threads=2)
    x = rng.standard_normal((4, 1, 8, 8)).astype(np.float32)
    expect = xnorinfer.load(path, threads=1).run(x).tobytes()
    failures: list[str] = []

    def worker() -> None:
        for _ in range(250):  # 8 threads x 250 = 2,000 concurrent runs
            if session.run(x).tobytes() != expect:
                failures.append("differs")

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


def test_convert_is_callable_from_the_package():
    import torch

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
    graph = xnorinfer.convert(model, (torch.zeros(1, 1, 2, 2),), verify=False)
    assert [op.kind for op in graph.ops] == ["flatten", "linear"]


def test_eight_sessions_of_one_model_in_parallel(tmp_path, rng):
    path, _ = small_model(tmp_path, rng)
    x = rng.standard_normal((2, 1, 8, 8)).astype(np.float32)
    expect = xnorinfer.load(path, threads=1).run(x).tobytes()
    sessions = [xnorinfer.load(path, threads=2) for _ in range(8)]
    failures: list[int] = []

    def worker(s) -> None:
        for _ in range(125):  # 8 sessions x 125 = 1,000 concurrent runs
            if s.run(x).tobytes() != expect:
                failures.append(1)

    threads = [threading.Thread(target=worker, args=(s,)) for s in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
