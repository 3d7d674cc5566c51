#!/usr/bin/env python3
"""Fine-tunes the bundled model on Emma with exact attention and with HyperAttention in every layer.

Same seed, same initial weights, same windows in the same order for every method: each run loads
models/llama-11m-32k afresh, trains it for --steps steps of one window of --seq-len tokens (AdamW,
gradient clipping 1.0) through hyperattn's PyTorch operator (forward and backward), and records the
training loss and the time of each step. At the end every trained model is evaluated on held-out
windows (the last part of the text, never trained on) with exact attention, so a user sees whether
training with HyperAttention tracks exact attention and whether the model it produces is as good.

    ~/.cache/hyperattn/venv/bin/python scripts/train_emma.py --steps 30 --json build/train.json --plot build/train.png

Prints one line per step and a summary; --json writes everything, --plot a PNG of both loss curves and
the step times.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(ROOT / "models" / "llama-11m-32k"), help="Hugging Face model folder")
    p.add_argument("--text", default=str(ROOT / "data" / "emma.txt"), help="UTF-8 text to train on")
    p.add_argument("--seq-len", type=int, default=8192, help="tokens per training window (default 8192)")
    p.add_argument("--steps", type=int, default=30, help="optimizer steps per method (default 30)")
    p.add_argument("--lr", type=float, default=3e-4, help="AdamW learning rate (default 3e-4)")
    p.add_argument("--methods", default="exact,hyper", help="comma-separated: exact, hyper (default both)")
    p.add_argument("--block-size", type=int, default=256)
    p.add_argument("--sample-size", type=int, default=256)
    p.add_argument("--lsh-bits", type=int, default=7)
    p.add_argument("--min-seq-len", type=int, default=4096)
    p.add_argument("--preset", default=None, help="a HyperAttention preset (paper, stratified, stratified-window)")
    p.add_argument("--seed", type=int, default=0, help="data order, initialisation of the optimizer, HyperAttention")
    p.add_argument("--threads", type=int, default=0, help="threads for torch and hyperattn (0: all cores)")
    p.add_argument("--eval-windows", type=int, default=1, help="held-out windows evaluated at the end (default 1)")
    p.add_argument("--json", default=None, help="write the losses, times and settings here")
    p.add_argument("--plot", default=None, help="write a PNG of the loss curves and step times here")
    a = p.parse_args(argv)
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    for m in methods:
        if m not in ("exact", "hyper"):
            p.error(f"--methods: expected exact and/or hyper, got {m!r}")
    a.methods = methods
    for name in ("seq_len", "steps"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')}: expected a positive integer, got {getattr(a, name)}")
    if not math.isfinite(a.lr) or a.lr <= 0:
        p.error(f"--lr: expected a positive finite number, got {a.lr}")
    for name in ("model", "text"):
        if not Path(getattr(a, name)).exists():
            p.error(f"--{name}: {getattr(a, name)} does not exist")
    if a.plot is not None and not Path(a.plot).resolve().parent.is_dir():
        p.error(f"--plot: the folder of {a.plot} does not exist")
    if a.json is not None and not Path(a.json).resolve().parent.is_dir():
        p.error(f"--json: the folder of {a.json} does not exist")
    return a


def windows_of(tokens, seq_len, eval_windows, seed):
    """Training windows (shuffled by seed) and held-out windows (the end of the text) of seq_len + 1 tokens."""
    import torch

    n = (len(tokens) - 1) // seq_len
    if n < eval_windows + 1:
        raise SystemExit(f"--text: {len(tokens)} tokens give {n} windows of {seq_len}; expected at least "
                         f"{eval_windows + 1} (lower --seq-len or --eval-windows)")
    starts = [i * seq_len for i in range(n)]
    held_out, train = starts[n - eval_windows:], starts[:n - eval_windows]
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(train), generator=g).tolist()
    cut = lambda s: torch.tensor(tokens[s:s + seq_len + 1], dtype=torch.long)[None]
    return [cut(train[i]) for i in order], [cut(s) for s in held_out]


def run(method, a, train, held_out):
    import torch
    import transformers

    import hyperattn.hf

    torch.manual_seed(a.seed)
    model = transformers.AutoModelForCausalLM.from_pretrained(a.model, attn_implementation="hyperattn",
                                                              dtype=torch.float32)
    params = dict(block_size=a.block_size, sample_size=a.sample_size, lsh_bits=a.lsh_bits,
                  min_seq_len=a.min_seq_len, seed=a.seed, preset=a.preset, threads=a.threads or None)
    hyperattn.hf.configure(model, layers="all" if method == "hyper" else "none", **params)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.0)
    losses, times = [], []
    for step in range(a.steps):
        batch = train[step % len(train)]
        t0 = time.perf_counter()
        loss = model(input_ids=batch[:, :-1], labels=batch[:, :-1]).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        times.append(time.perf_counter() - t0)
        losses.append(loss.item())
        if not math.isfinite(losses[-1]):
            raise SystemExit(f"{method}: the loss is {losses[-1]} at step {step}")
        print(f"{method:5s} step {step + 1:3d}/{a.steps}  loss {losses[-1]:.4f}  {times[-1]:.2f} s", flush=True)
    # Held-out loss with exact attention in every layer (the model the training produced, judged the same way).
    hyperattn.hf.configure(model, layers="none", threads=a.threads or None)
    model.eval()
    with torch.inference_mode():
        held = [model(input_ids=w[:, :-1], labels=w[:, :-1]).loss.item() for w in held_out]
    return dict(losses=losses, step_seconds=times, held_out_loss_exact=sum(held) / len(held))


def held_out_before(a, held_out):
    import torch
    import transformers

    import hyperattn.hf

    model = transformers.AutoModelForCausalLM.from_pretrained(a.model, attn_implementation="hyperattn",
                                                              dtype=torch.float32)
    hyperattn.hf.configure(model, layers="none", threads=a.threads or None)
    with torch.inference_mode():
        return sum(model(input_ids=w[:, :-1], labels=w[:, :-1]).loss.item() for w in held_out) / len(held_out)


def plot(path, results, a):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for method, r in results.items():
        steps = range(1, len(r["losses"]) + 1)
        left.plot(steps, r["losses"], marker="o", ms=3, label=f"{method} (held-out {r['held_out_loss_exact']:.3f})")
        right.plot(steps, r["step_seconds"], marker="o", ms=3, label=method)
    left.set_xlabel("step")
    left.set_ylabel("training loss (nats/token)")
    left.set_title(f"llama-11m-32k on Emma, {a.seq_len} tokens per step")
    left.legend()
    right.set_xlabel("step")
    right.set_ylabel("seconds per step (forward + backward + AdamW)")
    right.set_ylim(bottom=0)
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    a = parse_args(argv)
    import sentencepiece
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    sp = sentencepiece.SentencePieceProcessor(model_file=str(Path(a.model) / "tokenizer.model"))
    tokens = sp.encode(Path(a.text).read_text(encoding="utf-8"))
    train, held_out = windows_of(tokens, a.seq_len, a.eval_windows, a.seed)
    print(f"{len(tokens)} tokens; {len(train)} training windows and {len(held_out)} held out, {a.seq_len} tokens each; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    before = held_out_before(a, held_out)
    results = {m: run(m, a, train, held_out) for m in a.methods}
    print(f"held-out loss (exact attention) before training: {before:.4f}")
    for m, r in results.items():
        med = sorted(r["step_seconds"])[len(r["step_seconds"]) // 2]
        print(f"{m:5s}: final training loss {r['losses'][-1]:.4f}, mean of the last 5 "
              f"{sum(r['losses'][-5:]) / len(r['losses'][-5:]):.4f}; held-out loss {r['held_out_loss_exact']:.4f}; "
              f"median step {med:.2f} s")
    if "exact" in results and "hyper" in results:
        e, h = results["exact"]["losses"], results["hyper"]["losses"]
        gap = max(abs(x - y) for x, y in zip(e, h))
        print(f"largest per-step loss difference hyper - exact: {gap:.4f} nats")
    if a.json:
        settings = {k: v for k, v in vars(a).items() if k not in ("json", "plot")}
        Path(a.json).write_text(json.dumps(dict(settings=settings, held_out_loss_before=before, results=results),
                                           indent=2))
    if a.plot:
        plot(a.plot, results, a)
        print(f"plot: {a.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
