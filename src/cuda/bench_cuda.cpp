// src/cuda/bench_cuda.cpp: see bench_cuda.hpp.
#include "cuda/bench_cuda.hpp"

#include <cuda_runtime.h>

#include <algorithm>

#include <fmt/format.h>

#include "cuda/kernels/kernels.hpp"
#include "hyperattn/cuda.hpp"

namespace hyperattn {
namespace {

Status check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return Status::Ok();
  if (e == cudaErrorMemoryAllocation) return Status::OutOfMemory(fmt::format("{}: {}", what, cudaGetErrorString(e)));
  return Status::Internal(fmt::format("{}: {}", what, cudaGetErrorString(e)));
}

// Device buffers freed on scope exit.
struct DeviceBuffer {
  void* ptr = nullptr;
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    if (ptr != nullptr) cudaFree(ptr);
  }
  Status allocate(std::size_t bytes) {
    return check(cudaMalloc(&ptr, std::max<std::size_t>(bytes, 256)), "cudaMalloc");
  }
};

struct Events {
  cudaEvent_t start = nullptr, stop = nullptr;
  ~Events() {
    if (start) cudaEventDestroy(start);
    if (stop) cudaEventDestroy(stop);
  }
};

Status bench_case(const CudaBenchSpec& spec, std::int64_t d, std::int64_t n, bool causal, bool hyper,
                  cudaStream_t stream, CudaBenchResult* r) {
  const std::size_t es = size_of(spec.dtype);
  const std::int64_t q_elems = spec.batch * spec.heads_q * n * d, kv_elems = spec.batch * spec.heads_kv * n * d;
  DeviceBuffer q, k, v, out, lse, ws;
  HYPERATTN_RETURN_IF_ERROR(q.allocate(static_cast<std::size_t>(q_elems) * es));
  HYPERATTN_RETURN_IF_ERROR(k.allocate(static_cast<std::size_t>(kv_elems) * es));
  HYPERATTN_RETURN_IF_ERROR(v.allocate(static_cast<std::size_t>(kv_elems) * es));
  HYPERATTN_RETURN_IF_ERROR(out.allocate(static_cast<std::size_t>(q_elems) * es));
  HYPERATTN_RETURN_IF_ERROR(lse.allocate(static_cast<std::size_t>(spec.batch * spec.heads_q * n) * sizeof(float)));
  HYPERATTN_RETURN_IF_ERROR(check(static_cast<cudaError_t>(cuda::launch_fill_normal(spec.dtype, q.ptr, q_elems, spec.data_seed, 1.0f, stream)), "fill"));
  HYPERATTN_RETURN_IF_ERROR(check(static_cast<cudaError_t>(cuda::launch_fill_normal(spec.dtype, k.ptr, kv_elems, spec.data_seed + 1, 1.0f, stream)), "fill"));
  HYPERATTN_RETURN_IF_ERROR(check(static_cast<cudaError_t>(cuda::launch_fill_normal(spec.dtype, v.ptr, kv_elems, spec.data_seed + 2, 1.0f, stream)), "fill"));
  AttentionArgs args;
  args.q = TensorView::bhsd(q.ptr, spec.dtype, spec.batch, spec.heads_q, n, d);  // [batch, heads_q, seq, head_dim]
  args.k = TensorView::bhsd(k.ptr, spec.dtype, spec.batch, spec.heads_kv, n, d);
  args.v = TensorView::bhsd(v.ptr, spec.dtype, spec.batch, spec.heads_kv, n, d);
  args.out = TensorView::bhsd(out.ptr, spec.dtype, spec.batch, spec.heads_q, n, d);
  args.lse = LseView::contiguous(static_cast<float*>(lse.ptr), spec.heads_q, n);
  AttentionConfig config = spec.config;
  config.causal = causal;
  std::size_t bytes = 0;
  HYPERATTN_RETURN_IF_ERROR(cuda_workspace_size(args, config, hyper, &bytes));
  HYPERATTN_RETURN_IF_ERROR(ws.allocate(bytes));
  auto call = [&]() {
    return hyper ? cuda_hyper_attention(args, config, {}, ws.ptr, bytes, stream)
                 : cuda_exact_attention(args, config, ws.ptr, bytes, stream);
  };
  for (int i = 0; i < spec.warmup; ++i) HYPERATTN_RETURN_IF_ERROR(call());
  HYPERATTN_RETURN_IF_ERROR(check(cudaStreamSynchronize(stream), "warm-up"));
  Events ev;
  HYPERATTN_RETURN_IF_ERROR(check(cudaEventCreate(&ev.start), "cudaEventCreate"));
  HYPERATTN_RETURN_IF_ERROR(check(cudaEventCreate(&ev.stop), "cudaEventCreate"));
  std::vector<double> ms;
  for (int i = 0; i < std::max(spec.repeats, 1); ++i) {
    HYPERATTN_RETURN_IF_ERROR(check(cudaEventRecord(ev.start, stream), "cudaEventRecord"));
    HYPERATTN_RETURN_IF_ERROR(call());
    HYPERATTN_RETURN_IF_ERROR(check(cudaEventRecord(ev.stop, stream), "cudaEventRecord"));
    HYPERATTN_RETURN_IF_ERROR(check(cudaEventSynchronize(ev.stop), "the timed call"));
    float t = 0.0f;
    HYPERATTN_RETURN_IF_ERROR(check(cudaEventElapsedTime(&t, ev.start, ev.stop), "cudaEventElapsedTime"));
    ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  r->method = hyper ? "hyper" : "exact";
  r->head_dim = d;
  r->seq = n;
  r->causal = causal;
  r->median_ms = ms[ms.size() / 2];
  r->min_ms = ms.front();
  const double flops = 4.0 * static_cast<double>(spec.batch * spec.heads_q) * static_cast<double>(n) *
                       static_cast<double>(n) * static_cast<double>(d) * (causal ? 0.5 : 1.0);
  r->exact_equivalent_tflops = flops / (r->median_ms * 1e-3) / 1e12;
  r->workspace_bytes = bytes;
  return Status::Ok();
}

}  // namespace

Status cuda_bench(const CudaBenchSpec& spec, std::vector<CudaBenchResult>* results) {
  if (results == nullptr) return Status::InvalidArgument("results: null; expected a vector to fill");
  if (!cuda_device_available()) return Status::Unsupported("no CUDA device is present");
  cudaStream_t stream = nullptr;
  HYPERATTN_RETURN_IF_ERROR(check(cudaStreamCreate(&stream), "cudaStreamCreate"));
  Status status;
  for (std::int64_t d : spec.head_dims)
    for (std::int64_t n : spec.seqs)
      for (bool causal : spec.causal)
        for (int method = 0; method < 2 && status.ok(); ++method) {
          const bool hyper = method == 1;
          if ((hyper && !spec.hyper) || (!hyper && (!spec.exact || n > spec.exact_max_seq))) continue;
          CudaBenchResult r;
          status = bench_case(spec, d, n, causal, hyper, stream, &r);
          if (status.ok()) results->push_back(r);
        }
  cudaStreamDestroy(stream);
  return status;
}

}  // namespace hyperattn
