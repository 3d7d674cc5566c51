// src/model/llama_model.cpp: the prefill (see llama_model.hpp).
#include "model/llama_model.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "hyperattn/attention.hpp"
#include "hyperattn/tensor.hpp"
#include "model/parallel.hpp"
#include "model/vector_math.hpp"

namespace hyperattn::model {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// Rows of the MLP processed at once: bounds the [rows, 2 * intermediate] buffer (32 MiB at
// intermediate 1024) while the GEMMs stay large. Standalone (2 threads, 32768 rows, medians of 5, two
// runs) the MLP GEMMs ran at 86.5 / 89.6 GFLOP per CPU-second in 1024-row chunks, 93 / 91.8 in 4096.
constexpr std::int64_t kMlpRowChunk = 4096;

}  // namespace

AttentionConfig with_keys_per_query(const AttentionConfig& hyper, std::int64_t keys) {
  AttentionConfig c = hyper;
  const std::int64_t total = hyper.block_size + hyper.sample_size;
  c.block_size = std::clamp<std::int64_t>((keys * hyper.block_size + total / 2) / std::max<std::int64_t>(total, 1), 1,
                                          std::max<std::int64_t>(keys, 1));
  c.sample_size = std::max<std::int64_t>(keys - c.block_size, 0);
  return c;
}

PrefillTimings& PrefillTimings::operator+=(const PrefillTimings& o) {
  embed += o.embed;
  norm += o.norm;
  qkv_proj += o.qkv_proj;
  rope += o.rope;
  attention += o.attention;
  o_proj += o.o_proj;
  mlp += o.mlp;
  return *this;
}

Status LlamaModel::load(const std::string& dir, LlamaModel* out, MatmulPrecision matmul) {
  LlamaModel m;
  HYPERATTN_RETURN_IF_ERROR(load_llama_config(dir, &m.config_));
  if (!is_supported_head_dim(m.config_.head_dim)) {
    return Status::Unsupported(dir + "/config.json: head_dim " + std::to_string(m.config_.head_dim) +
                               " (hidden_size / num_attention_heads) is not supported by the attention kernels");
  }
  HYPERATTN_RETURN_IF_ERROR(load_llama_weights(dir, m.config_, &m.weights_));
  m.dir_ = dir;
  m.matmul_ = matmul;
  if (matmul == MatmulPrecision::bf16) {
    const LlamaConfig& c = m.config_;
    const std::int64_t qkv_width = c.q_width() + 2 * c.kv_width();
    for (const LlamaLayerWeights& w : m.weights_.layers) {
      m.bf16_layers_.push_back({pack_bf16_matrix(w.qkv_proj.data(), qkv_width, c.hidden_size),
                                pack_bf16_matrix(w.o_proj.data(), c.hidden_size, c.q_width()),
                                pack_bf16_matrix(w.gate_up_proj.data(), 2 * c.intermediate_size, c.hidden_size),
                                pack_bf16_matrix(w.down_proj.data(), c.hidden_size, c.intermediate_size)});
    }
    m.bf16_output_ = pack_bf16_matrix(m.weights_.output_embedding(), c.vocab_size, c.hidden_size);
  }
  *out = std::move(m);
  return Status::Ok();
}

void rms_norm(const float* x, const float* weight, std::int64_t rows, std::int64_t width, double eps, float* y,
              int threads) {
  parallel_rows(threads, rows, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t r = begin; r < end; ++r) {
      const float* xr = x + r * width;  // [width]
      float* yr = y + r * width;        // [width]
      // HF: x * rsqrt(mean(x^2) + eps) in fp32, then times the weight; the mean here is summed in
      // double (lanes, vectorised) and rounded once to fp32.
      const auto mean_sq = static_cast<float>(sum_squares_f32(xr, width) / static_cast<double>(width));
      const float inv_rms = 1.0f / std::sqrt(mean_sq + static_cast<float>(eps));
      for (std::int64_t i = 0; i < width; ++i) yr[i] = weight[i] * (xr[i] * inv_rms);
    }
  });
}

