// bench/bench_attention.cpp: Google Benchmark suite for the CPU attention kernels and the public
// API. Counters:
//   FLOPS      attention FLOPs per second, 4 * rows * visible keys * head_dim (2 for Q K^T, 2 for
//              P V; exp and the softmax not counted), kIsRate;
//   peak_frac  FLOPS / the measured peak of the arithmetic the kernel runs on (measure_kernel_peaks:
//              the AVX-512 kernel fp32 zmm FMAs for f32 inputs and vdpbf16ps for bf16 ones; the
//              avx512_nobf16 and AVX2 kernels zmm or ymm FMAs for both, they widen bf16 to fp32),
//              on the same number of threads
//              (1 for kernel/..., the configured threads for the API benchmarks, whose kernel is
//              the one the library chose: HYPERATTN_ISA or the best supported).
// The peaks of every ISA the CPU has are measured at start-up with dependency-free loops
// (bench/isa_peak.cpp), printed, and also reported as benchmarks peak/... . Run, e.g.:
//   bench_attention --benchmark_min_time=0.01 --benchmark_filter='kernel/avx512'
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/bfloat16.hpp"
#include "cpu/attention_kernel.hpp"
#include "cpu/magnitudes.hpp"
#include "hyperattn/attention.hpp"
#if defined(__x86_64__)
#include "isa_peak.hpp"
#endif

namespace {

using hyperattn::DType;
using hyperattn::cpu::AttentionKernel;
using hyperattn::cpu::DenseAttentionTile;

constexpr int kApiThreads = 2;

// Measured FLOP/s of one kernel's arithmetic, per input dtype: one thread and kApiThreads at once
// (0: not measured, no peak_frac counter).
struct KernelPeak {
  double f32_one = 0, bf16_one = 0;
  double f32_all = 0, bf16_all = 0;
  double one(DType dtype) const { return dtype == DType::f32 ? f32_one : bf16_one; }
  double all(DType dtype) const { return dtype == DType::f32 ? f32_all : bf16_all; }
};
std::map<std::string, KernelPeak> g_peaks;  // by AttentionKernel::name

const KernelPeak& peak_of(const char* kernel_name) {
  static const KernelPeak none;
  const auto it = g_peaks.find(kernel_name);
  return it == g_peaks.end() ? none : it->second;
}

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

#if defined(__x86_64__)
using hyperattn::bench::PeakLoop;

// FLOP/s of `loop` on `threads` threads at once: the sum over threads of each thread's FLOPs per
// second of its own CPU time (so time slices lost to other processes do not count), best of 5
// runs of ~50 ms.
double measure_peak(PeakLoop loop, int threads) {
  const long iterations = 5'000'000;
  const double flops = hyperattn::bench::flops_per_iteration(loop) * static_cast<double>(iterations);
  double best = 0.0;
  for (int trial = 0; trial < 5; ++trial) {
    std::vector<std::thread> pool;
    std::vector<double> rate(static_cast<std::size_t>(threads));
    for (int i = 0; i < threads; ++i)
      pool.emplace_back([&, i] {
        const double t0 = thread_cpu_seconds();
        benchmark::DoNotOptimize(hyperattn::bench::run_peak_loop(loop, iterations));
        rate[i] = flops / (thread_cpu_seconds() - t0);
      });
    for (std::thread& th : pool) th.join();
    double total = 0.0;
    for (double r : rate) total += r;
    best = std::max(best, total);
  }
  return best;
}

void BM_peak(benchmark::State& state, PeakLoop loop) {
  const long iterations = 1'000'000;
  for (auto _ : state) benchmark::DoNotOptimize(hyperattn::bench::run_peak_loop(loop, iterations));
  state.counters["FLOPS"] = benchmark::Counter(
      hyperattn::bench::flops_per_iteration(loop) * iterations * static_cast<double>(state.iterations()),
      benchmark::Counter::kIsRate);
}
#endif

// Measures the peak of every ISA this CPU has, prints them, and sets each kernel's peak (g_peaks):
// "avx512" runs fp32 zmm FMAs (f32) and vdpbf16ps (bf16), "avx512_nobf16" zmm FMAs and "avx2" ymm
// FMAs for both dtypes; the
// scalar kernel (and any kernel of another architecture) gets none.
void measure_kernel_peaks() {
#if defined(__x86_64__)
  std::map<PeakLoop, std::pair<double, double>> rate;  // loop -> (1 thread, kApiThreads)
  std::string line = "measured peak (GFLOP/s, 1 thread / " + std::to_string(kApiThreads) + " threads):";
  for (PeakLoop loop : {PeakLoop::avx2_fma_f32, PeakLoop::avx512_fma_f32, PeakLoop::avx512_dpbf16}) {
    if (!hyperattn::bench::isa_peak_supported(loop)) continue;
    rate[loop] = {measure_peak(loop, 1), measure_peak(loop, kApiThreads)};
    char buf[128];
    std::snprintf(buf, sizeof buf, " %s %.1f / %.1f;", hyperattn::bench::peak_loop_name(loop), rate[loop].first * 1e-9,
                  rate[loop].second * 1e-9);
    line += buf;
  }
  std::printf("%s\n", line.c_str());
  const auto set = [&](const char* kernel, PeakLoop f32, PeakLoop bf16) {
    if (!rate.count(f32) || !rate.count(bf16)) return;
    g_peaks[kernel] = KernelPeak{rate[f32].first, rate[bf16].first, rate[f32].second, rate[bf16].second};
  };
  set("avx2", PeakLoop::avx2_fma_f32, PeakLoop::avx2_fma_f32);
  set("avx512_nobf16", PeakLoop::avx512_fma_f32, PeakLoop::avx512_fma_f32);  // widens bf16 to fp32
  set("avx512", PeakLoop::avx512_fma_f32, PeakLoop::avx512_dpbf16);
#else
  std::printf("no peak loops for this architecture: peak_frac counters are not reported\n");
#endif
}

// Row-major matrix of normal values, stored as f32 or as bf16 bits.
struct Data {
  std::vector<float> f32;            // [rows, cols]
  std::vector<std::uint16_t> bf16;   // [rows, cols]
  Data(std::int64_t count, std::uint32_t seed) : f32(static_cast<std::size_t>(count)), bf16(f32.size()) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (std::size_t i = 0; i < f32.size(); ++i) {
      f32[i] = normal(rng);
      bf16[i] = hyperattn::f32_to_bf16_bits(f32[i]);
    }
  }
  void* data(DType dtype) { return dtype == DType::f32 ? static_cast<void*>(f32.data()) : bf16.data(); }
};

