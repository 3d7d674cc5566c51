// src/cpu/executor.cpp: executes attention plans (core/plan.hpp) on the CPU (see executor.hpp).
#include "cpu/executor.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <tuple>
#include <utility>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "core/bfloat16.hpp"
#include "core/key_selection.hpp"
#include "core/lsh.hpp"
#include "core/random.hpp"
#include "cpu/attention_kernel.hpp"
#include "cpu/thread_pool.hpp"

#include <fmt/format.h>

namespace hyperattn::cpu {

using core::approximated;
using core::Part;
using core::Phase;
using core::Plan;
using core::projections;
using core::sinks_of;
static_assert(kNoCausalMask == core::kNoCausalMask, "the kernels' and the plan's no-mask sentinel differ");

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
// Query rows per work item of an exact part. The AVX2 and AVX-512 kernels' row tile holds 512
// rows, so a 512-row item packs each key tile once where two 256-row items pack it twice (Zen 4,
// one thread, 512 x 16384, d = 64 and 128: AVX-512 f32 3-10% faster, AVX2 within the day's noise;
// the model's shape on 2 threads 6% faster forced AVX2, 2.5% AVX-512; docs/performance.md). Parts
// under 16384 rows keep 256-row items, so that a short sequence still splits into 32 or more
// (8192 causal in 512-row items: 0-7% slower on 2 threads, AVX2). A function of the part's shape
// only, not of the thread count nor of the batch and heads around it.
std::int64_t exact_row_chunk(const Part& p) { return p.q1 - p.q0 >= 16384 ? 512 : 256; }

// One call's memory, carved in a fixed order out of one block: the caller's workspace or one the
// call allocates (WorkspaceBuffer). Without a block (base == nullptr) it only counts the bytes, so
// workspace_size() and the run share one layout (carve_forward, carve_backward). Every piece is
// 64-byte aligned relative to the block, whose start run_with_workspace aligns to 64 bytes.
class Arena {
 public:
  static constexpr std::size_t kAlign = 64;
  Arena(std::byte* base, std::size_t bytes) : base_(base), bytes_(bytes) {}
  // [count] elements of T, uninitialised (nullptr when only counting).
  template <class T>
  T* take(std::int64_t count) {
    used_ = (used_ + kAlign - 1) / kAlign * kAlign;
    T* p = base_ == nullptr ? nullptr : reinterpret_cast<T*>(base_ + used_);
    used_ += static_cast<std::size_t>(std::max<std::int64_t>(count, 0)) * sizeof(T);
    if (base_ != nullptr && used_ > bytes_) throw std::bad_alloc();  // a layout bug: sized before
    return p;
  }
  // The same, each element set to `value`.
  template <class T>
  T* take_filled(std::int64_t count, T value) {
    T* p = take<T>(count);
    if (p != nullptr) std::fill_n(p, count, value);
    return p;
  }
  bool counting() const { return base_ == nullptr; }
  std::size_t used() const { return used_; }

 private:
  std::byte* base_;
  std::size_t bytes_;
  std::size_t used_ = 0;
};

// The workspace of an allocating call: on 2 MiB pages where the system offers them (Linux
// transparent huge pages in "madvise" mode) when it spans one or more: HyperAttention gathers key
// and value rows from all over K and V, and with 4 KiB pages nearly every gathered row costs a
// page walk.
struct WorkspaceBuffer {
  static constexpr std::size_t kHugePage = std::size_t{2} << 20;
  std::unique_ptr<std::byte, void (*)(std::byte*)> ptr{nullptr, [](std::byte* p) { std::free(p); }};
  std::byte* allocate(std::size_t bytes) {
    const std::size_t align = bytes >= kHugePage ? kHugePage : Arena::kAlign;
    bytes = (std::max<std::size_t>(bytes, 1) + align - 1) / align * align;
    auto* p = static_cast<std::byte*>(std::aligned_alloc(align, bytes));
    if (p == nullptr) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (align == kHugePage) (void)madvise(p, bytes, MADV_HUGEPAGE);
#endif
    ptr.reset(p);
    return p;
  }
};

// Everything one call needs, resolved once.
struct Context {
  const AttentionArgs& args;
  const AttentionConfig& config;
  const InjectedRandomness& injected;
  const cpu::AttentionKernel& kernel;  // best_kernel()
  // [batch, heads_kv]: 1 where the tiles of that key-value head run on cpu::strict_kernel() (its
  // inputs hold NaN or Inf; NonFiniteInputs); empty: none.
  std::vector<char> strict_kv;
  // K and V as the kernels read them: the caller's, or a compact copy (compact_keys_and_values).
  TensorView k_rows, v_rows;
  std::byte* kv_copy = nullptr;  // [2][batch, heads_kv, n_k, d] when K or V is strided
  int threads;
  float scale;
  std::int64_t batch, heads_q, heads_kv, group, n_q, n_k;
  int d;
  std::size_t esize;
  // Accumulated output: fp32 rows; either the caller's f32 out or our buffer.
  float* acc = nullptr;
  std::int64_t acc_stride[3] = {0, 0, 0};
  float* lse = nullptr;  // [batch, heads_q, n_q] (forward)
  // LSH state (only when some part is approximated). The workspace holds everything that grows
  // with the sequence; the hyperplanes (heads_kv x d x lsh_bits) stay on the heap.
  std::vector<float> proj;            // [batch, heads_kv, d, lsh_bits]
  std::uint32_t* q_bucket = nullptr;  // [batch, heads_q, n_q]
  std::uint32_t* k_bucket = nullptr;  // [batch, heads_kv, n_k]
  std::int32_t* q_perm = nullptr;     // [batch, heads_q, n_q], per part: sorted absolute rows
  std::int32_t* k_perm = nullptr;     // [batch, heads_kv, n_k], per part: sorted absolute keys
  std::int32_t* k_rank = nullptr;     // [batch, heads_kv, n_k], per part: sorted index of each key (position_stratified)
  double* v_norm2 = nullptr;          // [batch, heads_kv, n_k] ||v_j||^2 (value_norm sampling)
  double* k_cum = nullptr;            // [batch, heads_kv, n_k] inclusive prefix of v_norm2 in sorted order, per part
  std::int64_t* sort_counts = nullptr;  // [threads][2^lsh_bits + 1] counting-sort histograms
  // Progress.
  std::mutex progress_mutex;
  std::int64_t done = 0, total = 0;
  std::chrono::steady_clock::time_point last_report{};

  Context(const AttentionArgs& a, const AttentionConfig& c, const InjectedRandomness& inj)
      : args(a), config(c), injected(inj), kernel(cpu::best_kernel()), k_rows(a.k), v_rows(a.v) {
    threads = cpu::resolve_threads(c.threads);
    batch = a.q.batch();
    heads_q = a.q.heads();
    heads_kv = a.k.heads();
    group = heads_q / heads_kv;
    n_q = a.q.seq();
    n_k = a.k.seq();
    d = static_cast<int>(a.q.head_dim());
    scale = c.scale > 0.0f ? c.scale : 1.0f / std::sqrt(static_cast<float>(d));
    esize = size_of(a.q.dtype);
  }

  const std::byte* head_ptr(const TensorView& t, std::int64_t b, std::int64_t h) const {
    return static_cast<const std::byte*>(t.data) + (b * t.stride[0] + h * t.stride[1]) * static_cast<std::int64_t>(esize);
  }
  // The kernel of the tiles of (batch b, key-value head hkv).
  const cpu::AttentionKernel& kernel_for(std::int64_t b, std::int64_t hkv) const {
    return !strict_kv.empty() && strict_kv[static_cast<std::size_t>(b * heads_kv + hkv)] != 0 ? cpu::strict_kernel() : kernel;
  }
  float* acc_head(std::int64_t b, std::int64_t h) const { return acc + b * acc_stride[0] + h * acc_stride[1]; }
  float* lse_head(std::int64_t b, std::int64_t h) { return lse + (b * heads_q + h) * n_q; }

