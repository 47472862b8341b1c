#!/usr/bin/env bash
# The AVX2 binary GEMM tile of this checkout against the same file at a git revision
# (default: HEAD), interleaved in one process, on Bi-Real-18's binary layer shapes.
#   bench/bgemm_tile_avx2.sh [REV] [ROUNDS]
# Builds into a temporary folder with the CMake flags of the avx2 path (-O3).
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:-HEAD}
rounds=${2:-7}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git show "$rev:csrc/microkernels/bconv2d_avx2.cc" | sed 's/\bbgemm_tile_avx2\b/bgemm_tile_avx2_old/' >"$tmp/old.cc"
cxx=${CXX:-g++}
common=(${EXTRA:-} -std=c++17 -O3 -Icsrc -ffp-contract=off -fno-strict-aliasing)
avx2=(-mavx2 -mfma -mpopcnt -mbmi -mbmi2 -mf16c)
"$cxx" "${common[@]}" "${avx2[@]}" -DXNOR_ISA_NAMESPACE=avx2 -c csrc/microkernels/bconv2d_avx2.cc -o "$tmp/new.o"
"$cxx" "${common[@]}" "${avx2[@]}" -DXNOR_ISA_NAMESPACE=avx2 -Icsrc/microkernels -c "$tmp/old.cc" -o "$tmp/old.o"
"$cxx" "${common[@]}" -DXNOR_ISA_NAMESPACE=scalar -c csrc/microkernels/bconv2d_scalar.cc -o "$tmp/scalar.o"
"$cxx" "${common[@]}" -c bench/bgemm_tile_avx2.cc -o "$tmp/main.o"
"$cxx" "$tmp/main.o" "$tmp/new.o" "$tmp/old.o" "$tmp/scalar.o" -o "$tmp/bench"
echo "old: $rev:csrc/microkernels/bconv2d_avx2.cc ($(git rev-parse --short "$rev")), new: working tree"
"$tmp/bench" "$rounds"
