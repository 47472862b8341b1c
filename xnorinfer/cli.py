"""The `xnorinfer` command line: a thin layer over the Python API.

Exit codes (also in docs/cli.md): 0 success; 1 verification failed or an unexpected error;
2 bad usage or arguments; 3 a model file that is missing, corrupted, truncated, of a newer
format version or not a .xbin; 4 an image that is missing, not an image, truncated or too large;
5 a model that cannot be converted; 130/143 `convert` interrupted by SIGINT/SIGTERM (nothing
written, an existing output untouched). Errors print one line, `xnorinfer: error: ...`, without a
traceback unless --debug is given. The run path (`run`, `inspect`, `bench` without --compare,
`demo`) never imports torch.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from xnorinfer import __version__, _core

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_MODEL, EXIT_IMAGE, EXIT_CONVERT = 0, 1, 2, 3, 4, 5
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}


class CliError(Exception):
    """An error with the exit code it maps to."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _version_string() -> str:
    try:
        isa = _core.default_isa()
    except (ValueError, RuntimeError) as err:  # a bad XNORINFER_ISA
        isa = f"unavailable ({err})"
    return f"xnorinfer {__version__} (ISA path: {isa}; available: {', '.join(_core.available_isas())})"


def _load(path: str, threads: int | None, max_memory: int | None = None):
    from xnorinfer.session import load
    from xnorinfer.xbin import XbinError

    try:
        return load(path, threads=threads, max_memory=max_memory)
    except XbinError as err:
        raise CliError(str(err), EXIT_MODEL) from err
    except FileNotFoundError as err:
        raise CliError(f"{path}: file not found", EXIT_MODEL) from err


def _expand_images(items: list[str]) -> list[Path]:
    paths: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES and q.is_file())
            if not found:
                raise CliError(f"{p}: folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})", EXIT_IMAGE)
            paths.extend(found)
        else:
            paths.append(p)
    return paths


def _probabilities(out: np.ndarray, metadata: dict[str, Any]) -> np.ndarray:
    """Rows of class probabilities: the output as is when the model ends in softmax, else softmax."""
    out = np.asarray(out, dtype=np.float64).reshape(out.shape[0], -1)
    if metadata.get("output") == "probabilities":
        return out
    z = out - out.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def classify(session, images: list[Path], top: int, batch: int) -> list[dict[str, Any]]:
    """Preprocess, run in batches, and return one result dict per image."""
    from xnorinfer.preprocess import ImageError, InputSpec, preprocess_image

    try:
        spec = InputSpec.from_metadata(session.metadata)
    except ValueError as err:
        raise CliError(f"{session.path}: {err}", EXIT_MODEL) from err
    labels = session.labels
    results: list[dict[str, Any]] = []
    for start in range(0, len(images), batch):
        chunk = images[start:start + batch]
        try:
            x = np.concatenate([preprocess_image(p, spec) for p in chunk])
        except ImageError as err:
            raise CliError(str(err), EXIT_IMAGE) from err
        probs = _probabilities(session.run(x), session.metadata)
        for path, row in zip(chunk, probs, strict=True):
            order = np.argsort(-row, kind="stable")[:top]
            results.append({"image": str(path), "top": [
                {"class": int(i), "label": labels[i] if labels and i < len(labels) else str(int(i)),
                 "probability": float(row[i])} for i in order]})
    return results


def cmd_run(args: argparse.Namespace) -> int:
    session = _load(args.model, args.threads, args.max_memory)
    images = _expand_images(args.images)
    for result in classify(session, images, args.top, args.batch):
        if args.json:
            print(json.dumps(result))
        else:
            best = ", ".join(f"{t['label']} ({t['probability']:.3f})" for t in result["top"])
            print(f"{result['image']}: {best}")
    return EXIT_OK


