#!/usr/bin/env bash
# The backward pass's measurements (issue 13's targets), side by side in one run, 2 threads, fp32,
# head_dim 64: results land in docs/results/backward_* . About 6 minutes on 2 cores (exact attention at
# 131072 tokens alone takes about 90 s). Needs the build (scripts/build.sh) and, for the PyTorch and
# memory rows, the Python venv of scripts/test_python.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
H=${HYPERATTN_BIN:-./build/tools/hyperattn}
PY=${HYPERATTN_PY:-$HOME/.cache/hyperattn/venv/bin/python}
out=docs/results
mkdir -p "$out"
grep -m1 "model name" /proc/cpuinfo | tee "$out/backward_cpu.txt"
grep -o 'avx512[a-z_0-9]*\|avx2\|fma' /proc/cpuinfo | sort -u | tr '\n' ' ' | tee -a "$out/backward_cpu.txt"; echo
# 1. Exact backward at n = 16384 against the measured fp32 peak (Google Benchmark; FLOPS = 2.5x the forward's).
./build/bench/bench_attention --benchmark_filter='exact_attention/f32/head_dim:(64|128)/seq:16384|exact_backward/f32/head_dim:(64|128)/' \
  --benchmark_min_time=1 --benchmark_repetitions=3 --benchmark_report_aggregates_only=true | tee "$out/backward_exact_n16384.txt"
# 2. HyperAttention against exact attention, forward + backward, at 131072 tokens (and 32768), both masks.
$H bench --seq 32768,131072 --both --threads 2 --repeats 1 --pass forward-backward --json "$out/backward_fwd_bwd.json" | tee "$out/backward_fwd_bwd.txt"
# 3. PyTorch's CPU scaled_dot_product_attention forward + backward on the same shapes, through autograd.
"$PY" bench/bench_backward.py --n 16384 32768 --threads 2 --repeat 3 | tee "$out/backward_vs_torch.txt"
# 4. Peak memory of forward + backward at 131072 against the 8 tensors Q, K, V, O, dO, dQ, dK, dV.
"$PY" bench/backward_memory.py --seq 131072 --threads 2 | tee "$out/backward_memory.txt"
