// src/model/attention_diagnostics.cpp: see attention_diagnostics.hpp.
#include "model/attention_diagnostics.hpp"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "model/parallel.hpp"

namespace hyperattn::model {
namespace {

// Query rows per streamed tile: the score buffer is [kTileRows, n_k] floats.
constexpr std::int64_t kTileRows = 128;

double quantile_of_sorted(const std::vector<float>& sorted, double level) {
  if (sorted.empty()) return 0.0;
  const double pos = level * static_cast<double>(sorted.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(pos));
  const auto hi = std::min(lo + 1, sorted.size() - 1);
  const double frac = pos - static_cast<double>(lo);
  return sorted[lo] * (1.0 - frac) + sorted[hi] * frac;
}

}  // namespace

void attention_mass_statistics(const float* q, std::int64_t q_row_stride, const float* k, std::int64_t k_row_stride,
                               std::int64_t n_q, std::int64_t n_k, std::int64_t head_dim, float scale, bool causal,
                               const std::int32_t* query_block, const std::int32_t* key_block, int threads,
                               MassStatistics* out) {
  threads = std::max(1, threads);
  const std::int64_t tile_rows = std::min(kTileRows, n_q);
  std::vector<float> scores(static_cast<std::size_t>(tile_rows * n_k));  // [tile_rows, n_k]
  // Per-thread column accumulators of sum_i P_ij^2, [threads, n_k], merged at the end.
  std::vector<double> column_sq(static_cast<std::size_t>(threads * n_k), 0.0);
  struct RowRange {
    double min_log_residual = std::numeric_limits<double>::infinity();
    double max_log_residual = -std::numeric_limits<double>::infinity();
    std::int64_t left_out = 0;
  };
  std::vector<RowRange> ranges(static_cast<std::size_t>(threads));
  MassStatistics stats;
  stats.captured.assign(static_cast<std::size_t>(n_q), 0.0f);
  const std::int64_t causal_offset = n_k - n_q;  // bottom-right aligned mask

  set_blas_threads(threads);
  for (std::int64_t i0 = 0; i0 < n_q; i0 += tile_rows) {
    const std::int64_t rows = std::min(tile_rows, n_q - i0);
    // scores [rows, n_k] = scale * q[i0 .. i0 + rows) . k^T
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows), static_cast<int>(n_k),
                static_cast<int>(head_dim), scale, q + i0 * q_row_stride, static_cast<int>(q_row_stride), k,
                static_cast<int>(k_row_stride), 0.0f, scores.data(), static_cast<int>(n_k));
    // Threads take slices of the tile's rows; slice p accumulates into column_sq row p.
    const std::int64_t parts = std::min<std::int64_t>(threads, rows);
    parallel_rows(static_cast<int>(parts), parts, [&](std::int64_t p_begin, std::int64_t p_end) {
      for (std::int64_t p = p_begin; p < p_end; ++p) {
        double* col = column_sq.data() + p * n_k;  // [n_k]
        RowRange& range = ranges[static_cast<std::size_t>(p)];
        for (std::int64_t r = rows * p / parts; r < rows * (p + 1) / parts; ++r) {
          const std::int64_t i = i0 + r;
          float* s = scores.data() + r * n_k;  // [n_k]
          const std::int64_t visible = causal ? std::clamp<std::int64_t>(i + causal_offset + 1, 0, n_k) : n_k;
          if (visible == 0) {
            ++range.left_out;
            continue;
          }
          float max = -std::numeric_limits<float>::infinity();
          for (std::int64_t j = 0; j < visible; ++j) max = std::max(max, s[j]);
          const std::int32_t own = query_block[i];
          double in_block = 0.0, residual = 0.0;
          for (std::int64_t j = 0; j < visible; ++j) {
            const double e = std::exp(static_cast<double>(s[j] - max));
            s[j] = static_cast<float>(e);
            (key_block[j] == own ? in_block : residual) += e;
          }
          const double total = in_block + residual;
          stats.captured[static_cast<std::size_t>(i)] = static_cast<float>(in_block / total);
          const double inv_total = 1.0 / total;
          for (std::int64_t j = 0; j < visible; ++j) {
            const double pij = static_cast<double>(s[j]) * inv_total;
            col[j] += pij * pij;
          }
          if (residual > 0.0) {
            // log of sum_{j outside the block} exp(s_ij), in the unshifted scale.
            const double log_residual = static_cast<double>(max) + std::log(residual);
            range.min_log_residual = std::min(range.min_log_residual, log_residual);
            range.max_log_residual = std::max(range.max_log_residual, log_residual);
          } else {
            ++range.left_out;
          }
        }
      }
    });
  }
  double max_column = 0.0;
  for (std::int64_t j = 0; j < n_k; ++j) {
    double c = 0.0;
    for (int p = 0; p < threads; ++p) c += column_sq[static_cast<std::size_t>(p * n_k + j)];
    max_column = std::max(max_column, c);
  }
  stats.alpha = static_cast<double>(n_k) * max_column;
  double lo = std::numeric_limits<double>::infinity(), hi = -std::numeric_limits<double>::infinity();
  for (const RowRange& r : ranges) {
    lo = std::min(lo, r.min_log_residual);
    hi = std::max(hi, r.max_log_residual);
    stats.kappa_rows_left_out += r.left_out;
  }
  stats.kappa = lo <= hi ? std::exp(hi - lo) : std::numeric_limits<double>::quiet_NaN();
  *out = std::move(stats);
}

