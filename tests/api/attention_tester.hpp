// tests/api/attention_tester.hpp: builds random attention problems in any layout and dtype,
// runs the library and the double reference, and measures the error; GradProblem adds the
// backward pass's incoming gradients and outputs.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "core/bfloat16.hpp"
#include "hyperattn/attention.hpp"
#include "reference/reference.hpp"

namespace hyperattn::testing {

enum class Layout { bhsd, bshd, padded };  // padded: a view into a larger buffer (extra columns and rows)

struct Shape {
  std::int64_t batch = 1, heads_q = 1, heads_kv = 1, seq_q = 64, seq_kv = 64, head_dim = 64;
};

// Owns the storage of one [batch, heads, seq, head_dim] tensor and a view of it.
struct Tensor {
  std::vector<std::uint8_t> storage;
  TensorView view;

  Tensor(DType dtype, std::int64_t b, std::int64_t h, std::int64_t n, std::int64_t d, Layout layout) {
    const std::size_t es = size_of(dtype);
    std::int64_t elems;
    std::int64_t off = 0;
    if (layout == Layout::bhsd) {
      elems = b * h * n * d;
      view = TensorView::bhsd(nullptr, dtype, b, h, n, d);
    } else if (layout == Layout::bshd) {
      elems = b * n * h * d;
      view = TensorView::bshd(nullptr, dtype, b, n, h, d);
    } else {  // rows of d + 16 elements, heads and batches separated by gaps, 5 elements offset
      const std::int64_t row = d + 16, head = (n + 3) * row, bat = (h + 1) * head;
      elems = b * bat + 5;
      view = {nullptr, dtype, {b, h, n, d}, {bat, head, row, 1}};
      off = 5;
    }
    storage.assign(static_cast<std::size_t>(elems) * es, 0xCD);  // poison
    view.data = storage.data() + off * static_cast<std::int64_t>(es);
  }
  std::int64_t offset(std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t c) const {
    return b * view.stride[0] + h * view.stride[1] + i * view.stride[2] + c;
  }
  void set(std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t c, float x) {
    if (view.dtype == DType::f32)
      static_cast<float*>(view.data)[offset(b, h, i, c)] = x;
    else
      static_cast<std::uint16_t*>(view.data)[offset(b, h, i, c)] = f32_to_bf16_bits(x);
  }
  float get(std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t c) const {
    return view.dtype == DType::f32 ? static_cast<const float*>(view.data)[offset(b, h, i, c)]
                                    : bf16_bits_to_f32(static_cast<const std::uint16_t*>(view.data)[offset(b, h, i, c)]);
  }
  void fill_normal(std::mt19937_64& gen, float stddev) {
    std::normal_distribution<float> nd(0.0f, stddev);
    for (std::int64_t b = 0; b < view.shape[0]; ++b)
      for (std::int64_t h = 0; h < view.shape[1]; ++h)
        for (std::int64_t i = 0; i < view.shape[2]; ++i)
          for (std::int64_t c = 0; c < view.shape[3]; ++c) set(b, h, i, c, nd(gen));
  }
};

struct Problem {
  Shape shape;
  Tensor q, k, v, out;
  std::vector<float> lse;  // [batch, heads_q, seq_q]

  // q and k with standard deviation `qk_std` (larger: peakier attention), v standard normal.
  Problem(Shape s, DType dtype, Layout layout, std::uint64_t seed, float qk_std = 1.0f)
      : shape(s),
        q(dtype, s.batch, s.heads_q, s.seq_q, s.head_dim, layout),
        k(dtype, s.batch, s.heads_kv, s.seq_kv, s.head_dim, layout),
        v(dtype, s.batch, s.heads_kv, s.seq_kv, s.head_dim, layout),
        out(dtype, s.batch, s.heads_q, s.seq_q, s.head_dim, layout),
        lse(static_cast<std::size_t>(s.batch * s.heads_q * s.seq_q), std::nanf("")) {
    std::mt19937_64 gen(seed);
    q.fill_normal(gen, qk_std);
    k.fill_normal(gen, qk_std);
    v.fill_normal(gen, 1.0f);
  }
  AttentionArgs args() {
    return {q.view, k.view, v.view, out.view, LseView::contiguous(lse.data(), shape.heads_q, shape.seq_q)};
  }
};

// The gradients of one problem: dO and dLSE drawn at random, dq/dk/dv written by the library.
struct GradProblem {
  Problem p;
  Tensor d_out, dq, dk, dv;
  std::vector<float> d_lse;

