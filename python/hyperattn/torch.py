"""PyTorch: the torch.ops.hyperattn.attention operator and a drop-in for the authors' HyperAttention module."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from . import _api, _core

__all__ = ["HyperAttention", "attention", "scaled_dot_product_attention"]

_DTYPES = (torch.float32, torch.bfloat16)


def _check_tensors(q, k, v):
    for name, x in (("q", q), ("k", k), ("v", v)):
        if x.device.type != "cpu":
            raise ValueError(f"{name}: is on {x.device}; this hyperattn package has no CUDA backend "
                             "(built for the CPU only): move the tensors to the CPU")
        if x.dtype not in _DTYPES:
            raise TypeError(f"{name}: dtype {x.dtype} is not supported; expected torch.float32 or torch.bfloat16")
        if x.layout != torch.strided:
            raise ValueError(f"{name}: layout {x.layout} is not supported; expected a dense (strided) tensor")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k, v: expected one dtype, got q {q.dtype}, k {k.dtype}, v {v.dtype}")


def _lse_shape(q, bshd):
    return (q.shape[0], q.shape[2], q.shape[1]) if bshd else (q.shape[0], q.shape[1], q.shape[2])


@torch.library.custom_op("hyperattn::attention", mutates_args=(), device_types="cpu")
def _attention(q: Tensor, k: Tensor, v: Tensor, causal: bool, scale: float, method: str, block_size: int,
               sample_size: int, lsh_bits: int, min_seq_len: int, seed: int, preset: str, bshd: bool,
               threads: int, sampling: str, bucket_order: str, sink_keys: int, local_window: int,
               want_lse: bool) -> tuple[Tensor, Tensor]:
    # The LSE is always computed (the backward needs it; it costs one float per row); want_lse is kept
    # in the schema for compatibility.
    o = dict(causal=causal, scale=scale, method=method, block_size=block_size, sample_size=sample_size,
             lsh_bits=lsh_bits, min_seq_len=min_seq_len, seed=seed, preset=preset, bshd=bshd, threads=threads,
             sampling=sampling, bucket_order=bucket_order, sink_keys=sink_keys, local_window=local_window)
    out = torch.empty(q.shape, dtype=q.dtype)
    lse = torch.empty(_lse_shape(q, bshd), dtype=torch.float32)
    q, k, v = q.detach(), k.detach(), v.detach()
    _api.run_into(q, k, v, out, lse, o)
    return out, lse


@_attention.register_fake
def _(q, k, v, causal, scale, method, block_size, sample_size, lsh_bits, min_seq_len, seed, preset, bshd, threads,
      sampling, bucket_order, sink_keys, local_window, want_lse):
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    lse = q.new_empty(_lse_shape(q, bshd), dtype=torch.float32)
    return out, lse


@torch.library.custom_op("hyperattn::attention_backward", mutates_args=(), device_types="cpu")
def _attention_backward(q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, grad_out: Tensor,
                        grad_lse: Tensor, causal: bool, scale: float, method: str, block_size: int, sample_size: int,
                        lsh_bits: int, min_seq_len: int, seed: int, preset: str, bshd: bool, threads: int,
                        sampling: str, bucket_order: str, sink_keys: int, local_window: int
                        ) -> tuple[Tensor, Tensor, Tensor]:
    """dq, dk, dv of hyperattn::attention (grad_lse: [batch, heads_q, seq_q] float32, or empty for none)."""
    o = dict(causal=causal, scale=scale, method=method, block_size=block_size, sample_size=sample_size,
             lsh_bits=lsh_bits, min_seq_len=min_seq_len, seed=seed, preset=preset, bshd=bshd, threads=threads,
             sampling=sampling, bucket_order=bucket_order, sink_keys=sink_keys, local_window=local_window)
    dq = torch.empty(q.shape, dtype=q.dtype)
    dk = torch.empty(k.shape, dtype=k.dtype)
    dv = torch.empty(v.shape, dtype=v.dtype)
    gl = grad_lse if grad_lse.numel() > 0 else None
    _api.run_backward_into(q.detach(), k.detach(), v.detach(), out.detach(), lse.detach(), grad_out.detach(),
                           gl.detach() if gl is not None else None, dq, dk, dv, o)
    return dq, dk, dv


@_attention_backward.register_fake
def _(q, k, v, out, lse, grad_out, grad_lse, causal, scale, method, block_size, sample_size, lsh_bits, min_seq_len,
      seed, preset, bshd, threads, sampling, bucket_order, sink_keys, local_window):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


_OPTION_NAMES = ("causal", "scale", "method", "block_size", "sample_size", "lsh_bits", "min_seq_len", "seed", "preset",
                 "bshd", "threads", "sampling", "bucket_order", "sink_keys", "local_window")


def _setup_context(ctx, inputs, output):
    q, k, v = inputs[:3]
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse)
    ctx.options = inputs[3:3 + len(_OPTION_NAMES)]


def _dense(x):
    """A gradient as the library reads it: innermost stride 1 and no zero (broadcast) strides."""
    return x if x.is_contiguous() else x.contiguous()


def _backward(ctx, grad_out, grad_lse):
    q, k, v, out, lse = ctx.saved_tensors
    opts = dict(zip(_OPTION_NAMES, ctx.options))
    if grad_out is None:
        grad_out = torch.zeros_like(out)
    grad_out = _dense(grad_out.to(q.dtype) if grad_out.dtype not in (q.dtype, torch.float32) else grad_out)
    grad_lse = torch.empty((0,), dtype=torch.float32) if grad_lse is None else _dense(grad_lse.to(torch.float32))
    dq, dk, dv = torch.ops.hyperattn.attention_backward(
        q, k, v, out, lse, grad_out, grad_lse, opts["causal"], opts["scale"], opts["method"], opts["block_size"],
        opts["sample_size"], opts["lsh_bits"], opts["min_seq_len"], opts["seed"], opts["preset"], opts["bshd"],
        opts["threads"], opts["sampling"], opts["bucket_order"], opts["sink_keys"], opts["local_window"])
    return (dq, dk, dv) + (None,) * (len(_OPTION_NAMES) + 1)


torch.library.register_autograd("hyperattn::attention", _backward, setup_context=_setup_context)


def attention_op(q, k, v, o, return_lse):
    """torch tensors through torch.ops.hyperattn.attention (o: the dict from hyperattn._api.options)."""
    _check_tensors(q, k, v)
    _api.check_shapes(q, k, v, "bshd" if o["bshd"] else "bhsd")
    out, lse = torch.ops.hyperattn.attention(
        q, k, v, o["causal"], o["scale"], o["method"], o["block_size"], o["sample_size"], o["lsh_bits"],
        o["min_seq_len"], o["seed"], o["preset"], o["bshd"], o["threads"], o["sampling"], o["bucket_order"],
        o["sink_keys"], o["local_window"], bool(return_lse))
    return (out, lse) if return_lse else out


attention = _api.attention


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                                 enable_gqa=False, *, method="hyper", **options):
    """A stand-in for torch.nn.functional.scaled_dot_product_attention on [b, h, n, d] CPU tensors.

    No attn_mask and no dropout (hyperattn has neither); grouped-query attention is always on (heads_q a
    multiple of heads_kv). Note: with is_causal=True and seq_q != seq_kv the mask is bottom-right aligned
    (torch's is top-left). Further keywords go to hyperattn.attention (block_size, sample_size, ...).
    """
    if attn_mask is not None:
        raise ValueError("attn_mask: hyperattn takes no mask; expected None (use is_causal=True for a causal mask)")
    if dropout_p != 0.0:
        raise ValueError(f"dropout_p: hyperattn has no dropout; expected 0.0, got {dropout_p}")
    return _api.attention(query, key, value, causal=is_causal, scale=scale, method=method, **options)


class HyperAttention(torch.nn.Module):
    """The authors' HyperAttention module (hyper_attn.HyperAttention), computed by hyperattn.

    Same constructor and forward as the authors' code: forward(query, key, value, scale=None, causal=False,
    return_lse=False) on [batch, heads, n, dim] tensors; returns attn, or (attn, lse) with lse of shape
    [batch, heads, n, 1] as in their code. Extra keywords (seed, sampling, sink_keys, local_window,
    preset, bucket_order, threads) go to hyperattn.attention. Differentiable (autograd runs
    hyperattn's backward pass: the gradient of the estimator the forward computed).
    """

    def __init__(self, input_dim=64, lsh_num_projs=7, block_size=256, sample_size=256, min_seq_len=4096,
                 **options):
        super().__init__()
        self.input_dim = input_dim
        self.lsh_num_projs = lsh_num_projs
        self.block_size = block_size
        self.sample_size = sample_size
        self.min_seq_len = min_seq_len
        self.options = dict(options)
        _api.options(lsh_bits=lsh_num_projs, block_size=block_size, sample_size=sample_size,
                     min_seq_len=min_seq_len, **self.options)

    def forward(self, query, key, value, scale=None, causal=False, return_lse=False):
        if query.shape[-1] != self.input_dim:
            raise ValueError(f"query: head dimension {query.shape[-1]} differs from input_dim={self.input_dim}")
        if scale is None:
            scale = 1.0 / math.sqrt(query.shape[-1])
        res = _api.attention(query, key, value, causal=causal, scale=scale, method="hyper",
                             block_size=self.block_size, sample_size=self.sample_size, lsh_bits=self.lsh_num_projs,
                             min_seq_len=self.min_seq_len, return_lse=return_lse, **self.options)
        if return_lse:
            out, lse = res
            return out, lse.unsqueeze(-1)
        return res

    def extra_repr(self):
        return (f"input_dim={self.input_dim}, lsh_num_projs={self.lsh_num_projs}, block_size={self.block_size}, "
                f"sample_size={self.sample_size}, min_seq_len={self.min_seq_len}")
