// hyperattn/cuda.hpp: exact attention and HyperAttention on NVIDIA GPUs (built with
// -DHYPERATTN_CUDA=ON; link hyperattn::cuda).
//
// The same AttentionArgs / AttentionConfig / TensorView as the CPU API (attention.hpp), with every
// TensorView / LseView data pointer a DEVICE pointer. Shapes:
//   q   [batch, heads_q,  seq_q,  head_dim]   bf16, f16 or f32
//   k   [batch, heads_kv, seq_kv, head_dim]   same dtype as q
//   v   [batch, heads_kv, seq_kv, head_dim]   same dtype as q
//   out [batch, heads_q,  seq_q,  head_dim]   same dtype as q
//   lse [batch, heads_q,  seq_q]              fp32, optional (data == nullptr skips it)
//
// Protocol (check -> workspace size -> run): ask cuda_workspace_size() for the bytes one call
// needs, allocate them on the device (256-byte aligned, e.g. cudaMalloc), then call. Calls are
// asynchronous on `stream` (a cudaStream_t passed as void*, nullptr = the legacy default stream):
// no device synchronisation, no allocation. The host-side plan (projections drawn on the host,
// sub-problem and tile tables, injected randomness) is copied into the workspace with one
// cudaMemcpyAsync from pageable host memory, which returns once the bytes are staged.
// Errors in the arguments come back as a Status before anything is launched; a failed launch comes
// back as StatusCode::internal with the CUDA error string.
//
// Results are those of hyper_attention() / exact_attention() on the CPU: the integer stages
// (sign bits, Gray-rank buckets, stable sorts, sampled key indices) are bit-identical for the same
// seed; the floating-point results agree to the rounding of the arithmetic (fp32 accumulation;
// the tensor-core kernels round the softmax probabilities to bf16/fp16 before P*V).
#pragma once

#include <cstddef>
#include <cstdint>

#include "hyperattn/attention.hpp"
#include "hyperattn/config.hpp"
#include "hyperattn/status.hpp"

namespace hyperattn {

// True when the CUDA runtime sees at least one device (never an error: false without a driver).
bool cuda_device_available();

// Bytes of device workspace that cuda_exact_attention (hyper = false) or cuda_hyper_attention
// (hyper = true) needs for these arguments; validates them like the calls do.
Status cuda_workspace_size(const AttentionArgs& args, const AttentionConfig& config, bool hyper,
                           std::size_t* bytes);

// Exact attention (flash kernel, online softmax). config.causal is bottom-right aligned.
Status cuda_exact_attention(const AttentionArgs& args, const AttentionConfig& config,
                            void* workspace, std::size_t workspace_bytes, void* stream);

// HyperAttention (specification §2-§4), the same algorithm and random streams as the CPU.
// `injected` holds HOST pointers here (layouts as in attention.hpp); they are copied to the
// device inside the call. Sampling::uniform and ::stratified are implemented (value_norm: unsupported).
Status cuda_hyper_attention(const AttentionArgs& args, const AttentionConfig& config,
                            const InjectedRandomness& injected, void* workspace,
                            std::size_t workspace_bytes, void* stream);

// Diagnostics, as lsh_blocks() in attention.hpp, for the top-level non-causal problem; the
// outputs are DEVICE pointers (contiguous int32 [batch, heads_q, seq_q] and
// [batch, heads_kv, seq_kv]; sinks get -1). Needs cuda_lsh_blocks_workspace_size() bytes.
Status cuda_lsh_blocks_workspace_size(const AttentionArgs& args, const AttentionConfig& config,
                                      std::size_t* bytes);
Status cuda_lsh_blocks(const AttentionArgs& args, const AttentionConfig& config,
                       const InjectedRandomness& injected, std::int32_t* query_block,
                       std::int32_t* key_block, void* workspace, std::size_t workspace_bytes,
                       void* stream);

}  // namespace hyperattn
