// src/cpu/isa/neon.cpp: the AArch64 NEON dense attention kernel (fp32 arithmetic; bf16 input is
// widened to fp32 while packing).
//
// Same contract as isa/scalar.cpp and the same driver as isa/avx2.cpp (dense_driver.hpp), sized for
// AArch64's 32 q registers of 4 floats: S = Q K^T by a 5 rows x 16 keys microkernel (20
// accumulators, 4 panel loads and 5 lane operands per 20 FMAs), O += P V by a 5 rows x 16 columns
// microkernel. Both fit the registers: with 6-row groups (24 accumulators, 4 panel or value
// vectors and 6 operands: 34 registers) GCC 12 spilled two accumulators of S and one of P V to the
// stack and reloaded them in every iteration of the inner loops, a store-to-load chain per
// iteration; with 5 rows no inner loop touches the stack (checked in the disassembly). A row's
// arithmetic does not depend on its group, so the outputs kept their bytes (hyperattn run under
// qemu-user, d 48/64/128, exact and HyperAttention, causal and not). Scores in base 2 (Q carries scale * log2 e). NEON is part of every AArch64 CPU, so
// this file needs no target pragma and the kernel table offers it unconditionally there.
//
// exp2: the polynomial of avx512.cpp (<= 1.6 ulp over |f| <= 1/2); 2^n built in the exponent field
// after clamping x >= -127 (n = -127 gives the bit pattern of +0: masked, -inf scores weigh exactly
// 0), as avx2.cpp.
//
// Its speed has not been measured (no ARM machine here); its results are tested under qemu-user
// against the reference like every kernel (tests/cpu/test_attention_kernels.cpp, docs/portability.md).
#include <arm_neon.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "core/bfloat16.hpp"
#include "cpu/attention_kernel.hpp"
#include "cpu/prefetch.hpp"

