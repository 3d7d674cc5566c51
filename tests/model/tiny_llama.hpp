// tests/model/tiny_llama.hpp: a tiny random Llama checkpoint written to a temporary folder, and a
// naive double-precision forward pass to check the runner against.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "io/array_io.hpp"

namespace hyperattn::model::testing {

struct TinyShape {
  std::int64_t vocab = 40, hidden = 64, inter = 96, layers = 2, heads_q = 2, heads_kv = 1;
  std::int64_t head_dim() const { return hidden / heads_q; }
  std::int64_t max_pos = 256;
  double theta = 10000.0, eps = 1e-5;
};

// The weights in fp32 (already rounded to the storage dtype), by Hugging Face tensor name.
using TensorMap = std::map<std::string, std::pair<std::vector<std::int64_t>, std::vector<float>>>;

inline TensorMap make_tiny_weights(const TinyShape& s, bool tied, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  TensorMap m;
  auto add = [&](const std::string& name, std::vector<std::int64_t> shape, float std_dev, float mean) {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    std::vector<float> v(static_cast<std::size_t>(n));
    for (auto& x : v) x = mean + std_dev * normal(rng);
    m[name] = {shape, v};
  };
  const std::int64_t qw = s.heads_q * s.head_dim(), kvw = s.heads_kv * s.head_dim();
  add("model.embed_tokens.weight", {s.vocab, s.hidden}, 1.0f, 0.0f);
  for (std::int64_t l = 0; l < s.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {s.hidden}, 0.1f, 1.0f);
    add(p + "self_attn.q_proj.weight", {qw, s.hidden}, 0.3f, 0.0f);
    add(p + "self_attn.k_proj.weight", {kvw, s.hidden}, 0.3f, 0.0f);
    add(p + "self_attn.v_proj.weight", {kvw, s.hidden}, 0.15f, 0.0f);
    add(p + "self_attn.o_proj.weight", {s.hidden, qw}, 0.15f, 0.0f);
    add(p + "post_attention_layernorm.weight", {s.hidden}, 0.1f, 1.0f);
    add(p + "mlp.gate_proj.weight", {s.inter, s.hidden}, 0.15f, 0.0f);
    add(p + "mlp.up_proj.weight", {s.inter, s.hidden}, 0.15f, 0.0f);
    add(p + "mlp.down_proj.weight", {s.hidden, s.inter}, 0.1f, 0.0f);
  }
  add("model.norm.weight", {s.hidden}, 0.1f, 1.0f);
  if (!tied) add("lm_head.weight", {s.vocab, s.hidden}, 0.2f, 0.0f);
  return m;
}

inline nlohmann::json tiny_config(const TinyShape& s, bool tied) {
  return {{"architectures", {"LlamaForCausalLM"}},
          {"model_type", "llama"},
          {"hidden_act", "silu"},
          {"vocab_size", s.vocab},
          {"hidden_size", s.hidden},
          {"intermediate_size", s.inter},
          {"num_hidden_layers", s.layers},
          {"num_attention_heads", s.heads_q},
          {"num_key_value_heads", s.heads_kv},
          {"max_position_embeddings", s.max_pos},
          {"rms_norm_eps", s.eps},
          {"rope_theta", s.theta},
          {"rope_scaling", nullptr},
          {"attention_bias", false},
          {"tie_word_embeddings", tied}};
}

// Rounds the weights to `type` (f32, bf16 or f16) in place and returns the arrays to store.
inline std::map<std::string, io::Array> to_arrays(TensorMap* weights, io::ElemType type) {
  std::map<std::string, io::Array> arrays;
  for (auto& [name, entry] : *weights) {
    auto& [shape, values] = entry;
    io::Array a;
    a.type = type;
    a.shape = shape;
    if (type == io::ElemType::f32) {
      a = io::Array::from_f32(shape, values.data());
    } else {
      a.bytes.resize(values.size() * 2);
      for (std::size_t i = 0; i < values.size(); ++i) {
        const std::uint16_t bits = type == io::ElemType::bf16 ? io::f32_to_bf16(values[i]) : io::f32_to_f16(values[i]);
        std::memcpy(a.bytes.data() + 2 * i, &bits, 2);
        values[i] = type == io::ElemType::bf16 ? io::bf16_to_f32(bits) : io::f16_to_f32(bits);
      }
    }
    arrays.emplace(name, std::move(a));
  }
  return arrays;
}

// A fresh temporary folder, removed by the destructor.
struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& tag) {
    path = std::filesystem::temp_directory_path() /
           ("hyperattn_model_test_" + tag + "_" + std::to_string(std::random_device{}()));
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string str() const { return path.string(); }
};

inline void write_json(const std::string& path, const nlohmann::json& j) { std::ofstream(path) << j.dump(2); }

