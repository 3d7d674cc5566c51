// src/cpu/isa/fp32_scratch.hpp: the per-thread scratch of the fp32 SIMD forward kernels
// (avx2.cpp, neon.cpp), written once.
//
// Not a normal header: those files include it inside their own unnamed namespace, after their
// constants kW (floats per vector), kRowGroup, kRowTile and kKeyTile (and, on x86, after their
// target pragma), as dense_driver.hpp; each gets its own internal copy. avx512.cpp has its own
// layout (bf16 pairs and a bf16 copy of the weights).

inline std::size_t round_up(std::size_t x, std::size_t m) { return (x + m - 1) / m * m; }

// The scratch layout, in floats from the 64-byte aligned scratch pointer (each buffer starts on a
// 64-byte boundary).
struct ScratchLayout {
  int dv_pad;  // head_dim_v rounded up to kW
  std::size_t q, o, m, l, corr, k, v, s, bias, total;
};

inline ScratchLayout scratch_layout(int head_dim, int head_dim_v) {
  ScratchLayout L{};
  L.dv_pad = static_cast<int>(round_up(static_cast<std::size_t>(head_dim_v), kW));
  std::size_t at = 0;
  auto take = [&at](std::size_t floats) {
    const std::size_t begin = at;
    at += round_up(floats, 16);
    return begin;
  };
  L.q = take(static_cast<std::size_t>(kRowTile) * head_dim);     // [kRowTile, d] fp32, pre-scaled
  L.o = take(static_cast<std::size_t>(kRowTile) * L.dv_pad);     // [kRowTile, dv_pad] accumulators
  L.m = take(kRowTile);                                          // [kRowTile] running max (base 2)
  L.l = take(kRowTile);                                          // [kRowTile] running sum
  L.corr = take(kRowGroup);                                      // [kRowGroup]
  L.k = take(static_cast<std::size_t>(kKeyTile) * head_dim);     // [kKeyTile / kKeyChunk, d, kKeyChunk] panels
  L.v = take(static_cast<std::size_t>(kKeyTile) * L.dv_pad);     // [kKeyTile, dv_pad]
  L.s = take(static_cast<std::size_t>(kRowGroup) * kKeyTile);    // [kRowGroup, kKeyTile] scores, then weights
  L.bias = take(kKeyTile);                                       // [kKeyTile] key bias * log2 e
  L.total = at;
  return L;
}

inline std::size_t scratch_floats(int head_dim, int head_dim_v) { return scratch_layout(head_dim, head_dim_v).total; }
