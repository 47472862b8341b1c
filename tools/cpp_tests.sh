#!/usr/bin/env bash
# The C++ side of the test suite: configures a Release build of the C++ library with the C++
# unit tests (GoogleTest, tests/cpp/), installs it to a temporary prefix, builds the example
# application (examples/classify) against that install with find_package, and runs ctest.
# No Python is needed (the build is configured with XNORINFER_BUILD_PYTHON=OFF).
#
# Environment: CPP_BUILD_DIR keeps the build between runs (default: build/cpp in the checkout);
# CMAKE / CTEST pick the tools (default: cmake / ctest on PATH).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CMAKE=${CMAKE:-cmake}
CTEST=${CTEST:-ctest}
BUILD=${CPP_BUILD_DIR:-$ROOT/build/cpp}
for tool in "$CMAKE" "$CTEST"; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "cpp_tests: $tool not found (pip install cmake, or apt-get install cmake)" >&2
    exit 1
  fi
done
WORK=$(mktemp -d "${TMPDIR:-/tmp}/xnorinfer-cpp.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
if [ -e "$BUILD/CMakeCache.txt" ]; then generator=(); fi  # keep the generator the build was made with

echo "cpp_tests: building the C++ library and tests in $BUILD"
if ! "$CMAKE" -S "$ROOT" -B "$BUILD" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DXNORINFER_BUILD_PYTHON=OFF \
    -DXNORINFER_BUILD_TESTS=ON >"$WORK/configure.log" 2>&1; then
  if grep -q "GTest" "$WORK/configure.log"; then
    echo "cpp_tests: GoogleTest not found: apt-get install libgtest-dev" >&2
  else
    cat "$WORK/configure.log" >&2
  fi
  exit 1
fi
"$CMAKE" --build "$BUILD" -j "$(nproc)"

echo "cpp_tests: installing to $WORK/prefix and building examples/classify against it"
"$CMAKE" --install "$BUILD" --prefix "$WORK/prefix" --component cpp >/dev/null
"$CMAKE" -S "$ROOT/examples/classify" -B "$WORK/classify" "${generator[@]}" -DCMAKE_PREFIX_PATH="$WORK/prefix" \
  >/dev/null
"$CMAKE" --build "$WORK/classify" -j "$(nproc)"
"$WORK/classify/classify" 2>/dev/null && { echo "cpp_tests: classify without arguments did not fail" >&2; exit 1; }

cd "$BUILD"
"$CTEST" --output-on-failure
