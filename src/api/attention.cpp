// src/api/attention.cpp: the public entry points of the CPU backend (include/hyperattn/attention.hpp):
// validate at the door (shapes and strides, magnitudes, injected randomness), build the plan
// (core/plan.hpp), hand it to the CPU executor (cpu/executor.hpp). Exact attention is the one-part
// plan (tiled online softmax, no n x n matrix); HyperAttention is core::hyper_plan.
#include "core/plan.hpp"
#include "cpu/executor.hpp"
#include "cpu/magnitudes.hpp"

namespace hyperattn {

namespace {

Status check_injected(const AttentionArgs& args, const AttentionConfig& config, const InjectedRandomness& injected) {
  return core::check_injected(args, config, injected, core::top_level_blocks(args.k.seq(), config));
}

}  // namespace

Status hyper_attention(const AttentionArgs& args, const AttentionConfig& config, const InjectedRandomness& injected) {
  HYPERATTN_RETURN_IF_ERROR(validate(args, config));
  HYPERATTN_RETURN_IF_ERROR(check_injected(args, config, injected));
  HYPERATTN_RETURN_IF_ERROR(cpu::check_magnitudes(args, config));
  return cpu::execute(core::hyper_plan(args.q.seq(), args.k.seq(), config), args, config, injected);
}

Status hyper_attention_backward(const AttentionGradArgs& args, const AttentionConfig& config,
                                const InjectedRandomness& injected) {
  HYPERATTN_RETURN_IF_ERROR(validate_backward(args, config));
  HYPERATTN_RETURN_IF_ERROR(cpu::check_magnitudes(AttentionArgs{args.q, args.k, args.v, args.out, args.lse}, config));
  HYPERATTN_RETURN_IF_ERROR(check_injected(AttentionArgs{args.q, args.k, args.v, args.out, args.lse}, config, injected));
  return cpu::execute_backward(core::hyper_plan(args.q.seq(), args.k.seq(), config), args, config, injected);
}

Status lsh_blocks(const AttentionArgs& args, const AttentionConfig& config, const InjectedRandomness& injected,
                  std::int32_t* query_block, std::int32_t* key_block) {
  HYPERATTN_RETURN_IF_ERROR(validate(args, config));
  if (query_block == nullptr) return Status::InvalidArgument("query_block: null; expected [batch, heads_q, seq_q] int32 storage");
  if (key_block == nullptr) return Status::InvalidArgument("key_block: null; expected [batch, heads_kv, seq_kv] int32 storage");
  AttentionConfig c = config;
  c.causal = false;
  HYPERATTN_RETURN_IF_ERROR(check_injected(args, c, {injected.projections, nullptr}));
  return cpu::sorted_blocks(args, c, injected, query_block, key_block);
}

Status exact_attention(const AttentionArgs& args, const AttentionConfig& config) {
  HYPERATTN_RETURN_IF_ERROR(validate(args, config));
  HYPERATTN_RETURN_IF_ERROR(cpu::check_magnitudes(args, config));
  return cpu::execute(core::exact_plan(args.q.seq(), args.k.seq(), config), args, config, {});
}

Status exact_attention_backward(const AttentionGradArgs& args, const AttentionConfig& config) {
  HYPERATTN_RETURN_IF_ERROR(validate_backward(args, config));
  HYPERATTN_RETURN_IF_ERROR(cpu::check_magnitudes(AttentionArgs{args.q, args.k, args.v, args.out, args.lse}, config));
  return cpu::execute_backward(core::exact_plan(args.q.seq(), args.k.seq(), config), args, config, {});
}

}  // namespace hyperattn
