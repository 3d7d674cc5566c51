// tests/api/test_conformance.cpp: the conformance table, operation x problem, every entry checked
// against the double-precision reference with the tolerances of attention_tester.hpp. The ISA
// axis comes from ctest: test_api reruns under every forced kernel (isa_<name>.Conformance.*,
// tests/CMakeLists.txt); the CUDA backend runs the same reference checks in tests/cuda.
// The per-operation suites (test_exact, test_hyper, test_backward) probe each operation's edges;
// this table is the one place where every operation meets every kind of problem.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "attention_tester.hpp"

namespace hyperattn::testing {
namespace {

enum class Operation { exact_forward, hyper_forward, exact_backward, hyper_backward };

const char* name_of(Operation op) {
  switch (op) {
    case Operation::exact_forward: return "exact_forward";
    case Operation::hyper_forward: return "hyper_forward";
    case Operation::exact_backward: return "exact_backward";
    case Operation::hyper_backward: return "hyper_backward";
  }
  return "?";
}

bool is_hyper(Operation op) { return op == Operation::hyper_forward || op == Operation::hyper_backward; }
bool is_backward(Operation op) { return op == Operation::exact_backward || op == Operation::hyper_backward; }

struct ProblemKind {
  const char* name;
  Shape shape;
  DType dtype;
  Layout layout;
  bool causal;
  Sampling sampling;
  std::int64_t sinks, window;
};

// Small enough for every ISA, the scalar kernel and the sanitizers; large enough that HyperAttention
// approximates (min_seq_len 64, blocks and samples of 16) and the causal recursion has levels.
// The reference re-derives uniform and stratified draws; value_norm and position_stratified are
// held to their estimators' statistics in test_hyper.cpp.
const std::vector<ProblemKind>& kinds() {
  static const std::vector<ProblemKind> k = {
      {"f32_square", {1, 2, 2, 320, 320, 64}, DType::f32, Layout::bhsd, false, Sampling::uniform, 0, 0},
      {"f32_causal_gqa", {1, 4, 2, 300, 300, 64}, DType::f32, Layout::bshd, true, Sampling::uniform, 0, 0},
      {"f32_ragged_causal", {2, 2, 1, 177, 301, 32}, DType::f32, Layout::padded, true, Sampling::stratified, 0, 0},
      {"bf16_causal_window_sinks", {1, 3, 1, 330, 330, 64}, DType::bf16, Layout::bshd, true, Sampling::stratified, 8, 32},
      {"f32_d128_sinks", {1, 2, 1, 260, 260, 128}, DType::f32, Layout::bhsd, false, Sampling::uniform, 4, 0},
      {"f32_padded_causal_window", {1, 2, 2, 290, 290, 64}, DType::f32, Layout::padded, true, Sampling::stratified, 0, 16},
  };
  return k;
}

AttentionConfig config_of(const ProblemKind& k) {
  return small_hyper_config({.causal = k.causal, .sampling = k.sampling, .sinks = k.sinks, .window = k.window, .keys = 16,
                             .min_seq_len = 64, .seed = 29, .threads = 2});
}

void check_forward(Operation op, const ProblemKind& k) {
  Problem p(k.shape, k.dtype, k.layout, 71);
  const AttentionConfig c = config_of(k);
  reference::Output ref;
  if (is_hyper(op)) {
    ASSERT_TRUE(hyper_attention(p.args(), c).ok());
    ASSERT_TRUE(reference::hyper_attention(p.args(), c, {}, &ref).ok());
  } else {
    ASSERT_TRUE(exact_attention(p.args(), c).ok());
    ASSERT_TRUE(reference::exact_attention(p.args(), c, &ref).ok());
  }
  // Sums over at most all keys (exact) or a causal leaf's keys plus every level's block and samples.
  const std::int64_t keys = is_hyper(op) ? 4 * c.min_seq_len : k.shape.seq_kv;
  double tol = fp32_out_tolerance(k.shape.head_dim, keys);
  if (k.dtype == DType::bf16) tol += 5.0 * 0x1.0p-9;  // the output rounded once to bf16 (|out| <~ 5)
  const Error e = compare(p, ref);
  EXPECT_LE(e.out_max_abs, tol);
  EXPECT_LE(e.lse_max_abs, 1e-4);
}

void check_backward(Operation op, const ProblemKind& k) {
  GradProblem gp(k.shape, k.dtype, k.layout, 73);
  const AttentionConfig c = config_of(k);
  reference::KeySets sets;
  if (is_hyper(op)) {
    ASSERT_TRUE(hyper_attention(gp.p.args(), c).ok());
    const Status s = hyper_attention_backward(gp.grad_args(), c);
    ASSERT_TRUE(s.ok()) << s.message();
    ASSERT_TRUE(reference::hyper_key_sets(gp.p.args(), c, {}, &sets).ok());
  } else {
    ASSERT_TRUE(exact_attention(gp.p.args(), c).ok());
    const Status s = exact_attention_backward(gp.grad_args(), c);
    ASSERT_TRUE(s.ok()) << s.message();
    ASSERT_TRUE(reference::exact_key_sets(gp.p.args(), c, &sets).ok());
  }
  const std::int64_t keys = is_hyper(op) ? 4 * c.min_seq_len : k.shape.seq_kv;
  expect_gradients_match(gp, gp.reference_gradients(sets, c), grad_tolerance(k.dtype, DType::f32, k.shape.head_dim, keys),
                         name_of(op));
}

TEST(Conformance, EveryOperationOnEveryKindOfProblemMatchesTheReference) {
  for (Operation op : {Operation::exact_forward, Operation::hyper_forward, Operation::exact_backward,
                       Operation::hyper_backward})
    for (const ProblemKind& k : kinds()) {
      SCOPED_TRACE(std::string(name_of(op)) + " on " + k.name);
      if (is_backward(op)) check_backward(op, k);
      else check_forward(op, k);
    }
}

}  // namespace
}  // namespace hyperattn::testing
