#include "core/lsh.hpp"

#include <algorithm>

#include "core/bfloat16.hpp"

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

void counting_sort(const std::uint32_t* bucket, std::int64_t n, int lsh_bits, std::int32_t base,
                   std::int32_t* perm, std::int64_t* counts) {
  const std::int64_t buckets = std::int64_t{1} << lsh_bits;
  std::fill(counts, counts + buckets + 1, 0);
  for (std::int64_t i = 0; i < n; ++i) ++counts[bucket[i] + 1];
  for (std::int64_t b = 0; b < buckets; ++b) counts[b + 1] += counts[b];
  for (std::int64_t i = 0; i < n; ++i) perm[counts[bucket[i]]++] = base + static_cast<std::int32_t>(i);
}

}  // namespace hyperattn::lsh