  void report(std::int64_t units) {
    if (config.progress == nullptr) return;
    std::lock_guard<std::mutex> lock(progress_mutex);
    done += units;
    const auto now = std::chrono::steady_clock::now();
    if (done == total || now - last_report > std::chrono::milliseconds(100)) {
      last_report = now;
      config.progress(config.progress_context, done, total);
    }
  }
};

std::int64_t block_count(const Part& p, const AttentionConfig& c) {
  return key_selection::block_count(p.k1 - p.k0 - p.sinks, c.block_size);
}

// Hashes every query and key row (one pass: projection, sign bits, bucket).
void hash_all(Context& ctx) {
  const int r = ctx.config.lsh_bits;
  constexpr std::int64_t kRows = 1024;
  const std::int64_t q_chunks = (ctx.n_q + kRows - 1) / kRows, k_chunks = (ctx.n_k + kRows - 1) / kRows;
  const std::int64_t q_items = ctx.batch * ctx.heads_q * q_chunks;
  const std::int64_t items = q_items + ctx.batch * ctx.heads_kv * k_chunks;
  // Projections widened to double and padded once per key-value head (lsh::sign_bits_rows).
  std::vector<std::vector<double>> padded(static_cast<std::size_t>(ctx.batch * ctx.heads_kv));
  for (std::int64_t bh = 0; bh < ctx.batch * ctx.heads_kv; ++bh)
    padded[static_cast<std::size_t>(bh)] = lsh::pad_projections(ctx.proj.data() + bh * ctx.d * r, ctx.d, r);
  cpu::parallel_for(items, ctx.threads, [&](std::int64_t item, int) {
    const bool is_q = item < q_items;
    const std::int64_t local = is_q ? item : item - q_items;
    const std::int64_t chunks = is_q ? q_chunks : k_chunks;
    const std::int64_t heads = is_q ? ctx.heads_q : ctx.heads_kv;
    const std::int64_t bh = local / chunks, chunk = local % chunks;
    const std::int64_t b = bh / heads, h = bh % heads;
    const std::int64_t hkv = is_q ? h / ctx.group : h;
    const TensorView& t = is_q ? ctx.args.q : ctx.args.k;
    const std::int64_t n = is_q ? ctx.n_q : ctx.n_k;
    std::uint32_t* out = (is_q ? ctx.q_bucket : ctx.k_bucket) + bh * n;
    const std::int64_t i0 = chunk * kRows, i1 = std::min(n, (chunk + 1) * kRows);
    const std::byte* rows = ctx.head_ptr(t, b, h) + i0 * t.stride[2] * static_cast<std::int64_t>(ctx.esize);
    lsh::sign_bits_rows(simd_level(), rows, t.dtype == DType::bf16, t.stride[2], i1 - i0,
                        padded[static_cast<std::size_t>(b * ctx.heads_kv + hkv)].data(), ctx.d, r, out + i0);
    for (std::int64_t i = i0; i < i1; ++i) out[i] = lsh::bucket_of(out[i], ctx.config.bucket_order);
  });
  if (ctx.config.sampling == Sampling::value_norm) {
    cpu::parallel_for(ctx.batch * ctx.heads_kv, ctx.threads, [&](std::int64_t bh, int) {
      const std::byte* base = ctx.head_ptr(ctx.args.v, bh / ctx.heads_kv, bh % ctx.heads_kv);
      for (std::int64_t j = 0; j < ctx.n_k; ++j) {
        const std::byte* row = base + j * ctx.args.v.stride[2] * static_cast<std::int64_t>(ctx.esize);
        double s = 0.0;
        for (int c = 0; c < ctx.d; ++c) {
          const double x = ctx.args.v.dtype == DType::f32 ? reinterpret_cast<const float*>(row)[c]
                                                          : bf16_bits_to_f32(reinterpret_cast<const std::uint16_t*>(row)[c]);
          s += x * x;
        }
        ctx.v_norm2[bh * ctx.n_k + j] = s;
      }
    });
  }
}

// Sorts the queries and keys of every approximated part of a phase by bucket (stable).
void sort_phase(Context& ctx, const Phase& phase) {
  std::vector<const Part*> parts;
  for (const Part& p : phase.parts)
    if (p.approximate) parts.push_back(&p);
  if (parts.empty()) return;
  const int r = ctx.config.lsh_bits;
  const std::int64_t np = static_cast<std::int64_t>(parts.size());
  const std::int64_t q_items = ctx.batch * ctx.heads_q * np;
  const std::int64_t items = q_items + ctx.batch * ctx.heads_kv * np;
  const std::int64_t histogram = (std::int64_t{1} << r) + 1;
  cpu::parallel_for(items, ctx.threads, [&](std::int64_t item, int thread) {
    const bool is_q = item < q_items;
    const std::int64_t local = is_q ? item : item - q_items;
    const Part& p = *parts[static_cast<std::size_t>(local % np)];
    const std::int64_t bh = local / np;
    const std::int64_t n = is_q ? ctx.n_q : ctx.n_k;
    const std::int64_t lo = is_q ? p.q0 : p.k0 + p.sinks, hi = is_q ? p.q1 : p.k1;
    const std::uint32_t* bucket = (is_q ? ctx.q_bucket : ctx.k_bucket) + bh * n;
    std::int32_t* perm = (is_q ? ctx.q_perm : ctx.k_perm) + bh * n;
    lsh::counting_sort(bucket + lo, hi - lo, r, static_cast<std::int32_t>(lo), perm + lo, ctx.sort_counts + thread * histogram);
    if (!is_q && ctx.config.sampling == Sampling::position_stratified)
      for (std::int64_t i = lo; i < hi; ++i) ctx.k_rank[static_cast<std::size_t>(bh * n + perm[i])] = static_cast<std::int32_t>(i - lo);
    if (!is_q && ctx.config.sampling == Sampling::value_norm) {
      double s = 0.0;
      for (std::int64_t i = lo; i < hi; ++i) {
        s += ctx.v_norm2[static_cast<std::size_t>(bh * n + perm[i])];
        ctx.k_cum[static_cast<std::size_t>(bh * n + i)] = s;
      }
    }
  });
}

// One unit of work: (part, batch, query head, unit) where unit is a sorted block (approximated
// parts) or a chunk of exact_row_chunk rows (exact parts).
struct Item {
  std::int32_t part;
  std::int32_t head;  // query head
  std::int64_t batch;
  std::int64_t unit;
  double cost;
};

// One thread's buffers, sized for every phase of the plan (ScratchExtent, carved by carve_scratch).
struct ThreadScratch {
  float* kernel = nullptr;       // the kernel's scratch_floats (backward: backward_scratch_floats)
  std::int32_t* keys = nullptr;  // [extent.keys] absolute key rows
  float* bias = nullptr;         // [extent.keys]
  // The current tile and the next one (prepared ahead so the kernel can prefetch its rows), with
  // their key lists: each gathered list is swapped out of keys/bias into its tile's slot.
  cpu::DenseAttentionTile tile[2];
  std::int32_t* slot_keys[2] = {nullptr, nullptr};  // [extent.keys]
  float* slot_bias[2] = {nullptr, nullptr};         // [extent.keys]
  int slot = 0;                // tile[slot] holds item `prepared`
  std::int64_t prepared = -1;  // in the current phase, or -1
  // Parts with a local window: a block's rows outside every window, its row windows, and its keys
  // followed by the window's (or one windowed row's keys).
  std::int32_t* rows = nullptr;        // [extent.rows]
  std::int32_t* row_window = nullptr;  // [extent.rows][2]
  std::int32_t* row_keys = nullptr;    // [extent.keys + extent.window]
  float* row_bias = nullptr;           // [extent.keys + extent.window]
  // Backward only.
  float* dq = nullptr;                       // [kBackwardRowChunk][head_dim]
  float* k_loc = nullptr, *v_loc = nullptr;  // [kBackwardKeyChunk][head_dim] each
};

// Fills keys/bias for approximated block `beta` of part p: the sinks, the block's keys, then the
// samples (specification §2.3-2.4); returns the key count.
std::int64_t gather_block_keys(Context& ctx, const Part& p, std::int64_t b, std::int64_t hq, std::int64_t beta,
                               ThreadScratch& s) {
  const AttentionConfig& c = ctx.config;
  const std::int64_t hkv = hq / ctx.group;
  const std::int64_t lsh_k0 = p.k0 + p.sinks;
  const std::int64_t nk = p.k1 - lsh_k0;  // hashed keys
  const key_selection::BlockRange range = key_selection::block_range(nk, c.block_size, beta);
  const std::int64_t start = range.start, blk = range.size, outside = range.outside;
  const std::int64_t m = key_selection::sample_count(c.sampling, c.sample_size, p.sinks, nk, range);
  const std::int32_t* kperm = ctx.k_perm + (b * ctx.heads_kv + hkv) * ctx.n_k + lsh_k0;
  std::int32_t* keys = s.keys;
  float* biases = s.bias;
  for (std::int64_t i = 0; i < p.sinks; ++i) {
    *keys++ = static_cast<std::int32_t>(p.k0 + i);
    *biases++ = 0.0f;
  }
  for (std::int64_t i = 0; i < blk; ++i) {
    *keys++ = kperm[start + i];
    *biases++ = 0.0f;
  }
  const std::int64_t fixed = p.sinks + blk;
  if (m == 0) return fixed;
  const std::int64_t blocks = block_count(p, c);
  if (ctx.injected.samples != nullptr && p.subproblem == 0) {
    const std::int32_t* inj = ctx.injected.samples + ((b * ctx.heads_q + hq) * blocks + beta) * c.sample_size;
    const float bias = std::log(static_cast<float>(outside) / static_cast<float>(m));
    for (std::int64_t i = 0; i < m; ++i) {
      keys[i] = inj[i];
      biases[i] = bias;
    }
    return fixed + m;
  }
  const std::uint64_t block_state = rng::block_bits(c.seed, rng::Stream::sample, static_cast<std::uint64_t>(b),
                                                   static_cast<std::uint64_t>(hq), p.subproblem, static_cast<std::uint64_t>(beta));
  auto random_bits = [&](std::int64_t i) { return rng::bits_of(block_state, static_cast<std::uint64_t>(i)); };
  // The draws and their weights are key_selection's (core/key_selection.hpp); here the loops.
  if (c.sampling == Sampling::stratified) {
    // Strata hold floor(outside / m) or one more keys: two logarithms serve every draw.
    key_selection::StratumWalk walk(outside, m);
    const std::int64_t small = walk.small();
    const float log_small = key_selection::log_weight(static_cast<double>(small));
    const float log_large = key_selection::log_weight(static_cast<double>(small + 1));
    for (std::int64_t i = 0; i < m; ++i) {
      const key_selection::Stratum st = walk.next();
      keys[i] = kperm[key_selection::outside_position(key_selection::stratum_draw(random_bits(i), st), range)];
      biases[i] = st.size == small ? log_small : log_large;
    }
    return fixed + m;
  }
  if (c.sampling == Sampling::position_stratified) {
    // A draw in the query block's own keys contributes nothing (bias -inf).
    const std::int32_t* rank = ctx.k_rank + (b * ctx.heads_kv + hkv) * ctx.n_k;
    for (std::int64_t i = 0; i < m; ++i) {
      const key_selection::Stratum st = key_selection::stratum(i, nk, m);
      const std::int64_t pos = lsh_k0 + key_selection::stratum_draw(random_bits(i), st);
      const std::int64_t r = rank[pos];
      keys[i] = static_cast<std::int32_t>(pos);
      biases[i] = (r >= start && r < start + blk) ? -std::numeric_limits<float>::infinity()
                                                  : key_selection::log_weight(static_cast<double>(st.size));
    }
    return fixed + m;
  }
  if (c.sampling == Sampling::uniform) {
    const float bias = key_selection::log_weight(key_selection::uniform_weight(outside, m));
    for (std::int64_t i = 0; i < m; ++i) {
      keys[i] = kperm[key_selection::outside_position(key_selection::uniform_draw(random_bits(i), outside), range)];
      biases[i] = bias;
    }
    return fixed + m;
  }
  // value_norm (key_selection::value_norm_probability): half the draws uniform, half by the prefix
  // sums of ||v_j||^2 in sorted order, skipping the block's mass.
  const double* cum = ctx.k_cum + (b * ctx.heads_kv + hkv) * ctx.n_k + lsh_k0;  // inclusive, sorted order
  const double* norm2 = ctx.v_norm2 + (b * ctx.heads_kv + hkv) * ctx.n_k;
  const double before = start > 0 ? cum[start - 1] : 0.0;
  const double inside = cum[start + blk - 1] - before;
  // The mass outside the block as the sum of its two sides, not total - inside (which cancels
  // catastrophically when the block holds almost all of the mass).
  const double w_out = before + (cum[nk - 1] - cum[start + blk - 1]);
  for (std::int64_t i = 0; i < m; ++i) {
    const std::uint64_t bits = random_bits(i);
    std::int64_t pos;
    if ((bits >> 63) == 0 || w_out <= 0.0) {  // the uniform half of the mixture
      pos = key_selection::outside_position(key_selection::uniform_draw(bits << 1, outside), range);
    } else {  // the norm-proportional half: invert the prefix sums, skipping the block's mass
      double u = rng::uniform01(bits << 1) * w_out;
      if (u >= before) u += inside;
      const std::int64_t lo = u < before ? 0 : start + blk;
      const std::int64_t hi = u < before ? start : nk;
      pos = std::upper_bound(cum + lo, cum + hi, u) - cum;
      pos = std::clamp(pos, lo, hi - 1);
    }
    const std::int32_t key = kperm[pos];
    const double prob = key_selection::value_norm_probability(norm2[key], w_out, outside);
    keys[i] = key;
    biases[i] = static_cast<float>(-std::log(static_cast<double>(m) * prob));
  }
  return fixed + m;
}

// The operands of (batch b, query head hq) as a kernel tile holds them (DenseAttentionTile and
// BackwardTile name them alike): the head's Q rows, its key-value head's K and V rows (the compact
// copy where there is one), head_dim and the softmax scale.
template <class Tile>
void set_operands(Tile& t, const Context& ctx, std::int64_t b, std::int64_t hq) {
  const std::int64_t hkv = hq / ctx.group;
  t.dtype = ctx.args.q.dtype;
  t.q = ctx.head_ptr(ctx.args.q, b, hq);
  t.q_row_stride = ctx.args.q.stride[2];
  t.k = ctx.head_ptr(ctx.k_rows, b, hkv);
  t.k_row_stride = ctx.k_rows.stride[2];
  t.v = ctx.head_ptr(ctx.v_rows, b, hkv);
  t.v_row_stride = ctx.v_rows.stride[2];
  t.head_dim = static_cast<int>(ctx.d);
  t.scale = ctx.scale;
}

// The kernel call of one item, its key list (approximated parts) in s.slot_keys[slot], s.slot_bias[slot].
// The first phase writes (O, LSE) straight into the accumulators (the unsort fused into the
// kernel's indexed store); later phases merge into them through the LSE (merge fused likewise).
// rows == 0 means nothing to do.
cpu::DenseAttentionTile make_tile(Context& ctx, const Phase& phase, bool merge, const Item& it, ThreadScratch& s, int slot) {
  const Part& p = phase.parts[static_cast<std::size_t>(it.part)];
  const std::int64_t b = it.batch, hq = it.head;
  cpu::DenseAttentionTile t;
  set_operands(t, ctx, b, hq);
  t.head_dim_v = ctx.d;
  t.scratch = s.kernel;
  t.out = ctx.acc_head(b, hq);
  t.out_row_stride = ctx.acc_stride[2];
  t.lse = ctx.lse_head(b, hq);
  t.merge = merge;

  if (!p.approximate) {
    const std::int64_t chunk = exact_row_chunk(p);
    const std::int64_t r0 = p.q0 + it.unit * chunk;
    const std::int64_t r1 = std::min(p.q1, r0 + chunk);
    t.q = static_cast<const std::byte*>(t.q) + r0 * t.q_row_stride * static_cast<std::int64_t>(ctx.esize);
    t.k = static_cast<const std::byte*>(t.k) + p.k0 * t.k_row_stride * static_cast<std::int64_t>(ctx.esize);
    t.v = static_cast<const std::byte*>(t.v) + p.k0 * t.v_row_stride * static_cast<std::int64_t>(ctx.esize);
    t.rows = r1 - r0;
    t.keys = p.k1 - p.k0;
    t.causal_diagonal = p.causal_diagonal == cpu::kNoCausalMask ? cpu::kNoCausalMask : p.causal_diagonal + (r0 - p.q0);
    t.out += r0 * t.out_row_stride;
    t.lse += r0;
    return t;
  }
  const std::int64_t nq = p.q1 - p.q0;
  const std::int64_t blocks = block_count(p, ctx.config);
  const std::int64_t lo = it.unit * nq / blocks, hi = (it.unit + 1) * nq / blocks;
  t.rows = hi - lo;
  if (t.rows == 0) return t;
  const std::int32_t* qperm = ctx.q_perm + (b * ctx.heads_q + hq) * ctx.n_q + p.q0;
  t.keys = gather_block_keys(ctx, p, b, hq, it.unit, s);
  std::swap(s.keys, s.slot_keys[slot]);
  std::swap(s.bias, s.slot_bias[slot]);
  t.k_index = s.slot_keys[slot];
  t.key_bias = s.slot_bias[slot];
  t.q_index = qperm + lo;
  t.out_index = t.q_index;
  return t;
}

// The keys a part's local windows reach, [*w0, *w1): the union of its rows' windows (those of
// rows q0 .. q1-1, at key positions q + window_delta, are [max(lsh_k0, pos - w), min(k1, pos))).
void window_span(const Part& p, std::int64_t* w0, std::int64_t* w1) {
  *w0 = std::max(p.k0 + p.sinks, p.q0 + p.window_delta - p.window);
  *w1 = std::min(p.k1, p.q1 - 1 + p.window_delta);
}

// The local window of query row `row` of part p: keys [*w0, *w1) (empty when *w0 >= *w1).
void window_of(const Part& p, std::int64_t row, std::int64_t* w0, std::int64_t* w1) {
  const std::int64_t pos = row + p.window_delta;
  *w0 = std::max(p.k0 + p.sinks, pos - p.window);
  *w1 = std::min(p.k1, pos);
}

// Keys [w0, w1) of a local window, weight 1 (bias 0), written to keys[0, w1 - w0), bias[0, w1 - w0).
void append_window_keys(std::int32_t* keys, float* bias, std::int64_t w0, std::int64_t w1) {
  for (std::int64_t k = w0; k < w1; ++k) {
    keys[k - w0] = static_cast<std::int32_t>(k);
    bias[k - w0] = 0.0f;
  }
}

// An approximated block of a part with a local window (t: the block's tile, keys gathered). Rows
// whose window reaches into the part's hashed keys see the block's keys and samples with those in
// the window masked (bias -inf, so the samples still estimate the sum over the keys outside block
// and window without bias), then the window's keys, exact; the other rows see the block's keys and
// samples only. With a kernel that computes row windows compactly (AttentionKernel::
// compact_windows), the block runs as one tile over its keys and samples followed by every key the
// part's windows reach (window_span), with each row's window; otherwise its plain rows run as one
// tile and each windowed row as a tile of its own. Both give the same bits.
void run_windowed_block(const cpu::AttentionKernel& kernel, const Part& p, const cpu::DenseAttentionTile& t, ThreadScratch& s) {
  std::int64_t plain = 0;
  for (std::int64_t r = 0; r < t.rows; ++r) {
    std::int64_t w0, w1;
    window_of(p, t.q_index[r], &w0, &w1);
    s.row_window[static_cast<std::size_t>(2 * r)] = static_cast<std::int32_t>(w0);
    s.row_window[static_cast<std::size_t>(2 * r + 1)] = static_cast<std::int32_t>(std::max(w0, w1));
    if (w0 >= w1) s.rows[static_cast<std::size_t>(plain++)] = t.q_index[r];
  }
  if (plain == t.rows) {
    kernel.dense(t);
    return;
  }
  if (kernel.compact_windows != nullptr) {
    std::int64_t u0, u1;
    window_span(p, &u0, &u1);
    std::int32_t* keys = s.row_keys;  // [t.keys + (u1 - u0)]
    float* bias = s.row_bias;
    std::copy(t.k_index, t.k_index + t.keys, keys);
    std::copy(t.key_bias, t.key_bias + t.keys, bias);
    append_window_keys(keys + t.keys, bias + t.keys, u0, u1);
    cpu::DenseAttentionTile u = t;
    u.k_index = keys;
    u.key_bias = bias;
    u.keys = t.keys + (u1 - u0);
    u.row_window = s.row_window;
    u.window_from = t.keys;
    if (kernel.compact_windows(u)) {
      kernel.dense(u);
      return;
    }
  }
  if (plain > 0) {
    cpu::DenseAttentionTile u = t;
    u.q_index = s.rows;
    u.out_index = u.q_index;
    u.rows = plain;
    kernel.dense(u);
  }
  for (std::int64_t r = 0; r < t.rows; ++r) {
    std::int64_t w0, w1;
    window_of(p, t.q_index[r], &w0, &w1);
    if (w0 >= w1) continue;  // done with the plain rows
    std::int32_t* keys = s.row_keys;  // [t.keys + (w1 - w0)]
    float* bias = s.row_bias;         // [t.keys + (w1 - w0)]
    for (std::int64_t j = 0; j < t.keys; ++j) {
      keys[j] = t.k_index[j];
      bias[j] = keys[j] >= w0 && keys[j] < w1 ? kNegInf : t.key_bias[j];
    }
    append_window_keys(keys + t.keys, bias + t.keys, w0, w1);
    cpu::DenseAttentionTile u = t;
    u.k_index = keys;
    u.key_bias = bias;
    u.keys = t.keys + (w1 - w0);
    u.q_index = &t.q_index[r];
    u.out_index = u.q_index;
    u.rows = 1;
    u.next = nullptr;
    kernel.dense(u);
  }
}

// Runs item i, preparing item `next` (if any) first so the kernel can prefetch its rows.
void run_item(Context& ctx, const Phase& phase, bool merge, const Item* items, std::int64_t i,
              std::int64_t next, ThreadScratch& s) {
  if (s.prepared != i) {
    s.tile[s.slot] = make_tile(ctx, phase, merge, items[i], s, s.slot);
    s.prepared = i;
  }
  cpu::DenseAttentionTile& t = s.tile[s.slot];
  t.next = nullptr;
  if (next >= 0) {
    const int other = s.slot ^ 1;
    s.tile[other] = make_tile(ctx, phase, merge, items[next], s, other);
    if (s.tile[other].rows > 0) t.next = &s.tile[other];
  }
  if (t.rows > 0) {
    const Part& p = phase.parts[static_cast<std::size_t>(items[i].part)];
    const cpu::AttentionKernel& kernel = ctx.kernel_for(items[i].batch, items[i].head / ctx.group);
    if (p.approximate && p.window > 0)
      run_windowed_block(kernel, p, t, s);
    else
      kernel.dense(t);
  }
  if (next >= 0) {
    s.slot ^= 1;
    s.prepared = next;
  } else {
    s.prepared = -1;
  }
}

// Work units of a part: its sorted blocks (approximated) or its chunks of exact_row_chunk rows.
std::int64_t units_of(const Part& p, const AttentionConfig& c) {
  return p.approximate ? block_count(p, c) : (p.q1 - p.q0 + exact_row_chunk(p) - 1) / exact_row_chunk(p);
}

// The work items of a phase: one per (part, batch, query head, unit).
std::int64_t phase_items(const Context& ctx, const Phase& phase) {
  std::int64_t n = 0;
  for (const Part& p : phase.parts) n += ctx.batch * ctx.heads_q * units_of(p, ctx.config);
  return n;
}

// Runs a phase: `items` holds phase_items() entries, `scratch` one ThreadScratch per thread.
void run_phase(Context& ctx, const Phase& phase, bool merge, ThreadScratch* scratch, Item* items) {
  sort_phase(ctx, phase);
  std::int64_t n_items = 0;
  for (std::size_t pi = 0; pi < phase.parts.size(); ++pi) {
    const Part& p = phase.parts[pi];
    const std::int64_t units = units_of(p, ctx.config);
    const std::int64_t chunk = exact_row_chunk(p);
    const double unit_cost = p.approximate ? static_cast<double>(p.q1 - p.q0) / static_cast<double>(units) *
                                                 static_cast<double>(ctx.config.block_size + ctx.config.sample_size)
                                           : static_cast<double>(chunk) * static_cast<double>(p.k1 - p.k0);
    for (std::int64_t b = 0; b < ctx.batch; ++b)
      for (std::int64_t h = 0; h < ctx.heads_q; ++h)
        for (std::int64_t u = 0; u < units; ++u) {
          double cost = unit_cost;
          if (!p.approximate && p.causal_diagonal != cpu::kNoCausalMask)  // causal chunks grow along the rows
            cost = static_cast<double>(chunk) * static_cast<double>(std::clamp<std::int64_t>(
                (u + 1) * chunk + p.causal_diagonal, 1, p.k1 - p.k0));
          items[n_items++] = {static_cast<std::int32_t>(pi), static_cast<std::int32_t>(h), b, u, cost};
        }
  }
  // Most expensive first, equal costs in creation order (part, batch, head, unit; a stable sort
  // without its buffer): the atomic counter then balances the tail (longest-processing-time).
  std::sort(items, items + n_items, [](const Item& x, const Item& y) {
    if (x.cost != y.cost) return x.cost > y.cost;
    return std::tie(x.part, x.batch, x.head, x.unit) < std::tie(y.part, y.batch, y.head, y.unit);
  });
  for (int t = 0; t < ctx.threads; ++t) scratch[t].prepared = -1;
  cpu::parallel_for_lookahead(n_items, ctx.threads, [&](std::int64_t i, std::int64_t next, int thread) {
    run_item(ctx, phase, merge, items, i, next, scratch[thread]);
    ctx.report(1);
  });
}

std::int64_t count_items(const Context& ctx, const Plan& plan) {
  std::int64_t n = 0;
  for (const Phase& ph : plan.phases) n += phase_items(ctx, ph);
  return n;
}

bool any_approximate(const Plan& plan) {
  for (const Phase& ph : plan.phases)
    for (const Part& p : ph.parts)
      if (p.approximate) return true;
  return false;
}

// Key and value rows interleaved with others (a row stride beyond head_dim, as in a [tokens,
// heads * head_dim] projection output) span several times the memory they hold: approximated parts
// gather them from all over K and V, and exact ones stream every row once per row tile, each row
// on another 4 KiB page at a 2.5 KiB stride (the model's fused QKV), past what the TLBs and the
// hardware prefetchers follow. The kernels then read a compact copy, [batch, heads_kv, seq_kv,
// head_dim] in the workspace, made once per call (same values, so same results).
bool needs_compact_copy(const Context& ctx) { return ctx.args.k.stride[2] != ctx.d || ctx.args.v.stride[2] != ctx.d; }
std::int64_t compact_copy_bytes(const Context& ctx) {
  return 2 * ctx.batch * ctx.heads_kv * ctx.n_k * ctx.d * static_cast<std::int64_t>(ctx.esize);
}

void compact_keys_and_values(Context& ctx) {
  const TensorView& k = ctx.args.k;
  const TensorView& v = ctx.args.v;
  if (!needs_compact_copy(ctx)) return;
  const std::int64_t per_head = ctx.n_k * ctx.d;
  const std::int64_t heads = ctx.batch * ctx.heads_kv;
  const std::int64_t es = static_cast<std::int64_t>(ctx.esize);
  std::byte* base = ctx.kv_copy;  // [compact_copy_bytes]
  std::byte* k_base = base;
  std::byte* v_base = base + heads * per_head * es;
  constexpr std::int64_t kRows = 1024;
  const std::int64_t chunks = (ctx.n_k + kRows - 1) / kRows;
  cpu::parallel_for(2 * heads * chunks, ctx.threads, [&](std::int64_t item, int) {
    const bool is_k = item < heads * chunks;
    const std::int64_t local = is_k ? item : item - heads * chunks;
    const std::int64_t bh = local / chunks, chunk = local % chunks;
    const TensorView& src = is_k ? k : v;
    const std::byte* from = ctx.head_ptr(src, bh / ctx.heads_kv, bh % ctx.heads_kv);
    std::byte* to = (is_k ? k_base : v_base) + bh * per_head * es;
    for (std::int64_t j = chunk * kRows; j < std::min(ctx.n_k, (chunk + 1) * kRows); ++j)
      std::memcpy(to + j * ctx.d * es, from + j * src.stride[2] * es, static_cast<std::size_t>(ctx.d * es));
  });
  ctx.k_rows = TensorView::bhsd(k_base, k.dtype, ctx.batch, ctx.heads_kv, ctx.n_k, ctx.d);
  ctx.v_rows = TensorView::bhsd(v_base, v.dtype, ctx.batch, ctx.heads_kv, ctx.n_k, ctx.d);
}

void prepare_lsh(Context& ctx) {
  ctx.proj = projections(ctx.args, ctx.config, ctx.injected);
  hash_all(ctx);
}


// ---------------------------------------------------------------------------------------------
// Backward (AttentionGradArgs). Every row's output is attention over the multiset union of its
// parts' key sets (the LSE merge of disjoint partial results is exact), so its gradient is a
// flash-style backward of each part's key set against the row's final O and LSE. Parts run in plan
// order, like the forward; within a phase their rows are disjoint. No sum depends on the thread
// count:
//   exact parts:        dK/dV by key chunks (each owns its keys, loops over its rows and the query
//                       heads of the group in order), then dQ by row chunks (each owns its rows);
//   approximated parts: one item per (query head, block) computes dQ of its rows (its own) and the
//                       dK/dV contributions of its key list into its slot of a buffer; the slots are
//                       then added in item order, per key-value head.
// ---------------------------------------------------------------------------------------------

constexpr std::int64_t kBackwardKeyChunk = 128;  // keys per dK/dV item of an exact part
constexpr std::int64_t kBackwardRowChunk = 512;  // rows per dQ item of an exact part
constexpr float kPosInf = std::numeric_limits<float>::infinity();

// An fp32 gradient accumulator [batch, heads, seq, d]: the caller's f32 view, or our buffer.
struct GradAccumulator {
  float* data = nullptr;
  std::int64_t stride[3] = {0, 0, 0};
  float* storage = nullptr;  // [batch, heads, seq, d] when the view is not f32 (carve_backward)
  const TensorView* view = nullptr;

