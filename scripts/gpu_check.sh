#!/usr/bin/env bash
# scripts/gpu_check.sh: the one script for a lent GPU machine (H100/H200; Ubuntu 24.04, g++ 13,
# nvcc 13 at /usr/local/cuda/bin, CMake + ninja on the PATH). It configures the CUDA backend
# (sm_90), builds it, runs the CUDA tests, times the issue's benchmark table, then runs
# compute-sanitizer on a few tests if time is left, writing everything under $OUT and printing a short table last.
# Budget: under 8 minutes (each step has its own timeout).
#
# The GPU image has neither fmt nor GoogleTest. Pack them here first, on a CPU machine (Debian 12
# packages libfmt-dev, libgtest-dev), into an ignored folder, and carry it with the call:
#   echo /.gpu-deps/ >> .git/info/exclude
#   scripts/gpu_check.sh --pack-deps .gpu-deps
#   device run: command "scripts/gpu_check.sh", carry [".gpu-deps"]
# Without .gpu-deps the script still builds and times the backend if the image has fmt, and
# skips the tests if it lacks GoogleTest.
set -u -o pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)

if [[ "${1:-}" == "--pack-deps" ]]; then
  DIR=${2:?usage: gpu_check.sh --pack-deps DIR}
  LIB=/usr/lib/x86_64-linux-gnu
  mkdir -p "$DIR/include" "$DIR/lib/x86_64-linux-gnu/cmake"
  cp -r /usr/include/fmt /usr/include/gtest /usr/include/gmock "$DIR/include/"
  cp -a "$LIB"/libfmt.so* "$LIB"/libgtest*.a "$LIB"/libgmock*.a "$DIR/lib/x86_64-linux-gnu/"
  cp -r "$LIB/cmake/fmt" "$LIB/cmake/GTest" "$DIR/lib/x86_64-linux-gnu/cmake/"
  du -sh "$DIR"
  exit 0
fi

OUT=${OUT:-$ROOT/gpu-check-out}
BUILD=${BUILD:-/tmp/hyperattn-gpu-build}
DEPS=${HYPERATTN_GPU_DEPS:-$ROOT/.gpu-deps}
mkdir -p "$OUT"
export PATH=/usr/local/cuda/bin:$PATH
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
note() { echo "$*" | tee -a "$SUMMARY"; }
START=$(date +%s)
elapsed() { echo $(( $(date +%s) - START ))s; }

# 0. The machine.
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
  nvcc --version | tail -2
  cmake --version | head -1
  g++ --version | head -1
} > "$OUT/env.txt" 2>&1
note "device: $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"

# 1. Configure (tests on when GoogleTest is found).
CMAKE_ARGS=(-S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DHYPERATTN_CUDA=ON
  -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc
  -DHYPERATTN_BUILD_TOOLS=OFF -DHYPERATTN_BUILD_BENCH=OFF "-DCMAKE_CUDA_FLAGS=-Xptxas=-v")
if [[ -d "$DEPS" ]]; then
  CMAKE_ARGS+=("-DCMAKE_PREFIX_PATH=$DEPS")
  export LD_LIBRARY_PATH="$DEPS/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
fi
TESTS=1
if ! timeout 120 cmake "${CMAKE_ARGS[@]}" > "$OUT/configure.log" 2>&1; then
  TESTS=0
  rm -rf "$BUILD"
  if ! timeout 120 cmake "${CMAKE_ARGS[@]}" -DHYPERATTN_BUILD_TESTS=OFF > "$OUT/configure-notests.log" 2>&1; then
    note "CONFIGURE FAILED (see configure*.log)"; tail -20 "$OUT/configure-notests.log"; exit 1
  fi
  note "configure: tests off (see configure.log: GoogleTest or fmt missing?)"
fi

# 2. Build only what this check needs.
TARGETS=(hyperattn_cuda_bench)
(( TESTS )) && TARGETS+=(test_cuda_random test_cuda_lowering test_cuda_attention)
if ! timeout 240 cmake --build "$BUILD" --target "${TARGETS[@]}" -j "$(nproc)" > "$OUT/build.log" 2>&1; then
  note "BUILD FAILED after $(elapsed) (see build.log)"; grep -E "error" "$OUT/build.log" | head -20; exit 1
fi
grep -E "registers|spill" "$OUT/build.log" > "$OUT/ptxas.txt" || true
LIBCUDA=$(find "$BUILD" -name libhyperattn_cuda.a | head -1)
if command -v cuobjdump > /dev/null && [[ -n "$LIBCUDA" ]]; then
  cuobjdump -sass "$LIBCUDA" > "$OUT/sass.txt" 2>&1
  note "sass: $(grep -c HMMA "$OUT/sass.txt") HMMA, $(grep -c 'LDG.E.128' "$OUT/sass.txt") LDG.E.128, $(grep -cE '\bSTL\b|\bLDL\b' "$OUT/sass.txt") local-memory ops"