struct AlignedFloats {
  std::unique_ptr<float, decltype(&std::free)> p{nullptr, &std::free};
  explicit AlignedFloats(std::size_t n) : p(static_cast<float*>(std::aligned_alloc(64, (n * 4 + 63) / 64 * 64)), &std::free) {}
};

enum class KernelShape { dense, causal, hyper, hyper_level };

// One kernel on one thread, in the calls the drivers make:
//   dense:  query tiles of `rows_per_call` rows against all seq_kv keys (exact attention);
//   causal: the same tiles at query positions seq_kv/2 .. seq_kv/2 + 512 under the causal mask
//           (FLOPs count only the visible keys);
//   hyper:  sorted blocks of 256 rows (q_index, out_index) against 256 block keys + 256 sampled
//           keys (k_index, key_bias), 16 blocks per iteration;
//   hyper_level: the same blocks as a causal level runs them: merging into (out, lse) through the
//           log-sum-exp, each block with the next one as its prefetch hint (tile.next), 64 blocks
//           per iteration, every query row and block key used once.
void BM_kernel(benchmark::State& state, const AttentionKernel* kernel, DType dtype, int head_dim,
               std::int64_t seq_kv, KernelShape shape, std::int64_t rows_per_call) {
  const int d = head_dim;
  const bool hyper = shape == KernelShape::hyper || shape == KernelShape::hyper_level;
  const int blocks = shape == KernelShape::hyper_level ? 64 : 16;
  const std::int64_t query_rows = hyper ? blocks * 256 : 512;
  const std::int64_t q_source_rows = hyper ? seq_kv : query_rows;
  Data q(q_source_rows * d, 1), k(seq_kv * d, 2), v(seq_kv * d, 3);  // [*, d]
  std::vector<float> out(static_cast<std::size_t>(q_source_rows * d));  // [q_source_rows, d]
  std::vector<float> lse(static_cast<std::size_t>(q_source_rows), 1.0f);  // [q_source_rows] (a finite partial result)
  AlignedFloats scratch(kernel->scratch_floats(d, d));
  std::mt19937 rng(4);
  std::vector<std::int32_t> perm(static_cast<std::size_t>(q_source_rows));  // [q_source_rows]
  for (std::size_t i = 0; i < perm.size(); ++i) perm[i] = static_cast<std::int32_t>(i);
  std::shuffle(perm.begin(), perm.end(), rng);
  std::vector<std::int32_t> key_rows(static_cast<std::size_t>(blocks) * 512);  // [blocks, 512]
  std::uniform_int_distribution<std::int32_t> pick(0, static_cast<std::int32_t>(seq_kv - 1));
  for (std::int32_t& x : key_rows) x = pick(rng);
  if (shape == KernelShape::hyper_level) {  // block keys: a permutation, like a sorted part's blocks
    std::vector<std::int32_t> key_perm(perm);
    std::shuffle(key_perm.begin(), key_perm.end(), rng);
    for (int b = 0; b < blocks; ++b)
      for (int j = 0; j < 256; ++j) key_rows[static_cast<std::size_t>(b * 512 + j)] = key_perm[static_cast<std::size_t>(b * 256 + j)];
  }
  std::vector<float> bias(512, 0.0f);  // [512] log weights: block keys 0, samples log((n - b)/m)
  for (int j = 256; j < 512; ++j) bias[j] = std::log(static_cast<float>(seq_kv - 256) / 256.0f);

  DenseAttentionTile base;
  base.dtype = dtype;
  base.q = q.data(dtype);
  base.q_row_stride = d;
  base.k = k.data(dtype);
  base.k_row_stride = d;
  base.v = v.data(dtype);
  base.v_row_stride = d;
  base.head_dim = d;
  base.head_dim_v = d;
  base.scale = 1.0f / std::sqrt(static_cast<float>(d));
  base.out = out.data();
  base.out_row_stride = d;
  base.lse = lse.data();
  base.scratch = scratch.p.get();

  double flops = 0.0;  // per iteration
  std::vector<DenseAttentionTile> calls;
  if (hyper) {
    for (int b = 0; b < blocks; ++b) {
      DenseAttentionTile t = base;
      t.q_index = perm.data() + b * 256;
      t.out_index = t.q_index;
      t.k_index = key_rows.data() + b * 512;
      t.key_bias = bias.data();
      t.rows = 256;
      t.keys = 512;
      t.merge = shape == KernelShape::hyper_level;
      calls.push_back(t);
      flops += 4.0 * 256 * 512 * d;
    }
    if (shape == KernelShape::hyper_level)
      for (std::size_t b = 0; b + 1 < calls.size(); ++b) calls[b].next = &calls[b + 1];
  } else {
    for (std::int64_t r0 = 0; r0 < query_rows; r0 += rows_per_call) {
      DenseAttentionTile t = base;
      const std::int64_t rows = std::min(rows_per_call, query_rows - r0);
      t.q = static_cast<const char*>(base.q) + r0 * d * (dtype == DType::f32 ? 4 : 2);
      t.out = out.data() + r0 * d;
      t.lse = lse.data() + r0;
      t.rows = rows;
      t.keys = seq_kv;
      if (shape == KernelShape::causal) {
        t.causal_diagonal = seq_kv / 2 + r0;  // local row i is at key position seq_kv/2 + r0 + i
        for (std::int64_t i = 0; i < rows; ++i)
          flops += 4.0 * d * static_cast<double>(std::min(seq_kv, seq_kv / 2 + r0 + i + 1));
      } else {
        flops += 4.0 * rows * seq_kv * d;
      }
      calls.push_back(t);
    }
  }
  for (auto _ : state) {
    for (const DenseAttentionTile& t : calls) kernel->dense(t);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  const double total = flops * static_cast<double>(state.iterations());
  const double peak = peak_of(kernel->name).one(dtype);
  state.counters["FLOPS"] = benchmark::Counter(total, benchmark::Counter::kIsRate);
  if (peak > 0) state.counters["peak_frac"] = benchmark::Counter(total / peak, benchmark::Counter::kIsRate);
}

// The public API, batch 1, `heads` heads, [batch, heads, seq, head_dim] memory, kApiThreads threads.
void BM_api(benchmark::State& state, bool hyper, DType dtype, int head_dim, std::int64_t seq, bool causal, int heads) {
  const std::int64_t numel = heads * seq * head_dim;
  Data q(numel, 11), k(numel, 12), v(numel, 13);
  std::vector<float> out_f32(dtype == DType::f32 ? static_cast<std::size_t>(numel) : 0);       // [1, heads, seq, d]
  std::vector<std::uint16_t> out_bf16(dtype == DType::bf16 ? static_cast<std::size_t>(numel) : 0);
  std::vector<float> lse(static_cast<std::size_t>(heads * seq));                                  // [1, heads, seq]
  using hyperattn::TensorView;
  hyperattn::AttentionArgs args;
  args.q = TensorView::bhsd(q.data(dtype), dtype, 1, heads, seq, head_dim);
  args.k = TensorView::bhsd(k.data(dtype), dtype, 1, heads, seq, head_dim);
  args.v = TensorView::bhsd(v.data(dtype), dtype, 1, heads, seq, head_dim);
  void* out = dtype == DType::f32 ? static_cast<void*>(out_f32.data()) : out_bf16.data();
  args.out = TensorView::bhsd(out, dtype, 1, heads, seq, head_dim);
  args.lse = hyperattn::LseView::contiguous(lse.data(), heads, seq);
  hyperattn::AttentionConfig config;
  config.causal = causal;
  config.threads = kApiThreads;
  // FLOPs: exact counts the visible keys; HyperAttention counts the b + m = 512 keys each query
  // attends to in its block (the work the method does), not the exact method's n keys.
  const double n = static_cast<double>(seq);
  const double attended = hyper ? static_cast<double>(config.block_size + config.sample_size) * n
                                : (causal ? n * (n + 1) / 2 : n * n);
  const double flops = 4.0 * attended * head_dim * heads;
  for (auto _ : state) {
    const hyperattn::Status status = hyper ? hyperattn::hyper_attention(args, config) : hyperattn::exact_attention(args, config);
    if (!status.ok()) {
      state.SkipWithError(status.message().c_str());
      return;
    }
    benchmark::ClobberMemory();
  }
  const double total = flops * static_cast<double>(state.iterations());
  const double peak = peak_of(hyperattn::cpu::best_kernel().name).all(dtype);
  state.counters["FLOPS"] = benchmark::Counter(total, benchmark::Counter::kIsRate);
  if (peak > 0) state.counters["peak_frac"] = benchmark::Counter(total / peak, benchmark::Counter::kIsRate);
}

// The door's input check (cpu::check_magnitudes: the range bounds and the NaN/Inf scan, one read of
// q, k and v) alone, batch 1, `heads` heads of [seq, head_dim], kApiThreads threads: what every
// exact_attention and hyper_attention call pays before computing. bytes_per_second: q + k + v.
void BM_input_check(benchmark::State& state, DType dtype, int head_dim, std::int64_t seq, int heads) {
  const std::int64_t numel = heads * seq * head_dim;
  Data q(numel, 11), k(numel, 12), v(numel, 13);
  std::vector<float> out(static_cast<std::size_t>(numel));  // [1, heads, seq, d] (unused by the check)
  using hyperattn::TensorView;
  hyperattn::AttentionArgs args;
  args.q = TensorView::bhsd(q.data(dtype), dtype, 1, heads, seq, head_dim);
  args.k = TensorView::bhsd(k.data(dtype), dtype, 1, heads, seq, head_dim);
  args.v = TensorView::bhsd(v.data(dtype), dtype, 1, heads, seq, head_dim);
  args.out = TensorView::bhsd(out.data(), DType::f32, 1, heads, seq, head_dim);
  hyperattn::AttentionConfig config;
  config.threads = kApiThreads;
  hyperattn::cpu::NonFiniteInputs nonfinite;
  for (auto _ : state) {
    const hyperattn::Status status = hyperattn::cpu::check_magnitudes(args, config, &nonfinite);
    if (!status.ok() || nonfinite.any()) {
      state.SkipWithError("the check refused finite unit-normal inputs");
      return;
    }
    benchmark::DoNotOptimize(nonfinite);
  }
  const double bytes = 3.0 * static_cast<double>(numel) * (dtype == DType::f32 ? 4.0 : 2.0);
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes * static_cast<double>(state.iterations())));
}

