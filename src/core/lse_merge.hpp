// src/core/lse_merge.hpp: the log-sum-exp merge of a row's partial results (specification §3),
// written once for the CPU kernels (cpu/attention_kernel.hpp, merge_row) and the CUDA epilogues
// (cuda/kernels/common.cuh, RowWriter::merge_weights).
//
// A partial result (O_new, L_new) merges into an accumulated (O_acc, L_acc):
//   mx = max(L_acc, L_new), w_i = e^(L_i - mx),
//   O = (w_old O_acc + w_new O_new) * inv with inv = 1 / (w_old + w_new),  L = mx + log(w_old + w_new).
// An empty partial result (L_new = -inf: it saw no key, O_new = 0) leaves the accumulator as it is;
// an empty accumulator takes the new one; two empty ones stay empty (L = -inf, O = 0); a NaN in
// either LSE makes the weights, O and L NaN. One of the two weights is e^0 = 1 exactly (C Annex F),
// so only the other needs the exponential.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/host_device.hpp"

namespace hyperattn::core {

enum class MergeKind : std::uint8_t {
  keep,     // L_new = -inf: the accumulator stays as it is
  replace,  // L_acc = -inf: the accumulator becomes (O_new, L_new)
  combine,  // O = (w_old O_acc + w_new O_new) * inv, L = lse
};

struct LseMerge {
  MergeKind kind = MergeKind::keep;
  float w_old = 1.0f, w_new = 0.0f, inv = 1.0f;
  float lse = 0.0f;  // the merged LSE
};

HYPERATTN_HD inline LseMerge lse_merge(float l_old, float l_new) {
  if (l_new == -HUGE_VALF) return {MergeKind::keep, 1.0f, 0.0f, 1.0f, l_old};
  if (l_old == -HUGE_VALF) return {MergeKind::replace, 0.0f, 1.0f, 1.0f, l_new};
  const float mx = l_old < l_new ? l_new : l_old;  // std::max(l_old, l_new): NaN l_new gives l_old, then NaN weights
  const float d_old = l_old - mx, d_new = l_new - mx;
  const float w_old = d_old == 0.0f ? 1.0f : expf(d_old);
  const float w_new = d_new == 0.0f ? 1.0f : expf(d_new);
  return {MergeKind::combine, w_old, w_new, 1.0f / (w_old + w_new), mx + logf(w_old + w_new)};
}

}  // namespace hyperattn::core
