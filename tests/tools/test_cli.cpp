// tests/tools/test_cli.cpp: the `hyperattn` tool as a user runs it: files in, files out, exit codes.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sys/stat.h>
#include <sys/wait.h>

#include <nlohmann/json.hpp>

#include "io/array_io.hpp"
#include "reference/reference.hpp"

namespace hyperattn {
namespace {

namespace fs = std::filesystem;

struct Cli : ::testing::Test {
  fs::path dir;
  void SetUp() override {
    dir = fs::temp_directory_path() / ("hyperattn_cli_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  void TearDown() override { fs::remove_all(dir); }
  std::string p(const std::string& name) const { return (dir / name).string(); }

  // Exit code of `hyperattn <args>`, output to dir/stdout and dir/stderr.
  // With timeout_s > 0, a run that hangs is killed and reads as exit code 124.
  int run(const std::string& args, int timeout_s = 0) const {
    const std::string cmd = (timeout_s > 0 ? "timeout " + std::to_string(timeout_s) + " " : std::string()) +
                            std::string(HYPERATTN_CLI) + " " + args + " > " + p("stdout") + " 2> " + p("stderr");
    const int rc = std::system(cmd.c_str());
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  }
  std::string err() const {
    std::ifstream f(p("stderr"));
    return {std::istreambuf_iterator<char>(f), {}};
  }
  std::vector<float> random_npy(const std::string& name, std::vector<std::int64_t> shape, std::uint64_t seed) const {
    std::int64_t n = 1;
    for (auto s : shape) n *= s;
    std::vector<float> x(static_cast<std::size_t>(n));
    std::mt19937_64 gen(seed);
    std::normal_distribution<float> nd;
    for (float& v : x) v = nd(gen);
    EXPECT_TRUE(io::write_npy(p(name), io::Array::from_f32(shape, x.data())).ok());
    return x;
  }
  std::vector<float> read(const std::string& name) const {
    io::Array a;
    const Status s = io::read_npy(p(name), &a);
    EXPECT_TRUE(s.ok()) << s.message();
    return a.to_f32();
  }
  std::string bytes(const std::string& name) const {
    std::ifstream f(p(name), std::ios::binary);
    return {std::istreambuf_iterator<char>(f), {}};
  }
};

// Exact attention in double of [heads_q, n_q, d] against [heads_kv, n_k, d].
reference::Output exact_ref(std::vector<float>& q, std::vector<float>& k, std::vector<float>& v, std::int64_t hq, std::int64_t hkv,
                            std::int64_t nq, std::int64_t nk, std::int64_t d, bool causal) {
  std::vector<float> out(q.size());
  AttentionArgs a{TensorView::bhsd(q.data(), DType::f32, 1, hq, nq, d), TensorView::bhsd(k.data(), DType::f32, 1, hkv, nk, d),
                  TensorView::bhsd(v.data(), DType::f32, 1, hkv, nk, d), TensorView::bhsd(out.data(), DType::f32, 1, hq, nq, d), {}};
  AttentionConfig c;
  c.causal = causal;
  reference::Output r;
  EXPECT_TRUE(reference::exact_attention(a, c, &r).ok());
  return r;
}

TEST_F(Cli, ExactMatchesDoublePrecision) {
  auto q = random_npy("q.npy", {4, 301, 64}, 1), k = random_npy("k.npy", {2, 517, 64}, 2), v = random_npy("v.npy", {2, 517, 64}, 3);
  for (bool causal : {false, true}) {
    ASSERT_EQ(run("run --q " + p("q.npy") + " --k " + p("k.npy") + " --v " + p("v.npy") + " --out " + p("o.npy") + " --lse " +
                  p("l.npy") + " --exact --threads 2" + (causal ? " --causal" : "")), 0) << err();
    const auto o = read("o.npy");
    const auto ref = exact_ref(q, k, v, 4, 2, 301, 517, 64, causal);
    double mx = 0;
    for (std::size_t i = 0; i < o.size(); ++i) mx = std::max(mx, std::abs(o[i] - ref.out[i]));
    EXPECT_LE(mx, 10.0 * (10.0 * 64 + 517) * 0x1.0p-24);  // docs/numerics.md
    EXPECT_EQ(read("l.npy").size(), 4u * 301);
  }
}

TEST_F(Cli, FullBlockWithoutSamplesIsExact) {
  auto q = random_npy("q.npy", {2, 300, 32}, 4), k = random_npy("k.npy", {2, 700, 32}, 5), v = random_npy("v.npy", {2, 700, 32}, 6);
  for (bool causal : {false, true}) {
    ASSERT_EQ(run("run --q " + p("q.npy") + " --k " + p("k.npy") + " --v " + p("v.npy") + " --out " + p("o.npy") +
                  " --block-size 700 --sample-size 0 --min-seq-len 16" + (causal ? " --causal" : "")), 0) << err();
    const auto o = read("o.npy");
    const auto ref = exact_ref(q, k, v, 2, 2, 300, 700, 32, causal);
    double mx = 0;
    for (std::size_t i = 0; i < o.size(); ++i) mx = std::max(mx, std::abs(o[i] - ref.out[i]));
    EXPECT_LE(mx, 10.0 * (10.0 * 32 + 700) * 0x1.0p-24);
  }
}

TEST_F(Cli, ThreadCountGivesIdenticalBytes) {
  random_npy("q.npy", {2, 3000, 64}, 7), random_npy("k.npy", {1, 3000, 64}, 8), random_npy("v.npy", {1, 3000, 64}, 9);
  const std::string in = "run --q " + p("q.npy") + " --k " + p("k.npy") + " --v " + p("v.npy") + " --causal --block-size 64 --sample-size 64 --min-seq-len 256 --seed 3";
  ASSERT_EQ(run(in + " --threads 1 --out " + p("o1.npy")), 0) << err();
  ASSERT_EQ(run(in + " --threads 2 --out " + p("o2.npy")), 0) << err();
  EXPECT_EQ(bytes("o1.npy"), bytes("o2.npy"));
}

TEST_F(Cli, SafetensorsInput) {
  auto q = random_npy("q.npy", {2, 100, 32}, 10), k = random_npy("k.npy", {2, 100, 32}, 11), v = random_npy("v.npy", {2, 100, 32}, 12);
  std::map<std::string, io::Array> t{{"q", io::Array::from_f32({2, 100, 32}, q.data())},
                                     {"k", io::Array::from_f32({2, 100, 32}, k.data())},
                                     {"v", io::Array::from_f32({2, 100, 32}, v.data())}};
  ASSERT_TRUE(io::write_safetensors(p("qkv.safetensors"), t).ok());
  ASSERT_EQ(run("run --in " + p("qkv.safetensors") + " --out " + p("o.npy") + " --exact"), 0) << err();
  ASSERT_EQ(run("run --q " + p("q.npy") + " --k " + p("k.npy") + " --v " + p("v.npy") + " --out " + p("o2.npy") + " --exact"), 0) << err();
  EXPECT_EQ(bytes("o.npy"), bytes("o2.npy"));
}

TEST_F(Cli, MalformedAndMismatchedInputsAreRefused) {
  random_npy("q.npy", {2, 100, 32}, 13), random_npy("k.npy", {2, 100, 32}, 14), random_npy("v.npy", {2, 90, 32}, 15);
  const std::string kv = " --k " + p("k.npy") + " --out " + p("o.npy");
  EXPECT_EQ(run("run --q " + p("q.npy") + kv + " --v " + p("v.npy")), 2);
  EXPECT_NE(err().find("v: seq_kv is 90; expected the seq of k (100)"), std::string::npos) << err();
  // Truncated file.
  const std::string full = bytes("q.npy");
  std::ofstream(p("trunc.npy"), std::ios::binary) << full.substr(0, full.size() / 2);
  EXPECT_EQ(run("run --q " + p("trunc.npy") + kv + " --v " + p("k.npy")), 2);
  EXPECT_NE(err().find("trunc.npy"), std::string::npos) << err();
  // A header that claims a huge shape over a tiny file: refused without allocating it.
  std::string huge = full;
  const auto pos = huge.find("(2, 100, 32)");
  ASSERT_NE(pos, std::string::npos);
  huge.replace(pos, 12, "(99999999999");
  std::ofstream(p("huge.npy"), std::ios::binary) << huge;
  EXPECT_EQ(run("run --q " + p("huge.npy") + kv + " --v " + p("k.npy")), 2);
  // Garbage.
  std::ofstream(p("junk.npy"), std::ios::binary) << "this is not a numpy file at all";
  EXPECT_EQ(run("run --q " + p("junk.npy") + kv + " --v " + p("k.npy")), 2);
  // A missing file and a bad flag value.
  EXPECT_EQ(run("run --q " + p("missing.npy") + kv + " --v " + p("k.npy")), 2);
  EXPECT_EQ(run("run --q " + p("q.npy") + kv + " --v " + p("k.npy") + " --lsh-bits 17"), 2);
  // NaN inputs are found on request.
  std::vector<float> nan(2 * 100 * 32, 1.0f);
  nan[3 * 32 + 5] = std::nanf("");
  ASSERT_TRUE(io::write_npy(p("nan.npy"), io::Array::from_f32({2, 100, 32}, nan.data())).ok());
  EXPECT_EQ(run("run --check-inputs --q " + p("nan.npy") + kv + " --v " + p("k.npy")), 2);
  EXPECT_NE(err().find("seq 3, dim 5"), std::string::npos) << err();
}

TEST_F(Cli, BenchWritesJsonRecords) {
  ASSERT_EQ(run("bench --seq 256,512 --head-dim 32 --both --repeats 2 --min-seq-len 256 --block-size 64 --sample-size 64 --json " + p("b.json")), 0) << err();
  std::ifstream f(p("b.json"));
  const auto j = nlohmann::json::parse(f);
  ASSERT_EQ(j.size(), 8u);  // 2 lengths x 2 masks x 2 methods
  for (const auto& r : j) {
    for (const char* key : {"method", "seq", "head_dim", "heads", "causal", "threads", "median_s"}) EXPECT_TRUE(r.contains(key)) << key;
    EXPECT_GT(r["median_s"].get<double>(), 0.0);
  }
}

TEST_F(Cli, BenchTimesTheBackwardPass) {
  for (const char* pass : {"backward", "forward-backward"}) {
    ASSERT_EQ(run(std::string("bench --seq 512 --head-dim 32 --heads 4 --heads-kv 2 --causal --repeats 1 --min-seq-len 256 "
                              "--block-size 64 --sample-size 64 --pass ") + pass + " --json " + p("b.json")), 0) << err();
    std::ifstream f(p("b.json"));
    const auto j = nlohmann::json::parse(f);
    ASSERT_EQ(j.size(), 2u);
    for (const auto& r : j) {
      EXPECT_EQ(r["pass"], pass);
      EXPECT_GT(r["median_s"].get<double>(), 0.0);
    }
  }
  EXPECT_EQ(run("bench --seq 512 --pass sideways"), 2);
  EXPECT_NE(err().find("--pass"), std::string::npos) << err();
}

TEST_F(Cli, EvalLayerBudgetsLocalWindowAndPerPosition) {
  const std::string model = std::string(HYPERATTN_SOURCE_DIR) + "/models/llama-11m-32k";
  const std::string text = std::string(HYPERATTN_SOURCE_DIR) + "/data/emma.txt";
  const std::string common = "eval --model " + model + " --text " + text +
                             " --seq-len 512 --windows 1 --patch all --min-seq-len 64 --block-size 8 --sample-size 24 "
                             "--threads 2 --quiet";
  // stratified-window: block 8, window 8, samples 24 - ceil(8 * 9 / 2 / 64) = 23.
  ASSERT_EQ(run(common + " --preset stratified-window --layer-keys auto --json " + p("e.json") + " --per-position " + p("pos.tsv")), 0)
      << err();
  std::ifstream f(p("e.json"));
  const auto j = nlohmann::json::parse(f);
  ASSERT_EQ(j["layer_sensitivity_kl"].size(), 6u);
  for (const auto& k : j["layer_sensitivity_kl"]) EXPECT_GT(k.get<double>(), 0.0);  // every layer is approximated
  const auto& r = j["results"][0];
  EXPECT_EQ(r["local_window"].get<std::int64_t>(), 8);
  EXPECT_EQ(r["block_size"].get<std::int64_t>(), 8);
  EXPECT_EQ(r["sample_size"].get<std::int64_t>(), 23);
  ASSERT_EQ(r["layer_keys"].size(), 6u);
  std::int64_t total = 0;
  for (const auto& k : r["layer_keys"]) total += k.get<std::int64_t>();
  // 31 keys per query (block 8 + samples 23) on average over the 6 layers.
  EXPECT_LE(total, 6 * 31);
  EXPECT_GT(total, 6 * 31 - 6);
  std::ifstream pos(p("pos.tsv"));
  std::string line;
  std::getline(pos, line);
  EXPECT_EQ(line, "patch\twindow\tposition\tnll_exact\tnll_patched\tkl");
  int rows = 0;
  double kl_sum = 0.0;
  while (std::getline(pos, line)) {
    ++rows;
    kl_sum += std::stod(line.substr(line.rfind('\t') + 1));
  }
  EXPECT_EQ(rows, 511);
  EXPECT_NEAR(kl_sum / rows, r["kl"].get<double>(), 1e-6 * (1.0 + r["kl"].get<double>()));

  // A patch of two layers shares 2 x 31 keys between those two; layers left exact keep 31 (unused).
  ASSERT_EQ(run(common + " --preset stratified-window --patch last:2 --layer-keys auto --json " + p("l2.json")), 0) << err();
  std::ifstream f2(p("l2.json"));
  const auto j2 = nlohmann::json::parse(f2);
  ASSERT_EQ(j2["results"].size(), 2u);  // --patch all (the default list) and last:2
  const auto& keys2 = j2["results"][1]["layer_keys"];
  ASSERT_EQ(keys2.size(), 6u);
  for (int l = 0; l < 4; ++l) EXPECT_EQ(keys2[l].get<std::int64_t>(), 31);
  EXPECT_LE(keys2[4].get<std::int64_t>() + keys2[5].get<std::int64_t>(), 62);
  EXPECT_GT(keys2[4].get<std::int64_t>() + keys2[5].get<std::int64_t>(), 60);

  for (const char* bad : {"1,2,3", "auto,5", "0,1,1,1,1,1"}) {
    EXPECT_EQ(run(common + " --layer-keys " + bad), 2) << bad;
    EXPECT_NE(err().find("--layer-keys"), std::string::npos) << err();
  }
}

TEST_F(Cli, EvalMatmulBf16RunsBothPassesInBf16AndRefusesOtherValues) {
  const std::string model = std::string(HYPERATTN_SOURCE_DIR) + "/models/llama-11m-32k";
  const std::string text = std::string(HYPERATTN_SOURCE_DIR) + "/data/emma.txt";
  const std::string common = "eval --model " + model + " --text " + text +
                             " --seq-len 256 --windows 1 --patch all --min-seq-len 64 --block-size 16 --sample-size 16 "
                             "--threads 2 --quiet";
  ASSERT_EQ(run(common + " --json " + p("f32.json")), 0) << err();
  ASSERT_EQ(run(common + " --matmul bf16 --json " + p("bf16.json")), 0) << err();
  std::ifstream f32_file(p("f32.json")), bf16_file(p("bf16.json"));
  const auto f32 = nlohmann::json::parse(f32_file), bf16 = nlohmann::json::parse(bf16_file);
  EXPECT_EQ(f32["matmul"], "f32");
  EXPECT_EQ(bf16["matmul"], "bf16");
  // bf16 operands move the perplexity (the products really changed) but only by their rounding:
  // activations and weights within 2^-8 relative change the mean NLL (~3.9) by far less than 1%.
  const double a = f32["ppl_exact"].get<double>(), b = bf16["ppl_exact"].get<double>();
  EXPECT_NE(a, b);
  EXPECT_NEAR(std::log(b), std::log(a), 0.01 * std::log(a));
  EXPECT_EQ(run(common + " --matmul fp16"), 2);
  EXPECT_NE(err().find("--matmul"), std::string::npos) << err();
}

// Files that are not regular files (a FIFO with no writer, /dev/zero, a folder) are refused at once
// with exit code 2 and a message naming the path, never read without bound or waited on.
TEST_F(Cli, NonRegularFilesAreRefused) {
  const std::string model = std::string(HYPERATTN_SOURCE_DIR) + "/models/llama-11m-32k";
  const std::string fifo = p("fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  random_npy("k.npy", {16, 8}, 2);
  random_npy("v.npy", {16, 8}, 3);
  // A regression would block or read forever: `timeout` turns that into exit 124.
  auto refused = [&](const std::string& args, const std::string& path) {
    const std::string cmd = "timeout 60 " + std::string(HYPERATTN_CLI) + " " + args + " > " + p("stdout") + " 2> " + p("stderr");
    const int rc = std::system(cmd.c_str());
    ASSERT_TRUE(WIFEXITED(rc)) << args;
    EXPECT_EQ(WEXITSTATUS(rc), 2) << args << "\n" << err();
    EXPECT_NE(err().find(path), std::string::npos) << args << "\n" << err();
    EXPECT_NE(err().find("not a regular file"), std::string::npos) << args << "\n" << err();
  };
  const std::string eval = "eval --model " + model + " --seq-len 64 --windows 1 --quiet --text ";
  refused(eval + "/dev/zero", "/dev/zero");
  refused(eval + fifo, fifo);
  refused(eval + dir.string(), dir.string());
  refused("run --q " + fifo + " --k " + p("k.npy") + " --v " + p("v.npy") + " --out " + p("o.npy"), fifo);
  refused("run --q /dev/zero --k " + p("k.npy") + " --v " + p("v.npy") + " --out " + p("o.npy"), "/dev/zero");
  // A model folder whose config.json, index or tokenizer is a FIFO.
  for (const char* name : {"config.json", "model.safetensors.index.json", "tokenizer.model"}) {
    const fs::path copy = dir / ("model_" + std::string(name));
    fs::create_directories(copy);
    for (const auto& e : fs::directory_iterator(model)) {
      if (e.is_regular_file() && e.path().filename() != name) fs::create_symlink(e.path(), copy / e.path().filename());
    }
    const std::string bad = (copy / name).string();
    ASSERT_EQ(::mkfifo(bad.c_str(), 0600), 0);
    refused("eval --model " + copy.string() + " --text " + std::string(HYPERATTN_SOURCE_DIR) +
                "/data/emma.txt --seq-len 64 --windows 1 --quiet",
            bad);
  }
}

// Issue 15: an output into a missing folder, onto a folder or into a FIFO nobody reads is refused
// before anything is computed: exit 2 and a message naming the flag and the path.
TEST_F(Cli, OutputPathsAreCheckedBeforeComputing) {
  random_npy("q.npy", {2, 64, 32}, 1), random_npy("k.npy", {2, 64, 32}, 2), random_npy("v.npy", {2, 64, 32}, 3);
  const std::string in = "run --q " + p("q.npy") + " --k " + p("k.npy") + " --v " + p("v.npy");
  const std::string missing = p("no_such_folder/x.out");
  const std::string fifo = p("fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  auto refused = [&](const std::string& args, const std::string& flag, const std::string& path, const std::string& why) {
    EXPECT_EQ(run(args, /*timeout_s=*/60), 2) << args << "\n" << err();
    EXPECT_NE(err().find(flag + " " + path + ": "), std::string::npos) << args << "\n" << err();
    EXPECT_NE(err().find(why), std::string::npos) << args << "\n" << err();
    EXPECT_EQ(bytes("stdout").find("batch"), std::string::npos) << "computed before refusing: " << args;
  };
  refused(in + " --out " + missing, "--out", missing, "does not exist");
  refused(in + " --out " + dir.string(), "--out", dir.string(), "is a folder");
  refused(in + " --out " + p("q.npy") + "/x", "--out", p("q.npy") + "/x", "is not a folder");
  refused(in + " --out " + fifo, "--out", fifo, "FIFO");
  refused(in + " --out " + p("o.npy") + " --lse " + missing, "--lse", missing, "does not exist");
  refused(in + " --out " + p("o.npy") + " --lse " + dir.string(), "--lse", dir.string(), "is a folder");
  EXPECT_FALSE(fs::exists(p("o.npy")));
  const std::string bench = "bench --seq 256 --head-dim 32 --repeats 1 --method exact";
  refused(bench + " --json " + missing, "--json", missing, "does not exist");
  refused(bench + " --plot " + missing, "--plot", missing, "does not exist");
  refused(bench + " --plot " + dir.string(), "--plot", dir.string(), "is a folder");
  const std::string model = std::string(HYPERATTN_SOURCE_DIR) + "/models/llama-11m-32k";
  const std::string eval = "eval --model " + model + " --text " + std::string(HYPERATTN_SOURCE_DIR) + "/data/emma.txt --seq-len 64 --windows 1 --quiet";
  refused(eval + " --json " + missing, "--json", missing, "does not exist");
  refused(eval + " --plot " + dir.string(), "--plot", dir.string(), "is a folder");
  refused(eval + " --per-position " + missing, "--per-position", missing, "does not exist");
  const std::string diagnose = "diagnose --q " + p("q.npy") + " --k " + p("k.npy") + " --v " + p("v.npy");
  refused(diagnose + " --json " + dir.string(), "--json", dir.string(), "is a folder");
  refused(diagnose + " --plot " + missing, "--plot", missing, "does not exist");
  // A writable path still works (and --plot's failure, were gnuplot to fail, is in our words: see
  // PlotTest.ReportsGnuplotFailure).
  ASSERT_EQ(run(in + " --out " + p("o.npy") + " --lse " + p("l.npy")), 0) << err();
}

// Issue 15: numbers are read as typed. --seed -1 is not 2^64 - 1, 2^64 is not clamped, a huge
// --seq-len is reported as typed (not as 9223372036854775807), and --scale nan / 1e39 are refused
// naming --scale (not config.scale).
TEST_F(Cli, NumbersAreReadAsTyped) {
  random_npy("q.npy", {2, 64, 32}, 1), random_npy("k.npy", {2, 64, 32}, 2), random_npy("v.npy", {2, 64, 32}, 3);
  const std::string in = "run --q " + p("q.npy") + " --k " + p("k.npy") + " --v " + p("v.npy") + " --out " + p("o.npy");
  auto refused = [&](const std::string& args, const std::string& flag, const std::string& typed) {
    EXPECT_EQ(run(args), 2) << args << "\n" << err();
    EXPECT_NE(err().find(flag + ": expected"), std::string::npos) << args << "\n" << err();
    EXPECT_NE(err().find("found '" + typed + "'"), std::string::npos) << args << "\n" << err();
    EXPECT_EQ(err().find("9223372036854775807"), std::string::npos) << args << "\n" << err();
    EXPECT_EQ(err().find("config."), std::string::npos) << args << "\n" << err();
  };
  refused(in + " --seed -1", "--seed", "-1");
  refused(in + " --seed 18446744073709551616", "--seed", "18446744073709551616");
  refused(in + " --seed 0x10", "--seed", "0x10");
  refused(in + " --scale nan", "--scale", "nan");
  refused(in + " --scale 1e39", "--scale", "1e39");
  refused(in + " --scale -1", "--scale", "-1");
  refused(in + " --scale 1e-50", "--scale", "1e-50");
  refused(in + " --block-size 99999999999999999999", "--block-size", "99999999999999999999");
  refused(in + " --threads -2", "--threads", "-2");
  const std::string model = std::string(HYPERATTN_SOURCE_DIR) + "/models/llama-11m-32k";
  const std::string text = std::string(HYPERATTN_SOURCE_DIR) + "/data/emma.txt";
  refused("eval --model " + model + " --text " + text + " --seq-len 99999999999999999999", "--seq-len", "99999999999999999999");
  refused("diagnose --model " + model + " --text " + text + " --layer 0 --seq-len 99999999999999999999", "--seq-len",
          "99999999999999999999");
  refused("bench --seq 256,-5 --head-dim 32", "--seq", "-5");
  EXPECT_EQ(run("eval --model " + model + " --text " + text + " --seq-len 9999999999 --quiet"), 2);
  EXPECT_NE(err().find("found 9999999999"), std::string::npos) << err();
  // The largest seed and a plain scale still run.
  EXPECT_EQ(run(in + " --seed 18446744073709551615 --scale 0.5"), 0) << err();
}

}  // namespace
}  // namespace hyperattn
