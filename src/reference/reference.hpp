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
