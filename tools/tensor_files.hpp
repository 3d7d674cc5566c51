// tools/tensor_files.hpp: attention tensors from .npy / .safetensors files, for the tools.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "hyperattn/attention.hpp"
#include "io/array_io.hpp"

namespace hyperattn::cli {

// One attention input held in memory: fp32 or bf16 storage, viewed as [batch, heads, seq, dim].
struct HostTensor {
  std::string name;       // for messages: "q (q.npy)"
  io::ElemType file_type;  // the element type in the file
  std::vector<std::int64_t> file_shape;
  std::vector<float> f32;           // when dtype == f32
  std::vector<std::uint16_t> bf16;  // when dtype == bf16
  TensorView view;
};

// Converts an array of rank 2, 3 or 4 ([seq, dim], [heads, seq, dim], [batch, heads, seq, dim])
// of f32/f16/bf16/f64 into a host tensor: bf16 stays bf16, the rest computes in f32.
Status to_host_tensor(const std::string& name, io::Array array, HostTensor* out);

// Reads q, k, v from three .npy files, or from one .safetensors file (tensors "q", "k", "v").
Status load_qkv(const std::string& q_path, const std::string& k_path, const std::string& v_path,
                const std::string& safetensors_path, HostTensor* q, HostTensor* k, HostTensor* v);

// An output tensor with the shape of `like` (f32 storage unless like is bf16).
HostTensor make_output(const HostTensor& like, const std::string& name);

// Writes a tensor with the file shape of `like`: f16 input gives f16, everything else f32.
Status write_like(const std::string& path, const HostTensor& tensor, const HostTensor& like);

// Where the first NaN or Inf is, or an empty string.
std::string find_non_finite(const HostTensor& t);

// Reads the values back as fp32 [batch, heads, seq, dim] contiguous.
std::vector<float> to_f32(const HostTensor& t);

}  // namespace hyperattn::cli
