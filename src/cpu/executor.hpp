// src/cpu/executor.hpp: the CPU executor of a plan (core/plan.hpp): hashing and sorting of the
// approximated parts, the key lists of every block (sinks, block, samples, window), the work items
// of each phase on the thread pool, the kernels of cpu/attention_kernel.hpp, and the merge of the
// phases in plan order. The backward pass of the same plans is here too.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/plan.hpp"
#include "cpu/magnitudes.hpp"
#include "hyperattn/attention.hpp"

namespace hyperattn::cpu {

// Executes a plan. `args` and `config` must have passed validate(); `injected` as in the API
// (injected samples are used by an approximated part with subproblem 0). Every buffer that grows
// with the problem comes from `workspace` (workspace_bytes() of them, any alignment); with
// workspace.data null the call allocates them itself. A workspace smaller than needed is an
// InvalidArgument naming both sizes. `nonfinite` (from check_magnitudes) moves the tiles of each
// key-value head whose V holds NaN or Inf onto cpu::strict_kernel(), so that only the rows that see
// such a value get it.
std::size_t workspace_bytes(const core::Plan& plan, const AttentionArgs& args, const AttentionConfig& config);
Status execute(const core::Plan& plan, const AttentionArgs& args, const AttentionConfig& config,
               const InjectedRandomness& injected, const Workspace& workspace = {},
               const NonFiniteInputs& nonfinite = {});

// The backward pass of a plan (the plan of the forward whose out and lse `args` holds): the
// gradients of every part's key set against the rows' final O and LSE. `args` and `config` must
// have passed validate_backward(). Its workspace as execute's: backward_workspace_bytes(). A NaN or
// Inf in a key-value head's k or v, or in q, d_out, out, d_lse or lse of one of its query heads
// (`nonfinite`, and the backward's own scan of the rows), moves that head's tiles onto
// cpu::strict_kernel().
std::size_t backward_workspace_bytes(const core::Plan& plan, const AttentionGradArgs& args, const AttentionConfig& config);
Status execute_backward(const core::Plan& plan, const AttentionGradArgs& args, const AttentionConfig& config,
                        const InjectedRandomness& injected, const Workspace& workspace = {},
               const NonFiniteInputs& nonfinite = {});

// The sorted-LSH block of each query and key of one non-causal problem [0,n_q) x [0,n_k)
// (diagnostics; see hyperattn::lsh_blocks).
Status sorted_blocks(const AttentionArgs& args, const AttentionConfig& config,
                     const InjectedRandomness& injected, std::int32_t* query_block,
                     std::int32_t* key_block);

}  // namespace hyperattn::cpu
