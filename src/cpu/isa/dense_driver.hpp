// src/cpu/isa/dense_driver.hpp: the row-tile driver of the SIMD forward kernels, written once.
//
// Not a normal header: isa/avx2.cpp and isa/avx512.cpp include it inside their own unnamed
// namespace, after their target pragma and after the standard headers (as backward_impl.hpp), so
// each ISA gets its own copy with internal linkage (tests/cpu/check_isa_isolation.py).
//
// The driver owns what must be the same on every ISA: the row tiles and key tiles, which keys each
// row sees (the causal diagonal and row windows, DenseAttentionTile), the prefetch schedule of
// gathered rows, the online-softmax update with its NaN rule (advance_max), the end of a row (O / l
// and lse = ln 2 * m + log l; NaN and the empty set by degenerate_row_end, which the scalar kernel
// shares) and the stores or LSE merges of finished rows. The including file supplies the constants
// kRowGroup, kRowTile, kKeyTile and kLn2, and the arithmetic as a type Ops derived
// from RowTileScratch (the accumulators, running max and sum, corrections) with
//   void load_queries(r0, nr, nr_pad)            Q rows [r0, r0 + nr) into scratch, zero rows to nr_pad
//   void pack_keys(c0, nc)                       keys [c0, c0 + nc): K panels, V rows, bias
//   void scores(g0, n)                           S = Q K^T of rows [g0, g0 + kRowGroup), keys [0, n)
//   int pv_keys(n)                               the keys P V reads for n visible ones (padding)
//   float row_max(r, vis, win, row, c0)          bias added to S row r in place; the max over its
//                                                visible keys (the first vis, less those outside a
//                                                row window when win): NaN if one is NaN, -inf if none
//   void zero_weights(r, n)                      P row r = 0 on keys [0, n)
//   float row_weights(r, vis, win, row, c0, n, mx) P row r = 2^(S - mx) on its visible keys, 0 on the
//                                                others of [0, n); returns their sum
//   float running_sum(l, corr, sum)              l * corr + sum, rounded as the ISA's recurrence does
//   void accumulate_pv(g0, n)                    O rows g0.. = corr * O + P V over keys [0, n)
//   static void scale_row(o, acc, inv, dv)       o = acc * inv (dv elements; acc 64-byte aligned)
//   static void combine_rows(...)                merge_row's combine (attention_kernel.hpp)

inline const void* row_address(DType dtype, const void* base, std::int64_t stride, std::int64_t row) {
  const std::size_t bytes = dtype == DType::f32 ? 4 : 2;
  return static_cast<const char*>(base) + static_cast<std::size_t>(row * stride) * bytes;
}

// Rows gathered through an index (HyperAttention's sorted blocks and samples) are scattered over
// memory; without prefetching the packing loops stall on each row's first cache miss (a quarter
// of the kernel's time at the 256 x 512 block shape). Contiguous rows are left to the hardware.
constexpr int kPrefetchAhead = 8;  // rows

inline void prefetch_row(DType dtype, const void* base, std::int64_t stride, std::int64_t row, int dim) {
  const char* p = static_cast<const char*>(row_address(dtype, base, stride, row));
  const int bytes = dim * (dtype == DType::f32 ? 4 : 2);
  for (int at = 0; at < bytes; at += 64) __builtin_prefetch(p + at, 0, 3);
}

// Row `row` of a f32/bf16 matrix as fp32 times mul into dst[dim].
inline void load_row(DType dtype, const void* src, int dim, float mul, float* dst) {
  if (dtype == DType::f32) {
    const float* s = static_cast<const float*>(src);
    for (int x = 0; x < dim; ++x) dst[x] = s[x] * mul;
  } else {
    const std::uint16_t* s = static_cast<const std::uint16_t*>(src);
    for (int x = 0; x < dim; ++x) dst[x] = bf16_bits_to_f32(s[x]) * mul;
  }
}

// Gathered query rows [r0, r0 + nr), prefetched kPrefetchAhead rows ahead of the loop that is
// about to load row r (the first call, r = 0, also issues the rows before that distance).
inline void prefetch_queries_ahead(const DenseAttentionTile& t, std::int64_t r0, int nr, int r) {
  if (t.q_index == nullptr) return;
  if (r == 0)
    for (int a = 0; a < std::min(nr, kPrefetchAhead); ++a) prefetch_row(t.dtype, t.q, t.q_row_stride, t.q_index[r0 + a], t.head_dim);
  if (r + kPrefetchAhead < nr) prefetch_row(t.dtype, t.q, t.q_row_stride, t.q_index[r0 + r + kPrefetchAhead], t.head_dim);
}

