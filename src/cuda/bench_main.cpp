// src/cuda/bench_main.cpp: hyperattn_cuda_bench, the timing table of scripts/gpu_check.sh.
//   hyperattn_cuda_bench [--head-dims 64,128] [--seqs 16384,32768,131072] [--causal 0,1]
//                        [--repeats 10] [--exact-max-seq 32768] [--dtype bf16|f16|f32] [--tsv FILE]
// Prints one row per case: median ms, exact-equivalent TFLOP/s, and the target if any.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "cuda/bench_cuda.hpp"

namespace {

std::vector<std::int64_t> parse_list(const char* s) {
  std::vector<std::int64_t> out;
  std::string cur;
  for (const char* p = s;; ++p) {
    if (*p == ',' || *p == '\0') {
      if (!cur.empty()) out.push_back(std::stoll(cur));
      cur.clear();
      if (*p == '\0') break;
    } else {
      cur.push_back(*p);
    }
  }
  return out;
}

// The targets (H100/H200, bf16, batch 1, 32 heads): ms for hyper, TFLOP/s for exact.
std::string target_of(const hyperattn::CudaBenchResult& r, bool* met) {
  *met = true;
  if (r.method == "hyper" && r.seq == 131072) {
    const double limit = r.causal ? 10.0 : 2.5;
    *met = r.median_ms <= limit;
    return (r.causal ? "<= 10 ms" : "<= 2.5 ms");
  }
  if (r.method == "hyper" && r.seq == 32768) {
    const double limit = r.causal ? 3.0 : 0.8;
    *met = r.median_ms <= limit;
    return (r.causal ? "<= 3 ms" : "<= 0.8 ms");
  }
  if (r.method == "exact" && r.seq == 16384) {
    *met = r.exact_equivalent_tflops >= 300.0;
    return ">= 300 TFLOP/s";
  }
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  hyperattn::CudaBenchSpec spec;
  const char* tsv = nullptr;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string_view flag = argv[i];
    const char* value = argv[i + 1];
    if (flag == "--head-dims") spec.head_dims = parse_list(value);
    else if (flag == "--seqs") spec.seqs = parse_list(value);
    else if (flag == "--causal") {
      spec.causal.clear();
      for (std::int64_t c : parse_list(value)) spec.causal.push_back(c != 0);
    } else if (flag == "--repeats") spec.repeats = std::atoi(value);
    else if (flag == "--exact-max-seq") spec.exact_max_seq = std::atoll(value);
    else if (flag == "--dtype") {
      const std::string_view d = value;
      spec.dtype = d == "f16" ? hyperattn::DType::f16 : d == "f32" ? hyperattn::DType::f32 : hyperattn::DType::bf16;
    } else if (flag == "--tsv") tsv = value;
    else {
      std::fprintf(stderr, "unknown flag %s\n", argv[i]);
      return 2;
    }
  }
  std::vector<hyperattn::CudaBenchResult> results;
  const hyperattn::Status status = hyperattn::cuda_bench(spec, &results);
  FILE* f = tsv ? std::fopen(tsv, "w") : nullptr;
  if (f) std::fprintf(f, "method\thead_dim\tseq\tcausal\tmedian_ms\tmin_ms\texact_equiv_tflops\tworkspace_bytes\n");
  std::printf("%-6s %4s %7s %6s %10s %10s %12s  %s\n", "method", "d", "seq", "causal", "median_ms", "min_ms",
              "TFLOP/s(eq)", "target");
  int missed = 0;
  for (const auto& r : results) {
    bool met = true;
    const std::string target = target_of(r, &met);
    if (!met) ++missed;
    std::printf("%-6s %4lld %7lld %6s %10.3f %10.3f %12.1f  %s%s\n", r.method.c_str(), static_cast<long long>(r.head_dim),
                static_cast<long long>(r.seq), r.causal ? "yes" : "no", r.median_ms, r.min_ms, r.exact_equivalent_tflops,
                target.c_str(), target.empty() ? "" : (met ? " MET" : " MISSED"));
    if (f)
      std::fprintf(f, "%s\t%lld\t%lld\t%d\t%.4f\t%.4f\t%.2f\t%zu\n", r.method.c_str(), static_cast<long long>(r.head_dim),
                   static_cast<long long>(r.seq), r.causal ? 1 : 0, r.median_ms, r.min_ms, r.exact_equivalent_tflops,
                   r.workspace_bytes);
  }
  if (f) std::fclose(f);
  if (!status.ok()) {
    std::fprintf(stderr, "hyperattn_cuda_bench: %s\n", status.message().c_str());
    return 1;
  }
  std::printf("targets missed: %d\n", missed);
  return 0;
}
