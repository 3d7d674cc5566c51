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

#include "core/bfloat16.hpp"
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
// Rows held in scratch at once: a multiple of kRowGroup, and at least the executor's 512-row chunk,
// so that each key tile is packed once per chunk (252 rows for a 256-row chunk split it into 252 + 4
// rows, packing twice: 7-9% slower on Zen 4; 258 rows for a 512-row chunk measured from 14% slower
// to 10% faster than 516 between runs, one thread, forced on Zen 4: no clear difference).
constexpr int kRowTile = 516;
constexpr int kKeyTile = 256;     // keys packed at once (multiple of kKeyChunk)
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2 = 0.693147180559945309f;

#include "cpu/isa/fp32_scratch.hpp"  // round_up, ScratchLayout, scratch_layout, scratch_floats

// 2^x for x <= 0 of kN independent vectors, a stage at a time; x below -127 (and -inf) gives 0.
// Each vector is a chain of the clamp, the rounding and 6 dependent FMAs: one vector per loop
// iteration keeps more waiting uops than the FP scheduler holds (its perf samples piled on the
// chain's last instructions); interleaved, the chains advance together. Each lane's arithmetic is
// the same, so the bits are.
template <int kN>
[[gnu::always_inline]] inline void exp2_ps_n(__m256 (&x)[kN]) {
  __m256 n[kN], f[kN], p[kN];
  for (int i = 0; i < kN; ++i) x[i] = _mm256_max_ps(x[i], _mm256_set1_ps(-127.0f));
  for (int i = 0; i < kN; ++i) n[i] = _mm256_round_ps(x[i], _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  for (int i = 0; i < kN; ++i) f[i] = _mm256_sub_ps(x[i], n[i]);
  for (int i = 0; i < kN; ++i) p[i] = _mm256_fmadd_ps(_mm256_set1_ps(1.534581243e-04f), f[i], _mm256_set1_ps(1.339993090e-03f));
  for (int i = 0; i < kN; ++i) p[i] = _mm256_fmadd_ps(p[i], f[i], _mm256_set1_ps(9.618489072e-03f));
  for (int i = 0; i < kN; ++i) p[i] = _mm256_fmadd_ps(p[i], f[i], _mm256_set1_ps(5.550328642e-02f));
  for (int i = 0; i < kN; ++i) p[i] = _mm256_fmadd_ps(p[i], f[i], _mm256_set1_ps(2.402264625e-01f));
  for (int i = 0; i < kN; ++i) p[i] = _mm256_fmadd_ps(p[i], f[i], _mm256_set1_ps(6.931471825e-01f));
  for (int i = 0; i < kN; ++i) p[i] = _mm256_fmadd_ps(p[i], f[i], _mm256_set1_ps(1.0f));
  for (int i = 0; i < kN; ++i) {
    const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n[i]), _mm256_set1_epi32(127)), 23);
    x[i] = _mm256_mul_ps(p[i], _mm256_castsi256_ps(bits));
  }
}

