"""Per-op work threshold sweep: 1 thread vs 2 threads for every shipped model and the ImageNet BNNs.

Usage:  python bench/thread_threshold.py [--min-work 0 16384 65536 262144] [--rounds 7] [--runs 20]
                                         [--model NAME ...] [--imagenet] [--batch 1] [--cache DIR]
                                         [--profile N]

An op whose work (Node::work, values touched) is below XNORINFER_MIN_PARALLEL_WORK runs on the calling
thread only (operators/parallel.h kMinParallelWork). For each model (the reference models of
models/ through `xnorinfer.zoo.load_reference`, and with --imagenet Bi-Real-18 and ReActNet-A at 224
from bench/imagenet_bnns.py) this times, in the same process, a 1-thread session and a 2-thread
session per threshold (`--min-work 0` is the old policy: every op on every thread). Rounds are
interleaved (every engine once per round, `--runs` calls each, the median per call) and the figure
printed is the median over rounds, so load from other work on the machine hits every engine alike.
The last column per threshold is 1-thread ms / 2-thread ms (above 1: two threads are faster).
Converted files are kept in --cache when given (verification off: this script measures speed).
With --profile N: N alternated per-op profiles (3 runs each) of the 1- and 2-thread sessions at the
default threshold, the best time per op, summed by op kind: which ops scale worst from 1 to 2 threads.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from imagenet_bnns import build  # noqa: E402

import xnorinfer  # noqa: E402
from xnorinfer import _core, zoo  # noqa: E402
from xnorinfer.convert.pipeline import convert  # noqa: E402

IMAGENET = ("bireal18", "reactnet_a")


def _convert(name: str, cache: Path, batch: int) -> tuple[Path, np.ndarray]:
    """The .xbin of model `name` (converted once into `cache`) and an input batch for it."""
    gen = torch.Generator().manual_seed(1)
    if name in IMAGENET:
        model: torch.nn.Module = build(name)
        shape = [1, 3, 224, 224]
    else:
        model, metrics = zoo.load_reference(ROOT / "models" / name)
        shape = list(metrics["input_shape"])
    x = torch.randn(1, *shape[1:], generator=gen)
    path = cache / f"{name}.xbin"
    if not path.exists():
        convert(model, (x,), verify=False, output=path)
    return path, torch.randn(batch, *shape[1:], generator=gen).numpy()


def _load(path: Path, threads: int, min_work: float | None) -> xnorinfer.Session:
    if min_work is not None:
        os.environ["XNORINFER_MIN_PARALLEL_WORK"] = repr(float(min_work))  # read when the session is made
    try:
        return xnorinfer.load(path, threads=threads)
    finally:
        os.environ.pop("XNORINFER_MIN_PARALLEL_WORK", None)


def _scaling_by_kind(path: Path, x: np.ndarray, reps: int) -> None:
    sessions = {t: xnorinfer.load(path, threads=t) for t in (1, 2)}
    best: dict[int, np.ndarray] = {}
    kinds: list[str] = []
    for _ in range(reps):
        for t, session in sessions.items():
            rows = session.profile(x, runs=3)
            kinds = [r["kind"] for r in rows]
            ms = np.array([r["ms_per_run"] for r in rows])
            best[t] = np.minimum(best[t], ms) if t in best else ms
    parallel = sessions[2]._core.parallel_steps([list(x.shape)])
    by_kind: dict[str, list[float]] = {}
    for i, kind in enumerate(kinds):
        row = by_kind.setdefault(kind, [0.0, 0.0, 0, 0])
        row[0] += float(best[1][i])
        row[1] += float(best[2][i])
        row[2] += 1
        row[3] += int(parallel[i])
    print(
        f"  per-op best of {reps} alternated profiles, by kind (ms per run): "
        "kind, ops (on 2 threads), 1 thr, 2 thr, 1/2"
    )
    for kind, (one, two, n, par) in sorted(by_kind.items(), key=lambda kv: -kv[1][0]):
        print(f"  {kind:<16}{n:>4} ({par:>3}){one:>10.3f}{two:>10.3f}{one / two if two else float('inf'):>7.2f}")
    print(
        f"  {'all':<16}{len(kinds):>4} ({sum(parallel):>3}){best[1].sum():>10.3f}{best[2].sum():>10.3f}"
        f"{best[1].sum() / best[2].sum():>7.2f}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shipped = sorted(p.name for p in (ROOT / "models").iterdir() if (p / "metrics.json").exists())
    ap.add_argument("--model", nargs="+", choices=shipped + list(IMAGENET), default=shipped)
    ap.add_argument("--imagenet", action="store_true", help="add Bi-Real-18 and ReActNet-A at 224")
    ap.add_argument("--min-work", nargs="+", type=float, default=[0, 16384, 65536, 262144])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--runs", type=int, default=20, help="calls per engine per round (median taken)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--cache", type=Path, help="keep converted .xbin files here (reused when present)")
    ap.add_argument("--profile", type=int, default=0, metavar="N", help="per-op 1 vs 2 thread profiles by kind")
    args = ap.parse_args()
    names = list(dict.fromkeys(args.model + (list(IMAGENET) if args.imagenet else [])))
    print(f"ISA {_core.default_isa()}, batch {args.batch}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    head = "".join(f"{f'2 thr @{int(w)}':>16}{'1/2':>6}" for w in args.min_work)
    print(f"\n{'model':<16}{'1 thr ms':>10}{head}")
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or Path(tmp)
        cache.mkdir(parents=True, exist_ok=True)
        for name in names:
            path, x = _convert(name, cache, args.batch)
            engines = {("1", 0.0): _load(path, 1, None)}
            for w in args.min_work:
                engines[("2", w)] = _load(path, 2, w)
            want = engines[("1", 0.0)].run(x)
            for s in engines.values():  # warm-up, and the same bytes from every engine
                assert np.asarray(s.run(x)).tobytes() == np.asarray(want).tobytes()
            meds: dict[tuple[str, float], list[float]] = {k: [] for k in engines}
            for _ in range(args.rounds):
                for key, s in engines.items():
                    times = []
                    for _ in range(args.runs):
                        t0 = time.perf_counter()
                        s.run(x)
                        times.append((time.perf_counter() - t0) * 1e3)
                    meds[key].append(float(np.median(times)))
            one = float(np.median(meds[("1", 0.0)]))
            cells = ""
            for w in args.min_work:
                two = float(np.median(meds[("2", w)]))
                cells += f"{two:>16.3f}{one / two:>6.2f}"
            print(f"{name:<16}{one:>10.3f}{cells}", flush=True)
            if args.profile:
                _scaling_by_kind(path, x, args.profile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