  void bind(const TensorView& v, int threads) {
    view = &v;
    if (v.dtype == DType::f32) {
      data = static_cast<float*>(v.data);
      for (int i = 0; i < 3; ++i) stride[i] = v.stride[i];
      cpu::parallel_for(v.shape[0] * v.shape[1], threads, [&](std::int64_t bh, int) {
        float* head = head_rows(bh / v.shape[1], bh % v.shape[1]);
        for (std::int64_t r = 0; r < v.shape[2]; ++r) std::fill_n(head + r * stride[2], v.shape[3], 0.0f);
      });
    } else {
      std::fill_n(storage, v.numel(), 0.0f);
      data = storage;
      stride[0] = v.shape[1] * v.shape[2] * v.shape[3];
      stride[1] = v.shape[2] * v.shape[3];
      stride[2] = v.shape[3];
    }
  }
  float* head_rows(std::int64_t b, std::int64_t h) const { return data + b * stride[0] + h * stride[1]; }
  // Our buffer into the caller's bf16 view.
  void finish(int threads) const {
    if (view->dtype == DType::f32) return;
    const TensorView& v = *view;
    cpu::parallel_for(v.shape[0] * v.shape[1], threads, [&](std::int64_t bh, int) {
      const std::int64_t b = bh / v.shape[1], h = bh % v.shape[1];
      const float* src = head_rows(b, h);
      auto* dst = static_cast<std::uint16_t*>(v.data) + b * v.stride[0] + h * v.stride[1];
      for (std::int64_t r = 0; r < v.shape[2]; ++r)
        for (std::int64_t c = 0; c < v.shape[3]; ++c) dst[r * v.stride[2] + c] = f32_to_bf16_bits(src[r * v.shape[3] + c]);
    });
  }
};

// A chunk of keys of one key-value head of an exact part (backward_exact_parts).
struct KeyChunk {
  std::int32_t part;
  std::int64_t bh;  // b * heads_kv + hkv
  std::int64_t lo;  // first key, relative to the part's k0
  std::int64_t index;
  std::int64_t counters;  // the part's first row-block counter of this (b, hkv)'s first query head
};

// An approximated block of one query head of a key-value head's group (backward_approximated_parts).
struct BlockItem {
  std::int32_t part;
  std::int32_t block;
  std::int64_t hq;  // query head within the group
};

// What one phase of the backward holds at once; the workspace holds it for the largest phase.
struct BackwardPhaseSize {
  std::int64_t chunks = 0;       // KeyChunks of its exact parts
  std::int64_t counters = 0;     // dQ row-block counters of its exact parts
  std::int64_t block_items = 0;  // BlockItems of one key-value head, its approximated parts
};

BackwardPhaseSize backward_phase_size(const Context& ctx, const Phase& phase) {
  BackwardPhaseSize z;
  for (const Part& p : phase.parts) {
    if (p.approximate) {
      z.block_items += ctx.group * block_count(p, ctx.config);
    } else {
      const std::int64_t row_blocks = (p.q1 - p.q0 + kBackwardRowChunk - 1) / kBackwardRowChunk;
      const std::int64_t key_chunks = (p.k1 - p.k0 + kBackwardKeyChunk - 1) / kBackwardKeyChunk;
      z.chunks += ctx.batch * ctx.heads_kv * key_chunks;
      z.counters += ctx.batch * ctx.heads_kv * ctx.group * row_blocks;
    }
  }
  return z;
}

struct GradContext {
  Context& ctx;
  const AttentionGradArgs& g;
  GradAccumulator dq, dk, dv;
  float* lse = nullptr;    // [batch, heads_q, n_q]: +inf for rows that saw nothing
  float* delta = nullptr;  // [batch, heads_q, n_q]: <dO, O> - dLSE
  float* dout_copy = nullptr;  // [batch, heads_q, n_q, d] when d_out is bf16
  std::int64_t dout_stride[3] = {0, 0, 0};
  const float* dout = nullptr;
  // Per phase (sized for the largest, BackwardPhaseSize):
  KeyChunk* chunks = nullptr;                 // [chunks]
  std::atomic<std::int64_t>* added = nullptr;  // [counters]
  BlockItem* block_items = nullptr;           // [block_items]
  // The approximated parts' dK/dV contributions [item][slot][dk | dv][d], their keys and counts.
  std::int64_t slot = 0;  // keys per item at most: ScratchExtent keys + window
  float* contrib = nullptr;           // [block_items][slot][2][d]
  std::int32_t* item_keys = nullptr;  // [block_items][slot]
  std::int64_t* item_count = nullptr;  // [block_items]

