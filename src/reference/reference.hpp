// src/reference/reference.hpp: naive, single-threaded, double-precision references of exact
// attention and HyperAttention (the literal recursion of the specification, same random streams).
// Slow by design: O(n_q * keys * d) with every score materialised per row. Tests only.
#pragma once

#include <cstdint>
#include <vector>

#include "hyperattn/attention.hpp"

namespace hyperattn::reference {

struct Output {
  std::vector<double> out;  // [batch, heads_q, seq_q, head_dim]
  std::vector<double> lse;  // [batch, heads_q, seq_q]
};

// One entry of a query row's key set: a key position and its additive bias on the scaled score
// (log of a sample's weight; -inf for a key masked out). A row's output is attention over its
// whole set, the union with multiplicity of the key sets of every part it belongs to.
struct KeyEntry {
  std::int64_t key;
  double bias;
};
using KeySets = std::vector<std::vector<KeyEntry>>;  // [batch, heads_q, seq_q]

// A problem in double: q [batch, heads_q, seq_q, d], k and v [batch, heads_kv, seq_kv, d].
struct DoubleProblem {
  std::vector<double> q, k, v;
  std::int64_t batch = 0, heads_q = 0, heads_kv = 0, seq_q = 0, seq_kv = 0;
  int d = 0;
  double scale = 0.0;
};
DoubleProblem to_problem(const AttentionArgs& args, const AttentionConfig& config);

// The key sets of exact attention and of HyperAttention (uniform or stratified sampling, sinks,
// window), re-derived by this reference's recursion.
Status exact_key_sets(const AttentionArgs& args, const AttentionConfig& config, KeySets* sets);
Status hyper_key_sets(const AttentionArgs& args, const AttentionConfig& config, const InjectedRandomness& injected,
                      KeySets* sets);

// Attention of every row over its key set (the closed form of the estimator).
Output attend_sets(const DoubleProblem& p, const KeySets& sets);

struct Gradients {
  std::vector<double> dq, dk, dv;  // the shapes of q, k, v
};
// The closed-form gradient of L = sum <d_out, out> + sum d_lse * lse for attention over fixed key
// sets (d_lse may be empty: zero).
Gradients backward_sets(const DoubleProblem& p, const KeySets& sets, const std::vector<double>& d_out,
                        const std::vector<double>& d_lse);
// L itself (for finite differences).
double loss_sets(const DoubleProblem& p, const KeySets& sets, const std::vector<double>& d_out,
                 const std::vector<double>& d_lse);

// Attention of one query row over an explicit key set: keys[i] with additive bias[i] (may be
// empty: then out = 0, lse = -inf). q [d], k/v [n_k, d] rows in double.
void attend_row(const double* q, const std::vector<const double*>& k_rows,
                const std::vector<const double*>& v_rows, const std::vector<double>& bias, int d,
                double scale, double* out, double* lse);

Status exact_attention(const AttentionArgs& args, const AttentionConfig& config, Output* result);

// Uniform and stratified sampling, attention sinks (value_norm is checked statistically against exact attention instead).
Status hyper_attention(const AttentionArgs& args, const AttentionConfig& config,
                       const InjectedRandomness& injected, Output* result);

// Reads a view into double [batch, heads, seq, head_dim].
std::vector<double> to_double(const TensorView& t);

}  // namespace hyperattn::reference
