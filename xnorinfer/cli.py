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
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from xnorinfer import __version__, _core
from xnorinfer.text import printable

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


def _warn(message: str) -> None:
    print(f"xnorinfer: warning: {printable(message)}", file=sys.stderr)


def classify(session, images: list[Path], top: int, batch: int, quiet: bool = False) -> list[dict[str, Any]]:
    """Preprocess, run in batches, and return one result dict per image.

    Unless `quiet`, an image that had to be changed to fit the model's input (colour to grayscale
    or back, a changed aspect ratio) gets a one-line warning on stderr, as does a `top` above the
    number of classes.
    """
    from xnorinfer.preprocess import ImageError, InputSpec, preprocess_image

    try:
        spec = InputSpec.from_metadata(session.metadata)
    except ValueError as err:
        raise CliError(f"{session.path}: {err}", EXIT_MODEL) from err
    labels = session.labels
    results: list[dict[str, Any]] = []
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        arrays = []
        for p in chunk:
            notes: list[str] = []
            try:
                arrays.append(preprocess_image(p, spec, notes))
            except ImageError as err:
                raise CliError(str(err), EXIT_IMAGE) from err
            if notes and not quiet:
                kind = {1: "grayscale", 3: "RGB"}.get(spec.channels, f"{spec.channels}-channel")
                _warn(f"{p}: {', '.join(notes)} (the model takes {spec.width}x{spec.height} {kind} images)")
        probs = _probabilities(session.run(np.concatenate(arrays)), session.metadata)
        if start == 0 and top > probs.shape[1] and not quiet:
            _warn(f"--top {top} is more than the model's {probs.shape[1]} classes; printing all {probs.shape[1]}")
        for path, row in zip(chunk, probs, strict=True):
            order = np.argsort(-row, kind="stable")[:top]
            results.append(
                {
                    "image": str(path),
                    "top": [
                        {
                            "class": int(i),
                            "label": labels[i] if labels and i < len(labels) else str(int(i)),
                            "probability": float(row[i]),
                        }
                        for i in order
                    ],
                }
            )
    return results


