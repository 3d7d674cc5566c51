// src/model/bf16_gemm_avx512.cpp: the AVX512-BF16 kernel of gemm_bf16 (bf16_gemm.hpp). Compiled for
// AVX-512 + BF16 by the pragma below and only called where bf16_gemm_kernel_available() says so.
//
// Per thread, per block of kRowBlock rows: the rows of A are converted to bf16 ([rows][k2] with k2 =
// k rounded up to even, so that each 32-bit word is one (k, k+1) pair), then for each packed panel of
// 64 output columns ([k2/2][64][2], bf16_gemm.cpp) a 6 x 64 register tile (24 zmm accumulators)
// walks k two at a time: 4 panel loads, 6 broadcasts of an A pair, 24 `vdpbf16ps`. The panel
// (k2 * 128 bytes: 48 KiB at k = 384, 128 KiB at k = 1024) stays in L2 across the block's 16 tiles.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "model/bf16_gemm_kernel.hpp"

#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")

namespace hyperattn::model::detail {
namespace {

constexpr std::int64_t kPanelCols = kBf16PanelCols;  // 4 zmm
constexpr int kTileRows = 6;             // rows per register tile
constexpr std::int64_t kRowBlock = 96;   // rows of A converted at once (16 tiles)

// a_bf16 [rows][k2] (k2 even) <- bf16(a [rows][k], row stride lda), zero-padded from k to k2.
void convert_rows(const float* a, std::int64_t lda, std::int64_t rows, std::int64_t k, std::int64_t k2,
                  std::uint16_t* a_bf16) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* src = a + r * lda;       // [k]
    std::uint16_t* dst = a_bf16 + r * k2;  // [k2]
    for (std::int64_t c = 0; c < k2; c += 32) {
      const std::int64_t left = k - c;  // may be <= 0 in the padding word
      const auto lo_mask = static_cast<__mmask16>(left >= 16 ? 0xffff : left <= 0 ? 0 : (1u << left) - 1);
      const auto hi_mask =
          static_cast<__mmask16>(left >= 32 ? 0xffff : left <= 16 ? 0 : (1u << (left - 16)) - 1);
      const __m512 lo = _mm512_maskz_loadu_ps(lo_mask, src + c);
      const __m512 hi = _mm512_maskz_loadu_ps(hi_mask, src + c + 16);
      const __m512i packed = reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo));  // [32] bf16, lo first
      const std::int64_t store = std::min<std::int64_t>(32, k2 - c);
      _mm512_mask_storeu_epi16(dst + c, static_cast<__mmask32>(store >= 32 ? 0xffffffffu : (1u << store) - 1), packed);
    }
  }
}

// c [M rows, cols <= 64] (+)= a_bf16 [M][k2] . panel [k2/2][64][2].
template <int M>
void tile(const std::uint16_t* a_bf16, std::int64_t k2, const std::uint16_t* panel, float* c, std::int64_t ldc,
          bool accumulate, std::int64_t cols) {
  __m512 acc[M][4];
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < 4; ++j) acc[i][j] = _mm512_setzero_ps();
  for (std::int64_t p = 0; p < k2 / 2; ++p) {
    const std::uint16_t* b = panel + p * 2 * kPanelCols;  // [64][2]
    const auto b0 = reinterpret_cast<__m512bh>(_mm512_loadu_si512(b));
    const auto b1 = reinterpret_cast<__m512bh>(_mm512_loadu_si512(b + 32));
    const auto b2 = reinterpret_cast<__m512bh>(_mm512_loadu_si512(b + 64));
    const auto b3 = reinterpret_cast<__m512bh>(_mm512_loadu_si512(b + 96));
    for (int i = 0; i < M; ++i) {
      std::int32_t pair;  // (a[i][2p], a[i][2p + 1])
      std::memcpy(&pair, a_bf16 + i * k2 + 2 * p, sizeof pair);
      const auto av = reinterpret_cast<__m512bh>(_mm512_set1_epi32(pair));
      acc[i][0] = _mm512_dpbf16_ps(acc[i][0], av, b0);
      acc[i][1] = _mm512_dpbf16_ps(acc[i][1], av, b1);
      acc[i][2] = _mm512_dpbf16_ps(acc[i][2], av, b2);
      acc[i][3] = _mm512_dpbf16_ps(acc[i][3], av, b3);
    }
  }
  for (int i = 0; i < M; ++i) {
    for (int j = 0; j < 4; ++j) {
      const std::int64_t left = cols - 16 * j;
      if (left <= 0) break;
      const auto mask = static_cast<__mmask16>(left >= 16 ? 0xffff : (1u << left) - 1);
      float* out = c + i * ldc + 16 * j;  // [<= 16]
      __m512 v = acc[i][j];
      if (accumulate) v = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, out), v);
      _mm512_mask_storeu_ps(out, mask, v);
    }
  }
}

using TileFn = void (*)(const std::uint16_t*, std::int64_t, const std::uint16_t*, float*, std::int64_t, bool,
                        std::int64_t);
constexpr TileFn kTiles[kTileRows + 1] = {nullptr, tile<1>, tile<2>, tile<3>, tile<4>, tile<5>, tile<6>};

}  // namespace

void gemm_bf16_avx512_rows(const float* a, std::int64_t lda, std::int64_t row_begin, std::int64_t row_end,
                           const std::uint16_t* panels, std::int64_t n, std::int64_t k, float* c, std::int64_t ldc,
                           bool accumulate) {
  const std::int64_t k2 = (k + 1) / 2 * 2;
  thread_local std::vector<std::uint16_t> a_bf16;  // [kRowBlock][k2]
  if (a_bf16.size() < static_cast<std::size_t>(kRowBlock * k2)) a_bf16.resize(static_cast<std::size_t>(kRowBlock * k2));
  const std::int64_t panel_count = (n + kPanelCols - 1) / kPanelCols;
  for (std::int64_t r0 = row_begin; r0 < row_end; r0 += kRowBlock) {
    const std::int64_t rows = std::min(kRowBlock, row_end - r0);
    convert_rows(a + r0 * lda, lda, rows, k, k2, a_bf16.data());
    for (std::int64_t p = 0; p < panel_count; ++p) {
      const std::uint16_t* panel = panels + p * k2 * kPanelCols;  // [k2/2][64][2]
      const std::int64_t cols = std::min(kPanelCols, n - p * kPanelCols);
      for (std::int64_t i = 0; i < rows; i += kTileRows) {
        const auto m = static_cast<int>(std::min<std::int64_t>(kTileRows, rows - i));
        kTiles[m](a_bf16.data() + i * k2, k2, panel, c + (r0 + i) * ldc + p * kPanelCols, ldc, accumulate, cols);
      }
    }
  }
}

}  // namespace hyperattn::model::detail
