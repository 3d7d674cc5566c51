// src/model/llama_model.hpp: a Llama-family decoder for evaluating attention on a trained model.
//
// Per layer: x += o_proj(attention(rope(q), rope(k), v)) with RMSNorm before, then
// x += down(silu(gate(h)) * up(h)) with RMSNorm before; RoPE in the Hugging Face "rotate half"
// convention (angles pos * theta^(-2i/d) rounded as transformers does, see RopeAngles); grouped-query attention handed
// to the library as strided views of the fused q/k/v projection (no copies, no n x n matrix). Each layer runs
// exact_attention or hyper_attention (causal) as the caller chooses.
//
// Memory is bounded: the prefill keeps O(n * (hidden + qkv width)) activations, the MLP runs in
// row chunks, and the output head (final norm already applied) is evaluated in row chunks by
// next_token_scores.hpp, so neither an n x n nor an [n, vocab] matrix ever exists.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "hyperattn/config.hpp"
#include "hyperattn/status.hpp"
#include "model/bf16_gemm.hpp"
#include "model/llama_config.hpp"
#include "model/llama_weights.hpp"

namespace hyperattn::model {

enum class LayerAttention : std::uint8_t { exact, hyper };

// The arithmetic of the model's matrix products (projections, MLP, output head); attention, norms,
// RoPE and the softmax are fp32 either way.
enum class MatmulPrecision : std::uint8_t {
  // fp32 operands, fp32 sums (OpenBLAS sgemm on each thread's rows): reproduces reference/ (NLL to 1e-5).
  f32,
  // bf16 operands (activations rounded to bf16 at each product's input, as a bf16 model runs on an
  // accelerator), exact products, fp32 sums (bf16_gemm.hpp): twice the arithmetic rate where the
  // CPU has AVX512-BF16. On the bundled model's reference the mean NLL moves by 1.1e-4 nats, single
  // positions by up to 0.05 (docs/model.md).
  bf16,
};

// How the rotary angles pos * theta^(-2i/d) are rounded.
enum class RopeAngles : std::uint8_t {
  // As transformers computes them (and as the model was trained and its reference/ was made):
  // inv_freq in fp32, one fp32 product, fp32 cos/sin. At position 4000 the angle differs from the
  // exact one by up to ~2e-4 rad, which moves the NLL by ~3e-4: only this choice reproduces
  // reference/nll.npy to 1e-4.
  float32,
  // Angles and cos/sin in double, rounded to fp32 at the end (mathematically closer, not what the
  // model saw in training).
  float64,
};

// Wall-clock seconds spent in each part of a prefill.
struct PrefillTimings {
  double embed = 0;      // token embedding lookup
  double norm = 0;       // the RMSNorms (two per layer and the final one)
  double qkv_proj = 0;   // fused q/k/v projection GEMM
  double rope = 0;       // rotary tables and their application to q and k
  double attention = 0;  // exact_attention / hyper_attention
  double o_proj = 0;     // output projection GEMM (with the residual add)
  double mlp = 0;        // gate/up GEMM, SwiGLU, down GEMM (with the residual add)

  double total() const { return embed + norm + qkv_proj + rope + attention + o_proj + mlp; }
  PrefillTimings& operator+=(const PrefillTimings& o);
};

struct PrefillOptions {
  // One entry per layer; empty means exact attention everywhere.
  std::vector<LayerAttention> layer_attention;
  // HyperAttention's parameters for the layers marked hyper (causal and threads are overridden).
  AttentionConfig hyper;
  // Per-layer budgets: one entry per layer, the keys per query (block + samples) of that layer's
  // HyperAttention, split between block and samples in the proportion of `hyper`; empty means
  // `hyper`'s own budget in every layer (see layer_config).
  std::vector<std::int64_t> layer_keys;
  int threads = 1;  // BLAS, library and element-wise passes, one at a time
  RopeAngles rope_angles = RopeAngles::float32;
  // Called after each layer with its index (for progress reports). May be empty.
  std::function<void(std::int64_t)> on_layer_done;

