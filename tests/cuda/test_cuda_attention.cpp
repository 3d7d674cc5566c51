// tests/cuda/test_cuda_attention.cpp: the CUDA backend against the CPU library.
//   - exact and HyperAttention outputs and LSE against exact_attention / hyper_attention on the
//     CPU (same seed: the same blocks and samples), both kernels (tensor-core and CUDA-core),
//     bf16 / f16 / f32, causal and not, GQA, [b, n, h, d] strides, odd lengths;
//   - the integer stages bit for bit: cuda_lsh_blocks against lsh_blocks;
//   - validation that needs no device.
// Device tests GTEST_SKIP when no CUDA device is present.
//
// Tolerances (max |gpu - cpu| / max |cpu| over the output): both sides accumulate in fp32 over the
// same key sets, so f32 agrees to ~1e-6 (bound 1e-4); a bf16 output can differ by one rounding of
// its 8-bit mantissa (2^-8 relative) plus, in the tensor-core kernel, P rounded to bf16 before P*V
// (another 2^-9): bound 1.6e-2; f16 (11 bits): 4e-3. LSE is fp32 on both sides: 1e-4 (f32 inputs)
// and 2e-3 when the tensor-core kernel rounds Q K^T inputs (they already are bf16/f16: exact
// products, fp32 sums in another order) .
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "core/bfloat16.hpp"
#include "hyperattn/attention.hpp"
#include "hyperattn/cuda.hpp"

