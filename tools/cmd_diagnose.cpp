// tools/cmd_diagnose.cpp: `hyperattn diagnose`: per head, how well HyperAttention approximates one
// attention problem and why: output error against exact, the attention mass each row's LSH block
// captures, and the paper's fine-grained parameters alpha and kappa (model/attention_diagnostics.hpp).
//
// The problem is a model layer's attention on the first --seq-len tokens of a text (q, k after RoPE,
// causal by default, as the model runs it) or Q, K, V read from .npy files (non-causal by default).
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "commands.hpp"
#include "model/attention_diagnostics.hpp"
#include "model/llama_model.hpp"
#include "model/parallel.hpp"
#include "model/tokenizer.hpp"
#include "options.hpp"
#include "support/plot.hpp"
#include "support/progress.hpp"
#include "tensor_files.hpp"

namespace hyperattn::cli {
namespace {

struct DiagnoseOptions {
  std::string model_dir, text_path;
  std::int64_t seq_len = 8192;
  std::int64_t layer = -1;
  std::int64_t head = -1;  // -1: every query head
  std::string q, k, v;
  std::string mask;  // "causal", "none" or empty (causal for a model layer, none for files)
  std::string json_path, plot_path;
  std::string matmul = "f32";  // the model's matrix products up to the layer: f32 or bf16
  AttentionConfig config;
};

// The attention problem: fp32 storage and its views in the [1, heads, seq, head_dim] frame.
struct Problem {
  std::string source;
  std::vector<float> qkv;      // model: [n, q_width + 2 kv_width]
  std::vector<float> q, k, v;  // files: [1, heads, seq, head_dim] each
  TensorView q_view, k_view, v_view;
};

Status problem_from_model(const DiagnoseOptions& o, int threads, Problem* out) {
  model::LlamaModel llama;
  if (Status s = model::LlamaModel::load(o.model_dir, &llama,
                                        o.matmul == "bf16" ? model::MatmulPrecision::bf16 : model::MatmulPrecision::f32);
      !s.ok())
    return Status(s.code(), "--model: " + s.message());
  const model::LlamaConfig& c = llama.config();
  if (o.layer < 0 || o.layer >= c.num_layers) {
    return Status::InvalidArgument(fmt::format("--layer: expected 0..{} (the model has {} layers), found {}",
                                               c.num_layers - 1, c.num_layers, o.layer));
  }
  if (o.seq_len < 1 || o.seq_len > c.max_position_embeddings) {
    return Status::InvalidArgument(fmt::format("--seq-len: expected 1..{} (max_position_embeddings), found {}",
                                               c.max_position_embeddings, o.seq_len));
  }
  model::Tokenizer tokenizer;
  if (Status s = model::Tokenizer::load(o.model_dir, &tokenizer); !s.ok()) return Status(s.code(), "--model: " + s.message());
  std::string text;
  if (Status s = model::read_text_file(o.text_path, &text); !s.ok()) return Status(s.code(), "--text: " + s.message());
  std::vector<std::int32_t> tokens;
  if (Status s = tokenizer.encode(text, &tokens); !s.ok()) return Status(s.code(), "--text " + o.text_path + ": " + s.message());
  if (static_cast<std::int64_t>(tokens.size()) < o.seq_len) {
    return Status::InvalidArgument(
        fmt::format("--text {}: {} tokens, fewer than --seq-len {}", o.text_path, tokens.size(), o.seq_len));
  }
  model::PrefillOptions options;
  options.threads = threads;
  options.capture_layer = o.layer;
  options.capture_qkv = &out->qkv;
  options.stop_after_capture = true;
  std::vector<float> unused;
  HYPERATTN_RETURN_IF_ERROR(llama.prefill(tokens.data(), o.seq_len, options, &unused, nullptr));
  const std::int64_t n = o.seq_len, d = c.head_dim, width = c.q_width() + 2 * c.kv_width();
  float* base = out->qkv.data();
  out->q_view = {base, DType::f32, {1, c.heads_q, n, d}, {n * width, d, width, 1}};
  out->k_view = {base + c.q_width(), DType::f32, {1, c.heads_kv, n, d}, {n * width, d, width, 1}};
  out->v_view = {base + c.q_width() + c.kv_width(), DType::f32, {1, c.heads_kv, n, d}, {n * width, d, width, 1}};
  out->source = fmt::format("{} layer {} on the first {} tokens of {}", o.model_dir, o.layer, n, o.text_path);
  return Status::Ok();
}

Status problem_from_files(const DiagnoseOptions& o, Problem* out) {
  HostTensor q, k, v;
  HYPERATTN_RETURN_IF_ERROR(load_qkv(o.q, o.k, o.v, "", &q, &k, &v));
  if (q.view.batch() != 1) {
    return Status::InvalidArgument(
        fmt::format("--q: batch: expected 1 ([seq, dim] or [heads, seq, dim]), found {}", q.view.batch()));
  }
  out->q = to_f32(q);
  out->k = to_f32(k);
  out->v = to_f32(v);
  out->q_view = TensorView::bhsd(out->q.data(), DType::f32, 1, q.view.heads(), q.view.seq(), q.view.head_dim());
  out->k_view = TensorView::bhsd(out->k.data(), DType::f32, 1, k.view.heads(), k.view.seq(), k.view.head_dim());
  out->v_view = TensorView::bhsd(out->v.data(), DType::f32, 1, v.view.heads(), v.view.seq(), v.view.head_dim());
  out->source = fmt::format("q {}, k {}, v {}", o.q, o.k, o.v);
  return Status::Ok();
}

int run(const DiagnoseOptions& o) {
  if (!outputs_ok("diagnose", {{"--json", &o.json_path}, {"--plot", &o.plot_path}})) return 2;
  const bool from_model = !o.model_dir.empty();
  const int threads = model::resolve_threads(o.config.threads);
  Problem problem;
  Status s = from_model ? problem_from_model(o, threads, &problem) : problem_from_files(o, &problem);
  if (!s.ok()) {
    std::fprintf(stderr, "hyperattn diagnose: %s\n", s.message().c_str());
    return s.code() == StatusCode::invalid_argument || s.code() == StatusCode::io_error ||
                   s.code() == StatusCode::unsupported
               ? 2
               : 1;
  }
  AttentionConfig config = o.config;
  config.causal = o.mask.empty() ? from_model : o.mask == "causal";
  config.threads = threads;
  std::vector<std::int64_t> heads;
  if (o.head >= 0) heads.push_back(o.head);

  std::vector<model::HeadDiagnostics> result;
  {
    const std::int64_t steps = 2 + (heads.empty() ? problem.q_view.heads() : 1);
    tools::ProgressBar bar("diagnose", steps);
    s = model::diagnose_attention(problem.q_view, problem.k_view, problem.v_view, config, heads, threads, &result,
                                  [&bar] { bar.advance(); });
    bar.finish();
  }
  if (!s.ok()) {
    std::fprintf(stderr, "hyperattn diagnose: %s\n", s.message().c_str());
    return s.code() == StatusCode::invalid_argument || s.code() == StatusCode::unsupported ? 2 : 1;
  }

  const std::int64_t n_q = problem.q_view.seq(), n_k = problem.k_view.seq();
  std::printf("%s: heads_q %lld, heads_kv %lld, seq_q %lld, seq_kv %lld, head_dim %lld, %s\n", problem.source.c_str(),
              static_cast<long long>(problem.q_view.heads()), static_cast<long long>(problem.k_view.heads()),
              static_cast<long long>(n_q), static_cast<long long>(n_k),
              static_cast<long long>(problem.q_view.head_dim()), config.causal ? "causal" : "non-causal");
  std::printf("HyperAttention: block_size %lld, sample_size %lld, lsh_bits %d, min_seq_len %lld, seed %llu\n",
              static_cast<long long>(config.block_size), static_cast<long long>(config.sample_size), config.lsh_bits,
              static_cast<long long>(config.min_seq_len), static_cast<unsigned long long>(config.seed));
  std::printf("\n%4s %11s %11s | %27s %7s %7s %7s %7s | %10s %10s\n", "head", "err/|O|_F", "err/|V|_F",
              "captured mass: mean", "p10", "p50", "p90", "min", "alpha", "kappa");
  for (const auto& h : result) {
    std::printf("%4lld %11.3e %11.3e | %27.4f %7.4f %7.4f %7.4f %7.4f | %10.2f %10.3g\n",
                static_cast<long long>(h.head), h.error_rel_o, h.error_rel_v, h.captured_mean, h.captured_quantiles[1],
                h.captured_quantiles[3], h.captured_quantiles[5], h.captured_quantiles[0], h.alpha, h.kappa);
  }
  std::printf(
      "\ncaptured mass: share of each row's softmax mass in its own sorted-LSH block (the keys attended "
      "exactly);\nalpha = seq_kv * max_j ||column j of D^-1 A||^2; kappa = max_i / min_i of the row sums of A "
      "outside the LSH block");
  std::int64_t left_out = 0;
  for (const auto& h : result) left_out = std::max(left_out, h.kappa_rows_left_out);
  if (left_out > 0)
    std::printf(" (rows with no mass outside their block left out: up to %lld per head)",
                static_cast<long long>(left_out));
  std::printf(".\n");

  if (!o.json_path.empty()) {
    nlohmann::ordered_json j;
    j["source"] = problem.source;
    j["seq_q"] = n_q;
    j["seq_kv"] = n_k;
    j["heads_q"] = problem.q_view.heads();
    j["heads_kv"] = problem.k_view.heads();
    j["head_dim"] = problem.q_view.head_dim();
    j["causal"] = config.causal;
    if (from_model) j["layer"] = o.layer;
    j["block_size"] = config.block_size;
    j["sample_size"] = config.sample_size;
    j["lsh_bits"] = config.lsh_bits;
    j["min_seq_len"] = config.min_seq_len;
    j["seed"] = config.seed;
    j["heads"] = nlohmann::ordered_json::array();
    for (const auto& h : result) {
      nlohmann::ordered_json q = nlohmann::ordered_json::object();
      for (std::size_t i = 0; i < model::kCapturedQuantileLevels.size(); ++i) {
        q[fmt::format("{:g}", model::kCapturedQuantileLevels[i])] = h.captured_quantiles[i];
      }
      j["heads"].push_back(
          {{"head", h.head},
           {"error_rel_o", h.error_rel_o},
           {"error_rel_v", h.error_rel_v},
           {"captured_mean", h.captured_mean},
           {"captured_quantiles", q},
           {"alpha", h.alpha},
           {"kappa", std::isfinite(h.kappa) ? nlohmann::ordered_json(h.kappa) : nlohmann::ordered_json(nullptr)},
           {"kappa_rows_left_out", h.kappa_rows_left_out}});
    }
    std::ofstream out(o.json_path);
    out << j.dump(2) << "\n";
    if (!out) {
      std::fprintf(stderr, "hyperattn diagnose: --json %s: cannot write\n", o.json_path.c_str());
      return 1;
    }
  }

  if (!o.plot_path.empty()) {
    tools::PlotSpec plot;
    plot.title = fmt::format("captured attention mass by position ({}, b={}, r={})",
                             config.causal ? "causal" : "non-causal", config.block_size, config.lsh_bits);
    plot.xlabel = "query position";
    plot.ylabel = "share of the row's mass in its LSH block";
    plot.output_png = o.plot_path;
    const std::int64_t bins = std::min<std::int64_t>(n_q, 256);
    for (const auto& h : result) {
      tools::Series series{fmt::format("head {}", h.head), {}, {}, tools::SeriesStyle::lines};
      for (std::int64_t b = 0; b < bins; ++b) {
        const std::int64_t lo = n_q * b / bins, hi = n_q * (b + 1) / bins;
        double sum = 0.0;
        for (std::int64_t i = lo; i < hi; ++i) sum += h.captured[static_cast<std::size_t>(i)];
        series.x.push_back(0.5 * static_cast<double>(lo + hi - 1));
        series.y.push_back(sum / static_cast<double>(hi - lo));
      }
      plot.series.push_back(std::move(series));
    }
    if (Status p = tools::plot_png(plot); !p.ok()) {
      std::fprintf(stderr, "hyperattn diagnose: --plot: %s\n", p.message().c_str());
      return 1;
    }
  }
  return 0;
}

}  // namespace

Command add_diagnose_command(CLI::App& app) {
  auto o = std::make_shared<DiagnoseOptions>();
  CLI::App* sub = app.add_subcommand(
      "diagnose", "per head: HyperAttention's error, the attention mass its LSH blocks capture, alpha and kappa");
  sub->add_option("--model", o->model_dir, "Hugging Face model folder: diagnose one of its layers");
  sub->add_option("--text", o->text_path, "text whose first --seq-len tokens the model reads");
  sub->add_option("--seq-len", o->seq_len, "tokens (with --model)")->capture_default_str()->check(positive_integer<std::int64_t>());
  sub->add_option("--layer", o->layer, "layer (0-based, with --model)")->check(nonnegative_integer<std::int64_t>());
  sub->add_option("--head", o->head, "one query head (default: all)")->check(nonnegative_integer<std::int64_t>());
  sub->add_option("--q", o->q, ".npy queries [seq, dim] or [heads, seq, dim] (instead of --model)");
  sub->add_option("--k", o->k, ".npy keys (heads may divide the query heads)");
  sub->add_option("--v", o->v, ".npy values, the shape of k");
  sub->add_option("--mask", o->mask, "causal or none (default: causal for --model, none for --q/--k/--v)")
      ->check(CLI::IsMember({"causal", "none"}));
  sub->add_option("--matmul", o->matmul, "the model's matrix products up to the layer: f32 or bf16 (with --model)")
      ->capture_default_str()
      ->check(CLI::IsMember({"f32", "bf16"}));
  sub->add_option("--json", o->json_path, "write the per-head results as JSON");
  sub->add_option("--plot", o->plot_path, "PNG of the captured mass by query position, one line per head");
  add_hyper_options(sub, &o->config);
  add_threads_option(sub, &o->config);
  sub->callback([o] {
    const bool model = !o->model_dir.empty();
    const bool files = !o->q.empty() || !o->k.empty() || !o->v.empty();
    if (model == files)
      throw CLI::ValidationError("diagnose", "give either --model (with --text, --layer) or --q, --k, --v");
    if (model && (o->text_path.empty() || o->layer < 0))
      throw CLI::ValidationError("diagnose", "--model needs --text and --layer");
    if (files && (o->q.empty() || o->k.empty() || o->v.empty()))
      throw CLI::ValidationError("diagnose", "give all of --q, --k and --v");
  });
  return {sub, [o] { return run(*o); }};
}

}  // namespace hyperattn::cli
