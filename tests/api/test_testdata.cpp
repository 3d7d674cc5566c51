// tests/api/test_testdata.cpp: the independent test vectors of ../shared/testdata/hyper_noncausal
// (copied to tests/data/hyper_noncausal), randomness injected, reproduced to fp32 rounding by the
// fast path and by the double reference.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "attention_tester.hpp"
#include "io/array_io.hpp"

namespace hyperattn::testing {
namespace {

const std::filesystem::path kDir = std::filesystem::path(HYPERATTN_SOURCE_DIR) / "tests/data/hyper_noncausal";

io::Array load(const std::filesystem::path& p) {
  io::Array a;
  const Status s = io::read_npy(p.string(), &a);
  EXPECT_TRUE(s.ok()) << s.message();
  return a;
}

class TestVectors : public ::testing::TestWithParam<std::string> {};

TEST_P(TestVectors, Reproduced) {
  const auto dir = kDir / GetParam();
  std::ifstream pf(dir / "params.json");
  ASSERT_TRUE(pf.good()) << dir;
  const auto params = nlohmann::json::parse(pf);
  const std::int64_t hq = params["heads_q"], hkv = params["heads_kv"], nq = params["seq_q"], nk = params["seq_kv"],
                     d = params["head_dim"];
  std::vector<float> q = load(dir / "q.npy").to_f32(), k = load(dir / "k.npy").to_f32(), v = load(dir / "v.npy").to_f32();
  std::vector<float> proj = load(dir / "proj.npy").to_f32();
  io::Array samples_arr = load(dir / "samples.npy");
  ASSERT_EQ(samples_arr.type, io::ElemType::i32);
  std::vector<std::int32_t> samples(static_cast<std::size_t>(samples_arr.numel()));
  std::memcpy(samples.data(), samples_arr.bytes.data(), samples.size() * 4);
  io::Array out_ref = load(dir / "out.npy"), lse_ref = load(dir / "lse.npy");
  ASSERT_EQ(out_ref.type, io::ElemType::f64);
  const double* expect_out = reinterpret_cast<const double*>(out_ref.bytes.data());
  const double* expect_lse = reinterpret_cast<const double*>(lse_ref.bytes.data());

  AttentionConfig cfg;
  cfg.block_size = params["block_size"];
  cfg.sample_size = params["sample_size"];
  cfg.lsh_bits = params["lsh_bits"];
  cfg.scale = params["scale"].get<float>();
  cfg.min_seq_len = 0;
  cfg.bucket_order = params["bucket_order"] == "gray_rank" ? BucketOrder::gray_rank : BucketOrder::reference_gray;
  cfg.threads = 2;
  std::vector<float> out(static_cast<std::size_t>(hq * nq * d)), lse(static_cast<std::size_t>(hq * nq));
  AttentionArgs args{TensorView::bhsd(q.data(), DType::f32, 1, hq, nq, d), TensorView::bhsd(k.data(), DType::f32, 1, hkv, nk, d),
                     TensorView::bhsd(v.data(), DType::f32, 1, hkv, nk, d), TensorView::bhsd(out.data(), DType::f32, 1, hq, nq, d),
                     LseView::contiguous(lse.data(), hq, nq)};
  InjectedRandomness inj{proj.data(), samples.data()};
  ASSERT_TRUE(hyper_attention(args, cfg, inj).ok());
  reference::Output ref;
  ASSERT_TRUE(reference::hyper_attention(args, cfg, inj, &ref).ok());
  const double tol = fp32_out_tolerance(d, cfg.block_size + cfg.sample_size);
  double max_fast = 0, max_ref = 0, max_lse = 0;
  for (std::size_t i = 0; i < out.size(); ++i) {
    max_fast = std::max(max_fast, std::abs(out[i] - expect_out[i]));
    max_ref = std::max(max_ref, std::abs(ref.out[i] - expect_out[i]));
  }
  for (std::size_t i = 0; i < lse.size(); ++i) max_lse = std::max(max_lse, std::abs(lse[i] - expect_lse[i]));
  EXPECT_LE(max_fast, tol);
  // Double against double, but the scale travels as fp32 (AttentionConfig::scale): a relative
  // error of 2^-24 in every score (|s| <= ~10), so |dO| <= 2 * 10 * 2^-24 * max|v| (~5) ~ 6e-6.
  EXPECT_LE(max_ref, 2 * 10 * 5 * 0x1.0p-24);
  EXPECT_LE(max_lse, 1e-4);
}

INSTANTIATE_TEST_SUITE_P(HyperNonCausal, TestVectors,
                         ::testing::Values("cross_nq300_nk1000", "ragged_n777_b100_m17_d32", "reference_order_n1024",
                                           "self_gqa2_n1000_b128_m32"));

}  // namespace
}  // namespace hyperattn::testing