// The backward pass through the public API (batch 1, `heads` heads, f32 gradients, kApiThreads
// threads): the backward alone (with_forward false; the forward runs once before timing), or
// forward + backward. FLOPS counts the forward's attended FLOPs (as BM_api) times 2.5 for the
// backward (FlashAttention's convention: 5 matrix products of the 2 forward ones) and 3.5 for
// forward + backward; peak_frac against the fp32 FMA peak.
void BM_backward(benchmark::State& state, bool hyper, DType dtype, int head_dim, std::int64_t seq, bool causal, int heads,
                 bool with_forward) {
  const std::int64_t numel = heads * seq * head_dim;
  Data q(numel, 11), k(numel, 12), v(numel, 13), d_out(numel, 14);
  const std::size_t es = dtype == DType::f32 ? 4 : 2;
  std::vector<std::uint8_t> out(static_cast<std::size_t>(numel) * es);        // [1, heads, seq, d]
  std::vector<float> lse(static_cast<std::size_t>(heads * seq));               // [1, heads, seq]
  std::vector<float> dq(static_cast<std::size_t>(numel)), dk(dq.size()), dv(dq.size());  // [1, heads, seq, d] f32
  using hyperattn::TensorView;
  hyperattn::AttentionGradArgs g;
  g.q = TensorView::bhsd(q.data(dtype), dtype, 1, heads, seq, head_dim);
  g.k = TensorView::bhsd(k.data(dtype), dtype, 1, heads, seq, head_dim);
  g.v = TensorView::bhsd(v.data(dtype), dtype, 1, heads, seq, head_dim);
  g.out = TensorView::bhsd(out.data(), dtype, 1, heads, seq, head_dim);
  g.lse = hyperattn::LseView::contiguous(lse.data(), heads, seq);
  g.d_out = TensorView::bhsd(d_out.data(dtype), dtype, 1, heads, seq, head_dim);
  g.dq = TensorView::bhsd(dq.data(), DType::f32, 1, heads, seq, head_dim);
  g.dk = TensorView::bhsd(dk.data(), DType::f32, 1, heads, seq, head_dim);
  g.dv = TensorView::bhsd(dv.data(), DType::f32, 1, heads, seq, head_dim);
  const hyperattn::AttentionArgs args{g.q, g.k, g.v, g.out, g.lse};
  hyperattn::AttentionConfig config;
  config.causal = causal;
  config.threads = kApiThreads;
  auto forward = [&] { return hyper ? hyperattn::hyper_attention(args, config) : hyperattn::exact_attention(args, config); };
  auto backward = [&] {
    return hyper ? hyperattn::hyper_attention_backward(g, config) : hyperattn::exact_attention_backward(g, config);
  };
  if (!with_forward) {
    const hyperattn::Status status = forward();
    if (!status.ok()) {
      state.SkipWithError(status.message().c_str());
      return;
    }
  }
  const double n = static_cast<double>(seq);
  const double attended = hyper ? static_cast<double>(config.block_size + config.sample_size) * n
                                : (causal ? n * (n + 1) / 2 : n * n);
  const double flops = 4.0 * attended * head_dim * heads * (with_forward ? 3.5 : 2.5);
  for (auto _ : state) {
    hyperattn::Status status = with_forward ? forward() : hyperattn::Status::Ok();
    if (status.ok()) status = backward();
    if (!status.ok()) {
      state.SkipWithError(status.message().c_str());
      return;
    }
    benchmark::ClobberMemory();
  }
  const double total = flops * static_cast<double>(state.iterations());
  state.counters["FLOPS"] = benchmark::Counter(total, benchmark::Counter::kIsRate);
  const double peak = peak_of(hyperattn::cpu::best_kernel().name).f32_all;
  if (peak > 0) state.counters["peak_frac"] = benchmark::Counter(total / peak, benchmark::Counter::kIsRate);
}

