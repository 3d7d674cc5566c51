// src/model/parallel.hpp: the runner's thread control. Matrix products, the library's attention calls
// and the runner's own element-wise passes (norms, RoPE, SwiGLU, log-softmax) never overlap; each
// splits its rows over the whole --threads count in turn (the products as one single-threaded
// OpenBLAS call per slice, sgemm_rows).
#pragma once

#include <cstdint>
#include <functional>

namespace hyperattn::model {

// Sets the number of threads OpenBLAS uses for the following GEMMs (>= 1).
void set_blas_threads(int threads);

// Calls fn(begin, end) on `threads` contiguous slices of [0, n) in parallel, on the library's
// thread pool (cpu::parallel_for, one item per slice). Slices are never empty; with threads <= 1 or
// tiny n it runs inline.
void parallel_rows(int threads, std::int64_t n, const std::function<void(std::int64_t, std::int64_t)>& fn);

// c [rows, n] (+)= a [rows, k] (row stride lda) . w^T, w [n, k] with contiguous rows, in fp32: rows
// split over `threads`, one single-threaded OpenBLAS sgemm per slice. For the model's shapes
// OpenBLAS's own threading scaled only 1.5-1.75x on 2 cores, and its workers spin after each call,
// slowing the attention that follows (docs/model.md); every row's sums are those of a
// single-threaded call, whatever the thread count.
void sgemm_rows(const float* a, std::int64_t rows, std::int64_t lda, const float* w, std::int64_t n, std::int64_t k,
                float* c, std::int64_t ldc, bool accumulate, int threads);

// Resolves a --threads request: 0 or negative means every hardware thread; the library's rule
// (cpu::resolve_threads: at most 4x the cores).
int resolve_threads(int requested);

}  // namespace hyperattn::model
