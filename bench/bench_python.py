#!/usr/bin/env python3
"""bench/bench_python.py: the Python call's cost, and hyperattn against PyTorch's CPU SDPA.

Three tables, all medians of --repeats timed calls after one warm-up, measured in this one run:
  1. overhead: microseconds per call of hyperattn.attention on tiny inputs (numpy and torch) next to
     the same call's C++ work (`method="exact"`, 1 x 1 x 16 x 64), so the Python wrapper's share shows;
  2. against the CLI: hyperattn.attention at --n (default 16384, 1 head, d 64, f32) against
     `hyperattn bench` on the same shape (its median from --json), exact and hyper, causal and not;
  3. against torch.nn.functional.scaled_dot_product_attention (CPU, f32 and bf16), the same shapes.
Usage: python bench/bench_python.py [--n 16384] [--heads 1] [--head-dim 64] [--threads 2] [--repeats 5]
       [--cli build/tools/hyperattn] [--json out.json]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import hyperattn


def median_time(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def cli_medians(cli, n, heads, d, threads, repeats):
    """{(method, causal): seconds} from `hyperattn bench --json`."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "bench.json")
        subprocess.run([cli, "bench", "--seq", str(n), "--heads", str(heads), "--head-dim", str(d), "--both",
                        "--threads", str(threads), "--repeats", str(repeats), "--json", out],
                       check=True, stdout=subprocess.DEVNULL)
        with open(out) as f:
            doc = json.load(f)
    records = doc["records"] if isinstance(doc, dict) and "records" in doc else doc
    found = {}
    for r in records:
        found[(r["method"], bool(r["causal"]))] = r.get("median_s", r.get("seconds"))
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16384)
    ap.add_argument("--heads", type=int, default=1)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cli", default=os.path.join(os.path.dirname(__file__), "..", "build", "tools", "hyperattn"))
    ap.add_argument("--json")
    ap.add_argument("--no-torch", action="store_true")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    result = {"n": a.n, "heads": a.heads, "head_dim": a.head_dim, "threads": a.threads}

    # 1. Overhead per call on tiny inputs.
    tiny = [rng.standard_normal((1, 1, 16, 64), dtype=np.float32) for _ in range(3)]
    calls = 2000
    def tiny_loop(args):
        def run():
            for _ in range(calls):
                hyperattn.attention(*args, method="exact", threads=1)
        return run
    us_np = median_time(tiny_loop(tiny), 3) / calls * 1e6
    print(f"overhead: hyperattn.attention(numpy 1x1x16x64, exact, 1 thread): {us_np:.1f} us per call")
    result["us_per_call_numpy"] = us_np
    torch = None
    if not a.no_torch:
        try:
            import torch
            import torch.nn.functional as F
        except ImportError:
            torch = None
    if torch is not None:
        torch.set_num_threads(a.threads)
        tiny_t = [torch.from_numpy(x) for x in tiny]
        us_t = median_time(tiny_loop(tiny_t), 3) / calls * 1e6
        def sdpa_tiny():
            for _ in range(calls):
                F.scaled_dot_product_attention(*tiny_t)
        us_sdpa = median_time(sdpa_tiny, 3) / calls * 1e6
        print(f"overhead: hyperattn.attention(torch 1x1x16x64, exact, 1 thread): {us_t:.1f} us per call; "
              f"torch SDPA on the same: {us_sdpa:.1f} us")
        result["us_per_call_torch"] = us_t
        result["us_per_call_sdpa"] = us_sdpa

    # 2. Against the CLI's bench at n.
    shape = (1, a.heads, a.n, a.head_dim)
    q, k, v = (rng.standard_normal(shape, dtype=np.float32) for _ in range(3))
    cli = cli_medians(a.cli, a.n, a.heads, a.head_dim, a.threads, a.repeats) if os.path.exists(a.cli) else {}
    rows = []
    print(f"\n| n={a.n} h={a.heads} d={a.head_dim} f32, {a.threads} threads | python s | hyperattn bench s | ratio |")
    print("|---|---|---|---|")
    for method in ("exact", "hyper"):
        for causal in (False, True):
            t = median_time(lambda: hyperattn.attention(q, k, v, method=method, causal=causal, threads=a.threads), a.repeats)
            c = cli.get((method, causal))
            ratio = t / c if c else float("nan")
            rows.append({"method": method, "causal": causal, "python_s": t, "cli_s": c})
            print(f"| {method}{' causal' if causal else ''} | {t:.4f} | {c if c is None else f'{c:.4f}'} | {ratio:.3f} |")
    result["vs_cli"] = rows

    # 3. Against torch SDPA.
    if torch is not None:
        rows = []
        print(f"\n| n={a.n} h={a.heads} d={a.head_dim}, {a.threads} threads | dtype | hyperattn exact s | torch SDPA s | "
              "SDPA / exact | hyperattn hyper s |")
        print("|---|---|---|---|---|---|")
        for dtype in (torch.float32, torch.bfloat16):
            qt, kt, vt = (torch.from_numpy(x).to(dtype) for x in (q, k, v))
            for causal in (False, True):
                te = median_time(lambda: hyperattn.attention(qt, kt, vt, method="exact", causal=causal, threads=a.threads), a.repeats)
                th = median_time(lambda: hyperattn.attention(qt, kt, vt, method="hyper", causal=causal, threads=a.threads), a.repeats)
                ts = median_time(lambda: F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal), a.repeats)
                name = str(dtype).replace("torch.", "")
                rows.append({"dtype": name, "causal": causal, "exact_s": te, "hyper_s": th, "sdpa_s": ts})
                print(f"| {'causal' if causal else 'non-causal'} | {name} | {te:.4f} | {ts:.4f} | {ts / te:.2f}x | {th:.4f} |")
        result["vs_sdpa"] = rows
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
