"""Images/s of the streaming `xnorinfer run --output` vs Ray Data (`xnorinfer.ray`) with 1 and 2 actors.

    python bench/ray_throughput.py [--images 4000] [--model xnorinfer/assets/default.xbin] [--cpus 2]

The images are real: the repository's 1000 MNIST test images (tests/data) written as PNG files,
repeated into --images files. Also measured, to locate the bottleneck: decode + preprocess alone
(one thread, `xnorinfer.batch.decode`) and the engine alone on the preprocessed batch. Ray times
are end to end (read, decode, infer, write Parquet) on a local cluster of --cpus CPUs, excluding
`ray.init`; the first Ray run is preceded by a warm-up run so that worker start-up is not counted.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def make_images(folder: Path, n: int) -> list[str]:
    from PIL import Image

    from xnorinfer.datasets import read_idx

    mnist = read_idx(ROOT / "tests" / "data" / "mnist" / "t10k-images-idx3-ubyte.gz")
    paths = []
    for i in range(n):
        sub = folder / f"part{i // 1000:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        p = sub / f"{i:06d}.png"
        Image.fromarray(mnist[i % len(mnist)]).save(p)
        paths.append(str(p))
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=4000)
    ap.add_argument("--model", default=str(ROOT / "xnorinfer" / "assets" / "default.xbin"))
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--batch", type=int, default=256)
    args = ap.parse_args()

    from xnorinfer.batch import decode, iter_inputs, run_stream
    from xnorinfer.preprocess import InputSpec
    from xnorinfer.session import load

    tmp = Path(tempfile.mkdtemp(prefix="xnorinfer-bench-"))
    paths = make_images(tmp / "images", args.images)
    print(f"{args.images} PNG images ({Path(args.model).name}), {args.cpus} CPUs, batch {args.batch}")

    session = load(args.model, threads=1)
    spec = InputSpec.from_metadata(session.metadata)
    t0 = time.perf_counter()
    arrays = [decode(p, spec).array for p in paths]
    dec = len(paths) / (time.perf_counter() - t0)
    x = np.concatenate(arrays)
    t0 = time.perf_counter()
    for i in range(0, len(x), args.batch):
        session.run(x[i : i + args.batch])
    inf = len(paths) / (time.perf_counter() - t0)
    from xnorinfer.ray import Predictor

    pred = Predictor(Path(args.model).read_bytes(), threads=1)
    blobs = [Path(p).read_bytes() for p in paths]
    t0 = time.perf_counter()
    for i in range(0, len(paths), args.batch):
        pred({"path": np.array(paths[i : i + args.batch]), "bytes": blobs[i : i + args.batch]})
    actor = len(paths) / (time.perf_counter() - t0)
    print(f"decode+preprocess alone, 1 thread: {dec:9.0f} images/s")
    print(f"one actor's work (Predictor), no Ray: {actor:6.0f} images/s")
    print(f"engine alone, 1 thread:            {inf:9.0f} images/s")

    results = {}
    for threads, workers in ((1, 1), (1, args.cpus)):
        s = load(args.model, threads=threads)
        out = tmp / f"stream-{workers}.parquet"
        st = run_stream(s, iter_inputs([str(tmp / "images")]), out, batch=args.batch, workers=workers, progress=False)
        assert st.rows == len(paths) and st.errors == 0
        results[f"stream, {workers} decode thread(s)"] = st.rows / st.seconds

    import ray

    from xnorinfer.ray import ray_run

    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    ray.data.DataContext.get_current().enable_progress_bars = False
    ray_run(args.model, str(tmp / "images"), str(tmp / "warm"), actors=1, batch=args.batch)  # worker start-up
    for actors in (1, 2):
        t0 = time.perf_counter()
        counts = ray_run(args.model, str(tmp / "images"), str(tmp / f"ray{actors}"), actors=actors, batch=args.batch)
        dt = time.perf_counter() - t0
        assert counts["rows"] == len(paths)
        results[f"Ray Data, {actors} actor(s) x 1 thread"] = len(paths) / dt
    ray.shutdown()
    for name, rate in results.items():
        print(f"{name:<36} {rate:9.0f} images/s")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
