// hyperattn._core: the nanobind extension behind the hyperattn Python package.
// Arrays arrive as nanobind ndarrays (numpy buffers or DLPack from torch) and are handed to the
// library as strided views without a copy; the caller (hyperattn/_api.py) allocates the output.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>

#include "hyperattn/hyperattn.hpp"

namespace nb = nanobind;

namespace {

using In = nb::ndarray<nb::ro, nb::device::cpu>;
using Out = nb::ndarray<nb::device::cpu>;

std::string dtype_name(const nb::dlpack::dtype& t) {
  const char* code = "?";
  switch (static_cast<nb::dlpack::dtype_code>(t.code)) {
    case nb::dlpack::dtype_code::Int: code = "int"; break;
    case nb::dlpack::dtype_code::UInt: code = "uint"; break;
    case nb::dlpack::dtype_code::Float: code = "float"; break;
    case nb::dlpack::dtype_code::Bfloat: code = "bfloat"; break;
    case nb::dlpack::dtype_code::Complex: code = "complex"; break;
    case nb::dlpack::dtype_code::Bool: code = "bool"; break;
    default: break;
  }
  return std::string(code) + std::to_string(t.bits);
}

hyperattn::DType to_dtype(const char* name, const nb::dlpack::dtype& t) {
  if (t.lanes == 1 && t.code == static_cast<std::uint8_t>(nb::dlpack::dtype_code::Float) && t.bits == 32)
    return hyperattn::DType::f32;
  if (t.lanes == 1 && t.code == static_cast<std::uint8_t>(nb::dlpack::dtype_code::Bfloat) && t.bits == 16)
    return hyperattn::DType::bf16;
  throw nb::type_error((std::string(name) + ": dtype " + dtype_name(t) +
                        " is not supported; expected float32 or bfloat16").c_str());
}

template <typename A>
hyperattn::TensorView view_of(const char* name, A& a) {
  if (a.ndim() != 4)
    throw nb::value_error((std::string(name) + ": expected 4 dimensions [batch, heads, seq, head_dim], got " +
                           std::to_string(a.ndim())).c_str());
  hyperattn::TensorView t;
  t.data = const_cast<void*>(static_cast<const void*>(a.data()));
  t.dtype = to_dtype(name, a.dtype());
  for (int i = 0; i < 4; ++i) {
    t.shape[i] = static_cast<std::int64_t>(a.shape(i));
    t.stride[i] = static_cast<std::int64_t>(a.stride(i));
  }
  return t;
}

// The byte range [lo, hi) a strided view touches (empty views touch nothing).
struct Range {
  std::uintptr_t lo = 0, hi = 0;
};
template <std::size_t N>
Range range_of(const void* data, const std::array<std::int64_t, N>& shape,
               const std::array<std::int64_t, N>& stride, std::size_t elem) {
  std::int64_t lo = 0, hi = 0;
  for (std::size_t i = 0; i < N; ++i) {
    if (shape[i] == 0) return {};
    const std::int64_t span = (shape[i] - 1) * stride[i];
    (span < 0 ? lo : hi) += span;
  }
  const auto base = reinterpret_cast<std::uintptr_t>(data);
  return {base + static_cast<std::uintptr_t>(lo * static_cast<std::int64_t>(elem)),
          base + static_cast<std::uintptr_t>((hi + 1) * static_cast<std::int64_t>(elem))};
}
bool overlaps(Range a, Range b) { return a.lo < a.hi && b.lo < b.hi && a.lo < b.hi && b.lo < a.hi; }

hyperattn::BucketOrder to_bucket_order(const std::string& s) {
  if (s == "gray-rank" || s == "gray_rank") return hyperattn::BucketOrder::gray_rank;
  if (s == "reference" || s == "reference-gray" || s == "reference_gray") return hyperattn::BucketOrder::reference_gray;
  throw nb::value_error(("bucket_order: expected 'gray-rank' or 'reference', got '" + s + "'").c_str());
}

hyperattn::Sampling to_sampling(const std::string& s) {
  if (s == "uniform") return hyperattn::Sampling::uniform;
  if (s == "value-norm" || s == "value_norm") return hyperattn::Sampling::value_norm;
  if (s == "stratified") return hyperattn::Sampling::stratified;
  if (s == "position-stratified" || s == "position_stratified") return hyperattn::Sampling::position_stratified;
  throw nb::value_error(("sampling: expected 'uniform', 'value-norm', 'stratified' or 'position-stratified', got '" +
                         s + "'").c_str());
}

hyperattn::AttentionConfig make_config(bool causal, double scale, int threads, int lsh_bits, std::int64_t block_size,
                                       std::int64_t sample_size, std::int64_t min_seq_len, std::uint64_t seed,
                                       const std::string& preset, const std::string& bucket_order,
                                       const std::string& sampling, std::int64_t sink_keys, std::int64_t local_window) {
  if (threads < 0)
    throw nb::value_error(("threads: expected None or a positive count, got " + std::to_string(threads)).c_str());
  if (!(scale >= 0.0))
    throw nb::value_error(("scale: expected None or a positive number, got " + std::to_string(scale)).c_str());
  hyperattn::AttentionConfig config;
  config.causal = causal;
  config.scale = static_cast<float>(scale);
  config.threads = threads;
  config.lsh_bits = lsh_bits;
  config.block_size = block_size;
  config.sample_size = sample_size;
  config.min_seq_len = min_seq_len;
  config.seed = seed;
  config.bucket_order = to_bucket_order(bucket_order);
  config.sampling = to_sampling(sampling);
  config.sink_keys = sink_keys;
  config.local_window = local_window;
  if (!preset.empty()) {
    const hyperattn::Status s = hyperattn::apply_preset(preset, &config);
    if (!s.ok()) throw nb::value_error(("preset: " + s.message()).c_str());
  }
  return config;
}

void raise_status(const hyperattn::Status& status) {
  if (status.ok()) return;
  if (status.code() == hyperattn::StatusCode::out_of_memory) throw std::bad_alloc();
  throw nb::value_error(status.message().c_str());
}

hyperattn::LseView lse_view_of(const char* name, Out& l, const hyperattn::TensorView& q) {
  if (l.ndim() != 3)
    throw nb::value_error((std::string(name) + ": expected 3 dimensions [batch, heads_q, seq_q], got " + std::to_string(l.ndim())).c_str());
  if (to_dtype(name, l.dtype()) != hyperattn::DType::f32) throw nb::type_error((std::string(name) + ": expected float32, got bfloat16").c_str());
  hyperattn::LseView v;
  for (int i = 0; i < 3; ++i) {
    if (static_cast<std::int64_t>(l.shape(i)) != q.shape[i])
      throw nb::value_error((std::string(name) + ": expected shape [" + std::to_string(q.shape[0]) + ", " + std::to_string(q.shape[1]) +
                             ", " + std::to_string(q.shape[2]) + "], got [" + std::to_string(l.shape(0)) + ", " +
                             std::to_string(l.shape(1)) + ", " + std::to_string(l.shape(2)) + "]").c_str());
    v.stride[i] = static_cast<std::int64_t>(l.stride(i));
  }
  v.data = static_cast<float*>(l.data());
  return v;
}

// The backward pass into caller-provided dq, dk, dv (the library checks shapes, dtypes and overlaps).
void attention_backward(In q, In k, In v, In out, Out lse, In d_out, std::optional<Out> d_lse, Out dq, Out dk, Out dv,
                        const std::string& method, bool causal, double scale, int threads, int lsh_bits,
                        std::int64_t block_size, std::int64_t sample_size, std::int64_t min_seq_len, std::uint64_t seed,
                        const std::string& preset, const std::string& bucket_order, const std::string& sampling,
                        std::int64_t sink_keys, std::int64_t local_window) {
  if (method != "hyper" && method != "exact")
    throw nb::value_error(("method: expected 'hyper' or 'exact', got '" + method + "'").c_str());
  hyperattn::AttentionGradArgs g;
  g.q = view_of("q", q);
  g.k = view_of("k", k);
  g.v = view_of("v", v);
  g.out = view_of("out", out);
  g.lse = lse_view_of("lse", lse, g.q);
  g.d_out = view_of("grad_out", d_out);
  if (d_lse) g.d_lse = lse_view_of("grad_lse", *d_lse, g.q);
  g.dq = view_of("dq", dq);
  g.dk = view_of("dk", dk);
  g.dv = view_of("dv", dv);
  const hyperattn::AttentionConfig config = make_config(causal, scale, threads, lsh_bits, block_size, sample_size,
                                                       min_seq_len, seed, preset, bucket_order, sampling, sink_keys,
                                                       local_window);
  hyperattn::Status status;
  {
    nb::gil_scoped_release release;
    status = method == "exact" ? hyperattn::exact_attention_backward(g, config) : hyperattn::hyper_attention_backward(g, config);
  }
  raise_status(status);
}

void attention(In q, In k, In v, Out out, std::optional<Out> lse, const std::string& method, bool causal,
               double scale, int threads, int lsh_bits, std::int64_t block_size, std::int64_t sample_size,
               std::int64_t min_seq_len, std::uint64_t seed, const std::string& preset,
               const std::string& bucket_order, const std::string& sampling, std::int64_t sink_keys,
               std::int64_t local_window) {
  if (method != "hyper" && method != "exact")
    throw nb::value_error(("method: expected 'hyper' or 'exact', got '" + method + "'").c_str());
  hyperattn::AttentionArgs args;
  args.q = view_of("q", q);
  args.k = view_of("k", k);
  args.v = view_of("v", v);
  args.out = view_of("out", out);
  if (args.k.dtype != args.q.dtype || args.v.dtype != args.q.dtype)
    throw nb::type_error(("k, v: expected the dtype of q (" + std::string(hyperattn::to_string(args.q.dtype)) +
                          "), got k " + hyperattn::to_string(args.k.dtype) + " and v " +
                          hyperattn::to_string(args.v.dtype)).c_str());
  if (args.out.dtype != args.q.dtype)
    throw nb::type_error(("out: expected the dtype of q (" + std::string(hyperattn::to_string(args.q.dtype)) +
                          "), got " + hyperattn::to_string(args.out.dtype)).c_str());
  const std::size_t es = hyperattn::size_of(args.q.dtype);
  const Range ro = range_of(args.out.data, args.out.shape, args.out.stride, es);
  const char* names[] = {"q", "k", "v"};
  const hyperattn::TensorView* ins[] = {&args.q, &args.k, &args.v};
  for (int i = 0; i < 3; ++i)
    if (overlaps(ro, range_of(ins[i]->data, ins[i]->shape, ins[i]->stride, es)))
      throw nb::value_error((std::string("out: overlaps the memory of ") + names[i] +
                             "; expected a separate output array").c_str());
  if (lse) {
    args.lse = lse_view_of("lse", *lse, args.q);
    const std::array<std::int64_t, 3> shape{args.q.shape[0], args.q.shape[1], args.q.shape[2]};
    const Range rl = range_of(args.lse.data, shape, args.lse.stride, 4);
    if (overlaps(rl, ro)) throw nb::value_error("lse: overlaps the memory of out; expected a separate array");
    for (int i = 0; i < 3; ++i)
      if (overlaps(rl, range_of(ins[i]->data, ins[i]->shape, ins[i]->stride, es)))
        throw nb::value_error((std::string("lse: overlaps the memory of ") + names[i] +
                               "; expected a separate array").c_str());
  }
  const hyperattn::AttentionConfig config = make_config(causal, scale, threads, lsh_bits, block_size, sample_size,
                                                       min_seq_len, seed, preset, bucket_order, sampling, sink_keys,
                                                       local_window);
  hyperattn::Status status;
  {
    nb::gil_scoped_release release;
    status = method == "exact" ? hyperattn::exact_attention(args, config) : hyperattn::hyper_attention(args, config);
  }
  if (!status.ok()) {
    if (status.code() == hyperattn::StatusCode::out_of_memory) throw std::bad_alloc();
    throw nb::value_error(status.message().c_str());
  }
}

}  // namespace

