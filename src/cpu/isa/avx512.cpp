// src/cpu/isa/avx512.cpp: the AVX-512 dense attention kernel (fp32 FMA; vdpbf16ps for bf16 input).
//
// Two kernels come from this file: "avx512" (AVX-512 F/BW/VL/DQ + BF16: AMD Zen 4 and later, Intel
// Cooper Lake, Sapphire Rapids and later) and, compiled once more by isa/avx512_nobf16.cpp with
// HYPERATTN_AVX512_BF16 0, "avx512_nobf16" for AVX-512 CPUs without BF16 (Intel Skylake-SP, Cascade
// Lake, Ice Lake): the same code less vdpbf16ps, bf16 input widened to fp32 while packing (the fp32
// path below, as the AVX2 kernel does). For f32 input both give the same bits.
//
// Same contract and online-softmax recurrence as isa/scalar.cpp. Blocking:
//   * a row tile of kRowTile query rows is loaded once (scaled, converted) into scratch together
//     with its fp32 accumulators O, running max m and running sum l;
//   * each key tile of kKeyTile keys is packed once per row tile: K transposed into panels of
//     kKeyChunk keys ([head_dim][32 keys] fp32, or [head_dim/2][32 keys][2] bf16 pairs), V row
//     major ([keys][head_dim_v padded to 16] fp32, or [keys/2][head_dim_v][2] bf16 pairs);
//   * per group of kRowGroup = 8 rows: S = Q K^T by an 8 x 32 register-blocked microkernel
//     (16 zmm accumulators, embedded broadcasts of q), a vectorised online-softmax pass, then
//     O += P V by an 8 x 48 microkernel (24 zmm accumulators) vectorised over head_dim_v.
// Scores are kept in base 2: Q (or the bf16 dot product) is multiplied by scale * log2(e) and the
// bias by log2(e), so the softmax needs exp2 only; lse = ln2 * (m + log2 l).
//
// exp2: x = n + f with n = round(x), |f| <= 1/2; 2^f by a degree-6 polynomial fitted for relative
// error (max 1.9e-9 in exact arithmetic, 9.6e-8 relative = at most 1.6 ulp measured with fp32 Horner over
// [-1/2, 1/2]); 2^n applied by vscalefps, which flushes to exactly 0 below the fp32 range.
//
// bf16 input: products of bf16 numbers are exact in fp32, so S is as accurate as the fp32 path.
// P is rounded to bf16 for the P V product (relative error <= 2^-9 per weight) while the row sum
// l adds the unrounded weights, so lse keeps fp32 accuracy (HyperAttention merges partial
// results through it) and the output moves by at most 2^-9 * max_j |v_j| per element.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "core/bfloat16.hpp"
#include "cpu/attention_kernel.hpp"
#include "cpu/prefetch.hpp"

#ifndef HYPERATTN_AVX512_BF16
#define HYPERATTN_AVX512_BF16 1  // isa/avx512_nobf16.cpp sets 0
#endif
#if HYPERATTN_AVX512_BF16
#define HYPERATTN_AVX512_NAMESPACE avx512
#define HYPERATTN_AVX512_NAME "avx512"
#else
#define HYPERATTN_AVX512_NAMESPACE avx512_nobf16
#define HYPERATTN_AVX512_NAME "avx512_nobf16"
#endif

// Only this file's own definitions below get the target ISA: the headers above are compiled
// for the baseline, so no inline function or template instantiated from them (which the linker
// may share with other files) carries instructions an older CPU lacks (tests/cpu/isa_isolation).
#pragma GCC push_options
#if HYPERATTN_AVX512_BF16
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")
#else
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,fma")
#endif
// g++ 12's AVX-512 intrinsics pass _mm512_undefined_*() through masked builtins and trip
// -Wmaybe-uninitialized at every use (GCC PR105593, fixed in GCC 13).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace hyperattn::cpu::HYPERATTN_AVX512_NAMESPACE {
namespace {

constexpr int kW = 16;            // fp32 lanes per zmm
constexpr int kRowGroup = 8;      // rows per microkernel call
constexpr int kKeyChunk = 32;     // keys per S microkernel call (two zmm)
constexpr int kRowTile = 512;     // rows held in scratch at once (multiple of kRowGroup; the executor's 512-row chunk)
constexpr int kKeyTile = 256;     // keys packed at once (multiple of kKeyChunk)
constexpr int kWinRows = 32;      // compact row windows: windowed rows per tile at most
constexpr int kWinTileRows = 256; // compact row windows: rows per tile at most
constexpr int kWinKeys = 2048;    // compact row windows: keys per tile at most
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2 = 0.693147180559945309f;

std::size_t round_up(std::size_t x, std::size_t m) { return (x + m - 1) / m * m; }

// The scratch layout, in floats from the 64-byte aligned scratch pointer (one source of truth for
// scratch_floats and dense).
struct ScratchLayout {
  int d_pad;   // head_dim rounded up to even (bf16 pairs)
  int dv_pad;  // head_dim_v rounded up to kW
  std::size_t q, o, m, l, corr, k, v, s, p16, bias, st, masks, wx, wpos, total;
};

ScratchLayout scratch_layout(int head_dim, int head_dim_v) {
  ScratchLayout L{};
  L.d_pad = static_cast<int>(round_up(static_cast<std::size_t>(head_dim), 2));
  L.dv_pad = static_cast<int>(round_up(static_cast<std::size_t>(head_dim_v), kW));
  std::size_t at = 0;
  auto take = [&at](std::size_t floats) {
    const std::size_t begin = at;
    at += round_up(floats, kW);
    return begin;
  };
  L.q = take(static_cast<std::size_t>(kRowTile) * L.d_pad);      // [kRowTile, d] f32 or [.., d/2] bf16 pairs
  L.o = take(static_cast<std::size_t>(kRowTile) * L.dv_pad);     // [kRowTile, dv_pad]
  L.m = take(kRowTile);                                          // [kRowTile]
  L.l = take(kRowTile);                                          // [kRowTile]
  L.corr = take(kRowGroup);                                      // [kRowGroup]
  L.k = take(static_cast<std::size_t>(kKeyTile) * L.d_pad);      // panels, see pack_keys
  L.v = take(static_cast<std::size_t>(kKeyTile) * L.dv_pad);     // [kKeyTile, dv_pad]
  L.s = take(static_cast<std::size_t>(kRowGroup) * kKeyTile);    // [kRowGroup, kKeyTile]
  L.p16 = take(static_cast<std::size_t>(kRowGroup) * kKeyTile / 2);  // [kRowGroup, kKeyTile] bf16
  L.bias = take(kKeyTile);                                       // [kKeyTile]
  L.st = take(static_cast<std::size_t>(kKeyTile) * kW);          // small tiles: [kKeyTile keys, 16 rows]
  L.masks = take(kKeyTile / 2);                                  // small tiles: [kKeyTile] lane masks (16 bits)
  L.wx = take(static_cast<std::size_t>(kWinRows) * kWinKeys);    // compact windows: [kWinRows][kWinKeys] scores
  L.wpos = take(static_cast<std::size_t>(kWinRows) * kWinKeys);  // compact windows: [kWinRows][kWinKeys] key rows (int32)
  L.total = at;
  return L;
}

std::size_t scratch_floats(int head_dim, int head_dim_v) {
  return scratch_layout(head_dim, head_dim_v).total;
}

// 2^x for x <= 0 (any x: inputs below -150 give 0, -inf gives 0).
inline __m512 exp2_ps(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-150.0f));
  const __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(x, n);
  __m512 p = _mm512_set1_ps(1.534581243e-04f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.339993090e-03f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.618489072e-03f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.550328642e-02f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.402264625e-01f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.931471825e-01f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

inline __mmask16 prefix_mask(std::int64_t n) {
  return n >= kW ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << (n > 0 ? n : 0)) - 1u);
}

