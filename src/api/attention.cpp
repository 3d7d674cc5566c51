// src/api/attention.cpp: the public entry points of the CPU backend (include/hyperattn/attention.hpp):
// validate at the door (shapes and strides, magnitudes, injected randomness), build the plan
// (core/plan.hpp), hand it to the CPU executor (cpu/executor.hpp). Exact attention is the one-part
// plan (tiled online softmax, no n x n matrix); HyperAttention is core::hyper_plan.
#include "core/plan.hpp"
#include "cpu/executor.hpp"
#include "cpu/magnitudes.hpp"

#include <fmt/format.h>

namespace hyperattn {

namespace {

Status check_injected(const AttentionArgs& args, const AttentionConfig& config, const InjectedRandomness& injected) {
  return core::check_injected(args, config, injected, core::top_level_blocks(args.k.seq(), config));
}

AttentionArgs forward_args(const AttentionGradArgs& g) { return {g.q, g.k, g.v, g.out, g.lse}; }

core::Plan plan_of(const AttentionArgs& args, const AttentionConfig& config, bool hyper) {
  return hyper ? core::hyper_plan(args.q.seq(), args.k.seq(), config) : core::exact_plan(args.q.seq(), args.k.seq(), config);
}

// The door of every forward call: shapes and strides, injected randomness (HyperAttention), magnitudes.
// The magnitudes' pass also says which inputs hold NaN or Inf (*nonfinite, for the executor).
Status check_forward(const AttentionArgs& args, const AttentionConfig& config, const InjectedRandomness* injected,
                     cpu::NonFiniteInputs* nonfinite) {
  HYPERATTN_RETURN_IF_ERROR(validate(args, config));
  if (injected != nullptr) HYPERATTN_RETURN_IF_ERROR(check_injected(args, config, *injected));
  return cpu::check_magnitudes(args, config, nonfinite);
}

Status check_backward(const AttentionGradArgs& g, const AttentionConfig& config, const InjectedRandomness* injected,
                      cpu::NonFiniteInputs* nonfinite) {
  HYPERATTN_RETURN_IF_ERROR(validate_backward(g, config));
  HYPERATTN_RETURN_IF_ERROR(cpu::check_magnitudes(forward_args(g), config, nonfinite));
  if (injected != nullptr) HYPERATTN_RETURN_IF_ERROR(check_injected(forward_args(g), config, *injected));
  return Status::Ok();
}

// A caller's workspace must be memory (a null one would mean "allocate" inside the executor).
Status check_workspace(const Workspace& workspace) {
  if (workspace.data != nullptr) return Status::Ok();
  return Status::InvalidArgument(fmt::format(
      "workspace.data: null ({} bytes); expected memory of workspace_size() bytes (or call the overload without a workspace)",
      workspace.bytes));
}

Status check_bytes_out(const std::size_t* bytes) {
  if (bytes != nullptr) return Status::Ok();
  return Status::InvalidArgument("bytes: null; expected a std::size_t to write the workspace size to");
}

Status run_forward(const AttentionArgs& args, const AttentionConfig& config, const InjectedRandomness* injected,
                   const Workspace& workspace) {
  cpu::NonFiniteInputs nonfinite;
  HYPERATTN_RETURN_IF_ERROR(check_forward(args, config, injected, &nonfinite));
  const bool hyper = injected != nullptr;
  return cpu::execute(plan_of(args, config, hyper), args, config, hyper ? *injected : InjectedRandomness{}, workspace,
                      nonfinite);
}

Status run_backward(const AttentionGradArgs& g, const AttentionConfig& config, const InjectedRandomness* injected,
                    const Workspace& workspace) {
  cpu::NonFiniteInputs nonfinite;
  HYPERATTN_RETURN_IF_ERROR(check_backward(g, config, injected, &nonfinite));
  const bool hyper = injected != nullptr;
  return cpu::execute_backward(plan_of(forward_args(g), config, hyper), g, config, hyper ? *injected : InjectedRandomness{},
                               workspace, nonfinite);
}

}  // namespace

Status workspace_size(const AttentionArgs& args, const AttentionConfig& config, bool hyper, std::size_t* bytes) {
  HYPERATTN_RETURN_IF_ERROR(check_bytes_out(bytes));
  HYPERATTN_RETURN_IF_ERROR(validate(args, config));
  *bytes = cpu::workspace_bytes(plan_of(args, config, hyper), args, config);
  return Status::Ok();
}

Status backward_workspace_size(const AttentionGradArgs& args, const AttentionConfig& config, bool hyper,
                               std::size_t* bytes) {
  HYPERATTN_RETURN_IF_ERROR(check_bytes_out(bytes));
  HYPERATTN_RETURN_IF_ERROR(validate_backward(args, config));
  *bytes = cpu::backward_workspace_bytes(plan_of(forward_args(args), config, hyper), args, config);
  return Status::Ok();
}

Status exact_attention(const AttentionArgs& args, const AttentionConfig& config) {
  return run_forward(args, config, nullptr, {});
}

Status exact_attention(const AttentionArgs& args, const AttentionConfig& config, const Workspace& workspace) {
  HYPERATTN_RETURN_IF_ERROR(check_workspace(workspace));
  return run_forward(args, config, nullptr, workspace);
}

Status hyper_attention(const AttentionArgs& args, const AttentionConfig& config, const InjectedRandomness& injected) {
  return run_forward(args, config, &injected, {});
}

Status hyper_attention(const AttentionArgs& args, const AttentionConfig& config, const InjectedRandomness& injected,
                       const Workspace& workspace) {
  HYPERATTN_RETURN_IF_ERROR(check_workspace(workspace));
  return run_forward(args, config, &injected, workspace);
}

Status exact_attention_backward(const AttentionGradArgs& args, const AttentionConfig& config) {
  return run_backward(args, config, nullptr, {});
}

Status exact_attention_backward(const AttentionGradArgs& args, const AttentionConfig& config, const Workspace& workspace) {
  HYPERATTN_RETURN_IF_ERROR(check_workspace(workspace));
  return run_backward(args, config, nullptr, workspace);
}

Status hyper_attention_backward(const AttentionGradArgs& args, const AttentionConfig& config,
                                const InjectedRandomness& injected) {
  return run_backward(args, config, &injected, {});
}

Status hyper_attention_backward(const AttentionGradArgs& args, const AttentionConfig& config,
                                const InjectedRandomness& injected, const Workspace& workspace) {
  HYPERATTN_RETURN_IF_ERROR(check_workspace(workspace));
  return run_backward(args, config, &injected, workspace);
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

}  // namespace hyperattn
