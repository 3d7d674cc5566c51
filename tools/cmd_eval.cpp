// tools/cmd_eval.cpp: `hyperattn eval`: perplexity and KL divergence of a Llama-family model with
// HyperAttention patched into some layers, against the same model with exact attention.
//
// The text is tokenized whole; W consecutive non-overlapping windows of N tokens are taken from its
// start. Per window the exact run and each patched run go through the whole decoder to their final
// hidden states ([N, hidden], small); the output head then scores both runs chunk by chunk, giving
// the NLL of every next token and KL(exact || patched) per position without an [N, vocab] matrix.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "commands.hpp"
#include "layer_keys_calibration.hpp"
#include "model/layer_budget.hpp"
#include "model/llama_model.hpp"
#include "model/next_token_scores.hpp"
#include "model/parallel.hpp"
#include "model/patch_spec.hpp"
#include "model/tokenizer.hpp"
#include "options.hpp"
#include "support/plot.hpp"
#include "support/progress.hpp"

namespace hyperattn::cli {
namespace {

using model::LayerAttention;
using model::PrefillTimings;

struct EvalOptions {
  std::string model_dir, text_path, json_path, plot_path, per_position_path;
  std::int64_t seq_len = 8192;
  std::int64_t windows = 0;  // 0: as many as fit
  std::vector<std::string> patches;
  std::string layer_keys;  // "--layer-keys": empty, "auto" or one count per layer
  std::string matmul = "f32";  // "--matmul": f32 or bf16
  AttentionConfig config;
  bool quiet = false;
};

// Sums over windows for one run (exact or one patch).
struct RunTotals {
  double nll_sum = 0, kl_sum = 0;
  std::int64_t positions = 0;
  double prefill_seconds = 0, head_seconds = 0;
  PrefillTimings timings;
  std::vector<double> window_ppl;
  double ppl() const { return std::exp(nll_sum / static_cast<double>(positions)); }
  double kl() const { return kl_sum / static_cast<double>(positions); }
  double seconds() const { return prefill_seconds + head_seconds; }
};

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

nlohmann::ordered_json timings_json(const PrefillTimings& t, double head) {
  return {{"embed", t.embed},         {"norm", t.norm},     {"qkv_proj", t.qkv_proj}, {"rope", t.rope},
          {"attention", t.attention}, {"o_proj", t.o_proj}, {"mlp", t.mlp},           {"lm_head_log_softmax", head}};
}

std::string timing_line(const PrefillTimings& t, double head) {
  return fmt::format("attention {:.2f}, qkv {:.2f}, o_proj {:.2f}, mlp {:.2f}, norm {:.2f}, rope {:.2f}, head {:.2f}",
                     t.attention, t.qkv_proj, t.o_proj, t.mlp, t.norm, t.rope, head);
}

// What the evaluation runs on: the model, the parsed patches and the tokenized text.
struct EvalSetup {
  model::LlamaModel llama;
  std::vector<model::PatchSpec> patches;
  std::vector<std::int64_t> layer_keys;  // [layers] from --layer-keys; empty: the configured budget
  bool auto_layer_keys = false;          // --layer-keys auto
  std::vector<std::int32_t> tokens;      // [text tokens]
  double tokenize_seconds = 0;
  std::int64_t windows = 0;              // windows of seq_len tokens evaluated
  int threads = 1;
};

// The totals of the exact run and of each patched run over the windows evaluated so far.
struct EvalTotals {
  RunTotals exact;
  std::vector<RunTotals> patched;  // [patches]
};

// Loads the model and the tokenizer, parses --patch and --layer-keys, tokenizes --text and counts the
// windows. Returns 0, or 2 after printing what was wrong.
int load_setup(const EvalOptions& o, EvalSetup* in) {
  in->threads = model::resolve_threads(o.config.threads);
  const model::MatmulPrecision matmul =
      o.matmul == "bf16" ? model::MatmulPrecision::bf16 : model::MatmulPrecision::f32;
  if (Status s = model::LlamaModel::load(o.model_dir, &in->llama, matmul); !s.ok()) {
    std::fprintf(stderr, "hyperattn eval: --model: %s\n", s.message().c_str());
    return 2;
  }
  const model::LlamaConfig& cfg = in->llama.config();
  for (const std::string& text : o.patches) {
    model::PatchSpec p;
    if (Status s = model::parse_patch_spec(text, cfg.num_layers, &p); !s.ok()) {
      std::fprintf(stderr, "hyperattn eval: %s\n", s.message().c_str());
      return 2;
    }
    in->patches.push_back(std::move(p));
  }
  if (!o.layer_keys.empty()) {
    if (Status s = model::parse_layer_keys(o.layer_keys, cfg.num_layers, &in->layer_keys, &in->auto_layer_keys);
        !s.ok()) {
      std::fprintf(stderr, "hyperattn eval: %s\n", s.message().c_str());
      return 2;
    }
  }
  if (o.seq_len < 2 || o.seq_len > cfg.max_position_embeddings) {
    std::fprintf(stderr, "hyperattn eval: --seq-len: expected 2..%lld (max_position_embeddings of %s), found %lld\n",
                 static_cast<long long>(cfg.max_position_embeddings), o.model_dir.c_str(),
                 static_cast<long long>(o.seq_len));
    return 2;
  }
  model::Tokenizer tokenizer;
  if (Status s = model::Tokenizer::load(o.model_dir, &tokenizer); !s.ok()) {
    std::fprintf(stderr, "hyperattn eval: --model: %s\n", s.message().c_str());
    return 2;
  }
  std::string text;
  if (Status s = model::read_text_file(o.text_path, &text); !s.ok()) {
    std::fprintf(stderr, "hyperattn eval: --text: %s\n", s.message().c_str());
    return 2;
  }
  const auto start = std::chrono::steady_clock::now();
  if (Status s = tokenizer.encode(text, &in->tokens); !s.ok()) {
    std::fprintf(stderr, "hyperattn eval: --text %s: %s\n", o.text_path.c_str(), s.message().c_str());
    return 2;
  }
  in->tokenize_seconds = seconds_since(start);
  const auto total_tokens = static_cast<std::int64_t>(in->tokens.size());
  const std::int64_t fit = total_tokens / o.seq_len;
  if (fit < 1) {
    std::fprintf(stderr, "hyperattn eval: --text %s: %lld tokens, fewer than one window of --seq-len %lld\n",
                 o.text_path.c_str(), static_cast<long long>(total_tokens), static_cast<long long>(o.seq_len));
    return 2;
  }
  in->windows = o.windows > 0 ? std::min(o.windows, fit) : fit;
  if (o.windows > fit) {
    std::fprintf(stderr,
                 "hyperattn eval: note: --windows %lld but only %lld windows of %lld tokens fit in %s; using %lld\n",
                 static_cast<long long>(o.windows), static_cast<long long>(fit), static_cast<long long>(o.seq_len),
                 o.text_path.c_str(), static_cast<long long>(fit));
  }
  return 0;
}

// The model, the text and the HyperAttention parameters, before any run.
void print_header(const EvalOptions& o, const EvalSetup& in) {
  const model::LlamaConfig& cfg = in.llama.config();
  const AttentionConfig& h = o.config;
  std::printf("model %s: %lld layers, hidden %lld, heads_q %lld, heads_kv %lld, head_dim %lld, vocab %lld\n",
              o.model_dir.c_str(), static_cast<long long>(cfg.num_layers), static_cast<long long>(cfg.hidden_size),
              static_cast<long long>(cfg.heads_q), static_cast<long long>(cfg.heads_kv),
              static_cast<long long>(cfg.head_dim), static_cast<long long>(cfg.vocab_size));
  std::printf("text %s: %lld tokens (%.2f s to tokenize); %lld windows of %lld tokens from the start\n",
              o.text_path.c_str(), static_cast<long long>(in.tokens.size()), in.tokenize_seconds,
              static_cast<long long>(in.windows), static_cast<long long>(o.seq_len));
  std::printf(
      "HyperAttention: block_size %lld, sample_size %lld, lsh_bits %d, min_seq_len %lld, seed %llu; %d threads; "
      "%s matrix products\n",
      static_cast<long long>(h.block_size), static_cast<long long>(h.sample_size), h.lsh_bits,
      static_cast<long long>(h.min_seq_len), static_cast<unsigned long long>(h.seed), in.threads, o.matmul.c_str());
  std::fflush(stdout);
}

// Adds one window's scores of a patched run to its totals, and every position to `per_position` when
// it is open. The first patch's scores also carry the exact run's (reference_nll), added to `exact`.
void add_window_scores(const model::NextTokenScores& scores, const model::ScoreTimings& st,
                       const model::PatchSpec& patch, std::int64_t w, bool first_patch, std::ofstream& per_position,
                       RunTotals* r, RunTotals* exact) {
  r->head_seconds += st.head;
  double window_nll = 0.0;
  for (std::size_t i = 0; i < scores.nll.size(); ++i) {
    window_nll += scores.nll[i];
    r->kl_sum += scores.kl[i];
  }
  if (per_position) {
    for (std::size_t i = 0; i < scores.kl.size(); ++i)
      per_position << patch.text << '\t' << w << '\t' << i + 1 << '\t' << scores.reference_nll[i] << '\t'
                   << scores.nll[i] << '\t' << scores.kl[i] << '\n';
  }
  r->nll_sum += window_nll;
  r->positions += static_cast<std::int64_t>(scores.nll.size());
  r->window_ppl.push_back(std::exp(window_nll / static_cast<double>(scores.nll.size())));
  if (first_patch) {  // the exact run's scores come with the first patch's
    double exact_nll = 0.0;
    for (double x : scores.reference_nll) exact_nll += x;
    exact->nll_sum += exact_nll;
    exact->positions += static_cast<std::int64_t>(scores.reference_nll.size());
    exact->head_seconds += st.reference_head;
    exact->window_ppl.push_back(std::exp(exact_nll / static_cast<double>(scores.reference_nll.size())));
  }
}

// Window w: the exact prefill, then each patch's prefill scored against it. Returns 0, or 1 after
// printing the failure.
int evaluate_window(const EvalOptions& o, const EvalSetup& in, const std::vector<std::vector<std::int64_t>>& patch_keys,
                    std::int64_t w, tools::ProgressBar& bar, std::ofstream& per_position, EvalTotals* totals) {
  const std::int32_t* window = in.tokens.data() + w * o.seq_len;
  model::PrefillOptions options;
  options.threads = in.threads;
  options.hyper = o.config;
  options.on_layer_done = [&bar](std::int64_t) { bar.advance(); };
  std::vector<float> exact_hidden, patched_hidden;  // [seq_len, hidden]

  auto start = std::chrono::steady_clock::now();
  PrefillTimings t;
  if (Status s = in.llama.prefill(window, o.seq_len, options, &exact_hidden, &t); !s.ok()) {
    bar.finish();
    std::fprintf(stderr, "hyperattn eval: window %lld, exact: %s\n", static_cast<long long>(w), s.message().c_str());
    return 1;
  }
  RunTotals& exact = totals->exact;
  exact.prefill_seconds += seconds_since(start);
  exact.timings += t;

  for (std::size_t p = 0; p < in.patches.size(); ++p) {
    options.layer_attention = in.patches[p].layer_attention;
    options.layer_keys = patch_keys[p];
    PrefillTimings pt;
    start = std::chrono::steady_clock::now();
    if (Status s = in.llama.prefill(window, o.seq_len, options, &patched_hidden, &pt); !s.ok()) {
      bar.finish();
      std::fprintf(stderr, "hyperattn eval: window %lld, --patch %s: %s\n", static_cast<long long>(w),
                   in.patches[p].text.c_str(), s.message().c_str());
      return 1;
    }
    RunTotals& r = totals->patched[p];
    r.prefill_seconds += seconds_since(start);
    r.timings += pt;
    model::NextTokenScores scores;
    model::ScoreTimings st;
    if (Status s = model::score_next_tokens(in.llama, patched_hidden.data(), exact_hidden.data(), window, o.seq_len,
                                            in.threads, &scores, &st);
        !s.ok()) {
      bar.finish();
      std::fprintf(stderr, "hyperattn eval: window %lld: %s\n", static_cast<long long>(w), s.message().c_str());
      return 1;
    }
    add_window_scores(scores, st, in.patches[p], w, p == 0, per_position, &r, &exact);
  }
  if (in.patches.empty()) {  // unreachable from the CLI (defaults apply), kept for completeness
    model::NextTokenScores scores;
    model::ScoreTimings st;
    if (Status s = model::score_next_tokens(in.llama, exact_hidden.data(), nullptr, window, o.seq_len, in.threads,
                                            &scores, &st);
        !s.ok()) {
      std::fprintf(stderr, "hyperattn eval: %s\n", s.message().c_str());
      return 1;
    }
    for (double x : scores.nll) exact.nll_sum += x;
    exact.positions += static_cast<std::int64_t>(scores.nll.size());
    exact.head_seconds += st.head;
  }
  return 0;
}

// Every window, with the progress bar and the --per-position TSV. Returns 0, or the exit code after
// printing the failure.
int evaluate_windows(const EvalOptions& o, const EvalSetup& in,
                     const std::vector<std::vector<std::int64_t>>& patch_keys, EvalTotals* totals) {
  std::ofstream per_position;
  if (!o.per_position_path.empty()) {
    per_position.open(o.per_position_path);
    if (!per_position) {
      std::fprintf(stderr, "hyperattn eval: --per-position %s: cannot write\n", o.per_position_path.c_str());
      return 2;
    }
    per_position.precision(9);
    per_position << "patch\twindow\tposition\tnll_exact\tnll_patched\tkl\n";
  }
  tools::ProgressBar bar("eval", in.windows * static_cast<std::int64_t>(1 + in.patches.size()) *
                                     in.llama.config().num_layers,
                         o.quiet ? tools::ProgressStyle::off : tools::default_progress_style());
  totals->patched.resize(in.patches.size());
  for (std::int64_t w = 0; w < in.windows; ++w) {
    if (int rc = evaluate_window(o, in, patch_keys, w, bar, per_position, totals); rc != 0) return rc;
  }
  bar.finish();
  if (!o.per_position_path.empty() && !per_position.flush()) {
    std::fprintf(stderr, "hyperattn eval: --per-position %s: cannot write\n", o.per_position_path.c_str());
    return 1;
  }
  return 0;
}

// The table of perplexity, KL and seconds per run, then the time by part.
void print_report(const std::vector<model::PatchSpec>& patches, const EvalTotals& totals) {
  const RunTotals& exact = totals.exact;
  const double ppl_exact = exact.ppl();
  std::printf("\n%-12s %-12s %10s %10s %10s %9s %16s\n", "patch", "hyper layers", "ppl", "increase", "KL", "seconds",
              "attention s (%)");
  std::printf("%-12s %-12s %10.4f %10s %10s %9.2f %9.2f (%3.0f%%)\n", "exact", "-", ppl_exact, "-", "-",
              exact.seconds(), exact.timings.attention, 100.0 * exact.timings.attention / exact.seconds());
  for (std::size_t p = 0; p < patches.size(); ++p) {
    const RunTotals& r = totals.patched[p];
    std::printf("%-12s %-12s %10.4f %+9.3f%% %10.6f %9.2f %9.2f (%3.0f%%)\n", patches[p].text.c_str(),
                patches[p].layer_list().c_str(), r.ppl(), 100.0 * (r.ppl() / ppl_exact - 1.0), r.kl(), r.seconds(),
                r.timings.attention, 100.0 * r.timings.attention / r.seconds());
  }
  std::printf("\ntime by part, exact runs (s): %s\n", timing_line(exact.timings, exact.head_seconds).c_str());
  for (std::size_t p = 0; p < patches.size(); ++p) {
    std::printf("time by part, %s (s): %s\n", patches[p].text.c_str(),
                timing_line(totals.patched[p].timings, totals.patched[p].head_seconds).c_str());
  }
}

// --json: the settings and every run's results. Returns 0, or 1 after printing the failure.
int write_json(const EvalOptions& o, const EvalSetup& in, const std::vector<double>& layer_sensitivity,
               const std::vector<std::vector<std::int64_t>>& patch_keys, const EvalTotals& totals) {
  const AttentionConfig& h = o.config;
  const RunTotals& exact = totals.exact;
  const double ppl_exact = exact.ppl();
  nlohmann::ordered_json j;
  j["model"] = o.model_dir;
  j["text"] = o.text_path;
  j["text_tokens"] = static_cast<std::int64_t>(in.tokens.size());
  j["seq_len"] = o.seq_len;
  j["windows"] = in.windows;
  j["threads"] = in.threads;
  j["matmul"] = o.matmul;
  j["ppl_exact"] = ppl_exact;
  j["nll_exact"] = exact.nll_sum / static_cast<double>(exact.positions);
  j["ppl_exact_per_window"] = exact.window_ppl;
  j["exact_seconds"] = exact.seconds();
  j["exact_attention_seconds"] = exact.timings.attention;
  j["exact_timings"] = timings_json(exact.timings, exact.head_seconds);
  if (!layer_sensitivity.empty()) j["layer_sensitivity_kl"] = layer_sensitivity;
  j["results"] = nlohmann::ordered_json::array();
  for (std::size_t p = 0; p < in.patches.size(); ++p) {
    const model::PatchSpec& patch = in.patches[p];
    const RunTotals& r = totals.patched[p];
    std::vector<std::int64_t> layers;
    for (std::size_t l = 0; l < patch.layer_attention.size(); ++l)
      if (patch.layer_attention[l] == LayerAttention::hyper) layers.push_back(static_cast<std::int64_t>(l));
    j["results"].push_back({{"patch", patch.text},
                            {"layers", layers},
                            {"patched_layers", patch.patched_layers()},
                            {"ppl", r.ppl()},
                            {"ppl_increase_pct", 100.0 * (r.ppl() / ppl_exact - 1.0)},
                            {"kl", r.kl()},
                            {"ppl_per_window", r.window_ppl},
                            {"block_size", h.block_size},
                            {"sample_size", h.sample_size},
                            {"min_seq_len", h.min_seq_len},
                            {"lsh_bits", h.lsh_bits},
                            {"seed", h.seed},
                            {"sink_keys", h.sink_keys},
                            {"local_window", h.local_window},
                            {"layer_keys", patch_keys[p]},
                            // enum codes of AttentionConfig (0 = uniform / gray_rank, the paper)
                            {"sampling_code", static_cast<int>(h.sampling)},
                            {"bucket_order_code", static_cast<int>(h.bucket_order)},
                            {"seconds", r.seconds()},
                            {"attention_seconds", r.timings.attention},
                            {"timings", timings_json(r.timings, r.head_seconds)}});
  }
  std::ofstream out(o.json_path);
  out << j.dump(2) << "\n";
  if (!out) {
    std::fprintf(stderr, "hyperattn eval: --json %s: cannot write\n", o.json_path.c_str());
    return 1;
  }
  return 0;
}

// Reorders a series' points by increasing x.
void sort_by_x(tools::Series* s) {
  std::vector<std::size_t> order(s->x.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return s->x[a] < s->x[b]; });
  std::vector<double> x, y;
  for (auto i : order) {
    x.push_back(s->x[i]);
    y.push_back(s->y[i]);
  }
  s->x = x;
  s->y = y;
}

// --plot: perplexity against the number of patched layers. Returns 0, or 1 after printing the failure.
int write_plot(const EvalOptions& o, const EvalSetup& in, const EvalTotals& totals) {
  const AttentionConfig& h = o.config;
  const double ppl_exact = totals.exact.ppl();
  tools::PlotSpec plot;
  plot.title =
      fmt::format("{}: {} window{} of {} tokens (b={}, m={}, r={}, min_seq_len={})", o.text_path, in.windows,
                  in.windows == 1 ? "" : "s", o.seq_len, h.block_size, h.sample_size, h.lsh_bits, h.min_seq_len);
  plot.xlabel = "layers with HyperAttention";
  plot.ylabel = "perplexity";
  plot.output_png = o.plot_path;
  tools::Series exact_line{"exact attention",
                           {0.0, static_cast<double>(in.llama.config().num_layers)},
                           {ppl_exact, ppl_exact},
                           tools::SeriesStyle::lines};
  // One series per kind of patch (last:K, first:K, all, explicit lists), each from (0, exact).
  std::vector<tools::Series> kinds;
  for (std::size_t p = 0; p < in.patches.size(); ++p) {
    const std::string& t = in.patches[p].text;
    std::string kind = t.rfind("last:", 0) == 0    ? "last K layers"
                       : t.rfind("first:", 0) == 0 ? "first K layers"
                       : t == "all"                ? "last K layers"
                                                   : "listed layers (" + t + ")";
    auto it = std::find_if(kinds.begin(), kinds.end(), [&](const tools::Series& s) { return s.label == kind; });
    if (it == kinds.end()) {
      kinds.push_back({kind, {0.0}, {ppl_exact}, tools::SeriesStyle::lines_points});
      it = kinds.end() - 1;
    }
    it->x.push_back(static_cast<double>(in.patches[p].patched_layers()));
    it->y.push_back(totals.patched[p].ppl());
  }
  for (auto& s : kinds) sort_by_x(&s);
  plot.series.push_back(exact_line);
  for (auto& s : kinds) plot.series.push_back(std::move(s));
  if (Status s = tools::plot_png(plot); !s.ok()) {
    std::fprintf(stderr, "hyperattn eval: --plot: %s\n", s.message().c_str());
    return 1;
  }
  return 0;
}

int run(const EvalOptions& o) {
  if (!outputs_ok("eval", {{"--json", &o.json_path}, {"--plot", &o.plot_path}, {"--per-position", &o.per_position_path}}))
    return 2;
  EvalSetup in;
  if (int rc = load_setup(o, &in); rc != 0) return rc;
  if (!o.quiet) print_header(o, in);

  std::vector<double> layer_sensitivity;  // [layers], measured by --layer-keys auto
  // [patches][layers]: keys per query of each patch's layers (empty: the configured budget everywhere)
  std::vector<std::vector<std::int64_t>> patch_keys(in.patches.size(), in.layer_keys);
  if (in.auto_layer_keys) {
    if (int rc = calibrate_layer_keys(in.llama, in.tokens.data(), o.seq_len, in.patches, o.config, in.threads, o.quiet,
                                      &layer_sensitivity, &patch_keys);
        rc != 0)
      return rc;
  }

  EvalTotals totals;
  if (int rc = evaluate_windows(o, in, patch_keys, &totals); rc != 0) return rc;
  print_report(in.patches, totals);
  if (!o.json_path.empty()) {
    if (int rc = write_json(o, in, layer_sensitivity, patch_keys, totals); rc != 0) return rc;
  }
  if (!o.plot_path.empty()) {
    if (int rc = write_plot(o, in, totals); rc != 0) return rc;
  }
  return 0;
}

}  // namespace

