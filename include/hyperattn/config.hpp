// hyperattn/config.hpp: the parameters of exact attention and HyperAttention.
#pragma once

#include <cstdint>
#include <string_view>

#include "hyperattn/status.hpp"

namespace hyperattn {

// Order of the LSH buckets before the sort (specification §2.1).
enum class BucketOrder : std::uint8_t {
  gray_rank,       // rank of the bit pattern in the reflected Gray sequence: neighbours differ in 1 bit
  reference_gray,  // gray(bits) = bits ^ (bits >> 1), the order of the authors' code (comparisons only)
};

// How the residual keys outside a query's block are sampled (specification §2.4, §2.6).
enum class Sampling : std::uint8_t {
  uniform,     // uniform with replacement over the keys outside the block, weight (n_k - |block|)/m
  value_norm,  // p_j proportional to ||v_j||^2 over the keys outside the block (the paper's AMM),
               // mixed half and half with uniform so that every key keeps a positive probability
  stratified,  // one uniform draw from each of m equal strata of the sorted order outside the block
  position_stratified,  // one draw from each of m equal strata of the keys in position order;
                        // draws inside the query's own block count zero (unbiased)
};

struct AttentionConfig {
  // Shared by both methods.
  bool causal = false;   // bottom-right aligned mask when seq_q != seq_kv
  float scale = 0.0f;    // 0 means 1/sqrt(head_dim)
  int threads = 0;       // 0 means every hardware thread

  // HyperAttention (ignored by exact attention).
  int lsh_bits = 7;                 // r, 1..16
  std::int64_t block_size = 256;    // b, keys per sorted block
  std::int64_t sample_size = 256;   // m, sampled residual keys per query block
  std::int64_t min_seq_len = 4096;  // below it (and at the causal leaves) attention is exact
  std::uint64_t seed = 0;
  BucketOrder bucket_order = BucketOrder::gray_rank;
  Sampling sampling = Sampling::uniform;
  // The first sink_keys keys of the sequence are attended exactly by every query of each
  // approximated sub-problem that contains them ("attention sinks"); 0 = none (the paper).
  // They come out of that sub-problem's sample budget: every query still attends to
  // block_size + max(sample_size, sink_keys) keys.
  std::int64_t sink_keys = 0;
  // Causal only: every query of an approximated sub-problem also attends exactly to the keys among
  // the local_window positions just before its own (a sliding window across the recursion's
  // boundaries, where the exact leaves give the first queries of each leaf almost no local keys);
  // those keys are taken out of its block and samples, so nothing is counted twice. 0 = none (the
  // paper). Ignored by non-causal attention.
  std::int64_t local_window = 0;

  // Optional progress report, called with (done, total) work units from whichever worker thread
  // finishes a unit (serialised, at most every 100 ms, and once at the end). Null: none.
  void (*progress)(void* context, std::int64_t done, std::int64_t total) = nullptr;
  void* progress_context = nullptr;
};

// Named variants of HyperAttention, applied to a config (docs/accuracy.md); each keeps the mean keys
// per query (block_size + sample_size) and rewrites the sampling, sinks and window:
//   "paper"             the published algorithm: uniform samples, no sinks, no window, Gray-rank
//                       buckets; block and sample sizes as set.
//   "stratified"        1/8 of the keys as the block, 7/8 as stratified samples along the sorted
//                       order: 0.59x the KL of "paper" on the bundled model.
//   "stratified-window" 1/4 of the keys as the block, stratified samples, and a local window of 1/4
//                       of the keys (causal), its mean extra keys per row taken from the samples
//                       (needs min_seq_len set first).
Status apply_preset(std::string_view name, AttentionConfig* config);

}  // namespace hyperattn