// 2^x for one vector (exp2_ps_n).
inline __m256 exp2_ps(__m256 x) {
  __m256 v[1] = {x};
  exp2_ps_n<1>(v);
  return v[0];
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
[[gnu::always_inline]] inline void scores_f32(const float* q, int d, const float* panel, float* s, int lds) {
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

// S = Q K^T of one row group against keys [0, n) (n rounded up to a chunk): its own function, so
// the microkernel's 12 accumulators and 6 row pointers get the registers whatever the driver around
// it keeps live (inlined into the driver, GCC spilled the row pointers: 5-10% slower).
[[gnu::noinline]] void scores_group(const float* qg, int d, const float* kbuf, float* s, int n) {
  for (int cc = 0; cc < n; cc += kKeyChunk)
    scores_f32(qg, d, kbuf + static_cast<std::size_t>(cc) * d, s + cc, kKeyTile);
}

// O = corr * O + P V of one row group (its own function, as scores_group).
void pv_group(const float* p, int ldp, const float* v, int ldv, int keys, const float* corr,
                   float* o, int ldo) {
  int col = 0;
  for (; col + 2 * kW <= ldv; col += 2 * kW) accumulate_pv_f32<2>(p, ldp, v + col, ldv, keys, corr, o + col, ldo);
  if (col < ldv) accumulate_pv_f32<1>(p, ldp, v + col, ldv, keys, corr, o + col, ldo);
}

#include "cpu/isa/dense_driver.hpp"  // row_address, prefetch_row, load_row, dense_rows, store_rows

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
void pack_key_tile(const DenseAttentionTile& t, const ScratchLayout& L, std::int64_t c0, int nc,
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
          for (int x = from; x < d; ++x) panel[x * kKeyChunk + i] = bf16_bits_to_f32(sb[x]);
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

#include "cpu/isa/fp32_ops.hpp"  // Fp32Ops

// The AVX2 arithmetic of the row-tile driver (dense_driver.hpp): fp32 throughout, scores in base 2
// (Q carries scale * log2 e).
struct Ops : Fp32Ops {
  using Fp32Ops::Fp32Ops;
  // The lanes of 8 keys from c the row sees: a prefix, further masked by a row window.
  __m256 lanes(int vis, bool win, std::int64_t row, std::int64_t c0, int c) const {
    const __m256 k = prefix_mask(vis - c);
    return win ? window_lanes(t, row, c0 + c, k) : k;
  }
  // Chunks of 8 keys the row sees whole (no row window): no lane masks, and no bias pass without a
  // bias; the masked loop takes the rest. NaN lanes are or-ed up and tested once.
  static int whole_chunks(int vis, bool win) { return win ? 0 : vis / kW * kW; }
  float row_max(int r, int vis, bool win, std::int64_t row, std::int64_t c0) {
    constexpr float kNegInf = -std::numeric_limits<float>::infinity();
    // Members into locals first: the vector stores below may alias anything, members included.
    float* const sr = s + r * kKeyTile;
    const float* const b = bias;
    const int whole = whole_chunks(vis, win);
    __m256 vmax = _mm256_set1_ps(kNegInf);
    __m256 vnan = _mm256_setzero_ps();  // max drops NaN: track it so a NaN input row gives NaN, not "no key"
    int c = 0;
    if (t.key_bias) {
      for (; c < whole; c += kW) {
        const __m256 x = _mm256_add_ps(_mm256_load_ps(sr + c), _mm256_load_ps(b + c));
        _mm256_store_ps(sr + c, x);
        vmax = _mm256_max_ps(vmax, x);
        vnan = _mm256_or_ps(vnan, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
      }
    } else {
      // Two max chains (the max is exact: the order cannot change it), each vmaxps waiting on
      // the one before otherwise.
      __m256 vmax1 = vmax;
      for (; c + 2 * kW <= whole; c += 2 * kW) {
        const __m256 x0 = _mm256_load_ps(sr + c), x1 = _mm256_load_ps(sr + c + kW);
        vmax = _mm256_max_ps(vmax, x0);
        vmax1 = _mm256_max_ps(vmax1, x1);
        vnan = _mm256_or_ps(vnan, _mm256_cmp_ps(x0, x1, _CMP_UNORD_Q));
      }
      vmax = _mm256_max_ps(vmax, vmax1);
      for (; c < whole; c += kW) {
        const __m256 x = _mm256_load_ps(sr + c);
        vmax = _mm256_max_ps(vmax, x);
        vnan = _mm256_or_ps(vnan, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
      }
    }
    for (; c < vis; c += kW) {
      const __m256 k = lanes(vis, win, row, c0, c);
      const __m256 x = _mm256_add_ps(_mm256_load_ps(sr + c), _mm256_maskload_ps(b + c, _mm256_castps_si256(k)));
      _mm256_store_ps(sr + c, x);
      vmax = _mm256_blendv_ps(vmax, _mm256_max_ps(vmax, x), k);
      vnan = _mm256_or_ps(vnan, _mm256_and_ps(_mm256_cmp_ps(x, x, _CMP_UNORD_Q), k));
    }
    return _mm256_movemask_ps(vnan) ? std::numeric_limits<float>::quiet_NaN() : (vis > 0 ? reduce_max(vmax) : kNegInf);
  }
  float row_weights(int r, int vis, bool win, std::int64_t row, std::int64_t c0, int n, float mx) {
    float* const sr = s + r * kKeyTile;
    const int whole = whole_chunks(vis, win);
    const __m256 vm = _mm256_set1_ps(mx);
    __m256 vsum = _mm256_setzero_ps();
    int c = 0;
    constexpr int kInterleave = 2;  // exp2_ps_n
    for (; c + kInterleave * kW <= whole; c += kInterleave * kW) {
      __m256 p[kInterleave];
      for (int i = 0; i < kInterleave; ++i) p[i] = _mm256_sub_ps(_mm256_load_ps(sr + c + i * kW), vm);
      exp2_ps_n<kInterleave>(p);
      for (int i = 0; i < kInterleave; ++i) {
        _mm256_store_ps(sr + c + i * kW, p[i]);
        vsum = _mm256_add_ps(vsum, p[i]);
      }
    }
    for (; c < whole; c += kW) {
      const __m256 p = exp2_ps(_mm256_sub_ps(_mm256_load_ps(sr + c), vm));
      _mm256_store_ps(sr + c, p);
      vsum = _mm256_add_ps(vsum, p);
    }
    for (; c < n; c += kW) {
      const __m256 p = _mm256_and_ps(lanes(vis, win, row, c0, c), exp2_ps(_mm256_sub_ps(_mm256_load_ps(sr + c), vm)));
      _mm256_store_ps(sr + c, p);
      vsum = _mm256_add_ps(vsum, p);
    }
    return reduce_add(vsum);
  }
  static void combine_rows(float* o_acc, const float* o_new, float w_old, float w_new, float inv, int dv) {
    avx2::combine_rows(o_acc, o_new, w_old, w_new, inv, dv);
  }
};

void dense(const DenseAttentionTile& t) {
  Ops ops(t);
  dense_rows(t, ops);
}

}  // namespace

// The backward's register blocks sized for 16 ymm registers: 12 accumulators, their 2 or 3 loaded
// vectors and a broadcast (backward_impl.hpp). On Zen 4 (forced avx2, n = 8192, 2 threads) they ran
// the backward 1.16x (non-causal) and 1.13x (causal) faster than 8-accumulator blocks of 2 x 4, and
// 48-row tiles amortise each block's accumulator loads and stores over 48 rows instead of 16.
#define HYPERATTN_BWD_W 8
#define HYPERATTN_BWD_RB 2
#define HYPERATTN_BWD_RT 48
#define HYPERATTN_BWD_ROWS_R 6
#define HYPERATTN_BWD_ROWS_V 2
#define HYPERATTN_BWD_KEYS_R 4
#define HYPERATTN_BWD_KEYS_V 3
#include "cpu/isa/backward_impl.hpp"  // backward(), backward_scratch_floats()
#undef HYPERATTN_BWD_W
#undef HYPERATTN_BWD_RB
#undef HYPERATTN_BWD_RT
#undef HYPERATTN_BWD_ROWS_R
#undef HYPERATTN_BWD_ROWS_V
#undef HYPERATTN_BWD_KEYS_R
#undef HYPERATTN_BWD_KEYS_V

extern const AttentionKernel kKernel;  // declared in cpu/kernel_table.cpp
const AttentionKernel kKernel{"avx2", &dense, &scratch_floats, nullptr, &backward, &backward_scratch_floats};

}  // namespace hyperattn::cpu::avx2

#pragma GCC pop_options
