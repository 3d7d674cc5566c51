// src/model/bf16_gemm.cpp: packing, dispatch and the fallback of gemm_bf16 (bf16_gemm.hpp).
#include "model/bf16_gemm.hpp"

#include "model/bf16_gemm_kernel.hpp"
#include "model/parallel.hpp"

namespace hyperattn::model {

bool bf16_gemm_kernel_available() {
#if defined(HYPERATTN_MODEL_BF16_KERNEL)
  static const bool available = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                                __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                                __builtin_cpu_supports("avx512bf16");
  return available;
#else
  return false;
#endif
}

Bf16Matrix pack_bf16_matrix(const float* w, std::int64_t n, std::int64_t k, Bf16GemmPath path) {
  Bf16Matrix m;
  m.n = n;
  m.k = k;
  // automatic and kernel pack for the kernel where it runs; never for a kernel we cannot run
  m.path = path != Bf16GemmPath::fallback && bf16_gemm_kernel_available() ? Bf16GemmPath::kernel
                                                                          : Bf16GemmPath::fallback;
  if (m.path == Bf16GemmPath::fallback) {
    m.rounded.resize(static_cast<std::size_t>(n * k));  // [n, k]
    for (std::int64_t i = 0; i < n * k; ++i) m.rounded[static_cast<std::size_t>(i)] = round_to_bf16(w[i]);
    return m;
  }
  constexpr std::int64_t cols = detail::kBf16PanelCols;
  const std::int64_t k2 = (k + 1) / 2 * 2, panels = (n + cols - 1) / cols;
  m.panels.assign(static_cast<std::size_t>(panels * k2 * cols), 0);  // [panels][k2 / 2][64][2]
  for (std::int64_t row = 0; row < n; ++row) {
    std::uint16_t* panel = m.panels.data() + (row / cols) * k2 * cols;
    const std::int64_t col = row % cols;
    for (std::int64_t i = 0; i < k; ++i) panel[(i / 2) * 2 * cols + col * 2 + i % 2] = bf16_round_bits(w[row * k + i]);
  }
  return m;
}

void gemm_bf16(const float* a, std::int64_t rows, std::int64_t lda, const Bf16Matrix& w, float* c, std::int64_t ldc,
               bool accumulate, int threads) {
  if (rows <= 0 || w.n <= 0) return;
#if defined(HYPERATTN_MODEL_BF16_KERNEL)
  if (w.path == Bf16GemmPath::kernel) {
    parallel_rows(threads, rows, [&](std::int64_t begin, std::int64_t end) {
      detail::gemm_bf16_avx512_rows(a, lda, begin, end, w.panels.data(), w.n, w.k, c, ldc, accumulate);
    });
    return;
  }
#endif
  std::vector<float> a_rounded(static_cast<std::size_t>(rows * w.k));  // [rows, k]
  parallel_rows(threads, rows, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t r = begin; r < end; ++r)
      for (std::int64_t i = 0; i < w.k; ++i) a_rounded[static_cast<std::size_t>(r * w.k + i)] = round_to_bf16(a[r * lda + i]);
  });
  sgemm_rows(a_rounded.data(), rows, w.k, w.rounded.data(), w.n, w.k, c, ldc, accumulate, threads);
}

}  // namespace hyperattn::model
