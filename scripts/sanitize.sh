#!/usr/bin/env bash
# Sanitizer builds of the library, the CLI and the tests (g++; CUDA, Python and benchmarks off),
# each running ctest:
#   bash scripts/sanitize.sh asan [ctest args...]  AddressSanitizer + UndefinedBehaviorSanitizer in
#                                                  build-asan, any finding fatal; the whole suite by
#                                                  default (package_consumer excluded: it builds a
#                                                  separate, uninstrumented project)
#   bash scripts/sanitize.sh tsan [ctest args...]  ThreadSanitizer in build-tsan over the
#                                                  multithreaded tests (thread pool, engine: exact and
#                                                  HyperAttention at several thread counts, the model
#                                                  runner, the progress bar, the CLI's thread-count test)
#   bash scripts/sanitize.sh all                   both
# Extra arguments replace the default ctest selection (e.g. -R Npy). HYPERATTN_SANITIZE_JOBS sets
# the build and ctest parallelism (default: nproc). docs/reliability.md says what this covers.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-all}"
shift || true
jobs="${HYPERATTN_SANITIZE_JOBS:-$(nproc)}"
# g++: the per-ISA kernels use #pragma GCC target, which clang ignores (scripts/fuzz.sh uses clang for
# libFuzzer, on the parsers only).
cxx="${CXX_SANITIZE:-g++}"
command -v "$cxx" >/dev/null || { echo "sanitize.sh: $cxx not found" >&2; exit 1; }

# The multithreaded tests TSan runs (ctest -R); each name is a test or a suite of the default kernels.
tsan_tests='^(ThreadPool\.|ExactAttention\.ThreadCountDoesNotChangeABit|HyperAttention\.SameSeedSameBytesForAnyThreadCount|HyperAttention\.(Non)?CausalMatchesReference|HyperVariants\.(PositionStratified|LocalWindow)IsDeterministicAcrossThreads|ProgressTest\.CallbackFromManyThreadsIsSafe|TinyLlamaRope\.|TinyLlamaPrefill\.|Checkpoints/TinyLlama|NextTokenScores\.|Bf16Gemm\.|AttentionDiagnostics\.|Cli\.ThreadCountGivesIdenticalBytes)'

configure_build() {  # dir, sanitizer flags, [targets...] (default: all)
  local dir="$1" flags="$2"
  shift 2
  # A cache made with other flags or another compiler would be half-reused by CMake: start afresh.
  local stamp="$cxx $flags"
  if [ -f "$dir/CMakeCache.txt" ] && [ "$(cat "$dir/.sanitize-stamp" 2>/dev/null)" != "$stamp" ]; then rm -rf "$dir"; fi
  mkdir -p "$dir"
  echo "$stamp" >"$dir/.sanitize-stamp"
  # -g1: line tables only, all a sanitizer report needs for its stack traces (file:line); full -g
  # made the builds 25-40% slower (cmd_eval.cpp: 63 s against 38 s under ASan on a Zen 4).
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_COMPILER="$cxx" \
    -DCMAKE_CXX_FLAGS="$flags -fno-omit-frame-pointer" \
    -DCMAKE_EXE_LINKER_FLAGS="$flags" -DCMAKE_SHARED_LINKER_FLAGS="$flags" \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" \
    -DHYPERATTN_CUDA=OFF -DHYPERATTN_BUILD_PYTHON=OFF -DHYPERATTN_BUILD_BENCH=OFF >/dev/null
  if (($#)); then
    cmake --build "$dir" -j "$jobs" --target "$@"
  else
    cmake --build "$dir" -j "$jobs"
  fi
}

run_asan() {
  echo "== sanitizer: ASan + UBSan (build-asan, $cxx, -fsanitize=address,undefined -fno-sanitize-recover=all)"
  local t0=$SECONDS
  configure_build build-asan "-fsanitize=address,undefined -fno-sanitize-recover=all"
  echo "== sanitizer: ASan + UBSan build took $((SECONDS - t0)) s"
  t0=$SECONDS
  local args=("$@")
  ((${#args[@]})) || args=(-E '^package_consumer$')
  ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    ctest --test-dir build-asan --output-on-failure -j "$jobs" --timeout 900 "${args[@]}"
  echo "== sanitizer: ASan + UBSan ctest passed in $((SECONDS - t0)) s"
}

run_tsan() {
  echo "== sanitizer: TSan (build-tsan, $cxx, -fsanitize=thread) over the multithreaded tests"
  local t0=$SECONDS
  # Only what the selected tests need (the other test binaries are not built, so not listed).
  configure_build build-tsan "-fsanitize=thread" test_cpu_kernels test_api test_core test_model test_tool_support test_cli hyperattn_cli
  echo "== sanitizer: TSan build took $((SECONDS - t0)) s"
  t0=$SECONDS
  local args=("$@")
  ((${#args[@]})) || args=(-R "$tsan_tests")
  # OpenBLAS (the model runner's GEMM) runs its own uninstrumented threads: one thread there.
  TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1" OPENBLAS_NUM_THREADS=1 \
    ctest --test-dir build-tsan --output-on-failure -j "$jobs" --timeout 900 "${args[@]}"
  echo "== sanitizer: TSan ctest passed in $((SECONDS - t0)) s"
}

case "$mode" in
  asan) run_asan "$@" ;;
  tsan) run_tsan "$@" ;;
  all) run_asan; run_tsan ;;
  *) echo "usage: scripts/sanitize.sh asan|tsan|all [ctest args...]" >&2; exit 2 ;;
esac
