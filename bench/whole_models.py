"""Whole ImageNet BNNs at 224x224, batch 1: xnorinfer vs PyTorch float32 (vs OpenVINO when installed).

Usage:  python bench/whole_models.py [--model bireal18 reactnet_a] [--threads 1 2] [--rounds 7]
                                     [--runs 10] [--profile] [--cache DIR]

Builds the models of bench/imagenet_bnns.py (random weights, randomised BatchNorm), converts each
with `xnorinfer.convert` (verification off: this script measures speed; bench/convert_time.py
measures conversion and verification), and times, in the same process:
  - xnorinfer: the converted .xbin (`xnorinfer.load(threads=t)`), default ISA; with --unfused,
    also the same file with sign fusion off (XNORINFER_FUSE=0, "xnor unfused"); with --before, also
    the same file with every op on every thread and no affine fusion ("xnor before");
  - torch f32: the PyTorch model itself in eval mode (`torch.set_num_threads(t)`, inference_mode);
  - openvino f32: where `openvino` is installed (`pip install openvino`, the `bench` extra), the
    same PyTorch model through `openvino.convert_model` with INFERENCE_PRECISION_HINT f32. Its
    binary convs are float convs of +-alpha weights: this is OpenVINO running the float model, NOT
    its BinaryConvolution op;
  - with --ov-binary: OpenVINO running the same network with its BinaryConvolution op, built by
    bench/openvino_binary.py from the PyTorch modules ("ov binary f32" at INFERENCE_PRECISION_HINT
    f32, "ov binary dflt" at the plugin's default precision). Its outputs are checked against
    PyTorch by `python bench/openvino_binary.py`.
Rounds are interleaved (every engine x thread count once per round, `--runs` calls each, median
per call), and the figure printed is the median over rounds, so a burst of load from other work
on the machine hits every contender alike. With --profile, the per-op table of
`xnorinfer bench --profile` follows for each model and thread count.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from imagenet_bnns import MODELS, build  # noqa: E402

import xnorinfer  # noqa: E402
from xnorinfer import _core  # noqa: E402
from xnorinfer.convert.pipeline import convert  # noqa: E402


def _times_ms(fn: Callable[[], object], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def _openvino(model: torch.nn.Module, x: torch.Tensor, threads: int) -> Callable[[], object] | None:
    try:
        import openvino as ov
    except ImportError:
        return None
    compiled = ov.Core().compile_model(
        ov.convert_model(model, example_input=x),
        "CPU",
        {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"},
    )
    request = compiled.create_infer_request()
    xn = x.numpy()
    return lambda: request.infer([xn])


def _openvino_binary(
    model: torch.nn.Module, x: torch.Tensor, threads: int, precision: str | None
) -> Callable[[], object]:
    from openvino_binary import compile_binary

    request = compile_binary(model, threads, precision).create_infer_request()
    xn = x.numpy()
    return lambda: request.infer([xn])


def _profile(session: xnorinfer.Session, x: np.ndarray, runs: int) -> None:
    rows = session.profile(x, runs=runs)
    total = sum(r["ms_per_run"] for r in rows)
    by_kind: dict[str, float] = {}
    for r in rows:
        by_kind[r["kind"]] = by_kind.get(r["kind"], 0.0) + r["ms_per_run"]
    print(
        f"  sum of ops {total:.3f} ms; by kind: "
        + ", ".join(f"{k} {v:.3f} ({v / total * 100:.0f}%)" for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1]))
    )
    for i, r in enumerate(rows):
        print(f"  {i:>3}  {r['name']:<18} {r['kind']:<16} {r['ms_per_run']:>8.4f}  {r['share'] * 100:>5.1f}%")


def _best_profile(path: Path, x: np.ndarray, threads: int, reps: int) -> None:
    """Per-op profiles of the fused and unfused engine, alternated `reps` times (3 runs each); the
    best time per op over the repetitions, summed by kind: the least-disturbed figures."""
    sessions = {}
    for fuse in ("1", "0"):
        os.environ["XNORINFER_FUSE"] = fuse
        sessions[fuse] = xnorinfer.load(path, threads=threads)
    del os.environ["XNORINFER_FUSE"]
    best: dict[str, np.ndarray] = {}
    kinds: list[str] = []
    for _ in range(reps):
        for fuse, session in sessions.items():
            rows = session.profile(x, runs=3)
            kinds = [r["kind"] for r in rows]
            ms = np.array([r["ms_per_run"] for r in rows])
            best[fuse] = np.minimum(best[fuse], ms) if fuse in best else ms
    for fuse, label in (("1", "fused"), ("0", "unfused")):
        by_kind: dict[str, float] = {}
        for kind, v in zip(kinds, best[fuse], strict=True):
            by_kind[kind] = by_kind.get(kind, 0.0) + float(v)
        parts = ", ".join(f"{k} {v:.3f}" for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1]))
        print(f"  {threads} thr {label:<8} sum of per-op best {best[fuse].sum():.3f} ms: {parts}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", nargs="+", choices=sorted(MODELS), default=sorted(MODELS))
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--runs", type=int, default=10, help="calls per engine per round (median taken)")
    ap.add_argument("--profile", action="store_true", help="print xnorinfer's per-op profile")
    ap.add_argument(
        "--unfused", action="store_true", help="also time xnorinfer with sign fusion off (XNORINFER_FUSE=0)"
    )
    ap.add_argument(
        "--best-profile",
        type=int,
        default=0,
        metavar="N",
        help="N alternated fused/unfused per-op profiles, best per op",
    )
    ap.add_argument(
        "--ov-binary", action="store_true", help="also time OpenVINO's BinaryConvolution network (f32 and default)"
    )
    ap.add_argument(
        "--before",
        action="store_true",
        help="also time xnorinfer as before the per-op thread threshold and the affine fusion "
        "(XNORINFER_MIN_PARALLEL_WORK=0, XNORINFER_FUSE=sign: 'xnor before')",
    )
    ap.add_argument("--cache", type=Path, help="keep converted .xbin files here (reused when present)")
    args = ap.parse_args()
    print(f"ISA {_core.default_isa()}, torch {torch.__version__}, batch 1, 224x224")
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or Path(tmp)
        cache.mkdir(parents=True, exist_ok=True)
        for name in args.model:
            model = build(name)
            x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
            path = cache / f"{name}.xbin"
            if not path.exists():
                convert(model, (x,), verify=False, output=path)
            xn = x.numpy()
            engines: dict[tuple[str, int], Callable[[], object]] = {}
            sessions = {}
            for t in args.threads:
                sessions[t] = xnorinfer.load(path, threads=t)
                engines[("xnorinfer", t)] = lambda s=sessions[t], xn=xn: s.run(xn)
                if args.unfused:
                    os.environ["XNORINFER_FUSE"] = "0"  # read when the session is made
                    unfused = xnorinfer.load(path, threads=t)
                    del os.environ["XNORINFER_FUSE"]
                    engines[("xnor unfused", t)] = lambda s=unfused, xn=xn: s.run(xn)
                if args.before:
                    os.environ.update(XNORINFER_MIN_PARALLEL_WORK="0", XNORINFER_FUSE="sign")
                    before = xnorinfer.load(path, threads=t)
                    del os.environ["XNORINFER_MIN_PARALLEL_WORK"], os.environ["XNORINFER_FUSE"]
                    engines[("xnor before", t)] = lambda s=before, xn=xn: s.run(xn)
                engines[("torch f32", t)] = lambda model=model, x=x: model(x)
                ov = _openvino(model, x, t)
                if ov is not None:
                    engines[("openvino f32", t)] = ov
                if args.ov_binary:
                    engines[("ov binary f32", t)] = _openvino_binary(model, x, t, "f32")
                    engines[("ov binary dflt", t)] = _openvino_binary(model, x, t, None)
            results: dict[tuple[str, int], list[float]] = {k: [] for k in engines}
            best: dict[tuple[str, int], float] = {k: float("inf") for k in engines}
            with torch.inference_mode():
                for (_, t), fn in engines.items():
                    torch.set_num_threads(t)
                    fn()  # warm-up
                for _ in range(args.rounds):
                    for (engine, t), fn in engines.items():
                        torch.set_num_threads(t)
                        times = _times_ms(fn, args.runs)
                        results[(engine, t)].append(float(np.median(times)))
                        best[(engine, t)] = min(best[(engine, t)], min(times))
            # The best call is the one least disturbed by other work on the machine.
            print(f"\n{name}: ms per call, median of {args.rounds} interleaved rounds of {args.runs} calls (best call)")
            print(
                f"{'engine':<14}" + "".join(f"{f'{t} thr ms':>18}" for t in args.threads) + f"{'vs torch (1 thr)':>18}"
            )
            base = float(np.median(results[("torch f32", args.threads[0])]))
            for engine in dict.fromkeys(k[0] for k in engines):
                meds = [float(np.median(results[(engine, t)])) for t in args.threads]
                cells = [f"{m:.2f} ({best[(engine, t)]:.2f})" for m, t in zip(meds, args.threads, strict=True)]
                print(f"{engine:<14}" + "".join(f"{c:>18}" for c in cells) + f"{base / meds[0]:>17.2f}x")
            if args.best_profile:
                print(f"\n{name}: per-op best of {args.best_profile} alternated profiles (ms per run)")
                for t in args.threads:
                    _best_profile(path, xn, t, args.best_profile)
            if args.profile:
                for t in args.threads:
                    print(f"\n{name}, xnorinfer per-op profile, {t} thread(s), {args.runs * args.rounds} runs:")
                    _profile(sessions[t], xn, args.runs * args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
