// src/core/exact.cpp: exact attention = the one-part plan (tiled online softmax, no n x n matrix).
#include "core/engine.hpp"
#include "core/magnitudes.hpp"

namespace hyperattn {

core::Plan core::exact_plan(std::int64_t n_q, std::int64_t n_k, const AttentionConfig& config) {
  Plan plan;
  Part part{0, n_q, 0, n_k, cpu::kNoCausalMask, false, 0};
  // Bottom-right aligned: query i sits at key position n_k - n_q + i.
  if (config.causal) part.causal_diagonal = n_k - n_q;
  plan.phases.push_back({{part}});
  return plan;
}

Status exact_attention(const AttentionArgs& args, const AttentionConfig& config) {
  HYPERATTN_RETURN_IF_ERROR(validate(args, config));
  HYPERATTN_RETURN_IF_ERROR(core::check_magnitudes(args, config));
  return core::execute(core::exact_plan(args.q.seq(), args.k.seq(), config), args, config, {});
}

Status exact_attention_backward(const AttentionGradArgs& args, const AttentionConfig& config) {
  HYPERATTN_RETURN_IF_ERROR(validate_backward(args, config));
  HYPERATTN_RETURN_IF_ERROR(core::check_magnitudes(AttentionArgs{args.q, args.k, args.v, args.out, args.lse}, config));
  return core::execute_backward(core::exact_plan(args.q.seq(), args.k.seq(), config), args, config, {});
}

}  // namespace hyperattn
