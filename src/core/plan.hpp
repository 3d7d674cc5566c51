// src/core/plan.hpp: the plan every attention call is lowered to, whatever the backend.
//
// This layer (src/core, CMake target hyperattn_plan) includes no backend: the CPU executor
// (src/cpu/executor.hpp) and the CUDA lowering (src/cuda/lowering.hpp) both execute these plans.
//
// A plan is a list of phases; a phase is a list of parts with disjoint query rows; a part is one
// attention sub-problem of every (batch, query head): query rows [q0, q1) against keys [k0, k1),
// either exact (optionally causal) or approximated by sorted-LSH blocks plus sampled keys
// (specification §2). The first phase writes each row's (O, LSE); later phases merge into it
// through the log-sum-exp (specification §3), always in plan order, so the result does not depend
// on the thread count. Exact attention is the one-part plan; non-causal HyperAttention is one
// approximated part; causal HyperAttention is the flattened recursion (plan.cpp builds it).
#pragma once

#include <cstdint>
#include <vector>

#include "hyperattn/attention.hpp"

namespace hyperattn::core {

// Part::causal_diagonal of a part without a causal mask (every row sees every key of the part);
// the CPU kernels' tile (cpu::kNoCausalMask) and the CUDA lowering use the same value.
inline constexpr std::int64_t kNoCausalMask = INT64_MAX / 4;

struct Part {
  std::int64_t q0 = 0, q1 = 0;  // query rows [q0, q1) of every head
  std::int64_t k0 = 0, k1 = 0;  // keys [k0, k1)
  // Exact parts: row q0 + r sees key k0 + c iff c <= r + causal_diagonal (kNoCausalMask: all).
  std::int64_t causal_diagonal = kNoCausalMask;
  bool approximate = false;      // sorted-LSH blocks + sampled residual
  std::uint64_t subproblem = 0;  // random-stream id (rng::subproblem_id)
  // Approximated parts: keys [k0, k0 + sinks) are attended exactly by every query ("attention
  // sinks"); hashing, blocks and samples cover [k0 + sinks, k1).
  std::int64_t sinks = 0;
  // Approximated parts of a causal plan: query row r sits at key position r + window_delta and
  // also attends exactly to keys [r + window_delta - window, r + window_delta) ∩ [k0 + sinks, k1),
  // which its block and samples then skip (AttentionConfig::local_window).
  std::int64_t window = 0;
  std::int64_t window_delta = 0;
};

struct Phase {
  std::vector<Part> parts;
};

struct Plan {
  std::vector<Phase> phases;     // phase 0 writes, the others merge
  std::vector<std::int64_t> empty_rows;  // [first, last) rows that see no key at all: O = 0, LSE = -inf
};

// The plan of exact attention (one part; causal bottom-right aligned) and of HyperAttention
// (plan.cpp: one approximated part, or the flattened causal recursion). Every backend lowers
// these same plans, so CPU and CUDA compute the same parts and merge them in the same order.
Plan exact_plan(std::int64_t n_q, std::int64_t n_k, const AttentionConfig& config);
Plan hyper_plan(std::int64_t n_q, std::int64_t n_k, const AttentionConfig& config);

// Whether a non-causal sub-problem of n_q queries and n_k keys is approximated (specification §2):
// not below min_seq_len queries, and only if block plus samples leave keys out.
// `sinks` keys of the n_k are always attended (they count towards what is attended).
bool approximated(std::int64_t n_q, std::int64_t n_k, const AttentionConfig& config, std::int64_t sinks = 0);

// The sinks of a sub-problem with keys [k0, k1): those of its keys among the first
// config.sink_keys keys of the sequence (they are a prefix of its range).
std::int64_t sinks_of(std::int64_t k0, std::int64_t k1, const AttentionConfig& config);

// The injected randomness of a call, checked at the door (every backend): projections
// [batch, heads_kv, head_dim, lsh_bits] finite; samples only for a non-causal problem, [batch,
// heads_q, sample_blocks, sample_size] key positions in [0, seq_kv). `sample_blocks`: the blocks of
// the approximated part with subproblem 0, which uses them (top_level_blocks for the CPU).
Status check_injected(const AttentionArgs& args, const AttentionConfig& config, const InjectedRandomness& injected,
                      std::int64_t sample_blocks);
// The sorted blocks of the non-causal problem [0, n_k) (sinks left out): ceil((n_k - sinks) / b).
std::int64_t top_level_blocks(std::int64_t n_k, const AttentionConfig& config);

// The projections [batch, heads_kv, head_dim, lsh_bits] drawn from the seed (or copied from the
// injected ones).
std::vector<float> projections(const AttentionArgs& args, const AttentionConfig& config,
                               const InjectedRandomness& injected);

}  // namespace hyperattn::core