def _format_count(v: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if v >= scale:
            return f"{v / scale:.2f}{unit}"
    return f"{v:.0f}"


def cmd_inspect(args: argparse.Namespace) -> int:
    session = _load(args.model, 1)
    rows = session.summary()
    print(f"{args.model}: {Path(args.model).stat().st_size / 1024:.1f} KiB, input {tuple(session.input_shape)}")
    header = f"{'#':>3}  {'op':<40}{'kind':<15}{'output':<20}{'weight bits':>12}{'binary MACs':>13}{'FLOPs':>10}"
    print(header)
    print("-" * len(header))
    total_bits = total_macs = total_flops = float_bits = 0
    for i, r in enumerate(rows):
        binary = r["kind"] in ("bconv2d", "blinear")
        print(f"{i:>3}  {r['name'][:39]:<40}{r['kind'] + (' (bin)' if binary else ''):<15}"
              f"{str(tuple(r['output_shape'])):<20}{_format_count(r['weight_bits']):>12}"
              f"{_format_count(r['binary_macs']):>13}{_format_count(r['flops']):>10}")
        total_bits += r["weight_bits"]
        total_macs += r["binary_macs"]
        total_flops += r["flops"]
        # the same weights in float32: one 32-bit number per binary weight
        float_bits += 32 * r["weight_bits"] if binary else r["weight_bits"]
    print("-" * len(header))
    print(f"totals: {len(rows)} ops, weights {total_bits / 8 / 1024:.1f} KiB "
          f"(float32: {float_bits / 8 / 1024:.1f} KiB, {float_bits / max(total_bits, 1):.1f}x smaller), "
          f"{_format_count(total_macs)} binary MACs, {_format_count(total_flops)} FLOPs")
    print("metadata:")
    for key, value in session.metadata.items():
        text = json.dumps(value)
        print(f"  {key}: {text if len(text) < 100 else text[:97] + '...'}")
    return EXIT_OK


def _latency(fn, runs: int, warmup: int = 3) -> np.ndarray:
    for _ in range(warmup):
        fn()
    times = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - t0
    return times * 1e3


def _exported_batch(program: Any) -> int | None:
    """The batch size the first user input of an ExportedProgram was traced with (None if dynamic)."""
    user_inputs = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in user_inputs:
            val = node.meta.get("val")
            try:
                return int(val.shape[0])
            except (AttributeError, TypeError, IndexError):
                return None
    return None


def cmd_bench(args: argparse.Namespace) -> int:
    session = _load(args.model, args.threads, args.max_memory)
    shape = (args.batch, *session.input_shape[1:])
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    ms = _latency(lambda: session.run(x), args.runs)
    med = float(np.median(ms))
    print(f"{args.model}: batch {args.batch}, {session.threads} thread(s), ISA {_core.default_isa()}, {args.runs} runs")
    print(f"latency ms: median {med:.3f}  p90 {np.percentile(ms, 90):.3f}  p99 {np.percentile(ms, 99):.3f}")
    print(f"throughput: {args.batch / med * 1e3:.1f} images/s")
    if args.profile:
        rows = session.profile(x, runs=args.runs)
        width = max([len("op")] + [len(r["name"]) for r in rows])
        kwidth = max([len("kind")] + [len(r["kind"]) for r in rows])
        print(f"per-op profile ({args.runs} runs, execution order):")
        print(f"{'#':>4}  {'op':<{width}}  {'kind':<{kwidth}}  {'ms/run':>10}  {'share':>7}")
        for i, r in enumerate(rows):
            print(f"{i:>4}  {r['name']:<{width}}  {r['kind']:<{kwidth}}  {r['ms_per_run']:>10.4f}  "
                  f"{r['share'] * 100:>6.1f}%")
        total = sum(r["ms_per_run"] for r in rows)
        cover = f" (ops cover {total / med * 100:.1f}%; input layout and call overhead are outside)" if med > 0 else ""
        print(f"sum of ops: {total:.3f} ms/run vs measured end-to-end median {med:.3f} ms{cover}")
    if args.compare:
        import torch

        torch.set_num_threads(session.threads)
        program = torch.export.load(args.compare)
        module = program.module()
        # An exported program may be specialised to its example batch size: run it in chunks of it.
        chunk = _exported_batch(program) or args.batch
        chunks = [torch.from_numpy(x[i:i + chunk]) for i in range(0, len(x), chunk)]
        if len(chunks[-1]) != len(chunks[0]):
            raise CliError(f"{args.compare}: exported for batch {chunk}; use a --batch that is a multiple of it",
                           EXIT_USAGE)

        def run_torch() -> None:
            for c in chunks:
                module(c)

        with torch.inference_mode():
            tms = _latency(run_torch, args.runs)
        tmed = float(np.median(tms))
        print(f"torch float ({args.compare}): median {tmed:.3f} ms -> xnorinfer is {tmed / med:.2f}x faster")
    return EXIT_OK


ASSETS = Path(__file__).resolve().parent / "assets"


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _labels(text: str) -> list[str]:
    path = Path(text)
    if path.is_file():
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return [v.strip() for v in text.split(",")]


def _live_module(spec: str, weights: str | None):
    """Build `pkg.mod:factory`'s module and load a state_dict (with or without `module.` prefixes)."""
    import importlib

    import torch

    if ":" not in spec:
        raise CliError(f"--module must look like package.module:factory, got {spec!r}", EXIT_USAGE)
    mod_name, factory = spec.split(":", 1)
    try:
        module = getattr(importlib.import_module(mod_name), factory)()
    except (ImportError, AttributeError) as err:
        raise CliError(f"--module {spec}: {err}", EXIT_USAGE) from err
    if weights:
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - torch raises many types for a bad file
            raise CliError(f"{weights}: cannot load a state_dict: {err}", EXIT_CONVERT) from err
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        state = {k.removeprefix("module."): v for k, v in state.items()}
        try:
            module.load_state_dict(state)
        except RuntimeError as err:
            raise CliError(f"{weights}: does not fit {spec}: {err}", EXIT_CONVERT) from err
    return module.eval()


def cmd_convert(args: argparse.Namespace) -> int:
    """Convert, verify and write; an interrupt (SIGINT, SIGTERM) leaves no partial or temp file.

    For the command's duration SIGTERM raises KeyboardInterrupt (by default it kills Python without
    any cleanup), so `xbin.write`'s cleanup runs and an existing output stays untouched. The interrupt
    becomes one error line, `xnorinfer: error: interrupted`, and exit code 128 + the signal number
    (130 for SIGINT, 143 for SIGTERM). The previous SIGTERM handler is restored afterwards.
    """
    import signal
    import threading
    import warnings

    received: list[int] = []

    def on_sigterm(signum: int, _frame: Any) -> None:
        if not received:  # once: a second SIGTERM must not break the cleanup the first one started
            received.append(signum)
            raise KeyboardInterrupt

    installed = threading.current_thread() is threading.main_thread()  # signal.signal works there only
    if installed:
        previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        import torch

        # torch.export's loader warns about its own internals; the user can do nothing about it.
        warnings.simplefilter("ignore", FutureWarning)
        from xnorinfer.convert import ConversionError, convert, format_table

        if (args.model is None) == (args.module is None):
            raise CliError("give either a .pt2 file or --module (with --weights and --input-shape)", EXIT_USAGE)
        metadata: dict[str, Any] = {}
        for key in ("mean", "std", "resize"):
            if getattr(args, key) is not None:
                metadata[key] = getattr(args, key)
        if args.labels is not None:
            metadata["labels"] = args.labels
        source: Any = args.model
        example = None
        if args.module is not None:
            if args.input_shape is None or len(args.input_shape) != 4:
                raise CliError("--module needs --input-shape N,C,H,W", EXIT_USAGE)
            source = _live_module(args.module, args.weights)
            example = (torch.zeros(args.input_shape),)
        elif not Path(args.model).is_file():
            raise CliError(f"{args.model}: file not found", EXIT_CONVERT)
        output = Path(args.output) if args.output else Path(args.model or "model").with_suffix(".xbin")
        calib = None
        if args.calib is not None:
            from xnorinfer.preprocess import ImageError, InputSpec, preprocess_image

            shape = args.input_shape or None
            if shape is None:
                raise CliError("--calib needs --input-shape N,C,H,W to preprocess the images", EXIT_USAGE)
            spec = InputSpec.from_metadata({"input_shape": shape, **metadata})
            try:
                calib = np.concatenate([preprocess_image(p, spec) for p in _expand_images([args.calib])])
            except ImageError as err:
                raise CliError(str(err), EXIT_IMAGE) from err
        if args.force:
            print("xnorinfer: warning: --force: the file is written even if verification finds differences",
                  file=sys.stderr)
        try:
            graph = convert(source, example, binarize=args.binarize, calib=calib, force=args.force,
                            verify=not args.no_verify, output=output, trust_pickle=args.trust_pickle,
                            n_verify=args.samples, metadata=metadata, progress=True)
        except ConversionError as err:
            code = EXIT_FAILED if str(err).startswith("verification failed") else EXIT_CONVERT
            raise CliError(f"{args.model or args.module}: {err}", code) from err
        print(format_table(graph))
        v = graph.metadata.get("verification")
        if not v:
            print("not verified (--no-verify)")
        else:
            for problem in v.get("problems", []):
                print(f"  WARNING: {problem}")
        print(f"wrote {output} ({output.stat().st_size / 1024:.1f} KiB)")
        return EXIT_OK
    except KeyboardInterrupt:
        raise CliError("interrupted", 128 + (received[0] if received else signal.SIGINT)) from None
    finally:
        if installed:  # None: a handler not set from Python; the default is the closest restorable one
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def cmd_demo(args: argparse.Namespace) -> int:
    model = ASSETS / "default.xbin"
    session = _load(str(model), args.threads)
    samples = sorted((ASSETS / "samples").glob("*.png"))
    if not samples:
        raise CliError(f"{ASSETS / 'samples'}: no sample images shipped", EXIT_FAILED)
    info = json.loads((ASSETS / "default.json").read_text()) if (ASSETS / "default.json").exists() else {}
    if info:
        print(f"model: {info.get('arch')} trained on {info.get('dataset')} ({info.get('epochs')} epochs); "
              f"test accuracy {info.get('test_accuracy', float('nan')):.4f} in PyTorch, "
              f"{info.get('converted_accuracy', float('nan')):.4f} converted")
    from xnorinfer.preprocess import InputSpec, preprocess_image

    labels = session.labels or []
    correct = 0
    print(f"{'image':<28}{'prediction':<24}{'true label':<16}")
    for result in classify(session, samples, 1, 32):
        best = result["top"][0]
        truth = int(Path(result["image"]).stem.rsplit("_", 1)[-1])
        true_label = labels[truth] if truth < len(labels) else str(truth)
        ok = best["class"] == truth
        correct += ok
        predicted = f"{best['label']} ({best['probability']:.2f})"
        print(f"{Path(result['image']).name:<28}{predicted:<24}{true_label:<16}{'ok' if ok else 'WRONG'}")
    print(f"{correct}/{len(samples)} correct")
    x = preprocess_image(samples[0], InputSpec.from_metadata(session.metadata))
    ms = float(np.median(_latency(lambda: session.run(x), 200)))
    print(f"xnorinfer: {ms:.3f} ms per image ({session.threads} thread(s), ISA {_core.default_isa()})")
    try:
        import torch
    except ImportError:
        print("(install torch to compare with the float PyTorch model)")
        return EXIT_OK
    from xnorinfer import xbin
    from xnorinfer.float_equivalent import torch_module

    torch.set_num_threads(session.threads)
    module = torch_module(xbin.read(model))
    xt = torch.from_numpy(x)
    with torch.inference_mode():
        tms = float(np.median(_latency(lambda: module(xt), 200)))
    print(f"float PyTorch model: {tms:.3f} ms per image -> xnorinfer is {tms / ms:.1f}x faster")
    return EXIT_OK


def cmd_kernels(args: argparse.Namespace) -> int:
    from xnorinfer.kernel_check import BENCH_SHAPES, time_shape

    print(f"{_version_string()}, {args.threads} thread(s)")
    print("binary 3x3 conv (XOR + popcount) vs float32 conv (im2col + SGEMM) on the same +/-1 data")
    print(f"{'shape C x H x W -> C_out':<26}{'binary ms':>10}{'float ms':>10}{'speedup':>9}{'binary MAC/s':>14}  exact")
    failed = False
    for shape in BENCH_SHAPES:
        t = time_shape(shape, threads=args.threads, isa=args.isa)
        c, h, w, o = shape
        failed |= not t.exact
        print(f"{f'{c} x {h} x {w} -> {o}':<26}{t.binary_ms:>10.3f}{t.float_ms:>10.3f}{t.speedup:>8.1f}x"
              f"{t.binary_macs_per_s:>14.3e}  {'yes' if t.exact else 'NO'}")
    if failed:
        raise CliError("binary and float sums differ on some shape", EXIT_FAILED)
    return EXIT_OK


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {n}")
    return n


class _Parser(argparse.ArgumentParser):
    """argparse with the one-line error format of every other xnorinfer error (exit code 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"xnorinfer: error: {self.prog}: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="xnorinfer",
        description="CPU inference engine for binarized neural networks (XOR + popcount kernels).",
        epilog="Run `xnorinfer COMMAND --help` for a command's options and an example.",
    )
    parser.add_argument("--version", action="version", version=_version_string())
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, help_text: str, description: str, example: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=description, epilog=f"example:\n  {example}",
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    conv = add("convert", "convert a trained PyTorch BNN into a verified .xbin",
               "Capture the model (torch.export), recognise binary layers and signs, fold BatchNorm and scales "
               "into integer thresholds, pack the weights, verify the result against PyTorch and the canonical "
               "reference on random (or --calib) inputs, and write one .xbin. Nothing is written when "
               "verification fails (unless --force) or an op is unsupported.",
               "xnorinfer convert model.pt2 -o model.xbin --mean 0.5 --std 0.5 --labels labels.txt")
    conv.add_argument("model", nargs="?", help="an ExportedProgram saved with torch.export.save (.pt2/.pt)")
    conv.add_argument("-o", "--output", help="output .xbin (default: the model path with .xbin)")
    conv.add_argument("--module", help="build a live module from package.module:factory instead of a .pt2")
    conv.add_argument("--weights", help="state_dict for --module (a `module.` prefix or a {'state_dict': ...} is fine)")
    conv.add_argument("--input-shape", type=_ints, help="N,C,H,W example input shape (needed with --module/--calib)")
    conv.add_argument("--binarize", action="append", default=[], metavar="PATTERN",
                      help="declare conv/linear layers whose module path matches PATTERN binary (repeatable)")
    conv.add_argument("--calib", metavar="DIR", help="verify on these images instead of random inputs")
    conv.add_argument("--samples", type=_positive, default=64, help="random verification inputs (default 64)")
    conv.add_argument("--mean", type=_floats, help="per-channel mean recorded for preprocessing, e.g. 0.5,0.5,0.5")
    conv.add_argument("--std", type=_floats, help="per-channel std recorded for preprocessing")
    conv.add_argument("--resize", type=_positive, help="resize the shorter side to this, then centre-crop")
    conv.add_argument("--labels", type=_labels, help="class labels: a file with one per line, or a comma list")
    conv.add_argument("--force", action="store_true", help="write even if verification finds differences")
    conv.add_argument("--no-verify", action="store_true", help="skip verification")
    conv.add_argument("--trust-pickle", action="store_true",
                      help="allow loading a pickled whole module (runs arbitrary code from the file)")
    conv.set_defaults(func=cmd_convert)

    run = add("run", "classify images with a .xbin model",
              "Decode each image (PNG, JPEG, BMP, ...; folders are expanded), preprocess it as the model's "
              "metadata says, run the model in batches and print the top classes.",
              "xnorinfer run model.xbin cat.png more_images/ --top 3")
    run.add_argument("model", help="a .xbin file")
    run.add_argument("images", nargs="+", help="image files or folders of images")
    run.add_argument("--top", type=_positive, default=5, help="classes to print per image (default 5)")
    run.add_argument("--json", action="store_true", help="one JSON object per image")
    run.add_argument("--threads", type=_positive, default=None, help="worker threads (default: all CPUs)")
    run.add_argument("--batch", type=_positive, default=32, help="images per engine call (default 32)")
    run.add_argument("--max-memory", type=_positive, default=None, metavar="BYTES",
                     help="refuse a memory plan above BYTES (default: half of the memory, physical or cgroup limit)")
    run.set_defaults(func=cmd_run)

    inspect = add("inspect", "print a .xbin model's ops, sizes and metadata",
                  "Print the per-op summary (module path, kind, output shape, weight bits, binary MACs or FLOPs), "
                  "totals, the size against float32 weights, and the metadata.",
                  "xnorinfer inspect model.xbin")
    inspect.add_argument("model", help="a .xbin file")
    inspect.set_defaults(func=cmd_inspect)

    bench = add("bench", "measure a .xbin model's latency and throughput",
                "Run the model on random input and report latency (median, p90, p99) and throughput.",
                "xnorinfer bench model.xbin --batch 8 --threads 2 --compare model.pt2")
    bench.add_argument("model", help="a .xbin file")
    bench.add_argument("--batch", type=_positive, default=1, help="batch size (default 1)")
    bench.add_argument("--threads", type=_positive, default=None, help="worker threads (default: all CPUs)")
    bench.add_argument("--runs", type=_positive, default=100, help="timed runs (default 100)")
    bench.add_argument("--max-memory", type=_positive, default=None, metavar="BYTES",
                       help="refuse a memory plan above BYTES (default: half of the memory, physical or cgroup limit)")
    bench.add_argument("--compare", metavar="MODEL_PT2", default=None,
                       help="also time the float PyTorch model (torch.export .pt2) on the same input and threads")
    bench.add_argument("--profile", action="store_true",
                       help="also time every op (over --runs runs) and print its ms per run and share of the total")
    bench.set_defaults(func=cmd_bench)

    demo = add("demo", "run the shipped default model on the shipped sample images",
               "Classify the sample images shipped with xnorinfer using the default model, print the "
               "predictions next to the true labels and, when torch is installed, the speedup over the "
               "float PyTorch model.", "xnorinfer demo")
    demo.add_argument("--threads", type=_positive, default=None, help="worker threads (default: all CPUs)")
    demo.set_defaults(func=cmd_demo)

    kernels = add("kernels", "check and time the binary conv kernels against float conv on this machine",
                  "Runs the binary 3x3 convolution on the benchmark shapes, checks its integer sums against "
                  "xnorinfer's float32 convolution of the same +/-1 data, and prints both times.",
                  "xnorinfer kernels --threads 2")
    kernels.add_argument("--threads", type=_positive, default=1, help="worker threads (default 1)")
    kernels.add_argument("--isa", choices=["scalar", "avx2", "avx512"], default=None,
                         help="force an ISA path (default: XNORINFER_ISA or the best available)")
    kernels.set_defaults(func=cmd_kernels)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_OK
    try:
        return int(args.func(args))
    except CliError as err:
        if args.debug:
            raise
        print(f"xnorinfer: error: {err}", file=sys.stderr)
        return err.code
    except (ValueError, RuntimeError, OSError) as err:
        if args.debug:
            raise
        print(f"xnorinfer: error: {err}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
