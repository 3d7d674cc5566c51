// Exact attention of one query over two keys through the installed package; checks the answer.
#include <cmath>
#include <cstdio>

#include <hyperattn/hyperattn.hpp>

int main() {
  float q[16] = {1}, k[32] = {1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, v[32], out[16];
  for (int i = 0; i < 32; ++i) v[i] = i < 16 ? 1.0f : 3.0f;
  hyperattn::AttentionArgs args{hyperattn::TensorView::bhsd(q, hyperattn::DType::f32, 1, 1, 1, 16),
                                hyperattn::TensorView::bhsd(k, hyperattn::DType::f32, 1, 1, 2, 16),
                                hyperattn::TensorView::bhsd(v, hyperattn::DType::f32, 1, 1, 2, 16),
                                hyperattn::TensorView::bhsd(out, hyperattn::DType::f32, 1, 1, 1, 16), {}};
  hyperattn::AttentionConfig config;
  config.scale = 1.0f;
  const hyperattn::Status s = hyperattn::exact_attention(args, config);
  // weights e^1 : e^0 -> out = (e * 1 + 1 * 3) / (e + 1)
  const double expect = (std::exp(1.0) + 3.0) / (std::exp(1.0) + 1.0);
  if (!s.ok() || std::abs(out[0] - expect) > 1e-5) {
    std::printf("consumer: %s, out %f, expected %f\n", s.message().c_str(), out[0], expect);
    return 1;
  }
  std::printf("consumer: ok\n");
  return 0;
}
