// tools/layer_keys_calibration.cpp: `hyperattn eval --layer-keys auto` (see layer_keys_calibration.hpp).
#include "layer_keys_calibration.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "model/layer_budget.hpp"
#include "model/next_token_scores.hpp"
#include "support/progress.hpp"

namespace hyperattn::cli {
namespace {

using model::LayerAttention;

// [layers]: whether some patch runs HyperAttention in the layer.
std::vector<bool> layers_some_patch_approximates(const std::vector<model::PatchSpec>& patches,
                                                 std::int64_t num_layers) {
  std::vector<bool> used(static_cast<std::size_t>(num_layers), false);
  for (const model::PatchSpec& ps : patches)
    for (std::size_t l = 0; l < ps.layer_attention.size(); ++l)
      if (ps.layer_attention[l] == LayerAttention::hyper) used[l] = true;
  return used;
}

// The KL of each layer in `used` patched alone, against the exact run; 0 for the others.
int measure_layer_sensitivity(const model::LlamaModel& llama, const std::int32_t* tokens, std::int64_t seq_len,
                              const std::vector<bool>& used, const AttentionConfig& hyper, int threads, bool quiet,
                              std::vector<double>* layer_sensitivity) {
  const std::int64_t num_layers = llama.config().num_layers;
  const auto calibrated = static_cast<std::int64_t>(std::count(used.begin(), used.end(), true));
  tools::ProgressBar cal("calibrate", (1 + calibrated) * num_layers,
                         quiet ? tools::ProgressStyle::off : tools::default_progress_style());
  model::PrefillOptions options;
  options.threads = threads;
  options.hyper = hyper;
  options.on_layer_done = [&cal](std::int64_t) { cal.advance(); };
  std::vector<float> exact_hidden, patched_hidden;  // [seq_len, hidden]
  model::PrefillTimings unused;
  if (Status s = llama.prefill(tokens, seq_len, options, &exact_hidden, &unused); !s.ok()) {
    cal.finish();
    std::fprintf(stderr, "hyperattn eval: --layer-keys auto: exact: %s\n", s.message().c_str());
    return 1;
  }
  for (std::int64_t l = 0; l < num_layers; ++l) {
    if (!used[static_cast<std::size_t>(l)]) {
      layer_sensitivity->push_back(0.0);  // no patch approximates it
      continue;
    }
    options.layer_attention.assign(static_cast<std::size_t>(num_layers), LayerAttention::exact);
    options.layer_attention[static_cast<std::size_t>(l)] = LayerAttention::hyper;
    model::NextTokenScores scores;
    model::ScoreTimings st;
    Status s = llama.prefill(tokens, seq_len, options, &patched_hidden, &unused);
    if (s.ok())
      s = model::score_next_tokens(llama, patched_hidden.data(), exact_hidden.data(), tokens, seq_len, threads,
                                   &scores, &st);
    if (!s.ok()) {
      cal.finish();
      std::fprintf(stderr, "hyperattn eval: --layer-keys auto: layer %lld: %s\n", static_cast<long long>(l),
                   s.message().c_str());
      return 1;
    }
    layer_sensitivity->push_back(model::mean_of(scores.kl));
  }
  cal.finish();
  return 0;
}

// A patch's keys per query by layer: the sqrt(KL) shares of mean_keys over the layers it patches,
// mean_keys in the others (unused). Prints them.
int allocate_patch_keys(const model::PatchSpec& patch, const std::vector<double>& layer_sensitivity,
                        std::int64_t mean_keys, std::vector<std::int64_t>* keys) {
  std::vector<double> sens;  // [patched layers]
  for (std::size_t l = 0; l < layer_sensitivity.size(); ++l)
    if (patch.layer_attention[l] == LayerAttention::hyper) sens.push_back(layer_sensitivity[l]);
  std::vector<std::int64_t> shares;
  if (Status s = model::allocate_layer_keys(sens, mean_keys, std::max<std::int64_t>(1, mean_keys / 4), &shares);
      !s.ok()) {
    std::fprintf(stderr, "hyperattn eval: --layer-keys auto: --patch %s: %s\n", patch.text.c_str(),
                 s.message().c_str());
    return 1;
  }
  keys->assign(layer_sensitivity.size(), mean_keys);  // layers left exact: unused
  std::string list;
  for (std::size_t l = 0, i = 0; l < keys->size(); ++l) {
    if (patch.layer_attention[l] == LayerAttention::hyper) (*keys)[l] = shares[i++];
    list += fmt::format("{}{}", l ? "," : "", (*keys)[l]);
  }
  std::printf("                   --patch %s: keys per query by layer (sqrt(KL) shares, mean over its layers <= "
              "%lld): %s\n",
              patch.text.c_str(), static_cast<long long>(mean_keys), list.c_str());
  return 0;
}

}  // namespace

int calibrate_layer_keys(const model::LlamaModel& llama, const std::int32_t* tokens, std::int64_t seq_len,
                         const std::vector<model::PatchSpec>& patches, const AttentionConfig& hyper, int threads,
                         bool quiet, std::vector<double>* layer_sensitivity,
                         std::vector<std::vector<std::int64_t>>* patch_keys) {
  const std::vector<bool> used = layers_some_patch_approximates(patches, llama.config().num_layers);
  if (int rc = measure_layer_sensitivity(llama, tokens, seq_len, used, hyper, threads, quiet, layer_sensitivity);
      rc != 0)
    return rc;
  const std::int64_t mean_keys = hyper.block_size + hyper.sample_size;
  std::printf("--layer-keys auto: per-layer KL on window 0 at %lld keys:", static_cast<long long>(mean_keys));
  for (std::size_t l = 0; l < layer_sensitivity->size(); ++l)
    std::printf(used[l] ? " %.5f" : " -", (*layer_sensitivity)[l]);
  std::printf("\n");
  patch_keys->resize(patches.size());
  for (std::size_t p = 0; p < patches.size(); ++p) {
    if (int rc = allocate_patch_keys(patches[p], *layer_sensitivity, mean_keys, &(*patch_keys)[p]); rc != 0)
      return rc;
  }
  std::fflush(stdout);
  return 0;
}

}  // namespace hyperattn::cli