// Row `row`'s window mask (row_window set) for keys j0 + [0, 16): the lanes of keys it sees among
// the `valid` first (window_visible, vectorised).
inline __mmask16 window_lanes(const DenseAttentionTile& t, std::int64_t row, std::int64_t j0, __mmask16 valid) {
  const __m512i pos = t.k_index ? _mm512_maskz_loadu_epi32(valid, t.k_index + j0)
                                : _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(j0)),
                                                   _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
  const __mmask16 inside = _mm512_cmpge_epi32_mask(pos, _mm512_set1_epi32(t.row_window[2 * row])) &
                           _mm512_cmplt_epi32_mask(pos, _mm512_set1_epi32(t.row_window[2 * row + 1]));
  const __mmask16 before = prefix_mask(t.window_from - j0);
  return static_cast<__mmask16>((before ^ inside) & valid);
}

// ---- S = Q K^T microkernels: 8 rows x 32 keys -------------------------------------------------

// q: [8, d] fp32 pre-scaled; panel: [d, 32]; s: [8, lds].
[[gnu::always_inline]] inline void scores_f32(const float* q, int d, const float* panel, float* s, int lds) {
  __m512 a0[kRowGroup], a1[kRowGroup];
  for (int r = 0; r < kRowGroup; ++r) a0[r] = a1[r] = _mm512_setzero_ps();
  for (int x = 0; x < d; ++x) {
    const __m512 k0 = _mm512_load_ps(panel + x * kKeyChunk);
    const __m512 k1 = _mm512_load_ps(panel + x * kKeyChunk + kW);
    for (int r = 0; r < kRowGroup; ++r) {
      const __m512 b = _mm512_set1_ps(q[r * d + x]);
      a0[r] = _mm512_fmadd_ps(b, k0, a0[r]);
      a1[r] = _mm512_fmadd_ps(b, k1, a1[r]);
    }
  }
  for (int r = 0; r < kRowGroup; ++r) {
    _mm512_store_ps(s + r * lds, a0[r]);
    _mm512_store_ps(s + r * lds + kW, a1[r]);
  }
}

// q: [8, d2] bf16 pairs; panel: [d2, 32 keys, 2] bf16; s: [8, lds].
[[gnu::always_inline]] inline void scores_bf16(const std::uint32_t* q, int d2, const std::uint16_t* panel, float* s,
                                               int lds) {
  __m512 a0[kRowGroup], a1[kRowGroup];
  for (int r = 0; r < kRowGroup; ++r) a0[r] = a1[r] = _mm512_setzero_ps();
  for (int x = 0; x < d2; ++x) {
    const __m512bh k0 = (__m512bh)_mm512_load_si512(panel + x * 2 * kKeyChunk);
    const __m512bh k1 = (__m512bh)_mm512_load_si512(panel + x * 2 * kKeyChunk + 2 * kW);
    for (int r = 0; r < kRowGroup; ++r) {
      const __m512bh b = (__m512bh)_mm512_set1_epi32(static_cast<int>(q[r * d2 + x]));
      a0[r] = _mm512_dpbf16_ps(a0[r], k0, b);
      a1[r] = _mm512_dpbf16_ps(a1[r], k1, b);
    }
  }
  for (int r = 0; r < kRowGroup; ++r) {
    _mm512_store_ps(s + r * lds, a0[r]);
    _mm512_store_ps(s + r * lds + kW, a1[r]);
  }
}

// S = Q K^T of rows [g0, g0 + 8) against keys [0, n) rounded up to a chunk: its own function, so
// the microkernel's registers do not depend on what the driver around it keeps live (as avx2.cpp).
template <bool kBf16>
[[gnu::noinline]] void scores_group(const float* qbuf, int g0, int d, int d_pad, const float* kbuf, float* s, int n) {
  for (int cc = 0; cc < n; cc += kKeyChunk) {
    if constexpr (kBf16) {
      const int d2 = d_pad / 2;
      scores_bf16(reinterpret_cast<const std::uint32_t*>(qbuf) + static_cast<std::size_t>(g0) * d2, d2,
                  reinterpret_cast<const std::uint16_t*>(kbuf) + static_cast<std::size_t>(cc) * d2 * 2, s + cc, kKeyTile);
    } else {
      scores_f32(qbuf + static_cast<std::size_t>(g0) * d, d, kbuf + static_cast<std::size_t>(cc) * d, s + cc, kKeyTile);
    }
  }
}

// ---- O = corr * O + P V microkernels: 8 rows x kCols*16 columns -------------------------------

// p: [8, ldp] fp32; v: [keys, ldv] fp32; o: [8, ldo].
template <int kCols>
inline void accumulate_pv_f32(const float* p, int ldp, const float* v, int ldv, int keys,
                              const float* corr, float* o, int ldo) {
  __m512 acc[kRowGroup][kCols];
  for (int r = 0; r < kRowGroup; ++r) {
    const __m512 c = _mm512_set1_ps(corr[r]);
    for (int j = 0; j < kCols; ++j) acc[r][j] = _mm512_mul_ps(_mm512_load_ps(o + r * ldo + j * kW), c);
  }
  for (int key = 0; key < keys; ++key) {
    __m512 vv[kCols];
    for (int j = 0; j < kCols; ++j) vv[j] = _mm512_load_ps(v + key * ldv + j * kW);
    for (int r = 0; r < kRowGroup; ++r) {
      const __m512 b = _mm512_set1_ps(p[r * ldp + key]);
      for (int j = 0; j < kCols; ++j) acc[r][j] = _mm512_fmadd_ps(b, vv[j], acc[r][j]);
    }
  }
  for (int r = 0; r < kRowGroup; ++r)
    for (int j = 0; j < kCols; ++j) _mm512_store_ps(o + r * ldo + j * kW, acc[r][j]);
}

// p: [8, ldp] bf16 (ldp even); v: [keys/2, ldv, 2] bf16 pairs; keys even.
template <int kCols>
inline void accumulate_pv_bf16(const std::uint16_t* p, int ldp, const std::uint16_t* v, int ldv,
                               int keys, const float* corr, float* o, int ldo) {
  __m512 acc[kRowGroup][kCols];
  for (int r = 0; r < kRowGroup; ++r) {
    const __m512 c = _mm512_set1_ps(corr[r]);
    for (int j = 0; j < kCols; ++j) acc[r][j] = _mm512_mul_ps(_mm512_load_ps(o + r * ldo + j * kW), c);
  }
  const std::uint32_t* p32 = reinterpret_cast<const std::uint32_t*>(p);
  for (int pair = 0; pair < keys / 2; ++pair) {
    __m512bh vv[kCols];
    for (int j = 0; j < kCols; ++j)
      vv[j] = (__m512bh)_mm512_load_si512(v + (static_cast<std::size_t>(pair) * ldv + j * kW) * 2);
    for (int r = 0; r < kRowGroup; ++r) {
      const __m512bh b = (__m512bh)_mm512_set1_epi32(static_cast<int>(p32[r * (ldp / 2) + pair]));
      for (int j = 0; j < kCols; ++j) acc[r][j] = _mm512_dpbf16_ps(acc[r][j], vv[j], b);
    }
  }
  for (int r = 0; r < kRowGroup; ++r)
    for (int j = 0; j < kCols; ++j) _mm512_store_ps(o + r * ldo + j * kW, acc[r][j]);
}