Command add_eval_command(CLI::App& app) {
  auto o = std::make_shared<EvalOptions>();
  CLI::App* sub = app.add_subcommand(
      "eval", "perplexity and KL divergence of a Llama-family model with HyperAttention in some layers vs exact");
  sub->add_option("--model", o->model_dir, "Hugging Face model folder (config.json, safetensors, tokenizer.model)")
      ->required();
  sub->add_option("--text", o->text_path, "text file to evaluate on (tokenized whole)")->required();
  sub->add_option("--seq-len", o->seq_len, "tokens per window")->capture_default_str()->check(positive_integer<std::int64_t>());
  sub->add_option("--windows", o->windows, "consecutive windows from the start of the text (default: as many as fit)")
      ->check(positive_integer<std::int64_t>());
  sub->add_option("--patch", o->patches,
                  "layers with HyperAttention: all, last:K, first:K or layers:i+j+... (0-based); repeatable "
                  "(default: last:2 and all)");
  sub->add_option("--layer-keys", o->layer_keys,
                  "per-layer budgets: keys per query (block + samples) of each layer, comma-separated, split between "
                  "block and samples as --block-size : --sample-size; or \"auto\": measure each layer's KL alone on "
                  "the first window and share layers x (block + samples) keys in proportion to sqrt(KL)");
  sub->add_option("--json", o->json_path, "write the results as JSON");
  sub->add_option("--per-position", o->per_position_path,
                  "write every scored position as TSV: patch, window, position (of the predicted token), NLL exact "
                  "and patched, KL (nats)");
  sub->add_option("--plot", o->plot_path, "write a PNG of perplexity against the number of patched layers");
  sub->add_option("--matmul", o->matmul,
                  "arithmetic of the projections, MLP and output head: f32 (reproduces the model's fp32 reference) "
                  "or bf16 (bf16 operands, fp32 sums: twice as fast with AVX512-BF16; exact and patched runs alike)")
      ->capture_default_str()
      ->check(CLI::IsMember({"f32", "bf16"}));
  sub->add_flag("--quiet", o->quiet, "no header and no progress bar");
  add_hyper_options(sub, &o->config);
  add_threads_option(sub, &o->config);
  return {sub, [o] {
            if (o->patches.empty()) o->patches = {"last:2", "all"};
            return run(*o);
          }};
}

}  // namespace hyperattn::cli
