// src/cuda/tile_keys.hpp: which query rows and which keys a tile of an attention launch covers
// (sorted rows, sorted key block, attention sinks, sampled keys with their bias), shared by the CUDA
// kernels (device) and the host emulation in tests/cuda/test_cuda_lowering.cpp (host), so that the
// integer logic is checked against the CPU engine on machines without a GPU.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/random.hpp"
#include "cuda/device_types.hpp"

#if defined(__CUDACC__)
#define HYPERATTN_HD __host__ __device__
#else
#define HYPERATTN_HD
#endif

namespace hyperattn::cuda {

inline constexpr float kLog2e = 1.4426950408889634f;
inline constexpr float kLn2 = 0.6931471805599453f;

// The (batch, head_q, kv head) of a grid row y = batch * heads_q + head_q.
struct HeadIndex {
  int batch, head_q, head_kv;
  int bh_q, bh_kv;  // flattened batch * heads + head
};

HYPERATTN_HD inline HeadIndex head_index(const AttentionParams& p, int y) {
  HeadIndex h;
  h.bh_q = y;
  h.batch = y / p.heads_q;
  h.head_q = y % p.heads_q;
  h.head_kv = h.head_q / (p.heads_q / p.heads_kv);
  h.bh_kv = h.batch * p.heads_kv + h.head_kv;
  return h;
}

// Absolute query position of local row r of a problem (through the sorted order if approximated).
HYPERATTN_HD inline std::int64_t row_position(const AttentionParams& p, const Problem& pr,
                                                     const HeadIndex& h, std::int64_t r) {
  if (!pr.lsh) return pr.q0 + r;
  return pr.q0 + p.q_perm[h.bh_q * p.q_perm_stride + pr.q_perm_offset + r];
}

// Sorted key block `block` of an approximated problem: [start, start + size) in sorted order.
HYPERATTN_HD inline void key_block_range(const AttentionParams& p, const Problem& pr, int block,
                                                std::int64_t* start, std::int64_t* size) {
  const std::int64_t hashed = pr.k_len - pr.sinks;
  *start = static_cast<std::int64_t>(block) * p.block_size;
  const std::int64_t end = *start + p.block_size < hashed ? *start + p.block_size : hashed;
  *size = end - *start;
}

// Samples of a sorted key block of `size` keys: none when the block holds every hashed key;
// stratified sampling draws at most one per key outside the block (cpu/executor.cpp's rule).
HYPERATTN_HD inline std::int64_t block_samples(const AttentionParams& p, const Problem& pr,
                                                      std::int64_t size) {
  const std::int64_t outside = pr.k_len - pr.sinks - size;
  if (outside <= 0) return 0;
  // The sinks come out of the sample budget (cpu/executor.cpp's rule).
  const std::int64_t budget = p.sample_size > pr.sinks ? p.sample_size - pr.sinks : 0;
  return p.stratified && outside < budget ? outside : budget;
}

// Keys a tile attends to: exact problems all keys (cut at the causal diagonal of the tile's last
// row); approximated ones the sinks, then the sorted key block, then the samples.
HYPERATTN_HD inline std::int64_t tile_key_count(const AttentionParams& p, const Problem& pr,
                                                       const Tile& t) {
  if (!pr.lsh) {
    std::int64_t visible = pr.k_len;
    if (pr.causal_diagonal < kNoMask) {
      const std::int64_t last = t.row_end - 1 + pr.causal_diagonal + 1;
      visible = last < visible ? (last > 0 ? last : 0) : visible;
    }
    return visible;
  }
  std::int64_t start, size;
  key_block_range(p, pr, t.block, &start, &size);
  return pr.sinks + size + block_samples(p, pr, size);
}

// Key j of a tile: its absolute position and additive bias (log2 domain). For exact problems the
// local key index is j itself (the causal mask compares it with the local row). The samples follow
// cpu/executor.cpp's gather_block_keys exactly (same random counters, same sorted-position mapping).
HYPERATTN_HD inline void tile_key(const AttentionParams& p, const Problem& pr, const Tile& t,
                                         const HeadIndex& h, std::int64_t j, std::int64_t* position,
                                         float* bias_log2) {
  *bias_log2 = 0.0f;
  if (!pr.lsh || j < pr.sinks) {
    *position = pr.k0 + j;
    return;
  }
  j -= pr.sinks;
  std::int64_t start, size;
  key_block_range(p, pr, t.block, &start, &size);
  const std::int32_t* perm = p.k_perm + h.bh_kv * p.k_perm_stride + pr.k_perm_offset;  // sorted, relative
  const std::int64_t lsh_k0 = pr.k0 + pr.sinks;
  if (j < size) {
    *position = lsh_k0 + perm[start + j];
    return;
  }
  const std::int64_t i = j - size;
  const std::int64_t outside = pr.k_len - pr.sinks - size;  // > 0 when there are samples
  const std::int64_t m = block_samples(p, pr, size);
  if (p.injected_samples != nullptr && pr.subproblem == 0) {
    *bias_log2 = static_cast<float>(std::log(static_cast<double>(outside) / static_cast<double>(m))) * kLog2e;
    *position = p.injected_samples[(static_cast<std::int64_t>(h.bh_q) * pr.num_blocks + t.block) * p.sample_size + i];
    return;
  }
  const std::uint64_t bits = rng::bits(p.seed, rng::Stream::sample, static_cast<std::uint64_t>(h.batch),
                                       static_cast<std::uint64_t>(h.head_q), pr.subproblem,
                                       static_cast<std::uint64_t>(t.block), static_cast<std::uint64_t>(i));
  std::int64_t u;
  if (p.stratified) {  // one draw in stratum i of the sorted order outside the block, weight its size
    const std::int64_t lo = i * outside / m, stratum = (i + 1) * outside / m - lo;
    u = lo + static_cast<std::int64_t>(rng::uniform_below(bits, static_cast<std::uint64_t>(stratum)));
    *bias_log2 = static_cast<float>(std::log(static_cast<double>(stratum))) * kLog2e;
  } else {
    u = static_cast<std::int64_t>(rng::uniform_below(bits, static_cast<std::uint64_t>(outside)));
    *bias_log2 = static_cast<float>(std::log(static_cast<double>(outside) / static_cast<double>(m))) * kLog2e;
  }
  *position = lsh_k0 + perm[u < start ? u : u + size];
}

}  // namespace hyperattn::cuda