  GradProblem(Shape s, DType dtype, Layout layout, std::uint64_t seed, DType grad_dtype = DType::f32)
      : p(s, dtype, layout, seed),
        d_out(dtype, s.batch, s.heads_q, s.seq_q, s.head_dim, layout),
        dq(grad_dtype, s.batch, s.heads_q, s.seq_q, s.head_dim, layout),
        dk(grad_dtype, s.batch, s.heads_kv, s.seq_kv, s.head_dim, layout),
        dv(grad_dtype, s.batch, s.heads_kv, s.seq_kv, s.head_dim, layout),
        d_lse(static_cast<std::size_t>(s.batch * s.heads_q * s.seq_q)) {
    std::mt19937_64 gen(seed + 1000);
    d_out.fill_normal(gen, 1.0f);
    std::normal_distribution<float> nd(0.0f, 0.5f);
    for (float& x : d_lse) x = nd(gen);
  }
  AttentionGradArgs grad_args(bool with_d_lse = true) {
    AttentionGradArgs g;
    const AttentionArgs a = p.args();
    g.q = a.q;
    g.k = a.k;
    g.v = a.v;
    g.out = a.out;
    g.lse = a.lse;
    g.d_out = d_out.view;
    if (with_d_lse) g.d_lse = LseView::contiguous(d_lse.data(), p.shape.heads_q, p.shape.seq_q);
    g.dq = dq.view;
    g.dk = dk.view;
    g.dv = dv.view;
    return g;
  }
  std::vector<double> d_out_double() const { return reference::to_double(d_out.view); }
  std::vector<double> d_lse_double() const { return {d_lse.begin(), d_lse.end()}; }
  // The closed-form gradients over the reference's key sets, with this problem's dO (and dLSE).
  reference::Gradients reference_gradients(const reference::KeySets& sets, const AttentionConfig& c, bool with_d_lse = true) {
    return reference::backward_sets(reference::to_problem(p.args(), c), sets, d_out_double(),
                                    with_d_lse ? d_lse_double() : std::vector<double>{});
  }
};

// A small HyperAttention config for tests: blocks and samples of `keys` each, attention exact
// below min_seq_len, the rest as named (designated initializers: {.causal = true, .keys = 16}).
struct SmallHyper {
  bool causal = false;
  Sampling sampling = Sampling::uniform;
  std::int64_t sinks = 0, window = 0;
  std::int64_t keys = 32;  // block_size = sample_size
  std::int64_t min_seq_len = 64;
  int lsh_bits = 7;
  std::uint64_t seed = 0;
  int threads = 0;
};

inline AttentionConfig small_hyper_config(const SmallHyper& s) {
  AttentionConfig c;
  c.causal = s.causal;
  c.threads = s.threads;
  c.lsh_bits = s.lsh_bits;
  c.block_size = s.keys;
  c.sample_size = s.keys;
  c.min_seq_len = s.min_seq_len;
  c.seed = s.seed;
  c.sampling = s.sampling;
  c.sink_keys = s.sinks;
  c.local_window = s.window;
  return c;
}

// max |out - ref| over all elements, and max |lse - ref| (inf where exactly one is -inf).
struct Error {
  double out_max_abs = 0.0, lse_max_abs = 0.0, out_rel_fro = 0.0;
};

inline Error compare(const Problem& p, const reference::Output& ref) {
  Error e;
  const Shape& s = p.shape;
  double num = 0.0, den = 0.0;
  std::size_t o = 0;
  for (std::int64_t b = 0; b < s.batch; ++b)
    for (std::int64_t h = 0; h < s.heads_q; ++h)
      for (std::int64_t i = 0; i < s.seq_q; ++i) {
        const std::size_t li = static_cast<std::size_t>((b * s.heads_q + h) * s.seq_q + i);
        const double l = p.lse[li], lr = ref.lse[li];
        const double dl = (std::isinf(l) && std::isinf(lr) && (l < 0) == (lr < 0)) ? 0.0 : std::abs(l - lr);
        e.lse_max_abs = std::max(e.lse_max_abs, std::isnan(dl) ? INFINITY : dl);
        for (std::int64_t c = 0; c < s.head_dim; ++c, ++o) {
          const double x = p.out.get(b, h, i, c), r = ref.out[o];
          const double d = std::abs(x - r);
          e.out_max_abs = std::max(e.out_max_abs, std::isnan(d) ? INFINITY : d);
          num += (x - r) * (x - r);
          den += r * r;
        }
      }
  e.out_rel_fro = std::sqrt(num / std::max(den, 1e-300));
  return e;
}

// Tolerances derived from the arithmetic (docs/numerics.md):
//  fp32: each score carries a relative error ~ d * eps32 in its dot product, times |s| <~ 10;
//        exp turns an absolute score error into a relative weight error; out is a convex
//        combination of v (|v| <~ 5), so |dout| <~ 5 * 2 * (d * eps32 * 10 + keys * eps32).
//  bf16 output: one more rounding of out to 8 bits: |out| * 2^-8.
inline double fp32_out_tolerance(std::int64_t head_dim, std::int64_t keys) {
  const double eps = 0x1.0p-24;
  return 10.0 * (static_cast<double>(head_dim) * eps * 10.0 + static_cast<double>(keys) * eps) + 1e-6;
}

// ---- gradients --------------------------------------------------------------------------------

inline std::vector<double> values(const Tensor& t) { return reference::to_double(t.view); }

// max |x - ref| / max |ref| (1 where ref is all zero and x is not).
inline double relative_max_error(const std::vector<double>& x, const std::vector<double>& ref) {
  double err = 0.0, mag = 0.0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double e = std::abs(x[i] - ref[i]);
    err = std::max(err, std::isnan(e) ? INFINITY : e);
    mag = std::max(mag, std::abs(ref[i]));
  }
  return mag > 0.0 ? err / mag : (err > 0.0 ? 1.0 : 0.0);
}

