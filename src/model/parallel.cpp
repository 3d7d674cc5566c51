// src/model/parallel.cpp: see parallel.hpp.
#include "model/parallel.hpp"

#include <cblas.h>

#include <algorithm>

#include "cpu/thread_pool.hpp"  // the library's one thread pool and thread-count rule

namespace hyperattn::model {

void set_blas_threads(int threads) { openblas_set_num_threads(std::max(1, threads)); }

void sgemm_rows(const float* a, std::int64_t rows, std::int64_t lda, const float* w, std::int64_t n, std::int64_t k,
                float* c, std::int64_t ldc, bool accumulate, int threads) {
  set_blas_threads(1);
  parallel_rows(threads, rows, [&](std::int64_t begin, std::int64_t end) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(end - begin), static_cast<int>(n),
                static_cast<int>(k), 1.0f, a + begin * lda, static_cast<int>(lda), w, static_cast<int>(k),
                accumulate ? 1.0f : 0.0f, c + begin * ldc, static_cast<int>(ldc));
  });
}

int resolve_threads(int requested) { return cpu::resolve_threads(requested); }

void parallel_rows(int threads, std::int64_t n, const std::function<void(std::int64_t, std::int64_t)>& fn) {
  if (n <= 0) return;
  const std::int64_t parts = std::min<std::int64_t>(std::max(1, threads), n);
  if (parts <= 1 || n < 16) {
    fn(0, n);
    return;
  }
  // One item per slice, so every slice is [n p / parts, n (p + 1) / parts) whichever thread runs it.
  cpu::parallel_for(parts, static_cast<int>(parts),
                    [&](std::int64_t p, int) { fn(n * p / parts, n * (p + 1) / parts); });
}

}  // namespace hyperattn::model
