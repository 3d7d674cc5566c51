#!/usr/bin/env python3
"""bench/bench_vs_sdpa.py: exact attention per CPU kernel against PyTorch's CPU SDPA, side by side.

The table of docs/performance.md ("per ISA"): for each kernel named in --isa (run through
HYPERATTN_ISA, so an AVX-512 machine can time its AVX2 kernel), `hyperattn bench --method exact`
at n = --n for head_dim 64 and 128, f32 and bf16, causal and not, and in the same run, shape by
shape, torch.nn.functional.scaled_dot_product_attention on the same [1, 1, n, d] inputs and
thread count. GFLOP/s count 4 n^2 d (non-causal) and 2 n (n + 1) d (causal: the visible keys);
"of peak" divides by the measured peak of the arithmetic the kernel runs on, read from
bench_attention's start-up line (avx2: ymm FMA for both dtypes; avx512_nobf16: zmm FMA for both;
avx512: zmm FMA for f32, vdpbf16ps for bf16). Medians of --repeats timed calls after one warm-up.
--torch-isa avx2 caps PyTorch at AVX2 as well (ATEN_CPU_CAPABILITY, MKL_ENABLE_INSTRUCTIONS and
ONEDNN_MAX_CPU_ISA, set before torch is imported), so that an AVX-512 machine can compare both
libraries' AVX2 code; without it PyTorch uses the best it has.
Usage: python bench/bench_vs_sdpa.py [--isa avx2,avx512_nobf16,avx512] [--torch-isa avx2] [--n 16384]
       [--threads 2] [--repeats 5] [--json out.json]
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


def attention_flops(n, d, causal):
    """FLOPs of one query head over n queries and n keys: 4 n^2 d, or 2 n (n + 1) d causal (the visible keys)."""
    return 2.0 * n * (n + 1) * d if causal else 4.0 * n * n * d


def cap_torch_isa(isa):
    """Caps PyTorch's CPU code (ATen, MKL, oneDNN) at isa ('avx2' or 'avx512'); call before torch is imported."""
    os.environ["ATEN_CPU_CAPABILITY"] = isa
    os.environ["MKL_ENABLE_INSTRUCTIONS"] = {"avx2": "AVX2", "avx512": "AVX512"}[isa]
    os.environ["ONEDNN_MAX_CPU_ISA"] = {"avx2": "AVX2", "avx512": "AVX512_CORE"}[isa]


def bench_attention_startup(bench_attention):
    """What bench_attention prints before any benchmark: the measured peaks and the best kernel."""
    return subprocess.run([bench_attention, "--benchmark_filter=^$"], check=True, capture_output=True, text=True).stdout


def measured_peaks(bench_attention, threads, startup=None):
    """{'avx2_fma_f32': GFLOP/s on `threads` threads, ...} from bench_attention's start-up line
    (startup: its output when already run)."""
    out = startup if startup is not None else bench_attention_startup(bench_attention)
    line = next((ln for ln in out.splitlines() if ln.startswith("measured peak")), "")
    peaks = {}
    for name, one, many in re.findall(r"(\w+) ([0-9.]+) / ([0-9.]+);", line):
        peaks[name] = float(one) * (1 if threads == 1 else float(many) / float(one))
    return peaks


def kernel_peak(peaks, isa, dtype):
    if isa == "avx2":
        return peaks.get("avx2_fma_f32")
    if isa == "avx512_nobf16":
        return peaks.get("avx512_fma_f32")
    if isa == "avx512":
        return peaks.get("avx512_fma_f32" if dtype == "f32" else "avx512_dpbf16")
    return None


