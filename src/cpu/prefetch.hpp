// src/cpu/prefetch.hpp: software prefetches of gathered rows, shared by the SIMD kernels.
//
// HyperAttention's blocks gather their query, key, value and output rows through index arrays
// from all over Q, K, V and O; at 131072 tokens those rows miss every cache. A kernel hides the
// misses of its next key tile behind the current one; these helpers hide the rest: the output
// rows (and lse entries) a row tile stores or merges into at its end, and the rows the thread's
// next tile starts with (DenseAttentionTile::next). Both are issued a slice per row group while
// the last key tile computes, into L2 (the slices arrive long before use and would only crowd L1).
// Contiguous rows are left to the hardware prefetcher.
//
// The helpers are always inlined: GCC counts __builtin_prefetch as free of side effects, so a
// helper left out of line is found pure and its calls are deleted as dead code.
#pragma once

#include <algorithm>
#include <cstdint>

#include "cpu/attention_kernel.hpp"

namespace hyperattn::cpu {

[[gnu::always_inline]] inline void prefetch_l2(const void* p, std::int64_t bytes) {
  const char* c = static_cast<const char*>(p);
  for (std::int64_t at = 0; at < bytes; at += 64) __builtin_prefetch(c + at, 0, 2);
}

inline std::int64_t element_bytes(DType dtype) { return dtype == DType::f32 ? 4 : 2; }

// Output row `r` of t (with its lse entry), when t scatters its rows through out_index.
[[gnu::always_inline]] inline void prefetch_out_row(const DenseAttentionTile& t, std::int64_t r) {
  const std::int64_t row = t.out_index[r];
  prefetch_l2(t.out + row * t.out_row_stride, std::int64_t{t.head_dim_v} * 4);
  if (t.lse) __builtin_prefetch(t.lse + row, 0, 2);
}

// Rows [r0, r0 + nr) of t's output, if gathered.
[[gnu::always_inline]] inline void prefetch_out_rows(const DenseAttentionTile& t, std::int64_t r0, std::int64_t nr) {
  if (t.out_index == nullptr) return;
  for (std::int64_t r = r0; r < r0 + nr; ++r) prefetch_out_row(t, r);
}

// Slice `group` of `groups` of t's key tile [next, next + count): its key and value rows, into L2
// (a whole tile of them in L1 would evict the packed panels every row group streams; into L1,
// contiguous rows ran 1-5% slower on Zen 4, both ISAs). Issued while the current key tile
// computes, so the next tile's misses overlap its arithmetic.
[[gnu::always_inline]] inline void prefetch_key_slice(const DenseAttentionTile& t, std::int64_t next, std::int64_t count,
                                                      std::int64_t group, std::int64_t groups) {
  const std::int64_t per_group = (count + groups - 1) / groups;
  const std::int64_t lo = std::min(count, group * per_group);
  const std::int64_t hi = std::min(count, lo + per_group);
  const std::int64_t eb = element_bytes(t.dtype);
  for (std::int64_t c = lo; c < hi; ++c) {
    const std::int64_t row = t.k_index ? std::int64_t{t.k_index[next + c]} : next + c;
    const char* k = static_cast<const char*>(t.k) + row * t.k_row_stride * eb;
    const char* v = static_cast<const char*>(t.v) + row * t.v_row_stride * eb;
    prefetch_l2(k, t.head_dim * eb);
    prefetch_l2(v, t.head_dim_v * eb);
  }
}

// Slice `part` of `parts` of the gathered rows tile n starts with: the query and output rows of
// its first row tile (`row_tile` rows) and the key and value rows of its first key tile.
[[gnu::always_inline]] inline void prefetch_tile_start(const DenseAttentionTile& n, int row_tile, int key_tile, int part, int parts) {
  const std::int64_t rows = std::min<std::int64_t>(n.rows, row_tile);
  const std::int64_t q_rows = n.q_index ? rows : 0;
  const std::int64_t keys = n.k_index ? std::min<std::int64_t>(n.keys, key_tile) : 0;
  const std::int64_t out_rows = n.out_index ? rows : 0;
  const std::int64_t total = q_rows + keys + out_rows;
  const std::int64_t lo = part * total / parts, hi = (part + 1) * total / parts;
  const std::int64_t eb = element_bytes(n.dtype);
  for (std::int64_t i = lo; i < hi; ++i) {
    if (i < q_rows) {
      prefetch_l2(static_cast<const char*>(n.q) + n.q_index[i] * n.q_row_stride * eb, n.head_dim * eb);
    } else if (i < q_rows + keys) {
      const std::int64_t row = n.k_index[i - q_rows];
      prefetch_l2(static_cast<const char*>(n.k) + row * n.k_row_stride * eb, n.head_dim * eb);
      prefetch_l2(static_cast<const char*>(n.v) + row * n.v_row_stride * eb, n.head_dim_v * eb);
    } else {
      prefetch_out_row(n, i - q_rows - keys);
    }
  }
}

}  // namespace hyperattn::cpu