// Rows [r0, r0 + nr) of q as fp32 times mul into qbuf [nr_pad][head_dim]; rows nr.. are zero.
inline void load_queries_f32(const DenseAttentionTile& t, std::int64_t r0, int nr, int nr_pad, float mul, float* qbuf) {
  const int d = t.head_dim;
  for (int r = 0; r < nr_pad; ++r) {
    prefetch_queries_ahead(t, r0, nr, r);
    float* dst = qbuf + static_cast<std::size_t>(r) * d;
    if (r >= nr) {
      std::memset(dst, 0, static_cast<std::size_t>(d) * 4);
      continue;
    }
    const std::int64_t row = t.q_index ? t.q_index[r0 + r] : r0 + r;
    load_row(t.dtype, row_address(t.dtype, t.q, t.q_row_stride, row), d, mul, dst);
  }
}

// The scratch buffers of a row tile, at the offsets of the ISA's ScratchLayout (q, o, m, l, corr,
// k, v, s, bias in floats from the 64-byte aligned scratch; dv_pad: head_dim_v rounded up to a vector).
struct RowTileScratch {
  int dv_pad;
  float* qbuf;  // [kRowTile, d] fp32 (ISA-specific forms: see the ISA's layout)
  float* obuf;  // [kRowTile, dv_pad] accumulators
  float* m;     // [kRowTile] running max (base 2)
  float* l;     // [kRowTile] running sum
  float* corr;  // [kRowGroup]
  float* kbuf;  // key panels
  float* vbuf;  // value rows
  float* s;     // [kRowGroup, kKeyTile] scores, then fp32 weights
  float* bias;  // [kKeyTile]
  template <class Layout>
  RowTileScratch(float* scratch, const Layout& L)
      : dv_pad(L.dv_pad), qbuf(scratch + L.q), obuf(scratch + L.o), m(scratch + L.m), l(scratch + L.l),
        corr(scratch + L.corr), kbuf(scratch + L.k), vbuf(scratch + L.v), s(scratch + L.s), bias(scratch + L.bias) {}
};

// The end of a row tile: rows [r0, r0 + nr) of the tile, accumulated in obuf [nr][ldo]
// (unnormalised) with running max m (base 2) and sum l, normalised and written to out and lse,
// or merged into them (t.merge).
template <class Ops>
void store_rows(const DenseAttentionTile& t, std::int64_t r0, int nr, float* obuf, int ldo, const float* m,
                const float* l) {
  const int dv = t.head_dim_v;
  for (int r = 0; r < nr; ++r) {
    // The gathered output rows are in L2 since the last key tile, but their address
    // translations are long gone from the TLBs: touch them again a few rows ahead.
    if (t.out_index && r + kPrefetchAhead < nr) {
      const std::int64_t ahead = t.out_index[r0 + r + kPrefetchAhead];
      prefetch_row(DType::f32, t.out, t.out_row_stride, ahead, dv);
      if (t.lse) __builtin_prefetch(t.lse + ahead, 0, 3);
    }
    const std::int64_t orow = t.out_index ? t.out_index[r0 + r] : r0 + r;
    // The row's result (in place in obuf with merge, else straight into out) and its lse.
    float* acc = obuf + static_cast<std::size_t>(r) * ldo;
    float* o = t.merge ? acc : t.out + orow * t.out_row_stride;
    float row_lse;
    if (!degenerate_row_end(l[r], o, dv, &row_lse)) {  // NaN propagates, no visible key: the empty set
      Ops::scale_row(o, acc, 1.0f / l[r], dv);
      row_lse = std::fma(kLn2, m[r], std::log(l[r]));
    }
    if (t.merge) merge_row(t.out + orow * t.out_row_stride, t.lse + orow, acc, row_lse, dv, Ops::combine_rows);
    else if (t.lse) t.lse[orow] = row_lse;
  }
}