void rope_tables(std::int64_t n, std::int64_t head_dim, double theta, RopeAngles angles, std::vector<float>* cos_table,
                 std::vector<float>* sin_table, int threads) {
  const std::int64_t half = head_dim / 2;
  cos_table->resize(static_cast<std::size_t>(n * half));  // [n, head_dim / 2]
  sin_table->resize(static_cast<std::size_t>(n * half));  // [n, head_dim / 2]
  std::vector<double> inv_freq_f64(static_cast<std::size_t>(half));  // [head_dim / 2]
  std::vector<float> inv_freq_f32(static_cast<std::size_t>(half));   // [head_dim / 2]
  for (std::int64_t i = 0; i < half; ++i) {
    const auto exponent = static_cast<double>(2 * i) / static_cast<double>(head_dim);
    inv_freq_f64[static_cast<std::size_t>(i)] = std::pow(theta, -exponent);
    // transformers: inv_freq = 1 / theta ** (arange(0, d, 2).float() / d) in fp32
    inv_freq_f32[static_cast<std::size_t>(i)] =
        1.0f / std::pow(static_cast<float>(theta), static_cast<float>(2 * i) / static_cast<float>(head_dim));
  }
  float* cos_out = cos_table->data();
  float* sin_out = sin_table->data();
  parallel_rows(threads, n, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t p = begin; p < end; ++p) {
      for (std::int64_t i = 0; i < half; ++i) {
        const auto at = static_cast<std::size_t>(p * half + i);
        if (angles == RopeAngles::float32) {
          // one fp32 rounding, as transformers
          const float angle = static_cast<float>(p) * inv_freq_f32[static_cast<std::size_t>(i)];
          cos_out[at] = std::cos(angle);
          sin_out[at] = std::sin(angle);
        } else {
          const double angle = static_cast<double>(p) * inv_freq_f64[static_cast<std::size_t>(i)];
          cos_out[at] = static_cast<float>(std::cos(angle));
          sin_out[at] = static_cast<float>(std::sin(angle));
        }
      }
    }
  });
}

void apply_rope(float* x, std::int64_t rows, std::int64_t row_stride, std::int64_t heads, std::int64_t head_dim,
                const float* cos_table, const float* sin_table, int threads) {
  const std::int64_t half = head_dim / 2;
  parallel_rows(threads, rows, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t r = begin; r < end; ++r) {
      const float* c = cos_table + r * half;  // [head_dim / 2]
      const float* s = sin_table + r * half;  // [head_dim / 2]
      for (std::int64_t h = 0; h < heads; ++h) {
        float* lo = x + r * row_stride + h * head_dim;  // [head_dim / 2] first half
        float* hi = lo + half;                          // [head_dim / 2] second half
        for (std::int64_t i = 0; i < half; ++i) {
          const float a = lo[i], b = hi[i];
          lo[i] = a * c[i] - b * s[i];
          hi[i] = b * c[i] + a * s[i];
        }
      }
    }
  });
}

void LlamaModel::matmul_rows(const float* a, std::int64_t rows, std::int64_t lda, const float* w_f32,
                             const Bf16Matrix& w_bf16, std::int64_t n, std::int64_t k, float* c, std::int64_t ldc,
                             bool accumulate, int threads) const {
  if (matmul_ == MatmulPrecision::bf16) {
    gemm_bf16(a, rows, lda, w_bf16, c, ldc, accumulate, threads);
    return;
  }
  sgemm_rows(a, rows, lda, w_f32, n, k, c, ldc, accumulate, threads);
}

void LlamaModel::logits(const float* hidden, std::int64_t rows, float* out, int threads) const {
  const LlamaConfig& c = config_;
  // out [rows, vocab] = hidden [rows, hidden] . W^T, W [vocab, hidden]
  matmul_rows(hidden, rows, c.hidden_size, weights_.output_embedding(), bf16_output_, c.vocab_size, c.hidden_size, out,
              c.vocab_size, false, threads);
}

