// src/model/bf16_gemm.hpp: the runner's matrix products in bf16 with fp32 accumulation, for
// `--matmul bf16`: C [rows, n] (+)= bf16(A) [rows, k] . bf16(W)^T, W [n, k] (the Hugging Face
// [out_features, in_features] layout).
//
// Both operands are rounded to bf16 (round to nearest even; fp32 subnormals become signed zeros;
// NaN stays NaN, quiet), the products of two bf16 numbers are exact in fp32, and the sums are fp32.
// So the only error beyond fp32 accumulation is the rounding of each operand, relative 2^-8 at most
// (8 significant bits): |C - A.W^T| <= 2^-8 (2 + 2^-8) sum_k |a_k w_k| + fp32 summation error. For a
// bf16 checkpoint the weights are bf16 already and only the activations are rounded.
//
// Two paths compute the same mathematical result (they may differ in the order of the fp32 sums):
//  - kernel: AVX512-BF16 (`vdpbf16ps`), the weights packed once into panels of 64 output columns
//    ([ceil(k/2)][64][2] bf16 each), activations converted to bf16 a block of rows at a time, 6 x 64
//    register tiles; rows split over threads. Twice the fp32 FMA rate of the same instructions.
//  - fallback, where the CPU lacks AVX512-BF16: the activations rounded to bf16 values in fp32 and
//    sgemm_rows (parallel.hpp) against the weights rounded the same way.
#pragma once

#include <bit>
#include <cstdint>
#include <vector>

namespace hyperattn::model {

// bf16 bits of x, as the AVX512-BF16 conversion rounds: to nearest even, subnormals to signed zero,
// NaN to a quiet NaN, overflow to infinity.
inline std::uint16_t bf16_round_bits(float x) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(x);
  if ((u & 0x7f800000u) == 0) return static_cast<std::uint16_t>((u >> 16) & 0x8000u);          // zero, subnormal
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x0040u);  // NaN
  return static_cast<std::uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

inline float bf16_bits_to_f32(std::uint16_t b) { return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16); }

// x rounded to the nearest bf16 value (bf16_round_bits), as an fp32 number.
inline float round_to_bf16(float x) { return bf16_bits_to_f32(bf16_round_bits(x)); }

enum class Bf16GemmPath : std::uint8_t {
  automatic,  // the kernel where the CPU has AVX512-BF16, else the fallback
  kernel,     // AVX512-BF16 (callers must check bf16_gemm_kernel_available())
  fallback,   // rounded operands and OpenBLAS sgemm
};

// True when this CPU runs the AVX512-BF16 kernel.
bool bf16_gemm_kernel_available();

// A weight matrix W [n, k] prepared for gemm_bf16.
struct Bf16Matrix {
  std::int64_t n = 0, k = 0;
  Bf16GemmPath path = Bf16GemmPath::fallback;  // resolved: kernel or fallback
  std::vector<std::uint16_t> panels;           // kernel: [ceil(n/64)][ceil(k/2)][64][2] bf16, zero-padded
  std::vector<float> rounded;                  // fallback: [n, k] the bf16 values in fp32
};

// Packs w [n, k] (row-major, rows contiguous) for `path` (automatic resolves here).
Bf16Matrix pack_bf16_matrix(const float* w, std::int64_t n, std::int64_t k,
                            Bf16GemmPath path = Bf16GemmPath::automatic);

// c [rows, w.n] (row stride ldc) = (accumulate ? c : 0) + bf16(a) [rows, w.k] (row stride lda) . bf16(W)^T,
// rows split over `threads` threads (both paths).
void gemm_bf16(const float* a, std::int64_t rows, std::int64_t lda, const Bf16Matrix& w, float* c, std::int64_t ldc,
               bool accumulate, int threads);

}  // namespace hyperattn::model
