// bench/bench_gemm.cpp: the model runner's matrix products, OpenBLAS sgemm (MatmulPrecision::f32)
// against gemm_bf16 (MatmulPrecision::bf16), on the bundled model's shapes: C [rows, n] = A [rows, k]
// . W^T. sgemm with 1 thread is what the runner calls on each thread's row slice (llama_model.cpp).
// Counters: FLOPS (2 rows n k per call over wall time) and peak_frac, over this machine's
// 2-thread peaks measured in docs/performance.md (233 GFLOP/s fp32 FMA, 466 bf16 dot; per thread
// half). Run: ./build/bench/bench_gemm --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <random>
#include <vector>

#include "model/bf16_gemm.hpp"
#include "model/parallel.hpp"

namespace {

using hyperattn::model::Bf16GemmPath;

struct Shape {
  const char* name;
  std::int64_t rows, n, k;
};

// llama-11m-32k: hidden 384, intermediate 1024, q/k/v width 384 + 2 * 128, vocab 4096; the MLP runs
// in 4096-row chunks and the head in 1024-row chunks (src/model); "head_256" is its chunk before.
constexpr Shape kShapes[] = {{"qkv", 32768, 640, 384},    {"o_proj", 32768, 384, 384}, {"gate_up", 4096, 2048, 384},
                             {"down", 4096, 384, 1024},   {"head", 1024, 4096, 384},   {"head_256", 256, 4096, 384}};
constexpr double kPeakF32PerThread = 116.5e9, kPeakBf16PerThread = 233e9;

struct Operands {
  std::vector<float> a, w, c;
  explicit Operands(const Shape& s) : a(s.rows * s.k), w(s.n * s.k), c(s.rows * s.n) {
    std::mt19937 rng(1);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (auto& x : a) x = normal(rng);
    for (auto& x : w) x = 0.05f * normal(rng);
  }
};

void report(benchmark::State& state, const Shape& s, double peak_per_thread, int threads) {
  const double flops = 2.0 * static_cast<double>(s.rows * s.n * s.k) * static_cast<double>(state.iterations());
  state.counters["FLOPS"] = benchmark::Counter(flops, benchmark::Counter::kIsRate);
  state.counters["peak_frac"] = benchmark::Counter(flops / (peak_per_thread * threads), benchmark::Counter::kIsRate);
}

void BM_sgemm(benchmark::State& state, Shape s) {
  const int threads = static_cast<int>(state.range(0));
  Operands o(s);
  hyperattn::model::set_blas_threads(threads);
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(s.rows), static_cast<int>(s.n),
                static_cast<int>(s.k), 1.0f, o.a.data(), static_cast<int>(s.k), o.w.data(), static_cast<int>(s.k), 0.0f,
                o.c.data(), static_cast<int>(s.n));
    benchmark::DoNotOptimize(o.c.data());
  }
  report(state, s, kPeakF32PerThread, threads);
}

void BM_gemm_bf16(benchmark::State& state, Shape s, Bf16GemmPath path) {
  const int threads = static_cast<int>(state.range(0));
  Operands o(s);
  const auto w = hyperattn::model::pack_bf16_matrix(o.w.data(), s.n, s.k, path);
  for (auto _ : state) {
    hyperattn::model::gemm_bf16(o.a.data(), s.rows, s.k, w, o.c.data(), s.n, false, threads);
    benchmark::DoNotOptimize(o.c.data());
  }
  report(state, s, w.path == Bf16GemmPath::kernel ? kPeakBf16PerThread : kPeakF32PerThread, threads);
}

int register_all() {
  for (const Shape& s : kShapes) {
    for (int threads : {1, 2}) {
      benchmark::RegisterBenchmark((std::string("sgemm/") + s.name).c_str(), BM_sgemm, s)
          ->Arg(threads)
          ->UseRealTime()
          ->Unit(benchmark::kMillisecond);
      if (hyperattn::model::bf16_gemm_kernel_available())
        benchmark::RegisterBenchmark((std::string("bf16/") + s.name).c_str(), BM_gemm_bf16, s, Bf16GemmPath::kernel)
            ->Arg(threads)
            ->UseRealTime()
            ->Unit(benchmark::kMillisecond);
    }
  }
  return 0;
}

const int registered = register_all();

}  // namespace

BENCHMARK_MAIN();
