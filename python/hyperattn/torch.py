"""PyTorch: the torch.ops.hyperattn.attention operator and a drop-in for the authors' HyperAttention module."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from . import _api, _core

__all__ = ["HyperAttention", "attention", "scaled_dot_product_attention"]

BACKWARD_MISSING = ("hyperattn: the backward pass of attention is not implemented yet (issue 13, 'Backward pass'); "
                    "hyperattn's operator is forward-only: call it under torch.no_grad() / torch.inference_mode(), "
                    "or detach its inputs")

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
    o = dict(causal=causal, scale=scale, method=method, block_size=block_size, sample_size=sample_size,
             lsh_bits=lsh_bits, min_seq_len=min_seq_len, seed=seed, preset=preset, bshd=bshd, threads=threads,
             sampling=sampling, bucket_order=bucket_order, sink_keys=sink_keys, local_window=local_window)
    out = torch.empty(q.shape, dtype=q.dtype)
    lse = torch.empty(_lse_shape(q, bshd) if want_lse else (0,), dtype=torch.float32)
    q, k, v = q.detach(), k.detach(), v.detach()
    _api.run_into(q, k, v, out, lse if want_lse else None, o)
    return out, lse


@_attention.register_fake
def _(q, k, v, causal, scale, method, block_size, sample_size, lsh_bits, min_seq_len, seed, preset, bshd, threads,
      sampling, bucket_order, sink_keys, local_window, want_lse):
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    lse = q.new_empty(_lse_shape(q, bshd) if want_lse else (0,), dtype=torch.float32)
    return out, lse


def _setup_context(ctx, inputs, output):
    pass


def _backward(ctx, grad_out, grad_lse):
    raise NotImplementedError(BACKWARD_MISSING)


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
    preset, bucket_order, threads) go to hyperattn.attention. Forward only.
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
