#!/usr/bin/env bash
# Build the C++ extension with AddressSanitizer + UndefinedBehaviorSanitizer and run tests and a
# LeakSanitizer check under it, in the current Python environment (which needs the project's
# test extra: torch, pytest, cmake, ninja, pybind11). Nothing is installed: the instrumented
# _core is staged with a copy of the Python package in a temporary folder put first on PYTHONPATH.
#
#   tools/sanitize.sh            CI subset: kernels, loader, runtime, fuzzing, damage, concurrency,
#                                hostile runtime inputs, then the LeakSanitizer check (docs/reliability.md)
#   tools/sanitize.sh --all      the whole test suite, then the LeakSanitizer check
#   tools/sanitize.sh PYTEST...  the given pytest arguments only
#
# Environment: SANITIZE_BUILD_DIR keeps the instrumented build between runs (default: a
# temporary folder); XNORINFER_LEAK_ROUNDS sets the leak check's load+run rounds (default 1000).
# The libFuzzer run needs clang++; without it the run is reported as not done and the script
# still passes, unless XNORINFER_REQUIRE_FUZZ=1 (CI sets it and installs clang).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
if ! command -v "$PYTHON" >/dev/null; then
  echo "sanitize: no $PYTHON on PATH (set PYTHON=...)" >&2
  exit 1
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
BUILD=${SANITIZE_BUILD_DIR:-$WORK/build}

CI_SUBSET=(tests/test_bitpack.py tests/test_binary_conv.py tests/test_binary_maxpool.py
           tests/test_binary_linear.py tests/test_float_kernels.py tests/test_isa_dispatch.py
           tests/test_xbin.py tests/test_runtime.py tests/test_api.py tests/test_profile.py
           tests/test_fuzz_loader.py tests/test_xbin_damage.py
           tests/test_preprocess.py tests/test_cli_errors.py tests/test_xbin_reader_bytes.py
           tests/test_hostile_runtime.py tests/test_op_schema_cpp.py tests/test_layout_ops.py
           tests/test_elementwise_ops.py tests/test_op_tanh.py tests/test_shape_ops.py
           tests/test_image_ops.py tests/test_general_elementwise.py
           tests/test_index_ops.py)
