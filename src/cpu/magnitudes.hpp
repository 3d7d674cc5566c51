// src/cpu/magnitudes.hpp: the fp32 range check of attention inputs (docs/numerics.md, "Range").
//
// Finite inputs can still overflow fp32 inside the kernels: a score scale·<q_i, k_j> beyond
// ~3.4e38 (or its partial dot products) turns into inf and the softmax into NaN, and the weighted
// sum Σ_j p_j v_j (p_j <= 1 against the running max) can exceed the fp32 range when |v| is close to
// it. exact_attention and hyper_attention refuse such inputs before computing, with one O(n·d) pass
// over q, k and v (row norms in double), instead of returning NaN or Inf without a word.
#pragma once

#include <cstdint>
#include <vector>

#include "hyperattn/attention.hpp"

namespace hyperattn::cpu {

// Bounds (powers of two, exact in float and double):
//   max(scale, 1) · max_i ||q_i|| · max(1, max_j ||k_j||) <= kScoreBound   per (batch, query head)
//   max_j |v_jt| · seq_kv                                   <= kValueSumBound per (batch, kv head)
// kScoreBound · log2(e) (the kernels score in base 2) stays below FLT_MAX ≈ 2^128; the sums of at
// most seq_kv weights <= 1 (plus the merges of at most two parts at a time) stay below 2^127.
inline constexpr double kScoreBound = 0x1p127;
inline constexpr double kValueSumBound = 0x1p126;

// Which heads of q, k and v hold a NaN or an Inf (found by the same pass). The executor runs the
// tiles of such heads on the kernel that leaves out every key a row does not see
// (cpu::strict_kernel()), so a NaN or Inf reaches only the rows that see it (docs/numerics.md,
// "NaN and Inf").
struct NonFiniteInputs {
  // Per (batch, head), row-major ([batch, heads_q] for q, [batch, heads_kv] for k and v): 1 where
  // that head holds one (empty: not scanned).
  std::vector<char> q, k, v;
  bool any() const {
    for (const std::vector<char>* t : {&q, &k, &v})
      for (char x : *t)
        if (x != 0) return true;
    return false;
  }
};

// Status::InvalidArgument naming q and k (or v), the bound and what arrived; Ok otherwise. Rows
// holding NaN or Inf are skipped by the bounds: those propagate as documented (docs/numerics.md),
// and *nonfinite (if given) says which inputs hold them. `args` must have passed validate() and
// point to host memory.
Status check_magnitudes(const AttentionArgs& args, const AttentionConfig& config, NonFiniteInputs* nonfinite = nullptr);

}  // namespace hyperattn::cpu
