// tools/cmd_bench.cpp: `hyperattn bench`: exact attention against HyperAttention on random
// inputs, side by side in one run; median of repeats; table, JSON and a log-log plot.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <random>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "core/bfloat16.hpp"
#include "hyperattn/attention.hpp"
#include "options.hpp"
#include "support/huge_page_allocator.hpp"
#include "support/plot.hpp"
#include "support/progress.hpp"
#ifdef HYPERATTN_HAVE_CUDA
#include "cuda/bench_cuda.hpp"
#endif

namespace hyperattn::cli {
namespace {

using tools::HugePageAllocator;
using tools::PlotSpec;
using tools::ProgressBar;
using tools::Series;
using tools::plot_png;
using tools::progress_callback;

struct BenchOptions {
  std::vector<std::int64_t> seq{4096, 8192, 16384, 32768};
  std::int64_t head_dim = 64, heads = 1, heads_kv = 0, batch = 1;
  bool causal = false, both = false;
  int repeats = 3;
  std::vector<std::string> methods{"exact", "hyper"};
  std::string dtype = "f32", json, plot;
  std::int64_t max_exact_seq = 0;
  std::string backend = "cpu";
  std::string pass = "forward";  // forward, backward (after one untimed forward) or forward-backward
  std::string layout = "bhsd";   // bhsd, or token-major (one [batch, seq, (heads + 2 heads_kv) head_dim] buffer)
  AttentionConfig config;
};

// `--backend cuda`: CUDA-event timing on the device (src/cuda/bench_cuda.hpp).
int run_cuda(const BenchOptions& o) {
#ifdef HYPERATTN_HAVE_CUDA
  CudaBenchSpec spec;
  spec.dtype = o.dtype == "f32" ? DType::f32 : DType::bf16;
  spec.batch = o.batch;
  spec.heads_q = o.heads;
  spec.heads_kv = o.heads_kv > 0 ? o.heads_kv : o.heads;
  spec.head_dims = {o.head_dim};
  spec.seqs = o.seq;
  spec.causal = o.both ? std::vector<bool>{false, true} : std::vector<bool>{o.causal};
  spec.exact = std::find(o.methods.begin(), o.methods.end(), "exact") != o.methods.end();
  spec.hyper = std::find(o.methods.begin(), o.methods.end(), "hyper") != o.methods.end();
  spec.exact_max_seq = o.max_exact_seq > 0 ? o.max_exact_seq : (std::int64_t{1} << 40);
  spec.repeats = o.repeats;
  spec.config = o.config;
  std::vector<CudaBenchResult> results;
  if (Status s = cuda_bench(spec, &results); !s.ok()) {
    std::fprintf(stderr, "hyperattn bench --backend cuda: %s\n", s.message().c_str());
    return s.code() == StatusCode::unsupported ? 2 : 1;
  }
  std::printf("%-8s %-9s %-7s %-6s %-12s %-12s\n", "method", "head_dim", "seq", "causal", "median_ms", "TFLOP/s(exact-equivalent)");
  nlohmann::json j = nlohmann::json::array();
  for (const CudaBenchResult& r : results) {
    std::printf("%-8s %-9lld %-7lld %-6s %-12.3f %-12.1f\n", r.method.c_str(), static_cast<long long>(r.head_dim),
                static_cast<long long>(r.seq), r.causal ? "yes" : "no", r.median_ms, r.exact_equivalent_tflops);
    j.push_back({{"method", r.method}, {"seq", r.seq}, {"head_dim", r.head_dim}, {"heads", o.heads}, {"causal", r.causal},
                 {"threads", 0}, {"median_s", r.median_ms * 1e-3}, {"min_s", r.min_ms * 1e-3}, {"backend", "cuda"},
                 {"exact_equivalent_tflops", r.exact_equivalent_tflops}, {"dtype", o.dtype}});
  }
  if (!o.json.empty()) std::ofstream(o.json) << j.dump(2) << "\n";
  return 0;
#else
  (void)o;
  std::fprintf(stderr, "hyperattn bench: --backend cuda: this build has no CUDA backend (configure with -DHYPERATTN_CUDA=ON)\n");
  return 2;
#endif
}

struct Record {
  std::string method;
  std::int64_t seq;
  bool causal;
  double median_s, min_s, gflops;
  std::vector<double> times;
};

// FLOPs of exact attention: 2 n_q n_k d for Q K^T and as many for P V; causal counts the
// unmasked part only (n(n+1)/2 pairs).
double exact_flops(std::int64_t n, std::int64_t d, std::int64_t heads, std::int64_t batch, bool causal) {
  const double pairs = causal ? 0.5 * static_cast<double>(n) * static_cast<double>(n + 1) : static_cast<double>(n) * static_cast<double>(n);
  return 4.0 * pairs * static_cast<double>(d) * static_cast<double>(heads * batch);
}

int run(const BenchOptions& o) {
  if (!outputs_ok("bench", {{"--json", &o.json}, {"--plot", &o.plot}})) return 2;
  if (o.backend == "cuda") {
    if (o.pass != "forward") {
      std::fprintf(stderr, "hyperattn bench: --pass %s: the CUDA backend has no backward pass; expected --pass forward with --backend cuda\n", o.pass.c_str());
      return 2;
    }
    return run_cuda(o);
  }
  const DType dtype = o.dtype == "bf16" ? DType::bf16 : DType::f32;
  const std::int64_t heads_kv = o.heads_kv > 0 ? o.heads_kv : o.heads;
  if (o.heads % heads_kv != 0) {
    std::fprintf(stderr, "hyperattn bench: --heads %lld is not a multiple of --heads-kv %lld\n", static_cast<long long>(o.heads), static_cast<long long>(heads_kv));
    return 2;
  }
  std::vector<bool> causal_modes = o.both ? std::vector<bool>{false, true} : std::vector<bool>{o.causal};
  std::int64_t total = 0;
  for (std::int64_t n : o.seq)
    for (const std::string& m : o.methods)
      if (!(m == "exact" && o.max_exact_seq > 0 && n > o.max_exact_seq)) total += static_cast<std::int64_t>(causal_modes.size()) * (o.repeats + 1);
  ProgressBar bar("bench", total);
  std::vector<Record> records;
  const int threads = o.config.threads > 0 ? o.config.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (std::int64_t n : o.seq) {
    // Random Gaussian inputs, drawn once per length: [batch, heads, seq, head_dim] contiguous
    // (bhsd), or as a model's fused projection holds them (token-major: Q, K and V interleaved in
    // one [batch, seq, (heads + 2 heads_kv) head_dim] buffer, O [batch, seq, heads, head_dim]).
    std::mt19937_64 gen(static_cast<std::uint64_t>(n));
    std::normal_distribution<float> nd(0.0f, 1.0f);
    const bool token_major = o.layout == "token-major";
    const std::size_t nq = static_cast<std::size_t>(o.batch * o.heads * n * o.head_dim);
    const std::size_t nkv = static_cast<std::size_t>(o.batch * heads_kv * n * o.head_dim);
    const std::int64_t width = (o.heads + 2 * heads_kv) * o.head_dim;  // token-major row
    // Inputs on huge pages where the system offers them (as a user's large tensors should be).
    std::vector<float, HugePageAllocator<float>> f32[4];
    std::vector<std::uint16_t, HugePageAllocator<std::uint16_t>> b16[4];
    const std::size_t sizes[4] = {token_major ? nq + 2 * nkv : nq, token_major ? 0 : nkv, token_major ? 0 : nkv, nq};
    for (int t = 0; t < 4; ++t) {
      f32[t].resize(sizes[t]);
      for (float& x : f32[t]) x = t == 3 ? 0.0f : nd(gen);
      if (dtype == DType::bf16) {
        b16[t].resize(sizes[t]);
        for (std::size_t i = 0; i < sizes[t]; ++i) b16[t][i] = f32_to_bf16_bits(f32[t][i]);
        std::vector<float, HugePageAllocator<float>>().swap(f32[t]);
      }
    }
    auto ptr = [&](int t) -> void* { return dtype == DType::bf16 ? static_cast<void*>(b16[t].data()) : static_cast<void*>(f32[t].data()); };
    const std::size_t esize = dtype == DType::bf16 ? 2 : 4;
    auto fused = [&](std::int64_t column, std::int64_t heads) {  // a [batch, heads, n, d] view into the fused buffer
      return TensorView{static_cast<char*>(ptr(0)) + static_cast<std::size_t>(column) * esize, dtype,
                        {o.batch, heads, n, o.head_dim}, {n * width, o.head_dim, width, 1}};
    };
    AttentionArgs args = token_major
                             ? AttentionArgs{fused(0, o.heads), fused(o.heads * o.head_dim, heads_kv),
                                             fused((o.heads + heads_kv) * o.head_dim, heads_kv),
                                             TensorView::bshd(ptr(3), dtype, o.batch, n, o.heads, o.head_dim), {}}
                             : AttentionArgs{TensorView::bhsd(ptr(0), dtype, o.batch, o.heads, n, o.head_dim),
                                             TensorView::bhsd(ptr(1), dtype, o.batch, heads_kv, n, o.head_dim),
                                             TensorView::bhsd(ptr(2), dtype, o.batch, heads_kv, n, o.head_dim),
                                             TensorView::bhsd(ptr(3), dtype, o.batch, o.heads, n, o.head_dim), {}};
    // The backward's buffers: LSE [batch, heads, n], dO (the inputs' dtype, Gaussian), f32 dQ, dK, dV.
    const bool backward = o.pass != "forward";
    std::vector<float> lse, dq, dk, dv;
    std::vector<float, HugePageAllocator<float>> d_out_f32;
    std::vector<std::uint16_t, HugePageAllocator<std::uint16_t>> d_out_b16;
    AttentionGradArgs grad;
    if (backward) {
      lse.resize(static_cast<std::size_t>(o.batch * o.heads * n));
      dq.resize(nq);
      dk.resize(nkv);
      dv.resize(nkv);
      d_out_f32.resize(nq);
      for (float& x : d_out_f32) x = nd(gen);
      if (dtype == DType::bf16) {
        d_out_b16.resize(nq);
        for (std::size_t i = 0; i < nq; ++i) d_out_b16[i] = f32_to_bf16_bits(d_out_f32[i]);
      }
      args.lse = LseView::contiguous(lse.data(), o.heads, n);
      args.lse.stride[0] = o.heads * n;
      grad = {args.q, args.k, args.v, args.out, args.lse,
              TensorView::bhsd(dtype == DType::bf16 ? static_cast<void*>(d_out_b16.data()) : d_out_f32.data(), dtype,
                               o.batch, o.heads, n, o.head_dim),
              {},
              TensorView::bhsd(dq.data(), DType::f32, o.batch, o.heads, n, o.head_dim),
              TensorView::bhsd(dk.data(), DType::f32, o.batch, heads_kv, n, o.head_dim),
              TensorView::bhsd(dv.data(), DType::f32, o.batch, heads_kv, n, o.head_dim)};
    }
    for (bool causal : causal_modes)
      for (const std::string& method : o.methods) {
        if (method == "exact" && o.max_exact_seq > 0 && n > o.max_exact_seq) continue;
        AttentionConfig cfg = o.config;
        cfg.causal = causal;
        Record r{method, n, causal, 0, 0, 0, {}};
        auto forward = [&] { return method == "exact" ? exact_attention(args, cfg) : hyper_attention(args, cfg); };
        auto backward_pass = [&] {
          return method == "exact" ? exact_attention_backward(grad, cfg) : hyper_attention_backward(grad, cfg);
        };
        if (o.pass == "backward") {  // the forward's out and lse, once, untimed
          AttentionConfig quiet = cfg;
          quiet.progress = nullptr;
          if (const Status s = method == "exact" ? exact_attention(args, quiet) : hyper_attention(args, quiet); !s.ok()) {
            bar.finish();
            std::fprintf(stderr, "hyperattn bench: %s\n", s.message().c_str());
            return 2;
          }
        }
        for (int rep = 0; rep <= o.repeats; ++rep) {  // the first run warms up and is not counted
          const auto t0 = std::chrono::steady_clock::now();
          Status s = o.pass == "backward" ? Status::Ok() : forward();
          if (s.ok() && backward) s = backward_pass();
          const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
          if (!s.ok()) {
            bar.finish();
            std::fprintf(stderr, "hyperattn bench: %s\n", s.message().c_str());
            return 2;
          }
          if (rep > 0) r.times.push_back(dt);
          bar.advance();
        }
        std::vector<double> sorted = r.times;
        std::sort(sorted.begin(), sorted.end());
        const std::size_t m = sorted.size();
        r.median_s = m % 2 ? sorted[m / 2] : 0.5 * (sorted[m / 2 - 1] + sorted[m / 2]);
        r.min_s = sorted.front();
        // FlashAttention's convention: the backward is 2.5 forwards (5 matrix products of 2).
        const double pass_factor = o.pass == "forward" ? 1.0 : o.pass == "backward" ? 2.5 : 3.5;
        r.gflops = pass_factor * exact_flops(n, o.head_dim, o.heads, o.batch, causal) / r.median_s * 1e-9;
        records.push_back(r);
      }
  }
  bar.finish();

  // Table: one row per (seq, causal), exact and hyper side by side.
  std::printf("%-8s %-7s %-12s %-12s %-9s %-16s\n", "seq", "causal", "exact_s", "hyper_s", "speedup", "exact_GFLOP/s");
  for (std::int64_t n : o.seq)
    for (bool causal : causal_modes) {
      const Record *ex = nullptr, *hy = nullptr;
      for (const Record& r : records)
        if (r.seq == n && r.causal == causal) (r.method == "exact" ? ex : hy) = &r;
      std::printf("%-8lld %-7s %-12s %-12s %-9s %-16s\n", static_cast<long long>(n), causal ? "yes" : "no",
                  ex ? fmt::format("{:.4f}", ex->median_s).c_str() : "-", hy ? fmt::format("{:.4f}", hy->median_s).c_str() : "-",
                  ex && hy ? fmt::format("{:.1f}x", ex->median_s / hy->median_s).c_str() : "-",
                  ex ? fmt::format("{:.1f}", ex->gflops).c_str() : "-");
    }
  std::printf("(%s pass; medians of %d runs after a warm-up; %s, batch %lld, heads %lld/%lld, head_dim %lld, %d threads; hyper: block %lld, samples %lld, %d bits, min_seq_len %lld)\n",
              o.pass.c_str(), o.repeats, to_string(dtype), static_cast<long long>(o.batch), static_cast<long long>(o.heads), static_cast<long long>(heads_kv),
              static_cast<long long>(o.head_dim), threads, static_cast<long long>(o.config.block_size), static_cast<long long>(o.config.sample_size),
              o.config.lsh_bits, static_cast<long long>(o.config.min_seq_len));

  if (!o.json.empty()) {
    nlohmann::json j = nlohmann::json::array();
    for (const Record& r : records)
      j.push_back({{"method", r.method}, {"seq", r.seq}, {"head_dim", o.head_dim}, {"heads", o.heads}, {"heads_kv", heads_kv},
                   {"batch", o.batch}, {"causal", r.causal}, {"threads", threads}, {"median_s", r.median_s}, {"min_s", r.min_s},
                   {"times_s", r.times}, {"repeats", o.repeats}, {"dtype", to_string(dtype)}, {"layout", o.layout},
                   {"exact_equivalent_gflops", r.gflops}, {"block_size", o.config.block_size},
                   {"sample_size", o.config.sample_size}, {"lsh_bits", o.config.lsh_bits}, {"min_seq_len", o.config.min_seq_len},
                   {"seed", o.config.seed}, {"backend", "cpu"}, {"pass", o.pass}});
    std::ofstream f(o.json);
    f << j.dump(2) << "\n";
    if (!f) {
      std::fprintf(stderr, "hyperattn bench: --json: cannot write %s\n", o.json.c_str());
      return 1;
    }
  }
  if (!o.plot.empty()) {
    PlotSpec spec;
    spec.title = fmt::format("attention time, head_dim {}, {} heads, {} threads ({})", o.head_dim, o.heads, threads, to_string(dtype));
    spec.xlabel = "sequence length";
    spec.ylabel = "median seconds";
    spec.logx = spec.logy = true;
    for (const std::string& method : o.methods)
      for (bool causal : causal_modes) {
        Series s;
        s.label = fmt::format("{}{}", method, causal ? " causal" : "");
        for (const Record& r : records)
          if (r.method == method && r.causal == causal) {
            s.x.push_back(static_cast<double>(r.seq));
            s.y.push_back(r.median_s);
          }
        if (!s.x.empty()) spec.series.push_back(s);
      }
    spec.output_png = o.plot;
    if (Status s = plot_png(spec); !s.ok()) {
      std::fprintf(stderr, "hyperattn bench: --plot: %s\n", s.message().c_str());
      return 1;
    }
  }
  return 0;
}

}  // namespace

Command add_bench_command(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  CLI::App* sub = app.add_subcommand("bench", "exact attention against HyperAttention on random inputs");
  sub->add_option("--seq", o->seq, "sequence lengths (comma separated)")->delimiter(',')->capture_default_str()->check(integer_in<std::int64_t>(1, std::int64_t{1} << 30));
  sub->add_option("--head-dim", o->head_dim, "head dimension")->capture_default_str()->check(integer_in<std::int64_t>(1, 1 << 20));
  sub->add_option("--heads", o->heads, "query heads")->capture_default_str()->check(integer_in<std::int64_t>(1, 1 << 20));
  sub->add_option("--heads-kv", o->heads_kv, "key-value heads (default: --heads)")->check(integer_in<std::int64_t>(1, 1 << 20));
  sub->add_option("--batch", o->batch, "batch")->capture_default_str()->check(integer_in<std::int64_t>(1, 1 << 20));
  auto* c = sub->add_flag("--causal", o->causal, "causal attention only");
  sub->add_flag("--both", o->both, "non-causal and causal")->excludes(c);
  sub->add_option("--repeats", o->repeats, "timed runs per measurement (after one warm-up)")->capture_default_str()->check(integer_in<int>(1, 1000));
  sub->add_option("--method", o->methods, "methods to time (comma separated: exact, hyper)")->delimiter(',')->capture_default_str()->check(CLI::IsMember({"exact", "hyper"}));
  sub->add_option("--dtype", o->dtype, "f32 or bf16")->capture_default_str()->check(CLI::IsMember({"f32", "bf16"}));
  sub->add_option("--max-exact-seq", o->max_exact_seq, "skip exact attention above this length (0: never skip)")->check(nonnegative_integer<std::int64_t>());
  sub->add_option("--backend", o->backend, "cpu, or cuda (CUDA-event timing; needs -DHYPERATTN_CUDA=ON and a GPU)")->capture_default_str()->check(CLI::IsMember({"cpu", "cuda"}));
  sub->add_option("--pass", o->pass, "what to time: forward, backward (after one untimed forward) or forward-backward (f32 gradients)")->capture_default_str()->check(CLI::IsMember({"forward", "backward", "forward-backward"}));
  sub->add_option("--layout", o->layout,
                  "bhsd ([batch, heads, seq, head_dim] arrays) or token-major (Q, K, V interleaved in one "
                  "[batch, seq, (heads + 2 heads_kv) head_dim] buffer, as a model's fused QKV projection leaves them)")
      ->capture_default_str()
      ->check(CLI::IsMember({"bhsd", "token-major"}));
  sub->add_option("--json", o->json, "write one record per measurement to this JSON file");
  sub->add_option("--plot", o->plot, "write a log-log plot of time against length to this PNG");
  add_hyper_options(sub, &o->config);
  add_threads_option(sub, &o->config);
  return {sub, [o] { return run(*o); }};
}

}  // namespace hyperattn::cli