template <bool kBf16>
void accumulate_pv(const void* p, int ldp, const void* v, int ldv, int keys, const float* corr,
                   float* o, int ldo) {
  for (int col = 0; col < ldv; ) {
    const int left = (ldv - col) / kW;
    const int cols = left >= 3 ? 3 : left;
    if constexpr (kBf16) {
      const auto* p16 = static_cast<const std::uint16_t*>(p);
      const auto* v16 = static_cast<const std::uint16_t*>(v) + 2 * col;
      if (cols == 3) accumulate_pv_bf16<3>(p16, ldp, v16, ldv, keys, corr, o + col, ldo);
      else if (cols == 2) accumulate_pv_bf16<2>(p16, ldp, v16, ldv, keys, corr, o + col, ldo);
      else accumulate_pv_bf16<1>(p16, ldp, v16, ldv, keys, corr, o + col, ldo);
    } else {
      const auto* pf = static_cast<const float*>(p);
      const auto* vf = static_cast<const float*>(v) + col;
      if (cols == 3) accumulate_pv_f32<3>(pf, ldp, vf, ldv, keys, corr, o + col, ldo);
      else if (cols == 2) accumulate_pv_f32<2>(pf, ldp, vf, ldv, keys, corr, o + col, ldo);
      else accumulate_pv_f32<1>(pf, ldp, vf, ldv, keys, corr, o + col, ldo);
    }
    col += cols * kW;
  }
}

// ---- packing ------------------------------------------------------------------------------------

// In-register transpose of a 16 x 16 matrix of 32-bit words: r[i] = row i in, column i out.
// Bit-exact (shuffles only), so it serves bf16 pairs too.
inline void transpose16x16(__m512 r[kW]) {
  __m512 t[kW], u[kW];
  for (int i = 0; i < kW; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);      // per 128-bit lane k: r_i[4k], r_i+1[4k], r_i[4k+1], r_i+1[4k+1]
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);  // ... columns 4k+2, 4k+3
  }
  for (int g = 0; g < kW; g += 4) {  // rows g..g+3: u[g + j] holds column 4k + j in lane k
    u[g] = _mm512_shuffle_ps(t[g], t[g + 2], 0x44);
    u[g + 1] = _mm512_shuffle_ps(t[g], t[g + 2], 0xEE);
    u[g + 2] = _mm512_shuffle_ps(t[g + 1], t[g + 3], 0x44);
    u[g + 3] = _mm512_shuffle_ps(t[g + 1], t[g + 3], 0xEE);
  }
  for (int j = 0; j < 4; ++j) {
    // v_lo: lanes (u[j].0, u[j].2, u[4+j].0, u[4+j].2); v_hi: lanes 1 and 3. Likewise rows 8..15.
    const __m512 a_lo = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x88);
    const __m512 a_hi = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xDD);
    const __m512 b_lo = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x88);
    const __m512 b_hi = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xDD);
    r[j] = _mm512_shuffle_f32x4(a_lo, b_lo, 0x88);       // column j
    r[8 + j] = _mm512_shuffle_f32x4(a_lo, b_lo, 0xDD);   // column 8 + j
    r[4 + j] = _mm512_shuffle_f32x4(a_hi, b_hi, 0x88);   // column 4 + j
    r[12 + j] = _mm512_shuffle_f32x4(a_hi, b_hi, 0xDD);  // column 12 + j
  }
}

#include "cpu/isa/dense_driver.hpp"  // row_address, prefetch_row, load_queries_f32, dense_rows, store_rows

// Loads rows [r0, r0 + nr) of q into the Q buffer, zero rows up to nr_pad: fp32 rows times mul
// (load_queries_f32), or bf16 rows as they are, padded to d_pad halves.
template <bool kBf16>
void load_queries(const DenseAttentionTile& t, const ScratchLayout& L, std::int64_t r0, int nr,
                  int nr_pad, float mul, float* qbuf) {
  if constexpr (!kBf16) {
    load_queries_f32(t, r0, nr, nr_pad, mul, qbuf);
  } else {
    const int d = t.head_dim;
    for (int r = 0; r < nr_pad; ++r) {
      prefetch_queries_ahead(t, r0, nr, r);
      auto* dst = reinterpret_cast<std::uint16_t*>(qbuf) + static_cast<std::size_t>(r) * L.d_pad;
      if (r < nr) {
        const std::int64_t row = t.q_index ? t.q_index[r0 + r] : r0 + r;
        std::memcpy(dst, row_address(t.dtype, t.q, t.q_row_stride, row), static_cast<std::size_t>(d) * 2);
        if (L.d_pad != d) dst[d] = 0;
      } else {
        std::memset(dst, 0, static_cast<std::size_t>(L.d_pad) * 2);
      }
    }
  }
}

