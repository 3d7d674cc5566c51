// src/cpu/magnitudes.cpp: see magnitudes.hpp.
#include "cpu/magnitudes.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include <fmt/format.h>

#include "core/bfloat16.hpp"
#include "core/simd.hpp"
#include "cpu/attention_kernel.hpp"  // simd_level(): the library's one SIMD choice (HYPERATTN_ISA)
#include "cpu/thread_pool.hpp"

namespace hyperattn::cpu {
namespace {

struct RowMax {
  double value = 0.0;  // the largest finite statistic
  std::int64_t row = -1, col = -1;
};

inline float load(const TensorView& t, std::int64_t offset) {
  return t.dtype == DType::f32 ? static_cast<const float*>(t.data)[offset]
                               : bf16_bits_to_f32(static_cast<const std::uint16_t*>(t.data)[offset]);
}

// The largest finite row norm of (b, h), summed in double (each square is exact): the slow path,
// taken only where the cheap bound from max |x| does not already clear the limit.
template <typename T>
RowMax max_norm_head_typed(const TensorView& t, std::int64_t b, std::int64_t h) {
  const std::int64_t d = t.shape[3];
  const T* base = static_cast<const T*>(t.data);
  RowMax m;
  {
    {
      for (std::int64_t i = 0; i < t.shape[2]; ++i) {
        const T* row = base + b * t.stride[0] + h * t.stride[1] + i * t.stride[2];
        double s = 0.0;
        for (std::int64_t c = 0; c < d; ++c) {
          double x;
          if constexpr (sizeof(T) == 4) {
            x = static_cast<double>(row[c]);
          } else {
            x = static_cast<double>(bf16_bits_to_f32(row[c]));
          }
          s += x * x;
        }
        if (s <= 1e300 && s > m.value) {  // false for NaN and Inf rows
          m.value = s;
          m.row = i;
        }
      }
    }
  }
  m.value = std::sqrt(m.value);
  return m;
}

RowMax max_norm_head(const TensorView& t, std::int64_t b, std::int64_t h) {
  return t.dtype == DType::f32 ? max_norm_head_typed<float>(t, b, h) : max_norm_head_typed<std::uint16_t>(t, b, h);
}

}  // namespace

// The scan of one head's rows (f32 values, or bf16 ones widened to the f32 they are, as unsigned
// integer bit patterns): the largest finite |x| as its f32 bit pattern without the sign, and a
// non-zero `nonfinite` if a NaN or an Inf is there. For finite values the integer order of those
// patterns is the order of the magnitudes, and a pattern at or above the infinity's is NaN or Inf,
// so the loop is integer max and or over lane blocks (one zmm, reduced once per head), which GCC
// vectorises. Compiled for AVX-512, AVX2 and the baseline (core/simd.hpp; SSE2 has no unsigned max).
// 8 heads x 4096 x 64, 2 threads, Zen 4 (bench_attention input_check/...): the whole check took
// 2.3 ms (f32 and bf16) with a per-row baseline loop and no NaN scan, 2.8 ms with it, and now 1.2 ms
// (f32) and 1.4 ms (bf16).
struct HeadScan {
  std::uint32_t finite_max;
  std::uint32_t nonfinite;
};

template <typename T>  // std::uint32_t (f32 bits) or std::uint16_t (bf16 bits)
[[gnu::always_inline]] static inline HeadScan scan_head(const T* base, std::int64_t rows, std::int64_t n, std::int64_t stride) {
  constexpr std::uint32_t kMagnitude = 0x7fffffffu, kInfinity = 0x7f800000u;
  constexpr std::int64_t kLanes = 16;
  std::uint32_t m[kLanes] = {}, bad[kLanes] = {};  // [kLanes] running max and or of elements c mod kLanes
  const auto add = [&](std::int64_t j, T x) {
    const std::uint32_t bits = sizeof(T) == 4 ? static_cast<std::uint32_t>(x) : static_cast<std::uint32_t>(x) << 16;
    const std::uint32_t a = bits & kMagnitude;
    const bool finite = a < kInfinity;
    const std::uint32_t f = finite ? a : 0u;
    m[j] = f > m[j] ? f : m[j];
    bad[j] |= finite ? 0u : 1u;
  };
  for (std::int64_t i = 0; i < rows; ++i) {
    const T* row = base + i * stride;
    std::int64_t c = 0;
    for (; c + kLanes <= n; c += kLanes)
      for (std::int64_t j = 0; j < kLanes; ++j) add(j, row[c + j]);
    for (; c < n; ++c) add(0, row[c]);
  }
  HeadScan r{0, 0};
  for (std::int64_t j = 0; j < kLanes; ++j) {
    r.finite_max = m[j] > r.finite_max ? m[j] : r.finite_max;
    r.nonfinite |= bad[j];
  }
  return r;
}
[[gnu::always_inline]] static inline HeadScan scan_head_f32_body(const std::uint32_t* base, std::int64_t rows, std::int64_t n,
                                                                std::int64_t stride) {
  return scan_head(base, rows, n, stride);
}
[[gnu::always_inline]] static inline HeadScan scan_head_bf16_body(const std::uint16_t* base, std::int64_t rows, std::int64_t n,
                                                                 std::int64_t stride) {
  return scan_head(base, rows, n, stride);
}
HYPERATTN_SIMD_VARIANTS(HeadScan, scan_head_f32_body, (const std::uint32_t* base, std::int64_t rows, std::int64_t n, std::int64_t stride),
                        (base, rows, n, stride))
HYPERATTN_SIMD_VARIANTS(HeadScan, scan_head_bf16_body, (const std::uint16_t* base, std::int64_t rows, std::int64_t n, std::int64_t stride),
                        (base, rows, n, stride))

namespace {

HeadScan scan_head_of(const std::uint32_t* base, std::int64_t rows, std::int64_t n, std::int64_t stride) {
  HYPERATTN_SIMD_DISPATCH(simd_level(), scan_head_f32_body, (base, rows, n, stride));
}
HeadScan scan_head_of(const std::uint16_t* base, std::int64_t rows, std::int64_t n, std::int64_t stride) {
  HYPERATTN_SIMD_DISPATCH(simd_level(), scan_head_bf16_body, (base, rows, n, stride));
}

// Per (batch, head): the largest finite |element| (NaN and Inf skipped), as fp32, and whether a
// NaN or an Inf was there.
struct HeadMax {
  float value = 0.0f;
  bool nonfinite = false;
};

template <typename T>
HeadMax max_abs_head(const TensorView& t, std::int64_t b, std::int64_t h) {
  const T* base = static_cast<const T*>(t.data) + b * t.stride[0] + h * t.stride[1];
  const HeadScan s = scan_head_of(base, t.shape[2], t.shape[3], t.stride[2]);
  HeadMax r;
  r.nonfinite = s.nonfinite != 0;
  std::memcpy(&r.value, &s.finite_max, sizeof r.value);  // bf16: the f32 it widens to, exactly
  return r;
}

HeadMax max_abs(const TensorView& t, std::int64_t b, std::int64_t h) {
  return t.dtype == DType::f32 ? max_abs_head<std::uint32_t>(t, b, h) : max_abs_head<std::uint16_t>(t, b, h);
}

// Where |v| is largest in (b, h) (for the message only).
void locate(const TensorView& t, std::int64_t b, std::int64_t h, float value, std::int64_t* row, std::int64_t* col) {
  for (std::int64_t i = 0; i < t.shape[2]; ++i)
    for (std::int64_t c = 0; c < t.shape[3]; ++c)
      if (std::fabs(load(t, b * t.stride[0] + h * t.stride[1] + i * t.stride[2] + c)) == value) {
        *row = i;
        *col = c;
        return;
      }
}

}  // namespace

Status check_magnitudes(const AttentionArgs& a, const AttentionConfig& c, NonFiniteInputs* nonfinite) {
  const double scale = c.scale > 0.0f ? static_cast<double>(c.scale) : 1.0 / std::sqrt(static_cast<double>(a.q.head_dim()));
  const double root_d = std::sqrt(static_cast<double>(a.q.head_dim()));
  const std::int64_t group = a.q.heads() / a.k.heads();
  // Fast path: ||x_i|| <= sqrt(d) * max |x| bounds every row norm; only heads where that bound
  // exceeds the limit get their exact row norms (inputs within ~1e17 never do). The max |x| of
  // every head of q, k and v in one parallel loop (the pass is memory-bound: one read of each).
  const std::int64_t nq = a.q.batch() * a.q.heads(), nk = a.k.batch() * a.k.heads();
  std::vector<HeadMax> head_max(static_cast<std::size_t>(nq + 2 * nk));  // [q heads, k heads, v heads]
  cpu::parallel_for(nq + 2 * nk, cpu::resolve_threads(c.threads), [&](std::int64_t item, int) {
    const TensorView& t = item < nq ? a.q : item < nq + nk ? a.k : a.v;
    const std::int64_t bh = item < nq ? item : (item - nq) % nk;
    head_max[static_cast<std::size_t>(item)] = max_abs(t, bh / t.shape[1], bh % t.shape[1]);
  });
  if (nonfinite != nullptr) {
    const auto heads = [&](std::int64_t from, std::int64_t to) {
      std::vector<char> flags(static_cast<std::size_t>(to - from));
      for (std::int64_t i = from; i < to; ++i) flags[static_cast<std::size_t>(i - from)] = head_max[static_cast<std::size_t>(i)].nonfinite ? 1 : 0;
      return flags;
    };
    *nonfinite = {heads(0, nq), heads(nq, nq + nk), heads(nq + nk, nq + 2 * nk)};
  }
  std::vector<RowMax> k_exact(static_cast<std::size_t>(nk));  // computed on demand (row == -1: not yet)
  for (std::int64_t b = 0; b < a.q.batch(); ++b)
    for (std::int64_t h = 0; h < a.q.heads(); ++h) {
      const std::size_t kh = static_cast<std::size_t>(b * a.k.heads() + h / group);
      const double q_loose = root_d * head_max[static_cast<std::size_t>(b * a.q.heads() + h)].value;
      const double k_loose = root_d * head_max[static_cast<std::size_t>(nq) + kh].value;
      if (std::max(scale, 1.0) * q_loose * std::max(k_loose, 1.0) <= kScoreBound) continue;
      const RowMax mq = max_norm_head(a.q, b, h);
      if (k_exact[kh].row < 0) k_exact[kh] = max_norm_head(a.k, b, h / group);
      const RowMax& mk = k_exact[kh];
      const double bound = std::max(scale, 1.0) * mq.value * std::max(mk.value, 1.0);
      if (bound > kScoreBound)
        return Status::InvalidArgument(fmt::format(
            "q, k: max(scale, 1) * max ||q_i|| * max ||k_j|| is {:.3g} in batch {}, query head {} (||q_{}|| = {:.3g}, "
            "||k_{}|| = {:.3g} in kv head {}, scale {:.3g}); expected at most 2^127 = {:.3g}, beyond which fp32 scores "
            "overflow (the output would be NaN): scale q or k down",
            bound, b, h, mq.row, mq.value, mk.row, mk.value, h / group, scale, kScoreBound));
    }
  const double keys = static_cast<double>(a.v.seq());
  for (std::int64_t b = 0; b < a.v.batch(); ++b)
    for (std::int64_t h = 0; h < a.v.heads(); ++h) {
      const float mv = head_max[static_cast<std::size_t>(nq + nk + b * a.v.heads() + h)].value;
      if (static_cast<double>(mv) * keys > kValueSumBound) {
        std::int64_t row = -1, col = -1;
        locate(a.v, b, h, mv, &row, &col);
        return Status::InvalidArgument(fmt::format(
            "v: max |v| is {:.3g} (batch {}, head {}, seq {}, dim {}) with seq_kv {}; expected |v| at most 2^126 / seq_kv "
            "= {:.3g}, beyond which the fp32 weighted sums can overflow (the output would be Inf or NaN): scale v down "
            "(attention is linear in v)",
            static_cast<double>(mv), b, h, row, col, a.v.seq(), kValueSumBound / keys));
      }
    }
  return Status::Ok();
}

}  // namespace hyperattn::cpu