namespace hyperattn {

// Readable parameter names in test listings.
void PrintTo(DType dtype, std::ostream* os) { *os << to_string(dtype); }

namespace {

#define ASSERT_CUDA(expr) ASSERT_EQ((expr), cudaSuccess) << #expr

struct DeviceMem {
  void* ptr = nullptr;
  explicit DeviceMem(std::size_t bytes) {
    if (cudaMalloc(&ptr, std::max<std::size_t>(bytes, 256)) != cudaSuccess) ptr = nullptr;
  }
  ~DeviceMem() {
    if (ptr) cudaFree(ptr);
  }
  DeviceMem(const DeviceMem&) = delete;
  DeviceMem& operator=(const DeviceMem&) = delete;
};

enum class Layout { bhsd, bshd };

struct Case {
  DType dtype = DType::bf16;
  std::int64_t batch = 1, heads_q = 2, heads_kv = 2, seq_q = 256, seq_kv = 256, head_dim = 64;
  Layout layout = Layout::bhsd;
  AttentionConfig config;
  bool hyper = false;
  int kernel = 0;  // 0: the default choice (tensor cores where they apply), 1: CUDA cores, 2: pipelined mma
  float q_scale = 1.5f;        // larger scores: peakier attention, so wrong key sets show
  bool inject = false;         // injected projections (and samples, non-causal)
  std::uint64_t data_seed = 7;
};

// Host tensor in the case's dtype, with the f32 values it holds.
struct HostTensor {
  std::vector<float> values;       // [elements] the exact values represented
  std::vector<std::byte> storage;  // in dtype
};

HostTensor make_tensor(DType dtype, std::size_t n, float scale, std::mt19937_64& gen) {
  std::normal_distribution<float> normal(0.0f, scale);
  HostTensor t;
  t.values.resize(n);
  t.storage.resize(n * size_of(dtype));
  for (std::size_t i = 0; i < n; ++i) {
    float x = normal(gen);
    if (dtype == DType::bf16) {
      const std::uint16_t b = f32_to_bf16_bits(x);
      std::memcpy(t.storage.data() + 2 * i, &b, 2);
      x = bf16_bits_to_f32(b);
    } else if (dtype == DType::f16) {
      const __half h = __float2half_rn(x);
      std::memcpy(t.storage.data() + 2 * i, &h, 2);
      x = __half2float(h);
    } else {
      std::memcpy(t.storage.data() + 4 * i, &x, 4);
    }
    t.values[i] = x;
  }
  return t;
}

TensorView view(void* data, DType dtype, Layout layout, std::int64_t b, std::int64_t h, std::int64_t s, std::int64_t d) {
  return layout == Layout::bhsd ? TensorView::bhsd(data, dtype, b, h, s, d) : TensorView::bshd(data, dtype, b, s, h, d);
}

float output_value(const std::vector<std::byte>& storage, DType dtype, std::size_t i) {
  if (dtype == DType::f32) {
    float x;
    std::memcpy(&x, storage.data() + 4 * i, 4);
    return x;
  }
  std::uint16_t b;
  std::memcpy(&b, storage.data() + 2 * i, 2);
  if (dtype == DType::bf16) return bf16_bits_to_f32(b);
  __half_raw raw;
  raw.x = b;
  return __half2float(__half(raw));
}

struct ScopedKernel {
  explicit ScopedKernel(int kernel) {
    if (kernel == 1) setenv("HYPERATTN_CUDA_KERNEL", "simple", 1);
    if (kernel == 2) setenv("HYPERATTN_CUDA_KERNEL", "mma_pipelined", 1);
  }
  ~ScopedKernel() { unsetenv("HYPERATTN_CUDA_KERNEL"); }
};

void run_case(const Case& c) {
  if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
  std::mt19937_64 gen(c.data_seed);
  const std::size_t q_n = static_cast<std::size_t>(c.batch * c.heads_q * c.seq_q * c.head_dim);
  const std::size_t kv_n = static_cast<std::size_t>(c.batch * c.heads_kv * c.seq_kv * c.head_dim);
  const std::size_t lse_n = static_cast<std::size_t>(c.batch * c.heads_q * c.seq_q);
  const HostTensor q = make_tensor(c.dtype, q_n, c.q_scale, gen);
  const HostTensor k = make_tensor(c.dtype, kv_n, 1.0f, gen);
  const HostTensor v = make_tensor(c.dtype, kv_n, 1.0f, gen);
  const std::size_t es = size_of(c.dtype);

  // Injected randomness (host pointers for both backends).
  std::vector<float> proj;
  std::vector<std::int32_t> samples;
  InjectedRandomness injected;
  if (c.inject) {
    std::normal_distribution<float> normal;
    proj.resize(static_cast<std::size_t>(c.batch * c.heads_kv * c.head_dim * c.config.lsh_bits));
    for (float& x : proj) x = normal(gen);
    injected.projections = proj.data();
    if (!c.config.causal) {
      const std::int64_t blocks = (c.seq_kv - c.config.sink_keys + c.config.block_size - 1) / c.config.block_size;
      samples.resize(static_cast<std::size_t>(c.batch * c.heads_q * blocks * c.config.sample_size));
      std::uniform_int_distribution<std::int32_t> pick(0, static_cast<std::int32_t>(c.seq_kv - 1));
      for (auto& s : samples) s = pick(gen);
      injected.samples = samples.data();
    }
  }

  // GPU.
  DeviceMem dq(q_n * es), dk(kv_n * es), dv(kv_n * es), dout(q_n * es), dlse(lse_n * 4);
  ASSERT_TRUE(dq.ptr && dk.ptr && dv.ptr && dout.ptr && dlse.ptr);
  ASSERT_CUDA(cudaMemcpy(dq.ptr, q.storage.data(), q_n * es, cudaMemcpyHostToDevice));
  ASSERT_CUDA(cudaMemcpy(dk.ptr, k.storage.data(), kv_n * es, cudaMemcpyHostToDevice));
  ASSERT_CUDA(cudaMemcpy(dv.ptr, v.storage.data(), kv_n * es, cudaMemcpyHostToDevice));
  ASSERT_CUDA(cudaMemset(dout.ptr, 0xff, q_n * es));  // NaN poison: every element must be written
  ASSERT_CUDA(cudaMemset(dlse.ptr, 0xff, lse_n * 4));
  AttentionArgs gpu;
  gpu.q = view(dq.ptr, c.dtype, c.layout, c.batch, c.heads_q, c.seq_q, c.head_dim);
  gpu.k = view(dk.ptr, c.dtype, c.layout, c.batch, c.heads_kv, c.seq_kv, c.head_dim);
  gpu.v = view(dv.ptr, c.dtype, c.layout, c.batch, c.heads_kv, c.seq_kv, c.head_dim);
  gpu.out = view(dout.ptr, c.dtype, c.layout, c.batch, c.heads_q, c.seq_q, c.head_dim);
  gpu.lse = LseView::contiguous(static_cast<float*>(dlse.ptr), c.heads_q, c.seq_q);
  std::size_t bytes = 0;
  ASSERT_TRUE(cuda_workspace_size(gpu, c.config, c.hyper, &bytes).ok());
  DeviceMem ws(bytes);
  ASSERT_TRUE(ws.ptr);
  {
    ScopedKernel kernel(c.kernel);
    const Status s = c.hyper ? cuda_hyper_attention(gpu, c.config, injected, ws.ptr, bytes, nullptr)
                             : cuda_exact_attention(gpu, c.config, ws.ptr, bytes, nullptr);
    ASSERT_TRUE(s.ok()) << s.message();
  }
  ASSERT_CUDA(cudaDeviceSynchronize());
  std::vector<std::byte> out_gpu(q_n * es);
  std::vector<float> lse_gpu(lse_n);
  ASSERT_CUDA(cudaMemcpy(out_gpu.data(), dout.ptr, q_n * es, cudaMemcpyDeviceToHost));
  ASSERT_CUDA(cudaMemcpy(lse_gpu.data(), dlse.ptr, lse_n * 4, cudaMemcpyDeviceToHost));

  // CPU on the same values (f16 has no CPU path: f32 holding the f16 values).
  const DType cpu_dtype = c.dtype == DType::bf16 ? DType::bf16 : DType::f32;
  std::vector<std::byte> q_cpu, k_cpu, v_cpu;
  auto cpu_copy = [&](const HostTensor& t, std::vector<std::byte>* dst) {
    if (cpu_dtype == c.dtype) {
      *dst = t.storage;
    } else {
      dst->resize(t.values.size() * 4);
      std::memcpy(dst->data(), t.values.data(), dst->size());
    }
  };
  cpu_copy(q, &q_cpu);
  cpu_copy(k, &k_cpu);
  cpu_copy(v, &v_cpu);
  std::vector<std::byte> out_cpu(q_n * size_of(cpu_dtype));
  std::vector<float> lse_cpu(lse_n);
  AttentionArgs cpu;
  cpu.q = view(q_cpu.data(), cpu_dtype, c.layout, c.batch, c.heads_q, c.seq_q, c.head_dim);
  cpu.k = view(k_cpu.data(), cpu_dtype, c.layout, c.batch, c.heads_kv, c.seq_kv, c.head_dim);
  cpu.v = view(v_cpu.data(), cpu_dtype, c.layout, c.batch, c.heads_kv, c.seq_kv, c.head_dim);
  cpu.out = view(out_cpu.data(), cpu_dtype, c.layout, c.batch, c.heads_q, c.seq_q, c.head_dim);
  cpu.lse = LseView::contiguous(lse_cpu.data(), c.heads_q, c.seq_q);
  const Status s = c.hyper ? hyper_attention(cpu, c.config, injected) : exact_attention(cpu, c.config);
  ASSERT_TRUE(s.ok()) << s.message();

  double max_ref = 0.0, max_err = 0.0;
  std::size_t worst = 0;
  for (std::size_t i = 0; i < q_n; ++i) {
    const double ref = output_value(out_cpu, cpu_dtype, i);
    const double got = output_value(out_gpu, c.dtype, i);
    ASSERT_FALSE(std::isnan(got)) << "output element " << i << " not written (or NaN)";
    max_ref = std::max(max_ref, std::abs(ref));
    if (std::abs(got - ref) > max_err) {
      max_err = std::abs(got - ref);
      worst = i;
    }
  }
  const bool tensor_cores = c.kernel != 1 && c.dtype != DType::f32 && (c.head_dim == 64 || c.head_dim == 128);
  const double out_tol = c.dtype == DType::f32 ? 1e-4 : c.dtype == DType::bf16 ? 1.6e-2 : 4e-3;
  EXPECT_LE(max_err, out_tol * std::max(max_ref, 1e-6))
      << "max |gpu - cpu| " << max_err << " at element " << worst << ", max |cpu| " << max_ref;
  const double lse_tol = tensor_cores ? 2e-3 : 1e-4;
  double lse_err = 0.0;
  for (std::size_t i = 0; i < lse_n; ++i) {
    ASSERT_FALSE(std::isnan(lse_gpu[i])) << "lse " << i << " not written";
    if (std::isinf(lse_cpu[i]) || std::isinf(lse_gpu[i])) {
      ASSERT_EQ(lse_cpu[i], lse_gpu[i]) << "lse " << i;
      continue;
    }
    lse_err = std::max(lse_err, static_cast<double>(std::abs(lse_gpu[i] - lse_cpu[i])));
  }
  EXPECT_LE(lse_err, lse_tol * 10.0) << "max |lse gpu - lse cpu|";
}

AttentionConfig hyper_config(bool causal) {
  AttentionConfig c;
  c.causal = causal;
  c.block_size = 64;
  c.sample_size = 32;
  c.min_seq_len = 256;
  c.seed = 42;
  return c;
}

// ---- Exact attention -------------------------------------------------------------------------

class CudaExact : public ::testing::TestWithParam<std::tuple<DType, int, bool, int>> {};

TEST_P(CudaExact, MatchesCpu) {
  Case c;
  std::tie(c.dtype, c.head_dim, c.config.causal, c.kernel) = GetParam();
  c.batch = 2;
  c.heads_q = 4;
  c.heads_kv = 2;
  c.seq_q = 203;
  c.seq_kv = 331;
  run_case(c);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaExact,
                         ::testing::Combine(::testing::Values(DType::bf16, DType::f16, DType::f32),
                                            ::testing::Values(64, 128, 96), ::testing::Bool(), ::testing::Values(0, 1, 2)));

TEST(CudaExactShapes, CausalWithMoreQueriesThanKeysHasEmptyRows) {
  Case c;
  c.config.causal = true;
  c.seq_q = 300;
  c.seq_kv = 120;
  run_case(c);
}

TEST(CudaExactShapes, TokenMajorLayoutAndHeadDim256) {
  Case c;
  c.layout = Layout::bshd;
  c.head_dim = 256;
  c.seq_q = c.seq_kv = 150;
  c.config.causal = true;
  run_case(c);
}

TEST(CudaExactShapes, TokenMajorLayoutTensorCores) {
  Case c;
  c.layout = Layout::bshd;
  c.heads_q = 8;
  c.heads_kv = 1;  // MQA
  c.seq_q = c.seq_kv = 517;
  run_case(c);
  c.kernel = 2;
  c.head_dim = 128;
  c.config.causal = true;
  run_case(c);
}

// ---- HyperAttention ---------------------------------------------------------------------------

class CudaHyper : public ::testing::TestWithParam<std::tuple<DType, int, bool>> {};

TEST_P(CudaHyper, NonCausalMatchesCpu) {
  Case c;
  c.hyper = true;
  std::tie(c.dtype, c.kernel, std::ignore) = GetParam();
  c.config = hyper_config(false);
  c.batch = 2;
  c.heads_q = 4;
  c.heads_kv = 2;
  c.seq_q = 700;
  c.seq_kv = 1000;
  run_case(c);
}

TEST_P(CudaHyper, CausalMatchesCpu) {
  Case c;
  c.hyper = true;
  bool rectangular;
  std::tie(c.dtype, c.kernel, rectangular) = GetParam();
  c.config = hyper_config(true);
  c.heads_q = 2;
  c.heads_kv = 1;
  c.seq_q = rectangular ? 900 : 1337;  // odd, not a power of two; bottom-right aligned prefix
  c.seq_kv = 1337;
  run_case(c);
}

INSTANTIATE_TEST_SUITE_P(Variants, CudaHyper,
                         ::testing::Combine(::testing::Values(DType::bf16, DType::f16, DType::f32),
                                            ::testing::Values(0, 1, 2), ::testing::Bool()));

TEST(CudaHyperOptions, SinksStratifiedAndReferenceGray) {
  Case c;
  c.hyper = true;
  c.config = hyper_config(false);
  c.config.sink_keys = 4;
  c.config.sampling = Sampling::stratified;
  c.config.bucket_order = BucketOrder::reference_gray;
  c.seq_q = c.seq_kv = 1024;
  run_case(c);
  c.config.causal = true;
  run_case(c);
}

TEST(CudaHyperOptions, InjectedProjectionsAndSamples) {
  Case c;
  c.hyper = true;
  c.inject = true;
  c.config = hyper_config(false);
  c.seq_q = 512;
  c.seq_kv = 800;
  run_case(c);
  c.config.causal = true;
  c.seq_q = c.seq_kv = 900;
  run_case(c);
}

TEST(CudaHyperOptions, ExactRegimesEqualExactAttention) {
  Case c;
  c.hyper = true;
  c.config = hyper_config(false);
  c.config.min_seq_len = 100000;  // everything exact
  c.seq_q = c.seq_kv = 400;
  run_case(c);
  c.config.causal = true;
  run_case(c);
}

// ---- Integer stages bit for bit ----------------------------------------------------------------

void check_lsh_blocks(DType dtype, std::int64_t sinks, BucketOrder order) {
  if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
  const std::int64_t batch = 2, hq = 4, hkv = 2, n_q = 611, n_k = 947, d = 64;
  AttentionConfig config = hyper_config(false);
  config.sink_keys = sinks;
  config.bucket_order = order;
  std::mt19937_64 gen(11);
  const HostTensor q = make_tensor(dtype, static_cast<std::size_t>(batch * hq * n_q * d), 1.0f, gen);
  const HostTensor k = make_tensor(dtype, static_cast<std::size_t>(batch * hkv * n_k * d), 1.0f, gen);
  std::vector<std::byte> out_host(static_cast<std::size_t>(batch * hq * n_q * d) * size_of(dtype));
  AttentionArgs cpu;
  cpu.q = TensorView::bhsd(const_cast<std::byte*>(q.storage.data()), dtype, batch, hq, n_q, d);
  cpu.k = TensorView::bhsd(const_cast<std::byte*>(k.storage.data()), dtype, batch, hkv, n_k, d);
  cpu.v = cpu.k;
  cpu.out = TensorView::bhsd(out_host.data(), dtype, batch, hq, n_q, d);
  std::vector<std::int32_t> qb_cpu(static_cast<std::size_t>(batch * hq * n_q)), kb_cpu(static_cast<std::size_t>(batch * hkv * n_k));
  ASSERT_TRUE(lsh_blocks(cpu, config, {}, qb_cpu.data(), kb_cpu.data()).ok());

  DeviceMem dq(q.storage.size()), dk(k.storage.size()), dout(out_host.size());
  DeviceMem dqb(qb_cpu.size() * 4), dkb(kb_cpu.size() * 4);
  ASSERT_CUDA(cudaMemcpy(dq.ptr, q.storage.data(), q.storage.size(), cudaMemcpyHostToDevice));
  ASSERT_CUDA(cudaMemcpy(dk.ptr, k.storage.data(), k.storage.size(), cudaMemcpyHostToDevice));
  AttentionArgs gpu = cpu;
  gpu.q.data = dq.ptr;
  gpu.k.data = dk.ptr;
  gpu.v.data = dk.ptr;
  gpu.out.data = dout.ptr;
  std::size_t bytes = 0;
  ASSERT_TRUE(cuda_lsh_blocks_workspace_size(gpu, config, &bytes).ok());
  DeviceMem ws(bytes);
  const Status s = cuda_lsh_blocks(gpu, config, {}, static_cast<std::int32_t*>(dqb.ptr), static_cast<std::int32_t*>(dkb.ptr),
                                   ws.ptr, bytes, nullptr);
  ASSERT_TRUE(s.ok()) << s.message();
  std::vector<std::int32_t> qb(qb_cpu.size()), kb(kb_cpu.size());
  ASSERT_CUDA(cudaMemcpy(qb.data(), dqb.ptr, qb.size() * 4, cudaMemcpyDeviceToHost));
  ASSERT_CUDA(cudaMemcpy(kb.data(), dkb.ptr, kb.size() * 4, cudaMemcpyDeviceToHost));
  for (std::size_t i = 0; i < qb.size(); ++i) ASSERT_EQ(qb[i], qb_cpu[i]) << "query " << i;
  for (std::size_t i = 0; i < kb.size(); ++i) ASSERT_EQ(kb[i], kb_cpu[i]) << "key " << i;
}

TEST(CudaLsh, BlocksBitIdenticalToCpuBf16) { check_lsh_blocks(DType::bf16, 0, BucketOrder::gray_rank); }
TEST(CudaLsh, BlocksBitIdenticalToCpuF32WithSinks) { check_lsh_blocks(DType::f32, 3, BucketOrder::gray_rank); }
TEST(CudaLsh, BlocksBitIdenticalToCpuReferenceGray) { check_lsh_blocks(DType::bf16, 0, BucketOrder::reference_gray); }

// ---- Validation (no device needed) -------------------------------------------------------------

AttentionArgs fake_args(DType dtype) {
  static std::byte dummy[16];
  AttentionArgs a;
  a.q = TensorView::bhsd(dummy, dtype, 1, 2, 64, 64);
  a.k = TensorView::bhsd(dummy, dtype, 1, 2, 64, 64);
  a.v = TensorView::bhsd(dummy, dtype, 1, 2, 64, 64);
  a.out = TensorView::bhsd(dummy, dtype, 1, 2, 64, 64);
  return a;
}

TEST(CudaValidation, RejectsBadArgumentsWithoutADevice) {
  AttentionArgs a = fake_args(DType::f16);
  std::size_t bytes = 0;
  EXPECT_TRUE(cuda_workspace_size(a, {}, false, &bytes).ok());  // f16 is a CUDA dtype
  a.k.dtype = DType::bf16;
  EXPECT_EQ(cuda_workspace_size(a, {}, false, &bytes).code(), StatusCode::invalid_argument);
  a = fake_args(DType::bf16);
  a.q.shape[3] = 60;
  EXPECT_NE(cuda_workspace_size(a, {}, false, &bytes).code(), StatusCode::ok);
  a = fake_args(DType::bf16);
  AttentionConfig c;
  c.sampling = Sampling::value_norm;
  EXPECT_EQ(cuda_workspace_size(a, c, true, &bytes).code(), StatusCode::unsupported);
  EXPECT_EQ(cuda_workspace_size(fake_args(DType::bf16), {}, false, nullptr).code(), StatusCode::invalid_argument);
  // Too small a workspace is refused before anything is launched.
  ASSERT_TRUE(cuda_workspace_size(fake_args(DType::bf16), {}, false, &bytes).ok());
  EXPECT_EQ(cuda_exact_attention(fake_args(DType::bf16), {}, nullptr, bytes > 0 ? bytes - 1 : 0, nullptr).code(),
            bytes > 0 ? StatusCode::invalid_argument : StatusCode::ok);
}

}  // namespace
}  // namespace hyperattn