fi
note "build: ok after $(elapsed)"

# 3. Tests (every device test also poisons its outputs and checks each element was written).
if (( TESTS )); then
  for t in test_cuda_random test_cuda_lowering test_cuda_attention; do
    bin=$(find "$BUILD" -name "$t" -type f -perm -u+x | head -1)
    timeout 120 "$bin" --gtest_output="xml:$OUT/$t.xml" > "$OUT/$t.log" 2>&1
    rc=$?
    note "$t: rc=$rc $(grep -E '^\[  (PASSED|FAILED|SKIPPED) *\] [0-9]+ test' "$OUT/$t.log" | tr '\n' ' ')"
    grep -E '^\[  FAILED  \]' "$OUT/$t.log" | head -15 | tee -a "$SUMMARY"
  done
fi
note "tests done after $(elapsed)"

# 4. The issue's table: bf16, batch 1, 32 heads, head_dim 64 and 128, n in {16384, 32768, 131072},
# causal and not; exact attention up to 32768. Then the pipelined tensor-core kernel (opt-in,
# HYPERATTN_CUDA_KERNEL=mma_pipelined) and the CUDA-core kernel once, for comparison.
BENCH=$(find "$BUILD" -name hyperattn_cuda_bench -type f | head -1)
timeout 180 "$BENCH" --tsv "$OUT/bench.tsv" > "$OUT/bench.txt" 2>&1
note "bench: rc=$? after $(elapsed)"
HYPERATTN_CUDA_KERNEL=mma_pipelined timeout 120 "$BENCH" --repeats 5 --exact-max-seq 16384 \
  --tsv "$OUT/bench_pipelined.tsv" > "$OUT/bench_pipelined.txt" 2>&1
note "bench (pipelined tensor-core kernel): rc=$? after $(elapsed)"
HYPERATTN_CUDA_KERNEL=simple timeout 40 "$BENCH" --head-dims 64 --seqs 16384 --repeats 3 \
  --tsv "$OUT/bench_simple.tsv" > "$OUT/bench_simple.txt" 2>&1
note "bench (CUDA-core kernel, d 64, n 16384): $(grep -E '^(exact|hyper) ' "$OUT/bench_simple.txt" | awk '{printf "%s %s %s ms; ", $1, $4, $5}')"

# 5. compute-sanitizer (races, out-of-bounds) on a few small cases, if time is left (budget 8 min).
left=$(( 440 - ($(date +%s) - START) ))
bin=$(find "$BUILD" -name test_cuda_attention -type f | head -1)
if (( TESTS )) && command -v compute-sanitizer > /dev/null && (( left > 60 )); then
  timeout $(( left * 6 / 10 )) compute-sanitizer --tool memcheck --error-exitcode 9 "$bin" \
    --gtest_filter='CudaLsh.BlocksBitIdenticalToCpuBf16:CudaExactShapes.*:Variants/CudaHyper.*/0:Variants/CudaHyper.*/3' \
    > "$OUT/memcheck.log" 2>&1
  note "compute-sanitizer memcheck: rc=$? $(grep -E 'ERROR SUMMARY' "$OUT/memcheck.log" | head -1)"
  left=$(( 440 - ($(date +%s) - START) ))
  if (( left > 30 )); then
    timeout "$left" compute-sanitizer --tool racecheck --error-exitcode 9 "$bin" \
      --gtest_filter='Variants/CudaHyper.CausalMatchesCpu/0:Variants/CudaHyper.NonCausalMatchesCpu/2' \
      > "$OUT/racecheck.log" 2>&1
    note "compute-sanitizer racecheck: rc=$? $(grep -E 'ERROR SUMMARY|RACE REPORT' "$OUT/racecheck.log" | head -1)"
  fi
else
  note "compute-sanitizer: skipped (tests off, not installed, or no time left)"
fi

echo
echo "==== summary ($(elapsed)) ===="
cat "$SUMMARY"
echo "==== bench, pipelined kernel (median of 5) ===="
grep -E '^(exact|hyper) ' "$OUT/bench_pipelined.txt" | awk '{printf "%s d%s n%s causal=%s %s ms\n", $1, $2, $3, $4, $5}' | paste -sd ';' -
echo "==== bench (median of 10, CUDA events; TFLOP/s(eq) = exact-attention FLOPs / time) ===="
cat "$OUT/bench.txt"