def _array_inputs(session: Any, specs: list[str]) -> dict[str, np.ndarray]:
    """`--input NAME=FILE.npy` (one per model input; NAME may be left out for a one-input model)."""
    names = session.input_names
    arrays: dict[str, np.ndarray] = {}
    for spec in specs:
        name, sep, file = spec.rpartition("=")
        if not sep:
            if len(names) != 1:
                raise CliError(
                    f"--input {spec}: name the input (NAME=FILE.npy); the model's inputs are {names}", EXIT_USAGE
                )
            name = names[0]
        if name not in names:
            raise CliError(f"--input {spec}: the model has no input {name!r}; its inputs are {names}", EXIT_USAGE)
        try:
            arrays[name] = np.load(file, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise CliError(f"--input {spec}: cannot read {file} as a .npy array: {err}", EXIT_IMAGE) from err
    missing = [n for n in names if n not in arrays]
    if missing:
        raise CliError(f"missing --input for {missing} (the model's inputs are {names})", EXIT_USAGE)
    return arrays


def _require_image_model(session: Any) -> None:
    """Images feed a model with one NCHW input; any other model takes arrays (--input)."""
    shapes = session.input_shapes
    if len(shapes) != 1 or (len(shapes[0]) != 4 and session.metadata.get("input_layout") != "NF"):
        inputs = ", ".join(f"{n} {tuple(s)}" for n, s in zip(session.input_names, shapes, strict=True))
        raise CliError(
            f"{printable(session.path)} takes {inputs}, not one NCHW image: give each input as a .npy array with "
            "--input NAME=FILE.npy",
            EXIT_USAGE,
        )


def cmd_run_arrays(args: argparse.Namespace) -> int:
    """`run --input NAME=FILE.npy ...`: a model's inputs as arrays (any model, any number of inputs); prints
    the top classes of each row of the first output."""
    session = _load(args.model, args.threads, args.max_memory)
    arrays = _array_inputs(session, args.inputs)
    try:
        out = session.run(arrays)
    except (ValueError, TypeError) as err:
        raise CliError(str(err), EXIT_IMAGE) from err
    first = np.asarray(out[0] if isinstance(out, list) else out)
    probs = _probabilities(first, session.metadata)
    labels = session.labels
    for i, row in enumerate(probs):
        order = np.argsort(-row, kind="stable")[: args.top]
        top = [
            {
                "class": int(k),
                "label": labels[k] if labels and k < len(labels) else str(int(k)),
                "probability": float(row[k]),
            }
            for k in order
        ]
        if args.json:
            print(json.dumps({"row": i, "top": top}))
        else:
            print(f"row {i}: " + ", ".join(f"{printable(t['label'])} ({t['probability']:.3f})" for t in top))
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    if args.inputs:
        if args.images or args.output is not None or args.list is not None:
            raise CliError(
                "--input arrays and images (or --output / --list) do not mix: give one or the other", EXIT_USAGE
            )
        return cmd_run_arrays(args)
    if args.output is not None:
        return cmd_run_stream(args)
    for flag, given in (("--list", args.list is not None), ("--resume", args.resume)):
        if given:
            raise CliError(f"{flag} needs --output (results.parquet, .csv or .jsonl)", EXIT_USAGE)
    session = _load(args.model, args.threads, args.max_memory)
    _require_image_model(session)
    images = _expand_images(args.images)
    for result in classify(session, images, args.top, args.batch, quiet=args.quiet):
        if args.json:
            print(json.dumps(result))
        else:
            best = ", ".join(f"{printable(t['label'])} ({t['probability']:.3f})" for t in result["top"])
            print(f"{printable(result['image'])}: {best}")
    return EXIT_OK


def cmd_run_stream(args: argparse.Namespace) -> int:
    """`run --output`: stream any number of images into a results file (xnorinfer.batch)."""
    import signal
    import threading

    from xnorinfer.batch import OutputError, iter_inputs, run_stream

    if args.list is not None and not Path(args.list).is_file():
        raise CliError(f"--list {args.list}: file not found", EXIT_USAGE)
    session = _load(args.model, args.threads, args.max_memory)
    _require_image_model(session)

    def on_sigterm(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    installed = threading.current_thread() is threading.main_thread()
    if installed:
        previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        stats = run_stream(
            session,
            iter_inputs(args.images, args.list),
            args.output,
            top=args.top,
            batch=args.batch,
            resume=args.resume,
            workers=args.decode_threads,
            progress=not args.no_progress,
        )
    except OutputError as err:
        raise CliError(str(err), EXIT_USAGE) from err
    except KeyboardInterrupt:
        raise CliError(
            f"interrupted; {args.output} holds every finished batch: rerun with --resume to continue", 130
        ) from None
    finally:
        if installed:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
    if stats.converted and not args.quiet:
        _warn(f"{stats.converted} image(s) converted to fit the model, e.g. {stats.first_note}")
    rate = stats.rows / stats.seconds if stats.seconds > 0 else 0.0
    skipped = f", {stats.skipped} already there (--resume)" if args.resume else ""
    print(
        f"xnorinfer: wrote {stats.rows} rows to {printable(args.output)} ({stats.errors} error rows{skipped}) "
        f"in {stats.seconds:.1f} s, {rate:.1f} images/s",
        file=sys.stderr,
    )
    return EXIT_OK


def cmd_ray_run(args: argparse.Namespace) -> int:
    try:
        import ray  # noqa: F401
    except ImportError as err:
        raise CliError("ray-run needs Ray Data: pip install 'xnorinfer[ray]' (ray[data], pyarrow)", EXIT_USAGE) from err
    from xnorinfer.ray import main_args

    if not Path(args.model).is_file():
        raise CliError(f"{args.model}: file not found", EXIT_MODEL)
    _load(args.model, 1)  # a damaged model fails here, before a cluster starts
    if "://" not in args.input_uri and not Path(args.input_uri).exists():
        raise CliError(f"{args.input_uri}: file or folder not found", EXIT_IMAGE)
    if "://" not in args.output and Path(args.output).exists() and not args.overwrite:
        raise CliError(f"{args.output}: exists; give another --output or --overwrite", EXIT_USAGE)
    t0 = time.perf_counter()
    counts = main_args(args)
    seconds = time.perf_counter() - t0
    print(
        f"xnorinfer: wrote {counts['rows']} rows ({counts['errors']} error rows) for {counts['inputs']} images to "
        f"{printable(args.output)} in {seconds:.1f} s, {counts['rows'] / seconds:.1f} images/s",
        file=sys.stderr,
    )
    return EXIT_OK


def cmd_inspect(args: argparse.Namespace) -> int:
    from xnorinfer.cost import format_table

    session = _load(args.model, 1)
    print(
        f"{printable(args.model)}: {Path(args.model).stat().st_size / 1024:.1f} KiB, input {tuple(session.input_shape)}"
    )
    for line in format_table(session.costs()):
        print(line)
    print("metadata:")
    for key, value in session.metadata.items():
        text = json.dumps(value)
        print(f"  {key}: {text if len(text) < 100 else text[:97] + '...'}")
    return EXIT_OK


def _print_bgemm_choices(session: Any) -> None:
    """XNORINFER_BGEMM=auto's measured choice per binary layer, when it ran."""
    choices = session.bgemm_choices()
    if not choices:
        return
    mode = os.environ.get("XNORINFER_BGEMM", "auto")
    print(f"XNORINFER_BGEMM={mode}: engine per binary layer (best of 3 interleaved runs each, on its first run):")
    for c in choices:
        where = f"{c['name']} ({c['height']}x{c['width']}, batch {c['batch']}, {c['threads']} thread(s))"
        if c["not_measured"]:
            print(f"  {where}: {c['engine']} ({c['not_measured']})")
        else:
            print(
                f"  {where}: {c['engine']} (popcount {c['popcount_ms']:.3f} ms, {c['amx_engine']} {c['amx_ms']:.3f} ms)"
            )


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
    if len(session.input_names) > 1:
        if args.compare:
            raise CliError("--compare takes a model with one input", EXIT_USAGE)
        rng = np.random.default_rng(0)  # one batch per input, all with the same N
        x = [rng.standard_normal((args.batch, *s[1:])).astype(np.float32) for s in session.input_shapes]
    ms = _latency(lambda: session.run(x), args.runs)
    med = float(np.median(ms))
    print(f"{args.model}: batch {args.batch}, {session.threads} thread(s), ISA {_core.default_isa()}, {args.runs} runs")
    print(f"latency ms: median {med:.3f}  p90 {np.percentile(ms, 90):.3f}  p99 {np.percentile(ms, 99):.3f}")
    print(f"throughput: {args.batch / med * 1e3:.1f} images/s")
    if args.profile:
        rows = session.profile(x, runs=args.runs)
        width = max([len("op")] + [len(r["name"]) for r in rows])
        kwidth = max([len("kind")] + [len(r["kind"]) for r in rows])
        print(f"per-op profile ({args.runs} runs, execution order; engine: the binary GEMM's, XNORINFER_BGEMM):")
        print(f"{'#':>4}  {'op':<{width}}  {'kind':<{kwidth}}  {'ms/run':>10}  {'share':>7}  engine")
        for i, r in enumerate(rows):
            print(
                f"{i:>4}  {r['name']:<{width}}  {r['kind']:<{kwidth}}  {r['ms_per_run']:>10.4f}  "
                f"{r['share'] * 100:>6.1f}%  {r.get('engine', '')}".rstrip()
            )
        total = sum(r["ms_per_run"] for r in rows)
        cover = f" (ops cover {total / med * 100:.1f}%; input layout and call overhead are outside)" if med > 0 else ""
        print(f"sum of ops: {total:.3f} ms/run vs measured end-to-end median {med:.3f} ms{cover}")
        _print_bgemm_choices(session)
    if args.compare:
        import torch

        from xnorinfer.convert.capture import load_exported
        from xnorinfer.convert.graph import ConversionError

        torch.set_num_threads(session.threads)
        try:
            program = load_exported(args.compare)  # refuses archives that would unpickle
        except ConversionError as err:
            raise CliError(str(err), EXIT_MODEL) from err
        module = program.module()
        # An exported program may be specialised to its example batch size: run it in chunks of it.
        chunk = _exported_batch(program) or args.batch
        chunks = [torch.from_numpy(x[i : i + chunk]) for i in range(0, len(x), chunk)]
        if len(chunks[-1]) != len(chunks[0]):
            raise CliError(
                f"{args.compare}: exported for batch {chunk}; use a --batch that is a multiple of it", EXIT_USAGE
            )

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


def _parse_factory(spec: str) -> tuple[str, str, list[Any], dict[str, Any]]:
    """`where:factory` or `where:factory(literal args)` -> (where, factory, args, kwargs); no code runs."""
    import ast

    where, sep, call = spec.rpartition(":")
    usage = (
        f"--module must look like package.module:factory or path/to/file.py:factory, optionally with "
        f"literal arguments as in 'xnorinfer.zoo:vgg_small(width=0.5)'; got {spec!r}"
    )
    if not sep or not where:
        raise CliError(usage, EXIT_USAGE)
    try:
        expr = ast.parse(call.strip(), mode="eval").body
        if isinstance(expr, ast.Name):
            return where, expr.id, [], {}
        if not isinstance(expr, ast.Call) or not isinstance(expr.func, ast.Name):
            raise ValueError("not a call of a name")
        args = [ast.literal_eval(a) for a in expr.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in expr.keywords if k.arg is not None}
        if len(kwargs) != len(expr.keywords):
            raise ValueError("** arguments")
    except (SyntaxError, ValueError) as err:
        raise CliError(f"{usage} ({err})", EXIT_USAGE) from None
    return where, expr.func.id, args, kwargs


def _import_where(where: str) -> Any:
    """A module by dotted name, or a Python file by path (no PYTHONPATH set-up needed)."""
    import importlib
    import importlib.util

    if where.endswith(".py") or "/" in where or "\\" in where:
        path = Path(where)
        if not path.is_file():
            raise CliError(f"--module: {where}: file not found", EXIT_USAGE)
        name = f"xnorinfer_user_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise CliError(f"--module: {where}: not a Python file", EXIT_USAGE)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses and pickling look the module up by name
        sys.path.insert(0, str(path.resolve().parent))  # its own sibling imports
        spec.loader.exec_module(module)
        return module
    return importlib.import_module(where)


def _live_module(spec: str, weights: str | None):
    """Build `--module`'s model and load a state_dict (with or without `module.` prefixes)."""
    import torch

    where, factory, args, kwargs = _parse_factory(spec)
    try:
        module = getattr(_import_where(where), factory)(*args, **kwargs)
    except (ImportError, AttributeError, TypeError) as err:
        raise CliError(f"--module {spec}: {err}", EXIT_USAGE) from err
    if not isinstance(module, torch.nn.Module):
        raise CliError(f"--module {spec}: returned a {type(module).__name__}, not a torch.nn.Module", EXIT_USAGE)
    if weights:
        if not Path(weights).is_file():
            raise CliError(f"{weights}: file not found", EXIT_MODEL)
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
            first = str(err).strip().splitlines()
            raise CliError(
                f"{weights}: does not fit {spec}: {' '.join(line.strip() for line in first[:3])}", EXIT_CONVERT
            ) from err
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
        elif not Path(args.model).exists():
            raise CliError(f"{args.model}: file not found", EXIT_MODEL)
        elif not Path(args.model).is_file():
            raise CliError(f"{args.model}: not a regular file", EXIT_MODEL)
        output = Path(args.output) if args.output else Path(args.model or "model").with_suffix(".xbin")
        if args.model is not None:
            from xnorinfer.convert import same_file

            if same_file(args.model, output):
                raise CliError(f"{output}: is the input model itself; give another output with -o", EXIT_USAGE)
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
            print(
                "xnorinfer: warning: --force: the file is written even if verification finds differences",
                file=sys.stderr,
            )
        try:
            graph = convert(
                source,
                example,
                binarize=args.binarize,
                calib=calib,
                force=args.force,
                verify=not args.no_verify,
                output=output,
                trust_pickle=args.trust_pickle,
                n_verify=args.samples,
                metadata=metadata,
                progress=True,
            )
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
    print(f"model: {model}")
    if info:
        print(
            f"       {info.get('arch')} trained on {info.get('dataset')} ({info.get('epochs')} epochs); "
            f"test accuracy {info.get('test_accuracy', float('nan')):.4f} in PyTorch, "
            f"{info.get('converted_accuracy', float('nan')):.4f} converted"
        )
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
        print(
            "to compare with the float PyTorch model, install the convert extra (the CPU build of torch): "
            "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu && "
            "pip install 'xnorinfer[convert]'"
        )
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


def _bgemm_engine_line() -> str:
    """Which binary GEMM engine runs (XNORINFER_BGEMM) and whether AMX could (docs/kernels.md)."""
    engine = os.environ.get("XNORINFER_BGEMM") or "popcount"
    available, reason = _core.amx_support()
    amx = "AMX-INT8 usable (XNORINFER_BGEMM=auto measures it per layer)" if available else f"AMX: {reason}"
    return f"binary GEMM engine: {engine}; {amx}"


def cmd_kernels(args: argparse.Namespace) -> int:
    from xnorinfer.kernel_check import BENCH_SHAPES, time_shape

    print(f"{_version_string()}, {args.threads} thread(s)")
    print(_bgemm_engine_line())
    print("binary 3x3 conv (XOR + popcount) vs float32 conv (im2col + SGEMM) on the same +/-1 data")
    print(f"{'shape C x H x W -> C_out':<26}{'binary ms':>10}{'float ms':>10}{'speedup':>9}{'binary MAC/s':>14}  exact")
    failed = False
    for shape in BENCH_SHAPES:
        t = time_shape(shape, threads=args.threads, isa=args.isa)
        c, h, w, o = shape
        failed |= not t.exact
        print(
            f"{f'{c} x {h} x {w} -> {o}':<26}{t.binary_ms:>10.3f}{t.float_ms:>10.3f}{t.speedup:>8.1f}x"
            f"{t.binary_macs_per_s:>14.3e}  {'yes' if t.exact else 'NO'}"
        )
    if failed:
        raise CliError("binary and float sums differ on some shape", EXIT_FAILED)
    return EXIT_OK


def _positive(value: str, upper: int = 2**31 - 1) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if n < 1 or n > upper:
        raise argparse.ArgumentTypeError(f"expected an integer from 1 to {upper}, got {n}")
    return n


def _threads(value: str) -> int:
    from xnorinfer.session import MAX_THREADS

    return _positive(value, MAX_THREADS)


MAX_BATCH = 65536  # images per engine call: far above any useful batch, far below an absurd allocation


def _batch(value: str) -> int:
    return _positive(value, MAX_BATCH)


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
        p = sub.add_parser(
            name,
            help=help_text,
            description=description,
            epilog=f"example:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        # also after the command; SUPPRESS keeps the top-level value when it is not given here
        p.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help="show the full traceback on errors"
        )
        return p

    conv = add(
        "convert",
        "convert a trained PyTorch BNN into a verified .xbin",
        "Capture the model (torch.export), recognise binary layers and signs, fold BatchNorm and scales "
        "into integer thresholds, pack the weights, verify the result against PyTorch and the canonical "
        "reference on random (or --calib) inputs, and write one .xbin. Nothing is written when "
        "verification fails (unless --force) or an op is unsupported.",
        "xnorinfer convert model.pt2 -o model.xbin --mean 0.5 --std 0.5 --labels labels.txt\n"
        "  xnorinfer convert --module 'xnorinfer.zoo:lfc' --weights models/lfc-mnist/state_dict.pth "
        "--input-shape 1,1,28,28 -o lfc.xbin",
    )
    conv.add_argument(
        "model",
        nargs="?",
        help="an ExportedProgram saved with torch.export.save (.pt2/.pt), or an ONNX / QONNX model (docs/onnx.md)",
    )
    conv.add_argument("-o", "--output", help="output .xbin (default: the model path with .xbin)")
    conv.add_argument(
        "--module",
        metavar="WHERE:FACTORY",
        help="build the model by calling FACTORY from a module (pkg.mod:build) or a file "
        "(path/to/model.py:build), with literal arguments if needed "
        "('xnorinfer.zoo:vgg_small(width=0.5)'), instead of reading a .pt2",
    )
    conv.add_argument("--weights", help="state_dict for --module (a `module.` prefix or a {'state_dict': ...} is fine)")
    conv.add_argument("--input-shape", type=_ints, help="N,C,H,W example input shape (needed with --module/--calib)")
    conv.add_argument(
        "--binarize",
        action="append",
        default=[],
        metavar="PATTERN",
        help="declare conv/linear layers whose module path matches PATTERN binary (repeatable)",
    )
    conv.add_argument("--calib", metavar="DIR", help="verify on these images instead of random inputs")
    conv.add_argument("--samples", type=_batch, default=64, help="random verification inputs (default 64)")
    conv.add_argument("--mean", type=_floats, help="per-channel mean recorded for preprocessing, e.g. 0.5,0.5,0.5")
    conv.add_argument("--std", type=_floats, help="per-channel std recorded for preprocessing")
    conv.add_argument("--resize", type=_positive, help="resize the shorter side to this, then centre-crop")
    conv.add_argument("--labels", type=_labels, help="class labels: a file with one per line, or a comma list")
    conv.add_argument(
        "--force",
        action="store_true",
        help="write even if verification finds differences; let --binarize replace ternary or multi-level weights",
    )
    conv.add_argument("--no-verify", action="store_true", help="skip verification")
    conv.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow loading a pickled whole module (runs arbitrary code from the file)",
    )
    conv.set_defaults(func=cmd_convert)

    run = add(
        "run",
        "classify images with a .xbin model",
        "Decode each image (PNG, JPEG, BMP, ...; folders are expanded), preprocess it as the model's "
        "metadata says, run the model in batches and print the top classes.",
        "xnorinfer run model.xbin cat.png more_images/ --top 3\n"
        "  xnorinfer run model.xbin 'photos/**/*.jpg' --list more.txt --output results.parquet --resume",
    )
    run.add_argument("model", help="a .xbin file")
    run.add_argument(
        "images",
        nargs="*",
        help="image files or folders of images (with --output also recursive folders and glob patterns)",
    )
    run.add_argument(
        "--input",
        dest="inputs",
        action="append",
        default=[],
        metavar="NAME=FILE.npy",
        help="a model input as a .npy array (repeat for a model with several inputs; NAME as `inspect` lists "
        "them, NCHW for 4-D inputs, all with the same batch); prints the top classes per row of the first output",
    )
    run.add_argument("--top", type=_positive, default=5, help="classes to print per image (default 5)")
    run.add_argument("--json", action="store_true", help="one JSON object per image")
    run.add_argument("--threads", type=_threads, default=None, help="worker threads (default: all CPUs)")
    run.add_argument("--batch", type=_batch, default=32, help="images per engine call (default 32)")
    run.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no warnings about images converted to fit the model (colour, aspect ratio)",
    )
    run.add_argument(
        "--max-memory",
        type=_positive,
        default=None,
        metavar="BYTES",
        help="refuse a memory plan above BYTES (default: half of the memory, physical or cgroup limit)",
    )
    stream = run.add_argument_group(
        "many images (--output)",
        "With --output, inputs are streamed in batches with bounded memory into one row per input\n"
        "(path, error, class_k/label_k/score_k for k = 1..--top), in input order; an image that\n"
        "cannot be read becomes a row with an error message instead of stopping the run.",
    )
    stream.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write results to FILE: .parquet (needs pyarrow), .csv or .jsonl",
    )
    stream.add_argument("--list", metavar="FILE", help="also read image paths from FILE, one per line")
    stream.add_argument(
        "--resume",
        action="store_true",
        help="skip inputs already in --output and append the others (after an interrupted run)",
    )
    stream.add_argument(
        "--decode-threads", type=_threads, default=None, help="image decoding threads (default: min(4, CPUs))"
    )
    stream.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    run.set_defaults(func=cmd_run)

    rayrun = add(
        "ray-run",
        "classify a large image set on a Ray cluster (pip install 'xnorinfer[ray]')",
        "Read every image under INPUT_URI with ray.data.read_binary_files, classify them in a pool of "
        "--actors actors (each loads the model once and runs one engine Session with --threads-per-actor "
        "threads; images are decoded in the actors as `xnorinfer run` does) and write Parquet files under "
        "--output, one row per image (path, error, class_k/label_k/score_k). Uses the running cluster "
        "(`ray start`, RAY_ADDRESS) if there is one, else starts a local one. See docs/scale-out.md.",
        "xnorinfer ray-run model.xbin s3://bucket/images/ --output s3://bucket/predictions/ --actors 16 "
        "--threads-per-actor 2",
    )
    rayrun.add_argument("model", help="a .xbin file (read here, shipped to the actors through the object store)")
    rayrun.add_argument("input_uri", help="a folder, file or URI of images (local path, s3://, gs://, ...)")
    rayrun.add_argument("-o", "--output", required=True, metavar="URI", help="folder or URI for the Parquet files")
    rayrun.add_argument("--actors", type=_positive, default=1, help="actors in the pool (default 1)")
    rayrun.add_argument(
        "--threads-per-actor", type=_threads, default=1, help="engine threads (and CPUs reserved) per actor (default 1)"
    )
    rayrun.add_argument("--batch", type=_batch, default=256, help="images per actor call (default 256)")
    rayrun.add_argument("--top", type=_positive, default=5, help="classes per row (default 5)")
    rayrun.add_argument("--logits", action="store_true", help="also write the raw model outputs (a list column)")
    rayrun.add_argument("--address", default=None, help="Ray cluster address (default: auto-detect, else local)")
    rayrun.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    rayrun.set_defaults(func=cmd_ray_run)

    inspect = add(
        "inspect",
        "print a .xbin model's ops, sizes and metadata",
        "Print the per-op summary (module path, kind, output shape, weight bits, binary MACs or FLOPs), "
        "totals, the size against float32 weights, and the metadata.",
        "xnorinfer inspect model.xbin",
    )
    inspect.add_argument("model", help="a .xbin file")
    inspect.set_defaults(func=cmd_inspect)

    bench = add(
        "bench",
        "measure a .xbin model's latency and throughput",
        "Run the model on random input and report latency (median, p90, p99) and throughput.",
        "xnorinfer bench model.xbin --batch 8 --threads 2 --compare model.pt2",
    )
    bench.add_argument("model", help="a .xbin file")
    bench.add_argument("--batch", type=_batch, default=1, help="batch size (default 1)")
    bench.add_argument("--threads", type=_threads, default=None, help="worker threads (default: all CPUs)")
    bench.add_argument("--runs", type=_positive, default=100, help="timed runs (default 100)")
    bench.add_argument(
        "--max-memory",
        type=_positive,
        default=None,
        metavar="BYTES",
        help="refuse a memory plan above BYTES (default: half of the memory, physical or cgroup limit)",
    )
    bench.add_argument(
        "--compare",
        metavar="MODEL_PT2",
        default=None,
        help="also time the float PyTorch model (torch.export .pt2) on the same input and threads",
    )
    bench.add_argument(
        "--profile",
        action="store_true",
        help="also time every op (over --runs runs) and print its ms per run and share of the total",
    )
    bench.set_defaults(func=cmd_bench)

    demo = add(
        "demo",
        "run the shipped default model on the shipped sample images",
        "Classify the sample images shipped with xnorinfer using the default model, print the "
        "predictions next to the true labels and, when torch is installed, the speedup over the "
        "float PyTorch model.",
        "xnorinfer demo",
    )
    demo.add_argument("--threads", type=_threads, default=None, help="worker threads (default: all CPUs)")
    demo.set_defaults(func=cmd_demo)

    kernels = add(
        "kernels",
        "check and time the binary conv kernels against float conv on this machine",
        "Runs the binary 3x3 convolution on the benchmark shapes, checks its integer sums against "
        "xnorinfer's float32 convolution of the same +/-1 data, and prints both times.",
        "xnorinfer kernels --threads 2",
    )
    kernels.add_argument("--threads", type=_threads, default=1, help="worker threads (default 1)")
    kernels.add_argument(
        "--isa",
        choices=["scalar", "avx2", "avx512"],
        default=None,
        help="force an ISA path (default: XNORINFER_ISA or the best available)",
    )
    kernels.set_defaults(func=cmd_kernels)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # `run`'s images are nargs="*" (--list may give them all); argparse then leaves images after an
    # option (`run m.xbin --top 3 a.png`) unparsed: they are images too, as with nargs="+" before.
    args, extra = parser.parse_known_args(argv)
    if extra and getattr(args, "command", None) == "run" and not any(e.startswith("-") for e in extra):
        args.images = [*args.images, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if getattr(args, "command", None) == "run" and not args.images and args.list is None and not args.inputs:
        parser.error("the following arguments are required: images (or --list FILE with --output)")
    if args.command is None:
        parser.print_help()
        return EXIT_OK
    try:
        try:
            _core.default_isa()
        except (ValueError, RuntimeError) as err:  # a bad XNORINFER_ISA: say so before any other work
            raise CliError(str(err), EXIT_USAGE) from err
        return int(args.func(args))
    except BrokenPipeError:  # `xnorinfer ... | head`: the reader is gone, nothing more to say
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps Python's exit flush from failing again
        return EXIT_OK
    except CliError as err:
        if args.debug:
            raise
        print(f"xnorinfer: error: {printable(err)}", file=sys.stderr)
        return err.code
    except (ValueError, RuntimeError, OSError) as err:
        if args.debug:
            raise
        print(f"xnorinfer: error: {printable(err)}", file=sys.stderr)
        return EXIT_FAILED
    except MemoryError:
        if args.debug:
            raise
        print("xnorinfer: error: out of memory (a smaller --batch or model input needs less)", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
