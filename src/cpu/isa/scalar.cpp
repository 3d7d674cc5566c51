// src/cpu/isa/scalar.cpp: the portable dense attention kernel (no intrinsics).
// Online softmax over key tiles (FlashAttention's recurrence), fp32 accumulation. It is the
// fallback on CPUs without AVX2 and the plainest statement of the kernel contract
// (src/cpu/attention_kernel.hpp); the SIMD variants must agree with it to rounding. It is also the
// strict kernel (strict_kernel()): a key a row does not see (past its causal limit, masked by its
// window, bias -inf) is left out of every sum, never multiplied by 0, so a NaN or Inf in V (forward),
// or in Q, K, V or dO (backward), reaches only the rows and keys that meet it.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "core/bfloat16.hpp"
#include "cpu/attention_kernel.hpp"

namespace hyperattn::cpu::scalar {
namespace {

constexpr std::int64_t kRowTile = 16;  // query rows per tile
constexpr std::int64_t kKeyTile = 64;  // keys per tile

// Loads row `row` of a [*, dim] f32/bf16 matrix into dst[dim] as fp32, times `mul`.
void load_row(DType dtype, const void* base, std::int64_t row_stride, std::int64_t row, int dim,
              float mul, float* dst) {
  if (dtype == DType::f32) {
    const float* src = static_cast<const float*>(base) + row * row_stride;
    for (int c = 0; c < dim; ++c) dst[c] = src[c] * mul;
  } else {
    const std::uint16_t* src = static_cast<const std::uint16_t*>(base) + row * row_stride;
    for (int c = 0; c < dim; ++c) dst[c] = bf16_bits_to_f32(src[c]) * mul;
  }
}

std::size_t scratch_floats(int head_dim, int head_dim_v) {
  return static_cast<std::size_t>(kRowTile * head_dim + kKeyTile * head_dim + kKeyTile * head_dim_v +
                                  kRowTile * kKeyTile + 2 * kRowTile + kRowTile * head_dim_v +
                                  kKeyTile) + 64;
}

void dense(const DenseAttentionTile& t) {
  const int d = t.head_dim;
  const int dv = t.head_dim_v;
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  float* qbuf = t.scratch;                 // [kRowTile, d], pre-scaled
  float* kbuf = qbuf + kRowTile * d;       // [kKeyTile, d]
  float* vbuf = kbuf + kKeyTile * d;       // [kKeyTile, dv]
  float* s = vbuf + kKeyTile * dv;         // [kRowTile, kKeyTile]
  float* m = s + kRowTile * kKeyTile;      // [kRowTile] running max
  float* l = m + kRowTile;                 // [kRowTile] running sum
  float* acc = l + kRowTile;               // [kRowTile, dv]
  float* bias = acc + kRowTile * dv;       // [kKeyTile]

  for (std::int64_t r0 = 0; r0 < t.rows; r0 += kRowTile) {
    const std::int64_t nr = std::min(kRowTile, t.rows - r0);
    for (std::int64_t r = 0; r < nr; ++r) {
      const std::int64_t qr = t.q_index ? t.q_index[r0 + r] : r0 + r;
      load_row(t.dtype, t.q, t.q_row_stride, qr, d, t.scale, qbuf + r * d);
      m[r] = kNegInf;
      l[r] = 0.0f;
      std::fill(acc + r * dv, acc + (r + 1) * dv, 0.0f);
    }
    // Keys past the last row's diagonal are masked for every row of the tile.
    // With row windows, also past every row's window limit (window_key_limit).
    std::int64_t key_end = std::clamp<std::int64_t>(r0 + nr - 1 + t.causal_diagonal + 1, 0, t.keys);
    if (t.row_window != nullptr) {
      std::int64_t end = 0;
      for (std::int64_t r = 0; r < nr; ++r)
        end = std::max(end, std::min(std::clamp<std::int64_t>(r0 + r + t.causal_diagonal + 1, 0, t.keys),
                                     window_key_limit(t, r0 + r)));
      key_end = end;
    }
    for (std::int64_t c0 = 0; c0 < key_end; c0 += kKeyTile) {
      const std::int64_t nc = std::min(kKeyTile, key_end - c0);
      for (std::int64_t c = 0; c < nc; ++c) {
        const std::int64_t kr = t.k_index ? t.k_index[c0 + c] : c0 + c;
        load_row(t.dtype, t.k, t.k_row_stride, kr, d, 1.0f, kbuf + c * d);
        load_row(t.dtype, t.v, t.v_row_stride, kr, dv, 1.0f, vbuf + c * dv);
        bias[c] = t.key_bias ? t.key_bias[c0 + c] : 0.0f;
      }
      for (std::int64_t r = 0; r < nr; ++r) {
        float* sr = s + r * kKeyTile;
        const float* qr = qbuf + r * d;
        const std::int64_t visible = std::clamp<std::int64_t>(
            std::min(r0 + r + t.causal_diagonal + 1, window_key_limit(t, r0 + r)) - c0, 0, nc);
        const bool windowed = has_window(t, r0 + r);
        float tile_max = kNegInf;
        bool nan = false;  // std::max drops NaN: track it so a NaN input row gives NaN, not "no key"
        for (std::int64_t c = 0; c < visible; ++c) {
          if (windowed && !window_visible(t, r0 + r, c0 + c, t.k_index ? t.k_index[c0 + c] : c0 + c)) {
            sr[c] = kNegInf;  // masked by the row's window: weight 0
            continue;
          }
          const float* kc = kbuf + c * d;
          float dot = 0.0f;
          for (int x = 0; x < d; ++x) dot += qr[x] * kc[x];
          sr[c] = dot + bias[c];
          tile_max = std::max(tile_max, sr[c]);
          nan |= sr[c] != sr[c];
        }
        if (nan) tile_max = std::numeric_limits<float>::quiet_NaN();
        if (visible == 0 || tile_max == kNegInf) continue;
        const float m_new = sticky_max(m[r], tile_max);  // NaN is sticky (attention_kernel.hpp)
        const float correction = std::exp(m[r] - m_new);  // exp(-inf) = 0 on the first tile
        float* ar = acc + r * dv;
        for (int x = 0; x < dv; ++x) ar[x] *= correction;
        float sum = 0.0f;
        for (std::int64_t c = 0; c < visible; ++c) {
          if (sr[c] == kNegInf) continue;  // masked by the row's window, or bias -inf: left out, v unread
          const float p = std::exp(sr[c] - m_new);
          sum += p;
          const float* vc = vbuf + c * dv;
          for (int x = 0; x < dv; ++x) ar[x] += p * vc[x];
        }
        l[r] = l[r] * correction + sum;
        m[r] = m_new;
      }
    }
    for (std::int64_t r = 0; r < nr; ++r) {
      const std::int64_t orow = t.out_index ? t.out_index[r0 + r] : r0 + r;
      // The row's result (in place in acc with merge, else straight into out) and its lse.
      float* ar = acc + r * dv;
      float* o = t.merge ? ar : t.out + orow * t.out_row_stride;
      float row_lse;
      if (!degenerate_row_end(l[r], o, dv, &row_lse)) {  // NaN propagates, no visible key: the empty set
        const float inv = 1.0f / l[r];
        for (int x = 0; x < dv; ++x) o[x] = ar[x] * inv;
        row_lse = m[r] + std::log(l[r]);
      }
      if (t.merge) merge_row(t.out + orow * t.out_row_stride, t.lse + orow, ar, row_lse, dv, combine_rows_scalar);
      else if (t.lse) t.lse[orow] = row_lse;
    }
  }
}

}  // namespace

#define HYPERATTN_BWD_W 4
#define HYPERATTN_BWD_RB 2
#define HYPERATTN_BWD_STRICT 1
#include "cpu/isa/backward_impl.hpp"  // backward(), backward_scratch_floats()
#undef HYPERATTN_BWD_W
#undef HYPERATTN_BWD_RB
#undef HYPERATTN_BWD_STRICT

extern const AttentionKernel kKernel;
const AttentionKernel kKernel{"scalar", &dense, &scratch_floats, nullptr, &backward, &backward_scratch_floats};

}  // namespace hyperattn::cpu::scalar