Status LlamaModel::prefill(const std::int32_t* tokens, std::int64_t n, const PrefillOptions& options,
                           std::vector<float>* final_hidden, PrefillTimings* timings) const {
  const LlamaConfig& c = config_;
  if (n < 1 || n > c.max_position_embeddings) {
    return Status::InvalidArgument("prefill: sequence length: expected 1.." +
                                   std::to_string(c.max_position_embeddings) + " (max_position_embeddings), found " +
                                   std::to_string(n));
  }
  if (!options.layer_attention.empty() && static_cast<std::int64_t>(options.layer_attention.size()) != c.num_layers) {
    return Status::InvalidArgument("prefill: layer_attention: expected " + std::to_string(c.num_layers) +
                                   " entries (one per layer), found " + std::to_string(options.layer_attention.size()));
  }
  for (std::int64_t i = 0; i < n; ++i) {
    if (tokens[i] < 0 || tokens[i] >= c.vocab_size) {
      return Status::InvalidArgument("prefill: token " + std::to_string(i) + ": expected an id in [0, " +
                                     std::to_string(c.vocab_size) + "), found " + std::to_string(tokens[i]));
    }
  }
  if (!options.layer_keys.empty() && static_cast<std::int64_t>(options.layer_keys.size()) != c.num_layers) {
    return Status::InvalidArgument("prefill: layer_keys: expected " + std::to_string(c.num_layers) +
                                   " entries (one per layer), found " + std::to_string(options.layer_keys.size()));
  }
  for (std::size_t l = 0; l < options.layer_keys.size(); ++l) {
    if (options.layer_keys[l] < 1) {
      return Status::InvalidArgument("prefill: layer_keys[" + std::to_string(l) + "]: expected >= 1 keys per query, found " +
                                     std::to_string(options.layer_keys[l]));
    }
  }
  if (options.capture_layer >= c.num_layers) {
    return Status::InvalidArgument("prefill: capture_layer: expected < " + std::to_string(c.num_layers) + ", found " +
                                   std::to_string(options.capture_layer));
  }
  const int threads = std::max(1, options.threads);
  PrefillTimings t;

  const std::int64_t hidden = c.hidden_size, inter = c.intermediate_size, d = c.head_dim;
  const std::int64_t qkv_width = c.q_width() + 2 * c.kv_width();
  std::vector<float> x(static_cast<std::size_t>(n * hidden));          // [n, hidden] residual stream
  std::vector<float> h(static_cast<std::size_t>(n * hidden));          // [n, hidden] normed input
  std::vector<float> qkv(static_cast<std::size_t>(n * qkv_width));     // [n, q_width + 2 kv_width]
  std::vector<float> attn(static_cast<std::size_t>(n * c.q_width()));  // [n, heads_q * head_dim]
  const std::int64_t mlp_rows = std::min(n, kMlpRowChunk);
  // [mlp_rows, 2 inter]: gate then up per row; the SwiGLU result overwrites the gate half.
  std::vector<float> gate_up(static_cast<std::size_t>(mlp_rows * 2 * inter));

  auto start = Clock::now();
  for (std::int64_t i = 0; i < n; ++i) {
    std::memcpy(x.data() + i * hidden, weights_.embed_tokens.data() + tokens[i] * hidden,
                sizeof(float) * static_cast<std::size_t>(hidden));
  }
  t.embed += seconds_since(start);

  start = Clock::now();
  std::vector<float> cos_table, sin_table;  // [n, head_dim / 2]
  rope_tables(n, d, c.rope_theta, options.rope_angles, &cos_table, &sin_table, threads);
  t.rope += seconds_since(start);

  // Views of the fused projection in the [batch, heads, seq, head_dim] frame: no copies.
  const std::int64_t batch_stride = n * qkv_width;
  TensorView q_view{qkv.data(), DType::f32, {1, c.heads_q, n, d}, {batch_stride, d, qkv_width, 1}};
  TensorView k_view{qkv.data() + c.q_width(), DType::f32, {1, c.heads_kv, n, d}, {batch_stride, d, qkv_width, 1}};
  TensorView v_view{
      qkv.data() + c.q_width() + c.kv_width(), DType::f32, {1, c.heads_kv, n, d}, {batch_stride, d, qkv_width, 1}};
  TensorView out_view = TensorView::bshd(attn.data(), DType::f32, 1, n, c.heads_q, d);
  const AttentionArgs args{.q = q_view, .k = k_view, .v = v_view, .out = out_view, .lse = {}};
  AttentionConfig exact_config;
  exact_config.causal = true;
  exact_config.threads = threads;
  AttentionConfig hyper_config = options.hyper;
  hyper_config.causal = true;
  hyper_config.threads = threads;

  static const Bf16Layer kNoBf16;
  for (std::int64_t l = 0; l < c.num_layers; ++l) {
    const LlamaLayerWeights& w = weights_.layers[static_cast<std::size_t>(l)];
    const Bf16Layer& wb = bf16_layers_.empty() ? kNoBf16 : bf16_layers_[static_cast<std::size_t>(l)];

    start = Clock::now();
    rms_norm(x.data(), w.input_norm.data(), n, hidden, c.rms_norm_eps, h.data(), threads);
    t.norm += seconds_since(start);

    start = Clock::now();
    // qkv [n, qkv_width] = h [n, hidden] . W_qkv^T, W_qkv [qkv_width, hidden]
    matmul_rows(h.data(), n, hidden, w.qkv_proj.data(), wb.qkv_proj, qkv_width, hidden, qkv.data(), qkv_width, false, threads);
    t.qkv_proj += seconds_since(start);

    start = Clock::now();
    apply_rope(qkv.data(), n, qkv_width, c.heads_q + c.heads_kv, d, cos_table.data(), sin_table.data(),
               threads);  // q heads and k heads are adjacent in each row
    t.rope += seconds_since(start);

    if (l == options.capture_layer && options.capture_qkv != nullptr) {
      *options.capture_qkv = qkv;
      if (options.stop_after_capture) {
        final_hidden->clear();
        if (timings) *timings += t;
        return Status::Ok();
      }
    }

    start = Clock::now();
    const bool hyper = !options.layer_attention.empty() &&
                       options.layer_attention[static_cast<std::size_t>(l)] == LayerAttention::hyper;
    Status s = !hyper                      ? exact_attention(args, exact_config)
               : options.layer_keys.empty() ? hyper_attention(args, hyper_config)
                                            : hyper_attention(args, with_keys_per_query(
                                                                        hyper_config, options.layer_keys[static_cast<std::size_t>(l)]));
    if (!s.ok()) {
      return Status(s.code(),
                    "layer " + std::to_string(l) + (hyper ? " hyper_attention: " : " exact_attention: ") + s.message());
    }
    t.attention += seconds_since(start);

    start = Clock::now();
    // x [n, hidden] += attn [n, q_width] . W_o^T, W_o [hidden, q_width]
    matmul_rows(attn.data(), n, c.q_width(), w.o_proj.data(), wb.o_proj, hidden, c.q_width(), x.data(), hidden, true, threads);
    t.o_proj += seconds_since(start);

    start = Clock::now();
    rms_norm(x.data(), w.post_norm.data(), n, hidden, c.rms_norm_eps, h.data(), threads);
    t.norm += seconds_since(start);

    start = Clock::now();
    for (std::int64_t r0 = 0; r0 < n; r0 += mlp_rows) {
      const std::int64_t rows = std::min(mlp_rows, n - r0);
      // gate_up [rows, 2 inter] = h [rows, hidden] . W_gu^T, W_gu [2 inter, hidden]
      matmul_rows(h.data() + r0 * hidden, rows, hidden, w.gate_up_proj.data(), wb.gate_up_proj, 2 * inter, hidden,
                  gate_up.data(), 2 * inter, false, threads);
      parallel_rows(threads, rows, [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t r = begin; r < end; ++r) {
          float* g = gate_up.data() + r * 2 * inter;  // [inter], becomes silu(g) * u
          const float* u = g + inter;                 // [inter]
          silu_mul(g, u, inter, g);
        }
      });
      // x [rows, hidden] += act [rows, inter] . W_down^T, W_down [hidden, inter]; act is the first
      // half of each gate_up row (leading dimension 2 inter)
      matmul_rows(gate_up.data(), rows, 2 * inter, w.down_proj.data(), wb.down_proj, hidden, inter, x.data() + r0 * hidden,
                  hidden, true, threads);
    }
    t.mlp += seconds_since(start);
    if (options.on_layer_done) options.on_layer_done(l);
  }

  start = Clock::now();
  final_hidden->resize(static_cast<std::size_t>(n * hidden));
  rms_norm(x.data(), weights_.final_norm.data(), n, hidden, c.rms_norm_eps, final_hidden->data(), threads);
  t.norm += seconds_since(start);
  if (timings) *timings += t;
  return Status::Ok();
}

}  // namespace hyperattn::model
