"""Time `xnorinfer convert` stage by stage on an ImageNet-size BNN (bench/imagenet_bnns.py).

Usage:  python bench/convert_time.py [--model bireal18|reactnet_a] [--samples 64] [--threads 1] [--force]

Prints the wall seconds of capture (torch.export), recognition + lowering, and verification (IR
reference on the samples, PyTorch batched, the engine), whether verification passed, and the binary
activations it counted as float32 rounding ties (each within its own error bound; docs/ops.md,
"Verification and tolerances"). Without --force a failed verification ends the run with its error.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from imagenet_bnns import MODELS, build  # noqa: E402

from xnorinfer.convert import capture, patterns  # noqa: E402
from xnorinfer.convert.lower import lower  # noqa: E402
from xnorinfer.convert.pipeline import capture_model, describe, verify_graph  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=sorted(MODELS), default="bireal18")
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the engine verifies on one)")
    ap.add_argument("--force", action="store_true", help="time a verification that fails too (report, do not raise)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = build(args.model)
    x = torch.randn(1, 3, 224, 224)
    times, cpu = {}, {}
    t, c = time.perf_counter(), time.process_time()
    ep, live, sha = capture_model(model, (x,))
    times["capture (torch.export)"] = time.perf_counter() - t
    cpu["capture (torch.export)"] = time.process_time() - c
    t, c = time.perf_counter(), time.process_time()
    m = patterns.recognise(capture.to_model(ep), ())
    graph = lower(m)
    describe(graph, m, sha, None)
    times["recognise + lower"] = time.perf_counter() - t
    cpu["recognise + lower"] = time.process_time() - c
    t, c = time.perf_counter(), time.process_time()
    verify_graph(
        graph,
        ep,
        live,
        list(m.metadata["input_shape"]),
        None,
        n_verify=args.samples,
        seed=0,
        force=args.force,
        engine=True,
        progress=False,
    )
    times[f"verify ({args.samples} inputs)"] = time.perf_counter() - t
    cpu[f"verify ({args.samples} inputs)"] = time.process_time() - c
    # CPU seconds of this process beside the wall: on a shared machine the wall includes waiting
    print(f"{'stage':28s} {'wall':>8s}   {'CPU':>8s}")
    for k, v in times.items():
        print(f"{k:28s} {v:8.1f} s {cpu[k]:8.1f} s")
    print(f"{'total':28s} {sum(times.values()):8.1f} s {sum(cpu.values()):8.1f} s")
    result = graph.metadata["verification"]
    problems = result["problems"]
    print("verification:", "passed" if not problems else "; ".join(problems[:3]))
    layers = result["layers"].values()
    ties = [(v["path"], v["rounding_ties"], v["total"], v["worst_tie"]) for v in layers if v["rounding_ties"]]
    n_act = sum(v["total"] for v in layers)
    print(f"rounding ties: {sum(t[1] for t in ties)} of {n_act} binary activations, in {len(ties)} layers")
    for path, n, total, worst in ties:
        print(f"  {path or '?':24s} {n:6d} of {total} (largest margin / bound {worst:.3f})")
    if result.get("engine"):
        print("engine vs reference:", result["engine"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
