"""The `xnorinfer` command line."""

from __future__ import annotations

import argparse
import sys

from xnorinfer import __version__, _core

EPILOG_KERNELS = """example:
  xnorinfer kernels --threads 2
"""


def _version_string() -> str:
    try:
        isa = _core.default_isa()
    except (ValueError, RuntimeError) as err:  # a bad XNORINFER_ISA
        isa = f"unavailable ({err})"
    return f"xnorinfer {__version__} (ISA path: {isa}; available: {', '.join(_core.available_isas())})"


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
        print("error: binary and float sums differ on some shape", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xnorinfer",
        description="CPU inference engine for binarized neural networks (XOR + popcount kernels).",
    )
    parser.add_argument("--version", action="version", version=_version_string())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    kernels = sub.add_parser(
        "kernels",
        help="check and time the binary conv kernels against float conv on this machine",
        description="Runs the binary 3x3 convolution on the benchmark shapes, checks its integer sums "
        "against xnorinfer's float32 convolution of the same +/-1 data, and prints both times.",
        epilog=EPILOG_KERNELS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    kernels.add_argument("--threads", type=int, default=1, help="worker threads (default 1)")
    kernels.add_argument("--isa", choices=["scalar", "avx2", "avx512"], default=None,
                         help="force an ISA path (default: XNORINFER_ISA or the best available)")
    kernels.set_defaults(func=cmd_kernels)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if getattr(args, "threads", 1) < 1:
        parser.error("--threads must be at least 1")
    try:
        return int(args.func(args))
    except (ValueError, RuntimeError) as err:
        print(f"xnorinfer: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