  GradContext(Context& c, const AttentionGradArgs& ga) : ctx(c), g(ga) {}
  const float* dout_head(std::int64_t b, std::int64_t h) const { return dout + b * dout_stride[0] + h * dout_stride[1]; }
  const float* lse_head(std::int64_t b, std::int64_t h) const { return lse + (b * ctx.heads_q + h) * ctx.n_q; }
  const float* delta_head(std::int64_t b, std::int64_t h) const { return delta + (b * ctx.heads_q + h) * ctx.n_q; }
};

float load_element(const TensorView& t, std::int64_t offset) {
  return t.dtype == DType::f32 ? static_cast<const float*>(t.data)[offset]
                               : bf16_bits_to_f32(static_cast<const std::uint16_t*>(t.data)[offset]);
}

// The driver's per-row arrays (dO as fp32, LSE with -inf as +inf, delta); returns, per (batch,
// query head), 1 where a row's delta or LSE is NaN or Inf (a NaN or Inf in dO, O, dLSE or LSE).
std::vector<char> prepare_gradients(GradContext& gc) {
  Context& ctx = gc.ctx;
  const AttentionGradArgs& g = gc.g;
  const std::int64_t d = ctx.d;
  if (g.d_out.dtype == DType::f32) {
    gc.dout = static_cast<const float*>(g.d_out.data);
    for (int i = 0; i < 3; ++i) gc.dout_stride[i] = g.d_out.stride[i];
  } else {
    gc.dout = gc.dout_copy;
    gc.dout_stride[0] = ctx.heads_q * ctx.n_q * d;
    gc.dout_stride[1] = ctx.n_q * d;
    gc.dout_stride[2] = d;
  }
  std::vector<char> nonfinite(static_cast<std::size_t>(ctx.batch * ctx.heads_q), 0);
  cpu::parallel_for(ctx.batch * ctx.heads_q, ctx.threads, [&](std::int64_t bh, int) {
    const std::int64_t b = bh / ctx.heads_q, h = bh % ctx.heads_q;
    bool any = false;
    for (std::int64_t r = 0; r < ctx.n_q; ++r) {
      const std::int64_t base_o = b * g.out.stride[0] + h * g.out.stride[1] + r * g.out.stride[2];
      const std::int64_t base_g = b * g.d_out.stride[0] + h * g.d_out.stride[1] + r * g.d_out.stride[2];
      float* copy = gc.dout_copy == nullptr ? nullptr : gc.dout_copy + (bh * ctx.n_q + r) * d;
      double dot = 0.0;  // <dO, O> in double: cancellation here would be amplified by every dS
      for (std::int64_t c = 0; c < d; ++c) {
        const float go = load_element(g.d_out, base_g + c);
        if (copy != nullptr) copy[c] = go;
        dot += static_cast<double>(go) * static_cast<double>(load_element(g.out, base_o + c));
      }
      const float l = g.lse.data[b * g.lse.stride[0] + h * g.lse.stride[1] + r * g.lse.stride[2]];
      const float dl = g.d_lse.data == nullptr ? 0.0f : g.d_lse.data[b * g.d_lse.stride[0] + h * g.d_lse.stride[1] + r * g.d_lse.stride[2]];
      gc.lse[bh * ctx.n_q + r] = l == kNegInf ? kPosInf : l;
      gc.delta[bh * ctx.n_q + r] = static_cast<float>(dot - static_cast<double>(dl));
      any |= !std::isfinite(gc.delta[bh * ctx.n_q + r]) || !(l < kPosInf);
    }
    nonfinite[static_cast<std::size_t>(bh)] = any ? 1 : 0;
  });
  gc.dq.bind(g.dq, ctx.threads);
  gc.dk.bind(g.dk, ctx.threads);
  gc.dv.bind(g.dv, ctx.threads);
  return nonfinite;
}

// The tile fields shared by every backward call of (batch b, query head hq).
cpu::BackwardTile backward_tile(const GradContext& gc, std::int64_t b, std::int64_t hq, float* scratch) {
  const Context& ctx = gc.ctx;
  cpu::BackwardTile t;
  set_operands(t, ctx, b, hq);
  t.d_out = gc.dout_head(b, hq);
  t.d_out_row_stride = gc.dout_stride[2];
  t.lse = gc.lse_head(b, hq);
  t.delta = gc.delta_head(b, hq);
  t.scratch = scratch;
  return t;
}

// The exact parts of a phase in one pass (5 matrix products per tile, none recomputed). An item is
// a chunk of keys of one key-value head: it owns their dK/dV, looping over the query heads of the
// group and their row blocks in order. Its dQ contribution to a row block (computed into scratch)
// is added after the one of the previous key chunk: each row block's counter says how many chunks
// have added theirs, so dQ sums over the chunks in key order whatever thread runs which chunk.
// Items start in index order (parallel_for), so the chunk a thread waits for is always running.
void backward_exact_parts(GradContext& gc, const Phase& phase, ThreadScratch* scratch) {
  Context& ctx = gc.ctx;
  KeyChunk* chunks = gc.chunks;  // [backward_phase_size().chunks]
  std::int64_t n_chunks = 0, n_counters = 0;
  for (std::size_t pi = 0; pi < phase.parts.size(); ++pi) {
    const Part& p = phase.parts[pi];
    if (p.approximate) continue;
    const std::int64_t row_blocks = (p.q1 - p.q0 + kBackwardRowChunk - 1) / kBackwardRowChunk;
    for (std::int64_t bh = 0; bh < ctx.batch * ctx.heads_kv; ++bh) {
      for (std::int64_t lo = 0, c = 0; lo < p.k1 - p.k0; lo += kBackwardKeyChunk, ++c)
        chunks[n_chunks++] = {static_cast<std::int32_t>(pi), bh, lo, c, n_counters};
      n_counters += ctx.group * row_blocks;
    }
  }
  if (n_chunks == 0) return;
  std::atomic<std::int64_t>* added = gc.added;  // [n_counters]
  for (std::int64_t i = 0; i < n_counters; ++i) ::new (added + i) std::atomic<std::int64_t>(0);
  cpu::parallel_for(n_chunks, ctx.threads, [&](std::int64_t i, int thread) {
    const KeyChunk& c = chunks[i];
    const Part& p = phase.parts[static_cast<std::size_t>(c.part)];
    ThreadScratch& s = scratch[thread];
    const std::int64_t b = c.bh / ctx.heads_kv, hkv = c.bh % ctx.heads_kv;
    const std::int64_t keys = std::min(kBackwardKeyChunk, p.k1 - p.k0 - c.lo);
    const std::int64_t row_blocks = (p.q1 - p.q0 + kBackwardRowChunk - 1) / kBackwardRowChunk;
    const bool causal = p.causal_diagonal != cpu::kNoCausalMask;
    // Causal: row q0 + r sees key k0 + lo iff lo <= r + diagonal; earlier rows skip the chunk.
    const std::int64_t first_row = causal ? std::max<std::int64_t>(0, c.lo - p.causal_diagonal) : 0;
    for (std::int64_t g = 0; g < ctx.group; ++g) {
      const std::int64_t hq = hkv * ctx.group + g;
      for (std::int64_t rb = first_row / kBackwardRowChunk; rb < row_blocks; ++rb) {
        const std::int64_t r0 = p.q0 + rb * kBackwardRowChunk, r1 = std::min(p.q1, r0 + kBackwardRowChunk);
        cpu::BackwardTile t = backward_tile(gc, b, hq, s.kernel);
        t.q = static_cast<const std::byte*>(t.q) + r0 * t.q_row_stride * static_cast<std::int64_t>(ctx.esize);
        t.d_out += r0 * t.d_out_row_stride;
        t.lse += r0;
        t.delta += r0;
        t.rows = r1 - r0;
        t.k = static_cast<const std::byte*>(t.k) + (p.k0 + c.lo) * t.k_row_stride * static_cast<std::int64_t>(ctx.esize);
        t.v = static_cast<const std::byte*>(t.v) + (p.k0 + c.lo) * t.v_row_stride * static_cast<std::int64_t>(ctx.esize);
        t.keys = keys;
        // Row r0 + r sees slot j iff lo + j <= (r0 - q0 + r) + diagonal.
        t.causal_diagonal = causal ? p.causal_diagonal + (r0 - p.q0) - c.lo : cpu::kNoCausalMask;
        std::fill_n(s.dq, t.rows * ctx.d, 0.0f);
        t.dq = s.dq;
        t.dq_row_stride = ctx.d;
        float* dk = gc.dk.head_rows(b, hkv) + (p.k0 + c.lo) * gc.dk.stride[2];
        float* dv = gc.dv.head_rows(b, hkv) + (p.k0 + c.lo) * gc.dv.stride[2];
        if (gc.dv.stride[2] == gc.dk.stride[2]) {
          t.dk = dk;
          t.dv = dv;
          t.dkv_row_stride = gc.dk.stride[2];
          ctx.kernel_for(b, hkv).backward(t);
        } else {  // one stride serves both in the kernel: through the thread's local pair
          std::fill_n(s.k_loc, keys * ctx.d, 0.0f);
          std::fill_n(s.v_loc, keys * ctx.d, 0.0f);
          t.dk = s.k_loc;
          t.dv = s.v_loc;
          t.dkv_row_stride = ctx.d;
          ctx.kernel_for(b, hkv).backward(t);
          for (std::int64_t j = 0; j < keys; ++j)
            for (int e = 0; e < ctx.d; ++e) {
              dk[j * gc.dk.stride[2] + e] += s.k_loc[j * ctx.d + e];
              dv[j * gc.dv.stride[2] + e] += s.v_loc[j * ctx.d + e];
            }
        }
        // dQ of the row block, after the previous chunk's (every chunk before this one sees the
        // rows this one sees: they hold earlier keys).
        std::atomic<std::int64_t>& turn = added[c.counters + g * row_blocks + rb];
        for (std::int64_t seen = turn.load(std::memory_order_acquire); seen != c.index; seen = turn.load(std::memory_order_acquire))
          turn.wait(seen, std::memory_order_acquire);
        float* dq = gc.dq.head_rows(b, hq) + r0 * gc.dq.stride[2];
        for (std::int64_t r = 0; r < t.rows; ++r)
          for (int e = 0; e < ctx.d; ++e) dq[r * gc.dq.stride[2] + e] += s.dq[r * ctx.d + e];
        turn.store(c.index + 1, std::memory_order_release);
        turn.notify_all();
      }
    }
  });
}

// The approximated parts of a phase, one key-value head at a time (bounds the contribution buffer).
void backward_approximated_parts(GradContext& gc, const Phase& phase, ThreadScratch* scratch) {
  Context& ctx = gc.ctx;
  const AttentionConfig& cfg = ctx.config;
  // Items of one key-value head, in canonical order: (part, query head of the group, block).
  BlockItem* items = gc.block_items;  // [backward_phase_size().block_items]
  std::int64_t n_items = 0;
  for (std::size_t pi = 0; pi < phase.parts.size(); ++pi) {
    const Part& p = phase.parts[pi];
    if (!p.approximate) continue;
    for (std::int64_t gq = 0; gq < ctx.group; ++gq)
      for (std::int64_t u = 0; u < block_count(p, cfg); ++u)
        items[n_items++] = {static_cast<std::int32_t>(pi), static_cast<std::int32_t>(u), gq};
  }
  if (n_items == 0) return;
  const std::int64_t slot = gc.slot;  // keys per item at most
  float* contrib = gc.contrib;        // [item][slot][dk | dv][d]
  std::int32_t* item_keys = gc.item_keys;
  std::int64_t* item_count = gc.item_count;
  for (std::int64_t b = 0; b < ctx.batch; ++b)
    for (std::int64_t hkv = 0; hkv < ctx.heads_kv; ++hkv) {
      cpu::parallel_for(n_items, ctx.threads, [&](std::int64_t i, int thread) {
        const BlockItem& it = items[i];
        const Part& p = phase.parts[static_cast<std::size_t>(it.part)];
        const std::int64_t hq = hkv * ctx.group + it.hq;
        ThreadScratch& s = scratch[thread];
        const std::int64_t nq = p.q1 - p.q0, blocks = block_count(p, cfg);
        const std::int64_t lo = it.block * nq / blocks, hi = (it.block + 1) * nq / blocks;
        item_count[i] = 0;
        if (hi == lo) return;
        cpu::BackwardTile t = backward_tile(gc, b, hq, s.kernel);
        t.q_index = ctx.q_perm + (b * ctx.heads_q + hq) * ctx.n_q + p.q0 + lo;
        t.rows = hi - lo;
        const std::int64_t n_keys = gather_block_keys(ctx, p, b, hq, it.block, s);
        std::int32_t* keys = s.row_keys;  // [slot]
        float* bias = s.row_bias;         // [slot]
        std::copy(s.keys, s.keys + n_keys, keys);
        std::copy(s.bias, s.bias + n_keys, bias);
        t.keys = n_keys;
        if (p.window > 0) {
          // The rows' windows (their keys exact, those inside masked from block and samples), as the forward.
          bool any = false;
          for (std::int64_t r = 0; r < t.rows; ++r) {
            std::int64_t w0, w1;
            window_of(p, t.q_index[r], &w0, &w1);
            s.row_window[2 * r] = static_cast<std::int32_t>(w0);
            s.row_window[2 * r + 1] = static_cast<std::int32_t>(std::max(w0, w1));
            any = any || w0 < w1;
          }
          if (any) {
            std::int64_t u0, u1;
            window_span(p, &u0, &u1);
            for (std::int64_t k = u0; k < u1; ++k) {
              keys[n_keys + k - u0] = static_cast<std::int32_t>(k);
              bias[n_keys + k - u0] = 0.0f;
            }
            t.keys = n_keys + std::max<std::int64_t>(u1 - u0, 0);
            t.row_window = s.row_window;
            t.window_from = n_keys;
          }
        }
        t.k_index = keys;
        t.key_bias = bias;
        t.dq = gc.dq.head_rows(b, hq);
        t.dq_row_stride = gc.dq.stride[2];
        float* out = contrib + i * slot * ctx.d * 2;
        std::fill_n(out, t.keys * ctx.d * 2, 0.0f);
        t.dk = out;
        t.dv = out + ctx.d;
        t.dkv_row_stride = 2 * ctx.d;
        ctx.kernel_for(b, hkv).backward(t);
        std::copy(keys, keys + t.keys, item_keys + i * slot);
        item_count[i] = t.keys;
      });
      // The contributions into dK/dV in item order; each worker owns a range of keys.
      const std::int64_t ranges = std::max<std::int64_t>(1, std::min<std::int64_t>(ctx.threads * 4, (ctx.n_k + 255) / 256));
      float* dk = gc.dk.head_rows(b, hkv);
      float* dv = gc.dv.head_rows(b, hkv);
      cpu::parallel_for(ranges, ctx.threads, [&](std::int64_t range, int) {
        const std::int64_t k_lo = range * ctx.n_k / ranges, k_hi = (range + 1) * ctx.n_k / ranges;
        for (std::int64_t i = 0; i < n_items; ++i) {
          const std::int32_t* keys = item_keys + i * slot;
          const float* src = contrib + i * slot * ctx.d * 2;
          for (std::int64_t j = 0; j < item_count[i]; ++j) {
            const std::int64_t key = keys[j];
            if (key < k_lo || key >= k_hi) continue;
            float* gk = dk + key * gc.dk.stride[2];
            float* gv = dv + key * gc.dv.stride[2];
            const float* sk = src + j * 2 * ctx.d;
            for (int e = 0; e < ctx.d; ++e) {
              gk[e] += sk[e];
              gv[e] += sk[ctx.d + e];
            }
          }
        }
      });
    }
}

// ---------------------------------------------------------------------------------------------
// The workspace: every buffer that grows with the problem, carved in one order (counted first).
// ---------------------------------------------------------------------------------------------

enum class Pass { forward, backward, sort_only };

// The largest key list (block + sinks or samples), block of rows and local-window span of any
// approximated part of a plan: each thread's scratch is carved once for all of its phases.
struct ScratchExtent {
  std::int64_t keys = 1, rows = 1, window = 0;
};

ScratchExtent scratch_extent(const Plan& plan, const AttentionConfig& c) {
  ScratchExtent e;
  for (const Phase& ph : plan.phases)
    for (const Part& p : ph.parts) {
      if (!p.approximate) continue;
      const std::int64_t units = block_count(p, c);
      e.keys = std::max(e.keys, c.block_size + std::max(p.sinks, c.sample_size));
      e.rows = std::max(e.rows, (p.q1 - p.q0 + units - 1) / units + 1);
      if (p.window > 0) {
        std::int64_t w0, w1;
        window_span(p, &w0, &w1);
        e.window = std::max(e.window, std::max<std::int64_t>(w1 - w0, 1));
      }
    }
  return e;
}

struct Carved {
  float* acc_storage = nullptr;  // [batch, heads_q, n_q, d] zeros, when out is not f32 (forward)
  Item* items = nullptr;         // [largest phase_items()] (forward)
  ThreadScratch* scratch = nullptr;  // [threads]
};

// Every buffer of one call out of `arena`, in one fixed order (only counted when the arena has no
// memory): the forward's accumulators, the LSH state, the compact K/V copy, the work items and
// each thread's scratch. Buffers a std::vector used to hold start zeroed, as they did.
Carved carve(Context& ctx, const Plan& plan, Pass pass, Arena& arena) {
  Carved c;
  const std::int64_t rows_q = ctx.batch * ctx.heads_q * ctx.n_q;
  const std::int64_t rows_k = ctx.batch * ctx.heads_kv * ctx.n_k;
  if (pass == Pass::forward) {
    if (ctx.args.out.dtype != DType::f32) c.acc_storage = arena.take_filled<float>(rows_q * ctx.d, 0.0f);
    ctx.lse = arena.take_filled<float>(rows_q, kNegInf);
  }
  if (pass == Pass::sort_only || any_approximate(plan)) {
    ctx.q_bucket = arena.take_filled<std::uint32_t>(rows_q, 0);
    ctx.k_bucket = arena.take_filled<std::uint32_t>(rows_k, 0);
    ctx.q_perm = arena.take_filled<std::int32_t>(rows_q, 0);
    ctx.k_perm = arena.take_filled<std::int32_t>(rows_k, 0);
    if (ctx.config.sampling == Sampling::position_stratified) ctx.k_rank = arena.take_filled<std::int32_t>(rows_k, 0);
    if (ctx.config.sampling == Sampling::value_norm) {
      ctx.v_norm2 = arena.take_filled<double>(rows_k, 0.0);
      ctx.k_cum = arena.take_filled<double>(rows_k, 0.0);
    }
    ctx.sort_counts = arena.take_filled<std::int64_t>(ctx.threads * ((std::int64_t{1} << ctx.config.lsh_bits) + 1), 0);
  }
  if (pass == Pass::sort_only) return c;
  if (needs_compact_copy(ctx)) ctx.kv_copy = arena.take<std::byte>(compact_copy_bytes(ctx));
  if (pass == Pass::forward) {
    std::int64_t most = 0;
    for (const Phase& ph : plan.phases) most = std::max(most, phase_items(ctx, ph));
    c.items = arena.take<Item>(most);
  }
  const ScratchExtent e = scratch_extent(plan, ctx.config);
  // Room for either kernel a call may run on (the workspace's size does not depend on the values).
  std::size_t kernel_floats = 0;
  for (const cpu::AttentionKernel* k : {&cpu::best_kernel(), &cpu::strict_kernel()})
    kernel_floats = std::max(kernel_floats, pass == Pass::forward ? k->scratch_floats(ctx.d, ctx.d)
                                                                  : k->backward_scratch_floats(ctx.d));
  c.scratch = arena.take<ThreadScratch>(ctx.threads);
  if (c.scratch != nullptr) std::uninitialized_default_construct_n(c.scratch, ctx.threads);
  for (int t = 0; t < ctx.threads; ++t) {
    ThreadScratch counted;  // the pointers of a counting pass go nowhere
    ThreadScratch& s = c.scratch != nullptr ? c.scratch[t] : counted;
    s.kernel = arena.take<float>(static_cast<std::int64_t>(std::max<std::size_t>(kernel_floats, 16)));
    s.keys = arena.take_filled<std::int32_t>(e.keys, 0);
    s.bias = arena.take_filled<float>(e.keys, 0.0f);
    for (int k = 0; k < 2; ++k) {
      s.slot_keys[k] = arena.take_filled<std::int32_t>(e.keys, 0);
      s.slot_bias[k] = arena.take_filled<float>(e.keys, 0.0f);
    }
    s.rows = arena.take_filled<std::int32_t>(e.rows, 0);
    s.row_window = arena.take_filled<std::int32_t>(2 * e.rows, 0);
    s.row_keys = arena.take_filled<std::int32_t>(e.keys + e.window, 0);
    s.row_bias = arena.take_filled<float>(e.keys + e.window, 0.0f);
    if (pass == Pass::backward) {
      s.dq = arena.take<float>(kBackwardRowChunk * ctx.d);
      s.k_loc = arena.take<float>(kBackwardKeyChunk * ctx.d);
      s.v_loc = arena.take<float>(kBackwardKeyChunk * ctx.d);
    }
  }
  return c;
}

// The backward's own buffers, after carve(..., Pass::backward, ...).
void carve_backward(GradContext& gc, const Plan& plan, Arena& arena) {
  const Context& ctx = gc.ctx;
  const AttentionGradArgs& g = gc.g;
  const std::int64_t rows_q = ctx.batch * ctx.heads_q * ctx.n_q;
  if (g.d_out.dtype != DType::f32) gc.dout_copy = arena.take_filled<float>(g.d_out.numel(), 0.0f);
  gc.lse = arena.take_filled<float>(rows_q, 0.0f);
  gc.delta = arena.take_filled<float>(rows_q, 0.0f);
  for (auto [acc, view] : {std::pair{&gc.dq, &g.dq}, std::pair{&gc.dk, &g.dk}, std::pair{&gc.dv, &g.dv}})
    if (view->dtype != DType::f32) acc->storage = arena.take<float>(view->numel());
  BackwardPhaseSize most;
  for (const Phase& ph : plan.phases) {
    const BackwardPhaseSize z = backward_phase_size(ctx, ph);
    most.chunks = std::max(most.chunks, z.chunks);
    most.counters = std::max(most.counters, z.counters);
    most.block_items = std::max(most.block_items, z.block_items);
  }
  gc.chunks = arena.take<KeyChunk>(most.chunks);
  gc.added = arena.take<std::atomic<std::int64_t>>(most.counters);
  gc.block_items = arena.take<BlockItem>(most.block_items);
  const ScratchExtent e = scratch_extent(plan, ctx.config);
  gc.slot = e.keys + e.window;
  gc.contrib = arena.take<float>(most.block_items * gc.slot * ctx.d * 2);
  gc.item_keys = arena.take<std::int32_t>(most.block_items * gc.slot);
  gc.item_count = arena.take<std::int64_t>(most.block_items);
}

// The bytes `carve_all(arena)` takes, plus the slack to align the caller's block to 64 bytes.
template <class CarveAll>
std::size_t counted_bytes(CarveAll&& carve_all) {
  Arena counter(nullptr, 0);
  carve_all(counter);
  return counter.used() + Arena::kAlign - 1;
}

// Runs `run(arena)` over the caller's workspace, or over one allocated here (workspace.data null).
template <class Run>
Status with_workspace(std::size_t needed, const Workspace& workspace, const char* size_call, Run&& run) {
  WorkspaceBuffer own;
  auto* base = static_cast<std::byte*>(workspace.data);
  std::size_t bytes = workspace.bytes;
  if (base == nullptr) {
    base = own.allocate(needed);
    bytes = needed;
  } else if (bytes < needed) {
    return Status::InvalidArgument(fmt::format(
        "workspace.bytes: {} bytes; this call needs {} (ask {} with the same arguments and config)", bytes, needed, size_call));
  }
  const std::size_t pad = (Arena::kAlign - reinterpret_cast<std::uintptr_t>(base) % Arena::kAlign) % Arena::kAlign;
  Arena arena(base + pad, bytes - pad);
  run(arena);
  return Status::Ok();
}

const InjectedRandomness kNoInjection{};

}  // namespace

