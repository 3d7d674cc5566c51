// src/model/next_token_scores.cpp: see next_token_scores.hpp.
#include "model/next_token_scores.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "model/parallel.hpp"
#include "model/vector_math.hpp"

namespace hyperattn::model {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// Rows of logits formed at once: [1024, vocab] is 16 MiB at vocab 4096 (two such buffers with a
// reference run). 1024 rows split over 2 threads keep the GEMM at its large-matrix rate.
constexpr std::int64_t kRowChunk = 1024;

}  // namespace

void log_softmax_rows(float* x, std::int64_t rows, std::int64_t width, int threads) {
  parallel_rows(threads, rows, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t r = begin; r < end; ++r) {
      float* row = x + r * width;  // [width]
      const float max = max_f32(row, width);
      const double sum = sum_exp_f32(row, width, max);  // terms within 2 ulp (vector_math.hpp), sum in double
      const float lse = max + static_cast<float>(std::log(sum));
      for (std::int64_t i = 0; i < width; ++i) row[i] -= lse;
    }
  });
}

double mean_of(const std::vector<double>& v) {
  if (v.empty()) return 0.0;
  double s = 0.0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}

Status score_next_tokens(const LlamaModel& model, const float* hidden, const float* reference_hidden,
                         const std::int32_t* tokens, std::int64_t n, int threads, NextTokenScores* out,
                         ScoreTimings* timings) {
  const LlamaConfig& c = model.config();
  if (n < 2) return Status::InvalidArgument("score_next_tokens: n: expected >= 2 tokens, found " + std::to_string(n));
  const std::int64_t vocab = c.vocab_size, width = c.hidden_size;
  for (std::int64_t i = 1; i < n; ++i) {
    if (tokens[i] < 0 || tokens[i] >= vocab) {
      return Status::InvalidArgument("score_next_tokens: token " + std::to_string(i) + ": expected an id in [0, " +
                                     std::to_string(vocab) + "), found " + std::to_string(tokens[i]));
    }
  }
  threads = std::max(1, threads);
  const std::int64_t scored = n - 1;  // the last position predicts nothing we can check
  NextTokenScores s;
  s.nll.resize(static_cast<std::size_t>(scored));
  if (reference_hidden) {
    s.reference_nll.resize(static_cast<std::size_t>(scored));
    s.kl.resize(static_cast<std::size_t>(scored));
  }
  ScoreTimings t;
  std::vector<float> lp(static_cast<std::size_t>(std::min(scored, kRowChunk) * vocab));  // [chunk, vocab]
  std::vector<float> lp_ref(reference_hidden ? lp.size() : 0);                           // [chunk, vocab]
  for (std::int64_t r0 = 0; r0 < scored; r0 += kRowChunk) {
    const std::int64_t rows = std::min(kRowChunk, scored - r0);
    auto start = Clock::now();
    model.logits(hidden + r0 * width, rows, lp.data(), threads);
    log_softmax_rows(lp.data(), rows, vocab, threads);
    t.head += seconds_since(start);
    for (std::int64_t r = 0; r < rows; ++r) {
      s.nll[static_cast<std::size_t>(r0 + r)] =
          -static_cast<double>(lp[static_cast<std::size_t>(r * vocab + tokens[r0 + r + 1])]);
    }
    if (!reference_hidden) continue;
    start = Clock::now();
    model.logits(reference_hidden + r0 * width, rows, lp_ref.data(), threads);
    log_softmax_rows(lp_ref.data(), rows, vocab, threads);
    t.reference_head += seconds_since(start);
    start = Clock::now();
    parallel_rows(threads, rows, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t r = begin; r < end; ++r) {
        const float* a = lp_ref.data() + r * vocab;  // [vocab] reference log-probs
        const float* b = lp.data() + r * vocab;      // [vocab] scored log-probs
        s.kl[static_cast<std::size_t>(r0 + r)] = kl_terms_f32(a, b, vocab);
        s.reference_nll[static_cast<std::size_t>(r0 + r)] = -static_cast<double>(a[tokens[r0 + r + 1]]);
      }
    });
    t.kl += seconds_since(start);
  }
  *out = std::move(s);
  if (timings) {
    timings->head += t.head;
    timings->reference_head += t.reference_head;
    timings->kl += t.kl;
  }
  return Status::Ok();
}

}  // namespace hyperattn::model
