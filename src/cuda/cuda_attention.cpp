// src/cuda/cuda_attention.cpp: the public CUDA API (hyperattn/cuda.hpp): validation, the host
// plan (lowering.hpp), the workspace layout, and the launch sequence on the caller's stream:
//   upload the plan blob -> hash Q, K -> per phase: sort keys, CUB radix sorts, attention
//   -> finalize (multi-phase plans).
#include "hyperattn/cuda.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "core/plan.hpp"
#include "cuda/kernels/kernels.hpp"
#include "cuda/lowering.hpp"

namespace hyperattn {
namespace {

using cuda::AttentionParams;
using cuda::Lowered;

constexpr std::size_t kAlign = 256;

std::size_t align_up(std::size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

Status cuda_error(int code, const char* what) {
  if (code == 0) return Status::Ok();
  return Status::Internal(fmt::format("hyperattn cuda: {} failed: {} ({})", what,
                                      cudaGetErrorString(static_cast<cudaError_t>(code)), code));
}

#define HYPERATTN_CUDA_TRY(expr, what) HYPERATTN_RETURN_IF_ERROR(cuda_error(static_cast<int>(expr), what))

// The regions of one call's workspace (byte offsets; size 0 = unused).
struct Layout {
  std::size_t blob = 0, blob_bytes = 0;  // uploaded: projections, problems, tiles, ranges, samples
  std::size_t proj = 0, problems = 0, tiles = 0, ranges = 0, samples = 0;  // offsets inside the blob
  std::size_t q_bucket = 0, k_bucket = 0;
  std::size_t keys_in = 0, keys_out = 0, values_in = 0, q_perm = 0, k_perm = 0;
  std::size_t sort_temp = 0, sort_temp_bytes = 0;
  std::size_t acc_o = 0, acc_lse = 0;
  std::size_t total = 0;
};

struct Shapes {
  std::int64_t batch, heads_q, heads_kv, seq_q, seq_kv;
  int head_dim;
};

Shapes shapes_of(const AttentionArgs& a) {
  return {a.q.batch(), a.q.heads(), a.k.heads(), a.q.seq(), a.k.seq(), static_cast<int>(a.q.head_dim())};
}

// Validation: the CPU's checks (shapes, strides, config) with f16 accepted as well.
Status validate_cuda(const AttentionArgs& args, const AttentionConfig& config, bool hyper) {
  const DType dt = args.q.dtype;
  if (dt != DType::f32 && dt != DType::bf16 && dt != DType::f16)
    return Status::Unsupported(fmt::format("q: dtype {} is not supported by CUDA; expected f32, bf16 or f16", to_string(dt)));
  AttentionArgs as_cpu = args;  // validate() knows f32 and bf16; f16 has bf16's size
  if (dt == DType::f16) {
    for (TensorView* t : {&as_cpu.q, &as_cpu.k, &as_cpu.v, &as_cpu.out})
      if (t->dtype == DType::f16) t->dtype = DType::bf16;
      else return Status::InvalidArgument(fmt::format("k, v, out: dtype {} differs; expected the dtype of q (f16)", to_string(t->dtype)));
  }
  HYPERATTN_RETURN_IF_ERROR(validate(as_cpu, config));
  if (hyper && config.causal && config.local_window > 0)
    return Status::Unsupported(fmt::format(
        "config.local_window is {}; the CUDA backend implements local_window = 0 (use the CPU backend)", config.local_window));
  if (hyper && (config.sampling == Sampling::value_norm || config.sampling == Sampling::position_stratified))
    return Status::Unsupported(config.sampling == Sampling::value_norm
                                   ? "config.sampling is value_norm; the CUDA backend implements uniform and stratified"
                                   : "config.sampling is position_stratified; the CUDA backend implements uniform and stratified");
  const Shapes s = shapes_of(args);
  if (s.seq_q >= (std::int64_t{1} << 31) || s.seq_kv >= (std::int64_t{1} << 31))
    return Status::Unsupported(fmt::format("seq_q, seq_kv are {} and {}; expected below 2^31 on CUDA", s.seq_q, s.seq_kv));
  if (s.batch * s.heads_q > 65535)
    return Status::Unsupported(fmt::format("batch * heads_q is {}; expected at most 65535 on CUDA", s.batch * s.heads_q));
  return Status::Ok();
}

bool aligned16(const TensorView& t) {
  return reinterpret_cast<std::uintptr_t>(t.data) % 16 == 0 && t.stride[0] % 8 == 0 && t.stride[1] % 8 == 0 &&
         t.stride[2] % 8 == 0;
}

// HYPERATTN_CUDA_KERNEL=simple forces the CUDA-core kernel, =mma_pipelined picks the pipelined
// tensor-core kernel where the tensor cores apply (tests, comparisons).
cuda::KernelKind choose_kernel(const AttentionArgs& args) {
  const char* env = std::getenv("HYPERATTN_CUDA_KERNEL");
  const std::string_view choice = env != nullptr ? env : "";
  if (choice == "simple") return cuda::KernelKind::simple;
  if (cuda::mma_supported(args.q.dtype, static_cast<int>(args.q.head_dim())) && aligned16(args.q) &&
      aligned16(args.k) && aligned16(args.v))
    return choice == "mma_pipelined" ? cuda::KernelKind::mma_pipelined : cuda::KernelKind::mma;
  return cuda::KernelKind::simple;
}

int end_bit_for(std::int64_t segments, int lsh_bits) {
  const auto s = static_cast<std::uint64_t>(std::max<std::int64_t>(segments, 1) - 1);
  return lsh_bits + static_cast<int>(std::bit_width(s));
}

Status make_layout(const AttentionArgs& args, const AttentionConfig& config, const Lowered& low, Layout* l) {
  const Shapes s = shapes_of(args);
  std::size_t off = 0;
  auto region = [&off](std::size_t bytes) {
    const std::size_t at = off;
    off += align_up(bytes);
    return at;
  };
  // The blob: offsets relative to its start.
  std::size_t blob = 0;
  auto blob_region = [&blob](std::size_t bytes) {
    const std::size_t at = blob;
    blob += align_up(bytes);
    return at;
  };
  std::size_t range_entries = 0;
  for (const auto& launch : low.launches) range_entries += launch.q_ranges.size() + launch.k_ranges.size();
  l->proj = blob_region(low.any_lsh ? static_cast<std::size_t>(s.batch * s.heads_kv * s.head_dim * config.lsh_bits) * sizeof(float) : 0);
  l->problems = blob_region(low.problems.size() * sizeof(cuda::Problem));
  l->tiles = blob_region(low.tiles.size() * sizeof(cuda::Tile));
  l->ranges = blob_region(range_entries * sizeof(std::int64_t));
  l->samples = blob_region(static_cast<std::size_t>(s.batch * s.heads_q * low.top_level_blocks * config.sample_size) * sizeof(std::int32_t));
  l->blob_bytes = blob;
  l->blob = region(blob);
  if (low.any_lsh) {
    l->q_bucket = region(static_cast<std::size_t>(s.batch * s.heads_q * s.seq_q) * sizeof(std::uint32_t));
    l->k_bucket = region(static_cast<std::size_t>(s.batch * s.heads_kv * s.seq_kv) * sizeof(std::uint32_t));
    const auto items = static_cast<std::size_t>(std::max(s.batch * s.heads_q * low.max_q_row_len, s.batch * s.heads_kv * low.max_k_row_len));
    l->keys_in = region(items * sizeof(std::uint64_t));
    l->keys_out = region(items * sizeof(std::uint64_t));
    l->values_in = region(items * sizeof(std::int32_t));
    l->q_perm = region(static_cast<std::size_t>(s.batch * s.heads_q * low.max_q_row_len) * sizeof(std::int32_t));
    l->k_perm = region(static_cast<std::size_t>(s.batch * s.heads_kv * low.max_k_row_len) * sizeof(std::int32_t));
    std::size_t temp = 0;
    HYPERATTN_CUDA_TRY(cuda::radix_sort_pairs(nullptr, &temp, nullptr, nullptr, nullptr, nullptr,
                                              static_cast<std::int64_t>(items), 64, nullptr),
                       "cub::DeviceRadixSort (workspace query)");
    l->sort_temp_bytes = temp;
    l->sort_temp = region(temp);
  }
  if (!low.direct) {
    l->acc_o = region(static_cast<std::size_t>(s.batch * s.heads_q * s.seq_q * s.head_dim) * sizeof(float));
    l->acc_lse = region(static_cast<std::size_t>(s.batch * s.heads_q * s.seq_q) * sizeof(float));
  }
  l->total = off;
  return Status::Ok();
}

template <typename T>
T* at(void* workspace, std::size_t offset) {
  return reinterpret_cast<T*>(static_cast<std::byte*>(workspace) + offset);
}

Status check_injected(const AttentionArgs& args, const AttentionConfig& config, const InjectedRandomness& inj,
                      const Lowered& low) {
  return core::check_injected(args, config, inj, low.top_level_blocks);
}

struct Prepared {
  Lowered low;
  Layout layout;
};

Status prepare(const AttentionArgs& args, const AttentionConfig& config, bool hyper, Prepared* p) {
  HYPERATTN_RETURN_IF_ERROR(validate_cuda(args, config, hyper));
  const std::int64_t n_q = args.q.seq(), n_k = args.k.seq();
  p->low = cuda::lower(hyper ? cuda::hyper_plan(n_q, n_k, config) : cuda::exact_plan(n_q, n_k, config), config);
  return make_layout(args, config, p->low, &p->layout);
}

Status check_workspace(const Layout& l, void* workspace, std::size_t bytes) {
  if (bytes < l.total)
    return Status::InvalidArgument(fmt::format("workspace_bytes is {}; expected at least {} (cuda_workspace_size)", bytes, l.total));
  if (l.total > 0 && workspace == nullptr)
    return Status::InvalidArgument(fmt::format("workspace: null; expected a device allocation of {} bytes", l.total));
  if (reinterpret_cast<std::uintptr_t>(workspace) % kAlign != 0)
    return Status::InvalidArgument(fmt::format("workspace: not {}-byte aligned; expected a cudaMalloc pointer", kAlign));
  return Status::Ok();
}

// Uploads the blob (projections, problems, tiles, ranges, injected samples).
Status upload_blob(const AttentionArgs& args, const AttentionConfig& config, const InjectedRandomness& injected,
                   const Prepared& p, void* workspace, cudaStream_t stream) {
  const Layout& l = p.layout;
  std::vector<std::byte> blob(l.blob_bytes);
  if (p.low.any_lsh) {
    const std::vector<float> proj = core::projections(args, config, injected);  // [batch, heads_kv, head_dim, lsh_bits]
    std::memcpy(blob.data() + l.proj, proj.data(), proj.size() * sizeof(float));
  }
  std::memcpy(blob.data() + l.problems, p.low.problems.data(), p.low.problems.size() * sizeof(cuda::Problem));
  std::memcpy(blob.data() + l.tiles, p.low.tiles.data(), p.low.tiles.size() * sizeof(cuda::Tile));
  std::size_t r = l.ranges;
  for (const auto& launch : p.low.launches)
    for (const auto* ranges : {&launch.q_ranges, &launch.k_ranges}) {
      std::memcpy(blob.data() + r, ranges->data(), ranges->size() * sizeof(std::int64_t));
      r += ranges->size() * sizeof(std::int64_t);
    }
  if (injected.samples != nullptr && p.low.top_level_blocks > 0) {
    const Shapes s = shapes_of(args);
    std::memcpy(blob.data() + l.samples, injected.samples,
                static_cast<std::size_t>(s.batch * s.heads_q * p.low.top_level_blocks * config.sample_size) * sizeof(std::int32_t));
  }
  if (blob.empty()) return Status::Ok();
  HYPERATTN_CUDA_TRY(cudaMemcpyAsync(at<std::byte>(workspace, l.blob), blob.data(), blob.size(), cudaMemcpyHostToDevice, stream),
                     "cudaMemcpyAsync (plan upload)");
  return Status::Ok();
}

Status hash_all(const AttentionArgs& args, const AttentionConfig& config, const Layout& l, void* ws, cudaStream_t stream) {
  const Shapes s = shapes_of(args);
  const TensorView* views[2] = {&args.q, &args.k};
  for (int which = 0; which < 2; ++which) {
    const TensorView& t = *views[which];
    cuda::HashParams hp;
    hp.x = t.data;
    for (int i = 0; i < 3; ++i) hp.stride[i] = t.stride[i];
    hp.batch = static_cast<int>(s.batch);
    hp.heads = static_cast<int>(t.heads());
    hp.group = which == 0 ? static_cast<int>(s.heads_q / s.heads_kv) : 1;
    hp.heads_kv = static_cast<int>(s.heads_kv);
    hp.head_dim = s.head_dim;
    hp.lsh_bits = config.lsh_bits;
    hp.seq = t.seq();
    hp.proj = at<float>(ws, l.blob + l.proj);
    hp.reference_gray = config.bucket_order == BucketOrder::reference_gray;
    hp.bucket = at<std::uint32_t>(ws, which == 0 ? l.q_bucket : l.k_bucket);
    HYPERATTN_CUDA_TRY(cuda::launch_hash(t.dtype, hp, stream), "hash kernel launch");
  }
  return Status::Ok();
}

// Sorts one phase's approximated ranges (queries into q_perm, keys into k_perm), stable by position.
Status sort_launch(const AttentionArgs& args, const AttentionConfig& config, const cuda::LaunchPlan& launch,
                   std::size_t ranges_offset, const Layout& l, void* ws, cudaStream_t stream) {
  const Shapes s = shapes_of(args);
  for (int which = 0; which < 2; ++which) {
    const bool is_q = which == 0;
    cuda::SortKeyParams sp;
    sp.bucket = at<std::uint32_t>(ws, is_q ? l.q_bucket : l.k_bucket);
    sp.seq = is_q ? s.seq_q : s.seq_kv;
    sp.ranges = at<std::int64_t>(ws, l.blob + ranges_offset + (is_q ? 0 : launch.q_ranges.size() * sizeof(std::int64_t)));
    sp.count = static_cast<int>(launch.lsh_problems);
    sp.row_len = is_q ? launch.q_row_len : launch.k_row_len;
    sp.heads_rows = static_cast<int>(s.batch * (is_q ? s.heads_q : s.heads_kv));
    sp.lsh_bits = config.lsh_bits;
    sp.key = at<std::uint64_t>(ws, l.keys_in);
    sp.value = at<std::int32_t>(ws, l.values_in);
    HYPERATTN_CUDA_TRY(cuda::launch_sort_keys(sp, stream), "sort key kernel launch");
    const std::int64_t items = sp.heads_rows * sp.row_len;
    const int end_bit = end_bit_for(sp.heads_rows * sp.count, config.lsh_bits);
    std::size_t temp = 0;  // this sort's scratch: the workspace was sized for the largest one
    HYPERATTN_CUDA_TRY(cuda::radix_sort_pairs(nullptr, &temp, nullptr, nullptr, nullptr, nullptr, items, end_bit, stream),
                       "cub::DeviceRadixSort (scratch query)");
    if (temp > l.sort_temp_bytes)
      return Status::Internal(fmt::format("hyperattn cuda: the radix sort needs {} scratch bytes, the workspace holds {}",
                                          temp, l.sort_temp_bytes));
    temp = l.sort_temp_bytes;
    HYPERATTN_CUDA_TRY(cuda::radix_sort_pairs(at<void>(ws, l.sort_temp), &temp, at<std::uint64_t>(ws, l.keys_in),
                                              at<std::uint64_t>(ws, l.keys_out), at<std::int32_t>(ws, l.values_in),
                                              at<std::int32_t>(ws, is_q ? l.q_perm : l.k_perm), items, end_bit, stream),
                       "cub::DeviceRadixSort::SortPairs");
  }
  return Status::Ok();
}

AttentionParams base_params(const AttentionArgs& args, const AttentionConfig& config, const Layout& l, bool direct,
                            void* ws) {
  const Shapes s = shapes_of(args);
  AttentionParams p;
  p.q = args.q.data;
  p.k = args.k.data;
  p.v = args.v.data;
  p.out = args.out.data;
  p.lse = args.lse.data;
  for (int i = 0; i < 3; ++i) {
    p.q_stride[i] = args.q.stride[i];
    p.k_stride[i] = args.k.stride[i];
    p.v_stride[i] = args.v.stride[i];
    p.out_stride[i] = args.out.stride[i];
    p.lse_stride[i] = args.lse.stride[i];
  }
  p.heads_q = static_cast<int>(s.heads_q);
  p.heads_kv = static_cast<int>(s.heads_kv);
  p.head_dim = s.head_dim;
  p.seq_q = s.seq_q;
  p.seq_kv = s.seq_kv;
  const float scale = config.scale > 0.0f ? config.scale : 1.0f / std::sqrt(static_cast<float>(s.head_dim));
  p.scale_log2 = scale * 1.4426950408889634f;
  p.block_size = config.block_size;
  p.sample_size = config.sample_size;
  p.seed = config.seed;
  p.stratified = config.sampling == Sampling::stratified;
  p.q_perm = at<std::int32_t>(ws, l.q_perm);
  p.k_perm = at<std::int32_t>(ws, l.k_perm);
  p.direct = direct ? 1 : 0;
  p.acc_o = direct ? nullptr : at<float>(ws, l.acc_o);
  p.acc_lse = direct ? nullptr : at<float>(ws, l.acc_lse);
  return p;
}

Status run(const AttentionArgs& args, const AttentionConfig& config, bool hyper, const InjectedRandomness& injected,
           void* ws, std::size_t ws_bytes, void* stream_ptr) {
  Prepared p;
  HYPERATTN_RETURN_IF_ERROR(prepare(args, config, hyper, &p));
  HYPERATTN_RETURN_IF_ERROR(check_workspace(p.layout, ws, ws_bytes));
  if (hyper) HYPERATTN_RETURN_IF_ERROR(check_injected(args, config, injected, p.low));
  const auto stream = static_cast<cudaStream_t>(stream_ptr);
  const Layout& l = p.layout;
  HYPERATTN_RETURN_IF_ERROR(upload_blob(args, config, injected, p, ws, stream));
  if (p.low.any_lsh) HYPERATTN_RETURN_IF_ERROR(hash_all(args, config, l, ws, stream));
  const Shapes s = shapes_of(args);
  const cuda::KernelKind kind = choose_kernel(args);
  AttentionParams ap = base_params(args, config, l, p.low.direct, ws);
  std::size_t ranges_offset = l.ranges;
  for (const cuda::LaunchPlan& launch : p.low.launches) {
    if (launch.lsh_problems > 0) HYPERATTN_RETURN_IF_ERROR(sort_launch(args, config, launch, ranges_offset, l, ws, stream));
    ranges_offset += (launch.q_ranges.size() + launch.k_ranges.size()) * sizeof(std::int64_t);
    if (launch.tile_count == 0) continue;
    ap.problems = at<cuda::Problem>(ws, l.blob + l.problems) + launch.problem_begin;
    ap.tiles = at<cuda::Tile>(ws, l.blob + l.tiles) + launch.tile_begin;
    ap.q_perm_stride = launch.q_row_len;
    ap.k_perm_stride = launch.k_row_len;
    ap.injected_samples = injected.samples != nullptr ? at<std::int32_t>(ws, l.blob + l.samples) : nullptr;
    ap.merge = launch.merge ? 1 : 0;
    const auto tiles = static_cast<int>(launch.tile_count);
    const auto heads = static_cast<int>(s.batch * s.heads_q);
    int rc = 0;
    switch (kind) {
      case cuda::KernelKind::mma: rc = cuda::launch_attention_mma(args.q.dtype, ap, tiles, heads, stream); break;
      case cuda::KernelKind::mma_pipelined:
        rc = cuda::launch_attention_mma_pipelined(args.q.dtype, ap, tiles, heads, stream);
        break;
      case cuda::KernelKind::simple: rc = cuda::launch_attention_simple(args.q.dtype, ap, tiles, heads, stream); break;
    }
    HYPERATTN_CUDA_TRY(rc, "attention kernel launch");
  }
  if (!p.low.direct) HYPERATTN_CUDA_TRY(cuda::launch_finalize(args.q.dtype, ap, static_cast<int>(s.batch), stream), "finalize kernel launch");
  return Status::Ok();
}

}  // namespace

bool cuda_device_available() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

Status cuda_workspace_size(const AttentionArgs& args, const AttentionConfig& config, bool hyper, std::size_t* bytes) {
  if (bytes == nullptr) return Status::InvalidArgument("bytes: null; expected a pointer to a size_t");
  Prepared p;
  HYPERATTN_RETURN_IF_ERROR(prepare(args, config, hyper, &p));
  *bytes = p.layout.total;
  return Status::Ok();
}

Status cuda_exact_attention(const AttentionArgs& args, const AttentionConfig& config, void* workspace,
                            std::size_t workspace_bytes, void* stream) {
  return run(args, config, false, {}, workspace, workspace_bytes, stream);
}

Status cuda_hyper_attention(const AttentionArgs& args, const AttentionConfig& config, const InjectedRandomness& injected,
                            void* workspace, std::size_t workspace_bytes, void* stream) {
  return run(args, config, true, injected, workspace, workspace_bytes, stream);
}

namespace {
// The plan of the diagnostics: one approximated part over everything (as core::sorted_blocks),
// whatever the size rule says.
Status prepare_lsh_blocks(const AttentionArgs& args, const AttentionConfig& c, Prepared* p) {
  HYPERATTN_RETURN_IF_ERROR(validate_cuda(args, c, true));
  const std::int64_t n_q = args.q.seq(), n_k = args.k.seq();
  core::Plan plan;
  plan.phases.push_back({{{0, n_q, 0, n_k, core::kNoCausalMask, true, 0, core::sinks_of(0, n_k, c)}}});
  p->low = cuda::lower(plan, c);
  return make_layout(args, c, p->low, &p->layout);
}
}  // namespace

Status cuda_lsh_blocks_workspace_size(const AttentionArgs& args, const AttentionConfig& config, std::size_t* bytes) {
  if (bytes == nullptr) return Status::InvalidArgument("bytes: null; expected a pointer to a size_t");
  AttentionConfig c = config;
  c.causal = false;
  Prepared p;
  HYPERATTN_RETURN_IF_ERROR(prepare_lsh_blocks(args, c, &p));
  *bytes = p.layout.total;
  return Status::Ok();
}

Status cuda_lsh_blocks(const AttentionArgs& args, const AttentionConfig& config, const InjectedRandomness& injected,
                       std::int32_t* query_block, std::int32_t* key_block, void* workspace, std::size_t workspace_bytes,
                       void* stream_ptr) {
  if (query_block == nullptr) return Status::InvalidArgument("query_block: null; expected [batch, heads_q, seq_q] int32 device storage");
  if (key_block == nullptr) return Status::InvalidArgument("key_block: null; expected [batch, heads_kv, seq_kv] int32 device storage");
  AttentionConfig c = config;
  c.causal = false;
  Prepared p;
  HYPERATTN_RETURN_IF_ERROR(prepare_lsh_blocks(args, c, &p));
  const std::int64_t n_q = args.q.seq(), n_k = args.k.seq();
  HYPERATTN_RETURN_IF_ERROR(check_workspace(p.layout, workspace, workspace_bytes));
  HYPERATTN_RETURN_IF_ERROR(check_injected(args, c, {injected.projections, nullptr}, p.low));
  const auto stream = static_cast<cudaStream_t>(stream_ptr);
  const Layout& l = p.layout;
  HYPERATTN_RETURN_IF_ERROR(upload_blob(args, c, {injected.projections, nullptr}, p, workspace, stream));
  HYPERATTN_RETURN_IF_ERROR(hash_all(args, c, l, workspace, stream));
  const cuda::LaunchPlan& launch = p.low.launches[0];
  HYPERATTN_RETURN_IF_ERROR(sort_launch(args, c, launch, l.ranges, l, workspace, stream));
  const Shapes s = shapes_of(args);
  const cuda::Problem& pr = p.low.problems[0];
  HYPERATTN_CUDA_TRY(cudaMemsetAsync(key_block, 0xff, static_cast<std::size_t>(s.batch * s.heads_kv * n_k) * sizeof(std::int32_t), stream),
                     "cudaMemsetAsync");  // sinks: -1
  HYPERATTN_CUDA_TRY(cuda::launch_scatter_blocks(at<std::int32_t>(workspace, l.q_perm), s.batch * s.heads_q, n_q, 0, n_q,
                                                 pr.num_blocks, c.block_size, 1, query_block, stream),
                     "block scatter kernel launch");
  HYPERATTN_CUDA_TRY(cuda::launch_scatter_blocks(at<std::int32_t>(workspace, l.k_perm), s.batch * s.heads_kv, n_k - pr.sinks,
                                                 pr.sinks, n_k, pr.num_blocks, c.block_size, 0, key_block, stream),
                     "block scatter kernel launch");
  return Status::Ok();
}

}  // namespace hyperattn
