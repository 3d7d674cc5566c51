// src/cpu/isa/avx2.cpp: the AVX2 + FMA dense attention kernel (fp32 arithmetic; bf16 input is
// widened to fp32 while packing).
//
// Same contract as isa/scalar.cpp and the same blocking as isa/avx512.cpp, sized for 16 ymm
// registers: S = Q K^T by a 6 rows x 16 keys microkernel (12 accumulators), O += P V by a
// 6 rows x 16 columns microkernel. Scores in base 2 (Q carries scale * log2 e).
//
// exp2: the polynomial of avx512.cpp (<= 1.6 ulp over |f| <= 1/2); 2^n is built in the exponent
// field after clamping x >= -127, where n = -127 gives the bit pattern of +0, so masked (-inf)
// scores give weight exactly 0; results in (2^-127, 2^-126.5) are flushed to 0 (absolute error
// < 1e-38, invisible next to the row maximum's weight 1).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "cpu/attention_kernel.hpp"
#include "cpu/prefetch.hpp"

// Only this file's own definitions below get the target ISA: the headers above are compiled
// for the baseline, so no inline function or template instantiated from them (which the linker
// may share with other files) carries instructions an older CPU lacks (tests/cpu/isa_isolation).
#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace hyperattn::cpu::avx2 {
namespace {

constexpr int kW = 8;             // fp32 lanes per ymm
constexpr int kRowGroup = 6;      // rows per microkernel call
constexpr int kKeyChunk = 16;     // keys per S microkernel call (two ymm)
constexpr int kRowTile = 252;     // rows held in scratch at once (multiple of kRowGroup)
constexpr int kKeyTile = 256;     // keys packed at once (multiple of kKeyChunk)
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2 = 0.693147180559945309f;

std::size_t round_up(std::size_t x, std::size_t m) { return (x + m - 1) / m * m; }

// The scratch layout, in floats from the 64-byte aligned scratch pointer.
struct ScratchLayout {
  int dv_pad;  // head_dim_v rounded up to kW
  std::size_t q, o, m, l, corr, k, v, s, bias, total;
};

ScratchLayout scratch_layout(int head_dim, int head_dim_v) {
  ScratchLayout L{};
  L.dv_pad = static_cast<int>(round_up(static_cast<std::size_t>(head_dim_v), kW));
  std::size_t at = 0;
  auto take = [&at](std::size_t floats) {
    const std::size_t begin = at;
    at += round_up(floats, 16);
    return begin;
  };
  L.q = take(static_cast<std::size_t>(kRowTile) * head_dim);     // [kRowTile, d]
  L.o = take(static_cast<std::size_t>(kRowTile) * L.dv_pad);     // [kRowTile, dv_pad]
  L.m = take(kRowTile);                                          // [kRowTile]
  L.l = take(kRowTile);                                          // [kRowTile]
  L.corr = take(kRowGroup);                                      // [kRowGroup]
  L.k = take(static_cast<std::size_t>(kKeyTile) * head_dim);     // [kKeyTile/16, d, 16]
  L.v = take(static_cast<std::size_t>(kKeyTile) * L.dv_pad);     // [kKeyTile, dv_pad]
  L.s = take(static_cast<std::size_t>(kRowGroup) * kKeyTile);    // [kRowGroup, kKeyTile]
  L.bias = take(kKeyTile);                                       // [kKeyTile]
  L.total = at;
  return L;
}

std::size_t scratch_floats(int head_dim, int head_dim_v) {
  return scratch_layout(head_dim, head_dim_v).total;
}

inline float bf16_to_f32(std::uint16_t bits) {
  const std::uint32_t u = static_cast<std::uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// 2^x for x <= 0; x below -127 (and -inf) gives 0.
inline __m256 exp2_ps(__m256 x) {
  x = _mm256_max_ps(x, _mm256_set1_ps(-127.0f));
  const __m256 n = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 f = _mm256_sub_ps(x, n);
  __m256 p = _mm256_set1_ps(1.534581243e-04f);
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.339993090e-03f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(9.618489072e-03f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.550328642e-02f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(2.402264625e-01f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(6.931471825e-01f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
  const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

// All-ones lanes for lane < n.
inline __m256 prefix_mask(int n) {
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(n), iota));
}

// Row `row`'s window mask (row_window set) for keys j0 + [0, 8): the lanes of keys it sees among
// those of `valid` (window_visible, vectorised).
inline __m256 window_lanes(const DenseAttentionTile& t, std::int64_t row, std::int64_t j0, __m256 valid) {
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i pos = t.k_index ? _mm256_maskload_epi32(t.k_index + j0, _mm256_castps_si256(valid))
                                : _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(j0)), iota);
  const __m256i lo = _mm256_set1_epi32(t.row_window[2 * row]), hi = _mm256_set1_epi32(t.row_window[2 * row + 1]);
  // inside = lo <= pos < hi
  const __m256i inside = _mm256_andnot_si256(_mm256_cmpgt_epi32(lo, pos), _mm256_cmpgt_epi32(hi, pos));
  const __m256 before = prefix_mask(static_cast<int>(std::clamp<std::int64_t>(t.window_from - j0, 0, kW)));
  return _mm256_and_ps(_mm256_xor_ps(before, _mm256_castsi256_ps(inside)), valid);
}

inline float reduce_max(__m256 v) {
  __m128 x = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  x = _mm_max_ps(x, _mm_movehl_ps(x, x));
  x = _mm_max_ss(x, _mm_movehdup_ps(x));
  return _mm_cvtss_f32(x);
}

inline float reduce_add(__m256 v) {
  __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  x = _mm_add_ss(x, _mm_movehdup_ps(x));
  return _mm_cvtss_f32(x);
}

// q: [6, d] fp32 pre-scaled; panel: [d, 16]; s: [6, lds].
inline void scores_f32(const float* q, int d, const float* panel, float* s, int lds) {
  __m256 a0[kRowGroup], a1[kRowGroup];
  for (int r = 0; r < kRowGroup; ++r) a0[r] = a1[r] = _mm256_setzero_ps();
  for (int x = 0; x < d; ++x) {
    const __m256 k0 = _mm256_load_ps(panel + x * kKeyChunk);
    const __m256 k1 = _mm256_load_ps(panel + x * kKeyChunk + kW);
    for (int r = 0; r < kRowGroup; ++r) {
      const __m256 b = _mm256_broadcast_ss(q + r * d + x);
      a0[r] = _mm256_fmadd_ps(b, k0, a0[r]);
      a1[r] = _mm256_fmadd_ps(b, k1, a1[r]);
    }
  }
  for (int r = 0; r < kRowGroup; ++r) {
    _mm256_store_ps(s + r * lds, a0[r]);
    _mm256_store_ps(s + r * lds + kW, a1[r]);
  }
}

// p: [6, ldp]; v: [keys, ldv]; o: [6, ldo]: o = corr * o + p v over kCols*8 columns.
template <int kCols>
inline void accumulate_pv_f32(const float* p, int ldp, const float* v, int ldv, int keys,
                              const float* corr, float* o, int ldo) {
  __m256 acc[kRowGroup][kCols];
  for (int r = 0; r < kRowGroup; ++r) {
    const __m256 c = _mm256_set1_ps(corr[r]);
    for (int j = 0; j < kCols; ++j) acc[r][j] = _mm256_mul_ps(_mm256_load_ps(o + r * ldo + j * kW), c);
  }
  for (int key = 0; key < keys; ++key) {
    __m256 vv[kCols];
    for (int j = 0; j < kCols; ++j) vv[j] = _mm256_load_ps(v + key * ldv + j * kW);
    for (int r = 0; r < kRowGroup; ++r) {
      const __m256 b = _mm256_broadcast_ss(p + r * ldp + key);
      for (int j = 0; j < kCols; ++j) acc[r][j] = _mm256_fmadd_ps(b, vv[j], acc[r][j]);
    }
  }
  for (int r = 0; r < kRowGroup; ++r)
    for (int j = 0; j < kCols; ++j) _mm256_store_ps(o + r * ldo + j * kW, acc[r][j]);
}

void accumulate_pv(const float* p, int ldp, const float* v, int ldv, int keys, const float* corr,
                   float* o, int ldo) {
  int col = 0;
  for (; col + 2 * kW <= ldv; col += 2 * kW) accumulate_pv_f32<2>(p, ldp, v + col, ldv, keys, corr, o + col, ldo);
  if (col < ldv) accumulate_pv_f32<1>(p, ldp, v + col, ldv, keys, corr, o + col, ldo);
}

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
  for (int at = 0; at < bytes; at += 64) _mm_prefetch(p + at, _MM_HINT_T0);
}

// Row `row` of a f32/bf16 matrix as fp32 times mul into dst[dim].
inline void load_row(DType dtype, const void* src, int dim, float mul, float* dst) {
  if (dtype == DType::f32) {
    const float* s = static_cast<const float*>(src);
    for (int x = 0; x < dim; ++x) dst[x] = s[x] * mul;
  } else {
    const std::uint16_t* s = static_cast<const std::uint16_t*>(src);
    for (int x = 0; x < dim; ++x) dst[x] = bf16_to_f32(s[x]) * mul;
  }
}

// r[i] = row i of an 8 x 8 block -> r[j] = column j (shuffles only: exact).
inline void transpose8x8(__m256 r[kW]) {
  __m256 t[kW], u[kW];
  for (int i = 0; i < kW; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < kW; i += 4) {
    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
    r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
  }
}

// 8 consecutive elements of a f32 or bf16 row as fp32.
inline __m256 load8(DType dtype, const void* row, int x) {
  if (dtype == DType::f32) return _mm256_loadu_ps(static_cast<const float*>(row) + x);
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const std::uint16_t*>(row) + x));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

