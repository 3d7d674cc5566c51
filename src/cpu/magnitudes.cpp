// src/cpu/magnitudes.cpp: see magnitudes.hpp.
#include "cpu/magnitudes.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include <fmt/format.h>

#include "core/bfloat16.hpp"
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

// Per (batch, head): the largest finite |element| (NaN and Inf skipped), as fp32, and whether a
// NaN or an Inf was there. One pass over the bits: |x| is the bit pattern without its sign, and for
// finite values the integer order of those patterns is the order of the magnitudes, so the loop is
// integer max (vectorized); a pattern at or above the infinity's is NaN or Inf.
struct HeadMax {
  float value = 0.0f;
  bool nonfinite = false;
};

template <typename T>
HeadMax max_abs_head(const TensorView& t, std::int64_t b, std::int64_t h) {
  constexpr bool kF32 = sizeof(T) == 4;
  constexpr T kMagnitude = static_cast<T>(kF32 ? 0x7fffffffu : 0x7fffu);
  constexpr T kInfinity = static_cast<T>(kF32 ? 0x7f800000u : 0x7f80u);
  const T* base = static_cast<const T*>(t.data) + b * t.stride[0] + h * t.stride[1];
  T best = 0, worst = 0;  // worst: the largest pattern, finite or not
  for (std::int64_t i = 0; i < t.shape[2]; ++i) {
    const T* row = base + i * t.stride[2];
    T m = 0, any = 0;
    for (std::int64_t c = 0; c < t.shape[3]; ++c) {
      const T a = static_cast<T>(row[c] & kMagnitude);
      const T finite = a < kInfinity ? a : T{0};
      m = finite > m ? finite : m;
      any = a > any ? a : any;
    }
    best = m > best ? m : best;
    worst = any > worst ? any : worst;
  }
  HeadMax r;
  r.nonfinite = worst >= kInfinity;
  if constexpr (kF32) {
    std::memcpy(&r.value, &best, sizeof r.value);
  } else {
    r.value = bf16_bits_to_f32(best);
  }
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
  std::vector<float> head_max(static_cast<std::size_t>(nq + 2 * nk));
  std::vector<char> head_nonfinite(static_cast<std::size_t>(nq + 2 * nk), 0);
  cpu::parallel_for(nq + 2 * nk, cpu::resolve_threads(c.threads), [&](std::int64_t item, int) {
    const TensorView& t = item < nq ? a.q : item < nq + nk ? a.k : a.v;
    const std::int64_t bh = item < nq ? item : (item - nq) % nk;
    const HeadMax m = max_abs(t, bh / t.shape[1], bh % t.shape[1]);
    head_max[static_cast<std::size_t>(item)] = m.value;
    head_nonfinite[static_cast<std::size_t>(item)] = m.nonfinite ? 1 : 0;
  });
  if (nonfinite != nullptr) {
    const auto any = [&](std::int64_t from, std::int64_t to) {
      return std::any_of(head_nonfinite.begin() + from, head_nonfinite.begin() + to, [](char x) { return x != 0; });
    };
    *nonfinite = {any(0, nq), any(nq, nq + nk), any(nq + nk, nq + 2 * nk)};
  }
  std::vector<RowMax> k_exact(static_cast<std::size_t>(nk));  // computed on demand (row == -1: not yet)
  for (std::int64_t b = 0; b < a.q.batch(); ++b)
    for (std::int64_t h = 0; h < a.q.heads(); ++h) {
      const std::size_t kh = static_cast<std::size_t>(b * a.k.heads() + h / group);
      const double q_loose = root_d * head_max[static_cast<std::size_t>(b * a.q.heads() + h)];
      const double k_loose = root_d * head_max[static_cast<std::size_t>(nq) + kh];
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
      const float mv = head_max[static_cast<std::size_t>(nq + nk + b * a.v.heads() + h)];
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
