#!/usr/bin/env bash
# Build the extension with AddressSanitizer + UndefinedBehaviorSanitizer (Debug) into its own
# virtual environment and run the kernel test suite under it.
#   usage: tools/sanitize.sh [pytest args...]     (default: the kernel tests)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${SANITIZE_VENV:-/tmp/xnorinfer-sanitize-venv}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

python3 -m venv "$VENV"
# shellcheck disable=SC1091
. "$VENV/bin/activate"
pip install -q torch==2.13.0 numpy pytest hypothesis pillow scikit-build-core pybind11 ninja
pip install -q --no-build-isolation "$ROOT" -Ccmake.define.XNORINFER_SANITIZE=ON -Ccmake.build-type=Debug

# The sanitizer runtimes must be loaded before Python itself; tests run from outside the
# source tree so that the instrumented installed package is imported.
cp -r "$ROOT/tests" "$WORK/tests"
cd "$WORK"
export LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
if [ $# -eq 0 ]; then
  set -- tests/test_bitpack.py tests/test_binary_conv.py tests/test_binary_maxpool.py \
         tests/test_binary_linear.py tests/test_float_kernels.py
fi
python -m pytest -q -p no:cacheprovider "$@"