std::size_t workspace_bytes(const Plan& plan, const AttentionArgs& args, const AttentionConfig& config) {
  Context ctx(args, config, kNoInjection);
  return counted_bytes([&](Arena& a) { carve(ctx, plan, Pass::forward, a); });
}

Status execute(const Plan& plan, const AttentionArgs& args, const AttentionConfig& config,
               const InjectedRandomness& injected, const Workspace& workspace, const NonFiniteInputs& nonfinite) {
  try {
    Context ctx(args, config, injected);
    // A NaN or Inf in V reaches every row of a SIMD kernel's row group through the weight 0 of
    // the keys a row does not see; the strict kernel leaves those keys out (docs/numerics.md).
    ctx.strict_kv = nonfinite.v;
    const std::size_t needed = counted_bytes([&](Arena& a) { carve(ctx, plan, Pass::forward, a); });
    return with_workspace(needed, workspace, "workspace_size()", [&](Arena& arena) {
      const Carved c = carve(ctx, plan, Pass::forward, arena);
      if (args.out.dtype == DType::f32) {
        ctx.acc = static_cast<float*>(args.out.data);
        for (int i = 0; i < 3; ++i) ctx.acc_stride[i] = args.out.stride[i];
      } else {
        ctx.acc = c.acc_storage;
        ctx.acc_stride[0] = ctx.heads_q * ctx.n_q * ctx.d;
        ctx.acc_stride[1] = ctx.n_q * ctx.d;
        ctx.acc_stride[2] = ctx.d;
      }
      // Rows that see no key: O = 0, LSE = -inf (stays so through every merge).
      if (!plan.empty_rows.empty()) {
        for (std::int64_t b = 0; b < ctx.batch; ++b)
          for (std::int64_t h = 0; h < ctx.heads_q; ++h)
            for (std::int64_t r = plan.empty_rows[0]; r < plan.empty_rows[1]; ++r)
              std::fill_n(ctx.acc_head(b, h) + r * ctx.acc_stride[2], ctx.d, 0.0f);
      }
      if (any_approximate(plan)) prepare_lsh(ctx);
      compact_keys_and_values(ctx);
      ctx.total = count_items(ctx, plan);
      for (std::size_t i = 0; i < plan.phases.size(); ++i) run_phase(ctx, plan.phases[i], i > 0, c.scratch, c.items);

      // Outputs in the caller's dtype and layout.
      if (args.out.dtype == DType::bf16) {
        cpu::parallel_for(ctx.batch * ctx.heads_q, ctx.threads, [&](std::int64_t bh, int) {
          const std::int64_t b = bh / ctx.heads_q, h = bh % ctx.heads_q;
          const float* src = ctx.acc_head(b, h);
          auto* dst = static_cast<std::uint16_t*>(args.out.data) + b * args.out.stride[0] + h * args.out.stride[1];
          for (std::int64_t r = 0; r < ctx.n_q; ++r)
            for (int k = 0; k < ctx.d; ++k) dst[r * args.out.stride[2] + k] = f32_to_bf16_bits(src[r * ctx.d + k]);
        });
      }
      if (args.lse.data != nullptr) {
        for (std::int64_t b = 0; b < ctx.batch; ++b)
          for (std::int64_t h = 0; h < ctx.heads_q; ++h)
            for (std::int64_t r = 0; r < ctx.n_q; ++r)
              args.lse.data[b * args.lse.stride[0] + h * args.lse.stride[1] + r * args.lse.stride[2]] = ctx.lse_head(b, h)[r];
      }
      if (config.progress != nullptr && ctx.total == 0) config.progress(config.progress_context, 0, 0);
    });
  } catch (const std::bad_alloc&) {
    return Status::OutOfMemory("hyperattn: could not allocate the workspace for this problem");
  }
}

