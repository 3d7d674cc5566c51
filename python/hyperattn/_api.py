"""hyperattn.attention: one entry point for numpy arrays and torch tensors."""
from __future__ import annotations

import sys

import numpy as np

from . import _core

PRESETS = ("paper", "stratified", "stratified-window")
SAMPLINGS = ("uniform", "value-norm", "stratified", "position-stratified")
BUCKET_ORDERS = ("gray-rank", "reference")
LAYOUTS = ("bhsd", "bshd")


def _is_torch(x) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _check_int(name, value, lo=0, hi=2**63 - 1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    if value < lo or value > hi:
        raise ValueError(f"{name}: expected an int from {lo} to {hi}, got {value}")
    return int(value)


def options(*, causal=False, scale=None, method="hyper", block_size=256, sample_size=256, lsh_bits=7,
            min_seq_len=4096, seed=0, preset=None, layout="bhsd", threads=None, sampling="uniform",
            bucket_order="gray-rank", sink_keys=0, local_window=0):
    """Checks the keyword arguments of attention() and returns them normalised (a dict)."""
    if method not in ("hyper", "exact"):
        raise ValueError(f"method: expected 'hyper' or 'exact', got {method!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout: expected 'bhsd' ([batch, heads, seq, dim]) or 'bshd' ([batch, seq, heads, dim]), got {layout!r}")
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"preset: expected None or one of {', '.join(PRESETS)}, got {preset!r}")
    if sampling not in SAMPLINGS and sampling.replace("_", "-") not in SAMPLINGS:
        raise ValueError(f"sampling: expected one of {', '.join(SAMPLINGS)}, got {sampling!r}")
    if bucket_order not in BUCKET_ORDERS and bucket_order.replace("_", "-") not in ("gray-rank", "reference-gray"):
        raise ValueError(f"bucket_order: expected one of {', '.join(BUCKET_ORDERS)}, got {bucket_order!r}")
    if scale is not None:
        if isinstance(scale, bool) or not isinstance(scale, (int, float, np.floating)):
            raise TypeError(f"scale: expected None or a float, got {type(scale).__name__}")
        if not scale > 0 or not np.isfinite(scale):
            raise ValueError(f"scale: expected None or a positive finite float, got {scale}")
    if threads is not None:
        threads = _check_int("threads", threads, 1, 2**31 - 1)
    if not isinstance(causal, (bool, np.bool_)):
        raise TypeError(f"causal: expected a bool, got {type(causal).__name__}")
    return dict(
        causal=bool(causal), scale=0.0 if scale is None else float(scale), method=method,
        block_size=_check_int("block_size", block_size), sample_size=_check_int("sample_size", sample_size),
        lsh_bits=_check_int("lsh_bits", lsh_bits, 0, 2**31 - 1), min_seq_len=_check_int("min_seq_len", min_seq_len),
        seed=_check_int("seed", seed, 0, 2**64 - 1), preset=preset or "", bshd=layout == "bshd", threads=threads or 0,
        sampling=sampling.replace("_", "-"), bucket_order=bucket_order.replace("_", "-"),
        sink_keys=_check_int("sink_keys", sink_keys), local_window=_check_int("local_window", local_window))


def _frame(x, bshd):
    """The [batch, heads, seq, dim] frame of x (a view, never a copy)."""
    return x.swapaxes(1, 2) if bshd else x


def run_into(q, k, v, out, lse, o):
    """Calls the library on arrays in the caller's layout; out (and lse) are written in place."""
    b = o["bshd"]
    _core.attention(_frame(q, b), _frame(k, b), _frame(v, b), _frame(out, b), lse, o["method"], o["causal"],
                    o["scale"], o["threads"], o["lsh_bits"], o["block_size"], o["sample_size"],
                    o["min_seq_len"], o["seed"], o["preset"], o["bucket_order"], o["sampling"], o["sink_keys"],
                    o["local_window"])


def run_backward_into(q, k, v, out, lse, grad_out, grad_lse, dq, dk, dv, o):
    """The gradients of attention into dq, dk, dv (arrays in the caller's layout; lse [batch, heads_q, seq_q])."""
    b = o["bshd"]
    _core.attention_backward(_frame(q, b), _frame(k, b), _frame(v, b), _frame(out, b), lse, _frame(grad_out, b),
                             grad_lse, _frame(dq, b), _frame(dk, b), _frame(dv, b), o["method"], o["causal"],
                             o["scale"], o["threads"], o["lsh_bits"], o["block_size"], o["sample_size"],
                             o["min_seq_len"], o["seed"], o["preset"], o["bucket_order"], o["sampling"],
                             o["sink_keys"], o["local_window"])


def check_shapes(q, k, v, layout):
    names = "[batch, seq, heads, head_dim]" if layout == "bshd" else "[batch, heads, seq, head_dim]"
    for name, x in (("q", q), ("k", k), ("v", v)):
        if x.ndim != 4:
            raise ValueError(f"{name}: expected 4 dimensions {names} (layout={layout!r}), got shape {tuple(x.shape)}")


def attention(q, k, v, *, causal=False, scale=None, method="hyper", block_size=256, sample_size=256,
              lsh_bits=7, min_seq_len=4096, seed=0, preset=None, layout="bhsd", return_lse=False,
              threads=None, sampling="uniform", bucket_order="gray-rank", sink_keys=0, local_window=0):
    """Exact attention or HyperAttention of q, k, v (numpy float32 arrays or torch float32/bfloat16 CPU tensors).

    layout "bhsd": q [batch, heads_q, seq_q, dim], k and v [batch, heads_kv, seq_kv, dim];
    layout "bshd": [batch, seq, heads, dim]. heads_q a multiple of heads_kv (grouped-query
    attention). Any strides with the innermost 1 are read without a copy. Returns out (the shape
    and dtype of q, the same kind as q) or (out, lse) with lse [batch, heads_q, seq_q] float32 (natural
    log of the sum of exp of the scaled scores). Torch tensors go through the torch.ops.hyperattn.attention
    operator (torch.compile traces it; autograd runs hyperattn's backward pass). Errors from the library are raised as
    ValueError (dtypes: TypeError) with its message. The GIL is released while it computes.
    """
    o = options(causal=causal, scale=scale, method=method, block_size=block_size, sample_size=sample_size,
                lsh_bits=lsh_bits, min_seq_len=min_seq_len, seed=seed, preset=preset, layout=layout,
                threads=threads, sampling=sampling, bucket_order=bucket_order, sink_keys=sink_keys,
                local_window=local_window)
    kinds = [_is_torch(x) for x in (q, k, v)]
    if any(kinds):
        if not all(kinds):
            raise TypeError("q, k, v: expected all torch tensors or all numpy arrays, got a mix")
        from . import torch as _ht
        return _ht.attention_op(q, k, v, o, return_lse)
    arrays = []
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{name}: expected a numpy.ndarray or a torch.Tensor, got {type(x).__name__}")
        if x.dtype != np.float32:
            raise TypeError(f"{name}: dtype {x.dtype} is not supported for numpy arrays; expected float32 "
                            "(bfloat16 through torch tensors)")
        arrays.append(x)
    check_shapes(q, k, v, layout)
    out = np.empty(q.shape, dtype=np.float32)
    lse = np.empty((q.shape[0], q.shape[2] if o["bshd"] else q.shape[1], q.shape[1] if o["bshd"] else q.shape[2]),
                   dtype=np.float32) if return_lse else None
    run_into(q, k, v, out, lse, o)
    return (out, lse) if return_lse else out