// The naive double-precision forward pass: per-position NLL of tokens[1..n) (rope angles in double).
// round_bf16 emulates MatmulPrecision::bf16: every matrix product's operands are rounded to bf16
// (the activation via fp32, as the runner holds it), the products and sums stay in double.
inline std::vector<double> naive_llama_nll(const TinyShape& s, const TensorMap& w, bool tied,
                                           const std::vector<std::int32_t>& tokens,
                                           float (*round_bf16)(float) = nullptr) {
  const auto n = static_cast<std::int64_t>(tokens.size());
  const std::int64_t H = s.hidden, D = s.head_dim(), qw = s.heads_q * D, kvw = s.heads_kv * D;
  auto W = [&](const std::string& name) -> const std::vector<float>& { return w.at(name).second; };
  // y [n, out] = x [n, in] . M^T, M [out, in]
  auto matmul = [round_bf16](const std::vector<double>& x, std::int64_t rows, std::int64_t in,
                             const std::vector<float>& M, std::int64_t out) {
    auto op = [round_bf16](double v) {
      return round_bf16 ? static_cast<double>(round_bf16(static_cast<float>(v))) : v;
    };
    std::vector<double> y(static_cast<std::size_t>(rows * out), 0.0);
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t o = 0; o < out; ++o) {
        double acc = 0.0;
        for (std::int64_t i = 0; i < in; ++i) acc += op(x[r * in + i]) * op(M[o * in + i]);
        y[r * out + o] = acc;
      }
    return y;
  };
  auto rms = [&](const std::vector<double>& x, const std::vector<float>& g) {
    std::vector<double> y(x.size());
    for (std::int64_t r = 0; r < n; ++r) {
      double ss = 0.0;
      for (std::int64_t i = 0; i < H; ++i) ss += x[r * H + i] * x[r * H + i];
      const double inv = 1.0 / std::sqrt(ss / H + s.eps);
      for (std::int64_t i = 0; i < H; ++i) y[r * H + i] = g[i] * x[r * H + i] * inv;
    }
    return y;
  };
  auto rope = [&](std::vector<double>& x, std::int64_t heads) {
    for (std::int64_t p = 0; p < n; ++p)
      for (std::int64_t h = 0; h < heads; ++h)
        for (std::int64_t i = 0; i < D / 2; ++i) {
          const double angle = p * std::pow(s.theta, -2.0 * i / D);
          double& a = x[p * heads * D + h * D + i];
          double& b = x[p * heads * D + h * D + i + D / 2];
          const double a0 = a, b0 = b;
          a = a0 * std::cos(angle) - b0 * std::sin(angle);
          b = b0 * std::cos(angle) + a0 * std::sin(angle);
        }
  };
  std::vector<double> x(static_cast<std::size_t>(n * H));  // [n, hidden]
  for (std::int64_t p = 0; p < n; ++p)
    for (std::int64_t i = 0; i < H; ++i) x[p * H + i] = W("model.embed_tokens.weight")[tokens[p] * H + i];
  for (std::int64_t l = 0; l < s.layers; ++l) {
    const std::string pre = "model.layers." + std::to_string(l) + ".";
    auto h = rms(x, W(pre + "input_layernorm.weight"));
    auto q = matmul(h, n, H, W(pre + "self_attn.q_proj.weight"), qw);   // [n, qw]
    auto k = matmul(h, n, H, W(pre + "self_attn.k_proj.weight"), kvw);  // [n, kvw]
    auto v = matmul(h, n, H, W(pre + "self_attn.v_proj.weight"), kvw);  // [n, kvw]
    rope(q, s.heads_q);
    rope(k, s.heads_kv);
    std::vector<double> attn(static_cast<std::size_t>(n * qw), 0.0);  // [n, qw]
    for (std::int64_t hq = 0; hq < s.heads_q; ++hq) {
      const std::int64_t hk = hq / (s.heads_q / s.heads_kv);
      for (std::int64_t i = 0; i < n; ++i) {
        std::vector<double> sc(static_cast<std::size_t>(i + 1));
        double mx = -1e300;
        for (std::int64_t j = 0; j <= i; ++j) {
          double dot = 0.0;
          for (std::int64_t c = 0; c < D; ++c) dot += q[i * qw + hq * D + c] * k[j * kvw + hk * D + c];
          sc[j] = dot / std::sqrt(static_cast<double>(D));
          mx = std::max(mx, sc[j]);
        }
        double den = 0.0;
        for (auto& e : sc) den += (e = std::exp(e - mx));
        for (std::int64_t j = 0; j <= i; ++j)
          for (std::int64_t c = 0; c < D; ++c) attn[i * qw + hq * D + c] += sc[j] / den * v[j * kvw + hk * D + c];
      }
    }
    auto o = matmul(attn, n, qw, W(pre + "self_attn.o_proj.weight"), H);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] += o[i];
    h = rms(x, W(pre + "post_attention_layernorm.weight"));
    auto g = matmul(h, n, H, W(pre + "mlp.gate_proj.weight"), s.inter);
    auto u = matmul(h, n, H, W(pre + "mlp.up_proj.weight"), s.inter);
    for (std::size_t i = 0; i < g.size(); ++i) g[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
    auto down = matmul(g, n, s.inter, W(pre + "mlp.down_proj.weight"), H);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] += down[i];
  }
  x = rms(x, W("model.norm.weight"));
  auto logits = matmul(x, n, H, W(tied ? "model.embed_tokens.weight" : "lm_head.weight"), s.vocab);
  std::vector<double> nll;
  for (std::int64_t p = 0; p + 1 < n; ++p) {
    double mx = -1e300, den = 0.0;
    for (std::int64_t t = 0; t < s.vocab; ++t) mx = std::max(mx, logits[p * s.vocab + t]);
    for (std::int64_t t = 0; t < s.vocab; ++t) den += std::exp(logits[p * s.vocab + t] - mx);
    nll.push_back(mx + std::log(den) - logits[p * s.vocab + tokens[p + 1]]);
  }
  return nll;
}

}  // namespace hyperattn::model::testing
