#!/usr/bin/env bash
# Runs the CPU measurements of docs/performance.md side by side (2 threads unless said):
# results land in docs/results/ (JSON, PNG, logs). Takes about 10 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
H=${HYPERATTN_BIN:-./build/tools/hyperattn}
out=docs/results
mkdir -p "$out"
# 1. Exact attention at n = 16384, head_dim 64 and 128, fp32 and bf16, both masks.
for d in 64 128; do
  for t in f32 bf16; do
    $H bench --seq 16384 --head-dim $d --dtype $t --both --method exact --threads 2 --repeats 3 --json "$out/exact_n16384_d${d}_${t}.json" | tee "$out/exact_n16384_d${d}_${t}.txt"
  done
done
# 2-4. Exact against HyperAttention (defaults) over lengths, both masks, log-log plot.
$H bench --seq 4096,8192,16384,32768,65536,131072 --head-dim 64 --both --threads 2 --repeats 2 \
  --json "$out/scaling_d64.json" --plot "$out/scaling_d64.png" | tee "$out/scaling_d64.txt"
# 5. One thread against two at n = 32768.
for th in 1 2; do
  $H bench --seq 32768 --head-dim 64 --both --threads $th --repeats 3 --json "$out/threads${th}_n32768.json" | tee "$out/threads${th}_n32768.txt"
done
# 6. Peak resident memory of a 131072-token run (f32: Q, K, V, O are 4 x 32 MiB).
/usr/bin/time -v $H bench --seq 131072 --head-dim 64 --method hyper --both --threads 2 --repeats 1 2> "$out/memory_n131072.txt" >/dev/null
grep "Maximum resident" "$out/memory_n131072.txt"
