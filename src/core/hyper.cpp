// src/core/hyper.cpp: HyperAttention's plan (specification §2-§3).
//
// Non-causal: one part, approximated unless n_q < min_seq_len or block + samples cover the keys.
// Causal (bottom-right aligned, n_q <= n_k after dropping rows that see nothing): with c causal
// rows and p = n_k - c keys visible to every row,
//   phase 0: the exact causal leaves of the recursion over halves (length <= min_seq_len),
//   phase 1: the visible-prefix part, rows x keys [0, p) (non-causal, if p > 0),
//   phase 2+d: the off-diagonal blocks of depth d (second-half queries x first-half keys), one
//              phase per level, so all blocks of a level run as one batch.
// Each row merges its parts in this order (deterministic for any thread count).
#include <cmath>

#include <fmt/format.h>

#include "core/engine.hpp"
#include "core/magnitudes.hpp"
#include "core/random.hpp"

namespace hyperattn {
namespace {

using core::Part;
using core::Plan;

// A non-causal sub-problem, approximated when the rule says so, with its attention sinks.
Part noncausal_part(std::int64_t q0, std::int64_t q1, std::int64_t k0, std::int64_t k1, std::uint64_t subproblem,
                    const AttentionConfig& c) {
  const std::int64_t sinks = core::sinks_of(k0, k1, c);
  const bool approx = core::approximated(q1 - q0, k1 - k0, c, sinks);
  return {q0, q1, k0, k1, cpu::kNoCausalMask, approx, subproblem, approx ? sinks : 0};
}

// A causal plan's non-causal sub-problem, whose row e + i sits at key position p + i.
Part causal_offdiagonal_part(std::int64_t q0, std::int64_t q1, std::int64_t k0, std::int64_t k1,
                             std::uint64_t subproblem, std::int64_t e, std::int64_t p, const AttentionConfig& c) {
  Part part = noncausal_part(q0, q1, k0, k1, subproblem, c);
  if (part.approximate && c.local_window > 0) {
    part.window = c.local_window;
    part.window_delta = p - e;
  }
  return part;
}

// Recursion over [s, t) of the causal rows; row e + i pairs with key p + i.
void split(std::int64_t s, std::int64_t t, int depth, std::int64_t e, std::int64_t p,
           const AttentionConfig& c, std::vector<Part>& leaves, std::vector<std::vector<Part>>& levels) {
  if (t - s <= std::max<std::int64_t>(c.min_seq_len, 1)) {
    leaves.push_back({e + s, e + t, p + s, p + t, 0, false, 0});
    return;
  }
  const std::int64_t mid = s + (t - s + 1) / 2;
  split(s, mid, depth + 1, e, p, c, leaves, levels);
  split(mid, t, depth + 1, e, p, c, leaves, levels);
  if (levels.size() <= static_cast<std::size_t>(depth)) levels.resize(static_cast<std::size_t>(depth) + 1);
  levels[static_cast<std::size_t>(depth)].push_back(
      causal_offdiagonal_part(e + mid, e + t, p + s, p + mid, rng::subproblem_id(e + mid, p + s), e, p, c));
}

}  // namespace

Plan core::hyper_plan(std::int64_t n_q, std::int64_t n_k, const AttentionConfig& c) {
  Plan plan;
  if (!c.causal) {
    plan.phases.push_back({{noncausal_part(0, n_q, 0, n_k, 0, c)}});
    return plan;
  }
  const std::int64_t e = std::max<std::int64_t>(0, n_q - n_k);  // rows [0, e) see no key
  const std::int64_t rows = n_q - e;
  const std::int64_t p = n_k - rows;
  if (e > 0) plan.empty_rows = {0, e};
  std::vector<Part> leaves;
  std::vector<std::vector<Part>> levels;
  split(0, rows, 0, e, p, c, leaves, levels);
  plan.phases.push_back({leaves});
  if (p > 0)
    plan.phases.push_back(
        {{causal_offdiagonal_part(e, n_q, 0, p, rng::visible_prefix_id(e), e, p, c)}});
  for (auto& level : levels) plan.phases.push_back({level});
  return plan;
}

namespace {

Status check_injected(const AttentionArgs& args, const AttentionConfig& c, const InjectedRandomness& inj) {
  if (inj.projections != nullptr) {
    const std::int64_t n = args.q.batch() * args.k.heads() * args.q.head_dim() * c.lsh_bits;
    for (std::int64_t i = 0; i < n; ++i)
      if (!std::isfinite(inj.projections[i]))
        return Status::InvalidArgument(fmt::format("injected.projections[{}] is {}; expected finite values", i, inj.projections[i]));
  }
  if (inj.samples != nullptr) {
    if (c.causal)
      return Status::InvalidArgument("injected.samples: given for a causal problem; expected null (samples can be injected only for a non-causal problem)");
    const std::int64_t n_k = args.k.seq();
    const std::int64_t blocks = (n_k - core::sinks_of(0, n_k, c) + c.block_size - 1) / c.block_size;
    const std::int64_t n = args.q.batch() * args.q.heads() * blocks * c.sample_size;
    for (std::int64_t i = 0; i < n; ++i)
      if (inj.samples[i] < 0 || inj.samples[i] >= n_k)
        return Status::InvalidArgument(fmt::format("injected.samples[{}] is {}; expected a key position in [0, {})", i, inj.samples[i], n_k));
  }
  return Status::Ok();
}

}  // namespace

Status hyper_attention(const AttentionArgs& args, const AttentionConfig& config, const InjectedRandomness& injected) {
  HYPERATTN_RETURN_IF_ERROR(validate(args, config));
  HYPERATTN_RETURN_IF_ERROR(check_injected(args, config, injected));
  HYPERATTN_RETURN_IF_ERROR(core::check_magnitudes(args, config));
  return core::execute(core::hyper_plan(args.q.seq(), args.k.seq(), config), args, config, injected);
}

Status hyper_attention_backward(const AttentionGradArgs& args, const AttentionConfig& config,
                                const InjectedRandomness& injected) {
  HYPERATTN_RETURN_IF_ERROR(validate_backward(args, config));
  HYPERATTN_RETURN_IF_ERROR(core::check_magnitudes(AttentionArgs{args.q, args.k, args.v, args.out, args.lse}, config));
  HYPERATTN_RETURN_IF_ERROR(check_injected(AttentionArgs{args.q, args.k, args.v, args.out, args.lse}, config, injected));
  return core::execute_backward(core::hyper_plan(args.q.seq(), args.k.seq(), config), args, config, injected);
}

Status lsh_blocks(const AttentionArgs& args, const AttentionConfig& config, const InjectedRandomness& injected,
                  std::int32_t* query_block, std::int32_t* key_block) {
  HYPERATTN_RETURN_IF_ERROR(validate(args, config));
  if (query_block == nullptr) return Status::InvalidArgument("query_block: null; expected [batch, heads_q, seq_q] int32 storage");
  if (key_block == nullptr) return Status::InvalidArgument("key_block: null; expected [batch, heads_kv, seq_kv] int32 storage");
  AttentionConfig c = config;
  c.causal = false;
  HYPERATTN_RETURN_IF_ERROR(check_injected(args, c, {injected.projections, nullptr}));
  return core::sorted_blocks(args, c, injected, query_block, key_block);
}

}  // namespace hyperattn
