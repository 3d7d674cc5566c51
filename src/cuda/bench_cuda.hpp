// src/cuda/bench_cuda.hpp: timing of the CUDA backend (the `hyperattn bench --backend cuda` table
// and scripts/gpu_check.sh). Inputs are drawn on the device (normal, never zeros); each case is
// warmed up, then timed with CUDA events around each call; the median is reported.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "hyperattn/config.hpp"
#include "hyperattn/status.hpp"
#include "hyperattn/tensor.hpp"

namespace hyperattn {

struct CudaBenchSpec {
  DType dtype = DType::bf16;
  std::int64_t batch = 1;
  std::int64_t heads_q = 32;
  std::int64_t heads_kv = 32;
  std::vector<std::int64_t> head_dims{64, 128};
  std::vector<std::int64_t> seqs{16384, 32768, 131072};  // seq_q = seq_kv
  std::vector<bool> causal{false, true};
  bool exact = true;
  bool hyper = true;
  std::int64_t exact_max_seq = 32768;  // exact attention is skipped above this length
  int warmup = 2;
  int repeats = 10;
  AttentionConfig config;  // HyperAttention parameters (paper defaults)
  std::uint64_t data_seed = 1;
};

struct CudaBenchResult {
  std::string method;  // "exact" or "hyper"
  std::int64_t head_dim = 0, seq = 0;
  bool causal = false;
  double median_ms = 0.0, min_ms = 0.0;
  // FLOPs of exact attention (4 * seq_q * seq_kv * head_dim per head, half when causal) over the
  // median time: the real rate for exact, the exact-equivalent rate for hyper.
  double exact_equivalent_tflops = 0.0;
  std::size_t workspace_bytes = 0;
};

// Runs every (head_dim, seq, causal, method) case; fails with StatusCode::unsupported when no CUDA
// device is present.
Status cuda_bench(const CudaBenchSpec& spec, std::vector<CudaBenchResult>* results);

}  // namespace hyperattn