CI_SUBSET+=(tests/test_multi_input_runtime.py)  # several inputs of every rank (hand-made graphs, no torch)
CI_SUBSET+=(tests/test_bwn.py tests/test_ternary.py)  # binary-weight / ternary kernels (bwconv2d, tbconv2d)
CI_SUBSET+=(tests/test_fused_sign.py)  # signs packed by their producer (plan-time fusion)
CI_SUBSET+=(tests/test_bmaxpool_minmax.py)  # bit pools with min channels (gamma < 0)
CI_SUBSET+=(tests/test_scan_cast_ops.py)  # cast_float, cumsum scans, scatter reductions (mean workspace), reduce prod
CI_SUBSET+=(tests/test_xnornet_beta.py)  # XNOR-Net beta map: bconv2d with a pixel scale input
CI_SUBSET+=(tests/test_ternary_sign.py)  # tbconv2d / tblinear with a fused sign (output bits)
CI_SUBSET+=(tests/test_bitplane.py)  # bit-planes of k-bit activations (bitplane kernel)
CI_SUBSET+=(tests/test_thread_threshold.py)  # per-op thread threshold, affine fused into float conv/linear
CI_SUBSET+=(tests/test_amx.py)  # AMX binary GEMM on the emulated tile unit vs the popcount kernels
CI_SUBSET+=(tests/test_thread_splits.py)  # equal shares of the thread pool on 1/2/3/5 threads, 1x1 convs split by pixels
CI_SUBSET+=(tests/test_bgemm_byte_counts.py)  # AVX2 bgemm tile: byte counts across its 31-word chunks, widths, rows
CI_SUBSET+=(tests/test_fused_chain.py)  # add / prelu / affine chained onto a binary conv: reference, unchained bytes
CI_SUBSET+=(tests/test_bconv_tap_grouping.py)  # taps grouped per word (<= 32 input channels): per-run frames, repacked weights
# test_fuzz_atheris.py is not in the subset: under a preloaded ASan runtime atheris gets no
# coverage feedback (it keeps a 1-byte corpus), and the C++ loader is fuzzed with coverage under
# ASan/UBSan by tools/fuzz_loader.sh below.
run_leak_check=1
if [ $# -eq 0 ]; then
  set -- "${CI_SUBSET[@]}"
elif [ "$1" = "--all" ]; then
  shift
  # Under ASan freed memory waits in a quarantine (256 MB by default), so resident memory is no
  # leak signal there: the RSS test runs in the normal build, leak_check.py covers this one.
  set -- tests --deselect=tests/test_leaks.py::test_load_and_run_repeatedly_keeps_memory_flat "$@"
else
  run_leak_check=0
fi

echo "sanitize: building the extension with -fsanitize=address,undefined in $BUILD"
# RelWithDebInfo (-O2 -g): the kernels' intrinsics code paths as shipped, with line numbers in reports.
cmake -S "$ROOT" -B "$BUILD" -G Ninja -DXNORINFER_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DPython_EXECUTABLE="$(command -v "$PYTHON")" -Dpybind11_DIR="$("$PYTHON" -m pybind11 --cmakedir)" >/dev/null
cmake --build "$BUILD" -j "$(nproc)"

mkdir -p "$WORK/stage"
cp -r "$ROOT/xnorinfer" "$WORK/stage/xnorinfer"
rm -f "$WORK"/stage/xnorinfer/_core*.so
cp "$BUILD"/_core*.so "$WORK/stage/xnorinfer/"
# Test paths (and test ids path::name) are taken relative to the checkout, where the tests find
# their data (tests/data); options pass through unchanged.
args=()
for arg in "$@"; do
  if [ -e "$ROOT/${arg%%::*}" ]; then args+=("$ROOT/$arg"); else args+=("$arg"); fi
done

# The sanitizer runtimes must be loaded before Python itself. pytest runs from outside the source
# tree so that the staged, instrumented package is the one imported (also by CLI subprocesses).
cd "$WORK"
export PYTHONPATH="$WORK/stage${PYTHONPATH:+:$PYTHONPATH}"
# The runtimes the instrumented module was linked against (the compiler CMake chose).
runtimes=$(ldd "$BUILD"/_core*.so | awk '/lib(asan|ubsan)\.so/ {print $3}' | paste -sd: -)
if [ -z "$runtimes" ]; then
  echo "sanitize: $BUILD/_core*.so is not linked against libasan/libubsan" >&2
  exit 1
fi
export LD_PRELOAD="$runtimes"
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# Leaks are checked by leak_check.py while the interpreter is alive; at exit CPython and torch
# keep memory on purpose, which LeakSanitizer would report.
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:alloc_dealloc_mismatch=0
if ! core=$("$PYTHON" -c "import xnorinfer._core as c; print(c.__file__)"); then
  echo "sanitize: the instrumented extension does not import (see above)" >&2
  exit 1
fi
if [ "${core#"$WORK/stage/"}" = "$core" ]; then
  echo "sanitize: $core shadows the instrumented build (an editable install?); use an environment" \
       "with a regular install (pip install '.[test]') or none" >&2
  exit 1
fi
echo "sanitize: testing $core"
"$PYTHON" -m pytest -q -p no:cacheprovider --rootdir "$ROOT" -c "$ROOT/pyproject.toml" "${args[@]}"

if [ "$run_leak_check" = 1 ]; then
  # A small conv graph (binary conv, bits and float epilogues, dense) beside the shipped dense model.
  "$PYTHON" -c "import sys; from pathlib import Path; import numpy as np; sys.path.insert(0, '$ROOT/tests'); \
from test_api import small_model; small_model(Path('$WORK'), np.random.default_rng(0))"
  export ASAN_OPTIONS=detect_leaks=1:leak_check_at_exit=0:abort_on_error=1:alloc_dealloc_mismatch=0
  # The set-up must see a leak at all: a block dropped on purpose has to be reported.
  if ! PYTHONMALLOC=malloc "$PYTHON" "$ROOT/tools/leak_check.py" --self-test 2>"$WORK/self-test.err"; then
    cat "$WORK/self-test.err" >&2
    exit 1
  fi
  PYTHONMALLOC=malloc "$PYTHON" "$ROOT/tools/leak_check.py" --rounds "${XNORINFER_LEAK_ROUNDS:-1000}" \
    "$ROOT/xnorinfer/assets/default.xbin" "$WORK/m.xbin"

  # The C++ loader itself under a coverage-guided fuzzer (the pytest fuzzers above see Python's
  # coverage only). Its own ASan/UBSan build; the preloads above are not for it.
  set +e
  env -u LD_PRELOAD -u ASAN_OPTIONS -u UBSAN_OPTIONS -u PYTHONPATH bash "$ROOT/tools/fuzz_loader.sh"
  fuzz_status=$?
  set -e
  if [ "$fuzz_status" = 77 ] && [ "${XNORINFER_REQUIRE_FUZZ:-0}" != 1 ]; then
    echo "sanitize: the libFuzzer run over the C++ loader was NOT done: it needs clang (apt-get install clang)" >&2
  elif [ "$fuzz_status" != 0 ]; then
    exit "$fuzz_status"
  fi
fi
