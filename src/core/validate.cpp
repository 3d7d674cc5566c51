// src/core/validate.cpp: the door. Every public entry point calls validate() first; nothing past it
// checks user input again (kernels assume it).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>

#include <fmt/format.h>

#include "hyperattn/attention.hpp"

namespace hyperattn {
namespace {

std::string shape_str(const TensorView& t) {
  return fmt::format("[{}, {}, {}, {}]", t.shape[0], t.shape[1], t.shape[2], t.shape[3]);
}

constexpr const char* kDims[4] = {"batch", "heads", "seq", "head_dim"};

// Checks one view: non-null, positive shape, innermost stride 1, non-negative strides, and every
// reachable offset (in bytes) representable in int64 and indices in int32.
Status check_view(const char* name, const TensorView& t) {
  if (t.data == nullptr) return Status::InvalidArgument(fmt::format("{}: data is null; expected a pointer to {} elements", name, shape_str(t)));
  for (int i = 0; i < 4; ++i) {
    if (t.shape[i] <= 0)
      return Status::InvalidArgument(fmt::format("{}: {} (shape[{}]) is {}; expected a positive size (shape {})", name, kDims[i], i, t.shape[i], shape_str(t)));
    if (t.stride[i] < 0)
      return Status::InvalidArgument(fmt::format("{}: stride[{}] ({}) is {}; expected a non-negative stride", name, i, kDims[i], t.stride[i]));
  }
  if (t.stride[3] != 1)
    return Status::InvalidArgument(fmt::format("{}: the head_dim stride is {}; expected 1 (rows must be contiguous)", name, t.stride[3]));
  if (t.shape[2] > std::numeric_limits<std::int32_t>::max())
    return Status::InvalidArgument(fmt::format("{}: seq is {}; expected at most {}", name, t.shape[2], std::numeric_limits<std::int32_t>::max()));
  // Largest element offset: sum (shape-1)*stride, with overflow checks.
  const std::int64_t limit = std::numeric_limits<std::int64_t>::max() / 8;
  std::int64_t max_offset = 0;
  for (int i = 0; i < 4; ++i) {
    const std::int64_t extent = t.shape[i] - 1;
    if (t.stride[i] != 0 && extent > (limit - max_offset) / t.stride[i])
      return Status::InvalidArgument(fmt::format("{}: shape {} with strides [{}, {}, {}, {}] addresses more than 2^60 bytes", name, shape_str(t), t.stride[0], t.stride[1], t.stride[2], t.stride[3]));
    max_offset += extent * t.stride[i];
  }
  if (t.dtype != DType::f32 && t.dtype != DType::bf16)
    return Status::Unsupported(fmt::format("{}: dtype {} is not supported on the CPU; expected f32 or bf16", name, to_string(t.dtype)));
  return Status::Ok();
}

// Rows of an output view must not overlap: threads write them in parallel. Ordered by stride,
// each dimension of size > 1 must step past the whole extent of the dimensions inside it.
Status check_rows_disjoint(const char* name, const TensorView& t) {
  std::array<int, 3> order{0, 1, 2};
  std::sort(order.begin(), order.end(), [&](int x, int y) { return t.stride[x] < t.stride[y]; });
  std::int64_t inner = t.shape[3];  // head_dim elements, stride 1
  for (int i : order) {
    if (t.shape[i] == 1) continue;
    if (t.stride[i] < inner)
      return Status::InvalidArgument(fmt::format("{}: stride[{}] ({}) is {}, which makes rows overlap; expected at least {}", name, i, kDims[i], t.stride[i], inner));
    inner = t.stride[i] * t.shape[i];
  }
  return Status::Ok();
}

// The bytes [lo, hi) a (validated) view spans.
std::pair<std::uintptr_t, std::uintptr_t> byte_span(const TensorView& t) {
  std::int64_t last = 0;
  for (int i = 0; i < 4; ++i) last += (t.shape[i] - 1) * t.stride[i];
  const auto lo = reinterpret_cast<std::uintptr_t>(t.data);
  return {lo, lo + static_cast<std::uintptr_t>((last + 1) * static_cast<std::int64_t>(size_of(t.dtype)))};
}

bool spans_overlap(const TensorView& a, const TensorView& b) {
  const auto x = byte_span(a), y = byte_span(b);
  return x.first < y.second && y.first < x.second;
}

// A gradient view: a valid view of the shape of `like`, in its dtype or f32.
Status check_grad_view(const char* name, const TensorView& t, const TensorView& like, const char* like_name) {
  HYPERATTN_RETURN_IF_ERROR(check_view(name, t));
  if (t.shape != like.shape)
    return Status::InvalidArgument(fmt::format("{}: shape is {}; expected the shape of {} {}", name, shape_str(t), like_name, shape_str(like)));
  if (t.dtype != like.dtype && t.dtype != DType::f32)
    return Status::InvalidArgument(fmt::format("{}: dtype is {}; expected {} (the dtype of {}) or f32", name, to_string(t.dtype), to_string(like.dtype), like_name));
  return Status::Ok();
}

}  // namespace

bool is_supported_head_dim(std::int64_t head_dim) {
  return head_dim >= 16 && head_dim <= 256 && head_dim % 16 == 0;
}

Status validate(const AttentionArgs& a, const AttentionConfig& c) {
  HYPERATTN_RETURN_IF_ERROR(check_view("q", a.q));
  HYPERATTN_RETURN_IF_ERROR(check_view("k", a.k));
  HYPERATTN_RETURN_IF_ERROR(check_view("v", a.v));
  HYPERATTN_RETURN_IF_ERROR(check_view("out", a.out));
  if (a.k.dtype != a.q.dtype || a.v.dtype != a.q.dtype)
    return Status::InvalidArgument(fmt::format("k, v: dtypes are {} and {}; expected the dtype of q ({})", to_string(a.k.dtype), to_string(a.v.dtype), to_string(a.q.dtype)));
  if (a.out.dtype != a.q.dtype)
    return Status::InvalidArgument(fmt::format("out: dtype is {}; expected the dtype of q ({})", to_string(a.out.dtype), to_string(a.q.dtype)));
  if (a.k.batch() != a.q.batch() || a.v.batch() != a.q.batch())
    return Status::InvalidArgument(fmt::format("k, v: batch is {} and {}; expected the batch of q ({})", a.k.batch(), a.v.batch(), a.q.batch()));
  if (a.v.heads() != a.k.heads())
    return Status::InvalidArgument(fmt::format("v: heads is {}; expected the heads of k ({})", a.v.heads(), a.k.heads()));
  if (a.q.heads() % a.k.heads() != 0)
    return Status::InvalidArgument(fmt::format("q: heads_q is {}; expected a multiple of heads_kv ({}) for grouped-query attention", a.q.heads(), a.k.heads()));
  if (a.v.seq() != a.k.seq())
    return Status::InvalidArgument(fmt::format("v: seq_kv is {}; expected the seq of k ({})", a.v.seq(), a.k.seq()));
  if (a.k.head_dim() != a.q.head_dim())
    return Status::InvalidArgument(fmt::format("k: head_dim is {}; expected the head_dim of q ({})", a.k.head_dim(), a.q.head_dim()));
  if (a.v.head_dim() != a.q.head_dim())
    return Status::InvalidArgument(fmt::format("v: head_dim is {}; expected the head_dim of q ({})", a.v.head_dim(), a.q.head_dim()));
  if (a.out.shape != a.q.shape)
    return Status::InvalidArgument(fmt::format("out: shape is {}; expected the shape of q {}", shape_str(a.out), shape_str(a.q)));
  if (!is_supported_head_dim(a.q.head_dim()))
    return Status::Unsupported(fmt::format("q: head_dim is {}; expected a multiple of 16 from 16 to 256 (e.g. 32, 64, 96, 128, 256)", a.q.head_dim()));
  if (a.lse.data != nullptr) {
    for (int i = 0; i < 3; ++i)
      if (a.lse.stride[i] < 0)
        return Status::InvalidArgument(fmt::format("lse: stride[{}] is {}; expected a non-negative stride", i, a.lse.stride[i]));
    if (a.lse.stride[2] == 0 && a.q.seq() > 1)
      return Status::InvalidArgument("lse: the seq stride is 0; expected a positive stride (rows would overwrite each other)");
  }
  // Output rows must not overlap: threads write them in parallel.
  HYPERATTN_RETURN_IF_ERROR(check_rows_disjoint("out", a.out));
  if (a.lse.data != nullptr) {
    std::array<int, 3> order{0, 1, 2};
    const std::array<std::int64_t, 3> shape{a.q.shape[0], a.q.shape[1], a.q.shape[2]};
    std::sort(order.begin(), order.end(), [&](int x, int y) { return a.lse.stride[x] < a.lse.stride[y]; });
    std::int64_t inner = 1;
    for (int i : order) {
      if (shape[i] == 1) continue;
      if (a.lse.stride[i] < inner)
        return Status::InvalidArgument(fmt::format("lse: stride[{}] is {}, which makes entries overlap; expected at least {}", i, a.lse.stride[i], inner));
      if (a.lse.stride[i] > 0 && shape[i] > (std::numeric_limits<std::int64_t>::max() / 8) / a.lse.stride[i])
        return Status::InvalidArgument(fmt::format("lse: stride[{}] ({}) addresses more than 2^60 bytes", i, a.lse.stride[i]));
      inner = a.lse.stride[i] * shape[i];
    }
  }
  // Parameters.
  if (!std::isfinite(c.scale) || c.scale < 0.0f)
    return Status::InvalidArgument(fmt::format("config.scale is {}; expected a finite value > 0 (or 0 for 1/sqrt(head_dim))", c.scale));
  if (c.threads < 0)
    return Status::InvalidArgument(fmt::format("config.threads is {}; expected 0 (all cores) or a positive count", c.threads));
  if (c.lsh_bits < 1 || c.lsh_bits > 16)
    return Status::InvalidArgument(fmt::format("config.lsh_bits is {}; expected 1..16", c.lsh_bits));
  if (c.block_size < 1)
    return Status::InvalidArgument(fmt::format("config.block_size is {}; expected at least 1", c.block_size));
  if (c.block_size > std::numeric_limits<std::int32_t>::max())
    return Status::InvalidArgument(fmt::format("config.block_size is {}; expected at most 2^31-1", c.block_size));
  if (c.sample_size < 0 || c.sample_size > (std::int64_t{1} << 24))
    return Status::InvalidArgument(fmt::format("config.sample_size is {}; expected 0..16777216", c.sample_size));
  if (c.min_seq_len < 0)
    return Status::InvalidArgument(fmt::format("config.min_seq_len is {}; expected a non-negative length", c.min_seq_len));
  if (c.bucket_order != BucketOrder::gray_rank && c.bucket_order != BucketOrder::reference_gray)
    return Status::InvalidArgument(fmt::format("config.bucket_order is {}; expected gray_rank or reference_gray", static_cast<int>(c.bucket_order)));
  if (c.sampling != Sampling::uniform && c.sampling != Sampling::value_norm && c.sampling != Sampling::stratified &&
      c.sampling != Sampling::position_stratified)
    return Status::InvalidArgument(fmt::format("config.sampling is {}; expected uniform, value_norm, stratified or position_stratified", static_cast<int>(c.sampling)));
  if (c.sink_keys < 0 || c.sink_keys > std::numeric_limits<std::int32_t>::max())
    return Status::InvalidArgument(fmt::format("config.sink_keys is {}; expected 0..2^31-1", c.sink_keys));
  if (c.local_window < 0 || c.local_window > std::numeric_limits<std::int32_t>::max())
    return Status::InvalidArgument(fmt::format("config.local_window is {}; expected 0..2^31-1", c.local_window));
  return Status::Ok();
}

Status validate_backward(const AttentionGradArgs& g, const AttentionConfig& c) {
  HYPERATTN_RETURN_IF_ERROR(validate(AttentionArgs{g.q, g.k, g.v, g.out, g.lse}, c));
  if (g.lse.data == nullptr)
    return Status::InvalidArgument("lse: data is null; expected the forward's LSE [batch, heads_q, seq_q] fp32 (the backward recomputes P from it)");
  HYPERATTN_RETURN_IF_ERROR(check_grad_view("d_out", g.d_out, g.q, "q"));
  HYPERATTN_RETURN_IF_ERROR(check_grad_view("dq", g.dq, g.q, "q"));
  HYPERATTN_RETURN_IF_ERROR(check_grad_view("dk", g.dk, g.k, "k"));
  HYPERATTN_RETURN_IF_ERROR(check_grad_view("dv", g.dv, g.v, "v"));
  if (g.dq.dtype != g.dk.dtype || g.dv.dtype != g.dk.dtype)
    return Status::InvalidArgument(fmt::format("dq, dk, dv: dtypes are {}, {} and {}; expected one dtype", to_string(g.dq.dtype), to_string(g.dk.dtype), to_string(g.dv.dtype)));
  if (g.d_lse.data != nullptr)
    for (int i = 0; i < 3; ++i)
      if (g.d_lse.stride[i] < 0 || g.d_lse.stride[i] > (std::numeric_limits<std::int64_t>::max() / 8) / std::max<std::int64_t>(g.q.shape[i], 1))
        return Status::InvalidArgument(fmt::format("d_lse: stride[{}] is {}; expected a non-negative stride addressing less than 2^60 bytes", i, g.d_lse.stride[i]));
  const std::pair<const char*, const TensorView*> outs[] = {{"dq", &g.dq}, {"dk", &g.dk}, {"dv", &g.dv}};
  const std::pair<const char*, const TensorView*> ins[] = {{"q", &g.q}, {"k", &g.k}, {"v", &g.v}, {"out", &g.out}, {"d_out", &g.d_out}};
  for (std::size_t i = 0; i < 3; ++i) {
    HYPERATTN_RETURN_IF_ERROR(check_rows_disjoint(outs[i].first, *outs[i].second));
    for (std::size_t j = i + 1; j < 3; ++j)
      if (spans_overlap(*outs[i].second, *outs[j].second))
        return Status::InvalidArgument(fmt::format("{}: overlaps the memory of {}; expected separate gradient arrays", outs[i].first, outs[j].first));
    for (const auto& in : ins)
      if (spans_overlap(*outs[i].second, *in.second))
        return Status::InvalidArgument(fmt::format("{}: overlaps the memory of {}; expected a separate array", outs[i].first, in.first));
  }
  return Status::Ok();
}

Status apply_preset(std::string_view name, AttentionConfig* config) {
  if (config == nullptr) return Status::InvalidArgument("apply_preset: config is null");
  if (name == "paper") {
    config->sampling = Sampling::uniform;
    config->sink_keys = 0;
    config->local_window = 0;
    config->bucket_order = BucketOrder::gray_rank;
    return Status::Ok();
  }
  if (name == "stratified" || name == "stratified-window") {
    const std::int64_t budget = config->block_size + config->sample_size;
    // stratified: a block of budget/8; stratified-window: budget/4, which with the small-tile kernels
    // keeps its attention time within 10% of paper's at 128 and 512 keys (docs/accuracy.md).
    config->block_size = std::max<std::int64_t>(1, budget / (name == "stratified" ? 8 : 4));
    config->sample_size = budget - config->block_size;
    config->sampling = Sampling::stratified;
    config->sink_keys = 0;
    config->bucket_order = BucketOrder::gray_rank;
    config->local_window = 0;
    if (name == "stratified-window") {
      // A window of budget/4 keys; the first w rows after each causal leaf boundary (one every
      // min_seq_len rows) attend w - j extra keys, w (w + 1) / 2 in all: their mean per row is
      // taken from the samples, so the mean keys per query stay `budget`.
      config->local_window = std::max<std::int64_t>(1, budget / 4);
      const std::int64_t leaf = std::max<std::int64_t>(config->min_seq_len, 1);
      const std::int64_t charge = (config->local_window * (config->local_window + 1) / 2 + leaf - 1) / leaf;
      config->sample_size = std::max<std::int64_t>(0, config->sample_size - charge);
    }
    return Status::Ok();
  }
  return Status::InvalidArgument(
      fmt::format("preset is \"{}\"; expected \"paper\", \"stratified\" or \"stratified-window\"", name));
}

}  // namespace hyperattn