def cli_json(cli, args, isa, cwd=None):
    """Runs `hyperattn <args> --json tmp` under HYPERATTN_ISA=isa (in cwd); returns the JSON document."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.json")
        run = subprocess.run([cli, *args, "--json", out], env=dict(os.environ, HYPERATTN_ISA=isa), capture_output=True,
                             text=True, cwd=cwd)
        if run.returncode != 0:
            raise RuntimeError(f"hyperattn {' '.join(args)} failed: {run.stderr.strip()[-2000:]}")
        if "unknown or unsupported" in run.stderr:
            raise RuntimeError(f"HYPERATTN_ISA={isa} is not supported on this CPU")
        with open(out) as f:
            return json.load(f)


def bench_records(cli, args, isa):
    """The records of `hyperattn bench <args> --json` under HYPERATTN_ISA=isa."""
    doc = cli_json(cli, ["bench", *args], isa)
    return doc["records"] if isinstance(doc, dict) else doc


def hyperattn_medians(cli, isa, n, d, dtype, threads, repeats):
    """{causal: median seconds} of `hyperattn bench --method exact --both` under HYPERATTN_ISA=isa."""
    records = bench_records(cli, ["--seq", str(n), "--head-dim", str(d), "--dtype", dtype, "--both", "--method", "exact",
                                  "--threads", str(threads), "--repeats", str(repeats)], isa)
    return {bool(r["causal"]): r["median_s"] for r in records}


def sdpa_median(torch, n, d, dtype, causal, repeats):
    F = torch.nn.functional
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 1, n, d, generator=g).to(dtype) for _ in range(3))
    F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--isa", default="avx2,avx512", help="kernels to time (comma separated; unsupported ones are skipped)")
    ap.add_argument("--n", type=int, default=16384)
    ap.add_argument("--head-dims", default="64,128")
    ap.add_argument("--dtypes", default="f32,bf16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cli", default=os.path.join(ROOT, "build", "tools", "hyperattn"))
    ap.add_argument("--bench-attention", default=os.path.join(ROOT, "build", "bench", "bench_attention"))
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--torch-isa", choices=["avx2", "avx512"], help="cap PyTorch's CPU code at this ISA")
    ap.add_argument("--json")
    a = ap.parse_args()
    torch = None
    if a.torch_isa:
        cap_torch_isa(a.torch_isa)
    if not a.no_torch:
        import torch
        torch.set_num_threads(a.threads)
    peaks = measured_peaks(a.bench_attention, a.threads) if os.path.exists(a.bench_attention) else {}
    result = {"cpu": cpu_model(), "n": a.n, "threads": a.threads, "repeats": a.repeats, "peaks_gflops": peaks,
              "torch": torch.__version__ if torch else None, "torch_isa": a.torch_isa or "default",
              "torch_cpu_capability": torch.backends.cpu.get_cpu_capability() if torch else None, "rows": []}
    print(f"CPU: {result['cpu']}; measured peaks on {a.threads} threads (GFLOP/s): "
          + ", ".join(f"{k} {v:.1f}" for k, v in peaks.items()))
    if torch is not None:
        print(f"PyTorch {torch.__version__}, CPU capability {result['torch_cpu_capability']} (--torch-isa {result['torch_isa']})")
    print(f"\n| kernel | dtype | head_dim | mask | hyperattn s | GFLOP/s | of peak | torch SDPA s | GFLOP/s | hyperattn / SDPA |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    shapes = [(dtype, int(d)) for dtype in a.dtypes.split(",") for d in a.head_dims.split(",")]
    for isa in a.isa.split(","):
        for dtype, d in shapes:
            try:
                med = hyperattn_medians(a.cli, isa, a.n, d, dtype, a.threads, a.repeats)
            except RuntimeError as e:
                print(f"| {isa} | skipped: {e} |")
                break  # the next kernel
            for causal in (False, True):
                flops = attention_flops(a.n, d, causal)
                t = med[causal]
                peak = kernel_peak(peaks, isa, dtype)
                ts = None
                if torch is not None:
                    ts = sdpa_median(torch, a.n, d, torch.float32 if dtype == "f32" else torch.bfloat16, causal, a.repeats)
                row = {"kernel": isa, "dtype": dtype, "head_dim": d, "causal": causal, "hyperattn_s": t,
                       "hyperattn_gflops": flops / t * 1e-9, "peak_frac": flops / t * 1e-9 / peak if peak else None,
                       "sdpa_s": ts, "sdpa_gflops": flops / ts * 1e-9 if ts else None, "speedup": ts / t if ts else None}
                result["rows"].append(row)
                frac = f"{row['peak_frac'] * 100:.0f}%" if row["peak_frac"] else "-"
                sd = f"{ts:.4f} | {row['sdpa_gflops']:.1f} | {row['speedup']:.2f}x" if ts else "- | - | -"
                print(f"| {isa} | {dtype} | {d} | {'causal' if causal else 'non-causal'} | {t:.4f} | "
                      f"{row['hyperattn_gflops']:.1f} | {frac} | {sd} |", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