Status sorted_blocks(const AttentionArgs& args, const AttentionConfig& config,
                     const InjectedRandomness& injected, std::int32_t* query_block, std::int32_t* key_block) {
  try {
    Context ctx(args, config, injected);
    Plan plan;
    plan.phases.push_back({{{0, ctx.n_q, 0, ctx.n_k, cpu::kNoCausalMask, true, 0, sinks_of(0, ctx.n_k, config)}}});
    const std::size_t needed = counted_bytes([&](Arena& a) { carve(ctx, plan, Pass::sort_only, a); });
    return with_workspace(needed, {}, "", [&](Arena& arena) {
      carve(ctx, plan, Pass::sort_only, arena);
      prepare_lsh(ctx);
      const Phase& phase = plan.phases[0];
      sort_phase(ctx, phase);
      const Part& p = phase.parts[0];
      const std::int64_t blocks = block_count(p, config);
      // Sinks covering every key leave no block: each query then has block -1 (the sinks only).
      std::fill(query_block, query_block + ctx.batch * ctx.heads_q * ctx.n_q, -1);
      for (std::int64_t bh = 0; bh < ctx.batch * ctx.heads_q; ++bh)
        for (std::int64_t beta = 0; beta < blocks; ++beta)
          for (std::int64_t i = beta * ctx.n_q / blocks; i < (beta + 1) * ctx.n_q / blocks; ++i)
            query_block[bh * ctx.n_q + ctx.q_perm[bh * ctx.n_q + i]] = static_cast<std::int32_t>(beta);
      for (std::int64_t bh = 0; bh < ctx.batch * ctx.heads_kv; ++bh) {
        for (std::int64_t i = 0; i < p.sinks; ++i) key_block[bh * ctx.n_k + i] = -1;  // sinks: attended by every block
        for (std::int64_t i = p.sinks; i < ctx.n_k; ++i)
          key_block[bh * ctx.n_k + ctx.k_perm[bh * ctx.n_k + i]] = static_cast<std::int32_t>((i - p.sinks) / config.block_size);
      }
    });
  } catch (const std::bad_alloc&) {
    return Status::OutOfMemory("hyperattn: could not allocate the workspace for lsh_blocks");
  }
}