Status diagnose_attention(const TensorView& q, const TensorView& k, const TensorView& v, const AttentionConfig& config,
                          const std::vector<std::int64_t>& heads, int threads, std::vector<HeadDiagnostics>* out,
                          const std::function<void()>& on_step) {
  const auto step = [&] {
    if (on_step) on_step();
  };
  for (const auto* t : {&q, &k, &v}) {
    if (t->dtype != DType::f32) {
      return Status::Unsupported("diagnose_attention: expected fp32 views, found " + std::string(to_string(t->dtype)));
    }
    if (t->batch() != 1) {
      return Status::InvalidArgument("diagnose_attention: batch: expected 1, found " + std::to_string(t->batch()));
    }
  }
  threads = std::max(1, threads);
  AttentionConfig cfg = config;
  cfg.threads = threads;
  const std::int64_t heads_q = q.heads(), n_q = q.seq(), n_k = k.seq(), d = q.head_dim();
  std::vector<std::int64_t> which = heads;
  if (which.empty()) {
    for (std::int64_t h = 0; h < heads_q; ++h) which.push_back(h);
  }
  for (std::int64_t h : which) {
    if (h < 0 || h >= heads_q) {
      return Status::InvalidArgument("diagnose_attention: head: expected 0.." + std::to_string(heads_q - 1) +
                                     ", found " + std::to_string(h));
    }
  }
  std::vector<float> exact_out(static_cast<std::size_t>(heads_q * n_q * d));  // [1, heads_q, n_q, d]
  std::vector<float> hyper_out(exact_out.size());                             // [1, heads_q, n_q, d]
  const auto out_view = [&](std::vector<float>& data) {
    return TensorView::bhsd(data.data(), DType::f32, 1, heads_q, n_q, d);
  };
  HYPERATTN_RETURN_IF_ERROR(exact_attention({q, k, v, out_view(exact_out), {}}, cfg));
  step();
  HYPERATTN_RETURN_IF_ERROR(hyper_attention({q, k, v, out_view(hyper_out), {}}, cfg));
  step();
  std::vector<std::int32_t> query_block(static_cast<std::size_t>(heads_q * n_q));  // [heads_q, n_q]
  std::vector<std::int32_t> key_block(static_cast<std::size_t>(k.heads() * n_k));  // [heads_kv, n_k]
  HYPERATTN_RETURN_IF_ERROR(
      lsh_blocks({q, k, v, out_view(hyper_out), {}}, cfg, {}, query_block.data(), key_block.data()));

  const std::int64_t group = heads_q / k.heads();
  const float scale = cfg.scale > 0.0f ? cfg.scale : 1.0f / std::sqrt(static_cast<float>(d));
  std::vector<HeadDiagnostics> result;
  for (std::int64_t h : which) {
    const std::int64_t hk = h / group;
    HeadDiagnostics hd;
    hd.head = h;
    double diff = 0.0, norm_o = 0.0, norm_v = 0.0;
    for (std::int64_t i = 0; i < n_q * d; ++i) {
      const double e = exact_out[static_cast<std::size_t>(h * n_q * d + i)];
      const double a = hyper_out[static_cast<std::size_t>(h * n_q * d + i)];
      diff += (a - e) * (a - e);
      norm_o += e * e;
    }
    const float* vh = static_cast<const float*>(v.data) + hk * v.stride[1];
    for (std::int64_t j = 0; j < n_k; ++j) {
      for (std::int64_t c = 0; c < d; ++c) {
        const double x = vh[j * v.stride[2] + c];
        norm_v += x * x;
      }
    }
    hd.error_rel_o = std::sqrt(diff / norm_o);
    hd.error_rel_v = std::sqrt(diff / norm_v);

    MassStatistics stats;
    attention_mass_statistics(static_cast<const float*>(q.data) + h * q.stride[1], q.stride[2],
                              static_cast<const float*>(k.data) + hk * k.stride[1], k.stride[2], n_q, n_k, d, scale,
                              cfg.causal, query_block.data() + h * n_q, key_block.data() + hk * n_k, threads, &stats);
    hd.alpha = stats.alpha;
    hd.kappa = stats.kappa;
    hd.kappa_rows_left_out = stats.kappa_rows_left_out;
    hd.captured = std::move(stats.captured);
    double sum = 0.0;
    for (float c : hd.captured) sum += c;
    hd.captured_mean = sum / static_cast<double>(std::max<std::int64_t>(1, n_q));
    std::vector<float> sorted = hd.captured;
    std::sort(sorted.begin(), sorted.end());
    for (std::size_t i = 0; i < kCapturedQuantileLevels.size(); ++i) {
      hd.captured_quantiles[i] = quantile_of_sorted(sorted, kCapturedQuantileLevels[i]);
    }
    result.push_back(std::move(hd));
    step();
  }
  *out = std::move(result);
  return Status::Ok();
}

}  // namespace hyperattn::model
