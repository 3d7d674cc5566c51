// src/cuda/tile_keys.hpp: which query rows and which keys a tile of an attention launch covers
// (sorted rows, sorted key block, attention sinks, sampled keys with their bias), shared by the CUDA
// kernels (device) and the host emulation in tests/cuda/test_cuda_lowering.cpp (host), so that the
// integer logic is checked against the CPU engine on machines without a GPU.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/key_selection.hpp"  // the key-selection rules, shared with the CPU executor (HYPERATTN_HD)
#include "core/random.hpp"
#include "cuda/device_types.hpp"

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

// Sorted key block `block` of an approximated problem (core/key_selection.hpp).
HYPERATTN_HD inline key_selection::BlockRange key_block_range(const AttentionParams& p, const Problem& pr, int block) {
  return key_selection::block_range(pr.k_len - pr.sinks, p.block_size, block);
}

// Samples of a sorted key block (core/key_selection.hpp's rule; the CUDA backend implements
// uniform and stratified sampling).
HYPERATTN_HD inline std::int64_t block_samples(const AttentionParams& p, const Problem& pr,
                                               const key_selection::BlockRange& r) {
  return key_selection::sample_count(p.stratified ? Sampling::stratified : Sampling::uniform, p.sample_size, pr.sinks,
                                     pr.k_len - pr.sinks, r);
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
  const key_selection::BlockRange r = key_block_range(p, pr, t.block);
  return pr.sinks + r.size + block_samples(p, pr, r);
}

// Key j of a tile: its absolute position and additive bias (log2 domain). For exact problems the
// local key index is j itself (the causal mask compares it with the local row). The samples follow
// the CPU executor's gather_block_keys (the same key_selection functions and random counters).
HYPERATTN_HD inline void tile_key(const AttentionParams& p, const Problem& pr, const Tile& t,
                                         const HeadIndex& h, std::int64_t j, std::int64_t* position,
                                         float* bias_log2) {
  *bias_log2 = 0.0f;
  if (!pr.lsh || j < pr.sinks) {
    *position = pr.k0 + j;
    return;
  }
  j -= pr.sinks;
  const key_selection::BlockRange r = key_block_range(p, pr, t.block);
  const std::int32_t* perm = p.k_perm + h.bh_kv * p.k_perm_stride + pr.k_perm_offset;  // sorted, relative
  const std::int64_t lsh_k0 = pr.k0 + pr.sinks;
  if (j < r.size) {
    *position = lsh_k0 + perm[r.start + j];
    return;
  }
  const std::int64_t i = j - r.size;
  const std::int64_t outside = r.outside;  // > 0 when there are samples
  const std::int64_t m = block_samples(p, pr, r);
  if (p.injected_samples != nullptr && pr.subproblem == 0) {
    *bias_log2 = static_cast<float>(std::log(static_cast<double>(outside) / static_cast<double>(m))) * kLog2e;
    *position = p.injected_samples[(static_cast<std::int64_t>(h.bh_q) * pr.num_blocks + t.block) * p.sample_size + i];
    return;
  }
  const std::uint64_t bits = rng::bits(p.seed, rng::Stream::sample, static_cast<std::uint64_t>(h.batch),
                                       static_cast<std::uint64_t>(h.head_q), pr.subproblem,
                                       static_cast<std::uint64_t>(t.block), static_cast<std::uint64_t>(i));
  std::int64_t u;  // the draws and their weights: core/key_selection.hpp
  if (p.stratified) {
    const key_selection::Stratum st = key_selection::stratum(i, outside, m);
    u = key_selection::stratum_draw(bits, st);
    *bias_log2 = key_selection::log_weight(static_cast<double>(st.size)) * kLog2e;
  } else {
    u = key_selection::uniform_draw(bits, outside);
    *bias_log2 = key_selection::log_weight(key_selection::uniform_weight(outside, m)) * kLog2e;
  }
  *position = lsh_k0 + perm[key_selection::outside_position(u, r)];
}

}  // namespace hyperattn::cuda
