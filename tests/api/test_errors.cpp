// tests/api/test_errors.cpp: every invalid input gets a Status naming the argument, never a crash.
#include <gtest/gtest.h>

#include <limits>

#include "attention_tester.hpp"

namespace hyperattn::testing {
namespace {

struct Fixture {
  Problem p{{1, 4, 2, 40, 40, 32}, DType::f32, Layout::bhsd, 1};
  AttentionArgs a = p.args();
  AttentionConfig c;
};

void expect_error(const AttentionArgs& a, const AttentionConfig& c, StatusCode code, const std::string& needle) {
  for (bool hyper : {false, true}) {
    const Status s = hyper ? hyper_attention(a, c) : exact_attention(a, c);
    EXPECT_EQ(s.code(), code) << s.message();
    EXPECT_NE(s.message().find(needle), std::string::npos) << "message: " << s.message() << " lacks: " << needle;
  }
}

TEST(Errors, NullData) {
  Fixture f;
  f.a.k.data = nullptr;
  expect_error(f.a, f.c, StatusCode::invalid_argument, "k: data is null");
}
TEST(Errors, ZeroOrNegativeSizes) {
  Fixture f;
  f.a.q.shape[2] = 0;
  expect_error(f.a, f.c, StatusCode::invalid_argument, "q: seq (shape[2]) is 0");
  Fixture g;
  g.a.v.shape[0] = -3;
  expect_error(g.a, g.c, StatusCode::invalid_argument, "v: batch (shape[0]) is -3");
}
TEST(Errors, HeadsNotDivisible) {
  Problem p({1, 3, 2, 40, 40, 32}, DType::f32, Layout::bhsd, 1);
  expect_error(p.args(), {}, StatusCode::invalid_argument, "heads_q is 3; expected a multiple of heads_kv (2)");
}
TEST(Errors, MismatchedShapes) {
  Fixture f;
  f.a.v.shape[2] = 39;
  expect_error(f.a, f.c, StatusCode::invalid_argument, "v: seq_kv is 39; expected the seq of k (40)");
  Fixture g;
  g.a.out.shape[2] = 41;
  expect_error(g.a, g.c, StatusCode::invalid_argument, "out: shape is [1, 4, 41, 32]");
  Fixture h;
  h.a.k.shape[0] = 2;
  expect_error(h.a, h.c, StatusCode::invalid_argument, "batch is 2");
  Fixture i;
  i.a.k.shape[3] = 16;
  expect_error(i.a, i.c, StatusCode::invalid_argument, "k: head_dim is 16");
}
TEST(Errors, UnsupportedHeadDim) {
  Problem p({1, 1, 1, 8, 8, 40}, DType::f32, Layout::bhsd, 1);
  expect_error(p.args(), {}, StatusCode::unsupported, "head_dim is 40");
  Problem q({1, 1, 1, 8, 8, 512}, DType::f32, Layout::bhsd, 1);
  expect_error(q.args(), {}, StatusCode::unsupported, "head_dim is 512");
}
TEST(Errors, DtypeMismatchAndUnsupported) {
  Fixture f;
  f.a.k.dtype = DType::bf16;
  expect_error(f.a, f.c, StatusCode::invalid_argument, "expected the dtype of q");
  Fixture g;
  g.a.q.dtype = g.a.k.dtype = g.a.v.dtype = g.a.out.dtype = DType::f16;
  expect_error(g.a, g.c, StatusCode::unsupported, "dtype f16 is not supported");
}
TEST(Errors, Strides) {
  Fixture f;
  f.a.q.stride[3] = 2;
  expect_error(f.a, f.c, StatusCode::invalid_argument, "q: the head_dim stride is 2; expected 1");
  Fixture g;
  g.a.k.stride[2] = -32;
  expect_error(g.a, g.c, StatusCode::invalid_argument, "k: stride[2] (seq) is -32");
  Fixture h;
  h.a.lse.stride[2] = 0;
  expect_error(h.a, h.c, StatusCode::invalid_argument, "lse: the seq stride is 0");
}
TEST(Errors, OverlappingOutputs) {
  Fixture f;
  f.a.out.stride[2] = 16;  // rows of 32 elements 16 apart
  expect_error(f.a, f.c, StatusCode::invalid_argument, "out: stride[2] (seq) is 16, which makes rows overlap; expected at least 32");
  Fixture g;
  g.a.out.stride[1] = 0;  // every head written to the same rows
  expect_error(g.a, g.c, StatusCode::invalid_argument, "out: stride[1] (heads) is 0, which makes rows overlap");
  Fixture h;
  h.a.lse.stride[1] = 0;
  expect_error(h.a, h.c, StatusCode::invalid_argument, "lse: stride[1] is 0, which makes entries overlap");
}

TEST(Errors, SizesThatOverflow) {
  Fixture f;
  f.a.q.shape[0] = std::numeric_limits<std::int64_t>::max() / 2;
  f.a.q.stride[0] = 1 << 20;
  expect_error(f.a, f.c, StatusCode::invalid_argument, "q: shape");
  Fixture g;
  g.a.k.shape[2] = g.a.v.shape[2] = std::int64_t{1} << 33;
  expect_error(g.a, g.c, StatusCode::invalid_argument, "k: seq is 8589934592; expected at most 2147483647");
}
TEST(Errors, Parameters) {
  Fixture f;
  f.c.block_size = 0;
  expect_error(f.a, f.c, StatusCode::invalid_argument, "config.block_size is 0; expected at least 1");
  f.c.block_size = 256;
  f.c.lsh_bits = 0;
  expect_error(f.a, f.c, StatusCode::invalid_argument, "config.lsh_bits is 0; expected 1..16");
  f.c.lsh_bits = 17;
  expect_error(f.a, f.c, StatusCode::invalid_argument, "config.lsh_bits is 17; expected 1..16");
  f.c.lsh_bits = 7;
  f.c.sample_size = -1;
  expect_error(f.a, f.c, StatusCode::invalid_argument, "config.sample_size is -1");
  f.c.sample_size = 256;
  f.c.min_seq_len = -5;
  expect_error(f.a, f.c, StatusCode::invalid_argument, "config.min_seq_len is -5");
  f.c.min_seq_len = 4096;
  f.c.scale = std::numeric_limits<float>::quiet_NaN();
  expect_error(f.a, f.c, StatusCode::invalid_argument, "config.scale is nan");
  f.c.scale = -1.0f;
  expect_error(f.a, f.c, StatusCode::invalid_argument, "config.scale is -1");
  f.c.scale = 0.0f;
  f.c.threads = -2;
  expect_error(f.a, f.c, StatusCode::invalid_argument, "config.threads is -2");
}
TEST(Errors, InjectedRandomness) {
  Fixture f;
  f.c.block_size = 8;
  f.c.sample_size = 4;
  f.c.min_seq_len = 0;
  std::vector<std::int32_t> samples(static_cast<std::size_t>(4 * 5 * 4), 3);
  samples[7] = 40;
  InjectedRandomness inj;
  inj.samples = samples.data();
  Status s = hyper_attention(f.a, f.c, inj);
  EXPECT_EQ(s.code(), StatusCode::invalid_argument);
  EXPECT_NE(s.message().find("injected.samples[7] is 40; expected a key position in [0, 40)"), std::string::npos) << s.message();
  samples[7] = 3;
  f.c.causal = true;
  s = hyper_attention(f.a, f.c, inj);
  EXPECT_NE(s.message().find("injected.samples: given for a causal problem"), std::string::npos) << s.message();
  f.c.causal = false;
  std::vector<float> proj(static_cast<std::size_t>(2 * 32 * 7), 1.0f);
  proj[5] = INFINITY;
  InjectedRandomness inj2;
  inj2.projections = proj.data();
  s = hyper_attention(f.a, f.c, inj2);
  EXPECT_NE(s.message().find("injected.projections[5] is inf"), std::string::npos) << s.message();
}
TEST(Presets, PresetsKeepTheKeysPerQuery) {
  AttentionConfig c;
  c.block_size = 64;
  c.sample_size = 64;
  c.sampling = Sampling::value_norm;
  c.sink_keys = 5;
  ASSERT_TRUE(apply_preset("paper", &c).ok());
  EXPECT_EQ(c.sampling, Sampling::uniform);
  EXPECT_EQ(c.sink_keys, 0);
  EXPECT_EQ(c.block_size + c.sample_size, 128);
  ASSERT_TRUE(apply_preset("stratified", &c).ok());
  EXPECT_EQ(c.sampling, Sampling::stratified);
  EXPECT_EQ(c.block_size, 16);
  EXPECT_EQ(c.sample_size, 112);
  // stratified-window at 128 keys and leaves of 1024: window 32, whose 32 * 33 / 2 = 528 extra
  // keys per leaf are a mean of 0.52 per row, charged as 1 sample.
  c.min_seq_len = 1024;
  ASSERT_TRUE(apply_preset("stratified-window", &c).ok());
  EXPECT_EQ(c.sampling, Sampling::stratified);
  EXPECT_EQ(c.block_size, 32);  // a quarter of the keys
  EXPECT_EQ(c.local_window, 32);
  EXPECT_EQ(c.sample_size, 95);
  c.block_size = 256;  // 512 keys, leaves of 4096: window 128, 128 * 129 / 2 / 4096 = 2.02 -> 3
  c.sample_size = 256;
  c.min_seq_len = 4096;
  ASSERT_TRUE(apply_preset("stratified-window", &c).ok());
  EXPECT_EQ(c.block_size, 128);
  EXPECT_EQ(c.local_window, 128);
  EXPECT_EQ(c.sample_size, 381);
  ASSERT_TRUE(apply_preset("paper", &c).ok());
  EXPECT_EQ(c.local_window, 0);
  const Status s = apply_preset("best", &c);
  EXPECT_EQ(s.code(), StatusCode::invalid_argument);
  EXPECT_NE(s.message().find("preset is \"best\""), std::string::npos) << s.message();
}

TEST(Errors, LshBlocksNeedsStorage) {
  Fixture f;
  std::vector<std::int32_t> kb(80);
  const Status s = lsh_blocks(f.a, f.c, {}, nullptr, kb.data());
  EXPECT_EQ(s.code(), StatusCode::invalid_argument);
  EXPECT_NE(s.message().find("query_block: null"), std::string::npos);
}

}  // namespace
}  // namespace hyperattn::testing
