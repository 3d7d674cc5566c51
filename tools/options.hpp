// tools/options.hpp: the HyperAttention flags shared by run, bench, eval and diagnose.
#pragma once

#include <string>

#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "checks.hpp"
#include "hyperattn/config.hpp"

namespace hyperattn::cli {

// --preset paper|stratified|stratified-window, applied once every other flag is parsed (it rewrites block and
// sample sizes for the same keys per query).
inline void add_preset_option(CLI::App* app, AttentionConfig* config) {
  auto preset = std::make_shared<std::string>();
  app->add_option("--preset", *preset, "paper (the published algorithm), stratified (same keys per query: 1/8 block, 7/8 stratified samples) or "
                  "stratified-window (1/4 block, stratified samples and a causal local window of 1/4 of the keys, its cost "
                  "taken from the samples)")
      ->check(CLI::IsMember({"paper", "stratified", "stratified-window"}));
  app->parse_complete_callback([preset, config] {
    if (!preset->empty()) (void)apply_preset(*preset, config);  // the name was checked above
  });
}

// --block-size --sample-size --lsh-bits --min-seq-len --seed --bucket-order --sampling, bound to
// the fields of `config` (whose current values are the defaults shown in --help).
inline void add_hyper_options(CLI::App* app, AttentionConfig* config) {
  app->add_option("--block-size", config->block_size, "keys per sorted LSH block (b)")->capture_default_str()->check(integer_in<std::int64_t>(1, std::int64_t{1} << 30));
  app->add_option("--sample-size", config->sample_size, "sampled residual keys per query block (m)")->capture_default_str()->check(integer_in<std::int64_t>(0, std::int64_t{1} << 24));
  app->add_option("--lsh-bits", config->lsh_bits, "hash bits r (2^r buckets)")->capture_default_str()->check(integer_in<int>(1, 16));
  app->add_option("--min-seq-len", config->min_seq_len, "below this many queries (and at the causal leaves) attention is exact")->capture_default_str()->check(nonnegative_integer<std::int64_t>());
  app->add_option("--seed", config->seed, "seed of the random projections and samples (0 to 2^64-1)")->capture_default_str()->check(nonnegative_integer<std::uint64_t>());
  app->add_option_function<std::string>(
         "--bucket-order",
         [config](const std::string& v) { config->bucket_order = v == "reference" ? BucketOrder::reference_gray : BucketOrder::gray_rank; },
         "gray-rank (default) or reference (the authors' order, for comparisons)")
      ->check(CLI::IsMember({"gray-rank", "reference"}))
      ->type_name("ORDER");
  app->add_option_function<std::string>(
         "--sampling",
         [config](const std::string& v) {
           config->sampling = v == "value-norm"            ? Sampling::value_norm
                              : v == "stratified"          ? Sampling::stratified
                              : v == "position-stratified" ? Sampling::position_stratified
                                                           : Sampling::uniform;
         },
         "uniform (the paper, default), value-norm (the paper's AMM), stratified (one draw per stratum of the sorted order) or position-stratified (one draw per stratum of positions)")
      ->check(CLI::IsMember({"uniform", "value-norm", "stratified", "position-stratified"}))
      ->type_name("SAMPLING");
  add_preset_option(app, config);
  app->add_option("--sink-keys", config->sink_keys, "the first N keys are attended exactly by every query (attention sinks; 0 = the paper)")->capture_default_str()->check(integer_in<std::int64_t>(0, std::int64_t{1} << 30));
  app->add_option("--local-window", config->local_window, "causal: every query also attends exactly to the N keys just before it (a sliding window; 0 = the paper)")->capture_default_str()->check(integer_in<std::int64_t>(0, std::int64_t{1} << 30));
}

inline void add_threads_option(CLI::App* app, AttentionConfig* config) {
  app->add_option("--threads", config->threads, "worker threads (0 = all cores)")->capture_default_str()->check(integer_in<int>(0, 1 << 16));
}

}  // namespace hyperattn::cli
