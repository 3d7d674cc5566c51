#include "core/lsh.hpp"

#include <algorithm>

#include "core/bfloat16.hpp"
#include "core/simd.hpp"

namespace hyperattn::lsh {

namespace {
// Lanes: the bits of one row are summed side by side (kLanes doubles, padded with zero
// projections), each bit in index order; a fixed lane count lets the compiler keep the sums in
// vector registers. The product of two fp32 numbers is exact in double, so fused or separate
// multiply-add round the same way: the bits do not depend on the instructions chosen.
template <int kLanes, typename Load>
std::uint32_t sign_bits_lanes(Load load, const float* proj, int head_dim, int lsh_bits) {
  double dot[kLanes] = {};
  double g[kLanes] = {};
  for (int c = 0; c < head_dim; ++c) {
    const double x = load(c);
    const float* row = proj + static_cast<std::ptrdiff_t>(c) * lsh_bits;
    for (int t = 0; t < lsh_bits; ++t) g[t] = static_cast<double>(row[t]);
    for (int t = 0; t < kLanes; ++t) dot[t] += x * g[t];
  }
  std::uint32_t bits = 0;
  for (int t = 0; t < lsh_bits; ++t) bits |= static_cast<std::uint32_t>(dot[t] > 0.0) << t;
  return bits;
}

template <typename Load>
std::uint32_t sign_bits(Load load, const float* proj, int head_dim, int lsh_bits) {
  return lsh_bits <= 8 ? sign_bits_lanes<8>(load, proj, head_dim, lsh_bits)
                       : sign_bits_lanes<16>(load, proj, head_dim, lsh_bits);
}
}  // namespace

std::uint32_t sign_bits_f32(const float* x, const float* proj, int head_dim, int lsh_bits) {
  return sign_bits([x](int c) { return static_cast<double>(x[c]); }, proj, head_dim, lsh_bits);
}

std::uint32_t sign_bits_bf16(const std::uint16_t* x, const float* proj, int head_dim, int lsh_bits) {
  return sign_bits([x](int c) { return static_cast<double>(bf16_bits_to_f32(x[c])); }, proj, head_dim,
                   lsh_bits);
}

std::vector<double> pad_projections(const float* proj, int head_dim, int lsh_bits) {
  const int lanes = lsh_bits <= 8 ? 8 : 16;
  std::vector<double> padded(static_cast<std::size_t>(head_dim) * lanes, 0.0);
  for (int c = 0; c < head_dim; ++c)
    for (int t = 0; t < lsh_bits; ++t) padded[static_cast<std::size_t>(c) * lanes + t] = proj[c * lsh_bits + t];
  return padded;
}

namespace {
// kRows rows side by side (independent sums hide the add latency), kLanes bits per row.
template <int kLanes, int kRows, typename Elem>
__attribute__((always_inline)) inline void sign_bits_block(const Elem* x, std::int64_t row_stride, const double* g,
                                                           int head_dim, int lsh_bits, std::uint32_t* bits) {
  double dot[kRows][kLanes] = {};
  for (int c = 0; c < head_dim; ++c) {
    const double* gc = g + static_cast<std::ptrdiff_t>(c) * kLanes;
    for (int r = 0; r < kRows; ++r) {
      double xv;
      if constexpr (sizeof(Elem) == 4) xv = static_cast<double>(x[r * row_stride + c]);
      else xv = static_cast<double>(bf16_bits_to_f32(x[r * row_stride + c]));
      for (int t = 0; t < kLanes; ++t) dot[r][t] += xv * gc[t];
    }
  }
  for (int r = 0; r < kRows; ++r) {
    std::uint32_t b = 0;
    for (int t = 0; t < lsh_bits; ++t) b |= static_cast<std::uint32_t>(dot[r][t] > 0.0) << t;
    bits[r] = b;
  }
}

template <int kLanes, typename Elem>
__attribute__((always_inline)) inline void sign_bits_all(const Elem* x, std::int64_t row_stride, std::int64_t rows,
                                                         const double* g, int head_dim, int lsh_bits, std::uint32_t* bits) {
  std::int64_t i = 0;
  for (; i + 4 <= rows; i += 4) sign_bits_block<kLanes, 4>(x + i * row_stride, row_stride, g, head_dim, lsh_bits, bits + i);
  for (; i < rows; ++i) sign_bits_block<kLanes, 1>(x + i * row_stride, row_stride, g, head_dim, lsh_bits, bits + i);
}

// The loop, then its AVX-512 and AVX2 copies (core/simd.hpp).
[[gnu::always_inline]] inline void sign_bits_rows_body(const void* x, bool bf16, std::int64_t row_stride, std::int64_t rows,
                                                       const double* padded_proj, int head_dim, int lsh_bits,
                                                       std::uint32_t* bits) {
  if (bf16) {
    const auto* xb = static_cast<const std::uint16_t*>(x);
    if (lsh_bits <= 8) sign_bits_all<8>(xb, row_stride, rows, padded_proj, head_dim, lsh_bits, bits);
    else sign_bits_all<16>(xb, row_stride, rows, padded_proj, head_dim, lsh_bits, bits);
  } else {
    const auto* xf = static_cast<const float*>(x);
    if (lsh_bits <= 8) sign_bits_all<8>(xf, row_stride, rows, padded_proj, head_dim, lsh_bits, bits);
    else sign_bits_all<16>(xf, row_stride, rows, padded_proj, head_dim, lsh_bits, bits);
  }
}
}  // namespace

HYPERATTN_SIMD_VARIANTS(void, sign_bits_rows_body,
                        (const void* x, bool bf16, std::int64_t row_stride, std::int64_t rows, const double* padded_proj,
                         int head_dim, int lsh_bits, std::uint32_t* bits),
                        (x, bf16, row_stride, rows, padded_proj, head_dim, lsh_bits, bits))

void sign_bits_rows(SimdLevel level, const void* x, bool bf16, std::int64_t row_stride, std::int64_t rows,
                    const double* padded_proj, int head_dim, int lsh_bits, std::uint32_t* bits) {
  HYPERATTN_SIMD_DISPATCH(level, sign_bits_rows_body, (x, bf16, row_stride, rows, padded_proj, head_dim, lsh_bits, bits));
}

void counting_sort(const std::uint32_t* bucket, std::int64_t n, int lsh_bits, std::int32_t base,
                   std::int32_t* perm, std::int64_t* counts) {
  const std::int64_t buckets = std::int64_t{1} << lsh_bits;
  std::fill(counts, counts + buckets + 1, 0);
  for (std::int64_t i = 0; i < n; ++i) ++counts[bucket[i] + 1];
  for (std::int64_t b = 0; b < buckets; ++b) counts[b + 1] += counts[b];
  for (std::int64_t i = 0; i < n; ++i) perm[counts[bucket[i]]++] = base + static_cast<std::int32_t>(i);
}

}  // namespace hyperattn::lsh
