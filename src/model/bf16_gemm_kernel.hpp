// src/model/bf16_gemm_kernel.hpp: the AVX512-BF16 kernel behind gemm_bf16 (internal).
#pragma once

#include <cstdint>

namespace hyperattn::model::detail {

// Panel layout shared by the packer (bf16_gemm.cpp) and the kernel: output columns in panels of 64;
// panel p holds W rows [64p, 64p + 64) as [k2 / 2][64][2] bf16 (k2 = k rounded up to even), pairs
// (k, k + 1) adjacent, zero where the row or column is past the matrix.
constexpr std::int64_t kBf16PanelCols = 64;

// c rows [row_begin, row_end) of c [rows, n] (+)= bf16(a) [rows, k] . W^T from the packed panels.
void gemm_bf16_avx512_rows(const float* a, std::int64_t lda, std::int64_t row_begin, std::int64_t row_end,
                           const std::uint16_t* panels, std::int64_t n, std::int64_t k, float* c, std::int64_t ldc,
                           bool accumulate);

}  // namespace hyperattn::model::detail