// Packs keys [c0, c0 + nc): K into [chunk, d, 16] panels (8 keys x 8 dims at a time by a
// transpose in registers, the rest one element at a time), V into [nc, dv_pad] rows, bias * log2 e.
void pack_keys(const DenseAttentionTile& t, const ScratchLayout& L, std::int64_t c0, int nc,
               float* kbuf, float* vbuf, float* bias) {
  const int d = t.head_dim;
  const int dv = t.head_dim_v;
  const int nc_pad = static_cast<int>(round_up(static_cast<std::size_t>(nc), kKeyChunk));
  const int d8 = d / kW * kW;  // dims the transpose covers
  const auto key_row = [&](int c) { return t.k_index ? std::int64_t{t.k_index[c0 + c]} : c0 + c; };
  if (t.k_index)
    for (int c = 0; c < std::min(nc, kPrefetchAhead); ++c) {
      prefetch_row(t.dtype, t.k, t.k_row_stride, t.k_index[c0 + c], d);
      prefetch_row(t.dtype, t.v, t.v_row_stride, t.k_index[c0 + c], dv);
    }
  for (int c8 = 0; c8 < nc_pad; c8 += kW) {
    if (t.k_index)
      for (int c = c8 + kPrefetchAhead; c < std::min(nc, c8 + kW + kPrefetchAhead); ++c) {
        prefetch_row(t.dtype, t.k, t.k_row_stride, t.k_index[c0 + c], d);
        prefetch_row(t.dtype, t.v, t.v_row_stride, t.k_index[c0 + c], dv);
      }
    // Keys c8 .. c8 + 7 fill lanes c8 % 16 .. + 7 of their chunk's panel [d, 16].
    float* panel = kbuf + static_cast<std::size_t>(c8 / kKeyChunk) * d * kKeyChunk + c8 % kKeyChunk;
    const int keys = std::min(kW, nc - c8);  // real keys here (<= 0: all padding)
    if (keys == kW) {
      const void* src[kW];
      for (int i = 0; i < kW; ++i) src[i] = row_address(t.dtype, t.k, t.k_row_stride, key_row(c8 + i));
      for (int x = 0; x < d8; x += kW) {
        __m256 r[kW];
        for (int i = 0; i < kW; ++i) r[i] = load8(t.dtype, src[i], x);
        transpose8x8(r);
        for (int j = 0; j < kW; ++j) _mm256_store_ps(panel + (x + j) * kKeyChunk, r[j]);
      }
    }
    for (int i = 0; i < kW; ++i) {
      const int c = c8 + i;
      const int from = keys == kW ? d8 : 0;  // dims the transpose did not cover
      if (c < nc) {
        const void* src = row_address(t.dtype, t.k, t.k_row_stride, key_row(c));
        if (t.dtype == DType::f32) {
          const float* sf = static_cast<const float*>(src);
          for (int x = from; x < d; ++x) panel[x * kKeyChunk + i] = sf[x];
        } else {
          const std::uint16_t* sb = static_cast<const std::uint16_t*>(src);
          for (int x = from; x < d; ++x) panel[x * kKeyChunk + i] = bf16_to_f32(sb[x]);
        }
      } else {
        for (int x = 0; x < d; ++x) panel[x * kKeyChunk + i] = 0.0f;
      }
    }
  }
  for (int c = 0; c < nc; ++c) {
    const std::int64_t row = t.k_index ? t.k_index[c0 + c] : c0 + c;
    float* dst = vbuf + static_cast<std::size_t>(c) * L.dv_pad;
    load_row(t.dtype, row_address(t.dtype, t.v, t.v_row_stride, row), dv, 1.0f, dst);
    for (int x = dv; x < L.dv_pad; ++x) dst[x] = 0.0f;
  }
  for (int c = 0; c < nc; ++c) bias[c] = t.key_bias ? t.key_bias[c0 + c] * kLog2e : 0.0f;
}