// Tolerance of a gradient relative to its largest element (docs/numerics.md, "Backward"): every
// term passes through fp32 dot products of length d and sums over up to `keys` keys (or rows), each
// contributing at most eps32 relative error of the terms' magnitude; the terms' magnitudes exceed
// the result's largest element by at most ~8x on these unit-variance problems. bf16 inputs add the
// rounding of O (used in delta = <dO, O>) and of the gradients to 8 bits: 2^-8 each.
inline double grad_tolerance(DType dtype, DType grad_dtype, std::int64_t head_dim, std::int64_t keys) {
  const double eps = 0x1.0p-24;
  double tol = 8.0 * 4.0 * static_cast<double>(head_dim + keys) * eps;
  if (dtype == DType::bf16) tol += 3.0 * 0x1.0p-8;
  if (grad_dtype == DType::bf16) tol += 0x1.0p-8;
  return tol;
}

inline void expect_gradients_match(GradProblem& gp, const reference::Gradients& ref, double tol, const char* what) {
  EXPECT_LE(relative_max_error(values(gp.dq), ref.dq), tol) << what << ": dq";
  EXPECT_LE(relative_max_error(values(gp.dk), ref.dk), tol) << what << ": dk";
  EXPECT_LE(relative_max_error(values(gp.dv), ref.dv), tol) << what << ": dv";
}

}  // namespace hyperattn::testing
