// tools/cmd_run.cpp: `hyperattn run`: attention on Q, K, V read from files.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>

#include <fmt/format.h>

#include "commands.hpp"
#include "options.hpp"
#include "support/progress.hpp"
#include "tensor_files.hpp"

namespace hyperattn::cli {
namespace {

using tools::ProgressBar;
using tools::progress_callback;

struct RunOptions {
  std::string q, k, v, in, out, lse;
  bool exact = false, compare_exact = false, check_inputs = false, quiet = false;
  float scale = 0.0f;
  AttentionConfig config;
};

struct Errors {
  double rel_fro = 0, rel_v = 0, max_abs = 0;
};

Errors error_of(const std::vector<float>& approx, const std::vector<float>& exact, const std::vector<float>& v_values) {
  double num = 0, den = 0, vn = 0, mx = 0;
  for (std::size_t i = 0; i < exact.size(); ++i) {
    const double d = static_cast<double>(approx[i]) - exact[i];
    num += d * d;
    den += static_cast<double>(exact[i]) * exact[i];
    mx = std::max(mx, std::abs(d));
  }
  for (float x : v_values) vn += static_cast<double>(x) * x;
  return {std::sqrt(num / den), std::sqrt(num / vn), mx};
}

int run(const RunOptions& o) {
  if (!outputs_ok("run", {{"--out", &o.out}, {"--lse", &o.lse}})) return 2;
  HostTensor q, k, v;
  if (Status s = load_qkv(o.q, o.k, o.v, o.in, &q, &k, &v); !s.ok()) {
    std::fprintf(stderr, "hyperattn run: %s\n", s.message().c_str());
    return 2;
  }
  if (o.check_inputs) {
    for (const HostTensor* t : {&q, &k, &v})
      if (std::string where = find_non_finite(*t); !where.empty()) {
        std::fprintf(stderr, "hyperattn run: --check-inputs: %s\n", where.c_str());
        return 2;
      }
  }
  HostTensor out = make_output(q, "out");
  std::vector<float> lse(static_cast<std::size_t>(q.view.batch() * q.view.heads() * q.view.seq()));
  AttentionConfig cfg = o.config;
  cfg.scale = o.scale;
  ProgressBar bar(o.exact ? "exact attention" : "hyperattention", 1);
  cfg.progress = &progress_callback;
  cfg.progress_context = &bar;
  AttentionArgs args{q.view, k.view, v.view, out.view, LseView::contiguous(lse.data(), q.view.heads(), q.view.seq())};
  const auto t0 = std::chrono::steady_clock::now();
  Status s = o.exact ? exact_attention(args, cfg) : hyper_attention(args, cfg);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  bar.finish();
  if (!s.ok()) {
    std::fprintf(stderr, "hyperattn run: %s\n", s.message().c_str());
    return s.code() == StatusCode::invalid_argument || s.code() == StatusCode::unsupported ? 2 : 1;
  }
  if (Status w = write_like(o.out, out, q); !w.ok()) {
    std::fprintf(stderr, "hyperattn run: --out: %s\n", w.message().c_str());
    return 1;
  }
  if (!o.lse.empty()) {
    std::vector<std::int64_t> shape(q.file_shape.begin(), q.file_shape.end() - 1);
    if (Status w = io::write_npy(o.lse, io::Array::from_f32(shape, lse.data())); !w.ok()) {
      std::fprintf(stderr, "hyperattn run: --lse: %s\n", w.message().c_str());
      return 1;
    }
  }
  std::printf("%s: batch %lld, heads_q %lld, heads_kv %lld, seq_q %lld, seq_kv %lld, head_dim %lld, %s%s: %.4f s\n",
              o.exact ? "exact" : "hyper", static_cast<long long>(q.view.batch()), static_cast<long long>(q.view.heads()),
              static_cast<long long>(k.view.heads()), static_cast<long long>(q.view.seq()), static_cast<long long>(k.view.seq()),
              static_cast<long long>(q.view.head_dim()), to_string(q.view.dtype), cfg.causal ? ", causal" : "", seconds);
  if (o.compare_exact) {
    HostTensor ex = make_output(q, "exact");
    AttentionConfig ecfg = cfg;
    ProgressBar ebar("exact attention", 1);
    ecfg.progress_context = &ebar;
    AttentionArgs eargs{q.view, k.view, v.view, ex.view, {}};
    const auto e0 = std::chrono::steady_clock::now();
    s = exact_attention(eargs, ecfg);
    const double exact_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - e0).count();
    ebar.finish();
    if (!s.ok()) {
      std::fprintf(stderr, "hyperattn run: exact: %s\n", s.message().c_str());
      return 1;
    }
    const Errors e = error_of(to_f32(out), to_f32(ex), to_f32(v));
    std::printf("exact: %.4f s (%.2fx the time of this run)\n", exact_seconds, exact_seconds / seconds);
    std::printf("error against exact: relative Frobenius %.3e, relative to ||V|| %.3e, max abs %.3e\n", e.rel_fro, e.rel_v, e.max_abs);
  }
  return 0;
}

}  // namespace

Command add_run_command(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  CLI::App* sub = app.add_subcommand("run", "attention on Q, K, V from .npy or .safetensors files");
  sub->add_option("--q", o->q, ".npy queries: [seq, dim], [heads, seq, dim] or [batch, heads, seq, dim]");
  sub->add_option("--k", o->k, ".npy keys (heads may divide the query heads: grouped-query attention)");
  sub->add_option("--v", o->v, ".npy values, the shape of k");
  sub->add_option("--in", o->in, ".safetensors file holding tensors q, k, v (F32, F16 or BF16)");
  sub->add_option("--out", o->out, "output .npy (the shape and type of q; float32 for bf16 input)")->required();
  sub->add_option("--lse", o->lse, "also write the log-sum-exp (float32, the shape of q without dim)");
  sub->add_flag("--causal", o->config.causal, "causal mask, bottom-right aligned when seq_q != seq_kv");
  sub->add_flag("--exact", o->exact, "exact attention instead of HyperAttention");
  sub->add_flag("--compare-exact", o->compare_exact, "also run exact attention and print the error and both times");
  sub->add_flag("--check-inputs", o->check_inputs, "refuse inputs holding NaN or Inf, saying where");
  sub->add_option("--scale", o->scale, "score scale (default 1/sqrt(dim))")->check(positive_finite_float());
  add_hyper_options(sub, &o->config);
  add_threads_option(sub, &o->config);
  sub->callback([o, sub] {
    if (o->in.empty() && (o->q.empty() || o->k.empty() || o->v.empty()))
      throw CLI::ValidationError("run", "give --q, --k and --v (.npy), or --in FILE.safetensors");
    if (!o->in.empty() && (!o->q.empty() || !o->k.empty() || !o->v.empty()))
      throw CLI::ValidationError("run", "give either --in or --q/--k/--v, not both");
    (void)sub;
  });
  return {sub, [o] { return run(*o); }};
}

}  // namespace hyperattn::cli
