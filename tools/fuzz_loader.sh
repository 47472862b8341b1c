#!/usr/bin/env bash
# Coverage-guided fuzzing of the C++ .xbin container reader (fuzz/xbin_reader_fuzzer.cc) with
# libFuzzer + AddressSanitizer + UBSan (docs/reliability.md, "The C++ loader under libFuzzer").
#
#   tools/fuzz_loader.sh                 CI run: 60 s on one core, seeded from fuzz/corpus/xbin
#   tools/fuzz_loader.sh --long          10 minutes (FUZZ_SECONDS=N for another length)
#   tools/fuzz_loader.sh --repro FILE..  run the target once on each FILE (a saved crash)
#   extra arguments after these go to libFuzzer (e.g. -seed=1 -runs=100000)
#
# The repo corpus is only read: new inputs go to a temporary corpus. Exit 0: no finding;
# 1: a crash, leak, UB or timeout report (the input is saved and its path printed; the work
# folder is kept); 2: the build failed; 77: clang++ is not installed. FUZZ_WORK_DIR picks
# the work folder (default: a new one under $TMPDIR, removed after a clean run).
set -uo pipefail

# All in one function, so that bash has parsed the whole script before it runs (editing
# the file during a run cannot change what the run does).
main() {
  ROOT=$(cd "$(dirname "$0")/.." && pwd)  # no cd: --repro paths stay relative to the caller

  CXX=${CXX:-clang++}
  if ! command -v "$CXX" >/dev/null 2>&1 || ! "$CXX" --version 2>/dev/null | grep -q clang; then
    echo "fuzz_loader.sh: clang++ (with libFuzzer) is required: apt-get install clang (Debian/Ubuntu)" >&2
    exit 77
  fi

  seconds=${FUZZ_SECONDS:-60}
  repro=0
  case "${1:-}" in
    --long) seconds=${FUZZ_SECONDS:-600}; shift ;;
    --repro) repro=1; shift ;;
  esac

  keep=0
  if [[ -n "${FUZZ_WORK_DIR:-}" ]]; then
    work=$FUZZ_WORK_DIR; keep=1; mkdir -p "$work"
  else
    work=$(mktemp -d "${TMPDIR:-/tmp}/xnorinfer-fuzz.XXXXXX")
  fi
  mkdir -p "$work/corpus" "$work/artifacts"

  bin=$work/xbin_reader_fuzzer
  echo "fuzz_loader.sh: building $bin with $("$CXX" --version | head -1)"
  # The whole engine (loader, graph, node factory, kernels), built by CMake exactly as for the
  # module (per-ISA kernel flags and namespaces), all instrumented for coverage and the sanitizers;
  # then the fuzz target linked against it.
  CMAKE=${CMAKE:-cmake}
  generator=()
  if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
  flags="-g -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined"
  if ! "$CMAKE" -S "$ROOT" -B "$work/build" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DCMAKE_CXX_COMPILER="$CXX" -DCMAKE_CXX_FLAGS="$flags" -DXNORINFER_BUILD_PYTHON=OFF \
        >"$work/build.log" 2>&1 ||
     ! "$CMAKE" --build "$work/build" --target xnorinfer_runtime -j "$(nproc)" >>"$work/build.log" 2>&1 ||
     ! "$CXX" -std=c++17 $flags -Wall -Wextra -I"$ROOT/csrc" "$ROOT/fuzz/xbin_reader_fuzzer.cc" \
        "$work/build/libxnorinfer_runtime.a" -fsanitize=fuzzer,address,undefined -lpthread -o "$bin" \
        >>"$work/build.log" 2>&1; then
    tail -30 "$work/build.log" >&2
    echo "fuzz_loader.sh: build failed (log: $work/build.log)" >&2
    exit 2
  fi

  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

  if [[ $repro == 1 ]]; then
    "$bin" "$@"
    rc=$?
    [[ $keep == 1 ]] || rm -rf "$work"
    exit $rc
  fi

  log=$work/fuzz.log
  echo "fuzz_loader.sh: fuzzing for ${seconds} s (seeds: fuzz/corpus/xbin, read-only; new inputs: $work/corpus)"
  start=$SECONDS
  "$bin" -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/" "$@" "$work/corpus" "$ROOT/fuzz/corpus/xbin" 2>&1 | tee "$log" |
    grep -E '^#[0-9]+\s+(INITED|DONE)|^Done|^stat::|ERROR|SUMMARY|Test unit written'
  rc=${PIPESTATUS[0]}

  last=$(grep -E '^#[0-9]+\s' "$log" | tail -1 | tr '\t' ' ')
  echo "fuzz_loader.sh: $((SECONDS - start)) s; last status: ${last:-none};" \
    "corpus: $(ls "$work/corpus" | wc -l) new inputs"
  found=$(ls "$work/artifacts" 2>/dev/null)
  if [[ $rc != 0 || -n $found ]]; then
    echo "fuzz_loader.sh: FAILED (libFuzzer exit $rc); log: $log" >&2
    for f in $found; do
      echo "fuzz_loader.sh: crashing input saved at $work/artifacts/$f;" \
        "reproduce: tools/fuzz_loader.sh --repro $work/artifacts/$f" >&2
    done
    exit 1
  fi
  [[ $keep == 1 ]] || rm -rf "$work"
  exit 0
}

main "$@"
exit $?