// Packs keys [c0, c0 + nc) of k, v and the bias (times log2 e) into scratch; padding is zero.
template <bool kBf16>
void pack_keys(const DenseAttentionTile& t, const ScratchLayout& L, std::int64_t c0, int nc,
               float* kbuf, float* vbuf, float* bias) {
  const int d = t.head_dim;
  const int dv = t.head_dim_v;
  const int nc_pad = static_cast<int>(round_up(static_cast<std::size_t>(nc), kKeyChunk));
  // K panels hold 32-bit words (fp32 values or bf16 pairs): [chunk, words, 32 keys].
  const int full_words = kBf16 ? d / 2 : d;   // whole words of a key row
  const int panel_words = kBf16 ? L.d_pad / 2 : d;
  const int transposed_words = (kBf16 || t.dtype == DType::f32) ? full_words / kW * kW : 0;
  const auto key_row = [&](int c) { return t.k_index ? std::int64_t{t.k_index[c0 + c]} : c0 + c; };
  if (t.k_index)
    for (int c = 0; c < std::min(nc, kW); ++c) {
      prefetch_row(t.dtype, t.k, t.k_row_stride, key_row(c), d);
      prefetch_row(t.dtype, t.v, t.v_row_stride, key_row(c), dv);
    }
  for (int c16 = 0; c16 < nc_pad; c16 += kW) {
    if (t.k_index)
      for (int c = c16 + kW; c < std::min(nc, c16 + 2 * kW); ++c) {
        prefetch_row(t.dtype, t.k, t.k_row_stride, key_row(c), d);
        prefetch_row(t.dtype, t.v, t.v_row_stride, key_row(c), dv);
      }
    float* panel16 = kbuf + static_cast<std::size_t>(c16 / kKeyChunk) * panel_words * kKeyChunk + c16 % kKeyChunk;
    int scalar_from = 0;  // words below it were written by the transpose
    if (c16 + kW <= nc && transposed_words > 0) {
      const float* src[kW];  // 16 key rows, seen as 32-bit words
      for (int i = 0; i < kW; ++i) src[i] = static_cast<const float*>(row_address(t.dtype, t.k, t.k_row_stride, key_row(c16 + i)));
      for (int w = 0; w < transposed_words; w += kW) {
        __m512 r[kW];
        for (int i = 0; i < kW; ++i) r[i] = _mm512_loadu_ps(src[i] + w);
        transpose16x16(r);
        for (int j = 0; j < kW; ++j) _mm512_store_ps(panel16 + static_cast<std::size_t>(w + j) * kKeyChunk, r[j]);
      }
      scalar_from = transposed_words;
    }
    for (int c = c16; c < c16 + kW; ++c) {
      const bool real = c < nc;
      float* panel = panel16 + (c - c16);
      if constexpr (kBf16) {
        auto* panel32 = reinterpret_cast<std::uint32_t*>(panel);
        if (real) {
          const auto* src = static_cast<const std::uint16_t*>(row_address(t.dtype, t.k, t.k_row_stride, key_row(c)));
          for (int x = scalar_from; x < d / 2; ++x) {
            std::uint32_t pair;
            std::memcpy(&pair, src + 2 * x, 4);
            panel32[x * kKeyChunk] = pair;
          }
          if (d & 1) panel32[(d / 2) * kKeyChunk] = src[d - 1];
        } else {
          for (int x = 0; x < panel_words; ++x) panel32[x * kKeyChunk] = 0;
        }
      } else {
        if (real) {
          const void* src = row_address(t.dtype, t.k, t.k_row_stride, key_row(c));
          if (t.dtype == DType::f32) {
            const float* s = static_cast<const float*>(src);
            for (int x = scalar_from; x < d; ++x) panel[x * kKeyChunk] = s[x];
          } else {
            const std::uint16_t* s = static_cast<const std::uint16_t*>(src);
            for (int x = scalar_from; x < d; ++x) panel[x * kKeyChunk] = bf16_bits_to_f32(s[x]);
          }
        } else {
          for (int x = 0; x < d; ++x) panel[x * kKeyChunk] = 0.0f;
        }
      }
    }
  }
  // V: fp32 rows [nc, dv_pad], or bf16 pairs of rows [nc/2, dv_pad, 2]; the odd last row is paired
  // with zeros.
  const int dv_pad = L.dv_pad;
  if constexpr (kBf16) {
    auto* vp = reinterpret_cast<std::uint16_t*>(vbuf);
    const int nc2 = (nc + 1) / 2;
    for (int pair = 0; pair < nc2; ++pair) {
      const int ca = 2 * pair;
      const int cb = ca + 1;
      const std::uint16_t* a = static_cast<const std::uint16_t*>(
          row_address(t.dtype, t.v, t.v_row_stride, t.k_index ? t.k_index[c0 + ca] : c0 + ca));
      const std::uint16_t* b = cb < nc ? static_cast<const std::uint16_t*>(row_address(
                                             t.dtype, t.v, t.v_row_stride, t.k_index ? t.k_index[c0 + cb] : c0 + cb))
                                       : nullptr;
      std::uint16_t* dst = vp + static_cast<std::size_t>(pair) * dv_pad * 2;
      int x = 0;
      // 16 columns of two rows -> 16 interleaved pairs.
      for (; x + kW <= dv; x += kW) {
        const __m512i va = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + x)));
        const __m512i vb = b ? _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + x)))
                             : _mm512_setzero_si512();
        _mm512_store_si512(dst + 2 * x, _mm512_or_si512(va, _mm512_slli_epi32(vb, 16)));
      }
      for (; x < dv_pad; ++x) {
        dst[2 * x] = x < dv ? a[x] : 0;
        dst[2 * x + 1] = (x < dv && b) ? b[x] : 0;
      }
    }
  } else {
    for (int c = 0; c < nc; ++c) {
      const std::int64_t row = t.k_index ? t.k_index[c0 + c] : c0 + c;
      const void* src = row_address(t.dtype, t.v, t.v_row_stride, row);
      float* dst = vbuf + static_cast<std::size_t>(c) * dv_pad;
      int x = 0;
      if (t.dtype == DType::f32) {
        const float* s = static_cast<const float*>(src);
        for (; x + kW <= dv; x += kW) _mm512_store_ps(dst + x, _mm512_loadu_ps(s + x));
        for (; x < dv; ++x) dst[x] = s[x];
      } else {
        const std::uint16_t* s = static_cast<const std::uint16_t*>(src);
        for (; x < dv; ++x) dst[x] = bf16_bits_to_f32(s[x]);
      }
      for (; x < dv_pad; ++x) dst[x] = 0.0f;
    }
  }
  for (int c = 0; c < nc; ++c) bias[c] = t.key_bias ? t.key_bias[c0 + c] * kLog2e : 0.0f;
}

// merge_row's row update, o_acc = (w_old o_acc + w_new o_new) * inv: the products and the sum
// rounded on their own (explicit rounding-mode forms, which the compiler never fuses into FMAs),
// so the bits equal combine_rows_scalar's.
void combine_rows(float* o_acc, const float* o_new, float w_old, float w_new, float inv, int d) {
  constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  const __m512 wo = _mm512_set1_ps(w_old), wn = _mm512_set1_ps(w_new), vi = _mm512_set1_ps(inv);
  for (int x = 0; x < d; x += kW) {
    const __mmask16 k = prefix_mask(d - x);
    const __m512 a = _mm512_mul_round_ps(wo, _mm512_maskz_loadu_ps(k, o_acc + x), kRound);
    const __m512 b = _mm512_mul_round_ps(wn, _mm512_maskz_loadu_ps(k, o_new + x), kRound);
    _mm512_mask_storeu_ps(o_acc + x, k, _mm512_mul_round_ps(_mm512_add_round_ps(a, b, kRound), vi, kRound));
  }
}

// ---- the kernel ---------------------------------------------------------------------------------

// The AVX-512 arithmetic of the row-tile driver (dense_driver.hpp). fp32: Q carries scale * log2 e;
// bf16 (vdpbf16ps): Q stays exact, the dot product is scaled, and P is rounded to bf16 for P V.
template <bool kBf16>
struct Ops : RowTileScratch {
  const DenseAttentionTile& t;
  const ScratchLayout L;
  std::uint16_t* p16;  // [kRowGroup, kKeyTile] bf16 weights
  float score_mul;     // bf16: the dot product's scale * log2 e

  explicit Ops(const DenseAttentionTile& tile)
      : RowTileScratch(tile.scratch, scratch_layout(tile.head_dim, tile.head_dim_v)), t(tile),
        L(scratch_layout(tile.head_dim, tile.head_dim_v)), p16(reinterpret_cast<std::uint16_t*>(tile.scratch + L.p16)),
        score_mul(kBf16 ? tile.scale * kLog2e : 1.0f) {}

