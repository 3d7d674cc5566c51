#!/usr/bin/env python3
"""Peak memory of forward + backward (issue 13's target: at most 2x the bytes of Q, K, V, O, dO, dQ, dK, dV).

Each case runs in a fresh process: it records the resident set before allocating anything, allocates the
eight [1, heads, n, 64] fp32 arrays (and the LSE), runs hyperattn's forward and backward through the
extension (no torch), and reports the process's peak resident set (getrusage ru_maxrss) minus the resident
set before: the arrays plus every byte of workspace the library touched.

    ~/.cache/hyperattn/venv/bin/python bench/backward_memory.py [--seq 131072] [--heads 1]
"""
import argparse
import json
import resource
import subprocess
import sys
import time


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def one(method, causal, n, heads, threads):
    import numpy as np

    import hyperattn

    before = rss_bytes()
    rng = np.random.default_rng(0)
    shape = (1, heads, n, 64)
    q, k, v, g = (rng.standard_normal(shape, dtype=np.float32) for _ in range(4))
    out, dq, dk, dv = (np.zeros(shape, dtype=np.float32) for _ in range(4))
    lse = np.zeros((1, heads, n), dtype=np.float32)
    args = (method, causal, 0.0, threads, 7, 256, 256, 4096, 0, "", "gray-rank", "uniform", 0, 0)
    t0 = time.perf_counter()
    hyperattn._core.attention(q, k, v, out, lse, *args)
    t1 = time.perf_counter()
    hyperattn._core.attention_backward(q, k, v, out, lse, g, None, dq, dk, dv, *args)
    t2 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tensors = 8 * q.nbytes
    return dict(method=method, causal=causal, seq=n, heads=heads, tensor_bytes=tensors, used_bytes=peak - before,
                ratio=(peak - before) / tensors, forward_s=t1 - t0, backward_s=t2 - t1)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seq", type=int, default=131072)
    p.add_argument("--heads", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--methods", default="hyper,exact")
    p.add_argument("--one", nargs=2, metavar=("METHOD", "CAUSAL"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        print(json.dumps(one(a.one[0], a.one[1] == "1", a.seq, a.heads, a.threads)))
        return 0
    print("| method | causal | seq | heads | 8 tensors MiB | used MiB | used / 8 tensors | forward s | backward s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for method in a.methods.split(","):
        for causal in (False, True):
            r = subprocess.run([sys.executable, __file__, "--seq", str(a.seq), "--heads", str(a.heads), "--threads",
                                str(a.threads), "--one", method, "1" if causal else "0"],
                               capture_output=True, text=True, check=True)
            d = json.loads(r.stdout)
            print(f"| {method} | {causal} | {d['seq']} | {d['heads']} | {d['tensor_bytes'] / 2**20:.0f} | "
                  f"{d['used_bytes'] / 2**20:.0f} | {d['ratio']:.2f} | {d['forward_s']:.2f} | {d['backward_s']:.2f} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
