// hyperattn/attention.hpp: exact attention and HyperAttention on the CPU.
//
// Shapes (the frame of every view, see tensor.hpp):
//   q   [batch, heads_q,  seq_q,  head_dim]
//   k   [batch, heads_kv, seq_kv, head_dim]
//   v   [batch, heads_kv, seq_kv, head_dim]
//   out [batch, heads_q,  seq_q,  head_dim]   same dtype as q
//   lse [batch, heads_q,  seq_q]              fp32, natural log of the sum of exp(scaled scores)
// heads_q must be a multiple of heads_kv (query head h uses key-value head h / (heads_q/heads_kv)).
// q, k, v share one dtype (f32 or bf16); arithmetic is fp32.
#pragma once

#include <cstddef>
#include <cstdint>

#include "hyperattn/config.hpp"
#include "hyperattn/status.hpp"
#include "hyperattn/tensor.hpp"

namespace hyperattn {

struct AttentionArgs {
  TensorView q;    // [batch, heads_q, seq_q, head_dim]
  TensorView k;    // [batch, heads_kv, seq_kv, head_dim]
  TensorView v;    // [batch, heads_kv, seq_kv, head_dim]
  TensorView out;  // [batch, heads_q, seq_q, head_dim]
  LseView lse;     // optional: data == nullptr skips it
};

// Randomness injected by the caller instead of drawn from the seed (tests, cross-checks).
// Either pointer may be null; a null one is drawn from the seed.
struct InjectedRandomness {
  // [batch, heads_kv, head_dim, lsh_bits] hyperplanes: bit t of x is [x . proj[:, t] > 0].
  const float* projections = nullptr;
  // [batch, heads_q, blocks, sample_size] original key positions sampled for each query block.
  // Only for a non-causal problem that is approximated (not used by the causal recursion).
  const std::int32_t* samples = nullptr;
};

// The head dimensions the CPU kernels support.
bool is_supported_head_dim(std::int64_t head_dim);

// Checks the arguments without computing anything (the same checks every call performs).
Status validate(const AttentionArgs& args, const AttentionConfig& config);

// Exact attention: tiled online softmax, never an n x n matrix.
Status exact_attention(const AttentionArgs& args, const AttentionConfig& config);

// HyperAttention (specification §2-§4). Falls back to exact attention where the specification
// says so (seq_q < min_seq_len, block_size + sample_size >= seq_kv, causal leaves).
Status hyper_attention(const AttentionArgs& args, const AttentionConfig& config,
                       const InjectedRandomness& injected = {});

// The backward pass (training). The arguments of the forward call plus its outputs and the
// incoming gradients; the gradients of q, k and v come out in views of the same frame:
//   q, k, v     as in AttentionArgs (the forward's inputs)
//   out         [batch, heads_q, seq_q, head_dim]  the forward's output (dtype of q)
//   lse         [batch, heads_q, seq_q] fp32        the forward's LSE (required)
//   d_out       [batch, heads_q, seq_q, head_dim]  dL/d out (dtype of q, or f32)
//   d_lse       [batch, heads_q, seq_q] fp32        optional dL/d lse (data == nullptr: zero)
//   dq          [batch, heads_q, seq_q, head_dim]  written: dL/dq (dtype of q, or f32)
//   dk, dv      [batch, heads_kv, seq_kv, head_dim] written: dL/dk, dL/dv, summed over the query
//               heads of each group (dtype of q, or f32)
// Arithmetic is fp32; the sums over query heads, blocks and phases run in a fixed order, so the
// gradients are the same bytes for any thread count.
struct AttentionGradArgs {
  TensorView q, k, v;
  TensorView out;
  LseView lse;
  TensorView d_out;
  LseView d_lse;
  TensorView dq, dk, dv;
};

// The gradient of exact attention.
Status exact_attention_backward(const AttentionGradArgs& args, const AttentionConfig& config);

// The gradient of HyperAttention's estimator as the forward computed it with the same config, seed
// and injected randomness (the hashes, sorts and samples are recomputed, never redrawn
// differently): each row's output is attention over its key set (block keys, weighted samples with
// bias log w, sinks, window), merged through the LSE, so the gradient runs a flash-style backward
// over that set with the merged O and LSE, which includes the merges and the LSE's gradient.
// No gradient flows through the hash, the sort or the draws. Every sampling mode is supported
// (value_norm's weights depend on v only through the draw probabilities, held fixed).
Status hyper_attention_backward(const AttentionGradArgs& args, const AttentionConfig& config,
                                const InjectedRandomness& injected = {});

// Checks the backward's arguments without computing anything.
Status validate_backward(const AttentionGradArgs& args, const AttentionConfig& config);

// Caller-provided memory (check -> workspace size -> run, as the CUDA API in cuda.hpp): ask
// workspace_size() (or backward_workspace_size()) for the bytes one call needs, provide them (any
// alignment; the call aligns inside), then call. Such a call allocates nothing that grows with the
// problem: every buffer (fp32 accumulators, LSH buckets and permutations, the compact K/V copy,
// work items, each thread's scratch) is carved from the workspace; what stays on the heap is the
// plan (a few dozen bytes per causal recursion level), the LSH hyperplanes (heads_kv x head_dim x
// lsh_bits floats) and the thread pool's hand-off. The size holds for the same shapes, strides,
// dtypes and config on the same machine (it counts scratch for config.threads threads and the
// kernel HYPERATTN_ISA chose); a smaller workspace is an InvalidArgument naming both sizes.
// Results are bit for bit those of the allocating calls above, which run this same protocol on a
// workspace of their own. The workspace holds nothing between calls.
//
// The forward state a backward pass needs is the forward's out and lse, with the same config
// (seed, sizes, sampling) and injected randomness: the backward recomputes the same hashes, sorts
// and key sets from them (nothing else is kept), so out, lse and the config are what to save.
struct Workspace {
  void* data = nullptr;
  std::size_t bytes = 0;
};

// Bytes of workspace exact_attention (hyper = false) or hyper_attention (hyper = true) needs for
// these arguments; validates them as the calls do (shapes, strides, dtypes, config).
Status workspace_size(const AttentionArgs& args, const AttentionConfig& config, bool hyper, std::size_t* bytes);
Status exact_attention(const AttentionArgs& args, const AttentionConfig& config, const Workspace& workspace);
Status hyper_attention(const AttentionArgs& args, const AttentionConfig& config, const InjectedRandomness& injected,
                       const Workspace& workspace);

// The same for the backward pass.
Status backward_workspace_size(const AttentionGradArgs& args, const AttentionConfig& config, bool hyper,
                               std::size_t* bytes);
Status exact_attention_backward(const AttentionGradArgs& args, const AttentionConfig& config,
                                const Workspace& workspace);
Status hyper_attention_backward(const AttentionGradArgs& args, const AttentionConfig& config,
                                const InjectedRandomness& injected, const Workspace& workspace);

// Diagnostics: the sorted-LSH block of every query and key of the top-level non-causal problem
// (the blocks HyperAttention attends to exactly), for the same seed and injected projections.
//   query_block [batch, heads_q,  seq_q]  contiguous: the block index of each query
//   key_block   [batch, heads_kv, seq_kv] contiguous: the block index of each key, -1 for the
//               attention sinks (config.sink_keys), which every query attends
// Query i attends exactly to the keys j with key_block[j] == query_block[i] or -1.
Status lsh_blocks(const AttentionArgs& args, const AttentionConfig& config,
                  const InjectedRandomness& injected, std::int32_t* query_block,
                  std::int32_t* key_block);

}  // namespace hyperattn
