// src/model/parallel.hpp: the runner's thread control. BLAS calls and the library's attention calls
// never overlap, so each gets the whole --threads count in turn; the runner's own element-wise
// passes (norms, RoPE, SwiGLU, log-softmax) split rows over the same number of std::threads.
#pragma once

#include <cstdint>
#include <functional>

namespace hyperattn::model {

// Sets the number of threads OpenBLAS uses for the following GEMMs (>= 1).
void set_blas_threads(int threads);

// Calls fn(begin, end) on `threads` contiguous slices of [0, n) in parallel (the calling thread
// takes the first slice). Slices are never empty; with threads <= 1 or tiny n it runs inline.
void parallel_rows(int threads, std::int64_t n, const std::function<void(std::int64_t, std::int64_t)>& fn);

// Resolves a --threads request: 0 or negative means every hardware thread.
int resolve_threads(int requested);

}  // namespace hyperattn::model