// merge_row's row update, o_acc = (w_old o_acc + w_new o_new) * inv, with the products hidden
// from FMA contraction so the bits equal combine_rows_scalar's.
void combine_rows(float* o_acc, const float* o_new, float w_old, float w_new, float inv, int d) {
  const __m256 wo = _mm256_set1_ps(w_old), wn = _mm256_set1_ps(w_new), vi = _mm256_set1_ps(inv);
  int x = 0;
  for (; x + kW <= d; x += kW) {
    __m256 a = _mm256_mul_ps(wo, _mm256_loadu_ps(o_acc + x));
    __m256 b = _mm256_mul_ps(wn, _mm256_loadu_ps(o_new + x));
    __asm__("" : "+x"(a), "+x"(b));
    _mm256_storeu_ps(o_acc + x, _mm256_mul_ps(_mm256_add_ps(a, b), vi));
  }
  combine_rows_scalar(o_acc + x, o_new + x, w_old, w_new, inv, d - x);
}

void dense(const DenseAttentionTile& t) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  const ScratchLayout L = scratch_layout(t.head_dim, t.head_dim_v);
  const int d = t.head_dim;
  const int dv = t.head_dim_v;
  float* qbuf = t.scratch + L.q;      // [kRowTile, d], times scale * log2 e
  float* obuf = t.scratch + L.o;      // [kRowTile, dv_pad]
  float* m = t.scratch + L.m;         // [kRowTile] running max (base 2)
  float* l = t.scratch + L.l;         // [kRowTile] running sum
  float* corr = t.scratch + L.corr;   // [kRowGroup]
  float* kbuf = t.scratch + L.k;      // key panels
  float* vbuf = t.scratch + L.v;      // value rows
  float* s = t.scratch + L.s;         // [kRowGroup, kKeyTile] scores, then weights
  float* bias = t.scratch + L.bias;   // [kKeyTile]
  const float q_mul = t.scale * kLog2e;

  for (std::int64_t r0 = 0; r0 < t.rows; r0 += kRowTile) {
    const int nr = static_cast<int>(std::min<std::int64_t>(kRowTile, t.rows - r0));
    const int nr_pad = static_cast<int>(round_up(static_cast<std::size_t>(nr), kRowGroup));
    if (t.q_index)
      for (int r = 0; r < std::min(nr, kPrefetchAhead); ++r) prefetch_row(t.dtype, t.q, t.q_row_stride, t.q_index[r0 + r], d);
    for (int r = 0; r < nr_pad; ++r) {
      if (t.q_index && r + kPrefetchAhead < nr)
        prefetch_row(t.dtype, t.q, t.q_row_stride, t.q_index[r0 + r + kPrefetchAhead], d);
      float* dst = qbuf + static_cast<std::size_t>(r) * d;
      if (r < nr) {
        const std::int64_t row = t.q_index ? t.q_index[r0 + r] : r0 + r;
        load_row(t.dtype, row_address(t.dtype, t.q, t.q_row_stride, row), d, q_mul, dst);
      } else {
        std::memset(dst, 0, static_cast<std::size_t>(d) * sizeof(float));
      }
      m[r] = kNegInf;
      l[r] = 0.0f;
    }
    std::memset(obuf, 0, static_cast<std::size_t>(nr_pad) * L.dv_pad * sizeof(float));
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
      pack_keys(t, L, c0, nc, kbuf, vbuf, bias);

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
        if (group_end == 0) continue;

        for (int cc = 0; cc < group_end; cc += kKeyChunk)
          scores_f32(qbuf + static_cast<std::size_t>(g0) * d, d, kbuf + static_cast<std::size_t>(cc) * d, s + cc, kKeyTile);

        for (int r = 0; r < kRowGroup; ++r) {
          float* sr = s + r * kKeyTile;
          const int vis = visible[r];
          // The lanes of 8 keys from c this row sees: a prefix, further masked by a row window.
          const bool win = windowed[r];
          const auto lanes = [&](int c) {
            const __m256 k = prefix_mask(vis - c);
            return win ? window_lanes(t, r0 + g0 + r, c0 + c, k) : k;
          };
          // Chunks of 8 keys the row sees whole (no row window): no lane masks, and no bias pass
          // without a bias; the masked loop takes the rest. NaN lanes are or-ed up and tested once.
          const int whole = win ? 0 : vis / kW * kW;
          __m256 vmax = _mm256_set1_ps(kNegInf);
          __m256 vnan = _mm256_setzero_ps();  // max drops NaN: track it so a NaN input row gives NaN, not "no key"
          int c = 0;
          if (t.key_bias) {
            for (; c < whole; c += kW) {
              const __m256 x = _mm256_add_ps(_mm256_load_ps(sr + c), _mm256_load_ps(bias + c));
              _mm256_store_ps(sr + c, x);
              vmax = _mm256_max_ps(vmax, x);
              vnan = _mm256_or_ps(vnan, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
            }
          } else {
            for (; c < whole; c += kW) {
              const __m256 x = _mm256_load_ps(sr + c);
              vmax = _mm256_max_ps(vmax, x);
              vnan = _mm256_or_ps(vnan, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
            }
          }
          for (; c < vis; c += kW) {
            const __m256 k = lanes(c);
            const __m256 x = _mm256_add_ps(_mm256_load_ps(sr + c), _mm256_maskload_ps(bias + c, _mm256_castps_si256(k)));
            _mm256_store_ps(sr + c, x);
            vmax = _mm256_blendv_ps(vmax, _mm256_max_ps(vmax, x), k);
            vnan = _mm256_or_ps(vnan, _mm256_and_ps(_mm256_cmp_ps(x, x, _CMP_UNORD_Q), k));
          }
          const float tile_max = _mm256_movemask_ps(vnan) ? std::numeric_limits<float>::quiet_NaN()
                                                          : (vis > 0 ? reduce_max(vmax) : kNegInf);
          const int row = g0 + r;
          if (tile_max == kNegInf) {
            corr[r] = 1.0f;
            std::memset(sr, 0, static_cast<std::size_t>(group_end) * sizeof(float));
            continue;
          }
          // NaN is sticky: std::max(NaN, x) keeps the NaN running max, and a NaN tile max sets it.
          const float m_new = tile_max != tile_max ? tile_max : std::max(m[row], tile_max);
          // 2^(m - m_new): 0 on the first visible tile (m = -inf), 1 where the max stays; both exact
          // (C Annex F), so only the other cases need the call.
          const float dm = m[row] - m_new;
          corr[r] = dm == 0.0f ? 1.0f : dm == -std::numeric_limits<float>::infinity() ? 0.0f : std::exp2(dm);
          const __m256 vm = _mm256_set1_ps(m_new);
          __m256 vsum = _mm256_setzero_ps();
          for (c = 0; c < whole; c += kW) {
            const __m256 p = exp2_ps(_mm256_sub_ps(_mm256_load_ps(sr + c), vm));
            _mm256_store_ps(sr + c, p);
            vsum = _mm256_add_ps(vsum, p);
          }
          for (; c < group_end; c += kW) {
            const __m256 p = _mm256_and_ps(lanes(c), exp2_ps(_mm256_sub_ps(_mm256_load_ps(sr + c), vm)));
            _mm256_store_ps(sr + c, p);
            vsum = _mm256_add_ps(vsum, p);
          }
          // Roundings spelled out (the FMA target would otherwise leave them to the compiler).
          l[row] = no_contract(l[row] * corr[r]) + reduce_add(vsum);
          m[row] = m_new;
        }
        accumulate_pv(s, kKeyTile, vbuf, L.dv_pad, group_end, corr,
                      obuf + static_cast<std::size_t>(g0) * L.dv_pad, L.dv_pad);
      }
    }

    for (int r = 0; r < nr; ++r) {
      // The gathered output rows are in L2 since the last key tile, but their address
      // translations are long gone from the TLBs: touch them again a few rows ahead.
      if (t.out_index && r + kPrefetchAhead < nr) {
        const std::int64_t ahead = t.out_index[r0 + r + kPrefetchAhead];
        prefetch_row(DType::f32, t.out, t.out_row_stride, ahead, dv);
        if (t.lse) _mm_prefetch(reinterpret_cast<const char*>(t.lse + ahead), _MM_HINT_T0);
      }
      const std::int64_t orow = t.out_index ? t.out_index[r0 + r] : r0 + r;
      // The row's result (in place in obuf with merge, else straight into out) and its lse.
      float* acc = obuf + static_cast<std::size_t>(r) * L.dv_pad;
      float* o = t.merge ? acc : t.out + orow * t.out_row_stride;
      float row_lse;
      if (l[r] > 0.0f) {
        const float inv = 1.0f / l[r];
        for (int x = 0; x < dv; ++x) o[x] = acc[x] * inv;
        row_lse = std::fma(kLn2, m[r], std::log(l[r]));
      } else if (l[r] != l[r]) {  // NaN or Inf in the inputs: propagate
        for (int x = 0; x < dv; ++x) o[x] = l[r];
        row_lse = l[r];
      } else {  // no visible key: the empty-set rule
        for (int x = 0; x < dv; ++x) o[x] = 0.0f;
        row_lse = kNegInf;
      }
      if (t.merge) merge_row(t.out + orow * t.out_row_stride, t.lse + orow, acc, row_lse, dv, combine_rows);
      else if (t.lse) t.lse[orow] = row_lse;
    }
  }
}

}  // namespace

#define HYPERATTN_BWD_W 8
#define HYPERATTN_BWD_RB 2
#include "cpu/isa/backward_impl.hpp"  // backward(), backward_scratch_floats()
#undef HYPERATTN_BWD_W
#undef HYPERATTN_BWD_RB

extern const AttentionKernel kKernel;  // declared in cpu/kernel_table.cpp
const AttentionKernel kKernel{"avx2", &dense, &scratch_floats, nullptr, &backward, &backward_scratch_floats};

}  // namespace hyperattn::cpu::avx2

#pragma GCC pop_options
