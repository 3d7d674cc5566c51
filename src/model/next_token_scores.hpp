// src/model/next_token_scores.hpp: the output head in row chunks: per-position negative
// log-likelihood of the next token and, against a reference run (exact attention), the KL
// divergence KL(reference || scored) of the next-token distributions.
//
// Both runs' final hidden states are small ([n, hidden]); their logits are formed and
// log-softmaxed `kRowChunk` rows at a time, so no [n, vocab] matrix is ever stored.
#pragma once

#include <cstdint>
#include <vector>

#include "hyperattn/status.hpp"
#include "model/llama_model.hpp"

namespace hyperattn::model {

struct NextTokenScores {
  std::vector<double> nll;            // [n - 1]: -log p(tokens[i + 1] | tokens[0..i]) of the scored run
  std::vector<double> reference_nll;  // [n - 1]: the same for the reference run (when given)
  std::vector<double> kl;             // [n - 1]: KL(reference_i || scored_i) in nats (when given)
};

struct ScoreTimings {
  double head = 0;            // scored run: lm_head GEMM + log-softmax
  double reference_head = 0;  // reference run: the same
  double kl = 0;              // the KL sums
};

// hidden, reference_hidden: [n, hidden] after the final norm (reference_hidden may be null).
Status score_next_tokens(const LlamaModel& model, const float* hidden, const float* reference_hidden,
                         const std::int32_t* tokens, std::int64_t n, int threads, NextTokenScores* out,
                         ScoreTimings* timings);

// In-place log-softmax of each row of x [rows, width]; sums in double.
void log_softmax_rows(float* x, std::int64_t rows, std::int64_t width, int threads);

// Mean of a vector (0 when empty) and perplexity exp(mean NLL).
double mean_of(const std::vector<double>& v);

}  // namespace hyperattn::model
