// src/core/plan.cpp: the plans (specification §2-§3) and the rules they are built from.
//
// Exact attention: one part, causal bottom-right aligned.
// HyperAttention, non-causal: one part, approximated unless n_q < min_seq_len or block + samples cover the keys.
// Causal (bottom-right aligned, n_q <= n_k after dropping rows that see nothing): with c causal
// rows and p = n_k - c keys visible to every row,
//   phase 0: the exact causal leaves of the recursion over halves (length <= min_seq_len),
//   phase 1: the visible-prefix part, rows x keys [0, p) (non-causal, if p > 0),
//   phase 2+d: the off-diagonal blocks of depth d (second-half queries x first-half keys), one
//              phase per level, so all blocks of a level run as one batch.
// Each row merges its parts in this order (deterministic for any thread count).
#include "core/plan.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "core/random.hpp"

namespace hyperattn::core {

bool approximated(std::int64_t n_q, std::int64_t n_k, const AttentionConfig& config, std::int64_t sinks) {
  return n_q >= config.min_seq_len && config.block_size + std::max(config.sample_size, sinks) < n_k;
}

std::int64_t sinks_of(std::int64_t k0, std::int64_t k1, const AttentionConfig& config) {
  return std::clamp<std::int64_t>(config.sink_keys - k0, 0, k1 - k0);  // keys [k0, sink_keys) of this range
}

std::vector<float> projections(const AttentionArgs& args, const AttentionConfig& config,
                               const InjectedRandomness& injected) {
  const std::int64_t batch = args.q.batch(), heads_kv = args.k.heads(), d = args.q.head_dim();
  const int r = config.lsh_bits;
  std::vector<float> proj(static_cast<std::size_t>(batch * heads_kv * d * r));
  if (injected.projections != nullptr) {
    std::copy(injected.projections, injected.projections + proj.size(), proj.begin());
    return proj;
  }
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t h = 0; h < heads_kv; ++h)
      for (std::int64_t c = 0; c < d; ++c)
        for (int t = 0; t < r; ++t)
          proj[static_cast<std::size_t>(((b * heads_kv + h) * d + c) * r + t)] =
              static_cast<float>(rng::projection_normal(config.seed, b, h, static_cast<int>(c), t));
  return proj;
}

std::int64_t top_level_blocks(std::int64_t n_k, const AttentionConfig& c) {
  return (n_k - sinks_of(0, n_k, c) + c.block_size - 1) / c.block_size;
}

Status check_injected(const AttentionArgs& args, const AttentionConfig& c, const InjectedRandomness& inj,
                      std::int64_t sample_blocks) {
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
    const std::int64_t n = args.q.batch() * args.q.heads() * sample_blocks * c.sample_size;
    for (std::int64_t i = 0; i < n; ++i)
      if (inj.samples[i] < 0 || inj.samples[i] >= n_k)
        return Status::InvalidArgument(fmt::format("injected.samples[{}] is {}; expected a key position in [0, {})", i, inj.samples[i], n_k));
  }
  return Status::Ok();
}

Plan exact_plan(std::int64_t n_q, std::int64_t n_k, const AttentionConfig& config) {
  Plan plan;
  Part part{0, n_q, 0, n_k, kNoCausalMask, false, 0};
  // Bottom-right aligned: query i sits at key position n_k - n_q + i.
  if (config.causal) part.causal_diagonal = n_k - n_q;
  plan.phases.push_back({{part}});
  return plan;
}

namespace {

// A non-causal sub-problem, approximated when the rule says so, with its attention sinks.
Part noncausal_part(std::int64_t q0, std::int64_t q1, std::int64_t k0, std::int64_t k1, std::uint64_t subproblem,
                    const AttentionConfig& c) {
  const std::int64_t sinks = sinks_of(k0, k1, c);
  const bool approx = approximated(q1 - q0, k1 - k0, c, sinks);
  return {q0, q1, k0, k1, kNoCausalMask, approx, subproblem, approx ? sinks : 0};
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

Plan hyper_plan(std::int64_t n_q, std::int64_t n_k, const AttentionConfig& c) {
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

}  // namespace hyperattn::core