const char* dtype_name(DType dtype) { return dtype == DType::f32 ? "f32" : "bf16"; }

void register_all() {
  using hyperattn::cpu::supported_kernels;
#if defined(__x86_64__)
  using hyperattn::bench::PeakLoop;
  for (PeakLoop loop : {PeakLoop::avx2_fma_f32, PeakLoop::avx512_fma_f32, PeakLoop::avx512_dpbf16})
    if (hyperattn::bench::isa_peak_supported(loop))
      benchmark::RegisterBenchmark((std::string("peak/") + hyperattn::bench::peak_loop_name(loop) + "/threads:1").c_str(),
                                   BM_peak, loop);
#endif
  const AttentionKernel* kernels[8];
  const int count = supported_kernels(kernels, 8);
  for (int i = 0; i < count; ++i) {
    const AttentionKernel* kernel = kernels[i];
    const bool scalar = std::string(kernel->name) == "scalar";
    for (DType dtype : {DType::f32, DType::bf16})
      for (int d : {64, 128}) {
        const std::string prefix = std::string("kernel/") + kernel->name + "/" + dtype_name(dtype) + "/head_dim:" + std::to_string(d);
        const std::int64_t seq_kv = scalar ? 2048 : 16384;  // the scalar kernel is ~20x slower
        for (std::int64_t rows : {128, 256, 512})
          benchmark::RegisterBenchmark((prefix + "/seq_kv:" + std::to_string(seq_kv) + "/dense/rows:" + std::to_string(rows)).c_str(),
                                       BM_kernel, kernel, dtype, d, seq_kv, KernelShape::dense, rows)
              ->Unit(benchmark::kMillisecond);
        benchmark::RegisterBenchmark((prefix + "/seq_kv:" + std::to_string(seq_kv) + "/causal/rows:128").c_str(), BM_kernel,
                                     kernel, dtype, d, seq_kv, KernelShape::causal, std::int64_t{128})
            ->Unit(benchmark::kMillisecond);
        benchmark::RegisterBenchmark((prefix + "/seq_kv:131072/hyper_block:256+256").c_str(), BM_kernel, kernel, dtype, d,
                                     std::int64_t{131072}, KernelShape::hyper, std::int64_t{256})
            ->Unit(benchmark::kMillisecond);
        benchmark::RegisterBenchmark((prefix + "/seq_kv:131072/hyper_level:256+256").c_str(), BM_kernel, kernel, dtype, d,
                                     std::int64_t{131072}, KernelShape::hyper_level, std::int64_t{256})
            ->Unit(benchmark::kMillisecond);
      }
  }
  for (DType dtype : {DType::f32, DType::bf16})
    for (int d : {64, 128}) {
      const std::string tail = std::string("/") + dtype_name(dtype) + "/head_dim:" + std::to_string(d);
      for (bool causal : {false, true})
        benchmark::RegisterBenchmark(("exact_attention" + tail + "/seq:16384/heads:1" + (causal ? "/causal" : "")).c_str(),
                                     BM_api, false, dtype, d, std::int64_t{16384}, causal, 1)
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime();
      for (std::int64_t seq : {16384, 131072})
        for (bool causal : {false, true})
          benchmark::RegisterBenchmark(("hyper_attention" + tail + "/seq:" + std::to_string(seq) + "/heads:1" + (causal ? "/causal" : "")).c_str(),
                                       BM_api, true, dtype, d, seq, causal, 1)
              ->Unit(benchmark::kMillisecond)
              ->UseRealTime();
    }
  for (DType dtype : {DType::f32, DType::bf16})
    benchmark::RegisterBenchmark((std::string("input_check/") + dtype_name(dtype) + "/head_dim:64/seq:4096/heads:8").c_str(),
                                 BM_input_check, dtype, 64, std::int64_t{4096}, 8)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  // The backward pass (issue 13's targets): exact backward at 16384; exact and HyperAttention
  // forward + backward up to 131072 (exact at 131072 takes about a minute per iteration: filter).
  for (DType dtype : {DType::f32, DType::bf16})
    for (int d : {64, 128}) {
      const std::string tail = std::string("/") + dtype_name(dtype) + "/head_dim:" + std::to_string(d);
      for (bool causal : {false, true}) {
        const std::string c = causal ? "/causal" : "";
        benchmark::RegisterBenchmark(("exact_backward" + tail + "/seq:16384/heads:1" + c).c_str(), BM_backward, false, dtype, d,
                                     std::int64_t{16384}, causal, 1, false)
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime();
        for (std::int64_t seq : {16384, 32768, 131072}) {
          benchmark::RegisterBenchmark(("exact_forward_backward" + tail + "/seq:" + std::to_string(seq) + "/heads:1" + c).c_str(),
                                       BM_backward, false, dtype, d, seq, causal, 1, true)
              ->Unit(benchmark::kMillisecond)
              ->UseRealTime()
              ->Iterations(1);
          benchmark::RegisterBenchmark(("hyper_forward_backward" + tail + "/seq:" + std::to_string(seq) + "/heads:1" + c).c_str(),
                                       BM_backward, true, dtype, d, seq, causal, 1, true)
              ->Unit(benchmark::kMillisecond)
              ->UseRealTime();
          benchmark::RegisterBenchmark(("hyper_backward" + tail + "/seq:" + std::to_string(seq) + "/heads:1" + c).c_str(),
                                       BM_backward, true, dtype, d, seq, causal, 1, false)
              ->Unit(benchmark::kMillisecond)
              ->UseRealTime();
        }
      }
    }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  measure_kernel_peaks();
  std::printf("best kernel: %s\n", hyperattn::cpu::best_kernel().name);
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
