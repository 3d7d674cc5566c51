// src/cpu/isa/fp32_ops.hpp: the part of the row-tile driver's arithmetic (dense_driver.hpp, its
// Ops) that the fp32 SIMD forward kernels (avx2.cpp, neon.cpp) share, written once: the tile and
// its scratch layout, Q loaded times scale * log2 e, the calls of the ISA's packing and
// microkernels, P V over exactly the visible keys, the rounding of the running sum and the final
// O = acc / l. Each ISA derives its Ops from Fp32Ops and adds its vector code: the lanes a row
// sees, row_max, row_weights and combine_rows.
//
// Not a normal header: avx2.cpp and neon.cpp include it inside their own unnamed namespace, after
// fp32_scratch.hpp and dense_driver.hpp and after defining
//   void pack_key_tile(const DenseAttentionTile&, const ScratchLayout&, std::int64_t c0, int nc,
//                      float* kbuf, float* vbuf, float* bias)   K panels, V rows, bias * log2 e
//   void scores_group(const float* q, int d, const float* kbuf, float* s, int n)   S = Q K^T
//   void pv_group(const float* p, int ldp, const float* v, int ldv, int keys, const float* corr,
//                 float* o, int ldo)                             O = corr * O + P V
// so each ISA gets its own internal copy (tests/cpu/check_isa_isolation.py).

struct Fp32Ops : RowTileScratch {
  const DenseAttentionTile& t;
  const ScratchLayout L;
  const int d;

  explicit Fp32Ops(const DenseAttentionTile& tile)
      : RowTileScratch(tile.scratch, scratch_layout(tile.head_dim, tile.head_dim_v)), t(tile),
        L(scratch_layout(tile.head_dim, tile.head_dim_v)), d(tile.head_dim) {}

  void load_queries(std::int64_t r0, int nr, int nr_pad) { load_queries_f32(t, r0, nr, nr_pad, t.scale * kLog2e, qbuf); }
  void pack_keys(std::int64_t c0, int nc) { pack_key_tile(t, L, c0, nc, kbuf, vbuf, bias); }
  void scores(int g0, int n) { scores_group(qbuf + static_cast<std::size_t>(g0) * d, d, kbuf, s, n); }
  static int pv_keys(int n) { return n; }
  void zero_weights(int r, int n) { std::memset(s + r * kKeyTile, 0, static_cast<std::size_t>(n) * sizeof(float)); }
  // Roundings spelled out (the FMA targets, and AArch64 compilers by default, would otherwise
  // contract a * b + c into an FMA).
  static float running_sum(float l_old, float c, float sum) { return no_contract(l_old * c) + sum; }
  void accumulate_pv(int g0, int n) {
    pv_group(s, kKeyTile, vbuf, L.dv_pad, n, corr, obuf + static_cast<std::size_t>(g0) * L.dv_pad, L.dv_pad);
  }
  static void scale_row(float* o, const float* acc, float inv, int dv) {
    for (int x = 0; x < dv; ++x) o[x] = acc[x] * inv;
  }
};
