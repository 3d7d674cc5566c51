#!/usr/bin/env python3
"""Forward + backward side by side in one run: hyperattn exact, hyperattn HyperAttention and PyTorch's CPU
scaled_dot_product_attention, through autograd on [1, heads, n, d] float32 tensors (medians of --repeat).

    ~/.cache/hyperattn/venv/bin/python bench/bench_backward.py --n 16384 --threads 2
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import hyperattn


def timed(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, nargs="+", default=[16384])
    p.add_argument("--heads", type=int, default=1)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--skip-exact-above", type=int, default=32768,
                   help="time exact attention and SDPA only up to this n (they are quadratic)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {a.threads} threads, heads {a.heads}, head_dim {a.dim}, float32, "
          f"median of {a.repeat}")
    print("| n | causal | hyperattn exact s | torch SDPA s | SDPA / exact | hyperattn hyper s | exact / hyper |")
    print("|---|---|---|---|---|---|---|")
    for n in a.n:
        g = torch.Generator().manual_seed(0)
        q, k, v, go = (torch.randn(1, a.heads, n, a.dim, generator=g) for _ in range(4))
        for causal in (False, True):
            def step(f):
                xs = [x.clone().requires_grad_() for x in (q, k, v)]
                f(*xs).backward(go)

            ours = lambda m: lambda q, k, v: hyperattn.attention(q, k, v, method=m, causal=causal, threads=a.threads)
            sdpa = lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=causal)
            hyper = timed(lambda: step(ours("hyper")), a.repeat)
            if n <= a.skip_exact_above:
                exact = timed(lambda: step(ours("exact")), a.repeat)
                ref = timed(lambda: step(sdpa), a.repeat)
                print(f"| {n} | {causal} | {exact:.3f} | {ref:.3f} | {ref / exact:.2f}x | {hyper:.4f} | "
                      f"{exact / hyper:.1f}x |", flush=True)
            else:
                print(f"| {n} | {causal} | - | - | - | {hyper:.4f} | - |", flush=True)


if __name__ == "__main__":
    main()
