// hyperattn/tensor.hpp: non-owning strided views of attention tensors.
// Every attention tensor is seen in the frame [batch, heads, seq, head_dim] with strides counted
// in elements, so [b, h, n, d] and [b, n, h, d] memory are both views without copies. The
// innermost stride must be 1.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace hyperattn {

enum class DType : std::uint8_t { f32, bf16, f16 };

const char* to_string(DType dtype);
std::size_t size_of(DType dtype);

// A view of a rank-4 tensor [batch, heads, seq, head_dim]; strides in elements.
struct TensorView {
  void* data = nullptr;
  DType dtype = DType::f32;
  std::array<std::int64_t, 4> shape{0, 0, 0, 0};
  std::array<std::int64_t, 4> stride{0, 0, 0, 0};

  std::int64_t batch() const { return shape[0]; }
  std::int64_t heads() const { return shape[1]; }
  std::int64_t seq() const { return shape[2]; }
  std::int64_t head_dim() const { return shape[3]; }
  std::int64_t numel() const { return shape[0] * shape[1] * shape[2] * shape[3]; }

  // Memory laid out as [batch, heads, seq, head_dim], contiguous.
  static TensorView bhsd(void* data, DType dtype, std::int64_t batch, std::int64_t heads,
                         std::int64_t seq, std::int64_t head_dim) {
    return {data, dtype, {batch, heads, seq, head_dim},
            {heads * seq * head_dim, seq * head_dim, head_dim, 1}};
  }
  // Memory laid out as [batch, seq, heads, head_dim], contiguous (the layout of a projection
  // output [tokens, heads * head_dim]), seen in the [batch, heads, seq, head_dim] frame.
  static TensorView bshd(void* data, DType dtype, std::int64_t batch, std::int64_t seq,
                         std::int64_t heads, std::int64_t head_dim) {
    return {data, dtype, {batch, heads, seq, head_dim},
            {seq * heads * head_dim, head_dim, heads * head_dim, 1}};
  }
};

// The optional log-sum-exp output: fp32, [batch, heads_q, seq_q], strides in elements.
struct LseView {
  float* data = nullptr;
  std::array<std::int64_t, 3> stride{0, 0, 0};

  static LseView contiguous(float* data, std::int64_t heads, std::int64_t seq) {
    return {data, {heads * seq, seq, 1}};
  }
};

}  // namespace hyperattn