NB_MODULE(_core, m) {
  m.doc() = "hyperattn's C++ library (the extension behind the hyperattn package)";
  m.attr("__version__") = std::to_string(HYPERATTN_VERSION_MAJOR) + "." + std::to_string(HYPERATTN_VERSION_MINOR) +
                          "." + std::to_string(HYPERATTN_VERSION_PATCH);
  m.attr("has_cuda") = false;
  m.def("is_supported_head_dim", &hyperattn::is_supported_head_dim, nb::arg("head_dim"));
  m.def("attention_backward", &attention_backward, nb::arg("q"), nb::arg("k"), nb::arg("v"), nb::arg("out"),
        nb::arg("lse"), nb::arg("grad_out"), nb::arg("grad_lse").none(), nb::arg("dq"), nb::arg("dk"), nb::arg("dv"),
        nb::arg("method"), nb::arg("causal"), nb::arg("scale"), nb::arg("threads"), nb::arg("lsh_bits"),
        nb::arg("block_size"), nb::arg("sample_size"), nb::arg("min_seq_len"), nb::arg("seed"), nb::arg("preset"),
        nb::arg("bucket_order"), nb::arg("sampling"), nb::arg("sink_keys"), nb::arg("local_window"),
        "The gradients of attention (the forward's out and lse given) into caller-provided dq, dk, dv; arrays in the "
        "[batch, heads, seq, head_dim] frame. Releases the GIL while it computes.");
  m.def("attention", &attention, nb::arg("q"), nb::arg("k"), nb::arg("v"), nb::arg("out"), nb::arg("lse").none(),
        nb::arg("method"), nb::arg("causal"), nb::arg("scale"), nb::arg("threads"), nb::arg("lsh_bits"),
        nb::arg("block_size"), nb::arg("sample_size"), nb::arg("min_seq_len"), nb::arg("seed"), nb::arg("preset"),
        nb::arg("bucket_order"), nb::arg("sampling"), nb::arg("sink_keys"), nb::arg("local_window"),
        "Attention into caller-provided out (and lse); arrays in the [batch, heads, seq, head_dim] frame, any "
        "strides with the innermost 1. Releases the GIL while it computes.");
}