  // Diagnostics: when capture_layer >= 0, the fused projection of that layer after RoPE,
  // [n, q_width + 2 * kv_width] (q heads, then k heads, then v heads), is copied to *capture_qkv.
  std::int64_t capture_layer = -1;
  std::vector<float>* capture_qkv = nullptr;
  bool stop_after_capture = false;  // then final_hidden is left empty
};

// `hyper` with its keys per query (block + samples) rescaled to `keys`, the block keeping its
// share (at least 1 key); the remaining parameters unchanged.
AttentionConfig with_keys_per_query(const AttentionConfig& hyper, std::int64_t keys);

class LlamaModel {
 public:
  // Loads `<dir>/config.json`, the weights and refuses any architecture it does not implement.
  // `matmul` chooses the arithmetic of every matrix product of this instance (bf16 packs the
  // weights once here).
  static Status load(const std::string& dir, LlamaModel* out, MatmulPrecision matmul = MatmulPrecision::f32);

  const LlamaConfig& config() const { return config_; }
  const LlamaWeights& weights() const { return weights_; }
  const std::string& dir() const { return dir_; }
  MatmulPrecision matmul() const { return matmul_; }

  // Runs the decoder over tokens[0..n) (positions 0..n-1) and writes the hidden states after the
  // final RMSNorm, [n, hidden], to *final_hidden. Adds its timings to *timings when non-null.
  Status prefill(const std::int32_t* tokens, std::int64_t n, const PrefillOptions& options,
                 std::vector<float>* final_hidden, PrefillTimings* timings) const;

  // logits [rows, vocab] = hidden [rows, hidden] . output_embedding^T (no softmax).
  void logits(const float* hidden, std::int64_t rows, float* out, int threads = 1) const;

 private:
  // The bf16-packed weights (MatmulPrecision::bf16 only).
  struct Bf16Layer {
    Bf16Matrix qkv_proj, o_proj, gate_up_proj, down_proj;
  };

  // c [rows, n] (+)= a [rows, k] (row stride lda) . W^T with W [n, k] = w_f32 (rows contiguous) or its
  // bf16 packing, by the instance's MatmulPrecision.
  void matmul_rows(const float* a, std::int64_t rows, std::int64_t lda, const float* w_f32,
                   const Bf16Matrix& w_bf16, std::int64_t n, std::int64_t k, float* c, std::int64_t ldc,
                   bool accumulate, int threads) const;

  LlamaConfig config_;
  LlamaWeights weights_;
  std::string dir_;
  MatmulPrecision matmul_ = MatmulPrecision::f32;
  std::vector<Bf16Layer> bf16_layers_;
  Bf16Matrix bf16_output_;
};

// Hugging Face RMSNorm: y = x / sqrt(mean(x^2) + eps) * weight, per row, fp32.
// x, y [rows, width] (may alias).
void rms_norm(const float* x, const float* weight, std::int64_t rows, std::int64_t width, double eps, float* y,
              int threads);

// The rotary tables for positions [0, n): cos, sin [n, head_dim / 2], angle = pos * theta^(-2i/d);
// positions split over `threads` (the values do not depend on it).
void rope_tables(std::int64_t n, std::int64_t head_dim, double theta, RopeAngles angles, std::vector<float>* cos_table,
                 std::vector<float>* sin_table, int threads = 1);

// Rotate-half RoPE applied in place to `heads` heads of each row of x: row r, head h is
// x[r * row_stride + h * head_dim + (0..head_dim)]. For i < d/2: (x_i, x_{i+d/2}) becomes
// (x_i cos - x_{i+d/2} sin, x_{i+d/2} cos + x_i sin) with the angle of position r.
void apply_rope(float* x, std::int64_t rows, std::int64_t row_stride, std::int64_t heads, std::int64_t head_dim,
                const float* cos_table, const float* sin_table, int threads);

}  // namespace hyperattn::model