  void load_queries(std::int64_t r0, int nr, int nr_pad) {
    HYPERATTN_AVX512_NAMESPACE::load_queries<kBf16>(t, L, r0, nr, nr_pad, kBf16 ? 1.0f : t.scale * kLog2e, qbuf);
  }
  void pack_keys(std::int64_t c0, int nc) { HYPERATTN_AVX512_NAMESPACE::pack_keys<kBf16>(t, L, c0, nc, kbuf, vbuf, bias); }
  void scores(int g0, int n) { scores_group<kBf16>(qbuf, g0, t.head_dim, L.d_pad, kbuf, s, n); }
  static int pv_keys(int n) { return kBf16 ? (n + 1) & ~1 : n; }  // bf16 P V reads key pairs
  // The lanes of 16 keys from c the row sees: a prefix, further masked by a row window.
  __mmask16 lanes(int vis, bool win, std::int64_t row, std::int64_t c0, int c) const {
    const __mmask16 k = prefix_mask(vis - c);
    return win ? window_lanes(t, row, c0 + c, k) : k;
  }
  float row_max(int r, int vis, bool win, std::int64_t row, std::int64_t c0) {
    constexpr float kNegInf = -std::numeric_limits<float>::infinity();
    // Members into locals first: the vector stores below may alias anything, members included.
    float* const sr = s + r * kKeyTile;
    const float* const b = bias;
    const __m512 mul = _mm512_set1_ps(score_mul);
    __m512 vmax = _mm512_set1_ps(kNegInf);
    __mmask16 nan_lanes = 0;  // max drops NaN: track it so a NaN input row gives NaN, not "no key"
    for (int c = 0; c < vis; c += kW) {
      const __mmask16 k = lanes(vis, win, row, c0, c);
      const __m512 x = _mm512_fmadd_ps(_mm512_load_ps(sr + c), mul, _mm512_maskz_loadu_ps(k, b + c));
      _mm512_store_ps(sr + c, x);
      vmax = _mm512_mask_max_ps(vmax, k, vmax, x);
      nan_lanes |= _mm512_mask_cmp_ps_mask(k, x, x, _CMP_UNORD_Q);
    }
    return nan_lanes ? std::numeric_limits<float>::quiet_NaN() : (vis > 0 ? _mm512_reduce_max_ps(vmax) : kNegInf);
  }
  void zero_weights(int r, int n) {
    if constexpr (kBf16) std::memset(p16 + r * kKeyTile, 0, static_cast<std::size_t>(n) * 2);
    else std::memset(s + r * kKeyTile, 0, static_cast<std::size_t>(n) * 4);
  }
  float row_weights(int r, int vis, bool win, std::int64_t row, std::int64_t c0, int n, float mx) {
    float* const sr = s + r * kKeyTile;
    [[maybe_unused]] std::uint16_t* const pr = p16 + r * kKeyTile;
    const __m512 vm = _mm512_set1_ps(mx);
    __m512 vsum = _mm512_setzero_ps();
    for (int c = 0; c < n; c += kW) {
      const __mmask16 k = lanes(vis, win, row, c0, c);
      const __m512 p = _mm512_maskz_mov_ps(k, exp2_ps(_mm512_sub_ps(_mm512_load_ps(sr + c), vm)));
      if constexpr (kBf16) {
        _mm256_store_si256(reinterpret_cast<__m256i*>(pr + c), (__m256i)_mm512_cvtneps_pbh(p));
      } else {
        _mm512_store_ps(sr + c, p);
      }
      vsum = _mm512_add_ps(vsum, p);
    }
    return _mm512_reduce_add_ps(vsum);
  }
  // Roundings spelled out (the FMA target would otherwise leave them to the compiler).
  static float running_sum(float l_old, float c, float sum) { return std::fma(l_old, c, sum); }
  void accumulate_pv(int g0, int n) {
    float* og = obuf + static_cast<std::size_t>(g0) * L.dv_pad;
    if constexpr (kBf16) HYPERATTN_AVX512_NAMESPACE::accumulate_pv<true>(p16, kKeyTile, vbuf, L.dv_pad, n, corr, og, L.dv_pad);
    else HYPERATTN_AVX512_NAMESPACE::accumulate_pv<false>(s, kKeyTile, vbuf, L.dv_pad, n, corr, og, L.dv_pad);
  }
  static void scale_row(float* o, const float* acc, float inv_l, int dv) {
    const __m512 inv = _mm512_set1_ps(inv_l);
    int x = 0;
    for (; x + kW <= dv; x += kW) _mm512_storeu_ps(o + x, _mm512_mul_ps(_mm512_load_ps(acc + x), inv));
    if (x < dv) _mm512_mask_storeu_ps(o + x, prefix_mask(dv - x), _mm512_mul_ps(_mm512_load_ps(acc + x), inv));
  }
  static void combine_rows(float* o_acc, const float* o_new, float w_old, float w_new, float inv, int d) {
    HYPERATTN_AVX512_NAMESPACE::combine_rows(o_acc, o_new, w_old, w_new, inv, d);
  }
};

template <bool kBf16>
void dense_impl(const DenseAttentionTile& t) {
  Ops<kBf16> ops(t);
  dense_rows(t, ops);
}

// ---- small row tiles (fp32) ---------------------------------------------------------------------
//
// HyperAttention's sorted blocks are small row tiles (16 to 64 rows) against a gathered key set of
// about as many keys; packing (transposing) every key tile for so few rows costs as much as the
// arithmetic. For such tiles dense_small runs the same recurrence transposed: the rows are the 16
// lanes of a zmm (a "slab"), Q is transposed once per tile ([d][16 rows]), the gathered key rows
// are copied untransposed (in 16-column pieces) and broadcast from there, and V is read straight
// from its gathered rows. Every arithmetic operation of dense_impl<false> is done on the same
// operands in the same order (scores: one FMA chain over head_dim; the weights' sum: the same
// 16 partial sums per key tile and the same reduction tree as _mm512_reduce_add_ps; P V: one FMA
// chain over the tile's keys), so a row gets the same bits from either path
// (AttentionKernels.SmallTilesMatchThePackedPath).

constexpr int kSmallMaxRows = 64;  // row tiles up to this many rows take dense_small (a multiple of kW)
                                   // (tiles with compact row windows: up to kWinTileRows)

// S^T for one slab and 16 keys: st[j][r] = <q_r, k_j> (q pre-scaled) for keys j of the chunk.
// qt: [d][16]; kb: the chunk's keys, [d/16][16 keys][16 columns].
inline void scores_t(const float* qt, int d, const float* kb, float* st) {
  __m512 a[kW];
  for (int j = 0; j < kW; ++j) a[j] = _mm512_setzero_ps();
  for (int xb = 0; xb < d; xb += kW, kb += kW * kW, qt += kW * kW) {
    for (int xx = 0; xx < kW; ++xx) {
      const __m512 q = _mm512_load_ps(qt + xx * kW);
      for (int j = 0; j < kW; ++j) a[j] = _mm512_fmadd_ps(q, _mm512_set1_ps(kb[j * kW + xx]), a[j]);
    }
  }
  for (int j = 0; j < kW; ++j) _mm512_store_ps(st + j * kW, a[j]);
}

// scores_t for a slab with at most 8 rows: lanes 0..7 only, at 256 bits (twice the FMAs per cycle
// of 512-bit ones on cores that split them; the same operations per lane, so the same bits). Lanes
// 8..15 of st are left as they were: those rows are padding, masked everywhere after.
inline void scores_t8(const float* qt, int d, const float* kb, float* st) {
  __m256 a[kW];
  for (int j = 0; j < kW; ++j) a[j] = _mm256_setzero_ps();
  for (int xb = 0; xb < d; xb += kW, kb += kW * kW, qt += kW * kW) {
    for (int xx = 0; xx < kW; ++xx) {
      const __m256 q = _mm256_load_ps(qt + xx * kW);
      for (int j = 0; j < kW; ++j) a[j] = _mm256_fmadd_ps(q, _mm256_set1_ps(kb[j * kW + xx]), a[j]);
    }
  }
  for (int j = 0; j < kW; ++j) _mm256_store_ps(st + j * kW, a[j]);
}

