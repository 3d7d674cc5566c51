// src/core/lsh.hpp: sortLSH (specification §2.1-2.2): sign bits of random projections, the bucket
// in Gray-rank order, and the stable counting sort by bucket.
#pragma once

#include <cstdint>
#include <vector>

#include "core/simd.hpp"
#include "hyperattn/config.hpp"
#include "hyperattn/tensor.hpp"

namespace hyperattn::lsh {

// Bit t of x is [<x, proj[:, t]> > 0]; proj is [head_dim, lsh_bits] fp32, bit 0 least significant.
// The dot product is summed in double in index order: each fp32 x fp32 product is exact in double,
// so the sign is the same on every IEEE machine (CPU and CUDA agree bit for bit).
std::uint32_t sign_bits_f32(const float* x, const float* proj, int head_dim, int lsh_bits);
std::uint32_t sign_bits_bf16(const std::uint16_t* x, const float* proj, int head_dim, int lsh_bits);

// The same bits for `rows` rows at once (the CPU executor's hashing pass): x rows of head_dim f32
// or bf16 values `row_stride` elements apart; `padded_proj` is proj widened to double and padded
// with zeros to [head_dim, 8] (lsh_bits <= 8) or [head_dim, 16]. Identical results to the per-row
// functions (same products, same summation order), vectorised, with copies for AVX-512 and AVX2
// (core/simd.hpp): `level` picks one (the executor passes cpu::simd_level(); the copy must be one
// the CPU supports).
std::vector<double> pad_projections(const float* proj, int head_dim, int lsh_bits);
void sign_bits_rows(SimdLevel level, const void* x, bool bf16, std::int64_t row_stride, std::int64_t rows,
                    const double* padded_proj, int head_dim, int lsh_bits, std::uint32_t* bits);

// Rank of a bit pattern in the reflected Gray sequence (inverse Gray map), so that adjacent
// buckets differ in exactly one bit.
constexpr std::uint32_t gray_rank(std::uint32_t g) {
  g ^= g >> 1;
  g ^= g >> 2;
  g ^= g >> 4;
  g ^= g >> 8;
  g ^= g >> 16;
  return g;
}
// The authors' order: gray(bits) = bits ^ (bits >> 1).
constexpr std::uint32_t gray_code(std::uint32_t bits) { return bits ^ (bits >> 1); }

constexpr std::uint32_t bucket_of(std::uint32_t sign_bits, BucketOrder order) {
  return order == BucketOrder::gray_rank ? gray_rank(sign_bits) : gray_code(sign_bits);
}

// Stable counting sort: perm[0..n) lists the positions 0..n-1 (offset by `base`) ordered by
// bucket[i], ties by position. `counts` is scratch of 2^lsh_bits + 1 entries.
void counting_sort(const std::uint32_t* bucket, std::int64_t n, int lsh_bits, std::int32_t base,
                   std::int32_t* perm, std::int64_t* counts);

}  // namespace hyperattn::lsh