// The online-softmax step of one row for one key tile, given its tile max (Ops::row_max): the
// running max and sum of row `row` of the row tile, and corr, the factor its O is scaled by.
template <class Ops>
void update_row(Ops& ops, int r, int vis, bool win, std::int64_t row_in_tile, std::int64_t c0, int n, float tile_max,
                int row) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  if (tile_max == kNegInf) {  // nothing visible (or every bias -inf): weights 0, O unchanged
    ops.corr[r] = 1.0f;
    ops.zero_weights(r, n);
    return;
  }
  const RunningMax next = advance_max(ops.m[row], tile_max);
  ops.corr[r] = next.corr;
  const float sum = ops.row_weights(r, vis, win, row_in_tile, c0, n, next.m);
  ops.l[row] = ops.running_sum(ops.l[row], next.corr, sum);
  ops.m[row] = next.m;
}

// The kernel: row tiles of kRowTile rows, key tiles of kKeyTile keys, row groups of kRowGroup.
template <class Ops>
void dense_rows(const DenseAttentionTile& t, Ops& ops) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  for (std::int64_t r0 = 0; r0 < t.rows; r0 += kRowTile) {
    const int nr = static_cast<int>(std::min<std::int64_t>(kRowTile, t.rows - r0));
    const int nr_pad = (nr + kRowGroup - 1) / kRowGroup * kRowGroup;
    ops.load_queries(r0, nr, nr_pad);
    for (int r = 0; r < nr_pad; ++r) {
      ops.m[r] = kNegInf;
      ops.l[r] = 0.0f;
    }
    std::memset(ops.obuf, 0, static_cast<std::size_t>(nr_pad) * ops.dv_pad * sizeof(float));
    std::int64_t key_end = std::clamp<std::int64_t>(r0 + nr - 1 + t.causal_diagonal + 1, 0, t.keys);
    if (t.row_window != nullptr) {  // also past every row's window limit (window_key_limit)
      std::int64_t end = 0;
      for (int r = 0; r < nr; ++r)
        end = std::max(end, std::min(std::clamp<std::int64_t>(r0 + r + t.causal_diagonal + 1, 0, t.keys),
                                     window_key_limit(t, r0 + r)));
      key_end = end;
    }

    for (std::int64_t c0 = 0; c0 < key_end; c0 += kKeyTile) {
      const int nc = static_cast<int>(std::min<std::int64_t>(kKeyTile, key_end - c0));
      ops.pack_keys(c0, nc);

      for (int g0 = 0; g0 < nr_pad; g0 += kRowGroup) {
        int visible[kRowGroup];
        bool windowed[kRowGroup];
        int group_end = 0;
        for (int r = 0; r < kRowGroup; ++r) {
          const int row = g0 + r;
          visible[r] = row < nr ? static_cast<int>(std::clamp<std::int64_t>(
                                      std::min(r0 + row + t.causal_diagonal + 1, window_key_limit(t, r0 + row)) - c0, 0, nc))
                                : 0;
          windowed[r] = row < nr && has_window(t, r0 + row);
          group_end = std::max(group_end, visible[r]);
        }
        // Prefetch the next key tile's rows a slice per row group, so their cache misses overlap
        // this tile's arithmetic (gathered rows miss everywhere; contiguous ones come from L3 or
        // DRAM once per row tile).
        if (c0 + kKeyTile < key_end) {
          const std::int64_t next = c0 + kKeyTile;
          prefetch_key_slice(t, next, std::min<std::int64_t>(kKeyTile, key_end - next), g0 / kRowGroup,
                             nr_pad / kRowGroup);
        }
        // During the last key tile: this group's gathered output rows, stored or merged into
        // at the end of the row tile, and a slice of the rows the next tile starts with.
        if (c0 + kKeyTile >= key_end) {
          prefetch_out_rows(t, r0 + g0, std::min(kRowGroup, nr - std::min(nr, g0)));
          if (t.next != nullptr && r0 + kRowTile >= t.rows)
            prefetch_tile_start(*t.next, kRowTile, kKeyTile, g0 / kRowGroup, nr_pad / kRowGroup);
        }
        if (group_end == 0) continue;  // the whole group is masked for this key tile

        ops.scores(g0, group_end);
        // Online softmax, one row at a time, vectorised over keys.
        const int n = ops.pv_keys(group_end);
        for (int r = 0; r < kRowGroup; ++r) {
          const float tile_max = ops.row_max(r, visible[r], windowed[r], r0 + g0 + r, c0);
          update_row(ops, r, visible[r], windowed[r], r0 + g0 + r, c0, n, tile_max, g0 + r);
        }
        ops.accumulate_pv(g0, n);  // O = corr * O + P V
      }
    }

    store_rows<Ops>(t, r0, nr, ops.obuf, ops.dv_pad, ops.m, ops.l);
  }
}