namespace hyperattn::cpu::neon {
namespace {

constexpr int kW = 4;           // fp32 lanes per q register
constexpr int kRowGroup = 5;    // rows per microkernel call
constexpr int kKeyChunk = 16;   // keys per S microkernel call (four q registers)
constexpr int kRowTile = 515;   // rows held in scratch at once (a multiple of kRowGroup, >= the executor's 512-row chunk)
constexpr int kKeyTile = 256;   // keys packed at once (multiple of kKeyChunk)
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2 = 0.693147180559945309f;

#include "cpu/isa/fp32_scratch.hpp"  // round_up, ScratchLayout, scratch_layout, scratch_floats

// 2^x for x <= 0; x below -127 (and -inf) gives 0.
inline float32x4_t exp2_ps(float32x4_t x) {
  x = vmaxq_f32(x, vdupq_n_f32(-127.0f));
  const float32x4_t n = vrndnq_f32(x);  // to nearest, ties to even (as _MM_FROUND_TO_NEAREST_INT)
  const float32x4_t f = vsubq_f32(x, n);
  float32x4_t p = vdupq_n_f32(1.534581243e-04f);
  p = vfmaq_f32(vdupq_n_f32(1.339993090e-03f), p, f);  // c + p f, fused
  p = vfmaq_f32(vdupq_n_f32(9.618489072e-03f), p, f);
  p = vfmaq_f32(vdupq_n_f32(5.550328642e-02f), p, f);
  p = vfmaq_f32(vdupq_n_f32(2.402264625e-01f), p, f);
  p = vfmaq_f32(vdupq_n_f32(6.931471825e-01f), p, f);
  p = vfmaq_f32(vdupq_n_f32(1.0f), p, f);
  const int32x4_t bits = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
  return vmulq_f32(p, vreinterpretq_f32_s32(bits));
}

// All-ones lanes for lane < n.
inline uint32x4_t prefix_mask(int n) {
  static constexpr std::int32_t kIota[kW] = {0, 1, 2, 3};
  return vcltq_s32(vld1q_s32(kIota), vdupq_n_s32(n));
}

// Row `row`'s window mask (row_window set) for keys j0 + [0, 4): the lanes of keys it sees among
// those of `valid` (window_visible, lane by lane).
inline uint32x4_t window_lanes(const DenseAttentionTile& t, std::int64_t row, std::int64_t j0, uint32x4_t valid) {
  std::uint32_t v[kW], out[kW];
  vst1q_u32(v, valid);
  for (int i = 0; i < kW; ++i) {
    const std::int64_t j = j0 + i;
    out[i] = v[i] != 0 && window_visible(t, row, j, t.k_index ? std::int64_t{t.k_index[j]} : j) ? ~0u : 0u;
  }
  return vld1q_u32(out);
}

// q: [5, d] fp32 pre-scaled; panel: [d, 16]; s: [5, lds].
[[gnu::always_inline]] inline void scores_f32(const float* q, int d, const float* panel, float* s, int lds) {
  float32x4_t acc[kRowGroup][4];
  for (int r = 0; r < kRowGroup; ++r)
    for (int j = 0; j < 4; ++j) acc[r][j] = vdupq_n_f32(0.0f);
  for (int x = 0; x < d; ++x) {
    float32x4_t k[4];
    for (int j = 0; j < 4; ++j) k[j] = vld1q_f32(panel + x * kKeyChunk + j * kW);
    for (int r = 0; r < kRowGroup; ++r) {
      const float32x4_t b = vld1q_dup_f32(q + r * d + x);
      for (int j = 0; j < 4; ++j) acc[r][j] = vfmaq_f32(acc[r][j], b, k[j]);
    }
  }
  for (int r = 0; r < kRowGroup; ++r)
    for (int j = 0; j < 4; ++j) vst1q_f32(s + r * lds + j * kW, acc[r][j]);
}

// S = Q K^T of one row group against keys [0, n) (n rounded up to a chunk): its own function, so
// the microkernel's accumulators get the registers whatever the driver around it keeps live.
[[gnu::noinline]] void scores_group(const float* qg, int d, const float* kbuf, float* s, int n) {
  for (int cc = 0; cc < n; cc += kKeyChunk)
    scores_f32(qg, d, kbuf + static_cast<std::size_t>(cc) * d, s + cc, kKeyTile);
}

// p: [5, ldp]; v: [keys, ldv]; o: [5, ldo]: o = corr * o + p v over kCols*4 columns.
template <int kCols>
inline void accumulate_pv_f32(const float* p, int ldp, const float* v, int ldv, int keys, const float* corr, float* o,
                              int ldo) {
  float32x4_t acc[kRowGroup][kCols];
  for (int r = 0; r < kRowGroup; ++r) {
    const float32x4_t c = vdupq_n_f32(corr[r]);
    for (int j = 0; j < kCols; ++j) acc[r][j] = vmulq_f32(vld1q_f32(o + r * ldo + j * kW), c);
  }
  for (int key = 0; key < keys; ++key) {
    float32x4_t vv[kCols];
    for (int j = 0; j < kCols; ++j) vv[j] = vld1q_f32(v + key * ldv + j * kW);
    for (int r = 0; r < kRowGroup; ++r) {
      const float32x4_t b = vld1q_dup_f32(p + r * ldp + key);
      for (int j = 0; j < kCols; ++j) acc[r][j] = vfmaq_f32(acc[r][j], b, vv[j]);
    }
  }
  for (int r = 0; r < kRowGroup; ++r)
    for (int j = 0; j < kCols; ++j) vst1q_f32(o + r * ldo + j * kW, acc[r][j]);
}

// O = corr * O + P V of one row group, 16 columns at a time, then the 4-column rest.
void pv_group(const float* p, int ldp, const float* v, int ldv, int keys, const float* corr, float* o, int ldo) {
  int col = 0;
  for (; col + 4 * kW <= ldv; col += 4 * kW) accumulate_pv_f32<4>(p, ldp, v + col, ldv, keys, corr, o + col, ldo);
  switch ((ldv - col) / kW) {
    case 3: accumulate_pv_f32<3>(p, ldp, v + col, ldv, keys, corr, o + col, ldo); break;
    case 2: accumulate_pv_f32<2>(p, ldp, v + col, ldv, keys, corr, o + col, ldo); break;
    case 1: accumulate_pv_f32<1>(p, ldp, v + col, ldv, keys, corr, o + col, ldo); break;
    default: break;
  }
}

#include "cpu/isa/dense_driver.hpp"  // row_address, prefetch_row, load_row, dense_rows, store_rows

// Packs keys [c0, c0 + nc): K into [chunk, d, 16] panels (zero keys up to the chunk), V into
// [nc, dv_pad] rows, bias * log2 e. Gathered rows are prefetched kPrefetchAhead keys ahead.
void pack_key_tile(const DenseAttentionTile& t, const ScratchLayout& L, std::int64_t c0, int nc, float* kbuf, float* vbuf,
                   float* bias) {
  const int d = t.head_dim;
  const int dv = t.head_dim_v;
  const int nc_pad = static_cast<int>(round_up(static_cast<std::size_t>(nc), kKeyChunk));
  for (int c = 0; c < nc_pad; ++c) {
    if (t.k_index && c + kPrefetchAhead < nc) {
      prefetch_row(t.dtype, t.k, t.k_row_stride, t.k_index[c0 + c + kPrefetchAhead], d);
      prefetch_row(t.dtype, t.v, t.v_row_stride, t.k_index[c0 + c + kPrefetchAhead], dv);
    }
    float* panel = kbuf + static_cast<std::size_t>(c / kKeyChunk) * d * kKeyChunk + c % kKeyChunk;
    if (c >= nc) {
      for (int x = 0; x < d; ++x) panel[x * kKeyChunk] = 0.0f;
      continue;
    }
    const std::int64_t row = t.k_index ? std::int64_t{t.k_index[c0 + c]} : c0 + c;
    const void* src = row_address(t.dtype, t.k, t.k_row_stride, row);
    if (t.dtype == DType::f32) {
      const float* sf = static_cast<const float*>(src);
      for (int x = 0; x < d; ++x) panel[x * kKeyChunk] = sf[x];
    } else {
      const std::uint16_t* sb = static_cast<const std::uint16_t*>(src);
      for (int x = 0; x < d; ++x) panel[x * kKeyChunk] = bf16_bits_to_f32(sb[x]);
    }
    float* dst = vbuf + static_cast<std::size_t>(c) * L.dv_pad;
    load_row(t.dtype, row_address(t.dtype, t.v, t.v_row_stride, row), dv, 1.0f, dst);
    for (int x = dv; x < L.dv_pad; ++x) dst[x] = 0.0f;
  }
  for (int c = 0; c < nc; ++c) bias[c] = t.key_bias ? t.key_bias[c0 + c] * kLog2e : 0.0f;
}

#include "cpu/isa/fp32_ops.hpp"  // Fp32Ops

// The NEON arithmetic of the row-tile driver (dense_driver.hpp): fp32 throughout, scores in base 2.
struct Ops : Fp32Ops {
  using Fp32Ops::Fp32Ops;
  // The lanes of 4 keys from c the row sees: a prefix, further masked by a row window.
  uint32x4_t lanes(int vis, bool win, std::int64_t row, std::int64_t c0, int c) const {
    const uint32x4_t k = prefix_mask(vis - c);
    return win ? window_lanes(t, row, c0 + c, k) : k;
  }
  float row_max(int r, int vis, bool win, std::int64_t row, std::int64_t c0) {
    constexpr float kNegInf = -std::numeric_limits<float>::infinity();
    float* const sr = s + r * kKeyTile;
    const float* const b = bias;
    const float32x4_t neg_inf = vdupq_n_f32(kNegInf);
    float32x4_t vmax = neg_inf;
    uint32x4_t vnan = vdupq_n_u32(0);  // NaN lanes: a NaN input row gives NaN, not "no key"
    const int whole = win ? 0 : vis / kW * kW;  // chunks the row sees whole: no lane masks
    int c = 0;
    for (; c < whole; c += kW) {
      const float32x4_t x = vaddq_f32(vld1q_f32(sr + c), vld1q_f32(b + c));
      vst1q_f32(sr + c, x);
      vmax = vmaxnmq_f32(vmax, x);
      vnan = vorrq_u32(vnan, vmvnq_u32(vceqq_f32(x, x)));
    }
    for (; c < vis; c += kW) {
      const uint32x4_t k = lanes(vis, win, row, c0, c);
      // Lanes past the tile's keys read padding (scores of zero keys, bias 0): masked out below.
      const float32x4_t x = vaddq_f32(vld1q_f32(sr + c), vld1q_f32(b + c));
      vst1q_f32(sr + c, x);
      vmax = vmaxnmq_f32(vmax, vbslq_f32(k, x, neg_inf));
      vnan = vorrq_u32(vnan, vandq_u32(k, vmvnq_u32(vceqq_f32(x, x))));
    }
    return vmaxvq_u32(vnan) != 0 ? std::numeric_limits<float>::quiet_NaN() : (vis > 0 ? vmaxvq_f32(vmax) : kNegInf);
  }
  float row_weights(int r, int vis, bool win, std::int64_t row, std::int64_t c0, int n, float mx) {
    float* const sr = s + r * kKeyTile;
    const int whole = win ? 0 : vis / kW * kW;
    const float32x4_t vm = vdupq_n_f32(mx);
    float32x4_t vsum = vdupq_n_f32(0.0f);
    int c = 0;
    for (; c < whole; c += kW) {
      const float32x4_t p = exp2_ps(vsubq_f32(vld1q_f32(sr + c), vm));
      vst1q_f32(sr + c, p);
      vsum = vaddq_f32(vsum, p);
    }
    for (; c < n; c += kW) {
      const uint32x4_t k = lanes(vis, win, row, c0, c);
      const float32x4_t p = vreinterpretq_f32_u32(
          vandq_u32(k, vreinterpretq_u32_f32(exp2_ps(vsubq_f32(vld1q_f32(sr + c), vm)))));
      vst1q_f32(sr + c, p);
      vsum = vaddq_f32(vsum, p);
    }
    return vaddvq_f32(vsum);
  }
  static void combine_rows(float* o_acc, const float* o_new, float w_old, float w_new, float inv, int dv) {
    combine_rows_scalar(o_acc, o_new, w_old, w_new, inv, dv);
  }
};

void dense(const DenseAttentionTile& t) {
  Ops ops(t);
  dense_rows(t, ops);
}

}  // namespace

// The backward's register blocks for 32 q registers, as AVX-512's for 32 zmm: 4 x 4 blocks (16
// accumulators, 4 loaded vectors, 4 operands) instead of the 2 x 4 of 16-register ISAs. The
// innermost loops then issue 16 FMAs per 26 instructions (about 0.5 loads per FMA) instead of 8 per
// 16 (0.75), and touch no stack either way (aarch64-linux-gnu-objdump of neon.cpp.o); the gradients
// keep their bytes (each sum runs in the same order whatever the block), checked under qemu-user.
// Not timed (no ARM machine).
#define HYPERATTN_BWD_W 4
#define HYPERATTN_BWD_RB 4
#include "cpu/isa/backward_impl.hpp"  // backward(), backward_scratch_floats()
#undef HYPERATTN_BWD_W
#undef HYPERATTN_BWD_RB

extern const AttentionKernel kKernel;  // declared in cpu/kernel_table.cpp
const AttentionKernel kKernel{"neon", &dense, &scratch_floats, nullptr, &backward, &backward_scratch_floats};

}  // namespace hyperattn::cpu::neon