// O[r] = corr[r] * O[r] + sum_key pt[key][r] v_key for kR rows (lanes lane0 ..) and kC*16 columns
// from col, keys [0, keys) of the tile at c0.
template <int kR, int kC>
inline void pv_t(const DenseAttentionTile& t, std::int64_t c0, int keys, const float* pt, int lane0,
                 const float* corr, float* o, int ldo, int col) {
  __m512 acc[kR][kC];
  for (int r = 0; r < kR; ++r) {
    const __m512 c = _mm512_set1_ps(corr[lane0 + r]);
    for (int j = 0; j < kC; ++j) acc[r][j] = _mm512_mul_ps(_mm512_load_ps(o + r * ldo + col + j * kW), c);
  }
  const float* v = static_cast<const float*>(t.v) + col;
  for (int key = 0; key < keys; ++key) {
    const std::int64_t row = t.k_index ? std::int64_t{t.k_index[c0 + key]} : c0 + key;
    const float* vr = v + row * t.v_row_stride;
    __m512 vv[kC];
    for (int j = 0; j < kC; ++j) vv[j] = _mm512_loadu_ps(vr + j * kW);
    for (int r = 0; r < kR; ++r) {
      const __m512 b = _mm512_set1_ps(pt[key * kW + lane0 + r]);
      for (int j = 0; j < kC; ++j) acc[r][j] = _mm512_fmadd_ps(b, vv[j], acc[r][j]);
    }
  }
  for (int r = 0; r < kR; ++r)
    for (int j = 0; j < kC; ++j) _mm512_store_ps(o + r * ldo + col + j * kW, acc[r][j]);
}

template <int kR>
inline void pv_rows(const DenseAttentionTile& t, std::int64_t c0, int keys, const float* pt, int lane0,
                    const float* corr, float* o, int ldo) {
  const int dv = t.head_dim_v;
  int col = 0;
  for (; col + 4 * kW <= dv; col += 4 * kW) pv_t<kR, 4>(t, c0, keys, pt, lane0, corr, o, ldo, col);
  const int left = (dv - col) / kW;
  if (left == 3) pv_t<kR, 3>(t, c0, keys, pt, lane0, corr, o, ldo, col);
  else if (left == 2) pv_t<kR, 2>(t, c0, keys, pt, lane0, corr, o, ldo, col);
  else if (left == 1) pv_t<kR, 1>(t, c0, keys, pt, lane0, corr, o, ldo, col);
}

// _mm512_reduce_add_ps of each row's 16 partial sums, for 16 rows at once: part[k] holds partial
// sum k of every row (GCC's tree: halves, then quarters, then pairs).
inline __m512 reduce_add_t(const __m512 part[kW]) {
  __m512 t3[8], t6[4];
  for (int i = 0; i < 8; ++i) t3[i] = _mm512_add_ps(part[i + 8], part[i]);
  for (int i = 0; i < 4; ++i) t6[i] = _mm512_add_ps(t3[i + 4], t3[i]);
  const __m512 t8a = _mm512_add_ps(t6[0], t6[2]);
  const __m512 t8b = _mm512_add_ps(t6[1], t6[3]);
  return _mm512_add_ps(t8a, t8b);
}

// Can dense_small run t? fp32, head dims multiples of 16, few rows.
inline bool small_tile(const DenseAttentionTile& t) {
  return t.dtype == DType::f32 && t.rows <= kSmallMaxRows && t.head_dim % kW == 0 && t.head_dim_v % kW == 0 &&
         t.keys < (std::int64_t{1} << 30);
}

// AttentionKernel::compact_windows: tiles with row windows that dense_small runs compactly.
bool compact_windows(const DenseAttentionTile& t) {
  if (t.dtype != DType::f32 || t.rows > kWinTileRows || t.head_dim % kW != 0 || t.head_dim_v % kW != 0 ||
      t.keys > kWinKeys || t.causal_diagonal != kNoCausalMask || t.row_window == nullptr)
    return false;
  int windowed = 0;
  for (std::int64_t r = 0; r < t.rows; ++r) windowed += has_window(t, r) ? 1 : 0;
  return windowed <= kWinRows;
}

// Compact row windows (AttentionKernel::compact_windows): a row with a window is left out of the
// slabs' softmax; its scores (from the slab's S^T, the same FMA chain) are gathered into its own
// list, keys [0, window_from) with those inside its window biased -inf, then its window's keys,
// and that list runs through dense_impl's recurrence for a tile of one row (window_row).
// dense_impl's per-row arithmetic for one row over a list of n keys whose biased scores x (base 2)
// and key rows are given; its result left in o (unnormalised), *m, *l.
void window_row(const DenseAttentionTile& t, const float* x, const std::int32_t* rows, int n, float* pbuf, float* o,
                float* m_out, float* l_out) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  const int dv = t.head_dim_v;
  float m = kNegInf, l = 0.0f;
  for (int c0 = 0; c0 < n; c0 += kKeyTile) {
    const int vis = std::min(kKeyTile, n - c0);
    const float* xs = x + c0;
    __m512 vmax = _mm512_set1_ps(kNegInf);
    __mmask16 nan_lanes = 0;
    for (int c = 0; c < vis; c += kW) {
      const __mmask16 k = prefix_mask(vis - c);
      const __m512 v = _mm512_maskz_loadu_ps(k, xs + c);
      vmax = _mm512_mask_max_ps(vmax, k, vmax, v);
      nan_lanes |= _mm512_mask_cmp_ps_mask(k, v, v, _CMP_UNORD_Q);
    }
    const float tile_max = nan_lanes ? std::numeric_limits<float>::quiet_NaN() : _mm512_reduce_max_ps(vmax);
    if (tile_max == kNegInf) continue;  // weights 0, O unchanged (times corr 1)
    const RunningMax next = advance_max(m, tile_max);
    const float m_new = next.m, corr = next.corr;
    const __m512 vm = _mm512_set1_ps(m_new);
    __m512 vsum = _mm512_setzero_ps();
    for (int c = 0; c < vis; c += kW) {
      const __mmask16 k = prefix_mask(vis - c);
      const __m512 p = _mm512_maskz_mov_ps(k, exp2_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, xs + c), vm)));
      _mm512_storeu_ps(pbuf + c, p);
      vsum = _mm512_add_ps(vsum, p);
    }
    l = std::fma(l, corr, _mm512_reduce_add_ps(vsum));
    m = m_new;
    // O = corr * O + P V, one FMA chain per element over the tile's keys.
    const __m512 vc = _mm512_set1_ps(corr);
    for (int col = 0; col < dv; col += 4 * kW) {
      const int cols = std::min(4, (dv - col) / kW);
      __m512 acc[4];
      for (int j = 0; j < cols; ++j) acc[j] = _mm512_mul_ps(_mm512_load_ps(o + col + j * kW), vc);
      for (int key = 0; key < vis; ++key) {
        const __m512 b = _mm512_set1_ps(pbuf[key]);
        const float* vr = static_cast<const float*>(t.v) + std::int64_t{rows[c0 + key]} * t.v_row_stride + col;
        for (int j = 0; j < cols; ++j) acc[j] = _mm512_fmadd_ps(b, _mm512_loadu_ps(vr + j * kW), acc[j]);
      }
      for (int j = 0; j < cols; ++j) _mm512_store_ps(o + col + j * kW, acc[j]);
    }
  }
  *m_out = m;
  *l_out = l;
}