std::size_t backward_workspace_bytes(const Plan& plan, const AttentionGradArgs& g, const AttentionConfig& config) {
  const AttentionArgs args{g.q, g.k, g.v, g.out, g.lse};
  Context ctx(args, config, kNoInjection);
  GradContext gc(ctx, g);
  return counted_bytes([&](Arena& a) {
    carve(ctx, plan, Pass::backward, a);
    carve_backward(gc, plan, a);
  });
}

Status execute_backward(const Plan& plan, const AttentionGradArgs& g, const AttentionConfig& config,
                        const InjectedRandomness& injected, const Workspace& workspace, const NonFiniteInputs& nonfinite) {
  try {
    const AttentionArgs args{g.q, g.k, g.v, g.out, g.lse};
    Context ctx(args, config, injected);
    if (ctx.kernel.backward == nullptr)
      return Status::Unsupported(fmt::format("hyperattn: the {} kernel has no backward pass", ctx.kernel.name));
    GradContext gc(ctx, g);
    const auto carve_all = [&](Arena& a) {
      const Carved c = carve(ctx, plan, Pass::backward, a);
      carve_backward(gc, plan, a);
      return c;
    };
    return with_workspace(counted_bytes(carve_all), workspace, "backward_workspace_size()", [&](Arena& arena) {
      const Carved c = carve_all(arena);
      // In the backward every product meets the masked entries (P = 0 and dS = 0): a NaN or Inf in
      // Q, K, V, dO, O, dLSE or LSE would reach, through them, the gradients of rows and keys that
      // never meet it. The tiles of a key-value head whose inputs (its own K and V, its query heads'
      // Q, dO, O, dLSE, LSE) hold one run on the strict kernel, which leaves the masked entries out.
      const std::vector<char> rows_nonfinite = prepare_gradients(gc);  // [batch, heads_q]
      ctx.strict_kv.assign(static_cast<std::size_t>(ctx.batch * ctx.heads_kv), 0);
      const auto flag = [](const std::vector<char>& heads, std::size_t i) { return !heads.empty() && heads[i] != 0; };
      for (std::int64_t b = 0; b < ctx.batch; ++b)
        for (std::int64_t hq = 0; hq < ctx.heads_q; ++hq) {
          const std::size_t q = static_cast<std::size_t>(b * ctx.heads_q + hq);
          const std::size_t kv = static_cast<std::size_t>(b * ctx.heads_kv + hq / ctx.group);
          if (rows_nonfinite[q] != 0 || flag(nonfinite.q, q) || flag(nonfinite.k, kv) || flag(nonfinite.v, kv))
            ctx.strict_kv[kv] = 1;
        }
      if (any_approximate(plan)) prepare_lsh(ctx);
      compact_keys_and_values(ctx);
      for (const Phase& phase : plan.phases) {
        sort_phase(ctx, phase);
        backward_exact_parts(gc, phase, c.scratch);
        backward_approximated_parts(gc, phase, c.scratch);
      }
      gc.dq.finish(ctx.threads);
      gc.dk.finish(ctx.threads);
      gc.dv.finish(ctx.threads);
    });
  } catch (const std::bad_alloc&) {
    return Status::OutOfMemory("hyperattn: could not allocate the workspace for the backward pass");
  }
}

}  // namespace hyperattn::cpu
