#include "tensor_files.hpp"

#include <cmath>
#include <cstring>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/bfloat16.hpp"

namespace hyperattn::cli {

Status to_host_tensor(const std::string& name, io::Array array, HostTensor* out) {
  const auto& s = array.shape;
  if (s.size() < 2 || s.size() > 4)
    return Status::InvalidArgument(fmt::format("{}: has rank {}; expected [seq, dim], [heads, seq, dim] or [batch, heads, seq, dim]", name, s.size()));
  for (std::int64_t x : s)
    if (x <= 0) return Status::InvalidArgument(fmt::format("{}: has an empty dimension ({}); expected positive sizes", name, fmt::join(s, ", ")));
  std::int64_t dims[4] = {1, 1, 1, 1};
  for (std::size_t i = 0; i < s.size(); ++i) dims[4 - s.size() + i] = s[i];
  out->name = name;
  out->file_type = array.type;
  out->file_shape = s;
  const std::int64_t n = array.numel();
  switch (array.type) {
    case io::ElemType::bf16:
      out->bf16.resize(static_cast<std::size_t>(n));
      std::memcpy(out->bf16.data(), array.bytes.data(), static_cast<std::size_t>(n) * 2);
      out->view = TensorView::bhsd(out->bf16.data(), DType::bf16, dims[0], dims[1], dims[2], dims[3]);
      break;
    case io::ElemType::f32:
    case io::ElemType::f16:
    case io::ElemType::f64:
      out->f32 = array.to_f32();
      out->view = TensorView::bhsd(out->f32.data(), DType::f32, dims[0], dims[1], dims[2], dims[3]);
      break;
    default:
      return Status::InvalidArgument(fmt::format("{}: element type {}; expected float32, float16 or bfloat16", name, io::to_string(array.type)));
  }
  return Status::Ok();
}

Status load_qkv(const std::string& q_path, const std::string& k_path, const std::string& v_path,
                const std::string& safetensors_path, HostTensor* q, HostTensor* k, HostTensor* v) {
  if (!safetensors_path.empty()) {
    io::SafetensorsFile file;
    if (Status s = io::SafetensorsFile::open(safetensors_path, &file); !s.ok())
      return Status(s.code(), "--in: " + s.message());
    const char* names[3] = {"q", "k", "v"};
    HostTensor* outs[3] = {q, k, v};
    for (int i = 0; i < 3; ++i) {
      const io::SafetensorsTensor* t = file.find(names[i]);
      if (t == nullptr)
        return Status::InvalidArgument(fmt::format("--in: {}: has no tensor named \"{}\"; expected tensors q, k and v", safetensors_path, names[i]));
      HYPERATTN_RETURN_IF_ERROR(to_host_tensor(fmt::format("--in {} ({})", names[i], safetensors_path), t->to_array(), outs[i]));
    }
  } else {
    const std::string* paths[3] = {&q_path, &k_path, &v_path};
    const char* names[3] = {"--q", "--k", "--v"};
    HostTensor* outs[3] = {q, k, v};
    for (int i = 0; i < 3; ++i) {
      if (paths[i]->empty()) return Status::InvalidArgument(fmt::format("{}: missing; expected a .npy file (or --in FILE.safetensors)", names[i]));
      io::Array a;
      if (Status s = io::read_npy(*paths[i], &a); !s.ok()) return Status(s.code(), std::string(names[i]) + ": " + s.message());
      HYPERATTN_RETURN_IF_ERROR(to_host_tensor(fmt::format("{} ({})", names[i], *paths[i]), std::move(a), outs[i]));
    }
  }
  // A file in one dtype: bf16 only if all three are.
  const bool all_bf16 = q->view.dtype == DType::bf16 && k->view.dtype == DType::bf16 && v->view.dtype == DType::bf16;
  for (HostTensor* t : {q, k, v}) {
    if (!all_bf16 && t->view.dtype == DType::bf16) {
      t->f32.resize(t->bf16.size());
      for (std::size_t i = 0; i < t->bf16.size(); ++i) t->f32[i] = bf16_bits_to_f32(t->bf16[i]);
      t->bf16.clear();
      t->view.data = t->f32.data();
      t->view.dtype = DType::f32;
    }
  }
  return Status::Ok();
}

HostTensor make_output(const HostTensor& like, const std::string& name) {
  HostTensor o;
  o.name = name;
  o.file_type = like.file_type;
  o.file_shape = like.file_shape;
  o.view = like.view;
  if (like.view.dtype == DType::bf16) {
    o.bf16.assign(like.bf16.size(), 0);
    o.view.data = o.bf16.data();
  } else {
    o.f32.assign(static_cast<std::size_t>(like.view.numel()), 0.0f);
    o.view.data = o.f32.data();
  }
  return o;
}

std::vector<float> to_f32(const HostTensor& t) {
  if (t.view.dtype == DType::f32) return t.f32;
  std::vector<float> r(t.bf16.size());
  for (std::size_t i = 0; i < r.size(); ++i) r[i] = bf16_bits_to_f32(t.bf16[i]);
  return r;
}

Status write_like(const std::string& path, const HostTensor& tensor, const HostTensor& like) {
  const std::vector<float> values = to_f32(tensor);
  io::Array a = io::Array::from_f32(like.file_shape, values.data());
  if (like.file_type == io::ElemType::f16) {
    io::Array h;
    h.type = io::ElemType::f16;
    h.shape = like.file_shape;
    h.bytes.resize(values.size() * 2);
    for (std::size_t i = 0; i < values.size(); ++i) {
      const std::uint16_t bits = io::f32_to_f16(values[i]);
      std::memcpy(h.bytes.data() + 2 * i, &bits, 2);
    }
    a = std::move(h);
  }
  return io::write_npy(path, a);
}

std::string find_non_finite(const HostTensor& t) {
  const std::vector<float> v = to_f32(t);
  const auto& s = t.view.shape;
  for (std::size_t i = 0; i < v.size(); ++i)
    if (!std::isfinite(v[i])) {
      const std::int64_t idx = static_cast<std::int64_t>(i);
      return fmt::format("{} holds {} at [batch {}, head {}, seq {}, dim {}]", t.name, v[i], idx / (s[1] * s[2] * s[3]),
                         idx / (s[2] * s[3]) % s[1], idx / s[3] % s[2], idx % s[3]);
    }
  return {};
}

}  // namespace hyperattn::cli
