// tests/api/test_workspace.cpp: the caller-provided-memory protocol (check -> workspace size ->
// run, include/hyperattn/attention.hpp): the same bytes as the allocating calls from a workspace
// poisoned with NaN patterns and misaligned, nothing written past its end, a workspace one byte
// short refused with both sizes named, and no heap use that grows with the problem.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "attention_tester.hpp"

// Counts the bytes allocated through operator new in this test program (the library's
// std::vectors and the like; the workspace calls must not need any that grow with the problem).
namespace {
std::atomic<std::size_t> g_heap_bytes{0};
}  // namespace

void* operator new(std::size_t n) {
  g_heap_bytes.fetch_add(n, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace hyperattn::testing {
namespace {

struct Case {
  const char* name;
  Shape shape;
  DType dtype;
  Layout layout;
  bool hyper;
  AttentionConfig config;
};

AttentionConfig hyper_config(bool causal, Sampling sampling, std::int64_t sinks = 0, std::int64_t window = 0) {
  return small_hyper_config({.causal = causal, .sampling = sampling, .sinks = sinks, .window = window, .keys = 64,
                             .min_seq_len = 256, .seed = 17, .threads = 2});
}

AttentionConfig exact_config(bool causal) {
  AttentionConfig c;
  c.causal = causal;
  c.threads = 2;
  return c;
}

// Every kind of buffer the executor carves: bf16 accumulators, strided K/V (the compact copy),
// GQA, the causal recursion's phases, sinks, windows and every sampling mode's state.
std::vector<Case> cases() {
  return {
      {"exact_f32_gqa", {1, 4, 2, 300, 300, 64}, DType::f32, Layout::bhsd, false, exact_config(false)},
      {"exact_causal_bf16_padded", {2, 2, 1, 200, 333, 64}, DType::bf16, Layout::padded, false, exact_config(true)},
      {"hyper_uniform_padded", {1, 2, 2, 1500, 1500, 64}, DType::f32, Layout::padded, true,
       hyper_config(false, Sampling::uniform)},
      {"hyper_causal_stratified_sinks_window_bf16", {1, 4, 2, 2048, 2048, 64}, DType::bf16, Layout::bshd, true,
       hyper_config(true, Sampling::stratified, 16, 64)},
      {"hyper_value_norm", {1, 2, 1, 1024, 1024, 128}, DType::f32, Layout::bhsd, true,
       hyper_config(false, Sampling::value_norm)},
      {"hyper_causal_position_stratified", {1, 2, 2, 1200, 1200, 64}, DType::f32, Layout::padded, true,
       hyper_config(true, Sampling::position_stratified, 0, 32)},
  };
}

// Caller memory with a misaligned start, NaN-pattern contents and a guard band after its end.
struct CallerMemory {
  static constexpr std::size_t kOffset = 3, kGuard = 256;
  std::vector<unsigned char> block;
  std::size_t bytes;
  explicit CallerMemory(std::size_t n) : block(kOffset + n + kGuard, 0xFF), bytes(n) {}
  Workspace workspace() { return {block.data() + kOffset, bytes}; }
  bool guard_intact() const {
    for (std::size_t i = kOffset + bytes; i < block.size(); ++i)
      if (block[i] != 0xFF) return false;
    return true;
  }
};

Status forward(const Case& c, Problem& p, const Workspace* ws) {
  if (ws == nullptr) return c.hyper ? hyper_attention(p.args(), c.config) : exact_attention(p.args(), c.config);
  return c.hyper ? hyper_attention(p.args(), c.config, {}, *ws) : exact_attention(p.args(), c.config, *ws);
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.storage.size() == b.storage.size() && std::memcmp(a.storage.data(), b.storage.data(), a.storage.size()) == 0;
}
bool same_bytes(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(Workspace, CallerMemoryGivesTheAllocatingCallsBytes) {
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name);
    Problem own(c.shape, c.dtype, c.layout, 5);
    ASSERT_TRUE(forward(c, own, nullptr).ok());
    std::size_t bytes = 0;
    ASSERT_TRUE(workspace_size(own.args(), c.config, c.hyper, &bytes).ok());
    CallerMemory mem(bytes);
    for (int run = 0; run < 2; ++run) {  // the second run finds the first one's leftovers
      Problem p(c.shape, c.dtype, c.layout, 5);
      const Workspace ws = mem.workspace();
      const Status st = forward(c, p, &ws);
      ASSERT_TRUE(st.ok()) << st.message();
      EXPECT_TRUE(same_bytes(p.out, own.out)) << "out differs, run " << run;
      EXPECT_TRUE(same_bytes(p.lse, own.lse)) << "lse differs, run " << run;
      EXPECT_TRUE(mem.guard_intact()) << "written past the workspace's end";
    }
  }
}

TEST(Workspace, BackwardCallerMemoryGivesTheAllocatingCallsBytes) {
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name);
    for (DType grad_dtype : {DType::f32, c.dtype}) {
      GradProblem own(c.shape, c.dtype, c.layout, 9, grad_dtype);
      ASSERT_TRUE(forward(c, own.p, nullptr).ok());
      const AttentionGradArgs g_own = own.grad_args();
      ASSERT_TRUE((c.hyper ? hyper_attention_backward(g_own, c.config) : exact_attention_backward(g_own, c.config)).ok());

      GradProblem gp(c.shape, c.dtype, c.layout, 9, grad_dtype);
      ASSERT_TRUE(forward(c, gp.p, nullptr).ok());
      const AttentionGradArgs g = gp.grad_args();
      std::size_t bytes = 0;
      ASSERT_TRUE(backward_workspace_size(g, c.config, c.hyper, &bytes).ok());
      CallerMemory mem(bytes);
      const Workspace ws = mem.workspace();
      const Status st = c.hyper ? hyper_attention_backward(g, c.config, {}, ws) : exact_attention_backward(g, c.config, ws);
      ASSERT_TRUE(st.ok()) << st.message();
      EXPECT_TRUE(same_bytes(gp.dq, own.dq)) << "dq differs";
      EXPECT_TRUE(same_bytes(gp.dk, own.dk)) << "dk differs";
      EXPECT_TRUE(same_bytes(gp.dv, own.dv)) << "dv differs";
      EXPECT_TRUE(mem.guard_intact()) << "written past the workspace's end";
    }
  }
}

TEST(Workspace, OneByteShortIsRefusedWithBothSizesAndNothingWritten) {
  const Case c = cases()[3];
  Problem p(c.shape, c.dtype, c.layout, 5);
  const std::vector<unsigned char> before = p.out.storage;
  std::size_t bytes = 0;
  ASSERT_TRUE(workspace_size(p.args(), c.config, true, &bytes).ok());
  // Any alignment works, and the size includes the slack to align: the shortest workspace that
  // runs is the full size (an aligned start does not need less).
  CallerMemory mem(bytes - 1);
  const Status st = hyper_attention(p.args(), c.config, {}, mem.workspace());
  EXPECT_EQ(st.code(), StatusCode::invalid_argument);
  EXPECT_NE(st.message().find("workspace.bytes"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find(std::to_string(bytes - 1)), std::string::npos) << st.message();
  EXPECT_NE(st.message().find(std::to_string(bytes)), std::string::npos) << st.message();
  EXPECT_TRUE(p.out.storage == before);
  EXPECT_TRUE(mem.guard_intact());
}

TEST(Workspace, NullMemoryAndNullSizeAreRefused) {
  const Case c = cases()[0];
  Problem p(c.shape, c.dtype, c.layout, 5);
  Status st = exact_attention(p.args(), c.config, Workspace{nullptr, 1 << 20});
  EXPECT_EQ(st.code(), StatusCode::invalid_argument);
  EXPECT_NE(st.message().find("workspace.data"), std::string::npos) << st.message();
  st = workspace_size(p.args(), c.config, false, nullptr);
  EXPECT_EQ(st.code(), StatusCode::invalid_argument);
  EXPECT_NE(st.message().find("bytes"), std::string::npos) << st.message();
  // Bad arguments get the calls' own errors from the size query.
  AttentionArgs bad = p.args();
  bad.k.shape[3] = 32;
  std::size_t bytes = 0;
  EXPECT_EQ(workspace_size(bad, c.config, false, &bytes).code(), StatusCode::invalid_argument);
  EXPECT_EQ(exact_attention(bad, c.config).code(), StatusCode::invalid_argument);
}

// Heap use of a call, once its workspace is provided, does not grow with the problem: only the
// plan, the hyperplanes and the thread pool's hand-off remain (a few KiB), against a workspace of
// megabytes. The allocating call needs the workspace's bytes on top (from malloc, not counted).
TEST(Workspace, CallsWithAWorkspaceUseNoHeapThatGrowsWithTheProblem) {
  for (const std::int64_t n : {2048, 8192}) {
    SCOPED_TRACE(n);
    Case c = cases()[3];
    c.shape.seq_q = c.shape.seq_kv = n;
    Problem p(c.shape, c.dtype, c.layout, 5);
    std::size_t bytes = 0;
    ASSERT_TRUE(workspace_size(p.args(), c.config, true, &bytes).ok());
    CallerMemory mem(bytes);
    const Workspace ws = mem.workspace();
    const std::size_t heap_before = g_heap_bytes.load();
    ASSERT_TRUE(hyper_attention(p.args(), c.config, {}, ws).ok());
    const std::size_t heap = g_heap_bytes.load() - heap_before;
    EXPECT_GT(bytes, std::size_t{1} << 20);
    EXPECT_LT(heap, std::size_t{64} << 10) << "heap bytes during the call; workspace " << bytes;
  }
}

}  // namespace
}  // namespace hyperattn::testing