void dense_small(const DenseAttentionTile& t, bool compact) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  const ScratchLayout L = scratch_layout(t.head_dim, t.head_dim_v);
  const int d = t.head_dim;
  const int nr = static_cast<int>(t.rows);
  const int slabs = (nr + kW - 1) / kW;
  const int nr_pad = slabs * kW;
  float* qt = t.scratch + L.q;        // [slabs][d][16]
  float* obuf = t.scratch + L.o;      // [nr_pad, dv_pad]
  float* m = t.scratch + L.m;         // [nr_pad] running max (base 2)
  float* l = t.scratch + L.l;         // [nr_pad] running sum
  float* kbuf = t.scratch + L.k;      // [kKeyTile / 16][d / 16][16 keys][16]
  float* qrows = kbuf;                // [16, d]: one slab's rows, row major, before the keys come
  float* st = t.scratch + L.st;       // [kKeyTile][16]: scores, then weights, of one slab
  auto* masks = reinterpret_cast<std::uint16_t*>(t.scratch + L.masks);  // [kKeyTile]
  float* bias = t.scratch + L.bias;   // [kKeyTile]
  float corr[kRowTile];
  std::int32_t limit[kRowTile];  // keys [0, limit) may be visible to a row (causal mask, window limit)
  // Compact windows: the windowed rows, their slot in wx/wpos and how many of their keys are there.
  float* wx = t.scratch + L.wx;                                    // [kWinRows][kWinKeys]
  auto* wpos = reinterpret_cast<std::int32_t*>(t.scratch + L.wpos);  // [kWinRows][kWinKeys]
  int win_slot[kRowTile];   // row -> slot, or -1
  int win_count[kWinRows];  // keys gathered so far
  int win_row[kWinRows];    // slot -> row
  int windowed = 0;
  __mmask16 slab_plain[kRowTile / kW];  // lanes of each slab that run the slab's softmax
  for (int sl = 0; sl < slabs; ++sl) slab_plain[sl] = static_cast<__mmask16>(0xffff);
  if (compact)
    for (int r = 0; r < nr; ++r) {
      win_slot[r] = -1;
      if (!has_window(t, r)) continue;
      win_slot[r] = windowed;
      win_row[windowed] = r;
      win_count[windowed++] = 0;
      slab_plain[r / kW] &= static_cast<__mmask16>(~(1u << (r % kW)));
    }
  const float q_mul = t.scale * kLog2e;

  // Q: rows times scale * log2 e (as load_queries), transposed per slab; padding rows are zero.
  for (int sl = 0; sl < slabs; ++sl) {
    const int rows = std::min(kW, nr - sl * kW);
    load_queries<false>(t, L, sl * kW, rows, kW, q_mul, qrows);
    for (int x = 0; x < d; x += kW) {
      __m512 r[kW];
      for (int i = 0; i < kW; ++i) r[i] = _mm512_loadu_ps(qrows + i * d + x);
      transpose16x16(r);
      for (int j = 0; j < kW; ++j) _mm512_store_ps(qt + (static_cast<std::size_t>(sl) * d + x + j) * kW, r[j]);
    }
  }
  std::int64_t key_end = 0;
  for (int r = 0; r < nr_pad; ++r) {
    m[r] = kNegInf;
    l[r] = 0.0f;
    limit[r] = r < nr ? static_cast<std::int32_t>(std::clamp<std::int64_t>(
                            std::min(r + t.causal_diagonal + 1, window_key_limit(t, r)), 0, t.keys))
                      : 0;
    key_end = std::max<std::int64_t>(key_end, limit[r]);
  }
  std::memset(obuf, 0, static_cast<std::size_t>(nr_pad) * L.dv_pad * sizeof(float));
  const auto key_row = [&](std::int64_t c) { return t.k_index ? std::int64_t{t.k_index[c]} : c; };

  for (std::int64_t c0 = 0; c0 < key_end; c0 += kKeyTile) {
    const int nc = static_cast<int>(std::min<std::int64_t>(kKeyTile, key_end - c0));
    const int chunks = (nc + kW - 1) / kW;
    const bool last_tile = c0 + kKeyTile >= key_end;
    // Key rows into 16-key blocks of 16-column pieces; K and V rows prefetched a chunk ahead.
    if (t.k_index)
      for (int c = 0; c < std::min(nc, kW); ++c) {
        prefetch_row(t.dtype, t.k, t.k_row_stride, key_row(c0 + c), d);
        prefetch_row(t.dtype, t.v, t.v_row_stride, key_row(c0 + c), t.head_dim_v);
      }
    for (int ch = 0; ch < chunks; ++ch) {
      if (t.k_index)
        for (int c = (ch + 1) * kW; c < std::min(nc, (ch + 2) * kW); ++c) {
          prefetch_row(t.dtype, t.k, t.k_row_stride, key_row(c0 + c), d);
          prefetch_row(t.dtype, t.v, t.v_row_stride, key_row(c0 + c), t.head_dim_v);
        }
      float* kb = kbuf + static_cast<std::size_t>(ch) * kW * d;
      for (int j = 0; j < kW; ++j) {
        const int c = ch * kW + j;
        if (c < nc) {
          const float* src = static_cast<const float*>(t.k) + key_row(c0 + c) * t.k_row_stride;
          for (int x = 0; x < d; x += kW) _mm512_store_ps(kb + x * kW + j * kW, _mm512_loadu_ps(src + x));
        } else {
          for (int x = 0; x < d; x += kW) _mm512_store_ps(kb + x * kW + j * kW, _mm512_setzero_ps());
        }
      }
    }
    for (int c = 0; c < nc; ++c) bias[c] = t.key_bias ? t.key_bias[c0 + c] * kLog2e : 0.0f;

    for (int sl = 0; sl < slabs; ++sl) {
      const int lane0 = sl * kW;
      const __m512i lim = _mm512_loadu_si512(limit + lane0);
      int vis_end = 0;   // keys of this tile some row of the slab sees
      int vis_norm = 0;  // ... some row that runs the slab's softmax (not a compact window's)
      for (int r = 0; r < kW; ++r) {
        const int e = std::clamp(limit[lane0 + r] - static_cast<int>(c0), 0, nc);
        vis_end = std::max(vis_end, e);
        if ((slab_plain[sl] >> r) & 1) vis_norm = std::max(vis_norm, e);
      }
      if (last_tile) prefetch_out_rows(t, lane0, std::min(kW, nr - lane0));
      if (vis_end == 0) continue;  // the whole slab is masked for this key tile
      const int vis_chunks = (vis_end + kW - 1) / kW;
      const int norm_chunks = (vis_norm + kW - 1) / kW;
      const float* qs = qt + static_cast<std::size_t>(sl) * d * kW;
      const bool half = nr - lane0 <= kW / 2;  // rows 8..15 of the slab are padding
      for (int ch = 0; ch < vis_chunks; ++ch) {
        if (half) scores_t8(qs, d, kbuf + static_cast<std::size_t>(ch) * kW * d, st + static_cast<std::size_t>(ch) * kW * kW);
        else scores_t(qs, d, kbuf + static_cast<std::size_t>(ch) * kW * d, st + static_cast<std::size_t>(ch) * kW * kW);
      }
      if (compact && slab_plain[sl] != static_cast<__mmask16>(0xffff)) {
        // Windowed rows: their list's scores with bias (times log2 e; -inf for the keys before
        // window_from inside the window), as dense_impl's pack_keys and softmax form them.
        for (int r = 0; r < kW && lane0 + r < nr; ++r) {
          const int slot = win_slot[lane0 + r];
          if (slot < 0) continue;
          const std::int32_t lo_w = t.row_window[2 * (lane0 + r)], hi_w = t.row_window[2 * (lane0 + r) + 1];
          float* xs = wx + static_cast<std::size_t>(slot) * kWinKeys;
          std::int32_t* ps = wpos + static_cast<std::size_t>(slot) * kWinKeys;
          int& n = win_count[slot];
          for (int c = 0; c < nc; ++c) {
            const std::int64_t j = c0 + c;
            const std::int32_t pos = static_cast<std::int32_t>(key_row(j));
            const bool inside = pos >= lo_w && pos < hi_w;
            float b;
            if (j < t.window_from) b = inside ? kNegInf : bias[c];
            else if (inside) b = bias[c];
            else continue;
            xs[n] = std::fma(st[c * kW + r], 1.0f, b);
            ps[n++] = pos;
          }
        }
      }
      if (vis_norm == 0) continue;  // no row of the slab that runs its softmax sees a key here

      // The visible rows of each key (lanes), the scores with their bias, and each row's maximum.
      __m512i lo = _mm512_setzero_si512(), hi = _mm512_setzero_si512();
      if (t.row_window) {
        alignas(64) std::int32_t wl[kW], wh[kW];
        for (int r = 0; r < kW; ++r) {
          const int row = lane0 + r;
          wl[r] = row < nr ? t.row_window[2 * row] : 0;
          wh[r] = row < nr ? t.row_window[2 * row + 1] : 0;
        }
        lo = _mm512_load_si512(wl);
        hi = _mm512_load_si512(wh);
      }
      __m512 vmax = _mm512_set1_ps(kNegInf);
      __mmask16 nan_lanes = 0;
      for (int c = 0; c < norm_chunks * kW; ++c) {
        if (c >= vis_norm) {
          masks[c] = 0;
          continue;
        }
        const std::int64_t j = c0 + c;
        __mmask16 k = _mm512_cmpgt_epi32_mask(lim, _mm512_set1_epi32(static_cast<int>(j))) & slab_plain[sl];
        if (t.row_window && !compact) {
          const __m512i pos = _mm512_set1_epi32(static_cast<int>(key_row(j)));
          const __mmask16 inside = _mm512_cmple_epi32_mask(lo, pos) & _mm512_cmpgt_epi32_mask(hi, pos);
          k &= j < t.window_from ? static_cast<__mmask16>(~inside) : inside;
        }
        masks[c] = k;
        const __m512 x = _mm512_fmadd_ps(_mm512_load_ps(st + c * kW), _mm512_set1_ps(1.0f), _mm512_set1_ps(bias[c]));
        _mm512_store_ps(st + c * kW, x);
        vmax = _mm512_mask_max_ps(vmax, k, vmax, x);
        nan_lanes |= _mm512_mask_cmp_ps_mask(k, x, x, _CMP_UNORD_Q);
      }
      // Per row (as dense_impl): the new maximum and the correction of the old sum.
      alignas(64) float tmax[kW], mnew[kW];
      _mm512_store_ps(tmax, vmax);
      __mmask16 active = 0;
      for (int r = 0; r < kW; ++r) {
        const int row = lane0 + r;
        const float tile_max = (nan_lanes >> r) & 1 ? std::numeric_limits<float>::quiet_NaN() : tmax[r];
        if (tile_max == kNegInf) {  // nothing visible (or every bias -inf): weights 0, O unchanged
          corr[row] = 1.0f;
          mnew[r] = 0.0f;
          continue;
        }
        active |= static_cast<__mmask16>(1u << r);
        const RunningMax next = advance_max(m[row], tile_max);
        corr[row] = next.corr;
        mnew[r] = next.m;
      }
      // Weights, and their sums as dense_impl forms them: 16 partial sums by key index mod 16.
      const __m512 vm = _mm512_load_ps(mnew);
      __m512 part[kW];
      for (int k = 0; k < kW; ++k) part[k] = _mm512_setzero_ps();
      for (int c16 = 0; c16 < norm_chunks * kW; c16 += kW)
        for (int k = 0; k < kW; ++k) {
          const int c = c16 + k;
          const __m512 p = _mm512_maskz_mov_ps(static_cast<__mmask16>(masks[c] & active),
                                               exp2_ps(_mm512_sub_ps(_mm512_load_ps(st + c * kW), vm)));
          _mm512_store_ps(st + c * kW, p);
          part[k] = _mm512_add_ps(part[k], p);
        }
      const __m512 sum = reduce_add_t(part);
      const __m512 lv = _mm512_loadu_ps(l + lane0);
      _mm512_storeu_ps(l + lane0, _mm512_mask_fmadd_ps(lv, active, _mm512_loadu_ps(corr + lane0), sum));
      _mm512_storeu_ps(m + lane0, _mm512_mask_mov_ps(_mm512_loadu_ps(m + lane0), active, vm));

      // O = corr * O + P V, for the slab's real rows in groups of 6 (and the rest), each over the keys
      // its rows see (a row's weights past its limit are 0: leaving them out changes no bit).
      float* os = obuf + static_cast<std::size_t>(lane0) * L.dv_pad;
      const int real = std::min(kW, nr - lane0);
      const auto group_keys = [&](int r, int n) {
        int e = 0;
        for (int i = r; i < std::min(r + n, real); ++i)
          if ((slab_plain[sl] >> i) & 1) e = std::max(e, std::clamp(limit[lane0 + i] - static_cast<int>(c0), 0, nc));
        return e;
      };
      int r = 0;
      for (; r + 6 <= real; r += 6)
        if (const int keys = group_keys(r, 6); keys > 0) pv_rows<6>(t, c0, keys, st, r, corr + lane0, os + r * L.dv_pad, L.dv_pad);
      if (r < real)
        if (const int keys = group_keys(r, real - r); keys > 0) {
          float* og = os + r * L.dv_pad;
          switch (real - r) {
            case 1: pv_rows<1>(t, c0, keys, st, r, corr + lane0, og, L.dv_pad); break;
            case 2: pv_rows<2>(t, c0, keys, st, r, corr + lane0, og, L.dv_pad); break;
            case 3: pv_rows<3>(t, c0, keys, st, r, corr + lane0, og, L.dv_pad); break;
            case 4: pv_rows<4>(t, c0, keys, st, r, corr + lane0, og, L.dv_pad); break;
            default: pv_rows<5>(t, c0, keys, st, r, corr + lane0, og, L.dv_pad); break;
          }
        }
      if (last_tile && t.next != nullptr) prefetch_tile_start(*t.next, kRowTile, kKeyTile, sl, slabs);
    }
  }
  for (int w = 0; w < windowed; ++w) {
    const int r = win_row[w];
    window_row(t, wx + static_cast<std::size_t>(w) * kWinKeys, wpos + static_cast<std::size_t>(w) * kWinKeys, win_count[w],
               st, obuf + static_cast<std::size_t>(r) * L.dv_pad, &m[r], &l[r]);
  }
  store_rows<Ops<false>>(t, 0, nr, obuf, L.dv_pad, m, l);
}

void dense(const DenseAttentionTile& t) {
  if (t.row_window != nullptr && compact_windows(t)) dense_small(t, true);
  else if (small_tile(t)) dense_small(t, false);
#if HYPERATTN_AVX512_BF16
  else if (t.dtype == DType::bf16) dense_impl<true>(t);
#endif
  else dense_impl<false>(t);  // f32, and bf16 widened to f32 without AVX-512 BF16
}

}  // namespace

#define HYPERATTN_BWD_W 16
#define HYPERATTN_BWD_RB 4
#include "cpu/isa/backward_impl.hpp"  // backward(), backward_scratch_floats()
#undef HYPERATTN_BWD_W
#undef HYPERATTN_BWD_RB

extern const AttentionKernel kKernel;  // declared in cpu/kernel_table.cpp
const AttentionKernel kKernel{HYPERATTN_AVX512_NAME, &dense, &scratch_floats, &compact_windows, &backward,
                              &backward_scratch_floats};

}  // namespace hyperattn::cpu::HYPERATTN_AVX512_NAMESPACE

#pragma GCC diagnostic pop
#pragma GCC pop_options
