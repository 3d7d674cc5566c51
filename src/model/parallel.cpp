// src/model/parallel.cpp: see parallel.hpp.
#include "model/parallel.hpp"

#include <cblas.h>

#include <algorithm>
#include <thread>
#include <vector>

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

int resolve_threads(int requested) {
  if (requested > 0) return requested;
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

void parallel_rows(int threads, std::int64_t n, const std::function<void(std::int64_t, std::int64_t)>& fn) {
  if (n <= 0) return;
  const std::int64_t parts = std::min<std::int64_t>(std::max(1, threads), n);
  if (parts <= 1 || n < 16) {
    fn(0, n);
    return;
  }
  std::vector<std::thread> workers;
  workers.reserve(static_cast<std::size_t>(parts - 1));
  const auto slice_begin = [&](std::int64_t p) { return n * p / parts; };
  for (std::int64_t p = 1; p < parts; ++p) {
    workers.emplace_back([&fn, b = slice_begin(p), e = slice_begin(p + 1)] { fn(b, e); });
  }
  fn(0, slice_begin(1));
  for (auto& w : workers) w.join();
}

}  // namespace hyperattn::model
